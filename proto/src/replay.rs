//! Replay memory: which query ids each provider has already been asked.
//!
//! Kept in memory and made durable by the caller's own log: a node records every inbound
//! query in its audit log, the broker every routing decision in its routing log, and each
//! writes that entry before anything leaves. At start they [`ReplayMemory::remember`] the
//! ids logged within [`ReplayMemory::HORIZON_SECS`], so a query answered before a crash or
//! restart is still a replay afterwards, while the query path pays no write of its own.
//!
//! Entries are dropped once their query has expired (plus the clock-skew tolerance): such a
//! query is refused as expired before replay is even checked.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::admission::{CLOCK_SKEW_SECS, MAX_QUERY_TTL_SECS, ReplayGuard};

/// Sweep expired entries at most this often (seconds).
const SWEEP_EVERY_SECS: i64 = 30;

/// In-memory replay guard, safe to share between threads.
#[derive(Debug, Default)]
pub struct ReplayMemory {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    seen: HashMap<(Vec<u8>, String), i64>,
    last_sweep: i64,
}

impl Inner {
    /// Drop ids whose queries expired before `now` (minus the clock-skew tolerance).
    fn sweep(&mut self, now: i64) {
        self.seen.retain(|_, until| *until + CLOCK_SKEW_SECS >= now);
        self.last_sweep = now;
    }
}

impl ReplayMemory {
    /// How far back a restarting party must read its log to rebuild the memory: the longest
    /// query lifetime plus the clock-skew tolerance on both sides.
    pub const HORIZON_SECS: i64 = MAX_QUERY_TTL_SECS + 2 * CLOCK_SKEW_SECS;

    /// An empty memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record an id found in the log at start. `logged_at` is when the entry was written;
    /// the query cannot have expired later than [`ReplayMemory::HORIZON_SECS`] after it.
    pub fn remember(&self, query_id: &[u8], provider_ori: &str, logged_at: i64) {
        let mut inner = self.lock();
        let until = logged_at + Self::HORIZON_SECS;
        let slot = inner
            .seen
            .entry((query_id.to_vec(), provider_ori.to_owned()))
            .or_insert(until);
        *slot = (*slot).max(until);
    }

    /// Number of ids held.
    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    /// True when no id is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop ids whose queries expired before `now` (minus the clock-skew tolerance).
    pub fn sweep(&self, now: i64) {
        self.lock().sweep(now);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the map inconsistent (every update
        // is a single insert or retain), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ReplayGuard for ReplayMemory {
    fn first_sight(&self, query_id: &[u8], provider_ori: &str, expires_at: i64) -> bool {
        let now = alpr_pki::now_unix();
        let mut inner = self.lock();
        if now - inner.last_sweep >= SWEEP_EVERY_SECS {
            inner.sweep(now);
        }
        let key = (query_id.to_vec(), provider_ori.to_owned());
        if inner.seen.contains_key(&key) {
            return false;
        }
        inner.seen.insert(key, expires_at);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_new_once_per_provider() {
        let m = ReplayMemory::new();
        let exp = alpr_pki::now_unix() + 300;
        assert!(m.first_sight(b"0123456789abcdef", "CA0010000", exp));
        assert!(!m.first_sight(b"0123456789abcdef", "CA0010000", exp));
        assert!(m.first_sight(b"0123456789abcdef", "CA0020000", exp));
        assert!(m.first_sight(b"fedcba9876543210", "CA0010000", exp));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn remembered_ids_are_replays_and_expired_ids_are_swept() {
        let m = ReplayMemory::new();
        let now = alpr_pki::now_unix();
        m.remember(b"logged-before-restart", "CA0010000", now - 60);
        assert!(!m.first_sight(b"logged-before-restart", "CA0010000", now + 300));
        // Logged longer ago than any query can live: dropped by a sweep.
        m.remember(
            b"ancient",
            "CA0010000",
            now - ReplayMemory::HORIZON_SECS - 2 * CLOCK_SKEW_SECS,
        );
        assert_eq!(m.len(), 2);
        m.sweep(now);
        assert_eq!(m.len(), 1);
        assert!(!m.first_sight(b"logged-before-restart", "CA0010000", now + 300));
    }
}
