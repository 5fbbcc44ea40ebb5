//! End-to-end: privacy settings and consent hold at once.
//!
//! - A policy change reaches connected agents immediately, and `policy set`
//!   says how many applied it.
//! - Every technician-initiated diagnostic collection is audited, and the
//!   employee's local history names the technician.
//! - A session request the technician gives up on (Ctrl-C) while the
//!   consent dialog is open is withdrawn: the dialog says so and closes,
//!   accepting is impossible, and the audit records a withdrawal, not a
//!   session.
//! - A console that cannot show a session does not ask the employee.
//!
//! The session tests need Xvfb, xdotool and ImageMagick's `import`: with
//! `CI=true` a missing one fails the test; elsewhere it is skipped with a
//! message.

use std::time::Duration;

use deskside_tests::stage::{SessionStage, StageOptions};
use deskside_tests::x11::{centre, click, find_window, geometry, prerequisites, window_gone};
use deskside_tests::{wait_for, Agent, Console, Enrolled, Proc, Relay, World};
use serde_json::Value;

/// A relay, a logged-in admin console and one enrolled, running agent.
struct Fleet {
    world: World,
    relay: Relay,
    admin: Console,
    agent: Agent,
    device: String,
    running: Proc,
}

impl Fleet {
    fn start() -> Self {
        let mut world = World::new();
        let Enrolled {
            relay,
            admin,
            agent,
            device,
        } = world.enrolled_laptop();
        let running = world.run_agent(&agent);
        admin.wait_status(&device, "online", Duration::from_secs(20));
        Self {
            world,
            relay,
            admin,
            agent,
            device,
            running,
        }
    }

    fn audit(&self) -> Vec<Value> {
        self.admin
            .run(&["--json", "audit", "list", "--device", &self.device])
            .ok()
            .json_lines()
    }
}

#[test]
fn a_policy_change_reaches_a_connected_agent_at_once() {
    let fleet = Fleet::start();
    // Before: a technician may collect without asking the employee.
    fleet
        .admin
        .run(&["diag", &fleet.device, "--json"])
        .ok()
        .json();

    let set = fleet
        .admin
        .run(&["policy", "set", "diagnostics_consent", "employee", "--json"])
        .ok()
        .json();
    assert_eq!(set["type"], "policy", "{set}");
    assert_eq!(set["diagnostics_consent"], "employee", "{set}");
    assert_eq!(set["connected"], 1, "one agent is connected: {set}");
    assert_eq!(set["applied"], 1, "the connected agent confirmed: {set}");

    // The agent did not reconnect, yet it applies the new policy now.
    fleet
        .admin
        .run(&["diag", &fleet.device, "--json"])
        .fails_with(1, "requires the employee's approval");
    assert!(
        !fleet.running.log().contains("connection to the relay lost"),
        "the agent reconnected: {}",
        fleet.running.log()
    );

    // The text output says the same.
    let text = fleet
        .admin
        .run(&["policy", "set", "diagnostics_consent", "not_required"])
        .ok();
    assert!(
        text.stdout.contains("Applied on 1 of 1 connected agents"),
        "{}",
        text.stdout
    );
    fleet
        .admin
        .run(&["diag", &fleet.device, "--json"])
        .ok()
        .json();
    drop(fleet.relay);
}

#[test]
fn technician_diagnostics_are_audited_and_the_employee_sees_who_asked() {
    let fleet = Fleet::start();
    let me = fleet.admin.run(&["--json", "whoami"]);
    let technician = if me.code == 0 {
        me.json()["technician"].as_str().map(str::to_owned)
    } else {
        None
    };
    fleet.admin.run(&["diag", &fleet.device, "--json"]).ok();
    fleet
        .admin
        .run(&["diag", "--all", "--json"])
        .ok()
        .json_lines();
    fleet
        .admin
        .run(&["diag", &fleet.device, "--throughput", "--json"])
        .ok();

    let audit = fleet.audit();
    let collected: Vec<&Value> = audit
        .iter()
        .filter(|row| row["action"] == "diagnostics.collect")
        .collect();
    assert_eq!(
        collected.len(),
        3,
        "one audit row per collection (diag, diag --all, diag --throughput): {audit:#?}"
    );
    let target = format!("device:{}", fleet.device);
    for row in &collected {
        assert_eq!(row["target"], target.as_str(), "{row}");
        let actor = row["actor"].as_str().unwrap_or_default();
        assert!(actor.starts_with("technician:"), "{row}");
        let detail = &row["detail"];
        assert!(
            detail["collected"]
                .as_array()
                .is_some_and(|sections| sections.iter().any(|s| s == "device")),
            "what was collected: {row}"
        );
    }
    // Newest first: the --throughput run moved data; the others did not.
    assert_eq!(collected[0]["detail"]["throughput"], true, "{audit:#?}");
    assert_eq!(collected[1]["detail"]["throughput"], false, "{audit:#?}");
    assert_eq!(collected[2]["detail"]["throughput"], false, "{audit:#?}");

    // One spelling of the technician as an actor, whatever they did.
    fleet
        .admin
        .run(&["policy", "set", "diagnostics_retention", "50"])
        .ok();
    let everything = fleet
        .admin
        .run(&["--json", "audit", "list"])
        .ok()
        .json_lines();
    let policy_actor = everything
        .iter()
        .find(|row| row["action"] == "policy.set")
        .map(|row| row["actor"].clone())
        .expect("policy.set row");
    assert_eq!(collected[0]["actor"], policy_actor, "{everything:#?}");

    // The employee sees that a technician collected, and which one.
    let local = fleet.agent.run(&["history", "--json"]).ok().json_lines();
    let by_technician: Vec<&Value> = local
        .iter()
        .filter(|e| e["requested_by"] == "technician")
        .collect();
    assert_eq!(by_technician.len(), 3, "{local:#?}");
    let actor = policy_actor.as_str().unwrap_or_default();
    let name = technician.unwrap_or_else(|| {
        // `technician:ID (NAME)`
        actor
            .split_once(" (")
            .map(|(_, rest)| rest.trim_end_matches(')').to_owned())
            .unwrap_or_default()
    });
    assert!(!name.is_empty(), "{actor}");
    for entry in &by_technician {
        assert_eq!(entry["technician"], name.as_str(), "{entry}");
    }
    let text = fleet.agent.run(&["history"]).ok();
    assert!(
        text.stdout.contains(&name),
        "the history names the technician {name:?}:\n{}",
        text.stdout
    );
    drop(fleet.world);
}

// ---------------------------------------------------------------------------
// Sessions (Xvfb)
// ---------------------------------------------------------------------------

const CONSENT_TITLE: &str = "remote support request";
const WITHDRAWN_TITLE: &str = "offer withdrawn";

/// Two X servers and egui windows per test: one at a time on 2 cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn begin() -> Option<std::sync::MutexGuard<'static, ()>> {
    prerequisites().then(|| SERIAL.lock().unwrap_or_else(|p| p.into_inner()))
}

fn options() -> StageOptions {
    StageOptions {
        relay_program: "deskside-relay".into(),
        relay_args: Vec::new(),
        agent_screen: (1024, 640),
        console_screen: (1024, 640),
        // Clear of sessions.rs (60–79) and the crates' own tests (40–59).
        displays: 90..=99,
        xclient_args: vec!["--text".into(), "WITHDRAW-CANARY".into()],
        agent_monitors: 1,
    }
}

fn interrupt(proc: &Proc) {
    let status = std::process::Command::new("kill")
        .args(["-INT", &proc.pid().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
}

#[test]
fn a_cancelled_request_closes_the_dialog_and_cannot_be_accepted() {
    let Some(_serial) = begin() else {
        return;
    };
    let mut stage = SessionStage::start(&options());
    let display = stage.agent_x.display().to_owned();
    let (mut session, out) = stage.session(&["--headless"]);
    let prompt = out.until(Duration::from_secs(30), |v| {
        v["state"] == "waiting_for_consent"
    });
    let session_id = prompt
        .iter()
        .find(|v| v["state"] == "waiting_for_consent")
        .and_then(|v| v["session_id"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no session id: {prompt:?}\n{}", session.log()));
    let window = find_window(&display, CONSENT_TITLE, Duration::from_secs(30));
    let (x, y, _, _) = geometry(&display, &window);

    // The technician presses Ctrl-C while the employee reads the dialog.
    interrupt(&session);
    let status = session
        .wait_exit(Duration::from_secs(10))
        .expect("the console stopped on Ctrl-C");
    assert_ne!(status.code(), Some(0), "{}", session.log());

    // The dialog says the request was withdrawn, well before its own 60 s.
    find_window(&display, WITHDRAWN_TITLE, Duration::from_secs(15));
    // Where Accept was: clicking there accepts nothing.
    let (bx, by) = centre(deskside_session_ui::CONSENT_ACCEPT_BUTTON);
    click(&display, x + bx, y + by);
    wait_for(
        "the withdrawn dialog to close",
        Duration::from_secs(20),
        || {
            (window_gone(&display, WITHDRAWN_TITLE) && window_gone(&display, CONSENT_TITLE))
                .then_some(())
        },
    );

    let audit = stage.audit();
    let withdrawn: Vec<&Value> = audit
        .iter()
        .filter(|row| row["action"] == "session.withdrawn")
        .collect();
    assert_eq!(withdrawn.len(), 1, "{audit:#?}");
    // One spelling of a session id: the console's is the audit's.
    assert_eq!(
        withdrawn[0]["detail"]["session_id"],
        session_id.as_str(),
        "{audit:#?}"
    );
    assert!(
        audit
            .iter()
            .all(|row| row["action"] != "session.consent" && row["action"] != "session.end"),
        "a withdrawn request is neither consented nor a session that ran: {audit:#?}"
    );
    assert!(
        !stage.helper.log().contains("capture"),
        "the helper started capturing:\n{}",
        stage.helper.log()
    );
    assert!(
        !stage.helper.log().contains("consent answered"),
        "an answer left the helper after the withdrawal:\n{}",
        stage.helper.log()
    );
}

#[test]
fn a_console_without_a_display_does_not_ask_the_employee() {
    let fleet = Fleet::start();
    let mut command = std::process::Command::new(deskside_tests::bin("deskside"));
    command
        .arg("--profile")
        .arg(&fleet.admin.profile)
        .args(["session", &fleet.device, "--reason", "no screen here"])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .stdin(std::process::Stdio::null());
    let output = command.output().expect("run deskside session");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("display"), "says why: {stderr}");
    assert!(stderr.contains("--headless"), "says what to do: {stderr}");
    let audit = fleet.audit();
    assert!(
        audit.iter().all(|row| !row["action"]
            .as_str()
            .unwrap_or_default()
            .starts_with("session.")),
        "the employee was asked: {audit:#?}"
    );
    assert!(
        !fleet.running.log().contains("asking the employee"),
        "the agent asked the employee: {}",
        fleet.running.log()
    );
}

#[test]
fn a_monitor_the_device_does_not_have_is_refused_before_the_dialog() {
    let Some(_serial) = begin() else {
        return;
    };
    let mut stage = SessionStage::start(&StageOptions {
        agent_monitors: 2,
        ..options()
    });
    let display = stage.agent_x.display().to_owned();
    // The helper reports its monitors when it connects; the relay knows
    // them once the agent forwarded them.
    wait_for(
        "the relay to learn the device's monitors",
        Duration::from_secs(20),
        || {
            stage
                .relay
                .proc
                .log()
                .contains("the device's monitors count=2")
                .then_some(())
        },
    );
    let (mut session, out) = stage.session(&["--headless", "--monitor", "5"]);
    let status = session
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("the console waited for an answer: {}", session.log()));
    assert_eq!(status.code(), Some(1), "{}", session.log());
    let log = session.log();
    assert!(log.contains("has 2 monitor(s)"), "says why: {log}");
    assert!(
        log.contains("--monitor takes 0 to 1"),
        "says what to do: {log}"
    );
    assert!(
        out.drain()
            .iter()
            .all(|v| v["state"] != "waiting_for_consent"),
        "the console waited for consent"
    );
    assert!(
        window_gone(&display, CONSENT_TITLE),
        "the employee was asked"
    );
    assert!(
        stage.audit().iter().all(|row| !row["action"]
            .as_str()
            .unwrap_or_default()
            .starts_with("session.")),
        "a session was requested"
    );
    // An existing monitor is asked for as usual.
    let (mut session, out) = stage.session(&["--headless", "--monitor", "1", "--duration", "3s"]);
    out.until(Duration::from_secs(30), |v| {
        v["state"] == "waiting_for_consent"
    });
    stage.answer_consent(true);
    let started = out.until(Duration::from_secs(30), |v| v["state"] == "started");
    let started = started
        .iter()
        .find(|v| v["state"] == "started")
        .unwrap_or_else(|| panic!("the session did not start: {}", session.log()));
    assert_eq!(started["selected"], 1, "{started}");
    assert_eq!(started["monitors"], 2, "{started}");
    let status = session
        .wait_exit(Duration::from_secs(30))
        .expect("the session ended after --duration");
    assert_eq!(status.code(), Some(0), "{}", session.log());
}

#[test]
fn a_console_that_dies_while_the_dialog_is_open_withdraws_the_request() {
    let Some(_serial) = begin() else {
        return;
    };
    let mut stage = SessionStage::start(&options());
    let display = stage.agent_x.display().to_owned();
    let (mut session, out) = stage.session(&["--headless"]);
    out.until(Duration::from_secs(30), |v| {
        v["state"] == "waiting_for_consent"
    });
    find_window(&display, CONSENT_TITLE, Duration::from_secs(30));
    // A crash: no goodbye to the relay or the device. The relay notices
    // the silence after its idle timeout (6 s in tests).
    session.kill();
    find_window(&display, WITHDRAWN_TITLE, Duration::from_secs(20));
    wait_for(
        "the withdrawn dialog to close",
        Duration::from_secs(20),
        || window_gone(&display, WITHDRAWN_TITLE).then_some(()),
    );
    let audit = stage.audit();
    let withdrawn = audit
        .iter()
        .find(|row| row["action"] == "session.withdrawn")
        .unwrap_or_else(|| panic!("no withdrawal: {audit:#?}"));
    assert_eq!(
        withdrawn["detail"]["reason"], "console_disconnected",
        "{withdrawn}"
    );
    assert!(
        withdrawn["actor"]
            .as_str()
            .is_some_and(|actor| actor.starts_with("technician:")),
        "{withdrawn}"
    );
    assert!(
        audit
            .iter()
            .all(|row| row["action"] != "session.consent" && row["action"] != "session.end"),
        "{audit:#?}"
    );
}

#[test]
fn a_viewer_that_fails_after_consent_exits_non_zero_with_the_reason() {
    let Some(_serial) = begin() else {
        return;
    };
    let mut stage = SessionStage::start(&options());
    // A display is named, so the console asks, but no X server answers
    // there: the window fails once the session has started.
    let mut command = std::process::Command::new(deskside_tests::bin("deskside"));
    command
        .arg("--profile")
        .arg(&stage.console.profile)
        .args([
            "--json",
            "session",
            &stage.device,
            "--reason",
            "broken screen",
        ])
        .env("DISPLAY", ":987")
        .env_remove("WAYLAND_DISPLAY")
        .env("LIBGL_ALWAYS_SOFTWARE", "1")
        .stdin(std::process::Stdio::null());
    let (mut session, stdout) = stage.world.spawn("console-no-x", command);
    let out = deskside_tests::x11::Lines::new(stdout);
    out.until(Duration::from_secs(30), |v| {
        v["state"] == "waiting_for_consent"
    });
    stage.answer_consent(true);
    let status = session
        .wait_exit(Duration::from_secs(40))
        .unwrap_or_else(|| panic!("the console went on without a window: {}", session.log()));
    assert_eq!(status.code(), Some(1), "{}", session.log());
    assert!(
        session.log().contains("viewer window"),
        "says why: {}",
        session.log()
    );
    let after = out.drain();
    assert!(
        after.iter().any(|v| v["state"] == "started"),
        "the window failed after the consent, not before: {after:?}"
    );
    // The session did not run on without anyone watching.
    wait_for("the session's end row", Duration::from_secs(20), || {
        stage
            .audit()
            .iter()
            .any(|row| row["action"] == "session.end")
            .then_some(())
    });
}

#[test]
fn a_console_that_loses_the_relay_while_the_dialog_is_open_withdraws_the_request() {
    let Some(_serial) = begin() else {
        return;
    };
    let mut stage = SessionStage::start(&options());
    let display = stage.agent_x.display().to_owned();
    let proxy = stage.console_through_proxy();
    let (mut session, out) = stage.session(&["--headless"]);
    out.until(Duration::from_secs(30), |v| {
        v["state"] == "waiting_for_consent"
    });
    find_window(&display, CONSENT_TITLE, Duration::from_secs(30));
    // The technician's network goes away for longer than the relay's idle
    // timeout (6 s in tests); the dialog must not wait for them.
    let pid = proxy.pid().to_string();
    let signal = |name: &str| {
        std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .expect("kill")
    };
    signal("-STOP");
    let withdrawn = std::panic::catch_unwind(|| {
        find_window(&display, WITHDRAWN_TITLE, Duration::from_secs(20));
    });
    signal("-CONT");
    assert!(
        withdrawn.is_ok(),
        "the dialog stayed open: {}",
        stage.helper.log()
    );
    let status = session
        .wait_exit(Duration::from_secs(40))
        .unwrap_or_else(|| panic!("the console still waits: {}", session.log()));
    assert_eq!(status.code(), Some(1), "{}", session.log());
    assert!(
        session.log().contains("withdrawn"),
        "the console says the request was withdrawn: {}",
        session.log()
    );
    let audit = stage.audit();
    assert!(
        audit.iter().any(|row| row["action"] == "session.withdrawn"),
        "{audit:#?}"
    );
    assert!(
        audit
            .iter()
            .all(|row| row["action"] != "session.consent" && row["action"] != "session.end"),
        "{audit:#?}"
    );
}
