//! The organisation key this device trusts for technicians' session keys.
//!
//! Learned once, at enrollment, from a `dse2_` token (never from the relay
//! afterwards) and kept in `org-key.pub` in the state directory, owner-only
//! like the device key: whoever can replace it can let any technician key
//! in. A device enrolled with a `dse1_` token has no file and trusts the
//! session keys the relay hands it, as before.

use std::path::{Path, PathBuf};

use deskside_net::files::{read_private, write_private};
use deskside_protocol::certificate::OrgKey;

use crate::state::StateError;

/// The file name in the state directory.
pub const ORG_KEY_FILE: &str = "org-key.pub";

fn path(root: &Path) -> PathBuf {
    root.join(ORG_KEY_FILE)
}

/// Records what enrollment learned: the key, or that there is none (a new
/// enrollment with a `dse1_` token removes an older key).
pub fn save(root: &Path, key: Option<OrgKey>) -> Result<(), StateError> {
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
        assert_eq!(load(dir.path()).unwrap(), None);
        save(dir.path(), Some(OrgKey([7; 32]))).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(OrgKey([7; 32])));
        save(dir.path(), None).unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        std::fs::write(path(dir.path()), "garbage").unwrap();
        let mut perms = std::fs::metadata(path(dir.path())).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
        std::fs::set_permissions(path(dir.path()), perms).unwrap();
        assert!(load(dir.path()).is_err());
    }
}
