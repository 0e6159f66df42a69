//! Plan: from the spec, the observed state, the time and the config to every write of one
//! reconcile. No I/O, no clock, no randomness of its own: new secret values come from the
//! `fresh` generator the caller passes, so a test can name them.
//!
//! Invariants the plan keeps (each has a test below):
//! - A value present under its own key with a recorded creation time is kept as it is;
//!   only a missing entry gets a value (no secret is ever regenerated).
//! - Entries removed from the spec lose their value (and their hash).
//! - A brought-your-own (BYO) entry is never copied into the credentials Secret.
//! - Over an unchanged client the plan writes no Secret, asks for no argon2 work, and
//!   arrives at the verifier and status it read.
//! - A generated secret is verified by its SHA-256, which the plan computes (it is cheap);
//!   only a value someone chose (`secretKeyRef`) goes to argon2id in act. An argon2id hash
//!   an earlier version made of a generated secret is kept beside the new SHA-256, so the
//!   replicas of that version go on verifying it during a rolling upgrade.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::super::credentials;
use super::super::outcome::{self, Cond, Note, Outcome, Requeue};
use super::super::secrets::{self, bytes, entry_key};
use super::observe::Observed;
use crate::api::{
    ClientSecret, ClientType, FederatedSubject, GrantType, OAuthClient, OAuthClientStatus,
    OAuthClientVerifierSpec, PrivateKeyJwt, RefreshPolicy, SecretState, SecretStatus,
    SecretVerifier, ServiceAccountSubject, SourceRef,
};
use crate::auth::assertion::{ClientKeys, FEDERATED_METHOD, SERVICE_ACCOUNT_METHOD};
use crate::auth::hash;
use crate::auth::secret::{RandomError, SecretString};

/// How often a healthy client is looked at again even without a change.
pub const RESYNC: Duration = Duration::from_secs(30 * 60);
/// How often a client waiting for something outside its watches looks again.
pub const POLL: Duration = Duration::from_secs(5);
/// How often a client with a brought-your-own secret re-reads it.
pub const BYO_RESYNC: Duration = Duration::from_secs(30);
/// How often a client whose Secret name is taken looks again.
pub const CONFLICT_RETRY: Duration = Duration::from_secs(60);

/// The part of the controller's configuration a client's plan depends on.
#[derive(Clone, Debug)]
pub struct Settings {
    pub token_endpoint: String,
    pub lifetime_bounds: (u32, u32),
    pub expiry_warning: SignedDuration,
    pub default_role: String,
    pub federated_issuers: Vec<String>,
}

impl From<&super::super::Config> for Settings {
    fn from(c: &super::super::Config) -> Self {
        Settings {
            token_endpoint: c.token_endpoint.clone(),
            lifetime_bounds: c.lifetime_bounds,
            expiry_warning: c.expiry_warning,
            default_role: c.default_role.clone(),
            federated_issuers: c.federated_issuers.clone(),
        }
    }
}

/// Everything one reconcile writes.
#[derive(Debug)]
pub struct Plan {
    pub secret: SecretWrite,
    pub verifier: VerifierPlan,
    pub outcome: Outcome<OAuthClientStatus>,
}

/// The credentials Secret write. Its `Debug` names the Secret and its keys, never a value.
pub enum SecretWrite {
    /// Unchanged, missing for a reason the status states, or not ours.
    None,
    /// Create it: there is none.
    Create(Secret),
    /// Replace it: the object read, with new data and metadata; it carries the
    /// resourceVersion read, so a concurrent writer makes the replace fail (409).
    Replace(Secret),
}

impl std::fmt::Debug for SecretWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (verb, s) = match self {
            SecretWrite::None => return f.write_str("None"),
            SecretWrite::Create(s) => ("Create", s),
            SecretWrite::Replace(s) => ("Replace", s),
        };
        let keys: Vec<&String> = s.data.iter().flat_map(|d| d.keys()).collect();
        f.debug_struct(verb)
            .field("name", &s.metadata.name)
            .field("keys", &keys)
            .finish()
    }
}

/// The verifier write.
#[derive(Debug)]
pub enum VerifierPlan {
    /// Leave it as it is (the reconcile stopped before the secrets were looked at).
    Untouched,
    /// Delete it: the token server must not answer for this client.
    Delete,
    /// Write this, once its hashes are known, unless it equals the one read.
    Write(Box<VerifierDraft>),
}

/// A verifier spec whose secret hashes may still have to be computed.
#[derive(Debug)]
pub struct VerifierDraft {
    /// The spec with `secrets` empty; [`VerifierDraft::spec`] fills them in.
    pub spec: OAuthClientVerifierSpec,
    pub entries: Vec<DraftEntry>,
}

/// One accepted secret of the verifier.
#[derive(Debug)]
pub struct DraftEntry {
    pub name: String,
    pub source: SourceRef,
    /// From the credentials Secret: its UID is the one the write returns (unknown until a
    /// create), so act fills it in.
    pub generated: bool,
    pub expires_at: Option<Time>,
    pub hashing: Hashing,
}

/// The hashes of one verifier entry, by scheme (see [`SecretVerifier`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hashes {
    /// base64url SHA-256, of a generated value.
    pub sha256: Option<String>,
    /// argon2id PHC string, of a chosen value (or of a generated one, by an earlier version).
    pub argon2id: Option<String>,
}

impl Hashes {
    fn argon2id(phc: String) -> Self {
        Hashes {
            sha256: None,
            argon2id: Some(phc),
        }
    }

    fn of(verifier: &hash::Verifier) -> Self {
        match verifier {
            hash::Verifier::Sha256(_) => Hashes {
                sha256: verifier.sha256_field(),
                argon2id: None,
            },
            hash::Verifier::Argon2id(phc) => Hashes::argon2id(phc.clone()),
        }
    }
}

/// How an entry's hashes are had. Argon2 is CPU work (~19 MiB, tens of ms) and runs in act
/// on the blocking pool; the plan only says which of these it takes.
#[derive(Debug, PartialEq)]
pub enum Hashing {
    /// Already known: a generated value's SHA-256, a chosen value hashed from this very
    /// version, or given as a hash (`hashRef`).
    Known(Hashes),
    /// A brought Secret changed (its labels, say): keep `previous` if it still matches
    /// `value`, so the verifier is rewritten only when it must be; else hash.
    VerifyElseHash {
        value: SecretString,
        previous: String,
    },
    /// Hash `value`.
    Hash(SecretString),
}

impl VerifierDraft {
    /// The spec, when every hash is known without argon2 work.
    #[cfg(test)]
    pub fn known_spec(&self) -> Option<OAuthClientVerifierSpec> {
        let hashes = self
            .entries
            .iter()
            .map(|e| match &e.hashing {
                Hashing::Known(h) => Some(h.clone()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        Some(self.spec(hashes))
    }

    /// The spec with `hashes` (one per entry, in order).
    pub fn spec(&self, hashes: Vec<Hashes>) -> OAuthClientVerifierSpec {
        let mut spec = self.spec.clone();
        spec.secrets = self
            .entries
            .iter()
            .zip(hashes)
            .map(|(e, h)| SecretVerifier {
                name: e.name.clone(),
                sha256: h.sha256,
                hash: h.argon2id,
                source: e.source.clone(),
                expires_at: e.expires_at.clone(),
            })
            .collect();
        spec
    }
}

/// What the controller holds of one secret: the value, or only its hash (`hashRef`).
enum Material {
    Value(SecretString),
    Hash(hash::Verifier),
}

/// The verifier a `hashRef` value stands for: an argon2id PHC string, or for a registered
/// client also the SHA-256 the token server wrote of the secret it generated.
fn brought_hash(client: &OAuthClient, text: &str) -> Option<hash::Verifier> {
    match hash::Verifier::parse(text)? {
        v @ hash::Verifier::Argon2id(_) => Some(v),
        v @ hash::Verifier::Sha256(_) if client.spec.registration.is_some() => Some(v),
        hash::Verifier::Sha256(_) => None,
    }
}

/// Conditions, messages and Events gathered along the plan, turned into status at the end.
struct Report {
    ready: Option<Cond>,
    conditions: Vec<Cond>,
    invalid: Vec<String>,
    waiting: Vec<String>,
    events: Vec<Note>,
    secrets: Vec<SecretStatus>,
    valid_secrets: Option<u32>,
    methods: Vec<String>,
}

impl Report {
    fn new() -> Self {
        Report {
            ready: None,
            conditions: Vec::new(),
            invalid: Vec::new(),
            waiting: Vec::new(),
            events: Vec::new(),
            secrets: Vec::new(),
            valid_secrets: None,
            methods: Vec::new(),
        }
    }

    fn ready(&mut self, ok: bool, reason: &'static str, message: String) {
        if self.ready.is_none() {
            self.ready = Some(Cond::new("Ready", ok, reason, message));
        }
    }
}

/// Plans one reconcile of `client`. `fresh` makes a new secret value; it is called once
/// per entry that has none, and never for one that has.
pub fn plan(
    client: &OAuthClient,
    observed: &Observed,
    now: Timestamp,
    settings: &Settings,
    fresh: &mut dyn FnMut() -> Result<SecretString, RandomError>,
) -> Result<Plan, RandomError> {
    let client_id = &observed.client_id;
    let secret_name = &observed.secret_name;
    let mut report = Report::new();
    let stop = |report: Report, verifier: VerifierPlan, requeue: Requeue| Plan {
        secret: SecretWrite::None,
        verifier,
        outcome: finish(client, observed, now, report, requeue),
    };

    if let Some(owner) = &observed.id_owner {
        // Stop serving this client: the token server must answer only to the owner of an id.
        report.ready(false, "ClientIdConflict", format!(
            "client id {client_id} is already used by OAuthClient {owner}, which is older; choose another spec.clientId"
        ));
        report.events.push(Note::warning(
            "ClientIdConflict",
            format!("client id {client_id} is already used by {owner}"),
        ));
        return Ok(stop(report, VerifierPlan::Delete, Requeue::After(POLL)));
    }

    let lifetime = client.spec.access_token_lifetime_seconds;
    let (min, max) = settings.lifetime_bounds;
    if lifetime < min || lifetime > max {
        report.ready(false, "InvalidSpec", format!(
            "spec.accessTokenLifetimeSeconds {lifetime} is outside this operator's bounds {min}..{max}"
        ));
        return Ok(stop(report, VerifierPlan::Untouched, Requeue::OnChange));
    }

    let current = observed.credentials.as_ref();
    if current.is_some_and(|s| !credentials::is_owned_by(s, client)) {
        report.ready(false, "SecretConflict", format!(
            "Secret {secret_name} already exists and is not owned by this OAuthClient; it is left untouched. Delete it or choose another spec.credentialsSecret.name"
        ));
        return Ok(stop(
            report,
            VerifierPlan::Untouched,
            Requeue::After(CONFLICT_RETRY),
        ));
    }

    // The credentials Secret: keep every existing value, generate the missing ones.
    let keys = client.secret_keys();
    let mut created = secrets::created_times(current);
    let mut data = current.and_then(|s| s.data.clone()).unwrap_or_default();
    let entries = client.secret_entries();
    let mut generated = Vec::new();
    for e in entries.iter().filter(|e| !e.is_external()) {
        let key = entry_key(&keys.client_secret, &e.name);
        let exists = data.contains_key(&key) && created.contains_key(&e.name);
        // The API server refuses such a duration now, but one admitted before (`0s`) can
        // still be stored: say so rather than let it pass as the default year. A value
        // that exists is kept, as every value is.
        if let Some(d) = &e.expires_after
            && let Err(err) = d.to_signed()
        {
            let consequence = if exists {
                "the secret expires one year after its creation until this is fixed"
            } else {
                "no secret was generated for it"
            };
            report.invalid.push(format!(
                "spec.secrets[{}].expiresAfter {:?}: {err}; {consequence}",
                e.name,
                d.as_str()
            ));
            if !exists {
                continue;
            }
        }
        if exists {
            continue;
        }
        if e.expires_at.as_ref().is_some_and(|t| t.0 <= now) {
            report.invalid.push(format!(
                "spec.secrets[{}].expiresAt is in the past; no secret was generated for it",
                e.name
            ));
            continue;
        }
        let value = fresh()?;
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
        let source = observed.referenced(&r.name);
        match source.and_then(|s| secrets::value(s, &r.key).map(|v| (s, v))) {
            Some((_, v)) if hashed && brought_hash(client, v.expose()).is_none() => {
                report.invalid.push(format!(
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
                let material = match brought_hash(client, v.expose()) {
                    Some(h) if hashed => Material::Hash(h),
                    _ if hashed => continue,
                    _ => Material::Value(v),
                };
                byo.insert(e.name.clone(), (material, src));
            }
            None => report.waiting.push(format!(
                "spec.secrets[{}] waits for key {} of Secret {}",
                e.name, r.key, r.name
            )),
        }
    }
    // A registered client's registration access token, as a hash (RFC 7592).
    let registration_hash = match &client.spec.registration {
        Some(reg) => {
            let r = &reg.access_token_hash_ref;
            let known = observed
                .referenced(&r.name)
                .and_then(|s| secrets::value(s, &r.key))
                .and_then(|v| hash::Verifier::parse(v.expose()));
            if known.is_none() {
                report.waiting.push(format!(
                    "spec.registration waits for a hash under key {} of Secret {}",
                    r.key, r.name
                ));
            }
            known.map(|v| v.to_text())
        }
        None => None,
    };

    // The public keys of a private_key_jwt client, checked as the token server will use them.
    let jwks = client
        .spec
        .authentication
        .as_ref()
        .and_then(|a| a.private_key_jwt.as_ref())
        .and_then(|p| client_keys(p, observed, &mut report));

    // Expiry and state of every entry; the stable key holds the newest valid generated one.
    let warn = settings.expiry_warning;
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
    data.insert(keys.client_id.clone(), bytes(client_id));
    data.insert(keys.token_endpoint.clone(), bytes(&settings.token_endpoint));

    let desired = credentials::build(client, secret_name, data, &created);
    let verb = if current.is_none() {
        "Generated"
    } else {
        "Generated a new"
    };
    for name in &generated {
        report.events.push(Note::normal(
            "SecretCreated",
            format!("{verb} client secret {name} into Secret {secret_name}"),
        ));
    }
    for name in &removed {
        report.events.push(Note::normal(
            "SecretRevoked",
            format!("Client secret {name} was removed from the spec and no longer works"),
        ));
    }

    // Every entry resolved to its value (or hash) and its source.
    let credentials_uid = current
        .and_then(|s| s.metadata.uid.clone())
        .unwrap_or_default();
    let previous_hash = |entry: &str| {
        observed
            .verifier
            .as_ref()
            .and_then(|v| v.spec.secrets.iter().find(|s| s.name == entry))
    };
    let mut resolved = Vec::new();
    let mut drafts = Vec::new();
    for e in &entries {
        let (c, expires, state) = state_of(e);
        let value = if e.is_external() {
            byo.remove(&e.name)
        } else {
            let key = entry_key(&keys.client_secret, &e.name);
            secrets::value(&desired, &key).zip(c).map(|(v, c)| {
                let src = SourceRef {
                    secret_name: secret_name.clone(),
                    key,
                    uid: credentials_uid.clone(),
                    version: c.to_string(),
                };
                (Material::Value(v), src)
            })
        };
        let state = if value.is_none() {
            SecretState::Pending
        } else {
            state
        };
        resolved.push((e, c, expires, state));
        let Some((material, source)) = value else {
            continue;
        };
        let previous = previous_hash(&e.name);
        let same_value = previous.filter(|p| p.source == source);
        let hashing = match material {
            Material::Hash(v) => Hashing::Known(Hashes::of(&v)),
            // Generated: SHA-256 is cheap, so it is always computed, and an earlier
            // version's argon2id hash of this very value stays for its replicas.
            Material::Value(value) if !e.is_external() => Hashing::Known(Hashes {
                sha256: hash::Verifier::of_generated(value.expose()).sha256_field(),
                argon2id: same_value.and_then(|p| p.hash.clone()),
            }),
            Material::Value(value) => match (same_value, previous.and_then(|p| p.hash.clone())) {
                (Some(p), Some(phc)) if p.sha256.is_none() => Hashing::Known(Hashes::argon2id(phc)),
                (None, Some(phc)) => Hashing::VerifyElseHash {
                    value,
                    previous: phc,
                },
                _ => Hashing::Hash(value),
            },
        };
        drafts.push(DraftEntry {
            name: e.name.clone(),
            source,
            generated: !e.is_external(),
            expires_at: expires.map(Time),
            hashing,
        });
    }
    let mut spec = verifier_spec(client, observed, now, settings, registration_hash);
    let accounts = service_accounts(client);
    spec.jwks = jwks.clone();
    spec.service_accounts = accounts.clone();
    spec.federated = federated_identities(client);
    let verifier = VerifierPlan::Write(Box::new(VerifierDraft {
        spec,
        entries: drafts,
    }));

    // Status, conditions and the Events of state changes.
    let previous: BTreeMap<String, SecretState> = client
        .status
        .iter()
        .flat_map(|s| s.secrets.iter().map(|x| (x.name.clone(), x.state)))
        .collect();
    for (e, _, expires, state) in &resolved {
        let was = previous.get(&e.name).copied();
        match state {
            SecretState::Expired if was != Some(SecretState::Expired) => {
                report.events.push(Note::warning(
                    "SecretExpired",
                    format!("Client secret {} expired and is no longer accepted", e.name),
                ));
            }
            SecretState::ExpiringSoon if was != Some(SecretState::ExpiringSoon) => {
                report.events.push(Note::warning(
                    "SecretExpiringSoon",
                    format!(
                        "Client secret {} expires at {}; add a new secret and roll it out",
                        e.name,
                        expires.map(|t| t.to_string()).unwrap_or_default()
                    ),
                ));
            }
            _ => {}
        }
    }
    report.secrets = resolved
        .iter()
        .map(|(e, c, expires, state)| SecretStatus {
            name: e.name.clone(),
            description: e.description.clone(),
            created_at: c.map(Time),
            expires_at: expires.map(Time),
            state: *state,
        })
        .collect();
    let valid = resolved
        .iter()
        .filter(|r| matches!(r.3, SecretState::Valid | SecretState::ExpiringSoon))
        .count();
    report.valid_secrets = Some(u32::try_from(valid).unwrap_or(u32::MAX));
    let expiring: Vec<&str> = resolved
        .iter()
        .filter(|r| r.3 == SecretState::ExpiringSoon)
        .map(|r| r.0.name.as_str())
        .collect();
    report.conditions.push(if expiring.is_empty() {
        Cond::new(
            "SecretsExpiring",
            false,
            "NoneExpiring",
            "No secret expires within the warning window".into(),
        )
    } else {
        Cond::new(
            "SecretsExpiring",
            true,
            "ExpiringSoon",
            format!("Expiring soon: {}", expiring.join(", ")),
        )
    });

    let public = client.spec.client_type == ClientType::Public;
    // A ServiceAccount that does not exist authenticates nothing (the server refuses its
    // tokens); it is named in a condition and an Event, and looked at again soon.
    let missing: Vec<String> = accounts
        .iter()
        .filter(|a| {
            observed
                .service_accounts
                .get(&(a.namespace.clone(), a.name.clone()))
                != Some(&true)
        })
        .map(|a| format!("{}/{}", a.namespace, a.name))
        .collect();
    let by_service_account = accounts.len() > missing.len();
    if !missing.is_empty() {
        let msg = format!(
            "spec.authentication.serviceAccounts: ServiceAccount {} not found; its tokens are refused until it exists",
            missing.join(", ")
        );
        report.conditions.push(Cond::new(
            "ServiceAccountsFound",
            false,
            "ServiceAccountNotFound",
            msg.clone(),
        ));
        report
            .events
            .push(Note::warning("ServiceAccountNotFound", msg));
    } else if by_service_account {
        report.conditions.push(Cond::new(
            "ServiceAccountsFound",
            true,
            "Found",
            "Every ServiceAccount of spec.authentication exists".into(),
        ));
    }
    if public {
        report.methods = vec!["none".into()];
    }
    if valid > 0 {
        report.methods = vec!["client_secret_basic".into(), "client_secret_post".into()];
    }
    if jwks.is_some() {
        report.methods.push("private_key_jwt".into());
    }
    if by_service_account {
        report.methods.push(SERVICE_ACCOUNT_METHOD.into());
    }
    // An identity of an issuer the operator does not trust authenticates nothing (the
    // server never fetches that issuer's keys); named as a missing ServiceAccount is.
    let identities = federated_identities(client);
    let untrusted: BTreeSet<&str> = identities
        .iter()
        .map(|f| f.issuer.as_str())
        .filter(|i| !settings.federated_issuers.iter().any(|t| t == i))
        .collect();
    let by_federated = identities.len()
        > identities
            .iter()
            .filter(|f| untrusted.contains(f.issuer.as_str()))
            .count();
    if !untrusted.is_empty() {
        let msg = format!(
            "spec.authentication.federated: issuer {} is not trusted by the operator (its --federated-issuer flags); its tokens are refused",
            untrusted.into_iter().collect::<Vec<_>>().join(", ")
        );
        report.conditions.push(Cond::new(
            "FederatedIssuersTrusted",
            false,
            "IssuerNotTrusted",
            msg.clone(),
        ));
        report.events.push(Note::warning("IssuerNotTrusted", msg));
    } else if by_federated {
        report.conditions.push(Cond::new(
            "FederatedIssuersTrusted",
            true,
            "Trusted",
            "The operator trusts every issuer of spec.authentication.federated".into(),
        ));
    }
    if by_federated {
        report.methods.push(FEDERATED_METHOD.into());
    }
    let by_key = jwks.is_some() || by_service_account || by_federated;
    let keyless = [
        (jwks.is_some(), "private_key_jwt"),
        (by_service_account, "ServiceAccount token"),
        (by_federated, "federated identity"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect::<Vec<_>>()
    .join(" and ")
        + " assertions";
    if observed.policy.suspended() {
        report.ready(false, "PolicyViolation", "Outside an enforced bound of an OAuthClientPolicy (the PolicyCompliant condition says which): the token endpoint refuses this client and the tokens issued to it before".into());
    }
    if !client.spec.active {
        report.ready(false, "Deactivated", "spec.active is false: the token endpoint refuses this client and the tokens issued to it before".into());
    } else if !public && valid == 0 && !by_key && !report.waiting.is_empty() {
        let msg = report.waiting.join("; ");
        report.ready(false, "WaitingForSecret", msg);
    } else if !public && valid == 0 && !by_key {
        let msg = if client.is_secretless() {
            "The client has no valid secret, no usable key, no existing ServiceAccount and no identity of a trusted issuer: fix spec.authentication or add a secret to spec.secrets"
        } else {
            "No secret of this client is valid: add one to spec.secrets"
        };
        report.ready(false, "NoValidSecret", msg.into());
    } else {
        let msg = if public {
            format!("Public client; Secret {secret_name} holds its client id")
        } else if valid == 0 {
            format!(
                "The token server accepts {keyless}; Secret {secret_name} holds the client id and token endpoint"
            )
        } else if by_key {
            format!(
                "Secret {secret_name} holds the credentials; the token server accepts {valid} secret(s) and {keyless}"
            )
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
        .filter_map(|r| r.2)
        .flat_map(|t| [t.checked_sub(warn).ok(), Some(t)])
        .flatten()
        .filter(|t| *t > now)
        .min()
        .map(|t| outcome::until(now, t))
        .unwrap_or(RESYNC)
        .min(RESYNC);
    // A brought Secret is not watched (the controller watches only its own Secrets), so a
    // client using one looks again often enough to follow an external rotation.
    let next = if entries.iter().any(ClientSecret::is_external) || client.is_secretless() {
        next.min(BYO_RESYNC)
    } else {
        next
    };
    let requeue = if report.waiting.is_empty() && missing.is_empty() {
        Requeue::After(next)
    } else {
        Requeue::After(POLL)
    };

    let secret = match current {
        None => SecretWrite::Create(desired),
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
            SecretWrite::Replace(next)
        }
        Some(_) => SecretWrite::None,
    };
    Ok(Plan {
        secret,
        verifier,
        outcome: finish(client, observed, now, report, requeue),
    })
}

/// The verifier's settings (all but the secrets' hashes).
fn verifier_spec(
    client: &OAuthClient,
    observed: &Observed,
    now: Timestamp,
    settings: &Settings,
    registration_access_token_hash: Option<String>,
) -> OAuthClientVerifierSpec {
    let existing = observed.verifier.as_ref().map(|v| &v.spec);
    // Outside an enforced policy bound, a client is served as a deactivated one is not:
    // the tokens issued to it before stop being valid too.
    let active = client.spec.active && !observed.policy.suspended();
    let not_before = match (active, existing.map(|v| v.active)) {
        // Deactivation: every token issued until now stops being valid, for good. Times
        // have whole seconds, so the bound is the next second: a token issued in this very
        // second is caught too.
        (false, Some(true) | None) => Some(Time(
            now.checked_add(SignedDuration::from_secs(1)).unwrap_or(now),
        )),
        _ => existing.and_then(|v| v.not_before.clone()),
    };
    let mut roles = vec![settings.default_role.clone()];
    for r in &client.spec.roles {
        if !roles.contains(r) {
            roles.push(r.clone());
        }
    }
    OAuthClientVerifierSpec {
        client_id: observed.client_id.clone(),
        labels: client.metadata.labels.clone().unwrap_or_default(),
        display_name: client.spec.display_name.clone(),
        client_type: client.spec.client_type,
        active,
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
        redirect_uris: client.spec.redirect_uris.clone(),
        post_logout_redirect_uris: client.spec.post_logout_redirect_uris.clone(),
        allowed_groups: client.spec.allowed_groups.clone(),
        refresh: refresh_policy(client),
        access_token_lifetime_seconds: observed
            .policy
            .lifetime(client.spec.access_token_lifetime_seconds),
        secrets: Vec::new(),
        registration_access_token_hash,
        jwks: None,
        service_accounts: Vec::new(),
        federated: Vec::new(),
    }
}

/// A `private_key_jwt` client's keys as JSON: those of its Secret and those at its URL
/// together, each source checked on its own (so a message names the source) and then the
/// whole. A URL that cannot be read now leaves the keys read before in use (the verifier's),
/// with a KeysFetched condition and Event saying why; a URL never read waits.
fn client_keys(p: &PrivateKeyJwt, observed: &Observed, report: &mut Report) -> Option<String> {
    let mut sets: Vec<ClientKeys> = Vec::new();
    if let Some(r) = &p.jwks_secret_ref {
        let Some(text) = observed
            .referenced(&r.name)
            .and_then(|s| secrets::value(s, &r.key))
        else {
            report.waiting.push(format!(
                "spec.authentication.privateKeyJwt waits for key {} of Secret {}",
                r.key, r.name
            ));
            return None;
        };
        match ClientKeys::parse(text.expose()) {
            Ok(keys) => sets.push(keys),
            Err(e) => {
                report.invalid.push(format!(
                    "spec.authentication.privateKeyJwt: key {} of Secret {} {e}",
                    r.key, r.name
                ));
                return None;
            }
        }
    }
    if let Some(uri) = &p.jwks_uri {
        let read = match &observed.jwks_uri {
            None => Err("was not read".to_string()),
            Some(Err(why)) => Err(why.clone()),
            Some(Ok(text)) => ClientKeys::parse(text).map_err(|e| format!("is a set that {e}")),
        };
        match read {
            Ok(keys) => {
                report.conditions.push(Cond::new(
                    "KeysFetched",
                    true,
                    "Fetched",
                    format!("The JWK Set at {uri} was read"),
                ));
                sets.push(keys);
            }
            Err(why) => {
                let before = observed.verifier.as_ref().and_then(|v| v.spec.jwks.clone());
                let msg = format!(
                    "spec.authentication.privateKeyJwt.jwksUri {uri} {why}; {}",
                    if before.is_some() {
                        "the keys read before stay in use"
                    } else {
                        "no key is accepted until it is read"
                    }
                );
                report
                    .conditions
                    .push(Cond::new("KeysFetched", false, "FetchFailed", msg.clone()));
                report
                    .events
                    .push(Note::warning("KeysFetchFailed", msg.clone()));
                if before.is_none() {
                    report.waiting.push(msg);
                }
                return before;
            }
        }
    }
    let keys: Vec<&jsonwebtoken::jwk::Jwk> = sets.iter().flat_map(|s| &s.jwks.keys).collect();
    let all = serde_json::to_string(&serde_json::json!({ "keys": keys })).ok()?;
    match ClientKeys::parse(&all) {
        Ok(_) => Some(all),
        Err(e) => {
            report.invalid.push(format!(
                "spec.authentication.privateKeyJwt: the keys of jwksSecretRef and jwksUri together: the set {e}"
            ));
            None
        }
    }
}

/// The federated identities of `client`, sorted and without duplicates so the verifier
/// is stable.
fn federated_identities(client: &OAuthClient) -> Vec<FederatedSubject> {
    let mut all: Vec<FederatedSubject> = client
        .spec
        .authentication
        .iter()
        .flat_map(|a| &a.federated)
        .map(|f| FederatedSubject {
            issuer: f.issuer.clone(),
            subject: f.subject.clone(),
            audience: f.audience.clone(),
        })
        .collect();
    all.sort_by(|a, b| {
        (&a.issuer, &a.subject, &a.audience).cmp(&(&b.issuer, &b.subject, &b.audience))
    });
    all.dedup();
    all
}

/// The ServiceAccounts whose tokens authenticate `client`, each with its namespace (the
/// client's own unless given), sorted and without duplicates so the verifier is stable.
fn service_accounts(client: &OAuthClient) -> Vec<ServiceAccountSubject> {
    let own = client.metadata.namespace.clone().unwrap_or_default();
    let mut all: Vec<ServiceAccountSubject> = client
        .spec
        .authentication
        .iter()
        .flat_map(|a| &a.service_accounts)
        .map(|r| ServiceAccountSubject {
            namespace: r.namespace.clone().unwrap_or_else(|| own.clone()),
            name: r.name.clone(),
        })
        .collect();
    all.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    all.dedup();
    all
}

/// The refresh tokens the client's users get: none unless it has a non-zero
/// `refreshCount` and both grants (the schema admits nothing else, but a stored object
/// may predate a rule). Lifetimes default to a day idle and 30 days in all; the idle one
/// never exceeds the other.
fn refresh_policy(client: &OAuthClient) -> Option<RefreshPolicy> {
    let spec = &client.spec;
    let count = spec.refresh_count.filter(|c| c.allows_refresh())?;
    let has = |g: GrantType| spec.grant_types.contains(&g);
    if !has(GrantType::AuthorizationCode) || !has(GrantType::RefreshToken) {
        return None;
    }
    let seconds = |d: &Option<crate::api::Duration>, default: i64| {
        d.as_ref()
            .and_then(|d| d.to_signed().ok())
            .map_or(default, |d| d.as_secs())
    };
    let max = seconds(&spec.refresh_token_max_lifetime, 30 * 86_400);
    Some(RefreshPolicy {
        count: count.limit(),
        idle_lifetime_seconds: seconds(&spec.refresh_token_idle_lifetime, 86_400).min(max),
        max_lifetime_seconds: max,
    })
}

/// The status and Events of `report`, for every way a plan ends.
fn finish(
    client: &OAuthClient,
    observed: &Observed,
    now: Timestamp,
    mut report: Report,
    mut requeue: Requeue,
) -> Outcome<OAuthClientStatus> {
    if !report.invalid.is_empty() {
        let msg = report.invalid.join("; ");
        report.conditions.push(Cond::new(
            "SpecValid",
            false,
            "InvalidSecretSpec",
            msg.clone(),
        ));
        report.events.push(Note::warning("InvalidSecretSpec", msg));
    }
    if !report.waiting.is_empty() {
        // Ready already says so when nothing else is valid.
        let msg = report.waiting.join("; ");
        report
            .conditions
            .push(Cond::new("WaitingForSecret", true, "SecretNotFound", msg));
    }
    if let Some(owner) = &observed.name_owner {
        // The seeds' rule: displayName and version together name one client. Only said,
        // not enforced: unlike a client id, nothing is ambiguous at the token endpoint.
        let (name, version) = display(client);
        let msg = format!(
            "displayName {name:?} with version {version:?} is already used by OAuthClient {owner}, which is older; change spec.displayName or spec.version"
        );
        report.conditions.push(Cond::new(
            "DisplayNameConflict",
            true,
            "DisplayNameVersionTaken",
            msg.clone(),
        ));
        report
            .events
            .push(Note::warning("DisplayNameConflict", msg));
        // Nothing watched changes when the older client goes: look again soon, so the
        // condition clears within a minute of the pair becoming free.
        requeue = match requeue {
            Requeue::After(d) => Requeue::After(d.min(CONFLICT_RETRY)),
            Requeue::OnChange => Requeue::After(CONFLICT_RETRY),
        };
    }
    if let Some((cond, note)) = super::policy::report(&observed.policy, client) {
        let was = client
            .status
            .iter()
            .flat_map(|s| &s.conditions)
            .find(|c| c.type_ == cond.type_)
            .map(|c| (c.status == "True", c.reason.clone(), c.message.clone()));
        if was != Some((cond.ok, cond.reason.to_string(), cond.message.clone())) {
            report.events.push(note);
        }
        report.conditions.push(cond);
    }
    let (audiences, granted) = super::audiences::report(&observed.audiences);
    if let Some((cond, note)) = granted {
        // Told once per transition, not with every other change of the status.
        let was = client
            .status
            .iter()
            .flat_map(|s| &s.conditions)
            .find(|c| c.type_ == cond.type_)
            .map(|c| (c.status == "True", c.reason.clone()));
        if was != Some((cond.ok, cond.reason.to_string())) {
            report.events.push(note);
        }
        report.conditions.push(cond);
    }
    let current = client.status.clone().unwrap_or_default();
    let generation = client.metadata.generation;
    let ready = report
        .ready
        .unwrap_or_else(|| Cond::new("Ready", false, "Unknown", String::new()));
    let planned: Vec<Cond> = std::iter::once(ready).chain(report.conditions).collect();
    Outcome {
        status: OAuthClientStatus {
            client_id: Some(observed.client_id.clone()),
            secret_name: Some(observed.secret_name.clone()),
            valid_secrets: report.valid_secrets,
            secrets: report.secrets,
            authentication_methods: report.methods,
            audiences,
            observed_generation: generation,
            conditions: outcome::conditions(&current.conditions, generation, now, &planned),
        },
        events: report.events,
        requeue,
    }
}

/// The display name and version a client is known by (the version may be empty).
pub fn display(client: &OAuthClient) -> (&str, &str) {
    (
        client.spec.display_name.as_deref().unwrap_or_default(),
        client.spec.version.as_deref().unwrap_or_default(),
    )
}

/// The oldest of `others` that is older than `client` and has its display name and
/// version (case-insensitively): the one that keeps the pair. Older means created earlier,
/// then the smaller namespace/name, as for client ids, so both sides agree who is older.
pub fn older_with_display<I>(client: &OAuthClient, others: I) -> Option<std::sync::Arc<OAuthClient>>
where
    I: IntoIterator<Item = std::sync::Arc<OAuthClient>>,
{
    let fold = |c: &OAuthClient| {
        let (n, v) = display(c);
        (n.to_lowercase(), v.to_lowercase())
    };
    let key = |c: &OAuthClient| {
        (
            c.metadata.creation_timestamp.as_ref().map(|t| t.0),
            c.metadata.namespace.clone().unwrap_or_default(),
            c.metadata.name.clone().unwrap_or_default(),
        )
    };
    let mine = fold(client);
    let me = key(client);
    others
        .into_iter()
        .filter(|o| o.metadata.uid != client.metadata.uid)
        .filter(|o| o.spec.display_name.is_some() && fold(o) == mine)
        .filter(|o| key(o) < me)
        .min_by_key(|o| key(o))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::Secret;

    use super::*;
    use crate::api::{OAuthClientSpec, OAuthClientVerifier};

    const PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn now() -> Timestamp {
        ts("2026-06-01T00:00:00Z")
    }

    fn settings() -> Settings {
        Settings {
            token_endpoint: "https://auth.example/token".into(),
            lifetime_bounds: (60, 3600),
            expiry_warning: SignedDuration::from_hours(7 * 24),
            default_role: "client".into(),
            federated_issuers: vec![TRUSTED.into()],
        }
    }

    const TRUSTED: &str = "https://oidc.other-cluster.test";

    fn client(spec: serde_json::Value) -> OAuthClient {
        let mut c = OAuthClient::new(
            "billing",
            serde_json::from_value::<OAuthClientSpec>(spec).expect("spec"),
        );
        c.metadata.namespace = Some("team-a".into());
        c.metadata.uid = Some("uid-1".into());
        c.metadata.generation = Some(1);
        c.metadata.creation_timestamp = Some(Time(ts("2026-01-01T00:00:00Z")));
        c
    }

    fn observed(c: &OAuthClient) -> Observed {
        Observed {
            client_id: c.effective_client_id().expect("id"),
            secret_name: c.credentials_secret_name(),
            id_owner: None,
            name_owner: None,
            credentials: None,
            referenced: BTreeMap::new(),
            verifier: None,
            service_accounts: BTreeMap::new(),
            jwks_uri: None,
            audiences: Default::default(),
            policy: Default::default(),
        }
    }

    /// A generator that names its values, and counts how often it was asked.
    fn fresh(calls: &mut u32) -> impl FnMut() -> Result<SecretString, RandomError> + '_ {
        move || {
            *calls += 1;
            Ok(SecretString::new(format!("fresh-{calls}")))
        }
    }

    fn run(c: &OAuthClient, o: &Observed, at: Timestamp) -> (Plan, u32) {
        let mut calls = 0;
        let p = plan(c, o, at, &settings(), &mut fresh(&mut calls)).expect("plan");
        (p, calls)
    }

    fn written(p: &Plan) -> &Secret {
        match &p.secret {
            SecretWrite::Create(s) | SecretWrite::Replace(s) => Some(s),
            SecretWrite::None => None,
        }
        .expect("the plan writes the Secret")
    }

    fn data(s: &Secret, key: &str) -> Option<String> {
        secrets::value(s, key).map(|v| v.expose().to_string())
    }

    fn cond<'a>(
        p: &'a Plan,
        t: &str,
    ) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
        p.outcome.status.conditions.iter().find(|c| c.type_ == t)
    }

    fn ready(p: &Plan) -> (String, String) {
        let c = cond(p, "Ready").expect("Ready");
        (c.status.clone(), c.reason.clone())
    }

    fn reasons(p: &Plan) -> Vec<&'static str> {
        p.outcome.events.iter().map(|n| n.reason).collect()
    }

    fn sha256_of(value: &str) -> Hashing {
        Hashing::Known(Hashes {
            sha256: hash::Verifier::of_generated(value).sha256_field(),
            argon2id: None,
        })
    }

    fn draft(p: &Plan) -> &VerifierDraft {
        match &p.verifier {
            VerifierPlan::Write(d) => Some(d),
            _ => None,
        }
        .expect("the plan writes the verifier")
    }

    /// What the cluster holds after `p` was carried out: the Secret (with a UID), the
    /// verifier (with a made-up hash per value) and the status.
    fn settle(c: &OAuthClient, o: &Observed, p: &Plan) -> (OAuthClient, Observed) {
        let mut secret = match &p.secret {
            SecretWrite::None => o.credentials.clone().expect("a Secret"),
            SecretWrite::Create(s) | SecretWrite::Replace(s) => s.clone(),
        };
        secret.metadata.uid = Some("secret-uid".into());
        let mut d = VerifierDraft {
            spec: draft(p).spec.clone(),
            entries: Vec::new(),
        };
        let mut hashes = Vec::new();
        for e in &draft(p).entries {
            let mut source = e.source.clone();
            if e.generated {
                source.uid = "secret-uid".into();
            }
            hashes.push(match &e.hashing {
                Hashing::Known(h) => h.clone(),
                _ => Hashes::argon2id(format!("hash-of-{}", e.name)),
            });
            d.entries.push(DraftEntry {
                name: e.name.clone(),
                source,
                generated: e.generated,
                expires_at: e.expires_at.clone(),
                hashing: Hashing::Known(Hashes::default()),
            });
        }
        let verifier = OAuthClientVerifier::new("billing", d.spec(hashes));
        let mut c = c.clone();
        c.status = Some(p.outcome.status.clone());
        let o = Observed {
            credentials: Some(secret),
            verifier: Some(verifier),
            ..observed(&c)
        };
        (c, o)
    }

    #[test]
    fn a_new_client_gets_one_generated_secret_under_its_own_key_and_the_stable_one() {
        let c = client(serde_json::json!({}));
        let (p, calls) = run(&c, &observed(&c), now());
        assert_eq!(calls, 1);
        assert!(matches!(p.secret, SecretWrite::Create(_)));
        let s = written(&p);
        assert_eq!(data(s, "client_secret.default").as_deref(), Some("fresh-1"));
        assert_eq!(data(s, "client_secret").as_deref(), Some("fresh-1"));
        assert_eq!(data(s, "client_id").as_deref(), Some("uid-1"));
        assert_eq!(ready(&p), ("True".into(), "CredentialsReady".into()));
        assert_eq!(reasons(&p), ["SecretCreated"]);
        assert_eq!(draft(&p).entries[0].hashing, sha256_of("fresh-1"));
        assert!(draft(&p).entries[0].generated);
        assert_eq!(p.outcome.status.valid_secrets, Some(1));
    }

    #[test]
    fn a_reconcile_over_an_unchanged_client_plans_no_write_and_no_hash() {
        let c = client(serde_json::json!({}));
        let o = observed(&c);
        let (first, _) = run(&c, &o, now());
        let (c, o) = settle(&c, &o, &first);
        let later = ts("2026-06-01T00:10:00Z");
        let (p, calls) = run(&c, &o, later);
        assert_eq!(calls, 0, "no value generated");
        assert!(matches!(p.secret, SecretWrite::None), "{:?}", p.secret);
        let spec = draft(&p).known_spec().expect("every hash known");
        assert_eq!(Some(&spec), o.verifier.as_ref().map(|v| &v.spec));
        assert_eq!(
            c.status.as_ref(),
            Some(&p.outcome.status),
            "status unchanged"
        );
    }

    #[test]
    fn rotation_adds_a_secret_and_keeps_every_other_value() {
        let c = client(serde_json::json!({"secrets": [{"name": "a"}]}));
        let o = observed(&c);
        let (first, _) = run(&c, &o, now());
        let (mut c, o) = settle(&c, &o, &first);
        c.spec
            .secrets
            .push(serde_json::from_value(serde_json::json!({"name": "b"})).expect("entry"));
        let later = ts("2026-06-02T00:00:00Z");
        let mut calls = 0;
        let p = plan(&c, &o, later, &settings(), &mut || {
            calls += 1;
            Ok(SecretString::new("second".into()))
        })
        .expect("plan");
        assert_eq!(calls, 1, "only the new entry gets a value");
        assert!(matches!(p.secret, SecretWrite::Replace(_)));
        let s = written(&p);
        assert_eq!(data(s, "client_secret.a").as_deref(), Some("fresh-1"));
        assert_eq!(data(s, "client_secret.b").as_deref(), Some("second"));
        assert_eq!(
            data(s, "client_secret").as_deref(),
            Some("second"),
            "the newest"
        );
        let d = draft(&p);
        assert_eq!(d.entries[0].hashing, sha256_of("fresh-1"));
        assert_eq!(d.entries[1].hashing, sha256_of("second"));
        assert_eq!(reasons(&p), ["SecretCreated"]);
        assert_eq!(p.outcome.status.valid_secrets, Some(2));
    }

    #[test]
    fn an_entry_removed_from_the_spec_loses_its_value_and_its_hash() {
        let c = client(serde_json::json!({"secrets": [{"name": "a"}, {"name": "b"}]}));
        let o = observed(&c);
        let (first, _) = run(&c, &o, now());
        let (mut c, o) = settle(&c, &o, &first);
        c.spec.secrets.remove(0);
        let (p, calls) = run(&c, &o, now());
        assert_eq!(calls, 0);
        let s = written(&p);
        assert_eq!(data(s, "client_secret.a"), None);
        assert_eq!(data(s, "client_secret.b").as_deref(), Some("fresh-2"));
        let names: Vec<&str> = draft(&p).entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["b"]);
        assert_eq!(reasons(&p), ["SecretRevoked"]);
    }

    #[test]
    fn a_secret_inside_the_warning_window_is_expiring_soon_with_one_warning() {
        let c = client(serde_json::json!({"secrets": [{"name": "a", "expiresAfter": "10d"}]}));
        let o = observed(&c);
        let (first, _) = run(&c, &o, now());
        assert_eq!(
            cond(&first, "SecretsExpiring").map(|c| c.status.as_str()),
            Some("False")
        );
        // The first reconcile looks again when the warning window opens (3 days on).
        assert_eq!(
            first.outcome.requeue,
            Requeue::After(RESYNC),
            "capped at the resync"
        );
        let (c, o) = settle(&c, &o, &first);
        let soon = ts("2026-06-05T00:00:00Z");
        let (p, _) = run(&c, &o, soon);
        assert_eq!(p.outcome.status.secrets[0].state, SecretState::ExpiringSoon);
        let expiring = cond(&p, "SecretsExpiring").expect("condition");
        assert_eq!(
            (expiring.status.as_str(), expiring.reason.as_str()),
            ("True", "ExpiringSoon")
        );
        assert_eq!(ready(&p).0, "True", "an expiring secret still works");
        assert_eq!(reasons(&p), ["SecretExpiringSoon"]);
        // Said once: the next reconcile sees the state in the status.
        let (c, o) = settle(&c, &o, &p);
        let (again, _) = run(&c, &o, soon);
        assert!(again.outcome.events.is_empty());
    }

    #[test]
    fn an_expired_secret_is_no_longer_valid_nor_the_stable_one() {
        let c = client(serde_json::json!({"secrets": [{"name": "a", "expiresAfter": "1d"}]}));
        let o = observed(&c);
        let (first, _) = run(&c, &o, now());
        let (c, o) = settle(&c, &o, &first);
        let (p, calls) = run(&c, &o, ts("2026-06-03T00:00:00Z"));
        assert_eq!(calls, 0, "an expired secret is not replaced by itself");
        assert_eq!(p.outcome.status.secrets[0].state, SecretState::Expired);
        assert_eq!(ready(&p), ("False".into(), "NoValidSecret".into()));
        assert_eq!(reasons(&p), ["SecretExpired"]);
        let s = written(&p);
        assert_eq!(data(s, "client_secret"), None);
        assert_eq!(
            data(s, "client_secret.a").as_deref(),
            Some("fresh-1"),
            "kept"
        );
    }

    #[test]
    fn an_entry_whose_expiry_is_already_past_gets_no_value() {
        let c = client(
            serde_json::json!({"secrets": [{"name": "a", "expiresAt": "2026-05-01T00:00:00Z"}]}),
        );
        let (p, calls) = run(&c, &observed(&c), now());
        assert_eq!(calls, 0);
        assert_eq!(data(written(&p), "client_secret.a"), None);
        let spec = cond(&p, "SpecValid").expect("SpecValid");
        assert_eq!(
            (spec.status.as_str(), spec.reason.as_str()),
            ("False", "InvalidSecretSpec")
        );
        assert_eq!(reasons(&p), ["InvalidSecretSpec"]);
        assert_eq!(p.outcome.status.secrets[0].state, SecretState::Pending);
    }

    #[test]
    fn a_stored_zero_duration_is_reported_and_generates_nothing() {
        // Admitted before the schema refused zero; decoding does not check it.
        let c = client(serde_json::json!({"secrets": [
            {"name": "a", "expiresAfter": "0s"},
            {"name": "b", "expiresAfter": "90d"},
        ]}));
        let (p, calls) = run(&c, &observed(&c), now());
        assert_eq!(calls, 1, "only b gets a value");
        assert_eq!(data(written(&p), "client_secret.a"), None);
        assert!(data(written(&p), "client_secret.b").is_some());
        let spec = cond(&p, "SpecValid").expect("SpecValid");
        assert_eq!(
            (spec.status.as_str(), spec.reason.as_str()),
            ("False", "InvalidSecretSpec")
        );
        assert!(
            spec.message.contains("spec.secrets[a].expiresAfter \"0s\""),
            "{}",
            spec.message
        );
        assert!(
            reasons(&p).contains(&"InvalidSecretSpec"),
            "{:?}",
            reasons(&p)
        );
    }

    fn byo(name: &str, value: &str, version: &str) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        s.metadata.uid = Some(format!("{name}-uid"));
        s.metadata.resource_version = Some(version.into());
        s.data = Some(BTreeMap::from([("v".to_string(), bytes(value))]));
        s
    }

    #[test]
    fn a_brought_secret_that_is_missing_is_waited_for_and_nothing_is_generated() {
        let c = client(
            serde_json::json!({"secrets": [{"name": "a", "secretKeyRef": {"name": "mine", "key": "v"}}]}),
        );
        let mut o = observed(&c);
        o.referenced.insert("mine".into(), None);
        let (p, calls) = run(&c, &o, now());
        assert_eq!(calls, 0);
        assert_eq!(ready(&p), ("False".into(), "WaitingForSecret".into()));
        let waiting = cond(&p, "WaitingForSecret").expect("condition");
        assert_eq!(waiting.status, "True");
        assert!(waiting.message.contains("Secret mine"));
        let s = written(&p);
        assert_eq!(data(s, "client_secret.a"), None);
        assert_eq!(data(s, "client_secret"), None);
        assert!(draft(&p).entries.is_empty());
        assert_eq!(p.outcome.requeue, Requeue::After(POLL));
    }

    #[test]
    fn a_brought_secret_is_hashed_never_copied_and_reverified_when_it_changes() {
        let c = client(
            serde_json::json!({"secrets": [{"name": "a", "secretKeyRef": {"name": "mine", "key": "v"}}]}),
        );
        let mut o = observed(&c);
        o.referenced
            .insert("mine".into(), Some(byo("mine", "brought", "1")));
        let (p, calls) = run(&c, &o, now());
        assert_eq!(calls, 0);
        assert!(
            written(&p)
                .data
                .iter()
                .flatten()
                .all(|(_, v)| v.0 != b"brought")
        );
        assert!(
            matches!(&draft(&p).entries[0].hashing, Hashing::Hash(v) if v.expose() == "brought")
        );
        assert!(!draft(&p).entries[0].generated);
        assert_eq!(p.outcome.requeue, Requeue::After(BYO_RESYNC));

        let (c, mut o) = settle(&c, &o, &p);
        o.referenced
            .insert("mine".into(), Some(byo("mine", "brought", "1")));
        let (same, _) = run(&c, &o, now());
        assert_eq!(
            draft(&same).entries[0].hashing,
            Hashing::Known(Hashes::argon2id("hash-of-a".into()))
        );
        o.referenced
            .insert("mine".into(), Some(byo("mine", "brought", "2")));
        let (changed, _) = run(&c, &o, now());
        assert!(matches!(
            &draft(&changed).entries[0].hashing,
            Hashing::VerifyElseHash { previous, .. } if previous == "hash-of-a"
        ));
    }

    #[test]
    fn a_hash_ref_is_taken_as_it_is_and_refused_when_it_is_no_argon2id_hash() {
        let c = client(
            serde_json::json!({"secrets": [{"name": "a", "hashRef": {"name": "h", "key": "v"}}]}),
        );
        let mut o = observed(&c);
        o.referenced.insert("h".into(), Some(byo("h", PHC, "1")));
        let (p, _) = run(&c, &o, now());
        assert_eq!(
            draft(&p).entries[0].hashing,
            Hashing::Known(Hashes::argon2id(PHC.into()))
        );
        assert_eq!(ready(&p).0, "True");
        o.referenced
            .insert("h".into(), Some(byo("h", "plain", "2")));
        let (bad, _) = run(&c, &o, now());
        assert_eq!(
            cond(&bad, "SpecValid").map(|c| c.status.as_str()),
            Some("False")
        );
        assert!(draft(&bad).entries.is_empty());
    }

    #[test]
    fn an_earlier_versions_argon2_hash_of_a_generated_secret_gains_a_sha256_and_stays() {
        let c = client(serde_json::json!({}));
        let o = observed(&c);
        let (first, _) = run(&c, &o, now());
        let (c, mut o) = settle(&c, &o, &first);
        // As the previous version left it: the argon2id hash of the same value only.
        let v = o.verifier.as_mut().expect("verifier");
        v.spec.secrets[0].sha256 = None;
        v.spec.secrets[0].hash = Some("$argon2id$earlier".into());
        let (p, calls) = run(&c, &o, ts("2026-06-01T00:10:00Z"));
        assert_eq!(calls, 0, "no value generated");
        assert!(
            matches!(p.secret, SecretWrite::None),
            "no Secret value changes"
        );
        let spec = draft(&p).known_spec().expect("no argon2 work");
        let entry = &spec.secrets[0];
        assert_eq!(entry.hash.as_deref(), Some("$argon2id$earlier"));
        assert_eq!(
            entry.sha256,
            hash::Verifier::of_generated("fresh-1").sha256_field()
        );
    }

    #[test]
    fn a_sha256_hash_ref_is_taken_for_a_registered_client_only() {
        let text = hash::Verifier::of_generated("issued").to_text();
        let spec =
            serde_json::json!({"secrets": [{"name": "a", "hashRef": {"name": "h", "key": "v"}}]});
        let c = client(spec.clone());
        let mut o = observed(&c);
        o.referenced.insert("h".into(), Some(byo("h", &text, "1")));
        let (p, _) = run(&c, &o, now());
        assert_eq!(
            cond(&p, "SpecValid").map(|c| c.status.as_str()),
            Some("False"),
            "a team's own hashRef must be argon2id: its entropy is unknown"
        );
        assert!(draft(&p).entries.is_empty());

        let mut spec = spec;
        spec["registration"] = serde_json::json!({
            "initialAccessToken": "onboarding",
            "accessTokenHashRef": {"name": "h", "key": "rat"}
        });
        let c = client(spec);
        let mut o = observed(&c);
        o.referenced.insert("h".into(), Some(byo("h", &text, "1")));
        let (p, _) = run(&c, &o, now());
        assert_eq!(
            draft(&p).entries[0].hashing,
            Hashing::Known(Hashes {
                sha256: hash::Verifier::of_generated("issued").sha256_field(),
                argon2id: None,
            })
        );
    }

    #[test]
    fn a_client_id_owned_by_an_older_client_stops_this_one_serving() {
        let c = client(serde_json::json!({"clientId": "billing"}));
        let mut o = observed(&c);
        o.id_owner = Some("team-b/billing".into());
        let (p, calls) = run(&c, &o, now());
        assert_eq!(calls, 0);
        assert!(matches!(p.secret, SecretWrite::None));
        assert!(matches!(p.verifier, VerifierPlan::Delete));
        assert_eq!(ready(&p), ("False".into(), "ClientIdConflict".into()));
        assert_eq!(reasons(&p), ["ClientIdConflict"]);
        assert!(p.outcome.events[0].warning);
        assert_eq!(p.outcome.requeue, Requeue::After(POLL));
    }

    #[test]
    fn a_secret_of_someone_else_is_left_untouched() {
        let c = client(serde_json::json!({}));
        let mut o = observed(&c);
        o.credentials = Some(byo("billing-credentials", "x", "1"));
        let (p, calls) = run(&c, &o, now());
        assert_eq!(calls, 0);
        assert!(matches!(p.secret, SecretWrite::None));
        assert!(matches!(p.verifier, VerifierPlan::Untouched));
        assert_eq!(ready(&p), ("False".into(), "SecretConflict".into()));
        assert_eq!(p.outcome.requeue, Requeue::After(CONFLICT_RETRY));
    }

    #[test]
    fn a_lifetime_outside_the_bounds_is_an_invalid_spec() {
        let c = client(serde_json::json!({"accessTokenLifetimeSeconds": 3600}));
        let mut s = settings();
        s.lifetime_bounds = (60, 600);
        let mut calls = 0;
        let p = plan(&c, &observed(&c), now(), &s, &mut fresh(&mut calls)).expect("plan");
        assert_eq!(calls, 0);
        assert_eq!(ready(&p), ("False".into(), "InvalidSpec".into()));
        assert_eq!(p.outcome.requeue, Requeue::OnChange);
    }

    #[test]
    fn deactivation_bounds_earlier_tokens_once_and_keeps_the_bound() {
        let c = client(serde_json::json!({}));
        let o = observed(&c);
        let (first, _) = run(&c, &o, now());
        assert_eq!(draft(&first).spec.not_before, None);
        let (mut c, o) = settle(&c, &o, &first);
        c.spec.active = false;
        let (p, _) = run(&c, &o, now());
        let bound = Time(now().checked_add(SignedDuration::from_secs(1)).expect("ts"));
        assert_eq!(draft(&p).spec.not_before, Some(bound.clone()));
        assert!(!draft(&p).spec.active);
        assert_eq!(ready(&p), ("False".into(), "Deactivated".into()));
        // Later reconciles (and a reactivation) keep the bound it set.
        let (mut c, o) = settle(&c, &o, &p);
        let (again, _) = run(&c, &o, ts("2026-06-09T00:00:00Z"));
        assert_eq!(draft(&again).spec.not_before, Some(bound.clone()));
        c.spec.active = true;
        let (back, _) = run(&c, &o, ts("2026-06-09T00:00:00Z"));
        assert_eq!(draft(&back).spec.not_before, Some(bound));
        assert_eq!(ready(&back).0, "True");
    }

    /// A violation of field `field` of a policy enforcing or warning.
    fn violation(field: &'static str, enforce: bool) -> crate::tenancy::policy::Violation {
        crate::tenancy::policy::Violation {
            field,
            message: format!("{field}: outside (OAuthClientPolicy p)"),
            policy: "p".into(),
            enforce,
        }
    }

    #[test]
    fn an_enforced_policy_bound_suspends_the_client_and_a_lifetime_bound_cuts_it() {
        let c = client(serde_json::json!({"accessTokenLifetimeSeconds": 3600}));
        let mut o = observed(&c);
        o.policy = super::super::policy::View {
            violations: vec![violation("spec.grantTypes", true)],
            lifetime_bound: Some(300),
        };
        let (p, _) = run(&c, &o, now());
        assert!(!draft(&p).spec.active, "not served");
        assert_eq!(draft(&p).spec.access_token_lifetime_seconds, 300);
        assert_eq!(ready(&p), ("False".into(), "PolicyViolation".into()));
        let pc = cond(&p, "PolicyCompliant").expect("PolicyCompliant");
        assert_eq!(
            (pc.status.as_str(), pc.reason.as_str()),
            ("False", "PolicyViolation")
        );
        assert!(pc.message.contains("spec.grantTypes"));
        assert!(reasons(&p).contains(&"PolicyViolation"));
        // Only the lifetime outside: served, with the bound's lifetime.
        o.policy.violations = vec![violation("spec.accessTokenLifetimeSeconds", true)];
        let (p, _) = run(&c, &o, now());
        assert!(draft(&p).spec.active);
        assert_eq!(ready(&p).0, "True");
        // Warned: served as written.
        o.policy = super::super::policy::View {
            violations: vec![violation("spec.redirectUris", false)],
            lifetime_bound: None,
        };
        let (p, _) = run(&c, &o, now());
        assert!(draft(&p).spec.active);
        assert_eq!(draft(&p).spec.access_token_lifetime_seconds, 3600);
        let pc = cond(&p, "PolicyCompliant").expect("PolicyCompliant");
        assert_eq!(pc.reason, "PolicyWarning");
    }

    #[test]
    fn a_public_client_has_no_secret_and_is_ready() {
        let c = client(serde_json::json!({"type": "public", "grantTypes": ["refresh_token"]}));
        let (p, calls) = run(&c, &observed(&c), now());
        assert_eq!(calls, 0);
        assert_eq!(data(written(&p), "client_secret"), None);
        assert_eq!(ready(&p), ("True".into(), "CredentialsReady".into()));
    }

    #[test]
    fn a_display_name_and_version_taken_by_an_older_client_is_said_in_a_condition_and_a_warning() {
        let c = client(serde_json::json!({"displayName": "Billing", "version": "1.0"}));
        let mut o = observed(&c);
        o.name_owner = Some("team-a/billing-old".into());
        let (p, _) = run(&c, &o, now());
        let conflict = cond(&p, "DisplayNameConflict").expect("condition");
        assert_eq!(conflict.status, "True");
        assert!(conflict.message.contains("team-a/billing-old"));
        assert!(
            p.outcome
                .events
                .iter()
                .any(|n| n.warning && n.reason == "DisplayNameConflict")
        );
        assert_eq!(
            ready(&p).0,
            "True",
            "the client still works: nothing is ambiguous"
        );
        let (p, _) = run(&c, &observed(&c), now());
        assert!(cond(&p, "DisplayNameConflict").is_none());
    }

    fn named(
        name: &str,
        display: Option<&str>,
        version: Option<&str>,
        created: &str,
    ) -> Arc<OAuthClient> {
        let mut c = client(serde_json::json!({"displayName": display, "version": version}));
        c.metadata.name = Some(name.into());
        c.metadata.uid = Some(format!("{name}-uid"));
        c.metadata.creation_timestamp = Some(Time(ts(created)));
        Arc::new(c)
    }

    #[test]
    fn the_older_client_keeps_a_display_name_and_version_compared_case_insensitively() {
        let old = named("old", Some("Billing"), Some("v1"), "2026-01-01T00:00:00Z");
        let new = named("new", Some("BILLING"), Some("V1"), "2026-02-01T00:00:00Z");
        let other_version = named("v2", Some("billing"), Some("v2"), "2025-01-01T00:00:00Z");
        let all = || vec![old.clone(), new.clone(), other_version.clone()];
        let owner = older_with_display(&new, all()).expect("an owner");
        assert_eq!(owner.metadata.name.as_deref(), Some("old"));
        assert!(
            older_with_display(&old, all()).is_none(),
            "the older one is not told"
        );
        assert!(older_with_display(&other_version, all()).is_none());
        // Without a version both clients claim the same pair.
        let a = named("a", Some("Reports"), None, "2026-01-01T00:00:00Z");
        let b = named("b", Some("reports"), None, "2026-01-01T00:00:00Z");
        let owner =
            older_with_display(&b, vec![a.clone(), b.clone()]).expect("same second: by name");
        assert_eq!(owner.metadata.name.as_deref(), Some("a"));
    }

    #[test]
    fn no_secret_value_reaches_the_status_the_events_or_debug_output() {
        let c = client(
            serde_json::json!({"secrets": [{"name": "a"}, {"name": "b", "expiresAfter": "1d"}]}),
        );
        let o = observed(&c);
        let (first, _) = run(&c, &o, now());
        let (c, o) = settle(&c, &o, &first);
        let (p, _) = run(&c, &o, ts("2026-06-03T00:00:00Z"));
        for shown in [
            format!("{:?}", first.outcome),
            format!("{first:?}"),
            format!("{:?}", p.outcome),
            serde_json::to_string(&p.outcome.status).expect("json"),
        ] {
            assert!(!shown.contains("fresh-"), "{shown}");
        }
    }

    /// A public JWK Set of one EC key, as a client would publish it.
    fn public_jwks() -> String {
        let stored = crate::auth::keys::StoredKeys::generate_es256().expect("key");
        let set = crate::auth::keys::KeySet::load(&stored).expect("load");
        serde_json::to_string(&set.jwks).expect("json")
    }

    fn by_key(extra: serde_json::Value) -> OAuthClient {
        let mut spec = serde_json::json!({
            "authentication": {"privateKeyJwt": {"jwksSecretRef": {"name": "keys", "key": "v"}}}
        });
        for (k, v) in extra.as_object().expect("object") {
            spec[k] = v.clone();
        }
        client(spec)
    }

    #[test]
    fn keys_at_a_jwks_uri_reach_the_verifier_and_survive_a_failed_read() {
        const URI: &str = "https://billing.example/jwks.json";
        let c = client(serde_json::json!({
            "authentication": {"privateKeyJwt": {"jwksUri": URI}}
        }));
        let jwks = public_jwks();
        let mut o = observed(&c);
        o.jwks_uri = Some(Err("answered HTTP 404".into()));
        // Never read: nothing is accepted, and the client says why.
        let (p, calls) = run(&c, &o, now());
        assert_eq!(calls, 0, "no secret is generated");
        let fetched = cond(&p, "KeysFetched").expect("condition");
        assert_eq!(fetched.status, "False");
        assert!(
            fetched.message.contains("answered HTTP 404"),
            "{}",
            fetched.message
        );
        assert_eq!(draft(&p).spec.jwks, None);
        assert_eq!(ready(&p), ("False".into(), "WaitingForSecret".into()));

        o.jwks_uri = Some(Ok(jwks.clone()));
        let (p, _) = run(&c, &o, now());
        assert_eq!(cond(&p, "KeysFetched").expect("condition").status, "True");
        assert_eq!(ready(&p), ("True".into(), "CredentialsReady".into()));
        let read = draft(&p).spec.jwks.clone().expect("the keys");
        assert_eq!(ClientKeys::parse(&read).expect("valid").jwks.keys.len(), 1);

        // Read before, failing now: the keys read before stay.
        let (c, mut o) = settle(&c, &o, &p);
        o.jwks_uri = Some(Err("could not be reached".into()));
        let (p, _) = run(&c, &o, now());
        assert_eq!(cond(&p, "KeysFetched").expect("condition").status, "False");
        assert_eq!(draft(&p).spec.jwks.as_deref(), Some(read.as_str()));
        assert_eq!(ready(&p).0, "True");
        assert!(reasons(&p).contains(&"KeysFetchFailed"));

        // A private key published at the URL is refused, naming the source.
        let mut leaked: serde_json::Value = serde_json::from_str(&public_jwks()).expect("json");
        leaked["keys"][0]["d"] = "c2VjcmV0".into();
        o.jwks_uri = Some(Ok(leaked.to_string()));
        let (p, _) = run(&c, &o, now());
        assert_eq!(cond(&p, "KeysFetched").expect("condition").status, "False");
        assert!(
            cond(&p, "KeysFetched")
                .expect("condition")
                .message
                .contains("private key material")
        );
    }

    #[test]
    fn keys_of_a_secret_and_a_uri_are_accepted_together() {
        let c = client(serde_json::json!({
            "authentication": {"privateKeyJwt": {
                "jwksSecretRef": {"name": "keys", "key": "v"},
                "jwksUri": "https://billing.example/jwks.json"
            }}
        }));
        let mut o = observed(&c);
        o.referenced
            .insert("keys".into(), Some(byo("keys", &public_jwks(), "1")));
        o.jwks_uri = Some(Ok(public_jwks()));
        let (p, _) = run(&c, &o, now());
        let keys = draft(&p).spec.jwks.clone().expect("the keys");
        assert_eq!(ClientKeys::parse(&keys).expect("valid").jwks.keys.len(), 2);
        // The same key in both places: one kid twice is refused.
        let same = public_jwks();
        o.referenced
            .insert("keys".into(), Some(byo("keys", &same, "1")));
        o.jwks_uri = Some(Ok(same));
        let (p, _) = run(&c, &o, now());
        assert_eq!(ready(&p).0, "False");
        assert!(cond(&p, "SpecValid").is_some_and(|c| c.message.contains("together")));
    }

    #[test]
    fn a_service_account_client_is_ready_only_once_its_account_exists() {
        let c = client(serde_json::json!({
            "authentication": {"serviceAccounts": [{"name": "billing"}]}
        }));
        let mut o = observed(&c);
        let (p, calls) = run(&c, &o, now());
        assert_eq!(calls, 0, "no secret is generated");
        let found = cond(&p, "ServiceAccountsFound").expect("condition");
        assert_eq!(found.status, "False");
        assert!(
            found
                .message
                .contains("ServiceAccount team-a/billing not found")
        );
        assert_eq!(cond(&p, "Ready").expect("ready").status, "False");
        assert_eq!(p.outcome.requeue, Requeue::After(POLL));
        // Listed in the verifier all the same: the server checks existence on every token.
        assert_eq!(draft(&p).spec.service_accounts.len(), 1);

        o.service_accounts
            .insert(("team-a".into(), "billing".into()), true);
        let (p, calls) = run(&c, &o, now());
        assert_eq!(calls, 0, "no secret is generated");
        assert_eq!(
            cond(&p, "ServiceAccountsFound").expect("condition").status,
            "True"
        );
        assert_eq!(cond(&p, "Ready").expect("ready").status, "True");
        assert_eq!(
            p.outcome.status.authentication_methods,
            [SERVICE_ACCOUNT_METHOD]
        );
        assert_eq!(
            draft(&p).spec.service_accounts,
            [ServiceAccountSubject {
                namespace: "team-a".into(),
                name: "billing".into()
            }]
        );
    }

    #[test]
    fn a_federated_client_is_ready_only_with_an_issuer_the_operator_trusts() {
        let sub = "system:serviceaccount:payments:billing";
        let c = client(serde_json::json!({
            "authentication": {"federated": [{"issuer": "https://ci.untrusted.test", "subject": "ci"}]}
        }));
        let (p, calls) = run(&c, &observed(&c), now());
        assert_eq!(calls, 0, "no secret is generated");
        let trusted = cond(&p, "FederatedIssuersTrusted").expect("condition");
        assert_eq!(trusted.status, "False");
        assert!(
            trusted
                .message
                .contains("issuer https://ci.untrusted.test is not trusted")
        );
        assert_eq!(ready(&p), ("False".into(), "NoValidSecret".into()));
        assert!(p.outcome.status.authentication_methods.is_empty());

        let c = client(serde_json::json!({
            "authentication": {"federated": [
                {"issuer": TRUSTED, "subject": sub},
                {"issuer": TRUSTED, "subject": sub},
                {"issuer": "https://ci.untrusted.test", "subject": "ci"}
            ]}
        }));
        let (p, _) = run(&c, &observed(&c), now());
        assert_eq!(
            cond(&p, "FederatedIssuersTrusted")
                .expect("condition")
                .status,
            "False"
        );
        assert_eq!(ready(&p), ("True".into(), "CredentialsReady".into()));
        assert_eq!(p.outcome.status.authentication_methods, [FEDERATED_METHOD]);
        // Sorted and deduplicated: the verifier does not change with the list's order.
        let listed: Vec<&str> = draft(&p)
            .spec
            .federated
            .iter()
            .map(|f| f.issuer.as_str())
            .collect();
        assert_eq!(listed, ["https://ci.untrusted.test", TRUSTED]);

        let c = client(serde_json::json!({
            "authentication": {"federated": [{"issuer": TRUSTED, "subject": sub}]}
        }));
        let (p, _) = run(&c, &observed(&c), now());
        assert_eq!(
            cond(&p, "FederatedIssuersTrusted")
                .expect("condition")
                .status,
            "True"
        );
        assert!(
            p.outcome
                .events
                .iter()
                .all(|e| e.reason != "IssuerNotTrusted")
        );
    }

    #[test]
    fn a_private_key_jwt_client_gets_no_secret_and_its_keys_reach_the_verifier() {
        let c = by_key(serde_json::json!({}));
        let mut o = observed(&c);
        let jwks = public_jwks();
        o.referenced
            .insert("keys".into(), Some(byo("keys", &jwks, "1")));
        let (p, calls) = run(&c, &o, now());
        assert_eq!(calls, 0, "no secret is generated");
        let s = written(&p);
        assert_eq!(data(s, "client_secret"), None);
        assert_eq!(data(s, "client_id").as_deref(), Some("uid-1"));
        assert!(data(s, "token_endpoint").is_some());
        let spec = &draft(&p).spec;
        assert!(spec.secrets.is_empty() && draft(&p).entries.is_empty());
        let keys = spec.jwks.as_deref().expect("the keys");
        assert_eq!(ClientKeys::parse(keys).expect("valid").jwks.keys.len(), 1);
        assert_eq!(ready(&p), ("True".into(), "CredentialsReady".into()));
        assert_eq!(p.outcome.status.authentication_methods, ["private_key_jwt"]);

        // With a secret too (a migration): both methods.
        let c = by_key(serde_json::json!({"secrets": [{"name": "old"}]}));
        let mut o = observed(&c);
        o.referenced
            .insert("keys".into(), Some(byo("keys", &jwks, "1")));
        let (p, calls) = run(&c, &o, now());
        assert_eq!(calls, 1);
        assert_eq!(
            p.outcome.status.authentication_methods,
            [
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt"
            ]
        );
    }

    #[test]
    fn missing_or_unusable_keys_leave_a_secretless_client_not_ready() {
        let c = by_key(serde_json::json!({}));
        let mut o = observed(&c);
        o.referenced.insert("keys".into(), None);
        let (p, calls) = run(&c, &o, now());
        assert_eq!(calls, 0);
        assert_eq!(ready(&p), ("False".into(), "WaitingForSecret".into()));
        assert_eq!(draft(&p).spec.jwks, None);

        // A private key where the public one belongs: refused, named, never copied.
        let mut leaked: serde_json::Value = serde_json::from_str(&public_jwks()).expect("json");
        leaked["keys"][0]["d"] = serde_json::json!("cHJpdmF0ZQ");
        o.referenced
            .insert("keys".into(), Some(byo("keys", &leaked.to_string(), "1")));
        let (p, _) = run(&c, &o, now());
        assert_eq!(ready(&p), ("False".into(), "NoValidSecret".into()));
        let spec = cond(&p, "SpecValid").expect("SpecValid");
        assert!(
            spec.message.contains("private key material"),
            "{}",
            spec.message
        );
        assert!(!spec.message.contains("cHJpdmF0ZQ"));
        assert_eq!(draft(&p).spec.jwks, None);
        assert!(p.outcome.status.authentication_methods.is_empty());
    }
}
