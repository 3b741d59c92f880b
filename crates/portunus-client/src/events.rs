//! One-line `event=… key=value` log records on stderr.
//!
//! Edge nodes run unattended under systemd or in containers; their logs are read by scripts
//! and log shippers as often as by people. Every notable moment (connected, rules applied,
//! disconnected, reconnecting) is therefore one line of `key=value` pairs starting with
//! `event=`, the same shape `portunus-server` logs, with values quoted when they contain spaces.

use std::fmt::Write as _;

/// Formats one value: bare when it is a simple token, otherwise in double quotes with inner
/// quotes and backslashes escaped and line breaks flattened.
pub fn value(text: &str) -> String {
    let simple = !text.is_empty()
        && text
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '=');
    if simple {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The line for `event` with `fields`.
pub fn line(event: &str, fields: &[(&str, &dyn std::fmt::Display)]) -> String {
    let mut out = format!("event={event}");
    for (key, val) in fields {
        let _ = write!(out, " {key}={}", value(&val.to_string()));
    }
    out
}

/// Writes the line for `event` with `fields` to stderr.
pub fn emit(event: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    eprintln!("{}", line(event, fields));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_only_when_needed() {
        assert_eq!(
            line("rules_applied", &[("generation", &3), ("active", &2)]),
            "event=rules_applied generation=3 active=2"
        );
        assert_eq!(
            line("disconnected", &[("reason", &"server closed \"it\"\nnow")]),
            r#"event=disconnected reason="server closed \"it\" now""#
        );
        assert_eq!(value(""), "\"\"");
        assert_eq!(value("a=b"), "\"a=b\"");
    }
}
