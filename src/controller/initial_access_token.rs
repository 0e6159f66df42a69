//! Reconciles one `InitialAccessToken`: the token Secret, the verifier the token server
//! reads, status, Events; as observe (the token Secret and the verifier), a pure
//! [`plan`], and act (the writes).
//!
//! The token value is generated once into a Secret owned by the resource and never
//! rewritten; the token server sees only its SHA-256 (the token carries 256 random bits,
//! see [`crate::auth::hash`]). An argon2id hash an earlier version wrote of the same
//! Secret version is kept beside it, for that version's replicas during an upgrade. The count of registered clients is the token server's to
//! write (see `server::registration`): the controller only reports it, and writes its own
//! status fields only onto the version it planned from.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::outcome::{self, Cond, Note, Outcome, Requeue};
use super::secrets::{self, bytes};
use super::{Context, Error};
use crate::api::{
    InitialAccessToken, InitialAccessTokenStatus, InitialAccessTokenVerifier,
    InitialAccessTokenVerifierSpec, MANAGED_BY, MANAGED_BY_LABEL, SourceRef,
};
use crate::auth::hash::Verifier;
use crate::auth::secret;
use crate::auth::secret::{SecretString, split_token};

/// The key of the token value in its Secret.
pub const TOKEN_KEY: &str = "token";

/// How soon a token is looked at again at the latest, to follow its expiry.
const RECHECK: Duration = Duration::from_secs(3600);

/// One reconcile: observe, plan, act.
#[tracing::instrument(skip_all, fields(
    namespace = %iat.namespace().unwrap_or_default(),
    name = %iat.name_any(),
))]
pub async fn reconcile(iat: Arc<InitialAccessToken>, ctx: Arc<Context>) -> Result<Action, Error> {
    let now = outcome::now().ok_or(Error::Clock)?;
    let observed = observe(&iat, &ctx).await?;
    let plan = plan(&iat, &observed, now, &mut || {
        Ok(SecretString::new(format!(
            "{}.{}",
            secret::random_id()?,
            secret::generate_secret()?.expose()
        )))
    })?;
    Ok(act(&iat, &ctx, observed, plan).await?.into())
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
    let after = iat.spec.expires_after.as_ref()?.to_signed().ok()?;
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

// ---- observe ----------------------------------------------------------------------------

/// What one reconcile read. Holds the token Secret, so it has no `Debug`.
pub struct Observed {
    /// The token Secret as read.
    pub secret: Option<Secret>,
    /// The verifier as read.
    pub verifier: Option<InitialAccessTokenVerifier>,
    /// The client bounds of the enforcing policies of the token's namespace.
    pub enforced_policies: Vec<crate::api::PolicyBounds>,
}

async fn observe(iat: &InitialAccessToken, ctx: &Context) -> Result<Observed, Error> {
    let ns = iat.namespace().ok_or(Error::MissingNamespace)?;
    let secret_name = iat.token_secret_name();
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&secret_name)
        .await
        .map_err(|source| Error::GetSecret {
            name: secret_name,
            source,
        })?;
    let name = iat.name_any();
    let verifier = Api::<InitialAccessTokenVerifier>::namespaced(ctx.client.clone(), &ns)
        .get_opt(&name)
        .await
        .map_err(|source| Error::GetVerifier { name, source })?;
    ctx.policies_ready().await;
    let enforced_policies = ctx
        .policies_for(&ns)
        .iter()
        .filter_map(crate::tenancy::policy::PolicyEntry::enforced_bounds)
        // What the verifier's schema holds; more enforcing policies on one namespace than
        // this are not a setup anyone runs (the controller still judges every client).
        .take(16)
        .collect();
    Ok(Observed {
        secret,
        verifier,
        enforced_policies,
    })
}

// ---- plan -------------------------------------------------------------------------------

/// Everything one reconcile writes.
#[derive(Debug)]
pub struct Plan {
    /// Create the token Secret (there is none): its value is generated here, once.
    pub create_secret: Option<Secret>,
    /// The verifier to write, unless it equals the one read.
    pub verifier: Option<VerifierDraft>,
    pub outcome: Outcome<InitialAccessTokenStatus>,
}

/// The verifier, before the source of a Secret created by this reconcile is known.
#[derive(Debug)]
pub struct VerifierDraft {
    pub token_id: String,
    /// Where the token came from. For a Secret created by this reconcile, its UID and
    /// resourceVersion are the create's: act fills them in.
    pub source: SourceRef,
    pub expires_at: Time,
    /// base64url SHA-256 of the token.
    pub sha256: String,
    /// The argon2id hash an earlier version wrote of this very Secret version.
    pub argon2id: Option<String>,
}

/// Plans one reconcile of `iat`. `fresh` makes a new token; it is called only when the
/// token Secret does not exist.
pub fn plan(
    iat: &InitialAccessToken,
    observed: &Observed,
    now: Timestamp,
    fresh: &mut dyn FnMut() -> Result<SecretString, secret::RandomError>,
) -> Result<Plan, secret::RandomError> {
    let secret_name = iat.token_secret_name();
    let current = iat.status.clone().unwrap_or_default();
    let generation = iat.metadata.generation;
    let status = |expires: Option<Timestamp>, remaining: Option<u32>, conds: &[Cond]| {
        InitialAccessTokenStatus {
            expires_at: expires.map(Time),
            remaining,
            secret_name: Some(secret_name.clone()),
            observed_generation: generation,
            conditions: outcome::conditions(&current.conditions, generation, now, conds),
            registered_clients: current.registered_clients.clone(),
        }
    };
    let stop = |status: InitialAccessTokenStatus| Plan {
        create_secret: None,
        verifier: None,
        outcome: Outcome {
            status,
            events: Vec::new(),
            requeue: Requeue::OnChange,
        },
    };
    let conflict = |expires: Timestamp| {
        stop(status(
            Some(expires),
            None,
            &[Cond::new(
                "Ready",
                false,
                "SecretConflict",
                format!(
                    "Secret {secret_name} exists but is not this token's (not owned by it, or without a `token` key); it is left untouched"
                ),
            )],
        ))
    };

    let Some(expires) = expiry(iat) else {
        return Ok(stop(status(
            None,
            None,
            &[Cond::new(
                "Ready",
                false,
                "InvalidSpec",
                "spec.expiresAfter or spec.expiresAt does not give a usable expiry".into(),
            )],
        )));
    };

    // The token value: written once, kept for good (deleting the Secret makes a new one).
    let mut events = Vec::new();
    let (secret, create_secret) = match &observed.secret {
        Some(s) if !owned_by(s, iat) => return Ok(conflict(expires)),
        Some(s) => (s.clone(), None),
        None => {
            let token = fresh()?;
            events.push(Note::normal(
                "TokenCreated",
                format!("Generated the initial access token into Secret {secret_name}"),
            ));
            let s = token_secret(iat, &secret_name, token.expose());
            (s.clone(), Some(s))
        }
    };
    let token = secrets::value(&secret, TOKEN_KEY);
    let token_id = token
        .as_ref()
        .and_then(|t| split_token(t.expose()))
        .map(|(id, _)| id.to_string());
    let (Some(token), Some(token_id)) = (token, token_id) else {
        return Ok(conflict(expires));
    };
    let source = SourceRef {
        secret_name: secret_name.clone(),
        key: TOKEN_KEY.into(),
        uid: secret.metadata.uid.clone().unwrap_or_default(),
        version: secret.metadata.resource_version.clone().unwrap_or_default(),
    };
    let argon2id = match observed.verifier.as_ref().map(|v| &v.spec) {
        Some(v) if create_secret.is_none() && v.source == source && v.token_id == token_id => {
            v.hash.clone()
        }
        _ => None,
    };
    let verifier = VerifierDraft {
        token_id,
        source,
        expires_at: Time(expires),
        sha256: Verifier::of_generated(token.expose())
            .sha256_field()
            .unwrap_or_default(),
        argon2id,
    };

    let count = iat.spec.count;
    let registered = iat.registered();
    let remaining = count.saturating_sub(registered);
    let expired = expires <= now;
    let exhausted = remaining == 0;
    let was = |t: &str| outcome::is_true(&current.conditions, t);
    if expired && !was("Expired") {
        events.push(Note::warning(
            "Expired",
            format!("The initial access token expired at {expires}; it registers no more clients"),
        ));
    }
    if exhausted && !was("Exhausted") {
        events.push(Note::normal(
            "Exhausted",
            format!("The initial access token registered {registered} of {count} clients; it registers no more"),
        ));
    }
    let ready = if expired {
        Cond::new("Ready", false, "Expired", format!("Expired at {expires}"))
    } else if exhausted {
        Cond::new(
            "Ready",
            false,
            "Exhausted",
            format!("Registered {registered} of {count} clients"),
        )
    } else {
        Cond::new(
            "Ready",
            true,
            "TokenReady",
            format!(
                "Secret {secret_name} holds the token; it may register {remaining} more client(s) until {expires}"
            ),
        )
    };
    let conds = [
        ready,
        Cond::new(
            "Expired",
            expired,
            if expired { "Expired" } else { "NotExpired" },
            format!("Expires at {expires}"),
        ),
        Cond::new(
            "Exhausted",
            exhausted,
            if exhausted { "Exhausted" } else { "Remaining" },
            format!("{remaining} of {count} remaining"),
        ),
    ];
    // Look again right after the expiry, to say so.
    let requeue = if expired {
        Requeue::OnChange
    } else {
        Requeue::After(outcome::until(now, expires).min(RECHECK))
    };
    Ok(Plan {
        create_secret,
        verifier: Some(verifier),
        outcome: Outcome {
            status: status(Some(expires), Some(remaining), &conds),
            events,
            requeue,
        },
    })
}

// ---- act --------------------------------------------------------------------------------

/// Writes what `plan` says: the Secret (create only), the verifier, then the status and
/// its Events.
async fn act(
    iat: &InitialAccessToken,
    ctx: &Context,
    observed: Observed,
    plan: Plan,
) -> Result<Requeue, Error> {
    let mut verifier = plan.verifier;
    if let Some(desired) = plan.create_secret {
        let api: Api<Secret> =
            Api::namespaced(ctx.client.clone(), &iat.namespace().unwrap_or_default());
        match api.create(&PostParams::default(), &desired).await {
            Ok(s) => {
                if let Some(v) = verifier.as_mut() {
                    v.source.uid = s.metadata.uid.unwrap_or_default();
                    v.source.version = s.metadata.resource_version.unwrap_or_default();
                }
            }
            // Another controller created it first: take theirs next time round.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                return Ok(Requeue::After(Duration::from_secs(1)));
            }
            Err(source) => {
                return Err(Error::WriteSecret {
                    name: desired.name_any(),
                    source,
                });
            }
        }
    }
    if let Some(draft) = verifier {
        let spec = InitialAccessTokenVerifierSpec {
            token_id: draft.token_id,
            sha256: Some(draft.sha256),
            hash: draft.argon2id,
            source: draft.source,
            expires_at: draft.expires_at,
            enforced_policies: observed.enforced_policies.clone(),
        };
        if observed.verifier.as_ref().map(|v| &v.spec) != Some(&spec) {
            let verifier = InitialAccessTokenVerifier::new(&iat.name_any(), spec);
            if !ctx
                .write_owned(iat, verifier, observed.verifier.as_ref())
                .await?
            {
                return Ok(Requeue::After(Duration::from_secs(1)));
            }
        }
    }

    let outcome = plan.outcome;
    if outcome.status != iat.status.clone().unwrap_or_default() {
        // Without `registeredClients` (empty lists are not serialised): applying it would
        // make the controller a co-owner of the list the token server appends to.
        let owned = InitialAccessTokenStatus {
            registered_clients: Vec::new(),
            ..outcome.status
        };
        // Onto the version planned from: the token server may have claimed or released a
        // slot since, and that change brings another reconcile.
        if ctx.apply_status_if_current(iat, &owned).await? {
            for note in outcome.events {
                ctx.publish(iat, note.event_type(), note.reason, note.message)
                    .await;
            }
        }
    }
    Ok(outcome.requeue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{InitialAccessTokenSpec, RegisteredClient};

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn iat(spec: serde_json::Value) -> InitialAccessToken {
        let mut t = InitialAccessToken::new(
            "onboarding",
            serde_json::from_value::<InitialAccessTokenSpec>(spec).expect("spec"),
        );
        t.metadata.namespace = Some("team-a".into());
        t.metadata.uid = Some("iat-uid".into());
        t.metadata.generation = Some(1);
        t.metadata.creation_timestamp = Some(Time(ts("2026-06-01T00:00:00Z")));
        t
    }

    fn empty() -> Observed {
        Observed {
            enforced_policies: vec![],
            secret: None,
            verifier: None,
        }
    }

    fn run(t: &InitialAccessToken, o: &Observed, now: Timestamp) -> (Plan, u32) {
        let mut calls = 0;
        let p = plan(t, o, now, &mut || {
            calls += 1;
            Ok(SecretString::new("tokid.tokensecret".into()))
        })
        .expect("plan");
        (p, calls)
    }

    fn ready(p: &Plan) -> (String, String) {
        let c = p
            .outcome
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready");
        (c.status.clone(), c.reason.clone())
    }

    fn reasons(p: &Plan) -> Vec<&'static str> {
        p.outcome.events.iter().map(|n| n.reason).collect()
    }

    /// The cluster after `p`: the Secret created (with a UID and version), the verifier
    /// written with a made-up hash, the status applied.
    fn settle(t: &InitialAccessToken, o: &Observed, p: &Plan) -> (InitialAccessToken, Observed) {
        let mut secret = p
            .create_secret
            .clone()
            .or_else(|| o.secret.clone())
            .expect("a Secret");
        secret.metadata.uid = Some("secret-uid".into());
        secret
            .metadata
            .resource_version
            .get_or_insert_with(|| "7".into());
        let d = p.verifier.as_ref().expect("a verifier");
        let spec = InitialAccessTokenVerifierSpec {
            token_id: d.token_id.clone(),
            sha256: Some(d.sha256.clone()),
            hash: None,
            source: SourceRef {
                uid: "secret-uid".into(),
                version: "7".into(),
                ..d.source.clone()
            },
            expires_at: d.expires_at.clone(),
            enforced_policies: vec![],
        };
        let mut t = t.clone();
        t.status = Some(p.outcome.status.clone());
        let o = Observed {
            enforced_policies: vec![],
            secret: Some(secret),
            verifier: Some(InitialAccessTokenVerifier::new("onboarding", spec)),
        };
        (t, o)
    }

    #[test]
    fn a_new_token_is_generated_once_and_hashed() {
        let t = iat(serde_json::json!({"expiresAfter": "7d", "count": 2}));
        let (p, calls) = run(&t, &empty(), ts("2026-06-01T00:00:00Z"));
        assert_eq!(calls, 1);
        let s = p.create_secret.as_ref().expect("create");
        assert!(owned_by(s, &t));
        let d = p.verifier.as_ref().expect("verifier");
        assert_eq!(d.token_id, "tokid");
        let token = secrets::value(s, TOKEN_KEY).expect("token");
        assert_eq!(
            Some(d.sha256.clone()),
            Verifier::of_generated(token.expose()).sha256_field()
        );
        assert_eq!(d.argon2id, None);
        assert_eq!(ready(&p), ("True".into(), "TokenReady".into()));
        assert_eq!(reasons(&p), ["TokenCreated"]);
        assert_eq!(p.outcome.status.remaining, Some(2));
        assert_eq!(
            p.outcome.requeue,
            Requeue::After(RECHECK),
            "capped at an hour"
        );
        assert!(
            !format!("{p:?}").contains("tokensecret"),
            "no token in Debug"
        );
    }

    #[test]
    fn an_unchanged_token_plans_no_write_and_no_hash() {
        let t = iat(serde_json::json!({"expiresAfter": "7d"}));
        let now = ts("2026-06-01T00:00:00Z");
        let (first, _) = run(&t, &empty(), now);
        let (t, o) = settle(&t, &empty(), &first);
        let (p, calls) = run(&t, &o, ts("2026-06-01T01:00:00Z"));
        assert_eq!(calls, 0);
        assert!(p.create_secret.is_none());
        let d = p.verifier.as_ref().expect("verifier");
        let read = &o.verifier.as_ref().expect("verifier").spec;
        assert_eq!(Some(&d.sha256), read.sha256.as_ref());
        assert_eq!(Some(&p.outcome.status), t.status.as_ref());
        assert!(p.outcome.events.is_empty());
    }

    #[test]
    fn an_earlier_versions_argon2_verifier_gains_a_sha256_and_keeps_its_hash() {
        let t = iat(serde_json::json!({"expiresAfter": "7d"}));
        let (first, _) = run(&t, &empty(), ts("2026-06-01T00:00:00Z"));
        let (t, mut o) = settle(&t, &empty(), &first);
        // As the previous version left it: an argon2id hash only.
        let v = o.verifier.as_mut().expect("verifier");
        v.spec.sha256 = None;
        v.spec.hash = Some("$argon2id$earlier".into());
        let (p, calls) = run(&t, &o, ts("2026-06-01T01:00:00Z"));
        assert_eq!(calls, 0, "no new token");
        assert!(p.create_secret.is_none(), "the token Secret is not touched");
        let d = p.verifier.as_ref().expect("verifier");
        assert_eq!(d.argon2id.as_deref(), Some("$argon2id$earlier"));
        let token = secrets::value(o.secret.as_ref().expect("secret"), TOKEN_KEY).expect("token");
        assert!(
            Verifier::parse(&format!("$sha256${}", d.sha256))
                .is_some_and(|v| v.matches(token.expose()))
        );
    }

    #[test]
    fn an_expired_token_says_so_once_and_waits_for_a_change() {
        let t = iat(serde_json::json!({"expiresAt": "2026-06-02T00:00:00Z"}));
        let (first, _) = run(&t, &empty(), ts("2026-06-01T00:00:00Z"));
        assert_eq!(
            first.outcome.requeue,
            Requeue::After(Duration::from_secs(3601).min(RECHECK))
        );
        let (t, o) = settle(&t, &empty(), &first);
        let after = ts("2026-06-02T00:00:00Z");
        let (p, _) = run(&t, &o, after);
        assert_eq!(ready(&p), ("False".into(), "Expired".into()));
        assert_eq!(reasons(&p), ["Expired"]);
        assert!(p.outcome.events[0].warning);
        assert_eq!(p.outcome.requeue, Requeue::OnChange);
        let (t, o) = settle(&t, &o, &p);
        let (again, _) = run(&t, &o, after);
        assert!(again.outcome.events.is_empty(), "said once");
    }

    #[test]
    fn an_exhausted_token_registers_no_more() {
        let mut t = iat(serde_json::json!({"expiresAfter": "7d", "count": 1}));
        let (first, _) = run(&t, &empty(), ts("2026-06-01T00:00:00Z"));
        let (settled, o) = settle(&t, &empty(), &first);
        t.status = settled.status;
        if let Some(s) = t.status.as_mut() {
            s.registered_clients.push(RegisteredClient {
                name: "c".into(),
                client_id: "c".into(),
                registered_at: Time(ts("2026-06-01T00:30:00Z")),
            });
        }
        let (p, _) = run(&t, &o, ts("2026-06-01T01:00:00Z"));
        assert_eq!(ready(&p), ("False".into(), "Exhausted".into()));
        assert_eq!(p.outcome.status.remaining, Some(0));
        assert_eq!(reasons(&p), ["Exhausted"]);
        assert_eq!(p.outcome.status.registered_clients.len(), 1, "kept as read");
    }

    #[test]
    fn a_token_without_a_usable_expiry_is_an_invalid_spec_and_gets_no_value() {
        let t = iat(serde_json::json!({"expiresAfter": "soon"}));
        let (p, calls) = run(&t, &empty(), ts("2026-06-01T00:00:00Z"));
        assert_eq!(calls, 0);
        assert!(p.create_secret.is_none() && p.verifier.is_none());
        assert_eq!(ready(&p), ("False".into(), "InvalidSpec".into()));
    }

    #[test]
    fn a_secret_of_someone_else_or_without_a_token_is_a_conflict() {
        let t = iat(serde_json::json!({"expiresAfter": "7d"}));
        let mut foreign = Secret::default();
        foreign.metadata.name = Some("onboarding-token".into());
        let o = Observed {
            enforced_policies: vec![],
            secret: Some(foreign),
            verifier: None,
        };
        let (p, calls) = run(&t, &o, ts("2026-06-01T00:00:00Z"));
        assert_eq!(calls, 0);
        assert_eq!(ready(&p), ("False".into(), "SecretConflict".into()));
        let mut ours = token_secret(&t, "onboarding-token", "x");
        ours.metadata.owner_references = token_secret(&t, "n", "x").metadata.owner_references;
        ours.data = Some(BTreeMap::new());
        let o = Observed {
            enforced_policies: vec![],
            secret: Some(ours),
            verifier: None,
        };
        let (p, _) = run(&t, &o, ts("2026-06-01T00:00:00Z"));
        assert_eq!(ready(&p), ("False".into(), "SecretConflict".into()));
        assert!(p.verifier.is_none());
    }
}
