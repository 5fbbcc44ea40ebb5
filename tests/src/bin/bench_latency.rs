//! `deskside-bench-latency`: glass-to-glass latency of a remote session
//! through the relay on loopback, with the real binaries.
//!
//! The test X client draws a frame counter (a 32-square barcode) on the
//! agent's Xvfb display at a fixed rate and logs when each value was drawn;
//! a headless console decodes the session's frames, reads the barcode back
//! and logs when each value first appeared. Latency = appeared − drawn, per
//! value, both on this machine's clock. The consent dialog is clicked with
//! xdotool as in the tests.
//!
//! With `--input`, the session asks for control, the X client also paints
//! `--busy` random rectangles per redraw (the video load), and the console
//! moves the pointer every 50 ms to a fresh spot in the X client's window:
//! input latency = when the X client got the MotionNotify − when the
//! console sent the move, per move.
//!
//! With `--before`, the same measurement runs twice in one run, on two
//! fresh stages: first with the capture paced by a timer only
//! (`DESKSIDE_NO_XDAMAGE=1` for the session helper: no change signal, the
//! pacer looks at the screen at its rate limit and compares it whole, as
//! on a backend without change signals), then as shipped (woken by XDamage,
//! grabbing the damaged rectangles). The fixed-30-fps loop the issue
//! measured is gone from the agent; this is the nearest "before" it still
//! runs.
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/deskside-bench-latency [--seconds 20] [--fps 30] [--width 1920 --height 1080]
//! target/release/deskside-bench-latency --input [--busy 60]
//! target/release/deskside-bench-latency --before [--input]
//! ```

use serde_json::Value;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Parser;
use deskside_tests::latency::{counter_delays, counter_drawn, input_latencies, percentile};
use deskside_tests::stage::{SessionStage, StageOptions};
use deskside_tests::x11::prerequisites;

/// Where the counter's window starts on the agent's screen.
const COUNTER_X: u32 = 480;
const COUNTER_Y: u32 = 400;

#[derive(Debug, Parser)]
struct Args {
    /// How long to measure.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Counter redraws per second.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Agent screen width.
    #[arg(long, default_value_t = 1920)]
    width: u32,
    /// Agent screen height.
    #[arg(long, default_value_t = 1080)]
    height: u32,
    /// Also measure input latency, under video load.
    #[arg(long)]
    input: bool,
    /// Random rectangles painted per redraw with --input.
    #[arg(long, default_value_t = 60)]
    busy: u32,
    /// Measure twice: timer pacing without the change signal, then as
    /// shipped (see the file's documentation).
    #[arg(long)]
    before: bool,
}

/// Where the pointer moves go (screen pixels; the X client's window
/// starts at COUNTER_X, COUNTER_Y).
const PROBE_X: u32 = COUNTER_X + 700;
const PROBE_Y: u32 = COUNTER_Y + 300;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !prerequisites() {
        bail!("Xvfb, xdotool and ImageMagick are needed");
    }
    let options = StageOptions {
        relay_program: "deskside-relay".into(),
        relay_args: Vec::new(),
        agent_screen: (args.width, args.height),
        console_screen: (640, 480),
        displays: 80..=89,
        // The counter window sits below and right of the employee's session
        // indicator (always on top at the top-left corner).
        xclient_args: vec![
            "--geometry".into(),
            format!(
                "{}x{}+{COUNTER_X}+{COUNTER_Y}",
                args.width - COUNTER_X,
                args.height - COUNTER_Y
            ),
            "--counter".into(),
            "--counter-fps".into(),
            args.fps.to_string(),
            "--counter-log".into(),
            "--busy".into(),
            if args.input { args.busy } else { 0 }.to_string(),
        ],
        agent_monitors: 1,
    };
    let mut results = Vec::new();
    if args.before {
        println!("before: capture paced by a timer (DESKSIDE_NO_XDAMAGE=1)");
        std::env::set_var("DESKSIDE_NO_XDAMAGE", "1");
        let stage = SessionStage::start(&options);
        // The helper has its environment: the next stage's must not.
        std::env::remove_var("DESKSIDE_NO_XDAMAGE");
        results.push(("timer", measure(&args, stage, "timer")?));
        println!("after: capture woken by XDamage (as shipped)");
    }
    // Without --before the environment decides, as it always did.
    let pacing = if std::env::var_os("DESKSIDE_NO_XDAMAGE").is_some() {
        "timer"
    } else {
        "damage"
    };
    let stage = SessionStage::start(&options);
    results.push((pacing, measure(&args, stage, pacing)?));
    if args.before {
        for (pacing, result) in &results {
            println!(
                "{pacing:>6}: glass-to-glass p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms; input p50 {}",
                result["p50_ms"].as_f64().unwrap_or(f64::NAN),
                result["p90_ms"].as_f64().unwrap_or(f64::NAN),
                result["p99_ms"].as_f64().unwrap_or(f64::NAN),
                result["input_p50_ms"]
                    .as_f64()
                    .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.2} ms")),
            );
        }
    }
    Ok(())
}

/// One session on `stage`: prints its latencies and returns its JSON line.
fn measure(args: &Args, mut stage: SessionStage, pacing: &str) -> anyhow::Result<Value> {
    let duration = format!("{}s", args.seconds + 2);
    let origin = format!("{COUNTER_X},{COUNTER_Y}");
    let probe_at = format!("{PROBE_X},{PROBE_Y}");
    let mut session_args = vec![
        "--headless",
        "--probe-counter",
        &origin,
        "--duration",
        &duration,
    ];
    if args.input {
        session_args.extend(["--probe-input", "50", "--probe-input-at", &probe_at]);
    } else {
        session_args.push("--view-only");
    }
    let (mut session, out) = stage.session(&session_args);
    out.until(Duration::from_secs(30), |v| {
        v["state"] == "waiting_for_consent"
    });
    stage.answer_consent(true);
    let lines = out.until(Duration::from_secs(args.seconds + 60), |v| {
        v["type"] == "session_end"
    });
    let status = session.wait_exit(Duration::from_secs(10));
    let xevents = stage.xevents.drain();
    let drawn = counter_drawn(&xevents);
    let mut latencies = counter_delays(&lines, &drawn);
    let end = lines
        .iter()
        .find(|v| v["type"] == "session_end")
        .with_context(|| {
            format!(
                "the session did not end properly (console exit {status:?}): {lines:?}\nconsole log:\n{}\nhelper log:\n{}",
                session.log(),
                stage.helper.log()
            )
        })?;
    if latencies.len() < 10 {
        let helper = format!(
            "{}\n--- agent ---\n{}",
            stage.helper.log(),
            stage.agent_proc.log()
        );
        let tail: Vec<&str> = helper.lines().rev().take(40).collect();
        bail!(
            "only {} counter values seen in the console ({} drawn): {end}\nhelper log, newest first:\n{}",
            latencies.len(),
            drawn.len(),
            tail.join("\n")
        );
    }
    latencies.sort_by(f64::total_cmp);
    let mut input = Vec::new();
    if args.input {
        let sent: Vec<Value> = lines
            .iter()
            .filter(|v| v["type"] == "input_sent")
            .cloned()
            .collect();
        let received: Vec<Value> = xevents
            .iter()
            .filter(|v| v["type"] == "motion")
            .cloned()
            .collect();
        input = input_latencies(&sent, &received);
        input.sort_by(f64::total_cmp);
        if input.is_empty() {
            bail!(
                "none of {} pointer moves reached the X client ({} motion events)",
                sent.len(),
                received.len()
            );
        }
        println!(
            "input latency under video load: {} of {} moves arrived; p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            input.len(),
            sent.len(),
            percentile(&input, 0.5),
            percentile(&input, 0.9),
            percentile(&input, 0.99),
            input[input.len() - 1]
        );
    }
    let frames = end["frames"].as_u64().unwrap_or(0);
    let seconds = end["seconds"].as_f64().unwrap_or(1.0);
    let bytes = end["bytes"].as_u64().unwrap_or(0);
    println!(
        "{}x{} counter at {} fps for {} s: {} values seen of {} drawn; frames {:.1}/s, {:.0} kbit/s",
        args.width,
        args.height,
        args.fps,
        args.seconds,
        latencies.len(),
        drawn.len(),
        frames as f64 / seconds,
        bytes as f64 * 8.0 / seconds / 1000.0
    );
    println!(
        "glass-to-glass latency: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );
    let line = serde_json::json!({
            "type": "latency_bench", "pacing": pacing, "width": args.width, "height": args.height, "fps": args.fps,
            "seen": latencies.len(), "drawn": drawn.len(),
            "p50_ms": percentile(&latencies, 0.5), "p90_ms": percentile(&latencies, 0.9),
            "p99_ms": percentile(&latencies, 0.99),
            "frames_per_s": frames as f64 / seconds, "kbit_per_s": bytes as f64 * 8.0 / seconds / 1000.0,
            "input_moves": input.len(),
            "input_p50_ms": (!input.is_empty()).then(|| percentile(&input, 0.5)),
            "input_p90_ms": (!input.is_empty()).then(|| percentile(&input, 0.9)),
            "input_p99_ms": (!input.is_empty()).then(|| percentile(&input, 0.99)),
    });
    println!("{line}");
    Ok(line)
}
