//! End-to-end encrypted session transport between console and agent.
//!
//! Console and agent run their *own* QUIC connection to each other (the
//! "inner" connection), mutually authenticated with pinned keys: the agent's
//! enrolled key and the technician's key. Its UDP packets do not touch the
//! network: a [`TunnelSocket`] hands them to a [`Carrier`], which tags them
//! with the session id and sends them over the existing relay connection
//! (the "outer" connection) as QUIC datagrams, or on an outer stream when
//! datagrams are too small (see [`link`]). The relay reads the session id,
//! forwards the opaque bytes to the other party with the same
//! [`packet_link`] code, and never holds a session key.
//!
//! Both screens show a [`verification_code`] derived from the inner TLS
//! handshake with the TLS exporter (RFC 8446 §7.5): a relay that substitutes
//! keys ends up with two different TLS sessions, so the codes differ.
//!
//! The inner connection outlasts a relay reconnect: its idle timeout (30 s)
//! is longer than the longest reconnect backoff (10 s), and the carrier can
//! be attached to the new outer connection without a new handshake.
//!
//! This module never reads a plaintext byte of an outer connection's control
//! stream and never decides who may open a session: that is the relay's job.
//!
//! Wiring, per side:
//!
//! ```text
//! console                                   agent
//! carrier = Carrier::new(); carrier.attach(relay_conn)   (and again after each reconnect)
//! (socket, port) = TunnelSocket::pair_ends(DEFAULT_QUEUE_PACKETS)
//! _carried = carrier.carry(session_id, port)?
//! connect_session(socket, &tech_id, agent_key, &cfg)     accept_session(socket, &agent_id, tech_key, &cfg)
//! ```

pub mod carrier;
pub mod link;
pub mod socket;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use deskside_protocol::{Fingerprint, SessionId};
use thiserror::Error;

use crate::tls::{
    pinned_key_client_config, pinned_key_server_config, Identity, PinCheck, TlsError,
};
use crate::transport::transport_config;

pub use carrier::{CarriedSession, Carrier, CarrierError, CarrierStats, ProbeBurst, Prober};
pub use link::{
    packet_link, LinkError, LinkStats, PacketReceiver, PacketSender, Sent, SessionPacket,
    PROBE_SESSION_ID,
};
pub use socket::{
    TunnelPort, TunnelSocket, TunnelStats, DEFAULT_QUEUE_PACKETS, TUNNEL_LOCAL_ADDR,
    TUNNEL_PEER_ADDR,
};

/// ALPN of the inner (end-to-end) connection, distinct from the relay's so
/// an inner handshake can never be mistaken for a relay connection.
pub const SESSION_ALPN: &[u8] = b"deskside-session/1";

/// Server name the console uses for the inner connection; trust comes from
/// the pinned key, not the name.
pub const SESSION_SERVER_NAME: &str = "deskside-agent";

/// TLS exporter label of the verification code (RFC 8446 §7.5).
pub const VERIFICATION_LABEL: &[u8] = b"EXPORTER-deskside-session-verification";

/// Inner idle timeout: longer than the longest relay reconnect (backoff caps
/// at 10 s, plus the outer handshake), so a reconnect does not end a session.
pub const INNER_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Inner keep-alive: frequent enough that a lost path is noticed (and packets
/// retransmitted) within seconds of the carrier being re-attached.
pub const INNER_KEEP_ALIVE: Duration = Duration::from_secs(2);

/// How long the end-to-end handshake may take before giving up.
pub const INNER_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Largest inner UDP payload the inner MTU discovery tries: quinn's default
/// outer upper bound (1452-byte UDP payload, an Ethernet path) minus the
/// outer short header with an 8-byte connection id and AEAD tag (29), the
/// DATAGRAM frame header (9) and the session id (8). The inner discovery
/// settles on whatever really passes end to end; larger probes are dropped.
pub const INNER_MTU_UPPER_BOUND: u16 = 1452 - 29 - 9 - 8;

/// Outer `initial_mtu`: at 1280 the outer datagrams already hold a
/// 1200-byte inner packet plus the session id before the outer MTU discovery
/// runs (at quinn's default 1200 they hold only 1162 bytes, so early inner
/// packets would take the slower stream fallback).
pub const OUTER_INITIAL_MTU: u16 = 1280;

/// Outer datagram receive buffer. quinn drops the oldest datagrams beyond
/// it; the reader drains continuously, so it only absorbs scheduling hiccups.
pub const OUTER_DATAGRAM_RECEIVE_BUFFER: usize = 1 << 20;

/// Outer datagram send buffer. quinn's default (1 MiB) would queue several
/// milliseconds of stale packets behind the outer congestion window; the
/// inner congestion controller does the pacing, so keep this small.
pub const OUTER_DATAGRAM_SEND_BUFFER: usize = 256 << 10;

/// Errors of the end-to-end session connection, each saying what to check.
#[derive(Debug, Error)]
pub enum TunnelError {
    /// Local TLS configuration failed (for example an unusable key).
    #[error("cannot set up end-to-end TLS: {0}")]
    Tls(#[from] TlsError),
    /// The inner endpoint could not start.
    #[error("cannot start the session endpoint: {0}; this is a bug, please report it")]
    Endpoint(std::io::Error),
    /// quinn refused to start the inner connection.
    #[error("cannot start the session connection: {0}; this is a bug, please report it")]
    Start(#[from] quinn::ConnectError),
    /// The peer proved a different key than the one pinned.
    #[error("the other side of the session presented key {found}, not the expected {expected}: someone (possibly the relay) is substituting keys, or the device or technician key changed; do not continue, and check the device's enrollment")]
    PeerKeyMismatch {
        /// The pinned key fingerprint.
        expected: Fingerprint,
        /// The key fingerprint presented.
        found: Fingerprint,
    },
    /// The handshake failed (including the peer refusing our key).
    #[error("the end-to-end session handshake failed: {0}; if the other side refused our key, it expects a different technician or device key")]
    Handshake(#[from] quinn::ConnectionError),
    /// No handshake completed in time.
    #[error("the other side did not complete the end-to-end handshake within {0:?}: is it online, and does the relay forward this session?")]
    Timeout(Duration),
    /// The tunnel was closed before a connection arrived.
    #[error("the session tunnel closed before the other side connected; start the session again")]
    Closed,
    /// The verification code could not be derived.
    #[error("cannot derive the session verification code: {0}; end the session")]
    Exporter(String),
}

/// Settings of the inner connection; the defaults are the constants above.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// How long the handshake may take. Default [`INNER_HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
    /// Idle timeout; must exceed the longest relay reconnect. Default
    /// [`INNER_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// Keep-alive interval. Default [`INNER_KEEP_ALIVE`].
    pub keep_alive: Duration,
    /// Upper bound of the inner MTU discovery. Default
    /// [`INNER_MTU_UPPER_BOUND`]; a carrier on an unusual path can pass
    /// [`PacketSender::max_datagram_payload`] instead.
    pub mtu_upper_bound: u16,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            handshake_timeout: INNER_HANDSHAKE_TIMEOUT,
            idle_timeout: INNER_IDLE_TIMEOUT,
            keep_alive: INNER_KEEP_ALIVE,
            mtu_upper_bound: INNER_MTU_UPPER_BOUND,
        }
    }
}

impl SessionConfig {
    /// The inner transport settings.
    pub fn transport(&self) -> quinn::TransportConfig {
        let mut config = transport_config(self.idle_timeout, Some(self.keep_alive));
        // Inner packets start at QUIC's minimum, which every carrier path
        // takes (as a datagram or on the fallback stream); discovery grows
        // them to what the outer datagrams hold.
        config.initial_mtu(1200);
        config.min_mtu(1200);
        let mut discovery = quinn::MtuDiscoveryConfig::default();
        discovery.upper_bound(self.mtu_upper_bound.max(1200));
        config.mtu_discovery_config(Some(discovery));
        config
    }
}

/// Applies what an *outer* connection that carries sessions needs to a
/// transport config (console, agent and relay sides alike): datagrams on,
/// [`OUTER_INITIAL_MTU`], MTU discovery on, a small datagram send buffer.
pub fn tune_outer_transport(config: &mut quinn::TransportConfig) -> &mut quinn::TransportConfig {
    config.initial_mtu(OUTER_INITIAL_MTU);
    config.mtu_discovery_config(Some(quinn::MtuDiscoveryConfig::default()));
    config.datagram_receive_buffer_size(Some(OUTER_DATAGRAM_RECEIVE_BUFFER));
    config.datagram_send_buffer_size(OUTER_DATAGRAM_SEND_BUFFER);
    config
}

/// An established end-to-end session connection.
#[derive(Debug)]
pub struct SessionConn {
    /// The inner QUIC connection: open streams on it.
    pub connection: quinn::Connection,
    /// The peer's key fingerprint (equal to the pinned one).
    pub peer_key: Fingerprint,
    // Kept so the inner endpoint lives exactly as long as the session.
    endpoint: quinn::Endpoint,
}

impl SessionConn {
    /// The verification code of this connection for `session_id` (see
    /// [`verification_code`]).
    pub fn verification_code(&self, session_id: SessionId) -> Result<String, TunnelError> {
        verification_code(&self.connection, session_id)
    }

    /// Closes the connection with `code` and waits (at most 2 s) until the
    /// close has been sent through the tunnel.
    pub async fn close(self, code: u32, reason: &[u8]) {
        self.connection.close(code.into(), reason);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

fn endpoint(
    socket: TunnelSocket,
    server: Option<quinn::ServerConfig>,
) -> Result<quinn::Endpoint, TunnelError> {
    quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        server,
        Arc::new(socket),
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(TunnelError::Endpoint)
}

fn handshake_error(
    source: quinn::ConnectionError,
    expected: Fingerprint,
    pin: &PinCheck,
) -> TunnelError {
    match pin.mismatch() {
        Some(found) => TunnelError::PeerKeyMismatch { expected, found },
        None => TunnelError::Handshake(source),
    }
}

/// Agent side: waits for the console's inner connection on `socket`,
/// presenting `identity` (the agent's enrolled key) and requiring a client
/// certificate over the key `expected_peer` (the technician's, as the relay
/// announced it). Accepts exactly one connection.
pub async fn accept_session(
    socket: TunnelSocket,
    identity: &Identity,
    expected_peer: Fingerprint,
    config: &SessionConfig,
) -> Result<SessionConn, TunnelError> {
    let (tls, pin) = pinned_key_server_config(identity, expected_peer, SESSION_ALPN)?;
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
    server.transport_config(Arc::new(config.transport()));
    let endpoint = endpoint(socket, Some(server))?;
    let handshake = async {
        let incoming = endpoint.accept().await.ok_or(TunnelError::Closed)?;
        // One session, one connection: refuse anything else from now on.
        endpoint.set_server_config(None);
        let connecting = incoming
            .accept()
            .map_err(|e| handshake_error(e, expected_peer, &pin))?;
        connecting
            .await
            .map_err(|e| handshake_error(e, expected_peer, &pin))
    };
    let connection = match tokio::time::timeout(config.handshake_timeout, handshake).await {
        Err(_) => return Err(TunnelError::Timeout(config.handshake_timeout)),
        Ok(result) => result?,
    };
    tracing::debug!(peer = %expected_peer, "end-to-end session accepted");
    Ok(SessionConn {
        connection,
        peer_key: expected_peer,
        endpoint,
    })
}

/// Console side: opens the inner connection on `socket`, presenting
/// `identity` (the technician's key) and trusting only the server key
/// `expected_peer` (the agent's enrolled key).
pub async fn connect_session(
    socket: TunnelSocket,
    identity: &Identity,
    expected_peer: Fingerprint,
    config: &SessionConfig,
) -> Result<SessionConn, TunnelError> {
    let (tls, pin) = pinned_key_client_config(identity, expected_peer, SESSION_ALPN)?;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?;
    let mut client = quinn::ClientConfig::new(Arc::new(quic));
    client.transport_config(Arc::new(config.transport()));
    let endpoint = endpoint(socket, None)?;
    let connecting = endpoint.connect_with(client, TUNNEL_PEER_ADDR, SESSION_SERVER_NAME)?;
    let connection = match tokio::time::timeout(config.handshake_timeout, connecting).await {
        Err(_) => return Err(TunnelError::Timeout(config.handshake_timeout)),
        Ok(result) => result.map_err(|e| handshake_error(e, expected_peer, &pin))?,
    };
    tracing::debug!(peer = %expected_peer, "end-to-end session connected");
    Ok(SessionConn {
        connection,
        peer_key: expected_peer,
        endpoint,
    })
}

/// The six-digit code both people compare, formatted `"123 456"`.
///
/// It is 8 bytes of TLS exporter output (RFC 8446 §7.5) with label
/// [`VERIFICATION_LABEL`] and the big-endian session id as context, reduced
/// modulo 10⁶. Both ends of one TLS session compute the same value; a relay
/// that terminates TLS on each side has two sessions with unrelated secrets,
/// so the codes match only by chance (one in a million).
pub fn verification_code(
    conn: &quinn::Connection,
    session_id: SessionId,
) -> Result<String, TunnelError> {
    let mut out = [0u8; 8];
    conn.export_keying_material(&mut out, VERIFICATION_LABEL, &session_id.0.to_be_bytes())
        .map_err(|e| TunnelError::Exporter(format!("{e:?}")))?;
    let value = u64::from_be_bytes(out) % 1_000_000;
    Ok(format!("{:03} {:03}", value / 1000, value % 1000))
}
