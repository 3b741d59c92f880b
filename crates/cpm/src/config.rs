//! The configuration file, `~/.cpm/config.toml`: where repositories live and output defaults.
//!
//! ```toml
//! repo_root = "/srv/git"   # default: ~/.cpm/repos
//! delete = "trash"         # or "purge": what `repo delete` and `org delete` do with directories
//! format = "table"         # default --format: table, json or yaml
//! default_branch = "main"  # what HEAD of a new repository names
//! ```
//!
//! The file is optional. `--config PATH` or `CPM_CONFIG` point elsewhere; `CPM_REPO_ROOT` overrides
//! `repo_root`. Unknown keys are refused, so a typo never silently changes nothing.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// What deleting a repository does with its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeleteMode {
    /// Move it under `<repo_root>/.trash/` (the default): recoverable.
    #[default]
    Trash,
    /// Remove it.
    Purge,
}

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON document.
    Json,
    /// One YAML document.
    Yaml,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    repo_root: Option<PathBuf>,
    delete: Option<DeleteMode>,
    format: Option<Format>,
    default_branch: Option<String>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The directory holding `<org>/<repo>.git`.
    pub repo_root: PathBuf,
    /// What deletes do with directories.
    pub delete: DeleteMode,
    /// The default output format.
    pub format: Format,
    /// The branch HEAD of a new repository names.
    pub default_branch: String,
    /// The file it came from, if one existed.
    pub source: Option<PathBuf>,
}

fn home() -> Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| {
            Error::Config("HOME is not set; set it, or give --config and CPM_REPO_ROOT".into())
        })
}

impl Config {
    /// Loads `flag`, else `CPM_CONFIG`, else `~/.cpm/config.toml` (which may be missing).
    pub fn load(flag: Option<&Path>) -> Result<Config> {
        let explicit = flag
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("CPM_CONFIG").map(PathBuf::from));
        let path = match &explicit {
            Some(p) => p.clone(),
            None => home()?.join(".cpm/config.toml"),
        };
        let file: Option<File> = match std::fs::read_to_string(&path) {
            Ok(text) => Some(
                toml::from_str(&text)
                    .map_err(|e| Error::Config(format!("{}: {}", path.display(), e.message())))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => None,
            Err(e) => return Err(Error::io(&path, e)),
        };
        let source = file.as_ref().map(|_| path.clone());
        let file = file.unwrap_or_default();
        let repo_root = match std::env::var_os("CPM_REPO_ROOT").filter(|v| !v.is_empty()) {
            Some(root) => PathBuf::from(root),
            None => match file.repo_root {
                Some(root) => expand_home(&root)?,
                None => home()?.join(".cpm/repos"),
            },
        };
        if !repo_root.is_absolute() {
            return Err(Error::Config(format!(
                "repo_root {} is not an absolute path",
                repo_root.display()
            )));
        }
        Ok(Config {
            repo_root,
            delete: file.delete.unwrap_or_default(),
            format: file.format.unwrap_or_default(),
            default_branch: check_branch(file.default_branch.as_deref().unwrap_or("main"))?,
            source,
        })
    }
}

fn check_branch(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && !name.starts_with(['-', '.', '/'])
        && !name.contains("..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if ok {
        Ok(name.to_string())
    } else {
        Err(Error::Config(format!(
            "default_branch '{name}' is not a branch name"
        )))
    }
}

fn expand_home(path: &Path) -> Result<PathBuf> {
    match path.strip_prefix("~") {
        Ok(rest) => Ok(home()?.join(rest)),
        Err(_) => Ok(path.to_path_buf()),
    }
}
