//! `POST /revoke`: token revocation (RFC 7009).
//!
//! An access token is revoked by its `jti`; a refresh token by its grant, which ends the
//! grant's access tokens too (RFC 7009 section 2.1 allows it, and a revoked sign-in
//! should end everywhere).
//!
//! One of the server's writes: the revocation is recorded as a
//! `RevokedToken` in the operator namespace, through the API server, so every replica's
//! index learns it from its watch within seconds; it is not kept in this process's memory
//! alone. Offline verifiers of the JWT do not see it: they accept the token until its
//! `exp` (at most the client's lifetime).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ObjectMeta, PostParams};
use sha2::{Digest, Sha256};

use super::AppState;
use super::client_auth::BasicHeader;
use super::error::OAuthError;
use super::form::Form;
use super::token::authenticated_token;
use super::token::open_refresh_token;
use crate::api::{RevokedToken, RevokedTokenSpec};
use crate::auth::token::AccessTokenClaims;

/// `POST /revoke`; the span carries the authenticated client's id, never the token.
#[tracing::instrument(
    name = "revoke",
    skip_all,
    fields(client_id = tracing::field::Empty, source = %peer.ip())
)]
pub async fn revoke(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    basic: BasicHeader,
    form: Result<Form, OAuthError>,
) -> Response {
    match handle(&state, basic, form).await {
        Ok(Some((client_id, jti))) => {
            tracing::info!(target: "audit", event = "token_revoked", client_id, jti, source = %peer.ip());
            ok()
        }
        Ok(None) => ok(),
        Err(err) => {
            tracing::info!(target: "audit", event = "revocation_refused", reason = err.code(), source = %peer.ip());
            err.into_response()
        }
    }
}

/// RFC 7009 section 2.2: 200 whether or not there was anything to revoke
/// (`Cache-Control: no-store` comes from the route's layer).
fn ok() -> Response {
    StatusCode::OK.into_response()
}

async fn handle(
    state: &AppState,
    basic: BasicHeader,
    form: Result<Form, OAuthError>,
) -> Result<Option<(String, String)>, OAuthError> {
    let form = form?;
    let (client, token) = authenticated_token(state, basic, &form).await?;

    // A refresh token (whatever `token_type_hint` says, which RFC 7009 lets the server
    // ignore): its grant is revoked, and with it every token the grant issued.
    let now = jiff::Timestamp::now().as_second();
    if let Some(refresh) = open_refresh_token(state, &token, now) {
        if refresh.client_id != client.client_id {
            return Err(OAuthError::UnauthorizedClient);
        }
        // Until the grant's last token could have expired.
        let until = now
            + client
                .refresh
                .as_ref()
                .map_or(0, |p| p.max_lifetime_seconds)
            + i64::from(client.access_token_lifetime_seconds);
        record(state, &refresh.grant_id, &client.client_id, until).await?;
        return Ok(Some((client.client_id.clone(), refresh.grant_id)));
    }

    // An invalid, expired or foreign token: nothing to revoke, and the RFC says 200.
    let Some(claims) = state
        .index
        .keys()
        .and_then(|k| k.verify::<AccessTokenClaims>(&token, &state.config.issuer))
    else {
        return Ok(None);
    };
    // Section 2.1: only the client the token was issued to may revoke it.
    if claims.client_id != client.client_id {
        return Err(OAuthError::UnauthorizedClient);
    }
    record(state, &claims.jti, &claims.client_id, claims.exp).await?;
    Ok(Some((claims.client_id, claims.jti)))
}

/// Records `jti` (a token's, or a grant's whose tokens all carry it) as revoked until
/// `exp`, through the API server, and notes it in this replica's index at once; the
/// others learn it from their watch within seconds.
pub(crate) async fn record(
    state: &AppState,
    jti: &str,
    client_id: &str,
    exp: i64,
) -> Result<(), OAuthError> {
    let Some(kube) = &state.kube else {
        return Err(OAuthError::TemporarilyUnavailable);
    };
    let expires_at = jiff::Timestamp::from_second(exp).map_err(|_| OAuthError::ServerError)?;
    let name = format!("jti-{}", &hex(&Sha256::digest(jti.as_bytes()))[..40]);
    let revoked = RevokedToken {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(state.config.operator_namespace.clone()),
            ..ObjectMeta::default()
        },
        spec: RevokedTokenSpec {
            jti: jti.to_string(),
            client_id: client_id.to_string(),
            expires_at: Time(expires_at),
        },
    };
    let api: Api<RevokedToken> = Api::namespaced(kube.clone(), &state.config.operator_namespace);
    match api.create(&PostParams::default(), &revoked).await {
        Ok(_) => {}
        // Revoked already.
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => {
            tracing::error!(error = %e, "recording a revocation failed");
            return Err(OAuthError::TemporarilyUnavailable);
        }
    }
    state.index.revoke(jti, exp);
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
