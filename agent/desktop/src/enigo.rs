//! Input injection on an X11 desktop with the `enigo` crate (its pure-Rust
//! x11rb backend, which uses the XTEST extension).
//!
//! Text is typed by keysym, so it does not depend on the keyboard layout;
//! characters missing from the layout are mapped temporarily onto spare
//! keycodes by enigo.

use ::enigo::{Axis, Button, Coordinate, Direction, Enigo, Keyboard, Mouse, Settings};
use deskside_protocol::session::{Key, MouseButton};

use crate::input::{DesktopEvent, InputError, InputSink};
use crate::session::{detect_display, DisplayKind};

/// Injects input into an X11 display through XTEST.
pub struct EnigoSink {
    enigo: Enigo,
    display: String,
}

impl std::fmt::Debug for EnigoSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnigoSink")
            .field("display", &self.display)
            .finish_non_exhaustive()
    }
}

impl EnigoSink {
    /// Opens the display this process's session uses; refuses Wayland.
    pub fn open_session() -> Result<Self, InputError> {
        match detect_display() {
            DisplayKind::X11 { display } => Self::open(&display),
            DisplayKind::Wayland => Err(InputError::Wayland),
            DisplayKind::None => Err(InputError::NoDisplay),
        }
    }

    /// Opens X display `display` (e.g. `:0`). Keys still held when the sink is
    /// dropped are released.
    pub fn open(display: &str) -> Result<Self, InputError> {
        let settings = Settings {
            x11_display: Some(display.to_owned()),
            release_keys_when_dropped: true,
            ..Settings::default()
        };
        let enigo = Enigo::new(&settings).map_err(|e| InputError::Connect {
            display: display.to_owned(),
            detail: e.to_string(),
        })?;
        Ok(Self {
            enigo,
            display: display.to_owned(),
        })
    }
}

impl InputSink for EnigoSink {
    fn apply(&mut self, event: &DesktopEvent) -> Result<(), InputError> {
        let fail = |what: &'static str| {
            move |e: ::enigo::InputError| InputError::Inject {
                what,
                detail: e.to_string(),
            }
        };
        match event {
            DesktopEvent::MoveTo { x, y } => self
                .enigo
                .move_mouse(*x, *y, Coordinate::Abs)
                .map_err(fail("pointer move")),
            DesktopEvent::Button { button, pressed } => {
                let button = match button {
                    MouseButton::Left => Button::Left,
                    MouseButton::Middle => Button::Middle,
                    MouseButton::Right => Button::Right,
                };
                self.enigo
                    .button(button, direction(*pressed))
                    .map_err(fail("mouse button"))
            }
            DesktopEvent::Scroll { dx, dy } => {
                if *dy != 0 {
                    self.enigo
                        .scroll(*dy, Axis::Vertical)
                        .map_err(fail("scroll"))?;
                }
                if *dx != 0 {
                    self.enigo
                        .scroll(*dx, Axis::Horizontal)
                        .map_err(fail("scroll"))?;
                }
                Ok(())
            }
            DesktopEvent::Key { key, pressed } => {
                let k = enigo_key(*key)?;
                self.enigo.key(k, direction(*pressed)).map_err(fail("key"))
            }
            DesktopEvent::Text(text) => self.enigo.text(text).map_err(fail("text")),
        }
    }
}

fn direction(pressed: bool) -> Direction {
    if pressed {
        Direction::Press
    } else {
        Direction::Release
    }
}

/// The enigo key for a session key.
fn enigo_key(key: Key) -> Result<::enigo::Key, InputError> {
    use ::enigo::Key as E;
    Ok(match key {
        Key::Return => E::Return,
        Key::Tab => E::Tab,
        Key::Backspace => E::Backspace,
        Key::Escape => E::Escape,
        Key::Delete => E::Delete,
        Key::Insert => E::Insert,
        Key::Home => E::Home,
        Key::End => E::End,
        Key::PageUp => E::PageUp,
        Key::PageDown => E::PageDown,
        Key::Left => E::LeftArrow,
        Key::Right => E::RightArrow,
        Key::Up => E::UpArrow,
        Key::Down => E::DownArrow,
        Key::Space => E::Space,
        Key::Shift => E::Shift,
        Key::Control => E::Control,
        Key::Alt => E::Alt,
        Key::Meta => E::Meta,
        Key::F(n) => match n {
            1 => E::F1,
            2 => E::F2,
            3 => E::F3,
            4 => E::F4,
            5 => E::F5,
            6 => E::F6,
            7 => E::F7,
            8 => E::F8,
            9 => E::F9,
            10 => E::F10,
            11 => E::F11,
            12 => E::F12,
            _ => {
                return Err(InputError::UnsupportedKey {
                    key,
                    detail: "only F1 to F12 exist".into(),
                })
            }
        },
        Key::Char(c) => E::Unicode(c),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_session_key() {
        assert_eq!(enigo_key(Key::Left).unwrap(), ::enigo::Key::LeftArrow);
        assert_eq!(enigo_key(Key::F(12)).unwrap(), ::enigo::Key::F12);
        assert_eq!(
            enigo_key(Key::Char('c')).unwrap(),
            ::enigo::Key::Unicode('c')
        );
        assert!(matches!(
            enigo_key(Key::F(13)),
            Err(InputError::UnsupportedKey { .. })
        ));
        assert!(enigo_key(Key::F(0)).is_err());
    }
}
