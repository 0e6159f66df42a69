//! Prometheus metrics of the token server, served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The refusal reason: an RFC 6749 error code, a bounded set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub tokens_issued: Counter,
    pub refusals: Family<Reason, Counter>,
    pub token_seconds: Histogram,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub indexed_clients: Gauge,
    /// 1 while every watch reaches the API server, 0 while the index serves its last state.
    pub watches_connected: Gauge,
    pub remembered_secrets: Gauge,
    /// Requests waiting for an argon2 turn.
    pub hash_queue: Gauge,
    pub lockouts: Counter,
    pub locked_refusals: Counter,
    /// Client assertions refused, by the check that failed (the client sees only
    /// `invalid_client`).
    pub assertion_refusals: Family<Reason, Counter>,
    /// Tokens issued for an audience no `OAuthResource` claims (under `Off` or `Warn`):
    /// what must reach zero before `Enforce` (docs/multi-tenancy.md).
    pub unclaimed_audience_tokens: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("oauth_operator");
        let tokens_issued = Counter::default();
        let refusals = Family::<Reason, Counter>::default();
        let token_seconds = Histogram::new(exponential_buckets(0.000_25, 2.0, 14));
        let cache_hits = Counter::default();
        let cache_misses = Counter::default();
        let indexed_clients = Gauge::default();
        let watches_connected = Gauge::default();
        let remembered_secrets = Gauge::default();
        let hash_queue = Gauge::default();
        let lockouts = Counter::default();
        let locked_refusals = Counter::default();
        let assertion_refusals = Family::<Reason, Counter>::default();
        let unclaimed_audience_tokens = Counter::default();
        registry.register(
            "tokens_unclaimed_audience",
            "Access tokens issued for an audience no OAuthResource claims (served under audience ownership Off or Warn)",
            unclaimed_audience_tokens.clone(),
        );
        registry.register(
            "client_assertion_refusals",
            "Client assertions (private_key_jwt, ServiceAccount tokens) refused, by the check that failed",
            assertion_refusals.clone(),
        );
        registry.register(
            "client_lockouts",
            "Temporary lockouts after repeated failures",
            lockouts.clone(),
        );
        registry.register(
            "locked_refusals",
            "Token requests refused without a secret check because the client was locked",
            locked_refusals.clone(),
        );
        registry.register(
            "tokens_issued",
            "Access tokens issued",
            tokens_issued.clone(),
        );
        registry.register(
            "token_refusals",
            "Token requests refused, by RFC 6749 error",
            refusals.clone(),
        );
        registry.register(
            "token_request_seconds",
            "Time to answer a token request",
            token_seconds.clone(),
        );
        registry.register(
            "verified_cache_hits",
            "Token requests authenticated from the verified-secret cache, without argon2",
            cache_hits.clone(),
        );
        registry.register(
            "verified_cache_misses",
            "Token requests that needed an argon2 check",
            cache_misses.clone(),
        );
        registry.register(
            "indexed_clients",
            "Clients in the token server's index",
            indexed_clients.clone(),
        );
        registry.register(
            "watches_connected",
            "1 while every watch reaches the API server; 0 while the index serves the last state it saw",
            watches_connected.clone(),
        );
        registry.register(
            "verified_cache_entries",
            "Secrets remembered by the verified-secret cache",
            remembered_secrets.clone(),
        );
        registry.register(
            "argon2_queue",
            "Requests waiting for an argon2 check; past --max-queued-hashes they are refused with 503",
            hash_queue.clone(),
        );
        Metrics {
            registry,
            tokens_issued,
            refusals,
            token_seconds,
            cache_hits,
            cache_misses,
            indexed_clients,
            watches_connected,
            remembered_secrets,
            hash_queue,
            lockouts,
            locked_refusals,
            assertion_refusals,
            unclaimed_audience_tokens,
        }
    }
}

impl Metrics {
    /// The OpenMetrics text of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
