//! The in-memory view the token server reads: client verifiers by client id, initial
//! access token verifiers, revoked token ids, built-in users, upstream providers, and the signing keys. Fed by watches (see
//! [`watch`]); read on every request without any API call. Pure state with `apply` /
//! `delete` / `reset` per kind, so it is tested without a cluster.
//!
//! Ready ([`Index::is_ready`]) once every watch has listed once (each kind in each watched
//! namespace) and a signing key is loaded: before that, a client, token or revocation
//! that exists could be answered as unknown.
//!
//! Locks: a poisoned lock (a panic while it was held; product code denies panics, so
//! this is a bug elsewhere) is recovered with [`PoisonError::into_inner`], not skipped. A
//! write here is one insert, remove or swap, so what a panic can leave is at worst one
//! stale entry, which the next event or relist corrects; skipping the lock instead would
//! silently answer every client as unknown (and the lockout would fail open).

mod upstream;
pub mod watch;

pub use upstream::UpstreamEntry;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::api::{
    FederatedSubject, InitialAccessTokenVerifier, OAuthClientVerifier, OAuthUser,
    ServiceAccountSubject,
};
use crate::auth::assertion::ClientKeys;
use crate::auth::hash::Verifier;
use crate::auth::keys::KeySet;
use crate::tenancy::{ResourceEntry, Resources};

/// What the token server knows of one client.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientEntry {
    pub client_id: String,
    /// Shown on the sign-in page; the client id when `None`.
    pub display_name: Option<String>,
    pub namespace: String,
    pub name: String,
    /// The client's labels, which resources' grants select by.
    pub labels: std::collections::BTreeMap<String, String>,
    pub active: bool,
    /// Tokens issued before this (Unix seconds) are no longer valid.
    pub not_before: Option<i64>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    /// The audiences [`crate::tenancy::normalize`]d, in the same order: what a claim is
    /// looked up by, computed here once rather than per token.
    pub audience_keys: Vec<String>,
    pub roles: Vec<String>,
    /// Public clients have no secret: they authenticate with PKCE alone.
    pub public: bool,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// Which of a user's groups the client may see; all when `None`.
    pub allowed_groups: Option<Vec<String>>,
    /// The refresh tokens its users get; `None`: none.
    pub refresh: Option<crate::api::RefreshPolicy>,
    pub access_token_lifetime_seconds: u32,
    /// Every secret the client may authenticate with.
    pub secrets: Vec<SecretHash>,
    /// For a dynamically registered client, the hash of its registration access token.
    pub registration_access_token_hash: Option<Verifier>,
    /// The `OAuthClient`'s UID (its verifier's owner), which tokens carry as `client_uid`.
    pub uid: Option<String>,
    /// The public keys of its `private_key_jwt` assertions.
    pub keys: Option<Arc<ClientKeys>>,
    /// The ServiceAccounts whose tokens authenticate it.
    pub service_accounts: Vec<ServiceAccountSubject>,
    /// The workload identities of other issuers whose tokens authenticate it.
    pub federated: Vec<FederatedSubject>,
}

impl ClientEntry {
    /// Every `(issuer, sub)` whose tokens authenticate the client; this cluster's
    /// ServiceAccounts under the issuer [`THIS_CLUSTER`].
    fn subjects(&self) -> impl Iterator<Item = Subject> + '_ {
        let accounts = self.service_accounts.iter().map(|sa| {
            (
                THIS_CLUSTER.to_string(),
                format!(
                    "{}{}:{}",
                    crate::auth::assertion::SERVICE_ACCOUNT_PREFIX,
                    sa.namespace,
                    sa.name
                ),
            )
        });
        let federated = self
            .federated
            .iter()
            .map(|f| (f.issuer.clone(), f.subject.clone()));
        accounts.chain(federated)
    }
}

/// The issuer under which [`ClientEntry::subjects`] names this cluster's ServiceAccounts
/// (its real name is known only once its discovery document is read, and no URL is empty).
const THIS_CLUSTER: &str = "";

/// A workload by the `iss` and `sub` of its tokens.
type Subject = (String, String);

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
    pub verifier: Verifier,
    /// Unix seconds.
    pub expires_at: i64,
    /// The client bounds of the enforcing policies of its namespace: registrations under
    /// it stay within them.
    pub enforced_policies: Vec<crate::api::PolicyBounds>,
}

impl TokenEntry {
    fn from_verifier(v: &InitialAccessTokenVerifier) -> Option<Self> {
        Some(TokenEntry {
            namespace: v.metadata.namespace.clone()?,
            name: v.metadata.name.clone()?,
            owner_uid: owner_uid(&v.metadata),
            token_id: v.spec.token_id.clone(),
            verifier: Verifier::from_fields(v.spec.sha256.as_deref(), v.spec.hash.as_deref())?,
            expires_at: v.spec.expires_at.0.as_second(),
            enforced_policies: v.spec.enforced_policies.clone(),
        })
    }
}

/// What the token server knows of one built-in user.
#[derive(Debug, Clone, PartialEq)]
pub struct UserEntry {
    /// The username: the `OAuthUser`'s name.
    pub name: String,
    /// The subject (`sub`): the `OAuthUser`'s UID, never reused, so a user deleted and
    /// created again under the same name is another subject.
    pub uid: String,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub groups: Vec<String>,
    pub enabled: bool,
    /// argon2id PHC string.
    pub password_hash: String,
}

impl UserEntry {
    fn from_user(u: &OAuthUser) -> Option<Self> {
        Some(UserEntry {
            name: u.metadata.name.clone()?,
            uid: u.metadata.uid.clone()?,
            display_name: u.spec.display_name.clone(),
            email: u.spec.email.clone(),
            groups: u.spec.groups.clone(),
            enabled: u.spec.enabled,
            password_hash: u.spec.password_hash.clone(),
        })
    }
}

#[derive(Default)]
struct Users {
    by_name: HashMap<String, Arc<UserEntry>>,
    /// Username by subject.
    by_uid: HashMap<String, String>,
}

impl Users {
    fn apply(&mut self, entry: UserEntry) {
        if let Some(old) = self.by_name.get(&entry.name) {
            self.by_uid.remove(&old.uid);
        }
        self.by_uid.insert(entry.uid.clone(), entry.name.clone());
        self.by_name.insert(entry.name.clone(), Arc::new(entry));
    }

    fn delete(&mut self, name: &str) {
        if let Some(old) = self.by_name.remove(name) {
            self.by_uid.remove(&old.uid);
        }
    }
}

/// One accepted secret: its verifier and when it stops being accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretHash {
    pub verifier: Verifier,
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
            display_name: spec.display_name.clone(),
            namespace: v.metadata.namespace.clone()?,
            name: v.metadata.name.clone()?,
            labels: spec.labels.clone(),
            active: spec.active,
            not_before: spec.not_before.as_ref().map(|t| t.0.as_second()),
            grant_types: spec.grant_types.clone(),
            scopes: spec.scopes.clone(),
            audiences: spec.audiences.clone(),
            audience_keys: spec
                .audiences
                .iter()
                .map(|a| crate::tenancy::normalize(a))
                .collect(),
            roles: spec.roles.clone(),
            public: spec.client_type == crate::api::ClientType::Public,
            redirect_uris: spec.redirect_uris.clone(),
            post_logout_redirect_uris: spec.post_logout_redirect_uris.clone(),
            allowed_groups: spec.allowed_groups.clone(),
            refresh: spec.refresh.clone(),
            access_token_lifetime_seconds: spec.access_token_lifetime_seconds,
            secrets: spec
                .secrets
                .iter()
                .filter_map(|s| {
                    Some(SecretHash {
                        verifier: Verifier::from_fields(s.sha256.as_deref(), s.hash.as_deref())?,
                        expires_at: s.expires_at.as_ref().map(|t| t.0.as_second()),
                    })
                })
                .collect(),
            registration_access_token_hash: spec
                .registration_access_token_hash
                .as_deref()
                .and_then(Verifier::parse),
            uid: owner_uid(&v.metadata),
            // The controller checked the set; one that no longer parses (a newer
            // controller's format) leaves the client without this method, not broken.
            keys: spec
                .jwks
                .as_deref()
                .and_then(|text| ClientKeys::parse(text).ok())
                .map(Arc::new),
            service_accounts: spec.service_accounts.clone(),
            federated: spec.federated.clone(),
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Watch {
    Clients = 0,
    Tokens = 1,
    Revocations = 2,
    Keys = 3,
    Users = 4,
    Upstreams = 5,
    UpstreamSecret = 6,
    ServiceAccounts = 7,
    Resources = 8,
    Namespaces = 9,
}

#[derive(Default)]
struct Clients {
    by_id: HashMap<String, Arc<ClientEntry>>,
    /// Which client id each verifier object serves, so a delete (or an id change) removes
    /// the right entry.
    by_object: HashMap<ObjectKey, String>,
    /// The clients each workload authenticates, to find the client of a token presented
    /// without a `client_id`.
    by_subject: HashMap<Subject, Vec<String>>,
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
        self.forget_subjects(&entry.client_id);
        for subject in entry.subjects() {
            self.by_subject
                .entry(subject)
                .or_default()
                .push(entry.client_id.clone());
        }
        self.by_id.insert(entry.client_id.clone(), Arc::new(entry));
    }

    fn delete(&mut self, namespace: &str, name: &str) {
        if let Some(id) = self
            .by_object
            .remove(&(namespace.to_string(), name.to_string()))
        {
            self.forget_subjects(&id);
            self.by_id.remove(&id);
        }
    }

    /// Drops `client_id` from the workload map (its entry's subjects only).
    fn forget_subjects(&mut self, client_id: &str) {
        let Some(old) = self.by_id.get(client_id).cloned() else {
            return;
        };
        for key in old.subjects() {
            if let Some(ids) = self.by_subject.get_mut(&key) {
                ids.retain(|id| id != client_id);
                if ids.is_empty() {
                    self.by_subject.remove(&key);
                }
            }
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
    /// Built-in users (of the operator namespace alone).
    users: RwLock<Users>,
    /// Upstream identity providers and their client secrets (see [`upstream`]).
    upstreams: RwLock<upstream::Upstreams>,
    /// The watch scopes (namespaces, or `None` for all) expected to list before the index
    /// is complete, and the (watch, scope) pairs that have; revocations are watched in the
    /// operator namespace alone, under scope `None`.
    scopes: Vec<Option<String>>,
    synced: RwLock<HashSet<(Watch, Option<String>)>>,
    keys_synced: AtomicBool,
    /// Per [`Watch`]: whether its last attempt failed (the API server unreachable, say).
    /// The index keeps serving what it has meanwhile.
    disconnected: [AtomicBool; 10],
    /// The UID of every ServiceAccount of the watched namespaces, by namespace and name.
    service_accounts: RwLock<HashMap<ObjectKey, String>>,
    /// Every `OAuthResource` of the watched namespaces: who holds which audience, and
    /// whom it grants what.
    resources: RwLock<Resources>,
    /// Every namespace's labels, when grants by namespace selector are honoured
    /// ([`Index::require_namespaces`]).
    namespaces: RwLock<HashMap<String, Arc<std::collections::BTreeMap<String, String>>>>,
    namespaces_required: AtomicBool,
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
            users: RwLock::default(),
            upstreams: RwLock::default(),
            scopes,
            synced: RwLock::default(),
            keys_synced: AtomicBool::new(false),
            disconnected: Default::default(),
            service_accounts: RwLock::default(),
            resources: RwLock::default(),
            namespaces: RwLock::default(),
            namespaces_required: AtomicBool::new(false),
        }
    }

    /// The client with this id, if the server should serve it.
    pub fn client(&self, client_id: &str) -> Option<Arc<ClientEntry>> {
        read(&self.clients).by_id.get(client_id).cloned()
    }

    /// How many clients are indexed.
    pub fn len(&self) -> usize {
        read(&self.clients).by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds or replaces the entry of a verifier.
    pub fn apply_verifier(&self, v: &OAuthClientVerifier) {
        if let Some(entry) = ClientEntry::from_verifier(v) {
            write(&self.clients).apply(entry);
        }
    }

    /// Removes the entry of a deleted verifier.
    pub fn delete_verifier(&self, namespace: &str, name: &str) {
        write(&self.clients).delete(namespace, name);
    }

    /// Replaces every entry of one watch scope at once, after a (re)list, and marks that
    /// scope synced. Other scopes' entries stay.
    pub fn reset_verifiers<'a>(
        &self,
        scope: Option<&str>,
        all: impl IntoIterator<Item = &'a OAuthClientVerifier>,
    ) {
        {
            let mut clients = write(&self.clients);
            clients.clear(scope);
            for entry in all.into_iter().filter_map(ClientEntry::from_verifier) {
                clients.apply(entry);
            }
        }
        self.mark_synced(Watch::Clients, scope);
    }

    /// Whether the token with this `jti` was revoked.
    pub fn is_revoked(&self, jti: &str) -> bool {
        read(&self.revoked).contains_key(jti)
    }

    /// Records a revocation.
    pub fn revoke(&self, jti: &str, expires_at: i64) {
        write(&self.revoked).insert(jti.to_string(), expires_at);
    }

    /// Replaces every revocation at once, after a (re)list, dropping the expired ones
    /// (their tokens are refused for their expiry anyway), and marks revocations synced.
    pub fn reset_revoked(&self, all: impl IntoIterator<Item = (String, i64)>, now: i64) {
        *write(&self.revoked) = all.into_iter().filter(|(_, exp)| *exp > now).collect();
        self.mark_synced(Watch::Revocations, None);
    }

    /// The initial access token with this id.
    pub fn initial_access_token(&self, token_id: &str) -> Option<Arc<TokenEntry>> {
        // A handful per namespace: a scan is cheaper than keeping a second map in step.
        read(&self.tokens)
            .values()
            .find(|t| t.token_id == token_id)
            .cloned()
    }

    /// Adds or replaces an initial access token.
    pub fn apply_token_verifier(&self, v: &InitialAccessTokenVerifier) {
        if let Some(e) = TokenEntry::from_verifier(v) {
            write(&self.tokens).insert((e.namespace.clone(), e.name.clone()), Arc::new(e));
        }
    }

    /// Removes a deleted initial access token.
    pub fn delete_token_verifier(&self, namespace: &str, name: &str) {
        write(&self.tokens).remove(&(namespace.to_string(), name.to_string()));
    }

    /// Replaces every initial access token of one watch scope, after a (re)list, and
    /// marks that scope's tokens synced. Other scopes' entries stay.
    pub fn reset_token_verifiers<'a>(
        &self,
        scope: Option<&str>,
        all: impl IntoIterator<Item = &'a InitialAccessTokenVerifier>,
    ) {
        {
            let mut tokens = write(&self.tokens);
            tokens.retain(|(ns, _), _| scope.is_some_and(|s| s != ns));
            for e in all.into_iter().filter_map(TokenEntry::from_verifier) {
                tokens.insert((e.namespace.clone(), e.name.clone()), Arc::new(e));
            }
        }
        self.mark_synced(Watch::Tokens, scope);
    }

    /// The built-in user with this username.
    pub fn user(&self, name: &str) -> Option<Arc<UserEntry>> {
        read(&self.users).by_name.get(name).cloned()
    }

    /// The built-in user with this subject.
    pub fn user_by_subject(&self, uid: &str) -> Option<Arc<UserEntry>> {
        let users = read(&self.users);
        users
            .by_uid
            .get(uid)
            .and_then(|name| users.by_name.get(name))
            .cloned()
    }

    /// Adds or replaces a user.
    pub fn apply_user(&self, u: &OAuthUser) {
        if let Some(e) = UserEntry::from_user(u) {
            write(&self.users).apply(e);
        }
    }

    /// Removes a deleted user.
    pub fn delete_user(&self, name: &str) {
        write(&self.users).delete(name);
    }

    /// Replaces every user at once, after a (re)list, and marks users synced.
    pub fn reset_users<'a>(&self, all: impl IntoIterator<Item = &'a OAuthUser>) {
        {
            let mut users = write(&self.users);
            *users = Users::default();
            for e in all.into_iter().filter_map(UserEntry::from_user) {
                users.apply(e);
            }
        }
        self.mark_synced(Watch::Users, None);
    }

    /// The signing keys, once loaded.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        read(&self.keys).clone()
    }

    /// Installs (or, with `None`, withdraws) the signing keys, and marks them synced.
    pub fn set_keys(&self, keys: Option<KeySet>) {
        *write(&self.keys) = keys.map(Arc::new);
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

    /// The client a ServiceAccount's token authenticates when it names none: the one
    /// client listing that ServiceAccount, or `None` when none or several do.
    pub fn client_of_service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<ClientEntry>> {
        let sub = format!(
            "{}{namespace}:{name}",
            crate::auth::assertion::SERVICE_ACCOUNT_PREFIX
        );
        self.client_of_subject(THIS_CLUSTER, &sub)
    }

    /// The one client a federated issuer's workload authenticates; `None` when none or
    /// several do (then the request must name its `client_id`).
    pub fn client_of_federated(&self, issuer: &str, sub: &str) -> Option<Arc<ClientEntry>> {
        if issuer == THIS_CLUSTER {
            return None;
        }
        self.client_of_subject(issuer, sub)
    }

    fn client_of_subject(&self, issuer: &str, sub: &str) -> Option<Arc<ClientEntry>> {
        let clients = read(&self.clients);
        let key = (issuer.to_string(), sub.to_string());
        match clients.by_subject.get(&key)?.as_slice() {
            [id] => clients.by_id.get(id).cloned(),
            _ => None,
        }
    }

    /// The UID of the ServiceAccount that exists now under this name, if any.
    pub fn service_account_uid(&self, namespace: &str, name: &str) -> Option<String> {
        read(&self.service_accounts)
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    pub fn apply_service_account(&self, namespace: &str, name: &str, uid: &str) {
        write(&self.service_accounts).insert((namespace.into(), name.into()), uid.into());
    }

    pub fn delete_service_account(&self, namespace: &str, name: &str) {
        write(&self.service_accounts).remove(&(namespace.to_string(), name.to_string()));
    }

    /// Replaces the ServiceAccounts of `scope` after a (re)list, and marks them synced.
    pub fn reset_service_accounts<'a>(
        &self,
        scope: Option<&str>,
        all: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    ) {
        {
            let mut known = write(&self.service_accounts);
            known.retain(|(ns, _), _| scope.is_some_and(|s| s != ns));
            for (ns, name, uid) in all {
                known.insert((ns.into(), name.into()), uid.into());
            }
        }
        self.mark_synced(Watch::ServiceAccounts, scope);
    }

    /// Reads the table of claims and grants (the decision's input) under its lock.
    pub fn with_resources<T>(&self, f: impl FnOnce(&Resources) -> T) -> T {
        f(&read(&self.resources))
    }

    /// Adds or replaces an `OAuthResource`.
    pub fn apply_resource(&self, r: &crate::api::OAuthResource) {
        match ResourceEntry::from_resource(r) {
            Some(e) => write(&self.resources).apply(e),
            // Outside the platform's bounds: no claim (see `ResourceEntry::from_resource`).
            None => {
                if let (Some(ns), Some(name)) = (&r.metadata.namespace, &r.metadata.name) {
                    write(&self.resources).delete(ns, name);
                }
            }
        }
    }

    /// Removes a deleted `OAuthResource`: the next claimant of its audience holds it.
    pub fn delete_resource(&self, namespace: &str, name: &str) {
        write(&self.resources).delete(namespace, name);
    }

    /// Replaces every resource of one watch scope after a (re)list, and marks them synced.
    pub fn reset_resources<'a>(
        &self,
        scope: Option<&str>,
        all: impl IntoIterator<Item = &'a crate::api::OAuthResource>,
    ) {
        {
            let mut table = write(&self.resources);
            table.clear(scope);
            for e in all.into_iter().filter_map(ResourceEntry::from_resource) {
                table.apply(e);
            }
        }
        self.mark_synced(Watch::Resources, scope);
    }

    /// Makes the namespaces' labels part of what the index needs before it is ready.
    pub fn require_namespaces(&self) {
        self.namespaces_required.store(true, Ordering::Release);
    }

    /// The labels of `namespace` (none for one not seen).
    pub fn namespace_labels(
        &self,
        namespace: &str,
    ) -> Arc<std::collections::BTreeMap<String, String>> {
        read(&self.namespaces)
            .get(namespace)
            .cloned()
            .unwrap_or_default()
    }

    pub fn apply_namespace(&self, name: &str, labels: std::collections::BTreeMap<String, String>) {
        write(&self.namespaces).insert(name.to_string(), Arc::new(labels));
    }

    pub fn delete_namespace(&self, name: &str) {
        write(&self.namespaces).remove(name);
    }

    /// Replaces every namespace's labels after a (re)list, and marks them synced.
    pub fn reset_namespaces(
        &self,
        all: impl IntoIterator<Item = (String, std::collections::BTreeMap<String, String>)>,
    ) {
        *write(&self.namespaces) = all.into_iter().map(|(n, l)| (n, Arc::new(l))).collect();
        self.mark_synced(Watch::Namespaces, None);
    }

    fn mark_synced(&self, watch: Watch, scope: Option<&str>) {
        write(&self.synced).insert((watch, scope.map(str::to_string)));
    }

    /// Ready to serve: the clients and initial access tokens of every scope, the
    /// revocations, the users, the upstream providers and the upstream Secret have listed once, and a signing key is loaded.
    pub fn is_ready(&self) -> bool {
        let lists_synced = {
            let synced = read(&self.synced);
            let scoped = self.scopes.iter().all(|scope| {
                synced.contains(&(Watch::Clients, scope.clone()))
                    && synced.contains(&(Watch::Tokens, scope.clone()))
                    && synced.contains(&(Watch::ServiceAccounts, scope.clone()))
                    && synced.contains(&(Watch::Resources, scope.clone()))
            });
            scoped
                && synced.contains(&(Watch::Revocations, None))
                && synced.contains(&(Watch::Users, None))
                && synced.contains(&(Watch::Upstreams, None))
                && synced.contains(&(Watch::UpstreamSecret, None))
                && (!self.namespaces_required.load(Ordering::Acquire)
                    || synced.contains(&(Watch::Namespaces, None)))
        };
        lists_synced && self.keys_synced.load(Ordering::Acquire) && self.keys().is_some()
    }
}

/// Reads through a poisoned lock (see the module doc for why).
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Writes through a poisoned lock (see the module doc for why).
fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
