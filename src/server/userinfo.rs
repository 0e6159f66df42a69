//! `GET` and `POST /userinfo` (OpenID Connect Core section 5.3): the claims of the user an
//! access token was issued to, as its scopes allow. The token must be active by the same
//! rules as introspection (so a disabled user, a revoked grant or a deactivated client
//! ends it at once) and carry `openid`; the claims are read from the user as they are
//! now, not as they were at sign-in. A user of an upstream provider is in no index: the
//! claims are those their token carries from the sign-in (see `super::upstream`).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::authorize::visible_groups;
use super::client_auth::Bearer;
use super::error::OAuthError;
use super::introspect::active;

pub async fn userinfo(
    State(state): State<AppState>,
    token: Result<Bearer, OAuthError>,
) -> Response {
    match claims(&state, token) {
        Ok(value) => Json(value).into_response(),
        Err(e) => e.into_response(),
    }
}

fn claims(
    state: &AppState,
    token: Result<Bearer, OAuthError>,
) -> Result<serde_json::Value, OAuthError> {
    let Bearer(token) = token?;
    let claims = active(state, token.expose()).ok_or(OAuthError::InvalidToken)?;
    let scopes: Vec<&str> = claims.scope.as_deref().unwrap_or("").split(' ').collect();
    if claims.grant_id.is_none() || !scopes.contains(&"openid") {
        // RFC 6750 section 3.1 would say insufficient_scope; a client-credentials token
        // has no user to describe at all, so it is refused like any unusable token.
        return Err(OAuthError::InvalidToken);
    }
    let user = super::upstream::user(state, &claims.sub, claims.upstream.as_ref())
        .ok_or(OAuthError::InvalidToken)?;
    let client = state
        .index
        .client(&claims.client_id)
        .ok_or(OAuthError::InvalidToken)?;
    let mut out = json!({ "sub": user.uid });
    if scopes.contains(&"profile") {
        out["preferred_username"] = json!(user.name);
        if let Some(n) = &user.display_name {
            out["name"] = json!(n);
        }
    }
    if scopes.contains(&"email")
        && let Some(e) = &user.email
    {
        out["email"] = json!(e);
    }
    if scopes.contains(&"groups") {
        out["groups"] = json!(visible_groups(&user, &client));
    }
    Ok(out)
}
