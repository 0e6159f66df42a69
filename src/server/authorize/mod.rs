//! `GET /authorize` and its sign-in form: the front channel of the authorization code
//! grant (RFC 6749 section 4.1), for built-in users ([`crate::api::OAuthUser`]).
//!
//! Nothing here writes to the API server, so an unauthenticated visitor can make the
//! server store nothing. The validated request travels in a cookie, sealed
//! ([`crate::auth::seal`]) and named after a random request id that the form carries
//! too: the form posts only from the browser that started the request (the cookie is
//! HttpOnly, SameSite=Lax, and no other site can read the id), which is the CSRF
//! protection, and several tabs may sign in at once. The authorization code is sealed
//! the same way and holds everything the token endpoint needs; it becomes single use
//! when the token endpoint redeems it by creating its `OAuthGrant`
//! (`super::token::authorization_code`).
//!
//! A sign-in may also go through an upstream provider (`super::upstream`), which ends
//! the same way: [`open_pending`] checks the pending request, [`issue_code`] answers.
//! Such a sign-in starts no sign-in session (the session re-reads its user from the
//! index, which holds built-in users only).
//!
//! A sign-in starts a sign-in session ([`session`]): later requests of any client from
//! the same browser get their code at once, unless they ask `prompt=login` or a
//! `max_age` the session is older than; `prompt=none` without one answers
//! `login_required`.

mod logout;
pub(crate) mod page;
pub mod request;
mod session;

pub use logout::logout;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::OAuthError;
use super::form::Form;
use crate::auth::hash;
use crate::auth::seal::Purpose;
use crate::auth::token::UpstreamUser;
use crate::index::{ClientEntry, UserEntry};
use request::{Authorization, Refusal};

/// How long a sign-in form stays usable.
const PENDING_LIFETIME: i64 = 600;
/// How long an authorization code is valid (RFC 6749 section 4.1.2 recommends at most
/// ten minutes; a browser redirect takes a second).
pub const CODE_LIFETIME: i64 = 60;

/// The pending request, sealed in its cookie.
#[derive(Serialize, Deserialize)]
struct Pending {
    id: String,
    authorization: Authorization,
}

/// What an authorization code holds.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Code {
    /// The id of the grant its redemption creates, which its tokens carry.
    pub grant_id: String,
    pub client_id: String,
    pub client_uid: Option<String>,
    pub redirect_uri: String,
    pub challenge: String,
    pub scope: Vec<String>,
    /// The targets the request named (`resource` or `audience`), decided again at `/token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Vec<String>>,
    pub nonce: Option<String>,
    /// The user's subject (their `OAuthUser`'s UID) and username.
    pub subject: String,
    pub username: String,
    /// Unix seconds.
    pub auth_time: i64,
    /// The sign-in session the code was issued in: the ID token's `sid`.
    #[serde(default)]
    pub session_id: Option<String>,
    /// For a user of an upstream provider (who is in no index): who they are. `None` for
    /// a built-in user, whom redemption reads from the index as they are then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamUser>,
}

/// `GET /authorize`.
#[tracing::instrument(name = "authorize", skip_all, fields(client_id = tracing::field::Empty, source = %peer.ip()))]
pub async fn authorize(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = request::params(query.as_deref().unwrap_or(""));
    let client = request::client_id(&params).and_then(|id| state.index.client(id));
    if let Some(c) = &client {
        tracing::Span::current().record("client_id", c.client_id.as_str());
    }
    let checked = request::check(&params, client.as_deref()).and_then(|a| match &client {
        Some(c) => request::decide_target(&state, c, &params, a),
        None => Ok(a),
    });
    let authorization = match checked {
        Ok(a) => a,
        Err(refusal) => {
            tracing::info!(target: "audit", event = "authorization_refused", reason = refusal_reason(&refusal), source = %peer.ip());
            return refused(&state, refusal);
        }
    };
    let now = jiff::Timestamp::now().as_second();
    let signed_in = session::current(&state, &headers, now).filter(|(s, _)| {
        !authorization.force_login
            && authorization
                .max_age
                .is_none_or(|max| now - s.auth_time <= max)
    });
    if let Some((s, user)) = signed_in {
        tracing::info!(target: "audit", event = "session_reused", username = %user.name, client_id = %authorization.client_id, source = %peer.ip());
        return send_code(
            &state,
            &authorization,
            Who::Local(&user),
            s.auth_time,
            Some(s.id),
            None,
        );
    }
    if authorization.no_prompt {
        return refused(
            &state,
            Refusal::Redirect {
                redirect_uri: authorization.redirect_uri,
                state: authorization.state,
                error: "login_required",
                description: "the user must sign in",
            },
        );
    }
    let Some(client) = client else {
        return page::error(StatusCode::BAD_REQUEST, "Unknown application.");
    };
    let Ok(id) = crate::auth::secret::random_id() else {
        return unavailable();
    };
    let pending = Pending {
        id: id.clone(),
        authorization,
    };
    let Some(sealed) = state.index.keys().and_then(|k| {
        k.sealer.as_ref().and_then(|s| {
            s.seal(Purpose::PendingRequest, now + PENDING_LIFETIME, &pending)
                .ok()
        })
    }) else {
        return unavailable();
    };
    let mut res = sign_in_page(&state, &client, &id, "", None);
    if let Ok(cookie) = HeaderValue::from_str(&cookie(&state, &id, &sealed, PENDING_LIFETIME)) {
        res.headers_mut().append(header::SET_COOKIE, cookie);
    }
    res
}

/// `POST /authorize/login`: the sign-in form.
#[tracing::instrument(name = "sign_in", skip_all, fields(client_id = tracing::field::Empty, source = %peer.ip()))]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form, OAuthError>,
) -> Response {
    let Ok(form) = form else {
        return page::error(
            StatusCode::BAD_REQUEST,
            "The sign-in form was not sent whole.",
        );
    };
    let id = form.get("request").unwrap_or_default();
    let (auth, client) = match open_pending(&state, &headers, id) {
        Ok(pending) => pending,
        Err(res) => return res,
    };
    let now = jiff::Timestamp::now().as_second();
    // Usernames are Kubernetes object names: lowercase.
    let username = form
        .get("username")
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let password = crate::auth::secret::SecretString::new(
        form.get("password").unwrap_or_default().to_string(),
    );
    let user = match check_password(&state, &username, password).await {
        Ok(user) => user,
        Err(SignInError::Unavailable) => return unavailable(),
        Err(SignInError::Refused) => {
            tracing::info!(target: "audit", event = "sign_in_refused", username, client_id = %auth.client_id, source = %peer.ip());
            return sign_in_page(
                &state,
                &client,
                id,
                &username,
                Some("Incorrect username or password."),
            );
        }
    };
    tracing::info!(target: "audit", event = "user_signed_in", username = %user.name, client_id = %auth.client_id, source = %peer.ip());
    let Ok(session_id) = crate::auth::secret::random_id() else {
        return unavailable();
    };
    let new_session = session::Session {
        id: session_id.clone(),
        subject: user.uid.clone(),
        username: user.name.clone(),
        auth_time: now,
    };
    let mut res = send_code(
        &state,
        &auth,
        Who::Local(&user),
        now,
        Some(session_id),
        session::start(&state, &new_session, now),
    );
    if let Ok(gone) = HeaderValue::from_str(&cookie(&state, id, "", 0)) {
        res.headers_mut().append(header::SET_COOKIE, gone);
    }
    res
}

/// The pending request `id` of this browser (its sealed cookie, for the same id) and its
/// client, if that is still the one it was for, active and with the redirect URI; an
/// error page otherwise.
#[allow(clippy::result_large_err)]
pub(crate) fn open_pending(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<(Authorization, std::sync::Arc<ClientEntry>), Response> {
    let expired = || {
        page::error(
            StatusCode::BAD_REQUEST,
            "This sign-in page has expired, or was not opened in this browser.",
        )
    };
    if !is_request_id(id) {
        return Err(expired());
    }
    let now = jiff::Timestamp::now().as_second();
    let keys = state.index.keys();
    let Some(sealer) = keys.as_ref().and_then(|k| k.sealer.as_ref()) else {
        return Err(unavailable());
    };
    let Some(pending) = read_cookie(headers, &cookie_name(id))
        .and_then(|c| sealer.open::<Pending>(Purpose::PendingRequest, &c, now))
        .filter(|p| bool::from(p.id.as_bytes().ct_eq(id.as_bytes())))
    else {
        return Err(expired());
    };
    let auth = pending.authorization;
    tracing::Span::current().record("client_id", auth.client_id.as_str());
    // The client may have changed since the form was shown.
    let Some(client) = state
        .index
        .client(&auth.client_id)
        .filter(|c| c.uid == auth.client_uid && c.active)
        .filter(|c| {
            crate::auth::redirect::matching(&c.redirect_uris, &auth.redirect_uri).is_some()
        })
    else {
        return Err(page::error(
            StatusCode::BAD_REQUEST,
            "The application is no longer allowed to sign you in.",
        ));
    };
    Ok((auth, client))
}

/// The end of a sign-in through an upstream provider: the code, sent to the client's
/// redirect URI, and the pending request's cookie dropped.
pub(crate) fn issue_code(
    state: &AppState,
    id: &str,
    auth: &Authorization,
    subject: String,
    username: String,
    upstream: Option<UpstreamUser>,
) -> Response {
    let now = jiff::Timestamp::now().as_second();
    let who = Who::Upstream {
        subject,
        username,
        upstream,
    };
    let mut res = send_code(state, auth, who, now, None, None);
    if let Ok(gone) = HeaderValue::from_str(&cookie(state, id, "", 0)) {
        res.headers_mut().append(header::SET_COOKIE, gone);
    }
    res
}

/// Whom a code is for.
enum Who<'a> {
    /// A built-in user.
    Local(&'a UserEntry),
    /// A user of an upstream provider, with what the provider said.
    Upstream {
        subject: String,
        username: String,
        upstream: Option<UpstreamUser>,
    },
}

/// Redirects to the client with a new code for `who`, and `session_cookie` set.
fn send_code(
    state: &AppState,
    auth: &Authorization,
    who: Who<'_>,
    auth_time: i64,
    session_id: Option<String>,
    session_cookie: Option<String>,
) -> Response {
    let (subject, username, upstream) = match who {
        Who::Local(user) => (user.uid.clone(), user.name.clone(), None),
        Who::Upstream {
            subject,
            username,
            upstream,
        } => (subject, username, upstream),
    };
    let now = jiff::Timestamp::now().as_second();
    let Ok(grant_id) = crate::auth::secret::random_id() else {
        return unavailable();
    };
    let code = Code {
        grant_id,
        client_id: auth.client_id.clone(),
        client_uid: auth.client_uid.clone(),
        redirect_uri: auth.redirect_uri.clone(),
        challenge: auth.challenge.clone(),
        scope: auth.scope.clone(),
        resource: auth.resource.clone(),
        nonce: auth.nonce.clone(),
        subject,
        username,
        auth_time,
        session_id,
        upstream,
    };
    let Some(sealed) = state.index.keys().and_then(|k| {
        k.sealer
            .as_ref()
            .and_then(|s| s.seal(Purpose::Code, now + CODE_LIFETIME, &code).ok())
    }) else {
        return unavailable();
    };
    let mut params = vec![("code", sealed.as_str())];
    if let Some(s) = &auth.state {
        params.push(("state", s));
    }
    params.push(("iss", &state.config.issuer));
    let mut res = see_other(&request::redirect_with(&auth.redirect_uri, &params));
    if let Some(c) = session_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

enum SignInError {
    /// Wrong username or password, a disabled user, or a locked one: one answer for all.
    Refused,
    /// Too many password checks queued.
    Unavailable,
}

/// Checks a password like a client secret: off the async workers, bounded in number,
/// with the same work for an unknown user, and the lockout per username.
async fn check_password(
    state: &AppState,
    username: &str,
    password: crate::auth::secret::SecretString,
) -> Result<std::sync::Arc<UserEntry>, SignInError> {
    let started = std::time::Instant::now();
    let user = state.index.user(username).filter(|u| u.enabled);
    if user.is_some() && state.user_lockout.locked(username, started).is_some() {
        state.metrics.locked_refusals.inc();
        return Err(SignInError::Refused);
    }
    let phc = user.as_ref().map(|u| u.password_hash.clone());
    let matched = state
        .hashing
        .run(move || match phc {
            Some(phc) => hash::verify(password.expose(), &phc),
            None => {
                hash::verify_decoy(password.expose());
                false
            }
        })
        .await
        .map_err(|_| SignInError::Unavailable)?;
    match (user, matched) {
        (Some(u), true) => {
            state.user_lockout.success(username);
            Ok(u)
        }
        (Some(_), false) => {
            if let Some(wait) = state.user_lockout.failure(username, started) {
                state.metrics.lockouts.inc();
                tracing::warn!(target: "audit", event = "user_locked", username, seconds = wait.as_secs(), "too many failed sign-ins");
            }
            Err(SignInError::Refused)
        }
        (None, _) => Err(SignInError::Refused),
    }
}

/// The groups of `user` that `client` may see.
pub fn visible_groups(user: &UserEntry, client: &ClientEntry) -> Vec<String> {
    allowed_groups(&user.groups, client)
}

/// Which of `groups` `client` may see: a built-in user's or an upstream provider's.
pub fn allowed_groups(groups: &[String], client: &ClientEntry) -> Vec<String> {
    groups
        .iter()
        .filter(|g| client.allowed_groups.as_ref().is_none_or(|a| a.contains(g)))
        .cloned()
        .collect()
}

fn sign_in_page(
    state: &AppState,
    client: &ClientEntry,
    id: &str,
    username: &str,
    error: Option<&str>,
) -> Response {
    let action = format!(
        "{}/authorize/login",
        state.config.issuer.trim_end_matches('/')
    );
    let upstreams = super::upstream::sign_in_links(state, id);
    page::sign_in(&page::SignIn {
        application: client.display_name.as_deref().unwrap_or(&client.client_id),
        action: &action,
        request: id,
        username,
        error,
        upstreams: &upstreams,
    })
}

fn refused(state: &AppState, refusal: Refusal) -> Response {
    match refusal {
        Refusal::Page(message) => page::error(StatusCode::BAD_REQUEST, message),
        Refusal::Redirect {
            redirect_uri,
            state: client_state,
            error,
            description,
        } => {
            let mut params = vec![("error", error), ("error_description", description)];
            if let Some(s) = &client_state {
                params.push(("state", s));
            }
            params.push(("iss", &state.config.issuer));
            see_other(&request::redirect_with(&redirect_uri, &params))
        }
    }
}

fn refusal_reason(r: &Refusal) -> &'static str {
    match r {
        Refusal::Page(_) => "unknown_client_or_redirect_uri",
        Refusal::Redirect { error, .. } => error,
    }
}

pub(crate) fn unavailable() -> Response {
    let mut res = page::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "The sign-in service is busy or starting; try again in a moment.",
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

/// 303: the browser follows with a GET, whatever method brought it here.
pub(crate) fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(loc) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, loc),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                ),
            ],
        )
            .into_response(),
        Err(_) => page::error(
            StatusCode::BAD_REQUEST,
            "The application's address is not valid.",
        ),
    }
}

fn cookie_name(id: &str) -> String {
    format!("oauth_authz_{id}")
}

/// Request ids are [`crate::auth::secret::random_id`]s: 22 base64url characters, safe in
/// a cookie name.
pub(crate) fn is_request_id(id: &str) -> bool {
    id.len() == 22
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The `Set-Cookie` value of a pending request: HttpOnly, SameSite=Lax (the form posts
/// from this site; Lax still lets the upstream's redirect back carry it), scoped to the
/// authorize path, Secure unless the issuer is plain HTTP (loopback development).
fn cookie(state: &AppState, id: &str, value: &str, max_age: i64) -> String {
    set_cookie(state, &cookie_name(id), value, max_age)
}

/// A `Set-Cookie` value of the sign-in's cookies, as [`cookie`] describes.
pub(crate) fn set_cookie(state: &AppState, name: &str, value: &str, max_age: i64) -> String {
    let issuer = &state.config.issuer;
    let secure = if issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{name}={value}; Path={}/authorize; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}",
        issuer_path(issuer)
    )
}

/// The path of the issuer URL without a trailing slash (`""` for a bare origin), where
/// the server's routes appear to the browser.
fn issuer_path(issuer: &str) -> &str {
    let after_scheme = issuer.split_once("://").map_or(issuer, |(_, rest)| rest);
    after_scheme
        .find('/')
        .map_or("", |i| after_scheme[i..].trim_end_matches('/'))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_path_follows_the_issuer_path() {
        assert_eq!(issuer_path("https://id.example.com"), "");
        assert_eq!(issuer_path("https://id.example.com/"), "");
        assert_eq!(issuer_path("https://id.example.com/oauth/"), "/oauth");
        assert_eq!(issuer_path("http://127.0.0.1:8080/a/b"), "/a/b");
    }

    #[test]
    fn cookies_are_read_from_every_cookie_header() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; oauth_authz_x=v2"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=3"));
        assert_eq!(read_cookie(&h, "oauth_authz_x").as_deref(), Some("v2"));
        assert_eq!(read_cookie(&h, "b").as_deref(), Some("3"));
        assert_eq!(read_cookie(&h, "c"), None);
    }

    #[test]
    fn request_ids_are_what_random_id_makes() {
        let id = crate::auth::secret::random_id().expect("random");
        assert!(is_request_id(&id));
        assert!(!is_request_id("x; Path=/"));
        assert!(!is_request_id(""));
    }
}
