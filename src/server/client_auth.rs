//! Client authentication at the token endpoint (RFC 6749 section 2.3.1): HTTP Basic
//! (`client_secret_basic`) or form fields (`client_secret_post`), never both.

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::error::OAuthError;
use super::form::Form;
use crate::auth::secret::SecretString;

/// Credentials as presented.
#[derive(Debug)]
pub struct Presented {
    pub client_id: String,
    pub secret: SecretString,
    /// Whether they came in an `Authorization: Basic` header.
    pub basic: bool,
}

/// Extracts the client's credentials from the header or the form.
pub fn presented(headers: &HeaderMap, form: &Form) -> Result<Presented, OAuthError> {
    let authorization = headers.get(header::AUTHORIZATION);
    if let Some(value) = authorization {
        if form.get("client_secret").is_some() {
            return Err(OAuthError::InvalidRequest(
                "more than one client authentication method was used",
            ));
        }
        let (id, secret) =
            parse_basic(value.as_bytes()).ok_or(OAuthError::InvalidClient { basic: true })?;
        if form.get("client_id").is_some_and(|body_id| body_id != id) {
            return Err(OAuthError::InvalidRequest(
                "client_id does not match the Authorization header",
            ));
        }
        return Ok(Presented {
            client_id: id,
            secret: SecretString::new(secret),
            basic: true,
        });
    }
    match (form.get("client_id"), form.get("client_secret")) {
        (Some(id), Some(secret)) => Ok(Presented {
            client_id: id.to_string(),
            secret: SecretString::new(secret.to_string()),
            basic: false,
        }),
        _ => Err(OAuthError::InvalidClient { basic: true }),
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))`, as RFC 6749 section 2.3.1 asks.
fn parse_basic(value: &[u8]) -> Option<(String, String)> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(rest.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| -> Option<String> {
        let plus_as_space = s.replace('+', " ");
        form_urlencoded::parse(format!("x={plus_as_space}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    let (id, secret) = (unescape(id)?, unescape(secret)?);
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn basic(id: &str, secret: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&v).expect("header"),
        );
        h
    }

    fn form(s: &str) -> Form {
        Form::parse(s.as_bytes()).expect("form")
    }

    #[test]
    fn basic_credentials_are_url_decoded() {
        let p = presented(
            &basic("my%20id", "a%3Ab"),
            &form("grant_type=client_credentials"),
        )
        .expect("ok");
        assert_eq!(p.client_id, "my id");
        assert_eq!(p.secret.expose(), "a:b");
        assert!(p.basic);
    }

    #[test]
    fn post_credentials() {
        let p = presented(&HeaderMap::new(), &form("client_id=c&client_secret=s")).expect("ok");
        assert_eq!(p.client_id, "c");
        assert!(!p.basic);
    }

    #[test]
    fn both_methods_at_once_is_invalid_request() {
        let err = presented(&basic("c", "s"), &form("client_secret=s")).expect_err("refused");
        assert_eq!(err.code(), "invalid_request");
    }

    #[test]
    fn no_credentials_or_bad_basic_is_invalid_client() {
        assert_eq!(
            presented(&HeaderMap::new(), &form(""))
                .expect_err("x")
                .code(),
            "invalid_client"
        );
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(
            presented(&h, &form("")).expect_err("x").code(),
            "invalid_client"
        );
    }
}
