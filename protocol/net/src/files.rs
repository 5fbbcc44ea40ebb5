//! Files holding secrets: keys, tokens, profiles.
//!
//! Secrets are written to a temporary file created with mode 0600 in the
//! target's directory, synced, then renamed over the target, so a secret is
//! never readable by others even for an instant, and a crash never leaves a
//! half-written key. Reading checks that nobody else can read the file.
//!
//! What "owner-only" means is the one platform concern here, with one file
//! per platform chosen by `cfg` (as quinn-udp does): `files/unix.rs` (mode
//! 0600 files, 0700 directories) and `files/windows.rs` (a protected DACL
//! granting only SYSTEM, Administrators and the account the program runs
//! as). A macOS build uses the Unix file; another platform would add its
//! own file with the same three functions.

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
    /// The file's access control list lets another account read or change
    /// it (Windows).
    #[error("{path} can be read or changed by {who}; it holds a secret: run `{fix}` in an administrator prompt (and check who could have read it)")]
    OpenAcl {
        /// Which file.
        path: PathBuf,
        /// The accounts other than SYSTEM, Administrators and the owner
        /// that the list admits ("Everyone (S-1-1-0)", …), or why the
        /// list admits anyone.
        who: String,
        /// The command that makes the file owner-only again.
        fix: String,
    },
}

#[cfg(unix)]
#[path = "files/unix.rs"]
mod platform;
#[cfg(windows)]
#[path = "files/windows.rs"]
mod platform;

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FileError + 'a {
    move |source| FileError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Creates `dir` (and parents) owner-only if missing (mode 0700 on Unix,
/// the owner-only DACL on Windows); an existing directory is left as it is.
pub fn create_private_dir(dir: &Path) -> Result<(), FileError> {
    platform::create_private_dir(dir).map_err(io("cannot create directory", dir))
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
    let result = (|| {
        let mut file = platform::create_private_file(&temp).map_err(io("cannot create", &temp))?;
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

/// Fails unless `path` is readable only by its owner: no group/other mode
/// bits on Unix; on Windows no access control entry that lets an account
/// other than SYSTEM, Administrators and this program's own read or change
/// it.
pub fn check_private(path: &Path) -> Result<(), FileError> {
    platform::check_private(path)
}

/// Whether this process runs elevated: an administrator past UAC, or a
/// service account (false when it cannot tell). Files it makes private
/// then grant SYSTEM and Administrators only (see `files/windows.rs`).
#[cfg(windows)]
pub fn process_is_elevated() -> bool {
    platform::process_is_elevated()
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

    #[test]
    #[cfg(windows)]
    fn a_secret_file_readable_by_everyone_is_refused_with_the_fix() {
        use windows_sys::Win32::Security::WinWorldSid;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("agent-key.pem");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            1
        );
        // Under Wine this holds only because scripts/wine-run runs programs
        // with umask 077: Wine cannot store a DACL and derives one from the
        // Unix mode, so files must be created owner-only there.
        assert_eq!(read_private(&path).unwrap(), b"two");

        platform::grant_read(&path, WinWorldSid).unwrap();
        let err = read_private(&path).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, FileError::OpenAcl { .. }), "{text}");
        assert!(text.contains("Everyone (S-1-1-0)"), "{text}");
        assert!(
            text.contains("/inheritance:r /grant:r *S-1-5-18:F *S-1-5-32-544:F"),
            "{text}"
        );
        assert!(text.contains("/remove:g *S-1-1-0"), "{text}");
    }
}
