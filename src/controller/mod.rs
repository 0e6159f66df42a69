//! The write path: reconciles `OAuthClient`s into credentials Secrets, verifiers for the
//! token server, and status; `InitialAccessToken`s into their token Secret and verifier.
//! Only the Lease holder runs it (`leader`).
//!
//! Each reconciler has the same three parts: *observe* (the reads, into a plain struct),
//! *plan* (a pure function of the spec, the observed state, the time and the config, that
//! decides every write and ends in one `outcome::Outcome`: status with conditions,
//! Events, requeue) and *act* (the writes, conditional where two controllers could race,
//! and the argon2 work the plan asked for). The plans are unit-tested without a cluster;
//! the real control plane tests the whole (`tests/e2e`).
//!
//! - `oauth_client`: `observe` / `plan` / `act` for OAuthClients;
//! - `initial_access_token`: the same for InitialAccessTokens, in one file;
//! - `oauth_resource`: the same for OAuthResources (who holds an audience; status only),
//!   with `claims`, the table of claims both it and the clients' status read;
//! - `outcome`: conditions, Events and requeues, shared by both;
//! - `credentials`, `secrets`: pure builders of the credentials Secret and expiry;
//! - `signing_keys`: the JWT signing keys and their rotation;
//! - `leader`: Lease-based election, its decisions pure;
//! - `health`: `/healthz`, `/readyz`, `/metrics` of the controller.

mod claims;
mod credentials;
mod error;
mod health;
mod initial_access_token;
mod jwks_uri;
mod leader;
mod oauth_client;
mod oauth_resource;
mod outcome;
mod secrets;
mod signing_keys;

use std::collections::HashSet;
use std::sync::Arc;

use futures::{FutureExt as _, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::Controller;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, reflector::reflector, watcher};
use tokio::sync::{OnceCell, Semaphore};

pub use error::Error;
pub use leader::Election;
pub use secrets::CREATED_ANNOTATION;
pub use signing_keys::Rotation;

use crate::api::{
    InitialAccessToken, InitialAccessTokenVerifier, MANAGED_BY, MANAGED_BY_LABEL, OAuthClient,
    OAuthClientPolicy, OAuthClientVerifier, OAuthGrant, OAuthResource, RevokedToken,
};
use crate::watch_backoff::WatchBackoff;

/// Field manager of everything the controller writes.
pub const FIELD_MANAGER: &str = "oauth-operator-controller";

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// Namespace of the signing-key Secret.
    pub operator_namespace: String,
    /// Name of the signing-key Secret.
    pub signing_key_secret: String,
    /// The token endpoint URL written into every credentials Secret.
    pub token_endpoint: String,
    /// How many argon2 hashes (of chosen secrets only) may run at once (each takes ~19 MiB).
    pub max_concurrent_hashes: usize,
    /// How many objects of each kind are reconciled at once (0: unbounded).
    pub max_concurrent_reconciles: u16,
    /// The role every client has, first in its `roles` claim.
    pub default_role: String,
    /// The access-token lifetimes (seconds, inclusive) this operator accepts.
    pub lifetime_bounds: (u32, u32),
    /// How long before expiry a secret counts as expiring soon (Event and condition).
    pub expiry_warning: jiff::SignedDuration,
    /// The signing keys' algorithm and rotation schedule.
    pub key_rotation: Rotation,
    /// Leader election among replicas; `None` reconciles without (one replica only).
    pub leader_election: Option<Election>,
    /// Where to serve `/healthz`, `/readyz` and `/metrics`.
    pub health_listen: Option<std::net::SocketAddr>,
    /// The federated issuers the token server trusts (the same flag), so a client's status
    /// can say which of its identities are honoured.
    pub federated_issuers: Vec<String>,
    /// What the token server does with audiences no `OAuthResource` claims, so a client's
    /// status says what it will get.
    pub audience_ownership: crate::tenancy::Mode,
    /// Audiences no `OAuthResource` may claim besides client ids: the issuer, then the
    /// token server's default audience.
    pub reserved_audiences: Vec<String>,
    /// The issuer (`iss` of every token), which resources' status tells their APIs to check.
    pub issuer: String,
    /// Whether the token server honours grants by namespace selector (the same flag).
    pub namespace_selectors: bool,
}

/// Shared by every reconcile.
pub struct Context {
    pub client: kube::Client,
    pub recorder: Recorder,
    pub config: Config,
    pub hashing: Semaphore,
    /// The JWK Sets of clients' `jwksUri`s, as last read.
    pub jwks_uris: jwks_uri::JwksUris,
    /// Every watched OAuthClient, to settle who owns a client id.
    stores: OnceCell<Vec<Store<OAuthClient>>>,
    /// Every watched OAuthResource's claim and grants.
    pub claims: claims::Claims,
    /// Where a change that concerns OAuthResources or clients is sent to be reconciled.
    routes: OnceCell<claims::Routes>,
    /// The platform's policies and the namespaces' labels they select by.
    policies: OnceCell<(Store<OAuthClientPolicy>, Store<Namespace>)>,
    /// Whether both have listed once (set by `watch_policies`, which drives their watches).
    policies_listed: tokio::sync::watch::Sender<bool>,
    /// The controller's own Secrets and the verifiers, as their watches (the ones that
    /// trigger reconciles) last saw them: a reconcile reads these before the API server.
    owned: OnceCell<Vec<OwnedStores>>,
    /// Credentials Secret names (`namespace`, `name`) a create found taken (409). The
    /// owned watch sees only Secrets this controller labelled, so for these a miss there
    /// says nothing and the API server is asked; for every other name a miss is trusted,
    /// which saves a GET per new client (a tenth of the controller's requests at scale).
    taken_secrets: std::sync::Mutex<HashSet<(String, String)>>,
}

/// The watch stores of what one scope's OAuthClient controller owns.
#[derive(Clone)]
pub struct OwnedStores {
    pub secrets: Store<Secret>,
    pub verifiers: Store<OAuthClientVerifier>,
}

/// What the owned watches know of one object.
pub enum Cached<K> {
    Found(Arc<K>),
    /// Not in any store, and every store has listed once: the object did not exist at
    /// the last list and no watch event has brought it since. It can still exist if this
    /// controller created it a moment ago; the writes that follow are conditional (a
    /// create fails with 409 and the reconcile starts over), so trusting the miss is safe.
    Absent,
    /// A store has not listed yet: only the API server knows.
    Unknown,
}

fn lookup<'a, K>(
    stores: Option<impl Iterator<Item = &'a Store<K>>>,
    key: &ObjectRef<K>,
) -> Cached<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let Some(stores) = stores else {
        return Cached::Unknown;
    };
    let mut listed = true;
    for store in stores {
        if let Some(found) = store.get(key) {
            return Cached::Found(found);
        }
        // Ready once its first list is in, and it stays ready: the future resolves at once.
        listed &= store
            .wait_until_ready()
            .now_or_never()
            .is_some_and(|r| r.is_ok());
    }
    if listed {
        Cached::Absent
    } else {
        Cached::Unknown
    }
}

/// Creates and replaces under the controller's field manager, as its applies are.
fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    }
}

/// A namespaced resource the controller reads and writes through kube's typed API.
pub trait Namespaced:
    kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
{
}

impl<K> Namespaced for K where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
{
}

impl Context {
    /// Runs argon2 work on a blocking thread, at most `max_concurrent_hashes` at once
    /// (each takes ~19 MiB).
    pub async fn hash_work<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let _permit = self.hashing.acquire().await;
        Ok(tokio::task::spawn_blocking(f).await?)
    }

    /// Writes an internal object (a verifier) owned by `owner`, same namespace: created
    /// when `current` is `None`, else replaced onto `current`'s resourceVersion. `false`
    /// when the API server answers 409 (it exists after all, or changed since `current`
    /// was read): the caller requeues and plans again from what is there.
    ///
    /// Whole-object writes, not server-side apply, for two reasons. A verifier is only
    /// ever written by this controller, so there are no other owners' fields to merge
    /// with, and a replace leaves nothing behind (an apply after a create would keep the
    /// creator's fields: a hash of a removed secret could outlive it). And latency: at
    /// 10,000 new clients an apply that creates took 73 ms per request against about
    /// 27 ms for a create (wall time under load; the run as a whole is bound by the
    /// number of requests, not by their kind: docs/benchmarks.md).
    pub async fn write_owned<O, K>(
        &self,
        owner: &O,
        mut object: K,
        current: Option<&K>,
    ) -> Result<bool, Error>
    where
        O: kube::Resource<DynamicType = ()>,
        K: Namespaced + serde::Serialize,
    {
        let name = object.name_any();
        let namespace = owner.meta().namespace.clone().unwrap_or_default();
        object.meta_mut().namespace = Some(namespace.clone());
        object.meta_mut().owner_references = owner.controller_owner_ref(&()).map(|o| vec![o]);
        let api = Api::<K>::namespaced(self.client.clone(), &namespace);
        let written = match current {
            None => api.create(&post_params(), &object).await,
            Some(current) => {
                object.meta_mut().resource_version = current.resource_version();
                api.replace(&name, &post_params(), &object).await
            }
        };
        match written {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(source) => Err(Error::WriteVerifier { name, source }),
        }
    }

    /// Replaces the status of `object` with its own `status`, onto its resourceVersion.
    /// `false` when the API server answers 409 (the object changed since it was read; that
    /// change brings another reconcile).
    ///
    /// For status only this controller writes (an OAuthClient's): the whole of it is
    /// computed by the plan, so there is nothing to merge, and the precondition keeps a
    /// reconcile of a stale copy from writing again what an earlier one already wrote (at
    /// 10,000 new clients, one status write in twenty was such a repeat).
    pub async fn replace_status<K>(&self, object: &K) -> Result<bool, Error>
    where
        K: Namespaced + serde::Serialize,
    {
        let name = object.name_any();
        let api =
            Api::<K>::namespaced(self.client.clone(), &object.namespace().unwrap_or_default());
        match api.replace_status(&name, &post_params(), object).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(source) => Err(Error::PatchStatus { name, source }),
        }
    }

    /// Writes the status fields in `status` (and only those: server-side apply) of
    /// `object`, onto the version the status was computed from, for status that another
    /// writer changes too (the token server claims an InitialAccessToken's slots): a
    /// reconcile of an older version must not overwrite a newer one. `false` if the object changed meanwhile; that change brings another
    /// reconcile.
    pub async fn apply_status_if_current<K>(
        &self,
        object: &K,
        status: impl serde::Serialize,
    ) -> Result<bool, Error>
    where
        K: Namespaced,
    {
        self.patch_status(object, status, object.resource_version())
            .await
    }

    async fn patch_status<K>(
        &self,
        object: &K,
        status: impl serde::Serialize,
        resource_version: Option<String>,
    ) -> Result<bool, Error>
    where
        K: Namespaced,
    {
        let name = object.name_any();
        let conditional = resource_version.is_some();
        let mut patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        if let Some(rv) = resource_version {
            patch["metadata"] = serde_json::json!({ "resourceVersion": rv });
        }
        // Forced, so a 409 can only be the resourceVersion precondition.
        match Api::<K>::namespaced(self.client.clone(), &object.namespace().unwrap_or_default())
            .patch_status(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if conditional && s.code == 409 => Ok(false),
            Err(source) => Err(Error::PatchStatus { name, source }),
        }
    }

    /// Publishes an Event about `object`. A failure is logged: it never fails a reconcile.
    pub async fn publish<O: kube::Resource<DynamicType = ()>>(
        &self,
        object: &O,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(error = %e, "publishing an event failed");
        }
    }

    /// Waits until every client watch has listed once, so that id ownership is judged
    /// with the whole picture.
    pub async fn stores_ready(&self) {
        if let Some(stores) = self.stores.get() {
            for s in stores {
                let _ = s.wait_until_ready().await;
            }
        }
    }

    /// The credentials Secret `ns/name` as the owned watch last saw it.
    pub fn cached_secret(&self, ns: &str, name: &str) -> Cached<Secret> {
        let key = ObjectRef::new(name).within(ns);
        lookup(self.owned.get().map(|o| o.iter().map(|s| &s.secrets)), &key)
    }

    /// Whether a create of the Secret `ns/name` found the name taken, so that only the API
    /// server can say what is there.
    pub fn secret_taken(&self, ns: &str, name: &str) -> bool {
        let taken = self.taken_secrets.lock().expect("taken_secrets lock");
        taken.contains(&(ns.to_string(), name.to_string()))
    }

    /// Records what a create of the Secret `ns/name` found: `true` for a 409, `false` once
    /// the owned watch holds it (it is ours).
    pub fn set_secret_taken(&self, ns: &str, name: &str, taken: bool) {
        let mut set = self.taken_secrets.lock().expect("taken_secrets lock");
        let key = (ns.to_string(), name.to_string());
        if taken {
            set.insert(key);
        } else {
            set.remove(&key);
        }
    }

    /// The verifier `ns/name` as the owned watch last saw it.
    pub fn cached_verifier(&self, ns: &str, name: &str) -> Cached<OAuthClientVerifier> {
        let key = ObjectRef::new(name).within(ns);
        lookup(
            self.owned.get().map(|o| o.iter().map(|s| &s.verifiers)),
            &key,
        )
    }

    /// Waits until the policies and the namespaces have listed once.
    pub async fn policies_ready(&self) {
        let mut listed = self.policies_listed.subscribe();
        let _ = listed.wait_for(|l| *l).await;
    }

    /// The policies that apply to `namespace` (see [`crate::tenancy::policy::applicable`]).
    pub fn policies_for(&self, namespace: &str) -> Vec<crate::tenancy::policy::PolicyEntry> {
        let Some((policies, namespaces)) = self.policies.get() else {
            return Vec::new();
        };
        let all: Vec<_> = policies
            .state()
            .iter()
            .filter_map(|p| crate::tenancy::policy::PolicyEntry::from_policy(p))
            .collect();
        if all.is_empty() {
            return all;
        }
        let labels = namespaces
            .get(&ObjectRef::new(namespace))
            .and_then(|n| n.metadata.labels.clone())
            .unwrap_or_default();
        crate::tenancy::policy::applicable(&all, &labels)
            .into_iter()
            .cloned()
            .collect()
    }

    /// The labels of `namespace` where grants by namespace selector are honoured (empty
    /// for one the watch has not seen); `None` where they are not.
    pub fn namespace_labels(
        &self,
        namespace: &str,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        if !self.config.namespace_selectors {
            return None;
        }
        let labels = self
            .policies
            .get()
            .and_then(|(_, namespaces)| namespaces.get(&ObjectRef::new(namespace)))
            .and_then(|n| n.metadata.labels.clone());
        Some(labels.unwrap_or_default())
    }

    /// `client`'s place among the clients of its namespace, oldest first (creation time,
    /// then name), from 1.
    pub fn rank_in_namespace(&self, client: &OAuthClient) -> u32 {
        let key = |c: &OAuthClient| {
            (
                c.metadata.creation_timestamp.as_ref().map(|t| t.0),
                c.name_any(),
            )
        };
        let mine = key(client);
        let ns = client.metadata.namespace.clone();
        let older = self
            .clients_where(|c| c.metadata.namespace == ns && key(c) < mine)
            .len();
        u32::try_from(older).unwrap_or(u32::MAX).saturating_add(1)
    }

    /// Whether some watched client has `id` as its client id (compared as ids are, without
    /// case): such a text is the audience of that client's ID tokens, which no resource
    /// may claim.
    pub fn is_client_id(&self, id: &str) -> bool {
        self.stores.get().into_iter().flatten().any(|s| {
            !s.state_filter(|c| {
                c.spec
                    .client_id
                    .as_deref()
                    .or(c.metadata.uid.as_deref())
                    .is_some_and(|own| own.eq_ignore_ascii_case(id))
            })
            .is_empty()
        })
    }

    /// Every watched client for which `f` holds, decided under the stores' read locks.
    pub fn clients_where(&self, f: impl Fn(&OAuthClient) -> bool) -> Vec<Arc<OAuthClient>> {
        self.stores
            .get()
            .into_iter()
            .flatten()
            .flat_map(|s| s.state_filter(&f))
            .collect()
    }

    /// The `namespace/name` of an older client claiming the same id (compared
    /// case-insensitively), if there is one: that client owns the id.
    pub fn client_id_owner(&self, client: &OAuthClient, client_id: &str) -> Option<String> {
        let key = |c: &OAuthClient| {
            (
                c.metadata.creation_timestamp.as_ref().map(|t| t.0),
                c.namespace().unwrap_or_default(),
                c.name_any(),
            )
        };
        let mine = key(client);
        // This passes over every client per reconcile, so the match is decided in place
        // (borrowed, not `effective_client_id()`, under the store's read lock) and only
        // the few matches are copied out: a snapshot of the whole store per reconcile,
        // 10,000 references copied and dropped each time, was the top of the controller's
        // profile while 10,000 clients were created.
        let same_id = |other: &OAuthClient| {
            other
                .spec
                .client_id
                .as_deref()
                .or(other.metadata.uid.as_deref())
                .is_some_and(|id| id.eq_ignore_ascii_case(client_id))
                && other.metadata.uid != client.metadata.uid
        };
        self.stores
            .get()?
            .iter()
            .flat_map(|s| s.state_filter(same_id))
            .filter(|other| key(other) < mine)
            .min_by_key(|other| key(other))
            .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
    }

    /// The `namespace/name` of an older client in the same namespace with the same display
    /// name and version (compared case-insensitively, a missing version as empty), if there
    /// is one. Decided as [`Self::client_id_owner`] decides: the older client keeps the
    /// pair, the younger one is told. A client without a display name claims nothing.
    pub fn display_name_owner(&self, client: &OAuthClient) -> Option<String> {
        let (name, _) = oauth_client::display(client);
        if name.is_empty() {
            return None;
        }
        let namespace = client.metadata.namespace.as_deref();
        // In place under the read lock, as for client ids: only candidates are copied.
        let candidate = |o: &OAuthClient| {
            o.metadata.namespace.as_deref() == namespace && o.spec.display_name.is_some()
        };
        let others = self
            .stores
            .get()?
            .iter()
            .flat_map(|s| s.state_filter(candidate));
        oauth_client::older_with_display(client, others)
            .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
    }
}

/// Runs until a shutdown signal: waits for leadership (when elected), then reconciles
/// until the signal, and frees the lease on the way out so a standby takes over at once.
/// Losing the lease while leading is an error: the process must stop reconciling.
pub async fn run(client: kube::Client, config: Config) -> Result<(), Error> {
    let metrics = Arc::new(health::Metrics::default());
    if let Some(addr) = config.health_listen {
        let listener = health::serve(addr, metrics.clone());
        tokio::spawn(async move {
            if let Err(e) = listener.await {
                tracing::error!(error = %e, "controller health endpoint failed");
            }
        });
    }
    let Some(mut leadership) = (match &config.leader_election {
        Some(election) => tokio::select! {
            l = leader::acquire(client.clone(), election) => Some(Some(l)),
            () = crate::telemetry::shutdown_signal() => None,
        },
        None => Some(None),
    }) else {
        return Ok(());
    };
    metrics.leader.set(1);
    let result = match leadership.as_mut() {
        Some(l) => tokio::select! {
            r = lead(client, config, metrics.clone()) => r,
            () = l.lost() => Err(Error::LostLeadership),
        },
        None => lead(client, config, metrics.clone()).await,
    };
    metrics.leader.set(0);
    if let Some(l) = leadership {
        l.release().await;
    }
    result
}

async fn lead(
    client: kube::Client,
    config: Config,
    metrics: Arc<health::Metrics>,
) -> Result<(), Error> {
    let rotation = tokio::spawn(
        signing_keys::run(
            client.clone(),
            config.operator_namespace.clone(),
            config.signing_key_secret.clone(),
            config.key_rotation.clone(),
        )
        .await?,
    );

    let reporter = Reporter {
        controller: FIELD_MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let scopes: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    let ctx = Arc::new(Context {
        claims: claims::Claims::new(scopes.len()),
        routes: OnceCell::new(),
        policies: OnceCell::new(),
        policies_listed: tokio::sync::watch::Sender::new(false),
        recorder: Recorder::new(client.clone(), reporter),
        hashing: Semaphore::new(config.max_concurrent_hashes.max(1)),
        jwks_uris: jwks_uri::JwksUris::default(),
        client: client.clone(),
        config: config.clone(),
        stores: OnceCell::new(),
        owned: OnceCell::new(),
        taken_secrets: Default::default(),
    });

    // Only the Secrets we made, by label: never a watch on every Secret of the cluster.
    let own_secrets =
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    // A change of one OAuthResource reaches the other claimants of its audience and the
    // clients asking for it through these (claims::feed), each to its scope's controller.
    let mut routes = claims::Routes::default();
    let mut resource_triggers = Vec::new();
    let mut client_triggers = Vec::new();
    // A change of a policy or of a namespace's labels can change what any client or
    // resource should say: all of them are reconciled again (writing only what changed).
    let mut everything = Vec::new();
    let mut token_all = Vec::new();
    let mut resource_all = Vec::new();
    let mut client_all = Vec::new();
    for _ in &scopes {
        let (tx, rx) = futures::channel::mpsc::unbounded::<()>();
        everything.push(tx);
        resource_all.push(rx);
        let (tx, rx) = futures::channel::mpsc::unbounded::<()>();
        everything.push(tx);
        token_all.push(rx);
        let (tx, rx) = futures::channel::mpsc::unbounded::<()>();
        everything.push(tx);
        client_all.push(rx);
    }
    let policy_watch = tokio::spawn(watch_policies(client.clone(), ctx.clone(), everything));
    for scope in &scopes {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        routes.resources.push((scope.clone(), tx));
        resource_triggers.push(rx);
        let (tx, rx) = futures::channel::mpsc::unbounded();
        routes.clients.push((scope.clone(), tx));
        client_triggers.push(rx);
    }
    let resource_controllers: Vec<_> = scopes
        .iter()
        .zip(resource_triggers)
        .zip(resource_all)
        .map(|((ns, trigger), all)| {
            let api = match ns {
                Some(ns) => Api::<OAuthResource>::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            let (store, writer) = reflector::store();
            let stream = watcher(api, watcher::Config::default().any_semantic())
                .map_ok(claims::feed(ctx.clone(), ns.clone(), routes.clone()))
                .modify(|r| r.metadata.managed_fields = None);
            let stream = reflector(writer, stream)
                .backoff(WatchBackoff::default())
                .applied_objects();
            Controller::for_stream(stream, store)
                .reconcile_on(trigger)
                .reconcile_all_on(all)
                .with_config(runtime_config(&config))
                .shutdown_on_signal()
                .run(
                    oauth_resource::reconcile,
                    oauth_resource::error_policy,
                    ctx.clone(),
                )
                .for_each({
                    let metrics = metrics.clone();
                    move |res| {
                        let metrics = metrics.clone();
                        async move { count(&metrics, "OAuthResource", res) }
                    }
                })
        })
        .collect();
    let _ = ctx.routes.set(routes);
    // A policy change reaches the InitialAccessTokens too: their verifiers carry the
    // enforced bounds registration checks.
    let token_controllers: Vec<_> = scopes
        .iter()
        .zip(token_all)
        .map(|(ns, all)| {
            let (tokens, secrets, verifiers) = match ns {
                Some(ns) => (
                    Api::<InitialAccessToken>::namespaced(client.clone(), ns),
                    Api::<Secret>::namespaced(client.clone(), ns),
                    Api::<InitialAccessTokenVerifier>::namespaced(client.clone(), ns),
                ),
                None => (
                    Api::all(client.clone()),
                    Api::all(client.clone()),
                    Api::all(client.clone()),
                ),
            };
            Controller::new(tokens, watcher::Config::default().any_semantic())
                .trigger_backoff(WatchBackoff::default())
                .owns(secrets, own_secrets.clone())
                .owns(verifiers, watcher::Config::default())
                .reconcile_all_on(all)
                .with_config(runtime_config(&config))
                .shutdown_on_signal()
                .run(
                    initial_access_token::reconcile,
                    initial_access_token::error_policy,
                    ctx.clone(),
                )
                .for_each({
                    let metrics = metrics.clone();
                    move |res| {
                        let metrics = metrics.clone();
                        async move { count(&metrics, "InitialAccessToken", res) }
                    }
                })
        })
        .collect();
    let mut owned = Vec::new();
    let controllers: Vec<_> = scopes
        .into_iter()
        .zip(client_triggers)
        .zip(client_all)
        .map(|((ns, trigger), all)| {
            let (clients, secrets, verifiers) = match &ns {
                Some(ns) => (
                    Api::<OAuthClient>::namespaced(client.clone(), ns),
                    Api::<Secret>::namespaced(client.clone(), ns),
                    Api::<OAuthClientVerifier>::namespaced(client.clone(), ns),
                ),
                None => (
                    Api::all(client.clone()),
                    Api::all(client.clone()),
                    Api::all(client.clone()),
                ),
            };
            // The owned watches keep stores, so a reconcile reads its Secret and verifier
            // from memory: at 10,000 clients that is 40,000 fewer GETs for the API server.
            let (secret_store, secret_writer) = reflector::store();
            let (verifier_store, verifier_writer) = reflector::store();
            owned.push(OwnedStores {
                secrets: secret_store,
                verifiers: verifier_store,
            });
            // Without their managedFields, which nothing here reads: a third of a small
            // object's size. A replace of a copy without them keeps the server's.
            let secrets =
                watcher(secrets, own_secrets.clone()).modify(|s| s.metadata.managed_fields = None);
            let secrets = reflector(secret_writer, secrets)
                .backoff(WatchBackoff::default())
                .touched_objects();
            let verifiers = watcher(verifiers, watcher::Config::default())
                .modify(|v| v.metadata.managed_fields = None);
            let verifiers = reflector(verifier_writer, verifiers)
                .backoff(WatchBackoff::default())
                .touched_objects();
            Controller::new(clients, watcher::Config::default().any_semantic())
                .trigger_backoff(WatchBackoff::default())
                .owns_stream(secrets)
                .owns_stream(verifiers)
                .reconcile_on(trigger)
                .reconcile_all_on(all)
                .with_config(runtime_config(&config))
                .shutdown_on_signal()
        })
        .collect();
    let _ = ctx.owned.set(owned);
    let _ = ctx
        .stores
        .set(controllers.iter().map(Controller::store).collect());
    metrics.count_secrets_of(controllers.iter().map(Controller::store).collect());
    let controllers = controllers.into_iter().map(|c| {
        c.run(
            oauth_client::reconcile,
            oauth_client::error_policy,
            ctx.clone(),
        )
        .for_each({
            let metrics = metrics.clone();
            move |res| {
                let metrics = metrics.clone();
                async move { count(&metrics, "OAuthClient", res) }
            }
        })
    });
    let sweeper = tokio::spawn(sweep_expired::<RevokedToken>(
        Api::namespaced(client.clone(), &config.operator_namespace),
        |r| r.spec.expires_at.0,
    ));
    let grant_sweeper = tokio::spawn(sweep_expired::<OAuthGrant>(
        Api::namespaced(client.clone(), &config.operator_namespace),
        |g| g.spec.expires_at.0,
    ));
    futures::future::join3(
        futures::future::join_all(controllers),
        futures::future::join_all(token_controllers),
        futures::future::join_all(resource_controllers),
    )
    .await;
    sweeper.abort();
    grant_sweeper.abort();
    policy_watch.abort();
    rotation.abort();
    Ok(())
}

/// Keeps the stores of policies and namespaces in `ctx`, and after each change (once both
/// have listed) asks every controller along `everything` to reconcile all its objects.
async fn watch_policies(
    client: kube::Client,
    ctx: Arc<Context>,
    everything: Vec<futures::channel::mpsc::UnboundedSender<()>>,
) {
    let (policies, policy_writer) = reflector::store();
    let (namespaces, namespace_writer) = reflector::store();
    let _ = ctx.policies.set((policies.clone(), namespaces.clone()));
    let policy_events = reflector(
        policy_writer,
        watcher(
            Api::<OAuthClientPolicy>::all(client.clone()),
            watcher::Config::default().any_semantic(),
        ),
    )
    .backoff(WatchBackoff::default())
    // Reconciles wait for the first lists (`policies_ready`): only later changes count.
    .map_ok(|e| match e {
        watcher::Event::Apply(_) | watcher::Event::Delete(_) => Some(Changed::Policy),
        watcher::Event::InitDone => Some(Changed::PoliciesListed),
        watcher::Event::Init | watcher::Event::InitApply(_) => None,
    })
    .boxed();
    // Only the labels matter: a namespace's other changes do not reconcile everything.
    let mut seen: std::collections::HashMap<
        String,
        Option<std::collections::BTreeMap<String, String>>,
    > = Default::default();
    let namespace_events = reflector(
        namespace_writer,
        watcher(
            Api::<Namespace>::all(client),
            watcher::Config::default().any_semantic(),
        )
        .modify(|n| {
            n.metadata.managed_fields = None;
            n.spec = None;
            n.status = None;
        }),
    )
    .backoff(WatchBackoff::default())
    .map_ok(move |e| match e {
        watcher::Event::Apply(n) | watcher::Event::Delete(n) => {
            let name = n.name_any();
            let labels = n.metadata.labels.clone();
            (seen.insert(name, labels.clone()) != Some(labels)).then_some(Changed::Labels)
        }
        watcher::Event::InitApply(n) => {
            seen.insert(n.name_any(), n.metadata.labels.clone());
            None
        }
        watcher::Event::InitDone => Some(Changed::NamespacesListed),
        watcher::Event::Init => None,
    })
    .boxed();
    let mut changes = futures::stream::select(policy_events, namespace_events);
    let (mut policies_listed, mut namespaces_listed) = (false, false);
    while let Some(change) = changes.next().await {
        let Ok(Some(change)) = change else { continue };
        match change {
            Changed::PoliciesListed | Changed::NamespacesListed => {
                policies_listed |= change == Changed::PoliciesListed;
                namespaces_listed |= change == Changed::NamespacesListed;
                if policies_listed && namespaces_listed {
                    ctx.policies_listed.send_replace(true);
                }
                continue;
            }
            Changed::Policy | Changed::Labels => {}
        }
        // Labels matter only while some policy, or a grant by namespace selector, selects
        // by them.
        if change == Changed::Labels && policies.is_empty() && !ctx.config.namespace_selectors {
            continue;
        }
        for tx in &everything {
            let _ = tx.unbounded_send(());
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Changed {
    Policy,
    Labels,
    PoliciesListed,
    NamespacesListed,
}

fn runtime_config(config: &Config) -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default().concurrency(config.max_concurrent_reconciles)
}

fn count<K, E: std::fmt::Display>(
    metrics: &health::Metrics,
    kind: &'static str,
    res: Result<
        (
            kube::runtime::reflector::ObjectRef<K>,
            kube::runtime::controller::Action,
        ),
        kube::runtime::controller::Error<Error, E>,
    >,
) where
    K: kube::Resource,
    K::DynamicType: std::fmt::Debug,
{
    match res {
        Ok((obj, _)) => {
            tracing::debug!(%kind, object = %obj, "reconciled");
            metrics.count(kind, "ok");
        }
        Err(kube::runtime::controller::Error::ReconcilerFailed(e, _)) => {
            metrics.count(kind, e.metric_label());
        }
        Err(e) => {
            tracing::warn!(%kind, error = %e, "reconcile failed");
            metrics.count(kind, "controller");
        }
    }
}

/// Deletes the token server's records once they are worthless: a revocation whose token
/// has expired (it is refused for its expiry alone), a grant whose last token has.
async fn sweep_expired<K>(api: Api<K>, expires_at: fn(&K) -> jiff::Timestamp)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        tick.tick().await;
        let Ok(list) = api.list(&Default::default()).await else {
            continue;
        };
        let now = jiff::Timestamp::now();
        for r in list.items.iter().filter(|r| expires_at(r) < now) {
            let _ = api.delete(&r.name_any(), &Default::default()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher::Event as WatchEvent;

    fn secret(name: &str) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        s.metadata.namespace = Some("ns".into());
        s
    }

    fn key(name: &str) -> ObjectRef<Secret> {
        ObjectRef::new(name).within("ns")
    }

    #[test]
    fn a_miss_is_absent_only_once_every_store_has_listed() {
        let (listed, mut listed_writer) = reflector::store::<Secret>();
        let (pending, _pending_writer) = reflector::store::<Secret>();
        assert!(matches!(
            lookup(None::<std::iter::Empty<&Store<Secret>>>, &key("a")),
            Cached::Unknown
        ));
        assert!(matches!(
            lookup(Some([&listed].into_iter()), &key("a")),
            Cached::Unknown
        ));

        listed_writer.apply_watcher_event(&WatchEvent::Init);
        listed_writer.apply_watcher_event(&WatchEvent::InitApply(secret("a")));
        listed_writer.apply_watcher_event(&WatchEvent::InitDone);
        assert!(matches!(
            lookup(Some([&listed].into_iter()), &key("a")),
            Cached::Found(_)
        ));
        assert!(matches!(
            lookup(Some([&listed].into_iter()), &key("b")),
            Cached::Absent
        ));
        // Another scope that has not listed yet could hold it.
        assert!(matches!(
            lookup(Some([&listed, &pending].into_iter()), &key("b")),
            Cached::Unknown
        ));
        assert!(matches!(
            lookup(Some([&pending, &listed].into_iter()), &key("a")),
            Cached::Found(_)
        ));
    }
}
