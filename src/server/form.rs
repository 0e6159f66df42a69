//! `application/x-www-form-urlencoded` bodies, parsed strictly: RFC 6749 section 3.2 says
//! parameters "MUST NOT be included more than once", and a parameter sent without a value
//! is treated as omitted.

use std::collections::HashMap;

use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, header};
use bytes::Bytes;

use super::error::OAuthError;

/// The form body of a POST to the token, introspection or revocation endpoint: the right
/// content type, within the size limit, no repeated parameter.
pub fn read(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Form, OAuthError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(OAuthError::InvalidRequest(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let body =
        body.map_err(|_| OAuthError::InvalidRequest("the body is too large or unreadable"))?;
    Form::parse(&body)
}

#[derive(Debug, Default)]
pub struct Form(HashMap<String, String>);

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
