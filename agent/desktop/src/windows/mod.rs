//! Windows capture and input: [`WindowsCapturer`] picks DXGI Desktop
//! Duplication (`dxgi.rs`) and falls back to GDI (`gdi.rs`) with a logged
//! reason; [`SendInputSink`] (`sendinput.rs`) injects input. The monitor
//! list, DPI awareness and the input desktop's name live here, the pointer
//! as GDI sees it in `cursor.rs`.
//!
//! All `unsafe` of the Windows backends is in this folder, each block with
//! its SAFETY comment. The pure arithmetic (absolute mouse coordinates,
//! cursor masks, changed rows) is in `crate::windows_math`, tested on every
//! OS. This module never decides whether capture or input is allowed.
//!
//! The helper runs as the signed-in user, so it sees and controls only the
//! user's own desktop: elevated windows ignore its input (UIPI) and the
//! secure desktop (UAC prompts, the lock screen) is invisible to it. A helper
//! running as SYSTEM that follows the input desktop would lift both; see
//! ARCHITECTURE.md.
#![allow(unsafe_code)]

mod cursor;
mod dxgi;
mod gdi;
mod sendinput;

use std::sync::Once;

use deskside_protocol::session::{CursorShape, Monitor};
use windows::core::{BOOL, PCSTR, PCWSTR};
use windows::Win32::Foundation::{E_ACCESSDENIED, HANDLE, LPARAM, RECT};
use windows::Win32::Graphics::Gdi::{
    EnumDisplayMonitors, GetMonitorInfoW, HDC, HMONITOR, MONITORINFO, MONITORINFOEXW,
};
use windows::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
use windows::Win32::System::StationsAndDesktops::{
    GetProcessWindowStation, GetThreadDesktop, GetUserObjectInformationW, UOI_FLAGS, UOI_NAME,
    USEROBJECTFLAGS,
};
use windows::Win32::System::Threading::GetCurrentThreadId;
use windows::Win32::UI::HiDpi::{
    GetDpiForMonitor, SetProcessDpiAwareness, SetProcessDpiAwarenessContext,
    DPI_AWARENESS_CONTEXT_PER_MONITOR_AWARE_V2, MDT_EFFECTIVE_DPI, PROCESS_PER_MONITOR_DPI_AWARE,
};
use windows::Win32::UI::WindowsAndMessaging::{
    GetSystemMetrics, SetProcessDPIAware, MONITORINFOF_PRIMARY, SM_CXVIRTUALSCREEN,
    SM_CYVIRTUALSCREEN, SM_XVIRTUALSCREEN, SM_YVIRTUALSCREEN,
};

pub use self::dxgi::DxgiCapturer;
pub use self::gdi::GdiCapturer;
pub use self::sendinput::SendInputSink;
use crate::capture::{CaptureError, Captured, Capturer, DamageRect};
use crate::windows_math::DesktopRect;

/// Which Windows capture backend runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureBackend {
    /// DXGI Desktop Duplication: the GPU's copy of the desktop, with dirty
    /// rectangles (Windows 8 and later, a WDDM driver, a local console
    /// session).
    Dxgi,
    /// GDI `BitBlt` of the screen: works everywhere (remote desktop
    /// sessions, old drivers, Wine), compares frames itself to find damage.
    Gdi,
}

impl CaptureBackend {
    /// `"dxgi"` or `"gdi"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureBackend::Dxgi => "dxgi",
            CaptureBackend::Gdi => "gdi",
        }
    }
}

/// The capturer of the Windows desktop: DXGI when it works, GDI otherwise.
#[derive(Debug)]
pub enum WindowsCapturer {
    /// Desktop Duplication.
    Dxgi(DxgiCapturer),
    /// The GDI fallback.
    Gdi(GdiCapturer),
}

impl WindowsCapturer {
    /// Tries DXGI Desktop Duplication on the primary monitor and falls back
    /// to GDI, logging why. `DESKSIDE_CAPTURE=gdi` skips DXGI (to compare
    /// the two, or when duplication misbehaves on a driver).
    pub fn open() -> Result<Self, CaptureError> {
        if std::env::var("DESKSIDE_CAPTURE").is_ok_and(|v| v.eq_ignore_ascii_case("gdi")) {
            tracing::info!("screen capture: GDI (DESKSIDE_CAPTURE=gdi)");
            return Ok(Self::Gdi(GdiCapturer::open()?));
        }
        match DxgiCapturer::open() {
            Ok(dxgi) => {
                tracing::info!("screen capture: DXGI Desktop Duplication");
                Ok(Self::Dxgi(dxgi))
            }
            Err(reason) => {
                tracing::info!(
                    "screen capture: GDI, because DXGI Desktop Duplication is unavailable here ({reason}); \
                     this is expected in remote desktop sessions, with old display drivers and under Wine"
                );
                Ok(Self::Gdi(GdiCapturer::open()?))
            }
        }
    }

    /// Opens one backend, with no fallback.
    pub fn open_backend(backend: CaptureBackend) -> Result<Self, CaptureError> {
        Ok(match backend {
            CaptureBackend::Dxgi => Self::Dxgi(DxgiCapturer::open()?),
            CaptureBackend::Gdi => Self::Gdi(GdiCapturer::open()?),
        })
    }

    /// The backend in use.
    pub fn backend(&self) -> CaptureBackend {
        match self {
            Self::Dxgi(_) => CaptureBackend::Dxgi,
            Self::Gdi(_) => CaptureBackend::Gdi,
        }
    }
}

impl Capturer for WindowsCapturer {
    fn monitors(&mut self) -> Result<Vec<Monitor>, CaptureError> {
        match self {
            Self::Dxgi(c) => c.monitors(),
            Self::Gdi(c) => c.monitors(),
        }
    }

    fn capture(&mut self, monitor: u8) -> Result<Captured<'_>, CaptureError> {
        if let Self::Dxgi(dxgi) = self {
            if let Some(reason) = dxgi.unavailable() {
                tracing::info!("screen capture: switching to GDI, because DXGI Desktop Duplication stopped working ({reason})");
                *self = Self::Gdi(GdiCapturer::open()?);
            }
        }
        match self {
            Self::Dxgi(c) => c.capture(monitor),
            Self::Gdi(c) => c.capture(monitor),
        }
    }

    fn cursor(&mut self) -> Result<Option<(i32, i32, Option<CursorShape>)>, CaptureError> {
        match self {
            Self::Dxgi(c) => c.cursor(),
            Self::Gdi(c) => c.cursor(),
        }
    }

    fn damage(&self) -> Option<&[DamageRect]> {
        match self {
            Self::Dxgi(c) => c.damage(),
            Self::Gdi(c) => c.damage(),
        }
    }
}

/// The window station and desktop this process draws on and can capture
/// (`WinSta0\Default` for a helper in the signed-in user's session), or
/// why it cannot show anything: a process on a non-interactive window
/// station (a service in session 0) sees no one's screen. The session
/// helper's "what to capture".
pub fn windows_desktop() -> Result<String, String> {
    /// `WSF_VISIBLE` (WinUser.h): the window station has a display.
    const WSF_VISIBLE: u32 = 1;
    // SAFETY: returns this process's window station handle (not to be
    // closed).
    let station = unsafe { GetProcessWindowStation() }
        .map_err(|e| format!("this process has no window station ({})", win_detail(&e)))?;
    let mut flags = USEROBJECTFLAGS::default();
    // SAFETY: `flags` is a USEROBJECTFLAGS and its size is passed.
    let visible = unsafe {
        GetUserObjectInformationW(
            HANDLE(station.0),
            UOI_FLAGS,
            Some((&mut flags as *mut USEROBJECTFLAGS).cast()),
            std::mem::size_of::<USEROBJECTFLAGS>() as u32,
            None,
        )
    }
    .map(|()| flags.dwFlags & WSF_VISIBLE != 0)
    .unwrap_or(true);
    let station_name = object_name(HANDLE(station.0)).unwrap_or_else(|| "?".to_owned());
    if !visible {
        return Err(format!(
            "this process runs on the non-interactive window station {station_name} (a service in session 0) and cannot see the employee's screen; \
             the session helper must run in the employee's signed-in session"
        ));
    }
    // SAFETY: returns the calling thread's desktop handle (not to be
    // closed).
    let desktop = unsafe { GetThreadDesktop(GetCurrentThreadId()) }
        .map_err(|e| format!("this thread has no desktop ({})", win_detail(&e)))?;
    let desktop_name = object_name(HANDLE(desktop.0)).unwrap_or_else(|| "?".to_owned());
    Ok(format!("{station_name}\\{desktop_name}"))
}

/// The name of a window station or desktop.
fn object_name(object: HANDLE) -> Option<String> {
    let mut name = [0u16; 256];
    // SAFETY: the buffer pointer and its length in bytes describe `name`,
    // which outlives the call.
    unsafe {
        GetUserObjectInformationW(
            object,
            UOI_NAME,
            Some(name.as_mut_ptr().cast()),
            (name.len() * 2) as u32,
            None,
        )
    }
    .ok()?;
    Some(string_until_nul(&name))
}

/// A fixed-size UTF-16 buffer Windows filled (a name) as a string: up to
/// its first NUL, or all of it when there is none.
pub(crate) fn string_until_nul(wide: &[u16]) -> String {
    let len = wide.iter().position(|&c| c == 0).unwrap_or(wide.len());
    String::from_utf16_lossy(&wide[..len])
}

/// The Wine version when this program runs under Wine (ntdll exports
/// `wine_get_version` there), `None` on Windows.
pub fn wine_version() -> Option<String> {
    let ntdll: Vec<u16> = "ntdll.dll\0".encode_utf16().collect();
    // SAFETY: the module name is a NUL-terminated UTF-16 string that
    // outlives the call; ntdll is loaded in every process.
    let module = unsafe { GetModuleHandleW(PCWSTR(ntdll.as_ptr())) }.ok()?;
    // SAFETY: the procedure name is a NUL-terminated ASCII literal.
    let proc = unsafe { GetProcAddress(module, PCSTR(c"wine_get_version".as_ptr().cast())) }?;
    // SAFETY: Wine's `const char *wine_get_version(void)` returns a static
    // NUL-terminated string; the pointer was exported under that name.
    let text = unsafe {
        let get: unsafe extern "C" fn() -> *const std::ffi::c_char = std::mem::transmute(proc);
        let p = get();
        if p.is_null() {
            return Some(String::new());
        }
        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    };
    Some(text)
}

/// Makes this process per-monitor DPI aware (version 2), once, so that
/// monitor rectangles, captured pixels and `SendInput` coordinates are all
/// physical pixels: a DPI-unaware helper would be handed a scaled-down
/// copy of a 150 % monitor and scaled coordinates. When the process already
/// has an awareness (from its manifest), that one stays and is logged.
pub(crate) fn ensure_dpi_aware() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: takes a predefined pseudo-handle value; no pointers.
        match unsafe { SetProcessDpiAwarenessContext(DPI_AWARENESS_CONTEXT_PER_MONITOR_AWARE_V2) } {
            Ok(()) => tracing::debug!("per-monitor DPI aware (v2)"),
            Err(v2) => {
                // Windows before 10 1703 (and Wine 8) lack v2: per-monitor
                // v1 gives the same physical coordinates to this process.
                // SAFETY: takes an enum value; no pointers.
                match unsafe { SetProcessDpiAwareness(PROCESS_PER_MONITOR_DPI_AWARE) } {
                    Ok(()) => tracing::debug!(
                        "per-monitor DPI aware (v1; v2 refused: {})",
                        win_detail(&v2)
                    ),
                    Err(v1) if v1.code() == E_ACCESSDENIED => {
                        // Already set for this process (by its manifest or an
                        // earlier call): Windows allows setting it once.
                        tracing::debug!("DPI awareness was already set for this process");
                    }
                    Err(v1) => {
                        // A manifest may have set an awareness already
                        // (access denied). System awareness is the next
                        // best: right on single-DPI desktops.
                        // SAFETY: no arguments.
                        let system = unsafe { SetProcessDPIAware() }.as_bool();
                        tracing::info!(
                            "per-monitor DPI awareness not set ({}; {}); system DPI awareness {}: on monitors with different scale factors input may land off by the scale",
                            win_detail(&v2),
                            win_detail(&v1),
                            if system { "set" } else { "unchanged" }
                        );
                    }
                }
            }
        }
    });
}

/// A monitor as `EnumDisplayMonitors` lists it.
#[derive(Clone, Debug)]
pub(crate) struct MonitorArea {
    pub(crate) monitor: Monitor,
    /// Its `HMONITOR`, to match DXGI outputs to this list.
    pub(crate) handle: isize,
}

/// The desktop's monitors in `EnumDisplayMonitors` order, physical pixels.
pub(crate) fn list_monitors() -> Result<Vec<MonitorArea>, CaptureError> {
    ensure_dpi_aware();
    unsafe extern "system" fn each(
        monitor: HMONITOR,
        _dc: HDC,
        _rect: *mut RECT,
        data: LPARAM,
    ) -> BOOL {
        // SAFETY: `data` is the address of the Vec below, alive and not
        // otherwise borrowed while EnumDisplayMonitors runs.
        let found = unsafe { &mut *(data.0 as *mut Vec<HMONITOR>) };
        found.push(monitor);
        BOOL(1)
    }
    let mut handles: Vec<HMONITOR> = Vec::new();
    // SAFETY: the callback only pushes into `handles`, passed by address
    // and alive for the whole call.
    let ok = unsafe {
        EnumDisplayMonitors(
            None,
            None,
            Some(each),
            LPARAM(&mut handles as *mut Vec<HMONITOR> as isize),
        )
    };
    if !ok.as_bool() {
        return Err(last_error("EnumDisplayMonitors", RESTART_ADVICE));
    }
    let mut monitors = Vec::with_capacity(handles.len());
    for handle in handles {
        let mut info = MONITORINFOEXW {
            monitorInfo: MONITORINFO {
                cbSize: std::mem::size_of::<MONITORINFOEXW>() as u32,
                ..Default::default()
            },
            ..Default::default()
        };
        // SAFETY: `info` is a MONITORINFOEXW whose cbSize says so, as the
        // API requires for the extended form.
        let ok = unsafe { GetMonitorInfoW(handle, &mut info.monitorInfo) };
        if !ok.as_bool() {
            // Unplugged between the two calls: list the others.
            continue;
        }
        let r = info.monitorInfo.rcMonitor;
        let rect = DesktopRect {
            left: r.left,
            top: r.top,
            right: r.right,
            bottom: r.bottom,
        };
        let Ok(index) = u8::try_from(monitors.len()) else {
            break;
        };
        let (mut dpi_x, mut dpi_y) = (0u32, 0u32);
        // SAFETY: a monitor handle from the enumeration and two out-pointers
        // to locals.
        if unsafe { GetDpiForMonitor(handle, MDT_EFFECTIVE_DPI, &mut dpi_x, &mut dpi_y) }.is_ok() {
            // Capture and input both use physical pixels (see
            // ensure_dpi_aware); the scale is logged for support.
            tracing::debug!(
                index,
                dpi = dpi_x,
                scale_percent = dpi_x * 100 / 96,
                "monitor DPI"
            );
        }
        monitors.push(MonitorArea {
            monitor: Monitor {
                index,
                name: string_until_nul(&info.szDevice),
                x: rect.left,
                y: rect.top,
                width: rect.width(),
                height: rect.height(),
                primary: info.monitorInfo.dwFlags & MONITORINFOF_PRIMARY != 0,
            },
            handle: handle.0 as isize,
        });
    }
    Ok(monitors)
}

/// The virtual desktop (the bounding box of every monitor), physical pixels.
pub(crate) fn virtual_desktop() -> DesktopRect {
    ensure_dpi_aware();
    // SAFETY: GetSystemMetrics takes an index and returns a number.
    let (x, y, w, h) = unsafe {
        (
            GetSystemMetrics(SM_XVIRTUALSCREEN),
            GetSystemMetrics(SM_YVIRTUALSCREEN),
            GetSystemMetrics(SM_CXVIRTUALSCREEN),
            GetSystemMetrics(SM_CYVIRTUALSCREEN),
        )
    };
    DesktopRect {
        left: x,
        top: y,
        right: x.saturating_add(w),
        bottom: y.saturating_add(h),
    }
}

/// What to do when a capture call fails for no reason the user can fix.
pub(crate) const RESTART_ADVICE: &str =
    "restart the session helper, and report this if it persists";

/// A Windows error as "0x… message".
pub(crate) fn win_detail(e: &windows::core::Error) -> String {
    format!("{:#010x}: {}", e.code().0, e.message())
}

/// A [`CaptureError::Windows`] for `call` from a `windows::core::Error`.
pub(crate) fn win_error(
    call: &'static str,
    e: &windows::core::Error,
    advice: &'static str,
) -> CaptureError {
    CaptureError::Windows {
        call,
        detail: win_detail(e),
        advice,
    }
}

/// A [`CaptureError::Windows`] for `call` from `GetLastError`.
pub(crate) fn last_error(call: &'static str, advice: &'static str) -> CaptureError {
    win_error(call, &windows::core::Error::from_win32(), advice)
}
