//! Authorization server metadata (RFC 8414), and the subset of OpenID discovery that
//! client libraries probe. Lists exactly what this server implements.

use serde::Serialize;

#[derive(Serialize)]
pub struct Metadata {
    issuer: String,
    token_endpoint: String,
    jwks_uri: String,
    introspection_endpoint: String,
    introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    revocation_endpoint: String,
    revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    /// RFC 7591 dynamic client registration, with an initial access token.
    registration_endpoint: String,
    grant_types_supported: Vec<&'static str>,
    token_endpoint_auth_methods_supported: Vec<&'static str>,
    /// RFC 8414 requires the field; there is no authorization endpoint, so none.
    response_types_supported: Vec<&'static str>,
    /// Algorithms of the keys in `jwks_uri` (RFC 9068 access tokens).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    access_token_signing_alg_values_supported: Vec<String>,
}

pub fn metadata(issuer: &str, algorithms: Vec<String>) -> Metadata {
    let base = issuer.trim_end_matches('/');
    Metadata {
        issuer: issuer.to_string(),
        token_endpoint: format!("{base}/token"),
        jwks_uri: format!("{base}/jwks"),
        introspection_endpoint: format!("{base}/introspect"),
        introspection_endpoint_auth_methods_supported: vec![
            "client_secret_basic",
            "client_secret_post",
        ],
        revocation_endpoint: format!("{base}/revoke"),
        revocation_endpoint_auth_methods_supported: vec![
            "client_secret_basic",
            "client_secret_post",
        ],
        registration_endpoint: format!("{base}/register"),
        grant_types_supported: vec!["client_credentials"],
        token_endpoint_auth_methods_supported: vec!["client_secret_basic", "client_secret_post"],
        response_types_supported: Vec::new(),
        access_token_signing_alg_values_supported: algorithms,
    }
}
