//! Reconciles one `OAuthResource` into its status and Events: whether it holds its
//! audience (the oldest claim does; the issuer, the default audience and client ids
//! cannot be claimed), how many clients it grants, and what an API must check in its
//! tokens. Observe (the claims table and the client stores, in memory), plan (pure,
//! below), act (one status replace when something changed, Events on transitions).
//!
//! The status only reports: the token server decides from its own index, with the same
//! table and the same rules ([`crate::tenancy`]), whether or not this status was written.

use std::sync::Arc;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::outcome::{self, Cond, Note, Outcome, Requeue};
use super::{Context, Error};
use crate::api::{OAuthResource, OAuthResourceStatus, Verification};
use crate::tenancy::normalize;

/// How often the count of granted clients is brought up to date whatever happened: a
/// client whose audiences or labels change requeues the claimants itself, a deleted one
/// leaves the count until this pass.
const RECOUNT: std::time::Duration = std::time::Duration::from_secs(300);

/// What the plan decides from.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// `namespace/name` of the resource holding the audience, if it is another.
    pub holder: Option<String>,
    /// Why nobody may claim the audience, if that is so.
    pub reserved: Option<&'static str>,
    /// How many clients ask for the audience and are granted it.
    pub granted: u32,
    /// The `access` entries whose client selector does not parse.
    pub broken_selectors: Vec<usize>,
    /// The platform's bounds its audience is outside of.
    pub violations: Vec<crate::tenancy::policy::Violation>,
    /// Whether an entry grants by namespace selector where the installation does not
    /// honour them.
    pub selectors_off: bool,
}

/// What the reconcile needs of the controller's settings.
pub struct Settings<'a> {
    pub issuer: &'a str,
}

pub async fn reconcile(resource: Arc<OAuthResource>, ctx: Arc<Context>) -> Result<Action, Error> {
    let now = outcome::now().ok_or(Error::Clock)?;
    ctx.claims.ready().await;
    ctx.stores_ready().await;
    ctx.policies_ready().await;
    let observed = observe(&resource, &ctx);
    let settings = Settings {
        issuer: &ctx.config.issuer,
    };
    let planned = plan(&resource, &observed, &settings, now);
    let mut updated = OAuthResource::clone(&resource);
    let changed = resource.status.as_ref() != Some(&planned.status);
    if changed {
        updated.status = Some(planned.status);
        if !ctx.replace_status(&updated).await? {
            return Ok(Action::requeue(std::time::Duration::from_secs(1)));
        }
        for note in planned.events {
            ctx.publish(&*resource, note.event_type(), note.reason, note.message)
                .await;
        }
    }
    Ok(Requeue::After(RECOUNT).into())
}

pub fn error_policy(resource: Arc<OAuthResource>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(
        resource = %resource.name_any(),
        namespace = resource.namespace().unwrap_or_default(),
        reason = error.metric_label(),
        error = %error,
        "reconcile failed"
    );
    error.retry()
}

fn observe(resource: &OAuthResource, ctx: &Context) -> Observed {
    let key = normalize(&resource.spec.audience);
    let ns = resource.namespace().unwrap_or_default();
    let name = resource.name_any();
    let reserved = if ctx
        .config
        .reserved_audiences
        .iter()
        .any(|a| normalize(a) == key)
    {
        Some("it is the operator's issuer or default audience")
    } else if ctx.is_client_id(&key) {
        Some("it is a client id (the audience of that client's ID tokens)")
    } else {
        None
    };
    let table = ctx.claims.read();
    let claims = table.claimants(&resource.spec.audience);
    let holder = claims
        .first()
        .filter(|h| !(h.namespace == ns && h.name == name))
        .map(|h| format!("{}/{}", h.namespace, h.name));
    let mine = claims.iter().find(|e| e.namespace == ns && e.name == name);
    let granted = match mine {
        Some(entry) if holder.is_none() && reserved.is_none() => {
            let count = ctx
                .clients_where(|c| {
                    let empty = Default::default();
                    let asks = c.spec.audiences.iter().any(|a| normalize(a) == key);
                    let ns = c.metadata.namespace.as_deref().unwrap_or_default();
                    // A namespace's labels are copied out of the store only for an entry
                    // that selects by them.
                    let ns_labels = entry
                        .selects_namespaces()
                        .then(|| ctx.namespace_labels(ns))
                        .flatten();
                    asks && c.effective_client_id().is_some_and(|id| {
                        entry
                            .grant(
                                &id,
                                ns,
                                c.metadata.labels.as_ref().unwrap_or(&empty),
                                ns_labels.as_ref(),
                            )
                            .is_some()
                    })
                })
                .len();
            u32::try_from(count).unwrap_or(u32::MAX)
        }
        _ => 0,
    };
    let policies = ctx.policies_for(&ns);
    let applicable: Vec<_> = policies.iter().collect();
    Observed {
        holder,
        reserved,
        granted,
        broken_selectors: mine.map(|e| e.broken_selectors()).unwrap_or_default(),
        selectors_off: !ctx.config.namespace_selectors
            && mine.is_some_and(|e| e.selects_namespaces()),
        violations: crate::tenancy::policy::check_audience(
            &applicable,
            &ns,
            &resource.spec.audience,
        ),
    }
}

/// The reason of `Accepted=False` for an audience outside the platform's bounds: the
/// token server does not honour such a claim ([`crate::tenancy::ResourceEntry`]).
pub const NOT_ALLOWED: &str = crate::tenancy::resources::AUDIENCE_NOT_ALLOWED;

/// Whether `resource`'s status has condition `type_` with `message` already.
fn current_has(resource: &OAuthResource, type_: &str, message: &str) -> bool {
    resource
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .any(|c| c.type_ == type_ && c.message == message)
}

/// The status and Events of `resource` given what was observed.
pub fn plan(
    resource: &OAuthResource,
    observed: &Observed,
    settings: &Settings<'_>,
    now: Timestamp,
) -> Outcome<OAuthResourceStatus> {
    let audience = &resource.spec.audience;
    let enforced: Vec<&str> = observed
        .violations
        .iter()
        .filter(|v| v.enforce)
        .map(|v| v.message.as_str())
        .collect();
    let (accepted, note) = match (&observed.reserved, &observed.holder) {
        (None, _) if !enforced.is_empty() => {
            let msg = format!("{}; this resource is not served", enforced.join("; "));
            (
                Cond::new("Accepted", false, NOT_ALLOWED, msg.clone()),
                Note::warning(NOT_ALLOWED, msg),
            )
        }
        (Some(why), _) => {
            let msg = format!(
                "spec.audience {audience} cannot be claimed: {why}; no token is issued for it on this resource's behalf"
            );
            (
                Cond::new("Accepted", false, "AudienceReserved", msg.clone()),
                Note::warning("AudienceReserved", msg),
            )
        }
        (None, Some(holder)) => {
            let msg = format!(
                "spec.audience {audience} is held by OAuthResource {holder}, an older claim; this resource is not served until that one is deleted"
            );
            (
                Cond::new("Accepted", false, "AudienceConflict", msg.clone()),
                Note::warning("AudienceConflict", msg),
            )
        }
        (None, None) => {
            let msg = format!(
                "This resource holds {audience}: tokens for it are issued only to the clients spec.access grants"
            );
            (
                Cond::new("Accepted", true, "Claimed", msg.clone()),
                Note::normal("Claimed", msg),
            )
        }
    };
    let mut planned = vec![accepted.clone()];
    let mut events = Vec::new();
    let warned: Vec<&str> = observed
        .violations
        .iter()
        .filter(|v| !v.enforce)
        .map(|v| v.message.as_str())
        .collect();
    if !warned.is_empty() {
        let msg = format!(
            "{}; served while the policy is in Warn, not accepted under Enforce",
            warned.join("; ")
        );
        planned.push(Cond::new(
            "PolicyCompliant",
            false,
            "PolicyWarning",
            msg.clone(),
        ));
        if !current_has(resource, "PolicyCompliant", &msg) {
            events.push(Note::warning("PolicyWarning", msg));
        }
    }
    if observed.selectors_off {
        let msg = "spec.access[].namespaceSelector: this installation does not honour grants by namespace selector (--namespace-selectors, the chart's tenancy.namespaceSelectors); such an entry grants nobody".to_string();
        planned.push(Cond::new(
            "GrantsValid",
            false,
            "NamespaceSelectorsOff",
            msg.clone(),
        ));
        if !current_has(resource, "GrantsValid", &msg) {
            events.push(Note::warning("NamespaceSelectorsOff", msg));
        }
    } else if !observed.broken_selectors.is_empty() {
        let which: Vec<String> = observed
            .broken_selectors
            .iter()
            .map(|i| format!("spec.access[{i}].clientSelector"))
            .collect();
        let msg = format!(
            "{} is not a valid label selector; that entry grants nobody",
            which.join(", ")
        );
        planned.push(Cond::new(
            "GrantsValid",
            false,
            "InvalidSelector",
            msg.clone(),
        ));
        events.push(Note::warning("InvalidSelector", msg));
    }
    let current = resource.status.clone().unwrap_or_default();
    let generation = resource.metadata.generation;
    let conditions = outcome::conditions(&current.conditions, generation, now, &planned);
    // Events only with a transition of Accepted, so a recount repeats none.
    let was = current
        .conditions
        .iter()
        .find(|c| c.type_ == "Accepted")
        .map(|c| (c.status.clone(), c.reason.clone()));
    let is = (
        if accepted.ok { "True" } else { "False" }.to_string(),
        accepted.reason.to_string(),
    );
    if was.as_ref() != Some(&is) {
        events.insert(0, note);
    }
    let ok = accepted.ok;
    Outcome {
        status: OAuthResourceStatus {
            observed_generation: generation,
            conditions,
            granted_clients: Some(if ok { observed.granted } else { 0 }),
            verification: ok.then(|| Verification {
                issuer: settings.issuer.to_string(),
                jwks_uri: format!("{}/jwks", settings.issuer.trim_end_matches('/')),
                audience: audience.clone(),
            }),
        },
        events,
        requeue: Requeue::After(RECOUNT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OAuthResourceSpec;

    fn resource() -> OAuthResource {
        let mut r = OAuthResource::new(
            "invoices",
            OAuthResourceSpec {
                audience: "https://invoices.test".into(),
                scopes: vec![],
                roles: vec![],
                max_access_token_lifetime_seconds: None,
                access: vec![],
                users: vec![],
            },
        );
        r.metadata.namespace = Some("billing".into());
        r.metadata.generation = Some(1);
        r
    }

    fn observed() -> Observed {
        Observed {
            holder: None,
            reserved: None,
            granted: 3,
            broken_selectors: vec![],
            violations: vec![],
            selectors_off: false,
        }
    }

    const SETTINGS: Settings<'static> = Settings {
        issuer: "https://issuer.test/",
    };

    fn accepted(o: &Outcome<OAuthResourceStatus>) -> (String, String, String) {
        let c = o
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Accepted")
            .expect("Accepted");
        (c.status.clone(), c.reason.clone(), c.message.clone())
    }

    #[test]
    fn the_holder_is_accepted_with_its_count_and_what_apis_check() {
        let o = plan(&resource(), &observed(), &SETTINGS, Timestamp::UNIX_EPOCH);
        assert_eq!(accepted(&o).0, "True");
        assert_eq!(o.status.granted_clients, Some(3));
        let v = o.status.verification.expect("verification");
        assert_eq!(v.jwks_uri, "https://issuer.test/jwks");
        assert_eq!(v.audience, "https://invoices.test");
        assert_eq!(o.events.len(), 1);
        assert!(!o.events[0].warning);
    }

    #[test]
    fn a_younger_claim_names_the_holder_and_is_not_served() {
        let o = plan(
            &resource(),
            &Observed {
                holder: Some("other/api".into()),
                ..observed()
            },
            &SETTINGS,
            Timestamp::UNIX_EPOCH,
        );
        let (status, reason, message) = accepted(&o);
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "AudienceConflict")
        );
        assert!(message.contains("other/api"));
        assert_eq!(o.status.granted_clients, Some(0));
        assert!(o.status.verification.is_none());
        assert!(o.events[0].warning);
    }

    #[test]
    fn reserved_wins_over_everything_and_events_come_once() {
        let o = plan(
            &resource(),
            &Observed {
                reserved: Some("it is a client id"),
                ..observed()
            },
            &SETTINGS,
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(accepted(&o).1, "AudienceReserved");
        let mut again = resource();
        again.status = Some(o.status.clone());
        let o2 = plan(
            &again,
            &Observed {
                reserved: Some("it is a client id"),
                ..observed()
            },
            &SETTINGS,
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(o2.status, o.status);
        assert!(o2.events.is_empty());
    }

    #[test]
    fn namespace_selectors_where_they_are_off_are_said() {
        let o = plan(
            &resource(),
            &Observed {
                selectors_off: true,
                ..observed()
            },
            &SETTINGS,
            Timestamp::UNIX_EPOCH,
        );
        let c = o
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "GrantsValid")
            .expect("GrantsValid");
        assert_eq!(c.reason, "NamespaceSelectorsOff");
        assert!(o.events.iter().any(|n| n.reason == "NamespaceSelectorsOff"));
    }

    #[test]
    fn a_broken_selector_is_named() {
        let o = plan(
            &resource(),
            &Observed {
                broken_selectors: vec![1],
                ..observed()
            },
            &SETTINGS,
            Timestamp::UNIX_EPOCH,
        );
        let c = o
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "GrantsValid")
            .expect("GrantsValid");
        assert!(c.message.contains("spec.access[1].clientSelector"));
    }
}
