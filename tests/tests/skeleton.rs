//! End-to-end tests of the walking skeleton: real relay, agent and console
//! processes on loopback, each test in its own temporary directory.

use std::time::Duration;

use deskside_protocol::token::EnrollToken;
use deskside_tests::{wait_for, World};

/// Generous bound for "the relay noticed a dead agent": its idle timeout is
/// 6 s in tests, plus polling.
const OFFLINE_WITHIN: Duration = Duration::from_secs(30);
const ONLINE_WITHIN: Duration = Duration::from_secs(15);

#[test]
fn device_goes_online_offline_and_online_again() {
    let mut world = World::new();
    let relay = world.relay(None);
    let admin = world.console("admin");
    admin.login_admin(&relay);
    let token = admin.enroll_token(1, "10m");
    let agent = world.agent("laptop");
    let id = agent.enroll(&token);

    let listed = admin.devices();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(
        listed[0]["status"], "offline",
        "enrolled but not running yet"
    );

    let mut running = world.run_agent(&agent);
    admin.wait_status(&id, "online", ONLINE_WITHIN);
    let status = agent.status();
    assert_eq!(status["connected"], true, "{status}");
    assert_eq!(status["running"], true);

    let shown = admin.run(&["devices", "show", &id, "--json"]).ok().json();
    assert_eq!(shown["status"], "online");
    assert!(shown["hostname"].as_str().is_some_and(|h| !h.is_empty()));
    assert!(shown["last_address"]
        .as_str()
        .is_some_and(|a| a.starts_with("127.0.0.1:")));

    // A killed agent cannot say goodbye: the relay must notice on its own.
    running.kill();
    let took = admin.wait_status(&id, "offline", OFFLINE_WITHIN);
    eprintln!("offline detected {took:?} after SIGKILL");
    assert_eq!(agent.status()["running"], false);

    let mut running = world.run_agent(&agent);
    admin.wait_status(&id, "online", ONLINE_WITHIN);

    // A stopped agent says goodbye: offline at once, not after the timeout.
    assert!(running.terminate().success());
    let took = admin.wait_status(&id, "offline", Duration::from_secs(3));
    eprintln!("offline detected {took:?} after SIGTERM");
}

#[test]
fn agent_reconnects_by_itself_after_relay_restarts_and_nothing_is_lost() {
    let mut world = World::new();
    let mut relay = world.relay(None);
    let admin = world.console("admin");
    admin.login_admin(&relay);
    let token = admin.enroll_token(1, "10m");
    let agent = world.agent("laptop");
    let id = agent.enroll(&token);
    let _running = world.run_agent(&agent);
    admin.wait_status(&id, "online", ONLINE_WITHIN);
    let before = admin.devices();

    // Hard kill, then a graceful stop: both must need no action on the agent.
    for hard in [true, false] {
        let port = relay.port();
        if hard {
            relay.proc.kill();
        } else {
            assert!(relay.proc.terminate().success());
        }
        let fingerprint = relay.fingerprint.clone();
        relay = world.relay(Some(port));
        assert_eq!(
            relay.fingerprint, fingerprint,
            "the dev certificate is kept"
        );
        let took = admin.wait_status(&id, "online", Duration::from_secs(15));
        eprintln!("agent back online {took:?} after the relay restarted (hard kill: {hard})");
    }

    // Same device, same enrollment, admin token still valid.
    let after = admin.devices();
    assert_eq!(after.len(), before.len());
    assert_eq!(after[0]["id"], before[0]["id"]);
    assert_eq!(after[0]["first_seen"], before[0]["first_seen"]);
}

#[test]
fn bad_tokens_and_revoked_devices_are_refused_with_clear_messages() {
    let mut world = World::new();
    let relay = world.relay(None);
    let admin = world.console("admin");
    admin.login_admin(&relay);

    // A single-use token works once.
    let token = admin.enroll_token(1, "10m");
    let first = world.agent("first");
    let first_id = first.enroll(&token);
    let second = world.agent("second");
    second
        .run(&["enroll", &token])
        .fails_with(1, "already been used");
    assert_eq!(
        second.status()["enrolled"],
        false,
        "a refused enrollment writes nothing"
    );
    assert!(!second.key_path().exists());

    // An expired token.
    let short = admin.enroll_token(1, "1s");
    std::thread::sleep(Duration::from_millis(1500)); // let it expire
    second.run(&["enroll", &short]).fails_with(1, "expired");
    assert_eq!(second.status()["enrolled"], false);

    // A token whose fingerprint is not the relay's: the agent must not talk.
    let good = admin.enroll_token(1, "10m");
    let mut forged = EnrollToken::decode(&good).unwrap();
    forged.fingerprint.0[0] ^= 0xff;
    second
        .run(&["enroll", &forged.encode()])
        .fails_with(3, "not the pinned");
    assert_eq!(second.status()["enrolled"], false);
    // The genuine token is still unused after that attempt.
    second.enroll(&good);

    // A revoked device is disconnected and refused from then on.
    let mut running = world.run_agent(&first);
    admin.wait_status(&first_id, "online", ONLINE_WITHIN);
    let revoked = admin
        .run(&["devices", "revoke", &first_id, "--json"])
        .ok()
        .json();
    assert_eq!(revoked["type"], "device_revoked");
    let status = running
        .wait_exit(Duration::from_secs(15))
        .expect("a revoked agent stops instead of retrying forever");
    assert_eq!(
        status.code(),
        Some(3),
        "exit code 3 tells the service manager not to restart"
    );
    assert!(running.log().contains("revoked"), "{}", running.log());
    assert_eq!(admin.device_status(&first_id).as_deref(), Some("revoked"));
    first
        .run(&["run"])
        .fails_with(3, "revoked by an administrator");

    // A bad technician token is refused and not saved.
    let intruder = world.console("intruder");
    intruder
        .login(&relay, "dst_not-a-real-token")
        .fails_with(1, "not accepted");
    assert!(!intruder.profile.exists());
    intruder
        .run(&["devices", "list"])
        .fails_with(1, "deskside login");

    // A viewer can read but not administer.
    let issued = admin.create_token("val", "viewer");
    let viewer = world.console("viewer");
    viewer.login(&relay, issued["token"].as_str().unwrap()).ok();
    assert_eq!(viewer.devices().len(), 2);
    viewer
        .run(&["tokens", "list"])
        .fails_with(1, "needs the admin role");
    viewer
        .run(&["devices", "revoke", &first_id])
        .fails_with(1, "needs the admin role");
    viewer
        .run(&["enroll-token", "create"])
        .fails_with(1, "needs the technician role");

    // A revoked technician token stops working.
    let id = issued["id"].to_string();
    admin.run(&["tokens", "revoke", &id]).ok();
    viewer
        .run(&["devices", "list"])
        .fails_with(1, "not accepted");
}

#[test]
fn key_readable_by_others_stops_the_agent_with_the_fix() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut world = World::new();
    let relay = world.relay(None);
    let admin = world.console("admin");
    admin.login_admin(&relay);
    let agent = world.agent("laptop");
    agent.enroll(&admin.enroll_token(1, "10m"));
    let key = agent.key_path();
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key is created owner-only");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    agent
        .run(&["run"])
        .fails_with(3, &format!("chmod 600 {}", key.display()));
}

#[test]
fn garbage_and_oversize_frames_close_only_the_offending_connection() {
    let mut world = World::new();
    let relay = world.relay(None);
    let admin = world.console("admin");
    admin.login_admin(&relay);
    let agent = world.agent("laptop");
    let id = agent.enroll(&admin.enroll_token(1, "10m"));
    let mut running = world.run_agent(&agent);
    admin.wait_status(&id, "online", ONLINE_WITHIN);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr: std::net::SocketAddr = relay.addr.parse().unwrap();
    let fingerprint = relay.fingerprint.parse().unwrap();
    rt.block_on(async {
        // Raw UDP garbage at the QUIC port.
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for size in [1usize, 7, 1200, 1500] {
            udp.send_to(&vec![0xa5; size], addr).await.unwrap();
        }
        // Garbage instead of a hello, an oversize frame header instead of a
        // hello, and an oversize frame after a valid hello.
        let cases: [(&str, Vec<u8>, bool); 3] = [
            ("garbage", b"GET / HTTP/1.1\r\n\r\n".to_vec(), false),
            ("oversize hello", (u32::MAX).to_be_bytes().to_vec(), false),
            (
                "oversize frame",
                (64u32 * 1024 * 1024).to_be_bytes().to_vec(),
                true,
            ),
        ];
        for (name, bytes, after_hello) in cases {
            let reason =
                deskside_tests::raw::send_and_wait_close(addr, fingerprint, &bytes, after_hello)
                    .await;
            assert!(
                reason.contains("closed by peer") && reason.contains("(code 1)"),
                "{name}: expected a protocol-violation close, got {reason}"
            );
        }
    });

    // Everybody else is still served.
    assert_eq!(admin.device_status(&id).as_deref(), Some("online"));
    assert!(
        running.wait_exit(Duration::from_millis(100)).is_none(),
        "agent still running"
    );
    let log = relay.proc.log();
    assert!(
        log.contains("closing connection"),
        "the relay logs why: {log}"
    );
    wait_for(
        "the agent to still report connected",
        Duration::from_secs(5),
        || (agent.status()["connected"] == true).then_some(()),
    );
}

#[test]
fn a_peer_from_a_newer_release_is_told_to_upgrade_instead_of_hanging() {
    use deskside_net::transport::version_advice;
    use deskside_protocol::version::{ServerHello, VersionRange};
    let mut world = World::new();
    let relay = world.relay(None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr = relay.addr.parse().unwrap();
    let fingerprint = relay.fingerprint.parse().unwrap();
    let future = VersionRange { min: 50, max: 60 };
    let answer = rt.block_on(deskside_tests::raw::exchange_hello(
        addr,
        fingerprint,
        future,
    ));
    let ServerHello::VersionMismatch {
        relay: theirs,
        software,
    } = answer
    else {
        panic!("expected a version mismatch, got {answer:?}");
    };
    assert_eq!(theirs, VersionRange::CURRENT);
    assert!(
        version_advice(future, theirs, &software).ends_with("upgrade the relay"),
        "the newer client is told the relay must be upgraded"
    );
    // And the reverse: a client too old for the relay is told to upgrade itself.
    let old = VersionRange { min: 0, max: 0 };
    assert!(version_advice(old, theirs, &software).ends_with("upgrade this program"));
    // A compatible range still negotiates the newest common version.
    let wide = VersionRange { min: 1, max: 60 };
    let answer = rt.block_on(deskside_tests::raw::exchange_hello(addr, fingerprint, wide));
    assert!(
        matches!(answer, ServerHello::Accepted { version, .. } if version == VersionRange::CURRENT.max)
    );
}
