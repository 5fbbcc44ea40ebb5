//! The pure arithmetic of the Windows backends: absolute mouse coordinates,
//! virtual-key codes, cursor masks to RGBA, and which rows of a frame
//! changed.
//!
//! Portable on purpose (no Windows API, no I/O), so its unit tests run on
//! every OS; `src/windows/` calls it. Nothing here may call the system.

use deskside_protocol::session::{CursorShape, Key};

use crate::capture::DamageRect;

/// The largest cursor shape sent, per side; larger (accessibility) cursors
/// are cropped to it. The wire carries `u16` sides, and a cursor above this
/// is rare enough that cropping its far corner is acceptable.
pub const MAX_CURSOR_SIDE: u32 = 256;

/// A rectangle in desktop pixels (`right` and `bottom` excluded), as Win32's
/// `RECT` gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DesktopRect {
    /// Left edge.
    pub left: i32,
    /// Top edge.
    pub top: i32,
    /// One past the right edge.
    pub right: i32,
    /// One past the bottom edge.
    pub bottom: i32,
}

impl DesktopRect {
    /// Width in pixels (0 for an empty or inverted rectangle).
    pub fn width(&self) -> u32 {
        u32::try_from(i64::from(self.right) - i64::from(self.left)).unwrap_or(0)
    }

    /// Height in pixels (0 for an empty or inverted rectangle).
    pub fn height(&self) -> u32 {
        u32::try_from(i64::from(self.bottom) - i64::from(self.top)).unwrap_or(0)
    }
}

/// The full scale of `SendInput`'s absolute mouse coordinates: 0 is the
/// virtual desktop's first pixel, 65536 one past its last.
const ABSOLUTE_SCALE: i64 = 65536;

/// Maps desktop pixel (`x`, `y`) to `SendInput`'s normalised absolute
/// coordinates over `virtual_desktop` (`MOUSEEVENTF_ABSOLUTE |
/// MOUSEEVENTF_VIRTUALDESK`).
///
/// Windows turns a normalised `n` back into pixel `left + n * width / 65536`
/// (rounded down), so each pixel owns an interval of `65536 / width`
/// values; this picks the middle of the pixel's interval, which survives an
/// off-by-one rounding in either direction. Pixels outside the desktop are
/// clamped to its edge. An empty desktop maps everything to 0.
pub fn absolute_mouse(x: i32, y: i32, virtual_desktop: &DesktopRect) -> (i32, i32) {
    let axis = |v: i32, start: i32, len: u32| -> i32 {
        if len == 0 {
            return 0;
        }
        let len = i64::from(len);
        let offset = (i64::from(v) - i64::from(start)).clamp(0, len - 1);
        let n = (2 * offset + 1) * ABSOLUTE_SCALE / (2 * len);
        // At most 65535 because offset < len.
        i32::try_from(n).unwrap_or(0)
    };
    (
        axis(x, virtual_desktop.left, virtual_desktop.width()),
        axis(y, virtual_desktop.top, virtual_desktop.height()),
    )
}

/// The pixel Windows lands on for normalised `n` on an axis starting at
/// `start` with `len` pixels (the inverse of [`absolute_mouse`]; used by the
/// tests to check the round trip).
pub fn pixel_of_absolute(n: i32, start: i32, len: u32) -> i32 {
    let p = i64::from(n) * i64::from(len) / ABSOLUTE_SCALE;
    i32::try_from(i64::from(start) + p).unwrap_or(start)
}

/// A Windows virtual-key code and whether the key is an *extended* key
/// (`KEYEVENTF_EXTENDEDKEY`: the navigation keys apart from the numeric
/// keypad, which applications tell apart by that flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtualKey {
    /// The `VK_*` code.
    pub code: u16,
    /// Whether to send `KEYEVENTF_EXTENDEDKEY`.
    pub extended: bool,
}

/// The virtual key of a named key; `None` for [`Key::Char`] (which depends
/// on the keyboard layout: the sink asks `VkKeyScanW`) and for function
/// keys outside F1–F24.
pub fn named_virtual_key(key: Key) -> Option<VirtualKey> {
    // Values from WinUser.h; written out so this module stays portable.
    let plain = |code| {
        Some(VirtualKey {
            code,
            extended: false,
        })
    };
    let extended = |code| {
        Some(VirtualKey {
            code,
            extended: true,
        })
    };
    match key {
        Key::Backspace => plain(0x08),
        Key::Tab => plain(0x09),
        Key::Return => plain(0x0D),
        Key::Shift => plain(0x10),
        Key::Control => plain(0x11),
        Key::Alt => plain(0x12),
        Key::Escape => plain(0x1B),
        Key::Space => plain(0x20),
        Key::PageUp => extended(0x21),
        Key::PageDown => extended(0x22),
        Key::End => extended(0x23),
        Key::Home => extended(0x24),
        Key::Left => extended(0x25),
        Key::Up => extended(0x26),
        Key::Right => extended(0x27),
        Key::Down => extended(0x28),
        Key::Insert => extended(0x2D),
        Key::Delete => extended(0x2E),
        // The left Windows key.
        Key::Meta => extended(0x5B),
        // VK_F1 is 0x70, VK_F24 is 0x87.
        Key::F(n @ 1..=24) => plain(0x70 + u16::from(n) - 1),
        Key::F(_) | Key::Char(_) => None,
    }
}

/// A key press or release for one character of text: the virtual key to
/// send when the character is a control character with a key of its own
/// (`\n` and `\r` are Return, `\t` is Tab, `\u{8}` is Backspace); `None`
/// means send the UTF-16 units with `KEYEVENTF_UNICODE`.
pub fn text_control_key(c: char) -> Option<Key> {
    match c {
        '\n' | '\r' => Some(Key::Return),
        '\t' => Some(Key::Tab),
        '\u{8}' => Some(Key::Backspace),
        _ => None,
    }
}

/// The first and last rows (inclusive) where two frames of the same size
/// differ, as a full-width [`DamageRect`]; `None` when they are equal.
///
/// `stride` is the distance between rows in both buffers; only the first
/// `width * 4` bytes of each row are compared. Buffers shorter than the
/// frame compare as different from the first missing row on.
pub fn changed_rows(
    old: &[u8],
    new: &[u8],
    width: u32,
    height: u32,
    stride: usize,
) -> Option<DamageRect> {
    let row_len = width as usize * 4;
    fn row(buf: &[u8], y: u32, stride: usize, row_len: usize) -> Option<&[u8]> {
        let start = stride.checked_mul(y as usize)?;
        buf.get(start..start.checked_add(row_len)?)
    }
    let row = |buf, y| row(buf, y, stride, row_len);
    let differs = |y: u32| match (row(old, y), row(new, y)) {
        (Some(a), Some(b)) => a != b,
        _ => true,
    };
    let first = (0..height).find(|&y| differs(y))?;
    let last = (first..height).rev().find(|&y| differs(y)).unwrap_or(first);
    Some(DamageRect {
        x: 0,
        y: first,
        width,
        height: last - first + 1,
    })
}

/// Crops a cursor to [`MAX_CURSOR_SIDE`] per side: returns the kept width
/// and height.
fn cropped(width: u32, height: u32) -> (u32, u32) {
    (width.min(MAX_CURSOR_SIDE), height.min(MAX_CURSOR_SIDE))
}

fn shape(width: u32, height: u32, hot_x: u32, hot_y: u32, rgba: Vec<u8>) -> Option<CursorShape> {
    Some(CursorShape {
        width: u16::try_from(width).ok()?,
        height: u16::try_from(height).ok()?,
        hot_x: u16::try_from(hot_x.min(width.saturating_sub(1))).ok()?,
        hot_y: u16::try_from(hot_y.min(height.saturating_sub(1))).ok()?,
        rgba,
    })
}

/// The RGBA of one pixel of a monochrome cursor from its AND and XOR bits:
/// AND 0 draws the XOR colour (black or white); AND 1 with XOR 0 is
/// transparent; AND 1 with XOR 1 inverts the screen, which a viewer cannot
/// do, so it is drawn black (the text I-beam stays visible on light
/// backgrounds, where it is used most).
fn monochrome_pixel(and: bool, xor: bool) -> [u8; 4] {
    match (and, xor) {
        (false, false) => [0, 0, 0, 0xff],
        (false, true) => [0xff, 0xff, 0xff, 0xff],
        (true, false) => [0, 0, 0, 0],
        (true, true) => [0, 0, 0, 0xff],
    }
}

/// A monochrome cursor given as 1 bit per pixel: the AND mask (`height`
/// rows) followed by the XOR mask (`height` more rows), each row `pitch`
/// bytes, most significant bit first: DXGI's
/// `DXGI_OUTDUPL_POINTER_SHAPE_TYPE_MONOCHROME`, where `height` is half the
/// reported height. `None` when the buffer is too short.
pub fn monochrome_bits_cursor(
    bits: &[u8],
    width: u32,
    height: u32,
    pitch: usize,
    hot_x: u32,
    hot_y: u32,
) -> Option<CursorShape> {
    let bit = |row: usize, x: u32| -> Option<bool> {
        let byte = bits.get(row.checked_mul(pitch)? + (x / 8) as usize)?;
        Some(byte & (0x80 >> (x % 8)) != 0)
    };
    monochrome_cursor(bit, width, height, hot_x, hot_y)
}

/// A monochrome cursor read as 32-bit pixels (GDI's `GetDIBits` of a 1-bit
/// mask bitmap into a 32-bit DIB: a set bit becomes white, `0x00FFFFFF`):
/// AND mask rows first, then XOR rows, as in [`monochrome_bits_cursor`].
pub fn monochrome_dib_cursor(
    pixels: &[u8],
    width: u32,
    height: u32,
    hot_x: u32,
    hot_y: u32,
) -> Option<CursorShape> {
    monochrome_cursor(
        |row, x| dib_bit_set(pixels, width, row, x),
        width,
        height,
        hot_x,
        hot_y,
    )
}

/// Whether pixel `x` of `row` in 32-bit DIB pixels `width` wide (a 1-bit
/// mask read by `GetDIBits`) is set, i.e. not black; `None` past the end.
fn dib_bit_set(pixels: &[u8], width: u32, row: usize, x: u32) -> Option<bool> {
    let at = (row.checked_mul(width as usize)? + x as usize).checked_mul(4)?;
    Some(pixels.get(at..at + 3)?.iter().any(|&v| v != 0))
}

/// A monochrome cursor `height` rows high from its masks: `bit(row, x)`
/// reads the AND mask in rows `0..height` and the XOR mask in rows
/// `height..2 * height`; `None` when it reads past the buffer.
fn monochrome_cursor(
    bit: impl Fn(usize, u32) -> Option<bool>,
    width: u32,
    height: u32,
    hot_x: u32,
    hot_y: u32,
) -> Option<CursorShape> {
    let (w, h) = cropped(width, height);
    let mut rgba = Vec::with_capacity(w as usize * h as usize * 4);
    for y in 0..h as usize {
        for x in 0..w {
            let and = bit(y, x)?;
            let xor = bit(y + height as usize, x)?;
            rgba.extend_from_slice(&monochrome_pixel(and, xor));
        }
    }
    shape(w, h, hot_x, hot_y, rgba)
}

/// A colour cursor from 32-bit BGRA rows of `pitch` bytes.
///
/// When every alpha byte is 0 the cursor predates alpha cursors: its
/// transparency is in the AND mask (`and_mask`, 32-bit pixels as in
/// [`monochrome_dib_cursor`], white meaning transparent); without a mask it
/// is drawn opaque. DXGI's `..._TYPE_COLOR` carries real alpha.
pub fn color_cursor(
    bgra: &[u8],
    width: u32,
    height: u32,
    pitch: usize,
    and_mask: Option<&[u8]>,
    hot_x: u32,
    hot_y: u32,
) -> Option<CursorShape> {
    let (w, h) = cropped(width, height);
    let pixel = |x: u32, y: u32| -> Option<&[u8]> {
        let at = (y as usize).checked_mul(pitch)? + x as usize * 4;
        bgra.get(at..at + 4)
    };
    let mut has_alpha = false;
    for y in 0..h {
        for x in 0..w {
            has_alpha |= pixel(x, y)?[3] != 0;
        }
    }
    let mut rgba = Vec::with_capacity(w as usize * h as usize * 4);
    for y in 0..h {
        for x in 0..w {
            let p = pixel(x, y)?;
            let alpha = if has_alpha {
                p[3]
            } else {
                match and_mask {
                    Some(mask) if dib_bit_set(mask, width, y as usize, x)? => 0,
                    _ => 0xff,
                }
            };
            rgba.extend_from_slice(&[p[2], p[1], p[0], alpha]);
        }
    }
    shape(w, h, hot_x, hot_y, rgba)
}

/// DXGI's `..._TYPE_MASKED_COLOR`: 32-bit BGRX where the fourth byte is a
/// mask: 0 draws the colour, 0xFF XORs it with the screen. A viewer cannot
/// XOR, so XOR pixels that would change the screen (non-black) are drawn
/// opaque and black XOR pixels (no change) are transparent.
pub fn masked_color_cursor(
    bgrx: &[u8],
    width: u32,
    height: u32,
    pitch: usize,
    hot_x: u32,
    hot_y: u32,
) -> Option<CursorShape> {
    let (w, h) = cropped(width, height);
    let mut rgba = Vec::with_capacity(w as usize * h as usize * 4);
    for y in 0..h {
        for x in 0..w {
            let at = (y as usize).checked_mul(pitch)? + x as usize * 4;
            let p = bgrx.get(at..at + 4)?;
            let xor = p[3] != 0;
            let visible = !xor || p[..3].iter().any(|&v| v != 0);
            rgba.extend_from_slice(&[p[2], p[1], p[0], if visible { 0xff } else { 0 }]);
        }
    }
    shape(w, h, hot_x, hot_y, rgba)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desk(left: i32, top: i32, right: i32, bottom: i32) -> DesktopRect {
        DesktopRect {
            left,
            top,
            right,
            bottom,
        }
    }

    #[test]
    fn absolute_coordinates_land_on_the_same_pixel() {
        // Sizes seen on real desktops, with negative origins (a monitor left
        // of or above the primary one).
        let desktops = [
            desk(0, 0, 1920, 1080),
            desk(-1280, -200, 1920, 1080),
            desk(0, 0, 1280, 1024),
            desk(0, 0, 7680, 2160),
            desk(0, 0, 3, 2),
        ];
        for d in desktops {
            for x in [d.left, d.left + 1, (d.left + d.right) / 2, d.right - 1] {
                for y in [d.top, d.bottom - 1] {
                    let (nx, ny) = absolute_mouse(x, y, &d);
                    assert!((0..65536).contains(&nx) && (0..65536).contains(&ny));
                    assert_eq!(pixel_of_absolute(nx, d.left, d.width()), x, "{d:?} x {x}");
                    assert_eq!(pixel_of_absolute(ny, d.top, d.height()), y, "{d:?} y {y}");
                    // One normalised unit either way still lands on the pixel.
                    assert_eq!(pixel_of_absolute(nx + 1, d.left, d.width()), x);
                    assert_eq!(pixel_of_absolute(nx - 1, d.left, d.width()), x);
                }
            }
        }
    }

    #[test]
    fn absolute_coordinates_clamp_to_the_desktop() {
        let d = desk(0, 0, 800, 600);
        let (nx, ny) = absolute_mouse(-50, 10_000, &d);
        assert_eq!(pixel_of_absolute(nx, 0, 800), 0);
        assert_eq!(pixel_of_absolute(ny, 0, 600), 599);
        assert_eq!(absolute_mouse(5, 5, &desk(0, 0, 0, 0)), (0, 0));
    }

    #[test]
    fn named_keys_have_their_winuser_codes() {
        // (key, VK code, extended)
        let cases = [
            (Key::Return, 0x0D, false),
            (Key::Backspace, 0x08, false),
            (Key::Left, 0x25, true),
            (Key::Delete, 0x2E, true),
            (Key::Meta, 0x5B, true),
            (Key::F(1), 0x70, false),
            (Key::F(12), 0x7B, false),
        ];
        for (key, code, extended) in cases {
            assert_eq!(
                named_virtual_key(key),
                Some(VirtualKey { code, extended }),
                "{key:?}"
            );
        }
        assert_eq!(named_virtual_key(Key::F(0)), None);
        assert_eq!(named_virtual_key(Key::F(25)), None);
        assert_eq!(named_virtual_key(Key::Char('a')), None);
        assert_eq!(text_control_key('\n'), Some(Key::Return));
        assert_eq!(text_control_key('é'), None);
    }

    #[test]
    fn changed_rows_bound_the_difference() {
        let (w, h, stride) = (3u32, 5u32, 16usize);
        let old = vec![7u8; stride * h as usize];
        let mut new = old.clone();
        assert_eq!(changed_rows(&old, &new, w, h, stride), None);
        // Padding bytes past width * 4 are ignored.
        new[12] = 0;
        assert_eq!(changed_rows(&old, &new, w, h, stride), None);
        new[stride + 4] = 1;
        new[3 * stride + 11] = 1;
        assert_eq!(
            changed_rows(&old, &new, w, h, stride),
            Some(DamageRect {
                x: 0,
                y: 1,
                width: 3,
                height: 3
            })
        );
        // A short buffer differs from its first missing row.
        assert_eq!(
            changed_rows(&old[..stride * 2], &old, w, h, stride),
            Some(DamageRect {
                x: 0,
                y: 2,
                width: 3,
                height: 3
            })
        );
    }

    #[test]
    fn monochrome_masks_become_rgba() {
        // 2x2 cursor, pitch 2 bytes: AND rows then XOR rows.
        // Pixel (0,0): AND 0 XOR 0 -> black; (1,0): AND 0 XOR 1 -> white;
        // (0,1): AND 1 XOR 0 -> transparent; (1,1): AND 1 XOR 1 -> black.
        let bits = [
            0b0000_0000,
            0,
            0b1100_0000,
            0,
            0b0100_0000,
            0,
            0b0100_0000,
            0,
        ];
        let s = monochrome_bits_cursor(&bits, 2, 2, 2, 1, 5).unwrap();
        assert_eq!((s.width, s.height, s.hot_x, s.hot_y), (2, 2, 1, 1));
        assert_eq!(
            s.rgba,
            [
                [0, 0, 0, 0xff],
                [0xff, 0xff, 0xff, 0xff],
                [0, 0, 0, 0],
                [0, 0, 0, 0xff]
            ]
            .concat()
        );
        // The same cursor as 32-bit DIB pixels.
        let white = [0xff, 0xff, 0xff, 0];
        let black = [0, 0, 0, 0];
        let dib = [black, black, white, white, black, white, black, white].concat();
        assert_eq!(monochrome_dib_cursor(&dib, 2, 2, 1, 5), Some(s));
        assert_eq!(monochrome_bits_cursor(&bits[..5], 2, 2, 2, 0, 0), None);
    }

    #[test]
    fn color_cursors_keep_alpha_or_use_the_mask() {
        // 2x1, BGRA: blue opaque, red half transparent.
        let with_alpha = [0xff, 0, 0, 0xff, 0, 0, 0xff, 0x80];
        let s = color_cursor(&with_alpha, 2, 1, 8, None, 0, 0).unwrap();
        assert_eq!(s.rgba, [0, 0, 0xff, 0xff, 0xff, 0, 0, 0x80]);
        // No alpha at all: the AND mask says the second pixel is transparent.
        let no_alpha = [0xff, 0, 0, 0, 0, 0, 0xff, 0];
        let mask = [0, 0, 0, 0, 0xff, 0xff, 0xff, 0];
        let s = color_cursor(&no_alpha, 2, 1, 8, Some(&mask), 0, 0).unwrap();
        assert_eq!(s.rgba, [0, 0, 0xff, 0xff, 0xff, 0, 0, 0]);
        let s = color_cursor(&no_alpha, 2, 1, 8, None, 0, 0).unwrap();
        assert_eq!(s.rgba, [0, 0, 0xff, 0xff, 0xff, 0, 0, 0xff]);
        // Masked colour: plain pixel, XOR black (invisible), XOR white.
        let masked = [1, 2, 3, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff];
        let s = masked_color_cursor(&masked, 3, 1, 12, 0, 0).unwrap();
        assert_eq!(s.rgba, [3, 2, 1, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn huge_cursors_are_cropped() {
        let side = MAX_CURSOR_SIDE + 10;
        let bgra = vec![0x40u8; side as usize * side as usize * 4];
        let s = color_cursor(&bgra, side, side, side as usize * 4, None, 300, 2).unwrap();
        assert_eq!(u32::from(s.width), MAX_CURSOR_SIDE);
        assert_eq!(
            s.rgba.len(),
            (MAX_CURSOR_SIDE * MAX_CURSOR_SIDE * 4) as usize
        );
        assert_eq!(u32::from(s.hot_x), MAX_CURSOR_SIDE - 1);
    }
}
