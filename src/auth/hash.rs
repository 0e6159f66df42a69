//! How a stored verifier checks a presented secret: by the entropy of the secret.
//!
//! - **SHA-256**, for values the operator generated: client secrets of the `generate`
//!   kind, initial access tokens, registration access tokens and the secrets of
//!   dynamically registered clients. Each carries 256 bits from the OS CSPRNG
//!   ([`crate::auth::secret::generate_secret`]). Finding such a value from its SHA-256
//!   takes about 2^256 hash computations whether or not the hash is slow, salted or keyed,
//!   so a memory-hard function adds cost to every honest request and nothing against an
//!   attacker holding the verifier (NIST SP 800-63B section 5.1.1.2 allows an approved
//!   one-way hash for secrets of at least 112 bits; large API-token issuers store the
//!   SHA-256 of their tokens). A server-side key (HMAC) would only matter if the input
//!   could be enumerated, which is exactly the case that stays on argon2id, and it would be
//!   one more secret to distribute to every replica and rotate. A check is one SHA-256 and
//!   a constant-time comparison: a few hundred nanoseconds, on the async worker.
//! - **argon2id**, for values someone chose, whose entropy nobody here knows:
//!   `secretKeyRef` secrets, `hashRef` PHC strings and user passwords. Each check costs
//!   about 19 MiB and 20-25 ms (the crate's defaults, OWASP's recommendation): callers
//!   run it on a blocking thread and bound how many run at once.
//!
//! A verifier records which scheme each hash is ([`Verifier`]), so both coexist: generated
//! secrets hashed by an earlier version with argon2id keep verifying until the controller
//! has recomputed their SHA-256 from the value it holds.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix of a SHA-256 verifier written as text (in a registration Secret), beside
/// argon2's `$argon2id$`.
const SHA256_PREFIX: &str = "$sha256$";

/// A stored hash of one secret, by scheme.
#[derive(Clone, PartialEq, Eq)]
pub enum Verifier {
    /// SHA-256 of a generated value.
    Sha256([u8; 32]),
    /// argon2id PHC string of a chosen value.
    Argon2id(String),
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verifier::Sha256(_) => f.write_str("Verifier::Sha256(..)"),
            Verifier::Argon2id(_) => f.write_str("Verifier::Argon2id(..)"),
        }
    }
}

impl Verifier {
    /// The verifier of a generated value.
    pub fn of_generated(secret: &str) -> Self {
        Verifier::Sha256(Sha256::digest(secret.as_bytes()).into())
    }

    /// A verifier from its text: `$sha256$<base64url>` or an argon2id PHC string.
    pub fn parse(text: &str) -> Option<Self> {
        if let Some(b64) = text.strip_prefix(SHA256_PREFIX) {
            return parse_sha256(b64).map(Verifier::Sha256);
        }
        is_argon2id_phc(text).then(|| Verifier::Argon2id(text.to_string()))
    }

    /// From the two fields of a stored verifier entry: the SHA-256 (base64url) when there
    /// is one, else the argon2id hash.
    pub fn from_fields(sha256: Option<&str>, argon2id: Option<&str>) -> Option<Self> {
        match (sha256.and_then(parse_sha256), argon2id) {
            (Some(d), _) => Some(Verifier::Sha256(d)),
            (None, Some(phc)) => Some(Verifier::Argon2id(phc.to_string())),
            (None, None) => None,
        }
    }

    /// The text form, as [`Verifier::parse`] reads it.
    pub fn to_text(&self) -> String {
        match self {
            Verifier::Sha256(d) => format!("{SHA256_PREFIX}{}", URL_SAFE_NO_PAD.encode(d)),
            Verifier::Argon2id(phc) => phc.clone(),
        }
    }

    /// The base64url SHA-256, for the `sha256` field of a verifier entry.
    pub fn sha256_field(&self) -> Option<String> {
        match self {
            Verifier::Sha256(d) => Some(URL_SAFE_NO_PAD.encode(d)),
            Verifier::Argon2id(_) => None,
        }
    }

    /// Whether checking costs argon2 (a blocking thread, the server's gate, the lockout).
    pub fn is_slow(&self) -> bool {
        matches!(self, Verifier::Argon2id(_))
    }

    /// Checks `secret`. For [`Verifier::Sha256`] this is cheap and constant-time in the
    /// comparison; for [`Verifier::Argon2id`] it is the full argon2 check, so callers on
    /// an async worker check [`Verifier::is_slow`] first.
    pub fn matches(&self, secret: &str) -> bool {
        match self {
            Verifier::Sha256(d) => {
                let presented: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
                bool::from(presented.ct_eq(d))
            }
            Verifier::Argon2id(phc) => verify(secret, phc),
        }
    }
}

/// A base64url SHA-256 (32 bytes).
pub fn parse_sha256(b64: &str) -> Option<[u8; 32]> {
    URL_SAFE_NO_PAD.decode(b64).ok()?.try_into().ok()
}

#[derive(Debug, thiserror::Error)]
#[error("hashing a secret failed: {0}")]
pub struct HashError(String);

/// Hashes `secret` with argon2id and a fresh random salt.
pub fn hash(secret: &str) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(secret.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `secret` matches the PHC string `phc`. A malformed `phc` matches nothing.
/// The final comparison inside argon2 is constant-time.
pub fn verify(secret: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Whether `phc` is an argon2id hash in PHC string format that [`verify`] can check.
pub fn is_argon2id_phc(phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| h.algorithm.as_str() == "argon2id")
}

/// A hash of a random value nobody knows, with the default parameters. Checking a presented
/// secret against it costs exactly as much as a real check, so an unknown client id takes
/// as long to refuse as a wrong secret and the two look the same from outside.
static DECOY: LazyLock<Option<String>> = LazyLock::new(|| {
    let value = crate::auth::secret::generate_secret().ok()?;
    hash(value.expose()).ok()
});

/// Spends the same work as [`verify`] and always fails.
pub fn verify_decoy(secret: &str) -> bool {
    if let Some(decoy) = DECOY.as_deref() {
        let _ = verify(secret, decoy);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_only_the_same_secret() {
        let h = hash("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse", &h));
        assert!(!verify("correct horsE", &h));
        assert!(!verify("correct horse", "not a phc string"));
    }

    #[test]
    fn salts_differ() {
        assert_ne!(hash("x").expect("hash"), hash("x").expect("hash"));
    }

    #[test]
    fn sha256_verifiers_match_only_the_same_value_and_round_trip_as_text() {
        let v = Verifier::of_generated("generated value");
        assert!(v.matches("generated value"));
        assert!(!v.matches("generated valuE"));
        assert!(!v.is_slow());
        let text = v.to_text();
        assert!(text.starts_with("$sha256$"));
        assert_eq!(Verifier::parse(&text), Some(v.clone()));
        let field = v.sha256_field().expect("a sha256 field");
        assert_eq!(
            Verifier::from_fields(Some(&field), Some("$argon2id$x")),
            Some(v)
        );
        assert_eq!(Verifier::parse("$sha256$tooshort"), None);
        assert_eq!(Verifier::parse("plain text"), None);
    }

    #[test]
    fn argon2id_verifiers_parse_from_phc_strings_and_are_slow() {
        let phc = hash("chosen").expect("hash");
        let v = Verifier::parse(&phc).expect("parses");
        assert!(v.is_slow());
        assert!(v.matches("chosen"));
        assert!(!v.matches("chosen!"));
        assert_eq!(v.to_text(), phc);
        assert_eq!(Verifier::from_fields(None, Some(&phc)), Some(v));
        assert_eq!(Verifier::from_fields(None, None), None);
    }

    #[test]
    fn debug_shows_no_hash() {
        let v = Verifier::of_generated("x");
        assert_eq!(format!("{v:?}"), "Verifier::Sha256(..)");
    }

    #[test]
    fn decoy_never_matches() {
        assert!(!verify_decoy("anything"));
    }
}
