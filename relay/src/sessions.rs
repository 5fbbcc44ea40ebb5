//! Routing of remote-session packets between the two parties of each
//! session: the agent of the device and the console connection that opened
//! it.
//!
//! Every attached agent connection and every authenticated console
//! connection runs [`packet_link`] and a forwarding task
//! ([`spawn_forwarding`]) that hands each [`SessionPacket`] it reads to the
//! [`Router`]. The router looks the session up, checks that the sender is a
//! party, and passes the packet, unchanged, to the other party's sender,
//! which never blocks (a full queue drops, and the inner QUIC connection
//! retransmits).
//!
//! Agents are registered per device and replaced when the device
//! reconnects, so a session outlives an agent reconnect. A console is
//! registered per session, when it opens it; when its connection goes away
//! the route keeps waiting without it, and the technician's next connection
//! takes it over ([`Router::resume`]). After a relay restart the routes of
//! consented sessions still open in the store are restored without a
//! console ([`Router::restore`]) for both parties to come back to. Until
//! the employee's consent
//! is committed to the audit log, a session may only carry
//! [`PRE_CONSENT_BUDGET`] bytes each way: enough for the end-to-end TLS
//! handshake, whose verification code the consent dialog shows, and not
//! enough for a screen. After a refusal or an end, the route is forgotten
//! and nothing more is forwarded.
//!
//! What this module must never do: look inside a packet past its session id
//! (the payload is end-to-end encrypted and the relay holds no key), wait
//! for a slow party, or touch the store. The audit is written by the
//! connection handlers *before* they tell the router about a consent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use deskside_net::tunnel::{
    packet_link, LinkError, PacketReceiver, PacketSender, Sent, SessionPacket, PROBE_SESSION_ID,
};
use deskside_protocol::{DeviceId, SessionId};
use tracing::Instrument as _;

use crate::config::{Direction, ForwardHook};
use crate::conn::CLOSE_PROTOCOL_VIOLATION;

/// Bytes of inner packets a session may carry each way before the consent
/// is recorded. An end-to-end handshake with two self-signed certificates
/// takes about 4 KiB; retransmissions and padding stay far below 64 KiB,
/// while a single screen frame does not fit.
pub const PRE_CONSENT_BUDGET: usize = 64 * 1024;

/// Identifies a relay connection (its quinn stable id).
pub type ConnectionId = usize;

/// Where session packets to one party go: the real [`PacketSender`], or a
/// recorder in tests.
pub trait PacketSink: Clone + Send + Sync + 'static {
    /// Sends without waiting; drops when full.
    fn send_packet(&self, packet: SessionPacket) -> Sent;
}

impl PacketSink for PacketSender {
    fn send_packet(&self, packet: SessionPacket) -> Sent {
        self.send(packet)
    }
}

/// Who a packet came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Party {
    /// The attached agent of this device.
    Agent(DeviceId),
    /// This console connection.
    Console(ConnectionId),
}

/// What [`Router::forward`] did with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forwarded {
    /// Handed to the other party's link (which may still have dropped it).
    Sent(Direction, Sent),
    /// No such session (never opened, refused or ended): dropped.
    UnknownSession,
    /// The sender is not a party to the session: dropped.
    NotAParty,
    /// The session's pre-consent budget is spent in this direction: dropped.
    OverBudget,
    /// The device's agent is not attached right now: dropped.
    AgentAbsent,
    /// The session's console is away (reconnecting): dropped.
    ConsoleAbsent,
}

/// Counters of the router, for logs and tests.
#[derive(Debug, Default)]
pub struct RouterStats {
    forwarded: AtomicU64,
    unknown_session: AtomicU64,
    not_a_party: AtomicU64,
    over_budget: AtomicU64,
    agent_absent: AtomicU64,
    console_absent: AtomicU64,
    bytes_to_agent: AtomicU64,
    bytes_to_console: AtomicU64,
}

impl RouterStats {
    /// Packets handed to the other party.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }
    /// Packets dropped because their session is unknown.
    pub fn unknown_session(&self) -> u64 {
        self.unknown_session.load(Ordering::Relaxed)
    }
    /// Packets dropped because their sender is not a party.
    pub fn not_a_party(&self) -> u64 {
        self.not_a_party.load(Ordering::Relaxed)
    }
    /// Packets dropped by the pre-consent budget.
    pub fn over_budget(&self) -> u64 {
        self.over_budget.load(Ordering::Relaxed)
    }
    /// Packets dropped because the agent was not attached.
    pub fn agent_absent(&self) -> u64 {
        self.agent_absent.load(Ordering::Relaxed)
    }
    /// Packets dropped because the console was away.
    pub fn console_absent(&self) -> u64 {
        self.console_absent.load(Ordering::Relaxed)
    }
    /// Payload bytes of the packets handed to agents.
    pub fn bytes_to_agent(&self) -> u64 {
        self.bytes_to_agent.load(Ordering::Relaxed)
    }
    /// Payload bytes of the packets handed to consoles.
    pub fn bytes_to_console(&self) -> u64 {
        self.bytes_to_console.load(Ordering::Relaxed)
    }
}

struct AgentLink<S> {
    connection: ConnectionId,
    sink: S,
}

struct ConsoleEnd<S> {
    connection: ConnectionId,
    sink: S,
}

struct Route<S> {
    device: DeviceId,
    /// `None` while the console is away: between its connection's loss and
    /// its resume, or after a relay restart.
    console: Option<ConsoleEnd<S>>,
    consented: bool,
    /// Pre-consent bytes left towards the agent.
    left_to_agent: usize,
    /// Pre-consent bytes left towards the console.
    left_to_console: usize,
}

struct State<S> {
    agents: HashMap<DeviceId, AgentLink<S>>,
    routes: HashMap<SessionId, Route<S>>,
}

impl<S> Default for State<S> {
    fn default() -> Self {
        Self {
            agents: HashMap::new(),
            routes: HashMap::new(),
        }
    }
}

/// The session routes of the relay, shared by every connection.
pub struct Router<S = PacketSender> {
    state: Mutex<State<S>>,
    on_forward: Option<ForwardHook>,
    stats: RouterStats,
}

impl<S> std::fmt::Debug for Router<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Router")
            .field("agents", &state.agents.len())
            .field("routes", &state.routes.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<S> Router<S> {
    fn lock(&self) -> MutexGuard<'_, State<S>> {
        // Every update is a single insert, remove or counter change, so the
        // maps stay consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<S: PacketSink> Router<S> {
    /// An empty router; `on_forward` (a test hook) sees every forwarded
    /// packet.
    pub fn new(on_forward: Option<ForwardHook>) -> Self {
        Self {
            state: Mutex::new(State::default()),
            on_forward,
            stats: RouterStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &RouterStats {
        &self.stats
    }

    /// Sessions routed: `(waiting for their consent to be recorded,
    /// consented)`.
    pub fn open_sessions(&self) -> (usize, usize) {
        let state = self.lock();
        let consented = state.routes.values().filter(|r| r.consented).count();
        (state.routes.len() - consented, consented)
    }

    /// Registers the agent connection of `device`, replacing an older one.
    pub fn attach_agent(&self, device: DeviceId, connection: ConnectionId, sink: S) {
        self.lock()
            .agents
            .insert(device, AgentLink { connection, sink });
    }

    /// Whether any session (open, consented or restored) has `device` as
    /// its agent: its connection then needs its session path at once.
    pub fn has_routes_for(&self, device: DeviceId) -> bool {
        self.lock()
            .routes
            .values()
            .any(|route| route.device == device)
    }

    /// Forgets the agent connection of `device` if it is still `connection`
    /// (a newer connection of the same device stays).
    pub fn detach_agent(&self, device: DeviceId, connection: ConnectionId) {
        let mut state = self.lock();
        if state
            .agents
            .get(&device)
            .is_some_and(|link| link.connection == connection)
        {
            state.agents.remove(&device);
        }
    }

    /// Starts routing session `session` between the agent of `device` and
    /// the console connection `console_connection`, before consent.
    pub fn open(
        &self,
        session: SessionId,
        device: DeviceId,
        console_connection: ConnectionId,
        console: S,
    ) {
        self.lock().routes.insert(
            session,
            Route {
                device,
                console: Some(ConsoleEnd {
                    connection: console_connection,
                    sink: console,
                }),
                consented: false,
                left_to_agent: PRE_CONSENT_BUDGET,
                left_to_console: PRE_CONSENT_BUDGET,
            },
        );
    }

    /// Routes a consented session that was open when the relay last
    /// stopped, with no console until it resumes. Call only at start, for
    /// sessions the store says are consented and open.
    pub fn restore(&self, session: SessionId, device: DeviceId) {
        self.lock().routes.entry(session).or_insert(Route {
            device,
            console: None,
            consented: true,
            left_to_agent: 0,
            left_to_console: 0,
        });
    }

    /// Carries `session` to and from the console connection
    /// `console_connection` from now on, replacing whichever connection
    /// carried it. The caller checked that this technician opened the
    /// session and that it is still open. `false` if the session has no
    /// route (refused or ended).
    pub fn resume(&self, session: SessionId, console_connection: ConnectionId, console: S) -> bool {
        match self.lock().routes.get_mut(&session) {
            Some(route) => {
                route.console = Some(ConsoleEnd {
                    connection: console_connection,
                    sink: console,
                });
                true
            }
            None => false,
        }
    }

    /// Applies a recorded consent: a grant lifts the pre-consent budget, a
    /// refusal forgets the route. Call only once the consent is committed to
    /// the audit log. `false` if the session has no route (any more).
    pub fn consent(&self, session: SessionId, granted: bool) -> bool {
        let mut state = self.lock();
        if !granted {
            return state.routes.remove(&session).is_some();
        }
        match state.routes.get_mut(&session) {
            Some(route) => {
                route.consented = true;
                true
            }
            None => false,
        }
    }

    /// The sessions routed now (for `ended_elsewhere`, which closes those
    /// another relay ended in the shared store).
    pub fn routed_sessions(&self) -> Vec<SessionId> {
        self.lock().routes.keys().copied().collect()
    }

    /// Forgets a session's route; `false` if it had none.
    pub fn end(&self, session: SessionId) -> bool {
        self.lock().routes.remove(&session).is_some()
    }

    /// Detaches a console connection that went away from the routes it
    /// carried and returns their sessions. The routes stay, console-less,
    /// for the technician's next connection to resume; whoever watches the
    /// grace period ends them otherwise. A route another connection took
    /// over meanwhile is not touched.
    pub fn console_closed(&self, console_connection: ConnectionId) -> Vec<SessionId> {
        let mut state = self.lock();
        let mut gone = Vec::new();
        for (session, route) in &mut state.routes {
            if route
                .console
                .as_ref()
                .is_some_and(|end| end.connection == console_connection)
            {
                route.console = None;
                gone.push(*session);
            }
        }
        gone.sort_unstable();
        gone
    }

    /// Whether a session has a route, and whether it is consented.
    pub fn route_state(&self, session: SessionId) -> Option<bool> {
        self.lock()
            .routes
            .get(&session)
            .map(|route| route.consented)
    }

    /// Whether a session's route has a console right now; `None` if it has
    /// no route.
    pub fn console_present(&self, session: SessionId) -> Option<bool> {
        self.lock()
            .routes
            .get(&session)
            .map(|route| route.console.is_some())
    }

    /// Forwards one packet from `from` to the other party of its session,
    /// or drops it (see [`Forwarded`]). Never waits.
    pub fn forward(&self, from: Party, packet: SessionPacket) -> Forwarded {
        let session = packet.session_id();
        let (direction, sink) = {
            let mut state = self.lock();
            let Some(route) = state.routes.get_mut(&session) else {
                self.stats.unknown_session.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(session = %session, "dropped a packet of an unknown session");
                return Forwarded::UnknownSession;
            };
            let direction = match from {
                Party::Agent(device) if device == route.device => Direction::ToConsole,
                Party::Console(connection)
                    if route
                        .console
                        .as_ref()
                        .is_some_and(|end| end.connection == connection) =>
                {
                    Direction::ToAgent
                }
                _ => {
                    self.stats.not_a_party.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(session = %session, ?from, "dropped a packet from a connection that is not a party to the session");
                    return Forwarded::NotAParty;
                }
            };
            if !route.consented {
                let left = match direction {
                    Direction::ToAgent => &mut route.left_to_agent,
                    Direction::ToConsole => &mut route.left_to_console,
                };
                let Some(rest) = left.checked_sub(packet.payload_len()) else {
                    self.stats.over_budget.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(session = %session, ?direction, "dropped a packet: the session has no recorded consent yet and used its pre-consent budget");
                    return Forwarded::OverBudget;
                };
                *left = rest;
            }
            let sink = match direction {
                Direction::ToConsole => match &route.console {
                    Some(end) => end.sink.clone(),
                    None => {
                        self.stats.console_absent.fetch_add(1, Ordering::Relaxed);
                        return Forwarded::ConsoleAbsent;
                    }
                },
                Direction::ToAgent => {
                    let device = route.device;
                    match state.agents.get(&device) {
                        Some(link) => link.sink.clone(),
                        None => {
                            self.stats.agent_absent.fetch_add(1, Ordering::Relaxed);
                            return Forwarded::AgentAbsent;
                        }
                    }
                }
            };
            (direction, sink)
        };
        // Outside the lock: the hook may be slow, and sending takes the
        // outer connection's own lock.
        if let Some(hook) = &self.on_forward {
            hook(session, direction, &packet.payload());
        }
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        let bytes = match direction {
            Direction::ToAgent => &self.stats.bytes_to_agent,
            Direction::ToConsole => &self.stats.bytes_to_console,
        };
        bytes.fetch_add(packet.payload_len() as u64, Ordering::Relaxed);
        Forwarded::Sent(direction, sink.send_packet(packet))
    }
}

/// A connection's forwarding task; aborted when dropped, so it never
/// outlives the connection handler that owns it.
#[derive(Debug)]
pub struct Forwarding {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts carrying session packets on `connection`, for `party`: returns
/// the sender the router should use towards this connection and the task
/// that forwards what it sends. A malformed packet closes the connection
/// with close code 1 and a logged reason.
pub fn spawn_forwarding(
    router: Arc<Router>,
    party: Party,
    connection: &quinn::Connection,
) -> (PacketSender, Forwarding) {
    let (sender, receiver) = packet_link(connection.clone());
    let task = tokio::spawn(
        forward_loop(router, party, receiver, sender.clone(), connection.clone())
            .instrument(tracing::Span::current()),
    );
    (sender, Forwarding { task })
}

async fn forward_loop(
    router: Arc<Router>,
    party: Party,
    mut receiver: PacketReceiver,
    echo: PacketSender,
    connection: quinn::Connection,
) {
    let mut limit = crate::probe_echo::EchoLimit::new(std::time::Instant::now());
    loop {
        match receiver.recv().await {
            Ok(packet) if packet.session_id() == PROBE_SESSION_ID => {
                // An agent's path probe: straight back, rate-limited
                // (crate::probe_echo); never routed.
                if matches!(party, Party::Agent(_))
                    && packet.wire().len() <= crate::probe_echo::MAX_PROBE_LEN
                    && limit.allow(std::time::Instant::now())
                {
                    let _ = echo.send(packet);
                }
            }
            Ok(packet) => {
                router.forward(party, packet);
            }
            Err(LinkError::Closed(_)) => return,
            Err(LinkError::Malformed(reason)) => {
                tracing::warn!("closing connection: {reason}");
                let reason = format!("malformed session packet: {reason}");
                let reason: String = reason.chars().take(200).collect();
                connection.close(CLOSE_PROTOCOL_VIOLATION.into(), reason.as_bytes());
                return;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A test should panic on an unexpected error.
mod tests {
    use super::*;

    /// A sink that records what it was given.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<SessionPacket>>>);

    impl PacketSink for Recorder {
        fn send_packet(&self, packet: SessionPacket) -> Sent {
            self.0.lock().unwrap().push(packet);
            Sent::Datagram
        }
    }

    impl Recorder {
        fn payloads(&self) -> Vec<Vec<u8>> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .map(|packet| packet.payload().to_vec())
                .collect()
        }
    }

    const DEVICE: DeviceId = DeviceId(0xd1);
    const OTHER_DEVICE: DeviceId = DeviceId(0xd2);
    const CONSOLE: ConnectionId = 7;
    const OTHER_CONSOLE: ConnectionId = 8;
    const SESSION: SessionId = SessionId(0x5e55);
    const OTHER_SESSION: SessionId = SessionId(0x5e56);
    const RESTORED_SESSION: SessionId = SessionId(0x5e5e);

    struct Setup {
        router: Router<Recorder>,
        agent: Recorder,
        console: Recorder,
        seen: Arc<Mutex<Vec<(SessionId, Direction, usize)>>>,
    }

    fn setup() -> Setup {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let hook_seen = Arc::clone(&seen);
        let hook: ForwardHook = Arc::new(move |session, direction, bytes: &[u8]| {
            hook_seen
                .lock()
                .unwrap()
                .push((session, direction, bytes.len()));
        });
        let router = Router::new(Some(hook));
        let agent = Recorder::default();
        let console = Recorder::default();
        router.attach_agent(DEVICE, 1, agent.clone());
        router.open(SESSION, DEVICE, CONSOLE, console.clone());
        Setup {
            router,
            agent,
            console,
            seen,
        }
    }

    fn packet(len: usize) -> SessionPacket {
        SessionPacket::new(SESSION, &vec![0xab; len])
    }

    #[test]
    fn packets_go_to_the_other_party_unchanged() {
        let s = setup();
        let sent = SessionPacket::new(SESSION, b"client hello");
        assert_eq!(
            s.router.forward(Party::Console(CONSOLE), sent.clone()),
            Forwarded::Sent(Direction::ToAgent, Sent::Datagram)
        );
        assert_eq!(
            s.router.forward(
                Party::Agent(DEVICE),
                SessionPacket::new(SESSION, b"server hello")
            ),
            Forwarded::Sent(Direction::ToConsole, Sent::Datagram)
        );
        assert_eq!(s.agent.0.lock().unwrap().as_slice(), [sent]);
        assert_eq!(s.console.payloads(), [b"server hello".to_vec()]);
        assert_eq!(
            s.seen.lock().unwrap().as_slice(),
            [
                (SESSION, Direction::ToAgent, 12),
                (SESSION, Direction::ToConsole, 12)
            ]
        );
        assert_eq!(s.router.stats().forwarded(), 2);
    }

    #[test]
    fn only_the_parties_of_a_session_can_send_into_it() {
        let s = setup();
        let other_agent = Recorder::default();
        s.router.attach_agent(OTHER_DEVICE, 2, other_agent.clone());
        assert_eq!(
            s.router.forward(Party::Console(OTHER_CONSOLE), packet(10)),
            Forwarded::NotAParty
        );
        assert_eq!(
            s.router.forward(Party::Agent(OTHER_DEVICE), packet(10)),
            Forwarded::NotAParty
        );
        assert!(s.agent.payloads().is_empty());
        assert!(s.console.payloads().is_empty());
        assert!(other_agent.payloads().is_empty());
        assert_eq!(s.router.stats().not_a_party(), 2);
        assert!(s.seen.lock().unwrap().is_empty());
    }

    #[test]
    fn unknown_sessions_are_dropped_and_counted() {
        let s = setup();
        let stray = SessionPacket::new(OTHER_SESSION, b"x");
        assert_eq!(
            s.router.forward(Party::Console(CONSOLE), stray),
            Forwarded::UnknownSession
        );
        assert_eq!(s.router.stats().unknown_session(), 1);
    }

    #[test]
    fn before_consent_each_direction_carries_at_most_the_budget() {
        let s = setup();
        let chunk = 1200;
        let fits = PRE_CONSENT_BUDGET / chunk;
        for _ in 0..fits {
            assert!(matches!(
                s.router.forward(Party::Console(CONSOLE), packet(chunk)),
                Forwarded::Sent(..)
            ));
        }
        assert_eq!(
            s.router.forward(Party::Console(CONSOLE), packet(chunk)),
            Forwarded::OverBudget
        );
        // A packet that still fits in what is left passes.
        let left = PRE_CONSENT_BUDGET - fits * chunk;
        assert!(matches!(
            s.router.forward(Party::Console(CONSOLE), packet(left)),
            Forwarded::Sent(..)
        ));
        assert_eq!(
            s.router.forward(Party::Console(CONSOLE), packet(1)),
            Forwarded::OverBudget
        );
        let carried: usize = s.agent.payloads().iter().map(Vec::len).sum();
        assert_eq!(carried, PRE_CONSENT_BUDGET);
        // The other direction has its own budget.
        assert!(matches!(
            s.router.forward(Party::Agent(DEVICE), packet(chunk)),
            Forwarded::Sent(Direction::ToConsole, _)
        ));
        assert_eq!(s.router.stats().over_budget(), 2);
    }

    #[test]
    fn a_recorded_consent_lifts_the_budget() {
        let s = setup();
        assert_eq!(s.router.route_state(SESSION), Some(false));
        assert!(s.router.consent(SESSION, true));
        assert_eq!(s.router.route_state(SESSION), Some(true));
        for _ in 0..200 {
            assert!(matches!(
                s.router.forward(Party::Agent(DEVICE), packet(1200)),
                Forwarded::Sent(Direction::ToConsole, _)
            ));
        }
        assert_eq!(s.console.payloads().len(), 200);
    }

    #[test]
    fn a_refusal_or_an_end_forgets_the_route() {
        let s = setup();
        assert!(s.router.consent(SESSION, false));
        assert_eq!(s.router.route_state(SESSION), None);
        assert_eq!(
            s.router.forward(Party::Console(CONSOLE), packet(10)),
            Forwarded::UnknownSession
        );
        assert!(
            !s.router.consent(SESSION, true),
            "a refused session stays gone"
        );

        s.router
            .open(OTHER_SESSION, DEVICE, CONSOLE, s.console.clone());
        s.router.consent(OTHER_SESSION, true);
        assert!(s.router.end(OTHER_SESSION));
        assert_eq!(
            s.router.forward(
                Party::Agent(DEVICE),
                SessionPacket::new(OTHER_SESSION, b"late")
            ),
            Forwarded::UnknownSession
        );
        assert!(s.agent.payloads().is_empty());
        assert!(s.console.payloads().is_empty());
    }

    #[test]
    fn a_reattached_agent_takes_over_and_an_old_detach_changes_nothing() {
        let s = setup();
        let newer = Recorder::default();
        s.router.attach_agent(DEVICE, 2, newer.clone());
        // The old connection's cleanup runs after the new one attached.
        s.router.detach_agent(DEVICE, 1);
        s.router.forward(Party::Console(CONSOLE), packet(5));
        assert!(s.agent.payloads().is_empty());
        assert_eq!(newer.payloads().len(), 1);
        s.router.detach_agent(DEVICE, 2);
        assert_eq!(
            s.router.forward(Party::Console(CONSOLE), packet(5)),
            Forwarded::AgentAbsent
        );
        // The session itself survives the agent being away.
        assert_eq!(s.router.route_state(SESSION), Some(false));
    }

    #[test]
    fn a_closed_console_detaches_only_from_its_own_routes() {
        let s = setup();
        let other = Recorder::default();
        s.router.open(OTHER_SESSION, DEVICE, OTHER_CONSOLE, other);
        assert_eq!(s.router.console_closed(CONSOLE), [SESSION]);
        assert_eq!(s.router.console_present(SESSION), Some(false));
        assert_eq!(
            s.router.route_state(SESSION),
            Some(false),
            "the route waits"
        );
        assert_eq!(s.router.console_present(OTHER_SESSION), Some(true));
        assert_eq!(
            s.router.forward(Party::Agent(DEVICE), packet(5)),
            Forwarded::ConsoleAbsent
        );
        assert_eq!(
            s.router.forward(Party::Console(CONSOLE), packet(5)),
            Forwarded::NotAParty,
            "a closed connection no longer speaks for the session"
        );
        assert_eq!(s.router.stats().console_absent(), 1);
    }

    #[test]
    fn a_resumed_console_takes_the_session_over() {
        let s = setup();
        s.router.consent(SESSION, true);
        s.router.console_closed(CONSOLE);
        let newer = Recorder::default();
        assert!(s.router.resume(SESSION, OTHER_CONSOLE, newer.clone()));
        assert!(matches!(
            s.router.forward(Party::Agent(DEVICE), packet(7)),
            Forwarded::Sent(Direction::ToConsole, _)
        ));
        assert!(matches!(
            s.router.forward(Party::Console(OTHER_CONSOLE), packet(3)),
            Forwarded::Sent(Direction::ToAgent, _)
        ));
        assert_eq!(newer.payloads(), [vec![0xab; 7]]);
        assert!(s.console.payloads().is_empty());
        // The old connection's late cleanup leaves the new one alone.
        assert!(s.router.console_closed(CONSOLE).is_empty());
        assert_eq!(s.router.console_present(SESSION), Some(true));
        // An ended session cannot be resumed.
        assert!(s.router.end(SESSION));
        assert!(!s.router.resume(SESSION, CONSOLE, s.console.clone()));
    }

    #[test]
    fn a_restored_route_is_consented_and_waits_for_both_parties() {
        let s = setup();
        s.router.restore(RESTORED_SESSION, DEVICE);
        assert_eq!(s.router.route_state(RESTORED_SESSION), Some(true));
        assert_eq!(s.router.console_present(RESTORED_SESSION), Some(false));
        let console = Recorder::default();
        assert!(s
            .router
            .resume(RESTORED_SESSION, OTHER_CONSOLE, console.clone()));
        let big = SessionPacket::new(RESTORED_SESSION, &[1; 1200]);
        for _ in 0..100 {
            assert!(matches!(
                s.router.forward(Party::Agent(DEVICE), big.clone()),
                Forwarded::Sent(Direction::ToConsole, _)
            ));
        }
        assert_eq!(console.payloads().len(), 100);
        // Restoring never overrides a live route.
        s.router.restore(SESSION, DEVICE);
        assert_eq!(s.router.route_state(SESSION), Some(false));
    }

    /// An agent's session path starts at attach only while the router has
    /// a session of its device (crate::agent_packets).
    #[test]
    fn a_device_has_routes_while_one_of_its_sessions_is_routed() {
        let s = setup();
        assert!(s.router.has_routes_for(DEVICE));
        assert!(!s.router.has_routes_for(OTHER_DEVICE));
        assert!(s.router.end(SESSION));
        assert!(!s.router.has_routes_for(DEVICE));
        s.router.restore(OTHER_SESSION, OTHER_DEVICE);
        assert!(s.router.has_routes_for(OTHER_DEVICE));
        assert!(!s.router.has_routes_for(DEVICE));
    }
}
