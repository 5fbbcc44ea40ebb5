//! The organisation key this device trusts for technicians' session keys,
//! and the binding of its own key that it shows to consoles.
//!
//! Learned once, at enrollment, from a `dse2_` token (never from the relay
//! afterwards) and kept in `org-key.pub` in the state directory, owner-only
//! like the device key: whoever can replace it can let any technician key
//! in. `device-binding.bin` holds the token key's signature over the device
//! key (see `deskside_protocol::certificate::DeviceBinding`); it is public
//! proof, not a secret. A device enrolled with a `dse1_` token has neither
//! and trusts the session keys the relay hands it, as before.

use std::path::{Path, PathBuf};

use deskside_net::files::{read_private, write_private};
use deskside_protocol::certificate::OrgKey;

use crate::state::StateError;

/// The file name in the state directory.
pub const ORG_KEY_FILE: &str = "org-key.pub";
/// The device key binding's file name.
pub const BINDING_FILE: &str = "device-binding.bin";

fn path(root: &Path) -> PathBuf {
    root.join(ORG_KEY_FILE)
}

/// What the device trusts and shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trust {
    /// The organisation key session keys must be certified by.
    pub org_key: Option<OrgKey>,
    /// The encoded binding of the device key, shown to certified consoles.
    pub binding: Option<Vec<u8>>,
}

/// Records what enrollment learned (a new enrollment with a `dse1_` token
/// removes what an older one left).
pub fn save(root: &Path, trust: &Trust) -> Result<(), StateError> {
    save_key(root, trust.org_key)?;
    let binding = root.join(BINDING_FILE);
    match &trust.binding {
        Some(bytes) => write_private(&binding, bytes)?,
        None => remove(binding)?,
    }
    Ok(())
}

/// Loads what enrollment recorded.
pub fn load_trust(root: &Path) -> Result<Trust, StateError> {
    let binding_path = root.join(BINDING_FILE);
    let binding = if binding_path.exists() {
        Some(read_private(&binding_path)?)
    } else {
        None
    };
    Ok(Trust {
        org_key: load(root)?,
        binding,
    })
}

fn remove(path: PathBuf) -> Result<(), StateError> {
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StateError::Damaged {
            path,
            reason: format!("cannot remove it: {e}"),
        }),
    }
}

fn save_key(root: &Path, key: Option<OrgKey>) -> Result<(), StateError> {
    let path = path(root);
    match key {
        Some(key) => write_private(&path, format!("{key}\n").as_bytes())?,
        None => match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StateError::Damaged {
                    path,
                    reason: format!("cannot remove the old organisation key: {e}"),
                })
            }
        },
    }
    Ok(())
}

/// The trusted key, `None` when the device enrolled without one.
pub fn load(root: &Path) -> Result<Option<OrgKey>, StateError> {
    let path = path(root);
    if !path.exists() {
        return Ok(None);
    }
    let bytes = read_private(&path)?;
    let text = String::from_utf8_lossy(&bytes);
    text.trim()
        .parse::<OrgKey>()
        .map(Some)
        .map_err(|e| StateError::Damaged {
            path,
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_round_trips_and_a_plain_enrollment_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_trust(dir.path()).unwrap(), Trust::default());
        let trust = Trust {
            org_key: Some(OrgKey([7; 32])),
            binding: Some(vec![1, 2, 3]),
        };
        save(dir.path(), &trust).unwrap();
        assert_eq!(load_trust(dir.path()).unwrap(), trust);
        save(dir.path(), &Trust::default()).unwrap();
        assert_eq!(load_trust(dir.path()).unwrap(), Trust::default());
        write_private(&path(dir.path()), b"garbage").unwrap();
        assert!(load(dir.path()).is_err());
    }
}
