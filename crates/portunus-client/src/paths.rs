//! Where the client looks for its files: the credential bundle and the persisted rules.
//!
//! The lookup follows the XDG base directories and is part of the documented contract (the
//! bundle's search order in particular), so it is computed in one place from an explicit view of
//! the environment ([`Env`]). That keeps the order testable without touching the process
//! environment, which tests must not mutate.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The environment variable naming the bundle.
pub const BUNDLE_VAR: &str = "PORTUNUS_CLIENT_BUNDLE";
/// The bundle's file name in the configuration directories.
pub const BUNDLE_FILE: &str = "client.bundle.json";
/// The directory under `$XDG_STATE_HOME` holding persisted rules.
pub const STATE_DIR: &str = "portunus-client";

/// The environment variables the lookups read, and the working directory.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `$PORTUNUS_CLIENT_BUNDLE`.
    pub bundle: Option<OsString>,
    /// `$XDG_CONFIG_HOME`.
    pub xdg_config_home: Option<OsString>,
    /// `$XDG_STATE_HOME`.
    pub xdg_state_home: Option<OsString>,
    /// `$HOME`.
    pub home: Option<OsString>,
}

impl Env {
    /// The process environment.
    pub fn from_process() -> Env {
        Env {
            bundle: std::env::var_os(BUNDLE_VAR),
            xdg_config_home: std::env::var_os("XDG_CONFIG_HOME"),
            xdg_state_home: std::env::var_os("XDG_STATE_HOME"),
            home: std::env::var_os("HOME"),
        }
    }
}

/// A non-empty value as a path. XDG directories must be absolute; relative ones are ignored as
/// the specification says.
fn non_empty(value: Option<&OsString>) -> Option<PathBuf> {
    value.filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn xdg(value: Option<&OsString>) -> Option<PathBuf> {
    non_empty(value).filter(|p| p.is_absolute())
}

/// Where a bundle candidate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `--bundle`.
    Flag,
    /// `$PORTUNUS_CLIENT_BUNDLE`.
    EnvVar,
    /// `$XDG_CONFIG_HOME/portunus/client.bundle.json`.
    XdgConfig,
    /// `$HOME/.config/portunus/client.bundle.json`.
    HomeConfig,
    /// `./client.bundle.json`.
    WorkingDir,
}

impl Source {
    /// How the source is described next to a path.
    pub fn describe(self) -> &'static str {
        match self {
            Source::Flag => "--bundle",
            Source::EnvVar => "$PORTUNUS_CLIENT_BUNDLE",
            Source::XdgConfig => "$XDG_CONFIG_HOME",
            Source::HomeConfig => "$HOME/.config",
            Source::WorkingDir => "working directory",
        }
    }
}

/// The bundle locations in the order they are tried: `--bundle`, `$PORTUNUS_CLIENT_BUNDLE`,
/// `$XDG_CONFIG_HOME/portunus/client.bundle.json`, `$HOME/.config/portunus/client.bundle.json`,
/// `./client.bundle.json`. Unset variables contribute nothing; a path listed twice is kept once.
pub fn bundle_candidates(flag: Option<&Path>, env: &Env) -> Vec<(Source, PathBuf)> {
    let config = |base: PathBuf| base.join("portunus").join(BUNDLE_FILE);
    let all = [
        (Source::Flag, flag.map(Path::to_path_buf)),
        (Source::EnvVar, non_empty(env.bundle.as_ref())),
        (
            Source::XdgConfig,
            xdg(env.xdg_config_home.as_ref()).map(config),
        ),
        (
            Source::HomeConfig,
            non_empty(env.home.as_ref()).map(|h| config(h.join(".config"))),
        ),
        (
            Source::WorkingDir,
            Some(PathBuf::from(".").join(BUNDLE_FILE)),
        ),
    ];
    let mut out: Vec<(Source, PathBuf)> = Vec::new();
    for (source, path) in all {
        if let Some(path) = path
            && !out.iter().any(|(_, p)| *p == path)
        {
            out.push((source, path));
        }
    }
    out
}

/// Where `enroll` writes the bundle by default: `$XDG_CONFIG_HOME/portunus/client.bundle.json`,
/// else `$HOME/.config/portunus/client.bundle.json`. `None` when neither is set.
pub fn default_bundle_path(env: &Env) -> Option<PathBuf> {
    xdg(env.xdg_config_home.as_ref())
        .or_else(|| non_empty(env.home.as_ref()).map(|h| h.join(".config")))
        .map(|base| base.join("portunus").join(BUNDLE_FILE))
}

/// The directory of persisted rule sets: `$XDG_STATE_HOME/portunus-client`, else
/// `$HOME/.local/state/portunus-client`. `None` when neither is set.
pub fn default_state_dir(env: &Env) -> Option<PathBuf> {
    xdg(env.xdg_state_home.as_ref())
        .or_else(|| non_empty(env.home.as_ref()).map(|h| h.join(".local").join("state")))
        .map(|base| base.join(STATE_DIR))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn env(bundle: Option<&str>, xdg: Option<&str>, home: Option<&str>) -> Env {
        Env {
            bundle: bundle.map(OsString::from),
            xdg_config_home: xdg.map(OsString::from),
            xdg_state_home: xdg.map(|x| OsString::from(format!("{x}/state"))),
            home: home.map(OsString::from),
        }
    }

    fn paths(list: Vec<(Source, PathBuf)>) -> Vec<String> {
        list.into_iter()
            .map(|(_, p)| p.display().to_string())
            .collect()
    }

    #[test]
    fn bundle_candidates_follow_the_documented_order() {
        let all = bundle_candidates(
            Some(Path::new("/flag.json")),
            &env(Some("/env.json"), Some("/xdg"), Some("/home/u")),
        );
        assert_eq!(
            all.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            [
                Source::Flag,
                Source::EnvVar,
                Source::XdgConfig,
                Source::HomeConfig,
                Source::WorkingDir
            ]
        );
        assert_eq!(
            paths(all),
            [
                "/flag.json",
                "/env.json",
                "/xdg/portunus/client.bundle.json",
                "/home/u/.config/portunus/client.bundle.json",
                "./client.bundle.json",
            ]
        );
    }

    #[test]
    fn unset_empty_relative_and_duplicate_locations_are_skipped() {
        assert_eq!(
            paths(bundle_candidates(None, &env(Some(""), Some("rel"), None))),
            ["./client.bundle.json"]
        );
        assert_eq!(
            paths(bundle_candidates(
                None,
                &env(None, Some("/home/u/.config"), Some("/home/u"))
            )),
            [
                "/home/u/.config/portunus/client.bundle.json",
                "./client.bundle.json"
            ]
        );
    }

    #[test]
    fn defaults_prefer_xdg_then_home() {
        let both = env(None, Some("/xdg"), Some("/home/u"));
        assert_eq!(
            default_bundle_path(&both).unwrap(),
            Path::new("/xdg/portunus/client.bundle.json")
        );
        assert_eq!(
            default_state_dir(&both).unwrap(),
            Path::new("/xdg/state/portunus-client")
        );
        let home = env(None, None, Some("/home/u"));
        assert_eq!(
            default_bundle_path(&home).unwrap(),
            Path::new("/home/u/.config/portunus/client.bundle.json")
        );
        assert_eq!(
            default_state_dir(&home).unwrap(),
            Path::new("/home/u/.local/state/portunus-client")
        );
        assert!(default_bundle_path(&Env::default()).is_none());
        assert!(default_state_dir(&Env::default()).is_none());
    }
}
