//! Index tests, without a cluster: for each kind the index holds (client verifiers,
//! initial access token verifiers, revocations, signing keys), what an applied, a deleted
//! and a listed object do, and when the index is ready.

use super::*;
use crate::api::{
    InitialAccessTokenVerifierSpec, OAuthClientVerifierSpec, SecretVerifier, SourceRef,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};

fn source() -> SourceRef {
    SourceRef {
        secret_name: "s".into(),
        key: "k".into(),
        uid: "u".into(),
        version: "1".into(),
    }
}

fn keys() -> KeySet {
    KeySet::load(&crate::auth::keys::StoredKeys::generate_es256().expect("gen")).expect("load")
}

fn token_verifier(ns: &str, name: &str, token_id: &str) -> InitialAccessTokenVerifier {
    let mut v = InitialAccessTokenVerifier::new(
        name,
        InitialAccessTokenVerifierSpec {
            token_id: token_id.into(),
            sha256: crate::auth::hash::Verifier::of_generated("t").sha256_field(),
            hash: None,
            source: source(),
            expires_at: Time(jiff::Timestamp::from_second(2_000_000_000).expect("time")),
            enforced_policies: vec![],
        },
    );
    v.metadata.namespace = Some(ns.into());
    v.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "oauth-operator.dev/v1alpha1".into(),
        kind: "InitialAccessToken".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    v
}

/// Lists every kind once, as the watches do at start.
fn list_everything(index: &Index, scope: Option<&str>) {
    index.reset_verifiers(scope, []);
    index.reset_token_verifiers(scope, []);
    index.reset_service_accounts(scope, []);
    index.reset_resources(scope, []);
    index.reset_resources(scope, []);
    index.reset_users([]);
    index.reset_upstreams([]);
    index.set_upstream_secrets(Default::default());
}

fn user(name: &str, uid: &str) -> crate::api::OAuthUser {
    let mut u = crate::api::OAuthUser::new(
        name,
        crate::api::OAuthUserSpec {
            display_name: None,
            email: None,
            groups: vec!["dev".into()],
            enabled: true,
            password_hash: "$argon2id$x".into(),
        },
    );
    u.metadata.uid = Some(uid.into());
    u
}

fn verifier(ns: &str, name: &str, id: &str) -> OAuthClientVerifier {
    let mut v = OAuthClientVerifier::new(
        name,
        OAuthClientVerifierSpec {
            client_id: id.into(),
            labels: Default::default(),
            display_name: None,
            client_type: Default::default(),
            active: true,
            not_before: None,
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["read".into()],
            audiences: vec![],
            roles: vec!["member".into()],
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            allowed_groups: None,
            refresh: None,
            access_token_lifetime_seconds: 600,
            secrets: vec![SecretVerifier {
                name: "default".into(),
                sha256: None,
                hash: Some("$argon2id$x".into()),
                source: SourceRef {
                    secret_name: "s".into(),
                    key: "k".into(),
                    uid: "u".into(),
                    version: "1".into(),
                },
                expires_at: None,
            }],
            registration_access_token_hash: None,
            jwks: None,
            service_accounts: vec![],
            federated: Vec::new(),
        },
    );
    v.metadata.namespace = Some(ns.into());
    v
}

#[test]
fn revocations_survive_a_relist_until_they_expire() {
    let index = Index::default();
    assert!(!index.is_revoked("j1"));
    index.revoke("j1", 100);
    assert!(index.is_revoked("j1"));
    index.reset_revoked([("j1".to_string(), 100), ("j2".to_string(), 50)], 60);
    assert!(index.is_revoked("j1"));
    assert!(!index.is_revoked("j2"), "expired revocations are dropped");
}

#[test]
fn apply_then_delete() {
    let index = Index::default();
    index.apply_verifier(&verifier("a", "one", "id-1"));
    let e = index.client("id-1").expect("indexed");
    assert_eq!(e.scopes, vec!["read".to_string()]);
    assert_eq!(e.secrets.len(), 1);
    assert!(e.secrets[0].is_valid_at(0));
    index.delete_verifier("a", "one");
    assert!(index.client("id-1").is_none());
    assert!(index.is_empty());
}

#[test]
fn reset_drops_what_the_new_list_lacks() {
    let index = Index::default();
    index.apply_verifier(&verifier("a", "one", "id-1"));
    let two = verifier("a", "two", "id-2");
    index.reset_verifiers(None, [&two]);
    assert!(index.client("id-1").is_none());
    assert!(index.client("id-2").is_some());
}

#[test]
fn reset_of_one_namespace_keeps_the_others() {
    let index = Index::with_scopes(vec![Some("a".into()), Some("b".into())]);
    index.apply_verifier(&verifier("a", "one", "id-1"));
    index.apply_verifier(&verifier("b", "two", "id-2"));
    index.reset_verifiers(Some("a"), []);
    assert!(index.client("id-1").is_none());
    assert!(index.client("id-2").is_some());
    index.set_keys(Some(
        KeySet::load(&crate::auth::keys::StoredKeys::generate_es256().expect("gen")).expect("load"),
    ));
    index.reset_token_verifiers(Some("a"), []);
    index.reset_service_accounts(Some("a"), []);
    index.reset_resources(Some("a"), []);
    index.reset_revoked([], 0);
    index.reset_users([]);
    index.reset_upstreams([]);
    index.set_upstream_secrets(Default::default());
    assert!(!index.is_ready(), "namespace b has not listed yet");
    index.reset_verifiers(Some("b"), []);
    assert!(
        !index.is_ready(),
        "namespace b's tokens have not listed yet"
    );
    index.reset_token_verifiers(Some("b"), []);
    index.reset_service_accounts(Some("b"), []);
    index.reset_resources(Some("b"), []);
    assert!(index.is_ready());
}

#[test]
fn a_changed_client_id_replaces_the_old_one() {
    let index = Index::default();
    index.apply_verifier(&verifier("a", "one", "id-1"));
    index.apply_verifier(&verifier("a", "one", "id-9"));
    assert!(index.client("id-1").is_none());
    assert!(index.client("id-9").is_some());
    assert_eq!(index.len(), 1);
}

#[test]
fn not_ready_until_every_watch_synced_and_keys_loaded() {
    let index = Index::default();
    assert!(!index.is_ready());
    index.reset_verifiers(None, []);
    index.reset_token_verifiers(None, []);
    index.reset_service_accounts(None, []);
    index.reset_resources(None, []);
    index.reset_revoked([], 0);
    index.reset_users([]);
    index.reset_upstreams([]);
    index.set_upstream_secrets(Default::default());
    assert!(!index.is_ready());
    index.set_keys(None);
    assert!(!index.is_ready());
    let keys = crate::auth::keys::StoredKeys::generate_es256().expect("gen");
    index.set_keys(Some(KeySet::load(&keys).expect("load")));
    assert!(index.is_ready());
}

#[test]
fn not_ready_until_resources_listed() {
    let index = Index::default();
    index.reset_verifiers(None, []);
    index.reset_token_verifiers(None, []);
    index.reset_service_accounts(None, []);
    index.reset_revoked([], 0);
    index.reset_users([]);
    index.reset_upstreams([]);
    index.set_upstream_secrets(Default::default());
    index.set_keys(Some(keys()));
    assert!(
        !index.is_ready(),
        "a claimed audience could be served to a client its resource does not grant"
    );
    index.reset_resources(None, []);
    assert!(index.is_ready());
}

#[test]
fn not_ready_until_initial_access_tokens_listed() {
    let index = Index::default();
    index.reset_verifiers(None, []);
    index.reset_revoked([], 0);
    index.reset_users([]);
    index.reset_upstreams([]);
    index.set_upstream_secrets(Default::default());
    index.set_keys(Some(keys()));
    assert!(
        !index.is_ready(),
        "a registration could be refused for a token not yet listed"
    );
    index.reset_token_verifiers(None, []);
    index.reset_service_accounts(None, []);
    index.reset_resources(None, []);
    assert!(index.is_ready());
}

#[test]
fn not_ready_until_revocations_listed() {
    let index = Index::default();
    list_everything(&index, None);
    index.set_keys(Some(keys()));
    assert!(
        !index.is_ready(),
        "a revoked token could introspect as active"
    );
    index.reset_revoked([], 0);
    assert!(index.is_ready());
}

#[test]
fn withdrawn_keys_make_the_index_unready_again() {
    let index = Index::default();
    list_everything(&index, None);
    index.reset_revoked([], 0);
    index.set_keys(Some(keys()));
    assert!(index.is_ready());
    assert!(index.keys().is_some());
    index.set_keys(None);
    assert!(index.keys().is_none());
    assert!(!index.is_ready(), "no key to sign with");
}

#[test]
fn initial_access_tokens_apply_and_delete_by_object() {
    let index = Index::default();
    index.apply_token_verifier(&token_verifier("a", "iat", "tid-1"));
    let e = index.initial_access_token("tid-1").expect("indexed");
    assert_eq!((e.namespace.as_str(), e.name.as_str()), ("a", "iat"));
    assert_eq!(e.owner_uid.as_deref(), Some("uid-iat"));
    assert_eq!(e.expires_at, 2_000_000_000);
    // A rotated token: the same object with a new token id replaces the old one.
    index.apply_token_verifier(&token_verifier("a", "iat", "tid-2"));
    assert!(index.initial_access_token("tid-1").is_none());
    assert!(index.initial_access_token("tid-2").is_some());
    index.delete_token_verifier("a", "iat");
    assert!(index.initial_access_token("tid-2").is_none());
}

#[test]
fn initial_access_tokens_reset_per_scope() {
    let index = Index::with_scopes(vec![Some("a".into()), Some("b".into())]);
    index.apply_token_verifier(&token_verifier("a", "one", "tid-a"));
    index.apply_token_verifier(&token_verifier("b", "two", "tid-b"));
    let fresh = token_verifier("a", "three", "tid-a3");
    index.reset_token_verifiers(Some("a"), [&fresh]);
    assert!(
        index.initial_access_token("tid-a").is_none(),
        "gone from the list"
    );
    assert!(index.initial_access_token("tid-a3").is_some());
    assert!(
        index.initial_access_token("tid-b").is_some(),
        "other scope kept"
    );
    index.reset_token_verifiers(None, []);
    index.reset_service_accounts(None, []);
    index.reset_resources(None, []);
    assert!(index.initial_access_token("tid-b").is_none(), "all scopes");
}

#[test]
fn an_object_without_namespace_is_ignored() {
    let index = Index::default();
    let mut v = verifier("a", "one", "id-1");
    v.metadata.namespace = None;
    index.apply_verifier(&v);
    assert!(index.client("id-1").is_none());
    let mut t = token_verifier("a", "iat", "tid");
    t.metadata.namespace = None;
    index.apply_token_verifier(&t);
    assert!(index.initial_access_token("tid").is_none());
}

#[test]
fn a_client_entry_carries_its_owner_uid_and_secret_expiry() {
    let index = Index::default();
    let mut v = verifier("a", "one", "id-1");
    v.spec.secrets[0].expires_at = Some(Time(jiff::Timestamp::from_second(100).expect("t")));
    v.metadata.owner_references = token_verifier("a", "one", "x").metadata.owner_references;
    index.apply_verifier(&v);
    let e = index.client("id-1").expect("indexed");
    assert_eq!(e.uid.as_deref(), Some("uid-one"));
    assert!(e.secrets[0].is_valid_at(99));
    assert!(!e.secrets[0].is_valid_at(100), "expired at its instant");
}

#[test]
fn a_revocation_replaced_by_a_relist_without_it_is_forgotten() {
    let index = Index::default();
    index.revoke("j1", 100);
    index.reset_revoked([("j2".to_string(), 100)], 10);
    assert!(!index.is_revoked("j1"), "the list is the truth");
    assert!(index.is_revoked("j2"));
}

#[test]
fn watch_results_report_disconnection_per_watch() {
    let index = Index::default();
    assert!(index.watches_connected());
    index.watch_result(Watch::Revocations, false);
    assert!(!index.watches_connected());
    index.watch_result(Watch::Keys, true);
    assert!(!index.watches_connected(), "another watch is still down");
    index.watch_result(Watch::Revocations, true);
    assert!(index.watches_connected());
}

#[test]
fn not_ready_until_users_listed() {
    let index = Index::default();
    index.reset_verifiers(None, []);
    index.reset_token_verifiers(None, []);
    index.reset_service_accounts(None, []);
    index.reset_resources(None, []);
    index.reset_revoked([], 0);
    index.reset_upstreams([]);
    index.set_upstream_secrets(Default::default());
    index.set_keys(Some(keys()));
    assert!(!index.is_ready(), "a user could be refused as unknown");
    index.reset_users([]);
    assert!(index.is_ready());
}

#[test]
fn users_are_found_by_name_and_by_subject_and_a_recreated_user_is_another_subject() {
    let index = Index::default();
    index.reset_users([&user("alice", "uid-1")]);
    assert_eq!(
        index.user("alice").map(|u| u.uid.clone()).as_deref(),
        Some("uid-1")
    );
    assert!(index.user_by_subject("uid-1").is_some());
    index.apply_user(&user("alice", "uid-2"));
    assert!(
        index.user_by_subject("uid-1").is_none(),
        "the old subject is gone"
    );
    assert!(index.user_by_subject("uid-2").is_some());
    index.delete_user("alice");
    assert!(index.user("alice").is_none());
    assert!(index.user_by_subject("uid-2").is_none());
}

#[test]
fn not_ready_until_service_accounts_listed() {
    let index = Index::default();
    index.reset_verifiers(None, []);
    index.reset_token_verifiers(None, []);
    index.reset_users([]);
    index.reset_upstreams([]);
    index.set_upstream_secrets(Default::default());
    index.reset_revoked([], 0);
    index.set_keys(Some(keys()));
    assert!(
        !index.is_ready(),
        "a token of a deleted ServiceAccount could pass"
    );
    index.reset_service_accounts(None, [("payments", "billing", "uid-1")]);
    index.reset_resources(None, []);
    assert!(index.is_ready());
    assert_eq!(
        index.service_account_uid("payments", "billing").as_deref(),
        Some("uid-1")
    );
    // Re-created under the same name: a new UID replaces the old.
    index.delete_service_account("payments", "billing");
    assert_eq!(index.service_account_uid("payments", "billing"), None);
    index.apply_service_account("payments", "billing", "uid-2");
    assert_eq!(
        index.service_account_uid("payments", "billing").as_deref(),
        Some("uid-2")
    );
    // A relist of another namespace keeps this one's.
    let scoped = Index::with_scopes(vec![Some("a".into()), Some("b".into())]);
    scoped.reset_service_accounts(Some("a"), [("a", "x", "1")]);
    scoped.reset_service_accounts(Some("b"), [("b", "y", "2")]);
    scoped.reset_service_accounts(Some("a"), []);
    assert_eq!(scoped.service_account_uid("a", "x"), None);
    assert_eq!(scoped.service_account_uid("b", "y").as_deref(), Some("2"));
}

#[test]
fn a_service_account_finds_its_one_client() {
    let index = Index::default();
    let sa = crate::api::ServiceAccountSubject {
        namespace: "payments".into(),
        name: "billing".into(),
    };
    let mut one = verifier("payments", "one", "id-1");
    one.spec.service_accounts = vec![sa.clone()];
    index.apply_verifier(&one);
    let found = index.client_of_service_account("payments", "billing");
    assert_eq!(found.map(|c| c.client_id.clone()).as_deref(), Some("id-1"));
    assert!(
        index
            .client_of_service_account("payments", "other")
            .is_none()
    );

    // Two clients for one ServiceAccount: a token must say which (client_id).
    let mut two = verifier("payments", "two", "id-2");
    two.spec.service_accounts = vec![sa];
    index.apply_verifier(&two);
    assert!(
        index
            .client_of_service_account("payments", "billing")
            .is_none()
    );
    index.delete_verifier("payments", "two");
    assert!(
        index
            .client_of_service_account("payments", "billing")
            .is_some()
    );
    // Changed to list no ServiceAccount: forgotten.
    one.spec.service_accounts.clear();
    index.apply_verifier(&one);
    assert!(
        index
            .client_of_service_account("payments", "billing")
            .is_none()
    );
}

#[test]
fn a_federated_identity_finds_its_one_client_under_its_issuer_only() {
    let index = Index::default();
    let sub = "system:serviceaccount:payments:billing";
    let mut one = verifier("payments", "one", "id-1");
    one.spec.federated = vec![crate::api::FederatedSubject {
        issuer: "https://other.cluster".into(),
        subject: sub.into(),
        audience: None,
    }];
    index.apply_verifier(&one);
    let found = index.client_of_federated("https://other.cluster", sub);
    assert_eq!(found.map(|c| c.client_id.clone()).as_deref(), Some("id-1"));
    // The same subject of this cluster, or of another issuer, is another workload.
    assert!(
        index
            .client_of_service_account("payments", "billing")
            .is_none()
    );
    assert!(
        index
            .client_of_federated("https://third.cluster", sub)
            .is_none()
    );
    assert!(index.client_of_federated("", sub).is_none());

    // A ServiceAccount of this cluster with the same name names its own client.
    let mut local = verifier("payments", "local", "id-2");
    local.spec.service_accounts = vec![crate::api::ServiceAccountSubject {
        namespace: "payments".into(),
        name: "billing".into(),
    }];
    index.apply_verifier(&local);
    let found = index.client_of_service_account("payments", "billing");
    assert_eq!(found.map(|c| c.client_id.clone()).as_deref(), Some("id-2"));
    let found = index.client_of_federated("https://other.cluster", sub);
    assert_eq!(found.map(|c| c.client_id.clone()).as_deref(), Some("id-1"));

    index.delete_verifier("payments", "one");
    assert!(
        index
            .client_of_federated("https://other.cluster", sub)
            .is_none()
    );
}
