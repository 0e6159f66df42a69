//! Leader election over a `coordination.k8s.io` Lease, with client-go's semantics: of
//! several controller replicas one reconciles; the others try every `retry` and take over
//! when the lease is released (at once) or has not been renewed for its duration (a dead
//! leader).
//!
//! Expiry is judged by when this replica last *saw* the record change, on its own clock,
//! as client-go does, so clock skew between nodes cannot make a standby take a live lease.
//! A leader that cannot renew within the renew deadline stops reconciling (the caller
//! exits), before any standby may consider the lease expired. Even if two replicas did
//! reconcile at once, every write is conditional (resourceVersion) and secret values are
//! written once, so no secret could be generated twice.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Which Lease, and who we are.
#[derive(Clone, Debug)]
pub struct Election {
    pub namespace: String,
    pub lease_name: String,
    /// Unique among replicas: the Pod name in a cluster.
    pub identity: String,
    /// How long a lease lasts without renewal, in seconds.
    pub duration_secs: u64,
}

impl Election {
    fn duration(&self) -> Duration {
        Duration::from_secs(self.duration_secs.max(2))
    }

    /// How long a leader keeps trying to renew before it gives up: two thirds of the
    /// duration (client-go: 10 s of 15 s), so it stops before standbys may take over.
    fn renew_deadline(&self) -> Duration {
        self.duration() * 2 / 3
    }

    /// How often to try (client-go: 2 s of 15 s).
    fn retry(&self) -> Duration {
        (self.duration() / 7).max(Duration::from_millis(500))
    }
}

/// What this replica last saw of the lease, and when (on its own clock).
#[derive(Debug)]
struct Observed {
    seen: Seen,
    at: Instant,
}

/// The parts of a Lease the election looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    /// `None` when released (or never held).
    holder: Option<String>,
    renew: Option<Timestamp>,
}

/// What to do about the lease, given what was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    /// Take it: it does not exist, was released, or its holder stopped renewing it.
    Acquire,
    /// Renew it: it is ours.
    Renew,
    /// Leave it: another replica holds it and renewed it within its duration.
    StandBy,
}

/// The record as last seen, timed by when it last *changed*: a standby that sees the same
/// holder and renew time for longer than the duration judges the holder dead (client-go's
/// `observedTime`), whatever the clocks of the nodes say.
fn observe(previous: Option<Observed>, seen: &Seen, now: Instant) -> Observed {
    match previous {
        Some(p) if p.seen == *seen => p,
        _ => Observed {
            seen: seen.clone(),
            at: now,
        },
    }
}

/// The election's decision, client-go's: a missing or released lease is taken at once,
/// our own is renewed, another's is taken only once it has stayed unchanged for longer
/// than its duration.
fn decide(
    lease: Option<&Seen>,
    identity: &str,
    unchanged_for: Duration,
    duration: Duration,
) -> Decision {
    match lease.and_then(|l| l.holder.as_deref()) {
        None => Decision::Acquire,
        Some(h) if h == identity => Decision::Renew,
        Some(_) if unchanged_for > duration => Decision::Acquire,
        Some(_) => Decision::StandBy,
    }
}

/// What one renewal attempt of a leader means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attempt {
    /// The lease is ours, renewed.
    Renewed,
    /// Another replica holds it.
    TakenOver,
    /// The API did not answer (or refused).
    Failed,
}

/// Whether a leader still leads after an attempt: it has lost the lease when another
/// replica holds it, or when it has not renewed for longer than the renew deadline (two
/// thirds of the duration): it must stop before any standby may judge the lease expired.
fn still_leading(attempt: Attempt, since_renewed: Duration, renew_deadline: Duration) -> bool {
    match attempt {
        Attempt::Renewed => true,
        Attempt::TakenOver => false,
        Attempt::Failed => since_renewed <= renew_deadline,
    }
}

struct Elector {
    api: Api<Lease>,
    e: Election,
    observed: Option<Observed>,
}

impl Elector {
    /// One attempt to take or renew the lease. `Ok(true)` when we hold it now.
    async fn try_acquire(&mut self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let lease = self.api.get_opt(&self.e.lease_name).await?;
        let seen = lease.as_ref().map(|l| {
            let spec = l.spec.clone().unwrap_or_default();
            Seen {
                holder: spec.holder_identity.filter(|h| !h.is_empty()),
                renew: spec.renew_time.map(|t| t.0),
            }
        });
        if let Some(seen) = &seen {
            self.observed = Some(observe(self.observed.take(), seen, Instant::now()));
        }
        let unchanged_for = self
            .observed
            .as_ref()
            .map_or(Duration::ZERO, |o| o.at.elapsed());
        let decision = decide(
            seen.as_ref(),
            &self.e.identity,
            unchanged_for,
            self.e.duration(),
        );
        let result = match (decision, lease) {
            (Decision::StandBy, _) => return Ok(false),
            (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.e.lease_name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(None, now)),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            (Decision::Acquire | Decision::Renew, Some(mut lease)) => {
                let spec = lease.spec.clone().unwrap_or_default();
                lease.spec = Some(self.spec(Some(&spec), now));
                // The resourceVersion read above makes this conditional: of two standbys
                // racing for a free lease, one wins and the other gets 409.
                self.api
                    .replace(&self.e.lease_name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn spec(&self, current: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
        let held = current.and_then(|c| c.holder_identity.as_deref()) == Some(&self.e.identity);
        let transitions = current.and_then(|c| c.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.e.identity.clone()),
            lease_duration_seconds: i32::try_from(self.e.duration().as_secs()).ok(),
            acquire_time: if held {
                current.and_then(|c| c.acquire_time.clone())
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if held || current.is_none() {
                transitions
            } else {
                transitions + 1
            }),
            ..LeaseSpec::default()
        }
    }

    /// Gives the lease up, if we still hold it, so a standby takes over at once.
    async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.e.lease_name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_default();
        if spec.holder_identity.as_deref() != Some(self.e.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
        self.api
            .replace(&self.e.lease_name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }
}

/// The lease, held and renewed in the background.
pub struct Leadership {
    lost: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Waits until this replica holds the lease (retrying API errors: a standby has nothing
/// else to do), then keeps renewing it in the background.
pub async fn acquire(client: kube::Client, e: &Election) -> Leadership {
    let mut elector = Elector {
        api: Api::namespaced(client, &e.namespace),
        e: e.clone(),
        observed: None,
    };
    tracing::info!(lease = %e.lease_name, identity = %e.identity, "waiting for leadership");
    loop {
        match elector.try_acquire().await {
            Ok(true) => break,
            Ok(false) => {}
            Err(source) => {
                tracing::warn!(error = %source, lease = %e.lease_name, "leader election attempt failed");
            }
        }
        tokio::time::sleep(jittered(e.retry())).await;
    }
    tracing::info!(lease = %e.lease_name, identity = %e.identity, "acquired leadership");
    let (lost_tx, lost) = watch::channel(false);
    let (stop, mut stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                _ = stop_rx.changed() => break,
                () = tokio::time::sleep(elector.e.retry()) => {}
            }
            let attempt = match elector.try_acquire().await {
                Ok(true) => Attempt::Renewed,
                Ok(false) => Attempt::TakenOver,
                Err(err) => {
                    tracing::warn!(error = %err, lease = %elector.e.lease_name, "renewing the lease failed");
                    Attempt::Failed
                }
            };
            if attempt == Attempt::Renewed {
                renewed = Instant::now();
            }
            if !still_leading(attempt, renewed.elapsed(), elector.e.renew_deadline()) {
                tracing::error!(lease = %elector.e.lease_name, ?attempt, "lost the lease");
                let _ = lost_tx.send(true);
                return;
            }
        }
        match elector.release().await {
            Ok(()) => tracing::info!(lease = %elector.e.lease_name, "released leadership"),
            Err(err) => tracing::warn!(error = %err, "releasing the lease failed"),
        }
    });
    Leadership { lost, stop, task }
}

impl Leadership {
    /// Resolves when the lease is lost.
    pub async fn lost(&mut self) {
        let _ = self.lost.wait_for(|lost| *lost).await;
    }

    /// Frees the lease so a standby takes over at once, not after it expires.
    pub async fn release(self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .is_err()
        {
            tracing::warn!("releasing the lease did not finish in time");
        }
    }
}

/// Up to 20 % more, so that standbys do not poll in step.
fn jittered(d: Duration) -> Duration {
    let r = crate::auth::secret::random_bytes::<1>().map_or(0, |b| u32::from(b[0]));
    d + d * r / 255 / 5
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    fn held(by: &str) -> Seen {
        Seen {
            holder: Some(by.into()),
            renew: Some(Timestamp::UNIX_EPOCH),
        }
    }

    #[test]
    fn a_missing_lease_is_created() {
        assert_eq!(decide(None, "me", Duration::ZERO, D), Decision::Acquire);
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let released = Seen {
            holder: None,
            renew: None,
        };
        assert_eq!(
            decide(Some(&released), "me", Duration::ZERO, D),
            Decision::Acquire
        );
    }

    #[test]
    fn a_held_lease_is_waited_on_until_it_stays_unrenewed_for_its_duration() {
        let other = held("other");
        assert_eq!(
            decide(Some(&other), "me", Duration::ZERO, D),
            Decision::StandBy
        );
        assert_eq!(decide(Some(&other), "me", D, D), Decision::StandBy);
        assert_eq!(
            decide(Some(&other), "me", D + Duration::from_millis(1), D),
            Decision::Acquire,
            "an expired lease is taken over"
        );
    }

    #[test]
    fn our_own_lease_is_renewed() {
        assert_eq!(decide(Some(&held("me")), "me", D * 10, D), Decision::Renew);
    }

    #[test]
    fn expiry_is_timed_from_the_last_change_seen_not_from_the_record() {
        let t0 = Instant::now();
        let first = observe(None, &held("other"), t0);
        let later = t0 + Duration::from_secs(5);
        let same = observe(Some(first), &held("other"), later);
        assert_eq!(same.at, t0, "an unchanged record keeps its first sighting");
        let renewed = Seen {
            renew: Some(Timestamp::from_second(1).expect("ts")),
            ..held("other")
        };
        let changed = observe(Some(same), &renewed, later);
        assert_eq!(changed.at, later, "a renewal restarts the clock");
    }

    #[test]
    fn a_leader_that_cannot_renew_within_two_thirds_of_the_duration_has_lost() {
        let e = Election {
            namespace: "ns".into(),
            lease_name: "l".into(),
            identity: "me".into(),
            duration_secs: 15,
        };
        let deadline = e.renew_deadline();
        assert_eq!(deadline, Duration::from_secs(10));
        assert!(still_leading(
            Attempt::Failed,
            Duration::from_secs(9),
            deadline
        ));
        assert!(!still_leading(
            Attempt::Failed,
            Duration::from_secs(11),
            deadline
        ));
        assert!(still_leading(
            Attempt::Renewed,
            Duration::from_secs(11),
            deadline
        ));
        assert!(!still_leading(Attempt::TakenOver, Duration::ZERO, deadline));
    }
}
