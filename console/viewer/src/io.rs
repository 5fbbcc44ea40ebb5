//! The channels between the viewer window and the session's network side.
//!
//! The window runs on one thread (eframe's event loop), the network on a tokio
//! runtime elsewhere. They share:
//!
//! - a **latest-value slot** for the decoded picture and the cursor: the
//!   network side overwrites it, the window shows whatever is newest (a slow
//!   window skips frames, it never falls behind);
//! - a latest-value slot for the stats overlay;
//! - a queue of [`ViewerEvent`]s (chat lines, grant changes, the end);
//! - two tokio unbounded channels from the window: [`ViewerCommand`]s and
//!   [`InputEvent`]s, so the network side can `recv().await` them and the
//!   window never blocks on the network.
//!
//! Every update from the network side asks the window to repaint through the
//! shared [`eframe::egui::Context`]. This module never touches the window.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use deskside_codec::pointer::ShapeCache;
use deskside_protocol::session::{
    AgentToConsole, Capabilities, CursorShape, EndedBy, InputEvent, Monitor, Quality,
};
use eframe::egui;
use tokio::sync::mpsc;

/// A decoded picture: straight (not premultiplied) RGBA, row-major, no padding.
#[derive(Clone, PartialEq, Eq)]
pub struct RgbaFrame {
    width: u32,
    height: u32,
    rgba: Vec<u8>,
}

impl std::fmt::Debug for RgbaFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RgbaFrame")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("bytes", &self.rgba.len())
            .finish()
    }
}

/// A picture whose size and pixel buffer disagree.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The buffer is not `width * height * 4` bytes.
    #[error(
        "a {width}x{height} RGBA frame needs {expected} bytes but {actual} were given; \
         the decoder must output tightly packed straight RGBA"
    )]
    WrongLength {
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
        /// `width * height * 4`.
        expected: usize,
        /// The buffer's length.
        actual: usize,
    },
    /// A zero width or height.
    #[error("a frame of {width}x{height} pixels cannot be shown; the decoder must output at least one pixel")]
    Empty {
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
    },
}

impl RgbaFrame {
    /// Wraps a straight RGBA buffer of `width * height * 4` bytes.
    pub fn new(width: u32, height: u32, rgba: Vec<u8>) -> Result<Self, FrameError> {
        if width == 0 || height == 0 {
            return Err(FrameError::Empty { width, height });
        }
        let expected = (width as usize)
            .saturating_mul(height as usize)
            .saturating_mul(4);
        if rgba.len() != expected {
            return Err(FrameError::WrongLength {
                width,
                height,
                expected,
                actual: rgba.len(),
            });
        }
        Ok(Self {
            width,
            height,
            rgba,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The pixels, straight RGBA.
    pub fn rgba(&self) -> &[u8] {
        &self.rgba
    }
}

/// What the stats overlay shows; the network side replaces it whenever it likes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ViewerStats {
    /// Frames shown per second, as measured by the network side.
    pub fps: f32,
    /// Received video bit rate in kbit/s.
    pub kbit_per_s: f32,
    /// Round-trip time to the agent in milliseconds, when known.
    pub rtt_ms: Option<f32>,
    /// Codec label, e.g. `zstd tiles` or `H.264`; empty when unknown.
    pub codec: String,
}

/// Something the network side tells the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViewerEvent {
    /// What the employee granted changed (also sent once at the start).
    Granted(Capabilities),
    /// The agent's monitors and the one being shown.
    Monitors {
        /// All monitors.
        monitors: Vec<Monitor>,
        /// [`Monitor::index`] of the one shown.
        selected: u8,
    },
    /// A chat line from the employee.
    Chat {
        /// The text.
        text: String,
    },
    /// A notice to show in the chat log (connection trouble, grant expiry…).
    Notice {
        /// Plain-language text.
        text: String,
    },
    /// No picture will come, with the reason.
    CaptureUnavailable {
        /// Why, and what to do.
        reason: String,
    },
    /// The session is over; the window shows who ended it, then closes.
    Ended {
        /// Who ended it.
        by: EndedBy,
    },
}

/// Something the window asks the network side to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViewerCommand {
    /// Show another monitor ([`Monitor::index`]).
    SelectMonitor(u8),
    /// Change the picture quality.
    SetQuality(Quality),
    /// A chat line from the technician.
    Chat(String),
    /// The technician gives control back for good (view-only from now on).
    DropControl,
    /// End the session (End button or window closed). Sent at most once.
    End,
}

#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) frame: Option<Arc<RgbaFrame>>,
    /// Bumped on every new frame, so the window uploads each frame once.
    pub(crate) frame_generation: u64,
    pub(crate) cursor: Option<(i32, i32)>,
    /// The pointer's shape (`None`: a plain marker), and a number bumped on
    /// every change so the window uploads each shape once.
    pub(crate) cursor_shape: Option<Arc<CursorShape>>,
    pub(crate) cursor_shape_generation: u64,
    /// Every shape the agent sent this session, by its number.
    pub(crate) shapes: ShapeCache,
    pub(crate) stats: ViewerStats,
    pub(crate) events: VecDeque<ViewerEvent>,
}

/// The state both sides hold; the mutex is held only to copy a few fields.
#[derive(Debug, Clone)]
pub(crate) struct SharedState {
    inner: Arc<Mutex<Shared>>,
    pub(crate) ctx: egui::Context,
}

impl SharedState {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding this lock leaves plain data behind; keep going.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The window's ends of the channels; pass it to [`crate::run_viewer`].
#[derive(Debug)]
pub struct ViewerIo {
    pub(crate) shared: SharedState,
    pub(crate) commands: mpsc::UnboundedSender<ViewerCommand>,
    pub(crate) input: mpsc::UnboundedSender<InputEvent>,
}

/// The network side's ends of the channels. Cheap to clone; every update
/// wakes the window.
#[derive(Debug, Clone)]
pub struct ViewerRemote {
    shared: SharedState,
}

/// What the network side receives from the window.
#[derive(Debug)]
pub struct ViewerReceivers {
    /// Commands from the toolbar, chat and window.
    pub commands: mpsc::UnboundedReceiver<ViewerCommand>,
    /// Input to forward on the session's input stream (only while control is
    /// granted and the technician has not switched to view-only).
    pub input: mpsc::UnboundedReceiver<InputEvent>,
}

/// Creates the channels between a viewer window and its network side.
///
/// Give the [`ViewerIo`] to [`crate::run_viewer`] (on the UI thread) and keep
/// the [`ViewerRemote`] and [`ViewerReceivers`] on the network side.
pub fn viewer_channel() -> (ViewerIo, ViewerRemote, ViewerReceivers) {
    let shared = SharedState {
        inner: Arc::new(Mutex::new(Shared::default())),
        ctx: egui::Context::default(),
    };
    let (command_tx, command_rx) = mpsc::unbounded_channel();
    let (input_tx, input_rx) = mpsc::unbounded_channel();
    (
        ViewerIo {
            shared: shared.clone(),
            commands: command_tx,
            input: input_tx,
        },
        ViewerRemote { shared },
        ViewerReceivers {
            commands: command_rx,
            input: input_rx,
        },
    )
}

impl ViewerRemote {
    /// Replaces the picture (latest wins) and the cursor position, in frame
    /// pixels (`None`: not drawn).
    pub fn set_frame(&self, frame: Arc<RgbaFrame>, cursor: Option<(i32, i32)>) {
        {
            let mut shared = self.shared.lock();
            shared.frame = Some(frame);
            shared.frame_generation = shared.frame_generation.wrapping_add(1);
            shared.cursor = cursor;
        }
        self.shared.ctx.request_repaint();
    }

    /// Moves the remote cursor without a new picture.
    pub fn set_cursor(&self, cursor: Option<(i32, i32)>) {
        self.shared.lock().cursor = cursor;
        self.shared.ctx.request_repaint();
    }

    /// Replaces the stats overlay.
    pub fn set_stats(&self, stats: ViewerStats) {
        self.shared.lock().stats = stats;
        self.shared.ctx.request_repaint();
    }

    /// Queues an event for the window.
    pub fn send(&self, event: ViewerEvent) {
        self.shared.lock().events.push_back(event);
        self.shared.ctx.request_repaint();
    }

    /// Translates a control-stream message from the agent into window events.
    /// Messages the window has nothing to show for are ignored.
    pub fn handle_agent_message(&self, message: &AgentToConsole) {
        match message {
            AgentToConsole::Welcome {
                granted,
                monitors,
                selected,
                ..
            } => {
                self.send(ViewerEvent::Granted(*granted));
                self.send(ViewerEvent::Monitors {
                    monitors: monitors.clone(),
                    selected: *selected,
                });
            }
            AgentToConsole::Granted(granted) => self.send(ViewerEvent::Granted(*granted)),
            AgentToConsole::Chat { text } => self.send(ViewerEvent::Chat { text: text.clone() }),
            AgentToConsole::CaptureUnavailable { reason } => {
                self.send(ViewerEvent::CaptureUnavailable {
                    reason: reason.clone(),
                })
            }
            AgentToConsole::Ended { by } => self.send(ViewerEvent::Ended { by: *by }),
            // The pointer travels apart from the picture: move the marker
            // at once, no frame needed.
            AgentToConsole::Pointer(cursor) => self.set_cursor(Some((cursor.x, cursor.y))),
            // Its shape changed: the picture once per shape, then its number.
            AgentToConsole::PointerShape(message) => {
                {
                    let mut shared = self.shared.lock();
                    let shape = shared.shapes.handle_shape(message).unwrap_or_else(|e| {
                        tracing::warn!("pointer shape ignored: {e}");
                        None
                    });
                    shared.cursor_shape = shape;
                    shared.cursor_shape_generation = shared.cursor_shape_generation.wrapping_add(1);
                }
                self.shared.ctx.request_repaint();
            }
            AgentToConsole::Unknown { .. } => {}
        }
    }

    /// The window's egui context, e.g. to request a repaint after changing
    /// something else it shows.
    pub fn egui_context(&self) -> &egui::Context {
        &self.shared.ctx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_length_is_checked() {
        assert!(RgbaFrame::new(2, 2, vec![0; 16]).is_ok());
        assert!(matches!(
            RgbaFrame::new(2, 2, vec![0; 15]),
            Err(FrameError::WrongLength { expected: 16, .. })
        ));
        assert!(matches!(
            RgbaFrame::new(0, 2, vec![]),
            Err(FrameError::Empty { .. })
        ));
    }

    #[test]
    fn latest_frame_wins() {
        let (io, remote, _rx) = viewer_channel();
        let a = Arc::new(RgbaFrame::new(1, 1, vec![1, 2, 3, 255]).expect("valid"));
        let b = Arc::new(RgbaFrame::new(1, 1, vec![4, 5, 6, 255]).expect("valid"));
        remote.set_frame(a, None);
        remote.set_frame(b.clone(), Some((0, 0)));
        let shared = io.shared.lock();
        assert_eq!(shared.frame.as_deref(), Some(&*b));
        assert_eq!(shared.frame_generation, 2);
        assert_eq!(shared.cursor, Some((0, 0)));
    }

    #[test]
    fn pointer_shapes_are_kept_by_number() {
        use deskside_protocol::session::PointerShape;
        let (io, remote, _rx) = viewer_channel();
        let beam = CursorShape {
            width: 3,
            height: 2,
            hot_x: 1,
            hot_y: 0,
            rgba: vec![9; 24],
        };
        let image = deskside_codec::pointer::pack(&beam).expect("packs");
        let shown = |remote: &ViewerRemote, id, image| {
            remote.handle_agent_message(&AgentToConsole::PointerShape(PointerShape { id, image }));
            let shared = io.shared.lock();
            (
                shared.cursor_shape.as_deref().cloned(),
                shared.cursor_shape_generation,
            )
        };
        assert_eq!(shown(&remote, 4, Some(image)), (Some(beam.clone()), 1));
        // Another shape the agent could not send: a plain marker.
        assert_eq!(shown(&remote, PointerShape::UNKNOWN, None), (None, 2));
        // Back to the first: its number alone is enough.
        assert_eq!(shown(&remote, 4, None), (Some(beam), 3));
        // A number never received: a plain marker, and the window goes on.
        assert_eq!(shown(&remote, 5, None), (None, 4));
    }

    #[test]
    fn welcome_becomes_grant_and_monitors() {
        let (io, remote, _rx) = viewer_channel();
        remote.handle_agent_message(&AgentToConsole::Welcome {
            granted: Capabilities::CONTROL,
            monitors: vec![],
            selected: 0,
            expires_in_secs: 60,
        });
        let events: Vec<_> = io.shared.lock().events.drain(..).collect();
        assert_eq!(
            events,
            vec![
                ViewerEvent::Granted(Capabilities::CONTROL),
                ViewerEvent::Monitors {
                    monitors: vec![],
                    selected: 0
                }
            ]
        );
    }
}
