//! The keys that verify workload tokens: this cluster's ServiceAccount issuer's, as the
//! API server publishes them (`/.well-known/openid-configuration` and `/openid/v1/jwks`,
//! readable by every ServiceAccount through the default
//! `system:service-account-issuer-discovery` role) and fetched with the server's own
//! credentials, and those of the federated issuers the operator trusts (another cluster,
//! a CI system), read from their OpenID discovery document and `jwks_uri` over HTTPS.
//!
//! Bounded, so that tokens cannot turn into outgoing requests: per issuer, one fetch at a
//! time, at most one every [`MIN_INTERVAL`] whatever the requests ask for (a token naming
//! an unknown `kid` asks for one, since the issuer may have a new key), and one when the
//! cached keys are older than [`MAX_AGE`] (so a withdrawn key stops verifying). A failed
//! fetch keeps the keys known before. Only issuers named by the operator's
//! `--federated-issuer` flags are ever fetched, so their number bounds the cache, and a
//! namespace's user can name an issuer in a client but not make the server trust it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;

use super::upstream::provider;

/// The fewest seconds between two fetches of one issuer's keys.
const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// How long keys are used before they are fetched again.
const MAX_AGE: Duration = Duration::from_secs(300);

/// An issuer's name and keys at one time.
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
    #[error("the issuer is not trusted")]
    NotTrusted,
    #[error("{0}")]
    Provider(#[from] provider::ProviderError),
    #[error("{0}")]
    Outgoing(#[from] crate::outgoing::Error),
}

/// One issuer's keys, cached within the bounds of the module documentation.
#[derive(Default)]
struct KeyCache {
    current: RwLock<Option<Arc<IssuerKeys>>>,
    /// When the last fetch started; held while fetching, so fetches never overlap.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl KeyCache {
    /// Keys that hold `kid` when the issuer has it, else the latest known; `fetch` is
    /// called only when the bounds allow.
    async fn keys<F, Fut>(&self, kid: Option<&str>, fetch: F) -> Result<Arc<IssuerKeys>, FetchError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<IssuerKeys, FetchError>>,
    {
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
        match fetch().await {
            Ok(keys) => {
                tracing::info!(issuer = %keys.issuer, keys = keys.jwks.keys.len(), "issuer keys fetched");
                let keys = Arc::new(keys);
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(keys.clone());
                Ok(keys)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not fetch an issuer's keys");
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

/// This cluster's ServiceAccount token issuer.
#[derive(Default)]
pub struct ClusterIssuer(KeyCache);

impl ClusterIssuer {
    /// Keys that hold `kid` when the issuer has it, else the latest known.
    pub async fn keys(
        &self,
        kube: Option<&kube::Client>,
        kid: Option<&str>,
    ) -> Result<Arc<IssuerKeys>, FetchError> {
        self.0
            .keys(kid, || async {
                from_api_server(kube.ok_or(FetchError::NoClient)?).await
            })
            .await
    }
}

async fn from_api_server(kube: &kube::Client) -> Result<IssuerKeys, FetchError> {
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

/// The issuers the operator trusts for federated workload identities, each with its keys.
pub struct FederatedIssuers {
    issuers: HashMap<String, KeyCache>,
    http: crate::outgoing::LazyClient,
}

impl FederatedIssuers {
    /// `roots` are trusted besides the system's (a private CA of another cluster).
    pub fn new(issuers: &[String], roots: Vec<reqwest::Certificate>) -> Self {
        FederatedIssuers {
            issuers: issuers
                .iter()
                .map(|i| (i.clone(), KeyCache::default()))
                .collect(),
            http: crate::outgoing::LazyClient::new(roots),
        }
    }

    pub fn trusts(&self, issuer: &str) -> bool {
        self.issuers.contains_key(issuer)
    }

    /// The trusted `issuer`'s keys that hold `kid` when it has it, else the latest known.
    pub async fn keys(
        &self,
        issuer: &str,
        kid: Option<&str>,
    ) -> Result<Arc<IssuerKeys>, FetchError> {
        let cache = self.issuers.get(issuer).ok_or(FetchError::NotTrusted)?;
        cache.keys(kid, || self.fetch_discovered(issuer)).await
    }

    async fn fetch_discovered(&self, issuer: &str) -> Result<IssuerKeys, FetchError> {
        let http = self.http.get()?;
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let body = crate::outgoing::get_json(http, &provider::discovery_url(issuer)).await?;
        let d: Discovery =
            serde_json::from_slice(&body).map_err(|_| provider::ProviderError::Discovery)?;
        if d.issuer != issuer {
            return Err(provider::ProviderError::IssuerMismatch.into());
        }
        let body = crate::outgoing::get_json(http, &d.jwks_uri).await?;
        let jwks: JwkSet =
            serde_json::from_slice(&body).map_err(|_| provider::ProviderError::Discovery)?;
        Ok(IssuerKeys {
            issuer: d.issuer,
            jwks,
            fetched: Instant::now(),
        })
    }
}
