use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// An initial access token (RFC 7591 section 3): lets its holder register new clients,
/// until it expires or has created `count` clients.
// kube's repeated `printcolumn(type_ = ...)` reads as duplicated attributes to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "oauth-operator.dev",
    version = "v1alpha1",
    kind = "InitialAccessToken",
    namespaced,
    status = "InitialAccessTokenStatus",
    shortname = "iat",
    category = "oauth",
    doc = "An initial access token: lets its holder register new OAuth clients (RFC 7591), limited by an expiry and a count.",
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.expiresAt"),
    printcolumn(name = "Remaining", type_ = "integer", json_path = ".status.remaining"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("has(self.expiresAfter) != has(self.expiresAt)")
    .message("exactly one of spec.expiresAfter and spec.expiresAt must be set"))]
#[serde(rename_all = "camelCase")]
pub struct InitialAccessTokenSpec {
    /// How long the token stays valid after it is created, e.g. `24h` or `7d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(s|m|h|d))+$"))]
    pub expires_after: Option<String>,

    /// An absolute expiry time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,

    /// How many clients the token may register.
    #[serde(default = "default_count")]
    #[schemars(range(min = 1, max = 10000))]
    pub count: u32,

    /// What the clients registered with this token may ask for.
    #[serde(default)]
    pub policy: RegistrationPolicy,
}

fn default_count() -> u32 {
    1
}

/// Limits on the metadata of clients registered with an initial access token.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationPolicy {
    /// Grant types a registered client may use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grant_types: Vec<String>,
    /// Scopes a registered client may be allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Audiences a registered client may be allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// The longest access-token lifetime a registered client may have, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 3600))]
    pub max_access_token_lifetime_seconds: Option<u32>,
    /// Also write a registered client's secret into a Secret in this namespace. By
    /// default the secret is returned once, in the registration response, and only its
    /// hash is kept.
    #[serde(default)]
    pub write_secret: bool,
}

/// What the controller last observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitialAccessTokenStatus {
    /// When the token stops being accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// How many more clients the token may register.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u32>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Expired`, `Exhausted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
