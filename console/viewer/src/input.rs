//! Turning the technician's pointer and keyboard into [`InputEvent`]s.
//!
//! Pure: the window hands in egui events and where the picture is drawn
//! ([`Fit`]); this module returns the events to send. It never decides
//! *whether* input may be forwarded (view-only): the window does, by not
//! calling it.
//!
//! Keyboard rules, so that typing works whatever the two keyboard layouts:
//! - text (`egui::Event::Text`) travels as [`InputEvent::Text`];
//! - keys that are not text (Enter, arrows, F1…) travel as key presses and
//!   releases, as they happen (auto-repeat arrives as repeated presses);
//! - a key pressed with Ctrl, Alt or Cmd (or a non-text key with Shift) travels
//!   as one complete chord at the moment it is pressed: modifiers down, key
//!   down, key up, modifiers up. The agent thus never holds a modifier that
//!   the technician released, even if the release got lost to the window;
//! - a modifier pressed and released alone is not forwarded.

use deskside_protocol::session::{InputEvent, Key, MouseButton};
use eframe::egui::{self, Pos2, Rect, Vec2};

/// Scroll distance, in points, that makes one wheel notch on the agent.
/// Typical mice scroll about 40–50 points per notch on Linux and Windows.
const POINTS_PER_NOTCH: f32 = 40.0;

/// Where and how large a frame is drawn: fitted into the available area,
/// aspect ratio kept, centred.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fit {
    /// The picture's rectangle, in window points.
    pub rect: Rect,
    /// Frame width in pixels.
    pub frame_width: u32,
    /// Frame height in pixels.
    pub frame_height: u32,
}

impl Fit {
    /// Fits a `frame_width` × `frame_height` frame into `available`.
    pub fn new(available: Rect, frame_width: u32, frame_height: u32) -> Self {
        let frame = Vec2::new(frame_width.max(1) as f32, frame_height.max(1) as f32);
        let scale = (available.width() / frame.x)
            .min(available.height() / frame.y)
            .max(f32::MIN_POSITIVE);
        let size = frame * scale;
        // Whole points for the corner, so a 1:1 picture lands on whole pixels
        // (at one pixel per point) and is shown exactly.
        let min = (available.center() - size / 2.0).round();
        Self {
            rect: Rect::from_min_size(min, size),
            frame_width: frame_width.max(1),
            frame_height: frame_height.max(1),
        }
    }

    /// Points per frame pixel.
    pub fn scale(&self) -> f32 {
        self.rect.width() / self.frame_width as f32
    }

    /// The frame pixel under `pos`, or `None` when `pos` is outside the picture.
    pub fn to_frame(&self, pos: Pos2) -> Option<(u32, u32)> {
        if self.rect.contains(pos) {
            Some(self.to_frame_clamped(pos))
        } else {
            None
        }
    }

    /// The frame pixel under `pos`, clamped to the frame's edges (for drags
    /// that leave the picture).
    pub fn to_frame_clamped(&self, pos: Pos2) -> (u32, u32) {
        let scale = self.scale();
        let column = ((pos.x - self.rect.min.x) / scale).floor();
        let row = ((pos.y - self.rect.min.y) / scale).floor();
        (
            column.clamp(0.0, (self.frame_width - 1) as f32) as u32,
            row.clamp(0.0, (self.frame_height - 1) as f32) as u32,
        )
    }

    /// The window position of the centre of frame pixel (`x`, `y`).
    pub fn to_window(&self, x: i32, y: i32) -> Pos2 {
        let scale = self.scale();
        Pos2::new(
            self.rect.min.x + (x as f32 + 0.5) * scale,
            self.rect.min.y + (y as f32 + 0.5) * scale,
        )
    }
}

/// Whether an egui event is keyboard input (which the viewer keeps from egui
/// while the remote desktop has the keyboard).
pub fn is_keyboard_event(event: &egui::Event) -> bool {
    matches!(
        event,
        egui::Event::Key { .. }
            | egui::Event::Text(_)
            | egui::Event::Copy
            | egui::Event::Cut
            | egui::Event::Paste(_)
            | egui::Event::Ime(_)
    )
}

/// Translates egui events into [`InputEvent`]s, remembering what it pressed so
/// it can release everything when control ends.
#[derive(Debug, Default)]
pub struct InputTranslator {
    /// Last pointer position sent, in frame pixels.
    last_sent_move: Option<(u32, u32)>,
    /// A move not yet sent: moves are coalesced to one per window frame.
    pending_move: Option<(u32, u32)>,
    /// Where the pointer is, in window points.
    hover: Option<Pos2>,
    /// Buttons pressed on the agent and not yet released.
    buttons_down: Vec<MouseButton>,
    /// Scroll not yet worth a whole notch, in notches.
    scroll_remainder: Vec2,
}

impl InputTranslator {
    /// Translates `events`. `fit` is where the picture was drawn (`None`: no
    /// picture, so no pointer input); `pointer_allowed(pos)` says whether a
    /// press at `pos` is meant for the picture (not a popup over it);
    /// keyboard events are translated only when `keyboard` is true.
    pub fn translate(
        &mut self,
        events: &[egui::Event],
        fit: Option<&Fit>,
        pointer_allowed: &dyn Fn(Pos2) -> bool,
        keyboard: bool,
        out: &mut Vec<InputEvent>,
    ) {
        for event in events {
            match event {
                egui::Event::PointerMoved(pos) => {
                    self.hover = Some(*pos);
                    if let Some(fit) = fit {
                        if !self.buttons_down.is_empty() {
                            self.pending_move = Some(fit.to_frame_clamped(*pos));
                        } else if let Some(pixel) = fit.to_frame(*pos) {
                            if pointer_allowed(*pos) {
                                self.pending_move = Some(pixel);
                            }
                        }
                    }
                }
                egui::Event::PointerGone => self.hover = None,
                egui::Event::PointerButton {
                    pos,
                    button,
                    pressed,
                    ..
                } => {
                    let Some(button) = map_button(*button) else {
                        continue;
                    };
                    let Some(fit) = fit else { continue };
                    if *pressed {
                        let Some(pixel) = fit.to_frame(*pos) else {
                            continue;
                        };
                        if !pointer_allowed(*pos) {
                            continue;
                        }
                        self.pending_move = Some(pixel);
                        self.flush_move(out);
                        if !self.buttons_down.contains(&button) {
                            self.buttons_down.push(button);
                        }
                        out.push(InputEvent::Button {
                            button,
                            pressed: true,
                        });
                    } else if let Some(index) = self.buttons_down.iter().position(|b| *b == button)
                    {
                        self.pending_move = Some(fit.to_frame_clamped(*pos));
                        self.flush_move(out);
                        self.buttons_down.swap_remove(index);
                        out.push(InputEvent::Button {
                            button,
                            pressed: false,
                        });
                    }
                }
                egui::Event::MouseWheel { unit, delta, .. } => {
                    let over_picture = match (fit, self.hover) {
                        (Some(fit), Some(hover)) => {
                            fit.rect.contains(hover) && pointer_allowed(hover)
                        }
                        _ => false,
                    };
                    if !over_picture {
                        continue;
                    }
                    let notches = match unit {
                        egui::MouseWheelUnit::Line => *delta,
                        egui::MouseWheelUnit::Point => *delta / POINTS_PER_NOTCH,
                        egui::MouseWheelUnit::Page => *delta * 3.0,
                    };
                    self.scroll_remainder += notches;
                    let whole = Vec2::new(
                        self.scroll_remainder.x.trunc(),
                        self.scroll_remainder.y.trunc(),
                    );
                    self.scroll_remainder -= whole;
                    if whole != Vec2::ZERO {
                        self.flush_move(out);
                        // egui: positive y scrolls up (content moves down);
                        // the protocol: positive dy scrolls down.
                        out.push(InputEvent::Scroll {
                            dx: -whole.x as i32,
                            dy: -whole.y as i32,
                        });
                    }
                }
                egui::Event::Text(text) | egui::Event::Paste(text)
                    if keyboard && !text.is_empty() =>
                {
                    self.flush_move(out);
                    out.push(InputEvent::Text { text: text.clone() });
                }
                egui::Event::Copy if keyboard => {
                    self.flush_move(out);
                    push_chord(out, command_modifiers(), Key::Char('c'));
                }
                egui::Event::Cut if keyboard => {
                    self.flush_move(out);
                    push_chord(out, command_modifiers(), Key::Char('x'));
                }
                egui::Event::Key {
                    key,
                    pressed,
                    modifiers,
                    ..
                } if keyboard => {
                    self.flush_move(out);
                    translate_key(*key, *pressed, *modifiers, out);
                }
                _ => {}
            }
        }
        self.flush_move(out);
    }

    /// Releases every button still held on the agent (control ended, window
    /// lost focus with a button down).
    pub fn release_all(&mut self, out: &mut Vec<InputEvent>) {
        for button in self.buttons_down.drain(..) {
            out.push(InputEvent::Button {
                button,
                pressed: false,
            });
        }
        self.pending_move = None;
        self.scroll_remainder = Vec2::ZERO;
    }

    fn flush_move(&mut self, out: &mut Vec<InputEvent>) {
        if let Some((x, y)) = self.pending_move.take() {
            if self.last_sent_move != Some((x, y)) {
                self.last_sent_move = Some((x, y));
                out.push(InputEvent::PointerMove { x, y });
            }
        }
    }
}

fn map_button(button: egui::PointerButton) -> Option<MouseButton> {
    match button {
        egui::PointerButton::Primary => Some(MouseButton::Left),
        egui::PointerButton::Secondary => Some(MouseButton::Right),
        egui::PointerButton::Middle => Some(MouseButton::Middle),
        egui::PointerButton::Extra1 | egui::PointerButton::Extra2 => None,
    }
}

/// The modifiers of a Copy/Cut shortcut on this (the technician's) machine.
fn command_modifiers() -> egui::Modifiers {
    if cfg!(target_os = "macos") {
        egui::Modifiers::MAC_CMD
    } else {
        egui::Modifiers::CTRL
    }
}

fn translate_key(
    key: egui::Key,
    pressed: bool,
    modifiers: egui::Modifiers,
    out: &mut Vec<InputEvent>,
) {
    let chord_modifier = modifiers.ctrl || modifiers.alt || modifiers.mac_cmd;
    if let Some(named) = named_key(key) {
        if chord_modifier || modifiers.shift {
            if pressed {
                push_chord(out, modifiers, named);
            }
        } else {
            out.push(InputEvent::Key {
                key: named,
                pressed,
            });
        }
    } else if chord_modifier && pressed {
        // Text keys alone arrive as `Event::Text`; with Ctrl/Alt/Cmd they are
        // shortcuts and travel as the unshifted character.
        if let Some(character) = char_key(key) {
            push_chord(out, modifiers, Key::Char(character));
        }
    }
}

fn push_chord(out: &mut Vec<InputEvent>, modifiers: egui::Modifiers, key: Key) {
    let mut held = Vec::new();
    if modifiers.ctrl {
        held.push(Key::Control);
    }
    if modifiers.alt {
        held.push(Key::Alt);
    }
    if modifiers.shift {
        held.push(Key::Shift);
    }
    if modifiers.mac_cmd {
        held.push(Key::Meta);
    }
    for modifier in &held {
        out.push(InputEvent::Key {
            key: *modifier,
            pressed: true,
        });
    }
    out.push(InputEvent::Key { key, pressed: true });
    out.push(InputEvent::Key {
        key,
        pressed: false,
    });
    for modifier in held.iter().rev() {
        out.push(InputEvent::Key {
            key: *modifier,
            pressed: false,
        });
    }
}

/// Keys that do not produce text.
pub fn named_key(key: egui::Key) -> Option<Key> {
    use egui::Key as E;
    Some(match key {
        E::Enter => Key::Return,
        E::Tab => Key::Tab,
        E::Backspace => Key::Backspace,
        E::Escape => Key::Escape,
        E::Delete => Key::Delete,
        E::Insert => Key::Insert,
        E::Home => Key::Home,
        E::End => Key::End,
        E::PageUp => Key::PageUp,
        E::PageDown => Key::PageDown,
        E::ArrowLeft => Key::Left,
        E::ArrowRight => Key::Right,
        E::ArrowUp => Key::Up,
        E::ArrowDown => Key::Down,
        E::F1 => Key::F(1),
        E::F2 => Key::F(2),
        E::F3 => Key::F(3),
        E::F4 => Key::F(4),
        E::F5 => Key::F(5),
        E::F6 => Key::F(6),
        E::F7 => Key::F(7),
        E::F8 => Key::F(8),
        E::F9 => Key::F(9),
        E::F10 => Key::F(10),
        E::F11 => Key::F(11),
        E::F12 => Key::F(12),
        _ => return None,
    })
}

/// The unshifted character of a text key, for shortcuts.
fn char_key(key: egui::Key) -> Option<char> {
    use egui::Key as E;
    if key == E::Space {
        return Some(' ');
    }
    let name = key.name();
    let mut chars = name.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        if c.is_ascii_alphanumeric() {
            return Some(c.to_ascii_lowercase());
        }
    }
    Some(match key {
        E::Minus => '-',
        E::Equals => '=',
        E::Plus => '+',
        E::Comma => ',',
        E::Period => '.',
        E::Semicolon => ';',
        E::Slash => '/',
        E::Backslash => '\\',
        E::OpenBracket => '[',
        E::CloseBracket => ']',
        E::Backtick => '`',
        E::Quote => '\'',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use egui::{pos2, Modifiers};

    fn fit_800x600_in_1000x600() -> Fit {
        // Picture 800x600 centred in a 1000x600 area starting 40 points down.
        Fit::new(
            Rect::from_min_size(pos2(0.0, 40.0), egui::vec2(1000.0, 600.0)),
            800,
            600,
        )
    }

    fn run(events: &[egui::Event], keyboard: bool) -> Vec<InputEvent> {
        let mut translator = InputTranslator::default();
        let mut out = Vec::new();
        let fit = fit_800x600_in_1000x600();
        translator.translate(events, Some(&fit), &|_| true, keyboard, &mut out);
        out
    }

    #[test]
    fn fit_keeps_aspect_and_centres() {
        let fit = fit_800x600_in_1000x600();
        assert_eq!(
            fit.rect,
            Rect::from_min_size(pos2(100.0, 40.0), egui::vec2(800.0, 600.0))
        );
        let half = Fit::new(
            Rect::from_min_size(pos2(0.0, 0.0), egui::vec2(400.0, 400.0)),
            800,
            600,
        );
        assert_eq!(
            half.rect,
            Rect::from_min_size(pos2(0.0, 50.0), egui::vec2(400.0, 300.0))
        );
        assert_eq!(half.to_frame(pos2(200.0, 200.0)), Some((400, 300)));
        assert_eq!(half.to_frame(pos2(200.0, 20.0)), None);
        assert_eq!(half.to_frame_clamped(pos2(-5.0, 1000.0)), (0, 599));
    }

    #[test]
    fn click_is_move_then_press_then_release() {
        let press = |pressed| egui::Event::PointerButton {
            pos: pos2(150.5, 60.5),
            button: egui::PointerButton::Primary,
            pressed,
            modifiers: Modifiers::NONE,
        };
        let out = run(
            &[
                egui::Event::PointerMoved(pos2(150.5, 60.5)),
                press(true),
                press(false),
            ],
            false,
        );
        assert_eq!(
            out,
            vec![
                InputEvent::PointerMove { x: 50, y: 20 },
                InputEvent::Button {
                    button: MouseButton::Left,
                    pressed: true
                },
                InputEvent::Button {
                    button: MouseButton::Left,
                    pressed: false
                },
            ]
        );
    }

    #[test]
    fn press_outside_the_picture_is_not_forwarded() {
        let out = run(
            &[
                egui::Event::PointerMoved(pos2(50.0, 10.0)),
                egui::Event::PointerButton {
                    pos: pos2(50.0, 10.0),
                    button: egui::PointerButton::Primary,
                    pressed: true,
                    modifiers: Modifiers::NONE,
                },
            ],
            true,
        );
        assert_eq!(out, vec![]);
    }

    #[test]
    fn moves_are_coalesced() {
        let out = run(
            &[
                egui::Event::PointerMoved(pos2(200.0, 100.0)),
                egui::Event::PointerMoved(pos2(201.0, 100.0)),
                egui::Event::PointerMoved(pos2(202.0, 100.0)),
            ],
            false,
        );
        assert_eq!(out, vec![InputEvent::PointerMove { x: 102, y: 60 }]);
    }

    #[test]
    fn keyboard_text_keys_and_chords() {
        let key = |key, pressed, modifiers| egui::Event::Key {
            key,
            physical_key: None,
            pressed,
            repeat: false,
            modifiers,
        };
        let events = [
            key(egui::Key::A, true, Modifiers::NONE),
            egui::Event::Text("a".into()),
            key(egui::Key::A, false, Modifiers::NONE),
            key(egui::Key::Enter, true, Modifiers::NONE),
            key(egui::Key::Enter, false, Modifiers::NONE),
            key(egui::Key::Z, true, Modifiers::CTRL),
            key(egui::Key::Z, false, Modifiers::CTRL),
        ];
        assert_eq!(run(&events, false), vec![]);
        let k = |key, pressed| InputEvent::Key { key, pressed };
        assert_eq!(
            run(&events, true),
            vec![
                InputEvent::Text { text: "a".into() },
                k(Key::Return, true),
                k(Key::Return, false),
                k(Key::Control, true),
                k(Key::Char('z'), true),
                k(Key::Char('z'), false),
                k(Key::Control, false),
            ]
        );
    }

    #[test]
    fn wheel_notches_accumulate_with_protocol_sign() {
        let wheel = |y| egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Point,
            delta: egui::vec2(0.0, y),
            phase: egui::TouchPhase::Move,
            source: egui::MouseWheelSource::Trackpad,
            modifiers: Modifiers::NONE,
        };
        let out = run(
            &[
                egui::Event::PointerMoved(pos2(200.0, 100.0)),
                wheel(-30.0),
                wheel(-30.0),
            ],
            false,
        );
        assert_eq!(
            out,
            vec![
                InputEvent::PointerMove { x: 100, y: 60 },
                InputEvent::Scroll { dx: 0, dy: 1 }
            ]
        );
    }

    #[test]
    fn release_all_releases_held_buttons() {
        let mut translator = InputTranslator::default();
        let fit = fit_800x600_in_1000x600();
        let mut out = Vec::new();
        translator.translate(
            &[egui::Event::PointerButton {
                pos: pos2(200.0, 100.0),
                button: egui::PointerButton::Secondary,
                pressed: true,
                modifiers: Modifiers::NONE,
            }],
            Some(&fit),
            &|_| true,
            false,
            &mut out,
        );
        out.clear();
        translator.release_all(&mut out);
        assert_eq!(
            out,
            vec![InputEvent::Button {
                button: MouseButton::Right,
                pressed: false
            }]
        );
    }
}
