//! The controller's own HTTP endpoint: liveness, readiness and Prometheus metrics, for
//! probes and scraping. Standby replicas serve it too (they are healthy, just not leading).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// What a reconcile was about and how it ended; a bounded label set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub kind: &'static str,
    pub result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    /// 1 while this replica leads.
    pub leader: Gauge,
    pub reconciliations: Family<Outcome, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("oauth_operator_controller");
        let leader = Gauge::default();
        let reconciliations = Family::<Outcome, Counter>::default();
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
        }
    }
}

impl Metrics {
    pub fn count(&self, kind: &'static str, result: &'static str) {
        self.reconciliations
            .get_or_create(&Outcome { kind, result })
            .inc();
    }

    fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
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
