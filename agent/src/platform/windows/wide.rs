//! UTF-16 strings to and from Win32 calls: the one copy the agent's
//! diagnostics, platform and session code share.
#![allow(unsafe_code)]

/// `text` as a NUL-terminated UTF-16 string.
pub fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(std::iter::once(0)).collect()
}

/// A NUL-terminated UTF-16 string Windows returned, or `None` for a null
/// pointer.
///
/// # Safety
/// `ptr` must be null or point to a NUL-terminated UTF-16 string that stays
/// valid during the call.
pub unsafe fn from_wide_ptr(ptr: *const u16) -> Option<String> {
    if ptr.is_null() {
        return None;
    }
    let mut len = 0;
    // SAFETY: the caller promises a NUL-terminated string: every index up
    // to and including the terminator is readable.
    while unsafe { *ptr.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: the `len` units before the terminator were just read.
    let units = unsafe { std::slice::from_raw_parts(ptr, len) };
    Some(String::from_utf16_lossy(units))
}

/// A NUL-terminated UTF-16 string stored in a fixed array (as in
/// `WLAN_INTERFACE_INFO`).
pub fn from_wide_array(units: &[u16]) -> String {
    let len = units.iter().position(|u| *u == 0).unwrap_or(units.len());
    String::from_utf16_lossy(&units[..len])
}
