//! Raw relay clients for tests and benchmarks: a console and an agent
//! written with `deskside-net` (not the real binaries), to drive the relay
//! step by step: enroll, attach, open a session, run the end-to-end
//! handshake through the relay. They panic on anything unexpected.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_debug_implementations
)] // Harness code: a surprise is a failure.

use std::time::Duration;

use deskside_net::transport::{client_endpoint, resolve, ConnectOptions, Connected};
use deskside_net::tunnel::{
    accept_session, connect_session, CarriedSession, Carrier, SessionConfig, SessionConn,
    TunnelError, TunnelSocket, DEFAULT_QUEUE_PACKETS,
};
use deskside_net::{connect, FramedRecv, FramedSend, Identity};
use deskside_protocol::agent::{AgentToRelay, DeviceInfo, RelayToAgent, SessionRequest};
use deskside_protocol::console::{
    ConsoleRequest, ConsoleResponse, ConsoleToRelay, RelayToConsole, SessionOpened,
};
use deskside_protocol::message::Nested;
use deskside_protocol::session::Capabilities;
use deskside_protocol::token::EnrollToken;
use deskside_protocol::{Fingerprint, Refusal, SessionId};

pub const STEP: Duration = Duration::from_secs(20);

pub async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {STEP:?} waiting for {what}"))
}

/// A raw relay connection (control stream) of a console or an agent.
pub struct Peer {
    pub endpoint: quinn::Endpoint,
    pub connected: Connected,
    next_id: u64,
}

impl Peer {
    pub async fn connect(
        relay: &str,
        fingerprint: Fingerprint,
        identity: Option<Identity>,
    ) -> Peer {
        let endpoint = client_endpoint(resolve(relay).await.unwrap()).unwrap();
        let connected = connect(
            &endpoint,
            &ConnectOptions {
                relay: relay.to_owned(),
                fingerprint,
                identity,
                idle_timeout: Duration::from_secs(10),
                keep_alive: Some(Duration::from_secs(2)),
                software: "sessions-relay-test".to_owned(),
            },
        )
        .await
        .unwrap();
        Peer {
            endpoint,
            connected,
            next_id: 1,
        }
    }

    pub fn send(&mut self) -> &mut FramedSend {
        &mut self.connected.send
    }

    pub fn recv(&mut self) -> &mut FramedRecv {
        &mut self.connected.recv
    }

    pub fn connection(&self) -> quinn::Connection {
        self.connected.connection.clone()
    }

    /// A console logged in with `token`.
    pub async fn console(relay: &str, fingerprint: Fingerprint, token: &str) -> Peer {
        let mut peer = Peer::connect(relay, fingerprint, None).await;
        peer.send()
            .send(&ConsoleToRelay::Authenticate {
                token: token.to_owned(),
            })
            .await
            .unwrap();
        match peer.recv().recv::<RelayToConsole>().await.unwrap() {
            Some(RelayToConsole::Authenticated { .. }) => peer,
            other => panic!("not authenticated: {other:?}"),
        }
    }

    pub async fn request(&mut self, request: ConsoleRequest) -> Result<ConsoleResponse, Refusal> {
        let id = self.next_id;
        self.next_id += 1;
        self.send()
            .send(&ConsoleToRelay::Request {
                id,
                request: Nested(request),
            })
            .await
            .unwrap();
        match within("a console answer", self.recv().recv::<RelayToConsole>())
            .await
            .unwrap()
        {
            Some(RelayToConsole::Response {
                id: answered,
                result,
            }) => {
                assert_eq!(answered, id);
                result
                    .map(|Nested(response)| response)
                    .map_err(|Nested(refusal)| refusal)
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// The next message to an agent that is not a ping, the policy or the
    /// reconnection advice.
    pub async fn agent_message(&mut self) -> RelayToAgent {
        loop {
            match within("a relay message", self.recv().recv::<RelayToAgent>())
                .await
                .unwrap()
            {
                Some(RelayToAgent::Ping { nonce }) => {
                    self.send()
                        .send(&AgentToRelay::Pong { nonce })
                        .await
                        .unwrap();
                }
                Some(RelayToAgent::Policy { .. } | RelayToAgent::ReconnectAdvice { .. }) => {}
                Some(other) => return other,
                None => panic!("the relay closed the agent's control stream"),
            }
        }
    }

    pub async fn close(self) {
        self.connected.connection.close(0u32.into(), b"done");
        self.endpoint.wait_idle().await;
    }
}

pub fn info() -> DeviceInfo {
    DeviceInfo {
        hostname: "reception-pc".to_owned(),
        os: "Test OS".to_owned(),
        agent_version: "0.0.0-test".to_owned(),
    }
}

/// A console (admin), an enrolled and attached agent, and their keys.
pub struct Parties {
    pub console: Peer,
    pub agent: Peer,
    pub console_identity: Identity,
    pub agent_identity: Identity,
    pub device: String,
}

impl Parties {
    /// The console ends `session_id`, which the relay must answer `Done`.
    pub async fn end_session(&mut self, session_id: SessionId) {
        assert_eq!(
            self.console
                .request(ConsoleRequest::EndSession { session_id })
                .await
                .unwrap(),
            ConsoleResponse::Done
        );
    }

    /// Closes both control connections and waits for them to go.
    pub async fn close(self) {
        self.console.close().await;
        self.agent.close().await;
    }
}

pub async fn parties(relay: &str, fingerprint: Fingerprint, admin_token: &str) -> Parties {
    let mut console = Peer::console(relay, fingerprint, admin_token).await;
    let issued = match console
        .request(ConsoleRequest::CreateEnrollToken {
            uses: 1,
            expires_in_secs: 600,
            group: None,
        })
        .await
        .unwrap()
    {
        ConsoleResponse::EnrollToken(issued) => issued,
        other => panic!("{other:?}"),
    };
    let secret = EnrollToken::decode(&issued.token).unwrap().secret;
    let agent_identity = Identity::generate(&["deskside-agent"]).unwrap();
    let mut enrolling = Peer::connect(relay, fingerprint, Some(agent_identity.clone())).await;
    enrolling
        .send()
        .send(&AgentToRelay::Enroll {
            secret,
            info: info(),
        })
        .await
        .unwrap();
    let device = match enrolling.recv().recv::<RelayToAgent>().await.unwrap() {
        Some(RelayToAgent::Enrolled { device_id, .. }) => device_id.to_string(),
        other => panic!("not enrolled: {other:?}"),
    };
    enrolling.close().await;
    let mut agent = Peer::connect(relay, fingerprint, Some(agent_identity.clone())).await;
    agent
        .send()
        .send(&AgentToRelay::Attach { info: info() })
        .await
        .unwrap();
    match agent.agent_message().await {
        RelayToAgent::Attached { .. } => {}
        other => panic!("not attached: {other:?}"),
    }
    let console_identity = Identity::generate(&["deskside-console"]).unwrap();
    Parties {
        console,
        agent,
        console_identity,
        agent_identity,
        device,
    }
}

/// The agent answers `request` (`granted` `None`: refused) and waits for
/// the relay's `ConsentRecorded`, which must name the same session.
pub async fn answer_consent(
    parties: &mut Parties,
    request: &SessionRequest,
    granted: Option<Capabilities>,
) {
    let outcome = if granted.is_some() {
        "accepted"
    } else {
        "refused"
    };
    parties
        .agent
        .send()
        .send(&AgentToRelay::SessionConsent {
            session_id: request.session_id,
            granted,
            outcome: outcome.to_owned(),
        })
        .await
        .unwrap();
    match parties.agent.agent_message().await {
        RelayToAgent::ConsentRecorded { session_id } => assert_eq!(session_id, request.session_id),
        other => panic!("expected ConsentRecorded, got {other:?}"),
    }
}

/// Registers the console's key and opens a view session; returns what both
/// sides were told.
pub async fn open_session(parties: &mut Parties) -> (SessionOpened, SessionRequest) {
    let key = parties.console_identity.key_fingerprint().unwrap();
    assert_eq!(
        parties
            .console
            .request(ConsoleRequest::RegisterSessionKey { key })
            .await
            .unwrap(),
        ConsoleResponse::Done
    );
    let opened = match parties
        .console
        .request(ConsoleRequest::OpenSession {
            device: parties.device.clone(),
            capabilities: Capabilities::VIEW,
            reason: "the printer does not print".to_owned(),
        })
        .await
        .unwrap()
    {
        ConsoleResponse::SessionOpened(opened) => opened,
        other => panic!("{other:?}"),
    };
    // A relay on a shared store tells its agents the other relays first.
    let request = loop {
        match parties.agent.agent_message().await {
            RelayToAgent::SessionRequest(request) => break request,
            RelayToAgent::RelayList { .. } => continue,
            other => panic!("expected a session request, got {other:?}"),
        }
    };
    assert_eq!(request.session_id, opened.session_id);
    (opened, request)
}

/// One side's end of the tunnel through its relay connection.
pub fn tunnel(peer: &Peer, session_id: SessionId) -> (Carrier, CarriedSession, TunnelSocket) {
    let carrier = Carrier::new();
    carrier.attach(peer.connection());
    let (socket, port) = TunnelSocket::pair_ends(DEFAULT_QUEUE_PACKETS);
    let carried = carrier.carry(session_id, port).unwrap();
    (carrier, carried, socket)
}

/// Runs both ends of the end-to-end handshake at once.
pub async fn handshake(
    parties: &Parties,
    opened: &SessionOpened,
    request: &SessionRequest,
) -> (
    Result<SessionConn, TunnelError>,
    Result<SessionConn, TunnelError>,
    Vec<(Carrier, CarriedSession)>,
) {
    let config = SessionConfig {
        handshake_timeout: Duration::from_secs(10),
        ..SessionConfig::default()
    };
    let (console_carrier, console_carried, console_socket) =
        tunnel(&parties.console, opened.session_id);
    let (agent_carrier, agent_carried, agent_socket) = tunnel(&parties.agent, request.session_id);
    let (console, agent) = tokio::join!(
        connect_session(
            console_socket,
            &parties.console_identity,
            opened.device_key,
            &config
        ),
        accept_session(
            agent_socket,
            &parties.agent_identity,
            request.technician_key,
            &config
        ),
    );
    (
        console,
        agent,
        vec![
            (console_carrier, console_carried),
            (agent_carrier, agent_carried),
        ],
    )
}

/// Makes `count` first packets (QUIC Initials) of fresh client connections
/// to `target`, as `quinn-proto` makes them, without sending them: for flood
/// tests and benchmarks that replay them from raw UDP sockets.
pub fn initial_packets(
    count: usize,
    target: std::net::SocketAddr,
    fingerprint: Fingerprint,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let (tls, _) = deskside_net::tls::client_config(fingerprint, None, deskside_net::ALPN)?;
    let config = quinn::ClientConfig::new(std::sync::Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls)?,
    ));
    let mut endpoint = quinn_proto::Endpoint::new(
        std::sync::Arc::new(quinn_proto::EndpointConfig::default()),
        None,
        false,
        None,
    );
    let now = std::time::Instant::now();
    let mut buffer = Vec::with_capacity(1500);
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let (handle, mut connection) =
            endpoint.connect(now, config.clone(), target, "deskside-relay")?;
        buffer.clear();
        if let Some(transmit) = connection.poll_transmit(now, 1, &mut buffer) {
            out.push(buffer[..transmit.size].to_vec());
        }
        // Forget it: this client never goes on.
        endpoint.handle_event(handle, quinn_proto::EndpointEvent::drained());
    }
    Ok(out)
}
