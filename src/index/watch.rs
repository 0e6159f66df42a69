//! Feeds the [`Index`] from kube-runtime watchers: verifiers in the watched namespaces,
//! revocations, users, upstream providers, ServiceAccounts, the one signing-key Secret and the one
//! upstream Secret. One way only: API server -> watch -> index.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;

use super::{Index, Watch};
use crate::api::{
    InitialAccessTokenVerifier, OAuthClientVerifier, OAuthResource, OAuthUpstream, OAuthUser,
    RevokedToken,
};
use crate::auth::keys::{KeySet, SECRET_KEY, StoredKeys};
use crate::auth::secret::SecretString;

/// What a watch tells the index: one object changed or went, or the complete list after a
/// (re)list, which replaces everything known before (objects deleted while the watch was
/// down are simply not in it).
enum Change<K> {
    Applied(K),
    Deleted(K),
    Listed(Vec<K>),
}

/// Follows `api` until the stream ends, handing every change to `on`. Watch errors back
/// off and retry; meanwhile the index keeps serving what it knew, and `watch` is reported
/// disconnected.
async fn follow<K>(
    api: Api<K>,
    config: watcher::Config,
    watch: Watch,
    index: &Index,
    mut on: impl FnMut(Change<K>),
) where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let stream = watcher::watcher(api, config)
        .backoff(crate::watch_backoff::WatchBackoff::default())
        .map_err(|e| tracing::warn!(error = %e, ?watch, "watch failed; retrying"));
    futures::pin_mut!(stream);
    let mut listing: Vec<K> = Vec::new();
    while let Some(event) = stream.next().await {
        index.watch_result(watch, event.is_ok());
        match event {
            Ok(Event::Apply(k)) => on(Change::Applied(k)),
            Ok(Event::Delete(k)) => on(Change::Deleted(k)),
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitApply(k)) => listing.push(k),
            Ok(Event::InitDone) => on(Change::Listed(std::mem::take(&mut listing))),
            Err(()) => {}
        }
    }
}

/// The namespace and name of a watched object.
fn key(meta: &kube::api::ObjectMeta) -> Option<(&str, &str)> {
    Some((meta.namespace.as_deref()?, meta.name.as_deref()?))
}

/// Keeps the clients of one scope (`namespace`, or all) in `index`.
pub async fn verifiers(
    api: Api<OAuthClientVerifier>,
    namespace: Option<String>,
    index: Arc<Index>,
) {
    let config = watcher::Config::default().any_semantic();
    follow(api, config, Watch::Clients, &index, |change| match change {
        Change::Applied(v) => index.apply_verifier(&v),
        Change::Deleted(v) => {
            if let Some((ns, name)) = key(&v.metadata) {
                index.delete_verifier(ns, name);
            }
        }
        Change::Listed(all) => {
            index.reset_verifiers(namespace.as_deref(), all.iter());
            tracing::info!(clients = index.len(), "client index synced");
        }
    })
    .await;
}

/// Keeps the UIDs of the ServiceAccounts of one scope in `index`: a ServiceAccount token
/// is accepted only while the account it names exists with the UID it names.
pub async fn service_accounts(
    api: Api<ServiceAccount>,
    namespace: Option<String>,
    index: Arc<Index>,
) {
    let config = watcher::Config::default().any_semantic();
    let uid = |sa: &ServiceAccount| sa.metadata.uid.clone();
    follow(
        api,
        config,
        Watch::ServiceAccounts,
        &index,
        |change| match change {
            Change::Applied(sa) => {
                if let (Some((ns, name)), Some(uid)) = (key(&sa.metadata), uid(&sa)) {
                    index.apply_service_account(ns, name, &uid);
                }
            }
            Change::Deleted(sa) => {
                if let Some((ns, name)) = key(&sa.metadata) {
                    index.delete_service_account(ns, name);
                }
            }
            Change::Listed(all) => index.reset_service_accounts(
                namespace.as_deref(),
                all.iter().filter_map(|sa| {
                    let (ns, name) = key(&sa.metadata)?;
                    Some((ns, name, sa.metadata.uid.as_deref()?))
                }),
            ),
        },
    )
    .await;
}

/// Keeps the `OAuthResource`s of one scope (their claims and grants) in `index`.
pub async fn resources(api: Api<OAuthResource>, namespace: Option<String>, index: Arc<Index>) {
    let config = watcher::Config::default().any_semantic();
    follow(
        api,
        config,
        Watch::Resources,
        &index,
        |change| match change {
            Change::Applied(r) => index.apply_resource(&r),
            Change::Deleted(r) => {
                if let Some((ns, name)) = key(&r.metadata) {
                    index.delete_resource(ns, name);
                }
            }
            Change::Listed(all) => index.reset_resources(namespace.as_deref(), all.iter()),
        },
    )
    .await;
}

/// Keeps every namespace's labels in `index`, for grants by namespace selector; only
/// their metadata is fetched.
pub async fn namespaces(api: Api<k8s_openapi::api::core::v1::Namespace>, index: Arc<Index>) {
    let config = watcher::Config::default().any_semantic();
    let labels = |n: &k8s_openapi::api::core::v1::Namespace| {
        (
            n.metadata.name.clone().unwrap_or_default(),
            n.metadata.labels.clone().unwrap_or_default(),
        )
    };
    follow(
        api,
        config,
        Watch::Namespaces,
        &index,
        |change| match change {
            Change::Applied(n) => {
                let (name, l) = labels(&n);
                index.apply_namespace(&name, l);
            }
            Change::Deleted(n) => {
                index.delete_namespace(n.metadata.name.as_deref().unwrap_or_default())
            }
            Change::Listed(all) => index.reset_namespaces(all.iter().map(labels)),
        },
    )
    .await;
}

/// Keeps the initial access tokens of one scope in `index`, like [`verifiers`].
pub async fn token_verifiers(
    api: Api<InitialAccessTokenVerifier>,
    namespace: Option<String>,
    index: Arc<Index>,
) {
    let config = watcher::Config::default().any_semantic();
    follow(api, config, Watch::Tokens, &index, |change| match change {
        Change::Applied(v) => index.apply_token_verifier(&v),
        Change::Deleted(v) => {
            if let Some((ns, name)) = key(&v.metadata) {
                index.delete_token_verifier(ns, name);
            }
        }
        Change::Listed(all) => index.reset_token_verifiers(namespace.as_deref(), all.iter()),
    })
    .await;
}

/// Keeps the signing keys in `index` (the Secret is watched by name only: the server may
/// read no other Secret).
pub async fn signing_keys(api: Api<Secret>, name: String, index: Arc<Index>) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    follow(api, config, Watch::Keys, &index, |change| match change {
        Change::Applied(s) => index.set_keys(load(&s)),
        Change::Deleted(_) => index.set_keys(None),
        Change::Listed(found) => match found.first() {
            Some(s) => index.set_keys(load(s)),
            None => {
                tracing::warn!(secret = %name, "signing-key Secret not found; is the controller running?");
                index.set_keys(None);
            }
        },
    })
    .await;
}

fn load(secret: &Secret) -> Option<KeySet> {
    let data = secret.data.as_ref()?.get(SECRET_KEY)?;
    match StoredKeys::from_json(&data.0).and_then(|k| KeySet::load(&k)) {
        Ok(keys) => {
            let now = jiff::Timestamp::now().as_second();
            tracing::info!(signing = %keys.signer(now).kid, published = keys.jwks.keys.len(), "signing keys loaded");
            Some(keys)
        }
        Err(e) => {
            tracing::error!(error = %e, "signing-key Secret is unusable");
            None
        }
    }
}

/// Keeps revocations (in the operator namespace) in `index`, so every replica refuses a
/// revoked token.
pub async fn revocations(api: Api<RevokedToken>, index: Arc<Index>) {
    let entry = |r: &RevokedToken| (r.spec.jti.clone(), r.spec.expires_at.0.as_second());
    let config = watcher::Config::default().any_semantic();
    follow(
        api,
        config,
        Watch::Revocations,
        &index,
        |change| match change {
            Change::Applied(r) => {
                let (jti, exp) = entry(&r);
                index.revoke(&jti, exp);
            }
            // A deleted record is an expired one: nothing to undo.
            Change::Deleted(_) => {}
            Change::Listed(all) => {
                index.reset_revoked(all.iter().map(entry), jiff::Timestamp::now().as_second())
            }
        },
    )
    .await;
}

/// Keeps the built-in users (of the operator namespace) in `index`.
pub async fn users(api: Api<OAuthUser>, index: Arc<Index>) {
    let config = watcher::Config::default().any_semantic();
    follow(api, config, Watch::Users, &index, |change| match change {
        Change::Applied(u) => index.apply_user(&u),
        Change::Deleted(u) => {
            if let Some(name) = u.metadata.name.as_deref() {
                index.delete_user(name);
            }
        }
        Change::Listed(all) => index.reset_users(all.iter()),
    })
    .await;
}

/// Keeps the upstream identity providers (of the operator namespace) in `index`.
pub async fn upstreams(api: Api<OAuthUpstream>, index: Arc<Index>) {
    let config = watcher::Config::default().any_semantic();
    follow(
        api,
        config,
        Watch::Upstreams,
        &index,
        |change| match change {
            Change::Applied(u) => index.apply_upstream(&u),
            Change::Deleted(u) => {
                if let Some(name) = u.metadata.name.as_deref() {
                    index.delete_upstream(name);
                }
            }
            Change::Listed(all) => index.reset_upstreams(all.iter()),
        },
    )
    .await;
}

/// Keeps the upstream providers' client secrets in `index`: the one upstream Secret,
/// watched by name like the signing keys. Missing, it leaves the index ready (only the
/// upstream sign-ins fail), with a warning.
pub async fn upstream_secrets(api: Api<Secret>, name: String, index: Arc<Index>) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let values = |s: &Secret| -> std::collections::HashMap<String, SecretString> {
        s.data
            .iter()
            .flatten()
            .filter_map(|(k, v)| match String::from_utf8(v.0.clone()) {
                Ok(text) => Some((k.clone(), SecretString::new(text.trim().to_string()))),
                Err(_) => {
                    tracing::warn!(secret = %name, key = %k, "an upstream client secret is not UTF-8; ignored");
                    None
                }
            })
            .collect()
    };
    follow(
        api,
        config,
        Watch::UpstreamSecret,
        &index,
        |change| match change {
            Change::Applied(s) => index.set_upstream_secrets(values(&s)),
            Change::Deleted(_) => index.set_upstream_secrets(Default::default()),
            Change::Listed(found) => match found.first() {
                Some(s) => index.set_upstream_secrets(values(s)),
                None => {
                    if !index.upstreams().is_empty() {
                        tracing::warn!(secret = %name, "upstream Secret not found: sign-ins through upstream providers fail until it exists");
                    }
                    index.set_upstream_secrets(Default::default());
                }
            },
        },
    )
    .await;
}
