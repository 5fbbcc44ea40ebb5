//! How a session feels (issue 15), end to end with the real binaries on two
//! Xvfb displays: the capture wakes on a change instead of a fixed timer.
//!
//! Needs Xvfb, xdotool and ImageMagick's `import`: with `CI=true` a missing
//! one fails the test; elsewhere the test is skipped with a message.

use std::time::Duration;

use deskside_tests::latency::{counter_delays, counter_drawn};
use deskside_tests::stage::{SessionStage, StageOptions};
use deskside_tests::x11::prerequisites;
use serde_json::Value;

const DISPLAYS: std::ops::RangeInclusive<u16> = 130..=139;
const AGENT_SCREEN: (u32, u32) = (1024, 768);
/// Where the X client's counter window starts (below and right of the
/// employee's session indicator, which stays on top at the top-left).
const COUNTER_AT: (u32, u32) = (400, 300);

/// Each test runs two X servers and four processes: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn begin() -> Option<std::sync::MutexGuard<'static, ()>> {
    prerequisites().then(|| SERIAL.lock().unwrap_or_else(|p| p.into_inner()))
}

fn options(xclient_args: &[&str]) -> StageOptions {
    let (w, h) = AGENT_SCREEN;
    let (x, y) = COUNTER_AT;
    let mut args = vec![
        "--geometry".to_owned(),
        format!("{}x{}+{x}+{y}", w - x, h - y),
    ];
    args.extend(xclient_args.iter().map(|a| (*a).to_owned()));
    StageOptions {
        relay_program: "deskside-relay".into(),
        relay_args: Vec::new(),
        agent_screen: AGENT_SCREEN,
        console_screen: (640, 480),
        displays: DISPLAYS,
        xclient_args: args,
        agent_monitors: 1,
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The old capture loop looked at the screen on a fixed 30 fps phase, so a
/// change waited a uniform 0–33 ms for the next tick before any work: its
/// median delay was about 17 ms plus the work. Waking on XDamage leaves
/// only the work. The counter changes 8 times a second, far apart, so each
/// change meets an idle loop.
#[test]
fn a_change_on_a_still_screen_is_captured_at_once_not_at_the_next_timer_tick() {
    let Some(_serial) = begin() else {
        eprintln!("skipped: Xvfb, xdotool or ImageMagick missing");
        return;
    };
    let mut stage = SessionStage::start(&options(&[
        "--counter",
        "--counter-fps",
        "8",
        "--counter-log",
    ]));
    let origin = format!("{},{}", COUNTER_AT.0, COUNTER_AT.1);
    let (mut session, out) = stage.session(&[
        "--headless",
        "--view-only",
        "--probe-counter",
        &origin,
        "--duration",
        "10s",
    ]);
    out.until(Duration::from_secs(60), |v| {
        v["state"] == "waiting_for_consent"
    });
    stage.answer_consent(true);
    let lines = out.until(Duration::from_secs(90), |v| v["type"] == "session_end");
    session.wait_exit(Duration::from_secs(10));
    let drawn = counter_drawn(&stage.xevents.drain());
    let mut delays = counter_delays(&lines, &drawn);
    assert!(
        delays.len() >= 30,
        "only {} counter values reached the console ({} drawn)\nconsole: {}\nhelper: {}",
        delays.len(),
        drawn.len(),
        session.log(),
        stage.helper.log()
    );
    let median = median(&mut delays);
    eprintln!(
        "{} changes seen; delay from drawing to the console: median {median:.1} ms, all {:?}",
        delays.len(),
        delays.iter().map(|d| d.round() as i64).collect::<Vec<_>>()
    );
    assert!(
        median < MEDIAN_LIMIT_MS,
        "median delay {median:.1} ms: the capture waited for a timer tick (limit {MEDIAN_LIMIT_MS} ms)"
    );
}

/// Below what a 30 fps timer phase costs on average (16.7 ms) even with no
/// work at all, above what a debug build does on a loaded 2-core machine.
const MEDIAN_LIMIT_MS: f64 = 12.0;

/// Moving only the pointer over a still screen used to force a full
/// keyframe per move (this test measured 1,501 kbit/s of video against the
/// agent before the change, commit 2f0fce2).
/// Now the pointer travels in its own small messages and no frame is
/// encoded for it: the video bytes while the pointer moves 20 times a
/// second stay under 50 kbit/s, and the console hears of the moves.
#[test]
fn moving_only_the_pointer_over_a_still_screen_costs_no_video() {
    let Some(_serial) = begin() else {
        eprintln!("skipped: Xvfb, xdotool or ImageMagick missing");
        return;
    };
    let mut stage = SessionStage::start(&options(&["--text", "still screen"]));
    let (mut session, out) = stage.session(&[
        "--headless",
        "--view-only",
        "--frame-log",
        "--duration",
        "14s",
    ]);
    out.until(Duration::from_secs(60), |v| {
        v["state"] == "waiting_for_consent"
    });
    stage.answer_consent(true);
    let mut seen = out.until(Duration::from_secs(60), |v| v["type"] == "frame");
    assert!(
        seen.iter().any(|v| v["type"] == "frame"),
        "no frame reached the console: {}",
        stage.helper.log()
    );
    // Let the first pictures settle (the session indicator appears).
    let settle = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < settle {
        seen.extend(out.until(Duration::from_millis(200), |_| false));
    }
    let display = stage.agent_x.display();
    let start_us = unix_us();
    let moves = 120u32; // 6 s at 20 a second
    let every = Duration::from_millis(50);
    let began = std::time::Instant::now();
    for i in 0..moves {
        let x = 450 + (i * 37) % 400;
        let y = 350 + (i * 23) % 300;
        deskside_tests::x11::xdotool(display, &["mousemove", &x.to_string(), &y.to_string()]);
        let next = began + every * (i + 1);
        let now = std::time::Instant::now();
        if next > now {
            seen.extend(out.until(next - now, |_| false));
        }
    }
    let end_us = unix_us();
    seen.extend(out.until(Duration::from_secs(60), |v| v["type"] == "session_end"));
    session.wait_exit(Duration::from_secs(10));
    let in_window = |v: &&Value| {
        v["unix_us"]
            .as_u64()
            .is_some_and(|t| t >= start_us && t <= end_us)
    };
    let video_bytes: u64 = seen
        .iter()
        .filter(|v| v["type"] == "frame")
        .filter(in_window)
        .filter_map(|v| v["bytes"].as_u64())
        .sum();
    let pointers = seen
        .iter()
        .filter(|v| v["type"] == "pointer")
        .filter(in_window)
        .count();
    let seconds = (end_us - start_us) as f64 / 1e6;
    let kbit_s = video_bytes as f64 * 8.0 / seconds / 1000.0;
    eprintln!(
        "{moves} pointer moves in {seconds:.1} s: video {video_bytes} bytes ({kbit_s:.1} kbit/s), {pointers} pointer messages"
    );
    assert!(
        kbit_s < 50.0,
        "moving the pointer cost {kbit_s:.0} kbit/s of video (limit 50)"
    );
    assert!(
        pointers >= 30,
        "only {pointers} pointer messages reached the console for {moves} moves"
    );
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
