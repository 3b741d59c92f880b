//! Grouping `.gguf` files into models: split shards and multimodal projectors.
//!
//! A scan of the models folder finds files, but the catalog lists models. llama.cpp's
//! `gguf-split` writes one model as `<base>-00001-of-00003.gguf`, `…-00002-of-00003.gguf`, …,
//! and vision models come with a separate `mmproj*.gguf` projector that `llama-server` needs
//! next to the model. This module turns a flat list of paths into [`ModelFiles`], by file name
//! alone (no file is opened).
//!
//! The rules:
//! - Only files whose name ends in `.gguf` (any case) are considered; others are ignored, and
//!   duplicate paths count once.
//! - A file whose name contains `mmproj` (any case) is a projector, never a model.
//! - Files named `<base>-<i>-of-<n>.gguf` (`i` and `n` decimal, `1 <= i <= n`) in the same
//!   directory with the same `<base>` and `n` form one model. Its `primary` is shard 1, or the
//!   lowest shard present when shard 1 is missing; `missing_shards` lists the absent indices.
//! - Every other `.gguf` file is a model of its own.
//! - The projectors of a directory are attached to the model of that directory when it holds
//!   exactly one model; with several projectors the first by name is taken. Projectors in a
//!   directory with no model or several models are left unattached (they are not models).
//! - The result is sorted by `primary`.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The files of one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelFiles {
    /// The file to hand to `llama-server`: shard 1 of a split model, else the only file.
    pub primary: PathBuf,
    /// Every file of the model in shard order, `primary` included (one entry when unsplit).
    pub shards: Vec<PathBuf>,
    /// The number of shards the file names announce (1 when unsplit).
    pub shard_count: u32,
    /// The 1-based indices of announced shards that were not found.
    pub missing_shards: Vec<u32>,
    /// The multimodal projector found next to the model, if any.
    pub mmproj: Option<PathBuf>,
}

impl ModelFiles {
    /// The model's display name: the file name, without the `-00001-of-00003` part for a split
    /// model (`llama-Q8_0-00001-of-00003.gguf` is `llama-Q8_0.gguf`).
    #[must_use]
    pub fn name(&self) -> String {
        let file = self
            .primary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match split_name(&file) {
            Some((base, _, count)) if count > 1 => format!("{base}.gguf"),
            _ => file,
        }
    }
}

/// Splits a file name `<base>-<i>-of-<n>.gguf` into `(base, i, n)`.
fn split_name(file_name: &str) -> Option<(&str, u32, u32)> {
    let stem = strip_gguf(file_name)?;
    let (rest, count) = stem.rsplit_once("-of-")?;
    let (base, index) = rest.rsplit_once('-')?;
    let number = |s: &str| -> Option<u32> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (index, count) = (number(index)?, number(count)?);
    (!base.is_empty() && index >= 1 && index <= count).then_some((base, index, count))
}

/// The name without a case-insensitive `.gguf` suffix; `None` for other files.
fn strip_gguf(file_name: &str) -> Option<&str> {
    let cut = file_name.len().checked_sub(5)?;
    let (stem, ext) = (file_name.get(..cut)?, file_name.get(cut..)?);
    ext.eq_ignore_ascii_case(".gguf").then_some(stem)
}

fn is_mmproj(file_name: &str) -> bool {
    file_name.to_ascii_lowercase().contains("mmproj")
}

/// Groups `.gguf` paths into models; see the module documentation for the rules.
#[must_use]
pub fn group_files(paths: &[PathBuf]) -> Vec<ModelFiles> {
    // (directory, base, count) → shards by index.
    let mut split: BTreeMap<(PathBuf, String, u32), BTreeMap<u32, PathBuf>> = BTreeMap::new();
    let mut single: BTreeSet<PathBuf> = BTreeSet::new();
    let mut projectors: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();

    for path in paths {
        let Some(name) = path.file_name().and_then(OsStr::to_str) else {
            continue;
        };
        if strip_gguf(name).is_none() {
            continue;
        }
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if is_mmproj(name) {
            projectors.entry(dir).or_default().push(path.clone());
        } else if let Some((base, index, count)) = split_name(name) {
            split
                .entry((dir, base.to_owned(), count))
                .or_default()
                .insert(index, path.clone());
        } else {
            single.insert(path.clone());
        }
    }

    let mut models: Vec<ModelFiles> = single
        .into_iter()
        .map(|path| ModelFiles {
            primary: path.clone(),
            shards: vec![path],
            shard_count: 1,
            missing_shards: Vec::new(),
            mmproj: None,
        })
        .collect();
    for ((_, _, count), found) in split {
        let shards: Vec<PathBuf> = found.values().cloned().collect();
        let Some(primary) = shards.first().cloned() else {
            continue;
        };
        models.push(ModelFiles {
            primary,
            shards,
            shard_count: count,
            missing_shards: (1..=count).filter(|i| !found.contains_key(i)).collect(),
            mmproj: None,
        });
    }
    models.sort_by(|a, b| a.primary.cmp(&b.primary));

    for (dir, mut found) in projectors {
        let parent = |m: &ModelFiles| {
            m.primary
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        };
        let mut here = models.iter_mut().filter(|m| parent(m) == dir);
        if let (Some(model), None) = (here.next(), here.next()) {
            found.sort();
            found.dedup();
            model.mmproj = found.into_iter().next();
        }
    }
    models
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn paths(names: &[&str]) -> Vec<PathBuf> {
        names.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn parses_split_names() {
        assert_eq!(
            split_name("Qwen3-235B-Q4_K_M-00002-of-00005.gguf"),
            Some(("Qwen3-235B-Q4_K_M", 2, 5))
        );
        assert_eq!(split_name("a-1-of-1.GGUF"), Some(("a", 1, 1)));
        assert_eq!(split_name("a-00006-of-00005.gguf"), None);
        assert_eq!(split_name("a-00000-of-00005.gguf"), None);
        assert_eq!(split_name("-00001-of-00005.gguf"), None);
        assert_eq!(split_name("a-x1-of-00005.gguf"), None);
        assert_eq!(split_name("a-+1-of-2.gguf"), None);
        assert_eq!(split_name("a-00001-of-00005.bin"), None);
        assert_eq!(split_name("model.gguf"), None);
        assert_eq!(split_name("a-99999999999-of-99999999999.gguf"), None);
    }

    #[test]
    fn groups_shards_and_singles() {
        let models = group_files(&paths(&[
            "/m/big-00002-of-00003.gguf",
            "/m/big-00001-of-00003.gguf",
            "/m/big-00003-of-00003.gguf",
            "/m/small.gguf",
            "/m/readme.txt",
            "/m/small.gguf",
        ]));
        assert_eq!(models.len(), 2);
        assert_eq!(
            models[0].primary,
            PathBuf::from("/m/big-00001-of-00003.gguf")
        );
        assert_eq!(
            models[0].shards,
            paths(&[
                "/m/big-00001-of-00003.gguf",
                "/m/big-00002-of-00003.gguf",
                "/m/big-00003-of-00003.gguf",
            ])
        );
        assert_eq!(models[0].shard_count, 3);
        assert_eq!(models[0].name(), "big.gguf");
        assert!(models[0].missing_shards.is_empty());
        assert_eq!(models[1].shards, paths(&["/m/small.gguf"]));
        assert_eq!(models[1].shard_count, 1);
        // Two models in /m: no projector to attach, none given anyway.
        assert!(models.iter().all(|m| m.mmproj.is_none()));
    }

    #[test]
    fn incomplete_sets_note_missing_shards() {
        let models = group_files(&paths(&[
            "/m/x-00003-of-00004.gguf",
            "/m/x-00002-of-00004.gguf",
        ]));
        assert_eq!(models.len(), 1);
        assert_eq!(models[0].primary, PathBuf::from("/m/x-00002-of-00004.gguf"));
        assert_eq!(models[0].missing_shards, vec![1, 4]);
    }

    #[test]
    fn same_base_in_other_directories_stays_apart() {
        let models = group_files(&paths(&["/a/x-1-of-2.gguf", "/b/x-2-of-2.gguf"]));
        assert_eq!(models.len(), 2);
    }

    #[test]
    fn mmproj_attaches_to_the_only_model_of_its_directory() {
        let models = group_files(&paths(&[
            "/vl/model-00001-of-00002.gguf",
            "/vl/model-00002-of-00002.gguf",
            "/vl/mmproj-model-f16.gguf",
            "/vl/MMPROJ-model-bf16.gguf",
            "/two/a.gguf",
            "/two/b.gguf",
            "/two/mmproj-a.gguf",
            "/none/mmproj-x.gguf",
        ]));
        assert_eq!(models.len(), 3);
        let vl = models
            .iter()
            .find(|m| m.primary.starts_with("/vl"))
            .unwrap();
        assert_eq!(vl.mmproj, Some(PathBuf::from("/vl/MMPROJ-model-bf16.gguf")));
        assert!(
            models
                .iter()
                .filter(|m| m.primary.starts_with("/two"))
                .all(|m| m.mmproj.is_none())
        );
    }
}
