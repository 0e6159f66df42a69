//! `OAuthClientPolicy`: the platform's bounds on what the clients and resources of some
//! namespaces may declare. Cluster-scoped, so only cluster administrators write them. Every
//! policy selecting a namespace applies there, and the strictest bound wins; a policy
//! marked `fallback` applies only where no other one does (the chart's default).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{Duration, GrantType};

/// Bounds on the OAuthClients and OAuthResources of the namespaces it selects.
// kube's repeated `printcolumn(type_ = ...)` reads as duplicated attributes to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "oauth-operator.dev",
    version = "v1alpha1",
    kind = "OAuthClientPolicy",
    shortname = "oacp",
    category = "oauth",
    doc = "The platform's bounds on what the OAuthClients and OAuthResources of the selected namespaces may declare: grant types, public clients, authentication methods, token and secret lifetimes, redirect URI hosts, federated issuers, how many clients, which audiences. Every matching policy applies; the strictest bound wins.",
    printcolumn(
        name = "Enforcement",
        type_ = "string",
        json_path = ".spec.enforcement"
    ),
    printcolumn(name = "Fallback", type_ = "boolean", json_path = ".spec.fallback"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!self.fallback || !has(self.namespaceSelector)").message("spec.fallback applies where no other policy does: it takes no namespaceSelector").field_path(".fallback"))]
#[serde(rename_all = "camelCase")]
pub struct OAuthClientPolicySpec {
    /// The namespaces this policy bounds, by their labels; every namespace when omitted. Only as strong as RBAC on who may label namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Applies to the namespaces no other policy selects: the installation's default.
    #[serde(default)]
    pub fallback: bool,

    /// `Enforce`: a client outside a bound is not served (a lifetime beyond the bound is cut to it) and a resource outside one is not accepted, with a condition naming the field and the bound. `Warn`: served, and reported (condition, Event, audit line, metric).
    #[serde(default)]
    pub enforcement: Enforcement,

    /// Bounds on OAuthClients.
    #[serde(default)]
    pub clients: ClientBounds,

    /// Bounds on OAuthResources.
    #[serde(default)]
    pub resources: ResourceBounds,
}

/// What happens to a client or resource outside a bound.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum Enforcement {
    /// Served, and reported.
    Warn,
    /// Not served (a client) or not accepted (a resource).
    #[default]
    Enforce,
}

/// Bounds on OAuthClients; each one absent is no bound.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientBounds {
    /// The grant types clients may list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub grant_types: Option<Vec<GrantType>>,

    /// Whether public clients (no secret, PKCE alone) are allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_clients: Option<bool>,

    /// How clients may authenticate: `secret` (generated or chosen), `privateKeyJwt`, `serviceAccount`, `federated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4))]
    pub authentication: Option<Vec<AuthenticationMethod>>,

    /// The longest access-token lifetime, in seconds, a client may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 3600))]
    pub max_access_token_lifetime_seconds: Option<u32>,

    /// The longest time a secret may stay valid (`expiresAfter`, or `expiresAt` from its creation); a secret that never expires is outside any such bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_secret_lifetime: Option<Duration>,

    /// The hosts redirect URIs may name: a host name, or `*.` and a domain for its subdomains; `{namespace}` stands for the client's namespace, so each team has its own space, e.g. `*.{namespace}.apps.example.com`, `localhost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 32),
        inner(
            length(min = 1, max = 253),
            regex(pattern = r"^(\*\.)?([a-z0-9-]+|\{namespace\})(\.([a-z0-9-]+|\{namespace\}))*$")
        )
    )]
    pub redirect_uri_hosts: Option<Vec<String>>,

    /// The issuers clients may name in `spec.authentication.federated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 2048)))]
    pub federated_issuers: Option<Vec<String>>,

    /// How many OAuthClients a namespace may have; the younger ones beyond it are outside the bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_clients: Option<u32>,
}

/// A way a client authenticates.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AuthenticationMethod {
    /// A client secret, generated or chosen.
    Secret,
    /// `private_key_jwt` (RFC 7523).
    PrivateKeyJwt,
    /// A Kubernetes ServiceAccount token.
    ServiceAccount,
    /// A workload identity of another issuer.
    Federated,
}

/// Bounds on OAuthResources; each one absent is no bound.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceBounds {
    /// The audiences resources may claim: an audience, or one ending in `*` for every audience that starts with the rest (compared after normalisation); `{namespace}` stands for the resource's namespace, e.g. `https://{namespace}.api.example.com/*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 32),
        inner(length(min = 1, max = 256), regex(pattern = r"^[^*\s]+\*?$"))
    )]
    pub audiences: Option<Vec<String>>,
}
