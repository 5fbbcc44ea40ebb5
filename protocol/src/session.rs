//! Messages inside a remote session, between console and agent.
//!
//! These travel inside the end-to-end encrypted connection that console and
//! agent run through the relay (see `ARCHITECTURE.md`, "Sessions"); the relay
//! never sees them. The session connection carries:
//!
//! - one bidirectional **control** stream opened by the console, carrying
//!   [`ConsoleToAgent`] one way and [`AgentToConsole`] the other;
//! - one unidirectional **video** stream opened by the agent, carrying
//!   [`VideoFrame`]s (latest-frame-wins: the agent captures the next frame only
//!   once the console has acknowledged an earlier one with
//!   [`ConsoleToAgent::FrameReceived`], so a slow link gets fewer frames,
//!   never older ones);
//! - one unidirectional **input** stream opened by the console, carrying
//!   [`InputEvent`]s, so input never waits behind video.
//!
//! Coordinates in input events are pixels of the frame the console is showing
//! (the selected monitor, at capture resolution); the agent maps them to the
//! desktop through the monitor's offset.

use serde::{Deserialize, Serialize};

/// What the technician asks to do, and what the employee granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// See the screen.
    pub view: bool,
    /// Move the pointer, click and type.
    pub control: bool,
}

impl Capabilities {
    /// View only.
    pub const VIEW: Self = Self {
        view: true,
        control: false,
    };
    /// View and control.
    pub const CONTROL: Self = Self {
        view: true,
        control: true,
    };

    /// `view` or `view+control`, for logs, audit rows and dialogs.
    pub fn label(self) -> &'static str {
        match (self.view, self.control) {
            (_, true) => "view+control",
            (true, false) => "view",
            (false, false) => "none",
        }
    }
}

/// A monitor of the agent's desktop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Monitor {
    /// Index used in [`ConsoleToAgent::SelectMonitor`].
    pub index: u8,
    /// Output name, e.g. `HDMI-1`.
    pub name: String,
    /// Offset of its top-left corner in the desktop.
    pub x: i32,
    /// Offset of its top-left corner in the desktop.
    pub y: i32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Whether it is the primary monitor.
    pub primary: bool,
}

/// Picture quality the technician prefers; the agent adapts within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Quality {
    /// Lossless tiles when the path allows, video otherwise.
    Auto,
    /// Always lossless tiles (sharp text, more bandwidth).
    Lossless,
    /// Always lossy video (for slow links).
    LowBandwidth,
}

/// Who ended a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndedBy {
    /// The technician closed the viewer or ran out of patience.
    Technician,
    /// The employee pressed Stop.
    Employee,
    /// The grant's time box ran out.
    Expired,
    /// The connection was lost for longer than a session survives.
    ConnectionLost,
    /// The agent's session helper went away (logout, crash).
    HelperGone,
}

impl EndedBy {
    /// Stable lower-case name used in audit rows and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            EndedBy::Technician => "technician",
            EndedBy::Employee => "employee",
            EndedBy::Expired => "expired",
            EndedBy::ConnectionLost => "connection_lost",
            EndedBy::HelperGone => "helper_gone",
        }
    }

    /// Parses [`EndedBy::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "technician" => EndedBy::Technician,
            "employee" => EndedBy::Employee,
            "expired" => EndedBy::Expired,
            "connection_lost" => EndedBy::ConnectionLost,
            "helper_gone" => EndedBy::HelperGone,
            _ => return None,
        })
    }
}

/// How a session id is written everywhere (console output, audit rows,
/// logs): 16 lower-case hex digits, the [`crate::SessionId`] `Display`. For
/// callers that hold the bare number the relay's store keeps; everything
/// else holds a `SessionId` and formats it directly.
pub fn session_id_text(id: u64) -> String {
    crate::SessionId(id).to_string()
}

/// Console → agent, on the control stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsoleToAgent {
    /// Shows this monitor.
    SelectMonitor {
        /// [`Monitor::index`].
        index: u8,
    },
    /// Changes the picture quality.
    SetQuality(Quality),
    /// Asks for a full frame (after a decode error, or a resize).
    RequestKeyframe,
    /// A chat line from the technician.
    Chat {
        /// The text.
        text: String,
    },
    /// The technician gives up control (view-only from now on).
    DropControl,
    /// Ends the session.
    End,
    /// This console acknowledges every frame it reads
    /// ([`ConsoleToAgent::FrameReceived`]); sent once, as soon as the
    /// control stream opens. The agent then lets the next frame be captured
    /// when the path has delivered one, not when one was written into the
    /// stream's send buffer (on a slow link that buffer held tens of seconds
    /// of frames). An agent that hears nothing of it paces by its writes.
    AcknowledgesFrames,
    /// Every video frame up to and including `seq` was read off the video
    /// stream.
    FrameReceived {
        /// [`VideoFrame::seq`] of the latest frame read.
        seq: u64,
    },
    /// This console decodes lossless tiles with copies and strips
    /// (`deskside-codec` tiles, flag bit 2: a scroll travels as a copy of
    /// the rows that moved plus the uncovered strip); sent once, as soon
    /// as the control stream opens. An agent sends such frames only after
    /// hearing it: an older console refuses them.
    DecodesTileCopies,
    /// A message from a newer console; never sent.
    #[serde(skip)]
    Unknown {
        /// Its variant index.
        tag: u32,
    },
}
crate::impl_message!(ConsoleToAgent, known = 9);

/// Agent → console, on the control stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentToConsole {
    /// First message: what the session may do and what there is to see.
    Welcome {
        /// What the employee granted.
        granted: Capabilities,
        /// Monitors of the desktop.
        monitors: Vec<Monitor>,
        /// The monitor being shown.
        selected: u8,
        /// Seconds until the grant expires.
        expires_in_secs: u64,
    },
    /// The granted capabilities changed (the employee downgraded to view-only).
    Granted(Capabilities),
    /// A chat line from the employee.
    Chat {
        /// The text.
        text: String,
    },
    /// Capture is not possible on this desktop (for example Wayland), with the
    /// reason in plain language; no frames will come.
    CaptureUnavailable {
        /// Why, and what to do.
        reason: String,
    },
    /// The session ended.
    Ended {
        /// Who ended it.
        by: EndedBy,
    },
    /// The pointer moved or changed shape, apart from any frame: moving
    /// only the pointer never costs a frame. Position in pixels of the
    /// frames of the selected monitor; the shape only when it changed (the
    /// console keeps the last one it got, from here or from a frame).
    Pointer(Cursor),
    /// The pointer's shape changed. Sent once per change, apart from frames
    /// and positions; the picture travels only the first time the agent
    /// uses a shape in the session, after that the id alone (the console
    /// keeps the pictures by id). Newer agents send shapes only this way,
    /// never in [`Cursor::shape`].
    PointerShape(PointerShape),
    /// A message from a newer agent; never sent.
    #[serde(skip)]
    Unknown {
        /// Its variant index.
        tag: u32,
    },
}
crate::impl_message!(AgentToConsole, known = 7);

/// How a [`VideoFrame`]'s payload is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Codec {
    /// Changed tiles, each compressed losslessly with zstd.
    ZstdTiles,
    /// H.264 (OpenH264), one access unit.
    H264,
}

/// The pointer: position in frame pixels, and its shape when it changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Position relative to the frame's top-left corner.
    pub x: i32,
    /// Position relative to the frame's top-left corner.
    pub y: i32,
    /// New shape, when it changed since the last frame.
    pub shape: Option<CursorShape>,
}

/// A cursor image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorShape {
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Hot spot.
    pub hot_x: u16,
    /// Hot spot.
    pub hot_y: u16,
    /// Straight RGBA, `width * height * 4` bytes.
    pub rgba: Vec<u8>,
}

/// Largest pointer picture, in pixels per side. Windows' largest
/// accessibility pointer is 256 pixels; anything larger is refused (the
/// agent sends [`PointerShape::UNKNOWN`], the console ignores it).
pub const MAX_POINTER_SIDE: u16 = 256;

/// The pointer's shape, in [`AgentToConsole::PointerShape`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointerShape {
    /// The agent's number for this shape, unique within the session, from
    /// 1 up; [`PointerShape::UNKNOWN`] when the agent could not send the
    /// shape (the console then draws a plain marker).
    pub id: u32,
    /// The picture, the first time the agent uses `id`; `None` when it
    /// sent it before in this session.
    pub image: Option<PointerImage>,
}

impl PointerShape {
    /// The id of a shape the agent could not send (larger than
    /// [`MAX_POINTER_SIDE`], or unreadable).
    pub const UNKNOWN: u32 = 0;
}

/// A pointer picture. Its pixels are compressed (zstd) because a large
/// pointer's raw pixels do not fit a control-stream frame
/// ([`MAX_CONTROL_FRAME_LEN`]), while its mostly transparent pixels
/// compress well.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointerImage {
    /// Width in pixels, 1 to [`MAX_POINTER_SIDE`].
    pub width: u16,
    /// Height in pixels, 1 to [`MAX_POINTER_SIDE`].
    pub height: u16,
    /// Hot spot (the clicking point), from the top-left corner.
    pub hot_x: u16,
    /// Hot spot (the clicking point), from the top-left corner.
    pub hot_y: u16,
    /// Straight RGBA, `width * height * 4` bytes once decompressed (zstd).
    pub rgba_zstd: Vec<u8>,
}

/// A pointer picture that cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PointerImageError {
    /// A side is 0 or larger than [`MAX_POINTER_SIDE`].
    #[error(
        "a {width}x{height} pointer picture is outside 1..={MAX_POINTER_SIDE} pixels a side; \
         the plain pointer marker is shown instead"
    )]
    Size {
        /// Width in pixels.
        width: u16,
        /// Height in pixels.
        height: u16,
    },
}

impl PointerImage {
    /// Checks the picture's size and returns its raw length in bytes
    /// (`width * height * 4`), so a reader can bound its decompression
    /// before allocating.
    pub fn raw_len(width: u16, height: u16) -> Result<usize, PointerImageError> {
        let side = 1..=MAX_POINTER_SIDE;
        if !side.contains(&width) || !side.contains(&height) {
            return Err(PointerImageError::Size { width, height });
        }
        Ok(usize::from(width) * usize::from(height) * 4)
    }
}

/// One frame of the agent's screen, on the video stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoFrame {
    /// Frame number, from 0, increasing.
    pub seq: u64,
    /// Which monitor this shows.
    pub monitor: u8,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// How `payload` is encoded.
    pub codec: Codec,
    /// Whether `payload` decodes on its own (no earlier frame needed).
    pub keyframe: bool,
    /// Encoded picture (see `deskside-codec`).
    pub payload: Vec<u8>,
    /// The pointer, when known.
    pub cursor: Option<Cursor>,
    /// Agent time of capture, in microseconds since the session began; the
    /// console uses it for the stats overlay, never as a clock.
    pub captured_us: u64,
}

/// A mouse button.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MouseButton {
    /// Left button.
    Left,
    /// Middle button.
    Middle,
    /// Right button.
    Right,
}

/// A key that is not text, or a modifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Key {
    Return,
    Tab,
    Backspace,
    Escape,
    Delete,
    Insert,
    Home,
    End,
    PageUp,
    PageDown,
    Left,
    Right,
    Up,
    Down,
    Space,
    Shift,
    Control,
    Alt,
    Meta,
    /// F1 to F12.
    F(u8),
    /// A character key pressed with a modifier (Ctrl+C): the unshifted
    /// character.
    Char(char),
}

/// Console → agent, on the input stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputEvent {
    /// Moves the pointer to frame pixel (`x`, `y`).
    PointerMove {
        /// Column in the frame.
        x: u32,
        /// Row in the frame.
        y: u32,
    },
    /// Presses or releases a button at the current pointer position.
    Button {
        /// Which button.
        button: MouseButton,
        /// Pressed (true) or released.
        pressed: bool,
    },
    /// Scrolls by whole notches; positive `dy` scrolls down.
    Scroll {
        /// Horizontal notches.
        dx: i32,
        /// Vertical notches.
        dy: i32,
    },
    /// Presses or releases a key.
    Key {
        /// Which key.
        key: Key,
        /// Pressed (true) or released.
        pressed: bool,
    },
    /// Types text as the user would (layout-independent).
    Text {
        /// The text.
        text: String,
    },
    /// An event from a newer console; never sent.
    #[serde(skip)]
    Unknown {
        /// Its variant index.
        tag: u32,
    },
}
crate::impl_message!(InputEvent, known = 5);

/// Largest frame on the video stream (and on the helper socket, which
/// carries the same frames): a lossless keyframe of a large screen is big.
/// Session streams are end-to-end, so this is the console's and the
/// agent's limit, not the relay's (the relay never parses them). Anything
/// larger is a protocol error.
pub const MAX_VIDEO_FRAME_LEN: usize = 32 * 1024 * 1024;

/// Largest frame on the control and input streams.
pub const MAX_CONTROL_FRAME_LEN: usize = 64 * 1024;

/// Application close codes of the session connection, with the reason text
/// in the close frame.
pub mod close {
    /// The session ended normally (who ended it was sent on the control
    /// stream first).
    pub const ENDED: u32 = 0;
    /// The employee refused, or did not answer in time.
    pub const REFUSED: u32 = 1;
    /// No one could be asked (no graphical session, another session running).
    pub const UNAVAILABLE: u32 = 2;
    /// The relay did not confirm that the consent was audited; the agent
    /// sends nothing without that.
    pub const NOT_AUDITED: u32 = 3;
    /// The device trusts an organisation key, and the technician's session
    /// key is not certified by it (the reason says why); no one was asked.
    pub const UNCERTIFIED: u32 = 4;
}
