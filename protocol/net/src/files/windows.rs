//! Owner-only files on Windows: a protected DACL (no entries inherited from
//! the folder) that grants full control to SYSTEM, the Administrators group
//! and the account this process runs as, and to nobody else. This is what
//! mode 0600 means on Unix; an administrator can read the file on both.
//!
//! All of this crate's `unsafe` is in this file: Win32 security calls, each
//! with its SAFETY paragraph. Buffers handed to Windows are `Vec<u32>`, so
//! SIDs and ACLs (which hold `u32` fields) are suitably aligned.
#![allow(unsafe_code)]

use std::ffi::{c_void, OsStr};
use std::fs::{DirBuilder, File, OpenOptions};
use std::os::windows::ffi::OsStrExt as _;
use std::os::windows::fs::OpenOptionsExt as _;
use std::os::windows::io::AsRawHandle as _;
use std::path::Path;
use std::ptr::{null, null_mut};

use windows_sys::Win32::Foundation::{
    CloseHandle, LocalFree, GENERIC_ALL, GENERIC_READ, GENERIC_WRITE, HANDLE,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, GetNamedSecurityInfoW, SetNamedSecurityInfoW, SetSecurityInfo,
    SE_FILE_OBJECT,
};
use windows_sys::Win32::Security::{
    AclSizeInformation, AddAccessAllowedAce, CreateWellKnownSid, EqualSid, GetAce,
    GetAclInformation, GetLengthSid, GetTokenInformation, InitializeAcl, IsValidSid,
    LookupAccountSidW, TokenElevation, TokenUser, WinBuiltinAdministratorsSid, WinLocalSystemSid,
    ACCESS_ALLOWED_ACE, ACE_HEADER, ACL, ACL_REVISION, ACL_SIZE_INFORMATION,
    DACL_SECURITY_INFORMATION, INHERIT_ONLY_ACE, PROTECTED_DACL_SECURITY_INFORMATION,
    PSECURITY_DESCRIPTOR, PSID, SECURITY_MAX_SID_SIZE, SID_NAME_USE, TOKEN_ELEVATION, TOKEN_QUERY,
    TOKEN_USER, WELL_KNOWN_SID_TYPE,
};
use windows_sys::Win32::Storage::FileSystem::{
    FILE_ALL_ACCESS, FILE_APPEND_DATA, FILE_READ_DATA, FILE_WRITE_DATA, READ_CONTROL, WRITE_DAC,
    WRITE_OWNER,
};
use windows_sys::Win32::System::SystemServices::ACCESS_ALLOWED_ACE_TYPE;
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

use super::FileError;

/// Rights that make a file's secret someone else's: reading it, changing
/// it, or changing who may do either.
const EXPOSING_RIGHTS: u32 = FILE_READ_DATA
    | FILE_WRITE_DATA
    | FILE_APPEND_DATA
    | WRITE_DAC
    | WRITE_OWNER
    | GENERIC_READ
    | GENERIC_WRITE
    | GENERIC_ALL;

/// Creates `dir` and missing parents; the directory itself (not the parents,
/// which keep what they inherit) gets the owner-only DACL unless it
/// inherited an owner-only one. An existing directory is left as it is, as
/// on Unix.
pub(super) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new().recursive(true).create(dir)?;
    if check_private(dir).is_ok() {
        return Ok(());
    }
    set_protected_dacl(dir, &owner_only_acl()?)
}

/// Replaces the DACL of `path` with `acl` (built by [`owner_only_acl`] or
/// from it), protected from inheritance.
fn set_protected_dacl(path: &Path, acl: &[u32]) -> std::io::Result<()> {
    let wide = wide_path(path);
    // SAFETY: `wide` is a NUL-terminated UTF-16 path that outlives the call;
    // `acl` is an initialised ACL that outlives the call; the owner, group
    // and SACL pointers are null because only the DACL is being set.
    let status = unsafe {
        SetNamedSecurityInfoW(
            wide.as_ptr(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            null_mut(),
            null_mut(),
            acl.as_ptr().cast::<ACL>(),
            null(),
        )
    };
    win32_result(status)
}

/// Creates a new file (failing if it exists) and, unless what it inherited
/// is already owner-only, gives it the owner-only DACL before a single byte
/// is written to it.
pub(super) fn create_private_file(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        // GENERIC_WRITE for writing and FlushFileBuffers; WRITE_DAC to
        // replace the inherited DACL through this handle.
        .access_mode(GENERIC_WRITE | WRITE_DAC | READ_CONTROL)
        .open(path)?;
    // What the file inherited may already be owner-only (a profile folder
    // usually is); then it is left alone, as Wine needs: it cannot store a
    // DACL and turns any it is given into Unix mode 0775 ("Everyone may
    // read"). A later widening is caught by `check_private` at every read.
    if check_private(path).is_ok() {
        return Ok(file);
    }
    let acl = owner_only_acl()?;
    // SAFETY: the handle is open (owned by `file`, alive for the call) with
    // WRITE_DAC; `acl` is an initialised ACL that outlives the call; null
    // owner, group and SACL mean "leave them".
    let status = unsafe {
        SetSecurityInfo(
            file.as_raw_handle() as HANDLE,
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            null_mut(),
            null_mut(),
            acl.as_ptr().cast::<ACL>(),
            null(),
        )
    };
    win32_result(status)?;
    Ok(file)
}

/// Fails if the file's DACL lets any account other than SYSTEM,
/// Administrators and this process's own read or change it, or if the file
/// has no DACL at all (which admits everyone).
pub(super) fn check_private(path: &Path) -> Result<(), FileError> {
    let cannot = |source| FileError::Io {
        action: "cannot read the access control list of",
        path: path.to_owned(),
        source,
    };
    let trusted = [
        Sid::well_known(WinLocalSystemSid).map_err(cannot)?,
        Sid::well_known(WinBuiltinAdministratorsSid).map_err(cannot)?,
        Sid::current_user().map_err(cannot)?,
    ];
    let descriptor = SecurityDescriptor::of_file(path).map_err(cannot)?;
    let Some(dacl) = descriptor.dacl() else {
        return Err(open_acl(
            path,
            &trusted[2],
            "anyone (the file has no access control list)".to_owned(),
            &[],
        ));
    };
    let mut others: Vec<Sid> = Vec::new();
    for ace in dacl.allowed_entries().map_err(cannot)? {
        if ace.mask & EXPOSING_RIGHTS == 0 || trusted.iter().any(|t| t.equals(&ace.sid)) {
            continue;
        }
        if !others.iter().any(|o| o.equals(&ace.sid)) {
            others.push(ace.sid);
        }
    }
    if others.is_empty() {
        return Ok(());
    }
    let who = others
        .iter()
        .map(Sid::describe)
        .collect::<Vec<_>>()
        .join(", ");
    Err(open_acl(path, &trusted[2], who, &others))
}

/// The error for a file others can reach, with the `icacls` command that
/// makes it owner-only again: drop inherited entries, grant the three
/// trusted accounts full control, remove the others' grants.
fn open_acl(path: &Path, user: &Sid, who: String, others: &[Sid]) -> FileError {
    let mut fix = format!(
        "icacls \"{}\" /inheritance:r /grant:r *S-1-5-18:F *S-1-5-32-544:F *{}:F",
        path.display(),
        user.string()
    );
    if !others.is_empty() {
        fix.push_str(" /remove:g");
        for sid in others {
            fix.push_str(" *");
            fix.push_str(&sid.string());
        }
    }
    FileError::OpenAcl {
        path: path.to_owned(),
        who,
        fix,
    }
}

fn wide_path(path: &Path) -> Vec<u16> {
    wide(path.as_os_str())
}

fn wide(text: &OsStr) -> Vec<u16> {
    text.encode_wide().chain(std::iter::once(0)).collect()
}

fn win32_result(status: u32) -> std::io::Result<()> {
    if status == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(status as i32))
    }
}

fn last_error<T>() -> std::io::Result<T> {
    Err(std::io::Error::last_os_error())
}

/// The DACL this module gives private files and directories: full control
/// for SYSTEM, Administrators and the current account (once each).
fn owner_only_acl() -> std::io::Result<Vec<u32>> {
    let mut sids = vec![
        Sid::well_known(WinLocalSystemSid)?,
        Sid::well_known(WinBuiltinAdministratorsSid)?,
    ];
    // An elevated process acts as an administrator, which the
    // Administrators entry covers. Leaving its account out keeps what an
    // administrator enrolls for the service (LocalSystem) readable by the
    // service: an entry for the administrator's own account would be
    // "another account" to a service checking as SYSTEM, which would refuse
    // the key.
    let user = Sid::current_user()?;
    if !process_is_elevated() && !sids.iter().any(|s| s.equals(&user)) {
        sids.push(user);
    }
    // An ACCESS_ALLOWED_ACE ends with the SID's first u32 (SidStart).
    let ace_base = std::mem::size_of::<ACCESS_ALLOWED_ACE>() - std::mem::size_of::<u32>();
    let size =
        std::mem::size_of::<ACL>() + sids.iter().map(|s| ace_base + s.byte_len()).sum::<usize>();
    let size = size.next_multiple_of(4);
    let mut acl = vec![0u32; size / 4];
    // SAFETY: `acl` is a writable, u32-aligned buffer of `size` bytes.
    if unsafe { InitializeAcl(acl.as_mut_ptr().cast::<ACL>(), size as u32, ACL_REVISION) } == 0 {
        return last_error();
    }
    for sid in &sids {
        // SAFETY: `acl` was initialised above with room for every entry
        // (sized from the same SIDs); `sid` is a valid SID that outlives the
        // call and is only read.
        let ok = unsafe {
            AddAccessAllowedAce(
                acl.as_mut_ptr().cast::<ACL>(),
                ACL_REVISION,
                FILE_ALL_ACCESS,
                sid.as_psid(),
            )
        };
        if ok == 0 {
            return last_error();
        }
    }
    Ok(acl)
}

/// Whether this process runs elevated (an administrator past UAC, or a
/// service account). False when it cannot tell.
pub(super) fn process_is_elevated() -> bool {
    let mut token: HANDLE = null_mut();
    // SAFETY: GetCurrentProcess returns a pseudo-handle that needs no
    // closing; `token` receives a handle we close below.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return false;
    }
    let mut elevation = TOKEN_ELEVATION { TokenIsElevated: 0 };
    let mut returned = 0u32;
    // SAFETY: `token` is open with TOKEN_QUERY; the buffer is a
    // TOKEN_ELEVATION of exactly the size passed; `returned` is writable.
    let ok = unsafe {
        GetTokenInformation(
            token,
            TokenElevation,
            (&mut elevation as *mut TOKEN_ELEVATION).cast::<c_void>(),
            std::mem::size_of::<TOKEN_ELEVATION>() as u32,
            &mut returned,
        )
    };
    // SAFETY: `token` is the handle OpenProcessToken gave us, closed once.
    unsafe { CloseHandle(token) };
    ok != 0 && elevation.TokenIsElevated != 0
}

/// An owned copy of a security identifier.
struct Sid {
    words: Vec<u32>,
}

impl Sid {
    fn as_psid(&self) -> PSID {
        // Windows only reads through this pointer in every call it is
        // passed to here; PSID is `*mut` in the bindings regardless.
        self.words.as_ptr() as PSID
    }

    fn byte_len(&self) -> usize {
        // SAFETY: `words` holds a valid SID (every constructor checks).
        unsafe { GetLengthSid(self.as_psid()) as usize }
    }

    fn well_known(kind: WELL_KNOWN_SID_TYPE) -> std::io::Result<Sid> {
        let mut size = SECURITY_MAX_SID_SIZE;
        let mut words = vec![0u32; (SECURITY_MAX_SID_SIZE as usize).div_ceil(4)];
        // SAFETY: `words` is a writable buffer of SECURITY_MAX_SID_SIZE
        // bytes, the most any SID takes; a null domain SID is allowed for
        // the built-in kinds used here.
        let ok = unsafe {
            CreateWellKnownSid(
                kind,
                null_mut(),
                words.as_mut_ptr().cast::<c_void>(),
                &mut size,
            )
        };
        if ok == 0 {
            return last_error();
        }
        Ok(Sid { words })
    }

    /// Copies a SID that Windows owns (inside an ACE or a token).
    ///
    /// # Safety
    /// `psid` must point to a valid SID, readable for the call.
    unsafe fn copy_of(psid: PSID) -> std::io::Result<Sid> {
        // SAFETY: the caller promises a readable SID; IsValidSid checks its
        // header before GetLengthSid trusts it.
        let len = unsafe {
            if IsValidSid(psid) == 0 {
                return Err(std::io::Error::other("invalid security identifier"));
            }
            GetLengthSid(psid) as usize
        };
        let mut words = vec![0u32; len.div_ceil(4)];
        // SAFETY: `psid` is readable for `len` bytes (its own length) and
        // `words` is at least `len` bytes; the regions do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(psid.cast::<u8>(), words.as_mut_ptr().cast::<u8>(), len)
        };
        Ok(Sid { words })
    }

    /// The account this process runs as.
    fn current_user() -> std::io::Result<Sid> {
        let mut token: HANDLE = null_mut();
        // SAFETY: GetCurrentProcess returns a pseudo-handle that needs no
        // closing; `token` receives a handle we close below.
        if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
            return last_error();
        }
        let result = (|| {
            let mut needed = 0u32;
            // SAFETY: a null buffer of length 0 asks for the size needed.
            unsafe { GetTokenInformation(token, TokenUser, null_mut(), 0, &mut needed) };
            if needed == 0 {
                return last_error();
            }
            let mut buffer = vec![0u64; (needed as usize).div_ceil(8)];
            // SAFETY: `buffer` is writable for `needed` bytes and 8-byte
            // aligned, enough for TOKEN_USER (pointers).
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
            // SAFETY: on success the buffer starts with a TOKEN_USER whose
            // Sid points into the same buffer, alive until the copy is made.
            unsafe {
                let user = &*buffer.as_ptr().cast::<TOKEN_USER>();
                Sid::copy_of(user.User.Sid)
            }
        })();
        // SAFETY: `token` is the handle OpenProcessToken gave us, closed once.
        unsafe { CloseHandle(token) };
        result
    }

    fn equals(&self, other: &Sid) -> bool {
        // SAFETY: both hold valid SIDs, only read.
        unsafe { EqualSid(self.as_psid(), other.as_psid()) != 0 }
    }

    /// "S-1-1-0" and the like, for messages and the `icacls` fix.
    fn string(&self) -> String {
        let mut text: *mut u16 = null_mut();
        // SAFETY: a valid SID in; on success `text` is a NUL-terminated
        // string Windows allocated with LocalAlloc, read then freed once.
        unsafe {
            if ConvertSidToStringSidW(self.as_psid(), &mut text) == 0 || text.is_null() {
                return "an unknown account".to_owned();
            }
            let len = (0..).take_while(|&i| *text.add(i) != 0).count();
            let string = String::from_utf16_lossy(std::slice::from_raw_parts(text, len));
            LocalFree(text.cast::<c_void>());
            string
        }
    }

    /// "Everyone (S-1-1-0)", or the SID alone if it has no name here.
    fn describe(&self) -> String {
        let sid = self.string();
        let mut name = [0u16; 256];
        let mut domain = [0u16; 256];
        let (mut name_len, mut domain_len) = (name.len() as u32, domain.len() as u32);
        let mut kind: SID_NAME_USE = 0;
        // SAFETY: the name and domain buffers are writable for the lengths
        // passed; a null system name means this machine.
        let ok = unsafe {
            LookupAccountSidW(
                null(),
                self.as_psid(),
                name.as_mut_ptr(),
                &mut name_len,
                domain.as_mut_ptr(),
                &mut domain_len,
                &mut kind,
            )
        };
        if ok == 0 {
            return sid;
        }
        let name = String::from_utf16_lossy(&name[..(name_len as usize).min(name.len())]);
        format!("{name} ({sid})")
    }
}

/// A file's security descriptor, freed on drop.
struct SecurityDescriptor {
    descriptor: PSECURITY_DESCRIPTOR,
    dacl: *mut ACL,
}

impl SecurityDescriptor {
    fn of_file(path: &Path) -> std::io::Result<SecurityDescriptor> {
        let wide = wide_path(path);
        let mut descriptor: PSECURITY_DESCRIPTOR = null_mut();
        let mut dacl: *mut ACL = null_mut();
        // SAFETY: `wide` is NUL-terminated and outlives the call; the out
        // pointers are valid; the owner, group and SACL are not asked for.
        let status = unsafe {
            GetNamedSecurityInfoW(
                wide.as_ptr(),
                SE_FILE_OBJECT,
                DACL_SECURITY_INFORMATION,
                null_mut(),
                null_mut(),
                &mut dacl,
                null_mut(),
                &mut descriptor,
            )
        };
        win32_result(status)?;
        Ok(SecurityDescriptor { descriptor, dacl })
    }

    /// The DACL, or `None` for a null DACL (everyone has every right).
    fn dacl(&self) -> Option<Dacl<'_>> {
        (!self.dacl.is_null()).then_some(Dacl {
            acl: self.dacl,
            _owner: std::marker::PhantomData,
        })
    }
}

impl Drop for SecurityDescriptor {
    fn drop(&mut self) {
        // SAFETY: GetNamedSecurityInfoW allocated the descriptor with
        // LocalAlloc; the DACL pointer points into it and dies with it.
        unsafe { LocalFree(self.descriptor) };
    }
}

/// A DACL inside a `SecurityDescriptor` (or a buffer) that outlives it.
struct Dacl<'a> {
    acl: *mut ACL,
    _owner: std::marker::PhantomData<&'a ()>,
}

/// An access-allowed entry that applies to the object itself.
struct AllowedEntry {
    mask: u32,
    sid: Sid,
}

impl Dacl<'_> {
    /// The access-allowed entries that apply to this object (inherit-only
    /// entries, meant for a folder's children, are left out). Deny entries
    /// are skipped: they only take rights away.
    fn allowed_entries(&self) -> std::io::Result<Vec<AllowedEntry>> {
        let mut info = ACL_SIZE_INFORMATION::default();
        // SAFETY: `self.acl` is a valid ACL kept alive by the descriptor;
        // `info` is writable for its size.
        let ok = unsafe {
            GetAclInformation(
                self.acl,
                (&mut info as *mut ACL_SIZE_INFORMATION).cast::<c_void>(),
                std::mem::size_of::<ACL_SIZE_INFORMATION>() as u32,
                AclSizeInformation,
            )
        };
        if ok == 0 {
            return last_error();
        }
        let mut entries = Vec::new();
        for index in 0..info.AceCount {
            let mut ace: *mut c_void = null_mut();
            // SAFETY: `index` is below the ACL's entry count; `ace`
            // receives a pointer into the ACL.
            if unsafe { GetAce(self.acl, index, &mut ace) } == 0 {
                return last_error();
            }
            // SAFETY: every ACE starts with an ACE_HEADER; the fields of
            // ACCESS_ALLOWED_ACE are read only when the header says that is
            // its type, and its SID starts at SidStart inside the entry.
            unsafe {
                let header = &*ace.cast::<ACE_HEADER>();
                if u32::from(header.AceType) != ACCESS_ALLOWED_ACE_TYPE
                    || u32::from(header.AceFlags) & INHERIT_ONLY_ACE != 0
                {
                    continue;
                }
                let allowed = &*ace.cast::<ACCESS_ALLOWED_ACE>();
                let sid = Sid::copy_of(
                    (&allowed.SidStart as *const u32)
                        .cast_mut()
                        .cast::<c_void>(),
                )?;
                entries.push(AllowedEntry {
                    mask: allowed.Mask,
                    sid,
                });
            }
        }
        Ok(entries)
    }
}

/// Test helper: replaces the file's DACL with the owner-only one plus an
/// entry granting `kind` (e.g. Everyone) read access, as a careless copy or
/// an inherited folder permission would.
#[cfg(test)]
pub(super) fn grant_read(path: &Path, kind: WELL_KNOWN_SID_TYPE) -> std::io::Result<()> {
    let extra = Sid::well_known(kind)?;
    let base = owner_only_acl()?;
    let extra_len = std::mem::size_of::<ACCESS_ALLOWED_ACE>() - 4 + extra.byte_len();
    let size = (base.len() * 4 + extra_len).next_multiple_of(4);
    let mut acl = base;
    acl.resize(size / 4, 0);
    // SAFETY: the ACL was built by owner_only_acl; its recorded size is
    // raised to the larger buffer before the new entry is added.
    unsafe {
        (*acl.as_mut_ptr().cast::<ACL>()).AclSize = size as u16;
        if AddAccessAllowedAce(
            acl.as_mut_ptr().cast::<ACL>(),
            ACL_REVISION,
            GENERIC_READ | FILE_READ_DATA,
            extra.as_psid(),
        ) == 0
        {
            return last_error();
        }
    }
    set_protected_dacl(path, &acl)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What this module writes does not depend on the file system keeping
    /// it (Wine 8.0 does not: see `files::tests`), so check the list itself.
    #[test]
    fn the_owner_only_list_grants_full_control_to_system_administrators_and_this_account_only() {
        let mut acl = owner_only_acl().unwrap();
        let dacl = Dacl {
            acl: acl.as_mut_ptr().cast::<ACL>(),
            _owner: std::marker::PhantomData,
        };
        let entries = dacl.allowed_entries().unwrap();
        let sids: Vec<String> = entries.iter().map(|e| e.sid.string()).collect();
        let user = Sid::current_user().unwrap().string();
        let mut expected = vec!["S-1-5-18".to_owned(), "S-1-5-32-544".to_owned()];
        // Elevated (Wine runs every program elevated): the Administrators
        // entry stands for this account, so that a service running as
        // SYSTEM accepts what an administrator wrote for it.
        if !process_is_elevated() && user != "S-1-5-18" {
            expected.push(user);
        }
        assert_eq!(sids, expected);
        assert!(entries.iter().all(|e| e.mask == FILE_ALL_ACCESS));
    }
}
