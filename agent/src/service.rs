//! How the installed agent service is laid out: its user, its state
//! directory, and the token an installer leaves for it.
//!
//! The packages (see `installers/linux/`) create a system user
//! `deskside-agent` that owns `/var/lib/deskside-agent`. An administrator
//! enrolls with `sudo deskside-agent enroll TOKEN`, or leaves the token in
//! `/etc/deskside/enroll-token` (or in `DESKSIDE_ENROLL_TOKEN` at install
//! time), which `enroll --from-config` consumes once. Enrollment run as root
//! hands the state directory to the service user afterwards, so the service
//! never needs root.

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The system user the packaged service runs as.
pub const SERVICE_USER: &str = "deskside-agent";

/// The state directory of the packaged service.
pub const SYSTEM_STATE_DIR: &str = "/var/lib/deskside-agent";

/// Where an installer leaves a token to be consumed once.
pub const TOKEN_FILE: &str = "/etc/deskside/enroll-token";

/// Errors met handling the service layout.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// The token file could not be read.
    #[error("cannot read the enrollment token file {path}: {source}")]
    ReadToken {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The token file is readable by other users.
    #[error("{path} is readable by other users (mode {mode:o}); it holds a secret: run `chmod 600 {path}` and try again")]
    TokenExposed {
        /// Which file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// The token file could not be deleted after use.
    #[error("enrolled, but cannot delete the used token file {path}: {source}; delete it by hand")]
    RemoveToken {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The token file holds no token.
    #[error("{0} is empty: put the enrollment token from IT in it, or run `sudo deskside-agent enroll TOKEN`")]
    EmptyToken(PathBuf),
    /// Ownership could not be handed to the service user.
    #[error("cannot give {path} to the {user} user: {source}")]
    Chown {
        /// Which path.
        path: PathBuf,
        /// Which user.
        user: &'static str,
        /// Why.
        source: io::Error,
    },
}

/// Reads a token file, refusing one that other users can read.
///
/// Returns `None` when the file does not exist.
pub fn read_token_file(path: &Path) -> Result<Option<String>, ServiceError> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ServiceError::ReadToken {
                path: path.to_owned(),
                source,
            })
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ServiceError::TokenExposed {
                path: path.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = std::fs::read_to_string(path).map_err(|source| ServiceError::ReadToken {
        path: path.to_owned(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ServiceError::EmptyToken(path.to_owned()));
    }
    Ok(Some(token.to_owned()))
}

/// The service user's uid and gid, when this system has that user.
#[cfg(unix)]
pub fn service_user() -> Option<(u32, u32)> {
    let user = nix::unistd::User::from_name(SERVICE_USER).ok().flatten()?;
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

/// Gives `root` and everything in it to the service user, when the caller is
/// root, `root` is the packaged state directory and the user exists. Returns
/// whether it did.
///
/// Enrollment run with `sudo` writes the key as root; without this the
/// unprivileged service could not read it.
#[cfg(unix)]
pub fn hand_to_service_user(root: &Path) -> Result<bool, ServiceError> {
    if !crate::state::is_root() || root != Path::new(SYSTEM_STATE_DIR) {
        return Ok(false);
    }
    let Some((uid, gid)) = service_user() else {
        return Ok(false);
    };
    chown_tree(root, uid, gid)?;
    Ok(true)
}

#[cfg(unix)]
fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<(), ServiceError> {
    let fail = |source| ServiceError::Chown {
        path: path.to_owned(),
        user: SERVICE_USER,
        source,
    };
    // lchown: never follow a link planted in the directory.
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(fail)?;
    let meta = std::fs::symlink_metadata(path).map_err(fail)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(fail)? {
            let entry = entry.map_err(fail)?;
            chown_tree(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Non-Unix systems have no service user to hand files to.
#[cfg(not(unix))]
pub fn hand_to_service_user(_root: &Path) -> Result<bool, ServiceError> {
    Ok(false)
}

#[cfg(test)]
mod tests {
    // Every test here needs Unix users and modes.
    #[cfg(unix)]
    use super::*;

    #[cfg(unix)]
    fn write_mode(path: &Path, text: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn token_file_is_trimmed_and_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("enroll-token");
        assert!(read_token_file(&path).unwrap().is_none());
        write_mode(&path, "dse1_abc\n", 0o600);
        assert_eq!(read_token_file(&path).unwrap().as_deref(), Some("dse1_abc"));
        write_mode(&path, "dse1_abc\n", 0o644);
        let err = read_token_file(&path).unwrap_err();
        assert!(matches!(
            err,
            ServiceError::TokenExposed { mode: 0o644, .. }
        ));
        assert!(err.to_string().contains("chmod 600"));
        write_mode(&path, " \n", 0o600);
        assert!(matches!(
            read_token_file(&path),
            Err(ServiceError::EmptyToken(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn only_the_packaged_directory_changes_hands() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!hand_to_service_user(dir.path()).unwrap());
    }
}
