//! The Kubernetes client every component uses, with a client-side rate limit.
//!
//! client-go has one (`--kube-api-qps`, `--kube-api-burst` on every controller of
//! kube-controller-manager); kube-rs leaves it to the caller. Without one, 10,000
//! OAuthClients applied at once start 10,000 reconciles whose reads and writes reach the
//! API server as fast as it answers, which is how one operator starves the others sharing
//! it (API Priority and Fairness would then queue or refuse them with 429). A token bucket
//! (governor: a well-kept crate, GCRA) in front of every request bounds the rate instead,
//! and a burst lets a short spike, such as a restart's first lists, through at once.
//!
//! The limit sits in a tower layer below kube's buffer, so requests wait in order in
//! `poll_ready`, and watches count once when they (re)start, as in client-go.

use std::future::Future;
use std::num::NonZeroU32;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Requests per second and burst; `None` for no limit.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub qps: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Limits {
    /// `None` when `qps` is 0: no client-side limit.
    pub fn new(qps: u32, burst: u32) -> Option<Self> {
        let qps = NonZeroU32::new(qps)?;
        Some(Limits {
            qps,
            burst: NonZeroU32::new(burst).unwrap_or(qps).max(qps),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("loading the client configuration: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("building the client: {0}")]
    Build(#[from] kube::Error),
}

/// A client from `kubeconfig` (or in-cluster configuration, `$KUBECONFIG`, `~/.kube/config`),
/// rate-limited by `limits`.
pub async fn connect(
    kubeconfig: Option<&Path>,
    limits: Option<Limits>,
) -> Result<kube::Client, Error> {
    let config = match kubeconfig {
        Some(path) => {
            kube::Config::from_custom_kubeconfig(
                Kubeconfig::read_from(path)?,
                &KubeConfigOptions::default(),
            )
            .await?
        }
        None => kube::Config::infer().await?,
    };
    let builder = ClientBuilder::try_from(config)?;
    Ok(match limits {
        Some(limits) => builder.with_layer(&RateLimitLayer::new(limits)).build(),
        None => builder.build(),
    })
}

/// Waits for a token of a shared bucket before each request.
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Arc<DefaultDirectRateLimiter>,
}

impl RateLimitLayer {
    pub fn new(limits: Limits) -> Self {
        let quota = Quota::per_second(limits.qps).allow_burst(limits.burst);
        RateLimitLayer {
            limiter: Arc::new(RateLimiter::direct(quota)),
        }
    }
}

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
            waiting: None,
            permitted: false,
        }
    }
}

type Wait = Pin<Box<dyn Future<Output = ()> + Send>>;

pub struct RateLimit<S> {
    inner: S,
    limiter: Arc<DefaultDirectRateLimiter>,
    waiting: Option<Wait>,
    /// A token is held for the next `call`.
    permitted: bool,
}

impl<S, R> tower::Service<R> for RateLimit<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        if !self.permitted {
            let limiter = self.limiter.clone();
            let wait = self
                .waiting
                .get_or_insert_with(|| Box::pin(async move { limiter.until_ready().await }));
            ready!(wait.as_mut().poll(cx));
            self.waiting = None;
            self.permitted = true;
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> S::Future {
        self.permitted = false;
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{Service, ServiceExt};

    #[test]
    fn a_zero_rate_means_no_limit_and_the_burst_is_at_least_the_rate() {
        assert!(Limits::new(0, 10).is_none());
        let l = Limits::new(50, 0).expect("limited");
        assert_eq!((l.qps.get(), l.burst.get()), (50, 50));
        let l = Limits::new(50, 100).expect("limited");
        assert_eq!(l.burst.get(), 100);
    }

    #[tokio::test]
    async fn requests_beyond_the_burst_wait_for_the_rate() {
        let layer = RateLimitLayer::new(Limits::new(1, 2).expect("limited"));
        let mut svc = tower::Layer::layer(
            &layer,
            tower::service_fn(|n: u32| async move { Ok::<_, Infallible>(n) }),
        );
        // The burst passes at once.
        for n in 0..2 {
            assert_eq!(svc.ready().await.expect("ready").call(n).await, Ok(n));
        }
        // The third has no token: not ready until one refills (a second at 1 qps).
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(svc.poll_ready(&mut cx).is_pending());
    }
}
