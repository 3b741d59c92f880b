//! Reconnection delays: exponential backoff with full jitter.
//!
//! When a server restarts, every client of the fleet loses its session at the same moment. If
//! they all retried on the same schedule they would arrive together, again and again; full
//! jitter (a delay drawn uniformly between zero and the current ceiling) spreads them out. The
//! ceiling starts at 0.5 s, doubles per failure up to 30 s, and drops back to the start after a
//! session that lasted long enough to count as healthy.

use std::time::Duration;

/// The first ceiling.
pub const INITIAL: Duration = Duration::from_millis(500);
/// The largest ceiling.
pub const MAX: Duration = Duration::from_secs(30);
/// A session that lasted longer than this resets the backoff.
pub const HEALTHY_SESSION: Duration = Duration::from_secs(60);

/// Exponential backoff with full jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    ceiling: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { ceiling: INITIAL }
    }
}

/// A uniformly random fraction in [0, 1).
fn random_fraction() -> f64 {
    // The 53 high bits of a random u64 fill an f64's mantissa exactly. Without an entropy source
    // (it never fails on Linux) fall back to the clock, which still de-synchronizes the fleet.
    let bits = getrandom::u64().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| {
                u64::from(d.subsec_nanos()).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            })
    });
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

impl Backoff {
    /// The current ceiling (the longest the next delay can be).
    pub fn ceiling(&self) -> Duration {
        self.ceiling
    }

    /// The next delay, drawn with `fraction` in [0, 1), and doubles the ceiling (up to [`MAX`]).
    pub fn next_with(&mut self, fraction: f64) -> Duration {
        let delay = self.ceiling.mul_f64(fraction.clamp(0.0, 1.0));
        self.ceiling = (self.ceiling * 2).min(MAX);
        delay
    }

    /// The next delay, randomly drawn.
    pub fn next_delay(&mut self) -> Duration {
        self.next_with(random_fraction())
    }

    /// Back to the first ceiling.
    pub fn reset(&mut self) {
        self.ceiling = INITIAL;
    }

    /// Resets after a session that lasted longer than [`HEALTHY_SESSION`].
    pub fn session_ended(&mut self, lasted: Duration) {
        if lasted > HEALTHY_SESSION {
            self.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap_and_reset_after_healthy_sessions() {
        let mut b = Backoff::default();
        let ceilings: Vec<u64> = (0..9)
            .map(|_| {
                let c = b.ceiling().as_millis() as u64;
                assert_eq!(
                    b.next_with(0.999_999),
                    Duration::from_millis(c).mul_f64(0.999_999)
                );
                c
            })
            .collect();
        assert_eq!(
            ceilings,
            [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]
        );
        b.session_ended(Duration::from_secs(10));
        assert_eq!(b.ceiling(), MAX);
        b.session_ended(Duration::from_secs(61));
        assert_eq!(b.ceiling(), INITIAL);
        assert_eq!(b.next_with(0.0), Duration::ZERO);
    }

    #[test]
    fn random_delays_stay_under_the_ceiling() {
        let mut b = Backoff::default();
        for _ in 0..100 {
            let ceiling = b.ceiling();
            assert!(b.next_delay() <= ceiling);
        }
        let f = random_fraction();
        assert!((0.0..1.0).contains(&f));
    }
}
