//! Waking the capture on a change: a second X connection that only waits
//! for XDamage events on the root window, so the session helper's capture
//! loop runs when the screen changes instead of on a fixed timer.
//!
//! The capturer ([`crate::X11Capturer`]) keeps its own damage object and
//! stays the judge of *what* changed; this one only says *that* something
//! did. It blocks in [`X11DamageWatch::wait`]; [`X11WatchStop::stop`] ends
//! that wait from another thread (a client message to a window of this
//! connection), so the thread waiting here never outlives its session.
//! This module spawns no thread itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::xproto::{
    self, ClientMessageEvent, ConnectionExt as _, CreateWindowAux, EventMask, WindowClass,
};
use x11rb::protocol::{damage, xfixes, Event};
use x11rb::rust_connection::RustConnection;

use crate::capture::CaptureError;

/// Waits for changes on an X display. See the module documentation.
#[derive(Debug)]
pub struct X11DamageWatch {
    conn: RustConnection,
    damage: damage::Damage,
    stop: Arc<AtomicBool>,
}

/// Ends an [`X11DamageWatch::wait`] from another thread.
#[derive(Clone, Debug)]
pub struct X11WatchStop {
    display: String,
    window: xproto::Window,
    stop: Arc<AtomicBool>,
}

impl X11DamageWatch {
    /// Opens `display` and starts watching its root window. Fails when the
    /// server lacks XDamage (then the caller falls back to looking at the
    /// screen on a timer).
    pub fn open(display: &str) -> Result<(Self, X11WatchStop), CaptureError> {
        let (conn, screen_num) =
            x11rb::connect(Some(display)).map_err(|source| CaptureError::Connect {
                display: display.to_owned(),
                source,
            })?;
        let root = conn
            .setup()
            .roots
            .get(screen_num)
            .ok_or(CaptureError::Malformed("the display's screen is missing"))?
            .root;
        if conn
            .extension_information(damage::X11_EXTENSION_NAME)?
            .is_none()
            || conn
                .extension_information(xfixes::X11_EXTENSION_NAME)?
                .is_none()
        {
            return Err(CaptureError::Malformed("the X server lacks XDamage"));
        }
        // XDamage needs XFixes' version handshake before regions work.
        xfixes::query_version(&conn, 5, 0)?.reply()?;
        damage::query_version(&conn, 1, 1)?.reply()?;
        let d = conn.generate_id()?;
        // NON_EMPTY: one event each time the damage goes from empty to
        // not empty; `wait` empties it again after each event.
        damage::create(&conn, d, root, damage::ReportLevel::NON_EMPTY)?.check()?;
        // An unmapped window of this connection, the target of the stop
        // message.
        let window = conn.generate_id()?;
        conn.create_window(
            0,
            window,
            root,
            0,
            0,
            1,
            1,
            0,
            WindowClass::INPUT_ONLY,
            0,
            &CreateWindowAux::new(),
        )?
        .check()?;
        let stop = Arc::new(AtomicBool::new(false));
        Ok((
            Self {
                conn,
                damage: d,
                stop: stop.clone(),
            },
            X11WatchStop {
                display: display.to_owned(),
                window,
                stop,
            },
        ))
    }

    /// Blocks until the screen changes (`Ok(true)`) or [`X11WatchStop::stop`]
    /// was called (`Ok(false)`).
    pub fn wait(&mut self) -> Result<bool, CaptureError> {
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Ok(false);
            }
            let event = self.conn.wait_for_event()?;
            let mut damaged = matches!(event, Event::DamageNotify(_));
            while let Some(more) = self.conn.poll_for_event()? {
                damaged |= matches!(more, Event::DamageNotify(_));
            }
            if damaged && !self.stop.load(Ordering::SeqCst) {
                // Empty the damage before saying so, with a round trip: a
                // change after this point raises a new event, and every
                // change before it is on screen before the caller's
                // capture, so none is missed.
                damage::subtract(&self.conn, self.damage, x11rb::NONE, x11rb::NONE)?.check()?;
                return Ok(true);
            }
        }
    }
}

impl X11WatchStop {
    /// Ends the watch's current or next wait.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        // The watch may be blocked reading its connection: wake it with a
        // message to its window, sent over a short-lived connection of our
        // own (the capturer's connection belongs to another thread).
        let woken = x11rb::connect(Some(&self.display))
            .map_err(|e| e.to_string())
            .and_then(|(conn, _)| {
                let event =
                    ClientMessageEvent::new(32, self.window, xproto::AtomEnum::NONE, [0u32; 5]);
                conn.send_event(false, self.window, EventMask::NO_EVENT, event)
                    .map_err(|e| e.to_string())?;
                conn.flush().map_err(|e| e.to_string())
            });
        if let Err(e) = woken {
            tracing::debug!("could not wake the damage watch (it ends at the next change): {e}");
        }
    }
}

impl Drop for X11DamageWatch {
    fn drop(&mut self) {
        let _ = damage::destroy(&self.conn, self.damage);
        let _ = self.conn.flush();
    }
}
