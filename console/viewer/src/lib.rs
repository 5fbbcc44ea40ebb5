//! The technician's remote-session viewer window (eframe/egui).
//!
//! The window shows the agent's screen, forwards the technician's pointer and
//! keyboard while control is granted, and carries the toolbar (view-only,
//! monitor, quality, End), the stats overlay and the chat. It knows nothing
//! of the network: the session's network side talks to it through the
//! channels made by [`viewer_channel`] (see [`io`](crate::ViewerIo)).
//!
//! ```no_run
//! # fn network_side(_: deskside_viewer::ViewerRemote, _: deskside_viewer::ViewerReceivers) {}
//! use deskside_viewer::{run_viewer, viewer_channel, ViewerOptions};
//! let (io, remote, receivers) = viewer_channel();
//! // Give `remote` and `receivers` to the tokio side (it calls
//! // `remote.set_frame(..)`, `remote.handle_agent_message(..)`, and
//! // `receivers.input.recv().await`), then block here on the main thread:
//! network_side(remote, receivers);
//! let exit = run_viewer(ViewerOptions::new("laptop-42", "123 456"), io)?;
//! println!("session ended by {}", exit.ended_by.as_str());
//! # Ok::<(), deskside_viewer::ViewerError>(())
//! ```
//!
//! Threads: the window may be opened from any thread on Linux and Windows
//! (the event loop is built with `with_any_thread`), but winit allows only
//! one event loop per process, so every window of a process must be opened
//! from the same thread (eframe reuses its event loop on that thread). On
//! macOS it must be the main thread.

mod app;
mod input;
mod io;
mod pointer;

use std::time::Duration;

use deskside_protocol::session::{Capabilities, EndedBy};

pub use input::{named_key, Fit};
pub use io::{
    viewer_channel, FrameError, RgbaFrame, ViewerCommand, ViewerEvent, ViewerIo, ViewerReceivers,
    ViewerRemote, ViewerStats,
};

/// Height of the toolbar above the picture, in points. With
/// [`ViewerOptions::initial_size`] equal to the frame size (and one pixel per
/// point, the chat closed), the picture is drawn 1:1 at window position
/// (0, `TOOLBAR_HEIGHT`).
pub const TOOLBAR_HEIGHT: f32 = 56.0;

/// How the viewer window starts.
#[derive(Clone, Debug)]
pub struct ViewerOptions {
    /// The device's name; the window is titled `deskside — <device_name>`.
    pub device_name: String,
    /// The employee's name, when known, shown in the header.
    pub employee_name: Option<String>,
    /// The verification code both sides compare, shown in the header.
    pub verification_code: String,
    /// What the employee granted at the start (updated by
    /// [`ViewerEvent::Granted`]). Default: view only, until told otherwise.
    pub granted: Capabilities,
    /// Size of the picture area at start, in points (the window adds the
    /// toolbar). Use the frame size for a 1:1 picture. Default 1280 × 720.
    pub initial_size: [f32; 2],
    /// How long the "session ended" message stays before the window closes
    /// by itself. Default 3 s.
    pub close_after_end: Duration,
}

impl ViewerOptions {
    /// Options with defaults for everything but the names.
    pub fn new(device_name: impl Into<String>, verification_code: impl Into<String>) -> Self {
        Self {
            device_name: device_name.into(),
            employee_name: None,
            verification_code: verification_code.into(),
            granted: Capabilities::VIEW,
            initial_size: [1280.0, 720.0],
            close_after_end: Duration::from_secs(3),
        }
    }

    /// The window title: `deskside — <device name>`.
    pub fn title(&self) -> String {
        format!("deskside — {}", self.device_name)
    }
}

/// How the viewer ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewerExit {
    /// Who ended the session: [`EndedBy::Technician`] when the technician
    /// pressed End or closed the window, otherwise what the network side
    /// reported in [`ViewerEvent::Ended`].
    pub ended_by: EndedBy,
    /// Whether the viewer sent [`ViewerCommand::End`].
    pub end_sent: bool,
}

/// The viewer window could not run.
#[derive(Debug, thiserror::Error)]
pub enum ViewerError {
    /// The window or its OpenGL context could not be created.
    #[error(
        "could not open the viewer window: {0}; check that a graphical session is available \
         (DISPLAY set, X server running) and that OpenGL works (Mesa: libgl1-mesa-dri)"
    )]
    Window(String),
}

/// Opens the viewer window and blocks until it closes.
///
/// When this returns, [`ViewerCommand::End`] has been sent unless the network
/// side had already reported the end ([`ViewerEvent::Ended`]). After the
/// network side reports the end, the window shows who ended the session for
/// [`ViewerOptions::close_after_end`], then closes by itself.
pub fn run_viewer(opts: ViewerOptions, io: ViewerIo) -> Result<ViewerExit, ViewerError> {
    app::run(opts, io)
}
