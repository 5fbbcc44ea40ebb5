//! `deskside-bench-capture-encode`: what the session helper does per frame
//! — X11 capture (MIT-SHM, XDamage) plus encoding — on one thread, at
//! 1920×1080 on a private Xvfb, for four desktop scenarios painted by a
//! second X client: a static screen, typing in a terminal, scrolling text
//! and a moving window.
//!
//! ```text
//! cargo build --release -p deskside-tests --bins
//! target/release/deskside-bench-capture-encode [--seconds 5] [--codec tiles|h264]
//! ```
//!
//! Reported per scenario: frames captured and encoded per second with the
//! capture loop running flat out (no frame-rate cap), the measuring thread's
//! CPU time per frame (from /proc/thread-self/stat), and mean bytes per sent
//! frame. The painter and the X server run in other threads/processes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use deskside_codec::adapt::Choice;
use deskside_codec::frame::BgraFrame;
use deskside_codec::{Encoder, EncoderConfig};
use deskside_desktop::xvfb::Xvfb;
use deskside_desktop::{Capturer, X11Capturer};
use deskside_protocol::session::Codec;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    ConnectionExt as _, CreateGCAux, CreateWindowAux, EventMask, Rectangle, WindowClass,
};
use x11rb::rust_connection::RustConnection;

const W: u16 = 1920;
const H: u16 = 1080;

#[derive(Debug, Parser)]
struct Args {
    /// Seconds per scenario.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Pace the loop at this many captures per second, as the session
    /// helper does (default: flat out, to find the ceiling).
    #[arg(long)]
    fps: Option<u32>,
    /// Codec to encode with.
    #[arg(long, default_value = "tiles", value_parser = ["tiles", "h264"])]
    codec: String,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scenario {
    Static,
    Typing,
    Scrolling,
    MovingWindow,
}

/// Thread CPU time in seconds (utime + stime, clock ticks of 10 ms).
fn thread_cpu() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat: 11 and 12 after ')'.
    (ticks(11) + ticks(12)) / 100.0
}

fn paint(display: String, scenario: Scenario, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let (conn, screen_num) = RustConnection::connect(Some(&display)).context("painter connect")?;
    let screen = &conn.setup().roots[screen_num];
    let win = conn.generate_id()?;
    conn.create_window(
        screen.root_depth,
        win,
        screen.root,
        0,
        0,
        W,
        H,
        0,
        WindowClass::INPUT_OUTPUT,
        0,
        &CreateWindowAux::new()
            .background_pixel(0x202020)
            .override_redirect(1)
            .event_mask(EventMask::EXPOSURE),
    )?;
    conn.map_window(win)?;
    let gc = conn.generate_id()?;
    conn.create_gc(gc, win, &CreateGCAux::new().foreground(0xd0d0d0))?;
    let dark = conn.generate_id()?;
    conn.create_gc(dark, win, &CreateGCAux::new().foreground(0x202020))?;
    let blue = conn.generate_id()?;
    conn.create_gc(blue, win, &CreateGCAux::new().foreground(0x3060c0))?;
    // A page of text-like rows.
    let mut rows = Vec::new();
    for row in 0..(H / 16) {
        for col in 0..((row as u32 * 7 + 13) % 150) as u16 {
            if !(row as u32 * 31 + col as u32 * 17).is_multiple_of(5) {
                rows.push(Rectangle {
                    x: 8 + col as i16 * 9,
                    y: row as i16 * 16 + 3,
                    width: 7,
                    height: 10,
                });
            }
        }
    }
    conn.poly_fill_rectangle(win, gc, &rows)?;
    conn.flush()?;
    let mut tick: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        match scenario {
            Scenario::Static => {}
            Scenario::Typing => {
                // Three characters a frame on the last line, like fast typing.
                let col = (tick * 3) % 200;
                let rects: Vec<Rectangle> = (0..3)
                    .map(|i| Rectangle {
                        x: 8 + ((col + i) * 9) as i16,
                        y: (H - 20) as i16,
                        width: 7,
                        height: 10,
                    })
                    .collect();
                if col == 0 {
                    conn.poly_fill_rectangle(
                        win,
                        dark,
                        &[Rectangle {
                            x: 0,
                            y: (H - 24) as i16,
                            width: W,
                            height: 20,
                        }],
                    )?;
                }
                conn.poly_fill_rectangle(win, gc, &rects)?;
            }
            Scenario::Scrolling => {
                conn.copy_area(win, win, gc, 0, 16, 0, 0, W, H - 16)?;
                conn.poly_fill_rectangle(
                    win,
                    dark,
                    &[Rectangle {
                        x: 0,
                        y: (H - 16) as i16,
                        width: W,
                        height: 16,
                    }],
                )?;
                let line: Vec<Rectangle> = (0..((tick * 7 + 13) % 150) as i16)
                    .map(|c| Rectangle {
                        x: 8 + c * 9,
                        y: (H - 13) as i16,
                        width: 7,
                        height: 10,
                    })
                    .collect();
                conn.poly_fill_rectangle(win, gc, &line)?;
            }
            Scenario::MovingWindow => {
                let x = ((tick * 12) % (W as u32 - 600)) as i16;
                let y = 200 + ((tick * 5) % 300) as i16;
                conn.poly_fill_rectangle(
                    win,
                    dark,
                    &[Rectangle {
                        x: x - 12,
                        y: y - 5,
                        width: 624,
                        height: 410,
                    }],
                )?;
                conn.poly_fill_rectangle(
                    win,
                    blue,
                    &[Rectangle {
                        x,
                        y,
                        width: 600,
                        height: 400,
                    }],
                )?;
            }
        }
        conn.flush()?;
        tick = tick.wrapping_add(1);
        std::thread::sleep(Duration::from_millis(33));
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !Xvfb::is_installed() {
        bail!("Xvfb is needed (Debian: xvfb)");
    }
    println!(
        "capture + encode on one thread, 1920x1080, codec {}, {} s per scenario",
        args.codec, args.seconds
    );
    println!(
        "{:<14} {:>10} {:>14} {:>10} {:>12} {:>14}",
        "scenario", "captures/s", "CPU ms/capture", "sent/s", "bytes/sent", "core busy %"
    );
    for scenario in [
        Scenario::Static,
        Scenario::Typing,
        Scenario::Scrolling,
        Scenario::MovingWindow,
    ] {
        let xvfb = Xvfb::start_in(90..=99, W.into(), H.into())?;
        let stop = Arc::new(AtomicBool::new(false));
        let painter = {
            let (display, stop) = (xvfb.display().to_owned(), stop.clone());
            std::thread::spawn(move || paint(display, scenario, stop))
        };
        std::thread::sleep(Duration::from_millis(500));
        let mut capturer = X11Capturer::open(xvfb.display())?;
        let mut encoder = Encoder::new(EncoderConfig::default())?;
        if args.codec == "h264" {
            encoder.apply(&Choice {
                codec: Codec::H264,
                h264_bitrate_bps: 2_000_000,
                max_fps: 30,
                lossless_soon: false,
            });
        }
        let started = Instant::now();
        let cpu0 = thread_cpu();
        let (mut frames, mut sent, mut bytes) = (0u64, 0u64, 0u64);
        while started.elapsed() < Duration::from_secs(args.seconds) {
            let captured = capturer.capture(0)?;
            // As the helper does: a frame XDamage calls unchanged is not
            // even compared, unless the encoder still has work for it.
            if captured.changed || encoder.wants_unchanged_frame() {
                let frame = captured.frame;
                let bgra = BgraFrame::new(frame.data, frame.width, frame.height, frame.stride)?;
                if let Some(encoded) =
                    encoder.encode(&bgra, started.elapsed().as_micros() as u64)?
                {
                    sent += 1;
                    bytes += encoded.payload.len() as u64;
                }
            }
            frames += 1;
            if let Some(fps) = args.fps {
                let next = Duration::from_secs_f64(frames as f64 / f64::from(fps.max(1)));
                if let Some(wait) = next.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        let cpu = thread_cpu() - cpu0;
        let secs = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        painter
            .join()
            .map_err(|_| anyhow::anyhow!("painter panicked"))??;
        println!(
            "{:<14} {:>10.0} {:>14.3} {:>10.1} {:>12.0} {:>14.1}",
            format!("{scenario:?}"),
            frames as f64 / secs,
            cpu * 1000.0 / frames.max(1) as f64,
            sent as f64 / secs,
            bytes as f64 / sent.max(1) as f64,
            cpu * 100.0 / secs
        );
        println!(
            "{}",
            serde_json::json!({"type": "capture_encode_bench", "scenario": format!("{scenario:?}"), "codec": args.codec,
                "frames_per_s": frames as f64 / secs, "cpu_ms_per_frame": cpu * 1000.0 / frames.max(1) as f64,
                "sent_per_s": sent as f64 / secs, "bytes_per_sent": bytes as f64 / sent.max(1) as f64,
                "core_busy_percent": cpu * 100.0 / secs, "paced_fps": args.fps})
        );
    }
    Ok(())
}
