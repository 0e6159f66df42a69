//! Sealed values: what the token server hands to a browser or a client and must get back
//! unchanged and unread, without keeping it anywhere: the pending authorization request
//! (in a cookie), the authorization code, and the refresh token. AES-256-GCM with a random nonce (aws-lc-rs),
//! so a value is both secret and authentic; every replica opens what another sealed,
//! since the key travels with the signing keys (`sealingKey` of the signing-key Secret).
//!
//! Each value is sealed for one purpose, bound as associated data, so a cookie can never
//! be passed off as a code, and each carries its own expiry, checked on opening.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Length of a sealing key in bytes.
pub const KEY_LEN: usize = 32;

/// What a sealed value is for; part of the associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The upstream leg of a sign-in through an upstream provider: its state, nonce and
    /// PKCE verifier, bound to the browser (a cookie).
    UpstreamRequest,
    /// The authorization request waiting for the user to sign in (a cookie).
    PendingRequest,
    /// An authorization code.
    Code,
    /// A refresh token.
    RefreshToken,
    /// A sign-in session (a cookie).
    Session,
}

impl Purpose {
    fn aad(self) -> &'static [u8] {
        match self {
            Purpose::UpstreamRequest => b"oauth-operator/upstream-request/v1",
            Purpose::PendingRequest => b"oauth-operator/pending-request/v1",
            Purpose::Code => b"oauth-operator/code/v1",
            Purpose::RefreshToken => b"oauth-operator/refresh-token/v1",
            Purpose::Session => b"oauth-operator/session/v1",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("a sealing key must be {KEY_LEN} bytes")]
    KeyLength,
    #[error("sealing failed")]
    Seal,
    #[error("the value to seal does not serialise: {0}")]
    Json(#[from] serde_json::Error),
}

/// The key, ready to seal and open.
pub struct Sealer(RandomizedNonceKey);

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

/// A sealed value with its expiry, as it travels.
#[derive(Serialize, serde::Deserialize)]
struct Envelope<T> {
    /// Unix seconds.
    exp: i64,
    value: T,
}

impl Sealer {
    pub fn new(key: &[u8]) -> Result<Self, SealError> {
        if key.len() != KEY_LEN {
            return Err(SealError::KeyLength);
        }
        RandomizedNonceKey::new(&AES_256_GCM, key)
            .map(Sealer)
            .map_err(|_| SealError::KeyLength)
    }

    /// `value`, valid until `exp` (Unix seconds), as base64url text: nonce, then
    /// ciphertext and tag.
    pub fn seal<T: Serialize>(
        &self,
        purpose: Purpose,
        exp: i64,
        value: &T,
    ) -> Result<String, SealError> {
        let mut data = serde_json::to_vec(&Envelope { exp, value })?;
        let nonce = self
            .0
            .seal_in_place_append_tag(Aad::from(purpose.aad()), &mut data)
            .map_err(|_| SealError::Seal)?;
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&data);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// The value sealed for `purpose`, if `sealed` is authentic and not expired at `now`.
    /// Every failure is `None`: the caller answers the same whatever was wrong.
    pub fn open<T: DeserializeOwned>(&self, purpose: Purpose, sealed: &str, now: i64) -> Option<T> {
        let mut data = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if data.len() < NONCE_LEN {
            return None;
        }
        let mut body = data.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&data).ok()?;
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(purpose.aad()), &mut body)
            .ok()?;
        let envelope: Envelope<T> = serde_json::from_slice(plain).ok()?;
        (now < envelope.exp).then_some(envelope.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(byte: u8) -> Sealer {
        Sealer::new(&[byte; KEY_LEN]).expect("key")
    }

    #[test]
    fn a_sealed_value_opens_until_it_expires() {
        let s = sealer(1);
        let sealed = s.seal(Purpose::Code, 100, &"hello").expect("seal");
        assert_eq!(
            s.open::<String>(Purpose::Code, &sealed, 99).as_deref(),
            Some("hello")
        );
        assert_eq!(s.open::<String>(Purpose::Code, &sealed, 100), None);
        assert!(!sealed.contains("hello"), "sealed values are encrypted");
    }

    #[test]
    fn another_purpose_another_key_or_a_changed_byte_does_not_open() {
        let s = sealer(1);
        let sealed = s.seal(Purpose::Code, 100, &"v").expect("seal");
        assert_eq!(s.open::<String>(Purpose::PendingRequest, &sealed, 0), None);
        assert_eq!(sealer(2).open::<String>(Purpose::Code, &sealed, 0), None);
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).expect("b64");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = URL_SAFE_NO_PAD.encode(bytes);
        assert_eq!(s.open::<String>(Purpose::Code, &tampered, 0), None);
        assert_eq!(s.open::<String>(Purpose::Code, "", 0), None);
        assert_eq!(s.open::<String>(Purpose::Code, "!!", 0), None);
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let s = sealer(1);
        let a = s.seal(Purpose::Code, 100, &"v").expect("seal");
        let b = s.seal(Purpose::Code, 100, &"v").expect("seal");
        assert_ne!(a, b, "the nonce is random");
    }

    #[test]
    fn keys_of_the_wrong_length_are_refused() {
        assert!(Sealer::new(&[0; 16]).is_err());
    }
}
