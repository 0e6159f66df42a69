//! `POST /token`: JWT access tokens (RFC 9068) for the client-credentials grant (RFC 6749
//! section 4.4, here) and the authorization code grant (section 4.1, with PKCE and OpenID
//! Connect ID tokens: [`authorization_code`]).

mod authorization_code;
mod refresh_token;

pub(super) use authorization_code::grant_name;
pub(super) use refresh_token::{Verdict, grant_user, judge, open as open_refresh_token};

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;
use super::client_assertion;
use super::client_auth::{self, BasicHeader, Method, Presented};
use super::error::OAuthError;
use super::form::Form;
use super::metrics::Reason;
use super::target;
use crate::auth::hash::{self, Verifier};
use crate::auth::secret::SecretString;
use crate::auth::token::{self, AccessTokenClaims};
use crate::index::ClientEntry;
use crate::tenancy::Flow;

#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
}

/// `POST /token`. The span carries the client id once the request names one (never the
/// secret), so a trace shows the one request. It is a `debug` span: at the default `info`
/// level it is never built, since every line this handler logs at `info` or above names
/// the client itself, and building and formatting a span per token cost about a tenth of
/// the warm path (`hack/bench.sh token`, docs/benchmarks.md).
#[tracing::instrument(
    name = "token",
    level = "debug",
    skip_all,
    fields(client_id = tracing::field::Empty, source = %peer.ip())
)]
pub async fn token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    basic: BasicHeader,
    form: Result<Form, OAuthError>,
) -> Response {
    let started = std::time::Instant::now();
    let outcome = issue(&state, basic, form).await;
    state
        .metrics
        .token_seconds
        .observe(started.elapsed().as_secs_f64());
    match outcome {
        Ok((client_id, res)) => {
            state.metrics.tokens_issued.inc();
            tracing::info!(target: "audit", event = "token_issued", client_id, source = %peer.ip());
            res
        }
        Err((client_id, err)) => {
            state
                .metrics
                .refusals
                .get_or_create(&Reason { reason: err.code() })
                .inc();
            tracing::info!(
                target: "audit",
                event = "token_refused",
                client_id = client_id.as_deref().unwrap_or("-"),
                reason = err.code(),
                source = %peer.ip()
            );
            err.into_response()
        }
    }
}

type Refusal = (Option<String>, OAuthError);

/// The RFC 6749 order of checks: the form, the grant type, the scope syntax, then the
/// client, then what the client may have.
async fn issue(
    state: &AppState,
    basic: BasicHeader,
    form: Result<Form, OAuthError>,
) -> Result<(String, Response), Refusal> {
    let anon = |e| (None, e);
    let form = form.map_err(anon)?;
    match form.get("grant_type") {
        None => return Err(anon(OAuthError::InvalidRequest("grant_type is missing"))),
        Some("client_credentials") => {}
        Some("authorization_code") => {
            return authorization_code::exchange(state, basic, &form).await;
        }
        Some("refresh_token") => return refresh_token::refresh(state, basic, &form).await,
        Some(_) => return Err(anon(OAuthError::UnsupportedGrantType)),
    }
    let requested = parse_scope(form.get("scope")).map_err(anon)?;
    let targets = target::targets(form.get("resource"), form.get("audience")).map_err(anon)?;
    let presented = client_auth::presented(basic, &form).map_err(anon)?;
    tracing::Span::current().record("client_id", presented.client_id());
    let id = Some(presented.client_id().to_string());

    let (client, method) = authenticate(state, presented)
        .await
        .map_err(|e| (id.clone(), e))?;
    if !client.grant_types.iter().any(|g| g == "client_credentials") {
        return Err((id, OAuthError::UnauthorizedClient));
    }
    let decision = target::decide(
        state,
        &client,
        targets.as_deref(),
        requested.as_deref(),
        Flow::Client,
    )
    .map_err(|e| (id.clone(), e))?;
    target::report(state, &client, &decision);
    let scope = (!decision.scope.is_empty()).then(|| decision.scope.join(" "));

    let keys = state
        .index
        .keys()
        .ok_or((id.clone(), OAuthError::TemporarilyUnavailable))?;
    let now = jiff::Timestamp::now().as_second();
    let claims = AccessTokenClaims {
        iss: state.config.issuer.clone(),
        sub: client.client_id.clone(),
        aud: decision.audiences,
        exp: now + i64::from(decision.lifetime),
        iat: now,
        jti: crate::auth::secret::random_id().map_err(|_| (id.clone(), OAuthError::ServerError))?,
        client_id: client.client_id.clone(),
        scope: scope.clone(),
        roles: decision.roles,
        client_uid: client.uid.clone(),
        grant_id: None,
        auth_time: None,
        upstream: None,
        client_auth_method: Some(method.as_str().to_string()),
    };
    let jwt = token::sign(&claims, keys.signer(now)).map_err(|e| {
        tracing::error!(error = %e, client_id = %client.client_id, "signing failed");
        (id.clone(), OAuthError::ServerError)
    })?;
    // `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 section 5.1) come from
    // the route's layer.
    let res = Json(TokenResponse {
        access_token: jwt,
        token_type: "Bearer",
        expires_in: decision.lifetime,
        scope,
        id_token: None,
        refresh_token: None,
    })
    .into_response();
    Ok((client.client_id.clone(), res))
}

/// The client of the request and how it proved who it is: by a JWT assertion
/// ([`client_assertion`]) or by a secret ([`by_secret`]).
pub(super) async fn authenticate(
    state: &AppState,
    presented: Presented,
) -> Result<(Arc<ClientEntry>, Method), OAuthError> {
    match presented {
        Presented::Assertion {
            client_id,
            assertion,
        } => client_assertion::authenticate(state, &client_id, &assertion).await,
        Presented::Secret {
            client_id,
            secret,
            basic,
        } => {
            let method = if basic {
                Method::ClientSecretBasic
            } else {
                Method::ClientSecretPost
            };
            by_secret(state, &client_id, secret, basic)
                .await
                .map(|c| (c, method))
        }
    }
}

/// Checks the secret against every accepted verifier of the client, by kind (see
/// [`crate::auth::hash`]):
/// - SHA-256 verifiers (generated secrets) first, on the worker. Nothing can be guessed
///   against 256 random bits, so they pass neither through the lockout nor through the
///   argon2 gate: a flood of wrong secrets never refuses the holder of a generated one.
/// - argon2id verifiers (chosen secrets) only when no SHA-256 one matched: from the warm
///   cache, else under the lockout and through the bounded gate, off the async workers.
///
/// An unknown client id, a deactivated client and an expired secret get the answer of a
/// wrong secret. They are refused without argon2 work: client ids are identifiers, not
/// secrets (RFC 6749 section 2.2), and spending argon2 on ids nobody registered would let
/// anyone fill the gate. What timing can tell is only whether an active client has a
/// chosen secret.
async fn by_secret(
    state: &AppState,
    client_id: &str,
    secret: SecretString,
    basic: bool,
) -> Result<Arc<ClientEntry>, OAuthError> {
    let invalid = OAuthError::InvalidClient { basic };
    let Some(client) = state.index.client(client_id).filter(|c| c.active) else {
        return Err(invalid);
    };
    let now = jiff::Timestamp::now().as_second();
    let valid = || {
        client
            .secrets
            .iter()
            .filter(move |s| s.is_valid_at(now))
            .map(|s| &s.verifier)
    };
    let value = secret;
    let secret = value.expose();
    // Every fast verifier is checked, so the time does not tell which one matched.
    let generated_match = valid()
        .filter(|v| !v.is_slow())
        .fold(false, |found, v| v.matches(secret) | found);
    if generated_match {
        return Ok(client);
    }
    let chosen: Vec<String> = valid()
        .filter_map(|v| match v {
            Verifier::Argon2id(phc) => Some(phc.clone()),
            Verifier::Sha256(_) => None,
        })
        .collect();
    if chosen.is_empty() {
        return Err(invalid);
    }

    // Warm path of the chosen kinds: a secret that already passed argon2 against one of
    // these hashes.
    if chosen
        .iter()
        .any(|h| state.cache.check(&client.client_id, h, secret))
    {
        state.metrics.cache_hits.inc();
        return Ok(client);
    }
    state.metrics.cache_misses.inc();

    // A locked client's chosen secrets are not even checked: guessing costs nothing and
    // learns nothing (the answer is the same as for a wrong secret).
    let started = std::time::Instant::now();
    if state.lockout.locked(&client.client_id, started).is_some() {
        state.metrics.locked_refusals.inc();
        return Err(invalid);
    }

    let presented = value.clone();
    let matched = state
        .hashing
        .run(move || {
            chosen
                .into_iter()
                .find(|h| hash::verify(presented.expose(), h))
        })
        .await?;
    match matched {
        Some(h) => {
            state.lockout.success(&client.client_id);
            state.cache.remember(&client.client_id, &h, secret);
            Ok(client)
        }
        None => {
            if let Some(wait) = state.lockout.failure(&client.client_id, started) {
                state.metrics.lockouts.inc();
                tracing::warn!(
                    target: "audit",
                    event = "client_locked",
                    client_id = %client.client_id,
                    seconds = wait.as_secs(),
                    "too many failed authentications"
                );
            }
            Err(invalid)
        }
    }
}

/// The authenticated client and the `token` parameter of an introspection or revocation
/// request.
pub(super) async fn authenticated_token(
    state: &AppState,
    basic: BasicHeader,
    form: &Form,
) -> Result<(Arc<ClientEntry>, String), OAuthError> {
    let presented = client_auth::presented(basic, form)?;
    tracing::Span::current().record("client_id", presented.client_id());
    let token = form
        .get("token")
        .ok_or(OAuthError::InvalidRequest("token is missing"))?
        .to_string();
    Ok((authenticate(state, presented).await?.0, token))
}

/// RFC 6749 section 3.3 scope syntax: space-separated tokens of `%x21 / %x23-5B / %x5D-7E`.
pub(super) fn parse_scope(scope: Option<&str>) -> Result<Option<Vec<String>>, OAuthError> {
    let Some(scope) = scope else { return Ok(None) };
    let tokens: Vec<String> = scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if tokens.is_empty() || !tokens.iter().all(|t| crate::api::is_scope_token(t)) {
        return Err(OAuthError::InvalidScope);
    }
    Ok(Some(tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_scope_is_invalid_scope() {
        assert_eq!(parse_scope(Some("a\"b")), Err(OAuthError::InvalidScope));
        assert_eq!(parse_scope(Some("   ")), Err(OAuthError::InvalidScope));
    }
}
