//! Prometheus metrics of the relay.
//!
//! Counting is relaxed atomic additions at the places things happen
//! ([`Metrics`] here for connections, authentication, handshakes and store
//! latency; `RouterStats` in `sessions` for forwarded packets and bytes;
//! `MeasureStats` in `measure` for the measurement budgets). Nothing on a
//! packet's or request's path takes a lock for metrics. A scrape
//! ([`render`]) reads the atomics and, once per scrape, the few gauges that
//! live behind the existing locks (admission counts, open sessions).
//!
//! The exposition is written by hand ([`exposition`]) and served by a tiny
//! HTTP/1.1 server ([`http`]) on its own TCP address, off by default.

pub mod exposition;
pub mod histogram;
pub mod http;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use deskside_protocol::Refusal;

use crate::shared::Shared;
use exposition::{Kind, Writer};
use histogram::Histogram;

/// Authenticated connections, by what they authenticated for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnKind {
    /// An enrolled agent's long-lived presence connection (`Attach`). It
    /// also carries the agent's side of its remote sessions.
    Agent,
    /// An agent enrolling (`Enroll`); short-lived.
    Enrollment,
    /// An agent's path-measurement connection (`Measure`).
    Measurement,
    /// A technician's console. It also carries the console's side of its
    /// remote sessions: there is no separate session-tunnel connection.
    Console,
}

impl ConnKind {
    /// Every kind, in exposition order.
    pub const ALL: [ConnKind; 4] = [
        ConnKind::Agent,
        ConnKind::Enrollment,
        ConnKind::Measurement,
        ConnKind::Console,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            ConnKind::Agent => "agent",
            ConnKind::Enrollment => "enrollment",
            ConnKind::Measurement => "measurement",
            ConnKind::Console => "console",
        }
    }
}

/// Why a connection ended before it authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// A console's technician token is unknown, revoked or expired.
    BadTechnicianToken,
    /// An enrollment token is unknown.
    EnrollTokenInvalid,
    /// An enrollment token has no use left.
    EnrollTokenUsedUp,
    /// An enrollment token expired.
    EnrollTokenExpired,
    /// An agent's key belongs to no device.
    DeviceUnknown,
    /// An agent's device was revoked.
    DeviceRevoked,
    /// The client speaks no protocol version the relay speaks.
    VersionMismatch,
    /// A bad or out-of-order message, or a datagram, before authenticating.
    ProtocolViolation,
    /// Did not authenticate within the deadline after its first packet.
    Timeout,
    /// Went away (closed, lost) before authenticating.
    Abandoned,
    /// Any other refusal (invalid fields, an internal error).
    Other,
}

impl AuthFailure {
    /// Every reason, in exposition order.
    pub const ALL: [AuthFailure; 11] = [
        AuthFailure::BadTechnicianToken,
        AuthFailure::EnrollTokenInvalid,
        AuthFailure::EnrollTokenUsedUp,
        AuthFailure::EnrollTokenExpired,
        AuthFailure::DeviceUnknown,
        AuthFailure::DeviceRevoked,
        AuthFailure::VersionMismatch,
        AuthFailure::ProtocolViolation,
        AuthFailure::Timeout,
        AuthFailure::Abandoned,
        AuthFailure::Other,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            AuthFailure::BadTechnicianToken => "bad_technician_token",
            AuthFailure::EnrollTokenInvalid => "enroll_token_invalid",
            AuthFailure::EnrollTokenUsedUp => "enroll_token_used_up",
            AuthFailure::EnrollTokenExpired => "enroll_token_expired",
            AuthFailure::DeviceUnknown => "device_unknown",
            AuthFailure::DeviceRevoked => "device_revoked",
            AuthFailure::VersionMismatch => "version_mismatch",
            AuthFailure::ProtocolViolation => "protocol_violation",
            AuthFailure::Timeout => "timeout",
            AuthFailure::Abandoned => "abandoned",
            AuthFailure::Other => "other",
        }
    }

    /// The reason a refusal before authentication stands for.
    pub fn of_refusal(refusal: &Refusal) -> Self {
        match refusal {
            Refusal::BadTechnicianToken => AuthFailure::BadTechnicianToken,
            Refusal::EnrollTokenInvalid => AuthFailure::EnrollTokenInvalid,
            Refusal::EnrollTokenUsedUp => AuthFailure::EnrollTokenUsedUp,
            Refusal::EnrollTokenExpired => AuthFailure::EnrollTokenExpired,
            Refusal::DeviceUnknown => AuthFailure::DeviceUnknown,
            Refusal::DeviceRevoked => AuthFailure::DeviceRevoked,
            // The relay's answer to a version it does not speak.
            Refusal::ProtocolViolation(_) => AuthFailure::VersionMismatch,
            _ => AuthFailure::Other,
        }
    }

    /// Whether the failure means "you are not who you claim" (a bad token
    /// or key), as opposed to a broken, slow or abandoned client: the
    /// admission gate counts these per source. Exhaustive on purpose: a new
    /// reason must say which side it is on.
    pub fn is_identity(self) -> bool {
        match self {
            AuthFailure::BadTechnicianToken
            | AuthFailure::EnrollTokenInvalid
            | AuthFailure::EnrollTokenUsedUp
            | AuthFailure::EnrollTokenExpired
            | AuthFailure::DeviceUnknown
            | AuthFailure::DeviceRevoked => true,
            AuthFailure::VersionMismatch
            | AuthFailure::ProtocolViolation
            | AuthFailure::Timeout
            | AuthFailure::Abandoned
            | AuthFailure::Other => false,
        }
    }
}

/// What the accept loop did with a new connection's first packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstPacket {
    /// The handshake runs.
    Accepted,
    /// Answered with a QUIC Retry.
    Retry,
    /// Refused (the source failed authentication too often).
    Refused,
    /// Dropped unanswered for the client to send again (limits full).
    Waited,
}

impl FirstPacket {
    const ALL: [FirstPacket; 4] = [
        FirstPacket::Accepted,
        FirstPacket::Retry,
        FirstPacket::Refused,
        FirstPacket::Waited,
    ];

    fn name(self) -> &'static str {
        match self {
            FirstPacket::Accepted => "accepted",
            FirstPacket::Retry => "retry",
            FirstPacket::Refused => "refused",
            FirstPacket::Waited => "waited",
        }
    }
}

/// How an accepted QUIC handshake ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handshake {
    /// Completed.
    Completed,
    /// Failed (TLS error, the peer closed).
    Failed,
    /// Not done within the authentication deadline.
    TimedOut,
}

impl Handshake {
    const ALL: [Handshake; 3] = [Handshake::Completed, Handshake::Failed, Handshake::TimedOut];

    fn name(self) -> &'static str {
        match self {
            Handshake::Completed => "completed",
            Handshake::Failed => "failed",
            Handshake::TimedOut => "timed_out",
        }
    }
}

/// Kinds of store operations whose latency is measured (from the request
/// to the result, blocking-pool queueing included: what the connection
/// waits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// An agent's key looked up and its device refreshed (attach, measure).
    AgentAuth,
    /// A device enrolled.
    Enrollment,
    /// A technician token checked at login.
    TechnicianAuth,
    /// Last-seen times written.
    LastSeen,
    /// A session's consent or end recorded.
    Session,
    /// A console request (devices, tokens, audit, sessions, …).
    ConsoleRequest,
    /// Everything else (policy, timeline, maintenance).
    Other,
}

impl StoreOp {
    /// Every kind, in exposition order.
    pub const ALL: [StoreOp; 7] = [
        StoreOp::AgentAuth,
        StoreOp::Enrollment,
        StoreOp::TechnicianAuth,
        StoreOp::LastSeen,
        StoreOp::Session,
        StoreOp::ConsoleRequest,
        StoreOp::Other,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            StoreOp::AgentAuth => "agent_auth",
            StoreOp::Enrollment => "enrollment",
            StoreOp::TechnicianAuth => "technician_auth",
            StoreOp::LastSeen => "last_seen",
            StoreOp::Session => "session",
            StoreOp::ConsoleRequest => "console_request",
            StoreOp::Other => "other",
        }
    }
}

/// Answers of the metrics HTTP server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scrape {
    /// `GET /metrics` answered.
    Ok,
    /// Not an HTTP request line, or a header block that does not parse.
    BadRequest,
    /// Another path.
    NotFound,
    /// Another method.
    MethodNotAllowed,
    /// Request head over the size limit.
    TooLarge,
    /// Request head not complete in time.
    Timeout,
    /// Turned away: too many scrapes at once.
    Busy,
    /// `GET /healthz` answered 200: the relay is fit to serve.
    Healthy,
    /// `GET /healthz` answered 503 (the body says why).
    Unhealthy,
}

impl Scrape {
    const ALL: [Scrape; 9] = [
        Scrape::Ok,
        Scrape::BadRequest,
        Scrape::NotFound,
        Scrape::MethodNotAllowed,
        Scrape::TooLarge,
        Scrape::Timeout,
        Scrape::Busy,
        Scrape::Healthy,
        Scrape::Unhealthy,
    ];

    fn name(self) -> &'static str {
        match self {
            Scrape::Ok => "ok",
            Scrape::BadRequest => "bad_request",
            Scrape::NotFound => "not_found",
            Scrape::MethodNotAllowed => "method_not_allowed",
            Scrape::TooLarge => "too_large",
            Scrape::Timeout => "timeout",
            Scrape::Busy => "busy",
            Scrape::Healthy => "healthy",
            Scrape::Unhealthy => "unhealthy",
        }
    }
}

/// The relay's own counters (see the module documentation for the others).
#[derive(Debug, Default)]
pub struct Metrics {
    open: [AtomicI64; ConnKind::ALL.len()],
    authentications: [AtomicU64; ConnKind::ALL.len()],
    auth_failures: [AtomicU64; AuthFailure::ALL.len()],
    first_packets: [AtomicU64; FirstPacket::ALL.len()],
    handshakes: [AtomicU64; Handshake::ALL.len()],
    store: [Histogram; StoreOp::ALL.len()],
    scrapes: [AtomicU64; Scrape::ALL.len()],
    /// Ticket deliveries not yet made, as the outbox last counted them
    /// (0 without connectors).
    outbox_backlog: AtomicU64,
    /// Transactions this relay wrote to the directory (heartbeats and
    /// presence batches).
    directory_writes: AtomicU64,
    /// Live relays on the store at this relay's last heartbeat.
    live_relays: AtomicU64,
}

/// An authenticated connection counted as open until dropped.
#[derive(Debug)]
#[must_use = "the connection counts as open only while this is held"]
pub struct OpenConnection<'a> {
    gauge: &'a AtomicI64,
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.gauge.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// The ticket outbox counted `backlog` deliveries not yet made.
    pub fn outbox_backlog(&self, backlog: u64) {
        self.outbox_backlog.store(backlog, Ordering::Relaxed);
    }

    /// This relay wrote one transaction to the directory.
    pub fn directory_write(&self) {
        self.directory_writes.fetch_add(1, Ordering::Relaxed);
    }

    /// This relay's last heartbeat saw `relays` live relays.
    pub fn live_relays(&self, relays: u64) {
        self.live_relays.store(relays, Ordering::Relaxed);
    }

    /// A connection authenticated as `kind`: counted, and open while the
    /// returned guard lives.
    pub fn authenticated(&self, kind: ConnKind) -> OpenConnection<'_> {
        let i = kind as usize;
        self.authentications[i].fetch_add(1, Ordering::Relaxed);
        self.open[i].fetch_add(1, Ordering::Relaxed);
        OpenConnection {
            gauge: &self.open[i],
        }
    }

    /// A connection ended before authenticating.
    pub fn auth_failure(&self, reason: AuthFailure) {
        self.auth_failures[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The accept loop decided on a first packet.
    pub fn first_packet(&self, decision: FirstPacket) {
        self.first_packets[decision as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// An accepted handshake ended.
    pub fn handshake(&self, outcome: Handshake) {
        self.handshakes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A store operation took `elapsed`.
    pub fn store_op(&self, op: StoreOp, elapsed: Duration) {
        self.store[op as usize].observe(elapsed);
    }

    /// The metrics server answered a request.
    pub fn scrape(&self, outcome: Scrape) {
        self.scrapes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }
}

const PREFIX: &str = "deskside_relay_";

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// The exposition of everything the relay counts.
pub fn render(shared: &Shared) -> String {
    let m = &shared.metrics;
    let mut w = Writer::default();
    let name = |suffix: &str| format!("{PREFIX}{suffix}");

    let n = name("build_info");
    w.family(
        &n,
        "The relay's version (the value is always 1).",
        Kind::Gauge,
    );
    w.sample(&n, &[("version", env!("CARGO_PKG_VERSION"))], 1u64);

    let n = name("connections");
    w.family(
        &n,
        "Authenticated connections open, by kind (remote sessions ride the agent and console connections).",
        Kind::Gauge,
    );
    for kind in ConnKind::ALL {
        let open = m.open[kind as usize].load(Ordering::Relaxed);
        w.sample(&n, &[("kind", kind.name())], open);
    }

    let n = name("authentications_total");
    w.family(
        &n,
        "Connections that authenticated, by kind.",
        Kind::Counter,
    );
    for kind in ConnKind::ALL {
        w.sample(
            &n,
            &[("kind", kind.name())],
            load(&m.authentications[kind as usize]),
        );
    }

    let n = name("authentication_failures_total");
    w.family(
        &n,
        "Connections that ended before authenticating, by reason.",
        Kind::Counter,
    );
    for reason in AuthFailure::ALL {
        w.sample(
            &n,
            &[("reason", reason.name())],
            load(&m.auth_failures[reason as usize]),
        );
    }

    let n = name("first_packets_total");
    w.family(
        &n,
        "New connections' first packets, by the admission decision.",
        Kind::Counter,
    );
    for decision in FirstPacket::ALL {
        w.sample(
            &n,
            &[("decision", decision.name())],
            load(&m.first_packets[decision as usize]),
        );
    }

    let n = name("handshakes_total");
    w.family(
        &n,
        "QUIC handshakes run, by outcome (rate() gives handshakes per second).",
        Kind::Counter,
    );
    for outcome in Handshake::ALL {
        w.sample(
            &n,
            &[("outcome", outcome.name())],
            load(&m.handshakes[outcome as usize]),
        );
    }

    let (handshaking, unauthenticated) = shared.admission.counts();
    let n = name("handshakes_in_progress");
    w.family(&n, "QUIC handshakes in progress.", Kind::Gauge);
    w.sample(&n, &[], handshaking);
    let n = name("unauthenticated_connections");
    w.family(
        &n,
        "Connections not authenticated yet (handshaking included).",
        Kind::Gauge,
    );
    w.sample(&n, &[], unauthenticated);

    let (waiting, consented) = shared.router.open_sessions();
    let n = name("sessions_open");
    w.family(
        &n,
        "Remote sessions the relay routes, by whether their consent is recorded.",
        Kind::Gauge,
    );
    w.sample(&n, &[("state", "awaiting_consent")], waiting);
    w.sample(&n, &[("state", "consented")], consented);

    let stats = shared.router.stats();
    let n = name("forwarded_bytes_total");
    w.family(
        &n,
        "Bytes of end-to-end encrypted session packets forwarded, by direction.",
        Kind::Counter,
    );
    w.sample(&n, &[("direction", "to_agent")], stats.bytes_to_agent());
    w.sample(&n, &[("direction", "to_console")], stats.bytes_to_console());
    let n = name("forwarded_packets_total");
    w.family(&n, "Session packets forwarded.", Kind::Counter);
    w.sample(&n, &[], stats.forwarded());
    let n = name("dropped_packets_total");
    w.family(&n, "Session packets dropped, by reason.", Kind::Counter);
    for (reason, count) in [
        ("unknown_session", stats.unknown_session()),
        ("not_a_party", stats.not_a_party()),
        ("over_pre_consent_budget", stats.over_budget()),
        ("agent_absent", stats.agent_absent()),
        ("console_absent", stats.console_absent()),
    ] {
        w.sample(&n, &[("reason", reason)], count);
    }

    let measure = shared.measure_limits.stats();
    let n = name("measurements_total");
    w.family(
        &n,
        "Path-measurement connections, by whether they got the device's slot.",
        Kind::Counter,
    );
    w.sample(&n, &[("outcome", "started")], measure.started());
    w.sample(&n, &[("outcome", "busy")], measure.busy());
    let n = name("measurement_speed_tests_total");
    w.family(
        &n,
        "Speed tests asked for, by whether the device's hourly allowance granted them.",
        Kind::Counter,
    );
    w.sample(&n, &[("outcome", "granted")], measure.granted());
    w.sample(&n, &[("outcome", "budget_spent")], measure.budget_spent());
    let n = name("measurement_budget_bytes_total");
    w.family(
        &n,
        "Bytes of throughput tests taken from devices' hourly byte budgets.",
        Kind::Counter,
    );
    w.sample(&n, &[], measure.bytes());
    let n = name("measurement_hourly_budget_bytes");
    w.family(
        &n,
        "Each device's hourly byte budget for throughput tests.",
        Kind::Gauge,
    );
    w.sample(&n, &[], crate::measure::HOURLY_BYTE_BUDGET);

    let n = name("store_operation_duration_seconds");
    w.family(
        &n,
        "Time from asking the store to its answer (queueing for the blocking pool and the database lock included), by operation kind.",
        Kind::Histogram,
    );
    for op in StoreOp::ALL {
        w.histogram(&n, &[("op", op.name())], &m.store[op as usize].snapshot());
    }

    let n = name("directory_writes_total");
    w.family(
        &n,
        "Transactions this relay wrote to the relay directory (heartbeats and batches of which devices it holds).",
        Kind::Counter,
    );
    w.sample(&n, &[], load(&m.directory_writes));

    let n = name("directory_relays");
    w.family(
        &n,
        "Live relays sharing this relay's store, at its last heartbeat (itself included).",
        Kind::Gauge,
    );
    w.sample(&n, &[], m.live_relays.load(Ordering::Relaxed));

    let n = name("agents_parked");
    w.family(
        &n,
        "Online agents that are parked: present by heartbeat datagrams, without a QUIC connection.",
        Kind::Gauge,
    );
    w.sample(&n, &[], shared.presence.parked_count() as u64);

    let n = name("ticket_outbox_backlog");
    w.family(
        &n,
        "Help-request events not yet delivered to the ticketing systems, all connectors, as the outbox last counted them (0 without connectors).",
        Kind::Gauge,
    );
    w.sample(&n, &[], load(&m.outbox_backlog));

    let n = name("metrics_requests_total");
    w.family(
        &n,
        "Requests to this metrics endpoint, by answer (this scrape is counted in the next one).",
        Kind::Counter,
    );
    for outcome in Scrape::ALL {
        w.sample(
            &n,
            &[("answer", outcome.name())],
            load(&m.scrapes[outcome as usize]),
        );
    }
    w.finish()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn open_connections_go_down_when_their_guard_drops() {
        let m = Metrics::default();
        let a = m.authenticated(ConnKind::Console);
        let b = m.authenticated(ConnKind::Console);
        assert_eq!(
            m.open[ConnKind::Console as usize].load(Ordering::Relaxed),
            2
        );
        drop(a);
        drop(b);
        assert_eq!(
            m.open[ConnKind::Console as usize].load(Ordering::Relaxed),
            0
        );
        assert_eq!(load(&m.authentications[ConnKind::Console as usize]), 2);
    }

    #[test]
    fn refusals_map_to_failure_reasons() {
        assert_eq!(
            AuthFailure::of_refusal(&Refusal::BadTechnicianToken),
            AuthFailure::BadTechnicianToken
        );
        assert_eq!(
            AuthFailure::of_refusal(&Refusal::DeviceRevoked),
            AuthFailure::DeviceRevoked
        );
        assert_eq!(
            AuthFailure::of_refusal(&Refusal::Invalid("x".into())),
            AuthFailure::Other
        );
        // Every label value is distinct and snake_case.
        let names: std::collections::HashSet<_> =
            AuthFailure::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), AuthFailure::ALL.len());
        assert!(names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
        for (i, op) in StoreOp::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i, "ALL is in declaration order");
        }
    }
}
