//! A client authenticating with a JWT assertion (RFC 7523): its own `private_key_jwt`, the
//! Kubernetes ServiceAccount token of a workload it trusts, or a token of a federated
//! issuer the operator trusts (another cluster, a CI system). Which of the three an
//! assertion is, is read from its unverified `iss` and `sub`, and then only that kind's
//! checks apply. The checks are
//! [`crate::auth::assertion`]'s; here the client is looked up, a `private_key_jwt`'s `jti`
//! remembered, a ServiceAccount's UID compared with the one that exists now, and every
//! refusal becomes the one `invalid_client` the RFCs ask for, while the audit log and the
//! `client_assertion_refusals` metric say which check failed.
//!
//! A `private_key_jwt` reaches neither the network nor the blocking pool: the client's
//! keys are in the index (the controller read them), and a signature check costs tens of
//! microseconds, less than signing the token it buys. A ServiceAccount token is verified
//! with the cluster issuer's keys, and a federated token with its issuer's, both cached
//! ([`super::issuer_keys`]: no fetch per request). A flood of assertions costs each one a parse and at most one signature
//! check, and only a verified `private_key_jwt` takes room in the replay memory.
//!
//! A ServiceAccount token bound to a Pod stays valid after the Pod is deleted, until it
//! expires (the kubelet projects tokens of at most an hour by default, refreshed well
//! before): checking the Pod would take a TokenReview per request (an API round trip on
//! the token path) or a watch of every Pod in the cluster. Its ServiceAccount, though, is
//! checked on every request against the index: a token is refused as soon as the watch
//! sees its ServiceAccount deleted, and one re-created under the same name has a new UID.

use std::sync::Arc;

use super::AppState;
use super::client_auth::Method;
use super::error::OAuthError;
use super::metrics::Reason;
use crate::auth::assertion::{self, AssertionError, Expected, ExpectedServiceAccount, Use};
use crate::auth::jws;
use crate::auth::secret::SecretString;
use crate::index::ClientEntry;

/// The client whose assertion this is and how it authenticated, or `invalid_client`.
pub(super) async fn authenticate(
    state: &AppState,
    client_id: &str,
    jwt: &SecretString,
) -> Result<(Arc<ClientEntry>, Method), OAuthError> {
    match check(state, client_id, jwt.expose()).await {
        Ok(found) => Ok(found),
        Err(Refused::Capacity) => {
            tracing::warn!(
                "the replay memory of client assertions is full; refusing assertions until some expire"
            );
            Err(OAuthError::TemporarilyUnavailable)
        }
        Err(Refused::Check(e)) => {
            state
                .metrics
                .assertion_refusals
                .get_or_create(&Reason { reason: e.reason() })
                .inc();
            tracing::info!(
                target: "audit",
                event = "client_assertion_refused",
                client_id,
                reason = e.reason()
            );
            if e == AssertionError::IssuerUnavailable {
                return Err(OAuthError::TemporarilyUnavailable);
            }
            Err(OAuthError::InvalidClient { basic: false })
        }
    }
}

enum Refused {
    Check(AssertionError),
    Capacity,
}

impl From<AssertionError> for Refused {
    fn from(e: AssertionError) -> Self {
        Refused::Check(e)
    }
}

async fn check(
    state: &AppState,
    client_id: &str,
    jwt: &str,
) -> Result<(Arc<ClientEntry>, Method), Refused> {
    let claims = jws::unverified_claims(jwt).ok_or(AssertionError::Malformed)?;
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(|s| s.as_str())
            .unwrap_or_default()
    };
    let (iss, sub) = (text("iss"), text("sub"));
    // No client_id in the request: the form's client_id defaulted to `sub`.
    let named = client_id != sub;
    if state.federation.trusts(iss) {
        let client = if named {
            state.index.client(client_id)
        } else {
            state.index.client_of_federated(iss, sub)
        };
        let client = client
            .filter(|c| c.active)
            .ok_or(AssertionError::UnknownClient)?;
        return federated(state, client, iss, jwt).await;
    }
    if let Some((namespace, name)) = assertion::service_account_subject(sub) {
        let client = if !named {
            state.index.client_of_service_account(namespace, name)
        } else {
            state.index.client(client_id)
        };
        let client = client
            .filter(|c| c.active)
            .ok_or(AssertionError::UnknownClient)?;
        return by_service_account(state, client, jwt).await;
    }
    let client = state
        .index
        .client(client_id)
        .filter(|c| c.active)
        .ok_or(AssertionError::UnknownClient)?;
    let keys = client.keys.as_ref().ok_or(AssertionError::NotAccepted)?;
    let now = jiff::Timestamp::now().as_second();
    // The same URL discovery publishes.
    let token_endpoint = format!("{}/token", state.config.issuer.trim_end_matches('/'));
    let expected = Expected {
        client_id: &client.client_id,
        audiences: [&token_endpoint, &state.config.issuer],
        now,
    };
    let checked = assertion::check_private_key_jwt(jwt, keys, &expected)?;
    match state.replays.first_use(&client.client_id, &checked, now) {
        Use::First => Ok((client, Method::PrivateKeyJwt)),
        Use::Replayed => Err(AssertionError::Replayed.into()),
        Use::Full => Err(Refused::Capacity),
    }
}

/// A token of the trusted `issuer` for one of `client`'s identities of it.
async fn federated(
    state: &AppState,
    client: Arc<ClientEntry>,
    issuer: &str,
    jwt: &str,
) -> Result<(Arc<ClientEntry>, Method), Refused> {
    if !client.federated.iter().any(|f| f.issuer == issuer) {
        return Err(AssertionError::NotAccepted.into());
    }
    let kid = jsonwebtoken::decode_header(jwt)
        .map_err(|_| AssertionError::Malformed)?
        .kid;
    let keys = state
        .federation
        .keys(issuer, kid.as_deref())
        .await
        .map_err(|_| AssertionError::IssuerUnavailable)?;
    assertion::check_federated_token(
        jwt,
        &keys.jwks,
        issuer,
        &client.federated,
        &state.config.issuer,
        jiff::Timestamp::now().as_second(),
    )?;
    Ok((client, Method::Federated))
}

/// A ServiceAccount token of one of `client`'s ServiceAccounts, for our issuer, whose
/// ServiceAccount exists now with the UID it names.
async fn by_service_account(
    state: &AppState,
    client: Arc<ClientEntry>,
    jwt: &str,
) -> Result<(Arc<ClientEntry>, Method), Refused> {
    if client.service_accounts.is_empty() {
        return Err(AssertionError::NotAccepted.into());
    }
    let kid = jsonwebtoken::decode_header(jwt)
        .map_err(|_| AssertionError::Malformed)?
        .kid;
    let keys = state
        .cluster_issuer
        .keys(state.kube.as_ref(), kid.as_deref())
        .await
        .map_err(|_| AssertionError::IssuerUnavailable)?;
    let expected = ExpectedServiceAccount {
        issuer: &keys.issuer,
        audience: &state.config.issuer,
        now: jiff::Timestamp::now().as_second(),
    };
    let sa = assertion::check_service_account_token(jwt, &keys.jwks, &expected)?;
    if !client
        .service_accounts
        .iter()
        .any(|s| s.namespace == sa.namespace && s.name == sa.name)
    {
        return Err(AssertionError::NotAccepted.into());
    }
    let current = state.index.service_account_uid(&sa.namespace, &sa.name);
    if current.as_deref() != Some(sa.uid.as_str()) {
        return Err(AssertionError::ServiceAccountGone.into());
    }
    Ok((client, Method::ServiceAccount))
}
