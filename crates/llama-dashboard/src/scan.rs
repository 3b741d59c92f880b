//! The scanner: walks the models folder, groups GGUF files into models (split shards and
//! `mmproj` projectors together), reads each model's header with our own reader and keeps the
//! `models` table in line.
//!
//! A rescan of unchanged files is nearly free: the size and modification time of every file of a
//! model are remembered (metadata key `scan.cache`), and a model whose files are unchanged and
//! whose row still exists is not read again. Symbolic links to directories are not followed, so a
//! link loop cannot make a scan run forever.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::db::{metadata, models};
use crate::gguf::{self, GgufInfo};

/// The metadata key holding the scan cache.
pub const CACHE_KEY: &str = "scan.cache";

/// What a scan did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScanReport {
    /// GGUF files found.
    pub files: usize,
    /// Models they form.
    pub models: usize,
    /// New rows.
    pub added: usize,
    /// Rows refreshed because a file changed.
    pub updated: usize,
    /// Models whose files had not changed (not read again).
    pub unchanged: usize,
    /// Files whose header could not be read, with the reason.
    pub failed: Vec<(PathBuf, String)>,
}

/// Size and modification time of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    size: u64,
    mtime_ns: u128,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    let mtime_ns = meta
        .modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(Stamp {
        size: meta.len(),
        mtime_ns,
    })
}

/// Every `.gguf` file below `root` (not following links to directories), sorted.
pub fn find_gguf_files(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // The root must be readable; a subfolder we may not enter is skipped.
            Err(e) if dir == root => return Err(e),
            Err(_) => continue,
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
                && (kind.is_file() || (kind.is_symlink() && path.is_file()))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// `135M`, `7.2B`: a parameter count the way model names write it.
pub fn params_label(count: u64) -> Option<String> {
    let (value, unit) = match count {
        0 => return None,
        n if n >= 1_000_000_000 => (n as f64 / 1e9, "B"),
        n if n >= 1_000_000 => (n as f64 / 1e6, "M"),
        n if n >= 1_000 => (n as f64 / 1e3, "K"),
        n => return Some(n.to_string()),
    };
    let text = if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}").trim_end_matches(".0").to_string()
    };
    Some(format!("{text}{unit}"))
}

/// The documented `params` column: a JSON object of the model's architecture parameters (the
/// seed's `vocab_size`, `hidden_size`, `intermediate_size`, `num_attention_heads`,
/// `num_hidden_layers`), with what else the header tells: key/value heads, training context,
/// the parameter count over all shards and its label, the chat template's presence, the shard
/// count and the projector file.
pub fn params_json(info: &GgufInfo, files: &gguf::ModelFiles, parameter_count: u64) -> Value {
    json!({
        "vocab_size": info.vocab_size,
        "hidden_size": info.embedding_length,
        "intermediate_size": info.feed_forward_length,
        "num_attention_heads": info.head_count,
        "num_hidden_layers": info.block_count,
        "num_key_value_heads": info.head_count_kv,
        "context_length": info.context_length,
        "parameter_count": parameter_count,
        "parameter_label": params_label(parameter_count),
        "size_label": info.size_label,
        "has_chat_template": info.has_chat_template,
        "shard_count": files.shard_count,
        "mmproj": files.mmproj.as_ref().map(|p| p.display().to_string()),
    })
}

/// The label to show for a model's size: its `general.size_label`, else the count's label.
pub fn size_label(params: Option<&str>) -> Option<String> {
    let value: Value = serde_json::from_str(params?).ok()?;
    value["size_label"]
        .as_str()
        .or_else(|| value["parameter_label"].as_str())
        .map(str::to_string)
}

/// The row values a header gives; `parameter_count` is summed over every shard.
fn apply_header(
    model: &mut models::Model,
    info: &GgufInfo,
    files: &gguf::ModelFiles,
    parameter_count: u64,
) {
    let n = |v: Option<u64>| v.map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX));
    if let Some(arch) = &info.architecture {
        model.kind = arch.clone();
    }
    model.params = Some(params_json(info, files, parameter_count).to_string());
    model.quantization = info.quantization.clone();
    if let Some(ctx) = info.context_length {
        model.ctx_size = i64::try_from(ctx).unwrap_or(i64::MAX);
    }
    model.embedding_size = n(info.embedding_length);
    model.block_count = n(info.block_count);
    model.head_count = n(info.head_count);
    model.head_count_kv = n(info.head_count_kv);
    model.ffn_dim = n(info.feed_forward_length);
    model.file_type = info.file_type.map_or(0, i64::from);
}

/// Scans `root` into the `models` table in one transaction. `progress(done, total)` is called
/// after each model.
pub fn scan(
    tx: &rusqlite::Transaction<'_>,
    root: &Path,
    mut progress: impl FnMut(usize, usize),
) -> Result<ScanReport, ScanError> {
    let files = find_gguf_files(root).map_err(|e| ScanError::Root(root.to_path_buf(), e))?;
    let groups = gguf::group_files(&files);
    let cache: BTreeMap<String, Vec<Stamp>> =
        serde_json::from_value(metadata::get(tx, CACHE_KEY, json!({}))?).unwrap_or_default();
    let mut next_cache: BTreeMap<String, Vec<Stamp>> = BTreeMap::new();
    let existing: BTreeMap<String, models::Model> = models::get_all(tx)?
        .into_iter()
        .filter_map(|m| m.model_path.clone().map(|p| (p, m)))
        .collect();
    let mut report = ScanReport {
        files: files.len(),
        models: groups.len(),
        ..ScanReport::default()
    };
    for (done, group) in groups.iter().enumerate() {
        let key = group.primary.display().to_string();
        let mut all_files = group.shards.clone();
        all_files.extend(group.mmproj.iter().cloned());
        let stamps: Vec<Stamp> = all_files.iter().filter_map(|p| stamp(p)).collect();
        let row = existing.get(&key);
        if row.is_some() && cache.get(&key) == Some(&stamps) {
            report.unchanged += 1;
            next_cache.insert(key, stamps);
            progress(done + 1, groups.len());
            continue;
        }
        match gguf::read_header(&group.primary) {
            Ok(info) => {
                // The other shards hold the rest of the tensors; their headers are small.
                let parameter_count = info.parameter_count
                    + group
                        .shards
                        .iter()
                        .filter(|p| **p != group.primary)
                        .filter_map(|p| gguf::read_header(p).ok())
                        .map(|shard| shard.parameter_count)
                        .sum::<u64>();
                let mut model = row.cloned().unwrap_or_else(|| models::Model {
                    name: group.name(),
                    model_path: Some(key.clone()),
                    ..models::Model::default()
                });
                apply_header(&mut model, &info, group, parameter_count);
                let size: u64 = group
                    .shards
                    .iter()
                    .filter_map(|p| stamp(p))
                    .map(|s| s.size)
                    .sum();
                model.file_size = Some(i64::try_from(size).unwrap_or(i64::MAX));
                models::save(tx, &model)?;
                if row.is_some() {
                    report.updated += 1;
                } else {
                    report.added += 1;
                }
                next_cache.insert(key, stamps);
            }
            Err(e) => report.failed.push((group.primary.clone(), e.to_string())),
        }
        progress(done + 1, groups.len());
    }
    let cache_value: Value = serde_json::to_value(&next_cache).unwrap_or_else(|_| json!({}));
    metadata::set(tx, CACHE_KEY, &cache_value)?;
    Ok(report)
}

/// Why a scan failed as a whole (single files that fail are reported, not fatal).
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The models folder cannot be read.
    #[error("cannot read the models folder {0}: {1}")]
    Root(PathBuf, std::io::Error),
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
}

impl From<store::Error> for ScanError {
    fn from(e: store::Error) -> ScanError {
        match e {
            store::Error::Query(q) => ScanError::Db(q),
            other => ScanError::Db(rusqlite::Error::ToSqlConversionFailure(Box::new(other))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::params_label;

    #[test]
    fn parameter_counts_read_like_model_names() {
        assert_eq!(params_label(134_515_008).as_deref(), Some("135M"));
        assert_eq!(params_label(7_241_732_096).as_deref(), Some("7.2B"));
        assert_eq!(params_label(1_000_000_000).as_deref(), Some("1B"));
        assert_eq!(params_label(43_776).as_deref(), Some("43.8K"));
        assert_eq!(params_label(0), None);
    }
}
