//! The client bundle: the one file an enrolled client needs to rejoin its server.
//!
//! `{"version":1,"server":"host:port","pin":"sha256:…","client_id":"cli_…","token":"pcl_…"}`.
//! It holds a bearer token, so it is written with mode 0600 and, like ssh with private keys, the
//! client refuses to use one that other users can read (or that someone else owns): a token that
//! leaked once must be revoked, and the operator should learn about the exposure instead of the
//! client quietly carrying on. [`resolve`] walks the documented search order.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use portunus_core::pin::normalize_pin;
use serde::{Deserialize, Serialize};

use crate::atomic::{self, Existing};
use crate::exit;
use crate::paths::{Env, Source, bundle_candidates};

/// The bundle format version this build writes and reads.
pub const BUNDLE_VERSION: u32 = 1;
/// The largest bundle read (a real one is a few hundred bytes).
const MAX_BUNDLE: u64 = 64 * 1024;

/// A client's credentials and where its server is.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Format version ([`BUNDLE_VERSION`]).
    pub version: u32,
    /// The control listener, `host:port` (an IPv6 host in brackets).
    pub server: String,
    /// The server certificate's pin, `sha256:…`.
    pub pin: String,
    /// The client's id.
    pub client_id: String,
    /// The client's bearer token.
    pub token: String,
}

impl fmt::Debug for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bundle")
            .field("server", &self.server)
            .field("pin", &self.pin)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Why no usable bundle was found.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Nothing at any of the locations.
    #[error("no client bundle found; tried:\n{}\nenroll first with: portunus-client enroll 'portunus://…'", list(.0))]
    NotFound(Vec<(Source, PathBuf)>),
    /// The file could not be read.
    #[error("cannot read the client bundle {path}: {1}", path = .0.display())]
    Unreadable(PathBuf, io::Error),
    /// The file is not a bundle.
    #[error("{path} is not a valid client bundle: {1}", path = .0.display())]
    Malformed(PathBuf, String),
    /// Other users can read it.
    #[error(
        "the client bundle {path} is accessible by other users (mode {1:04o}); it holds a secret token. \
         Run: chmod 600 {path}",
        path = .0.display()
    )]
    TooOpen(PathBuf, u32),
    /// Someone else owns it.
    #[error(
        "the client bundle {path} belongs to uid {1}, not to you (uid {2}); refusing to use it",
        path = .0.display()
    )]
    WrongOwner(PathBuf, u32, u32),
}

fn list(tried: &[(Source, PathBuf)]) -> String {
    tried
        .iter()
        .map(|(source, path)| format!("  {}  ({})", path.display(), source.describe()))
        .collect::<Vec<_>>()
        .join("\n")
}

impl BundleError {
    /// The process exit status for this error: 1 when none was found, 78 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            BundleError::NotFound(_) => exit::FAILURE,
            _ => exit::CONFIG,
        }
    }

    /// A stable code for `--json` output.
    pub fn code(&self) -> &'static str {
        match self {
            BundleError::NotFound(_) => "bundle_not_found",
            BundleError::Unreadable(..) => "bundle_unreadable",
            BundleError::Malformed(..) => "bundle_malformed",
            BundleError::TooOpen(..) => "bundle_permissions",
            BundleError::WrongOwner(..) => "bundle_owner",
        }
    }
}

/// Whether a client id may be used in a file name (and looks like one).
pub fn valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

impl Bundle {
    /// Checks every field.
    pub fn check(&self) -> Result<(), String> {
        if self.version != BUNDLE_VERSION {
            return Err(format!(
                "version {} is not supported (this client reads version {BUNDLE_VERSION}); \
                 enroll again or upgrade the client",
                self.version
            ));
        }
        crate::uri::parse_authority(&self.server).map_err(|e| format!("server: {}", e.reason()))?;
        normalize_pin(&self.pin).map_err(|e| format!("pin: {e}"))?;
        if !valid_client_id(&self.client_id) {
            return Err(format!("client_id '{}' is not a client id", self.client_id));
        }
        if self.token.is_empty() || self.token.chars().any(|c| c.is_control() || c == ' ') {
            return Err("token is empty or malformed".into());
        }
        Ok(())
    }

    /// The bundle as pretty JSON with a trailing newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Writes the bundle atomically with mode 0600 (its directory 0700). Without `force`, an
    /// existing file is left alone and the error is [`io::ErrorKind::AlreadyExists`].
    pub fn write(&self, path: &Path, force: bool) -> io::Result<()> {
        let existing = if force {
            Existing::Replace
        } else {
            Existing::Keep
        };
        atomic::write_private(path, &self.to_json(), existing)
    }

    /// Reads and checks the bundle at `path`: a regular file owned by the caller (or root),
    /// not accessible to group or others, holding a valid bundle.
    pub fn load(path: &Path) -> Result<Bundle, BundleError> {
        let unreadable = |e| BundleError::Unreadable(path.to_path_buf(), e);
        let mut file = File::open(path).map_err(unreadable)?;
        let meta = file.metadata().map_err(unreadable)?;
        if !meta.is_file() {
            return Err(BundleError::Malformed(
                path.to_path_buf(),
                "it is not a regular file".into(),
            ));
        }
        let uid = rustix::process::getuid().as_raw();
        if meta.uid() != uid && meta.uid() != 0 {
            return Err(BundleError::WrongOwner(path.to_path_buf(), meta.uid(), uid));
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(BundleError::TooOpen(path.to_path_buf(), mode));
        }
        let mut text = String::new();
        file.by_ref()
            .take(MAX_BUNDLE + 1)
            .read_to_string(&mut text)
            .map_err(unreadable)?;
        if text.len() as u64 > MAX_BUNDLE {
            return Err(BundleError::Malformed(
                path.to_path_buf(),
                "it is far too large".into(),
            ));
        }
        let bundle: Bundle = serde_json::from_str(&text)
            .map_err(|e| BundleError::Malformed(path.to_path_buf(), e.to_string()))?;
        bundle
            .check()
            .map_err(|reason| BundleError::Malformed(path.to_path_buf(), reason))?;
        Ok(bundle)
    }
}

/// Finds and loads the bundle: the first location of [`bundle_candidates`] that exists is used
/// (and must be valid); when none exists, the error lists every path tried.
pub fn resolve(flag: Option<&Path>, env: &Env) -> Result<(PathBuf, Bundle), BundleError> {
    // An explicit --bundle is the only place looked at: silently running with some other
    // bundle because of a typo would be worse than stopping.
    let tried = match flag {
        Some(path) => vec![(Source::Flag, path.to_path_buf())],
        None => bundle_candidates(None, env),
    };
    for (_, path) in &tried {
        match std::fs::metadata(path) {
            Ok(_) => return Bundle::load(path).map(|b| (path.clone(), b)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) => {}
            Err(e) => return Err(BundleError::Unreadable(path.clone(), e)),
        }
    }
    Err(BundleError::NotFound(tried))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::ffi::OsString;
    use std::fs;

    use super::*;

    fn sample() -> Bundle {
        Bundle {
            version: 1,
            server: "[::1]:7871".into(),
            pin: format!("sha256:{}", "ab".repeat(32)),
            client_id: "cli_abc".into(),
            token: "pcl_secret".into(),
        }
    }

    #[test]
    fn a_written_bundle_loads_back_and_debug_hides_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conf/portunus/client.bundle.json");
        sample().write(&path, false).unwrap();
        assert_eq!(Bundle::load(&path).unwrap(), sample());
        assert!(!format!("{:?}", sample()).contains("pcl_secret"));
        let json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "version": 1, "server": "[::1]:7871", "pin": sample().pin,
                "client_id": "cli_abc", "token": "pcl_secret"
            })
        );
        let err = sample().write(&path, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        sample().write(&path, true).unwrap();
    }

    #[test]
    fn readable_by_others_or_malformed_bundles_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.json");
        sample().write(&path, false).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = Bundle::load(&path).unwrap_err();
        assert!(matches!(err, BundleError::TooOpen(_, 0o640)), "{err}");
        assert_eq!(err.exit_code(), 78);
        assert!(err.to_string().contains("chmod 600"), "{err}");

        let bad = |text: &str| {
            let p = dir.path().join("bad.json");
            let _ = fs::remove_file(&p);
            atomic::write_private(&p, text.as_bytes(), Existing::Keep).unwrap();
            Bundle::load(&p).unwrap_err()
        };
        assert!(matches!(bad("{"), BundleError::Malformed(..)));
        let mut b = serde_json::to_value(sample()).unwrap();
        b["version"] = 2.into();
        assert!(bad(&b.to_string()).to_string().contains("version 2"));
        let mut b = serde_json::to_value(sample()).unwrap();
        b["client_id"] = "../etc".into();
        assert!(bad(&b.to_string()).to_string().contains("client_id"));
        let mut b = serde_json::to_value(sample()).unwrap();
        b["pin"] = "sha256:00".into();
        assert!(bad(&b.to_string()).to_string().contains("pin"));
        let mut b = serde_json::to_value(sample()).unwrap();
        b["server"] = "nohost".into();
        assert!(bad(&b.to_string()).to_string().contains("server"));
        let mut b = serde_json::to_value(sample()).unwrap();
        b["extra"] = 1.into();
        assert!(matches!(bad(&b.to_string()), BundleError::Malformed(..)));
    }

    #[test]
    fn resolve_takes_the_first_existing_location_and_lists_all_when_none() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env {
            bundle: Some(OsString::from(dir.path().join("env.json"))),
            xdg_config_home: Some(dir.path().join("xdg").into_os_string()),
            xdg_state_home: None,
            home: Some(dir.path().join("home").into_os_string()),
        };
        let flag = dir.path().join("flag.json");
        let err = resolve(None, &env).unwrap_err();
        assert_eq!(err.exit_code(), 1);
        let text = err.to_string();
        for p in [
            dir.path().join("env.json").display().to_string(),
            dir.path()
                .join("xdg/portunus/client.bundle.json")
                .display()
                .to_string(),
            dir.path()
                .join("home/.config/portunus/client.bundle.json")
                .display()
                .to_string(),
            "./client.bundle.json".into(),
        ] {
            assert!(text.contains(&p), "{p} missing from {text}");
        }

        let home = dir.path().join("home/.config/portunus/client.bundle.json");
        sample().write(&home, false).unwrap();
        assert_eq!(resolve(None, &env).unwrap().0, home);
        let xdg = dir.path().join("xdg/portunus/client.bundle.json");
        sample().write(&xdg, false).unwrap();
        assert_eq!(resolve(None, &env).unwrap().0, xdg);
        // A flag naming a missing file is the only place looked at, whatever else exists.
        let err = resolve(Some(&flag), &env).unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(!err.to_string().contains("xdg/portunus"), "{err}");
        sample().write(&flag, false).unwrap();
        assert_eq!(resolve(Some(&flag), &env).unwrap().0, flag);
    }
}
