//! Reconciles one `OAuthClient`: credentials Secret, verifier, status.
//!
//! The Secret is the source of truth for the secret value. It is created only when absent
//! and never rewritten, so a restart, a re-apply or a lost status keeps every credential
//! working. The verifier records which Secret version its hash came from, so that a
//! reconcile over an unchanged client computes no hash and writes nothing.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};

use super::credentials::{self, CLIENT_SECRET_KEY};
use super::{Context, Error, FIELD_MANAGER};
use crate::api::{
    OAuthClient, OAuthClientStatus, OAuthClientVerifier, OAuthClientVerifierSpec, SecretVerifier,
    SourceRef,
};
use crate::auth::{hash, secret::SecretString};

/// The single secret entry a client has until named secret lists arrive.
const DEFAULT_SECRET_ENTRY: &str = "default";

/// How often a healthy client is looked at again even without a change.
const RESYNC: Duration = Duration::from_secs(30 * 60);

pub async fn reconcile(client: Arc<OAuthClient>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = client.namespace().ok_or(Error::MissingNamespace)?;
    let client_id = client.effective_client_id().ok_or(Error::MissingUid)?;
    let secret_name = client.credentials_secret_name();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);

    let secret = match secrets
        .get_opt(&secret_name)
        .await
        .map_err(|source| Error::GetSecret {
            name: secret_name.clone(),
            source,
        })? {
        Some(s) if credentials::is_owned_by(&s, &client) => s,
        Some(_) => {
            let msg = format!(
                "Secret {secret_name} already exists and is not owned by this OAuthClient; it is left untouched. Delete it or choose another spec.credentialsSecret.name"
            );
            return not_ready(
                &client,
                &ctx,
                &client_id,
                &secret_name,
                "SecretConflict",
                msg,
            )
            .await;
        }
        None => match create_secret(&client, &ctx, &client_id, &secret_name).await? {
            Some(s) => s,
            // Someone created it between our read and our create: look again shortly.
            None => return Ok(Action::requeue(Duration::from_secs(1))),
        },
    };

    let Some(value) = credentials::client_secret(&secret) else {
        let msg = format!(
            "Secret {secret_name} has no {CLIENT_SECRET_KEY}; delete the Secret to have a new credential generated"
        );
        return not_ready(
            &client,
            &ctx,
            &client_id,
            &secret_name,
            "SecretKeyMissing",
            msg,
        )
        .await;
    };

    apply_verifier(&client, &ctx, &client_id, &secret, &value).await?;

    let msg = format!("Secret {secret_name} holds the credentials; the token server accepts them");
    patch_status(
        &client,
        &ctx,
        &client_id,
        &secret_name,
        true,
        "CredentialsReady",
        msg,
    )
    .await?;
    Ok(Action::requeue(RESYNC))
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

/// Generates a secret and creates the Secret. `None` if it appeared meanwhile.
async fn create_secret(
    client: &OAuthClient,
    ctx: &Context,
    client_id: &str,
    secret_name: &str,
) -> Result<Option<Secret>, Error> {
    let value = crate::auth::secret::generate_secret()?;
    let secret = credentials::build(
        client,
        client_id,
        secret_name,
        &value,
        &ctx.config.token_endpoint,
    );
    let api: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &client.namespace().unwrap_or_default());
    match api.create(&PostParams::default(), &secret).await {
        Ok(created) => {
            publish(
                client,
                ctx,
                EventType::Normal,
                "CredentialsCreated",
                format!("Generated a client secret into Secret {secret_name}"),
            )
            .await;
            Ok(Some(created))
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
        Err(source) => Err(Error::CreateSecret {
            name: secret_name.to_string(),
            source,
        }),
    }
}

/// Writes the verifier the token server reads, hashing only when the Secret changed.
async fn apply_verifier(
    client: &OAuthClient,
    ctx: &Context,
    client_id: &str,
    secret: &Secret,
    value: &SecretString,
) -> Result<(), Error> {
    let name = client.name_any();
    let api: Api<OAuthClientVerifier> =
        Api::namespaced(ctx.client.clone(), &client.namespace().unwrap_or_default());
    let existing = api
        .get_opt(&name)
        .await
        .map_err(|source| Error::GetVerifier {
            name: name.clone(),
            source,
        })?;

    let source = SourceRef {
        secret_name: secret.name_any(),
        key: CLIENT_SECRET_KEY.to_string(),
        uid: secret.metadata.uid.clone().unwrap_or_default(),
        resource_version: secret.metadata.resource_version.clone().unwrap_or_default(),
    };
    let previous = existing.as_ref().and_then(|v| {
        v.spec
            .secrets
            .iter()
            .find(|s| s.name == DEFAULT_SECRET_ENTRY)
    });
    let hash = match previous {
        // The hash was computed from this very Secret version: nothing to do.
        Some(p) if p.source == source => p.hash.clone(),
        // The Secret changed (labels, say) or was recreated: keep the hash if it still
        // matches the value, so a verifier is rewritten only when it must be.
        Some(p)
            if {
                tracing::debug!(client = %name, "argon2: verifying the stored hash against a changed Secret");
                let (v, h) = (value.clone(), p.hash.clone());
                blocking(ctx, move || hash::verify(v.expose(), &h)).await?
            } =>
        {
            p.hash.clone()
        }
        _ => {
            tracing::debug!(client = %name, "argon2: hashing the client secret");
            let v = value.clone();
            blocking(ctx, move || hash::hash(v.expose())).await??
        }
    };

    let spec = OAuthClientVerifierSpec {
        client_id: client_id.to_string(),
        scopes: client.spec.scopes.clone(),
        audiences: client.spec.audiences.clone(),
        access_token_lifetime_seconds: client.spec.access_token_lifetime_seconds,
        secrets: vec![SecretVerifier {
            name: DEFAULT_SECRET_ENTRY.into(),
            hash,
            source,
        }],
    };
    if existing.as_ref().map(|v| &v.spec) == Some(&spec) {
        return Ok(());
    }
    let verifier = OAuthClientVerifier {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: client.namespace(),
            owner_references: client.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec,
    };
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&verifier),
    )
    .await
    .map_err(|source| Error::ApplyVerifier { name, source })?;
    Ok(())
}

/// Runs argon2 work on a blocking thread, at most `max_concurrent_hashes` at once.
async fn blocking<T: Send + 'static>(
    ctx: &Context,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    let _permit = ctx.hashing.acquire().await;
    Ok(tokio::task::spawn_blocking(f).await?)
}

async fn not_ready(
    client: &OAuthClient,
    ctx: &Context,
    client_id: &str,
    secret_name: &str,
    reason: &str,
    message: String,
) -> Result<Action, Error> {
    let changed = patch_status(
        client,
        ctx,
        client_id,
        secret_name,
        false,
        reason,
        message.clone(),
    )
    .await?;
    if changed {
        publish(client, ctx, EventType::Warning, reason, message).await;
    }
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// Server-side applies the status if it differs from what is there. Returns whether it
/// wrote.
async fn patch_status(
    client: &OAuthClient,
    ctx: &Context,
    client_id: &str,
    secret_name: &str,
    ready: bool,
    reason: &str,
    message: String,
) -> Result<bool, Error> {
    let current = client.status.clone().unwrap_or_default();
    let status = OAuthClientStatus {
        client_id: Some(client_id.to_string()),
        secret_name: Some(secret_name.to_string()),
        observed_generation: client.metadata.generation,
        conditions: vec![condition(
            &current.conditions,
            "Ready",
            ready,
            reason,
            message,
            client.metadata.generation,
        )],
    };
    if status == current {
        return Ok(false);
    }
    let name = client.name_any();
    let api: Api<OAuthClient> =
        Api::namespaced(ctx.client.clone(), &client.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": OAuthClient::api_version(&()),
        "kind": OAuthClient::kind(&()),
        "status": status,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::PatchStatus { name, source })?;
    Ok(true)
}

/// A condition that keeps its `lastTransitionTime` while its status stays the same.
fn condition(
    existing: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    let status = if ok { "True" } else { "False" }.to_string();
    let since = existing
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(jiff::Timestamp::now()));
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

async fn publish(
    client: &OAuthClient,
    ctx: &Context,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &client.object_ref(&())).await {
        tracing::warn!(error = %e, "publishing an event failed");
    }
}
