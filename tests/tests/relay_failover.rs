//! Failover between relays sharing one PostgreSQL store (issue 14): the
//! enrollment token and the login string issued through a relay name every
//! live relay with its certificate fingerprint; an agent enrolled through
//! relay A attaches to one of them, and when that relay is killed with
//! SIGKILL it attaches to the other on its own (within 15 s) and measures
//! its path against it; a console whose login string names the dead relay
//! first reaches the survivor.
//!
//! Real processes: two `deskside-relay serve --store postgres://…`, the
//! agent and the consoles; the PostgreSQL server is the tests' shared one
//! (skipped visibly without it, a failure under CI=true).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use deskside_protocol::certificate::{decode_enroll_token, decode_login_string};
use deskside_tests::cluster::Cluster;
use deskside_tests::{wait_for, Console, Proc, World};

/// A relay's lease in the directory: half the harness's 6 s idle timeout.
const LEASE_SECS: i64 = 3;

/// What the issue asks: the agent is on the surviving relay within 15 s of
/// the kill (idle timeout 6 s to notice the loss, then at most the relay's
/// advised reconnection window, 0.5 s for one agent).
const FAILOVER_DEADLINE: Duration = Duration::from_secs(15);

#[test]
fn an_agent_and_a_console_fail_over_to_the_surviving_relay() {
    let mut world = World::new();
    let Some(mut cluster) = Cluster::start(&mut world, "relay_failover", 2, &[]) else {
        return;
    };
    let consoles = [
        cluster.admin_console(&world, 0, "admin-a"),
        cluster.admin_console(&world, 1, "admin-b"),
    ];

    // The token issued through relay A names both relays, A first, each
    // with the fingerprint of its own certificate.
    let token = wait_for(
        "relay A to issue a token naming both relays",
        Duration::from_secs(30),
        || {
            let token = consoles[0].enroll_token(1, "10m");
            let (decoded, _) = decode_enroll_token(&token).expect("a valid token");
            (decoded.relays().len() == 2).then_some(token)
        },
    );
    let (decoded, _) = decode_enroll_token(&token).expect("a valid token");
    let named: Vec<(String, String)> = decoded
        .relays()
        .iter()
        .map(|r| (r.addr.clone(), r.fingerprint.to_string()))
        .collect();
    let expected: Vec<(String, String)> = (0..2)
        .map(|i| {
            let relay = cluster.relay(i);
            (relay.addr.clone(), relay.fingerprint.clone())
        })
        .collect();
    assert_eq!(named, expected, "the token names A then B, pinned");

    let agent = world.agent("laptop");
    let device = agent.enroll(&token);
    let agent_proc = world.run_agent(&agent);
    let store = cluster.store();
    let holder = wait_for(
        "the directory to name the device's relay",
        Duration::from_secs(60),
        || cluster.holder(&store, &device, LEASE_SECS),
    );
    let first = cluster
        .index_of(&holder.id)
        .unwrap_or_else(|| panic!("the device is held by an unknown relay {}", holder.id));
    // The agent raced both relays at start and kept the first handshake;
    // if that was B, B dies first and comes back, so that the last kill is
    // always of relay A, the one the agent enrolled with (what an agent
    // without the list could never leave).
    if first == 1 {
        fail_over(&mut cluster, &store, &consoles, &device, &agent_proc, 1);
        cluster.restart(&mut world, 1);
    }

    // A login string issued through the relay about to die names it first.
    let issued = consoles[0].create_token("tina", "technician");
    let login_text = issued["login"].as_str().expect("a login string");
    let (login, _) = decode_login_string(login_text).expect("a valid login string");
    assert_eq!(
        login.relays().len(),
        2,
        "the login string names both relays"
    );
    assert_eq!(login.relay, cluster.relay(0).addr);
    let tina = world.console("tina");
    tina.run(&["login", login_text, "--json"]).ok();

    fail_over(&mut cluster, &store, &consoles, &device, &agent_proc, 0);
    let watcher = &consoles[1];

    // The path is measured against the relay the agent is attached to
    // now, not the one it enrolled with (which may be the dead one).
    let started = Instant::now();
    let fresh = watcher.run(&["diag", &device, "--json"]).ok().json();
    eprintln!(
        "relay_failover: diag after the failover took {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        fresh["snapshot"]["path"]["measured"]["udp_ok"], true,
        "the path to the surviving relay is measured: {}",
        fresh["snapshot"]["path"]
    );

    // The console whose profile names the dead relay first reaches the
    // survivor and sees the device online there.
    let started = Instant::now();
    let rows = tina.run(&["devices", "list", "--json"]).ok().json_lines();
    eprintln!(
        "relay_failover: a console with the dead relay first answered in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let row = rows
        .iter()
        .find(|row| row["id"] == device.as_str())
        .unwrap_or_else(|| panic!("device {device} listed through the survivor: {rows:?}"));
    assert_eq!(row["status"], "online", "{row}");
}

fn unix_secs_f64(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The UTC time a tracing log line starts with (`2026-12-06T19:23:16.876185Z`),
/// as Unix seconds.
fn log_time(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut ymd = date.split('-').map(|part| part.parse::<i64>().ok());
    let (year, month, day) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let mut hms = time.split(':');
    let hours: f64 = hms.next()?.parse().ok()?;
    let minutes: f64 = hms.next()?.parse().ok()?;
    let seconds: f64 = hms.next()?.parse().ok()?;
    // Days since 1970-01-01 of a proleptic Gregorian date (the civil-days
    // algorithm: years counted from March so February ends the year).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(days as f64 * 86_400.0 + hours * 3600.0 + minutes * 60.0 + seconds)
}

#[test]
fn log_times_read_as_unix_seconds() {
    assert_eq!(log_time("1970-01-01T00:00:01.5Z  INFO x"), Some(1.5));
    assert_eq!(
        log_time("2026-12-06T19:23:16.250000Z  WARN y"),
        Some(1_796_584_996.25)
    );
    assert_eq!(log_time("2000-03-01T00:00:00Z"), Some(951_868_800.0));
    assert_eq!(log_time("garbage"), None);
}

/// Kills relay `dead` (the one holding `device`) with SIGKILL and waits until
/// the agent is attached to the other one and the other one's console shows
/// the device online; asserts the agent got there within
/// [`FAILOVER_DEADLINE`] by its own log's clock.
fn fail_over(
    cluster: &mut Cluster,
    store: &deskside_relay::store::Store,
    consoles: &[Console; 2],
    device: &str,
    agent_proc: &Proc,
    dead: usize,
) {
    let alive = 1 - dead;
    eprintln!("relay_failover: the agent is on relay {dead}; killing it");
    let survivor = cluster.relay(alive).addr.clone();
    cluster.kill(dead);
    let killed = Instant::now();
    let killed_at = unix_secs_f64(SystemTime::now());
    let watcher = &consoles[alive];
    let observed = loop {
        let held_by_alive = cluster
            .holder(store, device, LEASE_SECS)
            .is_some_and(|h| cluster.index_of(&h.id) == Some(alive));
        if held_by_alive && watcher.device_status(device).as_deref() == Some("online") {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "60 s after relay {dead} was killed the agent is not on relay {alive}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // When the agent attached to the survivor, by its own log's clock (the
    // polling above, two command lines per round on a loaded machine, only
    // says it was done by then). How the time splits: noticing the loss
    // (keep-alive 4 s + idle timeout 6 s), the advised wait (at most 0.5 s
    // for one agent), the handshake.
    let log = agent_proc.log();
    let attached_at = log
        .lines()
        .filter(|line| {
            line.contains("connected to the relay") && line.contains(&format!("relay={survivor} "))
        })
        .filter_map(log_time)
        .find(|at| *at > killed_at)
        .unwrap_or_else(|| {
            panic!("the agent's log has no attachment to {survivor} after the kill:\n{log}")
        });
    let failed_over = Duration::from_secs_f64(attached_at - killed_at);
    eprintln!(
        "relay_failover: the agent attached to relay {alive} {:.2} s after relay {dead} was killed (seen through relay {alive}'s console after {:.2} s)",
        failed_over.as_secs_f64(),
        observed.as_secs_f64()
    );
    assert!(
        failed_over <= FAILOVER_DEADLINE,
        "the agent took {failed_over:?} to reach the surviving relay (at most {FAILOVER_DEADLINE:?}):\n{log}"
    );
}
