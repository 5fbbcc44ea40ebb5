//! TLS for deskside: certificate pinning instead of a CA.
//!
//! The relay's certificate is pinned by its SHA-256 fingerprint (carried in
//! enrollment tokens and login strings). Agents authenticate with a
//! self-signed certificate over the key they generated at enrollment; the
//! relay accepts any well-formed client certificate at the TLS layer, because
//! the TLS handshake already proves possession of the key, and then looks its
//! public key up among enrolled devices before accepting a single message.
//! Consoles connect without a client certificate and authenticate with a
//! technician token instead.

use std::sync::{Arc, Mutex};

use deskside_protocol::Fingerprint;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use thiserror::Error;

/// Name the relay's certificate is issued for. Clients always connect with
/// this server name: trust comes from the pinned fingerprint, not the name.
pub const RELAY_SERVER_NAME: &str = "deskside-relay";

/// Errors building TLS material.
#[derive(Debug, Error)]
pub enum TlsError {
    /// Key generation or certificate creation failed.
    #[error("cannot create a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// rustls refused the configuration (for example a key that does not
    /// match its certificate).
    #[error("TLS configuration refused: {0}")]
    Config(#[from] rustls::Error),
    /// A certificate could not be parsed.
    #[error("malformed certificate: {0}")]
    Malformed(String),
    /// A key file is not PEM-encoded PKCS#8.
    #[error("cannot read the private key: {0}")]
    Key(String),
}

/// The crypto provider every deskside TLS configuration uses: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// SHA-256 over a certificate's DER encoding.
pub fn fingerprint_of(cert_der: &[u8]) -> Fingerprint {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert_der);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    Fingerprint(out)
}

/// The DER-encoded SubjectPublicKeyInfo of a certificate: the identity of a
/// device, independent of the self-signed certificate wrapped around it.
pub fn spki_of(cert_der: &[u8]) -> Result<Vec<u8>, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| TlsError::Malformed(e.to_string()))?;
    Ok(cert.public_key().raw.to_vec())
}

/// A key pair with a self-signed certificate over it.
#[derive(Clone)]
pub struct Identity {
    /// The certificate, DER.
    pub cert: CertificateDer<'static>,
    /// The PKCS#8 private key, DER.
    key_der: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &fingerprint_of(&self.cert))
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Generates a fresh ECDSA P-256 key and a self-signed certificate for
    /// `names` (subject alternative names).
    pub fn generate(names: &[&str]) -> Result<Self, TlsError> {
        let key = rcgen::KeyPair::generate()?;
        Self::self_signed(&key, names)
    }

    /// Wraps an existing key (PKCS#8 PEM) in a new self-signed certificate.
    /// The public key, and so the device identity, is unchanged.
    pub fn from_key_pem(pem: &str, names: &[&str]) -> Result<Self, TlsError> {
        let key = rcgen::KeyPair::from_pem(pem).map_err(|e| TlsError::Key(e.to_string()))?;
        Self::self_signed(&key, names)
    }

    /// Loads a certificate and key from PEM text (for a relay with a real
    /// certificate). Only the first certificate of the chain is used.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let key = rcgen::KeyPair::from_pem(key_pem).map_err(|e| TlsError::Key(e.to_string()))?;
        let cert = pem_certificate(cert_pem)?;
        Ok(Self {
            cert,
            key_der: key.serialize_der(),
        })
    }

    fn self_signed(key: &rcgen::KeyPair, names: &[&str]) -> Result<Self, TlsError> {
        let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let mut params = rcgen::CertificateParams::new(names)?;
        // Pinned certificates never expire in practice; renewal is replacing
        // the key, which changes the fingerprint.
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(4000, 1, 1);
        let cert = params.self_signed(key)?;
        Ok(Self {
            cert: cert.der().clone(),
            key_der: key.serialize_der(),
        })
    }

    /// The private key as PKCS#8 PEM, for storing on disk.
    pub fn key_pem(&self) -> String {
        pem_encode("PRIVATE KEY", &self.key_der)
    }

    /// The certificate as PEM, for storing on disk.
    pub fn cert_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.cert)
    }

    /// The certificate's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        fingerprint_of(&self.cert)
    }

    /// The DER-encoded SubjectPublicKeyInfo.
    pub fn spki(&self) -> Result<Vec<u8>, TlsError> {
        spki_of(&self.cert)
    }

    fn rustls_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// A TLS 1.3 server configuration presenting this identity and asking
    /// (not requiring) a client certificate.
    pub fn server_config(&self, alpn: &[u8]) -> Result<rustls::ServerConfig, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(AnyClientCert {
                provider: provider(),
            }))
            .with_single_cert(vec![self.cert.clone()], self.rustls_key())?;
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(config)
    }
}

/// A TLS 1.3 client configuration that trusts exactly the certificate with
/// `pin`'s fingerprint, optionally presenting `identity`.
///
/// The returned [`PinCheck`] tells, after a failed handshake, which
/// certificate the server presented instead.
pub fn client_config(
    pin: Fingerprint,
    identity: Option<&Identity>,
    alpn: &[u8],
) -> Result<(rustls::ClientConfig, PinCheck), TlsError> {
    let check = PinCheck::default();
    let verifier = PinnedServer {
        pin,
        provider: provider(),
        seen: check.clone(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match identity {
        Some(id) => builder.with_client_auth_cert(vec![id.cert.clone()], id.rustls_key())?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok((config, check))
}

/// Records the fingerprint a server presented when it did not match the pin.
#[derive(Clone, Debug, Default)]
pub struct PinCheck(Arc<Mutex<Option<Fingerprint>>>);

impl PinCheck {
    /// The mismatching fingerprint, if the handshake failed on the pin.
    pub fn mismatch(&self) -> Option<Fingerprint> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The handshake-signature checks both verifiers share: pinning replaces
/// the certificate chain check, never the proof that the peer holds the key.
/// Expands inside an `impl` whose type has a `provider: Arc<CryptoProvider>`.
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

#[derive(Debug)]
struct PinnedServer {
    pin: Fingerprint,
    provider: Arc<CryptoProvider>,
    seen: PinCheck,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let found = fingerprint_of(end_entity);
        if found == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            *self.seen.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(found);
            Err(rustls::Error::General(format!(
                "relay certificate fingerprint {found} does not match the pinned {}",
                self.pin
            )))
        }
    }

    handshake_signatures!();
}

/// Accepts any parseable client certificate, or none. Possession of the key
/// is proven by the handshake signature, which is still verified; whether the
/// key belongs to an enrolled device is the relay's decision after the
/// handshake.
#[derive(Debug)]
struct AnyClientCert {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        spki_of(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        Ok(ClientCertVerified::assertion())
    }

    handshake_signatures!();
}

/// SHA-256 over a DER-encoded SubjectPublicKeyInfo: the fingerprint of a
/// *key*, which stays the same across the self-signed certificates wrapped
/// around it (an agent re-wraps its key in a fresh certificate on every
/// start, so its certificate fingerprint changes but this does not).
pub fn key_fingerprint(spki_der: &[u8]) -> Fingerprint {
    fingerprint_of(spki_der)
}

/// The key fingerprint ([`key_fingerprint`]) of a DER certificate.
pub fn key_fingerprint_of(cert_der: &[u8]) -> Result<Fingerprint, TlsError> {
    Ok(key_fingerprint(&spki_of(cert_der)?))
}

impl Identity {
    /// The fingerprint of this identity's public key (see
    /// [`key_fingerprint`]), which peers pin for end-to-end sessions.
    pub fn key_fingerprint(&self) -> Result<Fingerprint, TlsError> {
        key_fingerprint_of(&self.cert)
    }
}

/// A TLS 1.3 server configuration for an end-to-end session: presents
/// `identity` and *requires* a client certificate over exactly the key whose
/// fingerprint ([`key_fingerprint`]) is `peer_key`.
///
/// The returned [`PinCheck`] tells, after a failed handshake, which key the
/// client presented instead.
pub fn pinned_key_server_config(
    identity: &Identity,
    peer_key: Fingerprint,
    alpn: &[u8],
) -> Result<(rustls::ServerConfig, PinCheck), TlsError> {
    let check = PinCheck::default();
    let verifier = PinnedKey {
        pin: peer_key,
        provider: provider(),
        seen: check.clone(),
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(vec![identity.cert.clone()], identity.rustls_key())?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok((config, check))
}

/// A TLS 1.3 client configuration for an end-to-end session: presents
/// `identity` and trusts exactly the server key whose fingerprint
/// ([`key_fingerprint`]) is `peer_key`.
pub fn pinned_key_client_config(
    identity: &Identity,
    peer_key: Fingerprint,
    alpn: &[u8],
) -> Result<(rustls::ClientConfig, PinCheck), TlsError> {
    let check = PinCheck::default();
    let verifier = PinnedKey {
        pin: peer_key,
        provider: provider(),
        seen: check.clone(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(vec![identity.cert.clone()], identity.rustls_key())?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok((config, check))
}

/// Trusts exactly one public key, whatever certificate carries it; used in
/// both directions of an end-to-end session.
#[derive(Debug)]
struct PinnedKey {
    pin: Fingerprint,
    provider: Arc<CryptoProvider>,
    seen: PinCheck,
}

impl PinnedKey {
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let found = key_fingerprint_of(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        if found == self.pin {
            Ok(())
        } else {
            *self.seen.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(found);
            Err(rustls::Error::General(format!(
                "peer key fingerprint {found} does not match the pinned {}",
                self.pin
            )))
        }
    }
}

impl ServerCertVerifier for PinnedKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures!();
}

impl ClientCertVerifier for PinnedKey {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    handshake_signatures!();
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pem_certificate(pem: &str) -> Result<CertificateDer<'static>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| TlsError::Malformed(format!("certificate PEM: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_survives_a_pem_round_trip_with_the_same_public_key() {
        let id = Identity::generate(&["deskside-agent"]).unwrap();
        let again = Identity::from_key_pem(&id.key_pem(), &["deskside-agent"]).unwrap();
        assert_eq!(id.spki().unwrap(), again.spki().unwrap());
        let loaded = Identity::from_pem(&id.cert_pem(), &id.key_pem()).unwrap();
        assert_eq!(loaded.fingerprint(), id.fingerprint());
    }
}
