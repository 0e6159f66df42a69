//! The sign-in session (single sign-on): after one sign-in, every other application of
//! this issuer gets its code without asking again, until the session ends.
//!
//! The session is a sealed cookie ([`crate::auth::seal`]), so it is valid on every replica
//! without being stored; its lifetime is `--session-lifetime`. Logging out
//! (`end_session_endpoint`, [`super::logout`]) clears the cookie and records the session
//! id as revoked, through the same `RevokedToken`s as token revocation, so a copy of the
//! cookie is refused on every replica too. A session whose user was disabled or deleted
//! since does not count.

use std::sync::Arc;

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

use super::{issuer_path, read_cookie};
use crate::auth::seal::Purpose;
use crate::index::UserEntry;
use crate::server::AppState;

const COOKIE: &str = "oauth_session";

/// What the session cookie holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Session {
    /// The session id: ID tokens carry it as `sid`, logout revokes it.
    pub id: String,
    pub subject: String,
    pub username: String,
    /// When the user signed in (Unix seconds).
    pub auth_time: i64,
}

/// The browser's session and its user, if it has a live one.
pub fn current(
    state: &AppState,
    headers: &HeaderMap,
    now: i64,
) -> Option<(Session, Arc<UserEntry>)> {
    let keys = state.index.keys()?;
    let session: Session = read_cookie(headers, COOKIE)
        .and_then(|c| keys.sealer.as_ref()?.open(Purpose::Session, &c, now))?;
    if state.index.is_revoked(&session.id) {
        return None;
    }
    let user = state
        .index
        .user_by_subject(&session.subject)
        .filter(|u| u.enabled && u.name == session.username)?;
    Some((session, user))
}

/// The `Set-Cookie` value that starts `session`, or `None` when it cannot be sealed (the
/// sign-in then simply has no session).
pub fn start(state: &AppState, session: &Session, now: i64) -> Option<String> {
    let lifetime = state.config.session_lifetime_seconds;
    let sealed = state
        .index
        .keys()?
        .sealer
        .as_ref()?
        .seal(Purpose::Session, now + lifetime, session)
        .ok()?;
    Some(cookie(state, &sealed, lifetime))
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn end(state: &AppState) -> String {
    cookie(state, "", 0)
}

/// HttpOnly, SameSite=Lax (sent on the top-level navigation an application starts a
/// sign-in with, never on another site's POST or fetch), for every path of the issuer,
/// Secure unless the issuer is plain HTTP.
fn cookie(state: &AppState, value: &str, max_age: i64) -> String {
    let issuer = &state.config.issuer;
    let secure = if issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{COOKIE}={value}; Path={}/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}",
        issuer_path(issuer)
    )
}
