//! A client authenticating with a JWT assertion (`private_key_jwt`, RFC 7523): the checks
//! are [`crate::auth::assertion`]'s; here the client is looked up, its `jti` remembered,
//! and every refusal becomes the one `invalid_client` the RFCs ask for, while the audit
//! log and the `client_assertion_refusals` metric say which check failed.
//!
//! Nothing here reaches the network or the blocking pool: the client's keys are in the
//! index (the controller read them), and a signature check costs tens of microseconds,
//! less than signing the token it buys. A flood of assertions costs each one a parse and
//! at most one signature check, and only a verified one takes room in the replay memory.

use std::sync::Arc;

use super::AppState;
use super::error::OAuthError;
use super::metrics::Reason;
use crate::auth::assertion::{self, AssertionError, Expected, Use};
use crate::auth::secret::SecretString;
use crate::index::ClientEntry;

/// The client whose assertion this is, or `invalid_client`.
pub(super) fn authenticate(
    state: &AppState,
    client_id: &str,
    jwt: &SecretString,
) -> Result<Arc<ClientEntry>, OAuthError> {
    match check(state, client_id, jwt.expose()) {
        Ok(client) => Ok(client),
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

fn check(state: &AppState, client_id: &str, jwt: &str) -> Result<Arc<ClientEntry>, Refused> {
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
        Use::First => Ok(client),
        Use::Replayed => Err(AssertionError::Replayed.into()),
        Use::Full => Err(Refused::Capacity),
    }
}
