use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A user of the token server's built-in user list, for small installations and tests (larger ones sign in through an upstream identity provider). The resource's name is the username; it must live in the operator's namespace, where only the operator's administrators may write, and the token server reads no other. The password is held as an argon2id hash, never in plaintext: `oauth-operator hash-password` makes one.
// kube's repeated `printcolumn(type_ = ...)` reads as duplicated attributes to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "oauth-operator.dev",
    version = "v1alpha1",
    kind = "OAuthUser",
    namespaced,
    shortname = "oauthuser",
    category = "oauth",
    doc = "A user of the token server's built-in user list: the name is the username, the password an argon2id hash.",
    printcolumn(name = "Email", type_ = "string", json_path = ".spec.email"),
    printcolumn(name = "Enabled", type_ = "boolean", json_path = ".spec.enabled"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct OAuthUserSpec {
    /// The user's full name: the ID token's `name` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 200))]
    pub display_name: Option<String>,

    /// The user's email address: the ID token's `email` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 254), regex(pattern = r"^[^@\s]+@[^@\s]+$"))]
    pub email: Option<String>,

    /// Groups the user belongs to. They become the `groups` claim of ID tokens and join the `roles` claim of access tokens (after the operator's default role), filtered by each client's `allowedGroups`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 128)))]
    #[x_kube(validation = Rule::new("self.all(g, self.exists_one(h, h == g))").message("spec.groups must not repeat a group"))]
    pub groups: Vec<String>,

    /// Whether the user may sign in. Disabling a user refuses new sign-ins at once and ends the user's tokens: introspection and userinfo answer them as inactive.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// The argon2id hash of the password, as a PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`), e.g. from `oauth-operator hash-password`.
    #[schemars(
        length(min = 1, max = 512),
        regex(
            pattern = r"^\$argon2id\$v=19\$m=[0-9]+,t=[0-9]+,p=[0-9]+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$"
        )
    )]
    pub password_hash: String,
}

fn default_true() -> bool {
    true
}
