//! Help requests end to end: `deskside-agent help` on the employee's side,
//! `deskside requests` on the technician's, with real processes.

use std::process::Command;
use std::time::Duration;

use deskside_tests::{bin, wait_for, World};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(60);

fn outbox_files(state: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(state.join("requests-outbox"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_request_is_listed_claimed_answered_and_resolved() {
    let mut world = World::new();
    let setup = world.enrolled_laptop();
    // A sample a second, so the timeline around the request has some.
    setup
        .admin
        .run(&["policy", "set", "monitoring_interval", "1"])
        .ok();
    let _agent = world.run_agent(&setup.agent);
    setup
        .admin
        .wait_status(&setup.device, "online", Duration::from_secs(30));

    let sent = setup.agent.ask_help(
        "video calls freeze every few minutes",
        "blocked",
        &["--apps", "video,vpn", "--contact", "chat, mornings"],
    );
    assert_eq!(sent["status"], "sent", "{sent}");
    let number = sent["number"].as_u64().expect("a number");
    assert!(
        outbox_files(&setup.agent.state_dir).is_empty(),
        "delivered: no copy left"
    );

    let list = setup.admin.requests();
    assert_eq!(list.len(), 1, "{list:?}");
    let listed = &list[0];
    assert_eq!(listed["number"].as_u64(), Some(number));
    // Blocked (urgency high) × just me (impact low): ITIL priority 3.
    assert_eq!(listed["priority"], 3, "{listed}");
    assert_eq!(listed["status"], "new");
    assert!(
        listed["verdict"].is_string(),
        "the verdict's line: {listed}"
    );

    let shown = show(&setup.admin, number);
    assert_eq!(
        shown["answers"]["apps"],
        serde_json::json!(["video", "vpn"])
    );
    assert!(
        shown["snapshot"].is_object(),
        "the snapshot is attached: {shown}"
    );
    assert!(shown["verdict_detail"]["findings"].is_array(), "{shown}");
    // The device's timeline around the request's start comes with it.
    let window = wait_for("timeline samples around the request", LONG, || {
        let shown = show(&setup.admin, number);
        (shown["timeline"]["samples"].as_u64()? > 0).then(|| shown["timeline"].clone())
    });
    assert!(window["episodes"].is_array(), "{window}");
    let text = setup
        .admin
        .run(&["requests", "show", &number.to_string()])
        .ok();
    assert!(
        text.stdout
            .contains("Timeline 30 min either side of the request"),
        "{}",
        text.stdout
    );

    // A viewer reads but cannot act.
    let viewer_token = setup.admin.create_token("vera", "viewer");
    let viewer = world.console("vera");
    viewer
        .login(&setup.relay, viewer_token["token"].as_str().expect("token"))
        .ok();
    assert_eq!(viewer.requests().len(), 1);
    let refused = viewer.run(&["requests", "claim", &number.to_string()]);
    assert_ne!(refused.code, 0, "a viewer cannot claim");

    let n = number.to_string();
    let claimed = setup
        .admin
        .run(&["requests", "claim", &n, "--json"])
        .ok()
        .json();
    assert_eq!(claimed["status"], "claimed");
    assert!(claimed["first_response_at"].is_string());
    setup
        .admin
        .run(&[
            "requests",
            "reply",
            &n,
            "Please restart your router, then tell me.",
        ])
        .ok();
    // The running agent receives the reply and keeps it.
    let mine = wait_for("the reply on the device", LONG, || {
        let lines = setup.agent.run(&["requests", "--json"]).ok().json_lines();
        let request = lines
            .into_iter()
            .find(|r| r["number"].as_u64() == Some(number))?;
        let events = request["events"].as_array()?.clone();
        events
            .iter()
            .any(|e| {
                e["kind"] == "reply" && e["text"] == "Please restart your router, then tell me."
            })
            .then_some(request)
    });
    assert_eq!(mine["status"], "waiting");
    let text = setup.agent.run(&["--lang", "fr", "requests"]).ok();
    assert!(text.stdout.contains("a répondu"), "{}", text.stdout);

    let resolved = setup
        .admin
        .run(&[
            "requests",
            "resolve",
            &n,
            "--note",
            "router restarted",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(resolved["status"], "resolved");
    assert!(resolved["resolved_at"].is_string());
    wait_for("the resolution on the device", LONG, || {
        let lines = setup.agent.run(&["requests", "--json"]).ok().json_lines();
        lines
            .iter()
            .any(|r| r["number"].as_u64() == Some(number) && r["status"] == "resolved")
            .then_some(())
    });
    let audit = setup
        .admin
        .run(&["audit", "list", "--json"])
        .ok()
        .json_lines();
    for action in [
        "request.create",
        "request.claim",
        "request.reply",
        "request.resolve",
    ] {
        assert!(
            audit.iter().any(|a| a["action"] == action),
            "{action} audited: {audit:?}"
        );
    }
}

fn list(admin: &deskside_tests::Console) -> Vec<Value> {
    admin.requests()
}

/// `deskside requests show NUMBER --json`.
fn show(console: &deskside_tests::Console, number: impl std::fmt::Display) -> Value {
    console
        .run(&["requests", "show", &number.to_string(), "--json"])
        .ok()
        .json()
}

/// Waits for request `number`'s session follow-up: the event that says
/// the verdict before and after.
fn wait_follow_up(console: &deskside_tests::Console, number: &str, timeout: Duration) -> Value {
    wait_for("the session's follow-up on the request", timeout, || {
        show(console, number)["events"]
            .as_array()?
            .iter()
            .find(|e| {
                e["kind"] == "session"
                    && e["text"]
                        .as_str()
                        .is_some_and(|t| t.contains("verdict before"))
            })
            .cloned()
    })
}

#[test]
fn a_request_typed_while_the_relay_is_down_arrives_once_even_after_kill_9() {
    let mut world = World::new();
    let mut setup = world.enrolled_laptop();
    let port = setup.relay.port();
    setup.relay.proc.kill();
    let _ = setup.relay.proc.wait_exit(Duration::from_secs(10));

    // 1. Typed while the relay is down: kept, with the failed attempt.
    let queued = setup
        .agent
        .ask_help("no internet", "slowed", &["--no-diagnostics"]);
    assert_eq!(queued["status"], "queued", "{queued}");
    assert_eq!(outbox_files(&setup.agent.state_dir).len(), 1);

    // 2. Killed between typing and sending: still kept.
    let mut command = Command::new(bin("deskside-agent"));
    command
        .arg("--state-dir")
        .arg(&setup.agent.state_dir)
        .args([
            "help",
            "--summary",
            "printer offline",
            "--urgency",
            "can_work",
            "--no-diagnostics",
            "--json",
        ]);
    let (mut typing, _stdout) = world.spawn("help", command);
    let copy = wait_for("the second request in the outbox", LONG, || {
        let files = outbox_files(&setup.agent.state_dir);
        (files.len() == 2).then_some(files)
    });
    typing.kill();
    let _ = typing.wait_exit(Duration::from_secs(10));
    let saved: Vec<(std::path::PathBuf, Vec<u8>)> = copy
        .iter()
        .map(|p| (p.clone(), std::fs::read(p).expect("outbox file")))
        .collect();

    // The relay comes back; the agent connects and sends both, once.
    let relay = world.relay(Some(port));
    let mut agent = world.run_agent(&setup.agent);
    let arrived = wait_for("both requests at the relay", LONG, || {
        let listed = list(&setup.admin);
        (listed.len() == 2).then_some(listed)
    });
    wait_for("the outbox emptied", LONG, || {
        outbox_files(&setup.agent.state_dir)
            .is_empty()
            .then_some(())
    });
    let first = arrived
        .iter()
        .find(|r| r["summary"] == "no internet")
        .expect("the first request");
    let shown = show(&setup.admin, &first["number"]);
    assert!(
        !shown["failed_deliveries"]
            .as_array()
            .expect("array")
            .is_empty(),
        "the failed attempt is evidence: {shown}"
    );

    // A resend of a delivered request (the agent died before it could
    // forget its copies) is the same request.
    agent.kill();
    let _ = agent.wait_exit(Duration::from_secs(10));
    for (path, bytes) in &saved {
        std::fs::write(path, bytes).expect("put back");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
    }
    let _agent = world.run_agent(&setup.agent);
    wait_for("the resent copies acknowledged", LONG, || {
        outbox_files(&setup.agent.state_dir)
            .is_empty()
            .then_some(())
    });
    assert_eq!(list(&setup.admin).len(), 2, "no duplicate");
    drop(relay);
}

/// Displays of the session test here (sessions.rs uses 60–79, the network
/// switch test 80–84, consent_policy 90–99, Windows 110–119).
const DISPLAYS: std::ops::RangeInclusive<u16> = 120..=124;

#[test]
fn a_session_linked_to_a_request_adds_its_follow_up() {
    use deskside_tests::stage::{SessionStage, StageOptions};
    if !deskside_tests::x11::prerequisites() {
        return;
    }
    let mut stage = SessionStage::start(&StageOptions {
        relay_program: "deskside-relay".into(),
        relay_args: Vec::new(),
        agent_screen: (800, 600),
        console_screen: (1024, 768),
        displays: DISPLAYS,
        xclient_args: vec!["--text".into(), "REQUEST-SESSION".into()],
        agent_monitors: 1,
    });
    let sent = stage
        .agent
        .ask_help("the printer dialog hangs", "slowed", &[]);
    let number = sent["number"].as_u64().expect("sent").to_string();
    // The verdict attached to the request is the follow-up's "before".
    let attached = show(&stage.console, &number)["verdict"]
        .as_str()
        .expect("the request carries its verdict's line")
        .to_owned();
    let (mut session, out) = stage.session(&[
        "--headless",
        "--view-only",
        "--duration",
        "3s",
        "--request",
        &number,
    ]);
    stage.answer_consent(true);
    let end = out.until(Duration::from_secs(90), |v| v["type"] == "session_end");
    assert!(
        end.iter().any(|v| v["type"] == "session_end"),
        "{end:?}\n{}",
        session.log()
    );
    session.wait_exit(Duration::from_secs(10));
    let follow_up = wait_follow_up(&stage.console, &number, LONG);
    let text = follow_up["text"].as_str().expect("text");
    assert!(text.contains("lasted"), "{text}");
    // Before: the attached verdict; after: the relay's fresh diagnosis of
    // the device (online here), never "not measured".
    assert!(
        text.contains(&format!(
            "verdict before: {attached} (attached to the request); after: "
        )),
        "the verdict before: {text}"
    );
    let after = text.split("; after: ").nth(1).expect("an after verdict");
    assert!(
        after.ends_with(" (measured when the session ended)") && !after.starts_with("not measured"),
        "the verdict after: {text}"
    );
    assert!(
        text.contains(" started 20") && text.contains("ended by "),
        "when and how it ended: {text}"
    );
    assert!(
        follow_up["author"].as_str().is_some_and(|a| !a.is_empty()),
        "who: {follow_up}"
    );
    assert!(
        text.contains("granted view"),
        "what the employee granted: {text}"
    );
    assert!(
        !text.contains("REQUEST-SESSION"),
        "no screen content: {text}"
    );
    let shown = show(&stage.console, &number);
    assert!(
        shown["first_response_at"].is_string(),
        "linking a session is a response: {shown}"
    );
}

/// The relay writes the follow-up, not the console: a console killed
/// mid-session still leaves it (the session ends when the agent's
/// end-to-end link idles out or the relay's resume grace runs out).
#[test]
fn a_linked_session_whose_console_is_killed_still_gets_its_follow_up() {
    use deskside_tests::stage::{SessionStage, StageOptions};
    if !deskside_tests::x11::prerequisites() {
        return;
    }
    let mut stage = SessionStage::start(&StageOptions {
        relay_program: "deskside-relay".into(),
        relay_args: Vec::new(),
        agent_screen: (800, 600),
        console_screen: (1024, 768),
        displays: DISPLAYS,
        xclient_args: vec!["--text".into(), "KILLED-CONSOLE".into()],
        agent_monitors: 1,
    });
    let sent = stage
        .agent
        .ask_help("the VPN drops", "slowed", &["--no-diagnostics"]);
    let number = sent["number"].as_u64().expect("sent").to_string();
    let (mut session, out) = stage.session(&[
        "--headless",
        "--view-only",
        "--duration",
        "10m",
        "--request",
        &number,
    ]);
    stage.answer_consent(true);
    let started = out.until(Duration::from_secs(60), |v| {
        v["type"] == "session" && v["state"] == "started"
    });
    assert!(
        started
            .iter()
            .any(|v| v["type"] == "session" && v["state"] == "started"),
        "{started:?}\n{}",
        session.log()
    );
    session.kill();
    // The agent's link idles out after 30 s, the relay's grace after 35 s;
    // then the diagnosis: 150 s leaves room on a loaded machine.
    let follow_up = wait_follow_up(&stage.console, &number, Duration::from_secs(150));
    let text = follow_up["text"].as_str().expect("text");
    assert!(text.contains("granted view; lasted "), "{text}");
    // No verdict was attached: the before is the stored diagnostics or says
    // there were none; the device is online, so the after is measured.
    assert!(
        text.contains("verdict before: not measured (no diagnostics attached or stored); after: ")
            || text.contains("(stored diagnostics of "),
        "the verdict before: {text}"
    );
    assert!(
        text.ends_with(" (measured when the session ended)"),
        "the verdict after: {text}"
    );
    assert!(
        !text.contains("KILLED-CONSOLE"),
        "no screen content: {text}"
    );
}

#[test]
fn a_request_the_relay_refuses_is_explained_and_never_costs_presence() {
    let mut world = World::new();
    let setup = world.enrolled_laptop();
    let mut agent = world.run_agent(&setup.agent);
    setup
        .admin
        .wait_status(&setup.device, "online", Duration::from_secs(30));
    // Longer than the relay accepts: the employee is told, nothing is kept
    // to be resent forever.
    let long = "x".repeat(5000);
    setup
        .agent
        .run(&["help", "--summary", &long, "--no-diagnostics", "--json"])
        .fails_with(1, "refused");
    assert!(outbox_files(&setup.agent.state_dir).is_empty());

    // The same request found in the outbox by the running agent: refused,
    // logged, and the device stays connected.
    let queued = serde_json::json!({
        "client_id": "0badc0de",
        "created_ms": 1,
        "answers": {"summary": long, "since": "", "pattern": "", "apps": [], "urgency": "blocked",
                    "impact": "me", "contact": "", "lang": "en"},
        "snapshot_json": null,
        "failures": [],
    });
    let dir = setup.agent.state_dir.join("requests-outbox");
    std::fs::create_dir_all(&dir).expect("outbox");
    let path = dir.join("0badc0de.json");
    std::fs::write(&path, queued.to_string()).expect("queued file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    wait_for("the relay to refuse it", LONG, || {
        setup
            .relay
            .proc
            .log()
            .contains("help request not stored")
            .then_some(())
    });
    // Several more outbox rounds (every 2 s) without a reconnection.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        setup.admin.device_status(&setup.device).as_deref(),
        Some("online")
    );
    let log = agent.log();
    assert!(!log.contains("relay link down"), "{log}");
    assert!(
        path.exists(),
        "an unacknowledged request stays on the device"
    );
    assert!(list(&setup.admin).is_empty());
    agent.terminate();
}

/// Runs `deskside-agent ARGS` in a pseudo-terminal (util-linux `script`),
/// typing `input`: the way an employee answers the questions.
fn in_terminal(agent: &deskside_tests::Agent, args: &str, input: &str) -> Option<(i32, String)> {
    use std::io::Write as _;
    if Command::new("script").arg("--version").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "util-linux `script` is needed to type into a terminal"
        );
        eprintln!("skipping: util-linux `script` is not installed");
        return None;
    }
    let mut child = Command::new("script")
        .args([
            "-qec",
            &format!("{} {args}", bin("deskside-agent").display()),
            "/dev/null",
        ])
        .env("DESKSIDE_AGENT_STATE", &agent.state_dir)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("typing");
    let output = child.wait_with_output().expect("script output");
    Some((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}

#[test]
fn the_employee_answers_the_questions_in_a_terminal_and_may_drop_the_diagnostics() {
    let mut world = World::new();
    let setup = world.enrolled_laptop();
    // English; the diagnostics dropped at the confirmation (`d`).
    let Some((code, screen)) = in_terminal(
        &setup.agent,
        "--lang en help",
        "the printer is offline\nyesterday\n2\nprinter, mail\n1\nphone 0600, afternoons\nd\n",
    ) else {
        return;
    };
    assert_eq!(code, 0, "{screen}");
    for shown in [
        "1/5 What is wrong",
        "5/5 How and when",
        "This will be sent to IT",
        "Problem: the printer is offline",
        "Sent to IT: request",
    ] {
        assert!(screen.contains(shown), "{shown:?} not shown:\n{screen}");
    }
    // French; sent with the diagnostics (`o`).
    let (code, screen) = in_terminal(
        &setup.agent,
        "--lang fr help",
        "la visio coupe\nce matin\n1\nvisio\n3\nchat\no\n",
    )
    .expect("script is there");
    assert_eq!(code, 0, "{screen}");
    assert!(
        screen.contains("Ceci sera envoyé au service informatique"),
        "{screen}"
    );

    let listed = list(&setup.admin);
    assert_eq!(listed.len(), 2, "{listed:?}");
    let printer = listed
        .iter()
        .find(|r| r["summary"] == "the printer is offline")
        .expect("the English request");
    // Can work (low urgency) × just me (low impact): P5.
    assert_eq!(printer["priority"], 5);
    let shown = show(&setup.admin, &printer["number"]);
    assert_eq!(shown["answers"]["pattern"], "intermittent");
    assert_eq!(
        shown["answers"]["apps"],
        serde_json::json!(["printer", "mail"])
    );
    assert_eq!(shown["answers"]["contact"], "phone 0600, afternoons");
    assert!(
        shown["snapshot"].is_null(),
        "dropped by the employee: {shown}"
    );
    let video = listed
        .iter()
        .find(|r| r["summary"] == "la visio coupe")
        .expect("the French request");
    // Blocked × just me: P3.
    assert_eq!(video["priority"], 3);
    let shown = show(&setup.admin, &video["number"]);
    assert_eq!(shown["answers"]["lang"], "fr");
    assert_eq!(shown["answers"]["apps"], serde_json::json!(["video"]));
    assert!(shown["snapshot"].is_object(), "{shown}");
}
