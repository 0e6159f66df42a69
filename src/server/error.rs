//! RFC 6749 section 5.2 error responses, the one place errors become HTTP.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error the server answers with: RFC 6749 section 5.2, RFC 6750 section 3.1 and
/// RFC 7591 section 3.2.2. The descriptions of authentication failures are fixed strings:
/// nothing from the request, and nothing that tells an attacker which check failed. Only
/// client metadata errors, which the caller needs to fix its request, say what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// "The request is missing a required parameter, includes an unsupported parameter
    /// value (other than grant type), repeats a parameter, includes multiple credentials,
    /// utilizes more than one mechanism for authenticating the client, or is otherwise
    /// malformed."
    #[error("invalid_request: {0}")]
    InvalidRequest(&'static str),
    /// "Client authentication failed (e.g., unknown client, no client authentication
    /// included, or unsupported authentication method)." `basic` says whether the client
    /// tried HTTP Basic, which calls for a `WWW-Authenticate` header.
    #[error("invalid_client")]
    InvalidClient { basic: bool },
    /// "The authenticated client is not authorized to use this authorization grant type."
    #[error("unauthorized_client")]
    UnauthorizedClient,
    /// "The authorization grant type is not supported by the authorization server."
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    /// "The requested scope is invalid, unknown, malformed, or exceeds the scope granted
    /// by the resource owner."
    #[error("invalid_scope")]
    InvalidScope,
    /// RFC 8707 section 2: "The requested resource is invalid, missing, unknown, or
    /// malformed." One answer, with one fixed description, for an unknown resource, one
    /// nobody claims (under `Enforce`), one claimed but not granted to the client and
    /// several where one is needed: no team can list another's APIs by asking.
    #[error("invalid_target")]
    InvalidTarget,
    /// "The provided authorization grant (e.g., authorization code, resource owner
    /// credentials) or refresh token is invalid, expired, revoked, does not match the
    /// redirection URI used in the authorization request, or was issued to another
    /// client." One answer for all of them.
    #[error("invalid_grant")]
    InvalidGrant,
    /// The server cannot take the request now (overload, or keys not loaded yet).
    #[error("temporarily_unavailable")]
    TemporarilyUnavailable,
    /// Something failed on our side.
    #[error("server_error")]
    ServerError,
    /// RFC 6750: the bearer token (initial or registration access token) is missing,
    /// unknown, expired, exhausted or revoked.
    #[error("invalid_token")]
    InvalidToken,
    /// RFC 7591: "The value of one of the client metadata fields is invalid".
    #[error("invalid_client_metadata: {0}")]
    InvalidClientMetadata(String),
    /// RFC 7591: "The value of one or more redirection URIs is invalid."
    #[error("invalid_redirect_uri: {0}")]
    InvalidRedirectUri(String),
}

/// The one description of every `invalid_target`.
pub const INVALID_TARGET: &str =
    "the resource is unknown or not granted to this client; name one resource per request";

#[derive(Serialize)]
struct Body {
    error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_description: Option<String>,
}

impl OAuthError {
    /// The RFC's error code.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient { .. } => "invalid_client",
            OAuthError::UnauthorizedClient => "unauthorized_client",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::InvalidScope => "invalid_scope",
            OAuthError::InvalidTarget => "invalid_target",
            OAuthError::InvalidGrant => "invalid_grant",
            OAuthError::TemporarilyUnavailable => "temporarily_unavailable",
            OAuthError::ServerError => "server_error",
            OAuthError::InvalidToken => "invalid_token",
            OAuthError::InvalidClientMetadata(_) => "invalid_client_metadata",
            OAuthError::InvalidRedirectUri(_) => "invalid_redirect_uri",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            OAuthError::InvalidClient { .. } | OAuthError::InvalidToken => StatusCode::UNAUTHORIZED,
            OAuthError::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            OAuthError::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let description = match &self {
            OAuthError::InvalidRequest(d) => Some(d.to_string()),
            OAuthError::InvalidTarget => Some(INVALID_TARGET.to_string()),
            OAuthError::InvalidClientMetadata(d) | OAuthError::InvalidRedirectUri(d) => {
                Some(d.clone())
            }
            _ => None,
        };
        let mut res = (
            self.status(),
            Json(Body {
                error: self.code(),
                error_description: description,
            }),
        )
            .into_response();
        let headers = res.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        match self {
            OAuthError::InvalidClient { basic: true } => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"oauth-operator\", charset=\"UTF-8\""),
                );
            }
            OAuthError::InvalidToken => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            OAuthError::TemporarilyUnavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        res
    }
}
