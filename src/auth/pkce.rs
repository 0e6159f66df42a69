//! PKCE (RFC 7636) for the authorization code grant: the challenge a client sends to
//! `/authorize` and the check of its verifier at `/token`. Only `S256` is offered, for every
//! client (RFC 9700 section 2.1.1): `plain` protects nothing once the challenge is seen.
//!
//! Written by hand: the check is one SHA-256 and a constant-time comparison, and the crates
//! that offer PKCE are client libraries that generate verifiers rather than check them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Why a PKCE parameter is refused; each maps to `invalid_request` (at `/authorize`) or
/// `invalid_grant` (at `/token`) at the HTTP edge.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    #[error("code_challenge is required (PKCE with S256)")]
    MissingChallenge,
    #[error("code_challenge_method must be S256")]
    UnsupportedMethod,
    #[error("code_challenge must be the base64url SHA-256 of a code verifier (43 characters)")]
    MalformedChallenge,
    #[error("code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~")]
    MalformedVerifier,
    #[error("code_verifier does not match the code_challenge")]
    Mismatch,
}

/// An `S256` code challenge: the SHA-256 of the client's code verifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge([u8; 32]);

impl Challenge {
    /// From `code_challenge` and `code_challenge_method` of an authorization request. A
    /// missing method means `plain` (RFC 7636 section 4.3), which is refused like any other.
    pub fn parse(challenge: Option<&str>, method: Option<&str>) -> Result<Self, PkceError> {
        let challenge = challenge.ok_or(PkceError::MissingChallenge)?;
        if method != Some("S256") {
            return Err(PkceError::UnsupportedMethod);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(challenge)
            .map_err(|_| PkceError::MalformedChallenge)?;
        bytes
            .try_into()
            .map(Challenge)
            .map_err(|_| PkceError::MalformedChallenge)
    }

    /// The challenge as sent, for storing it with the code.
    pub fn encoded(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Checks the `code_verifier` of a token request, in constant time.
    pub fn verify(&self, verifier: &str) -> Result<(), PkceError> {
        // RFC 7636 section 4.1: 43 to 128 unreserved characters.
        let well_formed = (43..=128).contains(&verifier.len())
            && verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if !well_formed {
            return Err(PkceError::MalformedVerifier);
        }
        let digest: [u8; 32] = Sha256::digest(verifier.as_bytes()).into();
        if bool::from(digest.ct_eq(&self.0)) {
            Ok(())
        } else {
            Err(PkceError::Mismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn challenge() -> Challenge {
        Challenge::parse(Some(CHALLENGE), Some("S256")).expect("the RFC's challenge parses")
    }

    #[test]
    fn the_rfc_example_verifies() {
        assert_eq!(challenge().verify(VERIFIER), Ok(()));
        assert_eq!(challenge().encoded(), CHALLENGE);
    }

    #[test]
    fn another_verifier_is_a_mismatch() {
        let other = format!("{}A", &VERIFIER[..VERIFIER.len() - 1]);
        assert_eq!(challenge().verify(&other), Err(PkceError::Mismatch));
    }

    #[test]
    fn plain_and_a_missing_method_are_refused() {
        for method in [None, Some("plain"), Some("s256"), Some("S512")] {
            assert_eq!(
                Challenge::parse(Some(CHALLENGE), method),
                Err(PkceError::UnsupportedMethod),
                "{method:?}"
            );
        }
        assert_eq!(
            Challenge::parse(None, Some("S256")),
            Err(PkceError::MissingChallenge)
        );
    }

    #[test]
    fn a_challenge_that_is_no_sha256_is_malformed() {
        for bad in [
            "",
            "abc",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c",
            "not base64!",
        ] {
            assert_eq!(
                Challenge::parse(Some(bad), Some("S256")),
                Err(PkceError::MalformedChallenge),
                "{bad:?}"
            );
        }
        let padded = format!("{CHALLENGE}=");
        assert_eq!(
            Challenge::parse(Some(&padded), Some("S256")),
            Err(PkceError::MalformedChallenge)
        );
    }

    #[test]
    fn verifiers_outside_the_rfc_grammar_are_malformed() {
        let too_short = "a".repeat(42);
        let too_long = "a".repeat(129);
        let spaced = format!("{} ", &VERIFIER[..42]);
        for bad in [too_short.as_str(), too_long.as_str(), spaced.as_str(), ""] {
            assert_eq!(
                challenge().verify(bad),
                Err(PkceError::MalformedVerifier),
                "{bad:?}"
            );
        }
        // The bounds themselves are allowed (and then simply do not match).
        assert_eq!(
            challenge().verify(&"a".repeat(43)),
            Err(PkceError::Mismatch)
        );
        assert_eq!(
            challenge().verify(&"~".repeat(128)),
            Err(PkceError::Mismatch)
        );
    }
}
