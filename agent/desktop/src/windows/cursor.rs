//! The pointer as GDI sees it: position from `GetCursorInfo`, shape from the
//! cursor's bitmaps (`GetIconInfo` + `GetDIBits`) whenever the cursor
//! handle changes. The GDI capturer's cursor, and the DXGI capturer's
//! position until duplication has reported one.

use deskside_protocol::session::CursorShape;
use windows::Win32::Graphics::Gdi::{
    DeleteObject, GetDC, GetDIBits, GetObjectW, ReleaseDC, BITMAP, BITMAPINFO, BITMAPINFOHEADER,
    BI_RGB, DIB_RGB_COLORS, HBITMAP, HGDIOBJ,
};
use windows::Win32::UI::WindowsAndMessaging::{
    GetCursorInfo, GetIconInfo, CURSORINFO, CURSOR_SHOWING, HICON, ICONINFO,
};

use super::{win_error, RESTART_ADVICE};
use crate::capture::CaptureError;
use crate::windows_math::{color_cursor, monochrome_dib_cursor};

/// Cursor bitmaps larger than this per side are not read (a corrupt handle
/// must not make us allocate gigabytes); the pointer is then sent without a
/// shape.
const MAX_BITMAP_SIDE: u32 = 1024;

/// Follows the pointer; sends its shape when the cursor handle changes.
#[derive(Debug, Default)]
pub(crate) struct GdiCursor {
    /// The handle whose shape was last returned (0: hidden).
    last: Option<isize>,
}

impl GdiCursor {
    /// The pointer position in desktop pixels, with its shape when it
    /// changed since the previous call (a hidden pointer is an empty shape).
    pub(crate) fn poll(&mut self) -> Result<Option<(i32, i32, Option<CursorShape>)>, CaptureError> {
        let mut info = CURSORINFO {
            cbSize: std::mem::size_of::<CURSORINFO>() as u32,
            ..Default::default()
        };
        // SAFETY: `info` is a CURSORINFO with its cbSize set, as required.
        unsafe { GetCursorInfo(&mut info) }
            .map_err(|e| win_error("GetCursorInfo", &e, RESTART_ADVICE))?;
        let (x, y) = (info.ptScreenPos.x, info.ptScreenPos.y);
        let handle = if info.flags.0 & CURSOR_SHOWING.0 != 0 {
            info.hCursor.0 as isize
        } else {
            0
        };
        if self.last == Some(handle) {
            return Ok(Some((x, y, None)));
        }
        // Remembered even when the shape cannot be read, so a broken
        // cursor is not re-read on every frame.
        self.last = Some(handle);
        let shape = if handle == 0 {
            Some(hidden())
        } else {
            let shape = read_shape(HICON(info.hCursor.0));
            if shape.is_none() {
                tracing::debug!("the cursor's shape could not be read; sending the position only");
            }
            shape
        };
        Ok(Some((x, y, shape)))
    }
}

/// A hidden pointer: one transparent pixel.
fn hidden() -> CursorShape {
    CursorShape {
        width: 1,
        height: 1,
        hot_x: 0,
        hot_y: 0,
        rgba: vec![0; 4],
    }
}

/// The shape of a cursor (or icon) handle.
fn read_shape(cursor: HICON) -> Option<CursorShape> {
    let mut icon = ICONINFO::default();
    // SAFETY: `icon` is a plain struct the call fills; the bitmaps it
    // returns are ours to delete, which happens below on every path.
    unsafe { GetIconInfo(cursor, &mut icon) }.ok()?;
    let mask = read_bitmap(icon.hbmMask);
    let color = (!icon.hbmColor.is_invalid()).then(|| read_bitmap(icon.hbmColor));
    for bitmap in [icon.hbmMask, icon.hbmColor] {
        if !bitmap.is_invalid() {
            // SAFETY: the bitmaps came from GetIconInfo and are deleted once.
            let _ = unsafe { DeleteObject(HGDIOBJ::from(bitmap)) };
        }
    }
    let (mask_w, mask_h, mask) = mask?;
    let (hot_x, hot_y) = (icon.xHotspot, icon.yHotspot);
    match color {
        Some(color) => {
            let (w, h, bgra) = color?;
            // The mask must cover the colour bitmap to be used.
            let mask = (mask_w == w && mask_h >= h).then_some(mask.as_slice());
            color_cursor(&bgra, w, h, w as usize * 4, mask, hot_x, hot_y)
        }
        // Monochrome: the mask holds the AND rows then the XOR rows.
        None => monochrome_dib_cursor(&mask, mask_w, mask_h / 2, hot_x, hot_y),
    }
}

/// A bitmap's pixels as top-down 32-bit BGRA rows (`width * 4` bytes each).
fn read_bitmap(bitmap: HBITMAP) -> Option<(u32, u32, Vec<u8>)> {
    let mut header = BITMAP::default();
    // SAFETY: `header` is a BITMAP and the size passed is its size.
    let got = unsafe {
        GetObjectW(
            HGDIOBJ::from(bitmap),
            std::mem::size_of::<BITMAP>() as i32,
            Some((&mut header as *mut BITMAP).cast()),
        )
    };
    if got == 0 {
        return None;
    }
    let width = u32::try_from(header.bmWidth).ok()?;
    let height = u32::try_from(header.bmHeight).ok()?;
    if width == 0 || height == 0 || width > MAX_BITMAP_SIDE || height > 2 * MAX_BITMAP_SIDE {
        return None;
    }
    let mut info = top_down_32bit(width, height);
    let mut pixels = vec![0u8; width as usize * height as usize * 4];
    // SAFETY: GetDC(None) returns the screen DC, released below.
    let dc = unsafe { GetDC(None) };
    // SAFETY: `pixels` holds `height` rows of `width` 32-bit pixels, which
    // is what `info` asks GetDIBits to write; `bitmap` is not selected into
    // any DC.
    let lines = unsafe {
        GetDIBits(
            dc,
            bitmap,
            0,
            height,
            Some(pixels.as_mut_ptr().cast()),
            &mut info,
            DIB_RGB_COLORS,
        )
    };
    // SAFETY: releases the DC obtained above, once.
    unsafe { ReleaseDC(None, dc) };
    (u32::try_from(lines).ok()? == height).then_some((width, height, pixels))
}

/// The description of a `width` x `height` DIB of 32-bit pixels in top-down
/// rows (as `Frame` wants them), for `GetDIBits` and `CreateDIBSection`.
pub(super) fn top_down_32bit(width: u32, height: u32) -> BITMAPINFO {
    BITMAPINFO {
        bmiHeader: BITMAPINFOHEADER {
            biSize: std::mem::size_of::<BITMAPINFOHEADER>() as u32,
            biWidth: width as i32,
            // Negative: top-down rows.
            biHeight: -(height as i32),
            biPlanes: 1,
            biBitCount: 32,
            biCompression: BI_RGB.0,
            ..Default::default()
        },
        ..Default::default()
    }
}
