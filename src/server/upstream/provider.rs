//! Talking to an upstream provider: its discovery document (OpenID Connect Discovery
//! 1.0), its JWK Set, and the code exchange at its token endpoint. The only outgoing
//! HTTP of the token server with the federated issuers' keys, both within the bounds of
//! [`crate::outgoing`].
//!
//! Discovery documents and JWK Sets are cached for [`CACHE_FOR`] (5 minutes) per URL,
//! so a sign-in costs one request to the provider (the code exchange) once warm; an ID
//! token whose `kid` is not in the cached set refetches the set once, which is how a
//! provider's key rotation reaches us. Every request has bounded timeouts ([`outgoing::TIMEOUT`],
//! [`outgoing::CONNECT_TIMEOUT`]) and a bounded answer ([`outgoing::MAX_ANSWER`]), follows no redirect, and
//! nothing fetched is logged: an answer of the token endpoint holds tokens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;

use crate::auth::secret::SecretString;
use crate::index::UpstreamEntry;
use crate::outgoing;

/// How long a discovery document or JWK Set is used before it is fetched again.
pub const CACHE_FOR: Duration = Duration::from_secs(300);

/// What the provider's discovery document says that the sign-in needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
}

/// What went wrong with a provider. The messages name no secret and quote nothing the
/// provider sent.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("the provider could not be reached or answered badly: {0}")]
    Fetch(String),
    #[error("the provider's discovery document is not usable")]
    Discovery,
    #[error("the provider's discovery document is for another issuer")]
    IssuerMismatch,
    #[error("the provider refused the code (HTTP {status}, error {error})")]
    Exchange { status: u16, error: String },
    #[error("the provider's token answer has no ID token")]
    NoIdToken,
}

impl From<outgoing::Error> for ProviderError {
    fn from(e: outgoing::Error) -> Self {
        ProviderError::Fetch(e.to_string())
    }
}

impl ProviderError {
    /// A bounded label for audit logs.
    pub fn reason(&self) -> &'static str {
        match self {
            ProviderError::Fetch(_) => "provider_unreachable",
            ProviderError::Discovery => "discovery_unusable",
            ProviderError::IssuerMismatch => "discovery_issuer_mismatch",
            ProviderError::Exchange { .. } => "code_exchange_refused",
            ProviderError::NoIdToken => "no_id_token",
        }
    }
}

/// The HTTP client and the caches, shared by every request.
#[derive(Default)]
pub struct Providers {
    http: outgoing::LazyClient,
    metadata: Mutex<HashMap<String, (Instant, Arc<Metadata>)>>,
    jwks: Mutex<HashMap<String, (Instant, Arc<JwkSet>)>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Providers(..)")
    }
}

/// `<issuer>/.well-known/openid-configuration` (Discovery section 4).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// The value of HTTP Basic for a client (RFC 6749 section 2.3.1: both parts
/// form-urlencoded first).
pub fn basic(client_id: &str, secret: &SecretString) -> SecretString {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", enc(client_id), enc(secret.expose()));
    SecretString::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    ))
}

fn fresh<T>(cache: &Mutex<HashMap<String, (Instant, Arc<T>)>>, key: &str) -> Option<Arc<T>> {
    let cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
    cache
        .get(key)
        .filter(|(at, _)| at.elapsed() < CACHE_FOR)
        .map(|(_, v)| v.clone())
}

fn remember<T>(cache: &Mutex<HashMap<String, (Instant, Arc<T>)>>, key: &str, value: Arc<T>) {
    let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
    cache.retain(|_, (at, _)| at.elapsed() < CACHE_FOR);
    cache.insert(key.to_string(), (Instant::now(), value));
}

impl Providers {
    /// `roots` are trusted besides the system's.
    pub fn new(roots: Vec<reqwest::Certificate>) -> Self {
        Providers {
            http: outgoing::LazyClient::new(roots),
            ..Providers::default()
        }
    }

    fn http(&self) -> Result<&reqwest::Client, ProviderError> {
        Ok(self.http.get()?)
    }

    /// The provider's discovery document, cached; it must name the configured issuer.
    pub async fn metadata(&self, upstream: &UpstreamEntry) -> Result<Arc<Metadata>, ProviderError> {
        if let Some(m) = fresh(&self.metadata, &upstream.issuer) {
            return Ok(m);
        }
        let body = self.get(&discovery_url(&upstream.issuer)).await?;
        let m: Metadata = serde_json::from_slice(&body).map_err(|_| ProviderError::Discovery)?;
        if m.issuer != upstream.issuer {
            return Err(ProviderError::IssuerMismatch);
        }
        let usable = |u: &str| u.starts_with("https://") || u.starts_with("http://");
        if ![&m.authorization_endpoint, &m.token_endpoint, &m.jwks_uri]
            .iter()
            .all(|u| usable(u))
        {
            return Err(ProviderError::Discovery);
        }
        let m = Arc::new(m);
        remember(&self.metadata, &upstream.issuer, m.clone());
        Ok(m)
    }

    /// The provider's JWK Set: the cached one, or (with `refetch`, for a `kid` the cached
    /// one lacks) a new one.
    pub async fn jwks(&self, uri: &str, refetch: bool) -> Result<Arc<JwkSet>, ProviderError> {
        if !refetch && let Some(k) = fresh(&self.jwks, uri) {
            return Ok(k);
        }
        let body = self.get(uri).await?;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|_| ProviderError::Discovery)?;
        let set = Arc::new(set);
        remember(&self.jwks, uri, set.clone());
        Ok(set)
    }

    /// Exchanges `code` at the token endpoint as a confidential client
    /// (`client_secret_basic`) with the PKCE verifier; the ID token of the answer.
    pub async fn exchange(
        &self,
        metadata: &Metadata,
        upstream: &UpstreamEntry,
        secret: &SecretString,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<SecretString, ProviderError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("code_verifier", verifier)
            .finish();
        let res = self
            .http()?
            .post(&metadata.token_endpoint)
            .header(
                reqwest::header::AUTHORIZATION,
                basic(&upstream.client_id, secret).expose(),
            )
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| ProviderError::Fetch(e.without_url().to_string()))?;
        let status = res.status();
        let answer = outgoing::read_bounded(res).await?;
        #[derive(Deserialize)]
        struct TokenAnswer {
            id_token: Option<String>,
            error: Option<String>,
        }
        let parsed: Option<TokenAnswer> = serde_json::from_slice(&answer).ok();
        if !status.is_success() {
            // The error code alone (RFC 6749 section 5.2), and only if it looks like one.
            let error = parsed
                .and_then(|a| a.error)
                .filter(|e| e.len() <= 64 && e.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
                .unwrap_or_else(|| "-".into());
            return Err(ProviderError::Exchange {
                status: status.as_u16(),
                error,
            });
        }
        parsed
            .and_then(|a| a.id_token)
            .map(SecretString::new)
            .ok_or(ProviderError::NoIdToken)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, ProviderError> {
        Ok(outgoing::get_json(self.http()?, url).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_basic_follow_the_specs() {
        assert_eq!(
            discovery_url("https://id.corp.test/realms/x/"),
            "https://id.corp.test/realms/x/.well-known/openid-configuration"
        );
        // "a b:c" and "p&=" form-urlencoded, then base64.
        let b = basic("a b:c", &SecretString::new("p&=".into()));
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b.expose().trim_start_matches("Basic "))
            .expect("b64");
        assert_eq!(String::from_utf8_lossy(&raw), "a+b%3Ac:p%26%3D");
        assert!(!format!("{b:?}").contains("p&="), "redacted");
    }

    #[test]
    fn the_cache_forgets_after_its_time() {
        let cache: Mutex<HashMap<String, (Instant, Arc<u8>)>> = Mutex::default();
        assert!(fresh(&cache, "k").is_none());
        remember(&cache, "k", Arc::new(1));
        assert_eq!(fresh(&cache, "k").as_deref(), Some(&1));
        if let Some(old) = Instant::now().checked_sub(CACHE_FOR) {
            cache
                .lock()
                .expect("lock")
                .insert("k".into(), (old, Arc::new(2)));
            assert!(fresh(&cache, "k").is_none(), "stale");
        }
    }
}
