//! Input injection on Windows with `SendInput`.
//!
//! Pointer positions arrive in desktop pixels (the shown monitor's offset
//! already added by `map_event`); the process is per-monitor DPI aware, so
//! those are physical pixels, the same ones the capturers return, on every
//! monitor whatever its scale factor. They become `SendInput`'s normalised
//! coordinates over the virtual desktop (`windows_math::absolute_mouse`).
//! Named keys are virtual keys; a character key is the layout's virtual
//! key for it when it has one (so Ctrl+C stays a shortcut), else a Unicode
//! key event; text is typed as Unicode key events, whatever the layout.
//!
//! `SendInput` cannot reach windows of elevated programs (UIPI) or the
//! secure desktop from a helper running as the user: it then injects
//! nothing, and the error says so.

use deskside_protocol::session::{Key, MouseButton};
use windows::Win32::UI::Input::KeyboardAndMouse::{
    MapVirtualKeyW, SendInput, VkKeyScanW, INPUT, INPUT_0, INPUT_KEYBOARD, INPUT_MOUSE, KEYBDINPUT,
    KEYBD_EVENT_FLAGS, KEYEVENTF_EXTENDEDKEY, KEYEVENTF_KEYUP, KEYEVENTF_UNICODE, MAPVK_VK_TO_VSC,
    MOUSEEVENTF_ABSOLUTE, MOUSEEVENTF_HWHEEL, MOUSEEVENTF_LEFTDOWN, MOUSEEVENTF_LEFTUP,
    MOUSEEVENTF_MIDDLEDOWN, MOUSEEVENTF_MIDDLEUP, MOUSEEVENTF_MOVE, MOUSEEVENTF_RIGHTDOWN,
    MOUSEEVENTF_RIGHTUP, MOUSEEVENTF_VIRTUALDESK, MOUSEEVENTF_WHEEL, MOUSEINPUT, MOUSE_EVENT_FLAGS,
    VIRTUAL_KEY,
};

use super::{ensure_dpi_aware, virtual_desktop};
use crate::input::{DesktopEvent, InputError, InputSink};
use crate::windows_math::{absolute_mouse, named_virtual_key, text_control_key, VirtualKey};

/// One wheel notch (`WHEEL_DELTA`).
const WHEEL_DELTA: i32 = 120;

/// Injects input into this session's desktop with `SendInput`.
#[derive(Debug)]
pub struct SendInputSink {
    _private: (),
}

impl SendInputSink {
    /// A sink for the desktop this process runs on. Makes the process DPI
    /// aware (see the module documentation); opening cannot fail, but
    /// every injection checks that Windows took the events.
    pub fn open() -> Result<Self, InputError> {
        ensure_dpi_aware();
        Ok(Self { _private: () })
    }
}

impl InputSink for SendInputSink {
    fn apply(&mut self, event: &DesktopEvent) -> Result<(), InputError> {
        match event {
            DesktopEvent::MoveTo { x, y } => {
                let (nx, ny) = absolute_mouse(*x, *y, &virtual_desktop());
                send(
                    "pointer move",
                    &[mouse(
                        nx,
                        ny,
                        0,
                        MOUSEEVENTF_MOVE | MOUSEEVENTF_ABSOLUTE | MOUSEEVENTF_VIRTUALDESK,
                    )],
                )
            }
            DesktopEvent::Button { button, pressed } => {
                let flags = match (button, pressed) {
                    (MouseButton::Left, true) => MOUSEEVENTF_LEFTDOWN,
                    (MouseButton::Left, false) => MOUSEEVENTF_LEFTUP,
                    (MouseButton::Middle, true) => MOUSEEVENTF_MIDDLEDOWN,
                    (MouseButton::Middle, false) => MOUSEEVENTF_MIDDLEUP,
                    (MouseButton::Right, true) => MOUSEEVENTF_RIGHTDOWN,
                    (MouseButton::Right, false) => MOUSEEVENTF_RIGHTUP,
                };
                send("button", &[mouse(0, 0, 0, flags)])
            }
            DesktopEvent::Scroll { dx, dy } => {
                let mut inputs = Vec::with_capacity(2);
                if *dy != 0 {
                    // Positive dy scrolls down; a positive wheel turns up.
                    let amount = dy.saturating_mul(-WHEEL_DELTA);
                    inputs.push(mouse(0, 0, amount as u32, MOUSEEVENTF_WHEEL));
                }
                if *dx != 0 {
                    let amount = dx.saturating_mul(WHEEL_DELTA);
                    inputs.push(mouse(0, 0, amount as u32, MOUSEEVENTF_HWHEEL));
                }
                send("scroll", &inputs)
            }
            DesktopEvent::Key { key, pressed } => {
                let input = match key_input(*key, *pressed) {
                    Some(input) => input,
                    None => {
                        return Err(InputError::UnsupportedKey {
                            key: *key,
                            detail: "Windows has no virtual key for it".to_owned(),
                        })
                    }
                };
                send("key", &input)
            }
            DesktopEvent::Text(text) => send("text", &text_inputs(text)),
        }
    }
}

/// A mouse input.
fn mouse(dx: i32, dy: i32, data: u32, flags: MOUSE_EVENT_FLAGS) -> INPUT {
    INPUT {
        r#type: INPUT_MOUSE,
        Anonymous: INPUT_0 {
            mi: MOUSEINPUT {
                dx,
                dy,
                mouseData: data,
                dwFlags: flags,
                time: 0,
                dwExtraInfo: 0,
            },
        },
    }
}

/// A keyboard input for a virtual key (with its scan code, which some
/// programs read instead) or, with `vk` 0 and `KEYEVENTF_UNICODE`, for a
/// UTF-16 unit in `scan`.
fn keyboard(vk: u16, scan: u16, flags: KEYBD_EVENT_FLAGS) -> INPUT {
    INPUT {
        r#type: INPUT_KEYBOARD,
        Anonymous: INPUT_0 {
            ki: KEYBDINPUT {
                wVk: VIRTUAL_KEY(vk),
                wScan: scan,
                dwFlags: flags,
                time: 0,
                dwExtraInfo: 0,
            },
        },
    }
}

fn virtual_key_input(key: VirtualKey, pressed: bool) -> INPUT {
    // SAFETY: a pure table lookup in the current keyboard layout.
    let scan = unsafe { MapVirtualKeyW(u32::from(key.code), MAPVK_VK_TO_VSC) } as u16;
    let mut flags = KEYBD_EVENT_FLAGS(0);
    if key.extended {
        flags |= KEYEVENTF_EXTENDEDKEY;
    }
    if !pressed {
        flags |= KEYEVENTF_KEYUP;
    }
    keyboard(key.code, scan, flags)
}

fn unicode_input(unit: u16, pressed: bool) -> INPUT {
    let mut flags = KEYEVENTF_UNICODE;
    if !pressed {
        flags |= KEYEVENTF_KEYUP;
    }
    keyboard(0, unit, flags)
}

/// The inputs for a key press or release.
fn key_input(key: Key, pressed: bool) -> Option<Vec<INPUT>> {
    if let Key::Char(c) = key {
        let mut units = [0u16; 2];
        let units = c.encode_utf16(&mut units);
        if let [unit] = units {
            // SAFETY: a pure lookup in the current keyboard layout.
            let scanned = unsafe { VkKeyScanW(*unit) };
            // -1: the layout has no key for it. The high byte (shift
            // state) is ignored: the technician's modifiers arrive as
            // their own key events.
            if scanned != -1 {
                let code = (scanned as u16) & 0xff;
                return Some(vec![virtual_key_input(
                    VirtualKey {
                        code,
                        extended: false,
                    },
                    pressed,
                )]);
            }
        }
        return Some(units.iter().map(|&u| unicode_input(u, pressed)).collect());
    }
    named_virtual_key(key).map(|vk| vec![virtual_key_input(vk, pressed)])
}

/// The inputs that type `text`: a press and a release per UTF-16 unit, with
/// Return, Tab and Backspace as their keys.
fn text_inputs(text: &str) -> Vec<INPUT> {
    let mut inputs = Vec::with_capacity(text.len() * 2);
    for c in text.chars() {
        if let Some(vk) = text_control_key(c).and_then(named_virtual_key) {
            inputs.push(virtual_key_input(vk, true));
            inputs.push(virtual_key_input(vk, false));
            continue;
        }
        let mut units = [0u16; 2];
        for &unit in c.encode_utf16(&mut units).iter() {
            inputs.push(unicode_input(unit, true));
            inputs.push(unicode_input(unit, false));
        }
    }
    inputs
}

/// Sends `inputs` as one batch (nothing else interleaves), and checks that
/// Windows took all of them.
fn send(what: &'static str, inputs: &[INPUT]) -> Result<(), InputError> {
    if inputs.is_empty() {
        return Ok(());
    }
    // SAFETY: `inputs` is a slice of initialised INPUT structures and the
    // size passed is the size of one, as SendInput requires.
    let sent = unsafe { SendInput(inputs, std::mem::size_of::<INPUT>() as i32) };
    if sent as usize == inputs.len() {
        return Ok(());
    }
    let error = windows::core::Error::from_win32();
    Err(InputError::Inject {
        what,
        detail: format!(
            "Windows took {sent} of {} events ({}); input to an elevated program's window, a UAC prompt \
             or the lock screen is blocked for a helper running as the user",
            inputs.len(),
            super::win_detail(&error)
        ),
    })
}
