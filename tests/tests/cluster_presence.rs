//! Presence across relays sharing one PostgreSQL store (issue 14): an
//! agent enrolled through relay A attaches; a console on the other relay
//! lists it online (from the directory). The relay holding it is killed
//! with SIGKILL: the directory stops naming it as the device's relay within
//! the idle timeout and the console on the survivor stops showing it online
//! through the dead relay; nothing enrolled is lost (the device is still
//! listed, an enrollment token the dead relay issued is still listed and
//! still enrolls once its relay is back, the admin token still logs in).
//! The relay restarts on its port and the device is online again.

use std::time::{Duration, Instant};

use deskside_tests::cluster::Cluster;
use deskside_tests::{wait_for, World};

/// The relays' `--idle-timeout` (the harness's).
const IDLE_TIMEOUT: Duration = Duration::from_secs(6);

/// A relay's lease in the directory: half the idle timeout (relay/src/cluster.rs).
const LEASE_SECS: i64 = 3;

#[test]
fn a_killed_relays_device_goes_offline_everywhere_and_comes_back_with_it() {
    let test_started = Instant::now();
    let mut world = World::new();
    let Some(mut cluster) = Cluster::start(&mut world, "cluster_presence", 2, &[]) else {
        return;
    };
    let consoles = [
        cluster.admin_console(&world, 0, "admin-a"),
        cluster.admin_console(&world, 1, "admin-b"),
    ];
    let agent = world.agent("laptop");
    let device = agent.enroll(&consoles[0].enroll_token(1, "10m"));
    // Issued through relay A: it must survive relay A's crash.
    let spare = consoles[0].enroll_token(1, "10m");
    let _agent_proc = world.run_agent(&agent);

    // Both consoles see it online, whichever relay it attached to.
    for console in &consoles {
        console.wait_status(&device, "online", Duration::from_secs(60));
    }
    let store = cluster.store();
    let holder = wait_for(
        "the directory to name the device's relay",
        Duration::from_secs(30),
        || cluster.holder(&store, &device, LEASE_SECS),
    );
    let dead = cluster
        .index_of(&holder.id)
        .unwrap_or_else(|| panic!("the device is held by an unknown relay {}", holder.id));
    let alive = 1 - dead;
    let watcher = &consoles[alive];
    eprintln!("cluster_presence: the agent attached to relay {dead}; killing it");

    cluster.kill(dead);
    let killed = Instant::now();
    // Poll until the survivor no longer shows it online through the dead
    // relay. `last_claimed` is when the last poll that still found the dead
    // relay named as the holder began.
    let mut last_claimed = Duration::ZERO;
    let mut shown_online_until = Duration::ZERO;
    let released = loop {
        let began = killed.elapsed();
        let holder = cluster.holder(&store, &device, LEASE_SECS);
        let status = watcher.device_status(&device);
        let held_by_dead = holder
            .as_ref()
            .is_some_and(|h| cluster.index_of(&h.id) == Some(dead));
        let held_by_alive = holder
            .as_ref()
            .is_some_and(|h| cluster.index_of(&h.id) == Some(alive));
        if held_by_dead {
            last_claimed = began;
        }
        if status.as_deref() == Some("online") && !held_by_alive {
            shown_online_until = began;
        }
        if !held_by_dead && (status.as_deref() != Some("online") || held_by_alive) {
            eprintln!(
                "cluster_presence: released: the survivor lists it {status:?}, held by the survivor: {held_by_alive}"
            );
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "30 s after relay {dead} was killed, the survivor still shows device {device} as {status:?} (holder {holder:?})"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "cluster_presence: after the kill the directory named the dead relay until {:.2} s, the survivor showed the device online through it until {:.2} s, released at {:.2} s (idle timeout {IDLE_TIMEOUT:?})",
        last_claimed.as_secs_f64(),
        shown_online_until.as_secs_f64(),
        released.as_secs_f64()
    );
    assert!(
        last_claimed <= IDLE_TIMEOUT,
        "the directory still named dead relay {dead} as the device's relay {last_claimed:?} after the kill"
    );
    assert!(
        shown_online_until <= IDLE_TIMEOUT,
        "the survivor showed the device online through dead relay {dead} {shown_online_until:?} after the kill"
    );

    // Nothing enrolled is lost: the device, the token the dead relay issued,
    // and the admin token (a fresh login on the survivor).
    let row = watcher
        .device(&device)
        .expect("the device is still listed after its relay died");
    assert!(
        row["revoked_at"].is_null(),
        "the device is not revoked: {row}"
    );
    let fresh = world.console("admin-again");
    fresh
        .login(cluster.relay(alive), cluster.admin_token())
        .ok();
    let listed = fresh
        .run(&["enroll-token", "list", "--json"])
        .ok()
        .json_lines();
    assert!(
        listed
            .iter()
            .any(|t| t["uses_left"] == 1 && t["revoked_at"].is_null()),
        "the unused enrollment token issued through the dead relay is still listed: {listed:?}"
    );

    // The relay comes back on its port; the device is online again.
    cluster.restart(&mut world, dead);
    let back = watcher.wait_status(&device, "online", Duration::from_secs(60));
    let holder = cluster
        .holder(&store, &device, LEASE_SECS)
        .and_then(|h| cluster.index_of(&h.id));
    eprintln!(
        "cluster_presence: online again {:.1} s after relay {dead} restarted, held by relay {holder:?}",
        back.as_secs_f64()
    );
    // The restarted relay serves the same fleet view (its console's saved
    // login still works: same port, same certificate).
    consoles[dead].wait_status(&device, "online", Duration::from_secs(60));
    // The token issued before the crash enrolls a second device.
    let desk = world.agent("desk");
    let second = desk.enroll(&spare);
    assert!(
        watcher.device(&second).is_some(),
        "the device enrolled with the token issued before the crash is listed on the other relay"
    );

    let (run, report) = cluster.audit_verify();
    assert_eq!(
        run.code, 0,
        "the audit chain written by both relays verifies: {report:?} {}",
        run.stderr
    );
    eprintln!(
        "cluster_presence: {:.1} s in all",
        test_started.elapsed().as_secs_f64()
    );
}
