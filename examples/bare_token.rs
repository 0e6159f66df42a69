//! The floor the token server is measured against (`hack/bench.sh token`): an axum
//! endpoint that parses a client-credentials form and signs an ES256 access token, and
//! does nothing else: no client lookup, no secret check, no metrics, no logs. The same
//! HTTP stack, signing library and allocator as the product, so the ratio between the two
//! in one run is what the product's own work costs.
//!
//!     cargo run --release --example bare_token -- 127.0.0.1:8099

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    scope: Option<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    client_id: &'a str,
    exp: u64,
    iat: u64,
    jti: String,
    scope: &'a str,
}

struct Signer {
    key: EncodingKey,
    header: Header,
}

async fn token(
    State(signer): State<Arc<Signer>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    if form.grant_type != "client_credentials" {
        return (StatusCode::BAD_REQUEST, "unsupported_grant_type").into_response();
    }
    // The client id as the product would read it, without checking the secret.
    let client = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("bare");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let jti: [u8; 16] = rand_bytes();
    let claims = Claims {
        iss: "http://127.0.0.1",
        sub: &client[client.len().saturating_sub(16)..],
        aud: "http://127.0.0.1",
        client_id: &client[client.len().saturating_sub(16)..],
        exp: now + 3600,
        iat: now,
        jti: jti.iter().map(|b| format!("{b:02x}")).collect(),
        scope: form.scope.as_deref().unwrap_or("read"),
    };
    match jsonwebtoken::encode(&signer.header, &claims, &signer.key) {
        Ok(jwt) => axum::Json(serde_json::json!({
            "access_token": jwt,
            "token_type": "Bearer",
            "expires_in": 3600,
        }))
        .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // A failing system RNG leaves zeros: acceptable for a benchmark floor, never in the product.
    let _ = getrandom::fill(&mut b);
    b
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listen: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8099".into())
        .parse()?;
    let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?.serialize_pem();
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = Some("bare".into());
    let signer = Arc::new(Signer {
        key: EncodingKey::from_ec_pem(pem.as_bytes())?,
        header,
    });
    let app = axum::Router::new()
        .route("/token", post(token))
        .route("/readyz", axum::routing::get(|| async { "ok" }))
        .with_state(signer);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
