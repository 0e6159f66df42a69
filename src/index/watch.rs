//! Feeds the [`Index`] from kube-runtime watchers: verifiers in the watched namespaces and
//! the one signing-key Secret. One way only: API server -> watch -> index.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

use super::{Index, Watch};
use crate::api::{InitialAccessTokenVerifier, OAuthClientVerifier, RevokedToken};
use crate::auth::keys::{KeySet, SECRET_KEY, StoredKeys};

/// Watches verifiers through `api` (scoped to `namespace`, or all) until the stream ends,
/// keeping `index` current. Watch errors back off and retry; the index keeps serving what
/// it knew meanwhile.
pub async fn verifiers(
    api: Api<OAuthClientVerifier>,
    namespace: Option<String>,
    index: Arc<Index>,
) {
    let mut buffer: Vec<OAuthClientVerifier> = Vec::new();
    let stream = watcher::watcher(api, watcher::Config::default().any_semantic())
        .backoff(crate::watch_backoff::WatchBackoff::default())
        .map_err(|e| tracing::warn!(error = %e, "verifier watch failed; retrying"));
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        index.watch_result(Watch::Clients, event.is_ok());
        match event {
            Ok(Event::Apply(v)) => index.apply_verifier(&v),
            Ok(Event::Delete(v)) => {
                if let (Some(ns), Some(name)) = (&v.metadata.namespace, &v.metadata.name) {
                    index.delete_verifier(ns, name);
                }
            }
            Ok(Event::Init) => buffer.clear(),
            Ok(Event::InitApply(v)) => buffer.push(v),
            Ok(Event::InitDone) => {
                index.reset_verifiers(namespace.as_deref(), buffer.iter());
                tracing::info!(clients = index.len(), "client index synced");
                buffer = Vec::new();
            }
            Err(()) => {}
        }
    }
}

/// Watches initial-access-token verifiers in one scope, like [`verifiers`].
pub async fn token_verifiers(
    api: Api<InitialAccessTokenVerifier>,
    namespace: Option<String>,
    index: Arc<Index>,
) {
    let mut buffer: Vec<InitialAccessTokenVerifier> = Vec::new();
    let stream = watcher::watcher(api, watcher::Config::default().any_semantic())
        .backoff(crate::watch_backoff::WatchBackoff::default())
        .map_err(|e| tracing::warn!(error = %e, "initial-access-token watch failed; retrying"));
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        index.watch_result(Watch::Tokens, event.is_ok());
        match event {
            Ok(Event::Apply(v)) => index.apply_token_verifier(&v),
            Ok(Event::Delete(v)) => {
                if let (Some(ns), Some(name)) = (&v.metadata.namespace, &v.metadata.name) {
                    index.delete_token_verifier(ns, name);
                }
            }
            Ok(Event::Init) => buffer.clear(),
            Ok(Event::InitApply(v)) => buffer.push(v),
            Ok(Event::InitDone) => {
                index.reset_token_verifiers(
                    namespace.as_deref(),
                    std::mem::take(&mut buffer).iter(),
                );
            }
            Err(()) => {}
        }
    }
}

/// Watches the signing-key Secret (by name only: the server may read no other Secret).
pub async fn signing_keys(api: Api<Secret>, name: String, index: Arc<Index>) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher::watcher(api, config)
        .backoff(crate::watch_backoff::WatchBackoff::default())
        .map_err(|e| tracing::warn!(error = %e, "signing-key watch failed; retrying"));
    futures::pin_mut!(stream);
    let mut seen = false;
    while let Some(event) = stream.next().await {
        index.watch_result(Watch::Keys, event.is_ok());
        match event {
            Ok(Event::Apply(s)) | Ok(Event::InitApply(s)) => {
                seen = true;
                index.set_keys(load(&s));
            }
            Ok(Event::Delete(_)) => index.set_keys(None),
            Ok(Event::Init) => seen = false,
            Ok(Event::InitDone) => {
                if !seen {
                    tracing::warn!(secret = %name, "signing-key Secret not found; is the controller running?");
                    index.set_keys(None);
                }
            }
            Err(()) => {}
        }
    }
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

/// Watches revocations in the operator namespace, so every replica refuses a revoked token.
pub async fn revocations(api: Api<RevokedToken>, index: Arc<Index>) {
    let mut buffer: Vec<(String, i64)> = Vec::new();
    let stream = watcher::watcher(api, watcher::Config::default().any_semantic())
        .backoff(crate::watch_backoff::WatchBackoff::default())
        .map_err(|e| tracing::warn!(error = %e, "revocation watch failed; retrying"));
    futures::pin_mut!(stream);
    let entry = |r: &RevokedToken| (r.spec.jti.clone(), r.spec.expires_at.0.as_second());
    while let Some(event) = stream.next().await {
        index.watch_result(Watch::Revocations, event.is_ok());
        match event {
            Ok(Event::Apply(r)) => {
                let (jti, exp) = entry(&r);
                index.revoke(&jti, exp);
            }
            // A deleted record is an expired one: nothing to undo.
            Ok(Event::Delete(_)) => {}
            Ok(Event::Init) => buffer.clear(),
            Ok(Event::InitApply(r)) => buffer.push(entry(&r)),
            Ok(Event::InitDone) => {
                index.reset_revoked(
                    std::mem::take(&mut buffer),
                    jiff::Timestamp::now().as_second(),
                );
            }
            Err(()) => {}
        }
    }
}
