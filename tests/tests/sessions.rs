//! End-to-end remote sessions with the real binaries on two Xvfb displays:
//! the employee's (agent service, session helper, a test X client drawing a
//! known picture and reporting the input it gets) and the technician's
//! (the console's viewer window). Clicks go through xdotool and pictures
//! through `import` screenshots, as a person would see them.
//!
//! Needs Xvfb, xdotool and ImageMagick's `import`: with `CI=true` a missing
//! one fails the test; elsewhere the test is skipped with a message.

use std::process::Command;
use std::time::{Duration, Instant};

use deskside_session_ui::{INDICATOR_DOWNGRADE_BUTTON, INDICATOR_STOP_BUTTON};
use deskside_tests::stage::{SessionStage, StageOptions};
use deskside_tests::x11::{
    centre, click, close_to, find_window, geometry, pixel, prerequisites, screenshot, window_gone,
    xdotool, Lines,
};
use deskside_tests::{wait_for, Proc};
use serde_json::Value;

const AGENT_SCREEN: (u32, u32) = (1024, 640);
const CONSOLE_SCREEN: (u32, u32) = (1280, 800);
/// Displays of these tests (the crate tests of deskside-desktop use 40–49,
/// the UI crates 50–59).
const DISPLAYS: std::ops::RangeInclusive<u16> = 60..=79;
/// Drawn on the agent's screen by the X client.
const DRAWN_CANARY: &str = "CANARY-DRAWN-5150";
/// Typed by the console.
const TYPED_CANARY: &str = "Canary-Typed!42";

/// Each test runs two X servers, egui windows and four processes: on a
/// 2-core machine they run one at a time, or timeouts become flaky.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `None` (skip) without the X tools; otherwise the lock that runs these
/// tests one at a time.
fn begin() -> Option<std::sync::MutexGuard<'static, ()>> {
    prerequisites().then(serial)
}

/// Waits for the console's verification-code line; returns what it printed.
fn wait_for_prompt(out: &Lines) -> Vec<Value> {
    out.until(Duration::from_secs(30), |v| {
        v["state"] == "waiting_for_consent"
    })
}

fn options() -> StageOptions {
    StageOptions {
        relay_program: "deskside-relay".into(),
        relay_args: Vec::new(),
        agent_screen: AGENT_SCREEN,
        console_screen: CONSOLE_SCREEN,
        displays: DISPLAYS,
        xclient_args: vec!["--text".into(), DRAWN_CANARY.into()],
        agent_monitors: 1,
    }
}

/// Height of the viewer's toolbar above the picture (deskside-viewer).
const TOOLBAR: i64 = deskside_viewer_toolbar();

const fn deskside_viewer_toolbar() -> i64 {
    56
}

fn code_of(lines: &[Value]) -> String {
    lines
        .iter()
        .find(|v| v["state"] == "waiting_for_consent")
        .and_then(|v| v["verification_code"].as_str())
        .map(str::to_owned)
        .expect("the console printed the verification code")
}

#[test]
fn accepted_session_shows_the_screen_forwards_input_and_stops_on_the_employees_stop() {
    let Some(_serial) = begin() else {
        return;
    };
    let mut stage = SessionStage::start(&options());
    let (mut session, out) = stage.session(&[]);
    let waiting = wait_for_prompt(&out);
    let code = code_of(&waiting);
    assert_eq!(code.len(), 7, "a code like `123 456`: {code:?}");
    // Nothing reaches the console before the employee answers.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        out.drain().iter().all(|v| v["state"] != "started"),
        "started before consent"
    );
    stage.answer_consent(true);
    let started = out.until(Duration::from_secs(30), |v| v["state"] == "started");
    assert!(
        started.iter().any(|v| v["granted"] == "view+control"),
        "{started:?}\n{}",
        session.log()
    );
    let helper_log = stage.helper.log();
    assert!(
        stage.agent_proc.log().contains(&code),
        "the agent logged a different code than the console's {code}:\n{helper_log}"
    );

    // The pattern drawn on the agent's display shows in the console's window.
    let console_display = stage.console_x.display().to_owned();
    let viewer = find_window(&console_display, "deskside", Duration::from_secs(30));
    let expected = [
        // (x, y) in agent pixels away from the indicator (top-left corner).
        (
            (AGENT_SCREEN.0 / 2 - 40) as i64,
            (AGENT_SCREEN.1 / 2 - 40) as i64,
            [255, 0, 0],
        ),
        (
            (AGENT_SCREEN.0 * 3 / 4) as i64,
            (AGENT_SCREEN.1 / 4) as i64,
            [0, 255, 0],
        ),
        (
            (AGENT_SCREEN.0 / 4) as i64,
            (AGENT_SCREEN.1 * 3 / 4) as i64,
            [0, 0, 255],
        ),
        (
            (AGENT_SCREEN.0 * 3 / 4) as i64,
            (AGENT_SCREEN.1 * 3 / 4) as i64,
            [255, 255, 255],
        ),
    ];
    let shot = wait_for("the pattern in the viewer", Duration::from_secs(30), || {
        let shot = screenshot(&console_display, &viewer);
        let (w, h, _) = &shot;
        if i64::from(*w) < AGENT_SCREEN.0 as i64 || i64::from(*h) < AGENT_SCREEN.1 as i64 + TOOLBAR
        {
            return None;
        }
        expected
            .iter()
            .all(|(x, y, rgb)| close_to(pixel(&shot, *x, y + TOOLBAR), *rgb))
            .then_some(shot)
    });
    assert_eq!(
        shot.0 as u32, AGENT_SCREEN.0,
        "the viewer opened at the frame size"
    );

    // A click in the viewer lands at the same pixel on the agent's display.
    let (vx, vy, _, _) = geometry(&console_display, &viewer);
    let (tx, ty) = (700i64, 450i64);
    stage.xevents.drain();
    click(&console_display, vx + tx, vy + TOOLBAR + ty);
    let events = stage
        .xevents
        .until(Duration::from_secs(10), |v| v["type"] == "button");
    let press = events
        .iter()
        .find(|v| v["type"] == "button")
        .unwrap_or_else(|| {
            panic!(
                "no click reached the X client: {events:?}\n{}",
                stage.helper.log()
            )
        });
    assert_eq!(press["button"], 1);
    assert_eq!(
        (press["root_x"].as_i64(), press["root_y"].as_i64()),
        (Some(tx), Some(ty))
    );

    // Typed text arrives exactly.
    assert_eq!(
        typed_through(&stage, &viewer, "Hello, World!", Duration::from_secs(10)),
        "Hello, World!"
    );

    // The employee presses Stop: both sides end within a second.
    let display = stage.agent_x.display().to_owned();
    let indicator = find_window(&display, "session active", Duration::from_secs(10));
    let (ix, iy, _, _) = geometry(&display, &indicator);
    let stopped = Instant::now();
    let (bx, by) = centre(INDICATOR_STOP_BUTTON);
    click(&display, ix + bx, iy + by);
    let ended = out.until(Duration::from_secs(5), |v| v["type"] == "session_end");
    let took = stopped.elapsed();
    let end = ended
        .iter()
        .find(|v| v["type"] == "session_end")
        .unwrap_or_else(|| panic!("no end: {ended:?}"));
    assert_eq!(end["ended_by"], "employee");
    eprintln!("Stop click → console saw the end: {took:?}");
    let status = session
        .wait_exit(Duration::from_secs(10))
        .expect("the console ended");
    assert!(status.success(), "{}", session.log());
    assert!(
        session.log().contains("Session ended by employee"),
        "{}",
        session.log()
    );
    wait_for("the indicator to close", Duration::from_secs(5), || {
        window_gone(&display, "session active").then_some(())
    });

    let audit = stage.audit();
    let actions: Vec<&str> = audit.iter().filter_map(|v| v["action"].as_str()).collect();
    for needed in ["session.request", "session.consent", "session.end"] {
        assert!(actions.contains(&needed), "audit lacks {needed}: {audit:?}");
    }
    let end = audit
        .iter()
        .find(|v| v["action"] == "session.end")
        .expect("end row");
    assert!(end["detail"].to_string().contains("employee"), "{end}");
    drop(stage.xclient);
}

#[test]
fn refused_session_sends_nothing() {
    let Some(_serial) = begin() else {
        return;
    };
    let mut stage = SessionStage::start(&options());
    let (mut session, out) = stage.session(&["--headless"]);
    wait_for_prompt(&out);
    stage.answer_consent(false);
    let status = session
        .wait_exit(Duration::from_secs(20))
        .expect("the console gave up");
    assert_eq!(status.code(), Some(1), "{}", session.log());
    assert!(session.log().contains("not accepted"), "{}", session.log());
    let lines = out.drain();
    assert!(
        lines
            .iter()
            .all(|v| v["state"] != "started" && v["type"] != "session_end"),
        "{lines:?}"
    );
    assert!(
        !stage.helper.log().contains("capture"),
        "the helper started capturing:\n{}",
        stage.helper.log()
    );
    let audit = stage.audit();
    let consent = audit
        .iter()
        .find(|v| v["action"] == "session.consent")
        .expect("consent row");
    assert!(
        consent["detail"].to_string().contains("refused"),
        "{consent}"
    );
}

#[test]
fn a_killed_consent_dialog_counts_as_refusal() {
    let Some(_serial) = begin() else {
        return;
    };
    let mut stage = SessionStage::start(&options());
    let (mut session, out) = stage.session(&["--headless"]);
    wait_for_prompt(&out);
    let display = stage.agent_x.display().to_owned();
    let window = find_window(&display, "remote support request", Duration::from_secs(30));
    let pid = xdotool(&display, &["getwindowpid", &window]);
    let pid = pid.trim();
    assert!(!pid.is_empty(), "the dialog has no pid");
    Command::new("kill")
        .args(["-9", pid])
        .status()
        .expect("kill");
    let status = session
        .wait_exit(Duration::from_secs(60))
        .expect("the console gave up");
    assert_eq!(status.code(), Some(1), "{}", session.log());
    assert!(out.drain().iter().all(|v| v["state"] != "started"));
}

#[test]
fn an_unanswered_consent_dialog_refuses_after_60_s() {
    let Some(_serial) = begin() else {
        return;
    };
    let mut stage = SessionStage::start(&options());
    let (mut session, out) = stage.session(&["--headless"]);
    wait_for_prompt(&out);
    let display = stage.agent_x.display().to_owned();
    find_window(&display, "remote support request", Duration::from_secs(30));
    let shown = Instant::now();
    // Nobody answers.
    let status = session
        .wait_exit(Duration::from_secs(90))
        .expect("the console gave up");
    let waited = shown.elapsed();
    assert_eq!(status.code(), Some(1), "{}", session.log());
    assert!(
        waited >= Duration::from_secs(55),
        "refused after {waited:?}, before the 60 s were up: {}",
        session.log()
    );
    assert!(session.log().contains("not accepted"), "{}", session.log());
    wait_for("the dialog to close", Duration::from_secs(5), || {
        window_gone(&display, "remote support request").then_some(())
    });
    assert!(out.drain().iter().all(|v| v["state"] != "started"));
    assert!(
        !stage.helper.log().contains("capture"),
        "the helper started capturing:\n{}",
        stage.helper.log()
    );
    let audit = stage.audit();
    let consent = audit
        .iter()
        .find(|v| v["action"] == "session.consent")
        .expect("consent row");
    assert!(
        consent["detail"].to_string().contains("timed_out"),
        "{consent}"
    );
    assert!(
        audit.iter().all(|v| v["action"] != "session.end"),
        "a session that never ran has no end row: {audit:?}"
    );
}

#[test]
fn view_only_session_drops_input_at_the_agent() {
    let Some(_serial) = begin() else {
        return;
    };
    let mut stage = SessionStage::start(&options());
    let (mut session, out) = stage.session(&[
        "--headless",
        "--view-only",
        "--type-text",
        "secret",
        "--duration",
        "4s",
    ]);
    wait_for_prompt(&out);
    stage.xevents.drain();
    stage.answer_consent(true);
    let end = out.until(Duration::from_secs(60), |v| v["type"] == "session_end");
    let summary = end
        .iter()
        .find(|v| v["type"] == "session_end")
        .unwrap_or_else(|| panic!("{end:?}\n{}", session.log()));
    assert!(
        summary["decoded"].as_u64().unwrap_or(0) >= 1,
        "no frame decoded: {summary}"
    );
    assert_eq!(summary["width"].as_u64(), Some(u64::from(AGENT_SCREEN.0)));
    session.wait_exit(Duration::from_secs(10));
    let keys: Vec<Value> = stage
        .xevents
        .drain()
        .into_iter()
        .filter(|v| v["type"] == "key")
        .collect();
    assert!(
        keys.is_empty(),
        "view-only input reached the desktop: {keys:?}"
    );
    assert!(
        stage
            .agent_proc
            .log()
            .contains("dropping input: this session is view-only"),
        "{}",
        stage.agent_proc.log()
    );
}

#[test]
fn a_spy_relay_sees_no_plaintext_of_the_session() {
    let Some(_serial) = begin() else {
        return;
    };
    let spy_dir = tempfile::tempdir().expect("temp dir");
    let spy_file = spy_dir.path().join("forwarded.bin");
    let spy = spy_file.to_str().expect("utf-8 path").to_owned();
    let mut stage = SessionStage::start(&StageOptions {
        relay_program: "deskside-spy-relay".into(),
        relay_args: vec!["--spy-file".into(), spy.clone()],
        ..options()
    });
    let (mut session, out) = stage.session(&[
        "--headless",
        "--type-text",
        TYPED_CANARY,
        "--duration",
        "5s",
    ]);
    wait_for_prompt(&out);
    stage.xevents.drain();
    stage.answer_consent(true);
    let end = out.until(Duration::from_secs(60), |v| v["type"] == "session_end");
    let summary = end
        .iter()
        .find(|v| v["type"] == "session_end")
        .unwrap_or_else(|| panic!("{end:?}\n{}", session.log()));
    assert!(summary["decoded"].as_u64().unwrap_or(0) >= 1, "{summary}");
    session.wait_exit(Duration::from_secs(10));
    // The canary really went through: the desktop received it.
    let typed: String = stage
        .xevents
        .drain()
        .iter()
        .filter(|v| v["type"] == "key")
        .filter_map(|v| v["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(typed, TYPED_CANARY);
    let forwarded = std::fs::read(&spy_file).expect("the spy relay wrote its file");
    assert!(
        forwarded.len() > 10_000,
        "the spy saw too little: {} bytes",
        forwarded.len()
    );
    for canary in [TYPED_CANARY, DRAWN_CANARY] {
        assert!(
            !forwarded
                .windows(canary.len())
                .any(|w| w == canary.as_bytes()),
            "{canary} crossed the relay in clear"
        );
    }
}

#[test]
fn a_relay_that_substitutes_keys_gets_no_session() {
    let Some(_serial) = begin() else {
        return;
    };
    let spy_dir = tempfile::tempdir().expect("temp dir");
    let spy = spy_dir.path().join("forwarded.bin");
    let spy = spy.to_str().expect("utf-8 path").to_owned();
    let mut stage = SessionStage::start(&StageOptions {
        relay_program: "deskside-spy-relay".into(),
        relay_args: vec!["--spy-file".into(), spy.clone(), "--substitute-keys".into()],
        ..options()
    });
    let (mut session, out) = stage.session(&["--headless"]);
    let status = session
        .wait_exit(Duration::from_secs(60))
        .expect("the console gave up");
    assert_eq!(status.code(), Some(1), "{}", session.log());
    assert!(
        session
            .log()
            .contains("end-to-end connection to the device failed"),
        "{}",
        session.log()
    );
    assert!(
        out.drain()
            .iter()
            .all(|v| v["state"] != "waiting_for_consent"),
        "a code was shown"
    );
    assert!(
        window_gone(stage.agent_x.display(), "remote support request"),
        "the employee was asked"
    );
}

#[test]
fn audit_rows_survive_a_relay_killed_during_session_start() {
    let Some(_serial) = begin() else {
        return;
    };
    let mut stage = SessionStage::start(&options());
    let (mut session, out) = stage.session(&["--headless"]);
    wait_for_prompt(&out);
    let port = stage.relay.port();
    stage.relay.proc.kill();
    session.kill();
    stage.relay = stage.world.relay(Some(port));
    let audit = stage.audit();
    let actions: Vec<&str> = audit.iter().filter_map(|v| v["action"].as_str()).collect();
    assert!(actions.contains(&"session.request"), "{audit:?}");
    let end = audit
        .iter()
        .find(|v| v["action"] == "session.end")
        .unwrap_or_else(|| panic!("no end row after the restart: {audit:?}"));
    assert!(
        end["detail"].to_string().contains("relay_restarted"),
        "{end}"
    );
}

#[test]
fn a_session_survives_the_agent_losing_its_relay_connection_for_a_while() {
    let Some(_serial) = begin() else {
        return;
    };
    // The counter sits clear of the indicator at the top-left corner.
    let mut stage = SessionStage::start(&counter_options("524x40+480+400", 10));
    let (mut session, out) = stage.session(&[
        "--headless",
        "--view-only",
        "--probe-counter",
        "480,400",
        "--duration",
        "25s",
    ]);
    wait_for_prompt(&out);
    stage.answer_consent(true);
    out.until(Duration::from_secs(30), |v| v["type"] == "frame_counter");
    // Freeze the agent service longer than the relay's idle timeout (6 s in
    // tests): the relay drops its connection; the agent reconnects when it
    // wakes up, and the end-to-end connection (30 s idle) carries on.
    let pid = stage.agent_proc.pid();
    freeze(pid, Duration::from_secs(9));
    let resumed_at = Instant::now();
    wait_for("the agent to reconnect", Duration::from_secs(20), || {
        (stage
            .agent_proc
            .log()
            .matches("connected to the relay")
            .count()
            >= 2)
            .then_some(())
    });
    let lines = out.until(Duration::from_secs(60), |v| v["type"] == "session_end");
    let end = session_end(&lines, &session);
    assert_eq!(
        end["ended_by"],
        "technician",
        "the session did not last: {end}\n{}",
        stage.agent_proc.log()
    );
    let after = lines
        .iter()
        .filter(|v| v["type"] == "frame_counter")
        .count();
    assert!(
        after >= 5,
        "only {after} new frames after the reconnect ({:?})",
        resumed_at.elapsed()
    );
    session.wait_exit(Duration::from_secs(10));
}

/// A stage whose test X client is a `geometry` window drawing the frame
/// counter `fps` times a second at its top-left corner.
fn counter_options(geometry: &str, fps: u32) -> StageOptions {
    StageOptions {
        xclient_args: vec![
            "--geometry".into(),
            geometry.into(),
            "--counter".into(),
            "--counter-fps".into(),
            fps.to_string(),
        ],
        ..options()
    }
}

/// The console's `session_end` line among `lines`; panics with its log.
fn session_end<'a>(lines: &'a [Value], session: &Proc) -> &'a Value {
    lines
        .iter()
        .find(|v| v["type"] == "session_end")
        .unwrap_or_else(|| panic!("no session_end: {lines:?}\n{}", session.log()))
}

/// Stops process `pid` (SIGSTOP) for `how_long`, then lets it go on.
fn freeze(pid: u32, how_long: Duration) {
    let pid = pid.to_string();
    Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .expect("kill");
    std::thread::sleep(how_long);
    Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .expect("kill");
}

/// Counts the frame-counter readings in `lines` (`--probe-counter`).
fn counter_frames(lines: &[Value]) -> usize {
    lines
        .iter()
        .filter(|v| v["type"] == "frame_counter")
        .count()
}

#[test]
fn a_session_survives_a_console_outage_and_a_relay_restart() {
    let Some(_serial) = begin() else {
        return;
    };
    let mut stage = SessionStage::start(&counter_options("524x40+480+400", 10));
    let proxy = stage.console_through_proxy();
    let (mut session, out) = stage.session(&[
        "--headless",
        "--view-only",
        "--probe-counter",
        "480,400",
        "--duration",
        "60s",
    ]);
    wait_for_prompt(&out);
    stage.answer_consent(true);
    out.until(Duration::from_secs(30), |v| v["type"] == "frame_counter");

    // 1. The console's path to the relay disappears for 9 s, longer than
    // the relay's idle timeout (6 s in tests): the relay drops the console's
    // connection, the console connects again and resumes the session.
    let pid = proxy.pid();
    freeze(pid, Duration::from_secs(9));
    let lines = out.until(Duration::from_secs(25), |v| v["state"] == "resumed");
    for line in lines.iter().filter(|v| v["type"] == "relay_link") {
        eprintln!("console outage: {line}");
    }
    assert!(
        lines.iter().any(|v| v["state"] == "lost"),
        "the console did not notice the outage: {lines:?}\n{}",
        session.log()
    );
    assert!(
        lines.iter().any(|v| v["state"] == "resumed"),
        "the console did not resume: {lines:?}\n{}\n{}",
        session.log(),
        stage.relay.proc.log()
    );
    let mut after = Vec::new();
    wait_for(
        "frames after the console's outage",
        Duration::from_secs(20),
        || {
            after.extend(out.drain());
            (counter_frames(&after) >= 5).then_some(())
        },
    );

    // 2. The relay is killed and started again: both parties lose their
    // relay connection at once and the relay forgets every route.
    stage.restart_relay();
    let restarted = Instant::now();
    let lines = out.until(Duration::from_secs(30), |v| v["state"] == "resumed");
    for line in lines.iter().filter(|v| v["type"] == "relay_link") {
        eprintln!("relay restart: {line}");
    }
    assert!(
        lines.iter().any(|v| v["state"] == "resumed"),
        "the console did not resume after the relay restart: {lines:?}\n{}\n{}",
        session.log(),
        stage.relay.proc.log()
    );
    let mut after = Vec::new();
    wait_for(
        "frames after the relay restart",
        Duration::from_secs(25),
        || {
            after.extend(out.drain());
            (counter_frames(&after) >= 5).then_some(())
        },
    );
    eprintln!(
        "relay restart: 5 new frames {:.1} s after the kill",
        restarted.elapsed().as_secs_f64()
    );

    // 3. The session runs to its planned end, ended by the technician.
    let lines = out.until(Duration::from_secs(60), |v| v["type"] == "session_end");
    let end = session_end(&lines, &session);
    assert_eq!(
        end["ended_by"],
        "technician",
        "the session did not last: {end}\n{}",
        stage.agent_proc.log()
    );
    session.wait_exit(Duration::from_secs(10));

    // One request, one consent and one end in the audit, the end saying
    // the technician ended it (not a connection loss).
    let audit = stage.audit();
    let count = |action: &str| audit.iter().filter(|v| v["action"] == action).count();
    assert_eq!(count("session.request"), 1, "{audit:?}");
    assert_eq!(count("session.consent"), 1, "{audit:?}");
    assert_eq!(count("session.end"), 1, "{audit:?}");
    let end = audit
        .iter()
        .find(|v| v["action"] == "session.end")
        .expect("end row");
    assert!(end["detail"].to_string().contains("technician"), "{end}");
    drop(proxy);
}

#[test]
fn the_second_monitor_is_shown_and_input_lands_at_its_offset() {
    let Some(_serial) = begin() else {
        return;
    };
    // Two monitors of 512×640; the X client's window (with the counter at
    // its top-left corner) sits on the right one.
    let mut stage = SessionStage::start(&StageOptions {
        agent_monitors: 2,
        ..counter_options("512x400+512+100", 10)
    });
    let (mut session, out) = stage.session(&[
        "--headless",
        "--monitor",
        "1",
        // Frame coordinates of monitor 1: the window's corner is (0,100).
        "--probe-counter",
        "0,100",
        "--probe-input",
        "100",
        "--probe-input-at",
        "50,150",
        "--duration",
        "8s",
    ]);
    wait_for_prompt(&out);
    stage.xevents.drain();
    stage.answer_consent(true);
    let lines = out.until(Duration::from_secs(60), |v| v["type"] == "session_end");
    session.wait_exit(Duration::from_secs(10));
    let started = lines
        .iter()
        .find(|v| v["state"] == "started")
        .unwrap_or_else(|| panic!("{lines:?}\n{}", session.log()));
    assert_eq!(started["monitors"], 2, "{started}");
    assert_eq!(started["selected"], 1, "{started}");
    let end = session_end(&lines, &session);
    assert_eq!(
        (end["width"].as_u64(), end["height"].as_u64()),
        (Some(512), Some(640)),
        "frames are of the right monitor: {end}"
    );
    // The counter is read at the monitor's own (0,100): the picture is the
    // right monitor's, not the left one's or the whole screen.
    assert!(
        counter_frames(&lines) >= 3,
        "the counter was not seen on monitor 1: {end}"
    );
    // Each pointer move lands 512 px to the right of its frame position.
    let sent: Vec<(i64, i64)> = lines
        .iter()
        .filter(|v| v["type"] == "input_sent")
        .filter_map(|v| Some((v["x"].as_i64()? + 512, v["y"].as_i64()?)))
        .collect();
    assert!(!sent.is_empty(), "no pointer move was sent: {lines:?}");
    let received: Vec<(i64, i64)> = stage
        .xevents
        .drain()
        .iter()
        .filter(|v| v["type"] == "motion")
        .filter_map(|v| Some((v["root_x"].as_i64()?, v["root_y"].as_i64()?)))
        .collect();
    let landed = sent.iter().filter(|spot| received.contains(spot)).count();
    assert!(
        landed * 10 >= sent.len() * 9,
        "only {landed} of {} moves landed at their mapped spot; sent {sent:?}, received {received:?}",
        sent.len()
    );
}

#[test]
fn a_long_round_trip_halves_the_frame_rate() {
    let Some(_serial) = begin() else {
        return;
    };
    // The counter changes 30 times a second, so there is always a new frame
    // to send; the console's path to the relay adds 150 ms each way.
    let mut stage = SessionStage::start(&counter_options("524x40+480+400", 30));
    let _proxy = stage.console_through_impaired_proxy(&["--delay", "150ms"]);
    let (mut session, out) = stage.session(&["--headless", "--view-only", "--duration", "12s"]);
    wait_for_prompt(&out);
    stage.answer_consent(true);
    let lines = out.until(Duration::from_secs(60), |v| v["type"] == "session_end");
    session.wait_exit(Duration::from_secs(10));
    let end = session_end(&lines, &session);
    let frames = end["frames"].as_f64().unwrap_or(0.0);
    let seconds = end["seconds"].as_f64().unwrap_or(1.0);
    let fps = frames / seconds;
    eprintln!("with a 300 ms round trip: {frames} frames in {seconds:.1} s ({fps:.1}/s)");
    // The codec policy caps a path over 250 ms at 15 fps (30 otherwise).
    assert!(
        (3.0..=16.5).contains(&fps),
        "{fps:.1} frames/s over a 300 ms round trip: {end}"
    );
}

#[test]
fn the_employee_chats_from_the_indicator_to_the_technician() {
    let Some(_serial) = begin() else {
        return;
    };
    let mut stage = SessionStage::start(&options());
    let (mut session, out) = stage.session(&["--headless", "--duration", "20s"]);
    wait_for_prompt(&out);
    stage.answer_consent(true);
    out.until(Duration::from_secs(30), |v| v["state"] == "started");
    let display = stage.agent_x.display().to_owned();
    let indicator = find_window(&display, "session active", Duration::from_secs(10));
    let (ix, iy, _, _) = geometry(&display, &indicator);
    // deskside-session-ui: the chat's text field is the last row of the
    // indicator, left of its Send button.
    xdotool(&display, &["windowfocus", "--sync", &indicator]);
    let (cx, cy) = centre(deskside_session_ui::INDICATOR_CHAT_INPUT);
    click(&display, ix + cx, iy + cy);
    xdotool(&display, &["type", "--delay", "30", "Printer on floor 2?"]);
    xdotool(&display, &["key", "Return"]);
    let lines = out.until(Duration::from_secs(10), |v| {
        v["type"] == "session_message" && v["message"].to_string().contains("Chat")
    });
    let chat = lines
        .iter()
        .find(|v| v["type"] == "session_message")
        .unwrap_or_else(|| {
            panic!(
                "no chat reached the console: {lines:?}\n{}",
                stage.helper.log()
            )
        });
    assert!(
        chat["message"].to_string().contains("Printer on floor 2?"),
        "{chat}"
    );
    session.terminate();
}

/// Types `text` in the focused viewer and returns what the X client on
/// the agent's display reported within `wait`.
fn typed_through(stage: &SessionStage, viewer: &str, text: &str, wait: Duration) -> String {
    let display = stage.console_x.display();
    stage.xevents.drain();
    xdotool(display, &["windowfocus", "--sync", viewer]);
    xdotool(display, &["type", "--delay", "40", text]);
    let mut typed = String::new();
    stage.xevents.until(wait, |v| {
        if v["type"] == "key" {
            typed.push_str(v["text"].as_str().unwrap_or_default());
        }
        typed.len() >= text.len()
    });
    typed
}

#[test]
fn the_viewer_toolbar_pauses_input_and_ends_the_session() {
    let Some(_serial) = begin() else {
        return;
    };
    let mut stage = SessionStage::start(&options());
    let (mut session, out) = stage.session(&[]);
    wait_for_prompt(&out);
    stage.answer_consent(true);
    out.until(Duration::from_secs(30), |v| v["state"] == "started");
    let display = stage.console_x.display().to_owned();
    let viewer = find_window(&display, "deskside", Duration::from_secs(30));
    let (vx, vy, _, _) = geometry(&display, &viewer);
    // deskside-viewer's toolbar, second row (y 35): "End session" at
    // x 8–88, the "View only" box at x 100–114.
    let (end_x, view_only_x, row_y) = (vx + 48, vx + 107, vy + 35);
    wait_for("keys to reach the desktop", Duration::from_secs(20), || {
        (typed_through(&stage, &viewer, "ab", Duration::from_secs(3)) == "ab").then_some(())
    });

    // "View only" ticked: the viewer stops sending.
    click(&display, view_only_x, row_y);
    let typed = typed_through(&stage, &viewer, "cd", Duration::from_secs(3));
    assert_eq!(typed, "", "keys went through a paused viewer");
    // Unticked: control again.
    click(&display, view_only_x, row_y);
    assert_eq!(
        typed_through(&stage, &viewer, "ef", Duration::from_secs(10)),
        "ef"
    );

    // "End session": both sides end, recorded as the technician's end.
    click(&display, end_x, row_y);
    let lines = out.until(Duration::from_secs(10), |v| v["type"] == "session_end");
    let end = session_end(&lines, &session);
    assert_eq!(end["ended_by"], "technician", "{end}");
    session.wait_exit(Duration::from_secs(20));
    let audit = stage.audit();
    let row = audit
        .iter()
        .find(|v| v["action"] == "session.end")
        .unwrap_or_else(|| panic!("no end row: {audit:?}"));
    assert!(row["detail"].to_string().contains("technician"), "{row}");
}

#[test]
fn the_employee_downgrades_to_view_only_and_input_stops_at_the_agent() {
    let Some(_serial) = begin() else {
        return;
    };
    let mut stage = SessionStage::start(&options());
    // The console keeps moving the pointer (every 100 ms) inside the X
    // client's window, whatever it is told.
    let (mut session, out) = stage.session(&[
        "--headless",
        "--probe-input",
        "100",
        "--probe-input-at",
        "600,300",
        "--duration",
        "20s",
    ]);
    wait_for_prompt(&out);
    stage.answer_consent(true);
    out.until(Duration::from_secs(30), |v| v["state"] == "started");
    wait_for(
        "pointer moves on the desktop",
        Duration::from_secs(20),
        || {
            stage
                .xevents
                .drain()
                .iter()
                .any(|v| v["type"] == "motion")
                .then_some(())
        },
    );
    let display = stage.agent_x.display().to_owned();
    let indicator = find_window(&display, "session active", Duration::from_secs(10));
    let (ix, iy, _, _) = geometry(&display, &indicator);
    let (bx, by) = centre(INDICATOR_DOWNGRADE_BUTTON);
    click(&display, ix + bx, iy + by);
    let lines = out.until(Duration::from_secs(10), |v| {
        v["type"] == "session_message" && v["message"].to_string().contains("Granted")
    });
    assert!(
        lines
            .iter()
            .any(|v| v["message"].to_string().contains("Granted")),
        "the console was not told: {lines:?}\n{}",
        stage.helper.log()
    );
    // Moves still being sent now reach nobody.
    std::thread::sleep(Duration::from_millis(500));
    stage.xevents.drain();
    let sent_before = out
        .drain()
        .iter()
        .filter(|v| v["type"] == "input_sent")
        .count();
    std::thread::sleep(Duration::from_secs(3));
    let sent_after = out
        .drain()
        .iter()
        .filter(|v| v["type"] == "input_sent")
        .count();
    let moved: Vec<Value> = stage
        .xevents
        .drain()
        .into_iter()
        .filter(|v| v["type"] == "motion")
        .collect();
    assert!(
        sent_after >= 10,
        "the console stopped sending ({sent_before} then {sent_after}), so this proves nothing"
    );
    assert!(
        moved.is_empty(),
        "{} moves reached the desktop after the downgrade: {moved:?}",
        moved.len()
    );
    session.terminate();
}

#[test]
fn an_administrator_ending_a_running_session_closes_it_on_the_employees_screen_at_once() {
    let Some(_serial) = begin() else {
        return;
    };
    let mut stage = SessionStage::start(&options());
    let (_session, out) = stage.session(&["--headless", "--duration", "120s"]);
    wait_for_prompt(&out);
    stage.answer_consent(true);
    let display = stage.agent_x.display().to_owned();
    find_window(&display, "session active", Duration::from_secs(20));
    let session_id = wait_for("the running session", Duration::from_secs(20), || {
        let rows = stage
            .console
            .run(&["session", "list", "--json"])
            .ok()
            .json_lines();
        rows.into_iter()
            .find(|row| row["state"] == "running")
            .and_then(|row| row["session_id"].as_str().map(str::to_owned))
    });
    let asked = Instant::now();
    stage.console.run(&["session", "end", &session_id]).ok();
    // Well inside the end-to-end idle timeout (30 s), which is all that
    // ended the employee's session before the relay told the agent.
    wait_for("the indicator to close", Duration::from_secs(10), || {
        window_gone(&display, "session active").then_some(())
    });
    eprintln!("session end → indicator closed: {:?}", asked.elapsed());
    assert!(
        stage
            .agent_proc
            .log()
            .contains("the relay ended the session"),
        "{}",
        stage.agent_proc.log()
    );
    let ends: Vec<Value> = stage
        .audit()
        .into_iter()
        .filter(|row| row["action"] == "session.end")
        .collect();
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0]["detail"]["by"], "administrator");
}
