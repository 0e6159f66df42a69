use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// An OAuth 2.0 client. The controller generates its secret into a Secret in the same
/// namespace and the token server issues it access tokens.
// kube's repeated `printcolumn(type_ = ...)` reads as duplicated attributes to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "oauth-operator.dev",
    version = "v1alpha1",
    kind = "OAuthClient",
    namespaced,
    status = "OAuthClientStatus",
    shortname = "oauthclient",
    shortname = "oac",
    category = "oauth",
    doc = "An OAuth 2.0 client: the controller generates its credentials into a Secret and the token server issues it access tokens.",
    printcolumn(name = "Client ID", type_ = "string", json_path = ".status.clientId"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
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
#[x_kube(validation = Rule::new(
    "has(self.clientId) == has(oldSelf.clientId) && (!has(self.clientId) || self.clientId == oldSelf.clientId)"
).message("spec.clientId is immutable: it cannot be added, changed or removed once the client exists").field_path(".clientId"))]
#[serde(rename_all = "camelCase")]
pub struct OAuthClientSpec {
    /// The client identifier presented at the token endpoint. Generated from the
    /// resource's UID when omitted. Immutable.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9._~-]+$"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,

    /// The client type (RFC 6749 section 2.1). Only `confidential` clients, which hold a
    /// secret, are served for now.
    #[serde(default, rename = "type")]
    pub client_type: ClientType,

    /// The Secret the controller writes the credentials into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<CredentialsSecret>,

    /// Scopes the client may request. A token request without `scope` gets all of them;
    /// one asking for anything else is refused with `invalid_scope`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(
            regex(pattern = r"^[\x21\x23-\x5B\x5D-\x7E]+$"),
            length(min = 1, max = 128)
        )
    )]
    pub scopes: Vec<String>,

    /// Audiences (`aud`) of the access tokens issued to this client. When empty, tokens are
    /// issued for the operator's default audience.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 256)))]
    pub audiences: Vec<String>,

    /// Lifetime of the access tokens issued to this client, in seconds.
    #[serde(default = "default_lifetime")]
    #[schemars(range(min = 60, max = 3600))]
    pub access_token_lifetime_seconds: u32,
}

fn default_lifetime() -> u32 {
    3600
}

/// RFC 6749 section 2.1 client types.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum ClientType {
    /// Can keep a secret: authenticates with a client secret.
    #[default]
    Confidential,
}

/// Where the controller writes a client's credentials.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecret {
    /// Name of the Secret, in the client's namespace. Defaults to `<client name>-credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub name: Option<String>,
}

/// What the controller last observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OAuthClientStatus {
    /// The client identifier in force: the one given in the spec, or the generated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The Secret holding the client's credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` is `True` once the client can obtain tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl OAuthClient {
    /// The Secret the credentials go to, defaulted from the client's name.
    pub fn credentials_secret_name(&self) -> String {
        self.spec
            .credentials_secret
            .as_ref()
            .and_then(|s| s.name.clone())
            .unwrap_or_else(|| format!("{}-credentials", kube::ResourceExt::name_any(self)))
    }

    /// The client id in force: the spec's, else one derived from the UID, which is stable
    /// for the resource's whole life, so a lost status or a restart never changes it.
    pub fn effective_client_id(&self) -> Option<String> {
        self.spec
            .client_id
            .clone()
            .or_else(|| self.metadata.uid.clone())
    }
}
