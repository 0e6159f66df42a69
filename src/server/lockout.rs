//! Brute-force protection, after Keycloak's brute-force detection: consecutive failed
//! authentications of a client id lock it temporarily, the wait growing by `wait` for every
//! further `max_failures` failures, up to `max_wait`; failures older than `reset_after`
//! are forgotten, and a success forgets them all.
//!
//! It protects only what can be guessed: secrets someone chose (`secretKeyRef`, `hashRef`)
//! and user passwords, the argon2id kinds. Against a generated secret (256 random bits)
//! nothing can be guessed online, so a lockout there would only let anyone who knows a
//! client id lock its rightful holder out: generated secrets are checked before the
//! lockout and never count towards it (see `token::authenticate`).
//!
//! While a client is locked, its chosen secrets are not checked at all (no argon2 work),
//! and the answer is the same `invalid_client` as for a wrong secret, so the lock reveals
//! nothing to the attacker. A chosen secret that already passed argon2 (the warm cache) is
//! still accepted, so a lock stops guessing without shutting out the client's own
//! workloads. Only client ids in the index are tracked, so memory is bounded by the index.
//!
//! A poisoned lock is recovered ([`PoisonError::into_inner`]): the counts are plain
//! numbers a panic cannot leave half-written, and skipping the lock would fail open (no
//! client ever locked) without a word.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Lockout settings (Keycloak: maxLoginFailures, waitIncrementSeconds,
/// maxFailureWaitSeconds, failureResetTimeSeconds).
#[derive(Clone, Debug)]
pub struct LockoutConfig {
    /// Failures before the first lock; 0 disables the lockout.
    pub max_failures: u32,
    /// Lock duration per `max_failures` failures.
    pub wait: Duration,
    /// The longest lock.
    pub max_wait: Duration,
    /// Failures older than this are forgotten.
    pub reset_after: Duration,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig {
            max_failures: 10,
            wait: Duration::from_secs(60),
            max_wait: Duration::from_secs(15 * 60),
            reset_after: Duration::from_secs(12 * 3600),
        }
    }
}

#[derive(Debug)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Failure counts of known client ids.
pub struct Lockout {
    config: LockoutConfig,
    state: Mutex<HashMap<String, Failures>>,
}

impl Lockout {
    pub fn new(config: LockoutConfig) -> Self {
        Lockout {
            config,
            state: Mutex::new(HashMap::new()),
        }
    }

    fn state(&self) -> MutexGuard<'_, HashMap<String, Failures>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `Some(remaining)` while `client_id` is locked at `now`.
    pub fn locked(&self, client_id: &str, now: Instant) -> Option<Duration> {
        let state = self.state();
        let until = state.get(client_id)?.locked_until?;
        (until > now).then(|| until - now)
    }

    /// Records a failed authentication; returns the lock it caused, if any.
    pub fn failure(&self, client_id: &str, now: Instant) -> Option<Duration> {
        if self.config.max_failures == 0 {
            return None;
        }
        let mut state = self.state();
        let f = state.entry(client_id.to_string()).or_insert(Failures {
            count: 0,
            last: now,
            locked_until: None,
        });
        if now.duration_since(f.last) > self.config.reset_after {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        if !f.count.is_multiple_of(self.config.max_failures) {
            return None;
        }
        let wait = self
            .config
            .wait
            .saturating_mul(f.count / self.config.max_failures)
            .min(self.config.max_wait);
        f.locked_until = Some(now + wait);
        Some(wait)
    }

    /// Records a success: the client's failures are forgotten.
    pub fn success(&self, client_id: &str) {
        self.state().remove(client_id);
    }

    /// Drops the state of clients the index no longer holds.
    pub fn retain(&self, known: impl Fn(&str) -> bool) {
        self.state().retain(|id, _| known(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lockout() -> Lockout {
        Lockout::new(LockoutConfig {
            max_failures: 3,
            wait: Duration::from_secs(10),
            max_wait: Duration::from_secs(25),
            reset_after: Duration::from_secs(100),
        })
    }

    #[test]
    fn locks_after_max_failures_with_a_growing_capped_wait() {
        let l = lockout();
        let t = Instant::now();
        assert_eq!(l.failure("c", t), None);
        assert_eq!(l.failure("c", t), None);
        assert_eq!(l.failure("c", t), Some(Duration::from_secs(10)));
        assert_eq!(
            l.locked("c", t + Duration::from_secs(5)),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            l.locked("c", t + Duration::from_secs(10)),
            None,
            "the lock expires"
        );
        for _ in 0..3 {
            l.failure("c", t);
        }
        assert_eq!(l.locked("c", t), Some(Duration::from_secs(20)));
        for _ in 0..3 {
            l.failure("c", t);
        }
        assert_eq!(
            l.locked("c", t),
            Some(Duration::from_secs(25)),
            "capped at max_wait"
        );
        assert_eq!(l.locked("other", t), None);
    }

    #[test]
    fn success_and_time_forget_failures() {
        let l = lockout();
        let t = Instant::now();
        l.failure("c", t);
        l.failure("c", t);
        l.success("c");
        assert_eq!(l.failure("c", t), None);
        assert_eq!(l.failure("c", t), None);
        let later = t + Duration::from_secs(101);
        assert_eq!(l.failure("c", later), None, "old failures were reset");
    }

    #[test]
    fn zero_disables_it() {
        let l = Lockout::new(LockoutConfig {
            max_failures: 0,
            ..LockoutConfig::default()
        });
        let t = Instant::now();
        for _ in 0..100 {
            assert_eq!(l.failure("c", t), None);
        }
        assert_eq!(l.locked("c", t), None);
    }
}
