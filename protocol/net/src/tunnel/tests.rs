//! In-process tests of the session tunnel over real quinn outer connections
//! on loopback, through a tiny relay that forwards session packets by id
//! without decrypting anything.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use deskside_protocol::Fingerprint;
use tokio::task::JoinHandle;

use super::*;
use crate::tls::{client_config, Identity, RELAY_SERVER_NAME};
use crate::transport::ALPN;

const CONSOLE: u8 = 0;
const AGENT: u8 = 1;
const SESSION: SessionId = SessionId(0x5e55_1011_dead_beef);

fn outer_transport(datagrams: bool) -> quinn::TransportConfig {
    let mut config = transport_config(Duration::from_secs(12), Some(Duration::from_secs(4)));
    tune_outer_transport(&mut config);
    if !datagrams {
        config.datagram_receive_buffer_size(None);
    }
    config
}

type Routes = Arc<Mutex<HashMap<(SessionId, u8), PacketSender>>>;

/// A relay that only routes: each outer connection first claims
/// `[role][session id]` on a bidirectional stream, then every session packet
/// it sends goes to the other role's latest connection for that session.
/// Every forwarded packet is recorded in `spy`.
struct TestRelay {
    addr: SocketAddr,
    fingerprint: Fingerprint,
    datagrams: bool,
    spy: Arc<Mutex<Vec<Bytes>>>,
    task: JoinHandle<()>,
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestRelay {
    fn spawn(datagrams: bool) -> TestRelay {
        let id = Identity::generate(&[RELAY_SERVER_NAME]).unwrap();
        let tls = id.server_config(ALPN).unwrap();
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
        server.transport_config(Arc::new(outer_transport(datagrams)));
        let endpoint = quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = endpoint.local_addr().unwrap();
        let spy = Arc::new(Mutex::new(Vec::new()));
        let routes = Routes::default();
        let task = {
            let spy = spy.clone();
            tokio::spawn(async move {
                let mut connections = tokio::task::JoinSet::new();
                while let Some(incoming) = endpoint.accept().await {
                    let (routes, spy) = (routes.clone(), spy.clone());
                    connections.spawn(async move {
                        if let Ok(conn) = incoming.await {
                            relay_connection(conn, routes, spy).await;
                        }
                    });
                }
            })
        };
        TestRelay {
            addr,
            fingerprint: id.fingerprint(),
            datagrams,
            spy,
            task,
        }
    }

    /// An outer connection that claims `role` in `session`.
    async fn connect(&self, role: u8, session: SessionId) -> quinn::Connection {
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let (tls, _) = client_config(self.fingerprint, None, ALPN).unwrap();
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let mut config = quinn::ClientConfig::new(Arc::new(quic));
        config.transport_config(Arc::new(outer_transport(self.datagrams)));
        let conn = endpoint
            .connect_with(config, self.addr, RELAY_SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let mut claim = vec![role];
        claim.extend_from_slice(&session.0.to_be_bytes());
        send.write_all(&claim).await.unwrap();
        // The relay answers once the route is in place.
        let mut ack = [0u8; 1];
        recv.read_exact(&mut ack).await.unwrap();
        conn
    }

    fn forwarded(&self) -> Vec<Bytes> {
        self.spy.lock().unwrap().clone()
    }
}

async fn relay_connection(conn: quinn::Connection, routes: Routes, spy: Arc<Mutex<Vec<Bytes>>>) {
    let Ok((mut send, mut recv)) = conn.accept_bi().await else {
        return;
    };
    let mut claim = [0u8; 9];
    if recv.read_exact(&mut claim).await.is_err() {
        return;
    }
    let role = claim[0];
    let session = SessionId(u64::from_be_bytes(claim[1..].try_into().unwrap()));
    let (sender, mut receiver) = packet_link(conn);
    routes.lock().unwrap().insert((session, role), sender);
    let _ = send.write_all(&[1]).await;
    while let Ok(packet) = receiver.recv().await {
        // A real relay also checks that this connection is a party of the
        // session; the test relay trusts its claim.
        spy.lock().unwrap().push(packet.wire().clone());
        let peer = routes
            .lock()
            .unwrap()
            .get(&(packet.session_id(), 1 - role))
            .cloned();
        if let Some(peer) = peer {
            peer.send(packet);
        }
    }
}

struct Keys {
    technician: Identity,
    agent: Identity,
}

fn keys() -> Keys {
    Keys {
        technician: Identity::generate(&["technician"]).unwrap(),
        agent: Identity::generate(&["deskside-agent"]).unwrap(),
    }
}

fn key(id: &Identity) -> Fingerprint {
    id.key_fingerprint().unwrap()
}

/// Both ends of a session through `relay`, each with its own carrier.
struct Ends {
    console: SessionConn,
    agent: SessionConn,
    console_carrier: Carrier,
    _agent_carrier: Carrier,
    _carried: (CarriedSession, CarriedSession),
}

async fn session_through(relay: &TestRelay, keys: &Keys) -> Ends {
    let console_carrier = Carrier::new();
    let agent_carrier = Carrier::new();
    console_carrier.attach(relay.connect(CONSOLE, SESSION).await);
    agent_carrier.attach(relay.connect(AGENT, SESSION).await);
    let (console_socket, console_port) = TunnelSocket::pair_ends(DEFAULT_QUEUE_PACKETS);
    let (agent_socket, agent_port) = TunnelSocket::pair_ends(DEFAULT_QUEUE_PACKETS);
    let carried = (
        console_carrier.carry(SESSION, console_port).unwrap(),
        agent_carrier.carry(SESSION, agent_port).unwrap(),
    );
    let config = SessionConfig::default();
    let (console, agent) = tokio::join!(
        connect_session(console_socket, &keys.technician, key(&keys.agent), &config),
        accept_session(agent_socket, &keys.agent, key(&keys.technician), &config),
    );
    Ends {
        console: console.unwrap(),
        agent: agent.unwrap(),
        console_carrier,
        _agent_carrier: agent_carrier,
        _carried: carried,
    }
}

/// Echoes one bidirectional stream: reads to the end, answers the reverse.
fn echo_reversed(conn: &quinn::Connection) -> JoinHandle<Vec<u8>> {
    let conn = conn.clone();
    tokio::spawn(async move {
        let (mut send, mut recv) = conn.accept_bi().await.unwrap();
        let data = recv.read_to_end(64 << 20).await.unwrap();
        let mut reversed = data.clone();
        reversed.reverse();
        send.write_all(&reversed).await.unwrap();
        send.finish().unwrap();
        let _ = send.stopped().await;
        data
    })
}

#[tokio::test]
async fn console_and_agent_talk_through_a_blind_relay_and_agree_on_the_code() {
    let relay = TestRelay::spawn(true);
    let keys = keys();
    let ends = session_through(&relay, &keys).await;

    let echo = echo_reversed(&ends.agent.connection);
    let message: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (mut send, mut recv) = ends.console.connection.open_bi().await.unwrap();
    send.write_all(&message).await.unwrap();
    send.finish().unwrap();
    let answer = recv.read_to_end(64 << 20).await.unwrap();
    assert_eq!(echo.await.unwrap(), message);
    let mut expected = message.clone();
    expected.reverse();
    assert_eq!(answer, expected);

    let console_code = ends.console.verification_code(SESSION).unwrap();
    let agent_code = ends.agent.verification_code(SESSION).unwrap();
    assert_eq!(console_code, agent_code);
    assert_eq!(console_code.len(), 7, "{console_code}");
    assert!(console_code.chars().enumerate().all(|(i, c)| if i == 3 {
        c == ' '
    } else {
        c.is_ascii_digit()
    }));
    // The code is bound to the session id too.
    assert_ne!(
        ends.console
            .verification_code(SessionId(SESSION.0 + 1))
            .unwrap(),
        console_code
    );
    assert_eq!(ends.console.peer_key, key(&keys.agent));
    assert_eq!(ends.agent.peer_key, key(&keys.technician));

    // The packets went through the relay as datagrams, and the inner MTU
    // discovery grew the inner packets beyond the 1200-byte minimum.
    let link = ends.console_carrier.current().unwrap();
    assert!(link.stats().datagrams_sent() > 100, "{:?}", link.stats());
    assert!(!relay.forwarded().is_empty());
    let largest = relay.forwarded().iter().map(|p| p.len()).max().unwrap();
    assert!(largest > 1200 + 8, "largest forwarded packet {largest}");
}

#[tokio::test]
async fn the_relay_never_sees_plaintext() {
    let relay = TestRelay::spawn(true);
    let keys = keys();
    let ends = session_through(&relay, &keys).await;
    let canary = b"CANARY-plaintext-0d1e5c2a-do-not-leak";
    let echo = echo_reversed(&ends.agent.connection);
    let (mut send, mut recv) = ends.console.connection.open_bi().await.unwrap();
    for _ in 0..200 {
        send.write_all(canary).await.unwrap();
    }
    send.finish().unwrap();
    recv.read_to_end(1 << 20).await.unwrap();
    let seen = echo.await.unwrap();
    assert_eq!(&seen[..canary.len()], canary);

    let forwarded = relay.forwarded();
    let total: usize = forwarded.iter().map(|p| p.len()).sum();
    assert!(total > 200 * canary.len(), "the spy saw only {total} bytes");
    let needle = &canary[..16];
    for packet in &forwarded {
        assert!(
            !packet.windows(needle.len()).any(|w| w == needle),
            "plaintext canary in a forwarded packet"
        );
    }
    // Also across packet boundaries, in the order they were forwarded.
    let all: Vec<u8> = forwarded.iter().flat_map(|p| p.iter().copied()).collect();
    assert!(!all.windows(needle.len()).any(|w| w == needle));
    // And the relay can read what it must: the session id.
    assert!(forwarded
        .iter()
        .all(|p| SessionPacket::from_wire(p.clone()).unwrap().session_id() == SESSION));
}

#[tokio::test]
async fn the_session_survives_the_console_relay_connection_being_replaced() {
    let relay = TestRelay::spawn(true);
    let keys = keys();
    let ends = session_through(&relay, &keys).await;
    let inner_id = ends.console.connection.stable_id();

    let agent = ends.agent.connection.clone();
    let receiver = tokio::spawn(async move {
        let (mut send, mut recv) = agent.accept_bi().await.unwrap();
        let mut first = [0u8; 8];
        recv.read_exact(&mut first).await.unwrap();
        let rest = recv.read_to_end(1 << 20).await.unwrap();
        send.write_all(b"done").await.unwrap();
        send.finish().unwrap();
        let _ = send.stopped().await;
        (first, rest)
    });
    let (mut send, mut recv) = ends.console.connection.open_bi().await.unwrap();
    send.write_all(b"before..").await.unwrap();

    // The console loses its relay connection for 3 s.
    let old = ends.console_carrier.current().unwrap().connection().clone();
    old.close(0u32.into(), b"simulated network loss");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(ends.console_carrier.current().is_none());
    // Written while no relay connection exists: buffered by the inner QUIC.
    send.write_all(&[7u8; 50_000]).await.unwrap();
    send.finish().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    ends.console_carrier
        .attach(relay.connect(CONSOLE, SESSION).await);

    let answer = recv.read_to_end(16).await.unwrap();
    assert_eq!(answer, b"done");
    let (first, rest) = receiver.await.unwrap();
    assert_eq!(&first, b"before..");
    assert_eq!(rest, vec![7u8; 50_000]);
    // Same inner connection, still open, and no second handshake: the agent
    // endpoint refuses new connections after the first.
    assert_eq!(ends.console.connection.stable_id(), inner_id);
    assert!(ends.console.connection.close_reason().is_none());
    assert!(ends.agent.connection.close_reason().is_none());
    assert_eq!(ends.console_carrier.stats().attachments(), 2);
    assert!(ends.console_carrier.stats().dropped_detached() > 0);
}

#[tokio::test]
async fn without_outer_datagrams_packets_take_the_stream_fallback() {
    let relay = TestRelay::spawn(false);
    let keys = keys();
    let ends = session_through(&relay, &keys).await;
    let echo = echo_reversed(&ends.agent.connection);
    let (mut send, mut recv) = ends.console.connection.open_bi().await.unwrap();
    send.write_all(&[1u8; 200_000]).await.unwrap();
    send.finish().unwrap();
    assert_eq!(recv.read_to_end(1 << 20).await.unwrap(), vec![1u8; 200_000]);
    echo.await.unwrap();
    assert_eq!(
        ends.console.verification_code(SESSION).unwrap(),
        ends.agent.verification_code(SESSION).unwrap()
    );
    let stats = ends.console_carrier.current().unwrap().stats();
    assert_eq!(stats.datagrams_sent(), 0);
    assert!(stats.stream_packets_sent() > 100, "{stats:?}");
    assert!(stats.stream_packets_received() > 10, "{stats:?}");
}

/// Connects two tunnel ports back to back, as a perfect relay would.
fn wire(a: TunnelPort, b: TunnelPort) -> JoinHandle<()> {
    tokio::spawn(async move {
        let TunnelPort {
            outgoing: mut a_out,
            incoming: a_in,
            stats: a_stats,
        } = a;
        let TunnelPort {
            outgoing: mut b_out,
            incoming: b_in,
            stats: b_stats,
        } = b;
        loop {
            tokio::select! {
                Some(p) = a_out.recv() => { socket::deliver(&b_in, &b_stats, p); }
                Some(p) = b_out.recv() => { socket::deliver(&a_in, &a_stats, p); }
                else => return,
            }
        }
    })
}

const QUICK: SessionConfig = SessionConfig {
    handshake_timeout: Duration::from_secs(5),
    idle_timeout: INNER_IDLE_TIMEOUT,
    keep_alive: INNER_KEEP_ALIVE,
    mtu_upper_bound: INNER_MTU_UPPER_BOUND,
};

#[tokio::test]
async fn a_console_pinning_another_agent_key_refuses_the_agent() {
    let keys = keys();
    let other = Identity::generate(&["someone-else"]).unwrap();
    let (c, cp) = TunnelSocket::pair_ends(64);
    let (a, ap) = TunnelSocket::pair_ends(64);
    let _wire = wire(cp, ap);
    let (console, agent) = tokio::join!(
        connect_session(c, &keys.technician, key(&other), &QUICK),
        accept_session(a, &keys.agent, key(&keys.technician), &QUICK),
    );
    match console.unwrap_err() {
        TunnelError::PeerKeyMismatch { expected, found } => {
            assert_eq!(expected, key(&other));
            assert_eq!(found, key(&keys.agent));
        }
        e => panic!("expected a key mismatch, got {e}"),
    }
    assert!(agent.is_err());
}

#[tokio::test]
async fn an_agent_pinning_another_technician_key_refuses_the_console() {
    let keys = keys();
    let other = Identity::generate(&["another-technician"]).unwrap();
    let (c, cp) = TunnelSocket::pair_ends(64);
    let (a, ap) = TunnelSocket::pair_ends(64);
    let _wire = wire(cp, ap);
    let (console, agent) = tokio::join!(
        connect_session(c, &keys.technician, key(&keys.agent), &QUICK),
        accept_session(a, &keys.agent, key(&other), &QUICK),
    );
    match agent.unwrap_err() {
        TunnelError::PeerKeyMismatch { expected, found } => {
            assert_eq!(expected, key(&other));
            assert_eq!(found, key(&keys.technician));
        }
        e => panic!("expected a key mismatch, got {e}"),
    }
    // The console either sees the refusal or (if it already counted the
    // handshake as done) a connection closed by the peer right after.
    if let Ok(conn) = console {
        let reason = conn.connection.closed().await;
        assert!(
            !matches!(reason, quinn::ConnectionError::LocallyClosed),
            "{reason}"
        );
    }
}

/// A relay that terminates the inner connection with its own keys: a
/// server facing the console and a client facing the agent.
struct Mitm {
    console_side: Result<SessionConn, TunnelError>,
    agent_side: Result<SessionConn, TunnelError>,
    console: Result<SessionConn, TunnelError>,
    agent: Result<SessionConn, TunnelError>,
}

/// `console_pin` / `agent_pin`: the peer keys each end was told to expect.
async fn mitm(
    keys: &Keys,
    mitm: &Identity,
    console_pin: Fingerprint,
    agent_pin: Fingerprint,
) -> Mitm {
    let (c, cp) = TunnelSocket::pair_ends(64);
    let (ms, msp) = TunnelSocket::pair_ends(64);
    let (mc, mcp) = TunnelSocket::pair_ends(64);
    let (a, ap) = TunnelSocket::pair_ends(64);
    let _w1 = wire(cp, msp);
    let _w2 = wire(mcp, ap);
    let (console, console_side, agent_side, agent) = tokio::join!(
        connect_session(c, &keys.technician, console_pin, &QUICK),
        accept_session(ms, mitm, key(&keys.technician), &QUICK),
        connect_session(mc, mitm, key(&keys.agent), &QUICK),
        accept_session(a, &keys.agent, agent_pin, &QUICK),
    );
    Mitm {
        console_side,
        agent_side,
        console,
        agent,
    }
}

#[tokio::test]
async fn a_key_substituting_relay_fails_the_handshake_when_the_pins_are_right() {
    let keys = keys();
    let relay_key = Identity::generate(&["evil-relay"]).unwrap();
    let result = mitm(&keys, &relay_key, key(&keys.agent), key(&keys.technician)).await;
    assert!(
        matches!(result.console, Err(TunnelError::PeerKeyMismatch { found, .. }) if found == key(&relay_key))
    );
    assert!(
        matches!(result.agent, Err(TunnelError::PeerKeyMismatch { found, .. }) if found == key(&relay_key))
    );
    assert!(result.console_side.is_err() || result.agent_side.is_err());
}

#[tokio::test]
async fn a_relay_that_also_lies_about_the_keys_is_caught_by_the_codes() {
    let keys = keys();
    let relay_key = Identity::generate(&["evil-relay"]).unwrap();
    // The relay tells both ends its own key instead of the peer's.
    let result = mitm(&keys, &relay_key, key(&relay_key), key(&relay_key)).await;
    let console = result.console.unwrap();
    let agent = result.agent.unwrap();
    let (console_side, agent_side) = (result.console_side.unwrap(), result.agent_side.unwrap());
    // Each TLS session agrees with itself...
    assert_eq!(
        console.verification_code(SESSION).unwrap(),
        console_side.verification_code(SESSION).unwrap()
    );
    assert_eq!(
        agent.verification_code(SESSION).unwrap(),
        agent_side.verification_code(SESSION).unwrap()
    );
    // ...but the employee and the technician see different codes.
    assert_ne!(
        console.verification_code(SESSION).unwrap(),
        agent.verification_code(SESSION).unwrap()
    );
}

#[tokio::test]
async fn a_session_id_cannot_be_carried_twice_and_is_released_on_drop() {
    let carrier = Carrier::new();
    let (_s1, p1) = TunnelSocket::pair_ends(4);
    let (_s2, p2) = TunnelSocket::pair_ends(4);
    let (_s3, p3) = TunnelSocket::pair_ends(4);
    let first = carrier.carry(SessionId(7), p1).unwrap();
    assert!(matches!(
        carrier.carry(SessionId(7), p2),
        Err(CarrierError::DuplicateSession(SessionId(7)))
    ));
    drop(first);
    assert!(carrier.carry(SessionId(7), p3).is_ok());
}

/// A port whose queues the test holds: (what the carrier delivers, what to
/// send, the port).
fn test_port() -> (
    tokio::sync::mpsc::Receiver<Bytes>,
    tokio::sync::mpsc::Sender<Bytes>,
    TunnelPort,
) {
    let (incoming_tx, incoming_rx) = tokio::sync::mpsc::channel(8);
    let (outgoing_tx, outgoing_rx) = tokio::sync::mpsc::channel(8);
    let port = TunnelPort {
        outgoing: outgoing_rx,
        incoming: incoming_tx,
        stats: Arc::new(TunnelStats::default()),
    };
    (incoming_rx, outgoing_tx, port)
}

#[tokio::test]
async fn a_packet_that_arrives_before_its_session_is_carried_is_delivered_once_it_is() {
    // The agent hears of a session on the relay's control stream while the
    // console's first handshake packet comes as a datagram: the packet can
    // win the race. It used to be dropped (and the handshake waited ~1 s
    // for quinn's retransmission).
    let relay = TestRelay::spawn(true);
    let console_carrier = Carrier::new();
    let agent_carrier = Carrier::new();
    console_carrier.attach(relay.connect(CONSOLE, SESSION).await);
    agent_carrier.attach(relay.connect(AGENT, SESSION).await);
    let (_console_in, console_out, console_port) = test_port();
    let _console = console_carrier.carry(SESSION, console_port).unwrap();
    console_out
        .send(Bytes::from_static(b"first initial"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while agent_carrier.stats().unknown_session() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the packet never reached the agent's carrier"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (mut agent_in, _agent_out, agent_port) = test_port();
    let _agent = agent_carrier.carry(SESSION, agent_port).unwrap();
    let delivered = tokio::time::timeout(Duration::from_secs(5), agent_in.recv())
        .await
        .expect("the early packet was not delivered")
        .unwrap();
    assert_eq!(&delivered[..], b"first initial");
    // Packets of other sessions are not handed to this one.
    assert!(agent_in.try_recv().is_err());
}
