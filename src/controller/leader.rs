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
struct Observed {
    holder: Option<String>,
    renew: Option<Timestamp>,
    at: Instant,
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
        let Some(mut lease) = self.api.get_opt(&self.e.lease_name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.e.lease_name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(None, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let renew = spec.renew_time.as_ref().map(|t| t.0);
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|o| o.holder != holder || o.renew != renew);
        if changed {
            self.observed = Some(Observed {
                holder: holder.clone(),
                renew,
                at: Instant::now(),
            });
        }
        let mine = holder.as_deref() == Some(self.e.identity.as_str());
        let expired = self
            .observed
            .as_ref()
            .is_some_and(|o| o.at.elapsed() > self.e.duration());
        if !(mine || holder.is_none() || expired) {
            return Ok(false);
        }
        lease.spec = Some(self.spec(Some(&spec), now));
        // The resourceVersion read above makes this conditional: of two standbys racing
        // for a free lease, one wins and the other gets 409.
        match self
            .api
            .replace(&self.e.lease_name, &PostParams::default(), &lease)
            .await
        {
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
            match elector.try_acquire().await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = %elector.e.lease_name, "another replica holds the lease");
                    let _ = lost_tx.send(true);
                    return;
                }
                Err(err) if renewed.elapsed() > elector.e.renew_deadline() => {
                    tracing::error!(error = %err, lease = %elector.e.lease_name, "could not renew the lease in time");
                    let _ = lost_tx.send(true);
                    return;
                }
                Err(err) => tracing::warn!(error = %err, "renewing the lease failed; retrying"),
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
