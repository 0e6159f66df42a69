//! The bound on argon2 work in the token server.
//!
//! An argon2id check takes about 19 MiB and 20 ms of a core, and anyone can make the server
//! run one by presenting a wrong secret for a client whose secret was chosen (generated
//! secrets are checked by SHA-256 and never come here, see [`crate::auth::hash`]), or a
//! wrong password at the sign-in form. So at most `concurrent` checks run at once, and at
//! most `queued` further requests wait for a turn; past that a request is shed at once with
//! `temporarily_unavailable` (503, `Retry-After`). A flood then costs a fixed amount of CPU
//! and memory however many connections it opens, and it never delays the warm path, which
//! does not pass through here.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

use super::error::OAuthError;

pub struct HashGate {
    running: Semaphore,
    waiting: AtomicUsize,
    max_waiting: usize,
}

/// Counts a request out of the queue however it leaves it: served, shed, or cancelled
/// because its client went away.
struct InQueue<'a>(&'a AtomicUsize);

impl Drop for InQueue<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HashGate {
    pub fn new(concurrent: usize, max_waiting: usize) -> Self {
        HashGate {
            running: Semaphore::new(concurrent.max(1)),
            waiting: AtomicUsize::new(0),
            max_waiting,
        }
    }

    /// Runs `work` (an argon2 computation) on a blocking thread once a turn is free, or
    /// refuses at once with `temporarily_unavailable` when the queue is full.
    pub async fn run<T, F>(&self, work: F) -> Result<T, OAuthError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let _turn = match self.running.try_acquire() {
            Ok(turn) => turn,
            Err(_) => {
                let ahead = self.waiting.fetch_add(1, Ordering::AcqRel);
                let queued = InQueue(&self.waiting);
                if ahead >= self.max_waiting {
                    return Err(OAuthError::TemporarilyUnavailable);
                }
                let turn = self
                    .running
                    .acquire()
                    .await
                    .map_err(|_| OAuthError::TemporarilyUnavailable)?;
                drop(queued);
                turn
            }
        };
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| OAuthError::ServerError)
    }

    /// Requests waiting for a turn now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_full_queue_sheds_at_once_and_frees_its_places() {
        let gate = Arc::new(HashGate::new(1, 2));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let hold = Arc::new(std::sync::Mutex::new(hold));
        // One running (held until released), two waiting: the gate is full.
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let (gate, hold) = (gate.clone(), hold.clone());
            tasks.push(tokio::spawn(async move {
                gate.run(move || {
                    let _ = hold.lock().map(|h| h.recv());
                })
                .await
            }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(gate.waiting(), 2);
        let shed = gate.run(|| ()).await;
        assert!(matches!(shed, Err(OAuthError::TemporarilyUnavailable)));
        assert_eq!(gate.waiting(), 2, "a shed request holds no place");
        for _ in 0..3 {
            release.send(()).expect("release");
        }
        for t in tasks {
            assert!(t.await.expect("joined").is_ok());
        }
        assert_eq!(gate.waiting(), 0);
        assert!(gate.run(|| ()).await.is_ok(), "free again");
    }

    #[tokio::test]
    async fn a_cancelled_waiter_gives_its_place_back() {
        let gate = Arc::new(HashGate::new(1, 1));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let running = {
            let gate = gate.clone();
            tokio::spawn(async move {
                gate.run(move || {
                    let _ = hold.recv();
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.run(|| ()).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(gate.waiting(), 1);
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(gate.waiting(), 0);
        release.send(()).expect("release");
        assert!(running.await.expect("joined").is_ok());
    }
}
