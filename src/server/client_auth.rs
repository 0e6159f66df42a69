//! Client authentication at the token, introspection and revocation endpoints (RFC 6749
//! section 2.3.1): HTTP Basic (`client_secret_basic`) or form fields
//! (`client_secret_post`), never both.
//!
//! The Basic header is parsed by hand on purpose: RFC 6749 asks for the id and secret to
//! be form-encoded before base64, which generic Basic parsers (`headers`, `axum-extra`)
//! do not undo. [`BasicCredentials`] is an optional extractor whose rejection (a header
//! that is there but not valid Basic) is `invalid_client` with `WWW-Authenticate`;
//! handlers take it as [`BasicHeader`] and let [`presented`] decide, because RFC 6749
//! checks the grant and the form before the client.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::error::OAuthError;
use super::form::Form;
use crate::auth::secret::SecretString;

/// Credentials from `Authorization: Basic`, already form-decoded.
#[derive(Debug)]
pub struct BasicCredentials {
    client_id: String,
    secret: SecretString,
}

/// What the `Authorization` header said: nothing, Basic credentials, or something that
/// is not valid Basic (`invalid_client`, answered only once the form was checked).
pub type BasicHeader = Result<Option<BasicCredentials>, OAuthError>;

impl<S: Send + Sync> OptionalFromRequestParts<S> for BasicCredentials {
    type Rejection = OAuthError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        basic_header(&parts.headers)
    }
}

/// The `Authorization` header read as Basic credentials.
fn basic_header(headers: &HeaderMap) -> BasicHeader {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let (client_id, secret) =
        parse_basic(value.as_bytes()).ok_or(OAuthError::InvalidClient { basic: true })?;
    Ok(Some(BasicCredentials {
        client_id,
        secret: SecretString::new(secret),
    }))
}

/// Credentials as presented.
#[derive(Debug)]
pub struct Presented {
    pub client_id: String,
    pub secret: SecretString,
    /// Whether they came in an `Authorization: Basic` header.
    pub basic: bool,
}

/// The client's credentials, from the header or the form, in the RFC's order of checks.
pub fn presented(basic: BasicHeader, form: &Form) -> Result<Presented, OAuthError> {
    if !matches!(basic, Ok(None)) {
        if form.get("client_secret").is_some() {
            return Err(OAuthError::InvalidRequest(
                "more than one client authentication method was used",
            ));
        }
        let BasicCredentials { client_id, secret } =
            basic?.ok_or(OAuthError::InvalidClient { basic: true })?;
        if form
            .get("client_id")
            .is_some_and(|body_id| body_id != client_id)
        {
            return Err(OAuthError::InvalidRequest(
                "client_id does not match the Authorization header",
            ));
        }
        return Ok(Presented {
            client_id,
            secret,
            basic: true,
        });
    }
    match (form.get("client_id"), form.get("client_secret")) {
        (Some(id), Some(secret)) => Ok(Presented {
            client_id: id.to_string(),
            secret: SecretString::new(secret.to_string()),
            basic: false,
        }),
        // No credentials at all: RFC 6749 section 5.2 says to answer with the challenge.
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

/// The bearer token of the request (RFC 6750 section 2.1): the initial access token at
/// `POST /register`, the registration access token at `/register/{client_id}`, an access
/// token at `/userinfo`. Missing or
/// not a bearer token: `invalid_token`.
pub(crate) struct Bearer(pub(crate) SecretString);

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    type Rejection = OAuthError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        bearer(&parts.headers)
            .map(|t| Bearer(SecretString::new(t.to_string())))
            .ok_or(OAuthError::InvalidToken)
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn basic(id: &str, secret: &str) -> BasicHeader {
        let mut h = HeaderMap::new();
        let v = format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&v).expect("header"),
        );
        basic_header(&h)
    }

    fn form(s: &str) -> Form {
        Form::parse(s.as_bytes()).expect("form")
    }

    #[test]
    fn basic_credentials_are_url_decoded() {
        let p = presented(
            basic("my%20id", "a%3Ab"),
            &form("grant_type=client_credentials"),
        )
        .expect("ok");
        assert_eq!(p.client_id, "my id");
        assert_eq!(p.secret.expose(), "a:b");
        assert!(p.basic);
    }

    #[test]
    fn post_credentials() {
        let p = presented(Ok(None), &form("client_id=c&client_secret=s")).expect("ok");
        assert_eq!(p.client_id, "c");
        assert!(!p.basic);
    }

    #[test]
    fn both_methods_at_once_is_invalid_request() {
        let err = presented(basic("c", "s"), &form("client_secret=s")).expect_err("refused");
        assert_eq!(err.code(), "invalid_request");
    }

    #[test]
    fn both_methods_is_invalid_request_even_when_the_header_is_malformed() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        let err = presented(basic_header(&h), &form("client_secret=s")).expect_err("refused");
        assert_eq!(err.code(), "invalid_request");
    }

    #[test]
    fn no_credentials_or_bad_basic_is_invalid_client() {
        assert_eq!(
            presented(Ok(None), &form("")).expect_err("x").code(),
            "invalid_client"
        );
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(
            presented(basic_header(&h), &form(""))
                .expect_err("x")
                .code(),
            "invalid_client"
        );
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            axum::http::HeaderValue::from_static("Bearer abc.def"),
        );
        assert_eq!(bearer(&h), Some("abc.def"));
        h.insert(
            header::AUTHORIZATION,
            axum::http::HeaderValue::from_static("bearer  abc"),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(
            header::AUTHORIZATION,
            axum::http::HeaderValue::from_static("Basic abc"),
        );
        assert_eq!(bearer(&h), None);
    }
}
