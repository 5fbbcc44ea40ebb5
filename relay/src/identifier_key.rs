//! The key agents hash Wi‑Fi identifiers (SSID, BSSID) with, kept out of the
//! database.
//!
//! Before, a random salt sat in the organisation's settings, in the same
//! database as the salted hashes: whoever copied the database could test
//! candidate names against the hashes (a BSSID within one vendor prefix is
//! 2^24 guesses, about 17 s). Now the relay keeps one 32-byte secret in
//! `identifier.key` in its data directory (0600, outside `relay.db`) and
//! derives each organisation's key from it with HMAC-SHA256; agents hash
//! with HMAC-SHA256 under that key. Someone holding only the database (a
//! backup, a dump, a stolen file) has hashes and no key, and a 256-bit key
//! cannot be guessed, so no name, access point or home can be recovered
//! from it. Someone holding the whole data directory, or an enrolled
//! device's policy file, still can: back the data directory up separately
//! from the database if that matters.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use deskside_net::files::{read_private, write_private};

use crate::secrets::random_bytes;
use crate::store::OrgId;

/// File name in the data directory.
pub const IDENTIFIER_KEY_FILE: &str = "identifier.key";

/// Domain separation of the per-organisation keys.
const CONTEXT: &[u8] = b"deskside wifi identifier key v1";

/// The relay's identifier master key.
pub struct IdentifierKey {
    master: ring::hmac::Key,
}

impl std::fmt::Debug for IdentifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentifierKey(..)")
    }
}

impl IdentifierKey {
    /// Loads the key from `data_dir`, creating it on first start.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<IdentifierKey> {
        let path = data_dir.join(IDENTIFIER_KEY_FILE);
        let secret = if path.exists() {
            let bytes = read_private(&path)?;
            if bytes.len() != 32 {
                anyhow::bail!(
                    "{} holds {} bytes instead of 32: restore it from a backup (deleting it makes new Wi‑Fi hashes that no longer match the stored ones)",
                    path.display(),
                    bytes.len()
                );
            }
            bytes
        } else {
            let fresh = random_bytes::<32>()
                .map_err(|_| anyhow::anyhow!("the OS random generator failed"))?;
            write_private(&path, &fresh)?;
            fresh.to_vec()
        };
        Ok(IdentifierKey {
            master: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret),
        })
    }

    /// A public name of this key (not the key, nor enough to find it): the
    /// first 8 bytes of an HMAC of a fixed text, hex. Relays sharing a store
    /// compare it (`cluster::keys_id`).
    pub fn key_id(&self) -> String {
        let tag = ring::hmac::sign(&self.master, b"deskside identifier key id");
        hex::encode(&tag.as_ref()[..8])
    }

    /// The key of `org`, base64url, as agents receive it in the policy.
    pub fn for_org(&self, org: OrgId) -> String {
        let mut context = ring::hmac::Context::with_key(&self.master);
        context.update(CONTEXT);
        context.update(&org.0.to_be_bytes());
        URL_SAFE_NO_PAD.encode(context.sign().as_ref())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A test should panic on an unexpected error.
mod tests {
    use super::*;

    #[test]
    fn keys_are_per_organisation_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let key = IdentifierKey::load_or_create(dir.path()).unwrap();
        let one = key.for_org(OrgId(1));
        assert_ne!(one, key.for_org(OrgId(2)));
        assert_eq!(URL_SAFE_NO_PAD.decode(&one).unwrap().len(), 32);
        let again = IdentifierKey::load_or_create(dir.path()).unwrap();
        assert_eq!(again.for_org(OrgId(1)), one);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(
            IdentifierKey::load_or_create(other.path())
                .unwrap()
                .for_org(OrgId(1)),
            one
        );
    }

    #[test]
    fn a_removed_salt_leaves_no_trace_in_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        let store = crate::store::Store::open(&path).unwrap();
        let org = store
            .bootstrap("Org", "admin", &[7; 32], 1)
            .unwrap()
            .unwrap();
        let salt = "OLDSALTFROMANOLDRELAY0123456789";
        let with_salt =
            serde_json::json!({ "identifier_salt": salt, "diagnostics_retention": 200 });
        store
            .set_organisation_settings(
                org,
                &with_salt.to_string(),
                "t",
                &serde_json::json!({}),
                "system",
                2,
            )
            .unwrap();
        // Larger settings: the row moves, and the old cell becomes free space.
        let without = serde_json::json!({
            "identifier_salt": null,
            "diagnostics_retention": 200,
            "thresholds": { "note": "x".repeat(3000) },
        });
        store
            .set_organisation_settings(
                org,
                &without.to_string(),
                "t",
                &serde_json::json!({}),
                "system",
                3,
            )
            .unwrap();
        // Closing checkpoints the WAL into the file.
        drop(store);
        let bytes = std::fs::read(&path).unwrap();
        let wal = std::fs::read(dir.path().join("relay.db-wal")).unwrap_or_default();
        for (name, bytes) in [("relay.db", bytes), ("relay.db-wal", wal)] {
            assert!(
                !bytes.windows(salt.len()).any(|w| w == salt.as_bytes()),
                "{name} still holds the removed salt"
            );
        }
    }
}
