//! Files holding secrets: keys, tokens, profiles.
//!
//! Secrets are written to a temporary file created with mode 0600 in the
//! target's directory, synced, then renamed over the target, so a secret is
//! never readable by others even for an instant, and a crash never leaves a
//! half-written key. Reading checks that nobody else can read the file.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Errors reading or writing a private file.
#[derive(Debug, Error)]
pub enum FileError {
    /// An I/O operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Which file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The file can be read by other users.
    #[error("{path} is readable by other users (mode {mode:03o}); it holds a secret: run `chmod 600 {path}` (and check who could have read it)")]
    TooOpen {
        /// Which file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FileError + 'a {
    move |source| FileError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Creates `dir` (and parents) with mode 0700 if missing.
pub fn create_private_dir(dir: &Path) -> Result<(), FileError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(io("cannot create directory", dir))
}

/// Atomically replaces `path` with `contents`, readable only by its owner.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), FileError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.tmp{}", std::process::id()));
    // A temp file left by a crash may carry looser permissions: remove it
    // and create a new one, failing if somebody recreates it in between.
    let _ = std::fs::remove_file(&temp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options.open(&temp).map_err(io("cannot create", &temp))?;
        file.write_all(contents)
            .map_err(io("cannot write", &temp))?;
        file.sync_all().map_err(io("cannot sync", &temp))?;
        std::fs::rename(&temp, path).map_err(io("cannot rename into place", path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Fails unless `path` is readable only by its owner (no group/other bits).
pub fn check_private(path: &Path) -> Result<(), FileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(path).map_err(io("cannot read", path))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(FileError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
    }
    Ok(())
}

/// Reads a private file after checking its permissions.
pub fn read_private(path: &Path) -> Result<Vec<u8>, FileError> {
    check_private(path)?;
    std::fs::read(path).map_err(io("cannot read", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    #[cfg(unix)]
    fn writes_with_owner_only_permissions_and_refuses_open_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secret");
        write_private(&path, b"one").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("sub")), 0o700);
        write_private(&path, b"two").unwrap();
        assert_eq!(read_private(&path).unwrap(), b"two");
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_private(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            1
        );
    }
}
