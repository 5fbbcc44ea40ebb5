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

mod capture;
mod enigo;
mod input;
mod recording;
mod session;
mod shm_mem;
mod synthetic;
mod x11;
pub mod xvfb;

pub use self::enigo::EnigoSink;
pub use capture::{CaptureError, Captured, Capturer, Frame};
pub use input::{map_event, DesktopEvent, InputError, InputSink};
pub use recording::RecordingSink;
pub use session::{detect_display, detect_display_from, DisplayKind, WAYLAND_UNSUPPORTED};
pub use synthetic::{SyntheticCapturer, SyntheticControl};
pub use x11::{CaptureMethod, X11Capturer, X11Options};
