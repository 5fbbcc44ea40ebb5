//! A real network switch in the middle of a session: the agent service runs
//! in a network namespace (the employee's laptop, `deskside_tests::netns`)
//! with two uplinks, Wi‑Fi and a phone's hotspot, each with its own address;
//! the relay listens in the root namespace. Mid-session the test takes
//! Wi‑Fi down and brings the hotspot up, as the OS does on such a switch,
//! and never tells the agent: the agent notices that its route's source
//! address changed (`deskside_net::roam`, `Source::Route`), moves its relay
//! connection to a new socket (QUIC migration), the relay sees the client
//! come from the hotspot's address, and the session keeps decoding frames
//! with a gap under 1 s, with one session in the audit and no new consent.
//!
//! Needs root and `ip` (network namespaces), plus Xvfb, xdotool and
//! ImageMagick's `import` (as tests/tests/sessions.rs): with `CI=true` a
//! missing one fails the test; elsewhere it is skipped with a message.

use std::time::{Duration, Instant};

use deskside_tests::netns::{self, Laptop};
use deskside_tests::stage::{
    assert_ran_its_course_on_one_consent, now_us, switch_gaps, Placement, SessionStage,
    StageOptions,
};
use deskside_tests::wait_for;
use deskside_tests::x11::{prerequisites, window_gone};

/// Displays of this test (network_switch.rs uses 80–84).
const DISPLAYS: std::ops::RangeInclusive<u16> = 85..=89;
/// The largest frame gap the switch may cause.
const MAX_GAP: Duration = Duration::from_secs(1);

#[test]
fn a_session_survives_the_laptop_moving_from_wifi_to_a_hotspot_across_namespaces() {
    if !prerequisites() || !netns::prerequisites() {
        return;
    }
    let test_started = Instant::now();
    // Declared before the stage so that it is dropped after it: the
    // namespace goes once the agent in it was killed.
    let laptop = Laptop::create();
    let mut stage = SessionStage::start_placed(
        &StageOptions {
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
        },
        &Placement {
            relay_listen: Some(format!("{}:0", laptop.relay_ip())),
            agent_prefix: laptop.exec_prefix(),
        },
    );
    let (mut session, out) = stage.session(&[
        "--headless",
        "--view-only",
        "--probe-counter",
        "480,400",
        "--duration",
        "15s",
    ]);
    out.until(Duration::from_secs(30), |v| {
        v["state"] == "waiting_for_consent"
    });
    stage.answer_consent(true);
    let mut lines = out.until(Duration::from_secs(30), |v| v["type"] == "frame_counter");
    let started = Instant::now();
    // Some frames over Wi‑Fi first.
    lines.extend(out.until(Duration::from_secs(3), |_| false));
    let switched_at = now_us();
    laptop.switch_to_hotspot();
    wait_for(
        "the agent to notice the new route",
        Duration::from_secs(10),
        || {
            stage
                .agent_proc
                .log()
                .contains("network changed")
                .then_some(())
        },
    );
    stage.wait_relay_saw_move_to(laptop.hotspot_address());
    let relay_log = stage.relay.proc.log();
    let from_wifi = format!("from={}:", laptop.wifi_address());
    assert!(
        relay_log
            .lines()
            .any(|l| l.contains("client moved to a new network path") && l.contains(&from_wifi)),
        "the relay did not see the agent move from Wi-Fi ({from_wifi}):\n{relay_log}"
    );
    assert!(
        window_gone(stage.agent_x.display(), "remote support request"),
        "a consent dialog appeared after the switch"
    );
    lines.extend(out.until(Duration::from_secs(60), |v| v["type"] == "session_end"));
    assert_ran_its_course_on_one_consent(
        &lines,
        &session.log(),
        &format!(
            "15 s, ended after {:?}; agent:\n{}",
            started.elapsed(),
            stage.agent_proc.log()
        ),
    );
    let gaps = switch_gaps(&lines, &[switched_at], &session.log());
    println!(
        "{}",
        serde_json::json!({
            "type": "netns_switch_gap",
            "gap_ms": gaps[0].as_millis(),
            "test_s": test_started.elapsed().as_secs_f64(),
        })
    );
    assert!(
        gaps[0] < MAX_GAP,
        "a gap of {:?} across the switch to the hotspot",
        gaps[0]
    );
    // One session, consented once, ended once; the agent never
    // reconnected (its connection moved).
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
