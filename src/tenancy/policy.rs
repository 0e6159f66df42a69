//! The platform's bounds (`OAuthClientPolicy`): which policies apply to a namespace, and
//! where a client or a resource falls outside them. Pure; the controller calls it with
//! what its watches hold and writes the outcome into status, Events and the verifiers the
//! token server reads (a client outside an enforced bound is not served; its lifetime is
//! cut to the smallest bound), so the token server needs neither policies nor namespaces.
//!
//! Every policy selecting a namespace applies, and the strictest bound wins: a value must
//! pass each of them (as ValidatingAdmissionPolicy bindings do, not approver-policy's "any
//! permits", which suits grants, not bounds). A `fallback` policy applies only where no
//! other one does.

use std::collections::BTreeMap;

use jiff::SignedDuration;
use kube::core::{Selector, SelectorExt};

use super::normalize;
use crate::api::{
    AuthenticationMethod, ClientBounds, Enforcement, OAuthClientPolicy, PolicyBounds,
};

/// One policy as the checks read it.
#[derive(Debug, Clone)]
pub struct PolicyEntry {
    pub name: String,
    /// `None` with `selects_all`: every namespace; a selector that does not parse selects
    /// none.
    selector: Option<Selector>,
    selects_all: bool,
    pub fallback: bool,
    pub enforce: bool,
    clients: ClientBounds,
    audiences: Option<Vec<String>>,
}

impl PolicyEntry {
    pub fn from_policy(p: &OAuthClientPolicy) -> Option<Self> {
        let (selector, selects_all) = match p.spec.namespace_selector.clone() {
            None => (None, true),
            Some(s) => (Selector::try_from(s).ok(), false),
        };
        Some(PolicyEntry {
            name: p.metadata.name.clone()?,
            selector,
            selects_all,
            fallback: p.spec.fallback,
            enforce: p.spec.enforcement == Enforcement::Enforce,
            clients: p.spec.clients.clone(),
            audiences: p.spec.resources.audiences.clone(),
        })
    }

    /// An enforcing policy of these client bounds alone, as an InitialAccessToken's
    /// verifier carries them (registration checks them).
    pub fn enforcing(bounds: &PolicyBounds) -> Self {
        PolicyEntry {
            name: bounds.policy.clone(),
            selector: None,
            selects_all: true,
            fallback: false,
            enforce: true,
            clients: bounds.clients.clone(),
            audiences: None,
        }
    }

    /// This policy's client bounds, if it enforces them.
    pub fn enforced_bounds(&self) -> Option<PolicyBounds> {
        self.enforce.then(|| PolicyBounds {
            policy: self.name.clone(),
            clients: self.clients.clone(),
        })
    }

    fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selects_all || self.selector.as_ref().is_some_and(|s| s.matches(labels))
    }
}

/// The policies that apply to a namespace with `labels`: every one selecting it, or the
/// fallback ones when none does.
pub fn applicable<'a>(
    policies: &'a [PolicyEntry],
    labels: &BTreeMap<String, String>,
) -> Vec<&'a PolicyEntry> {
    let selecting: Vec<&PolicyEntry> = policies
        .iter()
        .filter(|p| !p.fallback && p.selects(labels))
        .collect();
    if selecting.is_empty() {
        policies.iter().filter(|p| p.fallback).collect()
    } else {
        selecting
    }
}

/// What the bounds look at in one client.
#[derive(Debug, Clone, Default)]
pub struct ClientFacts<'a> {
    pub namespace: &'a str,
    pub grant_types: Vec<&'a str>,
    pub public: bool,
    pub methods: Vec<AuthenticationMethod>,
    pub lifetime: u32,
    /// Each secret's lifetime; `None` for one that never expires.
    pub secret_lifetimes: Vec<Option<SignedDuration>>,
    pub redirect_uris: Vec<&'a str>,
    pub federated_issuers: Vec<&'a str>,
    /// The client's place among its namespace's clients, oldest first, from 1.
    pub rank: u32,
}

/// One bound a client or resource is outside of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The field, e.g. `spec.grantTypes`.
    pub field: &'static str,
    /// What is outside, and the bound, for the condition and the Event.
    pub message: String,
    /// The policy whose bound it is.
    pub policy: String,
    pub enforce: bool,
}

impl Violation {
    fn new(p: &PolicyEntry, field: &'static str, message: String) -> Self {
        Violation {
            field,
            message: format!("{field}: {message} (OAuthClientPolicy {})", p.name),
            policy: p.name.clone(),
            enforce: p.enforce,
        }
    }
}

/// Where `c` is outside the bounds of `policies`.
pub fn check_client(policies: &[&PolicyEntry], c: &ClientFacts<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    for p in policies {
        let b = &p.clients;
        if let Some(allowed) = &b.grant_types {
            let names: Vec<&str> = allowed.iter().map(|g| g.as_str()).collect();
            let outside: Vec<&str> = c
                .grant_types
                .iter()
                .copied()
                .filter(|g| !names.contains(g))
                .collect();
            if !outside.is_empty() {
                out.push(Violation::new(
                    p,
                    "spec.grantTypes",
                    format!(
                        "{} is not allowed here; allowed: {}",
                        outside.join(", "),
                        names.join(", ")
                    ),
                ));
            }
        }
        if b.public_clients == Some(false) && c.public {
            out.push(Violation::new(
                p,
                "spec.type",
                "public clients are not allowed here".into(),
            ));
        }
        if let Some(allowed) = &b.authentication {
            let outside: Vec<String> = c
                .methods
                .iter()
                .filter(|m| !allowed.contains(m))
                .map(|m| method_name(*m).to_string())
                .collect();
            if !outside.is_empty() {
                let names: Vec<&str> = allowed.iter().map(|m| method_name(*m)).collect();
                out.push(Violation::new(
                    p,
                    "spec.authentication",
                    format!(
                        "{} is not allowed here; allowed: {}",
                        outside.join(", "),
                        names.join(", ")
                    ),
                ));
            }
        }
        if let Some(max) = b.max_access_token_lifetime_seconds
            && c.lifetime > max
        {
            out.push(Violation::new(
                p,
                "spec.accessTokenLifetimeSeconds",
                format!("{} is above the bound of {max}", c.lifetime),
            ));
        }
        if let Some(max) = b
            .max_secret_lifetime
            .as_ref()
            .and_then(|d| d.to_signed().ok())
        {
            let too_long = c.secret_lifetimes.iter().any(|l| l.is_none_or(|l| l > max));
            if too_long {
                out.push(Violation::new(
                    p,
                    "spec.secrets",
                    format!(
                        "a secret is valid longer than the bound of {} (or never expires)",
                        b.max_secret_lifetime.as_deref().unwrap_or_default()
                    ),
                ));
            }
        }
        if let Some(hosts) = &b.redirect_uri_hosts {
            let outside: Vec<&str> = c
                .redirect_uris
                .iter()
                .copied()
                .filter(|u| !host_allowed(u, hosts, c.namespace))
                .collect();
            if !outside.is_empty() {
                let bound: Vec<String> = hosts
                    .iter()
                    .map(|h| h.replace("{namespace}", c.namespace))
                    .collect();
                out.push(Violation::new(
                    p,
                    "spec.redirectUris",
                    format!(
                        "{} is outside the hosts allowed here: {}",
                        outside.join(", "),
                        bound.join(", ")
                    ),
                ));
            }
        }
        if let Some(allowed) = &b.federated_issuers {
            let outside: Vec<&str> = c
                .federated_issuers
                .iter()
                .copied()
                .filter(|i| !allowed.iter().any(|a| a == i))
                .collect();
            if !outside.is_empty() {
                out.push(Violation::new(
                    p,
                    "spec.authentication.federated",
                    format!("issuer {} is not allowed here", outside.join(", ")),
                ));
            }
        }
        if let Some(max) = b.max_clients
            && c.rank > max
        {
            out.push(Violation::new(
                p,
                "metadata.namespace",
                format!(
                    "the namespace may have {max} clients; this one is number {}, by age",
                    c.rank
                ),
            ));
        }
    }
    out
}

/// The smallest access-token lifetime bound of the enforcing `policies`.
pub fn lifetime_bound(policies: &[&PolicyEntry]) -> Option<u32> {
    policies
        .iter()
        .filter(|p| p.enforce)
        .filter_map(|p| p.clients.max_access_token_lifetime_seconds)
        .min()
}

/// Whether a violation keeps the client from being served: an enforced one other than the
/// lifetime, which is cut to the bound instead.
pub fn suspends(v: &Violation) -> bool {
    v.enforce && v.field != "spec.accessTokenLifetimeSeconds"
}

/// Where a resource of `namespace` claiming `audience` is outside the bounds of `policies`.
pub fn check_audience(
    policies: &[&PolicyEntry],
    namespace: &str,
    audience: &str,
) -> Vec<Violation> {
    let key = normalize(audience);
    policies
        .iter()
        .filter_map(|p| {
            let patterns = p.audiences.as_ref()?;
            let allowed = patterns
                .iter()
                .any(|pat| audience_matches(&pat.replace("{namespace}", namespace), &key));
            (!allowed).then(|| {
                let bound: Vec<String> = patterns
                    .iter()
                    .map(|pat| pat.replace("{namespace}", namespace))
                    .collect();
                Violation::new(
                    p,
                    "spec.audience",
                    format!(
                        "{audience} is outside the audiences allowed here: {}",
                        bound.join(", ")
                    ),
                )
            })
        })
        .collect()
}

fn audience_matches(pattern: &str, key: &str) -> bool {
    match pattern.strip_suffix('*') {
        // A prefix compared as written but for the scheme and host's case.
        Some(prefix) => key.starts_with(&prefix.to_ascii_lowercase()) || key.starts_with(prefix),
        None => normalize(pattern) == key,
    }
}

/// Whether the host of `uri` is one of `hosts` (with `{namespace}` filled in; `*.d`
/// matches every subdomain of `d`, not `d` itself).
fn host_allowed(uri: &str, hosts: &[String], namespace: &str) -> bool {
    let Some(host) = url::Url::parse(uri).ok().and_then(|u| {
        u.host_str()
            .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
    }) else {
        return false;
    };
    hosts.iter().any(|pattern| {
        let pattern = pattern
            .replace("{namespace}", namespace)
            .to_ascii_lowercase();
        match pattern.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
            None => host == pattern,
        }
    })
}

fn method_name(m: AuthenticationMethod) -> &'static str {
    match m {
        AuthenticationMethod::Secret => "secret",
        AuthenticationMethod::PrivateKeyJwt => "privateKeyJwt",
        AuthenticationMethod::ServiceAccount => "serviceAccount",
        AuthenticationMethod::Federated => "federated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, spec: serde_json::Value) -> PolicyEntry {
        let p: OAuthClientPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "oauth-operator.dev/v1alpha1",
            "kind": "OAuthClientPolicy",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .expect("policy");
        PolicyEntry::from_policy(&p).expect("entry")
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_selecting_policy_applies_and_the_fallback_only_alone() {
        let all = [
            policy(
                "tenants",
                serde_json::json!({"namespaceSelector": {"matchLabels": {"tenant": "true"}}}),
            ),
            policy("everyone", serde_json::json!({})),
            policy("default", serde_json::json!({"fallback": true})),
            policy(
                "broken",
                serde_json::json!({"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}),
            ),
        ];
        let names = |l| {
            applicable(&all, &l)
                .iter()
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(labels(&[("tenant", "true")])),
            ["tenants", "everyone"]
        );
        assert_eq!(names(labels(&[])), ["everyone"]);
        let only_fallback = [all[0].clone(), all[2].clone()];
        assert_eq!(
            applicable(&only_fallback, &labels(&[]))
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>(),
            ["default"]
        );
    }

    #[test]
    fn the_strictest_bound_wins_and_each_names_its_field() {
        let a = policy(
            "a",
            serde_json::json!({"clients": {"grantTypes": ["client_credentials", "authorization_code"], "maxAccessTokenLifetimeSeconds": 900}}),
        );
        let b = policy(
            "b",
            serde_json::json!({"enforcement": "Warn", "clients": {"grantTypes": ["client_credentials"], "maxAccessTokenLifetimeSeconds": 300, "publicClients": false}}),
        );
        let c = ClientFacts {
            namespace: "team",
            grant_types: vec!["authorization_code"],
            public: true,
            lifetime: 600,
            rank: 1,
            ..ClientFacts::default()
        };
        let v = check_client(&[&a, &b], &c);
        let fields: Vec<(&str, &str, bool)> = v
            .iter()
            .map(|v| (v.field, v.policy.as_str(), v.enforce))
            .collect();
        assert_eq!(
            fields,
            [
                ("spec.grantTypes", "b", false),
                ("spec.type", "b", false),
                ("spec.accessTokenLifetimeSeconds", "b", false),
            ]
        );
        assert!(v[2].message.contains("600 is above the bound of 300"));
        // The enforced bound is the one that cuts the lifetime.
        assert_eq!(lifetime_bound(&[&a, &b]), Some(900));
        assert!(!v.iter().any(suspends));
    }

    #[test]
    fn redirect_hosts_follow_the_namespace_template() {
        let p = policy(
            "hosts",
            serde_json::json!({"clients": {"redirectUriHosts": ["*.{namespace}.apps.example.com", "localhost"]}}),
        );
        let check = |uri: &str| {
            check_client(
                &[&p],
                &ClientFacts {
                    namespace: "shop",
                    redirect_uris: vec![uri],
                    rank: 1,
                    ..ClientFacts::default()
                },
            )
        };
        assert!(check("https://web.shop.apps.example.com/cb").is_empty());
        assert!(check("http://localhost:8000/cb").is_empty());
        let v = check("https://web.billing.apps.example.com/cb");
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].field, "spec.redirectUris");
        assert!(
            v[0].message.contains("*.shop.apps.example.com"),
            "{}",
            v[0].message
        );
        assert_eq!(
            check("https://shop.apps.example.com/cb").len(),
            1,
            "a subdomain, not the domain"
        );
        assert_eq!(check("https://evilshop.apps.example.com/cb").len(), 1);
        assert!(v.iter().all(suspends));
    }

    #[test]
    fn methods_secrets_issuers_and_counts() {
        let p = policy(
            "p",
            serde_json::json!({"clients": {"authentication": ["serviceAccount"], "maxSecretLifetime": "90d", "federatedIssuers": ["https://ci.test"], "maxClients": 2}}),
        );
        let c = ClientFacts {
            namespace: "n",
            methods: vec![
                AuthenticationMethod::Secret,
                AuthenticationMethod::ServiceAccount,
            ],
            secret_lifetimes: vec![Some(SignedDuration::from_hours(24 * 30)), None],
            federated_issuers: vec!["https://ci.test", "https://other.test"],
            rank: 3,
            ..ClientFacts::default()
        };
        let fields: Vec<&str> = check_client(&[&p], &c).iter().map(|v| v.field).collect();
        assert_eq!(
            fields,
            [
                "spec.authentication",
                "spec.secrets",
                "spec.authentication.federated",
                "metadata.namespace"
            ]
        );
    }

    #[test]
    fn audiences_are_bounded_per_namespace() {
        let p = policy(
            "aud",
            serde_json::json!({"resources": {"audiences": ["https://{namespace}.api.example.com/*", "urn:{namespace}:api"]}}),
        );
        assert!(
            check_audience(&[&p], "billing", "https://billing.api.example.com/invoices").is_empty()
        );
        assert!(check_audience(&[&p], "billing", "HTTPS://Billing.API.example.com/x").is_empty());
        assert!(check_audience(&[&p], "billing", "urn:billing:api").is_empty());
        let v = check_audience(&[&p], "shop", "https://billing.api.example.com/invoices");
        assert_eq!(v.len(), 1);
        assert!(v[0].message.contains("https://shop.api.example.com/*"));
        let none = policy("none", serde_json::json!({}));
        assert!(check_audience(&[&none], "shop", "https://anything.test").is_empty());
    }
}
