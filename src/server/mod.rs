//! The token server: an axum server answering from the [`Index`], which watches keep
//! current (see [`crate::index`]). Every replica serves; no request waits on the API
//! server, except the server's own writes: registrations (`/register`, see
//! `registration`: OAuthClients, their Secrets, slots in an InitialAccessToken's
//! status), redeemed authorization codes (`OAuthGrant`s) and revocations (`/revoke`,
//! and a code used twice: RevokedTokens). Both are recorded through the API
//! server, so every replica learns them from the same watches as everything else (a
//! revocation is also noted at once in the index of the replica that took it).
//!
//! The HTTP edge, in one place each: the strict form body (`form::Form`) and HTTP Basic
//! (`client_auth`) are extractors whose rejection is an [`OAuthError`]; that enum is
//! the one mapping of errors to RFC 6749 JSON; `Cache-Control: no-store` is a layer on
//! the routes that hand out or inspect credentials ([`router`]). A handler per endpoint
//! module: `token`, `introspect`, `revoke`, `registration`, `discovery`; and the pages
//! a person sees, `authorize` (the sign-in of the authorization code grant) and
//! `upstream` (sign-in through an upstream provider, the server's only outgoing HTTP),
//! with `userinfo` beside them.
//!
//! Readiness (`/readyz`) waits until every watch the server answers from has listed
//! once: clients, initial access tokens, resources (`OAuthResource`), revocations, users,
//! upstream providers and their Secret (listed, even when it does not exist), and the
//! signing keys.

mod authorize;
mod client_assertion;
mod client_auth;
mod discovery;
mod error;
mod form;
mod hash_gate;
mod introspect;
mod issuer_keys;
mod lockout;
mod metrics;
mod registration;
mod revoke;
mod target;
mod token;
mod upstream;
mod userinfo;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kube::api::Api;

pub use error::OAuthError;
pub use lockout::LockoutConfig;
pub use metrics::Metrics;

use crate::api::{InitialAccessTokenVerifier, OAuthClientVerifier};
use crate::auth::assertion::Replays;
use crate::auth::verified_cache::VerifiedCache;
use crate::index::{self, Index};
use hash_gate::HashGate;
use k8s_openapi::api::core::v1::ServiceAccount;

/// How the token server runs.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// `iss` of every token, and the base of the endpoint URLs.
    pub issuer: String,
    /// `aud` of tokens for clients that name no audience.
    pub default_audience: String,
    /// The role every token's `roles` claim starts with (the controller's setting of the
    /// same name puts it first in each client's roles).
    pub default_role: String,
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// Namespace and name of the signing-key Secret.
    pub operator_namespace: String,
    pub signing_key_secret: String,
    /// Name of the Secret (in the operator namespace) of the upstream providers' client
    /// secrets.
    pub upstream_secret: String,
    /// How many argon2 checks may run at once (each takes ~19 MiB and ~25 ms of a core).
    pub max_concurrent_hashes: usize,
    /// How many requests may wait for an argon2 turn before more are shed with 503.
    pub max_queued_hashes: usize,
    /// How many verified secrets the warm-path cache remembers.
    pub verified_cache_size: usize,
    /// Brute-force protection.
    pub lockout: LockoutConfig,
    /// How long a sign-in session lasts (single sign-on across the issuer's clients).
    pub session_lifetime_seconds: i64,
    /// What happens to audiences no `OAuthResource` claims (claimed ones are enforced in
    /// every mode): see [`crate::tenancy::Mode`].
    pub audience_ownership: crate::tenancy::Mode,
    /// Whether `OAuthResource` grants by namespace selector are honoured (the namespaces'
    /// labels are then watched).
    pub namespace_selectors: bool,
    /// The issuers whose workload tokens clients may name (`spec.authentication.federated`).
    pub federated_issuers: Vec<String>,
    /// Certificates trusted besides the system's for outgoing HTTPS (upstream providers,
    /// federated issuers).
    pub extra_roots: Vec<reqwest::Certificate>,
}

/// What every handler sees.
#[derive(Clone)]
pub struct AppState {
    pub index: Arc<Index>,
    pub config: Arc<Config>,
    pub hashing: Arc<HashGate>,
    pub cache: Arc<VerifiedCache>,
    pub metrics: Arc<Metrics>,
    pub lockout: Arc<lockout::Lockout>,
    /// The same protection for the built-in users, by username.
    pub user_lockout: Arc<lockout::Lockout>,
    /// For the server's own writes (registrations, revocations); `None` in tests of the
    /// router, where those answer `server_error` or `temporarily_unavailable`.
    pub kube: Option<kube::Client>,
    /// The upstream identity providers' discovery documents and keys, cached, and the
    /// HTTP client that fetches them.
    pub upstreams: Arc<upstream::Providers>,
    /// The `jti`s of client assertions this replica accepted, until they expire.
    pub replays: Arc<Replays>,
    /// The keys that verify this cluster's ServiceAccount tokens, cached.
    pub cluster_issuer: Arc<issuer_keys::ClusterIssuer>,
    /// The trusted federated issuers and their keys, cached.
    pub federation: Arc<issuer_keys::FederatedIssuers>,
    /// The default audience and the issuer, normalised once: the audience decision
    /// compares claims with them on every token.
    pub reserved_keys: Arc<target::ReservedKeys>,
}

impl AppState {
    /// The state the handlers share; `kube` is `None` for a router without a cluster
    /// (tests and fuzzing), where the few writes answer `server_error`.
    pub fn new(
        index: Arc<Index>,
        config: Config,
        kube: Option<kube::Client>,
    ) -> Result<Self, crate::auth::secret::RandomError> {
        Ok(AppState {
            index,
            hashing: Arc::new(HashGate::new(
                config.max_concurrent_hashes,
                config.max_queued_hashes,
            )),
            cache: Arc::new(VerifiedCache::new(config.verified_cache_size)?),
            metrics: Arc::new(Metrics::default()),
            lockout: Arc::new(lockout::Lockout::new(config.lockout.clone())),
            user_lockout: Arc::new(lockout::Lockout::new(config.lockout.clone())),
            kube,
            upstreams: Arc::new(upstream::Providers::new(config.extra_roots.clone())),
            replays: Arc::new(Replays::new(REMEMBERED_ASSERTIONS)),
            cluster_issuer: Arc::default(),
            federation: Arc::new(issuer_keys::FederatedIssuers::new(
                &config.federated_issuers,
                config.extra_roots.clone(),
            )),
            reserved_keys: Arc::new(target::ReservedKeys::of(&config)),
            config: Arc::new(config),
        })
    }
}

/// How many client-assertion `jti`s a replica remembers (each for at most a few minutes;
/// about 50 MiB when full, which takes thousands of assertions a second).
const REMEMBERED_ASSERTIONS: usize = 1_000_000;

/// Largest request body accepted; token requests are a few hundred bytes.
const MAX_BODY: usize = 16 * 1024;

/// The HTTP surface, apart from serving, so that tests drive it with `oneshot`.
///
/// The no-store layers are route layers, so they touch only the endpoints' own answers,
/// not axum's 405 for another method. Errors carry both headers themselves
/// ([`OAuthError`]); the layers add what a success lacks and never replace a header.
pub fn router(state: AppState) -> Router {
    // RFC 6749 section 5.1 and RFC 7591 section 3.2.1: answers with credentials in them
    // take `Cache-Control: no-store` and `Pragma: no-cache`.
    let credentials = || axum::middleware::map_response(no_store_no_cache);
    // RFC 7662 section 2.2 and RFC 7009: the answers say things about a token; not cached.
    let about_tokens = || axum::middleware::map_response(no_store);
    Router::new()
        .route("/token", post(token::token).route_layer(credentials()))
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize::authorize))
        .route("/authorize/login", post(authorize::login))
        .route("/logout", get(authorize::logout).post(authorize::logout))
        .route("/authorize/upstream/{name}", get(upstream::start))
        .route("/authorize/callback", get(upstream::callback))
        .route(
            "/userinfo",
            get(userinfo::userinfo)
                .post(userinfo::userinfo)
                .route_layer(about_tokens()),
        )
        .route(
            "/introspect",
            post(introspect::introspect).route_layer(about_tokens()),
        )
        .route("/revoke", post(revoke::revoke).route_layer(about_tokens()))
        .route(
            "/register",
            post(registration::register).route_layer(credentials()),
        )
        .route(
            "/register/{client_id}",
            get(registration::read)
                .put(registration::update)
                .delete(registration::delete)
                .route_layer(credentials()),
        )
        .route("/.well-known/oauth-authorization-server", get(discovery))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

fn set_if_absent(res: &mut Response, name: header::HeaderName, value: &'static str) {
    res.headers_mut()
        .entry(name)
        .or_insert(HeaderValue::from_static(value));
}

async fn no_store(mut res: Response) -> Response {
    set_if_absent(&mut res, header::CACHE_CONTROL, "no-store");
    res
}

async fn no_store_no_cache(mut res: Response) -> Response {
    set_if_absent(&mut res, header::CACHE_CONTROL, "no-store");
    set_if_absent(&mut res, header::PRAGMA, "no-cache");
    res
}

async fn jwks(State(state): State<AppState>) -> Response {
    match state.index.keys() {
        Some(keys) => (
            [(header::CACHE_CONTROL, "public, max-age=60")],
            Json(keys.jwks.clone()),
        )
            .into_response(),
        None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn discovery(State(state): State<AppState>) -> Response {
    let mut algorithms: Vec<String> = state
        .index
        .keys()
        .map(|k| {
            k.jwks
                .keys
                .iter()
                .filter_map(|j| j.common.key_algorithm.map(|a| a.to_string()))
                .collect()
        })
        .unwrap_or_default();
    algorithms.dedup();
    Json(discovery::metadata(&state.config.issuer, algorithms)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let m = &state.metrics;
    m.indexed_clients
        .set(i64::try_from(state.index.len()).unwrap_or(i64::MAX));
    m.remembered_secrets
        .set(i64::try_from(state.cache.len()).unwrap_or(i64::MAX));
    m.watches_connected
        .set(i64::from(state.index.watches_connected()));
    m.hash_queue
        .set(i64::try_from(state.hashing.waiting()).unwrap_or(i64::MAX));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    // Still ready while the API server is unreachable: the index serves what it last saw,
    // and taking every replica out of the Service would turn an API outage into a token
    // outage. The body and a metric say so.
    if state.index.is_ready() && !state.index.watches_connected() {
        "ok: serving the last synced state; watches are reconnecting to the API server"
            .into_response()
    } else if state.index.is_ready() {
        "ok".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "index not synced").into_response()
    }
}

/// Starts the watches feeding the index, then serves until a shutdown signal.
pub async fn run(client: kube::Client, config: Config) -> anyhow::Result<()> {
    let scopes: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    let index = Arc::new(Index::with_scopes(scopes.clone()));
    if config.namespace_selectors {
        index.require_namespaces();
        tokio::spawn(index::watch::namespaces(
            Api::all(client.clone()),
            index.clone(),
        ));
    }
    for scope in scopes {
        let api: Api<OAuthClientVerifier> = match &scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let tokens: Api<InitialAccessTokenVerifier> = match &scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        tokio::spawn(index::watch::token_verifiers(
            tokens,
            scope.clone(),
            index.clone(),
        ));
        let accounts: Api<ServiceAccount> = match &scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        tokio::spawn(index::watch::service_accounts(
            accounts,
            scope.clone(),
            index.clone(),
        ));
        let resources: Api<crate::api::OAuthResource> = match &scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        tokio::spawn(index::watch::resources(
            resources,
            scope.clone(),
            index.clone(),
        ));
        tokio::spawn(index::watch::verifiers(api, scope, index.clone()));
    }
    tokio::spawn(index::watch::revocations(
        Api::namespaced(client.clone(), &config.operator_namespace),
        index.clone(),
    ));
    tokio::spawn(index::watch::users(
        Api::namespaced(client.clone(), &config.operator_namespace),
        index.clone(),
    ));
    tokio::spawn(index::watch::upstreams(
        Api::namespaced(client.clone(), &config.operator_namespace),
        index.clone(),
    ));
    tokio::spawn(index::watch::upstream_secrets(
        Api::namespaced(client.clone(), &config.operator_namespace),
        config.upstream_secret.clone(),
        index.clone(),
    ));
    tokio::spawn(index::watch::signing_keys(
        Api::namespaced(client.clone(), &config.operator_namespace),
        config.signing_key_secret.clone(),
        index.clone(),
    ));

    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, issuer = %config.issuer, "token server listening");
    let state = AppState::new(index, config, Some(client.clone()))?;
    // Forget the failures of clients that left the index, so memory follows the index.
    let (lockout, users, index) = (
        state.lockout.clone(),
        state.user_lockout.clone(),
        state.index.clone(),
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            lockout.retain(|id| index.client(id).is_some());
            users.retain(|name| index.user(name).is_some());
        }
    });
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(crate::telemetry::shutdown_signal())
    .await?;
    Ok(())
}
