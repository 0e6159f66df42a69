//! What the platform's policies (`OAuthClientPolicy`) say of one client: the bounds it is
//! outside of, whether that keeps it from being served, and the lifetime its tokens are cut
//! to. Observed from the controller's watches of policies and namespaces, judged by
//! [`crate::tenancy::policy`], turned into status here, purely.

use jiff::SignedDuration;

use crate::api::{AuthenticationMethod, ClientType, GrantType, OAuthClient};
use crate::controller::Context;
use crate::controller::outcome::{Cond, Note};
use crate::tenancy::policy::{self, ClientFacts, Violation};

/// The policies' verdict on one client.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    pub violations: Vec<Violation>,
    /// The smallest enforced lifetime bound, if any.
    pub lifetime_bound: Option<u32>,
}

impl View {
    /// Outside an enforced bound (but the lifetime): not served.
    pub fn suspended(&self) -> bool {
        self.violations.iter().any(policy::suspends)
    }

    /// The access-token lifetime the token server gives: the client's, cut to the bound.
    pub fn lifetime(&self, asked: u32) -> u32 {
        self.lifetime_bound.map_or(asked, |b| b.min(asked))
    }
}

/// Reads the policies that apply to `client`'s namespace and judges it.
pub fn observe(client: &OAuthClient, ctx: &Context) -> View {
    let namespace = client.metadata.namespace.as_deref().unwrap_or_default();
    let policies = ctx.policies_for(namespace);
    if policies.is_empty() {
        return View::default();
    }
    let applicable: Vec<&policy::PolicyEntry> = policies.iter().collect();
    let facts = facts(client, || ctx.rank_in_namespace(client));
    View {
        violations: policy::check_client(&applicable, &facts),
        lifetime_bound: policy::lifetime_bound(&applicable),
    }
}

/// What the bounds look at; `rank` is asked only when a bound counts clients.
fn facts(client: &OAuthClient, rank: impl FnOnce() -> u32) -> ClientFacts<'_> {
    let spec = &client.spec;
    let auth = spec.authentication.as_ref();
    let mut methods = Vec::new();
    if !client.secret_entries().is_empty() {
        methods.push(AuthenticationMethod::Secret);
    }
    if auth.is_some_and(|a| a.private_key_jwt.is_some()) {
        methods.push(AuthenticationMethod::PrivateKeyJwt);
    }
    if auth.is_some_and(|a| !a.service_accounts.is_empty()) {
        methods.push(AuthenticationMethod::ServiceAccount);
    }
    if auth.is_some_and(|a| !a.federated.is_empty()) {
        methods.push(AuthenticationMethod::Federated);
    }
    let now = jiff::Timestamp::now();
    let secret_lifetimes = client
        .secret_entries()
        .iter()
        .map(|s| {
            if s.never_expires == Some(true) {
                None
            } else if let Some(after) = s.expires_after.as_ref().and_then(|d| d.to_signed().ok()) {
                Some(after)
            } else if let Some(at) = &s.expires_at {
                Some(at.0.duration_since(now))
            } else {
                // The default: one year from creation.
                Some(SignedDuration::from_hours(24 * 365))
            }
        })
        .collect();
    ClientFacts {
        namespace: client.metadata.namespace.as_deref().unwrap_or_default(),
        grant_types: spec
            .grant_types
            .iter()
            .map(|g: &GrantType| g.as_str())
            .collect(),
        public: spec.client_type == ClientType::Public,
        methods,
        lifetime: spec.access_token_lifetime_seconds,
        secret_lifetimes,
        redirect_uris: spec
            .redirect_uris
            .iter()
            .chain(&spec.post_logout_redirect_uris)
            .map(String::as_str)
            .collect(),
        federated_issuers: auth
            .map(|a| a.federated.iter().map(|f| f.issuer.as_str()).collect())
            .unwrap_or_default(),
        rank: rank(),
    }
}

/// The `PolicyCompliant` condition, and its Event, when any policy applies or applied.
pub fn report(view: &View, client: &OAuthClient) -> Option<(Cond, Note)> {
    let had = client
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .any(|c| c.type_ == "PolicyCompliant");
    if view.violations.is_empty() {
        return had.then(|| {
            let msg = "Within every bound of the OAuthClientPolicies of its namespace".to_string();
            (
                Cond::new("PolicyCompliant", true, "WithinBounds", msg.clone()),
                Note::normal("PolicyCompliant", msg),
            )
        });
    }
    let messages: Vec<&str> = view.violations.iter().map(|v| v.message.as_str()).collect();
    let (reason, consequence) = if view.suspended() {
        (
            "PolicyViolation",
            "the token endpoint refuses this client until it is within the bounds",
        )
    } else if view.violations.iter().any(|v| v.enforce) {
        ("PolicyViolation", "its tokens get the bound's lifetime")
    } else {
        (
            "PolicyWarning",
            "served while the policy is in Warn; refused under Enforce",
        )
    };
    let msg = format!("{}; {consequence}", messages.join("; "));
    Some((
        Cond::new("PolicyCompliant", false, reason, msg.clone()),
        Note::warning(reason, msg),
    ))
}
