//! The credentials Secret of an OAuthClient, built as a pure function.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::api::ObjectMeta;

use super::secrets::{CREATED_ANNOTATION, created_annotation};
use crate::api::{MANAGED_BY, MANAGED_BY_LABEL, OAuthClient};

/// Label naming the OAuthClient a Secret belongs to.
pub const CLIENT_LABEL: &str = "oauth-operator.dev/client";

/// The Secret a workload mounts, owned by the client so that it is garbage-collected with
/// it. The user's extra labels and annotations come first; the operator's own win.
pub fn build(
    client: &OAuthClient,
    secret_name: &str,
    data: BTreeMap<String, ByteString>,
    created: &BTreeMap<String, Timestamp>,
) -> Secret {
    let extra = client.spec.credentials_secret.clone().unwrap_or_default();
    let mut labels = extra.labels;
    labels.insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string());
    labels.insert(
        CLIENT_LABEL.to_string(),
        client.metadata.name.clone().unwrap_or_default(),
    );
    let mut annotations = extra.annotations;
    annotations.insert(CREATED_ANNOTATION.to_string(), created_annotation(created));
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name.to_string()),
            namespace: client.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: client.controller_owner_ref(&()).map(|o| vec![o]),
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

/// Whether two Secrets differ in what the controller manages: data, labels, annotations.
pub fn differs(current: &Secret, desired: &Secret) -> bool {
    let subset = |want: &Option<BTreeMap<String, String>>,
                  have: &Option<BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    current.data != desired.data
        || !subset(&desired.metadata.labels, &current.metadata.labels)
        || !subset(&desired.metadata.annotations, &current.metadata.annotations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::OAuthClientSpec;
    use crate::controller::secrets::{bytes, created_times};

    fn client() -> OAuthClient {
        let mut c = OAuthClient::new(
            "billing",
            serde_json::from_value::<OAuthClientSpec>(serde_json::json!({
                "credentialsSecret": {"labels": {"team": "a", MANAGED_BY_LABEL: "someone-else"}, "annotations": {"note": "x"}}
            }))
            .expect("spec"),
        );
        c.metadata.namespace = Some("team-a".into());
        c.metadata.uid = Some("uid-1".into());
        c
    }

    #[test]
    fn built_secret_is_owned_labelled_and_records_creation_times() {
        let c = client();
        let created = BTreeMap::from([("a".to_string(), Timestamp::UNIX_EPOCH)]);
        let s = build(
            &c,
            "billing-credentials",
            BTreeMap::from([("k".into(), bytes("v"))]),
            &created,
        );
        assert!(is_owned_by(&s, &c));
        let labels = s.metadata.labels.clone().expect("labels");
        assert_eq!(labels["team"], "a");
        assert_eq!(
            labels[MANAGED_BY_LABEL], MANAGED_BY,
            "the operator's label wins"
        );
        assert_eq!(
            s.metadata.annotations.clone().expect("annotations")["note"],
            "x"
        );
        assert_eq!(created_times(Some(&s)), created);
    }

    #[test]
    fn a_secret_of_another_client_is_not_ours() {
        let c = client();
        let s = build(&c, "n", BTreeMap::new(), &BTreeMap::new());
        let mut other = client();
        other.metadata.uid = Some("uid-2".into());
        assert!(!is_owned_by(&s, &other));
    }

    #[test]
    fn extra_metadata_on_the_live_secret_is_not_a_difference() {
        let c = client();
        let desired = build(&c, "n", BTreeMap::new(), &BTreeMap::new());
        let mut live = desired.clone();
        live.metadata
            .labels
            .get_or_insert_default()
            .insert("added-by-someone".into(), "x".into());
        assert!(!differs(&live, &desired));
        live.data = Some(BTreeMap::from([("k".into(), bytes("v"))]));
        assert!(differs(&live, &desired));
    }
}
