//! argon2id hashing of client secrets, in PHC string format.
//!
//! Each hash or check costs about 19 MiB and 25 ms (the crate's defaults, OWASP's
//! recommendation): callers run it on a blocking thread and bound how many run at once.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

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
    fn decoy_never_matches() {
        assert!(!verify_decoy("anything"));
    }
}
