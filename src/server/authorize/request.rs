//! The authorization request (RFC 6749 section 4.1.1, with PKCE and OpenID Connect
//! parameters), checked in one pure function against the client it names.
//!
//! The order is the RFC's: until the client and its redirect URI are known good, an error
//! is shown to the user and never redirected (section 4.1.2.1), so no one can bounce a
//! browser off this server to a place of their choosing; after that, errors go back to
//! the client's redirect URI with `state` and `iss` (RFC 9207).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::auth::pkce::Challenge;
use crate::auth::redirect;
use crate::index::ClientEntry;
use crate::server::AppState;
use crate::server::error::{INVALID_TARGET, OAuthError};
use crate::server::target;
use crate::tenancy::Flow;

pub use crate::server::target::IDENTITY_SCOPES as USER_SCOPES;

/// Longest `state` and `nonce` taken: both travel in a cookie, whose size browsers cap.
const MAX_ECHOED: usize = 512;

/// A request that passed every check: what the user is asked to sign in for.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Authorization {
    pub client_id: String,
    /// The client's `OAuthClient` UID, so a client deleted and created again meanwhile
    /// is not served with a sign-in meant for the old one.
    pub client_uid: Option<String>,
    /// As the request had it (which may differ from the registered one in its loopback
    /// port): the token request must repeat it exactly.
    pub redirect_uri: String,
    pub state: Option<String>,
    pub scope: Vec<String>,
    /// The targets named (`resource`, or `audience`); `None`: the client's one resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Vec<String>>,
    /// The S256 code challenge, base64url.
    pub challenge: String,
    pub nonce: Option<String>,
    /// `prompt=none`: answer without showing anything.
    pub no_prompt: bool,
    /// `prompt=login`: sign in again even with a sign-in session.
    pub force_login: bool,
    /// `max_age`: a sign-in session older than this many seconds does not count.
    pub max_age: Option<i64>,
}

/// Why a request is refused, and how the user or the client learns it.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Shown to the user on an error page: the client or its redirect URI is not known
    /// good, so redirecting would be an open redirect.
    Page(&'static str),
    /// Sent to the client's redirect URI (RFC 6749 section 4.1.2.1).
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: &'static str,
    },
}

/// The query's parameters, each with every value it was given.
pub type Params = HashMap<String, Vec<String>>;

/// Parses a query string, keeping repeated parameters (which [`check`] refuses).
pub fn params(query: &str) -> Params {
    let mut out: Params = HashMap::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        out.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    out
}

/// The one value of `name`: `Ok(None)` when absent or empty, `Err` when repeated.
fn single<'a>(params: &'a Params, name: &str) -> Result<Option<&'a str>, ()> {
    match params.get(name).map(Vec::as_slice) {
        None => Ok(None),
        Some([v]) => Ok(Some(v.as_str()).filter(|v| !v.is_empty())),
        Some(_) => Err(()),
    }
}

/// The client id the request names, when it names exactly one.
pub fn client_id(params: &Params) -> Option<&str> {
    single(params, "client_id").ok().flatten()
}

/// Checks `params` against `client` (the index's entry for the request's `client_id`).
pub fn check(params: &Params, client: Option<&ClientEntry>) -> Result<Authorization, Refusal> {
    let client = client.ok_or(Refusal::Page(
        "The application that sent you here is not known to this server.",
    ))?;
    let redirect_uri = match single(params, "redirect_uri") {
        Ok(Some(uri)) if redirect::matching(&client.redirect_uris, uri).is_some() => uri,
        Ok(None) => {
            return Err(Refusal::Page(
                "The application did not say where to send you back (redirect_uri is missing).",
            ));
        }
        _ => {
            return Err(Refusal::Page(
                "The application asked to send you back to an address it has not registered.",
            ));
        }
    };
    // A repeated state cannot be echoed: the error then goes without one.
    let state = single(params, "state").ok().flatten();
    let refuse = |error: &'static str, description: &'static str| Refusal::Redirect {
        redirect_uri: redirect_uri.to_string(),
        state: state.map(str::to_string),
        error,
        description,
    };
    if params.values().any(|v| v.len() > 1) {
        return Err(refuse("invalid_request", "a parameter was repeated"));
    }
    let get = |name: &str| single(params, name).ok().flatten();
    if get("request").is_some() {
        return Err(refuse(
            "request_not_supported",
            "request objects are not supported",
        ));
    }
    if get("request_uri").is_some() {
        return Err(refuse(
            "request_uri_not_supported",
            "request_uri is not supported",
        ));
    }
    match get("response_type") {
        None => return Err(refuse("invalid_request", "response_type is missing")),
        Some("code") => {}
        // The implicit and hybrid flows are not offered (RFC 9700 section 2.1.2).
        Some(_) => {
            return Err(refuse(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
    }
    if let Some(mode) = get("response_mode")
        && mode != "query"
    {
        return Err(refuse(
            "invalid_request",
            "only response_mode=query is supported",
        ));
    }
    if !client.active || !client.grant_types.iter().any(|g| g == "authorization_code") {
        return Err(refuse(
            "unauthorized_client",
            "the client may not use the authorization code grant",
        ));
    }
    let challenge =
        Challenge::parse(get("code_challenge"), get("code_challenge_method")).map_err(|e| {
            refuse(
                "invalid_request",
                match e {
                    crate::auth::pkce::PkceError::MissingChallenge => {
                        "code_challenge is required (PKCE with S256)"
                    }
                    crate::auth::pkce::PkceError::UnsupportedMethod => {
                        "code_challenge_method must be S256"
                    }
                    _ => "code_challenge must be the base64url SHA-256 of a code verifier",
                },
            )
        })?;
    let scope = match get("scope") {
        None => client.scopes.clone(),
        Some(s) => {
            let tokens: Vec<String> = s
                .split(' ')
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect();
            let allowed =
                |t: &String| USER_SCOPES.contains(&t.as_str()) || client.scopes.contains(t);
            if tokens.is_empty()
                || !tokens
                    .iter()
                    .all(|t| crate::api::is_scope_token(t) && allowed(t))
            {
                return Err(refuse("invalid_scope", "a requested scope is not allowed"));
            }
            tokens
        }
    };
    let nonce = get("nonce");
    if state.is_some_and(|s| s.len() > MAX_ECHOED) || nonce.is_some_and(|n| n.len() > MAX_ECHOED) {
        return Err(refuse(
            "invalid_request",
            "state and nonce are limited to 512 characters",
        ));
    }
    let prompt: Vec<&str> = get("prompt")
        .map(|p| p.split(' ').filter(|v| !v.is_empty()).collect())
        .unwrap_or_default();
    if !prompt
        .iter()
        .all(|p| ["none", "login", "consent", "select_account"].contains(p))
    {
        return Err(refuse("invalid_request", "prompt has an unknown value"));
    }
    let no_prompt = prompt.contains(&"none");
    if no_prompt && prompt.len() > 1 {
        return Err(refuse(
            "invalid_request",
            "prompt=none cannot be combined with other values",
        ));
    }
    let max_age = get("max_age").map(|m| m.parse::<u32>().map(i64::from));
    if max_age.as_ref().is_some_and(Result::is_err) {
        return Err(refuse(
            "invalid_request",
            "max_age must be a number of seconds",
        ));
    }
    Ok(Authorization {
        client_id: client.client_id.clone(),
        client_uid: client.uid.clone(),
        redirect_uri: redirect_uri.to_string(),
        state: state.map(str::to_string),
        scope,
        resource: None,
        challenge: challenge.encoded(),
        nonce: nonce.map(str::to_string),
        no_prompt,
        force_login: prompt.contains(&"login"),
        max_age: max_age.and_then(Result::ok),
    })
}

/// The audience decision ([`crate::tenancy`]) at `/authorize`, before anyone signs in: a
/// target or a scope the client may not have is refused to its redirect URI (RFC 8707
/// section 2, RFC 6749 section 4.1.2.1), and `/token` decides again from what the code
/// holds. Without `scope`, the scope becomes what the decision grants.
pub fn decide_target(
    state: &AppState,
    client: &ClientEntry,
    params: &Params,
    mut auth: Authorization,
) -> Result<Authorization, Refusal> {
    let get = |name: &str| single(params, name).ok().flatten();
    let refuse = |e: OAuthError| Refusal::Redirect {
        redirect_uri: auth.redirect_uri.clone(),
        state: auth.state.clone(),
        error: e.code(),
        description: match e {
            OAuthError::InvalidRequest(d) => d,
            OAuthError::InvalidScope => "a requested scope is not allowed",
            _ => INVALID_TARGET,
        },
    };
    let targets = target::targets(get("resource"), get("audience")).map_err(refuse)?;
    let asked = get("scope").is_some();
    let decision = target::decide(
        state,
        client,
        targets.as_deref(),
        asked.then_some(auth.scope.as_slice()),
        Flow::User {
            groups: &[],
            identity_scopes: &USER_SCOPES,
        },
    )
    .map_err(refuse)?;
    if !asked {
        auth.scope = decision.scope;
    }
    auth.resource = targets;
    Ok(auth)
}

/// `redirect_uri` with `params` added to its query (RFC 6749 section 4.1.2: "retaining
/// any existing query component").
pub fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        query.append_pair(k, v);
    }
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    format!("{redirect_uri}{sep}{}", query.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn client() -> ClientEntry {
        ClientEntry {
            client_id: "app".into(),
            display_name: None,
            namespace: "n".into(),
            labels: Default::default(),
            name: "app".into(),
            active: true,
            not_before: None,
            grant_types: vec!["authorization_code".into()],
            scopes: vec!["api.read".into()],
            audiences: vec![],
            audience_keys: vec![],
            roles: vec![],
            public: true,
            redirect_uris: vec!["https://app.test/cb".into(), "http://127.0.0.1/cb".into()],
            post_logout_redirect_uris: vec![],
            allowed_groups: None,
            refresh: None,
            access_token_lifetime_seconds: 300,
            secrets: vec![],
            registration_access_token_hash: None,
            uid: Some("uid-1".into()),
            keys: None,
            service_accounts: vec![],
            federated: Vec::new(),
        }
    }

    fn query(extra: &str) -> Params {
        params(&format!(
            "response_type=code&client_id=app&redirect_uri=https%3A%2F%2Fapp.test%2Fcb&state=s1&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}"
        ))
    }

    /// The error sent back to the client, `None` for a page or a success.
    fn redirect_error(r: Result<Authorization, Refusal>) -> Option<&'static str> {
        match r {
            Err(Refusal::Redirect { error, .. }) => Some(error),
            _ => None,
        }
    }

    #[test]
    fn a_good_request_passes_with_the_clients_scopes_by_default() {
        let a = check(&query(""), Some(&client())).expect("valid");
        assert_eq!(a.redirect_uri, "https://app.test/cb");
        assert_eq!(a.state.as_deref(), Some("s1"));
        assert_eq!(a.scope, vec!["api.read".to_string()]);
        assert_eq!(a.challenge, CHALLENGE);
        assert!(!a.no_prompt && !a.force_login && a.max_age.is_none());
    }

    #[test]
    fn an_unknown_client_or_redirect_uri_is_a_page_never_a_redirect() {
        assert!(matches!(check(&query(""), None), Err(Refusal::Page(_))));
        for bad in [
            "response_type=code&client_id=app&redirect_uri=https%3A%2F%2Fevil.test%2Fcb",
            "response_type=code&client_id=app",
            "response_type=code&client_id=app&redirect_uri=https%3A%2F%2Fapp.test%2Fcb&redirect_uri=https%3A%2F%2Fapp.test%2Fcb",
            "response_type=code&client_id=app&redirect_uri=https%3A%2F%2Fapp.test%2Fcb%2Fmore",
        ] {
            assert!(
                matches!(check(&params(bad), Some(&client())), Err(Refusal::Page(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_loopback_redirect_may_change_its_port() {
        let q = params(&format!(
            "response_type=code&client_id=app&redirect_uri=http%3A%2F%2F127.0.0.1%3A5123%2Fcb&code_challenge={CHALLENGE}&code_challenge_method=S256"
        ));
        assert_eq!(
            check(&q, Some(&client())).expect("valid").redirect_uri,
            "http://127.0.0.1:5123/cb"
        );
    }

    #[test]
    fn pkce_is_required_with_s256() {
        let no_pkce =
            params("response_type=code&client_id=app&redirect_uri=https%3A%2F%2Fapp.test%2Fcb");
        assert_eq!(
            redirect_error(check(&no_pkce, Some(&client()))),
            Some("invalid_request")
        );
        let plain = params(&format!(
            "response_type=code&client_id=app&redirect_uri=https%3A%2F%2Fapp.test%2Fcb&code_challenge={CHALLENGE}&code_challenge_method=plain"
        ));
        assert_eq!(
            redirect_error(check(&plain, Some(&client()))),
            Some("invalid_request")
        );
    }

    #[test]
    fn other_response_types_and_repeats_are_refused_by_redirect() {
        let token = params(&format!(
            "response_type=token&client_id=app&redirect_uri=https%3A%2F%2Fapp.test%2Fcb&code_challenge={CHALLENGE}&code_challenge_method=S256"
        ));
        assert_eq!(
            redirect_error(check(&token, Some(&client()))),
            Some("unsupported_response_type")
        );
        assert_eq!(
            redirect_error(check(&query("&scope=a&scope=b"), Some(&client()))),
            Some("invalid_request")
        );
        assert_eq!(
            redirect_error(check(&query("&request=x"), Some(&client()))),
            Some("request_not_supported")
        );
        assert_eq!(
            redirect_error(check(&query("&response_mode=fragment"), Some(&client()))),
            Some("invalid_request")
        );
    }

    #[test]
    fn user_scopes_are_always_allowed_others_only_when_the_client_has_them() {
        let a = check(&query("&scope=openid+profile+api.read"), Some(&client())).expect("valid");
        assert_eq!(a.scope, vec!["openid", "profile", "api.read"]);
        assert_eq!(
            redirect_error(check(&query("&scope=openid+admin"), Some(&client()))),
            Some("invalid_scope")
        );
    }

    #[test]
    fn an_inactive_client_or_one_without_the_grant_is_unauthorized() {
        let mut c = client();
        c.active = false;
        assert_eq!(
            redirect_error(check(&query(""), Some(&c))),
            Some("unauthorized_client")
        );
        let mut c = client();
        c.grant_types = vec!["client_credentials".into()];
        assert_eq!(
            redirect_error(check(&query(""), Some(&c))),
            Some("unauthorized_client")
        );
    }

    #[test]
    fn prompt_login_and_max_age_are_noted() {
        let a = check(&query("&prompt=login&max_age=30"), Some(&client())).expect("valid");
        assert!(a.force_login && !a.no_prompt);
        assert_eq!(a.max_age, Some(30));
    }

    #[test]
    fn prompt_none_is_noted_and_cannot_be_combined() {
        assert!(
            check(&query("&prompt=none"), Some(&client()))
                .expect("valid")
                .no_prompt
        );
        assert_eq!(
            redirect_error(check(&query("&prompt=none+login"), Some(&client()))),
            Some("invalid_request")
        );
        assert_eq!(
            redirect_error(check(&query("&prompt=bogus"), Some(&client()))),
            Some("invalid_request")
        );
        assert_eq!(
            redirect_error(check(&query("&max_age=soon"), Some(&client()))),
            Some("invalid_request")
        );
    }

    #[test]
    fn errors_echo_the_state() {
        let refused = check(&query("&response_mode=fragment"), Some(&client()));
        assert_eq!(
            refused,
            Err(Refusal::Redirect {
                redirect_uri: "https://app.test/cb".into(),
                state: Some("s1".into()),
                error: "invalid_request",
                description: "only response_mode=query is supported",
            })
        );
    }

    #[test]
    fn redirects_keep_the_existing_query() {
        assert_eq!(
            redirect_with("https://a/cb", &[("code", "x y")]),
            "https://a/cb?code=x+y"
        );
        assert_eq!(
            redirect_with("https://a/cb?k=1", &[("code", "x")]),
            "https://a/cb?k=1&code=x"
        );
    }
}
