//! `application/x-www-form-urlencoded` bodies, parsed strictly: RFC 6749 section 3.2 says
//! parameters "MUST NOT be included more than once", and a parameter sent without a value
//! is treated as omitted. Written by hand on purpose: axum's `Form` (serde_urlencoded)
//! keeps the last of a repeated parameter and sees an empty one as present.
//!
//! [`Form`] is an axum extractor whose rejection is the RFC's `invalid_request`, for the
//! token, introspection and revocation endpoints.

use std::collections::HashMap;

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use bytes::Bytes;

use super::error::OAuthError;

/// The parameters of a form body: the right content type, within the size limit
/// ([`axum::extract::DefaultBodyLimit`]), no repeated parameter.
#[derive(Debug, Default)]
pub struct Form(HashMap<String, String>);

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = OAuthError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_media_type(req.headers(), "application/x-www-form-urlencoded") {
            return Err(OAuthError::InvalidRequest(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|_| OAuthError::InvalidRequest("the body is too large or unreadable"))?;
        Form::parse(&body)
    }
}

/// Whether the request's `Content-Type` is `media_type`, whatever its parameters
/// (`; charset=UTF-8`) and in any case, as RFC 9110 section 8.3.1 compares them.
pub(crate) fn has_media_type(headers: &HeaderMap, media_type: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(media_type))
}

impl Form {
    pub fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let mut map = HashMap::new();
        for (k, v) in form_urlencoded::parse(body) {
            if map.insert(k.into_owned(), v.into_owned()).is_some() {
                return Err(OAuthError::InvalidRequest("a parameter was repeated"));
            }
        }
        Ok(Form(map))
    }

    /// The value of `name`, `None` when absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused() {
        assert!(Form::parse(b"a=1&a=2").is_err());
    }

    #[test]
    fn empty_means_absent_and_values_are_decoded() {
        let f = Form::parse(b"a=&b=x%20y+z").expect("form");
        assert_eq!(f.get("a"), None);
        assert_eq!(f.get("b"), Some("x y z"));
    }
}
