//! What the test program draws and what it writes down, as plain data: the
//! window geometry, the four colour quadrants, the frame-counter barcode and
//! the JSON lines of the record file. No Win32 here, so it is tested on any
//! OS; `win32.rs` only paints these rectangles and appends these lines.

use serde_json::{json, Value};

/// Side of one barcode square, in pixels (as `deskside-xclient --counter`).
pub const SQUARE: i32 = 16;
/// Number of bits (squares) in the barcode.
pub const BITS: u32 = 32;

/// An RGB colour, written out exactly (`0xRRGGBB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    pub const RED: Rgb = Rgb(0xff, 0x00, 0x00);
    pub const GREEN: Rgb = Rgb(0x00, 0xff, 0x00);
    pub const BLUE: Rgb = Rgb(0x00, 0x00, 0xff);
    pub const WHITE: Rgb = Rgb(0xff, 0xff, 0xff);
    pub const BLACK: Rgb = Rgb(0x00, 0x00, 0x00);

    /// The Win32 `COLORREF` of this colour (`0x00BBGGRR`).
    pub fn colorref(self) -> u32 {
        u32::from(self.0) | u32::from(self.1) << 8 | u32::from(self.2) << 16
    }
}

/// A filled rectangle in client pixels: left, top, right, bottom (right and
/// bottom exclusive, as a Win32 `RECT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fill {
    pub left: i32,
    pub top: i32,
    pub right: i32,
    pub bottom: i32,
    pub colour: Rgb,
}

/// The window's place on the screen, in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub width: i32,
    pub height: i32,
    pub x: i32,
    pub y: i32,
}

impl std::str::FromStr for Geometry {
    type Err = String;

    /// Parses `WxH+X+Y` (non-negative offsets).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid geometry {s:?}; expected WxH+X+Y, e.g. 640x400+0+0");
        let (size, offsets) = s.split_once('+').ok_or_else(bad)?;
        let (w, h) = size.split_once('x').ok_or_else(bad)?;
        let (x, y) = offsets.split_once('+').ok_or_else(bad)?;
        let num = |v: &str| v.parse::<i32>().ok().filter(|n| *n >= 0).ok_or_else(bad);
        let g = Geometry {
            width: num(w)?,
            height: num(h)?,
            x: num(x)?,
            y: num(y)?,
        };
        if g.width == 0 || g.height == 0 {
            return Err(bad());
        }
        Ok(g)
    }
}

/// The four quadrants that fill the window: top-left red, top-right green,
/// bottom-left blue, bottom-right white (the picture of `deskside-xclient`).
pub fn quadrants(width: i32, height: i32) -> [Fill; 4] {
    let (mx, my) = (width / 2, height / 2);
    let fill = |left, top, right, bottom, colour| Fill {
        left,
        top,
        right,
        bottom,
        colour,
    };
    [
        fill(0, 0, mx, my, Rgb::RED),
        fill(mx, 0, width, my, Rgb::GREEN),
        fill(0, my, mx, height, Rgb::BLUE),
        fill(mx, my, width, height, Rgb::WHITE),
    ]
}

/// The barcode of `counter`: 32 squares of 16×16 pixels in one row at the
/// client area's top-left corner; square `i` holds bit `i` (least
/// significant first), white for 1 and black for 0.
pub fn barcode(counter: u32) -> [Fill; BITS as usize] {
    std::array::from_fn(|i| {
        let left = SQUARE * i as i32;
        Fill {
            left,
            top: 0,
            right: left + SQUARE,
            bottom: SQUARE,
            colour: if counter >> i & 1 == 1 {
                Rgb::WHITE
            } else {
                Rgb::BLACK
            },
        }
    })
}

#[cfg(test)]
/// Reads a barcode back from RGB pixels (`pixel(x, y)`), as a test would
/// from a decoded frame: the centre of each square, any channel above 127
/// is 1.
pub fn read_barcode(pixel: impl Fn(i32, i32) -> Rgb) -> u32 {
    (0..BITS).fold(0, |value, bit| {
        let Rgb(r, g, b) = pixel(SQUARE * bit as i32 + SQUARE / 2, SQUARE / 2);
        if r.max(g).max(b) > 127 {
            value | 1 << bit
        } else {
            value
        }
    })
}

/// A mouse button, as the record names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Button {
    Left,
    Middle,
    Right,
}

impl Button {
    fn name(self) -> &'static str {
        match self {
            Button::Left => "left",
            Button::Middle => "middle",
            Button::Right => "right",
        }
    }
}

/// One line of the record file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// The window is shown and painted.
    Ready { geometry: Geometry, pid: u32 },
    /// WM_KEYDOWN (or WM_SYSKEYDOWN with `sys`).
    KeyDown {
        vk: u32,
        scan: u32,
        repeat: bool,
        sys: bool,
    },
    /// WM_CHAR: one character (a UTF-16 surrogate pair is joined first).
    Char(char),
    /// A button went down or up at client coordinates.
    Button {
        button: Button,
        down: bool,
        x: i32,
        y: i32,
    },
}

impl Record {
    /// The JSON object written as one line.
    pub fn to_json(&self) -> Value {
        match self {
            Record::Ready { geometry: g, pid } => json!({
                "type": "ready", "x": g.x, "y": g.y, "width": g.width, "height": g.height, "pid": pid,
            }),
            Record::KeyDown {
                vk,
                scan,
                repeat,
                sys,
            } => json!({"type": "key_down", "vk": vk, "scan": scan, "repeat": repeat, "sys": sys}),
            Record::Char(c) => {
                json!({"type": "char", "text": c.to_string(), "code": u32::from(*c)})
            }
            Record::Button { button, down, x, y } => json!({
                "type": if *down { "button_down" } else { "button_up" },
                "button": button.name(), "x": x, "y": y,
            }),
        }
    }
}

/// Joins WM_CHAR's UTF-16 code units into characters: a high surrogate
/// waits for its low half; a lone half becomes U+FFFD.
#[derive(Debug, Default)]
pub struct Utf16Joiner {
    high: Option<u16>,
}

impl Utf16Joiner {
    pub fn push(&mut self, unit: u16) -> Option<char> {
        if (0xD800..0xDC00).contains(&unit) {
            let lone = self.high.replace(unit);
            return lone.map(|_| char::REPLACEMENT_CHARACTER);
        }
        match self.high.take() {
            Some(high) => char::decode_utf16([high, unit]).next()?.ok(),
            None => char::decode_utf16([unit]).next()?.ok(),
        }
        .or(Some(char::REPLACEMENT_CHARACTER))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paints fills into an RGB buffer, as the window would.
    fn paint(width: i32, height: i32, fills: &[Fill]) -> Vec<Rgb> {
        let mut pixels = vec![Rgb(0x12, 0x34, 0x56); (width * height) as usize];
        for f in fills {
            for y in f.top..f.bottom.min(height) {
                for x in f.left..f.right.min(width) {
                    pixels[(y * width + x) as usize] = f.colour;
                }
            }
        }
        pixels
    }

    #[test]
    fn the_barcode_reads_back_as_the_counter() {
        for counter in [0, 1, 2, 0x8000_0000, 0xdead_beef, u32::MAX, 1234] {
            let mut fills = quadrants(640, 400).to_vec();
            fills.extend(barcode(counter));
            let pixels = paint(640, 400, &fills);
            assert_eq!(read_barcode(|x, y| pixels[(y * 640 + x) as usize]), counter);
        }
    }

    #[test]
    fn the_quadrants_cover_the_window_with_the_documented_colours() {
        let pixels = paint(641, 401, &quadrants(641, 401));
        let at = |x: i32, y: i32| pixels[(y * 641 + x) as usize];
        assert_eq!(at(0, 0), Rgb::RED);
        assert_eq!(at(640, 0), Rgb::GREEN);
        assert_eq!(at(0, 400), Rgb::BLUE);
        assert_eq!(at(640, 400), Rgb::WHITE);
        assert!(pixels.iter().all(|p| *p != Rgb(0x12, 0x34, 0x56)));
    }

    #[test]
    fn colorref_is_bgr() {
        assert_eq!(Rgb(0x11, 0x22, 0x33).colorref(), 0x0033_2211);
    }

    #[test]
    fn geometry_parses_and_rejects() {
        assert_eq!(
            "640x400+10+20".parse(),
            Ok(Geometry {
                width: 640,
                height: 400,
                x: 10,
                y: 20
            })
        );
        for bad in ["640x400", "0x400+0+0", "640x400+-1+0", "axb+0+0", ""] {
            assert!(bad.parse::<Geometry>().is_err(), "{bad}");
        }
    }

    #[test]
    fn records_are_the_documented_json() {
        let line = |r: Record| r.to_json().to_string();
        assert_eq!(
            line(Record::Char('é')),
            r#"{"code":233,"text":"é","type":"char"}"#
        );
        assert_eq!(
            line(Record::Button {
                button: Button::Left,
                down: true,
                x: 3,
                y: 4
            }),
            r#"{"button":"left","type":"button_down","x":3,"y":4}"#
        );
        assert_eq!(
            line(Record::KeyDown {
                vk: 0x41,
                scan: 30,
                repeat: false,
                sys: false
            }),
            r#"{"repeat":false,"scan":30,"sys":false,"type":"key_down","vk":65}"#
        );
    }

    #[test]
    fn surrogate_pairs_join_and_lone_halves_are_replaced() {
        let mut j = Utf16Joiner::default();
        assert_eq!(j.push(u16::from(b'a')), Some('a'));
        assert_eq!(j.push(0xD83D), None);
        assert_eq!(j.push(0xDE00), Some('😀'));
        assert_eq!(j.push(0xDE00), Some(char::REPLACEMENT_CHARACTER));
    }
}
