//! The Win32 calls the helper channel and the helper launcher share: who a
//! process is (account, session, program) and who is signed in at the
//! console.
//!
//! All of this module's `unsafe` is plain FFI with owned buffers and
//! handles closed on drop, each block with its SAFETY paragraph.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::path::PathBuf;
use std::ptr::null_mut;

use windows_sys::Win32::Foundation::{CloseHandle, LocalFree, HANDLE};
use windows_sys::Win32::Foundation::{ERROR_ALREADY_EXISTS, WAIT_TIMEOUT};
use windows_sys::Win32::Security::Authorization::ConvertSidToStringSidW;
use windows_sys::Win32::Security::{
    GetTokenInformation, IsValidSid, LookupAccountNameW, TokenUser, SID_NAME_USE, TOKEN_QUERY,
    TOKEN_USER,
};
use windows_sys::Win32::System::Environment::{CreateEnvironmentBlock, DestroyEnvironmentBlock};
use windows_sys::Win32::System::RemoteDesktop::{
    ProcessIdToSessionId, WTSDomainName, WTSFreeMemory, WTSGetActiveConsoleSessionId,
    WTSQuerySessionInformationW, WTSQueryUserToken, WTSUserName, WTS_CURRENT_SERVER_HANDLE,
    WTS_INFO_CLASS,
};
use windows_sys::Win32::System::Threading::{
    CreateMutexW, CreateProcessAsUserW, GetCurrentProcess, OpenProcess, OpenProcessToken,
    QueryFullProcessImageNameW, WaitForSingleObject, CREATE_NO_WINDOW, CREATE_UNICODE_ENVIRONMENT,
    PROCESS_INFORMATION, PROCESS_NAME_WIN32, PROCESS_QUERY_LIMITED_INFORMATION, STARTUPINFOW,
};

use crate::platform::windows::wide::{from_wide_ptr, wide};

/// What `WTSGetActiveConsoleSessionId` says when no session is attached
/// to the console (during a switch).
const NO_CONSOLE_SESSION: u32 = 0xFFFF_FFFF;

/// A kernel handle, closed on drop.
#[derive(Debug)]
pub struct Handle(pub HANDLE);

impl Drop for Handle {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the handle was returned open by Windows to this
            // wrapper, which is its only owner; it is closed once.
            unsafe { CloseHandle(self.0) };
        }
    }
}

// SAFETY: a kernel handle may be used and closed from any thread.
unsafe impl Send for Handle {}

fn last_error<T>() -> std::io::Result<T> {
    Err(std::io::Error::last_os_error())
}

/// The account a token belongs to, as a SID string ("S-1-5-21-…").
pub fn token_user_sid(token: HANDLE) -> std::io::Result<String> {
    let mut needed = 0u32;
    // SAFETY: a null buffer of length 0 asks for the size needed.
    unsafe { GetTokenInformation(token, TokenUser, null_mut(), 0, &mut needed) };
    if needed == 0 {
        return last_error();
    }
    let mut buffer = vec![0u64; (needed as usize).div_ceil(8)];
    // SAFETY: `buffer` is writable for `needed` bytes and 8-byte aligned,
    // enough for TOKEN_USER (which holds pointers).
    let ok = unsafe {
        GetTokenInformation(
            token,
            TokenUser,
            buffer.as_mut_ptr().cast::<c_void>(),
            needed,
            &mut needed,
        )
    };
    if ok == 0 {
        return last_error();
    }
    // SAFETY: on success the buffer starts with a TOKEN_USER whose Sid
    // points into the same buffer, alive for the conversion.
    let sid = unsafe { (*buffer.as_ptr().cast::<TOKEN_USER>()).User.Sid };
    sid_string(sid)
}

/// A SID as its string form.
fn sid_string(sid: *mut c_void) -> std::io::Result<String> {
    let mut text: *mut u16 = null_mut();
    // SAFETY: `sid` points to a SID that stays alive for the call (checked
    // by IsValidSid first); on success `text` is a NUL-terminated string
    // Windows allocated with LocalAlloc, read and then freed once.
    unsafe {
        if IsValidSid(sid) == 0 {
            return Err(std::io::Error::other("invalid security identifier"));
        }
        if ConvertSidToStringSidW(sid, &mut text) == 0 || text.is_null() {
            return last_error();
        }
        let string = from_wide_ptr(text).unwrap_or_default();
        LocalFree(text.cast::<c_void>());
        Ok(string)
    }
}

/// The account this process runs as.
pub fn own_sid() -> std::io::Result<String> {
    let mut token: HANDLE = null_mut();
    // SAFETY: GetCurrentProcess is a pseudo-handle needing no close;
    // `token` receives a handle owned by the wrapper below.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return last_error();
    }
    let token = Handle(token);
    token_user_sid(token.0)
}

/// What Windows says about another process.
#[derive(Debug)]
pub struct ProcessFacts {
    /// Its account's SID string.
    pub user: String,
    /// Its login session.
    pub session: u32,
    /// Its executable's full path.
    pub image: PathBuf,
}

/// The account, session and program of process `pid`.
pub fn process_facts(pid: u32) -> std::io::Result<ProcessFacts> {
    // SAFETY: plain call; the handle it returns is owned by the wrapper.
    let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if process.is_null() {
        return last_error();
    }
    let process = Handle(process);
    let mut image = vec![0u16; 32_768];
    let mut len = image.len() as u32;
    // SAFETY: `image` is writable for `len` UTF-16 units; `len` receives
    // the length written (without the NUL).
    let ok = unsafe {
        QueryFullProcessImageNameW(process.0, PROCESS_NAME_WIN32, image.as_mut_ptr(), &mut len)
    };
    if ok == 0 {
        return last_error();
    }
    let image = PathBuf::from(String::from_utf16_lossy(
        &image[..(len as usize).min(image.len())],
    ));
    let mut token: HANDLE = null_mut();
    // SAFETY: `process` is open with PROCESS_QUERY_LIMITED_INFORMATION,
    // enough for OpenProcessToken; `token` is owned by the wrapper below.
    if unsafe { OpenProcessToken(process.0, TOKEN_QUERY, &mut token) } == 0 {
        return last_error();
    }
    let token = Handle(token);
    let user = token_user_sid(token.0)?;
    let mut session = 0u32;
    // SAFETY: `session` is writable.
    if unsafe { ProcessIdToSessionId(pid, &mut session) } == 0 {
        return last_error();
    }
    Ok(ProcessFacts {
        user,
        session,
        image,
    })
}

/// The session attached to the physical console, if any.
pub fn console_session() -> Option<u32> {
    // SAFETY: plain call without arguments.
    let session = unsafe { WTSGetActiveConsoleSessionId() };
    (session != NO_CONSOLE_SESSION).then_some(session)
}

/// The primary token of the user signed in to `session`. Needs the
/// service to run as LocalSystem (SE_TCB_NAME); fails otherwise, and when
/// nobody is signed in there.
pub fn session_user_token(session: u32) -> std::io::Result<Handle> {
    let mut token: HANDLE = null_mut();
    // SAFETY: `token` receives a handle owned by the wrapper.
    if unsafe { WTSQueryUserToken(session, &mut token) } == 0 {
        return last_error();
    }
    Ok(Handle(token))
}

/// The SID of the user signed in to `session`: from their token where the
/// service may ask for it (LocalSystem), else from the session's user and
/// domain names. `None` when nobody is signed in there.
pub fn session_user_sid(session: u32) -> Option<String> {
    if let Ok(token) = session_user_token(session) {
        if let Ok(sid) = token_user_sid(token.0) {
            return Some(sid);
        }
    }
    let user = session_text(session, WTSUserName)?;
    if user.is_empty() {
        return None;
    }
    let account = match session_text(session, WTSDomainName).filter(|d| !d.is_empty()) {
        Some(domain) => format!("{domain}\\{user}"),
        None => user,
    };
    account_sid(&account).ok()
}

fn session_text(session: u32, class: WTS_INFO_CLASS) -> Option<String> {
    let mut buffer: *mut u16 = null_mut();
    let mut bytes = 0u32;
    // SAFETY: the out pointers are writable; on success `buffer` holds
    // `bytes` bytes (a NUL-terminated UTF-16 string) that WTSFreeMemory
    // frees once, after the copy.
    unsafe {
        if WTSQuerySessionInformationW(
            WTS_CURRENT_SERVER_HANDLE,
            session,
            class,
            &mut buffer,
            &mut bytes,
        ) == 0
            || buffer.is_null()
        {
            return None;
        }
        let units = (bytes as usize / 2).saturating_sub(1);
        let len = (0..units).take_while(|&i| *buffer.add(i) != 0).count();
        let text = String::from_utf16_lossy(std::slice::from_raw_parts(buffer, len));
        WTSFreeMemory(buffer.cast::<c_void>());
        Some(text)
    }
}

fn account_sid(account: &str) -> std::io::Result<String> {
    let wide = wide(account);
    let mut sid = vec![0u32; 68 / 4];
    let mut sid_len = 68u32;
    let mut domain = vec![0u16; 256];
    let mut domain_len = domain.len() as u32;
    let mut kind: SID_NAME_USE = 0;
    // SAFETY: `wide` is NUL-terminated; the SID buffer (u32-aligned) and the
    // domain buffer are writable for the lengths passed.
    let ok = unsafe {
        LookupAccountNameW(
            std::ptr::null(),
            wide.as_ptr(),
            sid.as_mut_ptr().cast::<c_void>(),
            &mut sid_len,
            domain.as_mut_ptr(),
            &mut domain_len,
            &mut kind,
        )
    };
    if ok == 0 {
        return last_error();
    }
    sid_string(sid.as_mut_ptr().cast::<c_void>())
}

/// Claims the named mutex `name` for this process: `Ok(None)` when another
/// process holds it already (it is released when its holder exits).
pub fn claim_single_instance(name: &str) -> std::io::Result<Option<Handle>> {
    let wide = wide(name);
    // SAFETY: `wide` is NUL-terminated and outlives the call; default
    // security; the handle returned is owned by the wrapper.
    let mutex = unsafe { CreateMutexW(std::ptr::null(), 0, wide.as_ptr()) };
    let error = std::io::Error::last_os_error();
    if mutex.is_null() {
        return Err(error);
    }
    let mutex = Handle(mutex);
    if error.raw_os_error() == Some(ERROR_ALREADY_EXISTS as i32) {
        return Ok(None);
    }
    Ok(Some(mutex))
}

/// Whether a process (a handle with SYNCHRONIZE) is still running.
pub fn still_running(process: &Handle) -> bool {
    // SAFETY: the handle is open; a zero timeout only polls.
    unsafe { WaitForSingleObject(process.0, 0) == WAIT_TIMEOUT }
}

/// Starts `command_line` as the user signed in to `session`, on that
/// session's interactive desktop (`winsta0\default`), with the user's own
/// environment. Returns the process handle and id. Needs LocalSystem (for
/// `WTSQueryUserToken`).
pub fn spawn_in_session(session: u32, command_line: &str) -> std::io::Result<(Handle, u32)> {
    let token = session_user_token(session)
        .map_err(|e| failed(&format!("WTSQueryUserToken for session {session}"), e))?;
    let mut environment: *mut c_void = null_mut();
    // SAFETY: `token` is a primary token open for the call; on success
    // `environment` is a block DestroyEnvironmentBlock frees below.
    if unsafe { CreateEnvironmentBlock(&mut environment, token.0, 0) } == 0 {
        return Err(failed(
            "CreateEnvironmentBlock",
            std::io::Error::last_os_error(),
        ));
    }
    let mut command = wide(command_line);
    let mut desktop = wide("winsta0\\default");
    // SAFETY: STARTUPINFOW and PROCESS_INFORMATION are plain C structs for
    // which all-zero is a valid value.
    let mut startup: STARTUPINFOW = unsafe { std::mem::zeroed() };
    startup.cb = std::mem::size_of::<STARTUPINFOW>() as u32;
    startup.lpDesktop = desktop.as_mut_ptr();
    // SAFETY: as above.
    let mut info: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: `command` and `desktop` are writable NUL-terminated buffers
    // that outlive the call (CreateProcessAsUserW may write into the
    // command line); `environment` is the Unicode block made above; the
    // token is a primary token; `info` receives two handles owned below.
    let ok = unsafe {
        CreateProcessAsUserW(
            token.0,
            std::ptr::null(),
            command.as_mut_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            0,
            CREATE_UNICODE_ENVIRONMENT | CREATE_NO_WINDOW,
            environment,
            std::ptr::null(),
            &startup,
            &mut info,
        )
    };
    let error = std::io::Error::last_os_error();
    // SAFETY: made by CreateEnvironmentBlock above, freed once.
    unsafe { DestroyEnvironmentBlock(environment) };
    if ok == 0 {
        return Err(failed("CreateProcessAsUserW", error));
    }
    drop(Handle(info.hThread));
    Ok((Handle(info.hProcess), info.dwProcessId))
}

/// `error` of the Win32 call `call`, named in the message ("… failed: …").
fn failed(call: &str, error: std::io::Error) -> std::io::Error {
    std::io::Error::new(error.kind(), format!("{call} failed: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ERROR_PRIVILEGE_NOT_HELD: WTSQueryUserToken outside LocalSystem.
    const ERROR_PRIVILEGE_NOT_HELD: i32 = 1314;

    #[test]
    fn a_program_starts_in_the_console_session_with_its_users_token() {
        let session = console_session().expect("a session at the console");
        let (process, pid) = match spawn_in_session(session, "cmd.exe /c exit 7") {
            Ok(started) => started,
            Err(e)
                if e.raw_os_error() == Some(ERROR_PRIVILEGE_NOT_HELD)
                    || e.to_string().contains("(os error 1314)") =>
            {
                // Real Windows: only LocalSystem may ask for a user's token.
                assert!(std::env::var_os("CI").is_none(), "needs LocalSystem: {e}");
                eprintln!(
                    "SKIPPED: starting a program with the user's token needs LocalSystem ({e})"
                );
                return;
            }
            Err(e) => panic!("{e}"),
        };
        assert!(pid > 0);
        let mut code = 0u32;
        // SAFETY: the handle is open; waiting at most 30 s, then reading
        // the exit code into a writable u32.
        unsafe {
            windows_sys::Win32::System::Threading::WaitForSingleObject(process.0, 30_000);
            windows_sys::Win32::System::Threading::GetExitCodeProcess(process.0, &mut code);
        }
        assert_eq!(code, 7, "cmd.exe ran and exited with its code");
        assert!(!still_running(&process));
    }

    #[test]
    fn a_second_claim_of_the_same_instance_name_is_refused_until_the_first_goes() {
        let name = format!("Local\\deskside-test-instance-{}", std::process::id());
        let first = claim_single_instance(&name).unwrap();
        assert!(first.is_some());
        assert!(claim_single_instance(&name).unwrap().is_none());
        drop(first);
        assert!(claim_single_instance(&name).unwrap().is_some());
    }

    #[test]
    fn this_process_is_described_by_windows() {
        let own = own_sid().unwrap();
        assert!(own.starts_with("S-1-"), "{own}");
        let facts = process_facts(std::process::id()).unwrap();
        assert_eq!(facts.user, own);
        let exe = std::env::current_exe().unwrap();
        assert!(
            crate::session::channel::same_program(&facts.image, &exe),
            "{} vs {}",
            facts.image.display(),
            exe.display()
        );
    }
}
