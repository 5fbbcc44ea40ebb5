//! The key of an enrollment in progress, kept across a crash.
//!
//! The relay makes enrollment idempotent: the same key retrying the same
//! token gets the same device and spends no second use. For that to help
//! when the agent dies between the relay's answer and saving its files, the
//! retry must present the same key: so the key is written (owner-only,
//! `enroll-pending.json`) before the token is sent, tagged with the SHA-256
//! of the token's secret, and reused only for that token. It is removed
//! once the enrollment is saved or the relay refused the token.
//!
//! This file never holds the token's secret, only its hash; it never
//! replaces or touches an existing enrollment.

use std::path::PathBuf;

use deskside_net::files::{create_private_dir, read_private, write_private};
use deskside_net::Identity;
use serde::{Deserialize, Serialize};

use crate::state::{StateDir, StateError, AGENT_CERT_NAME};

/// Name of the pending-enrollment file in the state directory.
pub const PENDING_FILE: &str = "enroll-pending.json";

#[derive(Serialize, Deserialize)]
struct Pending {
    /// Hex SHA-256 of the enrollment token's secret.
    token_sha256: String,
    /// The key, PEM.
    key_pem: String,
}

fn token_sha256(secret: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, secret.as_bytes())
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn path(state: &StateDir) -> PathBuf {
    state.root().join(PENDING_FILE)
}

/// The key to enroll with `secret`: the one a previous, interrupted
/// attempt with the same secret used, else a new one, saved first.
pub fn key_for(state: &StateDir, secret: &str) -> Result<Identity, StateError> {
    let file = path(state);
    let wanted = token_sha256(secret);
    if let Ok(bytes) = read_private(&file) {
        if let Ok(pending) = serde_json::from_slice::<Pending>(&bytes) {
            if pending.token_sha256 == wanted {
                if let Ok(identity) = Identity::from_key_pem(&pending.key_pem, &[AGENT_CERT_NAME]) {
                    tracing::info!("retrying an interrupted enrollment with the same key");
                    return Ok(identity);
                }
            }
        }
    }
    let identity = Identity::generate(&[AGENT_CERT_NAME]).map_err(|e| StateError::Damaged {
        path: file.clone(),
        reason: e.to_string(),
    })?;
    let pending = Pending {
        token_sha256: wanted,
        key_pem: identity.key_pem(),
    };
    let json = serde_json::to_vec(&pending).map_err(|e| StateError::Damaged {
        path: file.clone(),
        reason: e.to_string(),
    })?;
    create_private_dir(state.root())?;
    write_private(&file, &json)?;
    Ok(identity)
}

/// Forgets the pending key (the enrollment was saved, or refused).
pub fn clear(state: &StateDir) {
    let file = path(state);
    if let Err(e) = std::fs::remove_file(&file) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %file.display(), "cannot remove the pending enrollment key: {e}");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_same_token_gets_the_same_key_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        let first = key_for(&state, "secret-1").unwrap();
        let again = key_for(&state, "secret-1").unwrap();
        assert_eq!(first.key_pem(), again.key_pem());
        let text = std::fs::read_to_string(path(&state)).unwrap();
        assert!(!text.contains("secret-1"), "the secret is never stored");
        // Another token: a new key (the old one may be enrolled elsewhere).
        let other = key_for(&state, "secret-2").unwrap();
        assert_ne!(other.key_pem(), first.key_pem());
        clear(&state);
        assert!(!path(&state).exists());
        assert_ne!(
            key_for(&state, "secret-2").unwrap().key_pem(),
            other.key_pem()
        );
    }
}
