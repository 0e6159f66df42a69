//! The credentials Secret of an OAuthClient, built as a pure function.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::api::ObjectMeta;

use crate::api::{MANAGED_BY, MANAGED_BY_LABEL, OAuthClient};
use crate::auth::secret::SecretString;

/// Key of the client id in the Secret.
pub const CLIENT_ID_KEY: &str = "client_id";
/// Key of the client secret in the Secret.
pub const CLIENT_SECRET_KEY: &str = "client_secret";
/// Key of the token endpoint URL in the Secret.
pub const TOKEN_ENDPOINT_KEY: &str = "token_endpoint";
/// Label naming the OAuthClient a Secret belongs to.
pub const CLIENT_LABEL: &str = "oauth-operator.dev/client";

/// The Secret a workload mounts: client id, secret and token endpoint, owned by the client
/// so that it is garbage-collected with it.
pub fn build(
    client: &OAuthClient,
    client_id: &str,
    secret_name: &str,
    secret: &SecretString,
    token_endpoint: &str,
) -> Secret {
    let owner = client.controller_owner_ref(&());
    let labels = BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
        (
            CLIENT_LABEL.to_string(),
            client.metadata.name.clone().unwrap_or_default(),
        ),
    ]);
    let data = BTreeMap::from([
        (
            CLIENT_ID_KEY.to_string(),
            ByteString(client_id.as_bytes().to_vec()),
        ),
        (
            CLIENT_SECRET_KEY.to_string(),
            ByteString(secret.expose().as_bytes().to_vec()),
        ),
        (
            TOKEN_ENDPOINT_KEY.to_string(),
            ByteString(token_endpoint.as_bytes().to_vec()),
        ),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name.to_string()),
            namespace: client.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Secret::default()
    }
}

/// Whether `secret` is controlled by `client` (so the controller may rely on it).
pub fn is_owned_by(secret: &Secret, client: &OAuthClient) -> bool {
    let Some(uid) = client.metadata.uid.as_deref() else {
        return false;
    };
    secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

/// The client secret held in `secret`, if any.
pub fn client_secret(secret: &Secret) -> Option<SecretString> {
    let bytes = secret.data.as_ref()?.get(CLIENT_SECRET_KEY)?;
    let value = String::from_utf8(bytes.0.clone()).ok()?;
    (!value.is_empty()).then(|| SecretString::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OAuthClientSpec;

    fn client() -> OAuthClient {
        let mut c = OAuthClient::new(
            "billing",
            serde_json::from_value::<OAuthClientSpec>(serde_json::json!({})).expect("spec"),
        );
        c.metadata.namespace = Some("team-a".into());
        c.metadata.uid = Some("uid-1".into());
        c
    }

    #[test]
    fn built_secret_is_owned_labelled_and_holds_the_credentials() {
        let c = client();
        let value = SecretString::new("s3cret".into());
        let s = build(&c, "id-1", "billing-credentials", &value, "http://t/token");
        assert!(is_owned_by(&s, &c));
        assert_eq!(s.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(MANAGED_BY_LABEL))
                .map(String::as_str),
            Some(MANAGED_BY)
        );
        assert_eq!(client_secret(&s), Some(value));
        let data = s.data.expect("data");
        assert_eq!(data[CLIENT_ID_KEY].0, b"id-1");
        assert_eq!(data[TOKEN_ENDPOINT_KEY].0, b"http://t/token");
    }

    #[test]
    fn a_secret_of_another_client_is_not_ours() {
        let c = client();
        let s = build(&c, "id-1", "n", &SecretString::new("x".into()), "u");
        let mut other = client();
        other.metadata.uid = Some("uid-2".into());
        assert!(!is_owned_by(&s, &other));
    }
}
