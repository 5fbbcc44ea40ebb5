//! The relay's long-lived key material in its data directory.
//!
//! In `--dev` mode the relay creates a self-signed certificate on first start
//! and keeps it, so the fingerprint pinned by enrolled agents stays valid
//! across restarts. The stateless-reset key is kept too: after a restart the
//! relay can then tell agents at once that their old connection is gone,
//! instead of letting them wait for the idle timeout.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use deskside_net::files::{read_private, write_private};
use deskside_net::Identity;

use crate::config::CertSource;
use crate::secrets::random_bytes;

const DEV_CERT: &str = "relay-cert.pem";
const DEV_KEY: &str = "relay-key.pem";
const RESET_KEY: &str = "reset.key";

/// Loads the relay's certificate and key, creating them in `--dev` mode.
pub fn load_identity(data_dir: &Path, source: &CertSource) -> anyhow::Result<Identity> {
    match source {
        CertSource::Files { cert, key } => {
            let cert_pem = std::fs::read_to_string(cert)
                .with_context(|| format!("cannot read the TLS certificate {}", cert.display()))?;
            let key_pem = String::from_utf8(read_private(key)?)
                .with_context(|| format!("the TLS key {} is not PEM text", key.display()))?;
            Identity::from_pem(&cert_pem, &key_pem)
                .with_context(|| format!("cannot use {} and {}", cert.display(), key.display()))
        }
        CertSource::SelfSigned => {
            let cert_path = data_dir.join(DEV_CERT);
            let key_path = data_dir.join(DEV_KEY);
            if cert_path.exists() && key_path.exists() {
                let cert_pem = std::fs::read_to_string(&cert_path)
                    .with_context(|| format!("cannot read {}", cert_path.display()))?;
                let key_pem = String::from_utf8(read_private(&key_path)?)
                    .with_context(|| format!("{} is not PEM text", key_path.display()))?;
                return Identity::from_pem(&cert_pem, &key_pem).with_context(|| {
                    format!("the dev certificate in {} is damaged; delete {DEV_CERT} and {DEV_KEY} to create new ones (enrolled agents will then need new tokens)", data_dir.display())
                });
            }
            let identity = Identity::generate(&["deskside-relay", "localhost"])?;
            write_private(&key_path, identity.key_pem().as_bytes())?;
            write_private(&cert_path, identity.cert_pem().as_bytes())?;
            tracing::info!(fingerprint = %identity.fingerprint(), "created a self-signed dev certificate");
            Ok(identity)
        }
    }
}

/// The relay's certificate and key if they exist, creating nothing: from
/// the configured files, or the self-signed pair in the data directory
/// (`None` when the relay has not made it yet).
pub fn stored_identity(data_dir: &Path, source: &CertSource) -> anyhow::Result<Option<Identity>> {
    match source {
        CertSource::Files { .. } => load_identity(data_dir, source).map(Some),
        CertSource::SelfSigned => {
            if data_dir.join(DEV_CERT).exists() && data_dir.join(DEV_KEY).exists() {
                load_identity(data_dir, source).map(Some)
            } else {
                Ok(None)
            }
        }
    }
}

/// The QUIC endpoint's configuration, built from the data directory's
/// secret ([`endpoint_secret`]).
///
/// Two things must survive a restart for agents to notice it at once: the
/// key that signs stateless resets, and the key that validates connection
/// ids (quinn's default generator draws it at random per process, and a new
/// process silently drops packets whose ids it cannot validate instead of
/// answering with a reset). Both are derived from one 32-byte secret.
pub fn endpoint_config(secret: &[u8]) -> quinn::EndpointConfig {
    let master = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let reset = ring::hmac::sign(&master, b"deskside stateless reset");
    let cid = ring::hmac::sign(&master, b"deskside connection id");
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&cid.as_ref()[..8]);
    let cid_key = u64::from_be_bytes(cid_key);
    let mut config = quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        reset.as_ref(),
    )));
    // quinn sends at most one reset per 20 ms by default, so after a restart
    // 10,000 agents would learn of it over 200 s, most of them by timing out
    // instead. A reset is always smaller than the packet that triggers it, so
    // it cannot amplify traffic; allow up to 10,000 per second.
    config.min_reset_interval(std::time::Duration::from_micros(100));
    // Park datagrams share the port (crate::park): peers must keep
    // QUIC's fixed bit set, which they may clear only if we advertise
    // greasing it (RFC 9287).
    config.grease_quic_bit(false);
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    config
}

/// The 32-byte secret in the data directory behind the endpoint's
/// stateless behaviour and park tickets (created on first use).
pub fn endpoint_secret(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join(RESET_KEY);
    if path.exists() {
        return Ok(read_private(&path)?);
    }
    let fresh =
        random_bytes::<32>().map_err(|_| anyhow::anyhow!("the OS random generator failed"))?;
    write_private(&path, &fresh)?;
    Ok(fresh.to_vec())
}
