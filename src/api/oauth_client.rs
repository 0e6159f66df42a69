use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::duration::duration_grammar;
use super::{Audience, Duration, RefreshCount, Scope};

/// An OAuth 2.0 client. The controller generates its secrets into a Secret in the same namespace and the token server issues it access tokens.
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
    printcolumn(name = "Active", type_ = "boolean", json_path = ".spec.active"),
    printcolumn(
        name = "Secrets",
        type_ = "integer",
        json_path = ".status.validSecrets"
    ),
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
#[x_kube(validation = Rule::new(
    "self.type != 'public' || !has(self.secrets) || size(self.secrets) == 0"
).message("spec.secrets must be empty for a public client: public clients have no secret").field_path(".secrets"))]
#[x_kube(validation = Rule::new(
    "self.type != 'public' || !has(self.authentication)"
).message("spec.authentication needs a confidential client: a public client does not authenticate").field_path(".authentication"))]
#[x_kube(validation = Rule::new(
    "self.type != 'public' || !self.grantTypes.exists(g, g == 'client_credentials')"
).message("spec.grantTypes: client_credentials needs a confidential client").field_path(".grantTypes"))]
#[x_kube(validation = Rule::new(
    "!self.grantTypes.exists(g, g == 'authorization_code') || (has(self.redirectUris) && size(self.redirectUris) > 0)"
).message("spec.redirectUris must list at least one URI for the authorization_code grant").field_path(".redirectUris"))]
#[x_kube(validation = Rule::new(
    "!has(self.refreshCount) || (type(self.refreshCount) == int && self.refreshCount == 0) || (self.grantTypes.exists(g, g == 'authorization_code') && self.grantTypes.exists(g, g == 'refresh_token'))"
).message("spec.refreshCount: refresh tokens need both the authorization_code and the refresh_token grant").field_path(".refreshCount"))]
#[x_kube(validation = Rule::new(
    "!self.grantTypes.exists(g, g == 'refresh_token') || self.grantTypes.exists(g, g == 'authorization_code')"
).message("spec.grantTypes: refresh_token is only issued with the authorization_code grant").field_path(".grantTypes"))]
#[serde(rename_all = "camelCase")]
pub struct OAuthClientSpec {
    /// A human-readable name of the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200))]
    pub display_name: Option<String>,

    /// What the client is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000))]
    pub description: Option<String>,

    /// The client's version, e.g. `1.2`; informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub version: Option<String>,

    /// The client identifier presented at the token endpoint, unique in the cluster (compared case-insensitively). Generated from the resource's UID when omitted. Immutable.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9._~-]+$"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,

    /// The client type (RFC 6749 section 2.1): `confidential` clients hold secrets, `public` ones never do.
    #[serde(default, rename = "type")]
    pub client_type: ClientType,

    /// Whether the client may obtain tokens. A deactivated client keeps its configuration and secrets, is refused at the token endpoint, and every token issued to it before stops being valid (docs/oauth-client.md, Deactivation).
    #[serde(default = "default_true")]
    pub active: bool,

    /// Grant types the client may use.
    #[serde(default = "default_grants")]
    #[schemars(length(min = 1, max = 3))]
    #[x_kube(validation = Rule::new("self.all(g, self.exists_one(h, h == g))").message("spec.grantTypes must not repeat a grant type"))]
    pub grant_types: Vec<GrantType>,

    /// Where the authorization server may redirect the user agent: absolute URIs without a fragment, `https` except on loopback hosts. Required for `authorization_code`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 2048)))]
    #[x_kube(validation = Rule::new("self.all(u, isURL(u) && url(u).getScheme() != '' && url(u).getHost() != '')").message("spec.redirectUris: each entry must be an absolute URI"))]
    #[x_kube(validation = Rule::new("self.all(u, !u.contains('#'))").message("spec.redirectUris: a redirect URI must not have a fragment (#)"))]
    #[x_kube(validation = Rule::new(
        "self.all(u, !isURL(u) || url(u).getScheme() == 'https' || (url(u).getScheme() == 'http' && url(u).getHostname() in ['localhost', '127.0.0.1', '::1']))"
    ).message("spec.redirectUris: a redirect URI must use https (http only for localhost, 127.0.0.1 and [::1])"))]
    pub redirect_uris: Vec<String>,

    /// Where `/logout` may send the browser after signing out (`post_logout_redirect_uri`, compared exactly); the same rules as `redirectUris`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 2048)))]
    #[x_kube(validation = Rule::new("self.all(u, isURL(u) && url(u).getScheme() != '' && url(u).getHost() != '')").message("spec.postLogoutRedirectUris: each entry must be an absolute URI"))]
    #[x_kube(validation = Rule::new("self.all(u, !u.contains('#'))").message("spec.postLogoutRedirectUris: a URI must not have a fragment (#)"))]
    #[x_kube(validation = Rule::new(
        "self.all(u, !isURL(u) || url(u).getScheme() == 'https' || (url(u).getScheme() == 'http' && url(u).getHostname() in ['localhost', '127.0.0.1', '::1']))"
    ).message("spec.postLogoutRedirectUris: a URI must use https (http only for localhost, 127.0.0.1 and [::1])"))]
    pub post_logout_redirect_uris: Vec<String>,

    /// Scopes the client may request. A token request without `scope` gets all of them; one asking for anything else is refused with `invalid_scope`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub scopes: Vec<Scope>,

    /// Audiences (`aud`) the client may obtain tokens for. A token request may narrow them with `audience`; when empty, tokens are issued for the operator's default audience.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub audiences: Vec<Audience>,

    /// Roles carried in the token's `roles` claim, besides the operator's default role, which every client has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 128)))]
    pub roles: Vec<String>,

    /// Which of a signed-in user's groups this client may see, in ID tokens and in the access token's `roles`; all of them when omitted, none when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 128)))]
    pub allowed_groups: Option<Vec<String>>,

    /// How many times a signed-in user's access token may be refreshed: a number, or `Unlimited`. 0 or absent: no refresh token is issued. Needs the `authorization_code` and `refresh_token` grants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_count: Option<RefreshCount>,

    /// A refresh token not used for this long expires, e.g. `1d` (the default).
    ///
    #[doc = duration_grammar!()]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_idle_lifetime: Option<Duration>,

    /// No refresh token of a sign-in is accepted after this long from the sign-in, however often it was refreshed, e.g. `30d` (the default).
    ///
    #[doc = duration_grammar!()]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_max_lifetime: Option<Duration>,

    /// Lifetime of the access tokens issued to this client, in seconds.
    #[serde(default = "default_lifetime")]
    #[schemars(range(min = 60, max = 3600))]
    pub access_token_lifetime_seconds: u32,

    /// The client's secrets (confidential clients only). Each works on its own, so adding one and removing the old one later rotates without downtime. When empty, a confidential client gets one generated secret named `default`, valid one year.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub secrets: Vec<ClientSecret>,

    /// Ways the client may authenticate without a secret. A confidential client with one of these and no `secrets` gets no generated secret; one with both accepts either (a migration away from secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,

    /// The Secret the controller writes the credentials into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<CredentialsSecret>,

    /// Set by the token server on clients registered through `POST /register` (RFC 7591).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<Registration>,
}

/// Client authentication without a client secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.privateKeyJwt) || (has(self.serviceAccounts) && size(self.serviceAccounts) > 0) || (has(self.federated) && size(self.federated) > 0)").message("spec.authentication must name at least one method"))]
#[serde(rename_all = "camelCase")]
pub struct Authentication {
    /// `private_key_jwt` (RFC 7523, OpenID Connect Core section 9): the client signs a short-lived assertion with a private key it keeps, and the token server verifies it with the public keys given here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_jwt: Option<PrivateKeyJwt>,

    /// ServiceAccounts of this cluster whose tokens authenticate the client: a workload presents its projected ServiceAccount token (audience: the token server's issuer) as a `client_assertion` (RFC 7523). A token is accepted only while its ServiceAccount exists with the UID the token names, so one deleted and re-created under the same name does not inherit the old tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub service_accounts: Vec<ServiceAccountRef>,

    /// Workload identities of another issuer (another cluster's ServiceAccounts, a CI system's OIDC tokens) whose tokens authenticate the client, presented as a `client_assertion` (RFC 7523). Only issuers the operator trusts (the `--federated-issuer` flag, the chart's `federation.issuers`) are honoured; the status names any other.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub federated: Vec<FederatedIdentity>,
}

/// A workload of another issuer, by the `iss` and `sub` of its tokens.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FederatedIdentity {
    /// The issuer URL, exactly as its tokens carry it in `iss`; its keys are read from `<issuer>/.well-known/openid-configuration`. `https`, or `http` only for localhost, 127.0.0.1 and [::1].
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getHost() != ''").message("spec.authentication.federated[].issuer must be an absolute URL"))]
    #[x_kube(validation = Rule::new(
        "!isURL(self) || url(self).getScheme() == 'https' || (url(self).getScheme() == 'http' && url(self).getHostname() in ['localhost', '127.0.0.1', '::1'])"
    ).message("spec.authentication.federated[].issuer must use https (http only for localhost, 127.0.0.1 and [::1])"))]
    pub issuer: String,
    /// The tokens' `sub`, compared exactly, e.g. `system:serviceaccount:payments:billing` for another cluster's ServiceAccount.
    #[schemars(length(min = 1, max = 512))]
    pub subject: String,
    /// The `aud` the tokens must carry; the token server's issuer when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub audience: Option<String>,
}

/// A ServiceAccount whose tokens authenticate a client.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountRef {
    /// The ServiceAccount's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Its namespace: the client's own when not given. The token server must watch it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

/// The public keys of a `private_key_jwt` client: in a Secret, at a URL, or both (their keys together, at most 16).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.jwksSecretRef) || has(self.jwksUri)").message("spec.authentication.privateKeyJwt needs jwksSecretRef or jwksUri"))]
#[serde(rename_all = "camelCase")]
pub struct PrivateKeyJwt {
    /// A key of a Secret in the client's namespace holding the client's public keys as a JWK Set (JSON, at most 16 signature keys of RSA, EC or OKP type). Public keys only: a key with private members is refused, since its private half has been shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_secret_ref: Option<SecretKeyRef>,
    /// A URL where the client publishes its JWK Set (the same rules). The controller reads it (no redirects, 10 s, 256 KiB) and again every 5 minutes, so publish a new key there 5 minutes before signing with it; when a read fails, the keys read before stay in use and the KeysFetched condition says why. `https`, or `http` only for localhost, 127.0.0.1 and [::1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getHost() != ''").message("spec.authentication.privateKeyJwt.jwksUri must be an absolute URL"))]
    #[x_kube(validation = Rule::new(
        "!isURL(self) || url(self).getScheme() == 'https' || (url(self).getScheme() == 'http' && url(self).getHostname() in ['localhost', '127.0.0.1', '::1'])"
    ).message("spec.authentication.privateKeyJwt.jwksUri must use https (http only for localhost, 127.0.0.1 and [::1])"))]
    pub jwks_uri: Option<String>,
}

/// How a dynamically registered client came to be, and how it is managed (RFC 7592).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    /// The InitialAccessToken it was registered with.
    #[schemars(length(min = 1, max = 253))]
    pub initial_access_token: String,
    /// A key of a Secret holding the hash of the client's registration access token: `$sha256$` and its base64url SHA-256 (the token is generated), or an argon2id PHC string.
    pub access_token_hash_ref: SecretKeyRef,
}

fn default_true() -> bool {
    true
}

fn default_lifetime() -> u32 {
    3600
}

fn default_grants() -> Vec<GrantType> {
    vec![GrantType::ClientCredentials]
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
    /// Cannot keep a secret (a browser or mobile app): never has one.
    Public,
}

/// A grant type (RFC 6749): `client_credentials` (section 4.4), `authorization_code` (section 4.1, with PKCE; needs redirect URIs) or `refresh_token` (section 6; with `authorization_code` and a `refreshCount`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum GrantType {
    /// RFC 6749 section 4.4.
    #[serde(rename = "client_credentials")]
    ClientCredentials,
    /// RFC 6749 section 4.1; needs redirect URIs.
    #[serde(rename = "authorization_code")]
    AuthorizationCode,
    /// RFC 6749 section 6.
    #[serde(rename = "refresh_token")]
    RefreshToken,
}

impl GrantType {
    /// The RFC's name.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::ClientCredentials => "client_credentials",
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
        }
    }
}

/// One client secret: generated by the controller, or taken from an existing Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new(
    "(has(self.expiresAfter) ? 1 : 0) + (has(self.expiresAt) ? 1 : 0) + (has(self.neverExpires) && self.neverExpires ? 1 : 0) <= 1"
).message("set at most one of expiresAfter, expiresAt and neverExpires"))]
#[x_kube(validation = Rule::new("!has(self.secretKeyRef) || !has(self.hashRef)")
    .message("set at most one of secretKeyRef and hashRef"))]
#[serde(rename_all = "camelCase")]
pub struct ClientSecret {
    /// The entry's name, unique within the client; the secret is also written under `<clientSecret key>.<name>` in the credentials Secret.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,

    /// What the secret is for, or who holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub description: Option<String>,

    /// Expires this long after the secret was created, e.g. `90d`.
    ///
    #[doc = duration_grammar!()]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_after: Option<Duration>,

    /// Expires at this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,

    /// Never expires. Without any of the three, a secret expires one year after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub never_expires: Option<bool>,

    /// Take the value from a key of an existing Secret in the namespace (sealed-secrets, external-secrets) instead of generating one. The controller hashes it and never copies it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,

    /// Take an argon2id hash (PHC string) of the value from a key of an existing Secret: the value itself is held only by whoever made it (a team that hashes its own secrets). A registered client's (with `registration`) may instead be `$sha256$` and the base64url SHA-256 of the secret the token server generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_ref: Option<SecretKeyRef>,
}

impl ClientSecret {
    /// Whether the value comes from outside the controller (a Secret it does not own).
    pub fn is_external(&self) -> bool {
        self.secret_key_ref.is_some() || self.hash_ref.is_some()
    }
}

/// A key of a Secret in the client's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key within it.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Where and how the controller writes a client's credentials.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecret {
    /// Name of the Secret, in the client's namespace. Defaults to `<client name>-credentials`. Immutable: renaming would orphan the credentials workloads mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.credentialsSecret.name is immutable"))]
    pub name: Option<String>,

    /// Extra labels on the Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// Extra annotations on the Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,

    /// Key names in the Secret.
    #[serde(default)]
    pub keys: SecretKeys,
}

/// Key names in the credentials Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeys {
    /// Key of the client id.
    #[serde(default = "key_client_id")]
    #[schemars(regex(pattern = r"^[-._a-zA-Z0-9]+$"), length(max = 200))]
    pub client_id: String,
    /// Key of the newest valid generated secret; each secret is also under `<this>.<entry name>`.
    #[serde(default = "key_client_secret")]
    #[schemars(regex(pattern = r"^[-._a-zA-Z0-9]+$"), length(max = 190))]
    pub client_secret: String,
    /// Key of the token endpoint URL.
    #[serde(default = "key_token_endpoint")]
    #[schemars(regex(pattern = r"^[-._a-zA-Z0-9]+$"), length(max = 200))]
    pub token_endpoint: String,
}

fn key_client_id() -> String {
    "client_id".into()
}
fn key_client_secret() -> String {
    "client_secret".into()
}
fn key_token_endpoint() -> String {
    "token_endpoint".into()
}

impl Default for SecretKeys {
    fn default() -> Self {
        SecretKeys {
            client_id: key_client_id(),
            client_secret: key_client_secret(),
            token_endpoint: key_token_endpoint(),
        }
    }
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
    /// How many secrets are valid now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_secrets: Option<u32>,
    /// Each secret's metadata (never its value or hash).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretStatus>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// How the token server accepts the client now, by their RFC 7591 names (`client_secret_basic`, `client_secret_post`, `private_key_jwt`; `none` for a public client).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authentication_methods: Vec<String>,
    /// Each audience of `spec.audiences` and what the client gets for it: the `OAuthResource` claiming an audience decides, and the client's own lists are only what it asks for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<AudienceStatus>,
    /// `Ready` (the client can obtain tokens), `AudiencesGranted`, `SecretsExpiring`, `WaitingForSecret`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// What the client gets for one audience it asks for.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub struct AudienceStatus {
    /// The audience, as `spec.audiences` lists it.
    pub audience: String,
    /// How it stands.
    pub state: AudienceState,
    /// The scopes the claiming resource grants (of those the client asks for), when `Granted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// The roles the claiming resource grants (of those the client asks for), when `Granted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// Where one requested audience stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum AudienceState {
    /// The `OAuthResource` holding the audience grants the client access.
    Granted,
    /// An `OAuthResource` holds the audience and does not grant this client: tokens for it are refused.
    NotGranted,
    /// No `OAuthResource` claims the audience: served under the operator's audience ownership `Off` and `Warn`, refused under `Enforce`.
    Unclaimed,
    /// The resource holding the audience does not grant the client, but a younger resource claiming the same audience (not served) would.
    Contested,
    /// The operator's default audience: owned by nobody; under the operator's audience ownership `Enforce` its tokens carry no API scope and only the default role.
    Reserved,
}

/// The state of one secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretStatus {
    /// The entry's name in `spec.secrets` (`default` for the implicit secret of a confidential client that lists none).
    pub name: String,
    /// The entry's description, copied from the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When the controller generated (or first hashed) the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Time>,
    /// When it stops being accepted; absent for a secret that never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// `Valid` (accepted), `ExpiringSoon` (accepted, but expires within the operator's warning threshold), `Expired` (no longer accepted) or `Pending` (not usable yet: its source Secret is missing, or its expiry is already past).
    pub state: SecretState,
}

/// Where a secret stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum SecretState {
    /// Accepted.
    Valid,
    /// Accepted, but expires within the operator's warning threshold.
    ExpiringSoon,
    /// No longer accepted.
    Expired,
    /// Not usable yet: its source Secret is missing, or its expiry is already past.
    Pending,
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

    /// The key names of the credentials Secret.
    pub fn secret_keys(&self) -> SecretKeys {
        self.spec
            .credentials_secret
            .as_ref()
            .map(|s| s.keys.clone())
            .unwrap_or_default()
    }

    /// The client id in force: the spec's, else one derived from the UID, which is stable
    /// for the resource's whole life, so a lost status or a restart never changes it.
    pub fn effective_client_id(&self) -> Option<String> {
        self.spec
            .client_id
            .clone()
            .or_else(|| self.metadata.uid.clone())
    }

    /// Whether the client may authenticate without a secret.
    pub fn is_secretless(&self) -> bool {
        self.spec.authentication.as_ref().is_some_and(|a| {
            a.private_key_jwt.is_some() || !a.service_accounts.is_empty() || !a.federated.is_empty()
        })
    }

    /// The secret entries in force: the spec's, or the implicit `default` of a
    /// confidential client that lists none and has no other way to authenticate.
    pub fn secret_entries(&self) -> Vec<ClientSecret> {
        match self.spec.client_type {
            ClientType::Public => Vec::new(),
            ClientType::Confidential if self.spec.secrets.is_empty() && self.is_secretless() => {
                Vec::new()
            }
            ClientType::Confidential if self.spec.secrets.is_empty() => vec![ClientSecret {
                name: "default".into(),
                description: None,
                expires_after: None,
                expires_at: None,
                never_expires: None,
                secret_key_ref: None,
                hash_ref: None,
            }],
            ClientType::Confidential => self.spec.secrets.clone(),
        }
    }
}
