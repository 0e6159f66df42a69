//! JWT signing keys: generated once by the controller into a Secret, loaded by the token
//! server, published as a JWK Set.

use std::collections::HashMap;
use std::fmt;

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use serde::{Deserialize, Serialize};

use super::seal::Sealer;

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
    #[error("the signing-key set holds no key")]
    Empty,
    #[error("generating an RSA key failed")]
    Rsa,
    #[error("{0:?} is not a supported signing algorithm (ES256, EdDSA, RS256)")]
    Unsupported(Algorithm),
    #[error("the system random number generator failed")]
    Random,
    #[error(
        "the sealing key is not {} bytes of base64",
        crate::auth::seal::KEY_LEN
    )]
    SealingKey,
    #[error("the signing-key set is not valid JSON: {0}")]
    Parse(#[from] serde_json::Error),
}

/// The signing keys as stored in the Secret. Private keys are PKCS#8 PEM.
///
/// Which key signs is a function of time, not a field: the key with the latest
/// `signsFrom` that has passed. So the controller can publish a key ahead of its use with a
/// single write, and every server replica switches to it at the same moment without being
/// told, after every verifier has had the time to fetch it.
#[derive(Serialize, Deserialize, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoredKeys {
    /// Every key whose tokens may still be in use, and any key about to sign.
    pub keys: Vec<StoredKey>,
    /// The AES-256 key of sealed values (pending authorization requests, authorization
    /// codes; see [`crate::auth::seal`]), base64. Added by the controller when missing.
    /// Not rotated with the signing keys: what it seals lives minutes; deleting the field
    /// replaces it, failing only the sign-ins in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealing_key: Option<String>,
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
    /// Unix second from which this key signs (until a later key's `signsFrom` passes).
    #[serde(default)]
    pub signs_from: i64,
}

impl fmt::Debug for StoredKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("StoredKeys").field("kids", &kids).finish()
    }
}

impl StoredKeys {
    /// A fresh set holding one new ES256 (P-256) key that signs at once.
    pub fn generate_es256() -> Result<Self, KeyError> {
        Self::generate(Algorithm::ES256)
    }

    /// A fresh set holding one new key for `alg` that signs at once.
    pub fn generate(alg: Algorithm) -> Result<Self, KeyError> {
        Ok(StoredKeys {
            keys: vec![StoredKey::generate(alg, 0)?],
            sealing_key: Some(new_sealing_key()?),
        })
    }

    /// The key that signs at unix second `now`: the one with the latest `signs_from` not
    /// after `now`. Should every key be in the future (a clock behind the controller's),
    /// the earliest one, so the server keeps issuing rather than failing.
    pub fn signer_at(&self, now: i64) -> Option<&StoredKey> {
        let past = self
            .keys
            .iter()
            .filter(|k| k.signs_from <= now)
            .max_by_key(|k| k.signs_from);
        past.or_else(|| self.keys.iter().min_by_key(|k| k.signs_from))
    }

    pub fn to_json(&self) -> Result<String, KeyError> {
        Ok(serde_json::to_string(self)?)
    }

    pub fn from_json(data: &[u8]) -> Result<Self, KeyError> {
        Ok(serde_json::from_slice(data)?)
    }
}

/// A fresh sealing key, base64.
pub fn new_sealing_key() -> Result<String, KeyError> {
    use base64::Engine;
    let key = crate::auth::secret::random_bytes::<{ crate::auth::seal::KEY_LEN }>()
        .map_err(|_| KeyError::Random)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(key))
}

impl StoredKey {
    /// A new key for `alg` that signs from unix second `signs_from`: ES256 (P-256), EdDSA
    /// (Ed25519) or RS256 (RSA 2048, which RFC 9068 asks that verifiers can use).
    pub fn generate(alg: Algorithm, signs_from: i64) -> Result<Self, KeyError> {
        let pem = match alg {
            Algorithm::ES256 => {
                rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?.serialize_pem()
            }
            // PKCS#8 v1 (48 bytes), the form jsonwebtoken derives a JWK from.
            Algorithm::EdDSA => {
                let rng = aws_lc_rs::rand::SystemRandom::new();
                let doc = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8v1(&rng)
                    .map_err(|_| KeyError::Generate(rcgen::Error::RingUnspecified))?;
                pem_encode("PRIVATE KEY", doc.as_ref())
            }
            Algorithm::RS256 => {
                use aws_lc_rs::encoding::AsDer;
                let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(|_| KeyError::Rsa)?;
                let der = pair.as_der().map_err(|_| KeyError::Rsa)?;
                pem_encode("PRIVATE KEY", der.as_ref())
            }
            other => return Err(KeyError::Unsupported(other)),
        };
        let kid = kid_of(&pem, alg)?;
        Ok(StoredKey {
            kid,
            alg,
            private_key_pem: pem,
            signs_from,
        })
    }
}

/// PEM armour around DER, 64 characters a line.
fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
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
            .field("signers", &self.signers)
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

/// Loaded keys: every signer with the second it starts signing, and the public JWK Set of
/// every key (so a key is published from the moment it is stored, before it signs).
pub struct KeySet {
    /// Sorted by `signs_from`, earliest first.
    signers: Vec<(i64, SigningKey)>,
    pub jwks: JwkSet,
    /// Verification keys by `kid`, for introspection.
    verifiers: HashMap<String, (Algorithm, DecodingKey)>,
    /// Seals and opens pending requests and codes; `None` until the controller added a
    /// sealing key, when `/authorize` answers `temporarily_unavailable`.
    pub sealer: Option<Sealer>,
}

impl KeySet {
    pub fn load(stored: &StoredKeys) -> Result<Self, KeyError> {
        let mut signers = Vec::new();
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
            signers.push((
                k.signs_from,
                SigningKey {
                    kid: k.kid.clone(),
                    alg: k.alg,
                    key,
                },
            ));
        }
        if signers.is_empty() {
            return Err(KeyError::Empty);
        }
        signers.sort_by_key(|(from, _)| *from);
        let sealer = match &stored.sealing_key {
            Some(b64) => {
                use base64::Engine;
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| KeyError::SealingKey)?;
                Some(Sealer::new(&raw).map_err(|_| KeyError::SealingKey)?)
            }
            None => None,
        };
        Ok(KeySet {
            signers,
            jwks,
            verifiers,
            sealer,
        })
    }

    /// The key that signs at unix second `now` (the same rule as [`StoredKeys::signer_at`]).
    pub fn signer(&self, now: i64) -> &SigningKey {
        // `load` refuses an empty set, so there is a first signer.
        let (_, earliest) = &self.signers[0];
        self.signers
            .iter()
            .rev()
            .find(|(from, _)| *from <= now)
            .map_or(earliest, |(_, k)| k)
    }

    /// Verifies a JWT signed by one of these keys and issued by `issuer` (signature, `exp`,
    /// `iss`; not `aud`, which is the resource server's to judge) and returns its claims.
    pub fn verify<T: serde::de::DeserializeOwned>(&self, jwt: &str, issuer: &str) -> Option<T> {
        self.decode(jwt, issuer, true)
    }

    /// Like [`KeySet::verify`], but an expired JWT passes: for an `id_token_hint` at
    /// logout, which OpenID Connect lets be expired (it only says who is signing out).
    pub fn verify_ignoring_expiry<T: serde::de::DeserializeOwned>(
        &self,
        jwt: &str,
        issuer: &str,
    ) -> Option<T> {
        self.decode(jwt, issuer, false)
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        jwt: &str,
        issuer: &str,
        check_expiry: bool,
    ) -> Option<T> {
        let header = jsonwebtoken::decode_header(jwt).ok()?;
        let (alg, key) = self.verifiers.get(header.kid.as_deref()?)?;
        if header.alg != *alg {
            return None;
        }
        let mut validation = Validation::new(*alg);
        validation.set_issuer(&[issuer]);
        validation.validate_aud = false;
        validation.leeway = 0;
        validation.validate_exp = check_expiry;
        if check_expiry {
            validation.set_required_spec_claims(&["exp", "iat", "iss"]);
        } else {
            validation.set_required_spec_claims(&["iss"]);
        }
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
        let kid = &stored.keys[0].kid;
        assert_eq!(&set.signer(0).kid, kid);
        let published = serde_json::to_string(&set.jwks).expect("jwks");
        assert!(published.contains(kid.as_str()));
        assert!(published.contains("\"crv\":\"P-256\""));
        assert!(
            !published.contains("\"d\""),
            "private scalar must not be published"
        );
    }

    #[test]
    fn every_supported_algorithm_signs_and_verifies() {
        use crate::auth::token::{AccessTokenClaims, sign};
        for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256] {
            let set = KeySet::load(&StoredKeys::generate(alg).expect("generate")).expect("load");
            assert_eq!(set.signer(0).alg, alg);
            let now = jiff::Timestamp::now().as_second();
            let claims = AccessTokenClaims {
                iss: "i".into(),
                sub: "s".into(),
                aud: vec!["a".into()],
                exp: now + 60,
                iat: now,
                jti: "j".into(),
                client_id: "c".into(),
                scope: None,
                roles: vec![],
                client_uid: None,
                grant_id: None,
                auth_time: None,
                upstream: None,
                client_auth_method: None,
            };
            let jwt = sign(&claims, set.signer(now)).expect("sign");
            let back: AccessTokenClaims = set.verify(&jwt, "i").expect("verifies");
            assert_eq!(back, claims, "{alg:?}");
        }
        assert!(StoredKeys::generate(Algorithm::HS256).is_err());
    }

    #[test]
    fn the_latest_key_whose_time_has_come_signs() {
        let key = |from| StoredKey::generate(Algorithm::ES256, from).expect("generate");
        let stored = StoredKeys {
            keys: vec![key(100), key(0), key(200)],
            sealing_key: None,
        };
        let set = KeySet::load(&stored).expect("load");
        let kid_at = |now| set.signer(now).kid.clone();
        assert_eq!(kid_at(50), stored.keys[1].kid);
        assert_eq!(kid_at(100), stored.keys[0].kid);
        assert_eq!(kid_at(199), stored.keys[0].kid);
        assert_eq!(kid_at(10_000), stored.keys[2].kid);
        assert_eq!(set.jwks.keys.len(), 3, "a future key is published already");
        for now in [50, 100, 199, 10_000] {
            assert_eq!(
                stored.signer_at(now).map(|k| k.kid.clone()),
                Some(kid_at(now))
            );
        }
        let future = StoredKeys {
            keys: vec![key(200), key(100)],
            sealing_key: None,
        };
        let set = KeySet::load(&future).expect("load");
        assert_eq!(
            set.signer(0).kid,
            future.keys[1].kid,
            "earliest when all are future"
        );
        assert!(
            KeySet::load(&StoredKeys {
                keys: vec![],
                sealing_key: None,
            })
            .is_err()
        );
    }

    #[test]
    fn debug_hides_private_keys() {
        let stored = StoredKeys::generate_es256().expect("generate");
        assert!(!format!("{stored:?}").contains("PRIVATE"));
    }
}
