//! The local channel between the agent service and the session helper: one
//! seam, one file per platform.
//!
//! - [`unix`]: a Unix socket; the peer's uid comes from the kernel
//!   (`SO_PEERCRED`).
//! - [`windows`]: the named pipe `\\.\pipe\deskside-agent-helper`, whose
//!   DACL admits only SYSTEM, the service's own account and the user signed
//!   in at the console; the client's process, account, session and program
//!   come from Windows (`GetNamedPipeClientProcessId` and the process's
//!   token).
//!
//! Each platform file provides the same four things: [`Listener::bind`],
//! [`Listener::accept`] (which hands back who connected, or why they may
//! not), [`connect`] for the helper, and the [`Halves`] both ends talk
//! through. Who may connect is decided here, in [`admit`], from facts the
//! platform gathered, so both platforms keep one policy: the service's own
//! account (development: both in one user's session), or the user of an
//! active, local, graphical login (on Windows: the console session, and the
//! client must sit in that session and be our own program).
//!
//! This module never reads or writes messages: framing is `wire`'s, routing
//! is `hub`'s.

use std::fmt;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncWrite};

#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;

#[cfg(unix)]
pub use self::unix::{connect, Listener};
#[cfg(unix)]
pub use self::unix::{graphical_session_users, peer_allowed};
#[cfg(windows)]
pub use self::windows::{connect, Listener};

/// The name of the installed Windows service's pipe (agreed by every
/// Windows part: service, MSI, helper).
pub const SYSTEM_PIPE: &str = r"\\.\pipe\deskside-agent-helper";

/// The well-known SID of LocalSystem, the installed Windows service's
/// account.
pub const SYSTEM_SID: &str = "S-1-5-18";

/// Where the packaged Linux service listens (its `RuntimeDirectory`).
pub const SYSTEM_SOCKET: &str = "/run/deskside-agent/session.sock";

/// The reading half of a connection.
pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The writing half of a connection.
pub type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// Both halves of one connection, as the service or the helper holds them.
pub struct Halves {
    /// Reads what the other side sends.
    pub read: ReadHalf,
    /// Writes to the other side.
    pub write: WriteHalf,
}

impl fmt::Debug for Halves {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Halves")
    }
}

/// A connection the service accepted: the stream, and who is on the other
/// end (or why they may not talk to the service).
#[derive(Debug)]
pub struct Accepted {
    /// The connection.
    pub halves: Halves,
    /// Who connected, checked against [`admit`]; `Err` carries the reason
    /// for the log (the client is told nothing).
    pub peer: Result<Peer, String>,
    /// The client's local account as the kernel reports it ("uid 1000"),
    /// whether or not it may be the session helper: who files a help
    /// request through the service (see `session::help_channel`).
    pub local_user: Option<String>,
}

/// Who a connected helper is, as the operating system reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// "uid 1000" on Unix; "S-1-5-21-…" on Windows.
    pub user: String,
    /// The client's process id, when the platform says it (Windows).
    pub process: Option<u32>,
    /// The client's login session id, when the platform has one (Windows).
    pub session: Option<u32>,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.user)?;
        if let Some(session) = self.session {
            write!(f, " in session {session}")?;
        }
        if let Some(process) = self.process {
            write!(f, " (process {process})")?;
        }
        Ok(())
    }
}

/// Whether the connecting process runs our own program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    /// The same executable as the service.
    Ours,
    /// Another executable (its path).
    Other(PathBuf),
    /// The platform does not check (Unix: the uid is the boundary, and the
    /// socket's directory belongs to the service).
    Unchecked,
}

/// An active, local, graphical login: its user and, where the platform has
/// them, its session id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login<U> {
    /// Whose login it is.
    pub user: U,
    /// Its session (Windows: the console session id); `None` on Unix.
    pub session: Option<u32>,
}

/// What the platform found out about a client, and what it is compared
/// with.
#[derive(Clone, Debug)]
pub struct PeerFacts<'a, U> {
    /// The client's account.
    pub user: &'a U,
    /// The client's login session, if the platform has one.
    pub session: Option<u32>,
    /// Whether it is our program.
    pub program: &'a Program,
    /// The account the service runs as.
    pub service_user: &'a U,
    /// The active, local, graphical logins on this device.
    pub logins: &'a [Login<U>],
}

/// The one policy for who may be the session helper, on every platform.
///
/// A client that is not our program is refused (it could be anything the
/// user runs). The service's own account is admitted (development, tests,
/// and a future helper running as SYSTEM in the user's session). Anyone
/// else must own an active local graphical login, and where sessions are
/// known, sit in that very session.
pub fn admit<U: PartialEq + fmt::Display>(facts: &PeerFacts<'_, U>) -> Result<(), String> {
    if let Program::Other(path) = facts.program {
        return Err(format!(
            "the client is not this agent's program but {}",
            path.display()
        ));
    }
    if facts.user == facts.service_user {
        return Ok(());
    }
    let mut own_logins = facts.logins.iter().filter(|l| l.user == *facts.user);
    let Some(first) = own_logins.next() else {
        return Err(format!(
            "{} has no active graphical login session on this device",
            facts.user
        ));
    };
    let sessions_match = |login: &Login<U>| match (login.session, facts.session) {
        (None, _) => true,
        (Some(wanted), Some(actual)) => wanted == actual,
        (Some(_), None) => false,
    };
    if sessions_match(first) || own_logins.any(sessions_match) {
        return Ok(());
    }
    Err(format!(
        "{} is signed in at the console, but this client runs in session {}, not the console's session {}",
        facts.user,
        facts
            .session
            .map_or_else(|| "unknown".to_owned(), |s| s.to_string()),
        first
            .session
            .map_or_else(|| "unknown".to_owned(), |s| s.to_string())
    ))
}

/// The address the service listens on for a state directory.
///
/// Unix: the packaged service's socket in its runtime directory, else
/// `session.sock` inside the state directory. Windows: the installed
/// service's pipe for its state directory, else a pipe named after the
/// state directory, so that two agents (tests, a developer's own agent)
/// never share one.
pub fn address_for(state_root: &Path) -> PathBuf {
    #[cfg(unix)]
    {
        if state_root == Path::new(crate::service::SYSTEM_STATE_DIR) {
            PathBuf::from(SYSTEM_SOCKET)
        } else {
            state_root.join("session.sock")
        }
    }
    #[cfg(windows)]
    {
        // The known folder, not %ProgramData%: Wine gives services another
        // value (see platform::windows::paths).
        let service_root = crate::platform::windows::paths::service_state_dir();
        PathBuf::from(pipe_name_for(state_root, Some(&service_root)))
    }
}

/// Where a helper looks for the service, in order: the installed service's
/// channel first, then the one of an agent run with `state_root`.
pub fn helper_addresses(state_root: &Path) -> Vec<PathBuf> {
    #[cfg(unix)]
    {
        // Unchanged Unix behaviour: the system socket when it exists (the
        // packaged service runs), else the user's own agent's.
        let system = PathBuf::from(SYSTEM_SOCKET);
        if system.exists() {
            return vec![system];
        }
        vec![address_for(state_root)]
    }
    #[cfg(windows)]
    {
        // A pipe cannot be probed without taking its free instance, so the
        // helper tries both in turn.
        let mut addresses = vec![PathBuf::from(SYSTEM_PIPE)];
        let own = address_for(state_root);
        if !addresses.contains(&own) {
            addresses.push(own);
        }
        addresses
    }
}

/// The pipe for a state directory: [`SYSTEM_PIPE`] for the installed
/// service's (`service_root`), else `SYSTEM_PIPE` followed by a hash of the
/// directory (compared without regard to case, as Windows paths are).
pub fn pipe_name_for(state_root: &Path, service_root: Option<&Path>) -> String {
    let key = |p: &Path| {
        p.to_string_lossy()
            .trim_end_matches(['\\', '/'])
            .to_lowercase()
    };
    let root = key(state_root);
    if service_root.is_some_and(|service| key(service) == root) {
        return SYSTEM_PIPE.to_owned();
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, root.as_bytes());
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{SYSTEM_PIPE}-{hex}")
}

/// The pipe's access rights for a helper: read and write data, read and
/// write attributes (the pipe's mode), read its security, wait on it. Not
/// `FILE_APPEND_DATA`, which on a pipe is `FILE_CREATE_PIPE_INSTANCE`: with
/// it, a user could create instances of the service's pipe and pose as the
/// service to the next helper.
pub const HELPER_PIPE_ACCESS: u32 = 0x0000_0001 // FILE_READ_DATA
    | 0x0000_0002 // FILE_WRITE_DATA
    | 0x0000_0080 // FILE_READ_ATTRIBUTES
    | 0x0000_0100 // FILE_WRITE_ATTRIBUTES
    | 0x0002_0000 // READ_CONTROL
    | 0x0010_0000; // SYNCHRONIZE

/// The pipe's security descriptor (SDDL): a protected DACL granting
/// SYSTEM everything and each of `users` (SID strings: the service's own
/// account and the console's user) only [`HELPER_PIPE_ACCESS`]. Nobody
/// else is listed, so nobody else may open it.
pub fn pipe_sddl(users: &[String]) -> String {
    let mut sddl = String::from("D:P(A;;GA;;;SY)");
    let mut seen: Vec<&str> = Vec::new();
    for user in users {
        if user == SYSTEM_SID || seen.contains(&user.as_str()) {
            continue;
        }
        seen.push(user);
        sddl.push_str(&format!("(A;;0x{HELPER_PIPE_ACCESS:x};;;{user})"));
    }
    sddl
}

/// Whether two executable paths name the same program: Windows paths
/// compare without regard to case, and `\\?\` prefixes are ignored.
pub fn same_program(a: &Path, b: &Path) -> bool {
    let key = |p: &Path| {
        let text = p.to_string_lossy().replace('/', "\\");
        text.strip_prefix(r"\\?\")
            .map(str::to_owned)
            .unwrap_or(text)
            .to_lowercase()
    };
    key(a) == key(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(user: &str, session: Option<u32>) -> Login<String> {
        Login {
            user: user.to_owned(),
            session,
        }
    }

    fn facts<'a>(
        user: &'a String,
        session: Option<u32>,
        program: &'a Program,
        service_user: &'a String,
        logins: &'a [Login<String>],
    ) -> PeerFacts<'a, String> {
        PeerFacts {
            user,
            session,
            program,
            service_user,
            logins,
        }
    }

    #[test]
    fn the_service_account_is_admitted_without_a_login() {
        let me = "S-1-5-18".to_owned();
        assert_eq!(
            admit(&facts(&me, Some(0), &Program::Ours, &me, &[])),
            Ok(())
        );
        let uid = "uid 0".to_owned();
        assert_eq!(
            admit(&facts(&uid, None, &Program::Unchecked, &uid, &[])),
            Ok(())
        );
    }

    #[test]
    fn another_program_is_refused_even_for_the_service_account() {
        let me = "S-1-5-18".to_owned();
        let other = Program::Other(PathBuf::from(r"C:\Users\eve\evil.exe"));
        let refused = admit(&facts(&me, Some(1), &other, &me, &[])).unwrap_err();
        assert!(refused.contains(r"C:\Users\eve\evil.exe"), "{refused}");
    }

    #[test]
    fn a_console_user_is_admitted_only_from_the_console_session() {
        let service = "S-1-5-18".to_owned();
        let alice = "S-1-5-21-1-2-3-1001".to_owned();
        let logins = [login(&alice, Some(1))];
        assert_eq!(
            admit(&facts(&alice, Some(1), &Program::Ours, &service, &logins)),
            Ok(())
        );
        let elsewhere = admit(&facts(&alice, Some(2), &Program::Ours, &service, &logins))
            .expect_err("another session");
        assert!(elsewhere.contains("session 2"), "{elsewhere}");
        assert!(admit(&facts(&alice, None, &Program::Ours, &service, &logins)).is_err());
    }

    #[test]
    fn a_user_without_a_graphical_login_is_refused() {
        let service = "S-1-5-18".to_owned();
        let bob = "S-1-5-21-1-2-3-1002".to_owned();
        let logins = [login("S-1-5-21-1-2-3-1001", Some(1))];
        let refused = admit(&facts(&bob, Some(1), &Program::Ours, &service, &logins)).unwrap_err();
        assert_eq!(
            refused,
            "S-1-5-21-1-2-3-1002 has no active graphical login session on this device"
        );
    }

    #[test]
    fn unix_logins_have_no_session_to_match() {
        let service = "uid 110".to_owned();
        let user = "uid 1000".to_owned();
        let logins = [login("uid 1000", None)];
        assert_eq!(
            admit(&facts(&user, None, &Program::Unchecked, &service, &logins)),
            Ok(())
        );
    }

    #[test]
    fn the_installed_service_uses_the_agreed_pipe_and_other_state_dirs_their_own() {
        let service = Path::new(r"C:\ProgramData\deskside\agent");
        assert_eq!(
            pipe_name_for(Path::new(r"c:\programdata\Deskside\Agent\"), Some(service)),
            r"\\.\pipe\deskside-agent-helper"
        );
        let own = pipe_name_for(
            Path::new(r"C:\Users\a\AppData\Local\deskside\agent"),
            Some(service),
        );
        let other = pipe_name_for(
            Path::new(r"C:\Users\b\AppData\Local\deskside\agent"),
            Some(service),
        );
        assert!(own.starts_with(r"\\.\pipe\deskside-agent-helper-"), "{own}");
        assert_eq!(own.len(), SYSTEM_PIPE.len() + 17);
        assert_ne!(own, other);
        assert_eq!(
            own,
            pipe_name_for(Path::new(r"C:\USERS\A\AppData\Local\deskside\agent"), None)
        );
    }

    #[test]
    fn the_pipe_dacl_lists_system_and_the_given_users_without_pipe_creation_rights() {
        let users = [
            "S-1-5-21-1-2-3-1001".to_owned(),
            "S-1-5-18".to_owned(),
            "S-1-5-21-1-2-3-1001".to_owned(),
        ];
        assert_eq!(
            pipe_sddl(&users),
            "D:P(A;;GA;;;SY)(A;;0x120183;;;S-1-5-21-1-2-3-1001)"
        );
        assert_eq!(HELPER_PIPE_ACCESS & 0x4, 0, "no FILE_CREATE_PIPE_INSTANCE");
        assert_eq!(pipe_sddl(&[]), "D:P(A;;GA;;;SY)");
    }

    #[test]
    fn programs_compare_like_windows_paths() {
        assert!(same_program(
            Path::new(r"\\?\C:\Program Files\deskside\deskside-agent.exe"),
            Path::new(r"c:\program files\Deskside\DESKSIDE-AGENT.EXE")
        ));
        assert!(!same_program(
            Path::new(r"C:\Program Files\deskside\deskside-agent.exe"),
            Path::new(r"C:\Users\eve\deskside-agent.exe")
        ));
    }

    #[cfg(unix)]
    #[test]
    fn the_packaged_service_uses_the_runtime_directory() {
        assert_eq!(
            address_for(Path::new("/var/lib/deskside-agent")),
            PathBuf::from(SYSTEM_SOCKET)
        );
        assert_eq!(
            address_for(Path::new("/tmp/x")),
            PathBuf::from("/tmp/x/session.sock")
        );
    }
}
