//! The employee's windows on Windows: `deskside-agent.exe consent-dialog`
//! and `session-indicator` (what the session helper runs, through
//! `deskside_session_ui::subprocess`) under Wine on a private Xvfb, clicked
//! through X11 (XTEST, with xdotool) at the documented button positions.
//!
//! Under Wine the egui windows draw with OpenGL through WGL (Wine's winex11
//! turns it into GLX on the Xvfb, rendered by Mesa's llvmpipe). Wine's
//! default 96 DPI makes the scale factor 1: one window point is one pixel,
//! which the first test checks from the window's size.
//!
//! Run by scripts/windows-tests (`cargo test -p deskside-tests --features
//! wine --test windows_ui`) after it builds the `.exe`. Without Wine, the
//! `.exe`, Xvfb, xdotool or `import`, these tests skip with a message, or
//! fail when `CI=true`.
//!
//! The tests run one at a time (a lock), each on its own Xvfb, and each waits
//! for the Wine prefix's processes to end before the next starts: Wine's
//! desktop process (explorer.exe) is started by the first window of a
//! prefix and stays on that window's display.

use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use deskside_desktop::xvfb::Xvfb;
use deskside_protocol::session::Capabilities;
use deskside_session_ui::subprocess::{ask_consent_in_subprocess, IndicatorProcess};
use deskside_session_ui::{
    ConsentAnswer, ConsentRequest, IndicatorCommand, IndicatorInfo, UiError, CONSENT_ACCEPT_BUTTON,
    CONSENT_REFUSE_BUTTON, CONSENT_WINDOW_SIZE, INDICATOR_DOWNGRADE_BUTTON, INDICATOR_HELP_BUTTON,
    INDICATOR_STOP_BUTTON, INDICATOR_WINDOW_SIZE,
};
use deskside_tests::wine::Wine;
use deskside_tests::{wait_for, x11};

/// Wine starts programs slowly on a loaded 2-core machine.
const WINDOW: Duration = Duration::from_secs(120);
/// How long the employee has to answer in these tests.
const CONSENT_TIMEOUT: Duration = Duration::from_secs(90);
/// Title fragments of the two windows (`CONSENT_TITLE`, `INDICATOR_TITLE`).
const CONSENT_WINDOW: &str = "remote support request";
const INDICATOR_WINDOW: &str = "session active";

/// One test at a time: see the file's comment.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// What every test here needs: Wine with the agent `.exe`, a private Xvfb,
/// and the lock. On drop, waits (bounded) for the prefix's Wine processes
/// to end, so the next test's windows start a desktop on its own display.
struct Stage {
    wine: Wine,
    xvfb: Xvfb,
    _turn: MutexGuard<'static, ()>,
}

impl Stage {
    fn start(test: &str) -> Option<Self> {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let wine = Wine::find(test)?;
        if !x11::prerequisites() {
            return None;
        }
        // An earlier step of the run (another test binary) may have left
        // the prefix's desktop on a display that is gone.
        wait_for_prefix_idle(&wine);
        let xvfb = Xvfb::start(1280, 800).expect("Xvfb starts on a free display");
        Some(Self {
            wine,
            xvfb,
            _turn: turn,
        })
    }

    fn display(&self) -> &str {
        self.xvfb.display()
    }

    /// `deskside-agent.exe SUBCOMMAND` under Wine on this stage's display.
    fn agent_window(&self, subcommand: &str) -> Command {
        let mut command = self.wine.command(self.wine.agent_exe());
        command
            .arg(subcommand)
            .env("DISPLAY", self.display())
            .env("LANG", "en_US.UTF-8")
            .env_remove("LC_ALL")
            .env_remove("LC_MESSAGES");
        command
    }

    /// Waits for a visible window named `title`; returns its id and its
    /// top-left corner on the screen.
    fn window(&self, title: &str) -> (String, i64, i64) {
        let id = x11::find_window(self.display(), title, WINDOW);
        let (x, y, _, _) = x11::geometry(self.display(), &id);
        (id, x, y)
    }

    /// Waits until the window's pixel at `at` (window pixels) passes `check`.
    fn wait_for_pixel(
        &self,
        what: &str,
        window: &str,
        at: (i64, i64),
        check: impl Fn([u8; 3]) -> bool,
    ) {
        wait_for(what, WINDOW, || {
            let shot = x11::screenshot(self.display(), window);
            check(x11::pixel(&shot, at.0, at.1)).then_some(())
        });
    }

    /// Clicks at `at` in window pixels of a window whose corner is `origin`.
    fn click(&self, origin: (i64, i64), at: (i64, i64)) {
        x11::click(self.display(), origin.0 + at.0, origin.1 + at.1);
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        wait_for_prefix_idle(&self.wine);
    }
}

/// Waits (at most 60 s) until the prefix's wineserver has exited, which it
/// does a few seconds after its last program ends. Kills nothing.
fn wait_for_prefix_idle(wine: &Wine) {
    if !wine.prefix().exists() {
        return; // not created yet: no wineserver
    }
    if !wine.wait_for_wineserver_exit(Duration::from_secs(60)) {
        eprintln!(
            "warning: the Wine prefix {} still had processes after 60 s",
            wine.prefix().display()
        );
    }
}

fn request(accept_after: Option<Duration>) -> ConsentRequest {
    ConsentRequest {
        technician: "Alice Martin".into(),
        organisation: "ACME IT".into(),
        capabilities: Capabilities::CONTROL,
        reason: "Your printer does not print".into(),
        verification_code: "482 913".into(),
        timeout: Some(CONSENT_TIMEOUT),
        accept_after,
    }
}

/// Anything but the black of a window not drawn yet.
fn drawn(pixel: [u8; 3]) -> bool {
    pixel.iter().any(|c| *c > 10)
}

type Answer = std::thread::JoinHandle<Result<ConsentAnswer, UiError>>;

/// Starts the consent dialog process and waits until it is on screen and
/// drawn; returns the answer's thread, the window's id and corner.
fn open_consent(stage: &Stage, request: ConsentRequest) -> (Answer, String, (i64, i64)) {
    let command = stage.agent_window("consent-dialog");
    let answer = std::thread::spawn(move || ask_consent_in_subprocess(command, &request));
    let (id, x, y) = stage.window(CONSENT_WINDOW);
    stage.wait_for_pixel("the consent dialog drawn", &id, (4, 4), drawn);
    (answer, id, (x, y))
}

fn answer_of(answer: Answer) -> ConsentAnswer {
    answer
        .join()
        .expect("the dialog thread does not panic")
        .expect("the consent process under Wine answers")
}

#[test]
fn consent_under_wine_accept_is_clickable_at_its_documented_place_once_armed() {
    let Some(stage) = Stage::start("windows_ui::consent_accept") else {
        return;
    };
    // The default 1 s arming.
    let (answer, id, origin) = open_consent(&stage, request(None));
    // Scale factor 1: the window is exactly its size in points.
    let (_, _, width, height) = x11::geometry(stage.display(), &id);
    assert_eq!(
        [width as f32, height as f32],
        CONSENT_WINDOW_SIZE,
        "the consent window under Wine is not at scale factor 1"
    );
    let accept = x11::centre(CONSENT_ACCEPT_BUTTON);
    stage.wait_for_pixel("the armed Accept button", &id, accept, x11::armed_green);
    stage.click(origin, accept);
    assert_eq!(answer_of(answer), ConsentAnswer::Accepted);
}

/// A click on Accept as the dialog pops up, before it is armed, does
/// nothing; the same click once armed accepts.
#[test]
fn consent_under_wine_ignores_accept_before_it_is_armed() {
    let Some(stage) = Stage::start("windows_ui::consent_arming") else {
        return;
    };
    // Longer than the default 1 s so that the early click lands before the
    // arming even on a loaded machine (the default is checked above).
    let arming = Duration::from_secs(5);
    let (answer, id, origin) = open_consent(&stage, request(Some(arming)));
    let drawn_at = Instant::now();
    let accept = x11::centre(CONSENT_ACCEPT_BUTTON);
    let shot = x11::screenshot(stage.display(), &id);
    stage.click(origin, accept);
    let clicked = drawn_at.elapsed();
    assert!(
        clicked < arming,
        "the early click took {clicked:?}, longer than the {arming:?} arming: the machine is too slow for this test"
    );
    assert!(
        !x11::armed_green(x11::pixel(&shot, accept.0, accept.1)),
        "Accept was armed when first drawn"
    );
    // Long enough for the click to have been handled, shorter than the arming.
    std::thread::sleep((arming - clicked) / 2);
    assert!(
        !answer.is_finished(),
        "a click {clicked:?} after the first frame, before the {arming:?} arming, answered"
    );
    stage.wait_for_pixel("the armed Accept button", &id, accept, x11::armed_green);
    stage.click(origin, accept);
    assert_eq!(answer_of(answer), ConsentAnswer::Accepted);
}

#[test]
fn consent_under_wine_refuse_refuses() {
    let Some(stage) = Stage::start("windows_ui::consent_refuse") else {
        return;
    };
    let (answer, id, origin) = open_consent(&stage, request(None));
    // Refuse is there from the start; wait for the arming anyway so that
    // a Refused answer cannot come from an unarmed Accept.
    stage.wait_for_pixel(
        "the armed Accept button",
        &id,
        x11::centre(CONSENT_ACCEPT_BUTTON),
        x11::armed_green,
    );
    stage.click(origin, x11::centre(CONSENT_REFUSE_BUTTON));
    assert_eq!(answer_of(answer), ConsentAnswer::Refused);
}

/// At 150 % (144 DPI, set in the prefix's registry for this test) the
/// dialog and its buttons grow by 1.5: Accept is clicked at its documented
/// place times the scale factor.
#[test]
fn consent_under_wine_at_150_percent_scales_its_buttons_with_the_window() {
    let Some(stage) = Stage::start("windows_ui::consent_150_percent") else {
        return;
    };
    let _dpi = Dpi::set(&stage.wine, 144);
    let scale = 1.5;
    let (answer, id, origin) = open_consent(&stage, request(None));
    let (_, _, width, height) = x11::geometry(stage.display(), &id);
    assert_eq!(
        [width as f32, height as f32],
        CONSENT_WINDOW_SIZE.map(|v| v * scale),
        "the consent window at 144 DPI is not 1.5 times its size in points"
    );
    let (ax, ay) = x11::centre(CONSENT_ACCEPT_BUTTON);
    let accept = (
        (ax as f32 * scale).round() as i64,
        (ay as f32 * scale).round() as i64,
    );
    stage.wait_for_pixel("the armed Accept button", &id, accept, x11::armed_green);
    stage.click(origin, accept);
    assert_eq!(answer_of(answer), ConsentAnswer::Accepted);
}

/// The prefix's DPI (`HKCU\Control Panel\Desktop\LogPixels`), put back
/// as it was on drop.
struct Dpi {
    wine: Wine,
    before: Option<String>,
}

const DESKTOP_KEY: &str = r"HKCU\Control Panel\Desktop";

impl Dpi {
    fn set(wine: &Wine, dpi: u32) -> Self {
        let query = wine.run("reg", &["query", DESKTOP_KEY, "/v", "LogPixels"]);
        // "    LogPixels    REG_DWORD    0x60"
        let before = (query.code == 0)
            .then(|| {
                query
                    .stdout
                    .split_whitespace()
                    .skip_while(|w| *w != "REG_DWORD")
                    .nth(1)
                    .and_then(|v| u32::from_str_radix(v.trim_start_matches("0x"), 16).ok())
                    .map(|v| v.to_string())
            })
            .flatten();
        let add = add_log_pixels(wine, &dpi.to_string());
        assert_eq!(add.code, 0, "reg add LogPixels failed: {add:?}");
        // The setting is read when the prefix's programs start.
        wait_for_prefix_idle(wine);
        Self {
            wine: wine.clone(),
            before,
        }
    }
}

impl Drop for Dpi {
    fn drop(&mut self) {
        wait_for_prefix_idle(&self.wine);
        let put_back = match &self.before {
            Some(value) => add_log_pixels(&self.wine, value),
            None => self
                .wine
                .run("reg", &["delete", DESKTOP_KEY, "/v", "LogPixels", "/f"]),
        };
        if put_back.code != 0 {
            eprintln!("warning: could not put LogPixels back in the Wine prefix: {put_back:?}");
        }
    }
}

/// `reg add` of the prefix's `LogPixels` (decimal `dpi`), replacing any.
fn add_log_pixels(wine: &Wine, dpi: &str) -> deskside_tests::Run {
    wine.run(
        "reg",
        &[
            "add",
            DESKTOP_KEY,
            "/v",
            "LogPixels",
            "/t",
            "REG_DWORD",
            "/d",
            dpi,
            "/f",
        ],
    )
}

#[test]
fn indicator_under_wine_switches_to_view_only_then_stops() {
    let Some(stage) = Stage::start("windows_ui::indicator") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let info = IndicatorInfo {
        technician: "Alice Martin".into(),
        organisation: "ACME IT".into(),
        granted: Capabilities::CONTROL,
        verification_code: "482 913".into(),
    };
    let (process, mut commands) =
        IndicatorProcess::spawn(stage.agent_window("session-indicator"), &info)
            .expect("the indicator process starts");
    let mut process = Killed(Some(process));
    let (id, x, y) = stage.window(INDICATOR_WINDOW);
    let (_, _, width, height) = x11::geometry(stage.display(), &id);
    assert_eq!([width as f32, height as f32], INDICATOR_WINDOW_SIZE);
    let stop = x11::centre(INDICATOR_STOP_BUTTON);
    // The Stop button is red once drawn.
    stage.wait_for_pixel("the indicator's Stop button", &id, stop, |[r, g, b]| {
        r > g.saturating_add(60) && r > b.saturating_add(60)
    });
    let mut next = || {
        runtime
            .block_on(async { tokio::time::timeout(WINDOW, commands.recv()).await })
            .expect("the indicator sends a command in time")
            .expect("the indicator's channel stays open until Stop")
    };
    // The Windows build has the "?" help (elevated windows, UAC): it
    // replaces the empty chat with text.
    let chat_area = |shot: &(u32, u32, Vec<u8>)| -> Vec<[u8; 3]> {
        (130..190)
            .flat_map(|py| (12..348).map(move |px| (px, py)))
            .map(|(px, py)| x11::pixel(shot, px, py))
            .collect()
    };
    let before = chat_area(&x11::screenshot(stage.display(), &id));
    stage.click((x, y), x11::centre(INDICATOR_HELP_BUTTON));
    wait_for("the Windows help text in the indicator", WINDOW, || {
        let after = chat_area(&x11::screenshot(stage.display(), &id));
        let changed = before
            .iter()
            .zip(&after)
            .filter(|(a, b)| !x11::close_to(**a, **b))
            .count();
        (changed > 200).then_some(())
    });
    stage.click((x, y), x11::centre(INDICATOR_DOWNGRADE_BUTTON));
    assert_eq!(next(), IndicatorCommand::DowngradeToViewOnly);
    stage.click((x, y), stop);
    assert_eq!(next(), IndicatorCommand::Stop);
    let status = process
        .0
        .take()
        .expect("still held")
        .close()
        .expect("the indicator process ends");
    assert!(status.success(), "indicator exit status {status}");
}

/// Kills the indicator process if a test fails before it closed it.
struct Killed(Option<IndicatorProcess>);

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(process) = self.0.take() {
            let _ = process.kill();
        }
    }
}
