//! The controller's copy of the table of claims and grants ([`crate::tenancy::Resources`]),
//! fed by the watch of `OAuthResource`s (one per watched scope), read by both the
//! resources' reconciler (who holds an audience) and the clients' (what each client gets).
//!
//! A change of one resource can change what other objects should say: the other claimants
//! of its audience (one of them may now hold it) and the clients asking for it. The feed
//! sends those to their controllers (`Controller::reconcile_on`), routed by namespace to
//! the controller of their scope. Reconciles that read the table wait until every scope
//! has listed once, so a controller restart over unchanged objects writes nothing.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};

use futures::channel::mpsc::UnboundedSender;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;

use super::Context;
use crate::api::{OAuthClient, OAuthResource};
use crate::tenancy::{ResourceEntry, Resources, normalize};

/// The table and whether every scope has listed.
pub struct Claims {
    table: RwLock<Resources>,
    scopes: usize,
    synced: Mutex<HashSet<Option<String>>>,
    ready: tokio::sync::watch::Sender<bool>,
}

impl Claims {
    /// A table fed by `scopes` watches.
    pub fn new(scopes: usize) -> Self {
        Claims {
            table: RwLock::default(),
            scopes,
            synced: Mutex::default(),
            ready: tokio::sync::watch::Sender::new(false),
        }
    }

    /// The table as it is now.
    pub fn read(&self) -> RwLockReadGuard<'_, Resources> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until every scope has listed once.
    pub async fn ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    fn write(&self, f: impl FnOnce(&mut Resources)) {
        f(&mut self.table.write().unwrap_or_else(PoisonError::into_inner));
    }

    fn listed(&self, scope: Option<String>) {
        let mut synced = self.synced.lock().unwrap_or_else(PoisonError::into_inner);
        synced.insert(scope);
        if synced.len() >= self.scopes {
            self.ready.send_replace(true);
        }
    }
}

/// Where the feed sends what a change touches: per scope (a namespace, or all), the
/// resources' and the clients' controllers.
#[derive(Clone, Default)]
pub struct Routes {
    pub resources: Vec<(Option<String>, UnboundedSender<ObjectRef<OAuthResource>>)>,
    pub clients: Vec<(Option<String>, UnboundedSender<ObjectRef<OAuthClient>>)>,
}

fn route<K: kube::Resource<DynamicType = ()>>(
    routes: &[(Option<String>, UnboundedSender<ObjectRef<K>>)],
    obj: ObjectRef<K>,
) {
    let ns = obj.namespace.clone();
    if let Some((_, tx)) = routes
        .iter()
        .find(|(scope, _)| scope.is_none() || *scope == ns)
    {
        // A closed channel is a controller shutting down: nothing left to tell.
        let _ = tx.unbounded_send(obj);
    }
}

/// A function for `watcher(...).map_ok(..)` that keeps `ctx`'s table in step with the
/// watch of `scope`, and sends what each change touches along `routes`.
pub fn feed(
    ctx: Arc<Context>,
    scope: Option<String>,
    routes: Routes,
) -> impl FnMut(Event<OAuthResource>) -> Event<OAuthResource> {
    let mut listing: Vec<ResourceEntry> = Vec::new();
    move |event| {
        let mut touched: HashSet<String> = HashSet::new();
        match &event {
            Event::Apply(r) => {
                let (ns, name) = (r.namespace().unwrap_or_default(), r.name_any());
                touched.insert(normalize(&r.spec.audience));
                ctx.claims.write(|t| {
                    touched.extend(t.key_of(&ns, &name).map(str::to_string));
                    // One the platform does not allow is no claim: it goes from the table.
                    match ResourceEntry::from_resource(r) {
                        Some(e) => t.apply(e),
                        None => t.delete(&ns, &name),
                    }
                });
            }
            Event::Delete(r) => {
                touched.insert(normalize(&r.spec.audience));
                ctx.claims
                    .write(|t| t.delete(&r.namespace().unwrap_or_default(), &r.name_any()));
            }
            Event::Init => listing.clear(),
            Event::InitApply(r) => listing.extend(ResourceEntry::from_resource(r)),
            Event::InitDone => {
                let all = std::mem::take(&mut listing);
                ctx.claims.write(|t| {
                    // After a relist, anything of this scope may have changed.
                    touched.extend(
                        t.iter()
                            .filter(|e| scope.as_ref().is_none_or(|s| *s == e.namespace))
                            .map(|e| e.key.clone()),
                    );
                    touched.extend(all.iter().map(|e| e.key.clone()));
                    t.clear(scope.as_deref());
                    for e in all {
                        t.apply(e);
                    }
                });
                ctx.claims.listed(scope.clone());
            }
        }
        if !touched.is_empty() {
            notify(&ctx, &routes, &touched);
        }
        event
    }
}

/// Sends every claimant of the audiences `keys` (normalised) to its controller: a client
/// asking for one of them changed, so their counts of granted clients may have too.
pub fn touch_claimants(ctx: &Context, keys: &HashSet<String>) {
    if let Some(routes) = ctx.routes.get() {
        send_claimants(ctx, routes, keys);
    }
}

fn send_claimants(ctx: &Context, routes: &Routes, keys: &HashSet<String>) {
    // Copied out first: the lock is not held while sending.
    let claimants: Vec<ObjectRef<OAuthResource>> = {
        let table = ctx.claims.read();
        keys.iter()
            .flat_map(|k| table.claimants_of_key(k))
            .map(|e| ObjectRef::new(&e.name).within(&e.namespace))
            .collect()
    };
    for r in claimants {
        route(&routes.resources, r);
    }
}

/// Sends every claimant of the `keys` and every client asking for one of them.
fn notify(ctx: &Context, routes: &Routes, keys: &HashSet<String>) {
    send_claimants(ctx, routes, keys);
    let asks = |c: &OAuthClient| {
        c.spec
            .audiences
            .iter()
            .any(|a| keys.contains(&normalize(a)))
    };
    for c in ctx.clients_where(asks) {
        route(&routes.clients, ObjectRef::from_obj(&*c));
    }
}
