use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::duration::duration_grammar;
use super::{Audience, Duration, GrantType, Scope};

/// An initial access token (RFC 7591 section 3): lets its holder register new clients, until it expires or has created `count` clients.
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
    /// How long the token stays valid after it is created, e.g. `24h` or `7d`. Set exactly one of `expiresAfter` and `expiresAt`.
    ///
    #[doc = duration_grammar!()]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_after: Option<Duration>,

    /// An absolute expiry time (RFC 3339), e.g. `2026-12-31T00:00:00Z`. Set exactly one of `expiresAfter` and `expiresAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,

    /// How many clients the token may register.
    #[serde(default = "default_count")]
    #[schemars(range(min = 1, max = 1000))]
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
    /// Grant types a registered client may use; empty allows every supported one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3))]
    pub grant_types: Vec<GrantType>,
    /// Scopes a registered client may ask for; empty allows none (scopes grant access, so they are never allowed by default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub scopes: Vec<Scope>,
    /// Audiences every registered client asks for (each granted only by the `OAuthResource` claiming it: registration grants no audience); empty means the operator's default audience.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub audiences: Vec<Audience>,
    /// The access-token lifetime of registered clients, in seconds (3600 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 3600))]
    pub max_access_token_lifetime_seconds: Option<u32>,
    /// Also write a registered client's secret into a Secret in this namespace. By default the secret is returned once, in the registration response, and only its hash is kept.
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
    /// The Secret holding the token value (key `token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Every client registered with the token. Written by the token server with the resourceVersion it read, so concurrent registrations never exceed `spec.count`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registered_clients: Vec<RegisteredClient>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Expired`, `Exhausted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One client registered with an initial access token.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredClient {
    /// The OAuthClient's name, in the token's namespace.
    pub name: String,
    /// Its client id.
    pub client_id: String,
    /// When it was registered.
    pub registered_at: Time,
}

impl InitialAccessToken {
    /// The Secret the token value goes to.
    pub fn token_secret_name(&self) -> String {
        format!("{}-token", kube::ResourceExt::name_any(self))
    }

    /// How many clients were registered with it.
    pub fn registered(&self) -> u32 {
        self.status.as_ref().map_or(0, |s| {
            u32::try_from(s.registered_clients.len()).unwrap_or(u32::MAX)
        })
    }
}
