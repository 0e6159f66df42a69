use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// Internal, written by the token server: one revoked access token (RFC 7009), shared through the API server so that every replica answers introspection alike. Named after a hash of the token's `jti`; worthless after `expiresAt`, when the token expires anyway.
// kube's repeated `printcolumn(type_ = ...)` reads as duplicated attributes to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[kube(
    group = "oauth-operator.dev",
    version = "v1alpha1",
    kind = "RevokedToken",
    namespaced,
    category = "oauth-internal",
    doc = "Internal state written by the oauth-operator token server: a revoked access token.",
    printcolumn(name = "Client ID", type_ = "string", json_path = ".spec.clientId"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".spec.expiresAt")
)]
#[serde(rename_all = "camelCase")]
pub struct RevokedTokenSpec {
    /// The token's `jti`.
    pub jti: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// The token's `exp`: after it, this record can go.
    pub expires_at: Time,
}
