//! Reads which Windows this is: the kernel's version numbers and the
//! feature update's name, named by `platform::os_name`.
//!
//! Not sysinfo's name: it reads `CurrentMajorVersionNumber` from the
//! registry, which older Windows and Wine's default prefix lack, and then
//! says "Windows 0 (7601)".
#![allow(unsafe_code)]

use std::ptr::null_mut;

use windows_sys::Wdk::System::SystemServices::RtlGetVersion;
use windows_sys::Win32::Foundation::ERROR_SUCCESS;
use windows_sys::Win32::System::Registry::{RegGetValueW, HKEY_LOCAL_MACHINE, RRF_RT_REG_SZ};
use windows_sys::Win32::System::SystemInformation::OSVERSIONINFOW;

use super::wide::wide;
use crate::platform::os_name::windows_name;

/// `Windows 11 23H2 (22631)`; `Windows (version unknown)` if the kernel
/// does not answer.
pub fn describe() -> String {
    let Some((major, minor, build)) = kernel_version() else {
        return "Windows (version unknown)".to_owned();
    };
    let feature_update = registry_string(
        r"SOFTWARE\Microsoft\Windows NT\CurrentVersion",
        "DisplayVersion",
    );
    windows_name(major, minor, build, feature_update.as_deref())
}

/// `(major, minor, build)` from RtlGetVersion.
fn kernel_version() -> Option<(u32, u32, u32)> {
    let mut info = OSVERSIONINFOW {
        dwOSVersionInfoSize: std::mem::size_of::<OSVERSIONINFOW>() as u32,
        dwMajorVersion: 0,
        dwMinorVersion: 0,
        dwBuildNumber: 0,
        dwPlatformId: 0,
        szCSDVersion: [0; 128],
    };
    // SAFETY: `info` is a valid, writable OSVERSIONINFOW whose size field
    // is set, as RtlGetVersion requires; it lives across the call.
    let status = unsafe { RtlGetVersion(&mut info) };
    (status == 0).then_some((info.dwMajorVersion, info.dwMinorVersion, info.dwBuildNumber))
}

/// A `REG_SZ` value under HKEY_LOCAL_MACHINE, if present (at most 127
/// characters: enough for the version names read here).
fn registry_string(key: &str, value: &str) -> Option<String> {
    let key = wide(key);
    let value = wide(value);
    let mut buffer = [0u16; 128];
    let mut size = std::mem::size_of_val(&buffer) as u32;
    // SAFETY: `key` and `value` are NUL-terminated UTF-16 strings and
    // `buffer` is writable for `size` bytes; all outlive the call. The type
    // pointer may be null. RRF_RT_REG_SZ makes the function NUL-terminate
    // the string and fail on any other type.
    let status = unsafe {
        RegGetValueW(
            HKEY_LOCAL_MACHINE,
            key.as_ptr(),
            value.as_ptr(),
            RRF_RT_REG_SZ,
            null_mut(),
            buffer.as_mut_ptr().cast(),
            &mut size,
        )
    };
    if status != ERROR_SUCCESS {
        return None;
    }
    let len = buffer.iter().position(|&c| c == 0).unwrap_or(buffer.len());
    String::from_utf16(&buffer[..len]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs under Wine in scripts/windows-tests (and on Windows).
    #[test]
    fn this_windows_has_a_name_and_a_build_number() {
        let name = describe();
        assert!(name.starts_with("Windows "), "{name}");
        let (major, _, build) = kernel_version().expect("RtlGetVersion answers");
        assert!(major >= 6, "{name}");
        assert!(name.ends_with(&format!("({build})")), "{name}");
        assert!(registry_string(
            r"SOFTWARE\Microsoft\Windows NT\CurrentVersion",
            "SystemRoot"
        )
        .is_some_and(|root| root.to_ascii_lowercase().ends_with("windows")));
    }
}
