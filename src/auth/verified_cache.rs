//! The warm path of chosen client secrets (`secretKeyRef`, `hashRef`): a bounded memory of
//! secrets that already passed an argon2id check, so that a busy client does not pay 25 ms
//! of CPU per token. Generated secrets never come here: their SHA-256 check costs less
//! than this cache's own HMAC (see [`crate::auth::hash`]), so for them it would only keep
//! a derivative of presented secrets in memory for nothing.
//!
//! Why this keeps what argon2 protects:
//! - Only keyed MACs are kept (HMAC-SHA256 under a key drawn from the OS CSPRNG at start
//!   and never written anywhere): the cache holds no secret and nothing that can be
//!   checked offline without that key.
//! - An entry is bound to the client id *and* to the PHC string of the secret entry it
//!   matched. Rotation, removal or re-hashing changes or drops that PHC string, so the
//!   entry can never be consulted again; expiry and deactivation are checked before the
//!   cache is (the server only asks about hashes that are valid now).
//! - Only a secret that passed a full argon2id check is remembered, so a guess is never
//!   cheaper than argon2 for an attacker: a wrong secret always misses and pays in full.
//! - The map is bounded; past its capacity an arbitrary entry is dropped, which costs at
//!   most one more argon2 check later.

use std::collections::HashMap;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::secret::{RandomError, random_bytes};

type Tag = [u8; 32];

/// See the module documentation.
pub struct VerifiedCache {
    key: [u8; 32],
    capacity: usize,
    entries: Mutex<HashMap<Tag, Tag>>,
}

impl VerifiedCache {
    /// A cache of at most `capacity` remembered secrets, with a fresh random key.
    pub fn new(capacity: usize) -> Result<Self, RandomError> {
        Ok(VerifiedCache {
            key: random_bytes::<32>()?,
            capacity,
            entries: Mutex::new(HashMap::new()),
        })
    }

    fn mac(&self, parts: &[&[u8]]) -> Tag {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return [0; 32];
        };
        for p in parts {
            // Length-prefixed, so no two different inputs concatenate to the same bytes.
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    fn slot(&self, client_id: &str, phc: &str) -> Tag {
        self.mac(&[b"slot", client_id.as_bytes(), phc.as_bytes()])
    }

    /// The map, even after a panic elsewhere while it was held: every change to it is one
    /// `insert` or `remove`, which leaves it whole, so a poisoned lock holds nothing
    /// half-written, and refusing the cache would turn one panic into argon2 for everyone.
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Tag, Tag>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn tag(&self, client_id: &str, phc: &str, secret: &str) -> Tag {
        self.mac(&[
            b"tag",
            client_id.as_bytes(),
            phc.as_bytes(),
            secret.as_bytes(),
        ])
    }

    /// Whether `secret` was verified against `phc` for `client_id` before. Constant-time
    /// in the comparison of the remembered tag.
    pub fn check(&self, client_id: &str, phc: &str, secret: &str) -> bool {
        let slot = self.slot(client_id, phc);
        let remembered = self.entries().get(&slot).copied();
        remembered.is_some_and(|t| bool::from(t.ct_eq(&self.tag(client_id, phc, secret))))
    }

    /// Remembers that `secret` passed argon2id against `phc` for `client_id`. A cache of
    /// capacity 0 remembers nothing (every check pays argon2).
    pub fn remember(&self, client_id: &str, phc: &str, secret: &str) {
        if self.capacity == 0 {
            return;
        }
        let (slot, tag) = (self.slot(client_id, phc), self.tag(client_id, phc, secret));
        let mut m = self.entries();
        if m.len() >= self.capacity
            && !m.contains_key(&slot)
            && let Some(victim) = m.keys().next().copied()
        {
            m.remove(&victim);
        }
        m.insert(slot, tag);
    }

    /// How many secrets are remembered.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_only_the_verified_secret_for_that_hash_and_client() {
        let c = VerifiedCache::new(10).expect("random");
        assert!(!c.check("a", "$h1", "s"));
        c.remember("a", "$h1", "s");
        assert!(c.check("a", "$h1", "s"));
        assert!(!c.check("a", "$h1", "wrong"));
        assert!(!c.check("a", "$h2", "s"), "a rotated hash must miss");
        assert!(!c.check("b", "$h1", "s"), "another client must miss");
    }

    #[test]
    fn stays_within_capacity() {
        let c = VerifiedCache::new(3).expect("random");
        for i in 0..10 {
            c.remember("a", &format!("$h{i}"), "s");
        }
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn capacity_zero_disables_it() {
        let c = VerifiedCache::new(0).expect("random");
        c.remember("a", "$h", "s");
        assert!(!c.check("a", "$h", "s"));
    }

    #[test]
    fn keys_differ_between_instances() {
        let (a, b) = (
            VerifiedCache::new(1).expect("r"),
            VerifiedCache::new(1).expect("r"),
        );
        a.remember("c", "$h", "s");
        assert!(!b.check("c", "$h", "s"));
    }
}
