//! The X11 benchmark itself (Unix only); see the binary's documentation.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deskside_desktop::xvfb::Xvfb;
use deskside_desktop::{Capturer, X11Capturer, X11Options};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    ConnectionExt as _, CreateGCAux, CreateWindowAux, Rectangle, WindowClass,
};

/// Clock ticks per second of /proc times (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

struct Options {
    seconds: f64,
    width: u32,
    height: u32,
    display: Option<String>,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        seconds: 3.0,
        width: 1920,
        height: 1080,
        display: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--seconds" => o.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--width" => o.width = value()?.parse().map_err(|e| format!("--width: {e}"))?,
            "--height" => o.height = value()?.parse().map_err(|e| format!("--height: {e}"))?,
            "--display" => o.display = Some(value()?),
            "-h" | "--help" => return Err(
                "usage: deskside-bench-capture [--seconds S] [--width W --height H] [--display :N]"
                    .into(),
            ),
            other => return Err(format!("unknown argument {other:?}; see --help")),
        }
    }
    Ok(o)
}

/// utime + stime of a /proc stat file, in seconds.
fn cpu_seconds(stat_path: &str) -> Option<f64> {
    let s = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, i.e. the 12th and 13th after ")".
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SEC)
}

/// Repaints the whole screen with changing colours until `stop`.
fn painter(
    display: String,
    width: u16,
    height: u16,
    stop: Arc<AtomicBool>,
    painted: Arc<AtomicU64>,
) {
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let (conn, n) = x11rb::connect(Some(&display))?;
        let root = conn.setup().roots[n].root;
        let window = conn.generate_id()?;
        conn.create_window(
            x11rb::COPY_DEPTH_FROM_PARENT,
            window,
            root,
            0,
            0,
            width,
            height,
            0,
            WindowClass::INPUT_OUTPUT,
            0,
            &CreateWindowAux::new()
                .override_redirect(1)
                .background_pixel(0),
        )?;
        conn.map_window(window)?;
        let gc = conn.generate_id()?;
        conn.create_gc(gc, window, &CreateGCAux::new())?;
        let mut colour: u32 = 0;
        while !stop.load(Ordering::Relaxed) {
            colour = colour.wrapping_add(0x010305) & 0xffffff;
            conn.change_gc(
                gc,
                &x11rb::protocol::xproto::ChangeGCAux::new().foreground(colour),
            )?;
            conn.poly_fill_rectangle(
                window,
                gc,
                &[Rectangle {
                    x: 0,
                    y: 0,
                    width,
                    height,
                }],
            )?;
            // Round-trip so we never queue more than one repaint.
            conn.get_input_focus()?.reply()?;
            painted.fetch_add(1, Ordering::Relaxed);
        }
        conn.destroy_window(window)?;
        conn.flush()?;
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("painter failed: {e}");
    }
}

fn scenario(
    name: &str,
    display: &str,
    server_pid: Option<u32>,
    options: X11Options,
    changing: bool,
    o: &Options,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut cap = X11Capturer::open_with(display, options)?;
    let monitor = cap.monitors()?.into_iter().next().ok_or("no monitor")?;
    let stop = Arc::new(AtomicBool::new(false));
    let painted = Arc::new(AtomicU64::new(0));
    let painter_thread = changing.then(|| {
        let (d, s, p) = (display.to_owned(), stop.clone(), painted.clone());
        let (w, h) = (o.width as u16, o.height as u16);
        std::thread::spawn(move || painter(d, w, h, s, p))
    });
    // Warm up: the first capture allocates and attaches the segment.
    cap.capture(0)?;
    if changing {
        let deadline = Instant::now() + Duration::from_secs(5);
        while painted.load(Ordering::Relaxed) < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let server_stat = server_pid.map(|p| format!("/proc/{p}/stat"));
    let server_cpu0 = server_stat.as_deref().and_then(cpu_seconds);
    let cpu0 = cpu_seconds("/proc/thread-self/stat");
    let painted0 = painted.load(Ordering::Relaxed);
    let start = Instant::now();
    let run_for = Duration::from_secs_f64(o.seconds);
    let (mut captures, mut changed) = (0u64, 0u64);
    let mut checksum = 0u64;
    let mut changed_wall = Duration::ZERO;
    while start.elapsed() < run_for {
        let t = Instant::now();
        let c = cap.capture(0)?;
        captures += 1;
        if c.changed {
            changed += 1;
            changed_wall += t.elapsed();
        }
        // Touch the frame like an encoder would read it.
        checksum = checksum.wrapping_add(u64::from(c.frame.data[c.frame.data.len() / 2]));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds("/proc/thread-self/stat")
        .zip(cpu0)
        .map(|(a, b)| a - b);
    let server_cpu = server_stat
        .as_deref()
        .and_then(cpu_seconds)
        .zip(server_cpu0)
        .map(|(a, b)| a - b);
    let painted = painted.load(Ordering::Relaxed) - painted0;
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = painter_thread {
        let _ = t.join();
    }
    let per = |s: Option<f64>, n: u64| {
        s.filter(|_| n > 0)
            .map(|s| format!("{:.3}", s * 1000.0 / n as f64))
            .unwrap_or_else(|| "null".into())
    };
    let changed_ms = if changed > 0 {
        format!(
            "{:.3}",
            changed_wall.as_secs_f64() * 1000.0 / changed as f64
        )
    } else {
        "null".into()
    };
    // "per_capture": every call; "per_changed": calls that returned a changed
    // picture, the ones an encoder has to look at.
    let fields = [
        format!("\"type\":\"scenario\",\"name\":\"{name}\""),
        format!(
            "\"method\":\"{:?}\",\"damage\":{}",
            cap.method(),
            cap.tracks_damage()
        ),
        format!("\"width\":{},\"height\":{}", monitor.width, monitor.height),
        format!("\"seconds\":{elapsed:.2},\"captures\":{captures},\"changed\":{changed}"),
        format!("\"captures_per_s\":{:.1}", captures as f64 / elapsed),
        format!("\"changed_per_s\":{:.1}", changed as f64 / elapsed),
        format!("\"wall_ms_per_changed\":{changed_ms},\"repaints\":{painted}"),
        format!("\"client_cpu_ms_per_capture\":{}", per(cpu, captures)),
        format!(
            "\"server_cpu_ms_per_capture\":{}",
            per(server_cpu, captures)
        ),
        format!("\"client_cpu_ms_per_changed\":{}", per(cpu, changed)),
        format!("\"server_cpu_ms_per_changed\":{}", per(server_cpu, changed)),
        format!("\"checksum\":{checksum}"),
    ];
    println!("{{{}}}", fields.join(","));
    Ok(())
}

pub(crate) fn main() -> std::process::ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let (xvfb, display, server_pid) = match &o.display {
        Some(d) => (None, d.clone(), None),
        None => match Xvfb::start(o.width, o.height) {
            Ok(x) => {
                let (d, p) = (x.display().to_owned(), x.pid());
                (Some(x), d, Some(p))
            }
            Err(e) => {
                eprintln!("deskside-bench-capture: {e}");
                return std::process::ExitCode::FAILURE;
            }
        },
    };
    let shm = X11Options::default();
    let plain = X11Options {
        shm: false,
        damage: false,
    };
    let runs = [
        ("shm-static", shm, false),
        ("shm-changing", shm, true),
        ("getimage-static", plain, false),
        ("getimage-changing", plain, true),
    ];
    let mut failed = false;
    for (name, options, changing) in runs {
        if let Err(e) = scenario(name, &display, server_pid, options, changing, &o) {
            eprintln!("deskside-bench-capture: {name} failed: {e}");
            failed = true;
        }
    }
    drop(xvfb);
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
