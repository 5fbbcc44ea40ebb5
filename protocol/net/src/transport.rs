//! QUIC endpoints and the client side of the connection handshake.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use deskside_protocol::version::{negotiate, ClientHello, MustUpgrade, ServerHello, VersionRange};
use deskside_protocol::{Fingerprint, MAX_CLIENT_FRAME_LEN, MAX_RELAY_FRAME_LEN};
use thiserror::Error;

use crate::framed::{FramedRecv, FramedSend, NetError};
use crate::tls::{client_config, Identity, TlsError, RELAY_SERVER_NAME};

/// ALPN protocol id; a peer speaking anything else fails the TLS handshake.
pub const ALPN: &[u8] = b"deskside/1";

/// How long a client waits for the QUIC handshake and the relay's hello.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors connecting to the relay, each saying what to check.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// The relay address did not resolve.
    #[error("cannot resolve relay address {addr}: {source}; check the address (host:port)")]
    Resolve {
        /// The address given.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// No local UDP socket could be opened.
    #[error("cannot open a UDP socket: {0}")]
    Socket(std::io::Error),
    /// The relay presented a different certificate than the one pinned.
    #[error("the relay at {addr} presented certificate {found}, not the pinned {expected}: this is not the relay the token or profile was made for (or its certificate changed); ask IT for a new token")]
    FingerprintMismatch {
        /// Address connected to.
        addr: String,
        /// Fingerprint pinned.
        expected: Fingerprint,
        /// Fingerprint presented.
        found: Fingerprint,
    },
    /// Nothing answered in time (relay down, wrong port, or UDP blocked).
    #[error("no answer from the relay at {0} within 10 s: is it running, is the port right, and does the network allow UDP?")]
    Timeout(String),
    /// The relay refused the connection before its handshake: this address
    /// failed to authenticate too often recently.
    #[error("the relay at {0} refused the connection: this address failed to log in or enroll too often recently; wait a minute and try again, and check the token or login string")]
    Refused(String),
    /// The QUIC connection failed for another reason.
    #[error("connection to the relay at {addr} failed: {source}")]
    Quic {
        /// Address connected to.
        addr: String,
        /// Why.
        source: quinn::ConnectionError,
    },
    /// quinn refused to start the connection (for example an address it
    /// cannot send to).
    #[error("cannot start a connection to {addr}: {source}")]
    Start {
        /// Address connected to.
        addr: String,
        /// Why.
        source: quinn::ConnectError,
    },
    /// Local TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The versions do not overlap.
    #[error("{0}")]
    Version(String),
    /// The hello exchange failed.
    #[error("handshake with the relay failed: {0}")]
    Handshake(#[from] NetError),
}

/// QUIC transport settings shared by every deskside connection.
pub fn transport_config(
    idle_timeout: Duration,
    keep_alive: Option<Duration>,
) -> quinn::TransportConfig {
    let mut config = quinn::TransportConfig::default();
    // The value is far below the QUIC varint limit, so the conversion holds.
    config.max_idle_timeout(quinn::IdleTimeout::try_from(idle_timeout).ok());
    config.keep_alive_interval(keep_alive);
    // Flow-control credit, not memory: large enough that one stream can fill
    // a 200 Mbit/s path with 100 ms of round trip (2.5 MB in flight), which
    // the throughput test needs; quinn's 1.25 MB default caps it near
    // 100 Mbit/s there.
    config.stream_receive_window(quinn::VarInt::from_u32(4 << 20));
    config.receive_window(quinn::VarInt::from_u32(16 << 20));
    config.send_window(16 << 20);
    // Enough for the control stream plus the streams later features open.
    config.max_concurrent_bidi_streams(16u32.into());
    config.max_concurrent_uni_streams(16u32.into());
    config
}

/// Resolves `host:port`, preferring the first address returned.
pub async fn resolve(addr: &str) -> Result<SocketAddr, ConnectError> {
    let mut addrs =
        tokio::net::lookup_host(addr)
            .await
            .map_err(|source| ConnectError::Resolve {
                addr: addr.to_owned(),
                source,
            })?;
    addrs.next().ok_or_else(|| ConnectError::Resolve {
        addr: addr.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address found"),
    })
}

/// A client endpoint on an ephemeral port of the right address family.
pub fn client_endpoint(target: SocketAddr) -> Result<quinn::Endpoint, ConnectError> {
    let bind: SocketAddr = if target.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    match quinn::Endpoint::client(bind) {
        Ok(endpoint) => Ok(endpoint),
        // quinn-udp fails the endpoint when the network stack refuses one of
        // its socket options (Wine 8.0 does); a plain socket still works.
        Err(refused) => match crate::plain_udp::endpoint(bind, None) {
            Ok(endpoint) => {
                tracing::warn!(error = %refused, "quinn's UDP socket setup failed; using a plain UDP socket (no ECN, no path MTU discovery)");
                Ok(endpoint)
            }
            Err(_) => Err(ConnectError::Socket(refused)),
        },
    }
}

/// What a client needs to reach the relay.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Relay address, `host:port`.
    pub relay: String,
    /// The relay certificate's pinned fingerprint.
    pub fingerprint: Fingerprint,
    /// Client certificate (agents), or none (consoles).
    pub identity: Option<Identity>,
    /// Idle timeout of the connection.
    pub idle_timeout: Duration,
    /// Keep-alive interval, if any.
    pub keep_alive: Option<Duration>,
    /// Software name and version sent in the hello.
    pub software: String,
}

/// A connection with its control stream, after a successful hello.
#[derive(Debug)]
pub struct Connected {
    /// The QUIC connection.
    pub connection: quinn::Connection,
    /// Control stream, client → relay.
    pub send: FramedSend,
    /// Control stream, relay → client.
    pub recv: FramedRecv,
    /// The negotiated protocol version.
    pub version: u16,
    /// The relay's software name and version.
    pub relay_software: String,
}

/// Connects to the relay on `endpoint`, pins its certificate, opens the
/// control stream and exchanges hellos.
pub async fn connect(
    endpoint: &quinn::Endpoint,
    options: &ConnectOptions,
) -> Result<Connected, ConnectError> {
    let addr = resolve(&options.relay).await?;
    let (tls, pin_check) = client_config(options.fingerprint, options.identity.as_ref(), ALPN)?;
    let quic_tls = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic_tls));
    let mut transport = transport_config(options.idle_timeout, options.keep_alive);
    // Relay connections of agents and consoles may carry session packets.
    crate::tunnel::tune_outer_transport(&mut transport);
    config.transport_config(Arc::new(transport));
    let relay = options.relay.clone();
    let connecting = endpoint
        .connect_with(config, addr, RELAY_SERVER_NAME)
        .map_err(|source| ConnectError::Start {
            addr: relay.clone(),
            source,
        })?;
    let connection = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting).await {
        Err(_) => return Err(ConnectError::Timeout(relay)),
        Ok(Err(source)) => {
            if let Some(found) = pin_check.mismatch() {
                return Err(ConnectError::FingerprintMismatch {
                    addr: relay,
                    expected: options.fingerprint,
                    found,
                });
            }
            if matches!(source, quinn::ConnectionError::TimedOut) {
                return Err(ConnectError::Timeout(relay));
            }
            if matches!(&source, quinn::ConnectionError::ConnectionClosed(close)
                if close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED)
            {
                return Err(ConnectError::Refused(relay));
            }
            return Err(ConnectError::Quic {
                addr: relay,
                source,
            });
        }
        Ok(Ok(connection)) => connection,
    };
    let hello = async {
        let (send, recv) = connection.open_bi().await.map_err(NetError::from)?;
        let mut send = FramedSend::new(send, MAX_CLIENT_FRAME_LEN);
        let mut recv = FramedRecv::new(recv, MAX_RELAY_FRAME_LEN);
        send.send_value(&ClientHello::current(options.software.clone()))
            .await?;
        let answer: ServerHello = recv.recv_value().await?;
        Ok::<_, NetError>((send, recv, answer))
    };
    let (send, recv, answer) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, hello).await {
        Err(_) => return Err(ConnectError::Timeout(relay)),
        Ok(result) => result?,
    };
    match answer {
        ServerHello::Accepted { version, software } => Ok(Connected {
            connection,
            send,
            recv,
            version,
            relay_software: software,
        }),
        ServerHello::VersionMismatch {
            relay: theirs,
            software,
        } => Err(ConnectError::Version(version_advice(
            VersionRange::CURRENT,
            theirs,
            &software,
        ))),
    }
}

/// Explains a failed negotiation from the client's point of view.
pub fn version_advice(ours: VersionRange, theirs: VersionRange, relay_software: &str) -> String {
    match negotiate(ours, theirs) {
        Ok(_) => "the relay refused a version both sides speak; this is a bug, please report it".to_owned(),
        Err(MustUpgrade::Local) => format!(
            "the relay ({relay_software}) speaks protocol {theirs} and this program speaks {ours}: upgrade this program"
        ),
        Err(MustUpgrade::Peer) => format!(
            "the relay ({relay_software}) speaks protocol {theirs} and this program speaks {ours}: upgrade the relay"
        ),
    }
}
