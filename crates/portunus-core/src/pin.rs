//! Certificate pinning: how a client trusts exactly one server certificate.
//!
//! The server's control listener uses a self-signed certificate; no certificate authority vouches
//! for it. Instead the enrollment URI carries its fingerprint (`sha256:` and the lowercase hex
//! SHA-256 of the certificate's DER), and a client accepts the server only if it presents that
//! very certificate *and* proves possession of its key by signing the handshake. Names and
//! validity dates are deliberately not checked: the pin is the whole trust decision. The server
//! uses [`fingerprint_of_der`] to print the pin, and the client [`pinned_client_config`] to
//! enforce it, so both compute it the same way.

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{self, CryptoProvider, WebPkiSupportedAlgorithms};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// The prefix of every pin.
pub const PIN_PREFIX: &str = "sha256:";

/// Why a pin or a pinned configuration could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// The text is not `sha256:` followed by 64 hex digits.
    #[error("'{0}' is not a certificate pin (expected sha256: followed by 64 hex digits)")]
    Syntax(String),
    /// rustls refused the configuration.
    #[error("cannot build the TLS configuration: {0}")]
    Tls(String),
}

/// `sha256:` and the lowercase hex SHA-256 of a certificate's DER encoding.
pub fn fingerprint_of_der(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let mut pin = String::with_capacity(PIN_PREFIX.len() + 64);
    pin.push_str(PIN_PREFIX);
    for b in digest {
        pin.push_str(&format!("{b:02x}"));
    }
    pin
}

/// Checks a pin and returns it in canonical form (lowercase hex; the prefix is case-insensitive
/// and surrounding whitespace is ignored).
pub fn normalize_pin(pin: &str) -> Result<String, PinError> {
    let trimmed = pin.trim();
    let hex = trimmed
        .get(..PIN_PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(PIN_PREFIX))
        .and_then(|_| trimmed.get(PIN_PREFIX.len()..))
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| PinError::Syntax(pin.to_string()))?;
    Ok(format!("{PIN_PREFIX}{}", hex.to_ascii_lowercase()))
}

/// A [`ServerCertVerifier`] that accepts exactly the certificate with the pinned fingerprint and
/// checks the handshake signatures against it.
pub struct PinnedVerifier {
    pin: String,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for PinnedVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedVerifier")
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

impl PinnedVerifier {
    /// A verifier for `pin`, checking signatures with the given provider's algorithms.
    pub fn new(pin: &str, provider: &CryptoProvider) -> Result<PinnedVerifier, PinError> {
        Ok(PinnedVerifier {
            pin: normalize_pin(pin)?,
            algorithms: provider.signature_verification_algorithms,
        })
    }

    /// The pin this verifier accepts.
    pub fn pin(&self) -> &str {
        &self.pin
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if fingerprint_of_der(end_entity.as_ref()) == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A client configuration (TLS 1.3 and 1.2, the ring provider, no client certificate) that
/// trusts only the server certificate with fingerprint `pin`.
pub fn pinned_client_config(pin: &str) -> Result<Arc<rustls::ClientConfig>, PinError> {
    let provider = Arc::new(crypto::ring::default_provider());
    let verifier = Arc::new(PinnedVerifier::new(pin, &provider)?);
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PinError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_prefixed_lowercase_sha256() {
        // SHA-256 of the empty string.
        assert_eq!(
            fingerprint_of_der(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn pins_are_normalized_and_checked() {
        let pin = fingerprint_of_der(b"cert");
        assert_eq!(normalize_pin(&pin).unwrap(), pin);
        assert_eq!(
            normalize_pin(&format!(" SHA256:{}\n", pin[7..].to_uppercase())).unwrap(),
            pin
        );
        assert!(normalize_pin("sha256:abc").is_err());
        assert!(normalize_pin(&pin[7..]).is_err());
        assert!(normalize_pin(&format!("md5:{}", &pin[7..])).is_err());
        assert!(normalize_pin(&format!("{}zz", &pin[..pin.len() - 2])).is_err());
        assert!(pinned_client_config("nope").is_err());
        assert!(pinned_client_config(&pin).is_ok());
    }

    #[test]
    fn the_verifier_accepts_only_the_pinned_certificate() {
        let cert = CertificateDer::from(b"not really a certificate".to_vec());
        let other = CertificateDer::from(b"another one".to_vec());
        let provider = crypto::ring::default_provider();
        let verifier = PinnedVerifier::new(&fingerprint_of_der(cert.as_ref()), &provider).unwrap();
        let name = ServerName::try_from("example.com").unwrap();
        let now = UnixTime::now();
        assert!(
            verifier
                .verify_server_cert(&cert, &[], &name, &[], now)
                .is_ok()
        );
        assert!(
            verifier
                .verify_server_cert(&other, &[], &name, &[], now)
                .is_err()
        );
        assert!(!verifier.supported_verify_schemes().is_empty());
    }
}
