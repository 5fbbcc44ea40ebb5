//! End-to-end: the relay's defences against floods from the internet, with
//! the real relay binary and raw QUIC clients bound to several loopback
//! addresses (all of 127/8 is loopback on Linux), so each test can play an
//! attacker and a legitimate user from different sources at once.
//!
//! The long, heavy flood is `deskside-bench-flood`, not a test: these stay
//! within seconds each.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A test should panic on an unexpected error.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deskside_net::tls::client_config;
use deskside_net::transport::transport_config;
use deskside_net::tunnel::tune_outer_transport;
use deskside_net::{FramedRecv, FramedSend, ALPN};
use deskside_protocol::console::{ConsoleToRelay, RelayToConsole};
use deskside_protocol::version::{ClientHello, ServerHello};
use deskside_protocol::Fingerprint;
use deskside_tests::peers::initial_packets;
use deskside_tests::{wait_for, Relay, World};

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const NEIGHBOUR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

fn start(world: &mut World, limits: &str) -> (Relay, SocketAddr, Fingerprint) {
    let mut extra = Vec::new();
    let config = world.path("relay.toml");
    if !limits.is_empty() {
        std::fs::write(&config, format!("[limits]\n{limits}\n")).unwrap();
        extra = vec!["--config", config.to_str().unwrap()];
    }
    let relay = world.relay_with(None, &extra);
    let addr = relay.addr.parse().unwrap();
    let fingerprint = relay.fingerprint.parse().unwrap();
    (relay, addr, fingerprint)
}

fn endpoint_on(source: Ipv4Addr) -> quinn::Endpoint {
    let socket = UdpSocket::bind((source, 0)).expect("bind a loopback source address");
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        quinn::default_runtime().unwrap(),
    )
    .unwrap()
}

/// A console-like QUIC connection (no client certificate) from `endpoint`,
/// or how the relay refused it.
async fn quic(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    fingerprint: Fingerprint,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let (tls, _) = client_config(fingerprint, None, ALPN).unwrap();
    let mut config = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    ));
    // Keep-alives: the harness relay drops a silent peer after 6 s.
    let mut transport = transport_config(Duration::from_secs(30), Some(Duration::from_secs(2)));
    tune_outer_transport(&mut transport);
    config.transport_config(Arc::new(transport));
    tokio::time::timeout(
        Duration::from_secs(20),
        endpoint
            .connect_with(config, addr, "deskside-relay")
            .unwrap(),
    )
    .await
    .expect("the relay answers the handshake, one way or the other")
}

/// How a connection attempt ended, for assertion messages.
fn outcome(result: &Result<quinn::Connection, quinn::ConnectionError>) -> String {
    match result {
        Ok(_) => "accepted".to_owned(),
        Err(e) => e.to_string(),
    }
}

fn refused_by_quic(result: Result<quinn::Connection, quinn::ConnectionError>) -> bool {
    matches!(
        result,
        Err(quinn::ConnectionError::ConnectionClosed(ref close))
            if close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED
    )
}

/// Opens the control stream and exchanges hellos.
async fn hello(connection: &quinn::Connection) -> (FramedSend, FramedRecv) {
    let (send, recv) = connection.open_bi().await.unwrap();
    let mut send = FramedSend::new(send, 1 << 16);
    let mut recv = FramedRecv::new(recv, 1 << 20);
    send.send_value(&ClientHello::current("flood-test"))
        .await
        .unwrap();
    let answer: ServerHello = tokio::time::timeout(Duration::from_secs(20), recv.recv_value())
        .await
        .expect("a server hello in time")
        .unwrap();
    assert!(matches!(answer, ServerHello::Accepted { .. }), "{answer:?}");
    (send, recv)
}

/// Logs in with `token` and returns the relay's answer.
async fn login(send: &mut FramedSend, recv: &mut FramedRecv, token: &str) -> RelayToConsole {
    send.send(&ConsoleToRelay::Authenticate {
        token: token.to_owned(),
    })
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(20), recv.recv::<RelayToConsole>())
        .await
        .expect("an answer to Authenticate")
        .unwrap()
        .expect("a message")
}

/// Connects from 127.0.0.1, says hello and logs in with the relay's admin
/// token; the relay must answer `Authenticated`.
async fn assert_admin_logs_in(relay: &Relay, addr: SocketAddr, fingerprint: Fingerprint) {
    let endpoint = endpoint_on(Ipv4Addr::LOCALHOST);
    let connection = quic(&endpoint, addr, fingerprint).await.unwrap();
    let (mut send, mut recv) = hello(&connection).await;
    let answer = login(&mut send, &mut recv, &relay.admin_token).await;
    assert!(
        matches!(answer, RelayToConsole::Authenticated { .. }),
        "{answer:?}"
    );
}

async fn closed_within(connection: &quinn::Connection, limit: Duration) -> Option<String> {
    tokio::time::timeout(limit, connection.closed())
        .await
        .ok()
        .map(|reason| reason.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authentication_deadline_counts_from_the_first_packet() {
    let mut world = World::new();
    let (_relay, addr, fingerprint) = start(&mut world, "");
    let endpoint = endpoint_on(Ipv4Addr::LOCALHOST);
    let first_packet = Instant::now();
    let connection = quic(&endpoint, addr, fingerprint).await.unwrap();
    // The hello comes late, but within the 10 s: the relay answers it...
    tokio::time::sleep_until((first_packet + Duration::from_secs(8)).into()).await;
    let (_send, _recv) = hello(&connection).await;
    // ...and still closes the connection 10 s after its first packet, not
    // 10 s after the hello.
    let reason = closed_within(&connection, Duration::from_secs(15))
        .await
        .expect("the relay closes an unauthenticated connection");
    let at = first_packet.elapsed();
    assert!(
        at >= Duration::from_secs(9) && at < Duration::from_millis(12_500),
        "closed {at:?} after the first packet, expected 10 s ({reason})"
    );
    assert!(
        reason.contains("did not authenticate within 10 s"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_authenticating_a_peer_has_one_stream_and_no_datagrams() {
    let mut world = World::new();
    let (relay, addr, fingerprint) = start(&mut world, "");
    let endpoint = endpoint_on(Ipv4Addr::LOCALHOST);

    let connection = quic(&endpoint, addr, fingerprint).await.unwrap();
    let (mut send, mut recv) = hello(&connection).await;
    let short = Duration::from_millis(1500);
    assert!(
        tokio::time::timeout(short, connection.open_bi())
            .await
            .is_err(),
        "a second stream before authentication must wait for credit the relay does not give"
    );
    assert!(
        tokio::time::timeout(short, connection.open_uni())
            .await
            .is_err(),
        "no unidirectional stream before authentication"
    );
    // After authentication the full budget is there.
    let answer = login(&mut send, &mut recv, &relay.admin_token).await;
    assert!(
        matches!(answer, RelayToConsole::Authenticated { .. }),
        "{answer:?}"
    );
    let long = Duration::from_secs(10);
    tokio::time::timeout(long, connection.open_bi())
        .await
        .expect("a second stream after authentication")
        .unwrap();
    tokio::time::timeout(long, connection.open_uni())
        .await
        .expect("a unidirectional stream after authentication")
        .unwrap();

    // A datagram before authentication ends the connection.
    let eager = quic(&endpoint, addr, fingerprint).await.unwrap();
    let _control = hello(&eager).await;
    eager
        .send_datagram(bytes::Bytes::from_static(b"too early"))
        .unwrap();
    let reason = closed_within(&eager, Duration::from_secs(8))
        .await
        .expect("the relay closes a connection that sends a datagram before authenticating");
    assert!(
        reason.contains("datagram before authenticating"),
        "{reason}"
    );
    connection.close(0u32.into(), b"done");
}

/// The relay's default limits, which the tests below run against (an older
/// relay without them fails the tests on behaviour, not on configuration).
fn defaults() -> deskside_relay::admission::AdmissionLimits {
    deskside_relay::admission::AdmissionLimits::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_may_hold_only_its_share_of_unauthenticated_connections_and_the_next_waits() {
    let mut world = World::new();
    let (relay, addr, fingerprint) = start(&mut world, "");
    let share = defaults().max_unauthenticated_per_source;
    let attacker = endpoint_on(ATTACKER);
    let mut held = Vec::new();
    for _ in 0..share {
        let connection = quic(&attacker, addr, fingerprint).await.unwrap();
        let control = hello(&connection).await;
        held.push((connection, control));
    }
    // One more from the same source waits: the relay leaves its first
    // packet unanswered, and the client sends it again later.
    let waiting = tokio::spawn({
        let attacker = attacker.clone();
        async move { quic(&attacker, addr, fingerprint).await }
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !waiting.is_finished(),
        "connection {} of one source must wait while {share} wait to authenticate",
        share + 1
    );
    // Other sources are not affected.
    let neighbour = endpoint_on(NEIGHBOUR);
    let connection = quic(&neighbour, addr, fingerprint).await.unwrap();
    let (mut send, mut recv) = hello(&connection).await;
    let answer = login(&mut send, &mut recv, &relay.admin_token).await;
    assert!(
        matches!(answer, RelayToConsole::Authenticated { .. }),
        "{answer:?}"
    );
    // One of them authenticates: its slot is free again.
    let (_, (send, recv)) = &mut held[0];
    let answer = login(send, recv, &relay.admin_token).await;
    assert!(
        matches!(answer, RelayToConsole::Authenticated { .. }),
        "{answer:?}"
    );
    let waited = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the waiting connection gets in once a slot is free")
        .unwrap();
    assert!(
        waited.is_ok(),
        "a freed slot is usable: {}",
        outcome(&waited)
    );
}

/// Failed authentications the summary lines of `log` report for `source`.
fn summarised_failures(log: &str, source: &str) -> u64 {
    log.lines()
        .filter(|line| line.contains("before authentication, in the last"))
        .filter_map(|line| {
            let (_, after) = line.split_once(&format!("{source} ×"))?;
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u64>().ok()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_keeps_failing_is_refused_while_others_log_in() {
    let mut world = World::new();
    let (relay, addr, fingerprint) = start(&mut world, "");
    let burst = u64::from(defaults().auth_failure_burst);
    let attacker = endpoint_on(ATTACKER);
    for _ in 0..burst {
        let connection = quic(&attacker, addr, fingerprint).await.unwrap();
        let (mut send, mut recv) = hello(&connection).await;
        let answer = login(&mut send, &mut recv, "dsk_not-a-real-token").await;
        assert!(matches!(answer, RelayToConsole::Refused(_)), "{answer:?}");
        let _ = closed_within(&connection, Duration::from_secs(5)).await;
    }
    let next = quic(&attacker, addr, fingerprint).await;
    assert!(
        refused_by_quic(next.clone()),
        "the source is refused after {burst} failures: {}",
        outcome(&next)
    );
    // The administrator, from another address, still gets in.
    assert_admin_logs_in(&relay, addr, fingerprint).await;
    // Summary lines for the failures (one per interval, so the attempts may
    // straddle two of them), not one line per attempt.
    let wait = defaults().log_interval * 2 + Duration::from_secs(5);
    wait_for("summary lines of every failure", wait, || {
        (summarised_failures(&relay.proc.log(), "127.0.0.2") == burst).then_some(())
    });
    let log = relay.proc.log();
    assert!(
        log.contains("refused 1 connections from sources that failed too often"),
        "{log}"
    );
    let per_attempt = log
        .lines()
        .filter(|line| {
            line.contains("technician token was not accepted") && !line.contains("DEBUG")
        })
        .count();
    assert_eq!(
        per_attempt, 0,
        "one log line per failed attempt above debug level"
    );
}

/// The long-header packet type of a QUIC v1 packet: 0 Initial, 2 Handshake,
/// 3 Retry.
fn long_header_type(packet: &[u8]) -> Option<u8> {
    let first = *packet.first()?;
    (first & 0x80 != 0).then_some((first >> 4) & 0x03)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_threshold_new_addresses_must_answer_a_retry_first() {
    let mut world = World::new();
    let (relay, addr, fingerprint) = start(&mut world, "");
    // First packets that never go on (a forged source): the first ones start
    // handshakes; beyond the threshold each costs the relay one stateless
    // Retry packet and no state.
    let threshold = defaults().retry_above_handshakes;
    let socket = UdpSocket::bind((ATTACKER, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for _ in 0..threshold + 8 {
        socket
            .send_to(&initial_packets(1, addr, fingerprint).unwrap()[0], addr)
            .unwrap();
    }
    let mut retries = 0;
    let mut answer = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(10);
    while retries < 8 && Instant::now() < deadline {
        let Ok((len, _)) = socket.recv_from(&mut answer) else {
            break;
        };
        if long_header_type(&answer[..len]) == Some(3) {
            retries += 1;
        }
    }
    assert_eq!(
        retries, 8,
        "the first packets beyond {threshold} handshakes get a Retry"
    );
    // A real client answers the Retry and logs in as usual.
    assert_admin_logs_in(&relay, addr, fingerprint).await;
}

/// A size as systemd writes it (`1536M`, `1G`), in bytes.
fn systemd_size(unit: &str, key: &str) -> u64 {
    let value = unit
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the packaged unit sets no {key}"))
        .trim();
    let (number, unit_shift) = match value.chars().last() {
        Some('K') => (&value[..value.len() - 1], 10),
        Some('M') => (&value[..value.len() - 1], 20),
        Some('G') => (&value[..value.len() - 1], 30),
        _ => (value, 0),
    };
    number.parse::<u64>().expect("a size") << unit_shift
}

#[test]
fn the_packaged_unit_caps_memory_well_above_what_unauthenticated_peers_can_hold() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../installers/linux/systemd/deskside-relay.service"
    ))
    .unwrap();
    let high = systemd_size(&unit, "MemoryHigh");
    let max = systemd_size(&unit, "MemoryMax");
    assert!(
        high < max,
        "MemoryHigh {high} must be below MemoryMax {max}"
    );
    let limits = deskside_relay::admission::AdmissionLimits::default();
    let worst = limits.max_unauthenticated as u64
        * u64::from(deskside_relay::conn::PRE_AUTH_RECEIVE_WINDOW);
    assert!(
        worst * 8 <= high,
        "unauthenticated peers may hold {worst} bytes: the relay's own limits must keep it well below MemoryHigh ({high})"
    );
}

#[test]
fn the_console_says_why_a_failing_address_is_refused_and_what_to_do() {
    let mut world = World::new();
    let relay = world.relay(None);
    let console = world.console("tech");
    for _ in 0..defaults().auth_failure_burst {
        console
            .login(&relay, "dsk_not-a-real-token")
            .fails_with(1, "not accepted");
    }
    // The relay counts a failure once the refusal was delivered (or after
    // 2 s); its debug line says when.
    let burst = defaults().auth_failure_burst as usize;
    wait_for(
        "the failures to be counted",
        Duration::from_secs(20),
        || {
            let log = relay.proc.log();
            let counted = log
                .lines()
                .filter(|line| line.contains("refused: the technician token was not accepted"))
                .count();
            (counted >= burst).then_some(())
        },
    );
    // The real console, from the same address, is now refused before the
    // handshake, and says so.
    console
        .login(&relay, "dsk_not-a-real-token")
        .fails_with(1, "refused the connection");
    let run = console.login(&relay, &relay.admin_token);
    assert!(
        run.stderr.contains("wait a minute and try again"),
        "{}",
        run.stderr
    );
}
