//! The relay's data directory: owner-only, whoever created it.
//!
//! It holds the database (with its `-wal` and `-shm` files), the TLS key,
//! the stateless-reset key, the Wi‑Fi identifier key, the audit anchor key
//! and the first admin token. [`prepare`] runs before anything is opened:
//! it refuses a directory that others can write (they could have swapped a
//! key or the database already, so tightening it silently would hide that),
//! and otherwise brings the directory to 0700 and every file in it to 0600.
//! [`precreate_private`] creates the database file 0600 before SQLite does
//! (SQLite creates it 0644, and gives `-wal`/`-shm` the database's mode).
//!
//! Never does: change ownership, follow symbolic links out of the
//! directory, or touch anything outside it.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// Why the data directory cannot be used.
#[derive(Debug, Error)]
pub enum DataDirError {
    /// Group or others may write the directory.
    #[error("the relay's data directory {path} is writable by other users (mode {mode:03o}), so its keys and database may have been replaced; check its contents, then run `chmod 700 {path}` and start the relay again")]
    WritableByOthers {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It exists but is not a directory.
    #[error("{0} is not a directory: give the relay's data directory with --data-dir")]
    NotADirectory(PathBuf),
    /// A file system call failed.
    #[error("{action} {path}: {source}; check that the relay's user owns its data directory")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Which path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> DataDirError + 'a {
    move |source| DataDirError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Creates `dir` 0700 if missing; refuses it if group or others can write
/// it; otherwise sets it to 0700 and every file in it to 0600. Returns the
/// paths whose mode it changed (for the log).
pub fn prepare(dir: &Path) -> Result<Vec<PathBuf>, DataDirError> {
    match std::fs::symlink_metadata(dir) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            deskside_net::files::create_private_dir(dir).map_err(|e| DataDirError::Io {
                action: "cannot create",
                path: dir.to_owned(),
                source: std::io::Error::other(e.to_string()),
            })?;
        }
        Err(error) => return Err(io("cannot inspect", dir)(error)),
        Ok(_) => {}
    }
    let meta = std::fs::metadata(dir).map_err(io("cannot inspect", dir))?;
    if !meta.is_dir() {
        return Err(DataDirError::NotADirectory(dir.to_owned()));
    }
    let mut changed = Vec::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(DataDirError::WritableByOthers {
                path: dir.to_owned(),
                mode: mode & 0o777,
            });
        }
        if mode != 0o700 {
            set_mode(dir, 0o700)?;
            changed.push(dir.to_owned());
        }
        changed.extend(tighten_files(dir)?);
    }
    Ok(changed)
}

/// Sets every regular file directly in `dir` to 0600 (symbolic links and
/// subdirectories are left alone). Returns the files it changed.
pub fn tighten_files(dir: &Path) -> Result<Vec<PathBuf>, DataDirError> {
    let mut changed = Vec::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for entry in std::fs::read_dir(dir).map_err(io("cannot list", dir))? {
            let entry = entry.map_err(io("cannot list", dir))?;
            let path = entry.path();
            // symlink_metadata: a link is not followed out of the directory.
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                // Removed meanwhile (SQLite's -shm at close): nothing to do.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(io("cannot inspect", &path)(error)),
            };
            if meta.is_file() && meta.permissions().mode() & 0o777 != 0o600 {
                set_mode(&path, 0o600)?;
                changed.push(path);
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(changed)
}

/// Creates `path` empty with mode 0600 unless it exists.
pub fn precreate_private(path: &Path) -> Result<(), DataDirError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path).map_err(io("cannot create", path))?;
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), DataDirError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io("cannot change the permissions of", path))
}

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used)] // A test should panic on an unexpected error.
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_loose_directory_is_tightened_and_a_writable_one_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("relay.db"), b"").unwrap();
        std::fs::set_permissions(dir.join("relay.db"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let changed = prepare(&dir).unwrap();
        assert_eq!(changed.len(), 2, "{changed:?}");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("relay.db")), 0o600);

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770)).unwrap();
        let error = prepare(&dir).unwrap_err().to_string();
        assert!(
            error.contains(&format!("chmod 700 {}", dir.display())),
            "{error}"
        );
        assert_eq!(mode(&dir), 0o770, "a refused directory is left as found");

        let fresh = root.path().join("new/data");
        prepare(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        precreate_private(&fresh.join("relay.db")).unwrap();
        assert_eq!(mode(&fresh.join("relay.db")), 0o600);
    }
}
