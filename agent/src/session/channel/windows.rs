//! The channel on Windows: the named pipe `\\.\pipe\deskside-agent-helper`
//! (or a per-state-directory pipe for an agent not installed as the
//! service).
//!
//! - The service creates the pipe's first instance with
//!   `FILE_FLAG_FIRST_PIPE_INSTANCE`, so it cannot join a pipe someone else
//!   created first (a squatter), and refuses remote clients.
//! - The pipe's DACL (see [`super::pipe_sddl`]) lists SYSTEM, the service's
//!   own account and the user signed in at the console, who may read and
//!   write but not create instances. It is refreshed every
//!   [`DACL_REFRESH`] while waiting, so a user who signs in later may open
//!   it.
//! - On every connection the service asks Windows who the client is
//!   (`GetNamedPipeClientProcessId`, then that process's token, session and
//!   executable) and applies the shared policy ([`super::admit`]).
//! - The helper, before saying anything, checks that the server is SYSTEM
//!   or its own account (`GetNamedPipeServerProcessId`): a pipe created by
//!   another user while the service was down gets nothing.
//!
//! All `unsafe` here is FFI on handles this module owns, each block with
//! its SAFETY paragraph; account lookups are in `session::win32`.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::os::windows::ffi::OsStrExt as _;
use std::os::windows::fs::OpenOptionsExt as _;
use std::os::windows::io::{AsRawHandle as _, IntoRawHandle as _};
use std::path::{Path, PathBuf};
use std::ptr::null_mut;
use std::time::Duration;

use tokio::net::windows::named_pipe::{NamedPipeClient, NamedPipeServer, ServerOptions};
use windows_sys::Win32::Foundation::{LocalFree, HANDLE};
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SetSecurityInfo, SE_KERNEL_OBJECT,
};
use windows_sys::Win32::Security::{
    GetSecurityDescriptorDacl, ACL, DACL_SECURITY_INFORMATION, PROTECTED_DACL_SECURITY_INFORMATION,
    PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES,
};
use windows_sys::Win32::Storage::FileSystem::FILE_FLAG_OVERLAPPED;
use windows_sys::Win32::System::Pipes::{
    GetNamedPipeClientProcessId, GetNamedPipeServerProcessId, WaitNamedPipeW,
};

use super::HELPER_PIPE_ACCESS;
use super::SYSTEM_SID;
use super::{admit, pipe_sddl, same_program, Accepted, Halves, Login, Peer, PeerFacts, Program};
use crate::session::win32;

/// How often the listening pipe's DACL follows the console's user.
pub const DACL_REFRESH: Duration = Duration::from_secs(2);

/// How long a helper waits for a free pipe instance (the service makes the
/// next one right after accepting the previous client).
const BUSY_WAIT: Duration = Duration::from_secs(2);

/// Win32 errors named here.
const ERROR_FILE_NOT_FOUND: i32 = 2;
const ERROR_ACCESS_DENIED: i32 = 5;
const ERROR_PIPE_BUSY: i32 = 231;
/// `SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION`: the service may learn
/// who the helper is, never act as the helper.
const SQOS_IDENTIFICATION: u32 = 0x0010_0000 | (1 << 16);

/// The service's listening pipe.
#[derive(Debug)]
pub struct Listener {
    name: PathBuf,
    /// The instance waiting for the next client.
    next: NamedPipeServer,
    own_exe: PathBuf,
    own_sid: String,
    /// The accounts the pipe's DACL lists now (besides SYSTEM).
    granted: Vec<String>,
}

impl Listener {
    /// Creates the pipe. Fails if the name is taken (another agent, or a
    /// squatter: the first-instance flag refuses to join an existing pipe).
    pub fn bind(name: &Path) -> std::io::Result<Listener> {
        let own_exe = std::env::current_exe()?;
        let own_sid = win32::own_sid()?;
        let granted = allowed_users(&own_sid);
        // The first-instance flag refuses an existing pipe on Windows; Wine
        // 8.0 ignores that flag, so the name is also looked up first (the
        // flag closes the race between the two on Windows).
        let created = if pipe_exists(name) {
            Err(std::io::Error::from_raw_os_error(ERROR_ACCESS_DENIED))
        } else {
            create_instance(name, true, &granted)
        };
        let next = created.map_err(|e| {
            match e.raw_os_error() {
                Some(ERROR_ACCESS_DENIED) | Some(ERROR_PIPE_BUSY) => std::io::Error::new(
                    e.kind(),
                    format!(
                        "the pipe {} already exists: another deskside agent (or another program) holds it ({e}); stop the other agent (`deskside-agent service` or another `deskside-agent run`) and start this one again",
                        name.display()
                    ),
                ),
                _ => e,
            }
        })?;
        Ok(Listener {
            name: name.to_owned(),
            next,
            own_exe,
            own_sid,
            granted,
        })
    }

    /// The next connection and who it comes from.
    pub async fn accept(&mut self) -> std::io::Result<Accepted> {
        loop {
            tokio::select! {
                connected = self.next.connect() => { connected?; break; }
                () = tokio::time::sleep(DACL_REFRESH) => self.refresh_dacl(),
            }
        }
        let next = match create_instance(&self.name, false, &self.granted) {
            Ok(next) => next,
            Err(e) => {
                // Keep the instance: the client is let go, and the next
                // accept waits on the same instance again.
                let _ = self.next.disconnect();
                return Err(e);
            }
        };
        let connected = std::mem::replace(&mut self.next, next);
        let peer = self.check_client(&connected);
        let (read, write) = tokio::io::split(connected);
        // Only admitted clients file help requests here: the pipe's DACL
        // lets no one else open it anyway.
        let local_user = peer.as_ref().ok().map(|p| p.user.clone());
        Ok(Accepted {
            halves: Halves {
                read: Box::new(read),
                write: Box::new(write),
            },
            peer,
            local_user,
        })
    }

    /// Lets the console's current user open the waiting instance.
    fn refresh_dacl(&mut self) {
        let users = allowed_users(&self.own_sid);
        if users == self.granted {
            return;
        }
        match set_dacl(self.next.as_raw_handle() as HANDLE, &users) {
            Ok(()) => {
                tracing::info!(users = ?users, "the helper pipe now admits these accounts (and SYSTEM)");
                self.granted = users;
            }
            Err(e) => tracing::warn!("cannot update the helper pipe's access list: {e}"),
        }
    }

    fn check_client(&self, pipe: &NamedPipeServer) -> Result<Peer, String> {
        let mut pid = 0u32;
        // SAFETY: the pipe handle is open and connected for the call; `pid`
        // is writable.
        let ok = unsafe { GetNamedPipeClientProcessId(pipe.as_raw_handle() as HANDLE, &mut pid) };
        if ok == 0 {
            return Err(format!(
                "cannot tell which process connected: {}",
                std::io::Error::last_os_error()
            ));
        }
        let facts = win32::process_facts(pid)
            .map_err(|e| format!("cannot inspect the connecting process {pid}: {e}"))?;
        let program = if same_program(&facts.image, &self.own_exe) {
            Program::Ours
        } else {
            Program::Other(facts.image.clone())
        };
        let logins = console_logins();
        admit(&PeerFacts {
            user: &facts.user,
            session: Some(facts.session),
            program: &program,
            service_user: &self.own_sid,
            logins: &logins,
        })?;
        Ok(Peer {
            user: facts.user,
            process: Some(pid),
            session: Some(facts.session),
        })
    }
}

/// The signed-in console user, as the policy sees them.
fn console_logins() -> Vec<Login<String>> {
    let Some(session) = win32::console_session() else {
        return Vec::new();
    };
    win32::session_user_sid(session)
        .map(|user| {
            vec![Login {
                user,
                session: Some(session),
            }]
        })
        .unwrap_or_default()
}

/// The accounts the pipe admits besides SYSTEM: the service's own, and the
/// console's user.
fn allowed_users(own_sid: &str) -> Vec<String> {
    let mut users = vec![own_sid.to_owned()];
    for login in console_logins() {
        if !users.contains(&login.user) {
            users.push(login.user);
        }
    }
    users.retain(|u| u != SYSTEM_SID);
    users
}

/// A security descriptor built from SDDL, freed on drop.
struct Descriptor(PSECURITY_DESCRIPTOR);

impl Descriptor {
    fn for_users(users: &[String]) -> std::io::Result<Descriptor> {
        let sddl: Vec<u16> = pipe_sddl(users)
            .encode_utf16()
            .chain(std::iter::once(0))
            .collect();
        let mut descriptor: PSECURITY_DESCRIPTOR = null_mut();
        // SAFETY: `sddl` is NUL-terminated and outlives the call; on success
        // `descriptor` is a LocalAlloc'd descriptor this wrapper frees.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                sddl.as_ptr(),
                1, // SDDL_REVISION_1
                &mut descriptor,
                null_mut(),
            )
        };
        if ok == 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Descriptor(descriptor))
    }

    fn dacl(&self) -> std::io::Result<*mut ACL> {
        let (mut present, mut defaulted) = (0, 0);
        let mut dacl: *mut ACL = null_mut();
        // SAFETY: the descriptor is valid while `self` lives; the out
        // pointers are writable; `dacl` points into the descriptor.
        let ok =
            unsafe { GetSecurityDescriptorDacl(self.0, &mut present, &mut dacl, &mut defaulted) };
        if ok == 0 || present == 0 || dacl.is_null() {
            return Err(std::io::Error::other("the pipe's descriptor has no DACL"));
        }
        Ok(dacl)
    }
}

impl Drop for Descriptor {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptor… with
        // LocalAlloc; freed once.
        unsafe { LocalFree(self.0) };
    }
}

fn create_instance(name: &Path, first: bool, users: &[String]) -> std::io::Result<NamedPipeServer> {
    let descriptor = Descriptor::for_users(users)?;
    let mut attributes = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: descriptor.0,
        bInheritHandle: 0,
    };
    let mut options = ServerOptions::new();
    options
        .first_pipe_instance(first)
        .reject_remote_clients(true)
        .write_dac(true);
    // SAFETY: `attributes` is a valid SECURITY_ATTRIBUTES whose descriptor
    // outlives the call.
    let server = unsafe {
        options.create_with_security_attributes_raw(
            name.as_os_str(),
            (&mut attributes as *mut SECURITY_ATTRIBUTES).cast::<c_void>(),
        )
    }?;
    if !first {
        // A pipe keeps the descriptor of its first instance: set the
        // current list on the pipe itself.
        set_dacl(server.as_raw_handle() as HANDLE, users)?;
    }
    Ok(server)
}

/// Whether a pipe of that name exists (it has an instance, free or busy).
/// Does not take a free instance.
fn pipe_exists(name: &Path) -> bool {
    let wide: Vec<u16> = name
        .as_os_str()
        .encode_wide()
        .chain(std::iter::once(0))
        .collect();
    // SAFETY: `wide` is NUL-terminated and outlives the call; waiting 1 ms
    // at most.
    if unsafe { WaitNamedPipeW(wide.as_ptr(), 1) } != 0 {
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() != Some(ERROR_FILE_NOT_FOUND)
}

/// Replaces the pipe's DACL with the one for `users` (and SYSTEM).
fn set_dacl(pipe: HANDLE, users: &[String]) -> std::io::Result<()> {
    let descriptor = Descriptor::for_users(users)?;
    let dacl = descriptor.dacl()?;
    // SAFETY: `pipe` is an open server handle with WRITE_DAC (write_dac
    // above); `dacl` lives inside `descriptor` for the call; null owner,
    // group and SACL mean "leave them".
    let status = unsafe {
        SetSecurityInfo(
            pipe,
            SE_KERNEL_OBJECT,
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            null_mut(),
            null_mut(),
            dacl,
            null_mut(),
        )
    };
    if status != 0 {
        return Err(std::io::Error::from_raw_os_error(status as i32));
    }
    Ok(())
}

/// Connects a helper to the service's pipe, after checking that the pipe's
/// server is SYSTEM or this helper's own account.
pub async fn connect(name: &Path) -> std::io::Result<Halves> {
    let deadline = tokio::time::Instant::now() + BUSY_WAIT;
    let client = loop {
        match open_client(name) {
            Ok(client) => break client,
            Err(e)
                if e.raw_os_error() == Some(ERROR_PIPE_BUSY)
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) if e.raw_os_error() == Some(ERROR_FILE_NOT_FOUND) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    "no agent service is listening (the pipe does not exist)",
                ))
            }
            Err(e) => return Err(e),
        }
    };
    check_server(&client)?;
    let (read, write) = tokio::io::split(client);
    Ok(Halves {
        read: Box::new(read),
        write: Box::new(write),
    })
}

fn open_client(name: &Path) -> std::io::Result<NamedPipeClient> {
    // Only the rights the pipe's DACL grants a helper (GENERIC_WRITE would
    // ask for FILE_CREATE_PIPE_INSTANCE too, which it does not grant).
    let file = std::fs::OpenOptions::new()
        .access_mode(HELPER_PIPE_ACCESS)
        .custom_flags(FILE_FLAG_OVERLAPPED)
        .security_qos_flags(SQOS_IDENTIFICATION)
        .open(name)?;
    let handle = file.into_raw_handle();
    // SAFETY: `handle` is an open pipe handle opened for overlapped I/O,
    // owned by nobody else (taken out of `file`); the client owns it now.
    unsafe { NamedPipeClient::from_raw_handle(handle) }
}

fn check_server(client: &NamedPipeClient) -> std::io::Result<()> {
    let mut pid = 0u32;
    // SAFETY: the client handle is open for the call; `pid` is writable.
    let ok = unsafe { GetNamedPipeServerProcessId(client.as_raw_handle() as HANDLE, &mut pid) };
    if ok == 0 {
        return Err(std::io::Error::last_os_error());
    }
    let server = win32::process_facts(pid).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot tell who runs the pipe's server (process {pid}): {e}"),
        )
    })?;
    let own = win32::own_sid()?;
    server_trusted(&server.user, &own).map_err(std::io::Error::other)
}

/// Whether a helper running as `own` may talk to a pipe served by
/// `server_user`: LocalSystem (the installed service) or itself (an agent
/// this user runs).
fn server_trusted(server_user: &str, own: &str) -> Result<(), String> {
    if server_user == SYSTEM_SID || server_user == own {
        Ok(())
    } else {
        Err(format!(
            "the pipe is served by {server_user}, neither LocalSystem nor this user: not the deskside agent service; nothing was sent"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::wire::{write_message, MessageReader};
    use deskside_protocol::helper::{HelperToService, ServiceToHelper};

    fn pipe_name(test: &str) -> PathBuf {
        PathBuf::from(format!(
            r"\\.\pipe\deskside-test-{test}-{}",
            std::process::id()
        ))
    }

    #[test]
    fn the_services_state_directory_has_the_agreed_pipe() {
        let service = crate::platform::windows::paths::service_state_dir();
        assert_eq!(
            super::super::address_for(&service),
            PathBuf::from(super::super::SYSTEM_PIPE)
        );
        let own = super::super::address_for(Path::new(r"C:\deskside-test-state"));
        assert_ne!(own, PathBuf::from(super::super::SYSTEM_PIPE));
    }

    #[test]
    fn the_helper_trusts_only_system_or_itself_as_server() {
        assert!(server_trusted("S-1-5-18", "S-1-5-21-1-1001").is_ok());
        assert!(server_trusted("S-1-5-21-1-1001", "S-1-5-21-1-1001").is_ok());
        let refused = server_trusted("S-1-5-21-1-1002", "S-1-5-21-1-1001").unwrap_err();
        assert!(refused.contains("S-1-5-21-1-1002"), "{refused}");
    }

    #[tokio::test]
    async fn a_message_crosses_the_pipe_both_ways_and_the_client_is_ourselves() {
        let name = pipe_name("round-trip");
        let mut listener = Listener::bind(&name).unwrap();
        let client = tokio::spawn({
            let name = name.clone();
            async move {
                let Halves { read, mut write } = connect(&name).await.unwrap();
                write_message(&mut write, &ServiceToHelper::Welcome)
                    .await
                    .unwrap();
                let mut reader = MessageReader::new(read);
                reader.next::<HelperToService>().await.unwrap()
            }
        });
        let accepted = listener.accept().await.unwrap();
        let peer = accepted.peer.expect("our own test program is admitted");
        assert_eq!(peer.process, Some(std::process::id()));
        assert_eq!(peer.user, win32::own_sid().unwrap());
        let Halves { read, mut write } = accepted.halves;
        let mut reader = MessageReader::new(read);
        assert_eq!(
            reader.next::<ServiceToHelper>().await.unwrap(),
            Some(ServiceToHelper::Welcome)
        );
        let monitors = HelperToService::Monitors {
            monitors: Vec::new(),
        };
        write_message(&mut write, &monitors).await.unwrap();
        assert_eq!(client.await.unwrap(), Some(monitors));
    }

    #[tokio::test]
    async fn a_second_server_cannot_take_the_pipe_name() {
        let name = pipe_name("squat");
        let _first = Listener::bind(&name).unwrap();
        let second = Listener::bind(&name).expect_err("the name is taken");
        assert!(second.to_string().contains("already exists"), "{second}");
    }

    #[tokio::test]
    async fn a_pipe_someone_else_created_first_is_refused() {
        // A squatter that created the name while the service was down: the
        // service refuses to join its pipe (and so to serve through it).
        let name = pipe_name("squatter");
        let _squatter = ServerOptions::new().create(name.as_os_str()).unwrap();
        let refused = Listener::bind(&name).expect_err("the name is taken");
        assert!(refused.to_string().contains("already exists"), "{refused}");
    }

    /// The environment variable that turns the test below into the client.
    const CLIENT_PIPE: &str = "DESKSIDE_TEST_CLIENT_PIPE";

    /// Run by `a_client_that_is_not_our_program_is_refused` in a copy of
    /// this test program under another name: connects and waits.
    #[tokio::test]
    #[ignore = "run by a_client_that_is_not_our_program_is_refused"]
    async fn client_in_another_program() {
        let Some(name) = std::env::var_os(CLIENT_PIPE) else {
            return;
        };
        let Halves { read, .. } = connect(Path::new(&name)).await.unwrap();
        let mut reader = MessageReader::new(read);
        // The service closes without a word.
        assert!(matches!(
            reader.next::<ServiceToHelper>().await,
            Ok(None) | Err(_)
        ));
    }

    #[tokio::test]
    async fn a_client_that_is_not_our_program_is_refused() {
        let name = pipe_name("other-program");
        let mut listener = Listener::bind(&name).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("not-deskside-agent.exe");
        std::fs::copy(std::env::current_exe().unwrap(), &other).unwrap();
        let mut child = std::process::Command::new(&other)
            .args([
                "--ignored",
                "--exact",
                "session::channel::windows::tests::client_in_another_program",
            ])
            .env(CLIENT_PIPE, &name)
            .spawn()
            .unwrap();
        let accepted = tokio::time::timeout(Duration::from_secs(60), listener.accept())
            .await
            .expect("the other program connects")
            .unwrap();
        let refused = accepted.peer.expect_err("another program is refused");
        assert!(refused.contains("not-deskside-agent.exe"), "{refused}");
        drop(accepted.halves);
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "the client saw the pipe close: {status}");
    }
}
