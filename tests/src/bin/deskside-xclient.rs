//! `deskside-xclient`: a small X11 test client for end-to-end remote-view and
//! remote-control tests. It draws a known picture and reports the input it
//! receives as JSON lines on stdout.
//!
//! ```text
//! DISPLAY=:40 deskside-xclient --geometry 640x400+0+0 --text CANARY-42 --counter
//! {"type":"ready","window":2097153,"x":0,"y":0,"width":640,"height":400}
//! {"type":"button","button":1,"x":10,"y":20,"root_x":10,"root_y":20}
//! {"type":"key","keycode":43,"keysym":104,"text":"h"}
//! ```
//!
//! # The picture
//!
//! With `--pattern quadrants` (the default) the window is split into four
//! solid quadrants: top-left red `#ff0000`, top-right green `#00ff00`,
//! bottom-left blue `#0000ff`, bottom-right white `#ffffff`. `--pattern black`
//! fills it black instead. `--text CANARY` writes the string in black with the
//! server's core `fixed` font (or the first font it has) on a white band at
//! window (16, 40), about 8x13 pixels per character; it is skipped, with a note
//! on stderr, when the server has no core fonts.
//!
//! # The frame counter barcode (`--counter`)
//!
//! A counter, starting at 0, goes up by one every `1 / --counter-fps` seconds
//! and is drawn as a barcode so a screenshot tells which frame it shows:
//! **32 squares of 16x16 pixels in one row at the window's top-left corner**
//! (window pixels x = 0..512, y = 0..16). Square `i` (x = 16*i .. 16*i+15)
//! holds bit `i` of the counter, **least significant bit first**: white
//! (`#ffffff`) is 1, black (`#000000`) is 0. Read the centre pixel of each
//! square (x = 16*i + 8, y = 8) and treat any channel above 127 as 1. The
//! window must be at least 512 pixels wide for all 32 bits to show. With
//! `--counter-log` each redraw also prints
//! `{"type":"counter","value":N,"unix_us":T}` (wall-clock microseconds when
//! the redraw was flushed to the server).
//!
//! # Input reports
//!
//! - `{"type":"ready","window":ID,...}` once, when the window is mapped and
//!   drawn.
//! - `{"type":"button","button":B,"x":..,"y":..,"root_x":..,"root_y":..}` on
//!   each button press (4 and 5 are scroll up and down).
//! - `{"type":"motion","x":..,"y":..,"root_x":..,"root_y":..}` on pointer
//!   motion.
//! - `{"type":"key","keycode":K,"keysym":S,"text":"a"}` on each key press;
//!   `text` is the character of the keysym under the current keyboard mapping
//!   (Shift taken into account), or `""` for keys that type nothing.
//!
//! With `--echo` each typed character is also drawn in the window (black on
//! white, from window y = 52 down, wrapping at the window's edge and back to
//! the top when the window is full), as a text editor would: the screen
//! change of typing, for the session CPU benchmark.
//!
//! # A scrolling page (`--scroll-page FRAMES`)
//!
//! The window shows a page of text-like noise (rows of 16 px, grey glyph
//! dots drawn with `PutImage`, a repeatable pattern). The first wheel-down
//! press (button 5) scrolls it by 6 pixels a frame for FRAMES frames at 30
//! fps, as a reader flicking through a long document; then the picture
//! stays still and `{"type":"scroll_stopped","frames":N,"unix_us":T}` is
//! printed once the last frame is on the server (input that comes during
//! the scroll is not reported). Every pixel changes at
//! every step, which lossless tiles pay for dearly: the content the codec
//! choice must move to H.264. Needs a 24-bit screen (Xvfb's default).
//!
//! The window is override-redirect by default (no window manager moves it);
//! it takes the keyboard focus once mapped. `--managed` lets a window manager
//! handle it instead. The client exits 0 when the X connection closes or
//! stdout is closed.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::{Parser, ValueEnum};
use serde_json::{json, Value};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    AtomEnum, ConnectionExt as _, CreateGCAux, CreateWindowAux, EventMask, Gcontext, ImageFormat,
    InputFocus, KeyButMask, PropMode, Rectangle, Window, WindowClass,
};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

/// Side of one barcode square, in pixels.
const SQUARE: u16 = 16;
/// Number of bits (squares) in the barcode.
const BITS: u16 = 32;

/// Draws a known picture on $DISPLAY and prints the input it receives.
#[derive(Debug, Parser)]
#[command(name = "deskside-xclient", version)]
struct Args {
    /// Window title.
    #[arg(long, default_value = "deskside-xclient")]
    title: String,
    /// Window geometry WxH+X+Y (default: the whole screen).
    #[arg(long)]
    geometry: Option<String>,
    /// What to fill the window with.
    #[arg(long, value_enum, default_value_t = Pattern::Quadrants)]
    pattern: Pattern,
    /// A canary string drawn in the window.
    #[arg(long)]
    text: Option<String>,
    /// Draw the frame-counter barcode (see the file's documentation).
    #[arg(long)]
    counter: bool,
    /// Counter redraws per second.
    #[arg(long, default_value_t = 30.0)]
    counter_fps: f64,
    /// Print a JSON line per counter redraw.
    #[arg(long)]
    counter_log: bool,
    /// With --counter: also paint this many random rectangles below the
    /// barcode at every redraw (video load for the latency benchmark).
    #[arg(long, default_value_t = 0)]
    busy: u32,
    /// Let a window manager manage the window (default: override-redirect).
    #[arg(long)]
    managed: bool,
    /// Draw each typed character in the window (see the file's
    /// documentation).
    #[arg(long)]
    echo: bool,
    /// Show a page that the first wheel-down press scrolls for this many
    /// frames (see the file's documentation).
    #[arg(long, value_name = "FRAMES")]
    scroll_page: Option<u32>,
}

/// Pixels the page moves per frame with --scroll-page.
const SCROLL_STEP: u32 = 6;
/// Frames per second of the scroll.
const SCROLL_FPS: f64 = 30.0;

/// The --scroll-page picture: BGRX rows of the whole page, taller than the
/// window by the scroll's length.
struct Page {
    width: u32,
    rows: u32,
    /// The screen's depth (24).
    depth: u8,
    bgrx: Vec<u8>,
}

impl Page {
    fn new(width: u32, rows: u32, depth: u8) -> Self {
        let mut bgrx = Vec::with_capacity(width as usize * rows as usize * 4);
        let mut noise = 0x2545_f491_4f6c_dd1du64;
        for y in 0..rows {
            for x in 0..width {
                noise ^= noise << 13;
                noise ^= noise >> 7;
                noise ^= noise << 17;
                // A glyph body: rows 3..13 of each 16 px line, cells of 8
                // px with a 2 px gap; about 40 % of its dots inked.
                let in_glyph =
                    (3..13).contains(&(y % 16)) && x % 8 < 6 && (x / 48 + y / 16) % 9 != 0;
                let v = if in_glyph && noise % 5 < 2 {
                    (noise >> 32) as u8 & 0x7f
                } else {
                    0xf4
                };
                bgrx.extend_from_slice(&[v, v, v, 0]);
            }
        }
        Self {
            width,
            rows,
            depth,
            bgrx,
        }
    }
}

/// The window's fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Pattern {
    /// Red, green, blue, white quadrants.
    Quadrants,
    /// Solid black.
    Black,
}

/// A window geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    width: u16,
    height: u16,
    x: i16,
    y: i16,
}

/// Parses `WxH+X+Y` (offsets may be negative: `WxH-10+0`).
fn parse_geometry(s: &str) -> anyhow::Result<Geometry> {
    let bad = || format!("invalid geometry {s:?}; expected WxH+X+Y, e.g. 640x400+0+0");
    let (w, rest) = s.split_once('x').with_context(bad)?;
    let split = rest.find(['+', '-']).with_context(bad)?;
    let (h, offsets) = rest.split_at(split);
    let second = offsets[1..].find(['+', '-']).with_context(bad)? + 1;
    let (xs, ys) = offsets.split_at(second);
    let num = |v: &str| -> anyhow::Result<i16> {
        let v = v.strip_prefix('+').unwrap_or(v);
        v.parse().with_context(bad)
    };
    let g = Geometry {
        width: w.parse().with_context(bad)?,
        height: h.parse().with_context(bad)?,
        x: num(xs)?,
        y: num(ys)?,
    };
    if g.width == 0 || g.height == 0 {
        bail!("{}: width and height must be positive", bad());
    }
    Ok(g)
}

/// Everything needed to draw.
struct Client {
    conn: RustConnection,
    window: Window,
    geometry: Geometry,
    args: Args,
    /// Keyboard mapping: (first keycode, keysyms per keycode, keysyms).
    keymap: (u8, usize, Vec<u32>),
    font_gc: Option<Gcontext>,
    counter: u32,
    /// xorshift state for --busy.
    noise: u64,
    /// Characters drawn by --echo so far.
    typed: usize,
    /// The --scroll-page picture, its offset and the frames still to go
    /// (`None` before the wheel started it).
    page: Option<Page>,
    scroll_offset: u32,
    scroll_left: Option<u32>,
}

impl Client {
    fn fill(&self, x: i16, y: i16, width: u16, height: u16, rgb: u32) -> anyhow::Result<()> {
        let gc = self.conn.generate_id()?;
        self.conn
            .create_gc(gc, self.window, &CreateGCAux::new().foreground(rgb))?;
        self.conn.poly_fill_rectangle(
            self.window,
            gc,
            &[Rectangle {
                x,
                y,
                width,
                height,
            }],
        )?;
        self.conn.free_gc(gc)?;
        Ok(())
    }

    /// Draws `text` after the characters typed before (`--echo`).
    fn echo(&mut self, text: &str) -> anyhow::Result<()> {
        let Some(gc) = self.font_gc else {
            return Ok(());
        };
        let per_row = usize::from(self.geometry.width.saturating_sub(32) / 8).max(1);
        let rows = usize::from(self.geometry.height.saturating_sub(64) / 16).max(1);
        for byte in text.bytes() {
            let column = self.typed % per_row;
            let row = (self.typed / per_row) % rows;
            let top = i16::try_from(52 + 16 * row).unwrap_or(i16::MAX);
            if column == 0 {
                self.fill(8, top, self.geometry.width.saturating_sub(16), 16, 0xffffff)?;
            }
            let x = i16::try_from(16 + 8 * column).unwrap_or(i16::MAX);
            self.conn
                .image_text8(self.window, gc, x, top.saturating_add(12), &[byte])?;
            self.typed += 1;
        }
        self.conn.flush()?;
        Ok(())
    }

    /// Draws the whole picture.
    fn draw(&self) -> anyhow::Result<()> {
        let (w, h) = (self.geometry.width, self.geometry.height);
        match self.args.pattern {
            Pattern::Quadrants => {
                let (hw, hh) = (w / 2, h / 2);
                self.fill(0, 0, hw, hh, 0xff0000)?;
                self.fill(hw as i16, 0, w - hw, hh, 0x00ff00)?;
                self.fill(0, hh as i16, hw, h - hh, 0x0000ff)?;
                self.fill(hw as i16, hh as i16, w - hw, h - hh, 0xffffff)?;
            }
            Pattern::Black => self.fill(0, 0, w, h, 0)?,
        }
        if let (Some(text), Some(gc)) = (&self.args.text, self.font_gc) {
            let bytes: Vec<u8> = text.bytes().take(255).collect();
            let band = u16::try_from(bytes.len() * 8 + 16).unwrap_or(u16::MAX);
            self.fill(8, 24, band, 24, 0xffffff)?;
            self.conn.image_text8(self.window, gc, 16, 40, &bytes)?;
        }
        if self.args.counter {
            self.draw_counter()?;
        }
        self.draw_page()?;
        Ok(())
    }

    /// Draws the --scroll-page picture at its offset, in strips that fit
    /// any X request size.
    fn draw_page(&self) -> anyhow::Result<()> {
        let Some(page) = &self.page else {
            return Ok(());
        };
        let depth = page.depth;
        let gc = self.conn.generate_id()?;
        self.conn.create_gc(gc, self.window, &CreateGCAux::new())?;
        let (w, h) = (
            u32::from(self.geometry.width),
            u32::from(self.geometry.height),
        );
        let row_bytes = page.width as usize * 4;
        let strip = 32u32;
        let mut top = 0;
        while top < h {
            let rows = strip.min(h - top);
            let first = (self.scroll_offset + top).min(page.rows - rows) as usize;
            let data = &page.bgrx[first * row_bytes..(first + rows as usize) * row_bytes];
            self.conn.put_image(
                ImageFormat::Z_PIXMAP,
                self.window,
                gc,
                w as u16,
                rows as u16,
                0,
                top as i16,
                0,
                depth,
                data,
            )?;
            top += rows;
        }
        self.conn.free_gc(gc)?;
        Ok(())
    }

    /// One scroll step; `Ok(true)` when the scroll has just ended.
    fn scroll_step(&mut self) -> anyhow::Result<bool> {
        let Some(left) = self.scroll_left.filter(|&n| n > 0) else {
            return Ok(false);
        };
        self.scroll_offset += SCROLL_STEP;
        self.scroll_left = Some(left - 1);
        self.draw_page()?;
        if left == 1 {
            // Round trip: the last step is on the server before we say so.
            self.conn.get_input_focus()?.reply()?;
            return Ok(true);
        }
        self.conn.flush()?;
        Ok(false)
    }

    /// Draws the counter barcode (see the file's documentation).
    fn draw_counter(&self) -> anyhow::Result<()> {
        for bit in 0..BITS {
            let on = (self.counter >> bit) & 1 == 1;
            let x = i16::try_from(bit * SQUARE).unwrap_or(i16::MAX);
            self.fill(x, 0, SQUARE, SQUARE, if on { 0xffffff } else { 0 })?;
        }
        Ok(())
    }

    fn next_noise(&mut self) -> u64 {
        // xorshift64: a repeatable stream, no dependency.
        let mut x = self.noise;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.noise = x;
        x
    }

    /// Paints `--busy` random rectangles below the barcode.
    fn draw_busy(&mut self) -> anyhow::Result<()> {
        let top = SQUARE + 8;
        let (w, h) = (self.geometry.width, self.geometry.height);
        if h <= top + 16 || w <= 16 {
            return Ok(());
        }
        for _ in 0..self.args.busy {
            let r = self.next_noise();
            let rw = 16 + (r % 240) as u16;
            let rh = 16 + ((r >> 8) % 160) as u16;
            let x = ((r >> 16) % u64::from(w - 16)) as i16;
            let y = (top + ((r >> 32) % u64::from(h - top - 16)) as u16) as i16;
            let rgb = (r >> 40) as u32 & 0xffffff;
            self.fill(x, y, rw, rh, rgb)?;
        }
        Ok(())
    }

    fn load_keymap(&mut self) -> anyhow::Result<()> {
        let setup = self.conn.setup();
        let (min, max) = (setup.min_keycode, setup.max_keycode);
        let reply = self
            .conn
            .get_keyboard_mapping(min, max - min + 1)?
            .reply()?;
        self.keymap = (min, usize::from(reply.keysyms_per_keycode), reply.keysyms);
        Ok(())
    }

    /// The keysym a key press produces (Shift selects the second column).
    fn keysym(&self, keycode: u8, state: KeyButMask) -> u32 {
        let (min, per, syms) = &self.keymap;
        if keycode < *min || *per == 0 {
            return 0;
        }
        let base = usize::from(keycode - min) * per;
        let lower = syms.get(base).copied().unwrap_or(0);
        let upper = syms.get(base + 1).copied().unwrap_or(0);
        if state.contains(KeyButMask::SHIFT) && upper != 0 {
            upper
        } else {
            lower
        }
    }
}

/// The character a keysym types, when it is a printable one.
fn keysym_char(sym: u32) -> Option<char> {
    match sym {
        0x20..=0x7e | 0xa0..=0xff => char::from_u32(sym),
        0x0100_0000..=0x0110_ffff => char::from_u32(sym - 0x0100_0000),
        _ => None,
    }
}

/// Waits until the X connection's socket has data to read or `timeout`
/// passed (rounded up to whole milliseconds, poll(2)'s unit).
#[allow(unsafe_code)] // one poll(2) call, see SAFETY below
fn wait_readable(conn: &RustConnection, timeout: Duration) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd as _;
    let mut fd = libc::pollfd {
        fd: conn.stream().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_micros().div_ceil(1000).min(1000) as libc::c_int;
    // SAFETY: `fd` is one valid pollfd that lives across the call, and the
    // count passed is 1.
    let n = unsafe { libc::poll(&mut fd, 1, ms) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).context("poll on the X connection");
        }
    }
    Ok(())
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Prints one JSON line; `Ok(false)` when stdout is closed.
fn emit(v: Value) -> bool {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{v}").and_then(|()| out.flush()).is_ok()
}

fn run(args: Args) -> anyhow::Result<()> {
    let (conn, screen_num) = x11rb::connect(None)
        .context("could not connect to $DISPLAY; set DISPLAY to a running X server")?;
    let screen = conn
        .setup()
        .roots
        .get(screen_num)
        .context("the X server has no such screen")?
        .clone();
    let geometry = match &args.geometry {
        Some(g) => parse_geometry(g)?,
        None => Geometry {
            width: screen.width_in_pixels,
            height: screen.height_in_pixels,
            x: 0,
            y: 0,
        },
    };
    if args.counter && geometry.width < BITS * SQUARE {
        eprintln!(
            "deskside-xclient: window narrower than {} px, the counter barcode is cut",
            BITS * SQUARE
        );
    }
    let window = conn.generate_id()?;
    conn.create_window(
        x11rb::COPY_DEPTH_FROM_PARENT,
        window,
        screen.root,
        geometry.x,
        geometry.y,
        geometry.width,
        geometry.height,
        0,
        WindowClass::INPUT_OUTPUT,
        0,
        &CreateWindowAux::new()
            .background_pixel(screen.black_pixel)
            .override_redirect(u32::from(!args.managed))
            .event_mask(
                EventMask::EXPOSURE
                    | EventMask::BUTTON_PRESS
                    | EventMask::KEY_PRESS
                    | EventMask::POINTER_MOTION
                    | EventMask::STRUCTURE_NOTIFY,
            ),
    )?;
    conn.change_property8(
        PropMode::REPLACE,
        window,
        AtomEnum::WM_NAME,
        AtomEnum::STRING,
        args.title.as_bytes(),
    )?;
    let net_wm_name = conn.intern_atom(false, b"_NET_WM_NAME")?.reply()?.atom;
    let utf8 = conn.intern_atom(false, b"UTF8_STRING")?.reply()?.atom;
    conn.change_property8(
        PropMode::REPLACE,
        window,
        net_wm_name,
        utf8,
        args.title.as_bytes(),
    )?;

    // The canary font: `fixed` is built into Xvfb and every Xorg.
    let font_gc = if args.text.is_some() || args.echo {
        let font = conn.generate_id()?;
        match conn.open_font(font, b"fixed")?.check() {
            Ok(()) => {
                let gc = conn.generate_id()?;
                conn.create_gc(
                    gc,
                    window,
                    &CreateGCAux::new()
                        .foreground(0)
                        .background(0xffffff)
                        .font(font),
                )?;
                Some(gc)
            }
            Err(e) => {
                eprintln!("deskside-xclient: no core font \"fixed\" ({e:?}); --text is not drawn");
                None
            }
        }
    } else {
        None
    };
    conn.map_window(window)?;
    conn.flush()?;

    let mut client = Client {
        conn,
        window,
        geometry,
        args,
        keymap: (0, 0, Vec::new()),
        font_gc,
        counter: 0,
        noise: 0x9e37_79b9_7f4a_7c15,
        typed: 0,
        page: None,
        scroll_offset: 0,
        scroll_left: None,
    };
    if let Some(frames) = client.args.scroll_page {
        let depth = client.conn.setup().roots[screen_num].root_depth;
        let bpp = client
            .conn
            .setup()
            .pixmap_formats
            .iter()
            .find(|f| f.depth == depth)
            .map(|f| f.bits_per_pixel);
        if depth != 24 || bpp != Some(32) {
            bail!("--scroll-page needs a 24-bit screen with 32 bits per pixel (depth {depth}, {bpp:?} bits); start Xvfb with -screen 0 WxHx24");
        }
        let (w, h) = (u32::from(geometry.width), u32::from(geometry.height));
        client.page = Some(Page::new(w, h + frames * SCROLL_STEP, depth));
    }
    client.load_keymap()?;

    let period = Duration::from_secs_f64(1.0 / client.args.counter_fps.clamp(0.1, 1000.0));
    let mut next_tick = Instant::now() + period;
    let mut ready = false;
    let scroll_period = Duration::from_secs_f64(1.0 / SCROLL_FPS);
    let mut next_scroll = Instant::now();
    loop {
        if client.scroll_left.is_some_and(|n| n > 0) {
            let now = Instant::now();
            if now < next_scroll {
                if client.conn.poll_for_event()?.is_none() {
                    wait_readable(&client.conn, next_scroll - now)?;
                }
                continue;
            }
            next_scroll = (next_scroll + scroll_period).max(now);
            if client.scroll_step()? {
                let frames = client.args.scroll_page.unwrap_or(0);
                if !emit(json!({"type":"scroll_stopped","frames":frames,"unix_us":unix_us()})) {
                    return Ok(());
                }
            }
            continue;
        }
        let event = if client.args.counter && ready {
            match client.conn.poll_for_event()? {
                Some(e) => Some(e),
                None => {
                    let now = Instant::now();
                    if now >= next_tick {
                        client.counter = client.counter.wrapping_add(1);
                        client.draw_counter()?;
                        client.draw_busy()?;
                        client.conn.flush()?;
                        if client.args.counter_log
                            && !emit(
                                json!({"type":"counter","value":client.counter,"unix_us":unix_us()}),
                            )
                        {
                            return Ok(());
                        }
                        next_tick += period;
                        if next_tick < now {
                            next_tick = now + period;
                        }
                    } else {
                        // Sleep in poll(2) on the X socket, not in a fixed
                        // step: an event wakes us at once, so a MotionNotify
                        // is read (and timestamped) when it arrives, not up
                        // to 2 ms later as with the old polling sleep.
                        wait_readable(&client.conn, next_tick - now)?;
                    }
                    None
                }
            }
        } else {
            Some(client.conn.wait_for_event()?)
        };
        let Some(event) = event else { continue };
        let line = match event {
            Event::Expose(e) => {
                if e.count == 0 {
                    client.draw()?;
                    client.conn.flush()?;
                    if !ready {
                        ready = true;
                        client.conn.set_input_focus(
                            InputFocus::POINTER_ROOT,
                            client.window,
                            x11rb::CURRENT_TIME,
                        )?;
                        // Round-trip so the picture is on screen before
                        // anyone reads "ready".
                        client.conn.get_input_focus()?.reply()?;
                        next_tick = Instant::now() + period;
                        let g = client.geometry;
                        Some(json!({"type":"ready","window":client.window,
                            "x":g.x,"y":g.y,"width":g.width,"height":g.height}))
                    } else {
                        None
                    }
                } else {
                    None
                }
            }
            Event::ButtonPress(e) => {
                if e.detail == 5 && client.page.is_some() && client.scroll_left.is_none() {
                    client.scroll_left = client.args.scroll_page;
                    next_scroll = Instant::now();
                }
                Some(json!({"type":"button","button":e.detail,
                "x":e.event_x,"y":e.event_y,"root_x":e.root_x,"root_y":e.root_y}))
            }
            Event::MotionNotify(e) => Some(json!({"type":"motion",
                "x":e.event_x,"y":e.event_y,"root_x":e.root_x,"root_y":e.root_y,
                "unix_us":unix_us()})),
            Event::KeyPress(e) => {
                let sym = client.keysym(e.detail, e.state);
                let text = keysym_char(sym).map(String::from).unwrap_or_default();
                if client.args.echo {
                    client.echo(&text)?;
                }
                Some(json!({"type":"key","keycode":e.detail,"keysym":sym,"text":text}))
            }
            Event::MappingNotify(_) => {
                client.load_keymap()?;
                None
            }
            _ => None,
        };
        if let Some(line) = line {
            if !emit(line) {
                return Ok(());
            }
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The X server going away is how tests normally end us.
            if e.downcast_ref::<x11rb::errors::ConnectionError>().is_some() {
                return ExitCode::SUCCESS;
            }
            eprintln!("deskside-xclient: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_geometries() {
        let g = |width, height, x, y| Geometry {
            width,
            height,
            x,
            y,
        };
        assert_eq!(parse_geometry("640x400+0+0").unwrap(), g(640, 400, 0, 0));
        assert_eq!(parse_geometry("10x20+30+40").unwrap(), g(10, 20, 30, 40));
        assert_eq!(parse_geometry("10x20-5+7").unwrap(), g(10, 20, -5, 7));
        assert_eq!(parse_geometry("10x20+5-7").unwrap(), g(10, 20, 5, -7));
        for bad in ["", "640x400", "640+0+0", "0x10+0+0", "ax10+0+0", "10x10+0"] {
            assert!(parse_geometry(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keysyms_to_text() {
        assert_eq!(keysym_char(0x68), Some('h'));
        assert_eq!(keysym_char(0xe9), Some('é'));
        assert_eq!(keysym_char(0x0100_20ac), Some('€'));
        assert_eq!(keysym_char(0xff0d), None); // Return
    }
}
