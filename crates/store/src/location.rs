//! Where a tool's database lives.
//!
//! Every tool resolves its database the same way: an explicit flag (`--db PATH`, or `--data-dir DIR`
//! for tools whose seed documents a data directory) wins, then the tool's environment variable, then
//! the default its seed documents (`~/.portkeeper/database.db`, `$XDG_STATE_HOME/portunus/state.db`,
//! `data/llama-dashboard.db`, ...). The result remembers where it came from, so an error about a
//! missing file can say "from PORTMAN_DB" instead of leaving the user to guess.

use std::env;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// How a tool locates its database.
#[derive(Debug, Clone, Copy)]
pub struct Location {
    /// Environment variable consulted when no flag is given, e.g. `PORTMAN_DB`.
    pub env_var: &'static str,
    /// The flag that overrides everything, as the user types it (`--db` or `--data-dir`), for messages.
    pub flag: &'static str,
    /// When the flag, variable and default name a *directory*, the database's file name inside it
    /// (`Some("state.db")`); `None` when they name the database file itself.
    pub file_in_dir: Option<&'static str>,
    /// Where the database (or data directory) is when neither flag nor variable is set.
    pub default: DefaultPath,
}

/// A documented default location.
#[derive(Debug, Clone, Copy)]
pub enum DefaultPath {
    /// Relative to the user's home directory: `Home(".cpm/cpm.db")` is `~/.cpm/cpm.db`.
    Home(&'static str),
    /// Under the XDG state directory: `XdgState("portunus")` is `$XDG_STATE_HOME/portunus`, or
    /// `~/.local/state/portunus` when the variable is unset or not absolute (as the XDG spec says).
    XdgState(&'static str),
    /// Relative to the working directory: `WorkingDir("data/llama-dashboard.db")`.
    WorkingDir(&'static str),
}

/// A resolved database path and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The database file, made absolute.
    pub path: PathBuf,
    /// What decided it.
    pub origin: Origin,
}

/// What decided a database path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The command-line flag (named).
    Flag(&'static str),
    /// The environment variable (named).
    Env(&'static str),
    /// The tool's documented default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => write!(f, "from {flag}"),
            Origin::Env(var) => write!(f, "from ${var}"),
            Origin::Default => f.write_str("the default location"),
        }
    }
}

impl Location {
    /// Resolves the database path from the flag's value (if given), the environment and the default.
    pub fn resolve(&self, flag_value: Option<&Path>) -> Result<Resolved> {
        self.resolve_with(flag_value, &|name| env::var_os(name))
    }

    /// [`Location::resolve`] with the environment supplied by the caller (for tests).
    pub fn resolve_with(
        &self,
        flag_value: Option<&Path>,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<Resolved> {
        let non_empty = |name: &str| env(name).filter(|value| !value.is_empty());
        let (base, origin) = if let Some(value) = flag_value {
            (value.to_path_buf(), Origin::Flag(self.flag))
        } else if let Some(value) = non_empty(self.env_var) {
            // Shells expand `~` on the command line but not inside service files and .env files.
            let value = PathBuf::from(value);
            let value = match (value.strip_prefix("~"), non_empty("HOME")) {
                (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
                _ => value,
            };
            (value, Origin::Env(self.env_var))
        } else {
            let home = || {
                non_empty("HOME")
                    .map(PathBuf::from)
                    .ok_or_else(|| Error::NoHome {
                        hint: format!("pass {} or set {}", self.flag, self.env_var),
                    })
            };
            let base = match self.default {
                DefaultPath::Home(relative) => home()?.join(relative),
                DefaultPath::XdgState(relative) => {
                    match non_empty("XDG_STATE_HOME").map(PathBuf::from) {
                        Some(state) if state.is_absolute() => state.join(relative),
                        _ => home()?.join(".local/state").join(relative),
                    }
                }
                DefaultPath::WorkingDir(relative) => PathBuf::from(relative),
            };
            (base, Origin::Default)
        };
        let path = match self.file_in_dir {
            Some(file) => base.join(file),
            None => base,
        };
        let path = std::path::absolute(&path).map_err(|e| Error::io("resolve", &path, e))?;
        Ok(Resolved { path, origin })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const PORTMAN: Location = Location {
        env_var: "PORTMAN_DB",
        flag: "--db",
        file_in_dir: None,
        default: DefaultPath::Home(".portkeeper/database.db"),
    };

    const PORTUNUS: Location = Location {
        env_var: "PORTUNUS_DATA_DIR",
        flag: "--data-dir",
        file_in_dir: Some("state.db"),
        default: DefaultPath::XdgState("portunus"),
    };

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn flag_beats_environment_beats_default() {
        let vars = env(&[("HOME", "/home/u"), ("PORTMAN_DB", "/env/p.db")]);
        let flag = PORTMAN
            .resolve_with(Some(Path::new("/flag/p.db")), &vars)
            .unwrap();
        assert_eq!(flag.path, PathBuf::from("/flag/p.db"));
        assert_eq!(flag.origin, Origin::Flag("--db"));

        let from_env = PORTMAN.resolve_with(None, &vars).unwrap();
        assert_eq!(from_env.path, PathBuf::from("/env/p.db"));
        assert_eq!(from_env.origin, Origin::Env("PORTMAN_DB"));

        let default = PORTMAN
            .resolve_with(None, &env(&[("HOME", "/home/u"), ("PORTMAN_DB", "")]))
            .unwrap();
        assert_eq!(
            default.path,
            PathBuf::from("/home/u/.portkeeper/database.db")
        );
        assert_eq!(default.origin, Origin::Default);
    }

    #[test]
    fn a_tilde_in_the_environment_variable_means_home() {
        let vars = env(&[("HOME", "/home/u"), ("PORTMAN_DB", "~/ports/p.db")]);
        let resolved = PORTMAN.resolve_with(None, &vars).unwrap();
        assert_eq!(resolved.path, PathBuf::from("/home/u/ports/p.db"));
    }

    #[test]
    fn data_dir_tools_put_their_file_inside_the_directory() {
        let flag = PORTUNUS
            .resolve_with(Some(Path::new("/var/lib/portunus")), &env(&[]))
            .unwrap();
        assert_eq!(flag.path, PathBuf::from("/var/lib/portunus/state.db"));

        let xdg = PORTUNUS
            .resolve_with(None, &env(&[("XDG_STATE_HOME", "/s"), ("HOME", "/h")]))
            .unwrap();
        assert_eq!(xdg.path, PathBuf::from("/s/portunus/state.db"));

        // A relative XDG_STATE_HOME is invalid per the spec and is ignored.
        let fallback = PORTUNUS
            .resolve_with(None, &env(&[("XDG_STATE_HOME", "rel"), ("HOME", "/h")]))
            .unwrap();
        assert_eq!(
            fallback.path,
            PathBuf::from("/h/.local/state/portunus/state.db")
        );
    }

    #[test]
    fn missing_home_says_which_flag_to_use() {
        let error = PORTMAN.resolve_with(None, &env(&[])).unwrap_err();
        assert_eq!(error.exit_code(), 78);
        assert!(error.to_string().contains("pass --db or set PORTMAN_DB"));
    }

    #[test]
    fn relative_paths_are_made_absolute() {
        let relative = Location {
            default: DefaultPath::WorkingDir("data/llama-dashboard.db"),
            ..PORTMAN
        };
        let resolved = relative.resolve_with(None, &env(&[])).unwrap();
        assert!(resolved.path.is_absolute());
        assert!(resolved.path.ends_with("data/llama-dashboard.db"));
    }
}
