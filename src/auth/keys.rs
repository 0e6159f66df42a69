//! JWT signing keys: generated once by the controller into a Secret, loaded by the token
//! server, published as a JWK Set.

use std::collections::HashMap;
use std::fmt;

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use serde::{Deserialize, Serialize};

/// The key in the signing-key Secret's `data` that holds [`StoredKeys`] as JSON.
pub const SECRET_KEY: &str = "keys.json";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("generating a signing key: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("loading signing key {kid}: {source}")]
    Load {
        kid: String,
        source: jsonwebtoken::errors::Error,
    },
    #[error("the signing-key set names active key {0}, which it does not hold")]
    NoActiveKey(String),
    #[error("the signing-key set is not valid JSON: {0}")]
    Parse(#[from] serde_json::Error),
}

/// The signing keys as stored in the Secret. Private keys are PKCS#8 PEM.
#[derive(Serialize, Deserialize, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoredKeys {
    /// The `kid` of the key that signs new tokens.
    pub active: String,
    /// Every key whose tokens still verify, the active one included.
    pub keys: Vec<StoredKey>,
}

/// One stored signing key.
#[derive(Serialize, Deserialize, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoredKey {
    /// RFC 7638 thumbprint of the public key.
    pub kid: String,
    /// JWS algorithm, e.g. `ES256`.
    pub alg: Algorithm,
    /// PKCS#8 PEM private key.
    pub private_key_pem: String,
}

impl fmt::Debug for StoredKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("StoredKeys")
            .field("active", &self.active)
            .field("kids", &kids)
            .finish()
    }
}

impl StoredKeys {
    /// A fresh set holding one new ES256 (P-256) key.
    pub fn generate_es256() -> Result<Self, KeyError> {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let pem = pair.serialize_pem();
        let kid = kid_of(&pem, Algorithm::ES256)?;
        Ok(StoredKeys {
            active: kid.clone(),
            keys: vec![StoredKey {
                kid,
                alg: Algorithm::ES256,
                private_key_pem: pem,
            }],
        })
    }

    pub fn to_json(&self) -> Result<String, KeyError> {
        Ok(serde_json::to_string(self)?)
    }

    pub fn from_json(data: &[u8]) -> Result<Self, KeyError> {
        Ok(serde_json::from_slice(data)?)
    }
}

fn encoding_key(pem: &str, alg: Algorithm, kid: &str) -> Result<EncodingKey, KeyError> {
    let load = |source| KeyError::Load {
        kid: kid.to_string(),
        source,
    };
    match alg {
        Algorithm::ES256 | Algorithm::ES384 => {
            EncodingKey::from_ec_pem(pem.as_bytes()).map_err(load)
        }
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()).map_err(load),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(load),
    }
}

fn public_jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Result<Jwk, KeyError> {
    let mut jwk = Jwk::from_encoding_key(key, alg).map_err(|source| KeyError::Load {
        kid: kid.to_string(),
        source,
    })?;
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_id = Some(kid.to_string());
    Ok(jwk)
}

fn kid_of(pem: &str, alg: Algorithm) -> Result<String, KeyError> {
    let key = encoding_key(pem, alg, "new")?;
    let jwk = public_jwk(&key, alg, "new")?;
    jwk.thumbprint(ThumbprintHash::SHA256)
        .map_err(|source| KeyError::Load {
            kid: "new".into(),
            source,
        })
}

/// The key that signs, ready to use.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub key: EncodingKey,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("signer", &self.signer)
            .field("published", &self.jwks.keys.len())
            .finish()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Loaded keys: the active signer and the public JWK Set of every key.
pub struct KeySet {
    pub signer: SigningKey,
    pub jwks: JwkSet,
    /// Verification keys by `kid`, for introspection.
    verifiers: HashMap<String, (Algorithm, DecodingKey)>,
}

impl KeySet {
    pub fn load(stored: &StoredKeys) -> Result<Self, KeyError> {
        let mut signer = None;
        let mut jwks = JwkSet { keys: Vec::new() };
        let mut verifiers = HashMap::new();
        for k in &stored.keys {
            let key = encoding_key(&k.private_key_pem, k.alg, &k.kid)?;
            let jwk = public_jwk(&key, k.alg, &k.kid)?;
            let decoding = DecodingKey::from_jwk(&jwk).map_err(|source| KeyError::Load {
                kid: k.kid.clone(),
                source,
            })?;
            verifiers.insert(k.kid.clone(), (k.alg, decoding));
            jwks.keys.push(jwk);
            if k.kid == stored.active {
                signer = Some(SigningKey {
                    kid: k.kid.clone(),
                    alg: k.alg,
                    key,
                });
            }
        }
        let signer = signer.ok_or_else(|| KeyError::NoActiveKey(stored.active.clone()))?;
        Ok(KeySet {
            signer,
            jwks,
            verifiers,
        })
    }

    /// Verifies a JWT signed by one of these keys and issued by `issuer` (signature, `exp`,
    /// `iss`; not `aud`, which is the resource server's to judge) and returns its claims.
    pub fn verify<T: serde::de::DeserializeOwned>(&self, jwt: &str, issuer: &str) -> Option<T> {
        let header = jsonwebtoken::decode_header(jwt).ok()?;
        let (alg, key) = self.verifiers.get(header.kid.as_deref()?)?;
        if header.alg != *alg {
            return None;
        }
        let mut validation = Validation::new(*alg);
        validation.set_issuer(&[issuer]);
        validation.validate_aud = false;
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iat", "iss"]);
        jsonwebtoken::decode::<T>(jwt, key, &validation)
            .ok()
            .map(|d| d.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_and_publish_only_public_parts() {
        let stored = StoredKeys::generate_es256().expect("generate");
        let again =
            StoredKeys::from_json(stored.to_json().expect("json").as_bytes()).expect("parse");
        assert!(again == stored);
        let set = KeySet::load(&again).expect("load");
        assert_eq!(set.signer.kid, stored.active);
        let published = serde_json::to_string(&set.jwks).expect("jwks");
        assert!(published.contains(&stored.active));
        assert!(published.contains("\"crv\":\"P-256\""));
        assert!(
            !published.contains("\"d\""),
            "private scalar must not be published"
        );
    }

    #[test]
    fn debug_hides_private_keys() {
        let stored = StoredKeys::generate_es256().expect("generate");
        assert!(!format!("{stored:?}").contains("PRIVATE"));
    }
}
