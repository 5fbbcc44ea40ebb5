//! The capture interface: what a screen-capture backend must provide, the frame
//! it hands out and the errors it reports.
//!
//! Backends live in their own modules (`x11.rs`, `synthetic.rs`); this module
//! does no I/O.

use deskside_protocol::session::{CursorShape, Monitor};

/// A captured picture of one monitor, borrowed from the capturer until the next
/// capture.
///
/// Pixels are 32-bit little-endian words `0xXXRRGGBB`, so in memory each pixel
/// is the four bytes **B, G, R, X**. The fourth byte is not an alpha value: X11
/// leaves it unspecified (usually 0); treat every pixel as opaque.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes from the start of one row to the start of the next (at least
    /// `width * 4`).
    pub stride: usize,
    /// `stride * height` bytes (the last row may stop after `width * 4`).
    pub data: &'a [u8],
}

impl Frame<'_> {
    /// The pixels of row `y` (`width * 4` bytes), or `None` past the last row.
    pub fn row(&self, y: u32) -> Option<&[u8]> {
        if y >= self.height {
            return None;
        }
        let start = self.stride.checked_mul(y as usize)?;
        let end = start.checked_add(self.width as usize * 4)?;
        self.data.get(start..end)
    }

    /// The pixel at (`x`, `y`) as `[b, g, r, x]`, or `None` outside the frame.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 4]> {
        if x >= self.width {
            return None;
        }
        let row = self.row(y)?;
        let at = x as usize * 4;
        let p = row.get(at..at + 4)?;
        Some([p[0], p[1], p[2], p[3]])
    }
}

/// The result of one [`Capturer::capture`].
#[derive(Clone, Copy, Debug)]
pub struct Captured<'a> {
    /// The picture.
    pub frame: Frame<'a>,
    /// Whether anything on this monitor may have changed since the previous
    /// capture of the same monitor. `false` means the picture is exactly the
    /// previous one, so the caller can skip encoding. The first capture of a
    /// monitor, and every capture when the backend cannot track damage, says
    /// `true`.
    pub changed: bool,
}

/// A source of screen pictures and pointer state for one desktop.
///
/// Calls are synchronous and cheap when nothing changed; the caller decides the
/// pace (latest-frame-wins: capture the next frame when the previous one has
/// left).
pub trait Capturer: Send {
    /// The desktop's monitors, queried afresh (they change when a screen is
    /// plugged in). [`Monitor::index`] is the position in the returned list.
    fn monitors(&mut self) -> Result<Vec<Monitor>, CaptureError>;

    /// Captures monitor `monitor` (a [`Monitor::index`] from the last
    /// [`Capturer::monitors`]; queried on first use).
    fn capture(&mut self, monitor: u8) -> Result<Captured<'_>, CaptureError>;

    /// The pointer position in desktop coordinates, with its new shape when the
    /// shape changed since the last call (the first call always carries it).
    /// `None` when the backend cannot tell where the pointer is.
    fn cursor(&mut self) -> Result<Option<(i32, i32, Option<CursorShape>)>, CaptureError>;

    /// Which parts of the last [`Capturer::capture`]'s frame changed since
    /// the capture before it of the same monitor, in frame pixels, when the
    /// backend knows (DXGI reports its dirty and moved rectangles; the GDI
    /// fallback compares with its previous picture). `None` means unknown:
    /// treat the whole frame as changed when `changed` says so. Meaningful
    /// only until the next capture.
    fn damage(&self) -> Option<&[DamageRect]> {
        None
    }
}

/// A changed rectangle of a frame, in frame pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DamageRect {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Why a capture failed.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The session is a Wayland session.
    #[error("{}", crate::session::WAYLAND_UNSUPPORTED)]
    Wayland,
    /// No graphical session is visible to this process.
    #[error("no graphical session found (neither DISPLAY nor WAYLAND_DISPLAY is set); run the session helper inside the employee's desktop session")]
    NoDisplay,
    /// Connecting to the X server failed.
    #[error("could not connect to X display {display:?}: {source}; check that the X server is running and that this user may use it (DISPLAY, XAUTHORITY)")]
    Connect {
        /// The display name tried.
        display: String,
        /// What x11rb reported.
        #[source]
        source: x11rb::errors::ConnectError,
    },
    /// An X11 request failed or the connection broke.
    #[error(
        "X11 request failed: {0}; if the X server went away (logout), restart the session helper"
    )]
    X11(#[from] x11rb::errors::ReplyOrIdError),
    /// The screen's pixel format is not one this crate understands.
    #[error("unsupported X11 screen format (depth {depth}, {bits_per_pixel} bits per pixel, {byte_order}); remote view needs a 24- or 32-bit TrueColor screen")]
    UnsupportedFormat {
        /// Root window depth.
        depth: u8,
        /// Bits per pixel of that depth's ZPixmap format (0 when absent).
        bits_per_pixel: u8,
        /// The server's image byte order.
        byte_order: &'static str,
    },
    /// The requested monitor does not exist.
    #[error("monitor {index} does not exist (the desktop has {count}); pick one from the current monitor list")]
    NoSuchMonitor {
        /// The index asked for.
        index: u8,
        /// How many monitors there are.
        count: usize,
    },
    /// A monitor is larger than X11 requests allow or than memory permits.
    #[error(
        "monitor {index} is {width}x{height}, too large to capture; lower the screen resolution"
    )]
    TooLarge {
        /// The monitor index.
        index: u8,
        /// Its width.
        width: u32,
        /// Its height.
        height: u32,
    },
    /// The X server answered with data that does not fit the request.
    #[error("the X server returned a malformed image ({0}); restart the session helper, and report this if it persists")]
    Malformed(&'static str),
    /// A Windows capture call failed.
    #[error("{call} failed: {detail}; {advice}")]
    Windows {
        /// The Win32, DXGI or Direct3D call.
        call: &'static str,
        /// What Windows reported (its error code and message).
        detail: String,
        /// What to do about it.
        advice: &'static str,
    },
    /// The input desktop is one a helper running as the user cannot read.
    #[error("the secure desktop is showing (a UAC prompt, the lock screen or Ctrl+Alt+Del); the session helper runs as the user and cannot see it: the picture comes back when the employee closes it")]
    SecureDesktop,
}

impl From<x11rb::errors::ReplyError> for CaptureError {
    fn from(e: x11rb::errors::ReplyError) -> Self {
        CaptureError::X11(e.into())
    }
}

impl From<x11rb::errors::ConnectionError> for CaptureError {
    fn from(e: x11rb::errors::ConnectionError) -> Self {
        CaptureError::X11(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_accessors_respect_stride_and_bounds() {
        // 2x2 frame with a stride of 12 bytes (4 bytes of padding per row).
        let data: Vec<u8> = (0..24).collect();
        let f = Frame {
            width: 2,
            height: 2,
            stride: 12,
            data: &data,
        };
        assert_eq!(f.row(0), Some(&data[0..8]));
        assert_eq!(f.row(1), Some(&data[12..20]));
        assert_eq!(f.row(2), None);
        assert_eq!(f.pixel(1, 1), Some([16, 17, 18, 19]));
        assert_eq!(f.pixel(2, 0), None);
    }
}
