//! The slot protocol: the one place the token server writes an InitialAccessToken's
//! status. A token may register `spec.count` clients; each registration holds a slot, an
//! entry in `status.registeredClients`.
//!
//! Invariant: `status.registeredClients.len() <= spec.count`, and no registered
//! OAuthClient exists without its slot, whatever the number of replicas. It holds because
//! a registration first appends itself to the list with a replace that carries the
//! resourceVersion it read ([`claim`]): the API server accepts exactly one of several
//! concurrent replaces, the others get 409 Conflict, read again and retry, and once the
//! list is full they are refused. Only then is the client created; if that fails the slot
//! is given back ([`release`]), under the same discipline. `status.remaining` is written
//! in the same replace, so it always matches the list.
//!
//! The controller writes the same status (expiry, conditions) by a server-side apply that
//! also names the resourceVersion it computed from, so neither writer overwrites a slot
//! it has not seen.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::Api;

use super::{kube_error, post_params};
use crate::api::{InitialAccessToken, RegisteredClient};
use crate::auth::secret;
use crate::server::error::OAuthError;

/// Attempts at claiming a slot. Each conflict means another registration took one, so
/// with a count of at most 1,000 this only runs out under a flood; the caller then gets
/// `temporarily_unavailable` and nothing was created.
const CLAIM_ATTEMPTS: u32 = 100;

/// Refuses an expired or exhausted token. `expires_at` is the verifier's; the status's,
/// when the controller has written it, is the same or newer.
pub(super) fn usable(
    iat: &InitialAccessToken,
    now: Timestamp,
    expires_at: i64,
) -> Result<(), OAuthError> {
    let status_expiry = iat
        .status
        .as_ref()
        .and_then(|s| s.expires_at.as_ref())
        .map_or(i64::MAX, |t| t.0.as_second());
    let expired = expires_at.min(status_expiry) <= now.as_second();
    if expired || iat.registered() >= iat.spec.count {
        return Err(OAuthError::InvalidToken);
    }
    Ok(())
}

/// Appends the client to the token's `status.registeredClients`, with the resourceVersion
/// read: a concurrent registration makes the replace fail with 409, and this one reads
/// again and retries, until it has its slot or the token is exhausted. `current` refuses
/// a token that is no longer the one the caller authenticated with (another UID).
pub(super) async fn claim(
    tokens: &Api<InitialAccessToken>,
    name: &str,
    expires_at: i64,
    client_id: &str,
    current: &impl Fn(Option<InitialAccessToken>) -> Result<InitialAccessToken, OAuthError>,
) -> Result<(), OAuthError> {
    for attempt in 0..CLAIM_ATTEMPTS {
        let mut iat = current(
            tokens
                .get_opt(name)
                .await
                .map_err(kube_error("reading the initial access token"))?,
        )?;
        let now = Timestamp::now();
        usable(&iat, now, expires_at)?;
        iat.status
            .get_or_insert_default()
            .registered_clients
            .push(RegisteredClient {
                name: client_id.to_string(),
                client_id: client_id.to_string(),
                registered_at: Time(now),
            });
        match write_slots(tokens, iat).await {
            Ok(()) => return Ok(()),
            // Someone else took a slot (or the controller wrote status).
            Err(kube::Error::Api(s)) if s.code == 409 => conflict_backoff(attempt).await,
            Err(e) => return Err(kube_error("claiming a registration")(e)),
        }
    }
    Err(OAuthError::TemporarilyUnavailable)
}

/// Gives back the slot [`claim`] took when the client could not be created after all, so
/// an API server failure does not cost the holder a registration. Best effort, with the
/// same resourceVersion discipline: if this fails too, the slot stays spent, which errs on
/// the side of the count. The token is matched by name only: a slot listed under this
/// client id can only be the one this request claimed (client ids are random).
pub(super) async fn release(tokens: &Api<InitialAccessToken>, name: &str, client_id: &str) {
    for attempt in 0..CLAIM_ATTEMPTS {
        let mut iat = match tokens.get_opt(name).await {
            Ok(Some(iat)) => iat,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, client_id, "releasing a registration slot failed");
                return;
            }
        };
        let Some(status) = iat.status.as_mut() else {
            return;
        };
        let before = status.registered_clients.len();
        status
            .registered_clients
            .retain(|c| c.client_id != client_id);
        if status.registered_clients.len() == before {
            return;
        }
        match write_slots(tokens, iat).await {
            Ok(()) => {
                tracing::info!(target: "audit", event = "registration_slot_released", client_id, initial_access_token = %name);
                return;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => conflict_backoff(attempt).await,
            Err(e) => {
                tracing::error!(error = %e, client_id, "releasing a registration slot failed");
                return;
            }
        }
    }
}

/// Writes back the token's list of registered clients, with `remaining` to match, on the
/// condition that nobody wrote since it was read (its resourceVersion; 409 otherwise).
async fn write_slots(
    tokens: &Api<InitialAccessToken>,
    mut iat: InitialAccessToken,
) -> Result<(), kube::Error> {
    let name = iat.name_any();
    with_remaining(&mut iat);
    tokens
        .replace_status(&name, &post_params(false), &iat)
        .await
        .map(|_| ())
}

/// Sets `status.remaining` from the list of registered clients, so the two never disagree.
fn with_remaining(iat: &mut InitialAccessToken) {
    let count = iat.spec.count;
    let status = iat.status.get_or_insert_default();
    let used = u32::try_from(status.registered_clients.len()).unwrap_or(u32::MAX);
    status.remaining = Some(count.saturating_sub(used));
}

/// After losing a resourceVersion race, waits a random few milliseconds, growing with the
/// attempt, so that the losers do not collide again in step.
async fn conflict_backoff(attempt: u32) {
    let jitter = secret::random_bytes::<1>().map_or(0, |b| u64::from(b[0]));
    let base = 5 * u64::from(attempt.min(10) + 1);
    tokio::time::sleep(Duration::from_millis(base + jitter % (base * 2))).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{InitialAccessTokenSpec, InitialAccessTokenStatus};

    fn token(count: u32, registered: usize) -> InitialAccessToken {
        let mut iat = InitialAccessToken::new(
            "iat",
            InitialAccessTokenSpec {
                expires_after: Some("1h".parse().expect("duration")),
                expires_at: None,
                count,
                policy: Default::default(),
            },
        );
        iat.status = Some(InitialAccessTokenStatus {
            registered_clients: (0..registered)
                .map(|i| RegisteredClient {
                    name: format!("c{i}"),
                    client_id: format!("c{i}"),
                    registered_at: Time(Timestamp::UNIX_EPOCH),
                })
                .collect(),
            ..Default::default()
        });
        iat
    }

    #[test]
    fn a_token_with_free_slots_before_its_expiry_is_usable() {
        let now = Timestamp::from_second(1_000).expect("time");
        assert_eq!(usable(&token(2, 1), now, 2_000), Ok(()));
    }

    #[test]
    fn a_full_token_is_refused_as_invalid_token() {
        let now = Timestamp::from_second(1_000).expect("time");
        assert_eq!(
            usable(&token(2, 2), now, 2_000),
            Err(OAuthError::InvalidToken)
        );
    }

    #[test]
    fn the_earlier_of_the_verifier_and_status_expiry_counts() {
        let now = Timestamp::from_second(1_000).expect("time");
        assert_eq!(
            usable(&token(2, 0), now, 1_000),
            Err(OAuthError::InvalidToken)
        );
        let mut iat = token(2, 0);
        if let Some(s) = iat.status.as_mut() {
            s.expires_at = Some(Time(Timestamp::from_second(900).expect("time")));
        }
        assert_eq!(usable(&iat, now, 2_000), Err(OAuthError::InvalidToken));
    }

    #[test]
    fn remaining_follows_the_list() {
        let mut iat = token(3, 1);
        with_remaining(&mut iat);
        assert_eq!(iat.status.as_ref().and_then(|s| s.remaining), Some(2));
        let mut over = token(1, 2);
        with_remaining(&mut over);
        assert_eq!(over.status.as_ref().and_then(|s| s.remaining), Some(0));
    }
}
