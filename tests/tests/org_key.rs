//! End-to-end: the organisation key keeps a compromised relay out of
//! sessions.
//!
//! An administrator's console makes the organisation key (`deskside org-key
//! init`); enrollment tokens it creates teach devices the public key
//! (`dse2_`), and the technician login strings it creates carry a session
//! key it certified (`dsl2_`). A device that trusts the key refuses, before
//! anyone is asked, a session key the key did not certify: the one of a
//! technician the relay let in by itself (the relay holds the bootstrap
//! admin token), and the one a key-substituting relay hands out. The refusal
//! reaches the console and the audit log. Devices enrolled with the
//! administrator's tokens are also bound: a certified console checks the
//! device key the handshake proved against the organisation key, and stops
//! at a device that shows no binding. No X display is needed: the
//! refusal comes before the consent dialog, and a certified session is shown
//! to get past the check by reaching the consent step (which, with no
//! employee session helper running, answers "no one could be asked").

use std::time::Duration;

use deskside_tests::{Agent, Console, Relay, World};
use serde_json::Value;

const ONLINE_WAIT: Duration = Duration::from_secs(60);

/// A relay, an administrator holding the organisation key, and a device
/// enrolled with a token made by that administrator, online.
struct Org {
    world: World,
    relay: Relay,
    admin: Console,
    device: String,
    _agent: deskside_tests::Proc,
}

fn org_with_key(relay_program: &str, relay_args: &[&str]) -> Org {
    let mut world = World::new();
    let relay = world.relay_program(relay_program, None, relay_args);
    let admin = world.console("admin");
    admin.login_admin(&relay);
    let init = admin.run(&["org-key", "init", "--json"]).ok().json();
    let key = init["public_key"].as_str().expect("public key").to_owned();
    assert!(key.starts_with("ed25519:"), "{init}");
    let token = admin.enroll_token(1, "1h");
    assert!(token.starts_with("dse2_"), "not a certified token: {token}");
    let agent: Agent = world.agent("laptop");
    let device = agent.enroll(&token);
    let trusted = std::fs::read_to_string(agent.state_dir.join("org-key.pub"))
        .expect("the agent kept the organisation key");
    assert_eq!(trusted.trim(), key);
    assert!(
        agent.state_dir.join("device-binding.bin").exists(),
        "the agent kept no key binding"
    );
    let proc = world.run_agent(&agent);
    admin.wait_status(&device, "online", ONLINE_WAIT);
    Org {
        world,
        relay,
        admin,
        device,
        _agent: proc,
    }
}

/// A technician console logged in with a login string from the
/// administrator holding the organisation key.
fn certified_technician(org: &Org, name: &str) -> Console {
    let issued = org.admin.create_token(name, "technician");
    let login = issued["login"].as_str().expect("login string");
    assert!(
        login.starts_with("dsl2_"),
        "not a certified login: {issued}"
    );
    let tech = org.world.console(name);
    tech.run(&["login", login, "--json"]).ok();
    tech
}

fn open_session(console: &Console, device: &str) -> deskside_tests::Run {
    console.run(&[
        "--json",
        "session",
        device,
        "--headless",
        "--reason",
        "printer setup",
    ])
}

/// The `session.consent` outcomes of the device, oldest first.
fn consent_outcomes(admin: &Console, device: &str) -> Vec<String> {
    let rows: Vec<Value> = admin
        .run(&["--json", "audit", "list", "--device", device])
        .ok()
        .json_lines();
    let mut outcomes: Vec<String> = rows
        .iter()
        .filter(|row| row["action"] == "session.consent")
        .map(|row| row["detail"].to_string())
        .collect();
    outcomes.reverse();
    outcomes
}

fn wait_consent_outcome(admin: &Console, device: &str, needle: &str) -> String {
    deskside_tests::wait_for(
        &format!("a session.consent row with {needle:?}"),
        Duration::from_secs(30),
        || {
            consent_outcomes(admin, device)
                .into_iter()
                .find(|o| o.contains(needle))
        },
    )
}

/// The console's `--json` lines of a session that must stop before the
/// consent step: none of them is `waiting_for_consent`, so no verification
/// code was ever shown.
fn assert_no_verification_code_shown(run: &deskside_tests::Run) {
    assert!(
        run.json_lines()
            .iter()
            .all(|line| line["state"] != "waiting_for_consent"),
        "a verification code was shown: {}",
        run.stdout
    );
}

#[test]
fn a_technician_the_relay_let_in_is_refused_before_anyone_is_asked() {
    let org = org_with_key("deskside-relay", &[]);
    // Whoever controls the relay holds its bootstrap admin token and can
    // mint technicians: this console has a session key the relay knows,
    // but no certificate of the organisation key.
    let rogue = org.world.console("rogue");
    rogue.login(&org.relay, &org.relay.admin_token).ok();
    let run = open_session(&rogue, &org.device);
    run.fails_with(1, "the device refused the session before asking anyone")
        .fails_with(1, "without a certificate of the organisation key");
    let outcome = wait_consent_outcome(&org.admin, &org.device, "uncertified");
    assert!(outcome.contains("no certificate"), "{outcome}");
}

#[test]
fn a_certified_technician_gets_past_the_check_to_the_consent_step() {
    let org = org_with_key("deskside-relay", &[]);
    let tech = certified_technician(&org, "alice");
    let shown = tech.run(&["org-key", "show", "--json"]).ok().json();
    let admin_key = org.admin.run(&["org-key", "show", "--json"]).ok().json();
    assert_eq!(shown["public_key"], admin_key["public_key"]);
    assert_eq!(shown["can_certify"], false);
    let run = open_session(&tech, &org.device);
    // Certified: the agent went on to ask the employee; here no session
    // helper runs, so no one could be asked.
    let run = run.fails_with(1, "the device cannot start a session");
    let started = run
        .json_lines()
        .into_iter()
        .any(|line| line["state"] == "waiting_for_consent");
    assert!(started, "no end-to-end connection: {}", run.stdout);
    let outcome = wait_consent_outcome(&org.admin, &org.device, "unavailable");
    assert!(!outcome.contains("uncertified"), "{outcome}");
    // The technician's own enrollment tokens teach devices the key too.
    assert!(tech.enroll_token(1, "1h").starts_with("dse2_"));
}

#[test]
fn a_relay_that_substitutes_keys_is_refused_with_the_reason_in_console_and_audit() {
    let spy = tempfile::tempdir().expect("temp dir");
    let spy_file = spy.path().join("forwarded.bin");
    let spy_file = spy_file.to_str().expect("utf-8 path");
    let org = org_with_key(
        "deskside-spy-relay",
        &["--spy-file", spy_file, "--substitute-keys"],
    );
    let tech = certified_technician(&org, "alice");
    let run = open_session(&tech, &org.device);
    // The console is told a device key that is not the device's: it stops
    // at the handshake and says so, no code is ever shown.
    let run = run.fails_with(1, "substituting keys");
    assert_no_verification_code_shown(&run);
    // The agent was told a technician key the organisation key did not
    // certify for alice: refused, and audited as such.
    let outcome = wait_consent_outcome(&org.admin, &org.device, "uncertified");
    assert!(outcome.contains("key substituted"), "{outcome}");
}

#[test]
fn without_an_organisation_key_devices_trust_the_relay_as_before() {
    let mut world = World::new();
    let (_relay, admin) = world.relay_and_admin();
    let token = admin.enroll_token(1, "1h");
    assert!(token.starts_with("dse1_"), "{token}");
    let agent = world.agent("laptop");
    let device = agent.enroll(&token);
    assert!(!agent.state_dir.join("org-key.pub").exists());
    let _proc = world.run_agent(&agent);
    admin.wait_status(&device, "online", ONLINE_WAIT);
    let show = admin.run(&["org-key", "show", "--json"]).ok().json();
    assert_eq!(show["public_key"], Value::Null);
    // An uncertified session key reaches the consent step, as before.
    open_session(&admin, &device).fails_with(1, "the device cannot start a session");
    wait_consent_outcome(&admin, &device, "unavailable");
}

#[test]
fn a_certified_console_refuses_a_device_whose_key_is_not_bound_unless_told_to_go_on() {
    // The device enrolled with a plain token (no binding): the console
    // cannot tell it from a relay posing as the device, so it stops before
    // any code is shown, and says how to go on.
    let mut world = World::new();
    let relay = world.relay(None);
    let plain = world.console("plain");
    plain.login_admin(&relay);
    let token = plain.enroll_token(1, "1h");
    let agent = world.agent("old-laptop");
    let device = agent.enroll(&token);
    let _proc = world.run_agent(&agent);
    plain.wait_status(&device, "online", ONLINE_WAIT);
    let admin = world.console("admin");
    admin.login_admin(&relay);
    admin.run(&["org-key", "init", "--json"]).ok();

    let run = open_session(&admin, &device)
        .fails_with(1, "the device key is not bound to the organisation key")
        .fails_with(1, "--allow-unbound-device");
    assert_no_verification_code_shown(&run);
    admin
        .run(&[
            "--json",
            "session",
            &device,
            "--headless",
            "--allow-unbound-device",
        ])
        .fails_with(1, "the device cannot start a session");
}
