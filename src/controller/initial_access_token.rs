//! Reconciles one `InitialAccessToken`: the token Secret, the verifier the token server
//! reads, status, Events.
//!
//! The token value is generated once into a Secret owned by the resource and never
//! rewritten; the token server sees only its argon2id hash. The count of registered
//! clients is the token server's to write (see `server::registration`): the controller
//! only reports it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};

use super::secrets::{self, bytes};
use super::{Context, Error};
use crate::api::{
    InitialAccessToken, InitialAccessTokenStatus, InitialAccessTokenVerifier,
    InitialAccessTokenVerifierSpec, MANAGED_BY, MANAGED_BY_LABEL, SourceRef,
};
use crate::auth::secret::{SecretString, split_token};
use crate::auth::{hash, secret};

/// The key of the token value in its Secret.
pub const TOKEN_KEY: &str = "token";

pub async fn reconcile(iat: Arc<InitialAccessToken>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = iat.namespace().ok_or(Error::MissingNamespace)?;
    let now = Timestamp::from_second(Timestamp::now().as_second()).map_err(|_| Error::Clock)?;
    let secret_name = iat.token_secret_name();
    let mut events = Vec::new();

    let Some(expires) = expiry(&iat) else {
        return finish(&iat, &ctx, Outcome::invalid(&secret_name), events).await;
    };

    // The token value: written once, kept for good (deleting the Secret makes a new one).
    let secrets_api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = secrets_api
        .get_opt(&secret_name)
        .await
        .map_err(|source| Error::GetSecret {
            name: secret_name.clone(),
            source,
        })?;
    let secret = match existing {
        Some(s) if !owned_by(&s, &iat) => {
            let outcome = Outcome::conflict(&secret_name, expires);
            return finish(&iat, &ctx, outcome, events).await;
        }
        Some(s) => s,
        None => {
            let token = format!(
                "{}.{}",
                secret::random_id()?,
                secret::generate_secret()?.expose()
            );
            let created = secrets_api
                .create(
                    &PostParams::default(),
                    &token_secret(&iat, &secret_name, &token),
                )
                .await;
            match created {
                Ok(s) => {
                    events.push((
                        EventType::Normal,
                        "TokenCreated",
                        format!("Generated the initial access token into Secret {secret_name}"),
                    ));
                    s
                }
                // Another controller created it first: take theirs next time round.
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    return Ok(Action::requeue(Duration::from_secs(1)));
                }
                Err(source) => {
                    return Err(Error::WriteSecret {
                        name: secret_name,
                        source,
                    });
                }
            }
        }
    };
    let token = secrets::value(&secret, TOKEN_KEY);
    let token_id = token
        .as_ref()
        .and_then(|t| split_token(t.expose()))
        .map(|(id, _)| id.to_string());
    let (Some(token), Some(token_id)) = (token, token_id) else {
        let outcome = Outcome::conflict(&secret_name, expires);
        return finish(&iat, &ctx, outcome, events).await;
    };
    let source = SourceRef {
        secret_name: secret_name.clone(),
        key: TOKEN_KEY.into(),
        uid: secret.metadata.uid.clone().unwrap_or_default(),
        version: secret.metadata.resource_version.clone().unwrap_or_default(),
    };
    apply_verifier(&iat, &ctx, token_id, token, source, expires).await?;

    let count = iat.spec.count;
    let registered = iat.registered();
    let remaining = count.saturating_sub(registered);
    let expired = expires <= now;
    let exhausted = remaining == 0;
    let previous = iat.status.as_ref().map(|s| s.conditions.as_slice());
    let was = |t: &str| previous.is_some_and(|c| is_true(c, t));
    if expired && !was("Expired") {
        events.push((
            EventType::Warning,
            "Expired",
            format!("The initial access token expired at {expires}; it registers no more clients"),
        ));
    }
    if exhausted && !was("Exhausted") {
        events.push((
            EventType::Normal,
            "Exhausted",
            format!("The initial access token registered {registered} of {count} clients; it registers no more"),
        ));
    }
    let (ready, reason, message) = if expired {
        (false, "Expired", format!("Expired at {expires}"))
    } else if exhausted {
        (
            false,
            "Exhausted",
            format!("Registered {registered} of {count} clients"),
        )
    } else {
        (
            true,
            "TokenReady",
            format!(
                "Secret {secret_name} holds the token; it may register {remaining} more client(s) until {expires}"
            ),
        )
    };
    let outcome = Outcome {
        secret_name: Some(secret_name),
        expires_at: Some(expires),
        remaining: Some(remaining),
        conditions: vec![
            ("Ready", ready, reason, message),
            (
                "Expired",
                expired,
                if expired { "Expired" } else { "NotExpired" },
                format!("Expires at {expires}"),
            ),
            (
                "Exhausted",
                exhausted,
                if exhausted { "Exhausted" } else { "Remaining" },
                format!("{remaining} of {count} remaining"),
            ),
        ],
    };
    finish(&iat, &ctx, outcome, events).await?;
    // Look again right after the expiry, to say so.
    let until_expiry = u64::try_from(expires.as_second() - now.as_second()).unwrap_or(0);
    Ok(if expired {
        Action::await_change()
    } else {
        Action::requeue(Duration::from_secs(until_expiry + 1).min(Duration::from_secs(3600)))
    })
}

pub fn error_policy(iat: Arc<InitialAccessToken>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(
        initial_access_token = %iat.name_any(),
        namespace = iat.namespace().unwrap_or_default(),
        reason = error.metric_label(),
        error = %error,
        "reconcile failed"
    );
    error.retry()
}

/// When the token stops working: `spec.expiresAt`, or `expiresAfter` past its creation.
pub fn expiry(iat: &InitialAccessToken) -> Option<Timestamp> {
    if let Some(at) = &iat.spec.expires_at {
        return Some(at.0);
    }
    let created = iat.metadata.creation_timestamp.as_ref()?.0;
    let after = secrets::parse_duration(iat.spec.expires_after.as_deref()?)?;
    created.checked_add(after).ok()
}

fn owned_by(secret: &Secret, iat: &InitialAccessToken) -> bool {
    let uid = iat.metadata.uid.as_deref();
    secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| Some(o.uid.as_str()) == uid && o.controller == Some(true))
}

fn token_secret(iat: &InitialAccessToken, name: &str, token: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: iat.namespace(),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
                (crate::api::REGISTERED_BY_LABEL.to_string(), iat.name_any()),
            ])),
            owner_references: iat.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(TOKEN_KEY.to_string(), bytes(token))])),
        ..Secret::default()
    }
}

/// Writes the verifier, hashing only when the token Secret is not the one last hashed.
async fn apply_verifier(
    iat: &InitialAccessToken,
    ctx: &Context,
    token_id: String,
    token: SecretString,
    source: SourceRef,
    expires: Timestamp,
) -> Result<(), Error> {
    let name = iat.name_any();
    let api: Api<InitialAccessTokenVerifier> =
        Api::namespaced(ctx.client.clone(), &iat.namespace().unwrap_or_default());
    let existing = api
        .get_opt(&name)
        .await
        .map_err(|source| Error::GetVerifier {
            name: name.clone(),
            source,
        })?;
    let hash = match existing.as_ref().map(|v| &v.spec) {
        Some(v) if v.source == source && v.token_id == token_id => v.hash.clone(),
        _ => {
            tracing::debug!(initial_access_token = %name, "argon2: hashing an initial access token");
            ctx.hash_work(move || hash::hash(token.expose())).await??
        }
    };
    let spec = InitialAccessTokenVerifierSpec {
        token_id,
        hash,
        source,
        expires_at: Time(expires),
    };
    if existing.as_ref().map(|v| &v.spec) == Some(&spec) {
        return Ok(());
    }
    ctx.apply_owned(iat, InitialAccessTokenVerifier::new(&name, spec))
        .await
}

/// The status a reconcile arrived at.
struct Outcome {
    secret_name: Option<String>,
    expires_at: Option<Timestamp>,
    remaining: Option<u32>,
    conditions: Vec<(&'static str, bool, &'static str, String)>,
}

impl Outcome {
    fn invalid(secret_name: &str) -> Self {
        Outcome {
            secret_name: Some(secret_name.to_string()),
            expires_at: None,
            remaining: None,
            conditions: vec![(
                "Ready",
                false,
                "InvalidSpec",
                "spec.expiresAfter or spec.expiresAt does not give a usable expiry".into(),
            )],
        }
    }

    fn conflict(secret_name: &str, expires: Timestamp) -> Self {
        Outcome {
            secret_name: Some(secret_name.to_string()),
            expires_at: Some(expires),
            remaining: None,
            conditions: vec![(
                "Ready",
                false,
                "SecretConflict",
                format!(
                    "Secret {secret_name} exists but is not this token's (not owned by it, or without a `token` key); it is left untouched"
                ),
            )],
        }
    }
}

fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// Writes the status fields the controller owns (never `registeredClients`, which is the
/// token server's) if they changed, onto the version they were computed from, then
/// publishes the Events.
async fn finish(
    iat: &InitialAccessToken,
    ctx: &Context,
    outcome: Outcome,
    events: Vec<(EventType, &'static str, String)>,
) -> Result<Action, Error> {
    let current = iat.status.clone().unwrap_or_default();
    let generation = iat.metadata.generation;
    let conditions: Vec<Condition> = outcome
        .conditions
        .into_iter()
        .map(|(t, ok, reason, message)| {
            super::oauth_client::condition(&current.conditions, t, ok, reason, message, generation)
        })
        .collect();
    let status = InitialAccessTokenStatus {
        expires_at: outcome.expires_at.map(Time),
        remaining: outcome.remaining,
        secret_name: outcome.secret_name,
        observed_generation: generation,
        conditions,
        registered_clients: current.registered_clients.clone(),
    };
    if status != current {
        // Without `registeredClients` (empty lists are not serialised): applying it would
        // make the controller a co-owner of the list the token server appends to.
        let owned = InitialAccessTokenStatus {
            registered_clients: Vec::new(),
            ..status
        };
        if !ctx.apply_status_if_current(iat, &owned).await? {
            // The token server claimed or released a slot since this version was read.
            return Ok(Action::await_change());
        }
        for (type_, reason, note) in events {
            ctx.publish(iat, type_, reason, note).await;
        }
    }
    Ok(Action::await_change())
}
