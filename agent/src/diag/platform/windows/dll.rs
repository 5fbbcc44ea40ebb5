//! Functions looked up at run time rather than imported: those newer than
//! Windows 10's first releases (`GetNetworkConnectivityHint`, 2004) and
//! those of DLLs some editions lack (`wlanapi.dll` is absent from Windows
//! Server without the Wireless LAN Service). An import would stop the
//! whole agent from loading there; a lookup lets one probe say "unknown".
#![allow(unsafe_code)]

use std::ffi::CStr;

use windows_sys::Win32::Foundation::HMODULE;
use windows_sys::Win32::System::LibraryLoader::{
    GetModuleHandleW, GetProcAddress, LoadLibraryExW, LOAD_LIBRARY_SEARCH_SYSTEM32,
};

pub use crate::platform::windows::wide::{from_wide_array, from_wide_ptr, wide};

/// An untyped function pointer as `GetProcAddress` returns it.
pub type Farproc = unsafe extern "system" fn() -> isize;

/// A system DLL, loaded from System32 only (never from the current
/// directory or PATH), kept loaded for the life of the process: the
/// function pointers taken from it must stay valid.
#[derive(Debug, Clone, Copy)]
pub struct SystemDll(HMODULE);

// SAFETY: a module handle is a process-wide value; Windows allows using it
// from any thread.
unsafe impl Send for SystemDll {}

impl SystemDll {
    /// Loads `name` (e.g. `wlanapi.dll`) from System32.
    pub fn load(name: &str) -> Option<SystemDll> {
        let wide = wide(name);
        // SAFETY: `wide` is a NUL-terminated UTF-16 string that outlives
        // the call; a null file handle is what the function requires.
        let module = unsafe {
            LoadLibraryExW(
                wide.as_ptr(),
                std::ptr::null_mut(),
                LOAD_LIBRARY_SEARCH_SYSTEM32,
            )
        };
        (!module.is_null()).then_some(SystemDll(module))
    }

    /// A DLL this process has loaded already (`ntdll.dll` always is).
    pub fn loaded(name: &str) -> Option<SystemDll> {
        let wide = wide(name);
        // SAFETY: as above; the handle is not reference-counted and the
        // module stays loaded for the life of the process.
        let module = unsafe { GetModuleHandleW(wide.as_ptr()) };
        (!module.is_null()).then_some(SystemDll(module))
    }

    /// The address of `symbol`, as an untyped function pointer; the caller
    /// transmutes it to the function's documented signature.
    pub fn symbol(&self, symbol: &CStr) -> Option<Farproc> {
        // SAFETY: the module handle is valid (loaded and never freed) and
        // `symbol` is NUL-terminated.
        unsafe { GetProcAddress(self.0, symbol.as_ptr().cast()) }
    }
}

/// Whether this process runs under Wine rather than Windows: Wine's
/// `ntdll.dll` exports `wine_get_version`, Windows' does not.
pub fn under_wine() -> bool {
    SystemDll::loaded("ntdll.dll")
        .and_then(|ntdll| ntdll.symbol(c"wine_get_version"))
        .is_some()
}
