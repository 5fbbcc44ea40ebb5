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
//! on Unix only; on Windows the crate has the platform-independent parts
//! (the traits, `map_event`, the synthetic and recording backends) until its
//! DXGI/GDI capturer and SendInput sink are written.

mod capture;
#[cfg(unix)]
mod enigo;
mod input;
mod recording;
mod session;
#[cfg(unix)]
mod shm_mem;
mod synthetic;
#[cfg(unix)]
mod x11;
#[cfg(unix)]
pub mod xvfb;

#[cfg(unix)]
pub use self::enigo::EnigoSink;
pub use capture::{CaptureError, Captured, Capturer, Frame};
pub use input::{map_event, DesktopEvent, InputError, InputSink};
pub use recording::RecordingSink;
pub use session::{detect_display, detect_display_from, DisplayKind, WAYLAND_UNSUPPORTED};
pub use synthetic::{SyntheticCapturer, SyntheticControl};
#[cfg(unix)]
pub use x11::{CaptureMethod, X11Capturer, X11Options};
