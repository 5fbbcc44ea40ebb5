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

/// Blocks until the screen changes (`Ok(true)`) or it was stopped
/// (`Ok(false)`).
pub type WaitForChange = Box<dyn FnMut() -> Result<bool, String> + Send>;

/// Ends a [`WaitForChange`] from another thread.
pub type StopWaiting = Box<dyn FnOnce() + Send>;

/// A signal for changes on `screen` (XDamage events on X11), or `None`
/// where the platform has none and the capture loop looks on a timer.
#[cfg(unix)]
pub fn open_change_signal(screen: &str) -> Option<(WaitForChange, StopWaiting)> {
    if std::env::var_os("DESKSIDE_NO_XDAMAGE").is_some() {
        return None;
    }
    match deskside_desktop::X11DamageWatch::open(screen) {
        Ok((mut watch, stop)) => Some((
            Box::new(move || watch.wait().map_err(|e| e.to_string())),
            Box::new(move || stop.stop()),
        )),
        Err(e) => {
            tracing::info!(%screen, "no change signal, looking at the screen on a timer: {e}");
            None
        }
    }
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

/// Windows has no change signal here: DXGI reports its dirty rectangles
/// only when asked and GDI compares rows, so the capture loop looks on a
/// timer (the same loop, see `pace.rs`).
#[cfg(windows)]
pub fn open_change_signal(_screen: &str) -> Option<(WaitForChange, StopWaiting)> {
    None
}

/// An input sink for `screen`.
#[cfg(windows)]
pub fn open_input(_screen: &str) -> Result<Box<dyn InputSink>, String> {
    deskside_desktop::SendInputSink::open()
        .map(|s| Box::new(s) as Box<dyn InputSink>)
        .map_err(|e| e.to_string())
}
