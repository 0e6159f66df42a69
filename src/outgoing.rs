//! Outgoing HTTP, the same bounds for every caller: the token server's requests to
//! upstream providers and federated issuers, the controller's reads of a client's
//! `jwksUri`. Bounded in time ([`TIMEOUT`], [`CONNECT_TIMEOUT`]) and size
//! ([`MAX_ANSWER`]), following no redirect (a redirect could lead from an allowed URL to
//! one that is not), and only to [`is_secure_url`] addresses: https, or plain http within
//! this machine. Nothing fetched is logged.

use std::time::Duration;

/// The longest a request may take, all of it.
pub const TIMEOUT: Duration = Duration::from_secs(10);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read.
pub const MAX_ANSWER: usize = 256 * 1024;

/// Why a request failed. Names no secret and quotes nothing the peer sent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the HTTP client could not be built: {0}")]
    Client(String),
    #[error("{0} is neither https nor http to a loopback host")]
    Insecure(String),
    #[error("could not be reached ({0})")]
    Unreachable(String),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("answered more than {MAX_ANSWER} bytes")]
    TooLarge,
}

/// The client of every outgoing request, trusting the system's roots and `roots`.
pub fn client(roots: &[reqwest::Certificate]) -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("oauth-operator")
        .tls_certs_merge(roots.iter().cloned())
        .build()
        .map_err(|e| Error::Client(e.to_string()))
}

/// A [`client`] built at first use: building can fail (no TLS roots), and a component
/// that never fetches anything (no upstream provider, no federated issuer, no `jwksUri`)
/// never needs one.
#[derive(Default)]
pub struct LazyClient {
    /// Trusted besides the system's roots (a private CA).
    roots: Vec<reqwest::Certificate>,
    built: std::sync::OnceLock<reqwest::Client>,
}

impl LazyClient {
    pub fn new(roots: Vec<reqwest::Certificate>) -> Self {
        LazyClient {
            roots,
            built: std::sync::OnceLock::new(),
        }
    }

    /// The client, built now if this is the first use.
    pub fn get(&self) -> Result<&reqwest::Client, Error> {
        if let Some(c) = self.built.get() {
            return Ok(c);
        }
        let built = client(&self.roots)?;
        Ok(self.built.get_or_init(|| built))
    }
}

/// The body of a successful GET of `url`, a JSON document (a JWK Set's own media type
/// too: the Kubernetes API server answers 406 to a JWKS request that accepts only
/// `application/json`).
pub async fn get_json(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, Error> {
    if !is_secure_url(url) {
        return Err(Error::Insecure(url.to_string()));
    }
    let res = http
        .get(url)
        .header(
            reqwest::header::ACCEPT,
            "application/json, application/jwk-set+json",
        )
        .send()
        .await
        .map_err(|e| Error::Unreachable(e.without_url().to_string()))?;
    if !res.status().is_success() {
        return Err(Error::Status(res.status().as_u16()));
    }
    read_bounded(res).await
}

/// The body of `res`, refused beyond [`MAX_ANSWER`] bytes.
pub async fn read_bounded(mut res: reqwest::Response) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| Error::Unreachable(e.without_url().to_string()))?
    {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(Error::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `https`, or `http` to a loopback host: what a URL the operator fetches from may be, so
/// that keys never travel in the clear beyond this machine.
pub fn is_secure_url(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    let host = u.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match u.scheme() {
        "https" => !host.is_empty(),
        "http" => loopback,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_travel_over_https_or_within_the_machine() {
        for ok in [
            "https://oidc.other.test",
            "https://10.0.0.1:6443/openid/v1/jwks",
            "http://127.0.0.1:8080",
            "http://localhost:1/x",
            "http://[::1]:9/",
        ] {
            assert!(is_secure_url(ok), "{ok}");
        }
        for bad in [
            "http://oidc.other.test",
            "http://10.0.0.1",
            "ftp://127.0.0.1",
            "https://",
            "not a url",
        ] {
            assert!(!is_secure_url(bad), "{bad}");
        }
    }
}
