//! SSH key handling for cpm: creating the tool's own ed25519 key pairs and
//! vetting the public keys users hand us. Both sides are security-sensitive
//! and easy to get subtly wrong, so they live in one place: private keys are
//! written so that they are never readable by anyone else and never appear
//! half-written under their real name, and user keys are checked (one key,
//! a sane algorithm, not a private key pasted by mistake) and re-encoded into
//! one canonical line before anything stores them, with errors that tell the
//! user what was wrong and what to give instead.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use ssh_key::public::KeyData;
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey};

/// The largest public key file (or pasted text) accepted, in bytes.
pub const MAX_PUBLIC_KEY_BYTES: usize = 16 * 1024;

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// The largest RSA modulus accepted, in bits (OpenSSH's own limit).
const MAX_RSA_BITS: usize = 16384;

/// The longest key name accepted by [`generate`].
pub const MAX_NAME_LEN: usize = 64;

/// The longest comment accepted by [`generate`], in bytes.
const MAX_COMMENT_LEN: usize = 1024;

/// How many temporary names [`generate`] tries before giving up.
const TEMP_ATTEMPTS: u32 = 100;

/// Key types accepted from users, as they appear at the start of a `.pub` line.
const ACCEPTED_ALGORITHMS: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// What went wrong while creating, reading or checking a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key name given to [`generate`] is not a plain file name.
    #[error(
        "invalid key name {name:?}: {reason}; use 1-64 characters of A-Z, a-z, 0-9, '.', '_' \
         and '-', not starting with '.' or '-'"
    )]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The comment given to [`generate`] cannot go into a key file.
    #[error("invalid key comment: {reason}")]
    InvalidComment {
        /// What is wrong with it.
        reason: String,
    },

    /// A key file of that name is already there; it was left untouched.
    #[error(
        "{} already exists; refusing to overwrite an existing key (choose another name, \
         or remove the old key first if it is no longer needed)",
        path.display()
    )]
    AlreadyExists {
        /// The file that is in the way.
        path: PathBuf,
    },

    /// Reading or writing a file or directory failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The text is not a usable OpenSSH public key line.
    #[error("not a valid SSH public key: {detail}")]
    NotAPublicKey {
        /// What was wrong and what to do about it.
        detail: String,
    },

    /// The text is a private key, which must never be handed over.
    #[error(
        "this is a private key; give the .pub file (the public half, e.g. ~/.ssh/id_ed25519.pub) \
         instead, and keep the private key to yourself"
    )]
    PrivateKeyGiven,

    /// The text holds more than one public key where one was expected.
    #[error("expected one public key but found {count}; add the keys one at a time")]
    MultipleKeys {
        /// How many key lines were found.
        count: usize,
    },

    /// The key type is known but not accepted (DSA, certificates, unknown types).
    #[error("unsupported key type {algorithm}: {hint}")]
    UnsupportedAlgorithm {
        /// The key type as it appeared in the input.
        algorithm: String,
        /// Why it is refused and what to use instead.
        hint: String,
    },

    /// The key is of an accepted type but too weak (RSA below 2048 bits).
    #[error("weak key: {detail}")]
    WeakKey {
        /// What is weak about it and what to do instead.
        detail: String,
    },

    /// Generating or encoding a new key pair failed.
    #[error("key generation failed: {detail}")]
    Generation {
        /// The underlying failure.
        detail: String,
    },
}

impl KeyError {
    /// A stable snake_case identifier for this kind of error, for JSON output
    /// and scripts.
    pub fn code(&self) -> &'static str {
        match self {
            KeyError::InvalidName { .. } => "invalid_name",
            KeyError::InvalidComment { .. } => "invalid_comment",
            KeyError::AlreadyExists { .. } => "key_exists",
            KeyError::Io { .. } => "io_error",
            KeyError::NotAPublicKey { .. } => "invalid_key",
            KeyError::PrivateKeyGiven => "private_key_given",
            KeyError::MultipleKeys { .. } => "multiple_keys",
            KeyError::UnsupportedAlgorithm { .. } => "unsupported_key_type",
            KeyError::WeakKey { .. } => "weak_key",
            KeyError::Generation { .. } => "key_generation_failed",
        }
    }

    /// The process exit status for this error, following `sysexits.h`:
    /// 64 (usage) for bad names and comments, 65 (data) for bad key material,
    /// 70 (software) for generation failures, 73 (can't create) when the key
    /// exists, 74 (I/O) for file system errors.
    pub fn exit_code(&self) -> u8 {
        match self {
            KeyError::InvalidName { .. } | KeyError::InvalidComment { .. } => 64,
            KeyError::NotAPublicKey { .. }
            | KeyError::PrivateKeyGiven
            | KeyError::MultipleKeys { .. }
            | KeyError::UnsupportedAlgorithm { .. }
            | KeyError::WeakKey { .. } => 65,
            KeyError::Generation { .. } => 70,
            KeyError::AlreadyExists { .. } => 73,
            KeyError::Io { .. } => 74,
        }
    }
}

/// A key pair written by [`generate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratedKey {
    /// Where the private key was written (`<dir>/<name>`); the public key is
    /// next to it with `.pub` appended.
    pub private_key_path: PathBuf,
    /// The public key as one OpenSSH line: `ssh-ed25519 AAAA… comment`.
    pub public_key: String,
    /// The SHA-256 fingerprint, `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

/// A user's public key, checked and re-encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyInfo {
    /// The key type, e.g. `ssh-ed25519`.
    pub algorithm: String,
    /// The SHA-256 fingerprint, `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// The comment after the key data, trimmed; empty if there was none.
    pub comment: String,
    /// The canonical line `<type> <base64> <comment>` (without the comment
    /// when it is empty), suitable for an `authorized_keys` file.
    pub openssh: String,
}

/// Checks that `name` can be used as a key file name: 1–64 characters of
/// `[A-Za-z0-9._-]`, not starting with `.` or `-`. Such a name can never be
/// a path, so it always stays inside the key directory.
pub fn validate_key_name(name: &str) -> Result<(), KeyError> {
    let invalid = |reason| {
        Err(KeyError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("the name is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return invalid("the name is longer than 64 characters");
    }
    if name.contains('/') {
        return invalid("the name contains '/' (it must be a name, not a path)");
    }
    if name.starts_with('.') {
        return invalid("the name starts with '.'");
    }
    if name.starts_with('-') {
        return invalid("the name starts with '-'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return invalid("the name contains a character that is not allowed");
    }
    Ok(())
}

fn validate_comment(comment: &str) -> Result<(), KeyError> {
    if comment.len() > MAX_COMMENT_LEN {
        return Err(KeyError::InvalidComment {
            reason: format!("it is longer than {MAX_COMMENT_LEN} bytes"),
        });
    }
    if comment.chars().any(char::is_control) {
        return Err(KeyError::InvalidComment {
            reason: "it contains a control character such as a newline or tab".to_owned(),
        });
    }
    if comment.trim() != comment {
        return Err(KeyError::InvalidComment {
            reason: "it starts or ends with whitespace".to_owned(),
        });
    }
    Ok(())
}

fn io_error(path: impl Into<PathBuf>, source: impl Into<std::io::Error>) -> KeyError {
    KeyError::Io {
        path: path.into(),
        source: source.into(),
    }
}

fn generation_error(err: ssh_key::Error) -> KeyError {
    KeyError::Generation {
        detail: err.to_string(),
    }
}

/// Generates a new ed25519 key pair and writes it to `<dir>/<name>` (private
/// key, unencrypted OpenSSH format, mode 0600) and `<dir>/<name>.pub` (one
/// public key line ending in `comment`, mode 0644).
///
/// `dir` is created with mode 0700 if it is missing. Existing keys are never
/// replaced: if either file exists the call fails with
/// [`KeyError::AlreadyExists`] and changes nothing. Each file is written under
/// a temporary name in `dir`, synced, and then moved into place without
/// replacing, so a crash never leaves a partial key under the real name. The
/// private key file is created 0600 from the start; it is never more open.
pub fn generate(dir: &Path, name: &str, comment: &str) -> Result<GeneratedKey, KeyError> {
    validate_key_name(name)?;
    validate_comment(comment)?;

    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let public_name = format!("{name}.pub");
    let private_path = dir.join(name);
    let public_path = dir.join(&public_name);

    let dir_fd = open_or_create_dir(dir)?;
    let dir_fd = dir_fd.as_fd();
    ensure_absent(dir_fd, name, &private_path)?;
    ensure_absent(dir_fd, &public_name, &public_path)?;

    let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).map_err(generation_error)?;
    key.set_comment(comment);
    let private_text = key.to_openssh(LineEnding::LF).map_err(generation_error)?;
    let public_key = key.public_key().to_openssh().map_err(generation_error)?;
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();

    let mut private_tmp = write_temp(dir_fd, dir, name, private_text.as_bytes(), 0o600)?;
    let mut public_tmp = write_temp(
        dir_fd,
        dir,
        &public_name,
        format!("{public_key}\n").as_bytes(),
        0o644,
    )?;

    place(&mut private_tmp, name, &private_path)?;
    if let Err(err) = place(&mut public_tmp, &public_name, &public_path) {
        // The private key just placed is ours and useless without its public
        // half being where we said; take it back out.
        let _ = rustix::fs::unlinkat(dir_fd, name, AtFlags::empty());
        return Err(err);
    }
    drop(private_tmp);
    drop(public_tmp);
    rustix::fs::fsync(dir_fd).map_err(|e| io_error(dir, e))?;

    Ok(GeneratedKey {
        private_key_path: private_path,
        public_key,
        fingerprint,
    })
}

/// Opens `dir`, creating it (mode 0700) and any missing parents (default
/// mode) first if needed.
fn open_or_create_dir(dir: &Path) -> Result<OwnedFd, KeyError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.mode(0o700);
    let created = match builder.create(dir) {
        Ok(()) => true,
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
            }
            match builder.create(dir) {
                Ok(()) => true,
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => false,
                Err(err) => return Err(io_error(dir, err)),
            }
        }
        Err(err) => return Err(io_error(dir, err)),
    };
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_error(dir, e))?;
    if created {
        // The umask may have taken bits away; make it exactly 0700.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700)).map_err(|e| io_error(dir, e))?;
    }
    Ok(fd)
}

fn ensure_absent(dir_fd: BorrowedFd<'_>, name: &str, path: &Path) -> Result<(), KeyError> {
    match rustix::fs::statat(dir_fd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(_) => Err(KeyError::AlreadyExists {
            path: path.to_owned(),
        }),
        Err(Errno::NOENT) => Ok(()),
        Err(err) => Err(io_error(path, err)),
    }
}

/// A file under a temporary name in the key directory; removed on drop
/// unless it was renamed into place.
struct TempEntry<'a> {
    dir_fd: BorrowedFd<'a>,
    dir: &'a Path,
    name: String,
    renamed: bool,
}

impl Drop for TempEntry<'_> {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = rustix::fs::unlinkat(self.dir_fd, self.name.as_str(), AtFlags::empty());
        }
    }
}

/// Writes `contents` to a new file `.<base>.<pid>.<n>.tmp` in the directory,
/// created exclusively with `mode`, and syncs it.
fn write_temp<'a>(
    dir_fd: BorrowedFd<'a>,
    dir: &'a Path,
    base: &str,
    contents: &[u8],
    mode: u32,
) -> Result<TempEntry<'a>, KeyError> {
    let pid = rustix::process::getpid().as_raw_nonzero();
    let mut attempt = 0;
    let (entry, fd) = loop {
        let name = format!(".{base}.{pid}.{attempt}.tmp");
        match rustix::fs::openat(
            dir_fd,
            name.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        ) {
            Ok(fd) => {
                let entry = TempEntry {
                    dir_fd,
                    dir,
                    name,
                    renamed: false,
                };
                break (entry, fd);
            }
            Err(Errno::EXIST) if attempt + 1 < TEMP_ATTEMPTS => attempt += 1,
            Err(err) => return Err(io_error(dir.join(name), err)),
        }
    };
    let tmp_path = dir.join(&entry.name);
    // The umask can only have removed bits; set the exact mode while the file
    // is still empty.
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| io_error(&tmp_path, e))?;
    let mut file = File::from(fd);
    file.write_all(contents)
        .map_err(|e| io_error(&tmp_path, e))?;
    file.sync_all().map_err(|e| io_error(&tmp_path, e))?;
    Ok(entry)
}

/// Moves a temporary file to `final_name` without ever replacing an existing
/// file.
fn place(tmp: &mut TempEntry<'_>, final_name: &str, final_path: &Path) -> Result<(), KeyError> {
    let exists = || KeyError::AlreadyExists {
        path: final_path.to_owned(),
    };
    match rustix::fs::renameat_with(
        tmp.dir_fd,
        tmp.name.as_str(),
        tmp.dir_fd,
        final_name,
        RenameFlags::NOREPLACE,
    ) {
        Ok(()) => {
            tmp.renamed = true;
            Ok(())
        }
        Err(Errno::EXIST) => Err(exists()),
        Err(Errno::INVAL | Errno::NOSYS) => {
            // No RENAME_NOREPLACE here: a hard link also refuses to replace;
            // dropping `tmp` then removes the temporary name.
            match rustix::fs::linkat(
                tmp.dir_fd,
                tmp.name.as_str(),
                tmp.dir_fd,
                final_name,
                AtFlags::empty(),
            ) {
                Ok(()) => Ok(()),
                Err(Errno::EXIST) => Err(exists()),
                Err(err) => Err(io_error(final_path, err)),
            }
        }
        Err(err) => Err(io_error(tmp.dir.join(&tmp.name), err)),
    }
}

/// Reads and checks a public key file, as [`parse_public_key`] does for text.
///
/// Fails with [`KeyError::Io`] if the file is missing or unreadable, and with
/// [`KeyError::NotAPublicKey`] if it is not a regular file, is larger than
/// 16 KiB, or is not text.
pub fn read_public_key_file(path: &Path) -> Result<PublicKeyInfo, KeyError> {
    let not_key = |detail: String| KeyError::NotAPublicKey {
        detail: format!("{}: {detail}", path.display()),
    };
    // Non-blocking so that a FIFO cannot hang us; harmless for regular files.
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|e| io_error(path, e))?;
    let file = File::from(fd);
    let metadata = file.metadata().map_err(|e| io_error(path, e))?;
    if !metadata.is_file() {
        return Err(not_key(
            "not a regular file; give the path of a .pub file".to_owned(),
        ));
    }
    let too_large = || {
        not_key(format!(
            "the file is larger than {} KiB, far more than any public key; is it the right file?",
            MAX_PUBLIC_KEY_BYTES / 1024
        ))
    };
    if metadata.len() > MAX_PUBLIC_KEY_BYTES as u64 {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(MAX_PUBLIC_KEY_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, e))?;
    if bytes.len() > MAX_PUBLIC_KEY_BYTES {
        return Err(too_large());
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        not_key("the file is not text; give the .pub file, which is one line of text".to_owned())
    })?;
    parse_public_key(&text).map_err(|err| match err {
        KeyError::NotAPublicKey { detail } => not_key(detail),
        other => other,
    })
}

/// Returns the `SHA256:…` fingerprint of one OpenSSH public key line, after
/// the same checks as [`parse_public_key`].
pub fn fingerprint_of(openssh_line: &str) -> Result<String, KeyError> {
    parse_public_key(openssh_line).map(|info| info.fingerprint)
}

fn not_a_key(detail: impl Into<String>) -> KeyError {
    KeyError::NotAPublicKey {
        detail: detail.into(),
    }
}

/// Splits off the first whitespace-separated token of `s` (which must not
/// start with whitespace); returns it and the rest with leading whitespace
/// removed.
fn split_token(s: &str) -> (&str, &str) {
    match s.find(char::is_whitespace) {
        Some(at) => (&s[..at], s[at..].trim_start()),
        None => (s, ""),
    }
}

fn is_key_type(token: &str) -> bool {
    ACCEPTED_ALGORITHMS.contains(&token)
        || token == "ssh-dss"
        || token.ends_with("-cert-v01@openssh.com")
}

/// Does this look like the name of a key type, accepted or not?
fn looks_like_key_type(token: &str) -> bool {
    token.len() <= 64
        && (token.starts_with("ssh-")
            || token.starts_with("ecdsa-")
            || token.starts_with("sk-")
            || token.starts_with("rsa-")
            || token.starts_with("x509v3-"))
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'@' | b'.' | b'_'))
}

/// Is this line probably an OpenSSH public key line, possibly with
/// `authorized_keys` options in front?
fn looks_like_key_line(line: &str) -> bool {
    line.split_whitespace()
        .take(8)
        .any(|t| is_key_type(t) || looks_like_key_type(t))
}

fn is_private_key_marker(line: &str) -> bool {
    ((line.starts_with("-----BEGIN ") || line.starts_with("---- BEGIN "))
        && line.contains("PRIVATE KEY"))
        || line.starts_with("PuTTY-User-Key-File-")
}

fn bit_length(big_endian: &[u8]) -> usize {
    let start = big_endian
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(big_endian.len());
    let digits = &big_endian[start..];
    match digits.first() {
        None => 0,
        Some(&top) => (digits.len() - 1) * 8 + (u8::BITS - top.leading_zeros()) as usize,
    }
}

/// Parses and checks one OpenSSH public key line, as found in a `.pub` file:
/// `<type> <base64> [comment]`, with surrounding whitespace ignored.
///
/// Accepted types: `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ecdsa-sha2-nistp384`,
/// `ecdsa-sha2-nistp521`, `ssh-rsa` (2048 to 16384 bits), and the security-key
/// types `sk-ssh-ed25519@openssh.com` and `sk-ecdsa-sha2-nistp256@openssh.com`.
/// Refused, each with its own error: empty input, private keys, more than one
/// key, text that is not a key line (including damaged or truncated key data,
/// `authorized_keys` options and other key formats), DSA keys, certificates,
/// other key types, and RSA keys under 2048 bits.
pub fn parse_public_key(text: &str) -> Result<PublicKeyInfo, KeyError> {
    if text.len() > MAX_PUBLIC_KEY_BYTES {
        return Err(not_a_key(format!(
            "the input is larger than {} KiB, far more than any public key",
            MAX_PUBLIC_KEY_BYTES / 1024
        )));
    }
    let text = text.trim();
    if text.is_empty() {
        return Err(not_a_key(
            "the input is empty; give the one line from your public key file \
             (e.g. ~/.ssh/id_ed25519.pub)",
        ));
    }

    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.iter().any(|l| is_private_key_marker(l)) {
        return Err(KeyError::PrivateKeyGiven);
    }
    if lines
        .iter()
        .any(|l| l.starts_with("---- BEGIN SSH2 PUBLIC KEY"))
    {
        return Err(not_a_key(
            "this is an RFC 4716 (SSH2) public key; convert it with \
             `ssh-keygen -i -f FILE` and give the one line it prints",
        ));
    }
    if lines
        .iter()
        .any(|l| l.starts_with("-----BEGIN ") && l.contains("PUBLIC KEY"))
    {
        return Err(not_a_key(
            "this is a PEM public key; convert it with `ssh-keygen -i -m PKCS8 -f FILE` \
             and give the one line it prints",
        ));
    }
    let lines: Vec<&str> = lines.into_iter().filter(|l| !l.starts_with('#')).collect();
    let line = match lines.as_slice() {
        [] => {
            return Err(not_a_key(
                "the input holds only comment lines; give the key line itself",
            ));
        }
        [line] => *line,
        several => {
            let keys = several.iter().filter(|l| looks_like_key_line(l)).count();
            if keys > 1 {
                return Err(KeyError::MultipleKeys { count: keys });
            }
            return Err(not_a_key(format!(
                "the input spans {} lines, but a public key is a single line; if it was \
                 wrapped when copying, copy it again as one line",
                several.len()
            )));
        }
    };

    let (key_type, rest) = split_token(line);
    let (base64, comment) = split_token(rest);
    check_key_type(key_type, line)?;
    if base64.is_empty() {
        return Err(not_a_key(format!(
            "the key data is missing after `{key_type}`; give the whole line from the .pub file"
        )));
    }
    if comment.chars().any(|c| c.is_control() && c != '\t') {
        return Err(not_a_key(
            "the comment after the key data contains control characters",
        ));
    }

    let mut key =
        PublicKey::from_openssh(&format!("{key_type} {base64}")).map_err(|err| match err {
            ssh_key::Error::AlgorithmUnknown => not_a_key(format!(
                "the key data does not match the key type `{key_type}`; the line may have \
                 been edited or damaged, copy it again from the .pub file"
            )),
            other => not_a_key(format!(
                "the key data is damaged or truncated ({other}); copy the whole line again \
                 from the .pub file"
            )),
        })?;
    let reencoded = key
        .to_openssh()
        .map_err(|err| not_a_key(format!("the key cannot be re-encoded ({err})")))?;
    if reencoded != format!("{key_type} {base64}") {
        return Err(not_a_key(
            "the key data is not in the canonical encoding; copy the line again from the \
             .pub file",
        ));
    }
    check_key_data(key.key_data(), key_type)?;

    key.set_comment(comment);
    let openssh = key
        .to_openssh()
        .map_err(|err| not_a_key(format!("the key cannot be re-encoded ({err})")))?;
    Ok(PublicKeyInfo {
        algorithm: key.algorithm().as_str().to_owned(),
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        comment: comment.to_owned(),
        openssh,
    })
}

/// Refuses key types we do not accept, before looking at the key data.
fn check_key_type(key_type: &str, line: &str) -> Result<(), KeyError> {
    if ACCEPTED_ALGORITHMS.contains(&key_type) {
        return Ok(());
    }
    let unsupported = |hint: &str| {
        Err(KeyError::UnsupportedAlgorithm {
            algorithm: key_type.to_owned(),
            hint: hint.to_owned(),
        })
    };
    if key_type == "ssh-dss" {
        return unsupported(
            "DSA keys are insecure and no longer accepted by OpenSSH; create a new key with \
             `ssh-keygen -t ed25519` and give its .pub file",
        );
    }
    if key_type.ends_with("-cert-v01@openssh.com") {
        return unsupported(
            "OpenSSH certificates are not accepted; give the plain public key \
             (the .pub file without -cert in its name)",
        );
    }
    if looks_like_key_type(key_type) {
        return unsupported(&format!(
            "accepted types are {}; create a key with `ssh-keygen -t ed25519`",
            ACCEPTED_ALGORITHMS.join(", ")
        ));
    }
    if line.split_whitespace().skip(1).any(is_key_type) {
        return Err(not_a_key(
            "the line has something (perhaps authorized_keys options) before the key type; \
             give only the key line, starting with its type such as ssh-ed25519",
        ));
    }
    if key_type.starts_with("AAAA") {
        return Err(not_a_key(
            "the key type is missing; the line must start with it, e.g. `ssh-ed25519 AAAA…`",
        ));
    }
    Err(not_a_key(
        "this does not look like an OpenSSH public key, which is one line such as \
         `ssh-ed25519 AAAA… you@host`; give the contents of your .pub file",
    ))
}

/// Checks what only the decoded key data can tell: the RSA key size, and
/// that the type is one we accept.
fn check_key_data(data: &KeyData, key_type: &str) -> Result<(), KeyError> {
    match data {
        KeyData::Ed25519(_)
        | KeyData::Ecdsa(_)
        | KeyData::SkEd25519(_)
        | KeyData::SkEcdsaSha2NistP256(_) => Ok(()),
        KeyData::Rsa(rsa) => {
            let modulus = rsa
                .n
                .as_positive_bytes()
                .ok_or_else(|| not_a_key("the RSA modulus is negative"))?;
            let bits = bit_length(modulus);
            if bits < MIN_RSA_BITS {
                return Err(KeyError::WeakKey {
                    detail: format!(
                        "this RSA key has {bits} bits, fewer than the {MIN_RSA_BITS} required; \
                         create a new key, preferably with `ssh-keygen -t ed25519`"
                    ),
                });
            }
            if bits > MAX_RSA_BITS {
                return Err(not_a_key(format!(
                    "this RSA key has {bits} bits, more than OpenSSH's limit of {MAX_RSA_BITS}"
                )));
            }
            Ok(())
        }
        _ => Err(KeyError::UnsupportedAlgorithm {
            algorithm: key_type.to_owned(),
            hint: format!("accepted types are {}", ACCEPTED_ALGORITHMS.join(", ")),
        }),
    }
}
