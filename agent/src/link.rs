//! The agent's link to the relay: enrollment, attachment, and the
//! reconnecting loop of `deskside-agent run`.
//!
//! Keep-alives hold NAT mappings open and let the relay notice a vanished
//! device; the loop reconnects with exponential backoff and jitter whenever
//! the connection ends, so a relay restart needs no action on the device.

use std::sync::Arc;
use std::time::Duration;

use deskside_net::transport::{client_endpoint, resolve, ConnectOptions};
use deskside_net::{connect, ConnectError, FramedRecv, FramedSend, Identity, NetError};
use deskside_protocol::agent::{AgentToRelay, DeviceInfo, RelayToAgent};
use deskside_protocol::message::Nested;
use deskside_protocol::token::{EnrollToken, RelayEndpoint, TokenError};
use deskside_protocol::{DeviceId, Refusal};
use thiserror::Error;
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::backoff::{Backoff, Reconnect};
use crate::relays::RelayChoice;
use crate::state::{Enrollment, LinkState, StateDir, StateError, Status};

/// Keep-alive interval. NATs drop idle UDP mappings after ~30 s; 4 s also
/// lets the relay see a vanished device within its 12 s idle timeout.
pub const KEEP_ALIVE: Duration = Duration::from_secs(4);
/// Idle timeout on the agent's side of the connection.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(12);
/// First reconnection delay.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(500);
/// Longest reconnection delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// The relay's close code for "this device was revoked while connected".
pub const CLOSE_REVOKED: u32 = 4;

/// How often a connected agent looks for help requests to send.
const REQUEST_OUTBOX_POLL: Duration = Duration::from_secs(2);

/// How long an attached agent with nothing to do waits before it asks to
/// park (see [`crate::park`]), unless [`Services::park_after`] says.
pub const PARK_AFTER: Duration = Duration::from_secs(30);

/// [`PARK_AFTER`], or `DESKSIDE_AGENT_PARK_AFTER_MS` (tests shorten it).
fn park_after() -> Duration {
    std::env::var("DESKSIDE_AGENT_PARK_AFTER_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(PARK_AFTER, Duration::from_millis)
}

/// The shortest idle timeout a parked agent takes from the relay (the
/// relay refuses one under 5 s).
const PARKED_IDLE_MIN: Duration = Duration::from_secs(3);

/// How often an attached agent looks whether it may park.
const PARK_CHECK: Duration = Duration::from_secs(1);

/// Errors of enrollment and of the relay link.
#[derive(Debug, Error)]
pub enum LinkError {
    /// The token text is not valid.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The relay could not be reached or is not the pinned one.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The relay refused.
    #[error("the relay refused: {0}")]
    Refused(Refusal),
    /// The connection broke.
    #[error("connection to the relay lost: {0}")]
    Net(#[from] NetError),
    /// Local state could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// Key generation failed.
    #[error("cannot create the device key: {0}")]
    Key(#[from] deskside_net::TlsError),
    /// Already enrolled.
    #[error("this device is already enrolled as {device_id} with the relay {relay}; to enroll it again, run `deskside-agent enroll --force TOKEN`")]
    AlreadyEnrolled {
        /// Current id.
        device_id: DeviceId,
        /// Current relay.
        relay: String,
    },
    /// The relay answered something unexpected.
    #[error("the relay answered unexpectedly ({0}); upgrade the agent")]
    Unexpected(String),
    /// The relay asked the parked agent to attach again.
    #[error("the relay asked this parked agent to attach again (it restarted, or the device's state changed)")]
    Unparked,
    /// The relay stopped answering a parked agent's heartbeats.
    #[error("the relay stopped answering for the idle timeout; it may be down or unreachable from this network")]
    Silent,
    /// The installed service's layout (token file, service user) is unusable.
    #[error(transparent)]
    Service(#[from] crate::service::ServiceError),
}

impl LinkError {
    /// Whether retrying cannot help: the device is revoked or unknown, or
    /// its local state is unusable.
    pub fn is_permanent(&self) -> bool {
        self.revocation().is_some()
            || matches!(
                self,
                LinkError::State(_)
                    | LinkError::Service(_)
                    | LinkError::Connect(ConnectError::FingerprintMismatch { .. })
            )
    }

    /// Whether the relay said this device is revoked (a refusal, or the
    /// close code [`CLOSE_REVOKED`] on a live connection) or unknown.
    pub fn revocation(&self) -> Option<crate::state::RevocationKind> {
        use crate::state::RevocationKind;
        match self {
            LinkError::Refused(Refusal::DeviceRevoked) => Some(RevocationKind::Revoked),
            LinkError::Refused(Refusal::DeviceUnknown) => Some(RevocationKind::Unknown),
            LinkError::Net(NetError::Connection(quinn::ConnectionError::ApplicationClosed(
                close,
            ))) if close.error_code == quinn::VarInt::from_u32(CLOSE_REVOKED) => {
                Some(RevocationKind::Revoked)
            }
            _ => None,
        }
    }
}

/// Facts about this machine sent at enrollment and at every connection.
pub fn device_info() -> DeviceInfo {
    DeviceInfo {
        hostname: sysinfo::System::host_name().unwrap_or_else(|| "unknown".to_owned()),
        os: os_description(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// The OS as people name it: `Debian GNU/Linux 12 (bookworm)`, `Windows 11
/// 23H2 (22631)`.
fn os_description() -> String {
    #[cfg(windows)]
    return crate::platform::windows::os_version::describe();
    #[cfg(not(windows))]
    os_description_from_sysinfo()
}

#[cfg(not(windows))]
fn os_description_from_sysinfo() -> String {
    let name = sysinfo::System::name();
    let version = sysinfo::System::os_version();
    match (name, version) {
        (Some(name), Some(version)) if !name.contains(&version) => format!("{name} {version}"),
        (Some(name), _) => name,
        (None, _) => std::env::consts::OS.to_owned(),
    }
}

pub(crate) fn options(
    relay: &str,
    enrollment_fp: deskside_protocol::Fingerprint,
    identity: Identity,
) -> ConnectOptions {
    ConnectOptions {
        relay: relay.to_owned(),
        fingerprint: enrollment_fp,
        identity: Some(identity),
        idle_timeout: IDLE_TIMEOUT,
        keep_alive: Some(KEEP_ALIVE),
        software: format!("deskside-agent {}", env!("CARGO_PKG_VERSION")),
    }
}

/// Enrolls this device with `token_text`. Nothing is written unless the
/// relay accepts.
pub async fn enroll(
    state: &StateDir,
    token_text: &str,
    force: bool,
) -> Result<Enrollment, LinkError> {
    let (token, certified) = deskside_protocol::certificate::decode_enroll_token(token_text)?;
    if state.is_enrolled() && !force {
        let current = state.enrollment()?;
        return Err(LinkError::AlreadyEnrolled {
            device_id: current.device_id,
            relay: current.relay,
        });
    }
    // Kept on disk until the enrollment is saved, so that a retry after a
    // crash presents the same key and the relay answers with the same
    // device instead of spending another use.
    let identity = crate::enroll_pending::key_for(state, &token.secret)?;
    let trust = trust_from_token(certified.as_ref(), &identity)?;
    let addr = resolve(&token.relay).await?;
    let endpoint = client_endpoint(addr)?;
    let outcome = register(&endpoint, &token, identity.clone(), device_info()).await;
    endpoint.wait_idle().await;
    if let Err(LinkError::Refused(_)) = &outcome {
        crate::enroll_pending::clear(state);
    }
    let (device_id, organisation) = outcome?;
    let enrollment = Enrollment {
        device_id,
        organisation,
        relay: token.relay,
        fingerprint: token.fingerprint,
        enrolled_at: crate::clock::unix_secs(),
        other_relays: token.other_relays,
    };
    if force {
        state.forget_enrollment()?;
    }
    state.save_enrollment(&identity, &enrollment)?;
    crate::enroll_pending::clear(state);
    crate::org_trust::save(state.root(), &trust)?;
    if let Some(key) = trust.org_key {
        tracing::info!(org_key = %key, bound = trust.binding.is_some(), "session keys must be certified by the organisation key");
    }
    Ok(enrollment)
}

/// What a `dse2_` token makes this device trust, and the binding of the
/// device key signed with the token key (the token key itself is never
/// stored).
fn trust_from_token(
    certified: Option<&deskside_protocol::certificate::CertifiedEnrollToken>,
    identity: &Identity,
) -> Result<crate::org_trust::Trust, LinkError> {
    let Some(certified) = certified else {
        return Ok(crate::org_trust::Trust::default());
    };
    let binding = match &certified.binding {
        Some(binding) => {
            let token_key = deskside_net::orgkey::SeedKey::from_seed(&binding.seed)
                .map_err(|_| TokenError::Damaged("enrollment token"))?;
            Some(
                token_key
                    .bind_device(&binding.certificate, identity.key_fingerprint()?)
                    .encode(),
            )
        }
        None => None,
    };
    Ok(crate::org_trust::Trust {
        org_key: Some(certified.org_key),
        binding,
    })
}

/// The network half of enrollment: registers `identity`'s public key with
/// the relay named in `token`. Writes nothing locally.
pub async fn register(
    endpoint: &quinn::Endpoint,
    token: &EnrollToken,
    identity: Identity,
    info: DeviceInfo,
) -> Result<(DeviceId, String), LinkError> {
    let mut connected = connect(
        endpoint,
        &options(&token.relay, token.fingerprint, identity),
    )
    .await?;
    connected
        .send
        .send(&AgentToRelay::Enroll {
            secret: token.secret.clone(),
            info,
        })
        .await?;
    let answer = connected.recv.recv::<RelayToAgent>().await?;
    connected.connection.close(0u32.into(), b"enrolled");
    match answer {
        Some(RelayToAgent::Enrolled {
            device_id,
            organisation,
        }) => Ok((device_id, organisation)),
        Some(RelayToAgent::Refused(Nested(refusal))) => Err(LinkError::Refused(refusal)),
        Some(other) => Err(LinkError::Unexpected(format!("{other:?}"))),
        None => Err(NetError::Truncated.into()),
    }
}

/// An attached connection.
#[derive(Debug)]
pub struct Attached {
    /// The QUIC connection.
    pub connection: quinn::Connection,
    send: FramedSend,
    recv: FramedRecv,
    /// The device id the relay attached us as.
    pub device_id: DeviceId,
    /// Relay clock minus local clock at attach time, milliseconds (rough:
    /// includes half a round trip).
    pub clock_offset_ms: i64,
    /// The reconnection window the relay advised on this connection, ms
    /// (0 until it did); read after [`Attached::serve`] returns.
    pub reconnect_advice: Arc<std::sync::atomic::AtomicU32>,
    /// The relay list the relay sent last on this connection (relays
    /// sharing a directory send it after attaching); subscribe before
    /// [`Attached::serve`].
    pub relay_list: watch::Sender<Vec<RelayEndpoint>>,
}

/// Connects and attaches as the device owning `identity`.
pub async fn attach(
    endpoint: &quinn::Endpoint,
    relay: &str,
    fingerprint: deskside_protocol::Fingerprint,
    identity: Identity,
    info: DeviceInfo,
) -> Result<Attached, LinkError> {
    let connected = connect(endpoint, &options(relay, fingerprint, identity)).await?;
    attach_on(connected, info).await
}

/// Attaches on a connection already made (see [`connect_any`]).
pub async fn attach_on(
    mut connected: deskside_net::Connected,
    info: DeviceInfo,
) -> Result<Attached, LinkError> {
    connected.send.send(&AgentToRelay::Attach { info }).await?;
    match connected.recv.recv::<RelayToAgent>().await? {
        Some(RelayToAgent::Attached {
            device_id,
            relay_time_ms,
            ..
        }) => {
            let local_ms = crate::clock::unix_millis();
            Ok(Attached {
                connection: connected.connection,
                send: connected.send,
                recv: connected.recv,
                device_id,
                clock_offset_ms: relay_time_ms - local_ms,
                reconnect_advice: Arc::default(),
                relay_list: watch::Sender::new(Vec::new()),
            })
        }
        Some(RelayToAgent::Refused(Nested(refusal))) => Err(LinkError::Refused(refusal)),
        Some(other) => Err(LinkError::Unexpected(format!("{other:?}"))),
        None => Err(NetError::Truncated.into()),
    }
}

/// Produces diagnostic snapshots (JSON) when a technician asks for one.
pub trait DiagnosticsSource: Send + Sync {
    /// Collects one snapshot; `Err` carries the reason shown to the
    /// technician (for example "the employee declined").
    fn collect(&self, throughput: bool) -> BoxFuture<Result<Vec<u8>, String>>;

    /// Like [`DiagnosticsSource::collect`], for the named technician (the
    /// name goes into the device's local history).
    fn collect_for(
        &self,
        throughput: bool,
        technician: Option<String>,
    ) -> BoxFuture<Result<Vec<u8>, String>> {
        let _ = technician;
        self.collect(throughput)
    }

    /// The agent attached to `relay` (of several, after a failover): path
    /// measurements go to the relay the agent is attached to.
    fn attached_to(&self, _relay: &RelayEndpoint) {}

    /// The organisation's policy (JSON) arrived from the relay; `Err` says
    /// why it could not be applied.
    fn set_policy(&self, _json: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

/// The remote-session side of an agent: the host that runs sessions, and
/// the messages it has for the relay (kept across reconnects).
#[derive(Debug)]
pub struct SessionLink {
    /// Runs the sessions.
    pub host: Arc<crate::session::host::SessionHost>,
    /// Consent answers and session ends, sent on the current connection.
    pub outbox: tokio::sync::mpsc::UnboundedReceiver<AgentToRelay>,
}

/// A boxed future, as trait methods return them.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl Attached {
    /// Serves the relay's messages until the connection ends or `stop` is
    /// set (`Ok(None)`), or the agent parks (`Ok(Some)`: it was quiet for
    /// `park_after` and the relay agreed; see [`crate::park`]); returns why
    /// it ended.
    pub async fn serve(
        mut self,
        stop: &mut watch::Receiver<bool>,
        diagnostics: Option<&Arc<dyn DiagnosticsSource>>,
        mut sessions: Option<&mut SessionLink>,
        mut timeline: Option<&mut crate::timeline::TimelineLink>,
        requests: Option<&StateDir>,
        park_after: Option<Duration>,
    ) -> Result<Option<crate::park::Parking>, LinkError> {
        // Quiet since: anything but keep-alive traffic resets it.
        let mut quiet_since = tokio::time::Instant::now();
        let mut park_check = tokio::time::interval(PARK_CHECK);
        park_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Help requests typed on this device: sent when found in the
        // outbox (at once, then every 2 s), forgotten once acknowledged.
        let mut outbox_tick = tokio::time::interval(REQUEST_OUTBOX_POLL);
        let mut requests_sent = std::collections::HashSet::<String>::new();
        let (done_tx, mut done) = tokio::sync::mpsc::channel::<(u64, Result<Vec<u8>, String>)>(4);
        let mut running = false;
        // Monitoring samples this connection until the loop ends, however.
        let _monitored = timeline.as_deref().map(|t| {
            let prober = sessions.as_deref().map(|link| link.host.prober());
            t.attached(self.connection.clone(), prober)
        });
        if let Some(link) = sessions.as_deref() {
            link.host.attach(self.connection.clone());
        }
        // The relay learns the employee's monitors on every connection, and
        // again when they change.
        let mut monitors = sessions.as_deref().map(|link| link.host.monitors());
        if let Some(monitors) = monitors.as_mut() {
            monitors.mark_changed();
        }
        loop {
            let outbox = async {
                match sessions.as_deref_mut() {
                    Some(link) => link.outbox.recv().await,
                    None => std::future::pending().await,
                }
            };
            let monitors_changed = async {
                match monitors.as_mut() {
                    Some(monitors) => monitors.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            let timeline_upload = async {
                match timeline.as_deref_mut() {
                    Some(link) => link.next_message().await,
                    None => std::future::pending().await,
                }
            };
            let outbox_due = async {
                match requests {
                    Some(_) => outbox_tick.tick().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = park_check.tick(), if park_after.is_some() => {
                    let quiet = park_after.is_some_and(|after| quiet_since.elapsed() >= after);
                    let idle_locally = !running
                        && sessions.as_deref().is_none_or(|link| !link.host.has_sessions())
                        && requests.is_none_or(|state| crate::requests::queued(state).is_empty());
                    if quiet && idle_locally {
                        tracing::debug!("nothing to do: asking the relay to park");
                        self.send.send(&AgentToRelay::Park).await?;
                        // Asked again after another quiet period if the
                        // relay had something in hand.
                        quiet_since = tokio::time::Instant::now();
                    }
                }
                Some(message) = outbox => {
                    quiet_since = tokio::time::Instant::now();
                    self.send.send(&message).await?;
                }
                _ = outbox_due => {
                    if let Some(state) = requests {
                        for request in crate::requests::queued(state) {
                            if requests_sent.insert(request.client_id.clone()) {
                                tracing::info!(client_id = %request.client_id, "sending a queued help request");
                                self.send.send(&AgentToRelay::HelpRequest(request)).await?;
                            }
                        }
                    }
                }
                Some(message) = timeline_upload => {
                    self.send.send(&message).await?;
                }
                true = monitors_changed => {
                    let list = monitors.as_mut().map(|m| m.borrow_and_update().clone()).unwrap_or_default();
                    self.send.send(&AgentToRelay::Monitors { monitors: list }).await?;
                }
                Some((request_id, result)) = done.recv() => {
                    running = false;
                    self.send.send(&AgentToRelay::Diagnostics { request_id, result }).await?;
                }
                _ = stop.changed() => {
                    self.connection.close(0u32.into(), b"agent stopping");
                    return Ok(None);
                }
                message = self.recv.recv::<RelayToAgent>() => match message?.inspect(|m| {
                    if !matches!(m, RelayToAgent::Ping { .. }) {
                        quiet_since = tokio::time::Instant::now();
                    }
                }) {
                    Some(RelayToAgent::Parked { ticket, key, idle_ms }) => {
                        let relay = self.connection.remote_address();
                        self.connection.close(0u32.into(), b"parked");
                        tracing::debug!(idle_ms, "parked: heartbeats instead of the connection");
                        let idle = Duration::from_millis(u64::from(idle_ms)).clamp(PARKED_IDLE_MIN, IDLE_TIMEOUT);
                        return Ok(Some(crate::park::Parking { relay, ticket, key, idle, local: None }));
                    }
                    Some(RelayToAgent::Ping { nonce }) => {
                        self.send.send(&AgentToRelay::Pong { nonce }).await?;
                    }
                    Some(RelayToAgent::Policy { json }) => {
                        if let Some(source) = diagnostics {
                            if let Err(e) = source.set_policy(&json) {
                                tracing::warn!("cannot apply the organisation's policy: {e}");
                            }
                        }
                    }
                    Some(RelayToAgent::PolicyUpdate { revision, json }) => {
                        // Confirmed only once it governs the next collection.
                        match diagnostics.map(|source| source.set_policy(&json)) {
                            Some(Ok(())) => {
                                tracing::info!(revision, "the organisation's policy changed; applied");
                                self.send.send(&AgentToRelay::PolicyApplied { revision }).await?;
                            }
                            Some(Err(e)) => tracing::warn!("cannot apply the organisation's new policy: {e}"),
                            None => {}
                        }
                    }
                    Some(RelayToAgent::SessionWithdrawn { session_id }) => {
                        if let Some(link) = sessions.as_deref() {
                            link.host.withdraw(session_id);
                        }
                    }
                    Some(message @ (RelayToAgent::CollectDiagnostics { .. } | RelayToAgent::CollectDiagnosticsFor { .. })) => {
                        let (request_id, throughput, technician) = match message {
                            RelayToAgent::CollectDiagnosticsFor { request_id, throughput, technician } => (request_id, throughput, Some(technician)),
                            RelayToAgent::CollectDiagnostics { request_id, throughput } => (request_id, throughput, None),
                            _ => continue,
                        };
                        let refusal = match (diagnostics, running) {
                            (None, _) => Some("this agent does not collect diagnostics".to_owned()),
                            (Some(_), true) => Some("a diagnostic run is already in progress on this device; try again in a few seconds".to_owned()),
                            (Some(source), false) => {
                                running = true;
                                let job = source.collect_for(throughput, technician);
                                let done_tx = done_tx.clone();
                                tokio::spawn(async move {
                                    let _ = done_tx.send((request_id, job.await)).await;
                                });
                                None
                            }
                        };
                        if let Some(reason) = refusal {
                            self.send.send(&AgentToRelay::Diagnostics { request_id, result: Err(reason) }).await?;
                        }
                    }
                    Some(message @ (RelayToAgent::SessionRequest(_) | RelayToAgent::CertifiedSessionRequest { .. })) => {
                    let (request, certificate) = match message {
                        RelayToAgent::CertifiedSessionRequest { request, certificate } => (request, Some(certificate)),
                        RelayToAgent::SessionRequest(request) => (request, None),
                        _ => continue,
                    };
                    match sessions.as_deref() {
                        Some(link) => link.host.start(request, certificate),
                        None => {
                            self.send.send(&AgentToRelay::SessionConsent {
                                session_id: request.session_id,
                                granted: None,
                                outcome: "unavailable: this agent does not run remote sessions".to_owned(),
                            }).await?;
                        }
                    }
                    }
                    Some(RelayToAgent::ConsentRecorded { session_id }) => {
                        if let Some(link) = sessions.as_deref() {
                            link.host.consent_recorded(session_id);
                        }
                    }
                    Some(RelayToAgent::HelpRequestStored { client_id, number }) => {
                        if let Some(state) = requests {
                            tracing::info!(client_id, number, "help request delivered");
                            if let Err(e) = crate::requests::delivered(state, &client_id, number) {
                                tracing::warn!("cannot record a delivered help request: {e}");
                            }
                        }
                    }
                    Some(RelayToAgent::HelpRequests(list)) => {
                        if let Some(state) = requests {
                            // The session helper shows what changed (to
                            // the local user who filed it, if one did).
                            let known = crate::requests::load(state);
                            if let Some(link) = sessions.as_deref() {
                                for (client_id, update) in crate::requests::changes(&known.relay, &list) {
                                    link.host.request_update(update, known.local_users.get(&client_id).cloned());
                                }
                            }
                            if let Err(e) = crate::requests::save_relay_view(state, list) {
                                tracing::warn!("cannot keep the help requests' state: {e}");
                            }
                        }
                    }
                    Some(RelayToAgent::TimelineStored { through_seq }) => {
                        if let Some(link) = timeline.as_deref() {
                            link.stored(through_seq);
                        }
                    }
                    Some(RelayToAgent::ReconnectAdvice { spread_ms }) => {
                        tracing::debug!(spread_ms, "the relay advised a reconnection window");
                        self.reconnect_advice.store(spread_ms, std::sync::atomic::Ordering::Relaxed);
                    }
                    Some(RelayToAgent::RelayList { relays }) => {
                        tracing::debug!(relays = relays.len(), "the relay sent the current relay list");
                        self.relay_list.send_replace(relays);
                    }
                    Some(RelayToAgent::Unknown { tag }) => {
                        tracing::debug!(tag, "ignoring a message from a newer relay");
                    }
                    Some(RelayToAgent::Refused(Nested(refusal))) => return Err(LinkError::Refused(refusal)),
                    Some(other) => return Err(LinkError::Unexpected(format!("{other:?}"))),
                    None => return Err(NetError::Truncated.into()),
                },
            }
        }
    }
}

/// File in the state directory that, when it holds an IP address, pins the
/// address the agent sends from (machines with several networks, tests);
/// re-read every 200 ms: changing it moves the relay connection there.
pub const SOURCE_ADDRESS_FILE: &str = "source-address";

/// `deskside-agent run`: stays attached, reconnecting forever, until `stop`
/// is set or the relay refuses the device for good.
pub async fn run(state: &StateDir, mut stop: watch::Receiver<bool>) -> Result<(), LinkError> {
    let enrollment = state.enrollment()?;
    let identity = state.identity()?;
    // The relay's name may not resolve yet (laptop just woke, no network):
    // keep trying instead of exiting.
    let mut backoff = Backoff::new(BACKOFF_INITIAL, BACKOFF_MAX);
    let addr = loop {
        match resolve(&enrollment.relay).await {
            Ok(addr) => break addr,
            Err(e) => {
                let delay = backoff.next_delay(rand::random::<f64>());
                tracing::warn!("{e}; retrying in {} ms", delay.as_millis());
                tokio::select! {
                    _ = stop.changed() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    };
    let endpoint = client_endpoint(addr)?;
    // A network switch (Wi-Fi to a hotspot) moves the relay connection and
    // the sessions inside it to a new socket at once (QUIC migration).
    let mut roamer = deskside_net::roam::Roamer::new(
        endpoint.clone(),
        addr,
        deskside_net::roam::Source::Pinned(state.root().join(SOURCE_ADDRESS_FILE)),
    );
    if let Err(e) = roamer.check() {
        tracing::debug!("cannot look at the route to the relay: {e}");
    }
    let roaming = tokio::spawn(roamer.run());
    let connected_on = std::cell::RefCell::new(None::<Option<String>>);
    let publish = |link: LinkState, last_error: Option<String>| {
        // The last time UDP to the relay worked is evidence for `check`
        // when the relay later cannot be reached: recorded when a
        // connection starts and when it ends, with the network it was
        // made on (so a laptop that moved since is not misled).
        if link == LinkState::Connected {
            let network = crate::diag::current_network();
            state.record_connected(crate::clock::unix_secs(), network.clone());
            *connected_on.borrow_mut() = Some(network);
        } else if let Some(network) = connected_on.borrow_mut().take() {
            state.record_connected(crate::clock::unix_secs(), network);
        }
        let status = Status {
            pid: std::process::id(),
            state: link,
            since: crate::clock::unix_secs(),
            last_error,
        };
        if let Err(e) = state.write_status(&status) {
            tracing::warn!("cannot write the status file: {e}");
        }
    };
    publish(LinkState::Connecting, None);
    let span =
        tracing::info_span!("link", device = %enrollment.device_id, relay = %enrollment.relay);
    let diagnostics: Arc<dyn DiagnosticsSource> = Arc::new(crate::diag::AgentDiagnostics {
        state: state.clone(),
        target: std::sync::Mutex::new(crate::diag::collect::Target {
            relay: enrollment.relay.clone(),
            fingerprint: enrollment.fingerprint,
            identity: identity.clone(),
        }),
    });
    let hub = Arc::new(crate::session::hub::HelperHub::with_requests(state.clone()));
    {
        let socket = crate::session::channel::address_for(state.root());
        match crate::session::channel::Listener::bind(&socket) {
            Ok(listener) => {
                tracing::info!(socket = %socket.display(), "waiting for the session helper");
                tokio::spawn(crate::session::hub::serve(listener, hub.clone()));
            }
            Err(e) => tracing::warn!(
                "remote sessions are unavailable: cannot listen on {}: {e}",
                socket.display()
            ),
        }
    }
    // Read once at start: only a new enrollment changes it.
    let trust = crate::org_trust::load_trust(state.root())?;
    let (host, outbox) = crate::session::host::SessionHost::new(identity.clone(), trust, hub);
    let mut sessions = SessionLink { host, outbox };
    let (mut timeline, monitor) = crate::timeline::spawn(
        crate::timeline::MonitorConfig {
            state: state.clone(),
            relay: enrollment.relay.clone(),
            relay_ip: Some(addr.ip()),
        },
        stop.clone(),
    );
    let mut choice = RelayChoice::new(enrollment.relays());
    let persist = |relays: &[RelayEndpoint]| {
        if let Err(e) = state.save_relays(relays) {
            tracing::warn!("cannot keep the relay list: {e}");
        }
    };
    let outcome = stay_attached_any(
        &endpoint,
        &mut choice,
        &identity,
        &mut stop,
        &publish,
        Services {
            diagnostics: Some(diagnostics),
            sessions: Some(&mut sessions),
            timeline: Some(&mut timeline),
            requests: Some(state.clone()),
            ignore_reconnect_advice: false,
            park_after: Some(park_after()),
        },
        &persist,
    )
    .instrument(span)
    .await;
    // The monitor ends with `stop`; when the relay refused the device for
    // good it is still running: end it here so no task outlives `run`.
    monitor.abort();
    let _ = monitor.await;
    roaming.abort();
    if let Err(error) = outcome {
        if let Some(kind) = error.revocation() {
            let revocation = crate::state::Revocation {
                at: crate::clock::unix_secs(),
                kind,
            };
            if let Err(e) = state.record_revocation(&revocation) {
                tracing::warn!("cannot record that the relay refused this device: {e}");
            }
        }
        publish(LinkState::Stopped, Some(error.to_string()));
        return Err(error);
    }
    publish(LinkState::Stopped, None);
    // Let the close reach the relay so the device shows offline at once.
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    Ok(())
}

/// What an attached agent serves besides presence.
#[derive(Default)]
pub struct Services<'a> {
    /// Answers diagnostic requests.
    pub diagnostics: Option<Arc<dyn DiagnosticsSource>>,
    /// Runs remote sessions.
    pub sessions: Option<&'a mut SessionLink>,
    /// Records and uploads the timeline (monitoring).
    pub timeline: Option<&'a mut crate::timeline::TimelineLink>,
    /// Sends the help requests of this state directory's outbox and keeps
    /// their state.
    pub requests: Option<StateDir>,
    /// Reconnect right after losing the relay, ignoring its advised window
    /// (the behaviour before reconnect spreading; benchmarks compare it).
    pub ignore_reconnect_advice: bool,
    /// Park after this long with nothing to do (`None`: stay attached).
    pub park_after: Option<Duration>,
}

impl std::fmt::Debug for Services<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("diagnostics", &self.diagnostics.is_some())
            .field("sessions", &self.sessions)
            .field("timeline", &self.timeline.is_some())
            .field("requests", &self.requests.is_some())
            .field("ignore_reconnect_advice", &self.ignore_reconnect_advice)
            .field("park_after", &self.park_after)
            .finish()
    }
}

/// Stays attached as `identity`, reconnecting with backoff, until `stop` is
/// set (`Ok`) or the relay refuses the device for good (`Err`). `publish` is
/// told every state change.
pub async fn stay_attached(
    endpoint: &quinn::Endpoint,
    relay: &str,
    fingerprint: deskside_protocol::Fingerprint,
    identity: &Identity,
    stop: &mut watch::Receiver<bool>,
    publish: &impl Fn(LinkState, Option<String>),
    services: Services<'_>,
) -> Result<(), LinkError> {
    let mut choice = RelayChoice::new(vec![RelayEndpoint {
        addr: relay.to_owned(),
        fingerprint,
    }]);
    stay_attached_any(
        endpoint,
        &mut choice,
        identity,
        stop,
        publish,
        services,
        &|_| {},
    )
    .await
}

/// Connects to the first of `attempts` (relay, start delay; see
/// [`RelayChoice::poll_attempts`]) to complete a QUIC handshake whose
/// certificate matches that relay's pinned fingerprint. An attempt starts
/// at its delay, or at once when every earlier one has failed; the others
/// are abandoned when one succeeds. Returns the relay, the connection and
/// the handshake time.
pub async fn connect_any(
    endpoint: &quinn::Endpoint,
    attempts: Vec<(RelayEndpoint, Duration)>,
    identity: &Identity,
) -> Result<(RelayEndpoint, deskside_net::Connected, Duration), LinkError> {
    let started = tokio::time::Instant::now();
    let mut pending = attempts.into_iter().peekable();
    // Owned here: dropping the set when one attempt wins aborts the others.
    let mut running = tokio::task::JoinSet::new();
    let mut errors: Vec<LinkError> = Vec::new();
    loop {
        while let Some((_, start)) = pending.peek() {
            if running.is_empty() || started + *start <= tokio::time::Instant::now() {
                if let Some((relay, _)) = pending.next() {
                    let endpoint = endpoint.clone();
                    let options = options(&relay.addr, relay.fingerprint, identity.clone());
                    running.spawn(async move {
                        let outcome = connect(&endpoint, &options).await;
                        (relay, outcome)
                    });
                }
            } else {
                break;
            }
        }
        let next_start = pending.peek().map(|(_, start)| started + *start);
        tokio::select! {
            joined = running.join_next() => match joined {
                Some(Ok((relay, Ok(connected)))) => {
                    return Ok((relay, connected, started.elapsed()));
                }
                Some(Ok((relay, Err(error)))) => {
                    tracing::debug!(relay = %relay.addr, "cannot reach this relay: {error}");
                    errors.push(error.into());
                }
                Some(Err(join)) => {
                    errors.push(LinkError::Unexpected(format!("connection attempt failed: {join}")));
                }
                None => {
                    if pending.peek().is_none() {
                        break;
                    }
                }
            },
            _ = tokio::time::sleep_until(next_start.unwrap_or(started)), if next_start.is_some() => {}
        }
    }
    // Every relay failed: report a failure retrying may cure before one it
    // cannot (a relay whose certificate changed while another may be up).
    let position = errors
        .iter()
        .position(|error| !error.is_permanent())
        .unwrap_or(0);
    if position < errors.len() {
        return Err(errors.swap_remove(position));
    }
    Err(LinkError::Unexpected(
        "the enrollment names no relay; enroll again with a new token".to_owned(),
    ))
}

/// How long an agent waits for the relay's answer to its `Attach` once the
/// connection and hello are done. A relay closes a connection that has not
/// authenticated 10 s after its first packet, and answers at once after
/// that, so a live relay always answers or closes first; without a limit,
/// a relay that keeps the connection alive but never answers (overloaded,
/// or a bug) would hold the agent there forever, never trying the others:
/// in the three-relay benchmark, agents of the killed relay waited this way
/// for minutes (README, benchmarks).
pub const ATTACH_TIMEOUT: Duration = Duration::from_secs(15);

/// [`attach_on`], given up after `deadline` (the connection is closed, and
/// the error is one retrying may cure).
pub async fn attach_within(
    connected: deskside_net::Connected,
    relay: &RelayEndpoint,
    deadline: Duration,
) -> Result<Attached, LinkError> {
    let connection = connected.connection.clone();
    match tokio::time::timeout(deadline, attach_on(connected, device_info())).await {
        Ok(attached) => attached,
        Err(_) => {
            tracing::warn!(
                relay = %relay.addr,
                "the relay did not answer the attach request within {} s; closing the connection and trying again",
                deadline.as_secs()
            );
            connection.close(0u32.into(), b"no answer to attach");
            Err(NetError::Timeout.into())
        }
    }
}

/// Stays parked (see [`crate::park`]) with `parking` until the relay
/// calls, asks for a refresh or goes silent, the agent stops, or there is
/// local work for a connection: a help request typed meanwhile, or
/// monitoring samples due for upload. Monitoring samples the heartbeats
/// meanwhile; a refresh comes at a delay drawn within `spread`, the
/// reconnect window.
async fn park(
    mut parking: crate::park::Parking,
    endpoint: &quinn::Endpoint,
    timeline: Option<&crate::timeline::TimelineLink>,
    requests: Option<&StateDir>,
    spread: Duration,
    stop: &mut watch::Receiver<bool>,
) -> crate::park::Unparked {
    // Heartbeats leave from the endpoint's address when it is bound to one
    // (pinned).
    parking.local = endpoint
        .local_addr()
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified());
    let path = Arc::new(crate::park::ParkPath::new());
    let _monitored = timeline.map(|t| t.parked(Arc::clone(&path)));
    let help_typed = async {
        match requests {
            Some(state) => loop {
                tokio::time::sleep(REQUEST_OUTBOX_POLL).await;
                if !crate::requests::queued(state).is_empty() {
                    break;
                }
            },
            None => std::future::pending().await,
        }
    };
    let samples_due = async {
        match timeline {
            Some(t) => t.upload_due().await,
            None => std::future::pending().await,
        }
    };
    let work = async {
        tokio::select! {
            () = help_typed => {}
            () = samples_due => {}
        }
    };
    // Three heartbeats within the relay's idle timeout.
    let interval = KEEP_ALIVE.min(parking.idle / 3);
    let refresh_after = deskside_protocol::reconnect::first_delay(spread, rand::random::<f64>());
    crate::park::stay_parked(
        &parking,
        &path,
        interval,
        parking.idle,
        refresh_after,
        stop,
        work,
    )
    .await
}

/// [`stay_attached`] with several relays to choose from: attaches to the
/// first that answers in `choice`'s order, fails over to another when the
/// connection is lost, and keeps the list the relays send (`persist` is
/// told each new one, so the next start knows it).
pub async fn stay_attached_any(
    endpoint: &quinn::Endpoint,
    choice: &mut RelayChoice,
    identity: &Identity,
    stop: &mut watch::Receiver<bool>,
    publish: &impl Fn(LinkState, Option<String>),
    services: Services<'_>,
    persist: &(dyn Fn(&[RelayEndpoint]) + Sync),
) -> Result<(), LinkError> {
    let Services {
        diagnostics,
        mut sessions,
        mut timeline,
        requests,
        ignore_reconnect_advice,
        park_after,
    } = services;
    // After a lost connection: a random delay within the window the relay
    // advised (a restarted relay's fleet comes back spread, not at once);
    // after a failed attempt: the backoff.
    let mut reconnect = Reconnect::new(
        Backoff::new(BACKOFF_INITIAL, BACKOFF_MAX),
        !ignore_reconnect_advice,
    );
    loop {
        let attempts = choice.poll_attempts();
        let attempt = async {
            let (relay, connected, handshake) = connect_any(endpoint, attempts, identity).await?;
            let attached = attach_within(connected, &relay, ATTACH_TIMEOUT).await?;
            Ok::<_, LinkError>((relay, attached, handshake))
        };
        let outcome = tokio::select! {
            _ = stop.changed() => return Ok(()),
            outcome = attempt => outcome,
        };
        let (error, was_attached) = match outcome {
            Ok((relay, attached, handshake)) => {
                tracing::info!(
                    clock_offset_ms = attached.clock_offset_ms,
                    relay = %relay.addr,
                    handshake_ms = handshake.as_millis() as u64,
                    "connected to the relay"
                );
                choice.handle_attached(&relay.addr, handshake);
                if let Some(source) = &diagnostics {
                    source.attached_to(&relay);
                }
                publish(LinkState::Connected, None);
                reconnect.handle_attached();
                let advice = Arc::clone(&attached.reconnect_advice);
                let connection = attached.connection.clone();
                let mut lists = attached.relay_list.subscribe();
                let served = {
                    let serve = attached.serve(
                        stop,
                        diagnostics.as_ref(),
                        sessions.as_deref_mut(),
                        timeline.as_deref_mut(),
                        requests.as_ref(),
                        park_after,
                    );
                    tokio::pin!(serve);
                    loop {
                        tokio::select! {
                            served = &mut serve => break served,
                            Ok(()) = lists.changed() => {
                                let relays = lists.borrow_and_update().clone();
                                persist(&relays);
                                choice.handle_list(relays);
                            }
                        }
                    }
                };
                choice.handle_attached(&relay.addr, connection.rtt());
                match advice.load(std::sync::atomic::Ordering::Relaxed) {
                    0 => {}
                    spread_ms => reconnect.handle_advice(spread_ms),
                }
                match served {
                    Ok(None) => return Ok(()),
                    Ok(Some(parking)) => {
                        let unparked = park(
                            parking,
                            endpoint,
                            timeline.as_deref(),
                            requests.as_ref(),
                            reconnect.spread(),
                            stop,
                        )
                        .await;
                        tracing::debug!(?unparked, "no longer parked");
                        match unparked {
                            crate::park::Unparked::Stopped => return Ok(()),
                            crate::park::Unparked::Lost => {
                                choice.handle_lost(&relay.addr);
                                (LinkError::Silent, true)
                            }
                            // Spread like a lost connection: after a
                            // restart the whole parked fleet hears this
                            // within one heartbeat.
                            crate::park::Unparked::Reattach => (LinkError::Unparked, true),
                            // Called, or work to send: attach again at once.
                            crate::park::Unparked::Called
                            | crate::park::Unparked::Refresh
                            | crate::park::Unparked::Work => continue,
                        }
                    }
                    Err(e) => {
                        // Most likely dead: the next attempt tries the
                        // other relays first.
                        choice.handle_lost(&relay.addr);
                        (e, true)
                    }
                }
            }
            Err(e) => (e, false),
        };
        if error.is_permanent() {
            return Err(error);
        }
        let delay = if was_attached {
            let in_session = sessions
                .as_deref()
                .is_some_and(|link| link.host.has_sessions());
            reconnect.poll_after_loss(rand::random::<f64>(), in_session)
        } else {
            reconnect.poll_after_failure(rand::random::<f64>())
        };
        tracing::warn!(
            "relay link down: {error}; retrying in {} ms",
            delay.as_millis()
        );
        publish(LinkState::Connecting, Some(error.to_string()));
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
