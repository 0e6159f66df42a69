//! The decision: for one client and one token request, which audience, scopes, roles and
//! lifetime the token gets, or why none. Pure: the token server calls it with what the
//! index holds, for every grant (client credentials, the authorization code at
//! `/authorize` and again at `/token`, a refresh) and at introspection.
//!
//! The rules, in order:
//! 1. The targets: the request's `resource` (RFC 8707; `audience` is the older alias), each
//!    one the client lists in `spec.audiences` (the default audience when it lists none);
//!    without one, every audience the client lists and may have.
//! 2. A claimed audience is served only to the clients its holder grants. An unclaimed one
//!    is served as the client lists it under `Off` and `Warn` (reported in `Warn`), and
//!    refused under `Enforce`. The operator's default audience is nobody's.
//! 3. One claimed resource per token (RFC 8707 section 2, as Duende's resource isolation):
//!    scope names belong to their API, so two APIs' `read` never mix. A client that may
//!    have several and names none is told to name one.
//! 4. Unknown, unclaimed (under `Enforce`) and not-granted targets are all the same
//!    [`Refusal::InvalidTarget`], so no team can list another's APIs through the refusals.
//! 5. Scopes: what the client lists and the resource grants (and, for a signed-in user,
//!    the OpenID Connect scopes); anything else asked is [`Refusal::InvalidScope`].
//! 6. Roles: the default role, then what the client lists and the resource grants (for a
//!    signed-in user: the roles the resource maps their groups to).
//! 7. Lifetime: the smallest of the client's and the resource's.

use std::collections::BTreeMap;

use super::Mode;
use super::resources::{Granted, ResourceEntry, Resources, normalize};

/// The client asking, as its spec says (its lists are requests, not entitlements).
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    pub client_id: &'a str,
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// The labels of the client's namespace, where namespace selectors are honoured.
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
    pub audiences: &'a [String],
    /// [`normalize`]d, one per audience, in the same order: computed once per client (the
    /// index keeps them), not per request.
    pub audience_keys: &'a [String],
    pub scopes: &'a [String],
    /// The default role first, then the client's own.
    pub roles: &'a [String],
    pub lifetime: u32,
}

/// The installation's settings the decision depends on.
#[derive(Clone, Copy)]
pub struct Settings<'a> {
    pub mode: Mode,
    pub default_audience: &'a str,
    /// [`normalize`]d.
    pub default_key: &'a str,
    pub default_role: &'a str,
    /// Whether a normalised audience may not be claimed (the issuer, the default
    /// audience, a client id): such a claim is ignored.
    pub reserved: &'a dyn Fn(&str) -> bool,
}

/// Who the token is for.
#[derive(Debug, Clone, Copy)]
pub enum Flow<'a> {
    /// The client itself (client credentials).
    Client,
    /// A signed-in user: the groups the client may see, and the scopes about the user
    /// that every such client may ask for.
    User {
        groups: &'a [String],
        identity_scopes: &'a [&'a str],
    },
}

/// What the request asks.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `resource` (or `audience`); `None` when the request names none.
    pub targets: Option<&'a [String]>,
    /// `scope`; `None` when omitted.
    pub scope: Option<&'a [String]>,
    pub flow: Flow<'a>,
}

/// What the token gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub audiences: Vec<String>,
    pub scope: Vec<String>,
    pub roles: Vec<String>,
    pub lifetime: u32,
    /// The claimed resource the token is for (its normalised audience), if any.
    pub resource: Option<String>,
    /// Audiences served without a claim (under `Off` or `Warn`): reported.
    pub unclaimed: Vec<String>,
}

/// Why no token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// RFC 8707 section 2: the target is unknown, not granted, or several where one is needed.
    #[error("invalid_target")]
    InvalidTarget,
    /// RFC 6749 section 5.2: a scope outside what is granted.
    #[error("invalid_scope")]
    InvalidScope,
}

/// How one audience stands for one client.
enum Target<'r> {
    /// The operator's default audience, nobody's.
    Default(String),
    /// Claimed by a resource that grants the client this.
    Granted(&'r ResourceEntry, Granted),
    /// Claimed, and the holder does not grant the client.
    NotGranted,
    /// Claimed by nobody: served as written under `Off` and `Warn`.
    Unclaimed(String),
}

impl Target<'_> {
    fn served(&self, mode: Mode) -> bool {
        match self {
            Target::Default(_) | Target::Granted(..) => true,
            Target::NotGranted => false,
            Target::Unclaimed(_) => mode != Mode::Enforce,
        }
    }
}

fn classify<'r>(
    audience: &str,
    key: &str,
    asker: &Asker<'_>,
    resources: &'r Resources,
    settings: &Settings<'_>,
) -> Target<'r> {
    if audience == settings.default_audience || key == settings.default_key {
        return Target::Default(settings.default_audience.to_string());
    }
    match resources.holder_of_key(key) {
        // A claim of a reserved audience is no claim.
        Some(_) if (settings.reserved)(key) => Target::Unclaimed(audience.to_string()),
        Some(holder) => match holder.grant(
            asker.client_id,
            asker.namespace,
            asker.labels,
            asker.namespace_labels,
        ) {
            Some(g) => Target::Granted(holder, g),
            None => Target::NotGranted,
        },
        None => Target::Unclaimed(audience.to_string()),
    }
}

/// The token `asker` gets for `request`, or why none (see the module doc).
pub fn decide(
    asker: &Asker<'_>,
    resources: &Resources,
    settings: &Settings<'_>,
    request: &Request<'_>,
) -> Result<Decision, Refusal> {
    // Each audience the client asks for, with its key.
    let listed: Vec<(&str, &str)> = if asker.audiences.is_empty() {
        vec![(settings.default_audience, settings.default_key)]
    } else {
        asker
            .audiences
            .iter()
            .map(String::as_str)
            .zip(asker.audience_keys.iter().map(String::as_str))
            .collect()
    };
    let targets: Vec<Target<'_>> = match request.targets {
        Some(named) => {
            let mut targets = Vec::with_capacity(named.len());
            for t in named {
                let key = match listed.iter().find(|(a, _)| a == t) {
                    Some((_, k)) => (*k).to_string(),
                    None => normalize(t),
                };
                if !listed.iter().any(|(_, k)| *k == key) {
                    return Err(Refusal::InvalidTarget);
                }
                let target = classify(t, &key, asker, resources, settings);
                if !target.served(settings.mode) {
                    return Err(Refusal::InvalidTarget);
                }
                targets.push(target);
            }
            targets
        }
        None => listed
            .iter()
            .map(|(a, k)| classify(a, k, asker, resources, settings))
            .filter(|t| t.served(settings.mode))
            .collect(),
    };
    let claimed = targets
        .iter()
        .filter(|t| matches!(t, Target::Granted(..)))
        .count();
    if targets.is_empty() || (claimed > 0 && targets.len() > 1) {
        return Err(Refusal::InvalidTarget);
    }
    match targets.as_slice() {
        [Target::Granted(holder, granted)] => {
            for_resource(asker, holder, granted, settings, request)
        }
        _ => unowned(asker, &targets, settings, request),
    }
}

/// A token for the claimed resource `holder`, which grants the client `granted`.
fn for_resource(
    asker: &Asker<'_>,
    holder: &ResourceEntry,
    granted: &Granted,
    settings: &Settings<'_>,
    request: &Request<'_>,
) -> Result<Decision, Refusal> {
    let api_scopes: Vec<String> = asker
        .scopes
        .iter()
        .filter(|s| granted.scopes.contains(s))
        .cloned()
        .collect();
    let scope = scopes(&api_scopes, request)?;
    let mut roles = vec![settings.default_role.to_string()];
    let extra: Vec<String> = match request.flow {
        Flow::Client => asker
            .roles
            .iter()
            .filter(|r| granted.roles.contains(r))
            .cloned()
            .collect(),
        Flow::User { groups, .. } => holder.user_roles(groups),
    };
    for r in extra {
        if !roles.contains(&r) {
            roles.push(r);
        }
    }
    Ok(Decision {
        audiences: vec![holder.audience.clone()],
        scope,
        roles,
        lifetime: holder
            .max_lifetime
            .map_or(asker.lifetime, |m| m.min(asker.lifetime)),
        resource: Some(holder.key.clone()),
        unclaimed: Vec::new(),
    })
}

/// A token for audiences nobody claims (and the default audience): what the client
/// lists, as before resources existed; under `Enforce` (where only the default audience
/// gets here) no API's scopes and no role but the default one.
fn unowned(
    asker: &Asker<'_>,
    targets: &[Target<'_>],
    settings: &Settings<'_>,
    request: &Request<'_>,
) -> Result<Decision, Refusal> {
    let mut audiences = Vec::new();
    let mut unclaimed = Vec::new();
    for t in targets {
        match t {
            Target::Default(a) => audiences.push(a.clone()),
            Target::Unclaimed(a) => {
                audiences.push(a.clone());
                unclaimed.push(a.clone());
            }
            Target::Granted(..) | Target::NotGranted => return Err(Refusal::InvalidTarget),
        }
    }
    let enforce = settings.mode == Mode::Enforce;
    let api_scopes: &[String] = if enforce { &[] } else { asker.scopes };
    let scope = scopes(api_scopes, request)?;
    let roles = match request.flow {
        Flow::Client if enforce => vec![settings.default_role.to_string()],
        Flow::Client => asker.roles.to_vec(),
        Flow::User { groups, .. } => {
            let mut roles = vec![settings.default_role.to_string()];
            for g in groups {
                if !roles.contains(g) {
                    roles.push(g.clone());
                }
            }
            roles
        }
    };
    Ok(Decision {
        audiences,
        scope,
        roles,
        lifetime: asker.lifetime,
        resource: None,
        unclaimed,
    })
}

/// The scope of the token: what was asked, if all of it is allowed, else every allowed
/// API scope when nothing was asked.
fn scopes(api_scopes: &[String], request: &Request<'_>) -> Result<Vec<String>, Refusal> {
    let identity: &[&str] = match request.flow {
        Flow::Client => &[],
        Flow::User {
            identity_scopes, ..
        } => identity_scopes,
    };
    match request.scope {
        None => Ok(api_scopes.to_vec()),
        Some(asked) => {
            let allowed = |s: &String| api_scopes.contains(s) || identity.contains(&s.as_str());
            if asked.iter().all(allowed) {
                Ok(asked.to_vec())
            } else {
                Err(Refusal::InvalidScope)
            }
        }
    }
}

/// How one audience a client asks for stands, for its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudienceState {
    /// The holder grants these.
    Granted(Granted),
    /// Claimed, and the holder does not grant the client.
    NotGranted,
    /// Claimed by nobody.
    Unclaimed,
    /// The holder does not grant the client, but a resource that lost the claim would:
    /// the grant the client's team relies on is in the wrong resource.
    Contested,
    /// The operator's default audience: nobody's (under `Enforce` its tokens carry no
    /// API scope).
    Reserved,
}

/// Every audience `asker` lists, and how it stands (see [`AudienceState`]).
pub fn audience_view(
    asker: &Asker<'_>,
    resources: &Resources,
    settings: &Settings<'_>,
) -> Vec<(String, AudienceState)> {
    asker
        .audiences
        .iter()
        .zip(asker.audience_keys)
        .map(|(a, key)| {
            // Classified as the token server classifies it.
            let state = match classify(a, key, asker, resources, settings) {
                Target::Default(_) => AudienceState::Reserved,
                Target::Unclaimed(_) => AudienceState::Unclaimed,
                Target::Granted(_, g) => AudienceState::Granted(g),
                Target::NotGranted => {
                    let younger = resources.claimants_of_key(key).iter().skip(1);
                    let granted_elsewhere = younger.into_iter().any(|r| {
                        r.grant(
                            asker.client_id,
                            asker.namespace,
                            asker.labels,
                            asker.namespace_labels,
                        )
                        .is_some()
                    });
                    if granted_elsewhere {
                        AudienceState::Contested
                    } else {
                        AudienceState::NotGranted
                    }
                }
            };
            (a.clone(), state)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::resources::tests::{grant, resource};

    const DEFAULT: &str = "https://default.test";
    const API: &str = "https://payments.test";
    const OTHER: &str = "https://other.test";
    const LEGACY: &str = "https://legacy.test";

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    struct Case {
        name: &'static str,
        namespace: &'static str,
        audiences: &'static [&'static str],
        scopes: &'static [&'static str],
        roles: &'static [&'static str],
        mode: Mode,
        targets: Option<&'static [&'static str]>,
        scope: Option<&'static [&'static str]>,
        user: Option<&'static [&'static str]>,
        want: Result<Want, Refusal>,
    }

    type List = &'static [&'static str];
    /// Audiences, scope, roles, lifetime.
    type Want = (List, List, List, u32);

    const BASE: Case = Case {
        name: "",
        namespace: "shop",
        audiences: &[API],
        scopes: &["read", "write"],
        roles: &["admin"],
        mode: Mode::Warn,
        targets: None,
        scope: None,
        user: None,
        want: Err(Refusal::InvalidTarget),
    };

    /// `payments` (namespace `billing`, created first, max lifetime 300) grants `shop`
    /// read and `billing` read, write and admin; `squatter` (namespace `evil`, later)
    /// claims the same audience and grants `evil` everything. `other` is claimed by
    /// `billing` and grants `shop` write.
    fn table() -> Resources {
        let mut payments = resource(
            "billing",
            "payments",
            10,
            API,
            vec![
                grant(Some("shop"), &["read"], &[]),
                grant(None, &["read", "write"], &["admin"]),
            ],
        );
        payments.max_lifetime = Some(300);
        Resources::build([
            payments,
            resource(
                "evil",
                "squatter",
                20,
                API,
                vec![grant(None, &["read", "write"], &["admin"])],
            ),
            resource(
                "billing",
                "other",
                10,
                OTHER,
                vec![grant(Some("shop"), &["write"], &[])],
            ),
        ])
    }

    fn run(c: &Case) -> Result<Decision, Refusal> {
        let table = table();
        let audiences = strings(c.audiences);
        let scopes = strings(c.scopes);
        let mut roles = strings(&["default"]);
        roles.extend(strings(c.roles));
        let labels = BTreeMap::new();
        let keys: Vec<String> = audiences.iter().map(|a| normalize(a)).collect();
        let asker = Asker {
            client_id: "client",
            namespace: c.namespace,
            labels: &labels,
            namespace_labels: None,
            audiences: &audiences,
            audience_keys: &keys,
            scopes: &scopes,
            roles: &roles,
            lifetime: 600,
        };
        let reserved = |k: &str| k == "https://issuer.test";
        let settings = Settings {
            mode: c.mode,
            default_audience: DEFAULT,
            default_key: DEFAULT,
            default_role: "default",
            reserved: &reserved,
        };
        let targets = c.targets.map(strings);
        let scope = c.scope.map(strings);
        let groups = c.user.map(strings);
        let flow = match &groups {
            Some(groups) => Flow::User {
                groups,
                identity_scopes: &["openid", "profile"],
            },
            None => Flow::Client,
        };
        decide(
            &asker,
            &table,
            &settings,
            &Request {
                targets: targets.as_deref(),
                scope: scope.as_deref(),
                flow,
            },
        )
    }

    #[test]
    fn decisions() {
        let ok = |aud, scope, roles, life| Ok((aud, scope, roles, life));
        let cases = [
            Case {
                name: "a granted caller gets exactly the granted scopes, and no role it was not granted",
                want: ok(&[API][..], &["read"][..], &["default"][..], 300),
                ..BASE
            },
            Case {
                name: "the owner's own namespace gets what it granted itself",
                namespace: "billing",
                want: ok(&[API], &["read", "write"], &["default", "admin"], 300),
                ..BASE
            },
            Case {
                name: "a scope outside the grant is invalid_scope",
                scope: Some(&["write"]),
                want: Err(Refusal::InvalidScope),
                ..BASE
            },
            Case {
                name: "an outsider is refused the audience, in every mode",
                namespace: "outside",
                mode: Mode::Off,
                want: Err(Refusal::InvalidTarget),
                ..BASE
            },
            Case {
                name: "the younger claimant's grant counts for nothing",
                namespace: "evil",
                targets: Some(&[API]),
                want: Err(Refusal::InvalidTarget),
                ..BASE
            },
            Case {
                name: "a target the client does not list is invalid_target",
                targets: Some(&[OTHER]),
                want: Err(Refusal::InvalidTarget),
                ..BASE
            },
            Case {
                name: "targets compare after normalisation; the token carries the holder's audience",
                targets: Some(&["https://PAYMENTS.test/"]),
                want: ok(&[API], &["read"], &["default"], 300),
                ..BASE
            },
            Case {
                name: "two granted resources without a target: name one",
                audiences: &[API, OTHER],
                want: Err(Refusal::InvalidTarget),
                ..BASE
            },
            Case {
                name: "two granted resources, one named",
                audiences: &[API, OTHER],
                targets: Some(&[OTHER]),
                want: ok(&[OTHER], &["write"], &["default"], 600),
                ..BASE
            },
            Case {
                name: "one resource per token",
                audiences: &[API, OTHER],
                targets: Some(&[API, OTHER]),
                want: Err(Refusal::InvalidTarget),
                ..BASE
            },
            Case {
                name: "not-granted audiences drop out when no target is named",
                namespace: "outside",
                audiences: &[API, LEGACY],
                want: ok(&[LEGACY], &["read", "write"], &["default", "admin"], 600),
                ..BASE
            },
            Case {
                name: "unclaimed audiences are served as listed under Warn",
                audiences: &[LEGACY, "https://legacy2.test"],
                want: ok(
                    &[LEGACY, "https://legacy2.test"],
                    &["read", "write"],
                    &["default", "admin"],
                    600,
                ),
                ..BASE
            },
            Case {
                name: "and refused under Enforce",
                audiences: &[LEGACY],
                mode: Mode::Enforce,
                want: Err(Refusal::InvalidTarget),
                ..BASE
            },
            Case {
                name: "a claimed audience with unclaimed ones: name one",
                audiences: &[API, LEGACY],
                want: Err(Refusal::InvalidTarget),
                ..BASE
            },
            Case {
                name: "a reserved audience is never claimed (served as unclaimed)",
                audiences: &["https://issuer.test"],
                want: ok(
                    &["https://issuer.test"],
                    &["read", "write"],
                    &["default", "admin"],
                    600,
                ),
                ..BASE
            },
            Case {
                name: "no audience listed: the default audience, as before",
                audiences: &[],
                want: ok(&[DEFAULT], &["read", "write"], &["default", "admin"], 600),
                ..BASE
            },
            Case {
                name: "the default audience under Enforce carries no API scope or role",
                audiences: &[],
                mode: Mode::Enforce,
                want: ok(&[DEFAULT], &[], &["default"], 600),
                ..BASE
            },
            Case {
                name: "a user gets the roles the resource maps their groups to, and the identity scopes",
                user: Some(&["finance"]),
                scope: Some(&["openid", "read"]),
                want: ok(&[API], &["openid", "read"], &["default", "admin"], 300),
                ..BASE
            },
            Case {
                name: "a user in no mapped group gets the default role",
                user: Some(&["sales"]),
                want: ok(&[API], &["read"], &["default"], 300),
                ..BASE
            },
            Case {
                name: "identity scopes are for users only",
                scope: Some(&["openid"]),
                want: Err(Refusal::InvalidScope),
                ..BASE
            },
        ];
        for c in &cases {
            let got = run(c).map(|d| (d.audiences, d.scope, d.roles, d.lifetime));
            let want = c
                .want
                .map(|(a, s, r, l)| (strings(a), strings(s), strings(r), l));
            assert_eq!(got, want, "{}", c.name);
        }
    }

    #[test]
    fn unclaimed_audiences_are_reported() {
        let d = run(&Case {
            audiences: &[LEGACY],
            want: Err(Refusal::InvalidTarget),
            ..BASE
        })
        .expect("served");
        assert_eq!(d.unclaimed, [LEGACY]);
        assert_eq!(d.resource, None);
        let d = run(&BASE).expect("served");
        assert!(d.unclaimed.is_empty());
        assert_eq!(d.resource.as_deref(), Some(API));
    }

    #[test]
    fn the_client_view_says_why() {
        let table = table();
        let audiences = strings(&[API, OTHER, LEGACY, DEFAULT]);
        let labels = BTreeMap::new();
        let view = |ns: &str| {
            let keys: Vec<String> = audiences.iter().map(|a| normalize(a)).collect();
            let asker = Asker {
                client_id: "c",
                namespace: ns,
                labels: &labels,
                namespace_labels: None,
                audiences: &audiences,
                audience_keys: &keys,
                scopes: &[],
                roles: &[],
                lifetime: 60,
            };
            let reserved = |_: &str| false;
            let settings = Settings {
                mode: Mode::Warn,
                default_audience: DEFAULT,
                default_key: DEFAULT,
                default_role: "default",
                reserved: &reserved,
            };
            audience_view(&asker, &table, &settings)
                .into_iter()
                .map(|(_, s)| s)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            view("shop"),
            [
                AudienceState::Granted(Granted {
                    scopes: strings(&["read"]),
                    roles: vec![]
                }),
                AudienceState::Granted(Granted {
                    scopes: strings(&["write"]),
                    roles: vec![]
                }),
                AudienceState::Unclaimed,
                AudienceState::Reserved,
            ]
        );
        assert_eq!(view("evil")[0], AudienceState::Contested);
        assert_eq!(view("outside")[0], AudienceState::NotGranted);
    }
}
