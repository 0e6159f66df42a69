//! A JWT signed by someone else's key: an upstream provider's ID token, a client's
//! assertion (RFC 7523). One signature check for both, so the algorithm rules live in one
//! place: asymmetric algorithms only (a JWK Set holds public keys, so an `HS256` token
//! would be "signed" with something anyone may know, and `none` signs nothing), and a key
//! whose `alg` is set is used with that algorithm only. The claims are not checked here:
//! each caller has its own rules for them.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// The algorithms a signature may use.
pub const ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Their names, as discovery documents list them.
pub fn algorithm_names() -> Vec<String> {
    ALGORITHMS.iter().map(|a| format!("{a:?}")).collect()
}

/// Why a signature is refused. None carries the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("not a well-formed JWT")]
    Malformed,
    #[error("its key is not in the JWK Set")]
    UnknownKey,
    #[error("its algorithm is not accepted")]
    Algorithm,
    #[error("its signature does not verify")]
    Signature,
}

/// The claims of `jwt` if it is signed by a key of `jwks` (the one its `kid` names, or
/// the only key when it names none), with an algorithm of [`ALGORITHMS`] the key allows.
pub fn verify(jwt: &str, jwks: &JwkSet) -> Result<Map<String, Value>, JwsError> {
    let header = jsonwebtoken::decode_header(jwt).map_err(|_| JwsError::Malformed)?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(JwsError::Algorithm);
    }
    let jwk = match &header.kid {
        Some(kid) => jwks.find(kid),
        None if jwks.keys.len() == 1 => jwks.keys.first(),
        None => None,
    }
    .ok_or(JwsError::UnknownKey)?;
    if jwk
        .common
        .key_algorithm
        .is_some_and(|a| a.to_string() != format!("{:?}", header.alg))
    {
        return Err(JwsError::Algorithm);
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| JwsError::UnknownKey)?;
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    match jsonwebtoken::decode::<Map<String, Value>>(jwt, &key, &validation) {
        Ok(data) => Ok(data.claims),
        Err(e) => Err(match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => JwsError::Signature,
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => JwsError::Algorithm,
            _ => JwsError::Malformed,
        }),
    }
}

/// The payload of `jwt` read without any check, to learn whom it claims to come from
/// before its key can be chosen. Nothing read here may be trusted until [`verify`] passed.
pub fn unverified_claims(jwt: &str) -> Option<Map<String, Value>> {
    use base64::Engine;
    let mut parts = jwt.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}
