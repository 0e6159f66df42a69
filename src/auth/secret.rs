//! Secret values: generated from the OS CSPRNG and never printed.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A secret value. Its `Debug` and `Display` are redacted, so it cannot leak through a log
/// line or an error message by accident; `expose` is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: String) -> Self {
        SecretString(value)
    }

    /// The value itself, for the few places that must write or compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([redacted])")
    }
}

/// The OS random source failed: nothing safe can be generated.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random source failed: {0}")]
pub struct RandomError(getrandom::Error);

/// `n` random bytes from the OS CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(RandomError)?;
    Ok(buf)
}

/// A new client secret: 256 bits from the OS CSPRNG, base64url without padding (43
/// characters), safe in HTTP Basic, form bodies and environment variables alike.
pub fn generate_secret() -> Result<SecretString, RandomError> {
    Ok(SecretString(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?)))
}

/// A random, URL-safe identifier of 128 bits (token ids, `jti`).
pub fn random_id() -> Result<String, RandomError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<16>()?))
}

/// An initial access token as handed out: `<token id>.<secret>`. The id (not secret)
/// finds the verifier without hashing; the secret part is 256 bits from the CSPRNG.
pub fn split_token(token: &str) -> Option<(&str, &str)> {
    token
        .split_once('.')
        .filter(|(id, s)| !id.is_empty() && !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_into_id_and_secret() {
        assert_eq!(split_token("abc.def"), Some(("abc", "def")));
        assert_eq!(split_token("abc.de.f"), Some(("abc", "de.f")));
        assert_eq!(split_token(".def"), None);
        assert_eq!(split_token("abc."), None);
        assert_eq!(split_token("abcdef"), None);
    }

    #[test]
    fn secrets_are_long_distinct_and_url_safe() {
        let a = generate_secret().expect("random");
        let b = generate_secret().expect("random");
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
        assert!(
            a.expose()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn debug_never_shows_the_value() {
        let s = generate_secret().expect("random");
        let printed = format!("{s:?}");
        assert!(!printed.contains(s.expose()));
        assert!(printed.contains("redacted"));
    }
}
