//! SQLite's own timestamp text, and conversions at the edges.
//!
//! Documented schemas default their time columns to `datetime('now')` or `CURRENT_TIMESTAMP`, i.e.
//! `YYYY-MM-DD HH:MM:SS` in UTC, so tools write exactly that form too (one encoding per table,
//! comparable as text and readable by `julianday()`). JSON output uses RFC 3339
//! (`2024-01-20T10:30:00Z`); [`parse`] accepts RFC 3339, the SQLite form, and Unix seconds or
//! milliseconds, so imports can normalise to the stored form.

use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

const SQLITE: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
const RFC3339_UTC: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// Now, in the stored form.
pub fn now() -> String {
    to_stored(OffsetDateTime::now_utc())
}

/// A moment in the stored form (`2024-01-20 10:30:00`, UTC).
pub fn to_stored(at: OffsetDateTime) -> String {
    at.to_offset(UtcOffset::UTC)
        .format(SQLITE)
        .unwrap_or_default()
}

/// Parses any accepted form: stored, RFC 3339 (any offset, fractional seconds), Unix seconds or
/// milliseconds as digits.
pub fn parse(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    if let Ok(at) = PrimitiveDateTime::parse(text, SQLITE) {
        return Some(at.assume_utc());
    }
    if let Ok(at) = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Some(at);
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = text.parse().ok()?;
        // Ten digits or fewer is seconds (until 2286); more is milliseconds.
        let at = if text.len() <= 10 {
            OffsetDateTime::from_unix_timestamp(n).ok()?
        } else {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(n) * 1_000_000).ok()?
        };
        return Some(at);
    }
    None
}

/// Normalises any accepted form to the stored form.
pub fn normalise(text: &str) -> Option<String> {
    parse(text).map(to_stored)
}

/// A stored timestamp as RFC 3339 for JSON (`2024-01-20T10:30:00Z`); unparseable text passes through.
pub fn to_rfc3339(stored: &str) -> String {
    match parse(stored) {
        Some(at) => at
            .to_offset(UtcOffset::UTC)
            .format(RFC3339_UTC)
            .unwrap_or_else(|_| stored.to_string()),
        None => stored.to_string(),
    }
}

/// Serde helpers writing stored timestamps as RFC 3339.
pub mod rfc3339 {
    use serde::Serializer;

    /// Serialises a stored timestamp as RFC 3339.
    pub fn serialize<S: Serializer>(stored: &str, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::to_rfc3339(stored))
    }

    /// Serialises an optional stored timestamp as RFC 3339 or null.
    pub mod option {
        use serde::Serializer;

        /// See the module.
        pub fn serialize<S: Serializer>(stored: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
            match stored {
                Some(t) => s.serialize_str(&super::super::to_rfc3339(t)),
                None => s.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_accepted_form_normalises_to_the_sqlite_form() {
        let want = Some("2024-01-20 10:30:00".to_string());
        assert_eq!(normalise("2024-01-20 10:30:00"), want);
        assert_eq!(normalise("2024-01-20T10:30:00Z"), want);
        assert_eq!(normalise("2024-01-20T10:30:00.123Z"), want);
        assert_eq!(normalise("2024-01-20T12:30:00+02:00"), want);
        assert_eq!(normalise("1705746600000"), want);
        assert_eq!(normalise("1705746600"), want);
        assert_eq!(normalise("yesterday"), None);
    }

    #[test]
    fn json_shows_rfc3339() {
        assert_eq!(to_rfc3339("2024-01-20 10:30:00"), "2024-01-20T10:30:00Z");
    }
}
