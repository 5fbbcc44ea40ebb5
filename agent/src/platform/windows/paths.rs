//! Where the agent keeps its state on Windows.
//!
//! The service's state is machine-wide, `%ProgramData%\deskside\agent`
//! (the Linux service's `/var/lib/deskside-agent`); an employee running
//! `check` or their own agent keeps per-user state in
//! `%LOCALAPPDATA%\deskside\agent` (Linux: `~/.local/state`).
#![allow(unsafe_code)]

use std::path::PathBuf;

use windows_sys::core::{GUID, PWSTR};
use windows_sys::Win32::System::Com::CoTaskMemFree;
use windows_sys::Win32::UI::Shell::{
    FOLDERID_LocalAppData, FOLDERID_ProgramData, SHGetKnownFolderPath, KF_FLAG_DEFAULT,
};

/// Below `%ProgramData%` or `%LOCALAPPDATA%`.
const SUBDIR: &str = r"deskside\agent";

/// `%ProgramData%\deskside\agent`: the service's state and log.
///
/// From the shell's known folder, not the environment: a service's
/// environment may differ (Wine gives services `ProgramData=C:\users\Public`).
pub fn service_state_dir() -> PathBuf {
    known_folder(&FOLDERID_ProgramData)
        .or_else(|| env_dir("ProgramData"))
        .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"))
        .join(SUBDIR)
}

/// `%LOCALAPPDATA%\deskside\agent`: an employee's own state.
pub fn user_state_dir() -> PathBuf {
    let local = known_folder(&FOLDERID_LocalAppData).or_else(|| env_dir("LOCALAPPDATA"));
    match local {
        Some(local) => local.join(SUBDIR),
        // A process without a profile (a service account): the machine's.
        None => service_state_dir(),
    }
}

/// The default state directory: the service's in an elevated
/// (administrator) process, as root uses the system's on Linux, so that
/// `deskside-agent enroll TOKEN` in an administrator prompt enrolls the
/// machine; else the user's own.
pub fn default_state_dir() -> PathBuf {
    if deskside_net::files::process_is_elevated() {
        service_state_dir()
    } else {
        user_state_dir()
    }
}

fn env_dir(variable: &str) -> Option<PathBuf> {
    std::env::var_os(variable)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// A known folder's path for this process's user, if the shell knows it.
fn known_folder(id: &GUID) -> Option<PathBuf> {
    let mut path: PWSTR = std::ptr::null_mut();
    // SAFETY: `id` points to a GUID that outlives the call; a null token
    // means "this process's user"; `path` receives a string the shell
    // allocates (or null on failure), freed below with CoTaskMemFree in
    // every case, as the function requires.
    let result = unsafe {
        SHGetKnownFolderPath(id, KF_FLAG_DEFAULT as u32, std::ptr::null_mut(), &mut path)
    };
    if path.is_null() {
        return None;
    }
    // SAFETY: on success `path` is a NUL-terminated UTF-16 string; its
    // length is counted up to the NUL before it is read.
    let text = unsafe {
        let mut len = 0usize;
        while *path.add(len) != 0 {
            len += 1;
        }
        String::from_utf16(std::slice::from_raw_parts(path, len)).ok()
    };
    // SAFETY: `path` was allocated by SHGetKnownFolderPath and is not used
    // after this.
    unsafe { CoTaskMemFree(path.cast()) };
    if result < 0 {
        return None;
    }
    text.filter(|t| !t.is_empty()).map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_and_the_user_keep_state_in_their_own_folders() {
        let service = service_state_dir();
        assert!(
            service.ends_with(r"deskside\agent"),
            "{}",
            service.display()
        );
        assert!(
            service
                .to_string_lossy()
                .to_ascii_lowercase()
                .contains("programdata"),
            "{}",
            service.display()
        );
        let user = user_state_dir();
        assert!(user.ends_with(r"deskside\agent"), "{}", user.display());
        assert_ne!(user, service);
        let default = default_state_dir();
        assert!(default == service || default == user);
    }
}
