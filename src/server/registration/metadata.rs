//! Client metadata (RFC 7591 section 2) as the caller sent it, and its validation against
//! what an initial access token's policy (or, on update, the client itself) allows. Pure:
//! no HTTP, no Kubernetes; the handlers parse the JSON body into [`ClientMetadata`] and
//! hand the [`Accepted`] result to [`super::objects`].

use serde::Deserialize;

use crate::api::{GrantType, Scope};
use crate::auth::assertion::ClientKeys;
use crate::server::error::OAuthError;

/// RFC 7591 section 2 client metadata; what is not listed is ignored, as the RFC allows.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct ClientMetadata {
    pub client_id: Option<String>,
    pub client_name: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub scope: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub token_endpoint_auth_method: Option<String>,
    /// The client's public keys, for `private_key_jwt`.
    pub jwks: Option<serde_json::Value>,
    pub jwks_uri: Option<String>,
}

/// How the client authenticates at the token endpoint (`token_endpoint_auth_method`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum AuthMethod {
    Basic,
    Post,
    PrivateKeyJwt,
    None,
}

impl AuthMethod {
    /// The method named, `client_secret_basic` when none is (RFC 7591 section 2).
    pub fn parse(s: Option<&str>) -> Option<Self> {
        match s {
            None | Some("client_secret_basic") => Some(AuthMethod::Basic),
            Some("client_secret_post") => Some(AuthMethod::Post),
            Some("private_key_jwt") => Some(AuthMethod::PrivateKeyJwt),
            Some("none") => Some(AuthMethod::None),
            Some(_) => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Basic => "client_secret_basic",
            AuthMethod::Post => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::None => "none",
        }
    }
}

/// Metadata that passed validation.
#[derive(Debug, PartialEq)]
pub(super) struct Accepted {
    pub name: Option<String>,
    pub grant_types: Vec<GrantType>,
    pub scopes: Vec<Scope>,
    pub redirect_uris: Vec<String>,
    pub auth_method: AuthMethod,
    /// For `private_key_jwt`: the client's JWK Set, checked, as JSON.
    pub jwks: Option<String>,
    /// For `private_key_jwt`: where the client publishes its JWK Set instead.
    pub jwks_uri: Option<String>,
}

/// Checks accepted metadata against the enforcing policies of the initial access token's
/// namespace (RFC 7591 section 3.2.2): a redirect URI outside their hosts is
/// `invalid_redirect_uri`, a grant type, a public client or an authentication method they
/// do not allow is `invalid_client_metadata`, each naming the field and the bound. The
/// bounds the controller applies once the client exists (lifetimes, how many clients) are
/// left to it.
pub(super) fn within_policies(
    namespace: &str,
    policies: &[crate::api::PolicyBounds],
    accepted: &Accepted,
) -> Result<(), OAuthError> {
    use crate::api::AuthenticationMethod;
    use crate::tenancy::policy::{self, ClientFacts, PolicyEntry};
    if policies.is_empty() {
        return Ok(());
    }
    let entries: Vec<PolicyEntry> = policies.iter().map(PolicyEntry::enforcing).collect();
    let applicable: Vec<&PolicyEntry> = entries.iter().collect();
    let methods = match accepted.auth_method {
        AuthMethod::Basic | AuthMethod::Post => vec![AuthenticationMethod::Secret],
        AuthMethod::PrivateKeyJwt => vec![AuthenticationMethod::PrivateKeyJwt],
        AuthMethod::None => vec![],
    };
    let facts = ClientFacts {
        namespace,
        grant_types: accepted.grant_types.iter().map(|g| g.as_str()).collect(),
        public: accepted.auth_method == AuthMethod::None,
        methods,
        redirect_uris: accepted.redirect_uris.iter().map(String::as_str).collect(),
        rank: 1,
        ..ClientFacts::default()
    };
    let refused = policy::check_client(&applicable, &facts)
        .into_iter()
        .find(|v| {
            matches!(
                v.field,
                "spec.grantTypes" | "spec.type" | "spec.authentication" | "spec.redirectUris"
            )
        });
    match refused {
        None => Ok(()),
        Some(v) if v.field == "spec.redirectUris" => Err(OAuthError::InvalidRedirectUri(
            v.message.replace("spec.redirectUris", "redirect_uris"),
        )),
        Some(v) => Err(OAuthError::InvalidClientMetadata(
            v.message
                .replace("spec.grantTypes", "grant_types")
                .replace("spec.type", "token_endpoint_auth_method")
                .replace("spec.authentication", "token_endpoint_auth_method"),
        )),
    }
}

pub(super) fn metadata_error(msg: &str) -> OAuthError {
    OAuthError::InvalidClientMetadata(msg.to_string())
}

/// Checks metadata against what may be granted: `allowed_grants` (empty: any supported)
/// and `allowed_scopes`.
pub(super) fn validate(
    meta: ClientMetadata,
    allowed_grants: &[GrantType],
    allowed_scopes: &[Scope],
) -> Result<Accepted, OAuthError> {
    let auth_method = AuthMethod::parse(meta.token_endpoint_auth_method.as_deref()).ok_or_else(
        || metadata_error("token_endpoint_auth_method must be client_secret_basic, client_secret_post, private_key_jwt or none"),
    )?;
    // RFC 7591 section 2: jwks or jwks_uri, never both, and only for private_key_jwt.
    let (jwks, jwks_uri) = match (auth_method, &meta.jwks, &meta.jwks_uri) {
        (AuthMethod::PrivateKeyJwt, Some(_), Some(_)) => {
            return Err(metadata_error("jwks and jwks_uri must not both be present"));
        }
        (AuthMethod::PrivateKeyJwt, None, Some(uri)) => {
            if uri.len() > 2048 || !crate::outgoing::is_secure_url(uri) || uri.contains('#') {
                return Err(metadata_error(
                    "jwks_uri must be an https URL (http only for localhost, 127.0.0.1 and [::1]) without fragment",
                ));
            }
            (None, Some(uri.clone()))
        }
        (AuthMethod::PrivateKeyJwt, Some(set), None) => {
            let keys = ClientKeys::parse(&set.to_string())
                .map_err(|e| metadata_error(&format!("jwks {e}")))?;
            let text = serde_json::to_string(&keys.jwks).map_err(|_| OAuthError::ServerError)?;
            (Some(text), None)
        }
        (AuthMethod::PrivateKeyJwt, None, None) => {
            return Err(metadata_error(
                "private_key_jwt needs the client's keys in jwks or jwks_uri",
            ));
        }
        (_, None, None) => (None, None),
        (_, _, _) => {
            return Err(metadata_error(
                "jwks and jwks_uri are for token_endpoint_auth_method private_key_jwt",
            ));
        }
    };
    // RFC 7591 section 2: without grant_types, the client uses authorization_code only.
    let names = meta
        .grant_types
        .unwrap_or_else(|| vec!["authorization_code".into()]);
    let mut grant_types = Vec::new();
    for n in &names {
        let g: GrantType = serde_json::from_value(serde_json::Value::String(n.clone()))
            .map_err(|_| metadata_error("grant_types: supported are client_credentials, authorization_code and refresh_token"))?;
        if !allowed_grants.is_empty() && !allowed_grants.contains(&g) {
            return Err(metadata_error(
                "grant_types: the initial access token does not allow this grant type",
            ));
        }
        if !grant_types.contains(&g) {
            grant_types.push(g);
        }
    }
    if grant_types.is_empty() {
        return Err(metadata_error("grant_types must not be empty"));
    }
    if auth_method == AuthMethod::None && grant_types.contains(&GrantType::ClientCredentials) {
        return Err(metadata_error(
            "grant_types: client_credentials needs a confidential client, not token_endpoint_auth_method none",
        ));
    }
    let mut scopes: Vec<Scope> = Vec::new();
    for s in meta.scope.as_deref().unwrap_or_default().split_whitespace() {
        let Some(allowed) = allowed_scopes.iter().find(|a| *a == s) else {
            return Err(metadata_error(
                "scope: the initial access token does not allow this scope",
            ));
        };
        if !scopes.contains(allowed) {
            scopes.push(allowed.clone());
        }
    }
    let redirect_uris = meta.redirect_uris.unwrap_or_default();
    if redirect_uris.len() > 32 {
        return Err(OAuthError::InvalidRedirectUri(
            "at most 32 redirect_uris".into(),
        ));
    }
    for u in &redirect_uris {
        check_redirect_uri(u)?;
    }
    if grant_types.contains(&GrantType::AuthorizationCode) && redirect_uris.is_empty() {
        return Err(OAuthError::InvalidRedirectUri(
            "redirect_uris must list at least one URI for the authorization_code grant".into(),
        ));
    }
    if meta
        .client_name
        .as_ref()
        .is_some_and(|n| n.chars().count() > 200)
    {
        return Err(metadata_error("client_name is longer than 200 characters"));
    }
    Ok(Accepted {
        name: meta.client_name,
        grant_types,
        scopes,
        redirect_uris,
        auth_method,
        jwks,
        jwks_uri,
    })
}

/// The same rules as the CRD's: absolute, no fragment, `https` except on loopback hosts.
fn check_redirect_uri(u: &str) -> Result<(), OAuthError> {
    let bad = |why: &str| {
        Err(OAuthError::InvalidRedirectUri(format!(
            "redirect_uris: {why}"
        )))
    };
    if u.is_empty() || u.len() > 2048 {
        return bad("each URI must have 1 to 2048 characters");
    }
    if u.contains('#') {
        return bad("a redirect URI must not have a fragment (#)");
    }
    let Ok(uri) = u.parse::<axum::http::Uri>() else {
        return bad("each entry must be an absolute URI");
    };
    let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return bad("each entry must be an absolute URI");
    };
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
    match scheme {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => bad("a redirect URI must use https (http only for localhost, 127.0.0.1 and [::1])"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(json: serde_json::Value) -> ClientMetadata {
        serde_json::from_value(json).expect("metadata")
    }

    #[test]
    fn registrations_stay_within_the_enforced_policies_of_the_namespace() {
        let bounds: crate::api::ClientBounds = serde_json::from_value(serde_json::json!({
            "grantTypes": ["authorization_code", "refresh_token"],
            "publicClients": false,
            "redirectUriHosts": ["*.{namespace}.apps.example.test"],
        }))
        .expect("bounds");
        let policies = [crate::api::PolicyBounds {
            policy: "tenants".into(),
            clients: bounds,
        }];
        let accepted = |json| validate(meta(json), &[], &[]).expect("valid");
        let ok = accepted(
            serde_json::json!({"grant_types": ["authorization_code"], "redirect_uris": ["https://web.shop.apps.example.test/cb"]}),
        );
        assert_eq!(within_policies("shop", &policies, &ok), Ok(()));
        let elsewhere = accepted(
            serde_json::json!({"grant_types": ["authorization_code"], "redirect_uris": ["https://web.billing.apps.example.test/cb"]}),
        );
        let refused = within_policies("shop", &policies, &elsewhere);
        assert!(
            matches!(&refused, Err(OAuthError::InvalidRedirectUri(m))
                if m.contains("redirect_uris") && m.contains("*.shop.apps.example.test")),
            "{refused:?}"
        );
        let cc = accepted(serde_json::json!({"grant_types": ["client_credentials"]}));
        let refused = within_policies("shop", &policies, &cc);
        assert!(
            matches!(&refused, Err(OAuthError::InvalidClientMetadata(m))
                if m.contains("grant_types") && m.contains("client_credentials")),
            "{refused:?}"
        );
        let public = accepted(
            serde_json::json!({"grant_types": ["authorization_code"], "redirect_uris": ["https://a.shop.apps.example.test/cb"], "token_endpoint_auth_method": "none"}),
        );
        assert_eq!(
            within_policies("shop", &policies, &public).map_err(|e| e.code()),
            Err("invalid_client_metadata")
        );
        assert_eq!(within_policies("shop", &[], &cc), Ok(()));
    }

    #[test]
    fn metadata_is_checked_against_the_policy() {
        let grants = [GrantType::ClientCredentials];
        let scopes = [
            Scope::parse("read").expect("scope"),
            Scope::parse("write").expect("scope"),
        ];
        let ok = validate(
            meta(serde_json::json!({"grant_types": ["client_credentials"], "scope": "read read", "client_name": "x"})),
            &grants,
            &scopes,
        )
        .expect("valid");
        assert_eq!(ok.scopes, vec!["read".to_string()]);
        assert_eq!(ok.auth_method, AuthMethod::Basic);

        let code = |json| {
            validate(meta(json), &grants, &scopes)
                .map(|_| ())
                .expect_err("refused")
                .code()
        };
        assert_eq!(
            code(serde_json::json!({})),
            "invalid_client_metadata",
            "default authorization_code is not allowed"
        );
        assert_eq!(
            code(serde_json::json!({"grant_types": ["password"]})),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(serde_json::json!({"grant_types": ["client_credentials"], "scope": "admin"})),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(
                serde_json::json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt"})
            ),
            "invalid_client_metadata",
            "private_key_jwt without keys"
        );
        assert_eq!(
            code(
                serde_json::json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}})
            ),
            "invalid_client_metadata",
            "a symmetric key"
        );
        assert_eq!(
            code(serde_json::json!({"grant_types": ["client_credentials"], "jwks": {"keys": []}})),
            "invalid_client_metadata",
            "keys without private_key_jwt"
        );
        let by_uri = |uri: &str, jwks: Option<serde_json::Value>| {
            let mut m = serde_json::json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": uri});
            if let Some(j) = jwks {
                m["jwks"] = j;
            }
            validate(meta(m), &grants, &scopes)
        };
        let ok = by_uri("https://billing.example/jwks.json", None).expect("a jwks_uri");
        assert_eq!(
            ok.jwks_uri.as_deref(),
            Some("https://billing.example/jwks.json")
        );
        assert_eq!(ok.jwks, None);
        for (uri, jwks, what) in [
            (
                "http://billing.example/jwks.json",
                None,
                "plain http off loopback",
            ),
            (
                "https://billing.example/jwks.json",
                Some(serde_json::json!({"keys": []})),
                "both jwks and jwks_uri",
            ),
            ("not a url", None, "not a URL"),
        ] {
            let refused = by_uri(uri, jwks).map(|_| ()).expect_err(what);
            assert_eq!(refused.code(), "invalid_client_metadata", "{what}");
        }
        assert_eq!(
            code(
                serde_json::json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"})
            ),
            "invalid_client_metadata"
        );
        assert_eq!(
            code(
                serde_json::json!({"grant_types": ["client_credentials"], "redirect_uris": ["http://example.com/cb"]})
            ),
            "invalid_redirect_uri"
        );
        let any = validate(meta(serde_json::json!({"redirect_uris": []})), &[], &scopes);
        assert_eq!(
            any.map(|_| ()).expect_err("refused").code(),
            "invalid_redirect_uri",
            "authorization_code needs a redirect URI"
        );
    }

    #[test]
    fn redirect_uris_follow_the_crd_rules() {
        assert!(check_redirect_uri("https://app.example.com/cb").is_ok());
        assert!(check_redirect_uri("http://localhost:8080/cb").is_ok());
        assert!(check_redirect_uri("http://127.0.0.1/cb").is_ok());
        assert!(check_redirect_uri("http://example.com/cb").is_err());
        assert!(check_redirect_uri("https://app.example.com/cb#frag").is_err());
        assert!(check_redirect_uri("/relative").is_err());
        assert!(check_redirect_uri("").is_err());
    }

    #[test]
    fn an_empty_policy_allows_every_supported_grant_and_duplicates_collapse() {
        let ok = validate(
            meta(serde_json::json!({
                "grant_types": ["authorization_code", "refresh_token", "authorization_code"],
                "redirect_uris": ["https://app.example.com/cb"],
                "token_endpoint_auth_method": "none",
            })),
            &[],
            &[],
        )
        .expect("valid");
        assert_eq!(
            ok.grant_types,
            vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
        );
        assert_eq!(ok.auth_method, AuthMethod::None);
        assert!(ok.scopes.is_empty());
    }

    #[test]
    fn auth_methods_round_trip() {
        for m in [
            AuthMethod::Basic,
            AuthMethod::Post,
            AuthMethod::PrivateKeyJwt,
            AuthMethod::None,
        ] {
            assert_eq!(AuthMethod::parse(Some(m.as_str())), Some(m));
        }
        assert_eq!(AuthMethod::parse(None), Some(AuthMethod::Basic));
        assert_eq!(AuthMethod::parse(Some("tls_client_auth")), None);
    }
}
