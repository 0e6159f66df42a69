//! How every watch retries when the API server is unreachable.
//!
//! kube-runtime's default backoff (client-go's) grows to 30 s, so after a minute-long API
//! outage each of the several watches of a process came back up to a minute late, one
//! after the other. This one starts at half a second and stays under 5 s (with jitter, so
//! replicas do not reconnect in step), which the API server can take from a handful of
//! operator processes; it resets once a watch works again.

use std::time::Duration;

use kube::runtime::utils::Backoff;

const FIRST: Duration = Duration::from_millis(500);
const MAX: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct WatchBackoff {
    next: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { next: FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let base = self.next;
        self.next = (self.next * 2).min(MAX);
        // Up to a quarter more, from the CSPRNG (already at hand; no other RNG needed).
        let r = crate::auth::secret::random_bytes::<1>().map_or(0, |b| u32::from(b[0]));
        Some(base + base * r / 255 / 4)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_a_few_seconds_and_resets() {
        let mut b = WatchBackoff::default();
        let delays: Vec<Duration> = b.by_ref().take(8).collect();
        assert!(delays[0] >= FIRST && delays[0] <= FIRST * 5 / 4);
        assert!(delays.iter().all(|d| *d <= MAX * 5 / 4));
        assert!(delays[7] >= MAX);
        b.reset();
        assert!(b.next().is_some_and(|d| d <= FIRST * 5 / 4));
    }
}
