//! A network switch on the technician's side in the middle of a session
//! (their laptop moves from Wi‑Fi to a phone's hotspot): the console's
//! source address changes (127.0.0.2 → .3 → .4 on loopback, each a real
//! path change for QUIC, pinned through the `<profile>.source-address`
//! file), the console moves its relay connection to a new socket (QUIC
//! migration), the relay logs the move, and the session keeps decoding
//! frames with a gap under 1 s: no reconnection, no new consent, one
//! session in the audit. tests/tests/network_switch.rs does the same on
//! the agent's side.
//!
//! Needs Xvfb, xdotool and ImageMagick's `import` (as tests/tests/sessions.rs):
//! with `CI=true` a missing one fails the test; elsewhere it is skipped with
//! a message.

use std::path::PathBuf;
use std::time::Duration;

use deskside_tests::stage::{
    assert_ran_its_course_on_one_consent, now_us, switch_gaps, SessionStage, StageOptions,
};
use deskside_tests::x11::prerequisites;
use deskside_tests::{wait_for, Proc};

/// Displays of this test (network_switch.rs uses 80–84).
const DISPLAYS: std::ops::RangeInclusive<u16> = 175..=179;
/// The largest frame gap a switch may cause.
const MAX_GAP: Duration = Duration::from_secs(1);
/// The addresses the console moves through after the first.
const SWITCHES: [&str; 2] = ["127.0.0.3", "127.0.0.4"];

/// `<profile>.source-address`, beside the console's profile.
fn source_address_file(stage: &SessionStage) -> PathBuf {
    let profile = &stage.console.profile;
    let stem = profile
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .expect("profile file name");
    profile.with_file_name(format!("{stem}.source-address"))
}

/// Moves the console to `ip` and waits until both the console and the
/// relay logged the move; returns when the move was asked for (µs since
/// epoch).
fn switch_to(stage: &SessionStage, session: &Proc, ip: &str) -> i64 {
    let moves_before = session.log().matches("network changed").count();
    let at = now_us();
    std::fs::write(source_address_file(stage), ip).expect("write");
    wait_for("the console to move", Duration::from_secs(10), || {
        (session.log().matches("network changed").count() > moves_before).then_some(())
    });
    stage.wait_relay_saw_move_to(ip);
    at
}

#[test]
fn a_session_survives_the_consoles_network_switching_with_a_gap_under_a_second() {
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
    // The technician's "Wi‑Fi" address, pinned before the session starts:
    // the console's relay connection moves there as the session begins.
    std::fs::write(source_address_file(&stage), "127.0.0.2").expect("write");
    let (mut session, out) = stage.session(&[
        "--headless",
        "--view-only",
        "--probe-counter",
        "480,400",
        "--duration",
        "14s",
    ]);
    out.until(Duration::from_secs(30), |v| {
        v["state"] == "waiting_for_consent"
    });
    stage.wait_relay_saw_move_to("127.0.0.2");
    stage.answer_consent(true);
    let mut lines = out.until(Duration::from_secs(30), |v| v["type"] == "frame_counter");
    let mut switched_at = Vec::new();
    for ip in SWITCHES {
        // Some frames on the old path first.
        lines.extend(out.until(Duration::from_secs(3), |_| false));
        switched_at.push(switch_to(&stage, &session, ip));
    }
    lines.extend(out.until(Duration::from_secs(60), |v| v["type"] == "session_end"));
    let log = session.log();
    assert_ran_its_course_on_one_consent(&lines, &log, &format!("14 s; console:\n{log}"));
    // The connection moved; it was never lost and made again.
    let link_events: Vec<_> = lines.iter().filter(|v| v["type"] == "relay_link").collect();
    assert!(
        link_events.is_empty(),
        "the console reconnected instead of migrating: {link_events:?}"
    );
    let gaps = switch_gaps(&lines, &switched_at, &session.log());
    println!(
        "{}",
        serde_json::json!({
            "type": "console_network_switch_gaps",
            "gaps_ms": gaps.iter().map(|g| g.as_millis()).collect::<Vec<_>>(),
        })
    );
    for (ip, gap) in SWITCHES.iter().zip(&gaps) {
        assert!(
            *gap < MAX_GAP,
            "a gap of {gap:?} (switch to {ip}): {gaps:?}"
        );
    }
    // One session, consented once, ended once.
    assert_eq!(
        stage.session_audit_counts(),
        [1, 1, 1],
        "{:?}",
        stage.audit()
    );
    session.wait_exit(Duration::from_secs(10));
}
