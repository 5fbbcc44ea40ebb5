//! Help requests on a system-wide install: the agent service holds the
//! identity in its own state directory, and an employee whose own state
//! directory is empty still files requests and reads the replies, through
//! the service's local socket (`deskside_agent::session::help_channel`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use deskside_tests::{bin, wait_for, Run, World};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(60);

/// The two tests with X displays and windows run one at a time (2 cores).
static X_SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn x_serial() -> std::sync::MutexGuard<'static, ()> {
    X_SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// An employee with an empty home and state directory, who knows the
/// service only by its socket.
struct Employee {
    home: PathBuf,
    socket: PathBuf,
}

impl Employee {
    fn new(world: &World, socket: &Path) -> Employee {
        let home = world.path("employee-home");
        std::fs::create_dir_all(&home).expect("employee home");
        Employee {
            home,
            socket: socket.to_owned(),
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.home.join(".local/state/deskside-agent")
    }

    fn run(&self, args: &[&str]) -> Run {
        let output = Command::new(bin("deskside-agent"))
            // As the default for a non-root user would be; given
            // explicitly because tests may run as root, whose default is
            // the service's directory.
            .arg("--state-dir")
            .arg(self.state_dir())
            .args(args)
            .env("HOME", &self.home)
            .env("XDG_STATE_HOME", self.home.join(".local/state"))
            .env("DESKSIDE_AGENT_SOCKET", &self.socket)
            .env_remove("DESKSIDE_AGENT_STATE")
            .env_remove("DESKSIDE_ENROLL_TOKEN")
            .stdin(Stdio::null())
            .output()
            .expect("run deskside-agent");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn ask_help(&self, summary: &str) -> Value {
        self.run(&[
            "help",
            "--summary",
            summary,
            "--urgency",
            "blocked",
            "--json",
        ])
        .ok()
        .json()
    }

    fn requests(&self) -> Vec<Value> {
        self.run(&["requests", "--json"]).ok().json_lines()
    }
}

fn outbox_files(state: &Path) -> usize {
    std::fs::read_dir(state.join("requests-outbox"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().extension().and_then(|x| x.to_str()) == Some("json"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_user_without_an_identity_files_and_follows_requests_through_the_service() {
    let mut world = World::new();
    let mut setup = world.enrolled_laptop();
    let _service = world.run_agent(&setup.agent);
    setup
        .admin
        .wait_status(&setup.device, "online", Duration::from_secs(30));
    let socket = setup.agent.state_dir.join("session.sock");
    wait_for("the service's socket", LONG, || {
        socket.exists().then_some(())
    });
    let employee = Employee::new(&world, &socket);

    // 1. Filed through the service, with the device's own measurements.
    let sent = employee.ask_help("the VPN drops every hour");
    assert_eq!(sent["status"], "sent", "{sent}");
    let number = sent["number"].as_u64().expect("a number");
    let listed = setup.admin.requests();
    let request = listed
        .iter()
        .find(|r| r["number"].as_u64() == Some(number))
        .unwrap_or_else(|| panic!("request {number} listed: {listed:?}"));
    assert_eq!(request["summary"], "the VPN drops every hour");
    assert_eq!(request["device"], setup.device.as_str(), "{request}");
    assert!(
        request["verdict"].is_string(),
        "snapshot attached: {request}"
    );
    // The employee's side holds no identity and no copy; the service
    // records who asked.
    let employee_state = employee.state_dir();
    assert!(!employee_state.join("agent-key.pem").exists());
    assert_eq!(outbox_files(&employee_state), 0);
    let service_view: Value = serde_json::from_slice(
        &std::fs::read(setup.agent.state_dir.join("requests.json")).expect("requests.json"),
    )
    .expect("json");
    let uid = nix_uid();
    assert_eq!(
        service_view["local_users"][sent["client_id"].as_str().expect("id")],
        format!("uid {uid}"),
        "{service_view}"
    );

    // 2. The technician's reply reaches the employee's `requests`.
    let n = number.to_string();
    setup.admin.run(&["requests", "claim", &n]).ok();
    setup
        .admin
        .run(&["requests", "reply", &n, "Restart the VPN client, please."])
        .ok();
    let mine = wait_for("the reply through the service", LONG, || {
        employee
            .requests()
            .into_iter()
            .find(|r| r["number"].as_u64() == Some(number))
            .filter(|r| {
                r["events"].as_array().is_some_and(|events| {
                    events.iter().any(|e| {
                        e["kind"] == "reply" && e["text"] == "Restart the VPN client, please."
                    })
                })
            })
    });
    assert_eq!(mine["status"], "waiting", "{mine}");
    let text = employee.run(&["--lang", "fr", "requests"]).ok();
    assert!(text.stdout.contains("a répondu"), "{}", text.stdout);

    // 3. The relay is down: the service keeps the request in its outbox
    // and sends it once the relay is back.
    let port = setup.relay.port();
    setup.relay.proc.kill();
    let _ = setup.relay.proc.wait_exit(Duration::from_secs(10));
    let queued = employee.run(&[
        "help",
        "--summary",
        "printer offline",
        "--urgency",
        "can_work",
        "--no-diagnostics",
        "--json",
    ]);
    let queued = queued.ok().json();
    assert_eq!(queued["status"], "queued", "{queued}");
    assert_eq!(
        outbox_files(&setup.agent.state_dir),
        1,
        "in the service's outbox"
    );
    assert_eq!(
        outbox_files(&employee_state),
        0,
        "not on the employee's side"
    );
    let waiting = employee.requests();
    assert!(
        waiting
            .iter()
            .any(|r| r["status"] == "queued" && r["summary"] == "printer offline"),
        "{waiting:?}"
    );
    let _relay = world.relay(Some(port));
    let arrived = wait_for("the queued request at the relay", LONG, || {
        setup
            .admin
            .requests()
            .into_iter()
            .find(|r| r["summary"] == "printer offline")
    });
    assert_eq!(arrived["device"], setup.device.as_str());
    wait_for("the service's outbox emptied", LONG, || {
        (outbox_files(&setup.agent.state_dir) == 0).then_some(())
    });
    assert_eq!(setup.admin.requests().len(), 2, "each request once");
}

#[test]
fn without_the_service_a_user_without_an_identity_is_told_to_enroll() {
    let world = World::new();
    let employee = Employee::new(&world, &world.path("no-such.sock"));
    employee
        .run(&["help", "--summary", "x", "--json"])
        .fails_with(1, "not enrolled");
}

fn nix_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("effective uid")
}

/// Displays of the notification test (see the other tests' ranges).
const DISPLAYS: std::ops::RangeInclusive<u16> = 190..=194;

/// Whether dbus-daemon, dunst and dunstctl are installed (and Xvfb). With
/// `CI=true` a missing one is a failure; elsewhere the test says why it
/// skips.
fn notification_prerequisites() -> bool {
    let missing: Vec<&str> = ["dbus-daemon", "dunst", "dunstctl", "dbus-send"]
        .into_iter()
        .filter(|p| !deskside_tests::x11::on_path(p))
        .collect();
    if !deskside_tests::x11::prerequisites() {
        return false;
    }
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but {missing:?} are not installed (Debian: dbus dunst)");
    }
    eprintln!("SKIPPED: the notification test needs {missing:?} (Debian: dbus dunst)");
    false
}

#[test]
fn a_technicians_reply_shows_as_a_desktop_notification() {
    if !notification_prerequisites() {
        return;
    }
    let _serial = x_serial();
    let mut world = World::new();
    let setup = world.enrolled_laptop();
    let _service = world.run_agent(&setup.agent);
    setup
        .admin
        .wait_status(&setup.device, "online", Duration::from_secs(30));
    let screen = deskside_desktop::xvfb::Xvfb::start_in(DISPLAYS, 800, 600).expect("Xvfb");

    // A session bus of our own, and a real notification daemon on it.
    let bus_path = world.path("session-bus");
    let bus = format!("unix:path={}", bus_path.display());
    let mut daemon = Command::new("dbus-daemon");
    daemon.args(["--session", "--nofork", "--nopidfile", "--address", &bus]);
    let (_bus_proc, _) = world.spawn("dbus-daemon", daemon);
    wait_for("the session bus", LONG, || bus_path.exists().then_some(()));
    let dunstrc = world.path("dunstrc");
    // Notifications stay on screen until closed, so that the test reads
    // them from the history only after closing them.
    std::fs::write(
        &dunstrc,
        "[global]\n    font = Monospace 8\n[urgency_low]\n    timeout = 0\n[urgency_normal]\n    timeout = 0\n",
    )
    .expect("dunstrc");
    let mut dunst = Command::new("dunst");
    dunst
        .arg("-config")
        .arg(&dunstrc)
        .env("DISPLAY", screen.display())
        .env("DBUS_SESSION_BUS_ADDRESS", &bus);
    let (_dunst, _) = world.spawn("dunst", dunst);
    let dunstctl = |args: &[&str]| {
        let out = Command::new("dunstctl")
            .args(args)
            .env("DBUS_SESSION_BUS_ADDRESS", &bus)
            .output()
            .expect("dunstctl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_for("dunst on the bus", LONG, || {
        dunstctl(&["is-paused"]).contains("false").then_some(())
    });

    let mut helper = Command::new(bin("deskside-agent"));
    helper
        .arg("session-helper")
        .arg("--socket")
        .arg(setup.agent.state_dir.join("session.sock"))
        .env("DISPLAY", screen.display())
        .env("DBUS_SESSION_BUS_ADDRESS", &bus)
        .env("LANG", "C.UTF-8")
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .env("RUST_LOG", "info,deskside_agent=debug");
    let (helper, _) = world.spawn("helper", helper);
    wait_for("the helper to connect", LONG, || {
        _service
            .log()
            .contains("session helper connected")
            .then_some(())
    });

    let sent = setup
        .agent
        .ask_help("mail does not sync", "slowed", &["--no-diagnostics"]);
    let number = sent["number"].as_u64().expect("sent");
    let n = number.to_string();
    setup
        .admin
        .run(&[
            "requests",
            "reply",
            &n,
            "Your mailbox is full; I freed space.",
        ])
        .ok();
    let shown = wait_for("the reply in dunst", LONG, || {
        // Closed notifications go to the history, which dunstctl reads.
        dunstctl(&["close-all"]);
        let history: Value = serde_json::from_str(&dunstctl(&["history"])).ok()?;
        let entries = history["data"][0].as_array()?.clone();
        entries.into_iter().find(|e| {
            e["body"]["data"]
                .as_str()
                .is_some_and(|b| b.contains("Your mailbox is full; I freed space."))
        })
    });
    assert_eq!(
        shown["summary"]["data"],
        format!("IT replied to your request #{number}"),
        "{shown}\nhelper log:\n{}",
        helper.log()
    );
    assert_eq!(shown["appname"]["data"], "deskside", "{shown}");
}

/// Displays of the indicator test (two: the employee's and the console's).
const STAGE_DISPLAYS: std::ops::RangeInclusive<u16> = 195..=199;

#[test]
fn the_indicators_ask_for_help_button_opens_the_form_and_its_request_arrives() {
    use deskside_session_ui::help_form::{
        HELP_FORM_CANCEL_BUTTON, HELP_FORM_SEND_BUTTON, HELP_FORM_SUMMARY_INPUT,
    };
    use deskside_session_ui::INDICATOR_ASK_HELP_BUTTON;
    use deskside_tests::stage::{SessionStage, StageOptions};
    use deskside_tests::x11::{centre, click, find_window, geometry, pixel, screenshot, xdotool};
    if !deskside_tests::x11::prerequisites() {
        return;
    }
    let _serial = x_serial();
    let mut stage = SessionStage::start(&StageOptions {
        relay_program: "deskside-relay".into(),
        relay_args: Vec::new(),
        agent_screen: (1024, 768),
        console_screen: (640, 480),
        displays: STAGE_DISPLAYS,
        xclient_args: Vec::new(),
        agent_monitors: 1,
    });
    let (mut session, out) = stage.session(&["--headless", "--duration", "90s"]);
    out.until(LONG, |v| v["state"] == "waiting_for_consent");
    stage.answer_consent(true);
    out.until(LONG, |v| v["state"] == "started");
    let display = stage.agent_x.display().to_owned();
    let indicator = find_window(&display, "session active", LONG);
    // Clicked until the form opens (a click before egui laid the button
    // out does nothing), at most 5 times.
    let (bx, by) = centre(INDICATOR_ASK_HELP_BUTTON);
    let mut form = None;
    for _ in 0..5 {
        let (ix, iy, _, _) = geometry(&display, &indicator);
        click(&display, ix + bx, iy + by);
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while form.is_none() && std::time::Instant::now() < deadline {
            form = xdotool(
                &display,
                &["search", "--onlyvisible", "--name", "ask IT for help"],
            )
            .lines()
            .last()
            .map(str::to_owned);
            std::thread::sleep(Duration::from_millis(200));
        }
        if form.is_some() {
            break;
        }
    }
    let form = form.unwrap_or_else(|| {
        panic!(
            "no help window after 5 clicks; helper log:\n{}",
            stage.helper.log()
        )
    });
    // Drawn (an undrawn window is black where Cancel's grey will be).
    let (cx, cy) = centre(HELP_FORM_CANCEL_BUTTON);
    wait_for("the help window to be drawn", LONG, || {
        let shot = screenshot(&display, &form);
        (i64::from(shot.0) > cx && i64::from(shot.1) > cy && pixel(&shot, cx, cy) != [0, 0, 0])
            .then_some(())
    });
    let (fx, fy, _, _) = geometry(&display, &form);
    xdotool(&display, &["windowfocus", "--sync", &form]);
    let (sx, sy) = centre(HELP_FORM_SUMMARY_INPUT);
    click(&display, fx + sx, fy + sy);
    xdotool(
        &display,
        &["type", "--delay", "40", "asked from the indicator"],
    );
    let (px, py) = centre(HELP_FORM_SEND_BUTTON);
    let arrived = wait_for("the request from the indicator's form", LONG, || {
        // Send again until it took (a click before the layout does nothing;
        // once sent, the button's place shows Close, which a later click
        // would only press after the request arrived).
        let listed = stage.console.requests();
        if let Some(found) = listed
            .into_iter()
            .find(|r| r["summary"] == "asked from the indicator")
        {
            return Some(found);
        }
        xdotool(
            &display,
            &["search", "--onlyvisible", "--name", "ask IT for help"],
        )
        .lines()
        .next()
        .is_some()
        .then(|| click(&display, fx + px, fy + py));
        std::thread::sleep(Duration::from_secs(1));
        None
    });
    assert_eq!(arrived["device"], stage.device.as_str(), "{arrived}");
    assert!(
        stage
            .helper
            .log()
            .contains("the help window was opened from the indicator"),
        "{}",
        stage.helper.log()
    );
    session.terminate();
}
