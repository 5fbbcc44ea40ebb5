//! Test 4 of issue 11: a remote session on the Windows agent under Wine.
//!
//! On one Xvfb: `deskside-agent.exe run` and `deskside-agent.exe
//! session-helper` (the service and the helper, over the named pipe), and
//! `deskside-testapp-win.exe` (a known picture, a frame-counter barcode and
//! a record of the keys and clicks it receives), all in one Wine prefix. The
//! Linux relay and console run natively; the console runs headless,
//! decodes every frame and reads the counter from it (`--probe-counter`),
//! clicks once and types once (`--click`, `--type-text`). The consent
//! dialog is clicked through X11 (xdotool) as a person would, at the
//! documented button positions.
//!
//! Checked: a refused consent sends no frame and starts no capture; an
//! accepted one shows the test program's counter advancing in decoded
//! frames, and the click and the typed text reach the test program exactly;
//! a view-only one shows frames and drops the click and the text.
//!
//! Run by scripts/windows-tests (`cargo test -p deskside-tests --features
//! wine --test windows_session`) after it builds the `.exe` files. Without
//! Wine, the `.exe` files, Xvfb, xdotool or `import`, the test skips with a
//! message, or fails when `CI=true`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use deskside_desktop::xvfb::Xvfb;
use deskside_tests::wine::{windows_bin_dir, Wine, WineAgent};
use deskside_tests::x11::{self, Lines};
use deskside_tests::{bin, secret_scan, wait_for, Console, Proc, World};
use serde_json::Value;

/// The employee's screen.
const SCREEN: (u32, u32) = (1280, 800);
/// Displays of this test (others: 40–99).
const DISPLAYS: std::ops::RangeInclusive<u16> = 110..=119;
/// Where the test program's window is: away from the top-left corner,
/// where the session indicator opens.
const APP_AT: (u32, u32) = (400, 300);
const APP_GEOMETRY: &str = "640x400+400+300";
/// Where the console clicks, in the test program's window.
const CLICK_IN_APP: (u32, u32) = (100, 200);
/// What the console types (a character outside ASCII goes through
/// SendInput's Unicode path).
const TYPED: &str = "Hello, Wine! é";
/// Wine starts programs slowly on a loaded 2-core machine.
const SLOW: Duration = Duration::from_secs(120);

/// Everything of one run: the native relay and console, and the Windows
/// programs under Wine on the agent's Xvfb.
#[allow(missing_debug_implementations)] // Xvfb has no Debug
struct Stage {
    admin: Console,
    device: String,
    agent_proc: Proc,
    helper: Proc,
    _app: Proc,
    _app_stdout: Lines,
    record: PathBuf,
    display: String,
    _agent: WineAgent,
    _relay: deskside_tests::Relay,
    _xvfb: Xvfb,
    // Last: the processes above print their logs when dropped, and the
    // logs live in the world's directory.
    world: World,
}

/// Whether the X tools are there (fails under CI when not).
fn x_tools() -> bool {
    deskside_tests::x11::prerequisites()
}

/// `scripts/wine-run PROGRAM` on `display`, in English.
fn on_display(wine: &Wine, display: &str, program: &Path) -> Command {
    let mut command = wine.command(program);
    command
        .env("DISPLAY", display)
        .env("LANG", "en_US.UTF-8")
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES");
    command
}

/// `deskside-agent.exe --state-dir DIR ARGS` on `display`.
fn agent_command(wine: &Wine, display: &str, agent: &WineAgent, args: &[&str]) -> Command {
    let mut command = on_display(wine, display, wine.agent_exe());
    command
        .arg("--state-dir")
        .arg(agent.state_dir_windows())
        .args(args);
    command
}

/// Runs a command to completion; panics with its output unless it succeeds.
fn run_ok(mut command: Command) -> String {
    let out = command.output().expect("run a Wine command");
    assert!(
        out.status.success(),
        "{command:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Unix path as Wine's drive Z: sees it.
fn z_path(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

/// The record file's lines (the test program appends and flushes each).
fn record_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

impl Stage {
    fn start(test: &str) -> Option<Self> {
        let wine = Wine::find(test)?;
        if !x_tools() {
            return None;
        }
        let app_exe = windows_bin_dir().join("deskside-testapp-win.exe");
        if !app_exe.is_file() {
            let why = format!(
                "{} is missing: build it with `cargo build --target x86_64-pc-windows-gnu -p deskside-testapp-win` (scripts/windows-tests does)",
                app_exe.display()
            );
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{test}: {why} (CI=true: Windows tests must run)"
            );
            eprintln!("SKIPPED {test}: {why}");
            return None;
        }
        let xvfb = Xvfb::start_in(DISPLAYS, SCREEN.0, SCREEN.1).expect("the agent's Xvfb");
        let display = xvfb.display().to_owned();
        let mut world = World::new();
        let (relay, admin) = world.relay_and_admin();
        let token = admin.enroll_token(1, "10m");
        secret_scan::remember_token(&token);
        let agent = wine.agent("winlaptop");
        // Every Wine program of the prefix runs on the same display: Wine's
        // desktop process starts with the first one and stays on its
        // display.
        run_ok(agent_command(&wine, &display, &agent, &["enroll", &token]));
        secret_scan::remember_key_file(&agent.key_path());
        let status: Value = serde_json::from_str(
            run_ok(agent_command(
                &wine,
                &display,
                &agent,
                &["status", "--json"],
            ))
            .trim(),
        )
        .expect("status --json");
        let device = status["device_id"]
            .as_str()
            .expect("a device id after enroll")
            .to_owned();
        let mut command = agent_command(&wine, &display, &agent, &["run"]);
        command.env("RUST_LOG", "info,deskside_agent=debug");
        let agent_proc = world.spawn_wine("winlaptop", command);
        admin.wait_status(&device, "online", SLOW);

        let record = world.path("testapp-record.jsonl");
        let mut command = on_display(&wine, &display, &app_exe);
        command.args([
            "--record",
            &z_path(&record),
            "--geometry",
            APP_GEOMETRY,
            "--counter-fps",
            "10",
        ]);
        // Its stdout stays open (it prints its ready line there too).
        let (app, app_stdout) = world.spawn_wine_piped("testapp", command);
        let app_stdout = Lines::new(app_stdout);
        wait_for("the test program's window", SLOW, || {
            record_lines(&record)
                .iter()
                .any(|v| v["type"] == "ready")
                .then_some(())
        });

        let mut command = agent_command(&wine, &display, &agent, &["session-helper"]);
        command.env("RUST_LOG", "info,deskside_agent=debug");
        let helper = world.spawn_wine("helper", command);
        wait_for("the helper to connect to the service", SLOW, || {
            agent_proc
                .log()
                .contains("session helper connected")
                .then_some(())
        });
        Some(Self {
            admin,
            device,
            agent_proc,
            helper,
            _app: app,
            _app_stdout: app_stdout,
            record,
            display,
            _agent: agent,
            _relay: relay,
            _xvfb: xvfb,
            world,
        })
    }

    /// `deskside session DEVICE --headless EXTRA` in the background.
    fn session(&mut self, extra: &[&str]) -> (Proc, Lines) {
        let mut command = Command::new(bin("deskside"));
        command
            .arg("--profile")
            .arg(&self.admin.profile)
            .args([
                "--json",
                "session",
                &self.device,
                "--reason",
                "printer setup",
                "--headless",
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null());
        let (proc, stdout) = self.world.spawn("console-session", command);
        (proc, Lines::new(stdout))
    }

    /// Clicks Accept (once it is armed: green) or Refuse in the consent
    /// dialog, again if it is still open a moment later.
    fn answer_consent(&self, accept: bool) {
        x11::answer_consent(&self.display, accept, SLOW, Duration::from_secs(5), || {
            self.helper.log()
        });
    }

    /// Waits until the agent service has logged `line` `times` times.
    fn wait_agent_log(&self, line: &str, times: usize) {
        wait_for(&format!("the agent to log {line:?}"), SLOW, || {
            (self.agent_proc.log().matches(line).count() >= times).then_some(())
        });
    }

    fn audit(&self) -> Vec<Value> {
        self.admin
            .run(&["--json", "audit", "list", "--device", &self.device])
            .ok()
            .json_lines()
    }
}

/// Waits for the console's verification-code line.
fn wait_for_prompt(out: &Lines, session: &Proc) {
    let lines = out.until(SLOW, |v| v["state"] == "waiting_for_consent");
    assert!(
        lines.iter().any(|v| v["state"] == "waiting_for_consent"),
        "the console never waited for consent: {lines:?}\n{}",
        session.log()
    );
}

#[test]
fn a_windows_session_under_wine_refused_sends_nothing_accepted_shows_the_counter_and_takes_input() {
    let Some(mut stage) = Stage::start("windows_session") else {
        return;
    };

    // Refused: the console gives up, no frame, no capture.
    let (mut refused, out) = stage.session(&[]);
    wait_for_prompt(&out, &refused);
    stage.answer_consent(false);
    let status = refused
        .wait_exit(Duration::from_secs(60))
        .expect("the console gave up after the refusal");
    assert_eq!(status.code(), Some(1), "{}", refused.log());
    assert!(refused.log().contains("not accepted"), "{}", refused.log());
    let lines = out.drain();
    assert!(
        lines
            .iter()
            .all(|v| v["state"] != "started" && v["type"] != "session_end"),
        "a refused session started: {lines:?}"
    );
    assert!(
        !stage.helper.log().contains("screen capture:"),
        "the helper opened a capturer for a refused session:\n{}",
        stage.helper.log()
    );
    // No wait here: the agent frees its one session slot before it closes
    // the refused connection (it used to hold it while the close drained,
    // and the next request was refused as "another remote session is
    // already running").

    // Accepted: decoded frames show the counter advancing; the click and
    // the typed text reach the test program exactly.
    let (ax, ay) = APP_AT;
    let probe = format!("{ax},{ay}");
    let click_at = format!("{},{}", ax + CLICK_IN_APP.0, ay + CLICK_IN_APP.1);
    let (mut accepted, out) = stage.session(&[
        "--probe-counter",
        &probe,
        "--click",
        &click_at,
        "--type-text",
        TYPED,
    ]);
    wait_for_prompt(&out, &accepted);
    stage.answer_consent(true);
    let started = out.until(SLOW, |v| v["state"] == "started");
    assert!(
        started.iter().any(|v| v["granted"] == "view+control"),
        "{started:?}\n{}\nhelper:\n{}",
        accepted.log(),
        stage.helper.log()
    );
    let mut counters: Vec<u64> = Vec::new();
    out.until(SLOW, |v| {
        if v["type"] == "frame_counter" {
            if let Some(n) = v["value"].as_u64() {
                counters.push(n);
            }
        }
        counters.len() >= 5
    });
    assert!(
        counters.len() >= 5,
        "fewer than 5 counter readings in decoded frames: {counters:?}\nconsole:\n{}\nhelper:\n{}",
        accepted.log(),
        stage.helper.log()
    );
    assert!(
        counters.windows(2).all(|w| w[0] < w[1]),
        "the counter did not advance frame after frame: {counters:?}"
    );
    let (cx, cy) = CLICK_IN_APP;
    let mut typed = String::new();
    let mut clicks = Vec::new();
    let arrived = wait_for_input(&stage.record, &mut typed, &mut clicks, |typed, clicks| {
        typed == TYPED && !clicks.is_empty()
    });
    assert!(
        arrived,
        "the test program did not receive the input: typed {typed:?} (want {TYPED:?}), left clicks {clicks:?}\nhelper:\n{}",
        stage.helper.log()
    );
    assert_eq!(
        clicks,
        vec![(i64::from(cx), i64::from(cy))],
        "the click landed elsewhere (client pixels)"
    );
    assert_eq!(typed, TYPED);
    eprintln!(
        "Windows session under Wine: counter {} -> {} over {} decoded readings; typed {typed:?}; click at {:?}",
        counters[0],
        counters[counters.len() - 1],
        counters.len(),
        clicks[0]
    );
    // The technician stops (Ctrl-C): the session ends.
    interrupt(&accepted);
    accepted
        .wait_exit(SLOW)
        .expect("the console ends on Ctrl-C");
    let ended = out.drain();
    assert!(
        ended
            .iter()
            .any(|v| v["type"] == "session_end" && v["ended_by"] == "technician"),
        "no session_end by the technician: {ended:?}\n{}",
        accepted.log()
    );

    stage.wait_agent_log("session ended", 1);

    // View only: frames flow, but the click and the text are dropped.
    let before = record_lines(&stage.record).len();
    let (mut viewer, out) = stage.session(&[
        "--view-only",
        "--probe-counter",
        &probe,
        "--click",
        &click_at,
        "--type-text",
        "view only: never typed",
    ]);
    wait_for_prompt(&out, &viewer);
    stage.answer_consent(true);
    let mut granted = Value::Null;
    let mut readings = 0;
    out.until(SLOW, |v| {
        if v["state"] == "started" {
            granted = v["granted"].clone();
        }
        readings += usize::from(v["type"] == "frame_counter");
        readings >= 3
    });
    assert_eq!(granted, "view", "{}", viewer.log());
    assert!(
        readings >= 3,
        "fewer than 3 counter readings in a view-only session\n{}",
        viewer.log()
    );
    // The input went out with the first frame; give it time to arrive.
    std::thread::sleep(Duration::from_secs(3));
    let after = record_lines(&stage.record);
    let leaked: Vec<&Value> = after[before..]
        .iter()
        .filter(|v| v["type"] == "char" || v["type"] == "button_down")
        .collect();
    assert!(
        leaked.is_empty(),
        "input of a view-only session reached the test program: {leaked:?}"
    );
    interrupt(&viewer);
    viewer.wait_exit(SLOW).expect("the console ends on Ctrl-C");

    let audit = stage.audit();
    let consents: Vec<String> = audit
        .iter()
        .filter(|v| v["action"] == "session.consent")
        .map(|v| v["detail"].to_string())
        .collect();
    assert!(
        consents.iter().any(|d| d.contains("refused"))
            && consents.iter().any(|d| d.contains("accepted")),
        "the audit lacks the refusal and the acceptance: {audit:?}"
    );
    drop(stage.agent_proc);
}

/// Sends Ctrl-C (SIGINT) to a console, as a technician would.
fn interrupt(console: &Proc) {
    let sent = Command::new("kill")
        .args(["-INT", &console.pid().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success(), "could not interrupt the console");
}

/// Reads the record file until `done(typed, left clicks)` or a minute has
/// passed; `typed` is the concatenated text of the `char` lines, clicks are
/// the left `button_down` positions (client pixels).
fn wait_for_input(
    record: &Path,
    typed: &mut String,
    clicks: &mut Vec<(i64, i64)>,
    done: impl Fn(&str, &[(i64, i64)]) -> bool,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lines = record_lines(record);
        *typed = lines
            .iter()
            .filter(|v| v["type"] == "char")
            .filter_map(|v| v["text"].as_str())
            .collect();
        *clicks = lines
            .iter()
            .filter(|v| v["type"] == "button_down" && v["button"] == "left")
            .filter_map(|v| Some((v["x"].as_i64()?, v["y"].as_i64()?)))
            .collect();
        if done(typed, clicks) {
            // A moment more: nothing extra may follow.
            std::thread::sleep(Duration::from_secs(2));
            let again = record_lines(record);
            return again.len() == lines.len();
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
