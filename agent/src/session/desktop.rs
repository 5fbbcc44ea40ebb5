//! The session helper's desktop backends, one arm per platform: what screen
//! the helper is on, a capturer for it and an input sink for it. The helper
//! (`helper.rs`) is the same on every platform and only calls these three.
//!
//! This module decides nothing about consent or control: the helper only
//! opens a capturer after the service's Start, and an input sink only for
//! a session granted control.

use deskside_desktop::{Capturer, InputSink};

/// What a capturer is opened for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// Listing the monitors once (no shared memory, no damage tracking).
    Monitors,
    /// Streaming a session's frames.
    Streaming,
}

/// The screen this helper can capture ("DISPLAY" on X11), or why it
/// cannot, in words for the technician.
#[cfg(unix)]
pub fn detect_screen() -> Result<String, String> {
    use deskside_desktop::{detect_display, DisplayKind, WAYLAND_UNSUPPORTED};
    match detect_display() {
        DisplayKind::X11 { display } => Ok(display),
        DisplayKind::Wayland => Err(WAYLAND_UNSUPPORTED.to_owned()),
        DisplayKind::None => {
            Err("no graphical display in this session (DISPLAY is not set)".to_owned())
        }
    }
}

/// A capturer for `screen`.
#[cfg(unix)]
pub fn open_capturer(screen: &str, purpose: Use) -> Result<Box<dyn Capturer>, String> {
    let options = deskside_desktop::X11Options {
        shm: purpose == Use::Streaming,
        damage: purpose == Use::Streaming && std::env::var_os("DESKSIDE_NO_XDAMAGE").is_none(),
    };
    deskside_desktop::X11Capturer::open_with(screen, options)
        .map(|c| Box::new(c) as Box<dyn Capturer>)
        .map_err(|e| e.to_string())
}

/// An input sink for `screen`.
#[cfg(unix)]
pub fn open_input(screen: &str) -> Result<Box<dyn InputSink>, String> {
    deskside_desktop::EnigoSink::open(screen)
        .map(|s| Box::new(s) as Box<dyn InputSink>)
        .map_err(|e| e.to_string())
}

// Windows: the helper runs on the interactive desktop of the user's
// session ("WinSta0\Default"): DXGI Desktop Duplication with a GDI
// fallback, and SendInput (deskside-desktop's `windows` module).

/// The screen this helper can capture, or why it cannot.
#[cfg(windows)]
pub fn detect_screen() -> Result<String, String> {
    deskside_desktop::windows_desktop()
}

/// A capturer for `screen`: GDI to list the monitors (cheap, and in the
/// same order as DXGI's), DXGI falling back to GDI for streaming.
#[cfg(windows)]
pub fn open_capturer(_screen: &str, purpose: Use) -> Result<Box<dyn Capturer>, String> {
    match purpose {
        Use::Monitors => {
            deskside_desktop::GdiCapturer::open().map(|c| Box::new(c) as Box<dyn Capturer>)
        }
        Use::Streaming => {
            deskside_desktop::WindowsCapturer::open().map(|c| Box::new(c) as Box<dyn Capturer>)
        }
    }
    .map_err(|e| e.to_string())
}

/// An input sink for `screen`.
#[cfg(windows)]
pub fn open_input(_screen: &str) -> Result<Box<dyn InputSink>, String> {
    deskside_desktop::SendInputSink::open()
        .map(|s| Box::new(s) as Box<dyn InputSink>)
        .map_err(|e| e.to_string())
}
