//! Screen capture ([`Capturer`]) and input injection ([`InputSink`]) for the
//! agent's session helper.
//!
//! The session helper runs inside the employee's graphical session. It asks
//! [`detect_display`] what kind of session it is in, opens a capturer
//! ([`X11Capturer`] on Xorg, [`SyntheticCapturer`] in tests) and an input sink
//! ([`EnigoSink`] on Xorg, [`RecordingSink`] in tests), then loops: capture,
//! encode (elsewhere), and apply the technician's input after mapping it from
//! frame pixels to desktop pixels with [`map_event`].
//!
//! This crate never decides *whether* capture or input is allowed: consent and
//! view-only sessions are enforced by the caller before anything reaches here.
//! It holds no network code and spawns no threads.

//!
//! The X11 backends (capture, enigo's XTEST input, the Xvfb helper) are built
//! on Unix only. On Windows the crate has [`WindowsCapturer`] (DXGI Desktop
//! Duplication, falling back to GDI) and [`SendInputSink`] (`src/windows/`,
//! all of their `unsafe`); `windows_math.rs` holds their pure arithmetic and
//! is built everywhere so its tests run on Linux too.

mod capture;
#[cfg(unix)]
mod enigo;
mod input;
mod recording;
mod session;
#[cfg(unix)]
mod shm_mem;
mod synthetic;
#[cfg(windows)]
mod windows;
pub mod windows_math;
#[cfg(unix)]
mod x11;
#[cfg(unix)]
mod x11_watch;
#[cfg(unix)]
pub mod xvfb;

#[cfg(unix)]
pub use self::enigo::EnigoSink;
pub use capture::{CaptureError, Captured, Capturer, DamageRect, Frame};
pub use input::{map_event, DesktopEvent, InputError, InputSink};
pub use recording::RecordingSink;
pub use session::{detect_display, detect_display_from, DisplayKind, WAYLAND_UNSUPPORTED};
pub use synthetic::{SyntheticCapturer, SyntheticControl};
#[cfg(windows)]
pub use windows::{
    windows_desktop, wine_version, CaptureBackend, DxgiCapturer, GdiCapturer, SendInputSink,
    WindowsCapturer,
};
#[cfg(unix)]
pub use x11::{CaptureMethod, X11Capturer, X11Options};
#[cfg(unix)]
pub use x11_watch::{X11DamageWatch, X11WatchStop};
