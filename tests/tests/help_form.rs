//! The "Ask IT for help" window end to end: a real relay and agent, the
//! window opened by `deskside-agent help --window` on an Xvfb display,
//! filled and sent by the test through XTEST (xdotool), and the request
//! arriving at the relay (`deskside requests list/show`); then the window
//! again (`--lang fr`, a problem typed), cancelled: nothing more is sent.
//! The French wording itself is not read back from the screen.
//!
//! Needs Xvfb, xdotool and ImageMagick's `import` (as tests/tests/sessions.rs):
//! with `CI=true` a missing one fails the test, elsewhere it is skipped
//! with a message.

use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deskside_desktop::xvfb::Xvfb;
use deskside_session_ui::help_form::{
    HELP_FORM_APP_BOXES, HELP_FORM_CANCEL_BUTTON, HELP_FORM_CLOSE_BUTTON, HELP_FORM_CONTACT_INPUT,
    HELP_FORM_SEND_BUTTON, HELP_FORM_SUMMARY_INPUT, HELP_FORM_URGENCY_BUTTONS,
};
use deskside_tests::x11::{
    centre, click, find_window, geometry, pixel, prerequisites, screenshot, window_gone, xdotool,
};
use deskside_tests::{bin, wait_for, World};
use serde_json::Value;

/// Clear of the other X tests' displays (40–139, 170–179).
const DISPLAYS: std::ops::RangeInclusive<u16> = 180..=184;
/// The form's title ([`deskside_session_ui::HELP_FORM_TITLE`]) and the
/// title once sent (`HELP_FORM_SENDING_TITLE`), as xdotool patterns.
const TITLE: &str = "ask IT for help";
const FILED_TITLE: &str = "your request to IT";
/// Window waits and the quick check on a machine shared by parallel builds.
const PATIENCE: Duration = Duration::from_secs(60);

/// `deskside-agent help --window`, killed if the test ends first. Its
/// stderr goes to a file: the window process it starts inherits it and
/// outlives it (it stays open until Close), so a pipe would not end.
struct HelpWindow(Child, std::path::PathBuf);

impl HelpWindow {
    fn open(state_dir: &std::path::Path, display: &str, extra: &[&str]) -> Self {
        let log = state_dir.join(format!("help-window-{}.log", extra.join("")));
        let stderr = std::fs::File::create(&log).expect("create the help log");
        let child = Command::new(bin("deskside-agent"))
            .arg("--state-dir")
            .arg(state_dir)
            .args(extra)
            .args(["help", "--window", "--json"])
            .env("DISPLAY", display)
            .env_remove("WAYLAND_DISPLAY")
            .env("WINIT_X11_SCALE_FACTOR", "1")
            .env("LIBGL_ALWAYS_SOFTWARE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start deskside-agent help --window");
        Self(child, log)
    }

    /// Waits for the command to end; its exit code and stdout, stderr.
    fn finish(mut self, timeout: Duration) -> (i32, String, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.0.try_wait().expect("wait for help") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "deskside-agent help --window did not end within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut out = String::new();
        if let Some(mut pipe) = self.0.stdout.take() {
            pipe.read_to_string(&mut out).ok();
        }
        let err = std::fs::read_to_string(&self.1).unwrap_or_default();
        (status.code().unwrap_or(-1), out, err)
    }
}

impl Drop for HelpWindow {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The window, once egui has drawn it (an undrawn window is black where
/// the Cancel button's grey will be); its top-left corner on the screen.
fn drawn_window(display: &str) -> (String, i64, i64) {
    let window = find_window(display, TITLE, PATIENCE);
    let (cx, cy) = centre(HELP_FORM_CANCEL_BUTTON);
    wait_for("the help window to be drawn", PATIENCE, || {
        let shot = screenshot(display, &window);
        if i64::from(shot.0) <= cx || i64::from(shot.1) <= cy {
            return None;
        }
        (pixel(&shot, cx, cy) != [0, 0, 0]).then_some(())
    });
    let (x, y, _, _) = geometry(display, &window);
    xdotool(display, &["windowfocus", "--sync", &window]);
    (window, x, y)
}

/// Clicks `button` until no window is titled `title` any more (a click
/// landing before egui has laid the button out does nothing), 5 clicks at
/// most.
fn click_until_gone(display: &str, title: &str, (x, y): (i64, i64), button: [f32; 4]) {
    let (bx, by) = centre(button);
    for _ in 0..5 {
        // Away first: `mousemove --sync` to where the pointer already is
        // waits for a motion that never comes (~15 s here), and Close is
        // where Send was.
        xdotool(
            display,
            &["mousemove", &(x + 4).to_string(), &(y + 4).to_string()],
        );
        click(display, x + bx, y + by);
        let deadline = Instant::now() + Duration::from_secs(6);
        while Instant::now() < deadline {
            if window_gone(display, title) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!("the window {title:?} was still there after 5 clicks");
}

/// An X server and egui windows per test: one at a time on 2 cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn begin() -> Option<std::sync::MutexGuard<'static, ()>> {
    prerequisites().then(|| SERIAL.lock().unwrap_or_else(|p| p.into_inner()))
}

#[test]
fn the_help_window_filled_and_sent_reaches_the_relay_and_cancel_sends_nothing() {
    let Some(_serial) = begin() else {
        return;
    };
    let started = Instant::now();
    let mut world = World::new();
    let setup = world.enrolled_laptop();
    let _agent = world.run_agent(&setup.agent);
    setup.admin.wait_status(&setup.device, "online", PATIENCE);
    let xvfb = Xvfb::start_in(DISPLAYS, 1024, 640).expect("an Xvfb display");
    let display = xvfb.display().to_owned();

    let help = HelpWindow::open(&setup.agent.state_dir, &display, &["--lang", "en"]);
    let (_, x, y) = drawn_window(&display);
    let typed = |field: [f32; 4], text: &str| {
        let (fx, fy) = centre(field);
        click(&display, x + fx, y + fy);
        xdotool(&display, &["type", "--delay", "40", text]);
    };
    typed(HELP_FORM_SUMMARY_INPUT, "vpn drops every hour");
    typed(HELP_FORM_CONTACT_INPUT, "phone 0612, mornings");
    // VPN ticked (beside the default "other"); urgency: blocked.
    let (vx, vy) = centre(HELP_FORM_APP_BOXES[1]);
    click(&display, x + vx, y + vy);
    let (bx, by) = centre(HELP_FORM_URGENCY_BUTTONS[2]);
    click(&display, x + bx, y + by);
    // Send: the form becomes "your request to IT" and stays open.
    click_until_gone(&display, TITLE, (x, y), HELP_FORM_SEND_BUTTON);
    let (code, out, err) = help.finish(PATIENCE);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let sent: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("not one JSON line ({e}): {out}\nstderr: {err}"));
    assert_eq!(sent["status"], "sent", "{sent}\nstderr: {err}");
    let number = sent["number"].as_u64().expect("a request number");

    let list = setup.admin.requests();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["number"].as_u64(), Some(number), "{list:?}");
    // Blocked (urgency high) × just me (impact low): ITIL priority 3.
    assert_eq!(list[0]["priority"], 3, "{}", list[0]);
    let shown = setup
        .admin
        .run(&["requests", "show", &number.to_string(), "--json"])
        .ok()
        .json();
    let answers = &shown["answers"];
    assert_eq!(answers["summary"], "vpn drops every hour", "{shown}");
    assert_eq!(answers["contact"], "phone 0612, mornings", "{shown}");
    assert_eq!(
        answers["apps"],
        serde_json::json!(["vpn", "other"]),
        "{shown}"
    );
    assert_eq!(answers["urgency"], "blocked", "{shown}");
    // Left empty: the terminal form's defaults.
    assert_eq!(answers["since"], "today", "{shown}");
    assert_eq!(answers["pattern"], "ongoing", "{shown}");
    assert!(
        shown["snapshot"].is_object(),
        "the quick check is attached: {shown}"
    );
    // The window said how it went and closes when the employee closes it.
    let filed = find_window(&display, FILED_TITLE, PATIENCE);
    assert_eq!(geometry(&display, &filed).0, x, "the same window");
    click_until_gone(&display, FILED_TITLE, (x, y), HELP_FORM_CLOSE_BUTTON);

    // The window again, a problem typed, then Cancel: nothing is sent.
    let help = HelpWindow::open(&setup.agent.state_dir, &display, &["--lang", "fr"]);
    let (_, x, y) = drawn_window(&display);
    typed_then_cancel(&display, (x, y));
    let (code, out, err) = help.finish(PATIENCE);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(
        out.contains(r#""status":"cancelled""#),
        "{out}\nstderr: {err}"
    );
    let list = setup.admin.requests();
    assert_eq!(list.len(), 1, "a cancelled form sends nothing: {list:?}");
    eprintln!(
        "help window test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn typed_then_cancel(display: &str, (x, y): (i64, i64)) {
    let (fx, fy) = centre(HELP_FORM_SUMMARY_INPUT);
    click(display, x + fx, y + fy);
    xdotool(display, &["type", "--delay", "40", "rien ne marche"]);
    click_until_gone(display, TITLE, (x, y), HELP_FORM_CANCEL_BUTTON);
}

#[test]
fn a_launcher_on_a_device_that_is_not_enrolled_shows_why_in_a_window() {
    let Some(_serial) = begin() else {
        return;
    };
    let world = World::new();
    let agent = world.agent("unenrolled");
    std::fs::create_dir_all(&agent.state_dir).expect("state dir");
    let xvfb = Xvfb::start_in(DISPLAYS, 1024, 640).expect("an Xvfb display");
    let display = xvfb.display().to_owned();
    let help = HelpWindow::open(&agent.state_dir, &display, &["--lang", "en"]);
    let (code, out, err) = help.finish(PATIENCE);
    assert_ne!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(err.contains("enroll"), "says what to do: {err}");
    // No questions are asked; the reason is shown until closed.
    assert!(window_gone(&display, TITLE), "the form opened");
    let notice = find_window(&display, FILED_TITLE, PATIENCE);
    let (x, y, _, _) = geometry(&display, &notice);
    click_until_gone(&display, FILED_TITLE, (x, y), HELP_FORM_CLOSE_BUTTON);
}
