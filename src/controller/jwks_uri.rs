//! Reading the JWK Sets clients publish at their `jwksUri`, for the verifier: the token
//! server then verifies `private_key_jwt` assertions from the index as for keys in a
//! Secret, and never fetches anything on a request.
//!
//! The URL is a namespace user's choice, so the read is [`crate::outgoing`]'s (https, or
//! http within this machine; no redirect; bounded in time and size) and what a failure
//! reports is its kind and HTTP status, never the answer. A set read is used for
//! [`REFRESH`]; a failure is remembered for [`RETRY`], so clients sharing a URL and a
//! reconcile loop cannot turn into a flood of requests to it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::outgoing;

/// How long a JWK Set read from a URL is used before it is read again: a client rotating
/// its keys publishes the new one at least this long before signing with it.
pub const REFRESH: Duration = Duration::from_secs(300);
/// How long a failed read is remembered before the URL is tried again.
pub const RETRY: Duration = Duration::from_secs(10);

/// A URL's body, or why it could not be read.
type Read = Result<String, String>;

#[derive(Default)]
pub struct JwksUris {
    http: outgoing::LazyClient,
    /// By URL: when it was read, and the text or why not.
    read: Mutex<HashMap<String, (Instant, Read)>>,
}

impl JwksUris {
    /// The body at `url` (a JWK Set, checked by the plan), or why it could not be read.
    pub async fn read(&self, url: &str) -> Read {
        if let Some(known) = self.known(url) {
            return known;
        }
        let result = self.fetch(url).await;
        let mut read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        read.retain(|_, (at, r)| at.elapsed() < if r.is_ok() { REFRESH } else { RETRY });
        read.insert(url.to_string(), (Instant::now(), result.clone()));
        result
    }

    fn known(&self, url: &str) -> Option<Read> {
        let read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        let (at, r) = read.get(url)?;
        let fresh = at.elapsed() < if r.is_ok() { REFRESH } else { RETRY };
        fresh.then(|| r.clone())
    }

    async fn fetch(&self, url: &str) -> Read {
        let http = self.http.get().map_err(|e| e.to_string())?;
        let body = outgoing::get_json(http, url).await.map_err(|e| match e {
            // The peer's words stay out of the status: only what kind of failure.
            outgoing::Error::Unreachable(_) => "could not be reached".to_string(),
            other => other.to_string(),
        })?;
        String::from_utf8(body).map_err(|_| "answered something that is not text".to_string())
    }
}
