//! `OAuthUpstream`: an upstream OpenID Connect provider (the corporate identity
//! provider) that users may sign in through instead of, or beside, the built-in users.
//! The token server is then a federating provider, as Dex and the Pinniped Supervisor
//! are: it signs the user in at the upstream with the authorization code flow, verifies
//! the upstream's ID token, and issues its own code and tokens.
//!
//! Read from the operator namespace alone, like `OAuthUser`: whoever may write there
//! administers the issuer, and declaring a provider whose users get tokens is exactly
//! that.
//!
//! The client secret is not in the resource but under `clientSecretKey` in ONE Secret of
//! the operator namespace, named by the server's `--upstream-secret` flag (default
//! `oauth-operator-upstream-secrets`). One Secret of a fixed name, because RBAC can then
//! give the token server `get`/`list`/`watch` on that Secret alone (`resourceNames`), as
//! for the signing-key Secret, instead of reading Secrets in general; the server watches
//! it by name (`fieldSelector metadata.name=...`).

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// An upstream OpenID Connect provider the token server's users may sign in through. It must live in the operator's namespace; the token server reads no other. The sign-in page shows a button "Sign in with <displayName>" for each.
// kube's repeated `printcolumn(type_ = ...)` reads as duplicated attributes to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "oauth-operator.dev",
    version = "v1alpha1",
    kind = "OAuthUpstream",
    namespaced,
    shortname = "oauthupstream",
    category = "oauth",
    doc = "An upstream OpenID Connect provider that users may sign in through: the token server signs them in there and issues its own tokens.",
    printcolumn(name = "Issuer", type_ = "string", json_path = ".spec.issuer"),
    printcolumn(name = "Client ID", type_ = "string", json_path = ".spec.clientId"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct OAuthUpstreamSpec {
    /// The provider's name on the sign-in page's button: "Sign in with <displayName>".
    #[schemars(length(min = 1, max = 100))]
    pub display_name: String,

    /// The provider's issuer URL, exactly as its ID tokens carry it in `iss` (its discovery document is `<issuer>/.well-known/openid-configuration`). `https`, or `http` only for the loopback hosts localhost, 127.0.0.1 and [::1].
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getHost() != ''").message("spec.issuer must be an absolute URL"))]
    #[x_kube(validation = Rule::new(
        "!isURL(self) || url(self).getScheme() == 'https' || (url(self).getScheme() == 'http' && url(self).getHostname() in ['localhost', '127.0.0.1', '::1'])"
    ).message("spec.issuer must use https (http only for localhost, 127.0.0.1 and [::1])"))]
    #[x_kube(validation = Rule::new("!self.contains('?') && !self.contains('#')").message("spec.issuer must have no query or fragment"))]
    pub issuer: String,

    /// The client id the token server is registered under at the provider. Register there the redirect URI `<this server's issuer>/authorize/callback`.
    #[schemars(length(min = 1, max = 256))]
    pub client_id: String,

    /// The key, in the upstream Secret of the operator namespace (the server's `--upstream-secret`, default `oauth-operator-upstream-secrets`), that holds this provider's client secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub client_secret_key: String,

    /// The scopes asked of the provider; must include `openid`. Add the provider's groups scope (often `groups`) to receive groups.
    #[serde(default = "default_scopes")]
    #[schemars(length(min = 1, max = 32), inner(length(min = 1, max = 128)))]
    #[x_kube(validation = Rule::new("self.exists(s, s == 'openid')").message("spec.scopes must include openid"))]
    pub scopes: Vec<String>,

    /// Which claims of the provider's ID token become the user's username, name, email and groups. The subject is always the provider's `sub`.
    #[serde(default)]
    pub claims: ClaimMapping,
}

/// Names of the provider's ID-token claims to read the user from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimMapping {
    /// The claim holding the username (our `preferred_username`); the provider's `sub` when the token lacks it.
    #[serde(default = "default_username")]
    #[schemars(length(min = 1, max = 128))]
    pub username: String,
    /// The claim holding the user's full name (our `name`).
    #[serde(default = "default_name")]
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    /// The claim holding the email address (our `email`); dropped when the token says `email_verified: false`.
    #[serde(default = "default_email")]
    #[schemars(length(min = 1, max = 128))]
    pub email: String,
    /// The claim holding the user's groups (a list of strings, or one string). They are filtered by each client's `allowedGroups`, as a built-in user's are.
    #[serde(default = "default_groups")]
    #[schemars(length(min = 1, max = 128))]
    pub groups: String,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        ClaimMapping {
            username: default_username(),
            name: default_name(),
            email: default_email(),
            groups: default_groups(),
        }
    }
}

fn default_scopes() -> Vec<String> {
    ["openid", "profile", "email"].map(String::from).to_vec()
}

fn default_username() -> String {
    "preferred_username".into()
}

fn default_name() -> String {
    "name".into()
}

fn default_email() -> String {
    "email".into()
}

fn default_groups() -> String {
    "groups".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_scopes_and_claims() {
        let spec: OAuthUpstreamSpec = serde_json::from_value(serde_json::json!({
            "displayName": "Corp", "issuer": "https://id.corp.test",
            "clientId": "c", "clientSecretKey": "corp"
        }))
        .expect("parses");
        assert_eq!(spec.scopes, ["openid", "profile", "email"]);
        assert_eq!(spec.claims, ClaimMapping::default());
        assert_eq!(spec.claims.username, "preferred_username");
    }
}
