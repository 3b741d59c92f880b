//! Enrollment URIs: `portunus://host:port/enroll?pin=sha256:<64 hex>&code=pen_…`.
//!
//! The operator copies one of these from `POST /v1/clients` to the edge node; it carries
//! everything the client needs to trust the server (the certificate pin) and to prove it may join
//! (the one-time code). A pasted URI is often mangled (a lost character, a shell eating the `&`),
//! so parsing names exactly which part is wrong instead of failing later with a TLS or
//! authentication error that hides the cause.

use std::fmt;
use std::net::Ipv6Addr;

use portunus_core::pin::normalize_pin;

/// The scheme of enrollment URIs.
pub const SCHEME: &str = "portunus";
/// The prefix of enrollment codes.
pub const CODE_PREFIX: &str = "pen_";

/// Why an enrollment URI cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid enrollment URI: {0} (expected portunus://host:port/enroll?pin=sha256:…&code=pen_…)"
)]
pub struct UriError(String);

impl UriError {
    /// What is wrong, without the general hint.
    pub fn reason(&self) -> &str {
        &self.0
    }
}

fn bad(what: impl Into<String>) -> UriError {
    UriError(what.into())
}

/// A parsed, checked enrollment URI.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrollUri {
    /// `host:port` to dial (an IPv6 host in brackets).
    pub server: String,
    /// The host alone (no brackets).
    pub host: String,
    /// The port.
    pub port: u16,
    /// The certificate pin, normalized (`sha256:` and lowercase hex).
    pub pin: String,
    /// The one-time code.
    pub code: String,
}

impl fmt::Debug for EnrollUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The code is a secret until redeemed: keep it out of logs and panics.
        f.debug_struct("EnrollUri")
            .field("server", &self.server)
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

/// Decodes `%XX` escapes (and nothing else: a `+` stays a `+`).
fn percent_decode(text: &str) -> Result<String, UriError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad(format!("'{text}' has a broken %-escape")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad(format!("'{text}' is not UTF-8 once decoded")))
}

/// Splits `host:port` (IPv6 hosts in brackets) and checks both.
pub(crate) fn parse_authority(authority: &str) -> Result<(String, u16), UriError> {
    if authority.is_empty() {
        return Err(bad("the server address is missing"));
    }
    if authority.contains('@') {
        return Err(bad("user information (user@) is not allowed"));
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| bad(format!("'{authority}' opens '[' without closing it")))?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(bad(format!("'{host}' in brackets is not an IPv6 address")));
        }
        let port = after.strip_prefix(':').ok_or_else(|| {
            bad(format!(
                "'{authority}' has no port (write [{host}]:7871, for example)"
            ))
        })?;
        (host.to_string(), port)
    } else {
        let (host, port) = authority.rsplit_once(':').ok_or_else(|| {
            bad(format!(
                "'{authority}' has no port (write {authority}:7871, for example)"
            ))
        })?;
        if host.contains(':') {
            return Err(bad(format!(
                "'{authority}': write an IPv6 host in brackets, e.g. [::1]:7871"
            )));
        }
        let ok = !host.is_empty()
            && host.len() <= 253
            && !host.starts_with('-')
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !ok {
            return Err(bad(format!("'{host}' is not a host name or IP address")));
        }
        (host.to_string(), port)
    };
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| bad(format!("'{port}' is not a port (1-65535)")))?;
    Ok((host, port))
}

impl EnrollUri {
    /// Parses and checks an enrollment URI. Surrounding whitespace (and quotes a terminal may
    /// have kept) is ignored; unknown query parameters are ignored.
    pub fn parse(text: &str) -> Result<EnrollUri, UriError> {
        let text = text.trim().trim_matches(|c| c == '"' || c == '\'');
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| bad("it does not start with portunus://"))?;
        if !scheme.eq_ignore_ascii_case(SCHEME) {
            return Err(bad(format!("the scheme is '{scheme}', not portunus")));
        }
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let (before_query, query) = rest
            .split_once('?')
            .ok_or_else(|| bad("the ?pin=…&code=… part is missing"))?;
        let (authority, path) = match before_query.find('/') {
            Some(i) => before_query.split_at(i),
            None => (before_query, ""),
        };
        if path.trim_end_matches('/') != "/enroll" {
            return Err(bad(format!(
                "the path is '{path}', not /enroll (is this an enrollment URI?)"
            )));
        }
        let (host, port) = parse_authority(authority)?;
        let mut pin = None;
        let mut code = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match key {
                "pin" => &mut pin,
                "code" => &mut code,
                _ => continue,
            };
            if slot.is_some() {
                return Err(bad(format!("'{key}' is given twice")));
            }
            *slot = Some(percent_decode(value)?);
        }
        let pin = pin.ok_or_else(|| bad("the pin=sha256:… parameter is missing"))?;
        let pin = normalize_pin(&pin).map_err(|_| {
            bad(format!(
                "the pin '{pin}' is not sha256: followed by 64 hex digits (was the URI cut short?)"
            ))
        })?;
        let code = code.ok_or_else(|| {
            bad("the code=pen_… parameter is missing (did the shell eat the '&'? quote the URI)")
        })?;
        let body = code.strip_prefix(CODE_PREFIX).unwrap_or("");
        if body.is_empty()
            || !body
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        {
            return Err(bad(
                "the code is not an enrollment code (pen_ followed by letters, digits, - or _)",
            ));
        }
        let server = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(EnrollUri {
            server,
            host,
            port,
            pin,
            code,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn uri(authority: &str) -> String {
        format!("portunus://{authority}/enroll?pin=sha256:{HEX}&code=pen_abc-_9")
    }

    #[test]
    fn a_good_uri_parses() {
        let u = EnrollUri::parse(&uri("relay.example.com:7871")).unwrap();
        assert_eq!(u.server, "relay.example.com:7871");
        assert_eq!(u.host, "relay.example.com");
        assert_eq!(u.port, 7871);
        assert_eq!(u.pin, format!("sha256:{HEX}"));
        assert_eq!(u.code, "pen_abc-_9");
        assert!(!format!("{u:?}").contains("pen_"));
    }

    #[test]
    fn ipv6_hosts_are_in_brackets() {
        let u = EnrollUri::parse(&uri("[::1]:7871")).unwrap();
        assert_eq!(u.server, "[::1]:7871");
        assert_eq!(u.host, "::1");
        assert!(EnrollUri::parse(&uri("::1:7871")).is_err());
        assert!(EnrollUri::parse(&uri("[::1]")).is_err());
        assert!(EnrollUri::parse(&uri("[nope]:1")).is_err());
        assert!(EnrollUri::parse(&uri("[::1:7871")).is_err());
    }

    #[test]
    fn whitespace_quotes_case_and_escapes_are_tolerated() {
        let text = format!(
            "  'PORTUNUS://127.0.0.1:9/enroll/?code=pen%5Fx&pin=SHA256:{}&extra=1'\n",
            HEX.to_uppercase()
        );
        let u = EnrollUri::parse(&text).unwrap();
        assert_eq!(u.code, "pen_x");
        assert_eq!(u.pin, format!("sha256:{HEX}"));
    }

    #[test]
    fn every_broken_part_is_named() {
        let cases = [
            ("https://h:1/enroll?pin=x&code=pen_a", "scheme"),
            ("h:1/enroll", "portunus://"),
            ("portunus://h:1/enroll", "?pin"),
            ("portunus://h:1/join?pin=x&code=pen_a", "/enroll"),
            ("portunus://h/enroll?pin=x&code=pen_a", "no port"),
            ("portunus://h:0/enroll?pin=x&code=pen_a", "not a port"),
            ("portunus://h:70000/enroll?pin=x&code=pen_a", "not a port"),
            ("portunus://:1/enroll?pin=x&code=pen_a", "host"),
            ("portunus://u@h:1/enroll?pin=x&code=pen_a", "user"),
            ("portunus://h%20x:1/enroll?pin=x&code=pen_a", "host"),
            ("portunus://h:1/enroll?code=pen_a", "pin=sha256"),
            (
                "portunus://h:1/enroll?pin=sha256:abc&code=pen_a",
                "cut short",
            ),
        ];
        for (text, needle) in cases {
            let err = EnrollUri::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let no_code = format!("portunus://h:1/enroll?pin=sha256:{HEX}");
        assert!(
            EnrollUri::parse(&no_code)
                .unwrap_err()
                .to_string()
                .contains("code=pen_")
        );
        for code in ["pen_", "pcl_abc", "pen_a b", "pen_a%2"] {
            let text = format!("portunus://h:1/enroll?pin=sha256:{HEX}&code={code}");
            assert!(EnrollUri::parse(&text).is_err(), "{code}");
        }
        let twice = format!("portunus://h:1/enroll?pin=sha256:{HEX}&code=pen_a&code=pen_b");
        assert!(
            EnrollUri::parse(&twice)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }
}
