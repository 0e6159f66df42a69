//! Client authentication at the token, introspection and revocation endpoints (RFC 6749
//! section 2.3.1): HTTP Basic (`client_secret_basic`), form fields
//! (`client_secret_post`) or a JWT assertion (`private_key_jwt`, RFC 7523; checked in
//! [`super::client_assertion`]), never two at once.
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
use crate::auth::assertion::JWT_BEARER;
use crate::auth::jws;
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
pub enum Presented {
    /// A client secret, in an `Authorization: Basic` header or the form.
    Secret {
        client_id: String,
        secret: SecretString,
        basic: bool,
    },
    /// A JWT assertion (RFC 7523 section 2.2), of the form's `client_id`, else of the
    /// assertion's `sub` (the client id of a `private_key_jwt` assertion).
    Assertion {
        client_id: String,
        assertion: SecretString,
    },
}

impl Presented {
    /// The client the request says it comes from (not yet authenticated).
    pub fn client_id(&self) -> &str {
        match self {
            Presented::Secret { client_id, .. } | Presented::Assertion { client_id, .. } => {
                client_id
            }
        }
    }
}

/// How a client authenticated, by its RFC 7591 `token_endpoint_auth_method` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    /// A Kubernetes ServiceAccount token as the assertion.
    ServiceAccount,
    /// A token of a trusted federated issuer as the assertion.
    Federated,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::ClientSecretBasic => "client_secret_basic",
            Method::ClientSecretPost => "client_secret_post",
            Method::PrivateKeyJwt => "private_key_jwt",
            Method::ServiceAccount => crate::auth::assertion::SERVICE_ACCOUNT_METHOD,
            Method::Federated => crate::auth::assertion::FEDERATED_METHOD,
        }
    }
}

/// Whether the request carries client credentials of any kind (a confidential client's
/// request, as opposed to a public client's `client_id` alone).
pub fn has_credentials(basic: &BasicHeader, form: &Form) -> bool {
    !matches!(basic, Ok(None))
        || form.get("client_secret").is_some()
        || form.get("client_assertion").is_some()
        || form.get("client_assertion_type").is_some()
}

/// The client's credentials, from the header or the form, in the RFC's order of checks.
pub fn presented(basic: BasicHeader, form: &Form) -> Result<Presented, OAuthError> {
    let assertion = form.get("client_assertion");
    let assertion_type = form.get("client_assertion_type");
    if assertion.is_some() || assertion_type.is_some() {
        return presented_assertion(basic, form, assertion, assertion_type);
    }
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
        return Ok(Presented::Secret {
            client_id,
            secret,
            basic: true,
        });
    }
    match (form.get("client_id"), form.get("client_secret")) {
        (Some(id), Some(secret)) => Ok(Presented::Secret {
            client_id: id.to_string(),
            secret: SecretString::new(secret.to_string()),
            basic: false,
        }),
        // No credentials at all: RFC 6749 section 5.2 says to answer with the challenge.
        _ => Err(OAuthError::InvalidClient { basic: true }),
    }
}

/// RFC 7521 section 4.2: both parameters, of the one type this server knows, and no other
/// method beside them.
fn presented_assertion(
    basic: BasicHeader,
    form: &Form,
    assertion: Option<&str>,
    assertion_type: Option<&str>,
) -> Result<Presented, OAuthError> {
    if !matches!(basic, Ok(None)) || form.get("client_secret").is_some() {
        return Err(OAuthError::InvalidRequest(
            "more than one client authentication method was used",
        ));
    }
    let (Some(assertion), Some(assertion_type)) = (assertion, assertion_type) else {
        return Err(OAuthError::InvalidRequest(
            "client_assertion and client_assertion_type go together",
        ));
    };
    let invalid = OAuthError::InvalidClient { basic: false };
    if assertion_type != JWT_BEARER {
        return Err(invalid);
    }
    let client_id = match form.get("client_id") {
        Some(id) => id.to_string(),
        None => jws::unverified_claims(assertion)
            .and_then(|c| c.get("sub")?.as_str().map(str::to_string))
            .ok_or(invalid)?,
    };
    Ok(Presented::Assertion {
        client_id,
        assertion: SecretString::new(assertion.to_string()),
    })
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
        assert_eq!(p.client_id(), "my id");
        assert!(
            matches!(&p, Presented::Secret { secret, basic: true, .. } if secret.expose() == "a:b")
        );
    }

    #[test]
    fn post_credentials() {
        let p = presented(Ok(None), &form("client_id=c&client_secret=s")).expect("ok");
        assert_eq!(p.client_id(), "c");
        assert!(matches!(p, Presented::Secret { basic: false, .. }));
    }

    #[test]
    fn an_assertion_names_its_client_by_the_form_or_its_subject() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = URL_SAFE_NO_PAD.encode(r#"{"sub":"billing"}"#);
        let jwt = format!("e30.{payload}.c2ln");
        let t = "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";
        let p = presented(Ok(None), &form(&format!("{t}&client_assertion={jwt}"))).expect("ok");
        assert_eq!(p.client_id(), "billing");
        assert!(matches!(p, Presented::Assertion { .. }));
        let p = presented(
            Ok(None),
            &form(&format!("{t}&client_assertion={jwt}&client_id=other")),
        )
        .expect("ok");
        assert_eq!(
            p.client_id(),
            "other",
            "checked against the assertion later"
        );

        let code = |f: &str, b: BasicHeader| presented(b, &form(f)).expect_err("refused").code();
        assert_eq!(
            code(&format!("client_assertion={jwt}"), Ok(None)),
            "invalid_request"
        );
        assert_eq!(code(t, Ok(None)), "invalid_request");
        assert_eq!(
            code(
                &format!("{t}&client_assertion={jwt}&client_secret=s"),
                Ok(None)
            ),
            "invalid_request"
        );
        assert_eq!(
            code(&format!("{t}&client_assertion={jwt}"), basic("c", "s")),
            "invalid_request"
        );
        assert_eq!(
            code(
                &format!("client_assertion_type=saml&client_assertion={jwt}"),
                Ok(None)
            ),
            "invalid_client"
        );
        assert_eq!(
            code(&format!("{t}&client_assertion=garbage"), Ok(None)),
            "invalid_client",
            "no client id anywhere"
        );
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
