//! Identifiers, secrets and times, made one way everywhere.
//!
//! Ids are server-generated, never reused and never change (client identity *is* the id; names
//! are cosmetic). Secrets (API and client tokens, session ids, setup tokens, enrollment codes) are
//! 32 random bytes shown to their holder once; the database keeps only their blake3 hash, and a
//! lookup is one probe of a UNIQUE index on that hash. Times are Unix milliseconds (UTC).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS generator failing is not something a server can carry on from.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    bytes
}

/// A new id such as `usr_3f9a1c0d5e7b2a48`: a kind prefix and 64 random bits in hex.
pub fn new_id(prefix: &str) -> String {
    let bytes: [u8; 8] = random_bytes();
    let mut id = String::with_capacity(prefix.len() + 17);
    id.push_str(prefix);
    id.push('_');
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// A new secret such as `ptk_<43 base64url characters>` (256 random bits).
pub fn new_secret(prefix: &str) -> String {
    let bytes: [u8; 32] = random_bytes();
    format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The stored form of a secret: its blake3 hash.
pub fn hash_secret(secret: &str) -> Vec<u8> {
    blake3::hash(secret.trim().as_bytes()).as_bytes().to_vec()
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Unix milliseconds as RFC 3339 UTC with millisecond precision, e.g. `2026-05-01T12:00:00.250Z`.
pub fn rfc3339(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(at) => {
            let (date, t) = (at.date(), at.time());
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                date.year(),
                u8::from(date.month()),
                date.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.millisecond()
            )
        }
        Err(_) => ms.to_string(),
    }
}

/// Serde helpers writing Unix milliseconds as RFC 3339 strings.
pub mod serde_ms {
    use serde::Serializer;

    /// Serialises a time.
    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*ms))
    }

    /// Serialises an optional time (`null` when absent).
    pub mod option {
        use serde::Serializer;

        /// Serialises an optional time.
        pub fn serialize<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
            match ms {
                Some(ms) => s.serialize_str(&super::super::rfc3339(*ms)),
                None => s.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_secrets_have_their_prefix_and_are_unique() {
        let (a, b) = (new_id("usr"), new_id("usr"));
        assert!(a.starts_with("usr_") && a.len() == 20, "{a}");
        assert_ne!(a, b);
        let token = new_secret("ptk");
        assert!(token.starts_with("ptk_") && token.len() == 47, "{token}");
        assert_eq!(hash_secret(&token).len(), 32);
        assert_eq!(hash_secret(&token), hash_secret(&format!(" {token}\n")));
    }

    #[test]
    fn times_print_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_777_593_600_250), "2026-05-01T00:00:00.250Z");
    }
}
