//! The GDI fallback capturer: `BitBlt` from the screen into a 32-bit DIB
//! section, used where DXGI Desktop Duplication is unavailable (remote
//! desktop sessions, old drivers, Wine).
//!
//! GDI reports no damage, so the capturer keeps two DIB sections, captures
//! into the one not shown last and compares the two: equal pictures are
//! `changed: false`, and the changed rows are the damage.

use deskside_protocol::session::{CursorShape, Monitor};
use windows::Win32::Graphics::Gdi::{
    BitBlt, CreateCompatibleDC, CreateDIBSection, DeleteDC, DeleteObject, GdiFlush, GetDC,
    ReleaseDC, SelectObject, CAPTUREBLT, DIB_RGB_COLORS, HBITMAP, HDC, HGDIOBJ, SRCCOPY,
};

use super::cursor::{top_down_32bit, GdiCursor};
use super::{list_monitors, win_error, MonitorArea, RESTART_ADVICE};
use crate::capture::{CaptureError, Captured, Capturer, DamageRect, Frame};
use crate::windows_math::changed_rows;

/// Largest monitor side captured (16384: beyond any real monitor, and
/// keeps `width * height * 4` far below `isize::MAX`).
const MAX_SIDE: u32 = 16384;

/// GDI capture; see the module documentation.
#[derive(Debug)]
pub struct GdiCapturer {
    monitors: Option<Vec<MonitorArea>>,
    /// Two pictures: the one handed out last (`shown`) and the other.
    buffers: [Option<Dib>; 2],
    shown: usize,
    /// Which monitor each buffer holds.
    holds: [Option<u8>; 2],
    damage: Vec<DamageRect>,
    cursor: GdiCursor,
}

impl GdiCapturer {
    /// A GDI capturer of this session's desktop. Fails only when the
    /// monitors cannot be listed.
    pub fn open() -> Result<Self, CaptureError> {
        let monitors = list_monitors()?;
        if monitors.is_empty() {
            return Err(CaptureError::Windows {
                call: "EnumDisplayMonitors",
                detail: "no monitor".to_owned(),
                advice: "run the session helper in the employee's signed-in desktop session",
            });
        }
        Ok(Self {
            monitors: Some(monitors),
            buffers: [None, None],
            shown: 0,
            holds: [None, None],
            damage: Vec::new(),
            cursor: GdiCursor::default(),
        })
    }

    fn area(&mut self, monitor: u8) -> Result<Monitor, CaptureError> {
        if self.monitors.is_none() {
            self.monitors = Some(list_monitors()?);
        }
        let monitors = self.monitors.as_deref().unwrap_or_default();
        monitors
            .get(usize::from(monitor))
            .map(|a| a.monitor.clone())
            .ok_or(CaptureError::NoSuchMonitor {
                index: monitor,
                count: monitors.len(),
            })
    }
}

impl Capturer for GdiCapturer {
    fn monitors(&mut self) -> Result<Vec<Monitor>, CaptureError> {
        let monitors = list_monitors()?;
        let list = monitors.iter().map(|a| a.monitor.clone()).collect();
        self.monitors = Some(monitors);
        Ok(list)
    }

    fn capture(&mut self, monitor: u8) -> Result<Captured<'_>, CaptureError> {
        let area = self.area(monitor)?;
        let (width, height) = (area.width, area.height);
        if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
            return Err(CaptureError::TooLarge {
                index: monitor,
                width,
                height,
            });
        }
        let next = 1 - self.shown;
        let fits = self.buffers[next]
            .as_ref()
            .is_some_and(|b| b.width == width && b.height == height);
        if !fits {
            self.buffers[next] = None;
            self.holds[next] = None;
            self.buffers[next] = Some(Dib::new(width, height)?);
        }
        let Some(dib) = self.buffers[next].as_ref() else {
            return Err(CaptureError::Malformed("no capture buffer"));
        };
        dib.grab(area.x, area.y)?;
        self.holds[next] = Some(monitor);
        let previous = self.buffers[self.shown].as_ref().filter(|b| {
            b.width == width && b.height == height && self.holds[self.shown] == Some(monitor)
        });
        let stride = width as usize * 4;
        self.damage.clear();
        let changed = match previous {
            Some(previous) => {
                match changed_rows(previous.pixels(), dib.pixels(), width, height, stride) {
                    Some(rect) => {
                        self.damage.push(rect);
                        true
                    }
                    None => false,
                }
            }
            None => {
                self.damage.push(DamageRect {
                    x: 0,
                    y: 0,
                    width,
                    height,
                });
                true
            }
        };
        self.shown = next;
        let Some(dib) = self.buffers[next].as_ref() else {
            return Err(CaptureError::Malformed("no capture buffer"));
        };
        Ok(Captured {
            frame: Frame {
                width,
                height,
                stride,
                data: dib.pixels(),
            },
            changed,
        })
    }

    fn cursor(&mut self) -> Result<Option<(i32, i32, Option<CursorShape>)>, CaptureError> {
        self.cursor.poll()
    }

    fn damage(&self) -> Option<&[DamageRect]> {
        Some(&self.damage)
    }
}

/// A memory DC with a top-down 32-bit DIB section selected into it.
#[derive(Debug)]
struct Dib {
    dc: HDC,
    bitmap: HBITMAP,
    previous: HGDIOBJ,
    bits: *const u8,
    width: u32,
    height: u32,
}

// SAFETY: a memory DC and a DIB section belong to the process, not to the
// thread that made them; the capturer uses them from one thread at a time
// (every use goes through `&mut GdiCapturer` or `&self` borrowed from it).
unsafe impl Send for Dib {}

impl Dib {
    fn new(width: u32, height: u32) -> Result<Self, CaptureError> {
        let info = top_down_32bit(width, height);
        // SAFETY: a memory DC compatible with the screen; deleted in Drop
        // (or below when the bitmap fails).
        let dc = unsafe { CreateCompatibleDC(None) };
        if dc.is_invalid() {
            return Err(super::last_error("CreateCompatibleDC", RESTART_ADVICE));
        }
        let mut bits: *mut core::ffi::c_void = std::ptr::null_mut();
        // SAFETY: `info` describes a 32-bit top-down DIB; `bits` receives a
        // pointer to its `width * height * 4` bytes, owned by the bitmap.
        let bitmap = match unsafe {
            CreateDIBSection(Some(dc), &info, DIB_RGB_COLORS, &mut bits, None, 0)
        } {
            Ok(b) if !bits.is_null() => b,
            Ok(b) => {
                // SAFETY: both were created above and are deleted once.
                unsafe {
                    let _ = DeleteObject(HGDIOBJ::from(b));
                    let _ = DeleteDC(dc);
                }
                return Err(CaptureError::Windows {
                    call: "CreateDIBSection",
                    detail: "no pixel memory".to_owned(),
                    advice: "close other programs to free memory, or lower the screen resolution",
                });
            }
            Err(e) => {
                // SAFETY: created above, deleted once.
                let _ = unsafe { DeleteDC(dc) };
                return Err(win_error(
                    "CreateDIBSection",
                    &e,
                    "close other programs to free memory, or lower the screen resolution",
                ));
            }
        };
        // SAFETY: selects our bitmap into our DC; the returned previous
        // object is selected back in Drop before either is deleted.
        let previous = unsafe { SelectObject(dc, HGDIOBJ::from(bitmap)) };
        Ok(Self {
            dc,
            bitmap,
            previous,
            bits: bits.cast_const().cast(),
            width,
            height,
        })
    }

    /// Copies the screen area at desktop (`x`, `y`) into the DIB.
    fn grab(&self, x: i32, y: i32) -> Result<(), CaptureError> {
        // SAFETY: the screen DC is released below on every path.
        let screen = unsafe { GetDC(None) };
        if screen.is_invalid() {
            return Err(super::last_error(
                "GetDC",
                "run the session helper in the employee's signed-in desktop session",
            ));
        }
        // SAFETY: both DCs are valid; the destination rectangle is the
        // DIB's own size. CAPTUREBLT includes layered windows (menus,
        // tooltips, notifications).
        let copied = unsafe {
            BitBlt(
                self.dc,
                0,
                0,
                self.width as i32,
                self.height as i32,
                Some(screen),
                x,
                y,
                SRCCOPY | CAPTUREBLT,
            )
        };
        // SAFETY: the DC obtained above, released once; GdiFlush makes
        // the batched BitBlt finish before the pixels are read.
        unsafe {
            ReleaseDC(None, screen);
            let _ = GdiFlush();
        }
        copied.map_err(|e| {
            win_error(
                "BitBlt",
                &e,
                "the desktop may have switched (a UAC prompt or the lock screen); it comes back when the employee returns",
            )
        })
    }

    fn pixels(&self) -> &[u8] {
        // SAFETY: `bits` points to the DIB section's `width * height * 4`
        // bytes, which live as long as `self.bitmap` (deleted only in
        // Drop); GDI writes them only in `grab`, which takes `&self` of the
        // same single-threaded owner and flushes before returning.
        unsafe {
            std::slice::from_raw_parts(self.bits, self.width as usize * self.height as usize * 4)
        }
    }
}

impl Drop for Dib {
    fn drop(&mut self) {
        // SAFETY: restores the DC's original bitmap, then deletes our
        // bitmap and DC, each created in `new` and deleted once.
        unsafe {
            SelectObject(self.dc, self.previous);
            let _ = DeleteObject(HGDIOBJ::from(self.bitmap));
            let _ = DeleteDC(self.dc);
        }
    }
}
