use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// Internal, written by the token server: one authorization grant, made when an authorization code is redeemed. Creating it is what makes a code single use on every replica (a second redemption finds it and fails); a grant whose code was used twice is revoked, and with it every token it issued. Named `grant-<id>` after the grant id that its tokens carry; worthless after `expiresAt`.
// kube's repeated `printcolumn(type_ = ...)` reads as duplicated attributes to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[kube(
    group = "oauth-operator.dev",
    version = "v1alpha1",
    kind = "OAuthGrant",
    namespaced,
    category = "oauth-internal",
    doc = "Internal state written by the oauth-operator token server: an authorization grant made by redeeming an authorization code.",
    printcolumn(name = "Client ID", type_ = "string", json_path = ".spec.clientId"),
    printcolumn(name = "User", type_ = "string", json_path = ".spec.username"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".spec.expiresAt")
)]
#[serde(rename_all = "camelCase")]
pub struct OAuthGrantSpec {
    /// The client the grant was made to.
    pub client_id: String,
    /// The UID of that client's `OAuthClient`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uid: Option<String>,
    /// The user's subject (`sub`): the UID of their `OAuthUser`.
    pub subject: String,
    /// The user's username, for people reading the object.
    pub username: String,
    /// The scope granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The resources (RFC 8707) the sign-in named, each refresh decides again for; empty when it named none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource: Vec<String>,
    /// When the user signed in.
    pub auth_time: Time,
    /// When the last token of the grant expires: after it, this record can go.
    pub expires_at: Time,
    /// The grant's refresh tokens, when its client gets them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<GrantRefresh>,
    /// For a user who signed in through an upstream provider (in no index): who they are, as the grant's refreshed tokens carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<crate::auth::token::UpstreamUser>,
}

/// Where a grant's refresh tokens stand. Each refresh replaces the object with the
/// resourceVersion it read, so two refreshes can never both count as the same one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantRefresh {
    /// The generation of the one refresh token that is current; each refresh issues the next and spends this one. A token of an earlier generation is a reuse: the grant is revoked.
    pub generation: u32,
    /// How many refreshes were made.
    pub refreshes: u32,
    /// No refresh is accepted after this time (the client's `refreshTokenMaxLifetime` from the sign-in).
    pub refresh_until: Time,
    /// When the last refresh was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refreshed_at: Option<Time>,
}
