//! The controller's own HTTP endpoint: liveness, readiness and Prometheus metrics, for
//! probes and scraping. Standby replicas serve it too (they are healthy, just not leading).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::api::{OAuthClient, SecretState};

/// What a reconcile was about and how it ended; a bounded label set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub kind: &'static str,
    pub result: &'static str,
}

/// A client secret's state, as the clients' status says it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SecretStateLabel {
    pub state: &'static str,
}

/// What a policy does to a client outside it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EnforcementLabel {
    pub enforcement: &'static str,
}

pub struct Metrics {
    registry: Registry,
    /// 1 while this replica leads.
    pub leader: Gauge,
    pub reconciliations: Family<Outcome, Counter>,
    /// Client secrets by state, counted from the watched clients' status when scraped.
    client_secrets: Family<SecretStateLabel, Gauge>,
    /// Clients outside an OAuthClientPolicy bound, by what it does to them.
    policy_violations: Family<EnforcementLabel, Gauge>,
    /// The leader's OAuthClient stores (standbys have none, and report no secrets).
    clients: OnceLock<Vec<Store<OAuthClient>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("oauth_operator_controller");
        let leader = Gauge::default();
        let reconciliations = Family::<Outcome, Counter>::default();
        let client_secrets = Family::<SecretStateLabel, Gauge>::default();
        let policy_violations = Family::<EnforcementLabel, Gauge>::default();
        registry.register(
            "policy_violations",
            "Watched OAuthClients outside a bound of an OAuthClientPolicy, by enforcement (warn: served; enforce: refused, or its lifetime cut), as their status says; reported by the leader only",
            policy_violations.clone(),
        );
        registry.register(
            "client_secrets",
            "Client secrets of the watched OAuthClients by state (valid, expiring_soon, expired, pending), as their status says; reported by the leader only",
            client_secrets.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        registry.register(
            "reconciliations",
            "Reconciliations by resource kind and result (ok, or the error's reason)",
            reconciliations.clone(),
        );
        Metrics {
            registry,
            leader,
            reconciliations,
            client_secrets,
            policy_violations,
            clients: OnceLock::new(),
        }
    }
}

impl Metrics {
    pub fn count(&self, kind: &'static str, result: &'static str) {
        self.reconciliations
            .get_or_create(&Outcome { kind, result })
            .inc();
    }

    /// The stores [`Metrics::render`] counts client secrets from, once leading.
    pub fn count_secrets_of(&self, stores: Vec<Store<OAuthClient>>) {
        let _ = self.clients.set(stores);
    }

    fn render(&self) -> String {
        if let Some(stores) = self.clients.get() {
            let all: Vec<_> = stores.iter().flat_map(Store::state).collect();
            for (state, n) in secret_counts(all.iter().map(|c| c.as_ref())) {
                self.client_secrets
                    .get_or_create(&SecretStateLabel { state })
                    .set(n);
            }
            for (enforcement, n) in policy_counts(all.iter().map(|c| c.as_ref())) {
                self.policy_violations
                    .get_or_create(&EnforcementLabel { enforcement })
                    .set(n);
            }
        }
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// How many secrets of `clients` are in each state, every state named (zero included), so
/// an alert on `expired > 0` sees its series drop back to 0 rather than vanish.
pub fn secret_counts<'a>(
    clients: impl Iterator<Item = &'a OAuthClient>,
) -> [(&'static str, i64); 4] {
    let mut counts = [
        ("valid", 0),
        ("expiring_soon", 0),
        ("expired", 0),
        ("pending", 0),
    ];
    for s in clients.flat_map(|c| c.status.iter().flat_map(|s| &s.secrets)) {
        let i = match s.state {
            SecretState::Valid => 0,
            SecretState::ExpiringSoon => 1,
            SecretState::Expired => 2,
            SecretState::Pending => 3,
        };
        counts[i].1 += 1;
    }
    counts
}

/// How many `clients` are outside a policy bound, by enforcement, both named.
pub fn policy_counts<'a>(
    clients: impl Iterator<Item = &'a OAuthClient>,
) -> [(&'static str, i64); 2] {
    let mut counts = [("warn", 0), ("enforce", 0)];
    for c in clients.flat_map(|c| c.status.iter().flat_map(|s| &s.conditions)) {
        match (c.type_.as_str(), c.status.as_str(), c.reason.as_str()) {
            ("PolicyCompliant", "False", "PolicyWarning") => counts[0].1 += 1,
            ("PolicyCompliant", "False", _) => counts[1].1 += 1,
            _ => {}
        }
    }
    counts
}

/// Serves `/healthz`, `/readyz` and `/metrics` on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(|State(m): State<Arc<Metrics>>| async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.render(),
                )
                    .into_response()
            }),
        )
        .with_state(metrics);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "controller health and metrics listening");
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_counted_by_state_with_every_state_named() {
        let client = |states: &[&str]| {
            let mut c = OAuthClient::new(
                "c",
                serde_json::from_value(serde_json::json!({})).expect("spec"),
            );
            c.status = serde_json::from_value(serde_json::json!({
                "secrets": states.iter().enumerate().map(|(i, s)| serde_json::json!({"name": format!("s{i}"), "state": s})).collect::<Vec<_>>()
            }))
            .ok();
            c
        };
        let clients = [
            client(&["Valid", "ExpiringSoon"]),
            client(&["Expired"]),
            client(&["Valid"]),
            OAuthClient::new(
                "new",
                serde_json::from_value(serde_json::json!({})).expect("spec"),
            ),
        ];
        assert_eq!(
            secret_counts(clients.iter()),
            [
                ("valid", 2),
                ("expiring_soon", 1),
                ("expired", 1),
                ("pending", 0)
            ]
        );
        assert_eq!(
            secret_counts(std::iter::empty()),
            [
                ("valid", 0),
                ("expiring_soon", 0),
                ("expired", 0),
                ("pending", 0)
            ]
        );
        // A standby (no stores) reports none; a leader every state, zeros included.
        let m = Metrics::default();
        assert!(!m.render().contains("client_secrets"));
        let (store, _writer) = kube::runtime::reflector::store::<OAuthClient>();
        m.count_secrets_of(vec![store]);
        assert!(
            m.render()
                .contains("oauth_operator_controller_policy_violations{enforcement=\"warn\"} 0")
        );
        assert!(
            m.render()
                .contains("oauth_operator_controller_client_secrets{state=\"expired\"} 0")
        );
    }
}
