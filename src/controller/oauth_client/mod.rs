//! Reconciles one `OAuthClient` into its credentials Secret, its verifier (what the token
//! server checks secrets against), its status and Events, in three parts:
//!
//! - [`observe`]: the reads (the watch stores for id and display-name owners, the
//!   credentials Secret, the Secrets the spec refers to, the verifier) into a plain struct;
//! - [`plan`]: a pure function from the spec, that struct, the time and the settings to
//!   every write: the Secret (create, replace or none), the verifier draft, the status with
//!   its conditions, the Events and the requeue. Unit-tested without a cluster;
//! - [`act`]: the writes, in order, and the argon2 work.
//!
//! Hashing is CPU work (~19 MiB each), not a decision: the plan says per entry whether
//! the hash is known (hashed from this very value version, or given by `hashRef`), must be
//! verified against a changed brought Secret, or must be computed; act runs that on the
//! blocking pool, bounded by `max_concurrent_hashes`. So the plan stays pure and fast, and
//! a test can see that a reconcile over an unchanged client asks for no hash at all.
//!
//! Invariants: the credentials Secret is the source of truth for generated values. A value
//! is written once, under its own key, and never rewritten; the Secret is replaced only
//! with its resourceVersion, so two controllers racing cannot both generate a value for
//! one entry. The verifier records which value version each hash came from, so a
//! reconcile over an unchanged client computes no hash and writes nothing. No secret value
//! reaches a log, an Event, the status or a `Debug` output.

mod act;
mod audiences;
mod observe;
mod plan;
mod policy;

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::controller::Action;

pub use plan::{display, older_with_display};

use super::{Context, Error, outcome};
use crate::api::OAuthClient;

/// One reconcile: observe, plan, act.
#[tracing::instrument(skip_all, fields(
    namespace = %client.namespace().unwrap_or_default(),
    name = %client.name_any(),
    client_id = tracing::field::Empty,
))]
pub async fn reconcile(client: Arc<OAuthClient>, ctx: Arc<Context>) -> Result<Action, Error> {
    let now = outcome::now().ok_or(Error::Clock)?;
    let observed = observe::observe(&client, &ctx).await?;
    // The client id is public (it is in the status): safe to record.
    tracing::Span::current().record("client_id", observed.client_id.as_str());
    let settings = plan::Settings::from(&ctx.config);
    let plan = plan::plan(&client, &observed, now, &settings, &mut || {
        crate::auth::secret::generate_secret()
    })?;
    let touched = audiences::changed(&client, observed.verifier.as_ref());
    let requeue = act::act(&client, &ctx, observed, plan).await?;
    // The resources claiming what the client asks for (or asked for) count it again.
    if !touched.is_empty() {
        super::claims::touch_claimants(&ctx, &touched);
    }
    Ok(requeue.into())
}

pub fn error_policy(client: Arc<OAuthClient>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(
        client = %client.name_any(),
        namespace = client.namespace().unwrap_or_default(),
        reason = error.metric_label(),
        error = %error,
        "reconcile failed"
    );
    error.retry()
}
