//! The server's TLS identity: `server.crt` and `server.key` in the data directory.
//!
//! Clients trust the control listener by pinning the certificate's fingerprint (see
//! [`portunus_core::pin`]), so the certificate is self-signed and made once, on first start, and
//! then kept: a new certificate would change the pin and strand every enrolled client. That is
//! why a half-present pair (only one of the two files) is refused rather than replaced, and why
//! the files are written so that neither ever exists under its final name half-written — each is
//! written to a fresh temporary file (the key with mode 0600 from the moment it exists), synced,
//! and then linked into place, which fails rather than overwrite a file that appeared meanwhile.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::sign::CertifiedKey;

use crate::error::{Error, Kind};

pub use portunus_core::pin::{PinnedVerifier, fingerprint_of_der, pinned_client_config};

/// The certificate's file name in the data directory.
pub const CERT_FILE: &str = "server.crt";
/// The private key's file name in the data directory.
pub const KEY_FILE: &str = "server.key";

/// How long a generated certificate is valid (about ten years).
const VALIDITY_DAYS: i64 = 3650;

/// The server's certificate and key, loaded or just made.
pub struct Material {
    /// The certificate (chain) as PEM, as stored in `server.crt`.
    pub cert_pem: String,
    /// `sha256:<hex>` of the end-entity certificate's DER: the pin clients check.
    pub fingerprint: String,
    /// Whether this call generated the pair (first start).
    pub created: bool,
    /// Where the certificate lives.
    pub cert_path: PathBuf,
    /// Where the key lives.
    pub key_path: PathBuf,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Material")
            .field("fingerprint", &self.fingerprint)
            .field("created", &self.created)
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn io_error(what: &str, path: &Path, e: &io::Error) -> Error {
    Error::new(
        Kind::Internal,
        "tls_io",
        format!("cannot {what} {}: {e}", path.display()),
    )
}

fn bad_material(path: &Path, why: impl fmt::Display) -> Error {
    Error::new(
        Kind::Conflict,
        "tls_invalid",
        format!(
            "{} is not usable: {why}; fix or remove both {CERT_FILE} and {KEY_FILE} \
             (removing them makes a new certificate, and every client must then be re-enrolled)",
            path.display()
        ),
    )
}

/// Loads `server.crt` and `server.key` from `data_dir`, or makes a new self-signed pair when
/// neither exists. `names` are extra subject alternative names (host names or IP addresses) on
/// top of `localhost`, `127.0.0.1` and `::1`; they only matter for a new certificate.
pub fn load_or_create(data_dir: &Path, names: &[String]) -> Result<Material, Error> {
    let cert_path = data_dir.join(CERT_FILE);
    let key_path = data_dir.join(KEY_FILE);
    let exists = |p: &Path| p.try_exists().map_err(|e| io_error("check for", p, &e));
    match (exists(&cert_path)?, exists(&key_path)?) {
        (true, true) => load(cert_path, key_path),
        (false, false) => create(data_dir, cert_path, key_path, names),
        (present, _) => {
            let (have, missing) = if present {
                (&cert_path, &key_path)
            } else {
                (&key_path, &cert_path)
            };
            Err(Error::new(
                Kind::Conflict,
                "tls_incomplete",
                format!(
                    "{} exists but {} does not; restore the missing file from a backup, or remove \
                     {} too to make a new certificate (every client must then be re-enrolled)",
                    have.display(),
                    missing.display(),
                    have.display()
                ),
            ))
        }
    }
}

fn load(cert_path: PathBuf, key_path: PathBuf) -> Result<Material, Error> {
    let cert_pem = fs::read_to_string(&cert_path).map_err(|e| io_error("read", &cert_path, &e))?;
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_material(&cert_path, e))?;
    let Some(leaf) = chain.first() else {
        return Err(bad_material(&cert_path, "it holds no certificate"));
    };
    let fingerprint = fingerprint_of_der(leaf.as_ref());

    let key_pem = fs::read(&key_path).map_err(|e| io_error("read", &key_path, &e))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| bad_material(&key_path, e))?;
    if let Ok(meta) = fs::metadata(&key_path)
        && meta.permissions().mode() & 0o077 != 0
    {
        eprintln!(
            "event=tls.key_permissions path={} mode={:o} hint=\"chmod 600 it\"",
            key_path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    // Parses the key and checks it belongs to the certificate.
    CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider()).map_err(|e| {
        bad_material(
            &key_path,
            format!("it does not match {} ({e})", cert_path.display()),
        )
    })?;
    Ok(Material {
        cert_pem,
        fingerprint,
        created: false,
        cert_path,
        key_path,
        chain,
        key,
    })
}

/// The subject alternative names of a new certificate: the defaults, then `names` without
/// duplicates, IPv6 brackets removed.
fn alt_names(names: &[String]) -> Vec<String> {
    let mut all: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for name in names {
        let name = name.trim();
        let name = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        if !name.is_empty() && !all.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            all.push(name.to_string());
        }
    }
    all
}

fn create(
    data_dir: &Path,
    cert_path: PathBuf,
    key_path: PathBuf,
    names: &[String],
) -> Result<Material, Error> {
    let generation_failed = |e: rcgen::Error| {
        Error::new(
            Kind::BadRequest,
            "tls_generate",
            format!("cannot make the server certificate: {e}"),
        )
    };
    let key_pair =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(generation_failed)?;
    let mut params = rcgen::CertificateParams::new(alt_names(names)).map_err(generation_failed)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "portunus-server");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(VALIDITY_DAYS);
    let cert = params.self_signed(&key_pair).map_err(generation_failed)?;

    let cert_pem = cert.pem();
    let key_pem = key_pair.serialize_pem();
    let chain = vec![cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    let fingerprint = fingerprint_of_der(cert.der().as_ref());

    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(|e| io_error("create the directory", data_dir, &e))?;
    // Key first: a crash in between leaves a lone key, which the next start refuses loudly
    // instead of silently pairing a new certificate with it.
    write_new(&key_path, key_pem.as_bytes(), 0o600)?;
    write_new(&cert_path, cert_pem.as_bytes(), 0o644)?;
    if let Ok(dir) = fs::File::open(data_dir) {
        let _ = dir.sync_all();
    }
    eprintln!(
        "event=tls.created cert={} fingerprint={fingerprint}",
        cert_path.display()
    );
    Ok(Material {
        cert_pem,
        fingerprint,
        created: true,
        cert_path,
        key_path,
        chain,
        key,
    })
}

/// Writes `contents` to `path`, which must not exist: into a new temporary file beside it (created
/// with `mode`), synced, then hard-linked to `path` (which fails if `path` exists) and unlinked.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", crate::ids::new_id("new")));
    let written = (|| -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed the mode; make it exactly what was asked.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::hard_link(&tmp, path)
    })();
    let _ = fs::remove_file(&tmp);
    written.map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            Error::new(
                Kind::Conflict,
                "tls_exists",
                format!(
                    "{} appeared while it was being created; refusing to overwrite it",
                    path.display()
                ),
            )
        } else {
            io_error("write", path, &e)
        }
    })
}

impl Material {
    /// A server configuration with this certificate: TLS 1.3 and 1.2, the ring provider, no
    /// client certificates (clients authenticate with their token inside the session).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, Error> {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .and_then(|b| {
                b.with_no_client_auth()
                    .with_single_cert(self.chain.clone(), self.key.clone_key())
            })
            .map_err(|e| bad_material(&self.cert_path, e))?;
        Ok(Arc::new(config))
    }

    /// The end-entity certificate in DER.
    pub fn cert_der(&self) -> Option<&CertificateDer<'static>> {
        self.chain.first()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_first_call_creates_the_pair_and_the_second_loads_it() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["relay.example.com".to_string(), "[2001:db8::1]".to_string()];
        let first = load_or_create(dir.path(), &names).unwrap();
        assert!(first.created);
        assert!(first.fingerprint.starts_with("sha256:"));
        assert_eq!(first.fingerprint.len(), 7 + 64);
        assert_eq!(mode(&dir.path().join(KEY_FILE)), 0o600);
        assert_eq!(mode(&dir.path().join(CERT_FILE)), 0o644);
        assert_eq!(
            fs::read_to_string(dir.path().join(CERT_FILE)).unwrap(),
            first.cert_pem
        );
        // No temporary files are left behind.
        let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 2);
        first.server_config().unwrap();

        let second = load_or_create(dir.path(), &[]).unwrap();
        assert!(!second.created);
        assert_eq!(second.fingerprint, first.fingerprint);
        assert_eq!(
            Some(second.fingerprint.as_str()),
            second
                .cert_der()
                .map(|d| fingerprint_of_der(d.as_ref()))
                .as_deref()
        );
        second.server_config().unwrap();
        assert!(!format!("{second:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_lone_certificate_or_key_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join(CERT_FILE);
        fs::write(&cert, "not touched").unwrap();
        let err = load_or_create(dir.path(), &[]).unwrap_err();
        assert_eq!(err.code, "tls_incomplete");
        assert!(err.message.contains(KEY_FILE), "{}", err.message);
        assert_eq!(fs::read_to_string(&cert).unwrap(), "not touched");
        assert!(!dir.path().join(KEY_FILE).exists());

        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KEY_FILE), "secret").unwrap();
        let err = load_or_create(dir.path(), &[]).unwrap_err();
        assert_eq!(err.code, "tls_incomplete");
        assert!(!dir.path().join(CERT_FILE).exists());
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        load_or_create(a.path(), &[]).unwrap();
        load_or_create(b.path(), &[]).unwrap();
        fs::copy(b.path().join(KEY_FILE), a.path().join(KEY_FILE)).unwrap();
        let err = load_or_create(a.path(), &[]).unwrap_err();
        assert_eq!(err.code, "tls_invalid");

        fs::write(a.path().join(KEY_FILE), "garbage").unwrap();
        assert_eq!(
            load_or_create(a.path(), &[]).unwrap_err().code,
            "tls_invalid"
        );
    }

    #[test]
    fn alternative_names_include_the_defaults_once() {
        let names = alt_names(&["localhost".into(), " [::2] ".into(), String::new()]);
        assert_eq!(names, vec!["localhost", "127.0.0.1", "::1", "::2"]);
    }
}
