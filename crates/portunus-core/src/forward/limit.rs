//! Rate and concurrency limits, enforced once per rule and once per owner.
//!
//! A rule's [`Caps`] and its owner's caps are both enforced: a new connection (or UDP flow)
//! needs a free slot and a token from both, and every forwarded byte is charged to both
//! bandwidth buckets. One [`Limiter`] exists per rule and one per owner; the owner's is shared
//! by all of that owner's rules and is retuned in place when the owner's caps change, so a cap
//! change never needs listeners or connections to be restarted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::wire::Caps;

/// The shortest burst a bandwidth bucket allows: one full userspace copy chunk, so that a
/// slow cap still moves whole chunks.
const MIN_BANDWIDTH_BURST: f64 = 16.0 * 1024.0;

/// How much of a second's worth of bandwidth may pass in one burst.
const BANDWIDTH_BURST_SECS: f64 = 0.05;

/// A classic token bucket: `rate` tokens per second, at most `burst` banked. Tokens may go
/// negative (debt) when bytes were already moved; the debt is then waited off.
#[derive(Debug, Clone)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: f64) -> Bucket {
        Bucket {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// `per_sec` new connections a second, bursts of up to a second's worth (0 counts as 1).
    fn for_connections(per_sec: u32) -> Bucket {
        let rate = f64::from(per_sec.max(1));
        Bucket::new(rate, rate)
    }

    /// `bps` bytes a second, bursts of 50 ms' worth but at least 16 KiB (0 counts as 1).
    fn for_bytes(bps: u64) -> Bucket {
        // Precision loss above 2^53 bytes per second is irrelevant.
        #[allow(clippy::cast_precision_loss)]
        let rate = bps.max(1) as f64;
        Bucket::new(rate, (rate * BANDWIDTH_BURST_SECS).max(MIN_BANDWIDTH_BURST))
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
    }

    /// Takes `n` tokens if that many are banked.
    fn try_take(&mut self, n: f64) -> bool {
        self.refill(Instant::now());
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Takes `n` tokens unconditionally; returns how long until the bucket is out of debt.
    fn charge(&mut self, n: f64) -> Duration {
        self.refill(Instant::now());
        self.tokens -= n;
        self.debt_wait()
    }

    /// How long until the bucket is out of debt (zero when it is not in debt).
    fn debt_wait(&mut self) -> Duration {
        self.refill(Instant::now());
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the bucket inconsistent in a way
    // that matters (worst case a slightly wrong token count), so poisoning is ignored.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One set of caps with its live state (concurrent count, token buckets).
#[derive(Debug)]
pub(crate) struct Limiter {
    caps: Mutex<Caps>,
    max_active: AtomicU64,
    active: AtomicU64,
    conn_rate: Mutex<Option<Bucket>>,
    bandwidth: Mutex<Option<Bucket>>,
    bandwidth_capped: AtomicBool,
}

impl Limiter {
    pub(crate) fn new(caps: Caps) -> Limiter {
        let limiter = Limiter {
            caps: Mutex::new(Caps::default()),
            max_active: AtomicU64::new(u64::MAX),
            active: AtomicU64::new(0),
            conn_rate: Mutex::new(None),
            bandwidth: Mutex::new(None),
            bandwidth_capped: AtomicBool::new(false),
        };
        limiter.set_caps(caps);
        limiter
    }

    /// Retunes the limits in place. Buckets whose rate is unchanged keep their state; the
    /// concurrent count is kept (connections above a lowered maximum run on, new ones wait).
    pub(crate) fn set_caps(&self, caps: Caps) {
        // A new limiter starts in the state of `Caps::default()` (nothing capped).
        let mut current = lock(&self.caps);
        if *current == caps {
            return;
        }
        self.max_active.store(
            caps.max_connections.map_or(u64::MAX, u64::from),
            Ordering::Relaxed,
        );
        if current.new_conn_per_sec != caps.new_conn_per_sec {
            *lock(&self.conn_rate) = caps.new_conn_per_sec.map(Bucket::for_connections);
        }
        if current.bandwidth_bps != caps.bandwidth_bps {
            *lock(&self.bandwidth) = caps.bandwidth_bps.map(Bucket::for_bytes);
            self.bandwidth_capped
                .store(caps.bandwidth_bps.is_some(), Ordering::Relaxed);
        }
        *current = caps;
    }

    /// The caps now in force.
    #[cfg(test)]
    pub(crate) fn caps(&self) -> Caps {
        *lock(&self.caps)
    }

    /// Takes one concurrent slot, or `None` at the maximum.
    pub(crate) fn try_slot(self: &Arc<Self>) -> Option<Slot> {
        let max = self.max_active.load(Ordering::Relaxed);
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(self)))
    }

    /// Takes one new-connection token; `true` when there is no rate cap.
    pub(crate) fn try_new_connection(&self) -> bool {
        lock(&self.conn_rate)
            .as_mut()
            .is_none_or(|bucket| bucket.try_take(1.0))
    }

    /// Gives back a token taken by [`Limiter::try_new_connection`] for a connection that was
    /// refused for another reason.
    pub(crate) fn refund_new_connection(&self) {
        if let Some(bucket) = lock(&self.conn_rate).as_mut() {
            bucket.tokens = (bucket.tokens + 1.0).min(bucket.burst);
        }
    }

    /// Whether a bandwidth cap applies.
    pub(crate) fn bandwidth_capped(&self) -> bool {
        self.bandwidth_capped.load(Ordering::Relaxed)
    }

    /// Charges `n` forwarded bytes; returns how long the sender should pause.
    pub(crate) fn charge(&self, n: usize) -> Duration {
        #[allow(clippy::cast_precision_loss)]
        let n = n as f64;
        lock(&self.bandwidth)
            .as_mut()
            .map_or(Duration::ZERO, |bucket| bucket.charge(n))
    }

    /// How long until the bandwidth bucket is out of debt.
    pub(crate) fn debt_wait(&self) -> Duration {
        lock(&self.bandwidth)
            .as_mut()
            .map_or(Duration::ZERO, Bucket::debt_wait)
    }

    /// For datagrams, which are dropped rather than delayed: takes `n` bytes' worth of tokens
    /// if they are banked.
    pub(crate) fn police(&self, n: usize) -> bool {
        #[allow(clippy::cast_precision_loss)]
        let n = n as f64;
        lock(&self.bandwidth)
            .as_mut()
            .is_none_or(|bucket| bucket.try_take(n))
    }
}

/// One concurrent connection or flow counted against a [`Limiter`]; released on drop.
#[derive(Debug)]
pub(crate) struct Slot(Arc<Limiter>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The rule's and the owner's limiter, checked together.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) rule: Arc<Limiter>,
    pub(crate) owner: Arc<Limiter>,
}

/// What admitting a new connection or flow holds until it ends.
#[derive(Debug)]
pub(crate) struct Admission {
    _rule: Slot,
    _owner: Slot,
}

impl Limits {
    /// Admits one new connection or flow against both limiters, or refuses it.
    pub(crate) fn admit(&self) -> Option<Admission> {
        let rule = self.rule.try_slot()?;
        let owner = self.owner.try_slot()?;
        if !self.rule.try_new_connection() {
            return None;
        }
        if !self.owner.try_new_connection() {
            self.rule.refund_new_connection();
            return None;
        }
        Some(Admission {
            _rule: rule,
            _owner: owner,
        })
    }

    /// Whether either limiter caps bandwidth (then bytes go through the userspace copy).
    pub(crate) fn bandwidth_capped(&self) -> bool {
        self.rule.bandwidth_capped() || self.owner.bandwidth_capped()
    }

    /// Charges `n` bytes to both; returns the longer pause.
    pub(crate) fn charge(&self, n: usize) -> Duration {
        self.rule.charge(n).max(self.owner.charge(n))
    }

    /// How long until both are out of debt.
    pub(crate) fn debt_wait(&self) -> Duration {
        self.rule.debt_wait().max(self.owner.debt_wait())
    }

    /// Takes `n` bytes from both if both have them (datagrams).
    pub(crate) fn police(&self, n: usize) -> bool {
        // Check the owner first only when the rule allowed it, so a dropped datagram is not
        // charged to the owner. (A datagram the owner refuses is still charged to the rule;
        // that slight over-count is harmless.)
        self.rule.police(n) && self.owner.police(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn caps(bw: Option<u64>, rate: Option<u32>, max: Option<u32>) -> Caps {
        Caps {
            bandwidth_bps: bw,
            new_conn_per_sec: rate,
            max_connections: max,
        }
    }

    #[test]
    fn slots_are_counted_and_released() {
        let l = Arc::new(Limiter::new(caps(None, None, Some(2))));
        let a = l.try_slot().unwrap();
        let _b = l.try_slot().unwrap();
        assert!(l.try_slot().is_none());
        drop(a);
        assert!(l.try_slot().is_some());
    }

    #[test]
    fn no_caps_admit_everything() {
        let limits = Limits {
            rule: Arc::new(Limiter::new(Caps::default())),
            owner: Arc::new(Limiter::new(Caps::default())),
        };
        let held: Vec<_> = (0..1000).map(|_| limits.admit().unwrap()).collect();
        assert_eq!(held.len(), 1000);
        assert!(!limits.bandwidth_capped());
        assert_eq!(limits.charge(1 << 30), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn the_connection_rate_refills_over_time() {
        let l = Limiter::new(caps(None, Some(2), None));
        assert!(l.try_new_connection());
        assert!(l.try_new_connection());
        assert!(!l.try_new_connection());
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(l.try_new_connection());
        assert!(!l.try_new_connection());
    }

    #[tokio::test(start_paused = true)]
    async fn bandwidth_debt_is_waited_off() {
        let l = Limiter::new(caps(Some(100_000), None, None));
        assert!(l.bandwidth_capped());
        // The burst is 16 KiB (5 KB would be under the minimum); 116,384 bytes leave 100,000
        // of debt: one second at 100 kB/s.
        let wait = l.charge(16 * 1024 + 100_000);
        assert!((wait.as_secs_f64() - 1.0).abs() < 0.01, "{wait:?}");
        tokio::time::advance(Duration::from_millis(500)).await;
        let wait = l.debt_wait();
        assert!((wait.as_secs_f64() - 0.5).abs() < 0.01, "{wait:?}");
        assert!(!l.police(1));
    }

    #[test]
    fn caps_are_retuned_in_place() {
        let l = Arc::new(Limiter::new(caps(None, None, Some(1))));
        let _a = l.try_slot().unwrap();
        assert!(l.try_slot().is_none());
        l.set_caps(caps(Some(1000), None, Some(2)));
        assert!(l.try_slot().is_some());
        assert!(l.bandwidth_capped());
        assert_eq!(l.caps().bandwidth_bps, Some(1000));
        l.set_caps(Caps::default());
        assert!(!l.bandwidth_capped());
    }
}
