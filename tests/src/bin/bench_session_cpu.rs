//! `deskside-bench-session-cpu`: the whole-process CPU of a remote session's
//! parts, with the real binaries on Xvfb: the session helper (every thread:
//! capture, encode, input, channel), its child processes (the employee's
//! session indicator), the agent service, the relay and the headless
//! console, over `--seconds` on a still screen, then over `--seconds` while
//! someone types on the employee's desktop (`xdotool type --delay 100`
//! into the test X client, which draws each character: `--echo`; the keys
//! it received during the phase are counted and printed, about 15 a second
//! here).
//!
//! CPU = (utime + stime) of `/proc/PID/stat`, which counts every thread of
//! the process, before and after each phase, over the phase's wall time,
//! as % of one core. The helper logs at `info` (`DESKSIDE_HELPER_LOG`), the
//! agent service and the relay at the e2e harness's `debug`.
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/deskside-bench-session-cpu [--seconds 10] [--width 1920 --height 1080]
//! ```

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use deskside_tests::bench::{cpu_ticks, CLOCK_TICKS_PER_SEC};
use deskside_tests::stage::{SessionStage, StageOptions};
use deskside_tests::x11::prerequisites;
use deskside_tests::{descendants, wait_for};
use serde_json::{json, Value};

#[derive(Debug, Parser)]
struct Args {
    /// How long each phase (still screen, typing) is measured.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Agent screen width.
    #[arg(long, default_value_t = 1920)]
    width: u32,
    /// Agent screen height.
    #[arg(long, default_value_t = 1080)]
    height: u32,
    /// xdotool's delay between keystrokes in the typing phase (ms).
    #[arg(long, default_value_t = 100)]
    key_delay_ms: u64,
}

/// The processes measured, by name.
struct Parts {
    named: Vec<(&'static str, u32)>,
    /// Whose children are measured as one more part.
    helper: u32,
}

/// CPU ticks of each part (the helper's children summed; a child that
/// appeared or went during a phase counts from when it is seen).
fn ticks(parts: &Parts) -> anyhow::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for (name, pid) in &parts.named {
        out.push((
            (*name).to_owned(),
            cpu_ticks(*pid).with_context(|| format!("the {name} (pid {pid}) is gone"))?,
        ));
    }
    let children: u64 = descendants(parts.helper)
        .into_iter()
        .filter_map(|pid| cpu_ticks(pid).ok())
        .sum();
    out.push(("helper's children (indicator)".to_owned(), children));
    Ok(out)
}

/// Measures `parts` over `seconds`, collecting the console's lines meanwhile.
fn phase(
    name: &str,
    parts: &Parts,
    seconds: u64,
    out: &deskside_tests::x11::Lines,
) -> anyhow::Result<Value> {
    let before = ticks(parts)?;
    let started = Instant::now();
    let lines = out.until(Duration::from_secs(seconds), |_| false);
    let after = ticks(parts)?;
    let wall = started.elapsed().as_secs_f64();
    let frames: Vec<&Value> = lines.iter().filter(|v| v["type"] == "frame").collect();
    let bytes: u64 = frames.iter().filter_map(|v| v["bytes"].as_u64()).sum();
    let mut cpu = serde_json::Map::new();
    println!(
        "{name}: {:.1} s, {} frames ({:.1}/s), {:.0} kbit/s",
        wall,
        frames.len(),
        frames.len() as f64 / wall,
        bytes as f64 * 8.0 / wall / 1000.0
    );
    for ((part, b), (_, a)) in before.iter().zip(&after) {
        let percent = a.saturating_sub(*b) as f64 / CLOCK_TICKS_PER_SEC / wall * 100.0;
        println!("  {part:<32} {percent:>6.1} % of one core");
        cpu.insert(part.clone(), json!(percent));
    }
    Ok(json!({
        "phase": name, "seconds": wall, "frames": frames.len(),
        "frames_per_s": frames.len() as f64 / wall,
        "kbit_per_s": bytes as f64 * 8.0 / wall / 1000.0,
        "cpu_percent_of_one_core": cpu,
    }))
}

/// xdotool typing on `display` with `delay_ms` between keystrokes, for
/// longer than `seconds`; killed by the caller.
fn start_typing(display: &str, delay_ms: u64, seconds: u64) -> anyhow::Result<Child> {
    // Twice the keys the delay suggests: xdotool types faster than it says.
    let count = usize::try_from((seconds + 5) * 2000 / delay_ms.max(1)).unwrap_or(1000);
    let text: String = "the quick brown fox jumps over the lazy dog "
        .chars()
        .cycle()
        .take(count)
        .collect();
    let delay = delay_ms.to_string();
    Command::new("xdotool")
        .args(["type", "--delay", &delay, &text])
        .env("DISPLAY", display)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start xdotool")
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !prerequisites() {
        bail!("Xvfb, xdotool and ImageMagick are needed");
    }
    if std::env::var_os("DESKSIDE_HELPER_LOG").is_none() {
        std::env::set_var("DESKSIDE_HELPER_LOG", "info");
    }
    let options = StageOptions {
        relay_program: "deskside-relay".into(),
        relay_args: Vec::new(),
        agent_screen: (args.width, args.height),
        console_screen: (640, 480),
        displays: 90..=99,
        xclient_args: vec![
            "--geometry".into(),
            format!("{}x{}+0+0", args.width, args.height),
            "--text".into(),
            "deskside session CPU benchmark".into(),
            "--echo".into(),
        ],
        agent_monitors: 1,
    };
    let mut stage = SessionStage::start(&options);
    let duration = format!("{}s", 2 * args.seconds + 30);
    let (mut session, out) = stage.session(&[
        "--headless",
        "--view-only",
        "--frame-log",
        "--duration",
        &duration,
    ]);
    out.until(Duration::from_secs(30), |v| {
        v["state"] == "waiting_for_consent"
    });
    stage.answer_consent(true);
    let first = out.until(Duration::from_secs(30), |v| v["type"] == "frame");
    if !first.iter().any(|v| v["type"] == "frame") {
        bail!(
            "no frame reached the console: {first:?}\n{}",
            stage.helper.log()
        );
    }
    // The first keyframe and the indicator's appearance settle first.
    out.until(Duration::from_secs(3), |_| false);
    let parts = Parts {
        named: vec![
            ("session helper", stage.helper.pid()),
            ("agent service", stage.agent_proc.pid()),
            ("relay", stage.relay.proc.pid()),
            ("console (headless)", session.pid()),
        ],
        helper: stage.helper.pid(),
    };
    let still = phase("still screen", &parts, args.seconds, &out)?;
    stage.xevents.drain();
    let mut typist = start_typing(stage.agent_x.display(), args.key_delay_ms, args.seconds)?;
    // Measure from the first key the X client saw.
    wait_for("the first typed key", Duration::from_secs(10), || {
        stage
            .xevents
            .drain()
            .iter()
            .any(|v| v["type"] == "key")
            .then_some(())
    });
    let typing = phase("typing", &parts, args.seconds, &out);
    // The keys of the measured phase only.
    let keys = stage
        .xevents
        .drain()
        .iter()
        .filter(|v| v["type"] == "key")
        .count();
    let _ = typist.kill();
    let _ = typist.wait();
    let typing = typing?;
    println!(
        "  keys the X client received while measured: {keys} ({:.1}/s)",
        keys as f64 / args.seconds as f64
    );
    println!(
        "{}",
        json!({
            "type": "session_cpu_bench", "width": args.width, "height": args.height,
            "phases": [still, typing], "keys": keys,
        })
    );
    let _ = session.wait_exit(Duration::from_secs(1));
    Ok(())
}
