//! Parked agents, end to end: the real relay and agent, with the agent's
//! quiet period shortened (`DESKSIDE_AGENT_PARK_AFTER_MS`) and monitoring
//! on, one sample a second. A parked agent stays online on heartbeats
//! alone and keeps sampling, is woken for a diagnosis (and uploads the
//! samples taken while parked), parks again, goes offline within the idle
//! timeout when killed, attaches again after a relay restart, and learns
//! of a revocation at once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on surprises.

use std::process::Command;
use std::time::{Duration, Instant};

use deskside_tests::prometheus::{parse, scrape, Exposition};
use deskside_tests::{bin, wait_for, Agent, Console, Proc, Relay, World};

const WAIT: Duration = Duration::from_secs(30);
/// The relay's idle timeout in these tests.
const IDLE: Duration = Duration::from_secs(6);

fn page(addr: &str) -> Exposition {
    let (status, body) = scrape(addr);
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    parse(&body, "deskside_relay_").unwrap_or_else(|e| panic!("bad page: {e}\n{body}"))
}

/// (parked agents, open agent connections) as the relay reports them.
fn parked_and_connected(relay: &Relay) -> (f64, f64) {
    let page = page(relay.metrics.as_deref().expect("metrics on"));
    (
        page.get("deskside_relay_agents_parked", &[]),
        page.get("deskside_relay_connections", &[("kind", "agent")]),
    )
}

fn wait_parked(relay: &Relay, what: &str) {
    wait_for(what, WAIT, || {
        (parked_and_connected(relay) == (1.0, 0.0)).then_some(())
    });
}

struct Lab {
    world: World,
    relay: Relay,
    admin: Console,
    agent: Agent,
    device: String,
}

fn lab() -> Lab {
    let mut world = World::new();
    // The harness's relays run with a 6 s idle timeout (IDLE).
    let relay = world.relay_with(None, &["--metrics-listen", "127.0.0.1:0"]);
    let admin = world.console("admin");
    admin.login_admin(&relay);
    admin
        .run(&["policy", "set", "monitoring_interval", "1"])
        .ok();
    let agent = world.agent("laptop");
    let device = agent.enroll(&admin.enroll_token(1, "10m"));
    Lab {
        world,
        relay,
        admin,
        agent,
        device,
    }
}

/// The samples the agent keeps (`history --json`).
fn kept_samples(agent: &Agent) -> u64 {
    let history = agent.run(&["history", "--json"]).ok().json_lines();
    history
        .iter()
        .find(|l| l["type"] == "monitoring")
        .and_then(|l| l["kept_samples"].as_u64())
        .expect("a monitoring line with kept_samples")
}

/// Starts the agent with a 1 s quiet period before parking.
fn run_parking_agent(lab: &mut Lab) -> Proc {
    let mut command = Command::new(bin("deskside-agent"));
    command
        .arg("--state-dir")
        .arg(&lab.agent.state_dir)
        .arg("run")
        .env("RUST_LOG", "info,deskside_agent=debug,deskside_relay=debug")
        .env("DESKSIDE_AGENT_PARK_AFTER_MS", "1000");
    lab.world.spawn("laptop", command).0
}

#[test]
fn a_parked_agent_stays_online_is_woken_for_a_diagnosis_and_goes_offline_when_killed() {
    let mut lab = lab();
    let mut agent = run_parking_agent(&mut lab);
    lab.admin.wait_status(&lab.device, "online", WAIT);
    wait_parked(&lab.relay, "the agent to park");
    let before = kept_samples(&lab.agent);
    // Online on heartbeats alone for well past the idle timeout.
    std::thread::sleep(IDLE + Duration::from_secs(2));
    assert_eq!(
        lab.admin.device_status(&lab.device).as_deref(),
        Some("online")
    );
    assert_eq!(parked_and_connected(&lab.relay), (1.0, 0.0));
    // Monitoring went on while parked (one sample a second).
    let parked_samples = kept_samples(&lab.agent);
    assert!(
        parked_samples >= before + 4,
        "{before} samples kept when parked, {parked_samples} after {IDLE:?}"
    );

    // A diagnosis wakes it: the relay calls, the agent attaches, answers.
    let started = Instant::now();
    let diag = lab.admin.run(&["diag", &lab.device, "--json"]).ok();
    let took = started.elapsed();
    let lines = diag.json_lines();
    assert!(
        lines.iter().any(|l| l["type"] == "diagnostics"),
        "{}",
        diag.stdout
    );
    println!(
        "diagnosis of a parked agent took {:.2} s",
        took.as_secs_f64()
    );
    assert!(agent.log().contains("no longer parked"), "{}", agent.log());
    // Attached, it uploaded what it sampled while parked.
    wait_for("the samples taken while parked on the relay", WAIT, || {
        let lines = lab
            .admin
            .run(&[
                "timeline",
                &lab.device,
                "--since",
                "10m",
                "--json",
                "--samples",
            ])
            .ok()
            .json_lines();
        let on_relay = lines.iter().filter(|l| l["type"] == "sample").count() as u64;
        (on_relay >= parked_samples).then_some(())
    });
    // Quiet again: parked again.
    wait_parked(&lab.relay, "the agent to park again after the diagnosis");

    // A policy change reaches the parked agent: its next heartbeat's
    // answer asks it to attach within its reconnect window.
    let changed = Instant::now();
    lab.admin
        .run(&["policy", "set", "monitoring_interval", "7"])
        .ok();
    wait_for("the parked agent to apply the new policy", WAIT, || {
        (lab.agent.status()["monitoring"]["interval_s"] == 7).then_some(())
    });
    println!(
        "policy applied by the parked agent {:.1} s after the change",
        changed.elapsed().as_secs_f64()
    );
    wait_parked(
        &lab.relay,
        "the agent to park again after the policy change",
    );

    // Killed: offline within the idle timeout (plus the 1 s sweep).
    agent.kill();
    let killed = Instant::now();
    lab.admin
        .wait_status(&lab.device, "offline", IDLE + Duration::from_secs(10));
    let gone = killed.elapsed();
    println!(
        "parked device offline {:.1} s after kill -9",
        gone.as_secs_f64()
    );
    assert!(
        gone <= IDLE + Duration::from_secs(3),
        "offline only after {gone:?}"
    );
    assert_eq!(parked_and_connected(&lab.relay), (0.0, 0.0));
}

#[test]
fn a_parked_agent_learns_of_its_revocation_and_of_a_relay_restart() {
    let mut lab = lab();
    let mut agent = run_parking_agent(&mut lab);
    lab.admin.wait_status(&lab.device, "online", WAIT);
    wait_parked(&lab.relay, "the agent to park");

    // kill -9 and restart on the same port and data: the parked agent's
    // next heartbeat is answered "attach again", and it does.
    let port = lab.relay.port();
    let metrics = lab.relay.metrics.clone().expect("metrics on");
    let metrics_port = metrics.rsplit(':').next().unwrap().to_owned();
    lab.relay.proc.kill();
    let metrics_listen = format!("127.0.0.1:{metrics_port}");
    lab.relay = lab
        .world
        .relay_with(Some(port), &["--metrics-listen", &metrics_listen]);
    let restarted = Instant::now();
    wait_for("the agent to attach to the restarted relay", WAIT, || {
        (parked_and_connected(&lab.relay).1 == 1.0).then_some(())
    });
    println!(
        "attached again {:.1} s after the restart",
        restarted.elapsed().as_secs_f64()
    );
    assert!(agent.log().contains("attach again"), "{}", agent.log());
    wait_parked(&lab.relay, "the agent to park on the restarted relay");

    lab.admin
        .run(&["devices", "revoke", &lab.device, "--json"])
        .ok();
    let exit = agent
        .wait_exit(WAIT)
        .expect("the revoked parked agent stops");
    assert_eq!(exit.code(), Some(3), "{}", agent.log());
    assert_eq!(lab.agent.status()["revoked"], true);
}
