//! `deskside-bench-windows-session`: a remote session on the Windows agent
//! under Wine, measured: frame rate, glass-to-glass latency and the CPU of
//! the session helper, the agent service and the prefix's wineserver.
//!
//! On one Xvfb: `deskside-agent.exe run` and `deskside-agent.exe
//! session-helper` under Wine (`src/wine.rs`), and the native test X client
//! drawing its frame-counter barcode at `--fps` with a timestamp per
//! redraw (`deskside-xclient --counter --counter-log`): Wine's screen
//! capture sees every window of the display, so the latency is measured as
//! in `deskside-bench-latency` (drawn → read back from a decoded frame by
//! the headless console, both on this machine's clock). The relay and the
//! console run natively. The Windows capture has no change signal (no
//! XDamage there): the pacer looks at the screen at its rate limit.
//!
//! CPU = (utime + stime) of `/proc/PID/stat` of the Wine process running
//! `deskside-agent.exe session-helper` (every thread), of the one running
//! `… run`, and of the prefix's `wineserver`, over `--seconds`, as % of one
//! core.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-win cargo build --release --target x86_64-pc-windows-gnu -p deskside-agent
//! cargo build --release --workspace --bins --features deskside-tests/wine
//! DESKSIDE_WINDOWS_BIN_DIR=/work/target-win/x86_64-pc-windows-gnu/release \
//! DESKSIDE_WINEPREFIX=/tmp/wine-mine target/release/deskside-bench-windows-session
//! ```

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use deskside_desktop::xvfb::Xvfb;
use deskside_tests::bench::{cpu_ticks, CLOCK_TICKS_PER_SEC};
use deskside_tests::latency::{counter_delays, counter_drawn, percentile};
use deskside_tests::wine::Wine;
use deskside_tests::x11::{self, Lines};
use deskside_tests::{bin, secret_scan, wait_for, World};
use serde_json::json;

/// Where the counter's window is on the agent's screen.
const COUNTER_X: u32 = 400;
const COUNTER_Y: u32 = 300;

#[derive(Debug, Parser)]
struct Args {
    /// How long to measure.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Counter redraws per second.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Agent screen width.
    #[arg(long, default_value_t = 1280)]
    width: u32,
    /// Agent screen height.
    #[arg(long, default_value_t = 800)]
    height: u32,
}

/// Wine starts programs slowly on a loaded machine.
const SLOW: Duration = Duration::from_secs(120);

/// Whether process `pid` runs in Wine prefix `prefix` (its environment says
/// so: `scripts/wine-run` sets `WINEPREFIX`).
fn in_prefix(pid: u32, prefix: &std::path::Path) -> bool {
    let wanted = format!("WINEPREFIX={}", prefix.display());
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .any(|var| var == wanted.as_bytes())
}

/// Every process id in /proc.
fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The Wine process of `prefix` running `deskside-agent.exe` (its first
/// argument, not a wrapper's) whose command line ends with `ending`. Wine
/// processes started by another are not its children (Wine re-parents
/// them), so /proc is searched.
fn agent_process(prefix: &std::path::Path, ending: &str) -> Option<u32> {
    pids().into_iter().find(|&pid| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        args.first()
            .is_some_and(|first| first.ends_with("deskside-agent.exe"))
            && args.last().is_some_and(|last| last == ending)
            && in_prefix(pid, prefix)
    })
}

/// The wineserver of `prefix` (it daemonizes, so it is nobody's child).
fn wineserver(prefix: &std::path::Path) -> Option<u32> {
    pids().into_iter().find(|&pid| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.starts_with("wineserver"))
            && in_prefix(pid, prefix)
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let Some(wine) = Wine::find("deskside-bench-windows-session") else {
        bail!("Wine and deskside-agent.exe are needed (see the message above)");
    };
    if !x11::prerequisites() {
        bail!("Xvfb, xdotool and ImageMagick are needed");
    }
    let xvfb = Xvfb::start_in(120..=129, args.width, args.height).context("the agent's Xvfb")?;
    let display = xvfb.display().to_owned();
    let mut world = World::new();
    let (relay, admin) = world.relay_and_admin();
    let token = admin.enroll_token(1, "10m");
    secret_scan::remember_token(&token);
    let agent = wine.agent("winlaptop");
    let on_display = |extra: &[&str]| {
        let mut command = wine.command(wine.agent_exe());
        command
            .env("DISPLAY", &display)
            .env("LANG", "en_US.UTF-8")
            .env("RUST_LOG", "info")
            .arg("--state-dir")
            .arg(agent.state_dir_windows())
            .args(extra);
        command
    };
    let out = on_display(&["enroll", &token])
        .output()
        .context("enroll under Wine")?;
    if !out.status.success() {
        bail!("enroll failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    secret_scan::remember_key_file(&agent.key_path());
    let status = on_display(&["status", "--json"])
        .output()
        .context("status under Wine")?;
    let status: serde_json::Value =
        serde_json::from_slice(&status.stdout).context("status --json is not JSON")?;
    let device = status["device_id"]
        .as_str()
        .context("no device id after enroll")?
        .to_owned();
    let agent_proc = world.spawn_wine("winlaptop", on_display(&["run"]));
    admin.wait_status(&device, "online", SLOW);

    let mut xclient = Command::new(bin("deskside-xclient"));
    xclient
        .args([
            "--geometry",
            &format!(
                "{}x{}+{COUNTER_X}+{COUNTER_Y}",
                args.width - COUNTER_X,
                args.height - COUNTER_Y
            ),
            "--counter",
            "--counter-fps",
            &args.fps.to_string(),
            "--counter-log",
        ])
        .env("DISPLAY", &display);
    let (_xclient, stdout) = world.spawn("xclient", xclient);
    let xevents = Lines::new(stdout);
    let ready = xevents.until(Duration::from_secs(20), |v| v["type"] == "ready");
    if !ready.iter().any(|v| v["type"] == "ready") {
        bail!("the X client did not start");
    }

    let helper = world.spawn_wine("helper", on_display(&["session-helper"]));
    wait_for("the helper to connect to the service", SLOW, || {
        agent_proc
            .log()
            .contains("session helper connected")
            .then_some(())
    });

    let duration = format!("{}s", args.seconds + 10);
    let origin = format!("{COUNTER_X},{COUNTER_Y}");
    let mut command = Command::new(bin("deskside"));
    command
        .arg("--profile")
        .arg(&admin.profile)
        .args([
            "--json",
            "session",
            &device,
            "--reason",
            "benchmark",
            "--headless",
            "--view-only",
            "--probe-counter",
            &origin,
            "--duration",
            &duration,
        ])
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null());
    let (mut session, stdout) = world.spawn("console-session", command);
    let out = Lines::new(stdout);
    out.until(SLOW, |v| v["state"] == "waiting_for_consent");
    x11::answer_consent(&display, true, SLOW, Duration::from_secs(5), || {
        helper.log()
    });
    let first = out.until(SLOW, |v| v["type"] == "frame_counter");
    if !first.iter().any(|v| v["type"] == "frame_counter") {
        bail!(
            "no counter read from the Windows agent's frames: {first:?}\nhelper:\n{}",
            helper.log()
        );
    }
    // Settle (the first keyframe, the indicator), then measure.
    out.until(Duration::from_secs(3), |_| false);
    xevents.drain();
    let prefix = wine.prefix();
    let parts = [
        (
            "session helper (Wine)",
            agent_process(prefix, "session-helper"),
        ),
        (
            "session indicator (Wine)",
            agent_process(prefix, "session-indicator"),
        ),
        ("agent service (Wine)", agent_process(prefix, "run")),
        ("wineserver", wineserver(prefix)),
        ("relay", Some(relay.proc.pid())),
        ("console (headless)", Some(session.pid())),
    ];
    let before: Vec<Option<u64>> = parts
        .iter()
        .map(|(_, pid)| pid.and_then(|p| cpu_ticks(p).ok()))
        .collect();
    let started = Instant::now();
    let lines = out.until(Duration::from_secs(args.seconds), |_| false);
    let wall = started.elapsed().as_secs_f64();
    let after: Vec<Option<u64>> = parts
        .iter()
        .map(|(_, pid)| pid.and_then(|p| cpu_ticks(p).ok()))
        .collect();
    let drawn = counter_drawn(&xevents.drain());
    let mut latencies = counter_delays(&lines, &drawn);
    latencies.sort_by(f64::total_cmp);
    if latencies.len() < 10 {
        bail!(
            "only {} counter values seen of {} drawn\nhelper:\n{}",
            latencies.len(),
            drawn.len(),
            helper.log()
        );
    }
    let readings = lines
        .iter()
        .filter(|v| v["type"] == "frame_counter")
        .count();
    let backend = helper
        .log()
        .lines()
        .find(|l| l.contains("screen capture:"))
        .map(str::to_owned)
        .unwrap_or_default();
    println!("capture: {backend}");
    println!(
        "{}x{} counter at {} fps for {:.1} s under Wine: {} values seen of {} drawn ({:.1}/s with a new counter)",
        args.width,
        args.height,
        args.fps,
        wall,
        latencies.len(),
        drawn.len(),
        readings as f64 / wall
    );
    println!(
        "glass-to-glass latency: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );
    let mut cpu = serde_json::Map::new();
    for (((name, pid), b), a) in parts.iter().zip(&before).zip(&after) {
        match (b, a) {
            (Some(b), Some(a)) => {
                let percent = a.saturating_sub(*b) as f64 / CLOCK_TICKS_PER_SEC / wall * 100.0;
                println!("  {name:<24} {percent:>6.1} % of one core (pid {pid:?})");
                cpu.insert((*name).to_owned(), json!(percent));
            }
            _ => println!("  {name:<24} not found"),
        }
    }
    session.wait_exit(Duration::from_secs(30));
    let end = out.drain();
    let summary = end.iter().find(|v| v["type"] == "session_end");
    let frames_per_s = summary.and_then(|v| Some(v["frames"].as_f64()? / v["seconds"].as_f64()?));
    if let Some(fps) = frames_per_s {
        println!("frames over the whole session: {fps:.1}/s");
    }
    println!(
        "{}",
        json!({
            "type": "windows_session_bench", "width": args.width, "height": args.height,
            "fps": args.fps, "seen": latencies.len(), "drawn": drawn.len(),
            "new_counter_per_s": readings as f64 / wall,
            "session_frames_per_s": frames_per_s,
            "p50_ms": percentile(&latencies, 0.5), "p90_ms": percentile(&latencies, 0.9),
            "p99_ms": percentile(&latencies, 0.99),
            "cpu_percent_of_one_core": cpu,
        })
    );
    Ok(())
}
