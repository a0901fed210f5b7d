//! Periodic background work of a daemon: re-reading CRLs, retention purges, registry
//! syncs. Each runs on the blocking pool when it touches files or databases, logs its own
//! failures and never stops the daemon.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;

/// Whether a periodic task also runs at once, or first after one interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum First {
    /// Run at start, then every interval.
    Now,
    /// Run first after one interval.
    AfterInterval,
}

/// Run `work` every `every` (at least one second) until the returned task is aborted.
pub fn every<F, Fut>(every: Duration, first: First, mut work: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let every = every.max(Duration::from_secs(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        if first == First::AfterInterval {
            tick.tick().await;
        }
        loop {
            tick.tick().await;
            work().await;
        }
    })
}

/// Re-read the CRL files every `secs` seconds through `reload` (blocking; returns an error
/// to log). A failed reload keeps the CRLs in force.
pub fn reload_crls<F, E>(secs: u64, reload: F) -> JoinHandle<()>
where
    F: Fn() -> Result<bool, E> + Clone + Send + Sync + 'static,
    E: std::fmt::Display + Send + 'static,
{
    every(Duration::from_secs(secs), First::AfterInterval, move || {
        let r = reload.clone();
        async move {
            if let Ok(Err(e)) = tokio::task::spawn_blocking(r).await {
                tracing::error!(error = %e, "CRL reload failed; keeping the CRLs in force");
            }
        }
    })
}
