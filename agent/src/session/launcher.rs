//! Starting the session helper in the signed-in user's session, on
//! Windows: the service (LocalSystem, session 0) has no desktop, so it
//! starts `deskside-agent session-helper` in the active console session
//! with that user's token (`WTSQueryUserToken`, `CreateEnvironmentBlock`,
//! `CreateProcessAsUserW` on `winsta0\default`), at service start and on
//! every logon or console switch.
//!
//! The Windows service's main thread owns a `Launcher`: it calls
//! `Launcher::start_in_console_session` once when the service starts, and
//! `Launcher::on_session_change` with the raw `WTS_*` code and session id
//! of each `SERVICE_CONTROL_SESSIONCHANGE` its control handler forwards.
//!
//! Fallback: the installer also writes the helper's command line
//! ([`helper_command_line`]) as the `HKLM\Software\Microsoft\Windows\
//! CurrentVersion\Run` value [`RUN_VALUE_NAME`], so the helper starts at
//! every logon even where the service cannot start it (not LocalSystem,
//! or Wine, where `WTSQueryUserToken` fails). When both run, the service
//! admits one helper and the other keeps retrying until the first goes.
//!
//! What is pure (the decision and the command line) is built and tested on
//! every platform; the Win32 calls are in `session::win32`.

use std::path::Path;

/// The Run value's name (the MSI writes it under HKLM).
pub const RUN_VALUE_NAME: &str = "deskside session helper";

/// The command line that starts the helper: the quoted program, then
/// `session-helper`.
pub fn helper_command_line(exe: &Path) -> String {
    format!("\"{}\" session-helper", exe.display())
}

/// A session change as the service control handler reports it
/// (`WTSSESSION_NOTIFICATION` reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionChange {
    /// `WTS_CONSOLE_CONNECT` (1): a session took the console (switch user).
    ConsoleConnect,
    /// `WTS_CONSOLE_DISCONNECT` (2).
    ConsoleDisconnect,
    /// `WTS_SESSION_LOGON` (5).
    Logon,
    /// `WTS_SESSION_LOGOFF` (6).
    Logoff,
    /// `WTS_SESSION_UNLOCK` (8).
    Unlock,
    /// Any other reason (remote connections, lock, remote control).
    Other(u32),
}

impl SessionChange {
    /// From the raw `WTS_*` reason code.
    pub fn from_wts(code: u32) -> SessionChange {
        match code {
            1 => SessionChange::ConsoleConnect,
            2 => SessionChange::ConsoleDisconnect,
            5 => SessionChange::Logon,
            6 => SessionChange::Logoff,
            8 => SessionChange::Unlock,
            other => SessionChange::Other(other),
        }
    }
}

/// What the launcher does about a session change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start a helper in this session.
    Start(u32),
    /// The session ended: its helper is gone with it.
    Forget(u32),
    /// Nothing.
    Nothing,
}

/// The launcher's decision: a helper is started in the console session
/// when someone signs in there, switches to it or unlocks it, unless the
/// helper this service started there still runs. Remote desktop sessions
/// get none (as on Linux, only local graphical logins are helped).
pub fn decide(
    change: SessionChange,
    session: u32,
    console: Option<u32>,
    running_in: &[u32],
) -> Action {
    match change {
        SessionChange::Logoff => Action::Forget(session),
        SessionChange::Logon | SessionChange::ConsoleConnect | SessionChange::Unlock
            if console == Some(session) && !running_in.contains(&session) =>
        {
            Action::Start(session)
        }
        _ => Action::Nothing,
    }
}

/// The helpers this service started, by session: owned by the service's
/// main thread, which handles every session change in turn.
#[cfg(windows)]
#[derive(Debug, Default)]
pub struct Launcher {
    started: std::collections::HashMap<u32, crate::session::win32::Handle>,
}

#[cfg(windows)]
impl Launcher {
    /// Handles one `SERVICE_CONTROL_SESSIONCHANGE` (`code`: its `WTS_*`
    /// reason; `session`: its session id). Never fails: what could not be
    /// done is logged, and the Run key starts the helper instead.
    pub fn on_session_change(&mut self, code: u32, session: u32) {
        self.handle(SessionChange::from_wts(code), session);
    }

    /// Starts the helper in the console session if someone is signed in
    /// there (the service started after the user logged in, or restarted).
    pub fn start_in_console_session(&mut self) {
        let Some(session) = crate::session::win32::console_session() else {
            tracing::info!("no session is attached to the console: no session helper to start");
            return;
        };
        self.handle(SessionChange::Logon, session);
    }

    fn handle(&mut self, change: SessionChange, session: u32) {
        self.started
            .retain(|_, process| crate::session::win32::still_running(process));
        let console = crate::session::win32::console_session();
        let running_in: Vec<u32> = self.started.keys().copied().collect();
        match decide(change, session, console, &running_in) {
            Action::Start(session) => {
                if let Some(process) = launch(session) {
                    self.started.insert(session, process);
                }
            }
            Action::Forget(session) => {
                self.started.remove(&session);
            }
            Action::Nothing => {}
        }
    }
}

#[cfg(windows)]
fn launch(session: u32) -> Option<crate::session::win32::Handle> {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            tracing::warn!("cannot start the session helper: cannot find this program: {e}");
            return None;
        }
    };
    let command = helper_command_line(&exe);
    match crate::session::win32::spawn_in_session(session, &command) {
        Ok((process, pid)) => {
            tracing::info!(session, pid, %command, "started the session helper in the user's session");
            Some(process)
        }
        Err(e) => {
            tracing::warn!(
                session,
                "cannot start the session helper in the user's session ({e}); it starts from the \"{RUN_VALUE_NAME}\" Run entry at logon instead. Starting it with the user's token needs the service to run as LocalSystem"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_entry_quotes_the_program() {
        assert_eq!(
            helper_command_line(Path::new(r"C:\Program Files\deskside\deskside-agent.exe")),
            r#""C:\Program Files\deskside\deskside-agent.exe" session-helper"#
        );
    }

    #[test]
    fn wts_codes_map_to_changes() {
        assert_eq!(SessionChange::from_wts(5), SessionChange::Logon);
        assert_eq!(SessionChange::from_wts(6), SessionChange::Logoff);
        assert_eq!(SessionChange::from_wts(1), SessionChange::ConsoleConnect);
        assert_eq!(SessionChange::from_wts(7), SessionChange::Other(7));
    }

    #[test]
    fn a_helper_starts_only_in_the_console_session_and_once() {
        use SessionChange::*;
        assert_eq!(decide(Logon, 1, Some(1), &[]), Action::Start(1));
        assert_eq!(decide(Logon, 1, Some(1), &[1]), Action::Nothing);
        assert_eq!(decide(ConsoleConnect, 2, Some(2), &[1]), Action::Start(2));
        assert_eq!(decide(Unlock, 1, Some(1), &[]), Action::Start(1));
        // A remote desktop logon: not the console's session.
        assert_eq!(decide(Logon, 3, Some(1), &[]), Action::Nothing);
        assert_eq!(decide(Logon, 1, None, &[]), Action::Nothing);
        assert_eq!(decide(Logoff, 1, Some(1), &[1]), Action::Forget(1));
        assert_eq!(decide(Other(7), 1, Some(1), &[]), Action::Nothing);
    }
}
