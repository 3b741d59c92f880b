//! The server's host key: made once, kept private, the same on every start.
//!
//! Clients pin a server by its host key, so the key must survive restarts and never leak. On the
//! first start [`load_or_create`] writes a new ed25519 key with [`crate::keys::generate`] (0600 from
//! the start, never half-written); afterwards it only reads it, and refuses a key file that others
//! may read rather than serve with a key that may have been copied.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use russh::keys::{HashAlg, PrivateKey};

use crate::error::{Error, Result};
use crate::keys::{self, KeyError};

/// The comment written into a generated host key.
const COMMENT: &str = "cpm host key";

/// A loaded host key.
#[derive(Debug)]
pub struct HostKey {
    /// The private key russh signs with.
    pub key: PrivateKey,
    /// `SHA256:…`, as `ssh-keygen -lf` and clients print it.
    pub fingerprint: String,
    /// `ssh-ed25519`, …
    pub algorithm: String,
}

/// `~/.cpm/host_ed25519`.
pub fn default_path() -> Result<PathBuf> {
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cpm/host_ed25519")),
        None => Err(Error::Config(
            "HOME is not set, so there is no default host key path; give --host-key PATH".into(),
        )),
    }
}

/// Reads the host key at `path`, generating it there first if it does not exist yet.
pub fn load_or_create(path: &Path) -> Result<HostKey> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => generate(path)?,
        Err(e) => return Err(Error::io(path, e)),
    }
    let mode = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Error::Config(format!(
            "{}: the host key may be read by others (mode {:o}); run `chmod 600 {}`, or remove it \
             to have a new one generated (clients will then see a changed host key)",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    let key = russh::keys::load_secret_key(path, None).map_err(|e| {
        Error::Config(format!(
            "{}: not a usable unencrypted OpenSSH private key ({e}); give another --host-key, or \
             remove it to have a new one generated",
            path.display()
        ))
    })?;
    let fingerprint = key.public_key().fingerprint(HashAlg::Sha256).to_string();
    let algorithm = key.algorithm().as_str().to_string();
    Ok(HostKey {
        key,
        fingerprint,
        algorithm,
    })
}

fn generate(path: &Path) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        Error::Invalid(format!(
            "{}: not a file name for the host key",
            path.display()
        ))
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    match keys::generate(dir, name, COMMENT) {
        Ok(generated) => {
            eprintln!(
                "cpm serve: generated a new host key {} ({})",
                generated.private_key_path.display(),
                generated.fingerprint
            );
            Ok(())
        }
        // Another `cpm serve` made it a moment ago: use theirs.
        Err(KeyError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_host_key_is_made_once_private_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/host_ed25519");
        let first = load_or_create(&path).unwrap();
        assert_eq!(first.algorithm, "ssh-ed25519");
        assert!(first.fingerprint.starts_with("SHA256:"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = load_or_create(&path).unwrap();
        assert_eq!(again.fingerprint, first.fingerprint);
    }

    #[test]
    fn a_host_key_others_may_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host_ed25519");
        load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
