//! The in-memory view the token server reads: client verifiers by client id, and the
//! signing keys. Fed by watches (see [`watch`]); read on every request without any API
//! call. Pure state with `apply` / `delete` / `reset`, so it is tested without a cluster.

pub mod watch;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::api::{InitialAccessTokenVerifier, OAuthClientVerifier};
use crate::auth::keys::KeySet;

/// What the token server knows of one client.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientEntry {
    pub client_id: String,
    pub namespace: String,
    pub name: String,
    pub active: bool,
    /// Tokens issued before this (Unix seconds) are no longer valid.
    pub not_before: Option<i64>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub roles: Vec<String>,
    pub access_token_lifetime_seconds: u32,
    /// Every secret the client may authenticate with.
    pub secrets: Vec<SecretHash>,
    /// For a dynamically registered client, the hash of its registration access token.
    pub registration_access_token_hash: Option<String>,
    /// The `OAuthClient`'s UID (its verifier's owner), which tokens carry as `client_uid`.
    pub uid: Option<String>,
}

/// What the token server knows of one initial access token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenEntry {
    pub namespace: String,
    /// The InitialAccessToken's name (its verifier has the same).
    pub name: String,
    /// The InitialAccessToken's UID, so a token of a deleted-and-recreated resource of
    /// the same name is not taken for the new one's.
    pub owner_uid: Option<String>,
    pub token_id: String,
    pub hash: String,
    /// Unix seconds.
    pub expires_at: i64,
}

impl TokenEntry {
    fn from_verifier(v: &InitialAccessTokenVerifier) -> Option<Self> {
        Some(TokenEntry {
            namespace: v.metadata.namespace.clone()?,
            name: v.metadata.name.clone()?,
            owner_uid: owner_uid(&v.metadata),
            token_id: v.spec.token_id.clone(),
            hash: v.spec.hash.clone(),
            expires_at: v.spec.expires_at.0.as_second(),
        })
    }
}

/// One accepted secret: its argon2id PHC string and when it stops being accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretHash {
    pub hash: String,
    /// Unix seconds; never when `None`.
    pub expires_at: Option<i64>,
}

impl SecretHash {
    /// Whether the secret is still accepted at `now` (Unix seconds).
    pub fn is_valid_at(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|t| now < t)
    }
}

impl ClientEntry {
    fn from_verifier(v: &OAuthClientVerifier) -> Option<Self> {
        let spec = &v.spec;
        Some(ClientEntry {
            client_id: spec.client_id.clone(),
            namespace: v.metadata.namespace.clone()?,
            name: v.metadata.name.clone()?,
            active: spec.active,
            not_before: spec.not_before.as_ref().map(|t| t.0.as_second()),
            grant_types: spec.grant_types.clone(),
            scopes: spec.scopes.clone(),
            audiences: spec.audiences.clone(),
            roles: spec.roles.clone(),
            access_token_lifetime_seconds: spec.access_token_lifetime_seconds,
            secrets: spec
                .secrets
                .iter()
                .map(|s| SecretHash {
                    hash: s.hash.clone(),
                    expires_at: s.expires_at.as_ref().map(|t| t.0.as_second()),
                })
                .collect(),
            registration_access_token_hash: spec.registration_access_token_hash.clone(),
            uid: owner_uid(&v.metadata),
        })
    }
}

/// The UID of the object that controls a verifier: the resource it was made for.
fn owner_uid(meta: &kube::api::ObjectMeta) -> Option<String> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.clone())
}

type ObjectKey = (String, String);

/// The watches feeding the index, to tell which one cannot reach the API server.
#[derive(Clone, Copy, Debug)]
pub enum Watch {
    Clients = 0,
    Tokens = 1,
    Revocations = 2,
    Keys = 3,
}

#[derive(Default)]
struct Clients {
    by_id: HashMap<String, Arc<ClientEntry>>,
    /// Which client id each verifier object serves, so a delete (or an id change) removes
    /// the right entry.
    by_object: HashMap<ObjectKey, String>,
}

impl Clients {
    fn apply(&mut self, entry: ClientEntry) {
        let key = (entry.namespace.clone(), entry.name.clone());
        if let Some(old_id) = self.by_object.get(&key)
            && *old_id != entry.client_id
        {
            self.by_id.remove(old_id);
        }
        self.by_object.insert(key, entry.client_id.clone());
        self.by_id.insert(entry.client_id.clone(), Arc::new(entry));
    }

    fn delete(&mut self, namespace: &str, name: &str) {
        if let Some(id) = self
            .by_object
            .remove(&(namespace.to_string(), name.to_string()))
        {
            self.by_id.remove(&id);
        }
    }

    /// Drops every entry of `scope` (a namespace, or all with `None`).
    fn clear(&mut self, scope: Option<&str>) {
        let doomed: Vec<ObjectKey> = self
            .by_object
            .keys()
            .filter(|(ns, _)| scope.is_none_or(|s| s == ns))
            .cloned()
            .collect();
        for (ns, name) in doomed {
            self.delete(&ns, &name);
        }
    }
}

/// The index. Cheap to share (`Arc`), safe to read from every request.
pub struct Index {
    clients: RwLock<Clients>,
    /// Revoked token ids, with the token's expiry (Unix seconds).
    revoked: RwLock<HashMap<String, i64>>,
    keys: RwLock<Option<Arc<KeySet>>>,
    /// Initial access tokens by their verifier object.
    tokens: RwLock<HashMap<ObjectKey, Arc<TokenEntry>>>,
    /// The watch scopes (namespaces, or `None` for all) expected to list before the index
    /// is complete, and those that have.
    scopes: Vec<Option<String>>,
    synced_scopes: RwLock<HashSet<Option<String>>>,
    keys_synced: AtomicBool,
    /// Per [`Watch`]: whether its last attempt failed (the API server unreachable, say).
    /// The index keeps serving what it has meanwhile.
    disconnected: [AtomicBool; 4],
}

impl Default for Index {
    fn default() -> Self {
        Index::with_scopes(vec![None])
    }
}

impl Index {
    /// An index fed by one watch of all namespaces.
    pub fn new() -> Arc<Self> {
        Arc::new(Index::default())
    }

    /// An index fed by one watch per scope: a namespace, or `None` for all of them.
    pub fn with_scopes(scopes: Vec<Option<String>>) -> Self {
        Index {
            clients: RwLock::default(),
            revoked: RwLock::default(),
            keys: RwLock::default(),
            tokens: RwLock::default(),
            scopes,
            synced_scopes: RwLock::default(),
            keys_synced: AtomicBool::new(false),
            disconnected: Default::default(),
        }
    }

    /// The client with this id, if the server should serve it.
    pub fn client(&self, client_id: &str) -> Option<Arc<ClientEntry>> {
        self.clients.read().ok()?.by_id.get(client_id).cloned()
    }

    /// How many clients are indexed.
    pub fn len(&self) -> usize {
        self.clients.read().map(|c| c.by_id.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds or replaces the entry of a verifier.
    pub fn apply_verifier(&self, v: &OAuthClientVerifier) {
        if let (Some(entry), Ok(mut clients)) =
            (ClientEntry::from_verifier(v), self.clients.write())
        {
            clients.apply(entry);
        }
    }

    /// Removes the entry of a deleted verifier.
    pub fn delete_verifier(&self, namespace: &str, name: &str) {
        if let Ok(mut clients) = self.clients.write() {
            clients.delete(namespace, name);
        }
    }

    /// Replaces every entry of one watch scope at once, after a (re)list, and marks that
    /// scope synced. Other scopes' entries stay.
    pub fn reset_verifiers<'a>(
        &self,
        scope: Option<&str>,
        all: impl IntoIterator<Item = &'a OAuthClientVerifier>,
    ) {
        if let Ok(mut clients) = self.clients.write() {
            clients.clear(scope);
            for entry in all.into_iter().filter_map(ClientEntry::from_verifier) {
                clients.apply(entry);
            }
        }
        if let Ok(mut synced) = self.synced_scopes.write() {
            synced.insert(scope.map(str::to_string));
        }
    }

    /// Whether the token with this `jti` was revoked.
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revoked.read().is_ok_and(|r| r.contains_key(jti))
    }

    /// Records a revocation.
    pub fn revoke(&self, jti: &str, expires_at: i64) {
        if let Ok(mut r) = self.revoked.write() {
            r.insert(jti.to_string(), expires_at);
        }
    }

    /// Replaces every revocation at once, after a (re)list, dropping the expired ones:
    /// their tokens are refused for their expiry anyway.
    pub fn reset_revoked(&self, all: impl IntoIterator<Item = (String, i64)>, now: i64) {
        if let Ok(mut r) = self.revoked.write() {
            *r = all.into_iter().filter(|(_, exp)| *exp > now).collect();
        }
    }

    /// The initial access token with this id.
    pub fn initial_access_token(&self, token_id: &str) -> Option<Arc<TokenEntry>> {
        // A handful per namespace: a scan is cheaper than keeping a second map in step.
        self.tokens
            .read()
            .ok()?
            .values()
            .find(|t| t.token_id == token_id)
            .cloned()
    }

    /// Adds or replaces an initial access token.
    pub fn apply_token_verifier(&self, v: &InitialAccessTokenVerifier) {
        if let (Some(e), Ok(mut tokens)) = (TokenEntry::from_verifier(v), self.tokens.write()) {
            tokens.insert((e.namespace.clone(), e.name.clone()), Arc::new(e));
        }
    }

    /// Removes a deleted initial access token.
    pub fn delete_token_verifier(&self, namespace: &str, name: &str) {
        if let Ok(mut tokens) = self.tokens.write() {
            tokens.remove(&(namespace.to_string(), name.to_string()));
        }
    }

    /// Replaces every initial access token of one watch scope, after a (re)list.
    pub fn reset_token_verifiers<'a>(
        &self,
        scope: Option<&str>,
        all: impl IntoIterator<Item = &'a InitialAccessTokenVerifier>,
    ) {
        if let Ok(mut tokens) = self.tokens.write() {
            tokens.retain(|(ns, _), _| scope.is_some_and(|s| s != ns));
            for e in all.into_iter().filter_map(TokenEntry::from_verifier) {
                tokens.insert((e.namespace.clone(), e.name.clone()), Arc::new(e));
            }
        }
    }

    /// The signing keys, once loaded.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.keys.read().ok()?.clone()
    }

    /// Installs (or, with `None`, withdraws) the signing keys, and marks them synced.
    pub fn set_keys(&self, keys: Option<KeySet>) {
        if let Ok(mut k) = self.keys.write() {
            *k = keys.map(Arc::new);
        }
        self.keys_synced.store(true, Ordering::Release);
    }

    /// Records the outcome of a watch's latest step.
    pub fn watch_result(&self, watch: Watch, ok: bool) {
        self.disconnected[watch as usize].store(!ok, Ordering::Release);
    }

    /// Whether every watch is connected: when not, the index serves the last state it
    /// saw, and changes made meanwhile arrive once the watch is back.
    pub fn watches_connected(&self) -> bool {
        self.disconnected.iter().all(|d| !d.load(Ordering::Acquire))
    }

    /// Ready to serve: both watches have listed once and a signing key is loaded.
    pub fn is_ready(&self) -> bool {
        let clients_synced = self
            .synced_scopes
            .read()
            .map(|s| self.scopes.iter().all(|scope| s.contains(scope)))
            .unwrap_or(false);
        clients_synced && self.keys_synced.load(Ordering::Acquire) && self.keys().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{OAuthClientVerifierSpec, SecretVerifier, SourceRef};

    fn verifier(ns: &str, name: &str, id: &str) -> OAuthClientVerifier {
        let mut v = OAuthClientVerifier::new(
            name,
            OAuthClientVerifierSpec {
                client_id: id.into(),
                client_type: Default::default(),
                active: true,
                not_before: None,
                grant_types: vec!["client_credentials".into()],
                scopes: vec!["read".into()],
                audiences: vec![],
                roles: vec!["member".into()],
                access_token_lifetime_seconds: 600,
                secrets: vec![SecretVerifier {
                    name: "default".into(),
                    hash: "$argon2id$x".into(),
                    source: SourceRef {
                        secret_name: "s".into(),
                        key: "k".into(),
                        uid: "u".into(),
                        version: "1".into(),
                    },
                    expires_at: None,
                }],
                registration_access_token_hash: None,
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
            KeySet::load(&crate::auth::keys::StoredKeys::generate_es256().expect("gen"))
                .expect("load"),
        ));
        assert!(!index.is_ready(), "namespace b has not listed yet");
        index.reset_verifiers(Some("b"), []);
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
    fn not_ready_until_both_watches_synced_and_keys_loaded() {
        let index = Index::default();
        assert!(!index.is_ready());
        index.reset_verifiers(None, []);
        assert!(!index.is_ready());
        index.set_keys(None);
        assert!(!index.is_ready());
        let keys = crate::auth::keys::StoredKeys::generate_es256().expect("gen");
        index.set_keys(Some(KeySet::load(&keys).expect("load")));
        assert!(index.is_ready());
    }
}
