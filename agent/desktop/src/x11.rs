//! Screen capture on an X11 (Xorg) desktop, over a pure-Rust X connection.
//!
//! - **MIT-SHM** over a private memfd ([`crate::shm_mem`]): the X server copies
//!   the picture straight into memory we share with it, no socket copy. When
//!   the server cannot take the descriptor (remote display, old server), the
//!   capturer falls back to plain `GetImage` and says so once in the log.
//! - **RandR** `GetMonitors` lists the monitors; without RandR 1.5 the whole
//!   root window is one monitor.
//! - **XDamage** on the root window tells whether a monitor changed since its
//!   previous capture, so a static screen costs one round trip and no copy.
//!   Without it every capture reports `changed = true`.
//! - **XFixes** gives the pointer position and image (premultiplied ARGB,
//!   converted to the straight RGBA of [`CursorShape`]).
//!
//! This module never refuses or grants anything: the caller checks consent.

use deskside_protocol::session::{CursorShape, Monitor};
use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::xproto::{self, ConnectionExt as _, ImageFormat, ImageOrder, Rectangle};
use x11rb::protocol::{damage, randr, shm, xfixes};
use x11rb::rust_connection::RustConnection;

use crate::capture::{CaptureError, Captured, Capturer, DamageRect, Frame};
use crate::session::{detect_display, DisplayKind};
use crate::shm_mem::SharedMemory;

/// Bytes per pixel of the only pixel format we accept (32-bit ZPixmap).
const BYTES_PER_PIXEL: usize = 4;

/// Damage rectangles kept per monitor between captures; beyond this the
/// whole monitor counts as damaged (a full grab is as cheap by then).
const MAX_RECTS: usize = 64;

/// Where the picture handed out by the last capture lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Held {
    /// In the shared segment (a whole-monitor MIT-SHM grab).
    Segment,
    /// In the `GetImage` buffer.
    Image,
    /// In `picture`, kept up to date by grabbing only damaged rectangles.
    Picture,
}

/// How an [`X11Capturer`] copies pixels from the X server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureMethod {
    /// MIT-SHM `GetImage` into a private memfd shared with the server.
    Shm,
    /// Core `GetImage`: the picture travels over the X socket.
    GetImage,
}

/// Options for [`X11Capturer::open_with`]; [`Default`] enables everything the
/// server offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct X11Options {
    /// Use MIT-SHM when available (default true).
    pub shm: bool,
    /// Use XDamage when available (default true).
    pub damage: bool,
}

impl Default for X11Options {
    fn default() -> Self {
        Self {
            shm: true,
            damage: true,
        }
    }
}

/// The shared segment attached to the X server.
#[derive(Debug)]
struct ShmSegment {
    memory: SharedMemory,
    seg: shm::Seg,
}

/// The XDamage object on the root window and the region it drains into.
#[derive(Debug)]
struct DamageTracker {
    damage: damage::Damage,
    region: xfixes::Region,
}

/// Captures an X11 display. See the module documentation.
#[derive(Debug)]
pub struct X11Capturer {
    conn: RustConnection,
    display: String,
    root: xproto::Window,
    /// Root window size when the monitors were last listed.
    root_size: (u16, u16),
    randr: bool,
    xfixes: bool,
    /// Whether MIT-SHM may still be tried (cleared after the first failure).
    shm_allowed: bool,
    shm: Option<ShmSegment>,
    damage: Option<DamageTracker>,
    /// Monitors as last listed (empty until first listed).
    monitors: Vec<Monitor>,
    /// Per monitor: changed since its previous capture.
    dirty: Vec<bool>,
    /// Which monitor's picture the buffers currently hold, and where, so
    /// an unchanged monitor is served without a copy.
    holds: Option<(u8, Held)>,
    /// Per monitor: the damaged rectangles since its previous capture, in
    /// monitor pixels (empty with `dirty` set: unknown, grab everything).
    rects: Vec<Vec<DamageRect>>,
    /// The damaged part of the last capture, when only that was grabbed.
    last_damage: Option<Vec<DamageRect>>,
    /// The whole picture of the held monitor, updated in place from
    /// partial MIT-SHM grabs of the damaged rectangles.
    picture: Vec<u8>,
    /// Buffer of the `GetImage` path.
    image: Vec<u8>,
    /// Serial of the last cursor image handed out.
    cursor_serial: Option<u32>,
}

impl X11Capturer {
    /// Opens the display this process's session uses ([`detect_display`]).
    /// On Wayland this fails with [`CaptureError::Wayland`], without touching
    /// any display.
    pub fn open_session() -> Result<Self, CaptureError> {
        match detect_display() {
            DisplayKind::X11 { display } => Self::open(&display),
            DisplayKind::Wayland => Err(CaptureError::Wayland),
            DisplayKind::None => Err(CaptureError::NoDisplay),
        }
    }

    /// Opens X display `display` (e.g. `:0`) with [`X11Options::default`].
    pub fn open(display: &str) -> Result<Self, CaptureError> {
        Self::open_with(display, X11Options::default())
    }

    /// Opens X display `display` with `options`.
    pub fn open_with(display: &str, options: X11Options) -> Result<Self, CaptureError> {
        // (`display` is also a tracing macro helper, so log it under this name.)
        let display_name = display;
        let (conn, screen_num) =
            x11rb::connect(Some(display)).map_err(|source| CaptureError::Connect {
                display: display.to_owned(),
                source,
            })?;
        let setup = conn.setup();
        let screen = setup
            .roots
            .get(screen_num)
            .ok_or(CaptureError::Malformed("the display's screen is missing"))?;
        check_pixel_format(setup, screen)?;
        let root = screen.root;
        let root_size = (screen.width_in_pixels, screen.height_in_pixels);

        let randr = match conn.extension_information(randr::X11_EXTENSION_NAME)? {
            Some(_) => {
                let v = randr::query_version(&conn, 1, 5)?.reply()?;
                (v.major_version, v.minor_version) >= (1, 5)
            }
            None => false,
        };
        let xfixes = match conn.extension_information(xfixes::X11_EXTENSION_NAME)? {
            Some(_) => {
                let v = xfixes::query_version(&conn, 5, 0)?.reply()?;
                v.major_version >= 2
            }
            None => false,
        };
        let shm_allowed = options.shm
            && match conn.extension_information(shm::X11_EXTENSION_NAME)? {
                Some(_) => {
                    let v = shm::query_version(&conn)?.reply()?;
                    // Passing a file descriptor (AttachFd) arrived in 1.2.
                    (v.major_version, v.minor_version) >= (1, 2)
                }
                None => false,
            };
        if options.shm && !shm_allowed {
            tracing::warn!(
                x11_display = display_name,
                "the X server lacks MIT-SHM 1.2; capturing with plain GetImage (slower)"
            );
        }
        let has_damage = options.damage
            && xfixes
            && conn
                .extension_information(damage::X11_EXTENSION_NAME)?
                .is_some();
        let damage = if has_damage {
            damage::query_version(&conn, 1, 1)?.reply()?;
            let region = conn.generate_id()?;
            xfixes::create_region(&conn, region, &[])?;
            let d = conn.generate_id()?;
            damage::create(&conn, d, root, damage::ReportLevel::NON_EMPTY)?.check()?;
            Some(DamageTracker { damage: d, region })
        } else {
            if options.damage {
                tracing::warn!(
                    x11_display = display_name,
                    "the X server lacks XDamage; every capture is treated as changed"
                );
            }
            None
        };
        tracing::debug!(
            x11_display = display_name,
            randr,
            xfixes,
            shm = shm_allowed,
            damage = damage.is_some(),
            "X11 capture opened"
        );
        Ok(Self {
            conn,
            display: display.to_owned(),
            root,
            root_size,
            randr,
            xfixes,
            shm_allowed,
            shm: None,
            damage,
            monitors: Vec::new(),
            dirty: Vec::new(),
            holds: None,
            rects: Vec::new(),
            last_damage: None,
            picture: Vec::new(),
            image: Vec::new(),
            cursor_serial: None,
        })
    }

    /// The display this capturer is connected to.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// How the next capture will copy pixels.
    pub fn method(&self) -> CaptureMethod {
        if self.shm_allowed {
            CaptureMethod::Shm
        } else {
            CaptureMethod::GetImage
        }
    }

    /// Whether changes are tracked with XDamage (otherwise every capture
    /// reports a change).
    pub fn tracks_damage(&self) -> bool {
        self.damage.is_some()
    }

    fn list_monitors(&mut self) -> Result<Vec<Monitor>, CaptureError> {
        let geometry = self.conn.get_geometry(self.root)?.reply()?;
        self.root_size = (geometry.width, geometry.height);
        let mut monitors = Vec::new();
        if self.randr {
            let reply = randr::get_monitors(&self.conn, self.root, true)?.reply()?;
            for info in reply.monitors {
                let Some(rect) = clip_to_root(
                    i32::from(info.x),
                    i32::from(info.y),
                    u32::from(info.width),
                    u32::from(info.height),
                    self.root_size,
                ) else {
                    continue;
                };
                let name = match self.conn.get_atom_name(info.name)?.reply() {
                    Ok(n) => String::from_utf8_lossy(&n.name).into_owned(),
                    Err(_) => format!("monitor-{}", monitors.len()),
                };
                let Ok(index) = u8::try_from(monitors.len()) else {
                    break;
                };
                monitors.push(Monitor {
                    index,
                    name,
                    x: rect.0,
                    y: rect.1,
                    width: rect.2,
                    height: rect.3,
                    primary: info.primary,
                });
            }
        }
        if monitors.is_empty() {
            monitors.push(Monitor {
                index: 0,
                name: "screen".to_owned(),
                x: 0,
                y: 0,
                width: u32::from(self.root_size.0),
                height: u32::from(self.root_size.1),
                primary: true,
            });
        }
        if monitors != self.monitors {
            self.dirty = vec![true; monitors.len()];
            self.rects = vec![Vec::new(); monitors.len()];
            self.holds = None;
            self.monitors = monitors.clone();
        }
        Ok(monitors)
    }

    /// Moves the accumulated damage into the per-monitor dirty flags.
    fn collect_damage(&mut self) -> Result<(), CaptureError> {
        let Some(tracker) = &self.damage else {
            self.dirty.iter_mut().for_each(|d| *d = true);
            return Ok(());
        };
        // Subtracting with no repair region moves the whole damage into
        // `region` and clears it: drawing after this point stays pending for
        // the next capture, so nothing is ever missed.
        damage::subtract(&self.conn, tracker.damage, x11rb::NONE, tracker.region)?;
        let reply = xfixes::fetch_region(&self.conn, tracker.region)?.reply()?;
        // DamageNotify events only say "something happened"; the region
        // above is the truth. Drain them so they do not pile up.
        while let Some(event) = self.conn.poll_for_event()? {
            if let x11rb::protocol::Event::Error(e) = event {
                tracing::debug!(error = ?e, "X11 error event during capture");
            }
        }
        self.rects.resize(self.monitors.len(), Vec::new());
        for ((monitor, dirty), rects) in self
            .monitors
            .iter()
            .zip(self.dirty.iter_mut())
            .zip(self.rects.iter_mut())
        {
            let was_dirty = *dirty;
            for r in &reply.rectangles {
                if !intersects(r, monitor) {
                    continue;
                }
                if !was_dirty || !rects.is_empty() {
                    if let Some(local) = local_rect(r, monitor) {
                        rects.push(local);
                    }
                }
                *dirty = true;
            }
            if rects.len() > MAX_RECTS {
                // Too many to be worth it: grab the whole monitor.
                rects.clear();
            }
        }
        Ok(())
    }

    /// Makes sure a shared segment of at least `len` bytes is attached.
    /// Returns false (and disables MIT-SHM) when the server refuses it.
    fn ensure_shm(&mut self, len: usize) -> Result<bool, CaptureError> {
        if !self.shm_allowed {
            return Ok(false);
        }
        if self.shm.as_ref().is_some_and(|s| s.memory.len() >= len) {
            return Ok(true);
        }
        if let Some(old) = self.shm.take() {
            shm::detach(&self.conn, old.seg)?;
        }
        // Size for the whole root window so switching monitors never
        // reallocates.
        let root_len =
            usize::from(self.root_size.0) * usize::from(self.root_size.1) * BYTES_PER_PIXEL;
        let size = len.max(root_len);
        let (memory, fd) = match SharedMemory::new(size) {
            Ok(m) => m,
            Err(e) => {
                self.disable_shm(&format!("could not create a memfd: {e}"));
                return Ok(false);
            }
        };
        let seg = self.conn.generate_id()?;
        let attached = shm::attach_fd(&self.conn, seg, fd, false).map(|c| c.check());
        match attached {
            Ok(Ok(())) => {
                self.shm = Some(ShmSegment { memory, seg });
                Ok(true)
            }
            Ok(Err(e)) => {
                self.disable_shm(&format!("the X server refused the segment: {e}"));
                Ok(false)
            }
            Err(e) => {
                self.disable_shm(&format!("could not pass the segment: {e}"));
                Ok(false)
            }
        }
    }

    fn disable_shm(&mut self, why: &str) {
        tracing::warn!(
            x11_display = %self.display,
            "MIT-SHM capture unavailable ({why}); capturing with plain GetImage (slower)"
        );
        self.shm_allowed = false;
        self.holds = None;
    }

    /// Copies monitor `index`'s pixels into the buffer; returns the method used.
    fn grab(&mut self, index: u8, m: &Monitor) -> Result<CaptureMethod, CaptureError> {
        let too_large = || CaptureError::TooLarge {
            index,
            width: m.width,
            height: m.height,
        };
        let (x, y) = (
            i16::try_from(m.x).map_err(|_| too_large())?,
            i16::try_from(m.y).map_err(|_| too_large())?,
        );
        let (w, h) = (
            u16::try_from(m.width).map_err(|_| too_large())?,
            u16::try_from(m.height).map_err(|_| too_large())?,
        );
        let len = usize::from(w) * usize::from(h) * BYTES_PER_PIXEL;
        if self.ensure_shm(len)? {
            if let Some(segment) = &self.shm {
                let result = shm::get_image(
                    &self.conn,
                    self.root,
                    x,
                    y,
                    w,
                    h,
                    !0,
                    ImageFormat::Z_PIXMAP.into(),
                    segment.seg,
                    0,
                )?
                .reply();
                match result {
                    Ok(reply) if reply.size as usize >= len => return Ok(CaptureMethod::Shm),
                    Ok(_) => return Err(CaptureError::Malformed("shared-memory image too small")),
                    Err(x11rb::errors::ReplyError::X11Error(e)) => {
                        self.disable_shm(&format!("ShmGetImage failed: {e:?}"));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let reply = self
            .conn
            .get_image(ImageFormat::Z_PIXMAP, self.root, x, y, w, h, !0)?
            .reply()?;
        if reply.data.len() < len {
            return Err(CaptureError::Malformed("GetImage returned too few bytes"));
        }
        self.image = reply.data;
        Ok(CaptureMethod::GetImage)
    }
}

impl X11Capturer {
    /// Brings the held picture of monitor `m` up to date by grabbing only
    /// the bounding box of `rects` (monitor pixels) through the shared
    /// segment and copying its rows into `picture`. `how` says where the
    /// previous picture is (the segment after a whole grab: copied into
    /// `picture` first, once).
    fn grab_damaged(
        &mut self,
        m: &Monitor,
        how: Held,
        rects: &[DamageRect],
    ) -> Result<(), CaptureError> {
        let stride = m.width as usize * BYTES_PER_PIXEL;
        let len = stride * m.height as usize;
        if how == Held::Segment {
            let segment = self
                .shm
                .as_ref()
                .and_then(|s| s.memory.as_slice().get(..len))
                .ok_or(CaptureError::Malformed("shared-memory segment vanished"))?;
            self.picture.clear();
            self.picture.extend_from_slice(segment);
        }
        if self.picture.len() < len {
            return Err(CaptureError::Malformed("picture buffer too small"));
        }
        let b = bounding_box(rects);
        let segment = self
            .shm
            .as_ref()
            .ok_or(CaptureError::Malformed("shared-memory segment vanished"))?;
        // Monitors fit i16/u16 (checked by the whole grab that came first).
        let reply = shm::get_image(
            &self.conn,
            self.root,
            (m.x + b.x as i32) as i16,
            (m.y + b.y as i32) as i16,
            b.width as u16,
            b.height as u16,
            !0,
            ImageFormat::Z_PIXMAP.into(),
            segment.seg,
            0,
        )?
        .reply()?;
        let row = b.width as usize * BYTES_PER_PIXEL;
        let rows = segment
            .memory
            .as_slice()
            .get(..row * b.height as usize)
            .filter(|_| reply.size as usize >= row * b.height as usize)
            .ok_or(CaptureError::Malformed("shared-memory image too small"))?;
        for (i, src) in rows.chunks_exact(row).enumerate() {
            let at = (b.y as usize + i) * stride + b.x as usize * BYTES_PER_PIXEL;
            self.picture[at..at + row].copy_from_slice(src);
        }
        Ok(())
    }
}

impl Capturer for X11Capturer {
    fn monitors(&mut self) -> Result<Vec<Monitor>, CaptureError> {
        self.list_monitors()
    }

    fn damage(&self) -> Option<&[DamageRect]> {
        self.last_damage.as_deref()
    }

    fn capture(&mut self, monitor: u8) -> Result<Captured<'_>, CaptureError> {
        if self.monitors.is_empty() {
            self.list_monitors()?;
        }
        let m = self.monitors.get(usize::from(monitor)).cloned().ok_or(
            CaptureError::NoSuchMonitor {
                index: monitor,
                count: self.monitors.len(),
            },
        )?;
        self.collect_damage()?;
        let changed = self
            .dirty
            .get(usize::from(monitor))
            .copied()
            .unwrap_or(true);
        let rects = self
            .rects
            .get_mut(usize::from(monitor))
            .map(std::mem::take)
            .unwrap_or_default();
        let held = match self.holds {
            Some((held, how)) if held == monitor && !changed => how,
            Some((held, how))
                if held == monitor
                    && how != Held::Image
                    && !rects.is_empty()
                    && self.shm_allowed
                    && worth_partial(&rects, &m) =>
            {
                self.holds = None;
                self.grab_damaged(&m, how, &rects)?;
                self.last_damage = Some(rects);
                self.holds = Some((monitor, Held::Picture));
                Held::Picture
            }
            _ => {
                self.holds = None;
                self.last_damage = None;
                let method = self.grab(monitor, &m)?;
                let how = match method {
                    CaptureMethod::Shm => Held::Segment,
                    CaptureMethod::GetImage => Held::Image,
                };
                self.holds = Some((monitor, how));
                how
            }
        };
        if !changed {
            self.last_damage = Some(Vec::new());
        }
        if let Some(d) = self.dirty.get_mut(usize::from(monitor)) {
            *d = false;
        }
        let len = m.width as usize * m.height as usize * BYTES_PER_PIXEL;
        let data = match held {
            Held::Segment => self
                .shm
                .as_ref()
                .map(|s| s.memory.as_slice())
                .ok_or(CaptureError::Malformed("shared-memory segment vanished"))?,
            Held::Image => self.image.as_slice(),
            Held::Picture => self.picture.as_slice(),
        };
        let data = data
            .get(..len)
            .ok_or(CaptureError::Malformed("image buffer too small"))?;
        Ok(Captured {
            frame: Frame {
                width: m.width,
                height: m.height,
                stride: m.width as usize * BYTES_PER_PIXEL,
                data,
            },
            changed,
        })
    }

    fn cursor(&mut self) -> Result<Option<(i32, i32, Option<CursorShape>)>, CaptureError> {
        if !self.xfixes {
            let p = self.conn.query_pointer(self.root)?.reply()?;
            if !p.same_screen {
                return Ok(None);
            }
            return Ok(Some((i32::from(p.root_x), i32::from(p.root_y), None)));
        }
        let reply = xfixes::get_cursor_image(&self.conn)?.reply()?;
        let shape = if self.cursor_serial == Some(reply.cursor_serial) {
            None
        } else {
            let expected = usize::from(reply.width) * usize::from(reply.height);
            if reply.cursor_image.len() != expected {
                return Err(CaptureError::Malformed("cursor image size mismatch"));
            }
            self.cursor_serial = Some(reply.cursor_serial);
            Some(CursorShape {
                width: reply.width,
                height: reply.height,
                hot_x: reply.xhot,
                hot_y: reply.yhot,
                rgba: premultiplied_argb_to_rgba(&reply.cursor_image),
            })
        };
        Ok(Some((i32::from(reply.x), i32::from(reply.y), shape)))
    }
}

impl Drop for X11Capturer {
    fn drop(&mut self) {
        // Best effort: the server frees everything when the connection closes
        // anyway; this only keeps a long-lived server tidy sooner.
        let mut results = Vec::new();
        if let Some(s) = self.shm.take() {
            results.push(shm::detach(&self.conn, s.seg).map(drop));
        }
        if let Some(d) = self.damage.take() {
            results.push(damage::destroy(&self.conn, d.damage).map(drop));
            results.push(xfixes::destroy_region(&self.conn, d.region).map(drop));
        }
        results.push(self.conn.flush());
        for r in results {
            if let Err(e) = r {
                tracing::debug!(error = %e, "X11 cleanup failed");
            }
        }
    }
}

/// Checks that the root window uses 32-bit little-endian ZPixmap pixels with
/// 8-bit channels in `0x00RRGGBB`, the only format we hand out.
fn check_pixel_format(setup: &xproto::Setup, screen: &xproto::Screen) -> Result<(), CaptureError> {
    let depth = screen.root_depth;
    let bits_per_pixel = setup
        .pixmap_formats
        .iter()
        .find(|f| f.depth == depth)
        .map_or(0, |f| f.bits_per_pixel);
    let byte_order = if setup.image_byte_order == ImageOrder::LSB_FIRST {
        "LSB first"
    } else {
        "MSB first"
    };
    let visual_ok = screen
        .allowed_depths
        .iter()
        .flat_map(|d| d.visuals.iter())
        .find(|v| v.visual_id == screen.root_visual)
        .is_some_and(|v| v.red_mask == 0xff_0000 && v.green_mask == 0xff00 && v.blue_mask == 0xff);
    if (depth == 24 || depth == 32)
        && bits_per_pixel == 32
        && setup.image_byte_order == ImageOrder::LSB_FIRST
        && visual_ok
    {
        Ok(())
    } else {
        Err(CaptureError::UnsupportedFormat {
            depth,
            bits_per_pixel,
            byte_order,
        })
    }
}

/// The part of a monitor rectangle inside the root window, or `None` if empty.
fn clip_to_root(x: i32, y: i32, w: u32, h: u32, root: (u16, u16)) -> Option<(i32, i32, u32, u32)> {
    let x0 = x.max(0);
    let y0 = y.max(0);
    let x1 = (i64::from(x) + i64::from(w)).min(i64::from(root.0));
    let y1 = (i64::from(y) + i64::from(h)).min(i64::from(root.1));
    if x1 <= i64::from(x0) || y1 <= i64::from(y0) {
        return None;
    }
    let w = u32::try_from(x1 - i64::from(x0)).ok()?;
    let h = u32::try_from(y1 - i64::from(y0)).ok()?;
    Some((x0, y0, w, h))
}

/// The part of damage rectangle `r` (root pixels) on monitor `m`, in
/// monitor pixels.
fn local_rect(r: &Rectangle, m: &Monitor) -> Option<DamageRect> {
    let x0 = i64::from(r.x).max(i64::from(m.x));
    let y0 = i64::from(r.y).max(i64::from(m.y));
    let x1 = (i64::from(r.x) + i64::from(r.width)).min(i64::from(m.x) + i64::from(m.width));
    let y1 = (i64::from(r.y) + i64::from(r.height)).min(i64::from(m.y) + i64::from(m.height));
    if x1 <= x0 || y1 <= y0 {
        return None;
    }
    Some(DamageRect {
        x: u32::try_from(x0 - i64::from(m.x)).ok()?,
        y: u32::try_from(y0 - i64::from(m.y)).ok()?,
        width: u32::try_from(x1 - x0).ok()?,
        height: u32::try_from(y1 - y0).ok()?,
    })
}

/// The smallest rectangle holding every one of `rects` (not empty).
fn bounding_box(rects: &[DamageRect]) -> DamageRect {
    let x0 = rects.iter().map(|r| r.x).min().unwrap_or(0);
    let y0 = rects.iter().map(|r| r.y).min().unwrap_or(0);
    let x1 = rects.iter().map(|r| r.x + r.width).max().unwrap_or(0);
    let y1 = rects.iter().map(|r| r.y + r.height).max().unwrap_or(0);
    DamageRect {
        x: x0,
        y: y0,
        width: x1 - x0,
        height: y1 - y0,
    }
}

/// Whether grabbing only the damage's bounding box beats a whole grab: it
/// must cover at most half the monitor (the copy into the kept picture
/// costs about as much as the grab).
fn worth_partial(rects: &[DamageRect], m: &Monitor) -> bool {
    let b = bounding_box(rects);
    let area = u64::from(b.width) * u64::from(b.height);
    area > 0 && area * 2 <= u64::from(m.width) * u64::from(m.height)
}

/// Whether a damage rectangle overlaps a monitor.
fn intersects(r: &Rectangle, m: &Monitor) -> bool {
    let (rx0, ry0) = (i64::from(r.x), i64::from(r.y));
    let (rx1, ry1) = (rx0 + i64::from(r.width), ry0 + i64::from(r.height));
    let (mx0, my0) = (i64::from(m.x), i64::from(m.y));
    let (mx1, my1) = (mx0 + i64::from(m.width), my0 + i64::from(m.height));
    rx0 < mx1 && mx0 < rx1 && ry0 < my1 && my0 < ry1
}

/// Converts XFixes cursor pixels (premultiplied ARGB, one `u32` each) to
/// straight RGBA bytes.
pub(crate) fn premultiplied_argb_to_rgba(argb: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(argb.len() * 4);
    for &p in argb {
        let a = (p >> 24) & 0xff;
        let channel = |shift: u32| {
            let c = (p >> shift) & 0xff;
            match a {
                0 => 0,
                255 => c as u8,
                // Round to nearest; premultiplied input may be slightly
                // larger than alpha allows, so clamp.
                _ => ((c * 255 + a / 2) / a).min(255) as u8,
            }
        };
        out.extend_from_slice(&[channel(16), channel(8), channel(0), a as u8]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpremultiplies_cursor_pixels() {
        let input = [
            0xff_10_20_30, // opaque: unchanged
            0x00_00_00_00, // transparent
            0x80_40_20_00, // half alpha: channels doubled
            0x80_ff_00_00, // invalid premultiplied value: clamped
            0x01_01_01_01, // tiny alpha
        ];
        let want: Vec<u8> = vec![
            0x10, 0x20, 0x30, 0xff, //
            0, 0, 0, 0, //
            0x80, 0x40, 0x00, 0x80, //
            0xff, 0x00, 0x00, 0x80, //
            0xff, 0xff, 0xff, 0x01,
        ];
        assert_eq!(premultiplied_argb_to_rgba(&input), want);
    }

    #[test]
    fn clips_monitors_to_the_root_window() {
        assert_eq!(
            clip_to_root(0, 0, 100, 50, (200, 100)),
            Some((0, 0, 100, 50))
        );
        assert_eq!(
            clip_to_root(150, 80, 100, 50, (200, 100)),
            Some((150, 80, 50, 20))
        );
        assert_eq!(
            clip_to_root(-10, 0, 100, 50, (200, 100)),
            Some((0, 0, 90, 50))
        );
        assert_eq!(clip_to_root(300, 0, 100, 50, (200, 100)), None);
        assert_eq!(clip_to_root(0, 0, 0, 50, (200, 100)), None);
    }

    /// The second of two 100×100 monitors side by side.
    fn monitor_b() -> Monitor {
        Monitor {
            index: 1,
            name: "B".into(),
            x: 100,
            y: 0,
            width: 100,
            height: 100,
            primary: false,
        }
    }

    /// A damage rectangle in root pixels, as XDamage reports it.
    fn r(x: i16, y: i16, width: u16, height: u16) -> Rectangle {
        Rectangle {
            x,
            y,
            width,
            height,
        }
    }

    #[test]
    fn damage_is_cut_to_the_monitor_and_grabbed_partly_only_when_small() {
        let m = monitor_b();
        let d = |x, y, width, height| DamageRect {
            x,
            y,
            width,
            height,
        };
        assert_eq!(local_rect(&r(90, 10, 20, 5), &m), Some(d(0, 10, 10, 5)));
        assert_eq!(local_rect(&r(190, 95, 50, 50), &m), Some(d(90, 95, 10, 5)));
        assert_eq!(local_rect(&r(0, 0, 100, 100), &m), None);
        let rects = [d(10, 10, 5, 5), d(40, 20, 10, 30)];
        assert_eq!(bounding_box(&rects), d(10, 10, 40, 40));
        // 40×40 of 100×100: worth it; 80×70: not.
        assert!(worth_partial(&rects, &m));
        assert!(!worth_partial(&[d(0, 0, 80, 70)], &m));
    }

    #[test]
    fn damage_rectangles_hit_only_overlapping_monitors() {
        let m = monitor_b();
        assert!(intersects(&r(150, 50, 1, 1), &m));
        assert!(intersects(&r(90, 0, 11, 1), &m));
        assert!(!intersects(&r(90, 0, 10, 1), &m)); // ends at x=100, exclusive
        assert!(!intersects(&r(200, 0, 5, 5), &m));
        assert!(!intersects(&r(150, 100, 5, 5), &m));
    }
}
