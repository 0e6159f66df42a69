//! Act: carries out a [`Plan`], in the order that keeps the token server honest: the
//! credentials Secret first (so a value exists before anything accepts its hash), then the
//! verifier (after the argon2 work the plan asked for, for chosen secrets only), then the
//! status, then the Events.
//!
//! The Secret write is conditional (create, or replace with the resourceVersion read): if
//! anyone wrote it meanwhile, nothing else is written and the reconcile starts over from
//! their content, so no generated value is ever lost or generated twice. The verifier write
//! is conditional the same way (created, or replaced onto the version read).

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};

use super::super::outcome::Requeue;
use super::super::{Context, Error};
use super::observe::Observed;
use super::plan::{Hashes, Hashing, Plan, SecretWrite, VerifierDraft, VerifierPlan};
use crate::api::{OAuthClient, OAuthClientVerifier};
use crate::auth::hash;

/// Writes what `plan` says. Returns the requeue: the plan's, or a quick one when the
/// Secret changed under us.
pub async fn act(
    client: &OAuthClient,
    ctx: &Context,
    observed: Observed,
    plan: Plan,
) -> Result<Requeue, Error> {
    let ns = client.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let creating = matches!(plan.secret, SecretWrite::Create(_));
    let written_uid = match write_secret(&secrets, plan.secret).await? {
        Written::Conflict => {
            if creating {
                // Taken by someone (or by our own create the watch has not shown yet):
                // the next reconcile reads what is there.
                ctx.set_secret_taken(&ns, &observed.secret_name, true);
            }
            return Ok(Requeue::After(std::time::Duration::from_secs(1)));
        }
        Written::Now { uid } => uid,
        Written::Unchanged => observed.credentials.and_then(|s| s.metadata.uid),
    };

    match plan.verifier {
        VerifierPlan::Untouched => {}
        VerifierPlan::Delete => delete_verifier(client, ctx).await?,
        VerifierPlan::Write(mut draft) => {
            for e in draft.entries.iter_mut().filter(|e| e.generated) {
                e.source.uid = written_uid.clone().unwrap_or_default();
            }
            let spec = hash_draft(client, ctx, &draft).await?;
            if observed.verifier.as_ref().map(|v| &v.spec) != Some(&spec) {
                let verifier = OAuthClientVerifier::new(&client.name_any(), spec);
                if !ctx
                    .write_owned(client, verifier, observed.verifier.as_ref())
                    .await?
                {
                    return Ok(Requeue::After(std::time::Duration::from_secs(1)));
                }
            }
        }
    }

    let outcome = plan.outcome;
    if client.status.clone().unwrap_or_default() != outcome.status {
        let mut updated = client.clone();
        updated.status = Some(outcome.status);
        if !ctx.replace_status(&updated).await? {
            return Ok(Requeue::After(std::time::Duration::from_secs(1)));
        }
        // Events only with a status change, so a periodic resync does not repeat them.
        for note in outcome.events {
            if matches!(note.reason, "PolicyWarning" | "PolicyViolation") {
                tracing::info!(
                    target: "audit",
                    event = "policy_violation",
                    namespace = client.metadata.namespace.as_deref().unwrap_or_default(),
                    client = client.metadata.name.as_deref().unwrap_or_default(),
                    reason = note.reason,
                    detail = %note.message,
                );
            }
            ctx.publish(client, note.event_type(), note.reason, note.message)
                .await;
        }
    }
    Ok(outcome.requeue)
}

/// What became of the Secret write.
enum Written {
    Unchanged,
    /// Written; the UID the API server gave it.
    Now {
        uid: Option<String>,
    },
    /// Someone else wrote it first (409).
    Conflict,
}

async fn write_secret(api: &Api<Secret>, write: SecretWrite) -> Result<Written, Error> {
    let (result, name) = match write {
        SecretWrite::None => return Ok(Written::Unchanged),
        SecretWrite::Create(s) => (api.create(&PostParams::default(), &s).await, s.name_any()),
        SecretWrite::Replace(s) => {
            let name = s.name_any();
            (api.replace(&name, &PostParams::default(), &s).await, name)
        }
    };
    match result {
        Ok(s) => Ok(Written::Now {
            uid: s.metadata.uid,
        }),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Written::Conflict),
        Err(source) => Err(Error::WriteSecret { name, source }),
    }
}

/// The draft's spec with every hash: the known ones as they are, the argon2id ones of
/// chosen values computed on the blocking pool, at most `max_concurrent_hashes` at once.
async fn hash_draft(
    client: &OAuthClient,
    ctx: &Context,
    draft: &VerifierDraft,
) -> Result<crate::api::OAuthClientVerifierSpec, Error> {
    let mut hashes = Vec::with_capacity(draft.entries.len());
    for e in &draft.entries {
        let h = match &e.hashing {
            Hashing::Known(h) => h.clone(),
            Hashing::VerifyElseHash { value, previous } => {
                tracing::debug!(client = %client.name_any(), entry = %e.name, "argon2: verifying a stored hash against a changed Secret");
                let (v, p) = (value.clone(), previous.clone());
                let phc = if ctx.hash_work(move || hash::verify(v.expose(), &p)).await? {
                    previous.clone()
                } else {
                    hash_value(client, ctx, &e.name, value).await?
                };
                Hashes {
                    sha256: None,
                    argon2id: Some(phc),
                }
            }
            Hashing::Hash(value) => Hashes {
                sha256: None,
                argon2id: Some(hash_value(client, ctx, &e.name, value).await?),
            },
        };
        hashes.push(h);
    }
    Ok(draft.spec(hashes))
}

async fn hash_value(
    client: &OAuthClient,
    ctx: &Context,
    entry: &str,
    value: &crate::auth::secret::SecretString,
) -> Result<String, Error> {
    tracing::debug!(client = %client.name_any(), %entry, "argon2: hashing a chosen client secret");
    let v = value.clone();
    Ok(ctx.hash_work(move || hash::hash(v.expose())).await??)
}

async fn delete_verifier(client: &OAuthClient, ctx: &Context) -> Result<(), Error> {
    let name = client.name_any();
    let api: Api<OAuthClientVerifier> =
        Api::namespaced(ctx.client.clone(), &client.namespace().unwrap_or_default());
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(Error::WriteVerifier { name, source }),
    }
}
