//! The relay's Prometheus endpoint, end to end: the real relay started with
//! `--metrics-listen 127.0.0.1:0`, the real console and agent, and a remote
//! session through raw clients (`deskside_tests::peers`). Every scrape is
//! read by the strict parser in `deskside_tests::prometheus`, and the
//! counters must move by what the test did.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on surprises.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use deskside_protocol::session::Capabilities;
use deskside_protocol::Fingerprint;
use deskside_tests::peers::{answer_consent, handshake, open_session, parties, within};
use deskside_tests::prometheus::{parse, scrape, Exposition};
use deskside_tests::{wait_for, World};

const PREFIX: &str = "deskside_relay_";
const WAIT: Duration = Duration::from_secs(30);
const SESSION_BYTES: usize = 256 * 1024;

/// One scrape, parsed strictly.
fn page(addr: &str) -> Exposition {
    let (status, body) = scrape(addr);
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    parse(&body, PREFIX).unwrap_or_else(|e| panic!("the page does not parse: {e}\n{body}"))
}

fn failures(page: &Exposition, reason: &str) -> f64 {
    page.get(
        "deskside_relay_authentication_failures_total",
        &[("reason", reason)],
    )
}

fn all_failures(page: &Exposition) -> f64 {
    page.families["deskside_relay_authentication_failures_total"]
        .samples
        .iter()
        .map(|s| s.value)
        .sum()
}

fn open(page: &Exposition, kind: &str) -> f64 {
    page.get("deskside_relay_connections", &[("kind", kind)])
}

fn auths(page: &Exposition, kind: &str) -> f64 {
    page.get("deskside_relay_authentications_total", &[("kind", kind)])
}

fn store_ops(page: &Exposition, op: &str) -> f64 {
    page.get(
        "deskside_relay_store_operation_duration_seconds_count",
        &[("op", op)],
    )
}

/// Polls the endpoint until `check` holds; returns that page.
fn until(addr: &str, what: &str, check: impl Fn(&Exposition) -> bool) -> Exposition {
    wait_for(what, WAIT, || {
        let page = page(addr);
        check(&page).then_some(page)
    })
}

#[test]
fn the_relay_serves_metrics_that_parse_and_count_what_happened() {
    let mut world = World::new();
    let relay = world.relay_with(None, &["--metrics-listen", "127.0.0.1:0"]);
    // Asked for port 0: the ready line and the log say which one was bound.
    let addr = relay.metrics.clone().expect("metrics in the ready line");
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert!(
        relay
            .proc
            .log()
            .contains(&format!("serving metrics at http://{addr}/metrics")),
        "{}",
        relay.proc.log()
    );

    let start = page(&addr);
    for family in [
        "deskside_relay_build_info",
        "deskside_relay_connections",
        "deskside_relay_authentications_total",
        "deskside_relay_authentication_failures_total",
        "deskside_relay_first_packets_total",
        "deskside_relay_handshakes_total",
        "deskside_relay_handshakes_in_progress",
        "deskside_relay_unauthenticated_connections",
        "deskside_relay_sessions_open",
        "deskside_relay_forwarded_bytes_total",
        "deskside_relay_forwarded_packets_total",
        "deskside_relay_dropped_packets_total",
        "deskside_relay_measurements_total",
        "deskside_relay_measurement_speed_tests_total",
        "deskside_relay_measurement_budget_bytes_total",
        "deskside_relay_measurement_hourly_budget_bytes",
        "deskside_relay_store_operation_duration_seconds",
        "deskside_relay_metrics_requests_total",
        "deskside_relay_directory_writes_total",
        "deskside_relay_directory_relays",
        "deskside_relay_ticket_outbox_backlog",
    ] {
        assert!(start.families.contains_key(family), "no family {family}");
    }
    assert_eq!(
        start.families["deskside_relay_store_operation_duration_seconds"].kind,
        "histogram"
    );
    assert_eq!(all_failures(&start), 0.0, "nothing failed yet");
    // The relay registered in its store's directory and beats: it is the
    // one live relay there.
    let beating = until(&addr, "the relay's first directory heartbeat", |p| {
        p.get("deskside_relay_directory_relays", &[]) == 1.0
    });
    assert!(beating.get("deskside_relay_directory_writes_total", &[]) >= 1.0);
    assert_eq!(
        beating.get("deskside_relay_ticket_outbox_backlog", &[]),
        0.0
    );

    // The admin logs in with the real console.
    let admin = world.console("admin");
    admin.login_admin(&relay);
    let logged_in = until(&addr, "the console login to be counted", |p| {
        auths(p, "console") >= auths(&start, "console") + 1.0
    });
    assert!(store_ops(&logged_in, "technician_auth") >= 1.0);

    // A failed login counts exactly one failure, for its reason.
    let before = page(&addr);
    world
        .console("mallory")
        .login(&relay, "dsk_not-a-real-token")
        .fails_with(1, "not accepted");
    // The relay counts it once the refusal was delivered (or after 2 s).
    let after = until(&addr, "the failed login to be counted", |p| {
        failures(p, "bad_technician_token") > failures(&before, "bad_technician_token")
    });
    assert_eq!(
        failures(&after, "bad_technician_token"),
        failures(&before, "bad_technician_token") + 1.0
    );
    assert_eq!(
        all_failures(&after),
        all_failures(&before) + 1.0,
        "only the bad token failed"
    );
    assert_eq!(auths(&after, "console"), auths(&before, "console"));

    // The real agent enrolls, then runs.
    let before = page(&addr);
    let agent = world.agent("laptop");
    let device = agent.enroll(&admin.enroll_token(1, "10m"));
    let enrolled = until(&addr, "the enrollment to be counted", |p| {
        auths(p, "enrollment") > auths(&before, "enrollment")
    });
    assert_eq!(
        auths(&enrolled, "enrollment"),
        auths(&before, "enrollment") + 1.0
    );
    assert_eq!(
        store_ops(&enrolled, "enrollment"),
        store_ops(&before, "enrollment") + 1.0
    );
    let mut running = world.run_agent(&agent);
    admin.wait_status(&device, "online", WAIT);
    let online = until(&addr, "the agent's connection to count as open", |p| {
        open(p, "agent") == 1.0
    });
    assert!(store_ops(&online, "agent_auth") >= 1.0);

    // A session through raw clients: another enrolled agent and a console.
    let fingerprint: Fingerprint = relay.fingerprint.parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (before, during) = runtime.block_on(async {
        let before = page(&addr);
        let mut parties = parties(&relay.addr, fingerprint, &relay.admin_token).await;
        let (opened, request) = open_session(&mut parties).await;
        let (console, agent, _tunnels) =
            within("the handshake", handshake(&parties, &opened, &request)).await;
        let (console, agent) = (console.unwrap(), agent.unwrap());
        answer_consent(&mut parties, &request, Some(Capabilities::VIEW)).await;
        let bytes = vec![0x5a; SESSION_BYTES];
        let send = async {
            let mut stream = console.connection.open_uni().await.unwrap();
            stream.write_all(&bytes).await.unwrap();
            stream.finish().unwrap();
        };
        let receive = async {
            let mut stream = agent.connection.accept_uni().await.unwrap();
            stream.read_to_end(SESSION_BYTES * 2).await.unwrap()
        };
        let (_, received) = within("the session transfer", async {
            tokio::join!(send, receive)
        })
        .await;
        assert_eq!(received.len(), SESSION_BYTES);
        let during = tokio::task::block_in_place(|| page(&addr));
        parties.end_session(opened.session_id).await;
        console.close(0, b"bye").await;
        agent.close(0, b"bye").await;
        parties.close().await;
        (before, during)
    });
    assert_eq!(
        during.get("deskside_relay_sessions_open", &[("state", "consented")]),
        1.0
    );
    assert_eq!(
        open(&during, "agent"),
        2.0,
        "the real agent and the raw one"
    );
    assert!(open(&during, "console") >= 1.0);
    let to_agent = |p: &Exposition| {
        p.get(
            "deskside_relay_forwarded_bytes_total",
            &[("direction", "to_agent")],
        )
    };
    assert!(
        to_agent(&during) - to_agent(&before) >= SESSION_BYTES as f64,
        "forwarded {} bytes to the agent, sent {SESSION_BYTES}",
        to_agent(&during) - to_agent(&before)
    );
    assert!(
        during.get("deskside_relay_forwarded_packets_total", &[])
            > before.get("deskside_relay_forwarded_packets_total", &[])
    );
    assert_eq!(
        store_ops(&during, "session"),
        store_ops(&before, "session") + 1.0
    );
    assert!(store_ops(&during, "console_request") > store_ops(&before, "console_request"));

    // Everything closed: the gauges come back down.
    until(&addr, "the session and raw connections to be gone", |p| {
        p.get("deskside_relay_sessions_open", &[("state", "consented")]) == 0.0
            && p.get(
                "deskside_relay_sessions_open",
                &[("state", "awaiting_consent")],
            ) == 0.0
            && open(p, "console") == 0.0
            && open(p, "agent") == 1.0
    });
    running.terminate();
    let end = until(&addr, "the stopped agent's connection to close", |p| {
        open(p, "agent") == 0.0
    });
    let handshakes = end.get(
        "deskside_relay_handshakes_total",
        &[("outcome", "completed")],
    );
    let authenticated: f64 = end.families["deskside_relay_authentications_total"]
        .samples
        .iter()
        .map(|s| s.value)
        .sum();
    assert!(
        handshakes >= authenticated + 1.0,
        "{handshakes} handshakes for {authenticated} authentications and one failure"
    );

    // Garbage on the endpoint gets a 400 and changes nothing else.
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .write_all(b"\x16\x03\x01garbage \x00\xff\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    let last = page(&addr);
    assert_eq!(
        last.get(
            "deskside_relay_metrics_requests_total",
            &[("answer", "bad_request")]
        ),
        1.0
    );
    assert_eq!(all_failures(&last), all_failures(&end));

    // The load balancers' health check, on the same listener (polled: a
    // store query slower than the check's 2 s deadline on a loaded machine
    // would answer 503, rightly).
    let health = || {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    };
    let answer = wait_for("a 200 from /healthz", WAIT, || {
        let answer = health();
        answer.starts_with("HTTP/1.1 200 OK\r\n").then_some(answer)
    });
    assert!(
        answer.contains("\r\n\r\nok: accepting connections, the store answered in "),
        "{answer}"
    );
    assert!(
        page(&addr).get(
            "deskside_relay_metrics_requests_total",
            &[("answer", "healthy")]
        ) >= 1.0
    );
}

#[test]
fn metrics_are_off_by_default_and_a_taken_address_stops_the_start_before_anything_is_created() {
    // Off by default: the ready line says so.
    let mut world = World::new();
    assert_eq!(world.relay(None).metrics, None);

    let dir = tempfile::tempdir().unwrap();

    // A metrics address already in use: a clear error, and no database.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = dir.path().join("taken");
    let out = std::process::Command::new(deskside_tests::bin("deskside-relay"))
        .args([
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            &addr,
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen for metrics on TCP {addr}"))
            && stderr.contains("--metrics-listen"),
        "{stderr}"
    );
    assert!(
        !data.join("relay.db").exists(),
        "the failed start created the database"
    );
}
