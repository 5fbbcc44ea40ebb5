//! A network switch in the middle of a session (the employee's laptop moves
//! from Wi‑Fi to a phone's hotspot): the agent's source address changes
//! (127.0.0.2 → .3 → .4 → .5 on loopback, each a real path change for QUIC,
//! pinned through the agent's `source-address` file), the agent moves its
//! relay connection to a new socket (QUIC migration), the relay logs the
//! move, and the running session keeps decoding frames with a gap under
//! 1 s, without a new consent dialog or a second session.
//!
//! Needs Xvfb, xdotool and ImageMagick's `import` (as tests/tests/sessions.rs):
//! with `CI=true` a missing one fails the test; elsewhere it is skipped with
//! a message.

use std::time::{Duration, Instant};

use deskside_tests::stage::{
    assert_ran_its_course_on_one_consent, now_us, switch_gaps, SessionStage, StageOptions,
};
use deskside_tests::wait_for;
use deskside_tests::x11::{prerequisites, window_gone};

/// Displays of this test (sessions.rs uses 60–79).
const DISPLAYS: std::ops::RangeInclusive<u16> = 80..=84;
/// The largest frame gap a switch may cause.
const MAX_GAP: Duration = Duration::from_secs(1);
/// The addresses the agent moves through after the first.
const SWITCHES: [&str; 3] = ["127.0.0.3", "127.0.0.4", "127.0.0.5"];

/// Moves the agent to `ip` and waits until both the agent and the relay
/// logged the move; returns when the move was asked for (µs since epoch).
fn switch_to(stage: &SessionStage, ip: &str) -> i64 {
    let moves_before = stage.agent_proc.log().matches("network changed").count();
    let at = now_us();
    std::fs::write(stage.agent.state_dir.join("source-address"), ip).expect("write");
    wait_for("the agent to move", Duration::from_secs(10), || {
        (stage.agent_proc.log().matches("network changed").count() > moves_before).then_some(())
    });
    stage.wait_relay_saw_move_to(ip);
    at
}

#[test]
fn a_session_survives_the_agents_network_switching_with_a_gap_under_a_second() {
    if !prerequisites() {
        return;
    }
    let mut stage = SessionStage::start(&StageOptions {
        relay_program: "deskside-relay".into(),
        relay_args: Vec::new(),
        agent_screen: (1024, 640),
        console_screen: (1280, 800),
        displays: DISPLAYS,
        xclient_args: vec![
            "--geometry".into(),
            "524x40+480+400".into(),
            "--counter".into(),
            "--counter-fps".into(),
            "10".into(),
        ],
        agent_monitors: 1,
    });
    // The "Wi‑Fi" address, before the session starts.
    switch_to(&stage, "127.0.0.2");
    let (mut session, out) = stage.session(&[
        "--headless",
        "--view-only",
        "--probe-counter",
        "480,400",
        "--duration",
        "30s",
    ]);
    out.until(Duration::from_secs(30), |v| {
        v["state"] == "waiting_for_consent"
    });
    stage.answer_consent(true);
    let mut lines = out.until(Duration::from_secs(30), |v| v["type"] == "frame_counter");
    let started = Instant::now();
    let mut switched_at = Vec::new();
    for ip in SWITCHES {
        // Some frames on the old path first.
        lines.extend(out.until(Duration::from_secs(3), |_| false));
        switched_at.push(switch_to(&stage, ip));
        assert!(
            window_gone(stage.agent_x.display(), "remote support request"),
            "a consent dialog appeared after the switch to {ip}"
        );
    }
    lines.extend(out.until(Duration::from_secs(60), |v| v["type"] == "session_end"));
    assert_ran_its_course_on_one_consent(
        &lines,
        &session.log(),
        &format!(
            "30 s, ended after {:?}; agent:\n{}",
            started.elapsed(),
            stage.agent_proc.log()
        ),
    );
    let mut gaps = switch_gaps(&lines, &switched_at, &session.log());
    println!(
        "{}",
        serde_json::json!({
            "type": "network_switch_gaps",
            "gaps_ms": gaps.iter().map(|g| g.as_millis()).collect::<Vec<_>>(),
        })
    );
    for (ip, gap) in SWITCHES.iter().zip(&gaps) {
        assert!(
            *gap < MAX_GAP,
            "a gap of {gap:?} (switch to {ip}): {gaps:?}"
        );
    }
    gaps.sort();
    println!("median frame gap across a network switch: {:?}", gaps[1]);
    // One session, consented once, ended once; the agent never
    // reconnected (the connection moved).
    assert_eq!(
        stage.session_audit_counts(),
        [1, 1, 1],
        "{:?}",
        stage.audit()
    );
    assert_eq!(
        stage
            .agent_proc
            .log()
            .matches("connected to the relay")
            .count(),
        1,
        "the agent reconnected instead of migrating:\n{}",
        stage.agent_proc.log()
    );
    session.wait_exit(Duration::from_secs(10));
}
