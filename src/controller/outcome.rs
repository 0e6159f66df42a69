//! The one shape both reconcilers' plans end in: conditions, Events and when to look
//! again. Pure data, built by the `plan` functions and carried out by their `act`.
//!
//! Invariants: a condition keeps its `lastTransitionTime` while its status stays the same
//! (so a resync over an unchanged object plans the very status it read, and writes
//! nothing); Events are published only together with a status change, so a periodic
//! resync does not repeat them. Notes and messages never carry a secret value.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

/// One condition a plan arrived at, before it is dated against the conditions it replaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    pub type_: &'static str,
    pub ok: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Cond {
    pub fn new(type_: &'static str, ok: bool, reason: &'static str, message: String) -> Self {
        Cond {
            type_,
            ok,
            reason,
            message,
        }
    }
}

/// One Event a plan wants published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Note {
    pub fn normal(reason: &'static str, message: String) -> Self {
        Note {
            warning: false,
            reason,
            message,
        }
    }

    pub fn warning(reason: &'static str, message: String) -> Self {
        Note {
            warning: true,
            reason,
            message,
        }
    }

    pub fn event_type(&self) -> EventType {
        if self.warning {
            EventType::Warning
        } else {
            EventType::Normal
        }
    }
}

/// When to reconcile again, comparable in tests (kube's `Action` is opaque).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// Only when the object or something it owns changes.
    OnChange,
    /// After this long at the latest.
    After(Duration),
}

impl From<Requeue> for Action {
    fn from(r: Requeue) -> Action {
        match r {
            Requeue::OnChange => Action::await_change(),
            Requeue::After(d) => Action::requeue(d),
        }
    }
}

/// What a plan decided about the object's status, Events and requeue, for both kinds.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome<S> {
    pub status: S,
    pub events: Vec<Note>,
    pub requeue: Requeue,
}

/// The conditions to write: each dated `now` when its status changes, else keeping the
/// `lastTransitionTime` it has in `existing`.
pub fn conditions(
    existing: &[Condition],
    generation: Option<i64>,
    now: Timestamp,
    planned: &[Cond],
) -> Vec<Condition> {
    planned
        .iter()
        .map(|c| {
            let status = if c.ok { "True" } else { "False" }.to_string();
            let since = existing
                .iter()
                .find(|e| e.type_ == c.type_ && e.status == status)
                .map(|e| e.last_transition_time.clone())
                .unwrap_or(Time(now));
            Condition {
                type_: c.type_.to_string(),
                status,
                reason: c.reason.to_string(),
                message: c.message.clone(),
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

/// Whether `type_` is `True` among `conditions`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// Whole seconds since `now` until `t`, plus one so the look happens just after `t`.
pub fn until(now: Timestamp, t: Timestamp) -> Duration {
    Duration::from_secs(u64::try_from(t.as_second() - now.as_second()).unwrap_or(0) + 1)
}

/// The reconcile's clock, in whole seconds: Kubernetes times have no more, and a finer
/// `now` would make every reconcile see a changed verifier or condition.
pub fn now() -> Option<Timestamp> {
    Timestamp::from_second(Timestamp::now().as_second()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_status_holds() {
        let then: Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
        let now: Timestamp = "2026-02-01T00:00:00Z".parse().expect("ts");
        let first = conditions(
            &[],
            Some(1),
            then,
            &[Cond::new("Ready", true, "A", "a".into())],
        );
        let same = conditions(
            &first,
            Some(2),
            now,
            &[Cond::new("Ready", true, "B", "b".into())],
        );
        assert_eq!(same[0].last_transition_time, Time(then));
        let flipped = conditions(
            &first,
            Some(2),
            now,
            &[Cond::new("Ready", false, "C", "c".into())],
        );
        assert_eq!(flipped[0].last_transition_time, Time(now));
    }
}
