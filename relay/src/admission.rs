//! Admission control: which new connections the relay lets start a QUIC
//! handshake, how many may wait unauthenticated, and which sources are
//! refused for failing authentication too often.
//!
//! The core, [`Admission`], is pure: it keeps counters and is told the time
//! (`now`) by its caller; it never reads a clock, sleeps or touches a
//! socket. [`Gate`] is the thin shared driver the relay's accept loop and
//! connection tasks use, and [`Ticket`] gives a connection's slots back
//! when its task ends, however it ends.
//!
//! The stages of a connection: *handshaking* (the relay accepted its first
//! packet and runs the QUIC handshake), *unauthenticated* (the handshake is
//! done, the hello and the authentication are not), *authenticated*. Only
//! the first two count against the limits, so a flood can never crowd out
//! the devices and technicians already in.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// The limits, with their defaults (see `[limits]` in the configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Handshakes in progress from which a first packet from an address
    /// that has not proven it receives our packets is answered with a QUIC
    /// Retry (which costs the relay no state). 0: always.
    pub retry_above_handshakes: usize,
    /// Most QUIC handshakes in progress at once.
    pub max_handshakes: usize,
    /// Most connections not yet authenticated (handshaking included).
    pub max_unauthenticated: usize,
    /// Most connections not yet authenticated from one source (an IPv4
    /// address, or an IPv6 /64: one host usually holds a whole /64).
    pub max_unauthenticated_per_source: usize,
    /// Failed authentications a source may make in a row.
    pub auth_failure_burst: u32,
    /// After the burst, one more failed authentication per this interval.
    pub auth_failure_interval: Duration,
    /// Time from a connection's first packet to its authentication.
    pub auth_deadline: Duration,
    /// One summary log line of failed and refused connections per interval.
    pub log_interval: Duration,
    /// Agents the relay attaches per second in a reconnect storm: the fleet
    /// divided by this is the window agents are told to spread their
    /// reconnections over (see [`deskside_protocol::reconnect`]).
    pub attach_rate: u32,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        Self {
            // A handshake takes one or two round trips; 32 at once is far
            // more than agents reconnecting after a relay restart need
            // before Retry (one more round trip) is worth its cost.
            retry_above_handshakes: 32,
            // A server handshake holds tens of KiB (TLS state, certificate,
            // packet buffers): 256 stay within a few MiB.
            max_handshakes: 256,
            // Each may hold the pre-authentication budget (64 KiB of
            // receive window): 1,024 of them, 64 MiB at the very worst.
            max_unauthenticated: 1024,
            // A home or office NAT may put a few consoles and agents behind
            // one address; 16 at once still lets all of them log in.
            max_unauthenticated_per_source: 16,
            auth_failure_burst: 10,
            // 10 guesses a minute: a mistyped token is fine, guessing a
            // 256-bit token is hopeless anyway, and the log stays short.
            auth_failure_interval: Duration::from_secs(6),
            // ARCHITECTURE.md: hello and authentication within 10 s.
            auth_deadline: Duration::from_secs(10),
            log_interval: Duration::from_secs(10),
            // Measured on 2 cores shared with the simulated agents
            // (README, benchmarks): 10,000 agents all reconnecting at once
            // were attached at about 600 a second with hardly any failed
            // attempt, while ~1 ms of relay CPU each allows more; past
            // this rate a full relay refuses and the agents back off.
            attach_rate: 800,
        }
    }
}

impl AdmissionLimits {
    /// Checks the limits make sense together; the message says which to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_handshakes == 0 || self.max_unauthenticated == 0 {
            return Err("max_handshakes and max_unauthenticated must be at least 1".into());
        }
        if self.max_unauthenticated_per_source == 0 {
            return Err("max_unauthenticated_per_source must be at least 1".into());
        }
        if self.max_handshakes > self.max_unauthenticated {
            return Err(format!(
                "max_handshakes ({}) cannot be above max_unauthenticated ({}): every handshake is an unauthenticated connection",
                self.max_handshakes, self.max_unauthenticated
            ));
        }
        if self.auth_failure_burst == 0 {
            return Err("auth_failure_burst must be at least 1".into());
        }
        if self.attach_rate == 0 {
            return Err("attach_rate must be at least 1 (agents attached per second)".into());
        }
        if self.auth_failure_interval.is_zero() || self.log_interval.is_zero() {
            return Err("auth_failure_interval and log_interval must be longer than 0".into());
        }
        if self.auth_deadline < Duration::from_secs(1)
            || self.auth_deadline > Duration::from_secs(120)
        {
            return Err(format!(
                "auth_deadline must be between 1 s and 2 min, got {:?}",
                self.auth_deadline
            ));
        }
        Ok(())
    }
}

/// What to do with a new connection's first packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Run the handshake (the slots are taken).
    Accept,
    /// Answer with a QUIC Retry: the client must prove its address first.
    Retry,
    /// Refuse at the QUIC level: the source failed authentication too
    /// often recently. The client is told at once, and its user why.
    Refuse,
    /// Not now: drop the packet without an answer. The client sends its
    /// Initial again (after about 1 s, then 2 s, …) and gets in once a
    /// slot is free, so a burst from one address (an office behind one NAT
    /// after a relay restart) waits a little instead of failing. In a
    /// reconnect storm this beat refusing at once (the clients then back
    /// off and start over): 30,000 agents were back in 68 s instead of
    /// 123 s (README, benchmarks).
    Wait(Full),
}

/// What was full when a connection was made to wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    /// Its source has as many connections waiting to authenticate as it may.
    Source,
    /// The relay has as many handshakes or unauthenticated connections as
    /// it takes.
    Relay,
}

/// A source: an IPv4 address or an IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source(IpAddr);

impl Source {
    /// The source `ip` belongs to.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    Self(IpAddr::V6(Ipv6Addr::new(
                        s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                    )))
                }
            },
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// Most sources whose failures are remembered. Entries leave once their
/// source may fail again at its full burst, so only sources failing right
/// now count; each needed a completed handshake, so a real address.
const MAX_TRACKED_SOURCES: usize = 65_536;
/// Most sources named in one summary line.
const SUMMARY_SOURCES: usize = 3;

/// What happened during one log interval, for the summary line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Failed authentications.
    pub failures: u64,
    /// The sources with the most failures, most first.
    pub top_sources: Vec<(Source, u64)>,
    /// Distinct sources that failed.
    pub failing_sources: usize,
    /// Connections refused because their source failed too often.
    pub refused_failed_too_often: u64,
    /// First packets left unanswered because their source had too many
    /// connections waiting (the clients send them again).
    pub waited_source_full: u64,
    /// First packets left unanswered because the relay was full.
    pub waited_relay_full: u64,
    /// Retries sent.
    pub retries: u64,
    /// Connections closed for not authenticating in time.
    pub deadline_closes: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed authentications from {} sources",
            self.failures, self.failing_sources
        )?;
        if !self.top_sources.is_empty() {
            let top: Vec<String> = self
                .top_sources
                .iter()
                .map(|(source, n)| format!("{source} ×{n}"))
                .collect();
            write!(f, " (most: {})", top.join(", "))?;
        }
        write!(
            f,
            "; refused {} connections from sources that failed too often; left {} first packets unanswered because their source had too many connections waiting, {} because the relay was full; {} retries sent; {} closed for not authenticating in time",
            self.refused_failed_too_often,
            self.waited_source_full,
            self.waited_relay_full,
            self.retries,
            self.deadline_closes
        )
    }
}

/// The pure admission state.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    handshaking: usize,
    unauthenticated: usize,
    per_source: HashMap<Source, usize>,
    /// Per source, the theoretical time its failure budget is full again
    /// (a generic cell rate algorithm: each failure pushes it one interval
    /// further; the source is refused while it lies more than burst − 1
    /// intervals ahead).
    failure_clock: HashMap<Source, Instant>,
    interval_start: Option<Instant>,
    interval_failures: HashMap<Source, u64>,
    summary: Summary,
}

impl Admission {
    /// A fresh state with `limits`.
    pub fn new(limits: AdmissionLimits) -> Self {
        Self {
            limits,
            handshaking: 0,
            unauthenticated: 0,
            per_source: HashMap::new(),
            failure_clock: HashMap::new(),
            interval_start: None,
            interval_failures: HashMap::new(),
            summary: Summary::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &AdmissionLimits {
        &self.limits
    }

    /// Connections handshaking and not yet authenticated (handshaking
    /// included).
    pub fn counts(&self) -> (usize, usize) {
        (self.handshaking, self.unauthenticated)
    }

    fn failed_too_often(&self, source: Source, now: Instant) -> bool {
        let burst = self.limits.auth_failure_interval * (self.limits.auth_failure_burst - 1);
        self.failure_clock
            .get(&source)
            .is_some_and(|full_at| full_at.saturating_duration_since(now) > burst)
    }

    /// A first packet arrived from `ip`; `validated` says whether the
    /// client proved it receives packets at that address (it answered a
    /// Retry). On [`Decision::Accept`] the connection's slots are taken.
    pub fn handle_incoming(&mut self, ip: IpAddr, validated: bool, now: Instant) -> Decision {
        let source = Source::of(ip);
        let decision = self.decide(source, validated, now);
        match decision {
            Decision::Accept => {
                self.handshaking += 1;
                self.unauthenticated += 1;
                *self.per_source.entry(source).or_default() += 1;
            }
            Decision::Retry => self.summary.retries += 1,
            Decision::Refuse => self.summary.refused_failed_too_often += 1,
            Decision::Wait(Full::Source) => self.summary.waited_source_full += 1,
            Decision::Wait(Full::Relay) => self.summary.waited_relay_full += 1,
        }
        decision
    }

    fn decide(&self, source: Source, validated: bool, now: Instant) -> Decision {
        if self.failed_too_often(source, now) {
            return Decision::Refuse;
        }
        let busy_source = self.per_source.get(&source).copied().unwrap_or(0)
            >= self.limits.max_unauthenticated_per_source;
        let busy = self.handshaking >= self.limits.max_handshakes
            || self.unauthenticated >= self.limits.max_unauthenticated;
        let retry = self.handshaking >= self.limits.retry_above_handshakes;
        if !validated && (retry || busy || busy_source) {
            // The address may be forged (someone else's): make the client
            // prove it before anything is decided in its name.
            return Decision::Retry;
        }
        if busy_source {
            return Decision::Wait(Full::Source);
        }
        if busy {
            return Decision::Wait(Full::Relay);
        }
        Decision::Accept
    }

    /// A connection of `ip` finished its QUIC handshake (or failed it).
    pub fn handle_handshake_done(&mut self) {
        self.handshaking = self.handshaking.saturating_sub(1);
    }

    /// A connection of `ip` authenticated, or ended before it did: its
    /// unauthenticated slots are free again.
    pub fn handle_left_unauthenticated(&mut self, ip: IpAddr) {
        let source = Source::of(ip);
        self.unauthenticated = self.unauthenticated.saturating_sub(1);
        if let Some(count) = self.per_source.get_mut(&source) {
            *count -= 1;
            if *count == 0 {
                self.per_source.remove(&source);
            }
        }
    }

    /// A connection from `ip` failed to authenticate.
    pub fn handle_auth_failure(&mut self, ip: IpAddr, now: Instant) {
        let source = Source::of(ip);
        self.summary.failures += 1;
        if self.interval_failures.len() < MAX_TRACKED_SOURCES
            || self.interval_failures.contains_key(&source)
        {
            *self.interval_failures.entry(source).or_default() += 1;
        }
        if self.failure_clock.len() >= MAX_TRACKED_SOURCES {
            self.failure_clock.retain(|_, full_at| *full_at > now);
        }
        if self.failure_clock.len() >= MAX_TRACKED_SOURCES
            && !self.failure_clock.contains_key(&source)
        {
            return;
        }
        let full_at = self.failure_clock.entry(source).or_insert(now);
        *full_at = (*full_at).max(now) + self.limits.auth_failure_interval;
    }

    /// A connection was closed for not authenticating in time.
    pub fn handle_deadline_close(&mut self) {
        self.summary.deadline_closes += 1;
    }

    /// The summary of the interval that ended by `now`, if anything
    /// happened in it; forgets sources whose failure budget is full again.
    pub fn poll_summary(&mut self, now: Instant) -> Option<Summary> {
        let start = *self.interval_start.get_or_insert(now);
        if now.saturating_duration_since(start) < self.limits.log_interval {
            return None;
        }
        self.interval_start = Some(now);
        self.failure_clock.retain(|_, full_at| *full_at > now);
        let mut summary = std::mem::take(&mut self.summary);
        let failures = std::mem::take(&mut self.interval_failures);
        summary.failing_sources = failures.len();
        let mut ranked: Vec<(Source, u64)> = failures.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(SUMMARY_SOURCES);
        summary.top_sources = ranked;
        (summary != Summary::default()).then_some(summary)
    }
}

/// Where a connection is, for its [`Ticket`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Handshaking,
    Unauthenticated(usize),
    Authenticated,
}

#[derive(Debug)]
struct GateInner {
    admission: Admission,
    /// Connections past the handshake and not yet authenticated, by
    /// `quinn::Connection::stable_id`, each with its source and the sender
    /// that tells its task it authenticated.
    waiting: HashMap<usize, (IpAddr, watch::Sender<bool>)>,
}

/// [`Admission`] shared by the accept loop and the connection tasks.
#[derive(Debug)]
pub struct Gate {
    inner: Mutex<GateInner>,
    /// The fleet: devices enrolled at start plus enrollments since, or the
    /// most online at once if more.
    fleet: AtomicUsize,
    attach_rate: u32,
}

impl Gate {
    /// A gate with `limits`.
    pub fn new(limits: AdmissionLimits) -> Arc<Self> {
        Arc::new(Self {
            fleet: AtomicUsize::new(0),
            attach_rate: limits.attach_rate,
            inner: Mutex::new(GateInner {
                admission: Admission::new(limits),
                waiting: HashMap::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateInner> {
        // The state is counters only; one left half-updated by a panic is
        // still better than refusing every connection from then on.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The limits in force.
    pub fn limits(&self) -> AdmissionLimits {
        self.lock().admission.limits().clone()
    }

    /// The relay holds (or held) a fleet of at least `devices` agents.
    pub fn observe_fleet(&self, devices: usize) {
        self.fleet.fetch_max(devices, Ordering::Relaxed);
    }

    /// A device enrolled: the fleet grew by one (a repeated enrollment of
    /// the same key counts again; the estimate only needs to be close).
    pub fn enrolled(&self) {
        self.fleet.fetch_add(1, Ordering::Relaxed);
    }

    /// The window agents are told to spread their reconnections over: the
    /// largest fleet seen, at `attach_rate` agents a second.
    pub fn reconnect_spread(&self) -> Duration {
        deskside_protocol::reconnect::spread_for_fleet(
            self.fleet.load(Ordering::Relaxed),
            self.attach_rate,
        )
    }

    /// Decides on a first packet; on accept, returns the ticket that holds
    /// the connection's slots.
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        validated: bool,
        now: Instant,
    ) -> Result<Ticket, Decision> {
        match self.lock().admission.handle_incoming(ip, validated, now) {
            Decision::Accept => Ok(Ticket {
                gate: Arc::clone(self),
                ip,
                stage: Stage::Handshaking,
            }),
            other => Err(other),
        }
    }

    /// Marks the connection with this `stable_id` authenticated: its slots
    /// are freed and its task's deadline is lifted. False if it was not
    /// waiting (already authenticated, or unknown).
    pub fn authenticated(&self, stable_id: usize) -> bool {
        let mut inner = self.lock();
        match inner.waiting.remove(&stable_id) {
            Some((ip, done)) => {
                inner.admission.handle_left_unauthenticated(ip);
                let _ = done.send(true);
                true
            }
            None => false,
        }
    }

    /// Records a failed authentication from `ip`.
    pub fn auth_failure(&self, ip: IpAddr, now: Instant) {
        self.lock().admission.handle_auth_failure(ip, now);
    }

    /// Records a connection closed for not authenticating in time.
    pub fn deadline_close(&self) {
        self.lock().admission.handle_deadline_close();
    }

    /// See [`Admission::poll_summary`].
    pub fn poll_summary(&self, now: Instant) -> Option<Summary> {
        self.lock().admission.poll_summary(now)
    }

    /// Handshaking and unauthenticated connections right now.
    pub fn counts(&self) -> (usize, usize) {
        self.lock().admission.counts()
    }
}

/// A connection's place in the [`Gate`]; dropping it frees what it holds.
#[derive(Debug)]
pub struct Ticket {
    gate: Arc<Gate>,
    ip: IpAddr,
    stage: Stage,
}

impl Ticket {
    /// The handshake of connection `stable_id` completed: it now waits to
    /// authenticate. The receiver turns true when it did.
    pub fn handshake_done(&mut self, stable_id: usize) -> watch::Receiver<bool> {
        let (done, authenticated) = watch::channel(false);
        let mut inner = self.gate.lock();
        if self.stage == Stage::Handshaking {
            inner.admission.handle_handshake_done();
            inner.waiting.insert(stable_id, (self.ip, done));
            self.stage = Stage::Unauthenticated(stable_id);
        }
        authenticated
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut inner = self.gate.lock();
        match self.stage {
            Stage::Handshaking => {
                inner.admission.handle_handshake_done();
                inner.admission.handle_left_unauthenticated(self.ip);
            }
            Stage::Unauthenticated(stable_id) => {
                if inner.waiting.remove(&stable_id).is_some() {
                    inner.admission.handle_left_unauthenticated(self.ip);
                }
            }
            Stage::Authenticated => {}
        }
        self.stage = Stage::Authenticated;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn limits() -> AdmissionLimits {
        AdmissionLimits {
            retry_above_handshakes: 2,
            max_handshakes: 4,
            max_unauthenticated: 6,
            max_unauthenticated_per_source: 3,
            auth_failure_burst: 3,
            auth_failure_interval: Duration::from_secs(10),
            auth_deadline: Duration::from_secs(10),
            log_interval: Duration::from_secs(10),
            attach_rate: 500,
        }
    }

    #[test]
    fn unvalidated_addresses_get_a_retry_once_handshakes_pile_up() {
        let now = Instant::now();
        let mut admission = Admission::new(limits());
        assert_eq!(
            admission.handle_incoming(ip("10.0.0.1"), false, now),
            Decision::Accept
        );
        assert_eq!(
            admission.handle_incoming(ip("10.0.0.2"), false, now),
            Decision::Accept
        );
        // Two handshakes in progress: the threshold.
        assert_eq!(
            admission.handle_incoming(ip("10.0.0.3"), false, now),
            Decision::Retry
        );
        // The client answered the Retry: its address is proven.
        assert_eq!(
            admission.handle_incoming(ip("10.0.0.3"), true, now),
            Decision::Accept
        );
        assert_eq!(admission.counts(), (3, 3));
        admission.handle_handshake_done();
        admission.handle_handshake_done();
        assert_eq!(admission.counts(), (1, 3));
        assert_eq!(
            admission.handle_incoming(ip("10.0.0.4"), false, now),
            Decision::Accept
        );
    }

    #[test]
    fn handshakes_and_unauthenticated_connections_are_capped() {
        let now = Instant::now();
        let mut admission = Admission::new(limits());
        for n in 1..=4 {
            let source = ip(&format!("10.0.0.{n}"));
            assert_eq!(
                admission.handle_incoming(source, true, now),
                Decision::Accept
            );
        }
        assert_eq!(
            admission.handle_incoming(ip("10.0.0.9"), true, now),
            Decision::Wait(Full::Relay)
        );
        // A forged address is never refused in someone's name: Retry.
        assert_eq!(
            admission.handle_incoming(ip("10.0.0.9"), false, now),
            Decision::Retry
        );
        for _ in 0..4 {
            admission.handle_handshake_done();
        }
        assert_eq!(
            admission.handle_incoming(ip("10.0.0.5"), true, now),
            Decision::Accept
        );
        assert_eq!(
            admission.handle_incoming(ip("10.0.0.6"), true, now),
            Decision::Accept
        );
        // Six wait to authenticate: the global cap, though no handshake runs.
        admission.handle_handshake_done();
        admission.handle_handshake_done();
        assert_eq!(admission.counts(), (0, 6));
        assert_eq!(
            admission.handle_incoming(ip("10.0.0.7"), true, now),
            Decision::Wait(Full::Relay)
        );
        admission.handle_left_unauthenticated(ip("10.0.0.1"));
        assert_eq!(
            admission.handle_incoming(ip("10.0.0.7"), true, now),
            Decision::Accept
        );
    }

    #[test]
    fn one_source_cannot_hold_more_than_its_share() {
        let now = Instant::now();
        let mut admission = Admission::new(limits());
        for _ in 0..3 {
            assert_eq!(
                admission.handle_incoming(ip("10.0.0.1"), true, now),
                Decision::Accept
            );
            admission.handle_handshake_done();
        }
        assert_eq!(
            admission.handle_incoming(ip("10.0.0.1"), true, now),
            Decision::Wait(Full::Source)
        );
        assert_eq!(
            admission.handle_incoming(ip("10.0.0.2"), true, now),
            Decision::Accept
        );
        admission.handle_left_unauthenticated(ip("10.0.0.1"));
        assert_eq!(
            admission.handle_incoming(ip("10.0.0.1"), true, now),
            Decision::Accept
        );
    }

    #[test]
    fn an_ipv6_host_is_one_source_per_64() {
        assert_eq!(
            Source::of(ip("2001:db8:1:2:aaaa::1")),
            Source::of(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            Source::of(ip("::ffff:10.0.0.1")),
            Source::of(ip("10.0.0.1"))
        );
        assert_eq!(
            Source::of(ip("2001:db8:1:2::1")).to_string(),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn failed_authentications_are_rate_limited_per_source() {
        let start = Instant::now();
        let mut admission = Admission::new(limits());
        assert_eq!(
            admission.poll_summary(start),
            None,
            "starts the log interval"
        );
        let bad = ip("10.0.0.66");
        for _ in 0..3 {
            assert_eq!(
                admission.handle_incoming(bad, true, start),
                Decision::Accept
            );
            admission.handle_handshake_done();
            admission.handle_left_unauthenticated(bad);
            admission.handle_auth_failure(bad, start);
        }
        let refused = Decision::Refuse;
        assert_eq!(admission.handle_incoming(bad, true, start), refused);
        assert_eq!(admission.handle_incoming(bad, false, start), refused);
        // Another source is not affected.
        assert_eq!(
            admission.handle_incoming(ip("10.0.0.1"), true, start),
            Decision::Accept
        );
        // One interval later, one more try.
        let later = start + Duration::from_secs(10);
        assert_eq!(
            admission.handle_incoming(bad, true, later),
            Decision::Accept
        );
        admission.handle_auth_failure(bad, later);
        assert_eq!(admission.handle_incoming(bad, true, later), refused);
        // After the whole burst has refilled, the source is forgotten.
        let much_later = later + Duration::from_secs(31);
        assert!(admission.poll_summary(much_later).is_some());
        assert!(admission.failure_clock.is_empty());
    }

    #[test]
    fn failures_are_summarised_once_per_interval() {
        let start = Instant::now();
        let mut admission = Admission::new(limits());
        assert_eq!(admission.poll_summary(start), None);
        for n in 0..5 {
            admission.handle_auth_failure(ip("10.0.0.2"), start + Duration::from_secs(n));
        }
        admission.handle_auth_failure(ip("10.0.0.3"), start);
        admission.handle_incoming(ip("10.0.0.2"), true, start + Duration::from_secs(5));
        // Not before the interval is over.
        assert_eq!(admission.poll_summary(start + Duration::from_secs(9)), None);
        let summary = admission
            .poll_summary(start + Duration::from_secs(10))
            .unwrap();
        assert_eq!(summary.failures, 6);
        assert_eq!(summary.failing_sources, 2);
        assert_eq!(
            summary.top_sources,
            vec![
                (Source::of(ip("10.0.0.2")), 5),
                (Source::of(ip("10.0.0.3")), 1)
            ]
        );
        assert_eq!(summary.refused_failed_too_often, 1);
        let line = summary.to_string();
        assert!(
            line.starts_with(
                "6 failed authentications from 2 sources (most: 10.0.0.2 ×5, 10.0.0.3 ×1)"
            ),
            "{line}"
        );
        // A quiet interval logs nothing.
        assert_eq!(
            admission.poll_summary(start + Duration::from_secs(30)),
            None
        );
    }

    #[test]
    fn a_ticket_gives_its_slots_back_whenever_it_ends() {
        let now = Instant::now();
        let gate = Gate::new(limits());
        let source = ip("10.0.0.1");
        let handshaking = gate.admit(source, true, now).unwrap();
        assert_eq!(gate.counts(), (1, 1));
        drop(handshaking);
        assert_eq!(gate.counts(), (0, 0));

        let mut waiting = gate.admit(source, true, now).unwrap();
        let mut authenticated = waiting.handshake_done(7);
        assert_eq!(gate.counts(), (0, 1));
        assert!(!*authenticated.borrow_and_update());
        assert!(gate.authenticated(7));
        assert!(*authenticated.borrow_and_update());
        assert_eq!(gate.counts(), (0, 0));
        assert!(!gate.authenticated(7), "only once");
        drop(waiting);
        assert_eq!(gate.counts(), (0, 0));

        let mut abandoned = gate.admit(source, true, now).unwrap();
        let _ = abandoned.handshake_done(8);
        drop(abandoned);
        assert_eq!(gate.counts(), (0, 0));
        // All three slots of the source are free again.
        for _ in 0..3 {
            std::mem::forget(gate.admit(source, true, now).unwrap());
        }
    }

    #[test]
    fn a_full_relay_makes_proven_addresses_wait_and_spreads_its_fleet() {
        let now = Instant::now();
        let gate = Gate::new(AdmissionLimits {
            attach_rate: 100,
            ..limits()
        });
        assert_eq!(gate.poll_summary(now), None, "starts the log interval");
        let held: Vec<Ticket> = (1..=4)
            .map(|n| gate.admit(ip(&format!("10.0.1.{n}")), true, now).unwrap())
            .collect();
        // Four handshakes: full. A proven address waits (its client sends
        // the first packet again); an unproven one must first answer a Retry.
        assert_eq!(
            gate.admit(ip("10.0.1.9"), true, now).unwrap_err(),
            Decision::Wait(Full::Relay)
        );
        assert_eq!(
            gate.admit(ip("10.0.1.9"), false, now).unwrap_err(),
            Decision::Retry
        );
        drop(held);
        assert!(gate.admit(ip("10.0.1.9"), true, now).is_ok());
        let summary = gate.poll_summary(now + Duration::from_secs(10)).unwrap();
        assert_eq!((summary.waited_relay_full, summary.retries), (1, 1));
        assert!(summary.to_string().contains("1 because the relay was full"));
        // The window follows the largest fleet seen, at the attach rate.
        assert_eq!(
            gate.reconnect_spread(),
            deskside_protocol::reconnect::MIN_SPREAD
        );
        gate.observe_fleet(3_000);
        gate.observe_fleet(1_000);
        assert_eq!(gate.reconnect_spread(), Duration::from_secs(30));
        for _ in 0..500 {
            gate.enrolled();
        }
        assert_eq!(gate.reconnect_spread(), Duration::from_secs(35));
    }

    #[test]
    fn limits_are_validated() {
        assert_eq!(AdmissionLimits::default().validate(), Ok(()));
        let mut bad = AdmissionLimits::default();
        bad.max_handshakes = bad.max_unauthenticated + 1;
        assert!(bad.validate().unwrap_err().contains("max_handshakes"));
        let bad = AdmissionLimits {
            auth_failure_burst: 0,
            ..AdmissionLimits::default()
        };
        assert!(bad.validate().is_err());
        let no_rate = AdmissionLimits {
            attach_rate: 0,
            ..AdmissionLimits::default()
        };
        assert!(no_rate.validate().unwrap_err().contains("attach_rate"));
        let always_retry = AdmissionLimits {
            retry_above_handshakes: 0,
            ..AdmissionLimits::default()
        };
        assert_eq!(always_retry.validate(), Ok(()));
        let mut admission = Admission::new(always_retry);
        assert_eq!(
            admission.handle_incoming(ip("10.0.0.1"), false, Instant::now()),
            Decision::Retry
        );
    }
}
