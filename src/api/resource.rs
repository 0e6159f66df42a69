//! `OAuthResource`: an API's team claims its audience (RFC 8707's `resource`), declares the
//! scopes and roles its API understands, and grants them to clients. The token server
//! issues a token for a claimed audience only to the clients its resource grants
//! (`crate::tenancy`), so consent sits on the owner's side, as Gateway API's
//! `ReferenceGrant` puts it in the target's namespace.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::Scope;

/// A resource server (an API) and who may obtain tokens for it.
// kube's repeated `printcolumn(type_ = ...)` reads as duplicated attributes to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "oauth-operator.dev",
    version = "v1alpha1",
    kind = "OAuthResource",
    namespaced,
    status = "OAuthResourceStatus",
    shortname = "oar",
    category = "oauth",
    doc = "An API (an OAuth 2.0 resource server, RFC 8707): claims its audience, declares its scopes and roles, and grants them to clients. Tokens for a claimed audience are issued only to the clients granted here.",
    printcolumn(name = "Audience", type_ = "string", json_path = ".spec.audience"),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].reason"
    ),
    printcolumn(
        name = "Clients",
        type_ = "integer",
        json_path = ".status.grantedClients"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.audience == oldSelf.audience").message("spec.audience is immutable: create another OAuthResource to claim another audience").field_path(".audience"))]
#[x_kube(validation = Rule::new(
    "!has(self.access) || self.access.all(a, !has(a.scopes) || a.scopes.all(s, has(self.scopes) && self.scopes.exists(d, d.name == s)))"
).message("spec.access[].scopes: every granted scope must be declared in spec.scopes").field_path(".access"))]
#[x_kube(validation = Rule::new(
    "!has(self.access) || self.access.all(a, !has(a.roles) || a.roles.all(r, has(self.roles) && self.roles.exists(d, d.name == r)))"
).message("spec.access[].roles: every granted role must be declared in spec.roles").field_path(".access"))]
#[x_kube(validation = Rule::new(
    "!has(self.users) || self.users.all(u, u.roles.all(r, has(self.roles) && self.roles.exists(d, d.name == r)))"
).message("spec.users[].roles: every mapped role must be declared in spec.roles").field_path(".users"))]
#[serde(rename_all = "camelCase")]
pub struct OAuthResourceSpec {
    /// The audience this API claims: the `aud` of its tokens and the `resource` (RFC 8707) clients ask for, an absolute URI without a fragment, e.g. `https://invoices.billing.example.com`. Unique in the cluster, compared after normalisation (scheme and host in lower case, no default port, no trailing slash): of two claims the older resource holds it. The issuer, the operator's default audience and client ids cannot be claimed. Immutable.
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s#]+$")
    )]
    pub audience: String,

    /// The scopes the API understands. Clients are granted a subset of these in `access`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub scopes: Vec<ResourceScope>,

    /// The roles the API understands, carried in the `roles` claim of its tokens besides the operator's default role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub roles: Vec<ResourceRole>,

    /// The longest lifetime, in seconds, of an access token for this API; each token gets the smaller of this and the client's `accessTokenLifetimeSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 3600))]
    pub max_access_token_lifetime_seconds: Option<u32>,

    /// Who may obtain tokens for this API, and with which scopes and roles. Entries add up; a client matched by none is refused (`invalid_target`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub access: Vec<AccessGrant>,

    /// For signed-in users (the authorization code grant): the roles of this API that members of these groups get.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub users: Vec<UserRoles>,
}

/// A scope of the API.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub struct ResourceScope {
    /// The scope token, e.g. `invoices.read`.
    pub name: Scope,
    /// What the scope allows, for people reading the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 500))]
    pub description: Option<String>,
}

/// A role of the API.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub struct ResourceRole {
    /// The role as the `roles` claim carries it, e.g. `invoice-admin`.
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    /// What the role allows, for people reading the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 500))]
    pub description: Option<String>,
}

/// One grant: which clients, and what they get. The clients are those of `namespace` (this resource's namespace when omitted) or of every namespace `namespaceSelector` matches, narrowed by `clientSelector`; or, with `clientIds`, exactly those clients wherever they are.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("(has(self.scopes) && size(self.scopes) > 0) || (has(self.roles) && size(self.roles) > 0)").message("spec.access[]: a grant must give at least one scope or role"))]
#[x_kube(validation = Rule::new("!has(self.clientIds) || (!has(self.namespace) && !has(self.namespaceSelector) && !has(self.clientSelector))").message("spec.access[].clientIds names clients wherever they are: it cannot be combined with namespace, namespaceSelector or clientSelector"))]
#[x_kube(validation = Rule::new("!has(self.namespace) || !has(self.namespaceSelector)").message("spec.access[]: namespace and namespaceSelector cannot be combined"))]
#[serde(rename_all = "camelCase")]
pub struct AccessGrant {
    /// The namespace whose clients are granted; this resource's own namespace when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: Option<String>,

    /// The clients of every namespace whose labels match, instead of one `namespace`. Honoured only where the operator runs with `--namespace-selectors` (the chart's `tenancy.namespaceSelectors`), and only as strong as RBAC on who may label namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Only the clients of the namespace whose labels match this selector; all of them when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_selector: Option<LabelSelector>,

    /// Exactly these clients, by client id, in any namespace (client ids are unique in the cluster).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 128)))]
    pub client_ids: Vec<String>,

    /// The scopes granted, each declared in `spec.scopes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub scopes: Vec<Scope>,

    /// The roles granted, each declared in `spec.roles`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 128)))]
    pub roles: Vec<String>,
}

/// Roles of the API for signed-in users of some groups.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub struct UserRoles {
    /// A user in any of these groups (as the client may see them) gets `roles`.
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 128)))]
    pub groups: Vec<String>,
    /// The roles, each declared in `spec.roles`.
    #[schemars(length(min = 1, max = 16), inner(length(min = 1, max = 128)))]
    pub roles: Vec<String>,
}

/// What the controller found.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OAuthResourceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted`: whether this resource holds its audience (reasons `Claimed`, `AudienceConflict` naming the holder, `AudienceReserved`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// How many clients (of the namespaces the operator watches) ask for this audience and are granted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_clients: Option<u32>,
    /// What the API must check in every token, while accepted: `iss`, the keys at `jwksUri`, and `aud`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

/// How a resource server verifies the tokens of this resource (RFC 9068 section 4).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// The `iss` tokens carry.
    pub issuer: String,
    /// Where the signing keys are published.
    pub jwks_uri: String,
    /// The `aud` tokens for this API carry.
    pub audience: String,
}
