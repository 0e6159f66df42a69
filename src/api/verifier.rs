use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

use super::ClientType;

/// Internal, written only by the controller: what the token server needs to verify one `OAuthClient`. One per client, same name, owned by it (so it is garbage-collected with it). Holds hashes (SHA-256 of generated secrets, argon2id of chosen ones), never a secret.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[kube(
    group = "oauth-operator.dev",
    version = "v1alpha1",
    kind = "OAuthClientVerifier",
    namespaced,
    category = "oauth-internal",
    doc = "Internal state written by the oauth-operator controller for its token server: the secret hashes and token settings of one OAuthClient.",
    printcolumn(name = "Client ID", type_ = "string", json_path = ".spec.clientId"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct OAuthClientVerifierSpec {
    /// The client identifier the token server answers to.
    pub client_id: String,
    /// The client's labels, which `OAuthResource` grants select clients by.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// The client's display name, shown on the sign-in page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Confidential or public.
    #[serde(default, rename = "type")]
    pub client_type: ClientType,
    /// Whether the client may obtain tokens.
    pub active: bool,
    /// Tokens issued before this time are no longer valid (set when the client is deactivated, kept when it is reactivated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Time>,
    /// Grant types the client may use, by their RFC names.
    #[serde(default)]
    pub grant_types: Vec<String>,
    /// Scopes the client may request.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Audiences the client asks for (granted by the `OAuthResource` claiming each, where one does); empty means the operator's default.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// The `roles` claim: the operator's default role and the client's own.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Where `/authorize` may redirect, compared exactly (the port of a loopback URI may vary, RFC 8252).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_uris: Vec<String>,
    /// Where `/logout` may send the browser afterwards, compared exactly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_logout_redirect_uris: Vec<String>,
    /// Which of a user's groups the client may see; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_groups: Option<Vec<String>>,
    /// Whether and how the client's users' access tokens are refreshed; absent: no refresh token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshPolicy>,
    /// Access-token lifetime in seconds.
    pub access_token_lifetime_seconds: u32,
    /// One entry per accepted client secret.
    #[serde(default)]
    pub secrets: Vec<SecretVerifier>,
    /// The client's public keys for `private_key_jwt` (RFC 7523): a JWK Set as JSON, as the controller read and checked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// The ServiceAccounts whose tokens authenticate the client, each with its namespace filled in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<ServiceAccountSubject>,
    /// The workload identities of other issuers whose tokens authenticate the client, as the client lists them (the server honours only the issuers it trusts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub federated: Vec<FederatedSubject>,
    /// For a dynamically registered client: the hash of its registration access token (RFC 7592): `$sha256$` and the base64url SHA-256, or an argon2id PHC string from an earlier version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_access_token_hash: Option<String>,
}

/// The refresh tokens a client's users get.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshPolicy {
    /// How many refreshes a sign-in allows; unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// A refresh token unused this long expires.
    pub idle_lifetime_seconds: i64,
    /// No refresh is accepted this long after the sign-in.
    pub max_lifetime_seconds: i64,
}

/// How to verify one client secret: by `sha256` when it is there, else by `hash`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretVerifier {
    /// The secret entry's name.
    pub name: String,
    /// The SHA-256 of a secret the operator generated (256 random bits), base64url without padding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The argon2id hash of a secret someone chose, in PHC string format. Also kept beside `sha256` for a generated secret that an earlier version hashed this way, so that its replicas still verify it during a rolling upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Where the hashed value came from. The controller compares it with the source's current identity to know, without hashing again, that the hash is current.
    pub source: SourceRef,
    /// When the secret stops being accepted; never when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
}

/// Identity of the Secret value a hash was computed from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceRef {
    /// Secret name.
    pub secret_name: String,
    /// Key within the Secret.
    pub key: String,
    /// The Secret's UID when hashed.
    pub uid: String,
    /// A version of the value: its creation time for a generated secret (which is never rewritten), the Secret's resourceVersion for one brought by the user.
    pub version: String,
}

/// Internal, written only by the controller: what the token server needs to accept one `InitialAccessToken` at `POST /register`. Same name, owned by it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[kube(
    group = "oauth-operator.dev",
    version = "v1alpha1",
    kind = "InitialAccessTokenVerifier",
    namespaced,
    category = "oauth-internal",
    doc = "Internal state written by the oauth-operator controller for its token server: the hash and expiry of one InitialAccessToken."
)]
#[serde(rename_all = "camelCase")]
pub struct InitialAccessTokenVerifierSpec {
    /// The non-secret prefix of the token, to find this verifier without hashing.
    pub token_id: String,
    /// The SHA-256 of the token (generated, 256 random bits), base64url without padding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The argon2id hash an earlier version wrote, in PHC string format; kept beside `sha256` for that version's replicas during a rolling upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Where the hashed value came from.
    pub source: SourceRef,
    /// When the token stops being accepted.
    pub expires_at: Time,
    /// The client bounds of the enforcing OAuthClientPolicies of the token's namespace, as the controller found them: a registration outside one is refused (RFC 7591 section 3.2.2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub enforced_policies: Vec<PolicyBounds>,
}

/// One enforcing policy's client bounds, by the policy's name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
pub struct PolicyBounds {
    /// The OAuthClientPolicy.
    pub policy: String,
    /// Its `spec.clients` (`{namespace}` not filled in).
    pub clients: super::ClientBounds,
}

/// A workload of another issuer, as the client names it (`spec.authentication.federated`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub struct FederatedSubject {
    /// The issuer, as its tokens carry `iss`.
    pub issuer: String,
    /// The tokens' `sub`.
    pub subject: String,
    /// The `aud` its tokens must carry; the token server's issuer when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

/// A ServiceAccount by namespace and name, as its tokens name it in `sub: system:serviceaccount:<namespace>:<name>`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub struct ServiceAccountSubject {
    /// The ServiceAccount's namespace.
    pub namespace: String,
    /// The ServiceAccount's name.
    pub name: String,
}
