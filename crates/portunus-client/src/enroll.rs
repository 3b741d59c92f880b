//! `portunus-client enroll URI`: redeem a one-time code for the client's bundle.
//!
//! Enrollment is the one step where a mistake burns something: the code works once. So every
//! check that can fail locally (the URI, whether the bundle may be written there) runs before
//! the code is sent, and the bundle is then written atomically with mode 0600. The token is
//! never printed; `--json` shows the client id and where the bundle went.

use std::io;
use std::path::{Path, PathBuf};

use portunus_core::wire::{ClientMessage, PROTOCOL_VERSION, ServerMessage};

use crate::atomic;
use crate::bundle::{BUNDLE_VERSION, Bundle, valid_client_id};
use crate::exit;
use crate::session::{DialError, dial};
use crate::uri::EnrollUri;

/// Why enrollment failed, with the exit status each case maps to.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The URI is unusable (64).
    #[error("{0}")]
    Uri(#[from] crate::uri::UriError),
    /// No `--out` and no `$XDG_CONFIG_HOME` or `$HOME` (64).
    #[error("cannot tell where to write the bundle: set --out, $XDG_CONFIG_HOME or $HOME")]
    NoDefaultPath,
    /// A bundle is there already (73).
    #[error(
        "{} already exists; pass --force to replace it, or --out to write elsewhere",
        .0.display()
    )]
    Exists(PathBuf),
    /// The bundle cannot be written there (73).
    #[error("cannot write the bundle to {path}: {1}", path = .0.display())]
    Write(PathBuf, io::Error),
    /// The code was redeemed but the bundle could not be written (73).
    #[error(
        "enrolled as {1}, but the bundle could not be written to {path}: {2}; the code is used up, so ask the operator for a new one",
        path = .0.display()
    )]
    Lost(PathBuf, String, io::Error),
    /// The server could not be reached (69), or its certificate is not the pinned one (77).
    #[error("{0}")]
    Dial(#[from] DialError),
    /// The server refused (77 for an invalid code or version, 69 otherwise).
    #[error("the server refused the enrollment ({code}): {message}")]
    Refused {
        /// The server's error code.
        code: String,
        /// Its message.
        message: String,
    },
    /// The server said something unexpected or the connection broke (69).
    #[error("enrollment failed: {0}")]
    Protocol(String),
}

impl EnrollError {
    /// The process exit status.
    pub fn exit_code(&self) -> u8 {
        match self {
            EnrollError::Uri(_) | EnrollError::NoDefaultPath => exit::USAGE,
            EnrollError::Exists(_) | EnrollError::Write(..) | EnrollError::Lost(..) => {
                exit::CANT_CREATE
            }
            EnrollError::Dial(DialError::PinMismatch(_)) => exit::NO_PERM,
            EnrollError::Dial(DialError::Pin(_)) => exit::USAGE,
            EnrollError::Dial(_) | EnrollError::Protocol(_) => exit::UNAVAILABLE,
            EnrollError::Refused { code, .. }
                if code == "invalid_enrollment_code" || code == "unsupported_version" =>
            {
                exit::NO_PERM
            }
            EnrollError::Refused { .. } => exit::UNAVAILABLE,
        }
    }

    /// A stable code for `--json` output.
    pub fn code(&self) -> String {
        match self {
            EnrollError::Uri(_) => "invalid_uri".into(),
            EnrollError::NoDefaultPath => "no_default_path".into(),
            EnrollError::Exists(_) => "bundle_exists".into(),
            EnrollError::Write(..) | EnrollError::Lost(..) => "bundle_write_failed".into(),
            EnrollError::Dial(DialError::PinMismatch(_)) => "pin_mismatch".into(),
            EnrollError::Dial(_) => "unreachable".into(),
            EnrollError::Refused { code, .. } => code.clone(),
            EnrollError::Protocol(_) => "protocol_error".into(),
        }
    }
}

/// A successful enrollment.
#[derive(Debug)]
pub struct Enrolled {
    /// The new bundle.
    pub bundle: Bundle,
    /// Where it was written.
    pub path: PathBuf,
}

/// Checks that a bundle may be written at `out` before the code is spent: it does not exist
/// (unless `force`), and a file can be created in its directory (made 0700 if missing).
pub fn preflight(out: &Path, force: bool) -> Result<(), EnrollError> {
    if !force && std::fs::symlink_metadata(out).is_ok() {
        return Err(EnrollError::Exists(out.to_path_buf()));
    }
    let probe = out.with_file_name(format!(
        ".{}.probe-{}",
        out.file_name()
            .map_or_else(|| "bundle".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    atomic::write_private(&probe, b"", atomic::Existing::Replace)
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| EnrollError::Write(out.to_path_buf(), e))
}

/// Sends the code to the server and returns `(client_id, token)`.
pub async fn redeem(uri: &EnrollUri, name: Option<&str>) -> Result<(String, String), EnrollError> {
    let mut conn = dial(&uri.server, &uri.pin).await?;
    let hello = ClientMessage::Enroll {
        code: uri.code.clone(),
        name: name.map(str::to_string),
        version: PROTOCOL_VERSION,
    };
    conn.send(&hello)
        .await
        .map_err(|e| EnrollError::Protocol(format!("sending the code failed: {e}")))?;
    let answer = conn.answer().await;
    conn.close().await;
    match answer {
        Ok(Some(ServerMessage::Enrolled { client_id, token })) => {
            if !valid_client_id(&client_id) {
                return Err(EnrollError::Protocol(format!(
                    "the server sent an unusable client id '{client_id}'"
                )));
            }
            Ok((client_id, token))
        }
        Ok(Some(ServerMessage::Error { code, message, .. })) => {
            Err(EnrollError::Refused { code, message })
        }
        Ok(Some(other)) => Err(EnrollError::Protocol(format!(
            "unexpected answer from the server: {}",
            kind(&other)
        ))),
        Ok(None) => Err(EnrollError::Protocol(
            "the server closed the connection without answering".into(),
        )),
        Err(e) => Err(EnrollError::Protocol(format!(
            "no answer from the server: {e}"
        ))),
    }
}

/// The message's type, for errors (never its content, which may hold a token).
pub fn kind(msg: &ServerMessage) -> &'static str {
    match msg {
        ServerMessage::Enrolled { .. } => "enrolled",
        ServerMessage::Welcome { .. } => "welcome",
        ServerMessage::Rules { .. } => "rules",
        ServerMessage::Pong { .. } => "pong",
        ServerMessage::Error { .. } => "error",
    }
}

/// The whole enrollment: preflight, redeem, write the bundle to `out`.
pub async fn enroll(
    uri: &EnrollUri,
    out: &Path,
    force: bool,
    name: Option<&str>,
) -> Result<Enrolled, EnrollError> {
    preflight(out, force)?;
    let (client_id, token) = redeem(uri, name).await?;
    let bundle = Bundle {
        version: BUNDLE_VERSION,
        server: uri.server.clone(),
        pin: uri.pin.clone(),
        client_id,
        token,
    };
    bundle
        .write(out, force)
        .map_err(|e| EnrollError::Lost(out.to_path_buf(), bundle.client_id.clone(), e))?;
    Ok(Enrolled {
        bundle,
        path: out.to_path_buf(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn preflight_refuses_existing_bundles_and_leaves_no_probe() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("new/dir/client.bundle.json");
        preflight(&out, false).unwrap();
        assert_eq!(std::fs::read_dir(out.parent().unwrap()).unwrap().count(), 0);
        std::fs::write(&out, "{}").unwrap();
        let err = preflight(&out, false).unwrap_err();
        assert_eq!(err.exit_code(), 73);
        assert!(err.to_string().contains("--force"), "{err}");
        preflight(&out, true).unwrap();
    }

    #[test]
    fn refusals_map_to_exit_statuses() {
        let refused = |code: &str| EnrollError::Refused {
            code: code.into(),
            message: String::new(),
        };
        assert_eq!(refused("invalid_enrollment_code").exit_code(), 77);
        assert_eq!(refused("unsupported_version").exit_code(), 77);
        assert_eq!(refused("shutting_down").exit_code(), 69);
        assert_eq!(
            EnrollError::Dial(DialError::PinMismatch("h:1".into())).exit_code(),
            77
        );
    }
}
