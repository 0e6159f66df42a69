//! The Secret holding the token server's JWT signing keys: created once, never overwritten.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};

use super::Error;
use crate::api::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::auth::keys::{SECRET_KEY, StoredKeys};

/// Creates the signing-key Secret if it does not exist. An existing one is left exactly
/// as it is, whatever it holds: tokens signed with its keys must keep verifying.
pub async fn ensure(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    algorithm: jsonwebtoken::Algorithm,
) -> Result<(), Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let wrap = |source| Error::EnsureSigningKeys {
        name: name.to_string(),
        source,
    };
    if api.get_opt(name).await.map_err(wrap)?.is_some() {
        return Ok(());
    }
    let keys = StoredKeys::generate(algorithm)?;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_string(),
                MANAGED_BY.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            SECRET_KEY.to_string(),
            ByteString(keys.to_json()?.into_bytes()),
        )])),
        ..Secret::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            tracing::info!(secret = name, namespace, kid = %keys.active, "created signing keys");
            Ok(())
        }
        // Another replica won the race: its keys stand.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(wrap(e)),
    }
}
