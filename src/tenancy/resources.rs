//! The table of claims and grants: every `OAuthResource` as the decision reads it, by
//! normalised audience, oldest claim first. Pure state, fed by the token server's watch
//! (through the index) and built from the controller's store, tested without a cluster.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kube::core::{Selector, SelectorExt};

use crate::api::{AccessGrant, OAuthResource};

/// The form in which two audiences are compared: a URL with its scheme and host in lower
/// case, without its default port and without a trailing slash; anything else (a URN) as
/// written but for its scheme. Two claims of `https://API.example/` and
/// `https://api.example:443` are one claim.
pub fn normalize(audience: &str) -> String {
    match url::Url::parse(audience) {
        Ok(u) => {
            let text = u.as_str();
            text.strip_suffix('/').unwrap_or(text).to_string()
        }
        Err(_) => audience.to_string(),
    }
}

/// What a resource grants one client: the union of the entries that match it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Granted {
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
}

/// Which clients one `access` entry names.
#[derive(Debug, Clone)]
enum Who {
    /// The clients of a namespace, all or those whose labels match.
    Namespace {
        namespace: String,
        selector: Option<Selector>,
    },
    /// The clients of every namespace whose labels match, all or those whose labels match.
    Namespaces {
        selector: Selector,
        clients: Option<Selector>,
    },
    ClientIds(Vec<String>),
    /// An entry whose selector does not parse: it grants nobody (the controller says why).
    Nobody,
}

#[derive(Debug, Clone)]
struct Access {
    who: Who,
    scopes: Vec<String>,
    roles: Vec<String>,
}

/// What the decision knows of one `OAuthResource`.
#[derive(Debug, Clone)]
pub struct ResourceEntry {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// Creation time, Unix seconds: the older claim holds the audience.
    pub created: i64,
    /// As the resource writes it: the `aud` of its tokens.
    pub audience: String,
    /// [`normalize`]d.
    pub key: String,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub max_lifetime: Option<u32>,
    access: Vec<Access>,
    /// Group -> roles, for signed-in users.
    users: Vec<(Vec<String>, Vec<String>)>,
}

/// The reason the controller writes (`Accepted=False`) on a resource whose audience is
/// outside an enforced `OAuthClientPolicy` bound: such a claim is no claim.
pub const AUDIENCE_NOT_ALLOWED: &str = "AudienceNotAllowed";

impl ResourceEntry {
    /// The entry of `r`; `None` for one the controller found outside the platform's
    /// bounds (its status says `AudienceNotAllowed`: only the controller writes status).
    pub fn from_resource(r: &OAuthResource) -> Option<Self> {
        let not_allowed = r.status.iter().flat_map(|s| &s.conditions).any(|c| {
            c.type_ == "Accepted" && c.status == "False" && c.reason == AUDIENCE_NOT_ALLOWED
        });
        if not_allowed {
            return None;
        }
        let namespace = r.metadata.namespace.clone()?;
        let access = r
            .spec
            .access
            .iter()
            .map(|a| access(a, &namespace))
            .collect();
        Some(ResourceEntry {
            name: r.metadata.name.clone()?,
            uid: r.metadata.uid.clone()?,
            created: r
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(i64::MAX, |t| t.0.as_second()),
            key: normalize(&r.spec.audience),
            audience: r.spec.audience.clone(),
            scopes: r.spec.scopes.iter().map(|s| s.name.to_string()).collect(),
            roles: r.spec.roles.iter().map(|s| s.name.clone()).collect(),
            max_lifetime: r.spec.max_access_token_lifetime_seconds,
            users: r
                .spec
                .users
                .iter()
                .map(|u| (u.groups.clone(), u.roles.clone()))
                .collect(),
            access,
            namespace,
        })
    }

    /// What this resource grants the client `client_id` of `namespace` with `labels`;
    /// `None` when no entry names it. Only declared scopes and roles count (the API
    /// server checked that grants name declared ones; this holds if that check is ever
    /// bypassed).
    ///
    /// `namespace_labels` are the labels of the client's namespace, where namespace
    /// selectors are honoured; `None`, a namespace-selector entry matches nobody.
    pub fn grant(
        &self,
        client_id: &str,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        namespace_labels: Option<&BTreeMap<String, String>>,
    ) -> Option<Granted> {
        let mut granted: Option<Granted> = None;
        for a in &self.access {
            let matches = match &a.who {
                Who::Namespace {
                    namespace: ns,
                    selector,
                } => ns == namespace && selector.as_ref().is_none_or(|s| s.matches(labels)),
                Who::Namespaces { selector, clients } => {
                    namespace_labels.is_some_and(|n| selector.matches(n))
                        && clients.as_ref().is_none_or(|s| s.matches(labels))
                }
                Who::ClientIds(ids) => ids.iter().any(|id| id.eq_ignore_ascii_case(client_id)),
                Who::Nobody => false,
            };
            if !matches {
                continue;
            }
            let g = granted.get_or_insert_with(Granted::default);
            for s in a.scopes.iter().filter(|s| self.scopes.contains(s)) {
                if !g.scopes.contains(s) {
                    g.scopes.push(s.clone());
                }
            }
            for r in a.roles.iter().filter(|r| self.roles.contains(r)) {
                if !g.roles.contains(r) {
                    g.roles.push(r.clone());
                }
            }
        }
        granted
    }

    /// The roles of this API that a user in `groups` gets.
    pub fn user_roles(&self, groups: &[String]) -> Vec<String> {
        let mut roles: Vec<String> = Vec::new();
        for (of, given) in &self.users {
            if of.iter().any(|g| groups.contains(g)) {
                for r in given.iter().filter(|r| self.roles.contains(r)) {
                    if !roles.contains(r) {
                        roles.push(r.clone());
                    }
                }
            }
        }
        roles
    }

    /// Whether an `access` entry selects namespaces by label.
    pub fn selects_namespaces(&self) -> bool {
        self.access
            .iter()
            .any(|a| matches!(a.who, Who::Namespaces { .. }))
    }

    /// The `access` entries whose client selector does not parse, by index.
    pub fn broken_selectors(&self) -> Vec<usize> {
        self.access
            .iter()
            .enumerate()
            .filter(|(_, a)| matches!(a.who, Who::Nobody))
            .map(|(i, _)| i)
            .collect()
    }

    fn order(&self) -> (i64, &str, &str) {
        (self.created, &self.namespace, &self.name)
    }
}

fn access(a: &AccessGrant, own_namespace: &str) -> Access {
    let clients = a
        .client_selector
        .clone()
        .map(Selector::try_from)
        .transpose();
    let who = if !a.client_ids.is_empty() {
        Who::ClientIds(a.client_ids.clone())
    } else if let Some(ns) = a.namespace_selector.clone() {
        match (Selector::try_from(ns), clients) {
            (Ok(selector), Ok(clients)) => Who::Namespaces { selector, clients },
            _ => Who::Nobody,
        }
    } else {
        match a
            .client_selector
            .clone()
            .map(Selector::try_from)
            .transpose()
        {
            Ok(selector) => Who::Namespace {
                namespace: a
                    .namespace
                    .clone()
                    .unwrap_or_else(|| own_namespace.to_string()),
                selector,
            },
            Err(_) => Who::Nobody,
        }
    };
    Access {
        who,
        scopes: a.scopes.iter().map(ToString::to_string).collect(),
        roles: a.roles.clone(),
    }
}

/// Every claim, by normalised audience, oldest first.
#[derive(Default, Debug)]
pub struct Resources {
    by_key: HashMap<String, Vec<Arc<ResourceEntry>>>,
    /// The key each object claims, so a delete finds its claim.
    by_object: HashMap<(String, String), String>,
}

impl Resources {
    pub fn build(all: impl IntoIterator<Item = ResourceEntry>) -> Self {
        let mut table = Resources::default();
        for e in all {
            table.apply(e);
        }
        table
    }

    /// Adds or replaces the claim of one resource.
    pub fn apply(&mut self, entry: ResourceEntry) {
        self.delete(&entry.namespace, &entry.name);
        self.by_object.insert(
            (entry.namespace.clone(), entry.name.clone()),
            entry.key.clone(),
        );
        let claims = self.by_key.entry(entry.key.clone()).or_default();
        let at = claims.partition_point(|c| c.order() < entry.order());
        claims.insert(at, Arc::new(entry));
    }

    /// Removes the claim of a deleted resource: the next claimant, if any, holds it now.
    pub fn delete(&mut self, namespace: &str, name: &str) {
        let Some(key) = self
            .by_object
            .remove(&(namespace.to_string(), name.to_string()))
        else {
            return;
        };
        if let Some(claims) = self.by_key.get_mut(&key) {
            claims.retain(|c| !(c.namespace == namespace && c.name == name));
            if claims.is_empty() {
                self.by_key.remove(&key);
            }
        }
    }

    /// Drops every claim of `scope` (a namespace, or all with `None`), before a relist.
    pub fn clear(&mut self, scope: Option<&str>) {
        let doomed: Vec<(String, String)> = self
            .by_object
            .keys()
            .filter(|(ns, _)| scope.is_none_or(|s| s == ns))
            .cloned()
            .collect();
        for (ns, name) in doomed {
            self.delete(&ns, &name);
        }
    }

    /// Every claim of `audience`, oldest (the holder) first.
    pub fn claimants(&self, audience: &str) -> &[Arc<ResourceEntry>] {
        self.claimants_of_key(&normalize(audience))
    }

    /// Every claim of the [`normalize`]d audience `key`, oldest first.
    pub fn claimants_of_key(&self, key: &str) -> &[Arc<ResourceEntry>] {
        self.by_key.get(key).map_or(&[], Vec::as_slice)
    }

    /// The key the resource `ns/name` claims now, if it is in the table.
    pub fn key_of(&self, namespace: &str, name: &str) -> Option<&str> {
        self.by_object
            .get(&(namespace.to_string(), name.to_string()))
            .map(String::as_str)
    }

    /// The resource holding `audience`, if any claims it.
    pub fn holder(&self, audience: &str) -> Option<&Arc<ResourceEntry>> {
        self.claimants(audience).first()
    }

    /// The resource holding the [`normalize`]d audience `key`.
    pub fn holder_of_key(&self, key: &str) -> Option<&Arc<ResourceEntry>> {
        self.claimants_of_key(key).first()
    }

    /// How many resources there are.
    pub fn len(&self) -> usize {
        self.by_object.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_object.is_empty()
    }

    /// Every resource, holders and others.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ResourceEntry>> {
        self.by_key.values().flatten()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::{OAuthResourceSpec, ResourceRole, ResourceScope, Scope};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

    /// A resource `ns/name` created at `created` claiming `audience`, declaring scopes
    /// `read` and `write` and role `admin`, with these grants.
    pub fn resource(
        ns: &str,
        name: &str,
        created: i64,
        audience: &str,
        access: Vec<AccessGrant>,
    ) -> ResourceEntry {
        let mut r = OAuthResource::new(
            name,
            OAuthResourceSpec {
                audience: audience.into(),
                scopes: ["read", "write"]
                    .iter()
                    .map(|s| ResourceScope {
                        name: Scope::parse(s).expect("scope"),
                        description: None,
                    })
                    .collect(),
                roles: vec![ResourceRole {
                    name: "admin".into(),
                    description: None,
                }],
                max_access_token_lifetime_seconds: None,
                access,
                users: vec![crate::api::UserRoles {
                    groups: vec!["finance".into()],
                    roles: vec!["admin".into()],
                }],
            },
        );
        r.metadata.namespace = Some(ns.into());
        r.metadata.uid = Some(format!("uid-{ns}-{name}"));
        r.metadata.creation_timestamp =
            Some(Time(jiff::Timestamp::from_second(created).expect("time")));
        ResourceEntry::from_resource(&r).expect("entry")
    }

    pub fn grant(ns: Option<&str>, scopes: &[&str], roles: &[&str]) -> AccessGrant {
        AccessGrant {
            namespace: ns.map(str::to_string),
            client_selector: None,
            client_ids: vec![],
            namespace_selector: None,
            scopes: scopes
                .iter()
                .map(|s| Scope::parse(s).expect("scope"))
                .collect(),
            roles: roles.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn audiences_compare_after_normalisation() {
        assert_eq!(
            normalize("https://API.Example.test/"),
            "https://api.example.test"
        );
        assert_eq!(
            normalize("https://api.example.test:443"),
            "https://api.example.test"
        );
        assert_eq!(
            normalize("HTTPS://api.example.test/v1/"),
            "https://api.example.test/v1"
        );
        assert_eq!(normalize("urn:example:api"), "urn:example:api");
        assert_ne!(normalize("https://a.test/x"), normalize("https://a.test/X"));
    }

    #[test]
    fn the_oldest_claim_holds_and_hands_over_when_it_goes() {
        let mut t = Resources::default();
        t.apply(resource("b", "late", 20, "https://api.test", vec![]));
        t.apply(resource("a", "early", 10, "https://API.test/", vec![]));
        // Same second: namespace/name decides.
        t.apply(resource("a", "same", 20, "https://api.test", vec![]));
        let names = |t: &Resources| {
            t.claimants("https://api.test")
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&t), ["early", "same", "late"]);
        t.delete("a", "early");
        assert_eq!(
            t.holder("https://api.test").map(|h| h.name.as_str()),
            Some("same")
        );
        // A changed resource keeps one claim.
        t.apply(resource("a", "same", 20, "https://api.test", vec![]));
        assert_eq!(t.len(), 2);
        t.clear(Some("a"));
        assert_eq!(names(&t), ["late"]);
        t.clear(None);
        assert!(t.is_empty() && t.holder("https://api.test").is_none());
    }

    #[test]
    fn grants_match_namespace_labels_and_client_ids() {
        let mut by_label = grant(Some("shop"), &["read"], &[]);
        by_label.client_selector = Some(LabelSelector {
            match_labels: Some(labels(&[("app", "checkout")])),
            ..LabelSelector::default()
        });
        let mut by_id = grant(None, &["write"], &["admin"]);
        by_id.client_ids = vec!["Billing-Job".into()];
        let r = resource(
            "billing",
            "api",
            1,
            "https://api.test",
            vec![grant(None, &["read"], &[]), by_label, by_id],
        );
        let none = labels(&[]);
        // The default namespace is the resource's own.
        assert_eq!(
            r.grant("c", "billing", &none, None).map(|g| g.scopes),
            Some(vec!["read".to_string()])
        );
        assert_eq!(r.grant("c", "shop", &none, None), None);
        assert_eq!(
            r.grant("c", "shop", &labels(&[("app", "checkout")]), None)
                .map(|g| g.scopes),
            Some(vec!["read".to_string()])
        );
        // Client ids compare case-insensitively, wherever the client is; entries add up.
        assert_eq!(
            r.grant("billing-job", "billing", &none, None),
            Some(Granted {
                scopes: vec!["read".into(), "write".into()],
                roles: vec!["admin".into()],
            })
        );
        assert_eq!(r.grant("other", "elsewhere", &none, None), None);
    }

    #[test]
    fn namespace_selectors_match_the_namespace_labels_where_honoured() {
        let mut by_ns = grant(None, &["read"], &[]);
        by_ns.namespace_selector = Some(LabelSelector {
            match_labels: Some(labels(&[("tenant", "true")])),
            ..LabelSelector::default()
        });
        let r = resource("billing", "api", 1, "https://api.test", vec![by_ns]);
        let tenant = labels(&[("tenant", "true")]);
        assert!(r.selects_namespaces());
        assert!(r.grant("c", "shop", &labels(&[]), Some(&tenant)).is_some());
        assert_eq!(r.grant("c", "shop", &labels(&[]), Some(&labels(&[]))), None);
        // Where namespace selectors are not honoured, nobody.
        assert_eq!(r.grant("c", "shop", &labels(&[]), None), None);
    }

    #[test]
    fn a_selector_that_does_not_parse_grants_nobody() {
        let mut bad = grant(None, &["read"], &[]);
        bad.client_selector = Some(LabelSelector {
            match_expressions: Some(vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                    key: "app".into(),
                    operator: "Near".into(),
                    values: None,
                },
            ]),
            ..LabelSelector::default()
        });
        let r = resource("billing", "api", 1, "https://api.test", vec![bad]);
        assert_eq!(
            r.grant("c", "billing", &labels(&[("app", "x")]), None),
            None
        );
        assert_eq!(r.broken_selectors(), [0]);
    }

    #[test]
    fn undeclared_scopes_and_roles_are_never_granted() {
        let r = resource(
            "billing",
            "api",
            1,
            "https://api.test",
            vec![grant(None, &["read", "delete"], &["admin", "root"])],
        );
        assert_eq!(
            r.grant("c", "billing", &BTreeMap::new(), None),
            Some(Granted {
                scopes: vec!["read".into()],
                roles: vec!["admin".into()],
            })
        );
        assert_eq!(r.user_roles(&["finance".into()]), ["admin"]);
        assert!(r.user_roles(&["sales".into()]).is_empty());
    }
}
