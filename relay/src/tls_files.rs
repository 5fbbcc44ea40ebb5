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

/// Loads (or creates) the key that signs QUIC stateless resets.
pub fn load_reset_key(data_dir: &Path) -> anyhow::Result<Arc<ring::hmac::Key>> {
    let path = data_dir.join(RESET_KEY);
    let bytes = if path.exists() {
        read_private(&path)?
    } else {
        let fresh =
            random_bytes::<32>().map_err(|_| anyhow::anyhow!("the OS random generator failed"))?;
        write_private(&path, &fresh)?;
        fresh.to_vec()
    };
    Ok(Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        &bytes,
    )))
}
