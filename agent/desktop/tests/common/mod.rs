//! Helpers for the X11 tests: a private Xvfb, and a test window drawn with
//! x11rb.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::time::{Duration, Instant};

use deskside_desktop::xvfb::Xvfb;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    ConnectionExt as _, CreateGCAux, CreateWindowAux, EventMask, Rectangle, Window, WindowClass,
};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;

/// Starts Xvfb, or returns `None` (with a visible message) when it is not
/// installed, except under CI (`CI=true`), where a missing Xvfb fails the test.
pub fn xvfb_or_skip(test: &str, width: u32, height: u32) -> Option<Xvfb> {
    if !Xvfb::is_installed() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "{test}: Xvfb is not installed but CI=true; install it with `apt-get install xvfb`"
            );
        }
        eprintln!("SKIPPED {test}: Xvfb is not installed (apt-get install xvfb)");
        return None;
    }
    Some(Xvfb::start(width, height).unwrap_or_else(|e| panic!("{test}: {e}")))
}

/// 0x00RRGGBB colours of the four quadrants: top-left red, top-right green,
/// bottom-left blue, bottom-right white.
pub const QUADRANTS: [u32; 4] = [0xff0000, 0x00ff00, 0x0000ff, 0xffffff];

/// The `[b, g, r]` bytes a capture shows for a 0x00RRGGBB colour.
pub fn bgr(rgb: u32) -> [u8; 3] {
    [rgb as u8, (rgb >> 8) as u8, (rgb >> 16) as u8]
}

/// A client with one override-redirect window (no window manager needed).
pub struct TestWindow {
    pub conn: RustConnection,
    pub window: Window,
    pub root: Window,
    pub width: u16,
    pub height: u16,
}

impl TestWindow {
    /// Opens a window at (`x`, `y`) of `width` x `height`, maps it and waits
    /// for its first Expose.
    pub fn open(display: &str, x: i16, y: i16, width: u16, height: u16, events: EventMask) -> Self {
        let (conn, screen_num) = x11rb::connect(Some(display)).unwrap();
        let screen = &conn.setup().roots[screen_num];
        let root = screen.root;
        let window = conn.generate_id().unwrap();
        conn.create_window(
            x11rb::COPY_DEPTH_FROM_PARENT,
            window,
            root,
            x,
            y,
            width,
            height,
            0,
            WindowClass::INPUT_OUTPUT,
            0,
            &CreateWindowAux::new()
                .background_pixel(0)
                .override_redirect(1)
                .event_mask(events | EventMask::EXPOSURE),
        )
        .unwrap();
        conn.map_window(window).unwrap();
        conn.flush().unwrap();
        let w = Self {
            conn,
            window,
            root,
            width,
            height,
        };
        w.wait_for(Duration::from_secs(10), |e| matches!(e, Event::Expose(_)));
        w
    }

    /// Waits for an event matching `pred`, failing the test after `timeout`.
    pub fn wait_for(&self, timeout: Duration, mut pred: impl FnMut(&Event) -> bool) -> Event {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.conn.poll_for_event().unwrap() {
                if pred(&e) {
                    return e;
                }
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for an X event"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Fills a rectangle (window coordinates) with a 0x00RRGGBB colour and
    /// waits until the server has drawn it.
    pub fn fill(&self, x: i16, y: i16, width: u16, height: u16, rgb: u32) {
        let gc = self.conn.generate_id().unwrap();
        self.conn
            .create_gc(gc, self.window, &CreateGCAux::new().foreground(rgb))
            .unwrap();
        self.conn
            .poly_fill_rectangle(
                self.window,
                gc,
                &[Rectangle {
                    x,
                    y,
                    width,
                    height,
                }],
            )
            .unwrap();
        self.conn.free_gc(gc).unwrap();
        self.sync();
    }

    /// Changes nothing but round-trips, so every earlier request is done.
    pub fn sync(&self) {
        self.conn.get_input_focus().unwrap().reply().unwrap();
    }

    /// Draws the four [`QUADRANTS`] over the whole window.
    pub fn draw_quadrants(&self) {
        let (hw, hh) = (self.width / 2, self.height / 2);
        let (w2, h2) = (self.width - hw, self.height - hh);
        self.fill(0, 0, hw, hh, QUADRANTS[0]);
        self.fill(hw as i16, 0, w2, hh, QUADRANTS[1]);
        self.fill(0, hh as i16, hw, h2, QUADRANTS[2]);
        self.fill(hw as i16, hh as i16, w2, h2, QUADRANTS[3]);
    }
}
