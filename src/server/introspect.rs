//! `POST /introspect`: token introspection (RFC 7662) for authenticated clients.
//!
//! Refresh tokens are introspected too, by the client they were issued to (see
//! `refresh_token` below). An access token is active only if it verifies against a current signing key, was issued by
//! this issuer, has not expired, was not revoked, and its client is still indexed (not deleted), active,
//! and was not deactivated after the token was issued (its `notBefore`), and is the very
//! client the token was issued to, not a later one of the same id; a token issued to a
//! user also needs its grant unrevoked and the user still there and enabled (for a user of
//! an upstream provider, the `OAuthUpstream` still there). Everything else,
//! a foreign or malformed token included, is just `{"active": false}`, as the RFC asks.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::client_auth::BasicHeader;
use super::error::OAuthError;
use super::form::Form;
use super::token::authenticated_token;
use kube::api::Api;

use super::token::{Verdict, grant_name, grant_user, judge, open_refresh_token};
use crate::api::OAuthGrant;
use crate::auth::token::AccessTokenClaims;
use crate::index::ClientEntry;

/// `POST /introspect`; the span carries the authenticated client's id, never the token.
#[tracing::instrument(
    name = "introspect",
    skip_all,
    fields(client_id = tracing::field::Empty, source = %peer.ip())
)]
pub async fn introspect(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    basic: BasicHeader,
    form: Result<Form, OAuthError>,
) -> Response {
    match answer(&state, basic, form).await {
        // `Cache-Control: no-store` comes from the route's layer.
        Ok(value) => Json(value).into_response(),
        Err(err) => {
            tracing::info!(target: "audit", event = "introspection_refused", reason = err.code(), source = %peer.ip());
            err.into_response()
        }
    }
}

async fn answer(
    state: &AppState,
    basic: BasicHeader,
    form: Result<Form, OAuthError>,
) -> Result<serde_json::Value, OAuthError> {
    let form = form?;
    let (client, token) = authenticated_token(state, basic, &form).await?;
    if let Some(refresh) = refresh_token(state, &client, &token).await? {
        return Ok(refresh);
    }
    Ok(inspect(state, &token).unwrap_or_else(|| json!({ "active": false })))
}

/// A refresh token, introspected by the client it was issued to: active while its grant
/// is unrevoked, it is the grant's current generation, and a refresh would be taken (the
/// client active since the sign-in, the user enabled, the count and the lifetime not used
/// up). `None` when the token is no refresh token at all; another client's is inactive.
/// This reads the grant from the API server, as a refresh does.
async fn refresh_token(
    state: &AppState,
    client: &ClientEntry,
    token: &str,
) -> Result<Option<serde_json::Value>, OAuthError> {
    let now = jiff::Timestamp::now();
    let Some(claims) = open_refresh_token(state, token, now.as_second()) else {
        return Ok(None);
    };
    let inactive = Ok(Some(json!({ "active": false })));
    let Some(policy) = client.refresh.as_ref() else {
        return inactive;
    };
    if claims.client_id != client.client_id
        || !client.active
        || state.index.is_revoked(&claims.grant_id)
    {
        return inactive;
    }
    let kube = state
        .kube
        .as_ref()
        .ok_or(OAuthError::TemporarilyUnavailable)?;
    let api: Api<OAuthGrant> = Api::namespaced(kube.clone(), &state.config.operator_namespace);
    let grant = match api.get_opt(&grant_name(&claims.grant_id)).await {
        Ok(Some(g)) => g,
        Ok(None) => return inactive,
        Err(_) => return Err(OAuthError::TemporarilyUnavailable),
    };
    let spec = &grant.spec;
    let refreshable = matches!(
        judge(spec.refresh.as_ref(), claims.generation, policy, now),
        Verdict::Refresh(_)
    );
    if !refreshable || grant_user(state, client, spec).is_none() {
        return inactive;
    }
    let targets = (!spec.resource.is_empty()).then_some(spec.resource.as_slice());
    if !super::target::still_granted(state, client, targets, spec.scope.as_deref(), true) {
        return inactive;
    }
    Ok(Some(json!({
        "active": true,
        "client_id": spec.client_id,
        "sub": spec.subject,
        "username": spec.username,
        "scope": spec.scope,
        "exp": claims.exp,
        "iss": state.config.issuer,
    })))
}

fn inspect(state: &AppState, token: &str) -> Option<serde_json::Value> {
    let claims = active(state, token)?;
    let username = claims
        .grant_id
        .as_ref()
        .and_then(|_| super::upstream::user(state, &claims.sub, claims.upstream.as_ref()))
        .map(|u| u.name.clone());
    let mut answer = json!({
        "active": true,
        "client_id": claims.client_id,
        "sub": claims.sub,
        "aud": claims.aud,
        "iss": claims.iss,
        "exp": claims.exp,
        "iat": claims.iat,
        "jti": claims.jti,
        "scope": claims.scope,
        "roles": claims.roles,
        "token_type": "Bearer",
    });
    if let Some(name) = username {
        answer["username"] = json!(name);
    }
    if let Some(t) = claims.auth_time {
        answer["auth_time"] = json!(t);
    }
    Some(answer)
}

/// The claims of `token` if it is active (see the module doc); `None` otherwise.
pub(super) fn active(state: &AppState, token: &str) -> Option<AccessTokenClaims> {
    let keys = state.index.keys()?;
    let claims: AccessTokenClaims = keys.verify(token, &state.config.issuer)?;
    if state.index.is_revoked(&claims.jti)
        || claims
            .grant_id
            .as_ref()
            .is_some_and(|g| state.index.is_revoked(g))
    {
        return None;
    }
    let client = state.index.client(&claims.client_id)?;
    if !client.active || client.not_before.is_some_and(|nbf| claims.iat < nbf) {
        return None;
    }
    // Issued to an earlier client of the same id, since deleted.
    if claims.client_uid.is_some() && claims.client_uid != client.uid {
        return None;
    }
    if !super::target::still_granted(
        state,
        &client,
        Some(&claims.aud),
        claims.scope.as_deref(),
        claims.grant_id.is_some(),
    ) {
        return None;
    }
    // Issued to a user (from a grant): the user must still be there and enabled (an
    // upstream user: their provider still there).
    if claims.grant_id.is_some()
        && super::upstream::user(state, &claims.sub, claims.upstream.as_ref()).is_none()
    {
        return None;
    }
    Some(claims)
}
