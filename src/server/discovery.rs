//! Authorization server metadata (RFC 8414) and OpenID Connect Discovery 1.0, one
//! document for both. Lists exactly what this server implements.

use serde::Serialize;

use super::authorize::request::USER_SCOPES;
use crate::auth::jws;

#[derive(Serialize)]
pub struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: String,
    /// OpenID Connect RP-Initiated Logout.
    end_session_endpoint: String,
    jwks_uri: String,
    introspection_endpoint: String,
    introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    introspection_endpoint_auth_signing_alg_values_supported: Vec<String>,
    revocation_endpoint: String,
    revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    revocation_endpoint_auth_signing_alg_values_supported: Vec<String>,
    /// RFC 7591 dynamic client registration, with an initial access token.
    registration_endpoint: String,
    grant_types_supported: Vec<&'static str>,
    token_endpoint_auth_methods_supported: Vec<&'static str>,
    /// What `private_key_jwt` assertions may be signed with.
    token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    response_types_supported: Vec<&'static str>,
    response_modes_supported: Vec<&'static str>,
    /// PKCE (RFC 7636), required of every client.
    code_challenge_methods_supported: Vec<&'static str>,
    /// RFC 9207: authorization responses carry `iss`.
    authorization_response_iss_parameter_supported: bool,
    /// RFC 8707 resource indicators: `resource` at `/authorize` and `/token` names the API
    /// (the `OAuthResource` claiming it decides who gets it). RFC 8414 registers no name
    /// for this; this is the one several servers publish.
    resource_indicators_supported: bool,
    scopes_supported: Vec<&'static str>,
    claims_supported: Vec<&'static str>,
    subject_types_supported: Vec<&'static str>,
    prompt_values_supported: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    id_token_signing_alg_values_supported: Vec<String>,
    /// Algorithms of the keys in `jwks_uri` (RFC 9068 access tokens).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    access_token_signing_alg_values_supported: Vec<String>,
}

pub fn metadata(issuer: &str, algorithms: Vec<String>) -> Metadata {
    let base = issuer.trim_end_matches('/');
    Metadata {
        issuer: issuer.to_string(),
        authorization_endpoint: format!("{base}/authorize"),
        token_endpoint: format!("{base}/token"),
        userinfo_endpoint: format!("{base}/userinfo"),
        end_session_endpoint: format!("{base}/logout"),
        jwks_uri: format!("{base}/jwks"),
        introspection_endpoint: format!("{base}/introspect"),
        introspection_endpoint_auth_methods_supported: vec![
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ],
        introspection_endpoint_auth_signing_alg_values_supported: jws::algorithm_names(),
        revocation_endpoint: format!("{base}/revoke"),
        revocation_endpoint_auth_methods_supported: vec![
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ],
        revocation_endpoint_auth_signing_alg_values_supported: jws::algorithm_names(),
        registration_endpoint: format!("{base}/register"),
        grant_types_supported: vec!["authorization_code", "client_credentials", "refresh_token"],
        // `none`: public clients, at the token endpoint with PKCE alone.
        token_endpoint_auth_methods_supported: vec![
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            "none",
        ],
        token_endpoint_auth_signing_alg_values_supported: jws::algorithm_names(),
        response_types_supported: vec!["code"],
        response_modes_supported: vec!["query"],
        code_challenge_methods_supported: vec!["S256"],
        authorization_response_iss_parameter_supported: true,
        resource_indicators_supported: true,
        scopes_supported: USER_SCOPES.to_vec(),
        claims_supported: vec![
            "iss",
            "sub",
            "aud",
            "azp",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "name",
            "preferred_username",
            "email",
            "groups",
            "sid",
            "client_auth_method",
        ],
        subject_types_supported: vec!["public"],
        prompt_values_supported: vec!["none", "login"],
        id_token_signing_alg_values_supported: algorithms.clone(),
        access_token_signing_alg_values_supported: algorithms,
    }
}
