//! Reconciles one `OAuthClient`: credentials Secret, verifier, status, Events.
//!
//! The credentials Secret is the source of truth for generated values. A value is written
//! once, under its own key, and never rewritten; the Secret is replaced only with its
//! resourceVersion, so two controllers racing cannot both generate a value for one entry.
//! The verifier records which value version each hash came from, so a reconcile over an
//! unchanged client computes no hash and writes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::credentials;
use super::secrets::{self, bytes, entry_key};
use super::{Context, Error};
use crate::api::{
    ClientSecret, OAuthClient, OAuthClientStatus, OAuthClientVerifier, OAuthClientVerifierSpec,
    SecretState, SecretStatus, SecretVerifier, SourceRef,
};
use crate::auth::{hash, secret::SecretString};

/// How often a healthy client is looked at again even without a change.
const RESYNC: Duration = Duration::from_secs(30 * 60);
/// How often a client waiting for something outside its watches looks again.
const POLL: Duration = Duration::from_secs(5);
/// How often a client with a brought-your-own secret re-reads it.
const BYO_RESYNC: Duration = Duration::from_secs(30);

/// What the controller holds of one secret: the value, or only its hash (`hashRef`).
#[derive(Clone)]
enum Material {
    Value(SecretString),
    Hash(String),
}

/// One secret entry, resolved against the Secrets it lives in.
struct Resolved {
    spec: ClientSecret,
    created: Option<Timestamp>,
    expires: Option<Timestamp>,
    /// The value (or hash) and where it came from; `None` while pending.
    value: Option<(Material, SourceRef)>,
    state: SecretState,
}

pub async fn reconcile(client: Arc<OAuthClient>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = client.namespace().ok_or(Error::MissingNamespace)?;
    let client_id = client.effective_client_id().ok_or(Error::MissingUid)?;
    let secret_name = client.credentials_secret_name();
    // Whole seconds: Kubernetes times have no more, and a finer `now` would make every
    // reconcile see a changed verifier.
    let now = Timestamp::from_second(Timestamp::now().as_second()).map_err(|_| Error::Clock)?;
    let mut report = Report::new(&client_id, &secret_name);

    ctx.stores_ready().await;
    if let Some(owner) = ctx.client_id_owner(&client, &client_id) {
        // Stop serving this client before saying so: the token server must answer only
        // to the owner of an id.
        delete_verifier(&client, &ctx).await?;
        report.ready(false, "ClientIdConflict", format!(
            "client id {client_id} is already used by OAuthClient {owner}, which is older; choose another spec.clientId"
        ));
        report.event(
            EventType::Warning,
            "ClientIdConflict",
            format!("client id {client_id} is already used by {owner}"),
        );
        return finish(&client, &ctx, report, Action::requeue(POLL)).await;
    }

    let lifetime = client.spec.access_token_lifetime_seconds;
    let (min, max) = ctx.config.lifetime_bounds;
    if lifetime < min || lifetime > max {
        report.ready(false, "InvalidSpec", format!(
            "spec.accessTokenLifetimeSeconds {lifetime} is outside this operator's bounds {min}..{max}"
        ));
        return finish(&client, &ctx, report, Action::await_change()).await;
    }

    let secrets_api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let current = match secrets_api.get_opt(&secret_name).await.map_err(|source| {
        Error::GetSecret {
            name: secret_name.clone(),
            source,
        }
    })? {
        Some(s) if !credentials::is_owned_by(&s, &client) => {
            report.ready(false, "SecretConflict", format!(
                "Secret {secret_name} already exists and is not owned by this OAuthClient; it is left untouched. Delete it or choose another spec.credentialsSecret.name"
            ));
            return finish(
                &client,
                &ctx,
                report,
                Action::requeue(Duration::from_secs(60)),
            )
            .await;
        }
        other => other,
    };

    // Plan the credentials Secret: keep every existing value, generate the missing ones.
    let keys = client.secret_keys();
    let mut created = secrets::created_times(current.as_ref());
    let mut data = current
        .as_ref()
        .and_then(|s| s.data.clone())
        .unwrap_or_default();
    let entries = client.secret_entries();
    let mut generated = Vec::new();
    for e in entries.iter().filter(|e| !e.is_external()) {
        let key = entry_key(&keys.client_secret, &e.name);
        if data.contains_key(&key) && created.contains_key(&e.name) {
            continue;
        }
        if e.expires_at.as_ref().is_some_and(|t| t.0 <= now) {
            report.invalid(format!(
                "spec.secrets[{}].expiresAt is in the past; no secret was generated for it",
                e.name
            ));
            continue;
        }
        let value = crate::auth::secret::generate_secret()?;
        data.insert(key, bytes(value.expose()));
        created.insert(e.name.clone(), now);
        generated.push(e.name.clone());
    }
    // Entries removed from the spec: their values go (their hashes leave the verifier).
    let prefix = format!("{}.", keys.client_secret);
    let wanted: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
    let removed: Vec<String> = data
        .keys()
        .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
        .filter(|name| !wanted.contains(name))
        .collect();
    for name in &removed {
        data.remove(&entry_key(&keys.client_secret, name));
    }
    created.retain(|name, _| wanted.contains(name));

    // Bring-your-own entries: hashed from their Secret (or taken as a hash), never copied.
    let mut byo: BTreeMap<String, (Material, SourceRef)> = BTreeMap::new();
    for e in &entries {
        let (r, hashed) = match (&e.secret_key_ref, &e.hash_ref) {
            (Some(r), _) => (r, false),
            (None, Some(r)) => (r, true),
            (None, None) => continue,
        };
        let source = read_secret(&secrets_api, &r.name).await?;
        match source
            .as_ref()
            .and_then(|s| secrets::value(s, &r.key).map(|v| (s, v)))
        {
            Some((_, v)) if hashed && !hash::is_argon2id_phc(v.expose()) => {
                report.invalid(format!(
                    "spec.secrets[{}].hashRef: key {} of Secret {} is not an argon2id PHC string",
                    e.name, r.key, r.name
                ));
            }
            Some((s, v)) => {
                created.entry(e.name.clone()).or_insert(now);
                let src = SourceRef {
                    secret_name: r.name.clone(),
                    key: r.key.clone(),
                    uid: s.metadata.uid.clone().unwrap_or_default(),
                    version: s.metadata.resource_version.clone().unwrap_or_default(),
                };
                let material = if hashed {
                    Material::Hash(v.expose().to_string())
                } else {
                    Material::Value(v)
                };
                byo.insert(e.name.clone(), (material, src));
            }
            None => report.waiting(format!(
                "spec.secrets[{}] waits for key {} of Secret {}",
                e.name, r.key, r.name
            )),
        }
    }
    // A registered client's registration access token, as a hash (RFC 7592).
    let registration_hash = match &client.spec.registration {
        Some(reg) => {
            let r = &reg.access_token_hash_ref;
            let phc = read_secret(&secrets_api, &r.name)
                .await?
                .and_then(|s| secrets::value(&s, &r.key))
                .filter(|v| hash::is_argon2id_phc(v.expose()));
            if phc.is_none() {
                report.waiting(format!(
                    "spec.registration waits for an argon2id hash under key {} of Secret {}",
                    r.key, r.name
                ));
            }
            phc.map(|v| v.expose().to_string())
        }
        None => None,
    };

    // Expiry and state of every entry; the stable key holds the newest valid generated one.
    let warn = ctx.config.expiry_warning;
    let state_of = |e: &ClientSecret| {
        let c = created.get(&e.name).copied();
        let expires = c.and_then(|c| secrets::expiry(e, c));
        let state = if c.is_none() {
            SecretState::Pending
        } else {
            secrets::state(expires, now, warn)
        };
        (c, expires, state)
    };
    let newest = entries
        .iter()
        .filter(|e| !e.is_external())
        .filter(|e| {
            matches!(
                state_of(e).2,
                SecretState::Valid | SecretState::ExpiringSoon
            )
        })
        .max_by_key(|e| created.get(&e.name).copied());
    match newest.and_then(|e| data.get(&entry_key(&keys.client_secret, &e.name)).cloned()) {
        Some(v) => data.insert(keys.client_secret.clone(), v),
        None => data.remove(&keys.client_secret),
    };
    data.insert(keys.client_id.clone(), bytes(&client_id));
    data.insert(
        keys.token_endpoint.clone(),
        bytes(&ctx.config.token_endpoint),
    );

    let desired = credentials::build(&client, &secret_name, data, &created);
    let Some(written) = write_secret(&secrets_api, current.as_ref(), desired).await? else {
        // Someone else wrote it first: start over from their content.
        return Ok(Action::requeue(Duration::from_secs(1)));
    };
    for name in &generated {
        let verb = if current.is_none() {
            "Generated"
        } else {
            "Generated a new"
        };
        report.event(
            EventType::Normal,
            "SecretCreated",
            format!("{verb} client secret {name} into Secret {secret_name}"),
        );
    }
    for name in &removed {
        report.event(
            EventType::Normal,
            "SecretRevoked",
            format!("Client secret {name} was removed from the spec and no longer works"),
        );
    }

    // Resolve every entry to its value and source.
    let uid = written.metadata.uid.clone().unwrap_or_default();
    let resolved: Vec<Resolved> = entries
        .iter()
        .map(|e| {
            let (c, expires, state) = state_of(e);
            let value = match e.is_external() {
                true => byo.get(&e.name).cloned(),
                false => {
                    let key = entry_key(&keys.client_secret, &e.name);
                    secrets::value(&written, &key).zip(c).map(|(v, c)| {
                        let src = SourceRef {
                            secret_name: secret_name.clone(),
                            key,
                            uid: uid.clone(),
                            version: c.to_string(),
                        };
                        (Material::Value(v), src)
                    })
                }
            };
            let state = if value.is_none() {
                SecretState::Pending
            } else {
                state
            };
            Resolved {
                spec: e.clone(),
                created: c,
                expires,
                value,
                state,
            }
        })
        .collect();

    apply_verifier(&client, &ctx, &client_id, &resolved, registration_hash, now).await?;

    // Status, conditions and the Events of state changes.
    let previous: BTreeMap<String, SecretState> = client
        .status
        .iter()
        .flat_map(|s| s.secrets.iter().map(|x| (x.name.clone(), x.state)))
        .collect();
    for r in &resolved {
        let was = previous.get(&r.spec.name).copied();
        match r.state {
            SecretState::Expired if was != Some(SecretState::Expired) => report.event(
                EventType::Warning,
                "SecretExpired",
                format!(
                    "Client secret {} expired and is no longer accepted",
                    r.spec.name
                ),
            ),
            SecretState::ExpiringSoon if was != Some(SecretState::ExpiringSoon) => report.event(
                EventType::Warning,
                "SecretExpiringSoon",
                format!(
                    "Client secret {} expires at {}; add a new secret and roll it out",
                    r.spec.name,
                    r.expires.map(|t| t.to_string()).unwrap_or_default()
                ),
            ),
            _ => {}
        }
    }
    report.secrets = resolved
        .iter()
        .map(|r| SecretStatus {
            name: r.spec.name.clone(),
            description: r.spec.description.clone(),
            created_at: r.created.map(Time),
            expires_at: r.expires.map(Time),
            state: r.state,
        })
        .collect();
    let valid = resolved
        .iter()
        .filter(|r| matches!(r.state, SecretState::Valid | SecretState::ExpiringSoon))
        .count();
    report.valid_secrets = Some(u32::try_from(valid).unwrap_or(u32::MAX));
    let expiring: Vec<&str> = resolved
        .iter()
        .filter(|r| r.state == SecretState::ExpiringSoon)
        .map(|r| r.spec.name.as_str())
        .collect();
    report.condition(
        "SecretsExpiring",
        !expiring.is_empty(),
        if expiring.is_empty() {
            "NoneExpiring"
        } else {
            "ExpiringSoon"
        },
        if expiring.is_empty() {
            "No secret expires within the warning window".into()
        } else {
            format!("Expiring soon: {}", expiring.join(", "))
        },
    );

    let public = entries.is_empty();
    if !client.spec.active {
        report.ready(false, "Deactivated", "spec.active is false: the token endpoint refuses this client and the tokens issued to it before".into());
    } else if !public && valid == 0 && !report.waiting.is_empty() {
        let msg = report.waiting.join("; ");
        report.ready(false, "WaitingForSecret", msg);
    } else if !public && valid == 0 {
        report.ready(
            false,
            "NoValidSecret",
            "No secret of this client is valid: add one to spec.secrets".into(),
        );
    } else if report.ready.is_none() {
        let msg = if public {
            format!("Public client; Secret {secret_name} holds its client id")
        } else {
            format!(
                "Secret {secret_name} holds the credentials; the token server accepts {valid} secret(s)"
            )
        };
        report.ready(true, "CredentialsReady", msg);
    }

    // Look again when the next secret crosses into expiring-soon or expired.
    let next = resolved
        .iter()
        .filter_map(|r| r.expires)
        .flat_map(|t| [t.checked_sub(warn).ok(), Some(t)])
        .flatten()
        .filter(|t| *t > now)
        .min()
        .map(|t| {
            Duration::from_secs(u64::try_from(t.as_second() - now.as_second()).unwrap_or(0) + 1)
        })
        .unwrap_or(RESYNC)
        .min(RESYNC);
    // A brought Secret is not watched (the controller watches only its own Secrets), so a
    // client using one looks again often enough to follow an external rotation.
    let next = if entries.iter().any(ClientSecret::is_external) {
        next.min(BYO_RESYNC)
    } else {
        next
    };
    let action = if report.waiting.is_empty() {
        Action::requeue(next)
    } else {
        Action::requeue(POLL)
    };
    finish(&client, &ctx, report, action).await
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

/// Creates the credentials Secret, or replaces it carrying the resourceVersion that was
/// read, so that if anyone wrote meanwhile the write fails and the reconcile starts over:
/// no generated value is ever lost or generated twice. `None` on such a conflict.
async fn write_secret(
    api: &Api<Secret>,
    current: Option<&Secret>,
    desired: Secret,
) -> Result<Option<Secret>, Error> {
    let name = desired.name_any();
    let result = match current {
        None => api.create(&PostParams::default(), &desired).await,
        Some(cur) if credentials::differs(cur, &desired) => {
            let mut next = cur.clone();
            next.data = desired.data;
            next.metadata
                .labels
                .get_or_insert_default()
                .extend(desired.metadata.labels.unwrap_or_default());
            next.metadata
                .annotations
                .get_or_insert_default()
                .extend(desired.metadata.annotations.unwrap_or_default());
            api.replace(&name, &PostParams::default(), &next).await
        }
        Some(cur) => return Ok(Some(cur.clone())),
    };
    match result {
        Ok(s) => Ok(Some(s)),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
        Err(source) => Err(Error::WriteSecret { name, source }),
    }
}

/// Reads a Secret the client refers to; `None` when it does not exist (yet).
async fn read_secret(api: &Api<Secret>, name: &str) -> Result<Option<Secret>, Error> {
    api.get_opt(name).await.map_err(|source| Error::GetSecret {
        name: name.to_string(),
        source,
    })
}

/// Writes the verifier the token server reads, hashing only values it has not seen.
async fn apply_verifier(
    client: &OAuthClient,
    ctx: &Context,
    client_id: &str,
    resolved: &[Resolved],
    registration_access_token_hash: Option<String>,
    now: Timestamp,
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
    let previous = |entry: &str| {
        existing
            .as_ref()
            .and_then(|v| v.spec.secrets.iter().find(|s| s.name == entry))
    };

    let mut verifiers = Vec::new();
    for r in resolved {
        let (value, source) = match &r.value {
            None => continue,
            Some((Material::Hash(phc), source)) => {
                verifiers.push(SecretVerifier {
                    name: r.spec.name.clone(),
                    hash: phc.clone(),
                    source: source.clone(),
                    expires_at: r.expires.map(Time),
                });
                continue;
            }
            Some((Material::Value(value), source)) => (value, source),
        };
        let hash = match previous(&r.spec.name) {
            // Hashed from this very value version: nothing to do.
            Some(p) if p.source == *source => p.hash.clone(),
            // A brought Secret changed (its labels, say): keep the hash if it still
            // matches, so the verifier is rewritten only when it must be.
            Some(p)
                if r.spec.secret_key_ref.is_some()
                    && {
                        tracing::debug!(client = %name, entry = %r.spec.name, "argon2: verifying a stored hash against a changed Secret");
                        let (v, h) = (value.clone(), p.hash.clone());
                        ctx.hash_work(move || hash::verify(v.expose(), &h)).await?
                    } =>
            {
                p.hash.clone()
            }
            _ => {
                tracing::debug!(client = %name, entry = %r.spec.name, "argon2: hashing a client secret");
                let v = value.clone();
                ctx.hash_work(move || hash::hash(v.expose())).await??
            }
        };
        verifiers.push(SecretVerifier {
            name: r.spec.name.clone(),
            hash,
            source: source.clone(),
            expires_at: r.expires.map(Time),
        });
    }

    let was_active = existing.as_ref().map(|v| v.spec.active);
    let not_before = match (client.spec.active, was_active) {
        // Deactivation: every token issued until now stops being valid, for good. Times
        // have whole seconds, so the bound is the next second: a token issued in this very
        // second is caught too.
        (false, Some(true) | None) => Some(Time(
            now.checked_add(jiff::SignedDuration::from_secs(1))
                .unwrap_or(now),
        )),
        _ => existing.as_ref().and_then(|v| v.spec.not_before.clone()),
    };
    let mut roles = vec![ctx.config.default_role.clone()];
    for r in &client.spec.roles {
        if !roles.contains(r) {
            roles.push(r.clone());
        }
    }
    let spec = OAuthClientVerifierSpec {
        client_id: client_id.to_string(),
        client_type: client.spec.client_type,
        active: client.spec.active,
        not_before,
        grant_types: client
            .spec
            .grant_types
            .iter()
            .map(|g| g.as_str().to_string())
            .collect(),
        scopes: client.spec.scopes.iter().map(ToString::to_string).collect(),
        audiences: client
            .spec
            .audiences
            .iter()
            .map(ToString::to_string)
            .collect(),
        roles,
        access_token_lifetime_seconds: client.spec.access_token_lifetime_seconds,
        secrets: verifiers,
        registration_access_token_hash,
    };
    if existing.as_ref().map(|v| &v.spec) == Some(&spec) {
        return Ok(());
    }
    ctx.apply_owned(client, OAuthClientVerifier::new(&name, spec))
        .await
}

async fn delete_verifier(client: &OAuthClient, ctx: &Context) -> Result<(), Error> {
    let name = client.name_any();
    let api: Api<OAuthClientVerifier> =
        Api::namespaced(ctx.client.clone(), &client.namespace().unwrap_or_default());
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(Error::ApplyVerifier { name, source }),
    }
}

/// What a reconcile found, turned into status and Events at the end, in one place.
struct Report {
    client_id: String,
    secret_name: String,
    ready: Option<(bool, String, String)>,
    conditions: Vec<(String, bool, String, String)>,
    invalid: Vec<String>,
    waiting: Vec<String>,
    events: Vec<(EventType, String, String)>,
    secrets: Vec<SecretStatus>,
    valid_secrets: Option<u32>,
}

impl Report {
    fn new(client_id: &str, secret_name: &str) -> Self {
        Report {
            client_id: client_id.to_string(),
            secret_name: secret_name.to_string(),
            ready: None,
            conditions: Vec::new(),
            invalid: Vec::new(),
            waiting: Vec::new(),
            events: Vec::new(),
            secrets: Vec::new(),
            valid_secrets: None,
        }
    }

    fn ready(&mut self, ok: bool, reason: &str, message: String) {
        if self.ready.is_none() {
            self.ready = Some((ok, reason.to_string(), message));
        }
    }

    fn condition(&mut self, type_: &str, ok: bool, reason: &str, message: String) {
        self.conditions
            .push((type_.to_string(), ok, reason.to_string(), message));
    }

    fn invalid(&mut self, message: String) {
        self.invalid.push(message);
    }

    fn waiting(&mut self, message: String) {
        self.waiting.push(message);
    }

    fn event(&mut self, type_: EventType, reason: &str, note: String) {
        self.events.push((type_, reason.to_string(), note));
    }
}

/// Writes the status (if it changed) and publishes the Events.
async fn finish(
    client: &OAuthClient,
    ctx: &Context,
    mut report: Report,
    action: Action,
) -> Result<Action, Error> {
    if !report.invalid.is_empty() {
        let msg = report.invalid.join("; ");
        report.condition("SpecValid", false, "InvalidSecretSpec", msg.clone());
        report.event(EventType::Warning, "InvalidSecretSpec", msg);
    }
    if !report.waiting.is_empty() {
        // Ready already says so when nothing else is valid (decided in reconcile).
        let msg = report.waiting.join("; ");
        report.condition("WaitingForSecret", true, "SecretNotFound", msg);
    }
    let current = client.status.clone().unwrap_or_default();
    let generation = client.metadata.generation;
    let (ok, reason, message) =
        report
            .ready
            .clone()
            .unwrap_or((false, "Unknown".into(), String::new()));
    let mut conditions = vec![condition(
        &current.conditions,
        "Ready",
        ok,
        &reason,
        message,
        generation,
    )];
    for (t, ok, reason, message) in &report.conditions {
        conditions.push(condition(
            &current.conditions,
            t,
            *ok,
            reason,
            message.clone(),
            generation,
        ));
    }
    let status = OAuthClientStatus {
        client_id: Some(report.client_id.clone()),
        secret_name: Some(report.secret_name.clone()),
        valid_secrets: report.valid_secrets,
        secrets: report.secrets.clone(),
        observed_generation: generation,
        conditions,
    };
    let changed = status != current;
    if changed {
        ctx.apply_status(client, &status).await?;
    }
    // Events only with a status change, so a periodic resync does not repeat them.
    if changed {
        for (type_, reason, note) in report.events {
            ctx.publish(client, type_, &reason, note).await;
        }
    }
    Ok(action)
}

/// A condition that keeps its `lastTransitionTime` while its status stays the same.
pub(super) fn condition(
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
        .unwrap_or_else(|| Time(Timestamp::now()));
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}
