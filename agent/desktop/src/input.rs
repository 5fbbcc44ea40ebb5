//! The input interface: events mapped to desktop coordinates, the sink that
//! injects them, and the pure mapping from frame pixels to desktop pixels.
//!
//! Nothing here checks whether input is allowed: view-only sessions must drop
//! input before it reaches [`InputSink::apply`].

use deskside_protocol::session::{InputEvent, Key, Monitor, MouseButton};

/// An input event in desktop coordinates, ready to inject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DesktopEvent {
    /// Moves the pointer to desktop pixel (`x`, `y`).
    MoveTo {
        /// Desktop column (the monitor's offset included).
        x: i32,
        /// Desktop row (the monitor's offset included).
        y: i32,
    },
    /// Presses or releases a button where the pointer is.
    Button {
        /// Which button.
        button: MouseButton,
        /// Pressed (true) or released.
        pressed: bool,
    },
    /// Scrolls by whole notches; positive `dy` scrolls down, positive `dx`
    /// scrolls right.
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
    /// Types text, independent of the keyboard layout.
    Text(String),
}

/// Injects input into the desktop.
pub trait InputSink: Send {
    /// Injects one event.
    fn apply(&mut self, event: &DesktopEvent) -> Result<(), InputError>;
}

/// Why input could not be injected.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The session is a Wayland session.
    #[error("Wayland sessions are not supported for remote control yet; log in with an X11 (Xorg) session to allow remote control")]
    Wayland,
    /// No graphical session is visible to this process.
    #[error("no graphical session found (DISPLAY is not set); run the session helper inside the employee's desktop session")]
    NoDisplay,
    /// Connecting to the display for input failed.
    #[error("could not open X display {display:?} for input: {detail}; check that the X server is running, this user may use it (DISPLAY, XAUTHORITY) and it offers the XTEST extension")]
    Connect {
        /// The display name tried.
        display: String,
        /// What the input library reported.
        detail: String,
    },
    /// The key cannot be typed on this desktop.
    #[error("key {key:?} cannot be injected: {detail}; type the character as text instead")]
    UnsupportedKey {
        /// The key.
        key: Key,
        /// Why.
        detail: String,
    },
    /// Injecting the event failed.
    #[error("could not inject {what}: {detail}; if the desktop session ended, restart the session helper")]
    Inject {
        /// What was being injected (`pointer move`, `text`, ...).
        what: &'static str,
        /// What the input library reported.
        detail: String,
    },
}

/// Maps an event from the console (pixels of a `frame_w` x `frame_h` frame of
/// `monitor`) to the desktop.
///
/// The frame may be scaled relative to the monitor (the encoder may shrink it):
/// frame pixel `x` maps to `monitor.x + x * monitor.width / frame_w`, rounded
/// down, and the result is clamped to the monitor so a click never lands on a
/// neighbouring screen. Returns `None` for events with nothing to do (unknown
/// events from a newer console, empty text, zero scroll, or an empty frame).
pub fn map_event(
    ev: &InputEvent,
    monitor: &Monitor,
    frame_w: u32,
    frame_h: u32,
) -> Option<DesktopEvent> {
    match ev {
        InputEvent::PointerMove { x, y } => {
            let x = scale(*x, frame_w, monitor.x, monitor.width)?;
            let y = scale(*y, frame_h, monitor.y, monitor.height)?;
            Some(DesktopEvent::MoveTo { x, y })
        }
        InputEvent::Button { button, pressed } => Some(DesktopEvent::Button {
            button: *button,
            pressed: *pressed,
        }),
        InputEvent::Scroll { dx, dy } if *dx != 0 || *dy != 0 => {
            Some(DesktopEvent::Scroll { dx: *dx, dy: *dy })
        }
        InputEvent::Scroll { .. } => None,
        InputEvent::Key { key, pressed } => Some(DesktopEvent::Key {
            key: *key,
            pressed: *pressed,
        }),
        InputEvent::Text { text } if !text.is_empty() => Some(DesktopEvent::Text(text.clone())),
        InputEvent::Text { .. } | InputEvent::Unknown { .. } => None,
    }
}

/// Maps one frame coordinate to the desktop: scale, clamp to the monitor, add
/// its offset. `None` when the frame or monitor is empty.
fn scale(v: u32, frame_len: u32, offset: i32, monitor_len: u32) -> Option<i32> {
    if frame_len == 0 || monitor_len == 0 {
        return None;
    }
    let scaled = u64::from(v) * u64::from(monitor_len) / u64::from(frame_len);
    let clamped = scaled.min(u64::from(monitor_len) - 1);
    let desktop = i64::from(offset) + i64::try_from(clamped).ok()?;
    i32::try_from(desktop).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitor(x: i32, y: i32, width: u32, height: u32) -> Monitor {
        Monitor {
            index: 0,
            name: "m".into(),
            x,
            y,
            width,
            height,
            primary: true,
        }
    }

    fn moved(x: u32, y: u32, m: &Monitor, fw: u32, fh: u32) -> Option<DesktopEvent> {
        map_event(&InputEvent::PointerMove { x, y }, m, fw, fh)
    }

    fn at(x: i32, y: i32) -> Option<DesktopEvent> {
        Some(DesktopEvent::MoveTo { x, y })
    }

    #[test]
    fn pointer_positions_are_scaled_offset_and_clamped() {
        let primary = monitor(0, 0, 1920, 1080);
        let right = monitor(1920, 0, 1280, 1024);
        let above_left = monitor(-1280, -200, 1280, 800);
        // (event x, y, monitor, frame w, h) -> desktop position
        type Case<'a> = (u32, u32, &'a Monitor, u32, u32, Option<DesktopEvent>);
        let cases: &[Case] = &[
            (0, 0, &primary, 1920, 1080, at(0, 0)),
            (100, 200, &primary, 1920, 1080, at(100, 200)),
            (1919, 1079, &primary, 1920, 1080, at(1919, 1079)),
            // Half-size frame: every frame pixel covers two desktop pixels.
            (480, 270, &primary, 960, 540, at(960, 540)),
            (959, 539, &primary, 960, 540, at(1918, 1078)),
            // Non-integer scale (1280 -> 1000): rounds down.
            (999, 0, &right, 1000, 800, at(1920 + 1278, 0)),
            // Offsets of a monitor right of the primary.
            (10, 20, &right, 1280, 1024, at(1930, 20)),
            // Negative offsets.
            (0, 0, &above_left, 1280, 800, at(-1280, -200)),
            (1279, 799, &above_left, 1280, 800, at(-1, 599)),
            // Outside the frame: clamped to the monitor's last pixel.
            (5000, 5000, &right, 1280, 1024, at(1920 + 1279, 1023)),
            (960, 540, &primary, 960, 540, at(1919, 1079)),
            // An empty frame maps nothing.
            (0, 0, &primary, 0, 1080, None),
        ];
        for (x, y, m, fw, fh, want) in cases {
            assert_eq!(
                &moved(*x, *y, m, *fw, *fh),
                want,
                "({x},{y}) on {m:?} frame {fw}x{fh}"
            );
        }
    }

    #[test]
    fn other_events_pass_through_and_empty_ones_vanish() {
        let m = monitor(0, 0, 800, 600);
        let map = |ev: InputEvent| map_event(&ev, &m, 800, 600);
        assert_eq!(
            map(InputEvent::Button {
                button: MouseButton::Right,
                pressed: true
            }),
            Some(DesktopEvent::Button {
                button: MouseButton::Right,
                pressed: true
            })
        );
        assert_eq!(
            map(InputEvent::Scroll { dx: 0, dy: -2 }),
            Some(DesktopEvent::Scroll { dx: 0, dy: -2 })
        );
        assert_eq!(map(InputEvent::Scroll { dx: 0, dy: 0 }), None);
        assert_eq!(
            map(InputEvent::Key {
                key: Key::Char('c'),
                pressed: false
            }),
            Some(DesktopEvent::Key {
                key: Key::Char('c'),
                pressed: false
            })
        );
        assert_eq!(
            map(InputEvent::Text {
                text: "héllo".into()
            }),
            Some(DesktopEvent::Text("héllo".into()))
        );
        assert_eq!(
            map(InputEvent::Text {
                text: String::new()
            }),
            None
        );
        assert_eq!(map(InputEvent::Unknown { tag: 99 }), None);
    }
}
