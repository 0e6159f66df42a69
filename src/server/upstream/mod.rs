//! Sign-in through an upstream OpenID Connect provider (`OAuthUpstream`): the token
//! server is then a relying party of the provider and, to its own clients, the provider
//! (federation, as Dex and the Pinniped Supervisor do it).
//!
//! The flow, in two legs, nothing written to the API server:
//! 1. `GET /authorize/upstream/{name}?request=<id>` (a link on the sign-in page): the
//!    pending request is checked as the password form checks it
//!    ([`super::authorize::open_pending`]); the browser is sent to the provider's
//!    `authorization_endpoint` with `response_type=code`, our client id, the redirect URI
//!    `<issuer>/authorize/callback`, the scopes, a fresh `state` and `nonce`, and a PKCE
//!    S256 challenge. State, nonce and verifier are bound to this browser in a second
//!    sealed cookie ([`Purpose::UpstreamRequest`]; HttpOnly, SameSite=Lax, since the
//!    callback is a top-level GET navigation from the provider's origin, which Lax lets
//!    carry cookies; Path=/authorize; 10 minutes), named after the state so that several
//!    tabs may sign in at once.
//! 2. `GET /authorize/callback?code&state[&iss]`: the cookie of that state opens, its
//!    state equals the query's (constant time), `iss` (RFC 9207), when sent, is the
//!    provider's; the code is exchanged at the provider's token endpoint as a
//!    confidential client (`client_secret_basic`) with the PKCE verifier; the ID token is
//!    verified ([`id_token`]: signature by the provider's JWK Set, `iss`, `aud`, `azp`,
//!    `exp`, `iat`, `nonce`); its claims are mapped to the user; and our own code is
//!    issued exactly as for a built-in user ([`super::authorize::issue_code`]).
//!
//! Every failure is an error page (status 400 for the browser's side, 502 for the
//! provider's, 503 when not configured), never a redirect to the client with the
//! provider's details, and an audit line with a bounded reason and no secret.
//!
//! Who the user is, for us: the subject (`sub` of our tokens) is [`local_subject`],
//! `upstream:` and the base64url SHA-256 of the provider's issuer and its `sub`. The
//! pair (`iss`, `sub`) is what OpenID Connect Core (section 5.7) names as the only
//! stable identifier of a user; hashing it gives a subject of fixed length that carries
//! no personal data (some providers' `sub` is an email or an employee number), that
//! stays the same when the `OAuthUpstream` is renamed or its client re-registered, and
//! that cannot collide with a built-in user's (a UID, with no `:`).
//!
//! Upstream users are in no index, so their claims travel with them: in the sealed code
//! (`Code::upstream`) and, after redemption, in the access token as the private claim
//! `upstream` ([`UpstreamUser`]: the provider's name and UID, the username, name,
//! email, and the groups the client may see). That is the simplest correct place: the
//! token is signed, so the claims cannot be changed, and nothing is stored. `/userinfo`
//! and introspection answer from it while the same `OAuthUpstream` (by UID) exists
//! ([`user`]): deleting the provider ends its users' tokens. The claims are those of the
//! sign-in: a change at the provider shows at the next sign-in.

mod id_token;
pub(super) mod provider;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use subtle::ConstantTimeEq;

pub use provider::Providers;

use super::AppState;
use super::authorize::{self, page, request};
use crate::auth::seal::Purpose;
use crate::auth::token::UpstreamUser;
use crate::index::{UpstreamEntry, UserEntry};

/// How long the upstream leg may take: the user signs in at the provider meanwhile.
const LEG_LIFETIME: i64 = 600;

/// The upstream leg of a sign-in, sealed in its cookie.
#[derive(Serialize, Deserialize)]
struct Leg {
    /// The pending request's id: its cookie holds the client's request.
    request: String,
    upstream: String,
    upstream_uid: String,
    state: String,
    nonce: String,
    verifier: String,
}

/// The subject of an upstream user in our tokens (see the module doc).
pub fn local_subject(issuer: &str, sub: &str) -> String {
    let mut h = sha2::Sha256::new();
    h.update(issuer.as_bytes());
    h.update([0]);
    h.update(sub.as_bytes());
    format!("upstream:{}", URL_SAFE_NO_PAD.encode(h.finalize()))
}

/// The redirect URI registered at every provider.
pub fn callback_url(issuer: &str) -> String {
    format!("{}/authorize/callback", issuer.trim_end_matches('/'))
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The link that starts a sign-in through `upstream` for pending request `id`.
pub fn start_url(issuer: &str, upstream: &str, id: &str) -> String {
    format!(
        "{}/authorize/upstream/{}?request={}",
        issuer.trim_end_matches('/'),
        enc(upstream),
        enc(id)
    )
}

/// The sign-in page's links: one per provider, by name.
pub fn sign_in_links(state: &AppState, id: &str) -> Vec<(String, String)> {
    state
        .index
        .upstreams()
        .iter()
        .map(|u| {
            (
                u.display_name.clone(),
                start_url(&state.config.issuer, &u.name, id),
            )
        })
        .collect()
}

/// The authorization request to the provider (OpenID Connect Core section 3.1.2.1).
pub fn authorization_url(
    endpoint: &str,
    upstream: &UpstreamEntry,
    redirect_uri: &str,
    state: &str,
    nonce: &str,
    challenge: &str,
) -> String {
    let scope = upstream.scopes.join(" ");
    request::redirect_with(
        endpoint,
        &[
            ("response_type", "code"),
            ("client_id", &upstream.client_id),
            ("redirect_uri", redirect_uri),
            ("scope", &scope),
            ("state", state),
            ("nonce", nonce),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ],
    )
}

/// A PKCE verifier (256 random bits, 43 characters) and its S256 challenge.
fn pkce() -> Result<(String, String), crate::auth::secret::RandomError> {
    let verifier = URL_SAFE_NO_PAD.encode(crate::auth::secret::random_bytes::<32>()?);
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    Ok((verifier, challenge))
}

/// The one value of a query parameter; `None` when absent or repeated.
fn single<'a>(params: &'a request::Params, name: &str) -> Option<&'a str> {
    match params.get(name).map(Vec::as_slice) {
        Some([v]) => Some(v.as_str()),
        _ => None,
    }
}

fn leg_cookie_name(state: &str) -> String {
    format!("oauth_upstream_{state}")
}

/// The user a code or token was issued to: a built-in user as the index has them now
/// (and enabled), or an upstream provider's user as the code or token carries them, while
/// their provider (the same `OAuthUpstream`, by UID) is still there. `None`: the code
/// or token no longer stands for anyone.
pub fn user(
    state: &AppState,
    subject: &str,
    upstream: Option<&UpstreamUser>,
) -> Option<Arc<UserEntry>> {
    match upstream {
        None => state.index.user_by_subject(subject).filter(|u| u.enabled),
        Some(u) => state
            .index
            .upstream(&u.upstream)
            .filter(|e| e.uid == u.upstream_uid)
            .map(|_| {
                Arc::new(UserEntry {
                    name: u.username.clone(),
                    uid: subject.to_string(),
                    display_name: u.name.clone(),
                    email: u.email.clone(),
                    groups: u.groups.clone(),
                    enabled: true,
                    // Never checked: upstream users sign in at their provider.
                    password_hash: String::new(),
                })
            }),
    }
}

/// A refused sign-in: what the person sees, and the audit log's reason.
struct Failure {
    status: StatusCode,
    message: &'static str,
    reason: &'static str,
}

impl Failure {
    fn browser(message: &'static str, reason: &'static str) -> Self {
        Failure {
            status: StatusCode::BAD_REQUEST,
            message,
            reason,
        }
    }

    fn provider(reason: &'static str) -> Self {
        Failure {
            status: StatusCode::BAD_GATEWAY,
            message: "The identity provider could not sign you in.",
            reason,
        }
    }

    fn not_configured(reason: &'static str) -> Self {
        Failure {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "Signing in with this identity provider is not configured on this server.",
            reason,
        }
    }
}

const EXPIRED: &str = "This sign-in page has expired, or was not opened in this browser.";

/// `GET /authorize/upstream/{name}?request=<id>`: starts a sign-in through a provider.
#[tracing::instrument(name = "upstream_sign_in", skip_all, fields(client_id = tracing::field::Empty, upstream = %name, source = %peer.ip()))]
pub async fn start(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = request::params(query.as_deref().unwrap_or(""));
    let id = single(&params, "request").unwrap_or_default();
    let (auth, _) = match authorize::open_pending(&state, &headers, id) {
        Ok(pending) => pending,
        Err(res) => return res,
    };
    match redirect_to_provider(&state, &name, id).await {
        Ok(res) => res,
        Err(f) => {
            tracing::info!(target: "audit", event = "upstream_sign_in_refused", upstream = %name, client_id = %auth.client_id, reason = f.reason, source = %peer.ip());
            page::error(f.status, f.message)
        }
    }
}

async fn redirect_to_provider(state: &AppState, name: &str, id: &str) -> Result<Response, Failure> {
    let upstream = state.index.upstream(name).ok_or(Failure::browser(
        "This identity provider is not known to this server.",
        "unknown_upstream",
    ))?;
    if state.index.upstream_secret(&upstream).is_none() {
        tracing::warn!(upstream = %upstream.name, key = %upstream.client_secret_key, "the upstream Secret has no client secret for this provider");
        return Err(Failure::not_configured("no_client_secret"));
    }
    let metadata = state.upstreams.metadata(&upstream).await.map_err(|e| {
        tracing::warn!(upstream = %upstream.name, error = %e, "the provider's discovery failed");
        Failure::provider(e.reason())
    })?;
    let unavailable = || Failure {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "The sign-in service is busy or starting; try again in a moment.",
        reason: "unavailable",
    };
    let (Ok(leg_state), Ok(nonce), Ok((verifier, challenge))) = (
        crate::auth::secret::random_id(),
        crate::auth::secret::random_id(),
        pkce(),
    ) else {
        return Err(unavailable());
    };
    let location = authorization_url(
        &metadata.authorization_endpoint,
        &upstream,
        &callback_url(&state.config.issuer),
        &leg_state,
        &nonce,
        &challenge,
    );
    let leg = Leg {
        request: id.to_string(),
        upstream: upstream.name.clone(),
        upstream_uid: upstream.uid.clone(),
        state: leg_state.clone(),
        nonce,
        verifier,
    };
    let now = jiff::Timestamp::now().as_second();
    let keys = state.index.keys();
    let sealed = keys
        .as_ref()
        .and_then(|k| k.sealer.as_ref())
        .and_then(|s| {
            s.seal(Purpose::UpstreamRequest, now + LEG_LIFETIME, &leg)
                .ok()
        })
        .ok_or_else(unavailable)?;
    let mut res = authorize::see_other(&location);
    let cookie = authorize::set_cookie(state, &leg_cookie_name(&leg_state), &sealed, LEG_LIFETIME);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(res)
}

/// `GET /authorize/callback`: the provider sends the browser back here.
#[tracing::instrument(name = "upstream_callback", skip_all, fields(client_id = tracing::field::Empty, source = %peer.ip()))]
pub async fn callback(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = request::params(query.as_deref().unwrap_or(""));
    let Some(leg_state) = single(&params, "state").filter(|s| authorize::is_request_id(s)) else {
        return page::error(StatusCode::BAD_REQUEST, EXPIRED);
    };
    let now = jiff::Timestamp::now().as_second();
    let keys = state.index.keys();
    let Some(sealer) = keys.as_ref().and_then(|k| k.sealer.as_ref()) else {
        return authorize::unavailable();
    };
    let cookie_name = leg_cookie_name(leg_state);
    let Some(leg) = authorize::read_cookie(&headers, &cookie_name)
        .and_then(|c| sealer.open::<Leg>(Purpose::UpstreamRequest, &c, now))
        .filter(|l| bool::from(l.state.as_bytes().ct_eq(leg_state.as_bytes())))
    else {
        tracing::info!(target: "audit", event = "upstream_sign_in_refused", reason = "no_matching_state", source = %peer.ip());
        return page::error(StatusCode::BAD_REQUEST, EXPIRED);
    };
    // From here on the leg is spent, whatever happens.
    let forget = |mut res: Response| {
        if let Ok(v) = HeaderValue::from_str(&authorize::set_cookie(&state, &cookie_name, "", 0)) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
        res
    };
    let (auth, client) = match authorize::open_pending(&state, &headers, &leg.request) {
        Ok(pending) => pending,
        Err(res) => return forget(res),
    };
    match finish(&state, &leg, &auth, &client, &params).await {
        Ok(res) => forget(res),
        Err(f) => {
            tracing::info!(target: "audit", event = "upstream_sign_in_refused", upstream = %leg.upstream, client_id = %auth.client_id, reason = f.reason, source = %peer.ip());
            forget(page::error(f.status, f.message))
        }
    }
}

async fn finish(
    state: &AppState,
    leg: &Leg,
    auth: &request::Authorization,
    client: &crate::index::ClientEntry,
    params: &request::Params,
) -> Result<Response, Failure> {
    let one = |k: &str| single(params, k);
    let upstream = state
        .index
        .upstream(&leg.upstream)
        .filter(|u| u.uid == leg.upstream_uid)
        .ok_or(Failure::browser(
            "This identity provider is no longer configured on this server.",
            "upstream_gone",
        ))?;
    if one("error").is_some() {
        return Err(Failure::browser(
            "The identity provider did not sign you in.",
            "provider_refused",
        ));
    }
    // RFC 9207: a provider that says who it is must be the one we sent the browser to.
    if one("iss").is_some_and(|iss| iss != upstream.issuer) {
        return Err(Failure::browser(
            "The answer came from another identity provider.",
            "iss_mismatch",
        ));
    }
    let code = one("code").ok_or(Failure::browser(
        "The identity provider sent no authorization code.",
        "no_code",
    ))?;
    let secret = state
        .index
        .upstream_secret(&upstream)
        .ok_or(Failure::not_configured("no_client_secret"))?;
    let providers = &state.upstreams;
    let warn = |e: provider::ProviderError| {
        tracing::warn!(upstream = %upstream.name, error = %e, "the provider failed");
        Failure::provider(e.reason())
    };
    let metadata = providers.metadata(&upstream).await.map_err(warn)?;
    let id_token = providers
        .exchange(
            &metadata,
            &upstream,
            &secret,
            code,
            &callback_url(&state.config.issuer),
            &leg.verifier,
        )
        .await
        .map_err(warn)?;
    let refused = |e: id_token::IdTokenError| {
        tracing::warn!(upstream = %upstream.name, error = %e, "the provider's ID token was refused");
        Failure::provider(e.reason())
    };
    let jwks = providers
        .jwks(&metadata.jwks_uri, false)
        .await
        .map_err(warn)?;
    let claims = match id_token::verify_signature(id_token.expose(), &jwks) {
        // The provider may have rotated its keys since we fetched them: once more.
        Err(id_token::IdTokenError::UnknownKey) => {
            let jwks = providers
                .jwks(&metadata.jwks_uri, true)
                .await
                .map_err(warn)?;
            id_token::verify_signature(id_token.expose(), &jwks)
        }
        other => other,
    }
    .map_err(refused)?;
    let sub = id_token::check(
        &claims,
        &id_token::Expected {
            issuer: &upstream.issuer,
            client_id: &upstream.client_id,
            nonce: &leg.nonce,
            now: jiff::Timestamp::now().as_second(),
        },
    )
    .map_err(refused)?;
    let profile = id_token::profile(&claims, &upstream.claims, &sub);
    let groups = authorize::allowed_groups(&profile.groups, client);
    if groups.len() > id_token::MAX_GROUPS {
        return Err(refused(id_token::IdTokenError::TooManyGroups));
    }
    let subject = local_subject(&upstream.issuer, &sub);
    tracing::info!(target: "audit", event = "user_signed_in", upstream = %upstream.name, username = %profile.username, client_id = %auth.client_id);
    let user = UpstreamUser {
        upstream: upstream.name.clone(),
        upstream_uid: upstream.uid.clone(),
        username: profile.username.clone(),
        name: profile.name,
        email: profile.email,
        groups,
    };
    Ok(authorize::issue_code(
        state,
        &leg.request,
        auth,
        subject,
        profile.username,
        Some(user),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ClaimMapping;

    fn upstream() -> UpstreamEntry {
        UpstreamEntry {
            name: "corp".into(),
            uid: "uid-1".into(),
            display_name: "Corp".into(),
            issuer: "https://id.corp.test".into(),
            client_id: "our id".into(),
            client_secret_key: "corp".into(),
            scopes: vec!["openid".into(), "email".into()],
            claims: ClaimMapping::default(),
        }
    }

    #[test]
    fn the_provider_gets_a_complete_authorization_request() {
        let url = authorization_url(
            "https://id.corp.test/auth?tenant=a",
            &upstream(),
            "https://us.test/authorize/callback",
            "st",
            "no",
            "ch",
        );
        assert_eq!(
            url,
            "https://id.corp.test/auth?tenant=a&response_type=code&client_id=our+id&redirect_uri=https%3A%2F%2Fus.test%2Fauthorize%2Fcallback&scope=openid+email&state=st&nonce=no&code_challenge=ch&code_challenge_method=S256"
        );
        assert_eq!(
            callback_url("https://us.test/base/"),
            "https://us.test/base/authorize/callback"
        );
        assert_eq!(
            start_url("https://us.test", "corp", "r-1_x"),
            "https://us.test/authorize/upstream/corp?request=r-1_x"
        );
    }

    #[test]
    fn subjects_are_stable_per_issuer_and_never_a_uid() {
        let a = local_subject("https://id.corp.test", "u1");
        assert_eq!(a, local_subject("https://id.corp.test", "u1"));
        assert_ne!(a, local_subject("https://other.test", "u1"));
        assert_ne!(a, local_subject("https://id.corp.test", "u2"));
        // No ambiguity from concatenation.
        assert_ne!(
            local_subject("https://a.test", "bc"),
            local_subject("https://a.testb", "c")
        );
        assert!(a.starts_with("upstream:"));
        assert_eq!(a.len(), "upstream:".len() + 43);
    }

    #[test]
    fn pkce_pairs_verify() {
        let (verifier, challenge) = pkce().expect("random");
        assert_eq!(verifier.len(), 43);
        let c = crate::auth::pkce::Challenge::parse(Some(&challenge), Some("S256"))
            .expect("a challenge");
        assert!(c.verify(&verifier).is_ok());
    }

    #[test]
    fn the_leg_cookie_opens_only_for_its_purpose() {
        let sealer = crate::auth::seal::Sealer::new(&[7; 32]).expect("key");
        let leg = Leg {
            request: "r".into(),
            upstream: "corp".into(),
            upstream_uid: "uid-1".into(),
            state: "s".into(),
            nonce: "n".into(),
            verifier: "v".into(),
        };
        let sealed = sealer
            .seal(Purpose::UpstreamRequest, 100, &leg)
            .expect("seal");
        let opened: Option<Leg> = sealer.open(Purpose::UpstreamRequest, &sealed, 99);
        assert_eq!(opened.map(|l| l.verifier).as_deref(), Some("v"));
        assert!(
            sealer
                .open::<Leg>(Purpose::PendingRequest, &sealed, 99)
                .is_none()
        );
        assert!(
            sealer
                .open::<Leg>(Purpose::UpstreamRequest, &sealed, 100)
                .is_none()
        );
    }
}
