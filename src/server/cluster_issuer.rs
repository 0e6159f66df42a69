//! The keys of this cluster's ServiceAccount token issuer, as the API server publishes
//! them (`/.well-known/openid-configuration` and `/openid/v1/jwks`, readable by every
//! ServiceAccount through the default `system:service-account-issuer-discovery` role),
//! fetched with the server's own credentials and cached.
//!
//! Bounded, so that tokens cannot turn into API requests: one fetch at a time, at most one
//! every [`MIN_INTERVAL`] whatever the requests ask for (a token naming an unknown `kid`
//! asks for one, since the API server may have a new key), and one when the cached keys
//! are older than [`MAX_AGE`] (so a key the cluster withdrew stops verifying). A failed
//! fetch keeps the keys known before.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;

/// The fewest seconds between two fetches.
const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// How long keys are used before they are fetched again.
const MAX_AGE: Duration = Duration::from_secs(300);

/// The issuer's name and keys at one time.
#[derive(Debug)]
pub struct IssuerKeys {
    pub issuer: String,
    pub jwks: JwkSet,
    fetched: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no API server client")]
    NoClient,
    #[error("fetching {0}: {1}")]
    Request(&'static str, kube::Error),
    #[error("{0} is not what the API server publishes: {1}")]
    Parse(&'static str, serde_json::Error),
}

#[derive(Default)]
pub struct ClusterIssuer {
    current: RwLock<Option<Arc<IssuerKeys>>>,
    /// When the last fetch started; held while fetching, so fetches never overlap.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl ClusterIssuer {
    /// Keys that hold `kid` when the issuer has it, else the latest known.
    pub async fn keys(
        &self,
        kube: Option<&kube::Client>,
        kid: Option<&str>,
    ) -> Result<Arc<IssuerKeys>, FetchError> {
        let fresh = |k: &IssuerKeys| {
            k.fetched.elapsed() < MAX_AGE && kid.is_none_or(|kid| k.jwks.find(kid).is_some())
        };
        if let Some(k) = self.cached().filter(|k| fresh(k)) {
            return Ok(k);
        }
        let mut last = self.last_fetch.lock().await;
        // Another request may have fetched while this one waited.
        let cached = self.cached();
        if let Some(k) = cached.clone().filter(|k| fresh(k)) {
            return Ok(k);
        }
        if let (Some(k), Some(at)) = (&cached, *last)
            && at.elapsed() < MIN_INTERVAL
        {
            return Ok(k.clone());
        }
        *last = Some(Instant::now());
        match fetch(kube.ok_or(FetchError::NoClient)?).await {
            Ok(keys) => {
                tracing::info!(issuer = %keys.issuer, keys = keys.jwks.keys.len(), "ServiceAccount issuer keys fetched");
                let keys = Arc::new(keys);
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(keys.clone());
                Ok(keys)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not fetch the ServiceAccount issuer's keys");
                cached.ok_or(e)
            }
        }
    }

    fn cached(&self) -> Option<Arc<IssuerKeys>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

async fn fetch(kube: &kube::Client) -> Result<IssuerKeys, FetchError> {
    #[derive(serde::Deserialize)]
    struct Discovery {
        issuer: String,
    }
    let get = |path: &'static str| async move {
        let request = http::Request::get(path)
            .body(Vec::new())
            .expect("a fixed path is a valid request");
        kube.request_text(request)
            .await
            .map_err(|e| FetchError::Request(path, e))
    };
    const DISCOVERY: &str = "/.well-known/openid-configuration";
    const JWKS: &str = "/openid/v1/jwks";
    let discovery: Discovery = serde_json::from_str(&get(DISCOVERY).await?)
        .map_err(|e| FetchError::Parse(DISCOVERY, e))?;
    let jwks: JwkSet =
        serde_json::from_str(&get(JWKS).await?).map_err(|e| FetchError::Parse(JWKS, e))?;
    Ok(IssuerKeys {
        issuer: discovery.issuer,
        jwks,
        fetched: Instant::now(),
    })
}
