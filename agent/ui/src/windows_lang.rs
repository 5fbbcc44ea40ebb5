//! The user's Windows display language, for the windows' words: the one
//! call into Win32 this crate makes itself (all its `unsafe` is here).
#![allow(unsafe_code)]

use windows_sys::Win32::Globalization::GetUserDefaultUILanguage;

/// The `LANGID` of the signed-in user's display language.
pub(crate) fn user_ui_language() -> u16 {
    // SAFETY: GetUserDefaultUILanguage takes no arguments, touches no
    // memory of ours and cannot fail (it returns a language identifier).
    unsafe { GetUserDefaultUILanguage() }
}
