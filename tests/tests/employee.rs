//! End-to-end: what the employee sees from `deskside-agent check`, `status`
//! and `history`, against a real relay and real agent processes: the right
//! party blamed for a relay outage, revocation said first, a speed test
//! that was not run said plainly, one agent per state directory, a closed
//! pipe that is not a crash, and French that is French.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use deskside_tests::{bin, Agent, Console, Enrolled, Relay, World};
use serde_json::Value;

/// A relay with one enrolled agent.
struct Lab {
    world: World,
    relay: Relay,
    admin: Console,
    agent: Agent,
    device: String,
}

impl Lab {
    fn new() -> Self {
        let mut world = World::new();
        let Enrolled {
            relay,
            admin,
            agent,
            device,
        } = world.enrolled_laptop();
        Self {
            world,
            relay,
            admin,
            agent,
            device,
        }
    }

    /// `deskside-agent check --json` (`--quick` unless `speed`).
    fn check_json(&self, speed: bool) -> Value {
        let mut args = vec!["check", "--json"];
        if !speed {
            args.push("--quick");
        }
        let out = self.agent.run(&args).ok().json();
        assert_eq!(out["type"], "check");
        out
    }
}

fn findings(check: &Value) -> Vec<Value> {
    check["verdict"]["findings"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn finding<'a>(check: &'a Value, id: &str) -> Option<&'a Value> {
    check["verdict"]["findings"]
        .as_array()?
        .iter()
        .find(|f| f["id"] == id)
}

/// Starts `deskside-agent run` and waits until the relay shows it online.
fn run_connected(lab: &mut Lab) -> deskside_tests::Proc {
    let proc = lab.world.run_agent(&lab.agent);
    lab.admin
        .wait_status(&lab.device, "online", Duration::from_secs(30));
    proc
}

#[test]
fn a_stopped_relay_is_blamed_on_the_service_not_on_the_employees_settings() {
    let mut lab = Lab::new();
    // The agent connects over UDP (and remembers when), then stops.
    let mut agent = run_connected(&mut lab);
    agent.terminate();
    lab.relay.proc.terminate();

    let check = lab.check_json(false);
    let path = &check["snapshot"]["path"]["measured"];
    assert_eq!(path["udp_ok"], false, "{check}");
    assert_eq!(
        path["tcp_reachable"], true,
        "loopback answers TCP with a reset: {check}"
    );
    assert!(
        path["last_connected_ms"].as_i64().is_some(),
        "the last UDP connection is evidence: {check}"
    );
    let blamed = finding(&check, "path.relay_not_answering")
        .unwrap_or_else(|| panic!("no service finding: {check}"));
    assert_eq!(blamed["segment"], "service", "{blamed}");
    assert_ne!(
        blamed["confidence"], "high",
        "one device cannot be sure: {blamed}"
    );
    for f in findings(&check) {
        assert_ne!(
            f["segment"], "configuration",
            "the employee's settings were blamed: {f}"
        );
    }
    // The words the employee reads point at the service, never at a
    // firewall or the settings, in both languages.
    let en = lab.agent.run(&["check", "--lang", "en"]).ok().stdout;
    assert!(
        en.contains("the support service itself does not answer"),
        "{en}"
    );
    for wrong in ["firewall", "settings", "VPN"] {
        assert!(!en.contains(wrong), "{wrong:?} in:\n{en}");
    }
    let fr = lab.agent.run(&["check", "--lang", "fr"]).ok().stdout;
    assert!(
        fr.contains("le service d'assistance lui-même qui ne répond pas"),
        "{fr}"
    );
    assert!(!fr.contains("pare-feu"), "{fr}");
}

#[test]
fn a_revoked_device_says_so_first_and_status_shows_the_revocation() {
    let mut lab = Lab::new();
    let mut agent = run_connected(&mut lab);
    lab.admin
        .run(&["devices", "revoke", &lab.device, "--json"])
        .ok();
    // The relay closes the agent's connection with "device revoked"; the
    // agent stops for good (exit code 3) and remembers why.
    let exit = agent
        .wait_exit(Duration::from_secs(30))
        .expect("the revoked agent stops");
    assert_eq!(exit.code(), Some(3), "{}", agent.log());

    let status = lab.agent.status();
    assert_eq!(status["enrolled"], false, "{status}");
    assert_eq!(status["revoked"], true, "{status}");
    let text = lab.agent.run(&["status", "--lang", "en"]).ok().stdout;
    let first = text.lines().next().unwrap_or_default();
    assert!(first.starts_with("Enrolled:  no longer"), "{text}");
    assert!(text.contains("enroll --force"), "{text}");

    let check = lab
        .agent
        .run(&["check", "--quick", "--lang", "en"])
        .ok()
        .stdout;
    let first = check.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("This computer is no longer enrolled"),
        "{check}"
    );
    assert!(!check.contains("No problem found."), "{check}");
    let json = lab.check_json(false);
    assert_eq!(json["enrollment"], "revoked", "{json}");
}

#[test]
fn a_device_that_was_never_enrolled_is_told_how_to_enroll_first() {
    let world = World::new();
    let agent = world.agent("new-laptop");
    let out = agent.run(&["check", "--quick", "--lang", "en"]).ok().stdout;
    let first = out.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("This computer is not enrolled")
            && first.contains("deskside-agent enroll"),
        "{out}"
    );
    let fr = agent.run(&["check", "--quick", "--lang", "fr"]).ok().stdout;
    assert!(fr.starts_with("Cet ordinateur n'est pas inscrit"), "{fr}");
}

#[test]
fn a_technician_can_run_several_full_checks_in_a_row() {
    let lab = Lab::new();
    let mut moved = 0;
    // Fifteen: what a technician and the employee may run during one
    // support call (the old 2 GiB budget ran out after one to about ten,
    // depending on the machine's loopback speed).
    for run in 1..=15 {
        let check = lab.check_json(true);
        let path = &check["snapshot"]["path"]["measured"];
        let bytes = path["download"]["measured"]["bytes"].as_u64().unwrap_or(0)
            + path["upload"]["measured"]["bytes"].as_u64().unwrap_or(0);
        moved += bytes;
        eprintln!("speed test {run}: {bytes} bytes counted, {moved} in all");
        assert!(
            path["download"]["measured"]["mbps"].as_f64().is_some()
                && path["upload"]["measured"]["mbps"].as_f64().is_some(),
            "speed test {run} was not measured: {}",
            check["snapshot"]["path"]
        );
    }
}

/// Holds the device's measurement slot on the relay from a raw peer using
/// the agent's own key, sending echo probes while `active`.
struct SlotHolder {
    runtime: tokio::runtime::Runtime,
    active: std::sync::Arc<std::sync::atomic::AtomicBool>,
    _peer: deskside_tests::peers::Peer,
}

impl SlotHolder {
    fn take(lab: &Lab) -> Self {
        use deskside_protocol::agent::{AgentToRelay, RelayToAgent};
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let pem = std::fs::read_to_string(lab.agent.key_path()).expect("agent key");
        let identity =
            deskside_net::Identity::from_key_pem(&pem, &["deskside-agent"]).expect("identity");
        let fingerprint = lab.relay.fingerprint.parse().expect("fingerprint");
        let active = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let peer = runtime.block_on(async {
            let mut peer =
                deskside_tests::peers::Peer::connect(&lab.relay.addr, fingerprint, Some(identity))
                    .await;
            peer.send()
                .send(&AgentToRelay::Measure)
                .await
                .expect("send");
            match peer.recv().recv::<RelayToAgent>().await {
                Ok(Some(RelayToAgent::MeasureReady { .. })) => {}
                other => panic!("no measurement slot: {other:?}"),
            }
            peer
        });
        let connection = peer.connection();
        let probing = active.clone();
        runtime.spawn(async move {
            let mut seq = 0;
            while probing.load(std::sync::atomic::Ordering::SeqCst) {
                let probe = deskside_protocol::measure::EchoRequest { seq, sent_us: 0 };
                let _ = connection.send_datagram(bytes::Bytes::copy_from_slice(&probe.encode()));
                seq += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self {
            runtime,
            active,
            _peer: peer,
        }
    }

    /// Stops probing but keeps the connection open, like an agent that hung
    /// or lost its path in the middle of a measurement.
    fn go_quiet(&self) {
        self.active
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_speed_test_refused_because_another_runs_is_said_plainly_and_a_silent_holder_frees_its_slot() {
    let lab = Lab::new();
    let holder = SlotHolder::take(&lab);

    let check = lab.check_json(true);
    let path = &check["snapshot"]["path"]["measured"];
    assert!(
        path["speed_test_refused"]["busy"]["retry_after_s"]
            .as_u64()
            .is_some(),
        "{}",
        check["snapshot"]["path"]
    );
    let text = lab.agent.run(&["check", "--lang", "en"]).ok().stdout;
    assert!(
        text.contains("The speed test was not run: another test of this computer was running."),
        "{text}"
    );
    assert!(!text.starts_with("No problem found.\n"), "{text}");
    let fr = lab.agent.run(&["check", "--lang", "fr"]).ok().stdout;
    assert!(fr.contains("Le test de débit n'a pas été fait"), "{fr}");

    // The holder goes silent without closing: the relay frees the slot
    // instead of waiting for the QUIC idle timeout.
    holder.go_quiet();
    let check = lab.check_json(true);
    let path = &check["snapshot"]["path"]["measured"];
    assert!(
        path["download"]["measured"]["mbps"].as_f64().is_some(),
        "the silent holder kept the slot: {}",
        check["snapshot"]["path"]
    );
    drop(holder.runtime);
}

#[test]
fn a_second_agent_on_the_same_state_directory_refuses_to_start() {
    let mut lab = Lab::new();
    let mut first = run_connected(&mut lab);
    let mut second = Command::new(bin("deskside-agent"))
        .arg("--state-dir")
        .arg(&lab.agent.state_dir)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let exited = loop {
        if let Ok(Some(status)) = second.try_wait() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second `deskside-agent run` on the same state directory kept running");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    second
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert_eq!(exited.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another `deskside-agent run`")
            && stderr.contains(&format!("pid {}", first.pid())),
        "{stderr}"
    );
    // The first one was never displaced.
    assert_eq!(
        lab.admin.device_status(&lab.device).as_deref(),
        Some("online")
    );
    assert!(first.wait_exit(Duration::from_millis(500)).is_none());
    first.terminate();
    // Once it is gone, an agent may start again.
    let mut again = lab.world.run_agent(&lab.agent);
    lab.admin
        .wait_status(&lab.device, "online", Duration::from_secs(30));
    again.terminate();
}

#[test]
fn history_json_into_a_closed_pipe_is_not_a_crash() {
    let lab = Lab::new();
    lab.check_json(false);
    // A full history (the agent keeps 50 runs): more than a pipe's 64 KiB
    // buffer, so the writer meets the closed pipe.
    let history = lab.agent.state_dir.join("diagnostics-history.jsonl");
    let run = std::fs::read_to_string(&history).expect("history");
    std::fs::write(&history, run.repeat(50)).expect("write history");
    assert!(run.len() * 50 > 64 * 1024, "{} bytes per run", run.len());
    // `deskside-agent history --json | head -c 1`: the reader closes after
    // one byte while the agent still has lines to write.
    let mut child = Command::new(bin("deskside-agent"))
        .arg("--state-dir")
        .arg(&lab.agent.state_dir)
        .args(["history", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut one = [0u8; 1];
    stdout.read_exact(&mut one).expect("first byte");
    drop(stdout);
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
}

#[test]
fn the_employees_report_is_short_and_french_is_french() {
    let lab = Lab::new();
    // The details are those of the same run (`check --last`): two runs
    // measure the machine twice, and under the parallel test load one can
    // see the CPU pegged and the next not (they did, three pairs in a row).
    let en = lab
        .agent
        .run(&["check", "--quick", "--lang", "en"])
        .ok()
        .stdout;
    let details = lab
        .agent
        .run(&["check", "--last", "--details", "--lang", "en"])
        .ok()
        .stdout;
    assert_eq!(
        en.lines().next(),
        details.lines().next(),
        "the details open with the short report's verdict:\n{en}\n---\n{details}"
    );
    assert!(en.contains("deskside-agent check --last --details"), "{en}");
    // `--last` showed the stored run: it measured nothing and stored nothing.
    let runs = lab.agent.run(&["history", "--json"]).ok().stdout;
    let runs = runs
        .lines()
        .filter(|l| l.contains(r#""type":"diagnostics""#))
        .count();
    assert_eq!(runs, 1, "one run in the history");
    for technical in [
        "For the technician",
        "Could not measure",
        "limit",
        "[device.",
        "[path.",
    ] {
        assert!(
            !en.contains(technical),
            "{technical:?} in the short report:\n{en}"
        );
    }
    let actions = en
        .lines()
        .filter(|l| l.starts_with("  ") && l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .count();
    assert!(actions <= 3, "{en}");
    assert!(details.contains("What we measured"), "{details}");

    let fr = lab
        .agent
        .run(&["check", "--quick", "--lang", "fr"])
        .ok()
        .stdout;
    for english in [
        "No problem found",
        "What you can do",
        "For the details",
        "comes from",
        "What to do",
    ] {
        assert!(
            !fr.contains(english),
            "{english:?} in the French report:\n{fr}"
        );
    }
    assert!(fr.contains("\u{a0}:") || fr.contains("\u{202f};"), "{fr}");
    assert!(
        !fr.contains(" :") && !fr.contains(" ;"),
        "plain space before : or ; in:\n{fr}"
    );
    let status = lab.agent.run(&["status", "--lang", "fr"]).ok().stdout;
    assert!(status.starts_with("Inscrit\u{a0}: oui"), "{status}");
    let history = lab.agent.run(&["history", "--lang", "fr"]).ok().stdout;
    assert!(history.starts_with("QUAND"), "{history}");
    assert!(history.contains("vous"), "{history}");
}
