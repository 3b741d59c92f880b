//! Export and import documents: our versioned, checksummed JSON, and the original Port Keeper's two
//! export formats.
//!
//! Our export keeps every column of every reservation (timestamps and flags included) so that an
//! import into an empty database gives identical rows. Its `checksum` is SHA-256 over the canonical
//! JSON of the `ports` array (keys sorted, no whitespace), so reformatting the file keeps it valid
//! and editing a value does not. Imports parse and validate the whole document into typed
//! [`Reservation`]s before anything is compared or written; the first bad entry stops the import
//! with its index and what is wrong.
//!
//! The original wrote `{"version":"1.0.0","exportDate":…,"ports":[{number, projectName,
//! description, tags, reservedAt}]}` from its CLI and `{"version":"1.0.0","exportedAt":…,"ports":
//! [{number, projectName, description, tags, autoRelease}]}` from its GUI; both are read, with the
//! fields they lack taken as defaults.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::port::Port;
use crate::ports::{Reservation, Status, parse_metadata, parse_tags};
use crate::timestamp;

/// The `format` marker of our exports.
pub const FORMAT: &str = "portkeeper-export";
/// The version of our export format. Imports accept any 2.x.
pub const VERSION: &str = "2.0.0";

/// Which kind of document an import read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// A `portman export` of ours.
    Portman,
    /// The original Port Keeper's CLI export (`exportDate`).
    OriginalCli,
    /// The original Port Keeper's GUI export (`exportedAt`).
    OriginalGui,
    /// The original Port Keeper's database (`~/.portmanager/ports.db`).
    OriginalDatabase,
    /// A Port Keeper database in the documented schema (ours).
    PortmanDatabase,
}

/// The SHA-256 checksum of a `ports` array, as written in exports: `sha256:<hex>`.
pub fn checksum(ports: &Value) -> String {
    // serde_json's Map is ordered by key, so `to_string` of a Value is canonical.
    let canonical = ports.to_string();
    let digest = Sha256::digest(canonical.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    format!("sha256:{hex}")
}

/// Builds our export document for `rows`.
pub fn export_document(rows: &[Reservation], exported_by: &str) -> Result<Value> {
    let ports = serde_json::to_value(rows)
        .map_err(|e| Error::Other(format!("could not serialise reservations: {e}")))?;
    let sum = checksum(&ports);
    let mut doc = Map::new();
    doc.insert("format".into(), FORMAT.into());
    doc.insert("version".into(), VERSION.into());
    doc.insert(
        "exportedAt".into(),
        timestamp::to_rfc3339(&timestamp::now()).into(),
    );
    doc.insert("exportedBy".into(), exported_by.into());
    doc.insert(
        "tool".into(),
        format!("portman {}", env!("CARGO_PKG_VERSION")).into(),
    );
    doc.insert("count".into(), rows.len().into());
    doc.insert("checksum".into(), sum.into());
    doc.insert("ports".into(), ports);
    Ok(Value::Object(doc))
}

/// A parsed, validated import.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// What kind of document it was.
    pub source: Source,
    /// Its version string, if it had one.
    pub version: Option<String>,
    /// The checksum it carried (ours only).
    pub checksum: Option<String>,
    /// The reservations, by port.
    pub rows: Vec<Reservation>,
}

/// Parses and validates a JSON document of any supported format.
pub fn parse_json(text: &str) -> Result<Parsed> {
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        Error::InvalidData(format!(
            "not valid JSON ({e}); expected a `portman export` file or an export of the original Port Keeper"
        ))
    })?;
    let Value::Object(doc) = doc else {
        return Err(Error::InvalidData(
            "expected a JSON object with a \"ports\" array (a `portman export` file); got a bare value"
                .into(),
        ));
    };
    let Some(Value::Array(entries)) = doc.get("ports") else {
        return Err(Error::InvalidData(
            "no \"ports\" array in the file; is this a `portman export` file?".into(),
        ));
    };
    let version = doc
        .get("version")
        .and_then(Value::as_str)
        .map(str::to_string);
    let source = if doc.get("format").and_then(Value::as_str) == Some(FORMAT) {
        let v = version.as_deref().unwrap_or("");
        if v.split('.').next() != Some("2") {
            return Err(Error::InvalidData(format!(
                "export format version '{v}' is not supported by this portman (it reads 2.x); upgrade portman"
            )));
        }
        Source::Portman
    } else if doc.contains_key("format") {
        return Err(Error::InvalidData(format!(
            "unknown export format {}; expected \"{FORMAT}\"",
            doc.get("format").map(Value::to_string).unwrap_or_default()
        )));
    } else if doc.contains_key("exportedAt") {
        Source::OriginalGui
    } else {
        Source::OriginalCli
    };

    let carried = doc
        .get("checksum")
        .and_then(Value::as_str)
        .map(str::to_string);
    if source == Source::Portman {
        let Some(carried) = &carried else {
            return Err(Error::InvalidData(
                "the export has no \"checksum\"; it was not written by portman, or was cut short"
                    .into(),
            ));
        };
        let actual = checksum(&Value::Array(entries.clone()));
        if &actual != carried {
            return Err(Error::InvalidData(format!(
                "checksum mismatch: the file says {carried} but its ports hash to {actual}; the file was edited or damaged. Nothing was imported."
            )));
        }
    }

    let mut rows = Vec::with_capacity(entries.len());
    let mut seen = BTreeSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let row = entry_to_reservation(entry, source)
            .map_err(|e| Error::InvalidData(format!("ports[{i}]: {e}. Nothing was imported.")))?;
        if !seen.insert(row.number) {
            return Err(Error::InvalidData(format!(
                "ports[{i}]: port {} appears twice. Nothing was imported.",
                row.number
            )));
        }
        rows.push(row);
    }
    rows.sort_by_key(|r| r.number);
    Ok(Parsed {
        source,
        version,
        checksum: carried,
        rows,
    })
}

fn entry_to_reservation(entry: &Value, source: Source) -> std::result::Result<Reservation, String> {
    let Value::Object(e) = entry else {
        return Err("expected an object".into());
    };
    let number = match e.get("number").or_else(|| e.get("port")) {
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(Port::new)
            .ok_or_else(|| format!("\"number\" {n} is not a port (1-65535)"))?,
        Some(Value::String(s)) => s.parse::<Port>()?,
        _ => return Err("missing \"number\" (the port)".into()),
    };
    let text = |key: &str| -> std::result::Result<Option<String>, String> {
        match e.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("\"{key}\" must be a string, not {other}")),
        }
    };
    let project_name = text("projectName")?
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| format!("port {number}: missing or empty \"projectName\""))?;
    let status = match text("status")? {
        Some(s) => s
            .parse::<Status>()
            .map_err(|m| format!("port {number}: {m}"))?,
        None => Status::Reserved,
    };
    let time = |key: &str| -> std::result::Result<Option<String>, String> {
        match e.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => timestamp::normalise(s)
                .map(Some)
                .ok_or_else(|| format!("port {number}: \"{key}\" is not a timestamp: {s:?}")),
            Some(Value::Number(n)) => timestamp::normalise(&n.to_string())
                .map(Some)
                .ok_or_else(|| format!("port {number}: \"{key}\" is not a timestamp: {n}")),
            Some(other) => Err(format!(
                "port {number}: \"{key}\" is not a timestamp: {other}"
            )),
        }
    };
    let now = timestamp::now();
    let reserved_at = time("reservedAt")?.unwrap_or_else(|| now.clone());
    let updated_at = time("updatedAt")?.unwrap_or_else(|| reserved_at.clone());
    let tags = match e.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|t| match t {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!("port {number}: tags must be strings, not {other}")),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?,
        Some(Value::String(s)) => parse_tags(Some(s)),
        Some(other) => Err(format!(
            "port {number}: \"tags\" must be an array, not {other}"
        ))?,
    };
    let metadata = match e.get("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(Value::String(s)) => parse_metadata(Some(s)),
        Some(other) => Err(format!(
            "port {number}: \"metadata\" must be an object, not {other}"
        ))?,
    };
    let auto_release = match e.get("autoRelease") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
            n.as_i64() == Some(1)
        }
        Some(other) => Err(format!(
            "port {number}: \"autoRelease\" must be true or false, not {other}"
        ))?,
    };
    let pid = match e.get("pid") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .ok_or_else(|| format!("port {number}: \"pid\" {n} is not a process id"))?,
        ),
        Some(other) => Err(format!(
            "port {number}: \"pid\" must be a number, not {other}"
        ))?,
    };
    let _ = source;
    Ok(Reservation {
        number,
        project_name,
        description: text("description")?,
        status,
        pid,
        process_name: text("processName")?,
        reserved_at,
        last_seen_at: time("lastSeenAt")?,
        updated_at,
        auto_release,
        tags,
        metadata,
    })
}

/// How an import would change the reservations.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Diff {
    /// Ports the file reserves that nobody holds now.
    pub added: Vec<Port>,
    /// Ports held by the same project whose fields differ, with the fields that change.
    pub changed: BTreeMap<Port, Vec<&'static str>>,
    /// Ports identical in the file and the database.
    pub unchanged: Vec<Port>,
    /// Ports held by another project now (a conflict under --merge; taken over under --replace).
    pub conflicts: BTreeMap<Port, Conflict>,
    /// Ports held now but not in the file (released under --replace).
    pub removed: Vec<Port>,
}

/// A port the file gives to a different project than the database.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conflict {
    /// The project holding it now.
    pub current_project: String,
    /// The project the file gives it to.
    pub file_project: String,
}

/// Compares a parsed file with the currently held rows.
pub fn diff(file: &[Reservation], current: &[Reservation], replace: bool) -> Diff {
    let held: BTreeMap<Port, &Reservation> = current
        .iter()
        .filter(|r| r.status.is_held())
        .map(|r| (r.number, r))
        .collect();
    let mut d = Diff::default();
    for row in file {
        match held.get(&row.number) {
            None => d.added.push(row.number),
            Some(now) if now.project_name != row.project_name => {
                d.conflicts.insert(
                    row.number,
                    Conflict {
                        current_project: now.project_name.clone(),
                        file_project: row.project_name.clone(),
                    },
                );
            }
            Some(now) => {
                let fields = changed_fields(now, row);
                if fields.is_empty() {
                    d.unchanged.push(row.number);
                } else {
                    d.changed.insert(row.number, fields);
                }
            }
        }
    }
    if replace {
        let in_file: BTreeSet<Port> = file.iter().map(|r| r.number).collect();
        d.removed = held
            .keys()
            .filter(|p| !in_file.contains(p))
            .copied()
            .collect();
    }
    d
}

fn changed_fields(a: &Reservation, b: &Reservation) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if a.description != b.description {
        fields.push("description");
    }
    if a.status != b.status {
        fields.push("status");
    }
    if a.reserved_at != b.reserved_at {
        fields.push("reservedAt");
    }
    if a.auto_release != b.auto_release {
        fields.push("autoRelease");
    }
    if a.tags != b.tags {
        fields.push("tags");
    }
    if a.metadata != b.metadata {
        fields.push("metadata");
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(port: u16, project: &str) -> Reservation {
        Reservation {
            number: Port::new(i64::from(port)).unwrap(),
            project_name: project.into(),
            description: Some("dev server".into()),
            status: Status::Reserved,
            pid: None,
            process_name: None,
            reserved_at: "2024-01-20 10:30:00".into(),
            last_seen_at: None,
            updated_at: "2024-01-21 08:00:00".into(),
            auto_release: true,
            tags: vec!["web".into()],
            metadata: Map::from_iter([("team".to_string(), Value::from("alpha"))]),
        }
    }

    #[test]
    fn an_export_parses_back_to_identical_rows() {
        let rows = vec![row(3000, "web"), row(8080, "api")];
        let doc = export_document(&rows, "me").unwrap();
        let parsed = parse_json(&serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        assert_eq!(parsed.source, Source::Portman);
        assert_eq!(parsed.rows, rows);
    }

    #[test]
    fn an_edited_export_fails_its_checksum() {
        let doc = export_document(&[row(3000, "web")], "me").unwrap();
        let text = doc.to_string().replace("\"web\"", "\"evil\"");
        let err = parse_json(&text).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        assert_eq!(err.exit_code(), 65);
    }

    #[test]
    fn both_original_formats_are_read() {
        let cli = r#"{"version":"1.0.0","exportDate":"2025-07-26T13:46:07.211Z","ports":[{"number":5001,"projectName":"svc","description":null,"tags":["a"],"reservedAt":"2025-07-26T13:46:06.757Z"}]}"#;
        let p = parse_json(cli).unwrap();
        assert_eq!(p.source, Source::OriginalCli);
        assert_eq!(p.rows[0].reserved_at, "2025-07-26 13:46:06");
        assert_eq!(p.rows[0].tags, ["a"]);
        let gui = r#"{"version":"1.0.0","exportedAt":"2025-07-26T13:46:07.211Z","ports":[{"number":5002,"projectName":"gui","description":"x","tags":[],"autoRelease":true}]}"#;
        let p = parse_json(gui).unwrap();
        assert_eq!(p.source, Source::OriginalGui);
        assert!(p.rows[0].auto_release);
    }

    #[test]
    fn bad_entries_are_named_by_index() {
        let bad =
            r#"{"version":"1.0.0","exportDate":"x","ports":[{"number":70000,"projectName":"a"}]}"#;
        assert!(
            parse_json(bad)
                .unwrap_err()
                .to_string()
                .contains("ports[0]")
        );
        let dup = r#"{"version":"1.0.0","exportDate":"x","ports":[{"number":1,"projectName":"a"},{"number":1,"projectName":"b"}]}"#;
        assert!(parse_json(dup).unwrap_err().to_string().contains("twice"));
        let status = r#"{"version":"1.0.0","exportDate":"x","ports":[{"number":1,"projectName":"a","status":"busy"}]}"#;
        assert!(
            parse_json(status)
                .unwrap_err()
                .to_string()
                .contains("unknown status")
        );
        assert!(parse_json("[1,2]").is_err());
    }

    #[test]
    fn the_diff_separates_added_changed_conflicting_and_removed() {
        let current = vec![row(1000, "a"), row(2000, "b"), row(3000, "c")];
        let mut changed = row(1000, "a");
        changed.description = Some("new".into());
        let file = vec![changed, row(2000, "other"), row(4000, "d")];
        let d = diff(&file, &current, true);
        assert_eq!(d.added, [Port::new(4000).unwrap()]);
        assert_eq!(d.changed.values().next().unwrap(), &["description"]);
        assert!(d.conflicts.contains_key(&Port::new(2000).unwrap()));
        assert_eq!(d.removed, [Port::new(3000).unwrap()]);
    }
}
