//! `GET` and `POST /logout`: the `end_session_endpoint` of OpenID Connect RP-Initiated
//! Logout 1.0. It ends the browser's sign-in session ([`super::session`]): the cookie is
//! cleared and the session id recorded as revoked, so a copy of the cookie is refused on
//! every replica. Tokens already issued stay valid until they expire or are revoked.
//!
//! An application sends the browser here with `id_token_hint` (an ID token it got,
//! expired or not) and may name a `post_logout_redirect_uri`, which must be one the client
//! registered exactly (`spec.postLogoutRedirectUris`): no open redirect. Without a valid
//! hint, a `GET` only shows a button that posts the logout, so that another site cannot
//! sign a user out with a link (a cross-site `POST` carries no SameSite=Lax cookie).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;

use super::request::{Params, params, redirect_with};
use super::{page, see_other, session, unavailable};
use crate::auth::token::IdTokenClaims;
use crate::server::AppState;
use crate::server::form::has_media_type;

pub async fn logout(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let p: Params = if method == Method::POST
        && has_media_type(&headers, "application/x-www-form-urlencoded")
    {
        params(&String::from_utf8_lossy(&body))
    } else {
        params(query.as_deref().unwrap_or(""))
    };
    let one = |name: &str| match p.get(name).map(Vec::as_slice) {
        Some([v]) if !v.is_empty() => Some(v.as_str()),
        _ => None,
    };
    let hint: Option<IdTokenClaims> = one("id_token_hint").and_then(|t| {
        state
            .index
            .keys()?
            .verify_ignoring_expiry(t, &state.config.issuer)
    });
    let client_id = hint
        .as_ref()
        .map(|h| h.aud.clone())
        .or(one("client_id").map(str::to_string));
    let client = client_id.as_deref().and_then(|id| state.index.client(id));
    let back = match one("post_logout_redirect_uri") {
        None => None,
        Some(uri)
            if client
                .as_ref()
                .is_some_and(|c| c.post_logout_redirect_uris.iter().any(|r| r == uri)) =>
        {
            Some(uri)
        }
        Some(_) => {
            return page::error(
                StatusCode::BAD_REQUEST,
                "The application asked to send you to an address it has not registered for after signing out.",
            );
        }
    };
    if method != Method::POST && hint.is_none() {
        let mut fields = Vec::new();
        for name in ["post_logout_redirect_uri", "state", "client_id"] {
            if let Some(v) = one(name) {
                fields.push((name, v));
            }
        }
        let action = format!("{}/logout", state.config.issuer.trim_end_matches('/'));
        return page::confirm_logout(&action, &fields);
    }
    let now = jiff::Timestamp::now().as_second();
    let ended = session::current(&state, &headers, now)
        .map(|(s, _)| s.id)
        .or_else(|| hint.as_ref().and_then(|h| h.sid.clone()));
    if let Some(id) = &ended {
        let until = now + state.config.session_lifetime_seconds;
        let owner = client_id.as_deref().unwrap_or("-");
        if crate::server::revoke::record(&state, id, owner, until)
            .await
            .is_err()
        {
            return unavailable();
        }
        tracing::info!(target: "audit", event = "signed_out", client_id = owner, source = %peer.ip());
    }
    let mut res = match back {
        Some(uri) => {
            let mut q = Vec::new();
            if let Some(s) = one("state") {
                q.push(("state", s));
            }
            if q.is_empty() {
                see_other(uri)
            } else {
                see_other(&redirect_with(uri, &q))
            }
        }
        None => page::signed_out(),
    };
    if let Ok(gone) = HeaderValue::from_str(&session::end(&state)) {
        res.headers_mut().append(header::SET_COOKIE, gone);
    }
    res
}
