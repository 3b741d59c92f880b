//! Traffic accounting between the forwarder and the server: bytes per owner and minute.
//!
//! The forwarder counts bytes per rule owner; every few seconds the client moves those counts
//! into this book under the current minute, and the control session sends what the book holds
//! as `usage` samples. The server bills them against monthly quotas, so bytes must not get lost
//! when the connection drops: a batch stays "in flight" until the server has answered a ping
//! sent right after it (the server handles frames in order, so that pong means the usage was
//! stored), and goes back into the book if the session ends first. While the server is away the
//! book keeps growing, bounded by folding new minutes into the newest entry once it is large.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use portunus_core::wire::UsageSample;

/// Entries kept before new minutes are folded into existing ones (about 10 owners for a week).
pub const MAX_ENTRIES: usize = 100_000;
/// Samples per `usage` frame (well under the 1 MiB frame limit).
pub const BATCH: usize = 2_000;

/// The start of the minute containing `ms` (Unix milliseconds).
pub fn minute_of(ms: i64) -> i64 {
    ms - ms.rem_euclid(60_000)
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Unsent usage per (owner, minute).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UsageBook {
    entries: BTreeMap<(String, i64), (u64, u64)>,
}

impl UsageBook {
    /// Adds bytes of `owner` during the minute containing `at_ms`; zero traffic adds nothing.
    pub fn add(&mut self, owner: &str, at_ms: i64, bytes_in: u64, bytes_out: u64) {
        if bytes_in == 0 && bytes_out == 0 {
            return;
        }
        let mut key = (owner.to_string(), minute_of(at_ms));
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(&key) {
            // Full: fold into this owner's newest minute rather than dropping bytes.
            let newest = self
                .entries
                .range((owner.to_string(), i64::MIN)..=(owner.to_string(), i64::MAX))
                .next_back()
                .map(|(k, _)| k.clone());
            if let Some(newest) = newest {
                key = newest;
            }
        }
        let entry = self.entries.entry(key).or_insert((0, 0));
        entry.0 = entry.0.saturating_add(bytes_in);
        entry.1 = entry.1.saturating_add(bytes_out);
    }

    /// Puts samples back (a batch the server may not have stored).
    pub fn restore(&mut self, samples: Vec<UsageSample>) {
        for s in samples {
            self.add(&s.owner_id, s.minute, s.bytes_in, s.bytes_out);
        }
    }

    /// Removes and returns up to `max` samples, oldest minutes first.
    pub fn take_batch(&mut self, max: usize) -> Vec<UsageSample> {
        let mut keys: Vec<(String, i64)> = self.entries.keys().cloned().collect();
        keys.sort_by_key(|(owner, minute)| (*minute, owner.clone()));
        keys.truncate(max);
        keys.into_iter()
            .filter_map(|key| {
                let (bytes_in, bytes_out) = self.entries.remove(&key)?;
                Some(UsageSample {
                    owner_id: key.0,
                    minute: key.1,
                    bytes_in,
                    bytes_out,
                })
            })
            .collect()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Total bytes waiting (in, out).
    pub fn totals(&self) -> (u64, u64) {
        self.entries.values().fold((0, 0), |(a, b), (i, o)| {
            (a.saturating_add(*i), b.saturating_add(*o))
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const M: i64 = 1_777_593_600_000;

    #[test]
    fn bytes_are_summed_per_owner_and_minute() {
        let mut book = UsageBook::default();
        book.add("a", M + 5, 10, 1);
        book.add("a", M + 59_999, 5, 1);
        book.add("a", M + 60_000, 1, 0);
        book.add("b", M, 0, 0);
        book.add("b", M + 1, 7, 7);
        assert_eq!(book.len(), 3);
        let batch = book.take_batch(10);
        assert!(book.is_empty());
        let got: Vec<_> = batch
            .iter()
            .map(|s| (s.owner_id.as_str(), s.minute, s.bytes_in, s.bytes_out))
            .collect();
        assert_eq!(
            got,
            [("a", M, 15, 2), ("b", M, 7, 7), ("a", M + 60_000, 1, 0)]
        );
        assert_eq!(minute_of(-1), -60_000);
    }

    #[test]
    fn batches_are_bounded_and_restored_batches_merge_back() {
        let mut book = UsageBook::default();
        for i in 0..5 {
            book.add("a", M + i * 60_000, 1, 1);
        }
        let first = book.take_batch(2);
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].minute, M);
        book.add("a", M, 4, 0);
        book.restore(first);
        assert_eq!(book.len(), 5);
        assert_eq!(book.totals(), (9, 5));
    }

    #[test]
    fn a_full_book_folds_instead_of_dropping() {
        let mut book = UsageBook::default();
        for i in 0..MAX_ENTRIES as i64 {
            book.add("a", M + i * 60_000, 1, 0);
        }
        book.add("a", M - 60_000, 5, 0);
        assert_eq!(book.len(), MAX_ENTRIES);
        assert_eq!(book.totals().0, MAX_ENTRIES as u64 + 5);
        // An owner with no entry still gets one.
        book.add("b", M, 1, 0);
        assert_eq!(book.len(), MAX_ENTRIES + 1);
    }
}
