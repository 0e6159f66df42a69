//! What a client gets for each audience it asks for, as its status tells its team: the
//! same rules the token server decides with ([`crate::tenancy::audience_view`]), over the
//! controller's copy of the claims. Observed in memory; turned into status here, purely.

use std::collections::HashSet;

use crate::api::{AudienceState, AudienceStatus, OAuthClient, OAuthClientVerifier};
use crate::controller::Context;
use crate::controller::outcome::{Cond, Note};
use crate::tenancy::{self, Asker, Mode, Settings, normalize};

/// Each requested audience and how it stands, with the installation's mode.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct View {
    pub mode: Mode,
    pub states: Vec<(String, tenancy::AudienceState)>,
}

/// Reads the view of `client` (whose id in force is `client_id`) from the claims table.
pub fn observe(client: &OAuthClient, client_id: &str, ctx: &Context) -> View {
    let audiences: Vec<String> = client
        .spec
        .audiences
        .iter()
        .map(ToString::to_string)
        .collect();
    if audiences.is_empty() {
        return View::default();
    }
    let scopes: Vec<String> = client.spec.scopes.iter().map(ToString::to_string).collect();
    let keys: Vec<String> = audiences.iter().map(|a| normalize(a)).collect();
    let empty = Default::default();
    let namespace = client.metadata.namespace.as_deref().unwrap_or_default();
    let namespace_labels = ctx.namespace_labels(namespace);
    let asker = Asker {
        client_id,
        namespace,
        labels: client.metadata.labels.as_ref().unwrap_or(&empty),
        namespace_labels: namespace_labels.as_ref(),
        audiences: &audiences,
        audience_keys: &keys,
        scopes: &scopes,
        roles: &client.spec.roles,
        lifetime: client.spec.access_token_lifetime_seconds,
    };
    let reserved_list: Vec<String> = ctx
        .config
        .reserved_audiences
        .iter()
        .map(|a| normalize(a))
        .collect();
    let reserved = |key: &str| reserved_list.iter().any(|r| r == key) || ctx.is_client_id(key);
    // The default audience is among the reserved ones; the view reports it so.
    let default_audience = ctx
        .config
        .reserved_audiences
        .get(1)
        .map_or("", String::as_str);
    let default_key = normalize(default_audience);
    let settings = Settings {
        mode: ctx.config.audience_ownership,
        default_audience,
        default_key: &default_key,
        default_role: &ctx.config.default_role,
        reserved: &reserved,
    };
    let table = ctx.claims.read();
    View {
        mode: ctx.config.audience_ownership,
        states: tenancy::audience_view(&asker, &table, &settings),
    }
}

/// The audiences (normalised) whose claimants' counts a reconcile of `client` may move:
/// those it asks for and those its verifier says it asked for, when the two differ or its
/// labels changed; none when nothing the grants look at changed.
pub fn changed(client: &OAuthClient, verifier: Option<&OAuthClientVerifier>) -> HashSet<String> {
    let now: Vec<&str> = client.spec.audiences.iter().map(|a| a.as_str()).collect();
    let labels = client.metadata.labels.clone().unwrap_or_default();
    let before: Vec<&str> = match verifier {
        Some(v)
            if v.spec
                .audiences
                .iter()
                .map(String::as_str)
                .eq(now.iter().copied())
                && v.spec.labels == labels =>
        {
            return HashSet::new();
        }
        Some(v) => v.spec.audiences.iter().map(String::as_str).collect(),
        None => Vec::new(),
    };
    now.into_iter().chain(before).map(normalize).collect()
}

/// The status entries, and the `AudiencesGranted` condition (with its Event) when the
/// client asks for any audience.
pub fn report(view: &View) -> (Vec<AudienceStatus>, Option<(Cond, Note)>) {
    let statuses: Vec<AudienceStatus> = view
        .states
        .iter()
        .map(|(audience, s)| {
            let (state, scopes, roles) = match s {
                tenancy::AudienceState::Granted(g) => {
                    (AudienceState::Granted, g.scopes.clone(), g.roles.clone())
                }
                tenancy::AudienceState::NotGranted => (AudienceState::NotGranted, vec![], vec![]),
                tenancy::AudienceState::Unclaimed => (AudienceState::Unclaimed, vec![], vec![]),
                tenancy::AudienceState::Contested => (AudienceState::Contested, vec![], vec![]),
                tenancy::AudienceState::Reserved => (AudienceState::Reserved, vec![], vec![]),
            };
            AudienceStatus {
                audience: audience.clone(),
                state,
                scopes,
                roles,
            }
        })
        .collect();
    if statuses.is_empty() {
        return (statuses, None);
    }
    let with = |state: AudienceState| -> Vec<&str> {
        statuses
            .iter()
            .filter(|s| s.state == state)
            .map(|s| s.audience.as_str())
            .collect()
    };
    let refused: Vec<&str> = with(AudienceState::NotGranted)
        .into_iter()
        .chain(with(AudienceState::Contested))
        .collect();
    let unclaimed = with(AudienceState::Unclaimed);
    let cond = if !refused.is_empty() {
        let msg = format!(
            "spec.audiences: {} is held by an OAuthResource that does not grant this client; tokens for it are refused (invalid_target). Ask the API's team to grant it (status.audiences says which)",
            refused.join(", ")
        );
        (
            Cond::new("AudiencesGranted", false, "NotGranted", msg.clone()),
            Note::warning("AudienceNotGranted", msg),
        )
    } else if !unclaimed.is_empty() && view.mode != Mode::Off {
        let msg = match view.mode {
            Mode::Enforce => format!(
                "spec.audiences: no OAuthResource claims {}; tokens for it are refused (audience ownership Enforce)",
                unclaimed.join(", ")
            ),
            _ => format!(
                "spec.audiences: no OAuthResource claims {}; tokens for it are issued while audience ownership is Warn, and refused under Enforce",
                unclaimed.join(", ")
            ),
        };
        (
            Cond::new("AudiencesGranted", false, "UnclaimedAudience", msg.clone()),
            Note::warning("UnclaimedAudience", msg),
        )
    } else {
        let msg = "Every audience of spec.audiences is granted (status.audiences lists the scopes and roles)".to_string();
        (
            Cond::new("AudiencesGranted", true, "Granted", msg.clone()),
            Note::normal("AudiencesGranted", msg),
        )
    };
    (statuses, Some(cond))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::Granted;

    fn view(mode: Mode, states: Vec<tenancy::AudienceState>) -> View {
        View {
            mode,
            states: states
                .into_iter()
                .enumerate()
                .map(|(i, s)| (format!("https://api{i}.test"), s))
                .collect(),
        }
    }

    #[test]
    fn granted_audiences_list_what_they_get() {
        let (statuses, cond) = report(&view(
            Mode::Warn,
            vec![
                tenancy::AudienceState::Granted(Granted {
                    scopes: vec!["read".into()],
                    roles: vec!["admin".into()],
                }),
                tenancy::AudienceState::Reserved,
            ],
        ));
        assert_eq!(statuses[0].state, AudienceState::Granted);
        assert_eq!(statuses[0].scopes, ["read"]);
        assert_eq!(statuses[0].roles, ["admin"]);
        let (c, _) = cond.expect("condition");
        assert!(c.ok);
    }

    #[test]
    fn refusals_outrank_unclaimed_and_name_the_audience() {
        let (_, cond) = report(&view(
            Mode::Warn,
            vec![
                tenancy::AudienceState::Unclaimed,
                tenancy::AudienceState::Contested,
            ],
        ));
        let (c, n) = cond.expect("condition");
        assert_eq!((c.ok, c.reason), (false, "NotGranted"));
        assert!(c.message.contains("https://api1.test") && n.warning);
    }

    #[test]
    fn unclaimed_is_reported_by_mode() {
        let unclaimed = || vec![tenancy::AudienceState::Unclaimed];
        let (_, warn) = report(&view(Mode::Warn, unclaimed()));
        assert_eq!(warn.expect("cond").0.reason, "UnclaimedAudience");
        let (_, enforce) = report(&view(Mode::Enforce, unclaimed()));
        assert!(enforce.expect("cond").0.message.contains("refused"));
        let (_, off) = report(&view(Mode::Off, unclaimed()));
        assert!(off.expect("cond").0.ok);
        assert_eq!(report(&View::default()), (vec![], None));
    }
}
