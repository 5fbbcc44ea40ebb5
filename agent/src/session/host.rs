//! The agent service's side of a remote session.
//!
//! The service owns the enrolled key, so it terminates the end-to-end
//! connection; the helper in the employee's graphical session asks for
//! consent, captures and injects. Order of events (see `ARCHITECTURE.md`):
//! handshake → verification code → consent dialog → consent sent to the
//! relay → relay confirms it is audited → only then streams open and the
//! helper starts capturing. View-only is enforced here: input events of a
//! session without control are dropped before they reach the helper.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deskside_net::framed::{FramedRecv, FramedSend};
use deskside_net::orgkey::{check_session_certificate, OrgKeyError};
use deskside_net::tunnel::{
    accept_session, Carrier, SessionConfig, SessionConn, TunnelSocket, DEFAULT_QUEUE_PACKETS,
};
use deskside_net::Identity;
use deskside_protocol::agent::{AgentToRelay, SessionRequest};
use deskside_protocol::helper::{ConsentAnswer, ConsentPrompt, HelperToService, ServiceToHelper};
use deskside_protocol::message::Nested;
use deskside_protocol::session::{
    close, AgentToConsole, Capabilities, ConsoleToAgent, EndedBy, InputEvent, VideoFrame,
    MAX_CONTROL_FRAME_LEN, MAX_VIDEO_FRAME_LEN,
};
use deskside_protocol::SessionId;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument as _;

use super::delivery::Delivery;
use super::hub::{HelperHub, HelperLine};
use crate::org_trust::Trust;

/// How long the employee has to answer.
pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a refused, uncertified console has to complete the handshake
/// that tells it why (a substituted key never completes it).
const UNCERTIFIED_TELL_TIMEOUT: Duration = Duration::from_secs(5);
/// Between handing an uncertified console its close and recording the
/// refusal (which ends the relay's route): time for the carrier to forward
/// the close.
const CLOSE_FORWARD_MARGIN: Duration = Duration::from_millis(20);
/// How long the relay has to confirm the consent is audited.
const AUDIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs the device's remote sessions.
#[derive(Debug)]
pub struct SessionHost {
    carrier: Carrier,
    identity: Identity,
    /// The organisation key technicians' session keys must be certified
    /// by (`None` when the device enrolled without one: trust the relay),
    /// and this device's key binding.
    trust: Trust,
    /// Sessions whose console presented a certificate: it is new enough to
    /// read the device's binding, shown right after the handshake.
    show_binding: Mutex<std::collections::HashSet<SessionId>>,
    hub: Arc<HelperHub>,
    to_relay: mpsc::UnboundedSender<AgentToRelay>,
    recorded: Mutex<HashMap<SessionId, oneshot::Sender<()>>>,
    /// Sessions waiting for the employee's answer, told when the
    /// technician withdraws the request.
    withdrawn: Mutex<HashMap<SessionId, oneshot::Sender<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SessionHost {
    /// A host using `identity` (the enrolled key); messages for the relay
    /// come out of the returned receiver, to be sent on the current relay
    /// connection (they wait across reconnects).
    pub fn new(
        identity: Identity,
        trust: Trust,
        hub: Arc<HelperHub>,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<AgentToRelay>) {
        let (to_relay, from_host) = mpsc::unbounded_channel();
        let host = Arc::new(Self {
            carrier: Carrier::new(),
            identity,
            trust,
            show_binding: Mutex::default(),
            hub,
            to_relay,
            recorded: Mutex::default(),
            withdrawn: Mutex::default(),
        });
        (host, from_host)
    }

    /// Whether a session is carried right now (its end-to-end connection
    /// outlives a relay reconnect only if that comes back soon).
    pub fn has_sessions(&self) -> bool {
        self.carrier.carried() > 0
    }

    /// Session packets travel on this relay connection from now on (called
    /// on every attach, so sessions survive a reconnect).
    pub fn attach(&self, connection: quinn::Connection) {
        self.carrier.attach(connection);
    }

    /// Path probes for the timeline, on the relay connection the session
    /// packets use (the carrier reads its datagrams).
    pub fn prober(&self) -> deskside_net::tunnel::Prober {
        self.carrier.prober()
    }

    /// The relay confirmed the consent of `session_id` is audited.
    pub fn consent_recorded(&self, session_id: SessionId) {
        if let Some(tx) = lock(&self.recorded).remove(&session_id) {
            let _ = tx.send(());
        }
    }

    /// Tells the session helper one of this device's help requests changed
    /// (see [`HelperHub::request_update`]).
    pub fn request_update(
        &self,
        update: deskside_protocol::helper::RequestUpdate,
        filed_by: Option<String>,
    ) {
        self.hub.request_update(update, filed_by);
    }

    /// The session helper's monitors, as they change (empty: unknown).
    pub fn monitors(
        &self,
    ) -> tokio::sync::watch::Receiver<Vec<deskside_protocol::session::Monitor>> {
        self.hub.monitors()
    }

    /// The relay ended `session_id`: before the employee answered (the
    /// technician withdrew the request) its consent dialog closes; once
    /// running (an administrator ended it, or the technician's access
    /// ended) the session ends at once.
    pub fn withdraw(&self, session_id: SessionId) {
        if let Some(tx) = lock(&self.withdrawn).remove(&session_id) {
            let _ = tx.send(());
        }
    }

    /// Starts a session the relay forwarded, with the certificate of the
    /// technician's session key when the console presented one. A device
    /// that trusts an organisation key refuses, before anyone is asked, a
    /// session key that key did not certify.
    pub fn start(self: &Arc<Self>, request: SessionRequest, certificate: Option<Vec<u8>>) {
        let span = tracing::info_span!(
            "session",
            id = %request.session_id,
            technician = %request.technician,
            asked = request.capabilities.label()
        );
        let host = self.clone();
        tokio::spawn(
            async move {
                let session_id = request.session_id;
                if certificate.is_some() {
                    lock(&host.show_binding).insert(session_id);
                }
                if let Some(trusted) = &host.trust.org_key {
                    match check_session_certificate(
                        trusted,
                        certificate.as_deref(),
                        request.technician_key,
                    ) {
                        Ok(checked) => tracing::info!(
                            certified_for = %checked.claim.technician,
                            "the session key is certified by the organisation key"
                        ),
                        Err(refusal) => {
                            host.refuse_uncertified(&request, &refusal).await;
                            return;
                        }
                    }
                }
                let (withdrawn_tx, withdrawn) = oneshot::channel();
                lock(&host.withdrawn).insert(session_id, withdrawn_tx);
                let outcome = host.run(request, withdrawn).await;
                lock(&host.withdrawn).remove(&session_id);
                match outcome {
                    Ok(Some(by)) => {
                        tracing::info!(by = by.as_str(), "session ended");
                        let _ = host
                            .to_relay
                            .send(AgentToRelay::SessionEnded { session_id, by });
                    }
                    Ok(None) => tracing::info!("session did not start"),
                    Err(reason) => tracing::warn!("session failed: {reason}"),
                }
            }
            .instrument(span),
        );
    }

    /// Shows a console that presented a certificate (so it reads it) this
    /// device's key binding, on the first stream of the session: empty when
    /// the device has none. The console checks it against the key this
    /// handshake proved before it shows a code.
    async fn show_binding(&self, conn: &SessionConn, session_id: SessionId) {
        if !lock(&self.show_binding).remove(&session_id) {
            return;
        }
        let binding = self.trust.binding.clone().unwrap_or_default();
        let sent = async {
            let mut stream = conn.connection.open_uni().await?;
            stream.write_all(&binding).await?;
            stream.finish()?;
            // Until the console has it: a refusal right after (no one to
            // ask) would otherwise close the connection over it.
            stream.stopped().await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        };
        let sent = tokio::time::timeout(Duration::from_secs(2), sent);
        if let Ok(Err(e)) = sent.await {
            tracing::warn!("cannot show the device key binding: {e}");
        }
    }

    /// Refuses a session whose key the organisation key does not certify,
    /// before anyone is asked. The console learns why through the
    /// end-to-end connection when its key is the one the relay announced
    /// (a technician the relay let in); a console whose key the relay
    /// replaced cannot complete that handshake and fails on it instead. The
    /// relay audits the outcome either way.
    async fn refuse_uncertified(&self, request: &SessionRequest, refusal: &OrgKeyError) {
        let id = request.session_id;
        lock(&self.show_binding).remove(&id);
        let reason = refusal.to_string();
        tracing::warn!(key = %request.technician_key, "session refused: {reason}");
        let outcome = format!("uncertified: {}", refusal.audit_text());
        // The relay forgets the route once it records the refusal, so the
        // console is told first (a console whose key the relay replaced
        // fails this handshake on the device's real key and says so); a
        // console leaving before the refusal is recorded would make the
        // relay record a withdrawal instead, so it is recorded as soon as
        // the handshake ends, while the close is still on its way.
        let (socket, port) = TunnelSocket::pair_ends(DEFAULT_QUEUE_PACKETS);
        let stats = port.stats.clone();
        let Ok(_carried) = self.carrier.carry(id, port) else {
            self.send_consent(id, None, outcome);
            return;
        };
        let config = SessionConfig {
            handshake_timeout: UNCERTIFIED_TELL_TIMEOUT,
            ..SessionConfig::default()
        };
        match accept_session(socket, &self.identity, request.technician_key, &config).await {
            Ok(conn) => {
                // The close must leave before the refusal is recorded (the
                // relay then drops the route), and the refusal must be
                // recorded before the console, told, goes away.
                let before = stats.sent();
                conn.connection
                    .close(close::UNCERTIFIED.into(), reason.as_bytes());
                let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
                while stats.sent() == before && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                // The carrier's pump forwards it as soon as it runs.
                tokio::time::sleep(CLOSE_FORWARD_MARGIN).await;
                self.send_consent(id, None, outcome);
                conn.close(close::UNCERTIFIED, reason.as_bytes()).await;
            }
            Err(_) => self.send_consent(id, None, outcome),
        }
    }

    fn send_consent(&self, session_id: SessionId, granted: Option<Capabilities>, outcome: String) {
        let _ = self.to_relay.send(AgentToRelay::SessionConsent {
            session_id,
            granted,
            outcome,
        });
    }

    /// `Ok(Some(by))` once a started session ends, `Ok(None)` when it never
    /// started (refused, unavailable).
    async fn run(
        &self,
        request: SessionRequest,
        mut withdrawn: oneshot::Receiver<()>,
    ) -> Result<Option<EndedBy>, String> {
        let id = request.session_id;
        let (socket, port) = TunnelSocket::pair_ends(DEFAULT_QUEUE_PACKETS);
        let _carried = self.carrier.carry(id, port).map_err(|e| e.to_string())?;
        let conn = match accept_session(
            socket,
            &self.identity,
            request.technician_key,
            &SessionConfig::default(),
        )
        .await
        {
            Ok(conn) => conn,
            Err(e) => {
                lock(&self.show_binding).remove(&id);
                self.send_consent(id, None, format!("handshake_failed: {e}"));
                return Err(format!("end-to-end handshake failed: {e}"));
            }
        };
        self.show_binding(&conn, id).await;
        let code = conn.verification_code(id).map_err(|e| e.to_string())?;
        tracing::info!(code = %code, "end-to-end connection up; asking the employee");
        let mut line = match self.hub.open(id) {
            Ok(line) => line,
            Err(reason) => {
                // Close first: the relay forgets the route once it records
                // the answer, and the console must still get the close.
                conn.close(close::UNAVAILABLE, reason.as_bytes()).await;
                self.send_consent(id, None, format!("unavailable: {reason}"));
                return Ok(None);
            }
        };
        let answer = match ask(&mut line, &conn, &request, &code, &mut withdrawn).await {
            Asked::Answer(answer) => answer,
            Asked::Withdrawn { by_relay } => {
                tracing::info!("the technician withdrew the request; closing the consent dialog");
                let _ = line
                    .tx
                    .send(ServiceToHelper::Withdrawn { session_id: id })
                    .await;
                // Free the device's session slot before the close, which
                // waits up to 2 s for the connection to drain.
                drop(line);
                conn.close(close::REFUSED, b"the request was withdrawn")
                    .await;
                if !by_relay {
                    // The relay may not know yet (the technician's end-to-end
                    // connection closed first): it records the withdrawal.
                    self.send_consent(id, None, WITHDRAWN_OUTCOME.to_owned());
                }
                return Ok(None);
            }
        };
        let granted = (answer == ConsentAnswer::Accepted).then_some(request.capabilities);
        let Some(granted) = granted else {
            let reason = match answer {
                ConsentAnswer::TimedOut => "the employee did not answer in time",
                ConsentAnswer::Failed => "the consent dialog could not be shown",
                _ => "the employee refused the session",
            };
            // The device is free for the next request at once: the close
            // below waits up to 2 s for the connection to drain, and a
            // request in that time was refused as "another remote session
            // is already running".
            drop(line);
            // Close first: the relay forgets the route once it records the
            // refusal, and the console must still get the close.
            conn.close(close::REFUSED, reason.as_bytes()).await;
            self.send_consent(id, None, answer.as_str().to_owned());
            return Ok(None);
        };
        let (recorded_tx, recorded_rx) = oneshot::channel();
        lock(&self.recorded).insert(id, recorded_tx);
        self.send_consent(id, Some(granted), answer.as_str().to_owned());
        if tokio::time::timeout(AUDIT_TIMEOUT, recorded_rx)
            .await
            .is_err()
        {
            lock(&self.recorded).remove(&id);
            let _ = line
                .tx
                .send(ServiceToHelper::End {
                    session_id: id,
                    by: EndedBy::ConnectionLost,
                })
                .await;
            conn.close(
                close::NOT_AUDITED,
                b"the relay did not confirm the consent was recorded",
            )
            .await;
            return Err("the relay did not confirm the consent was audited".to_owned());
        }
        tracing::info!(
            granted = granted.label(),
            "consent audited; session starting"
        );
        let by = Running::new(
            conn.connection.clone(),
            line,
            id,
            granted,
            request.grant_secs,
        )
        .run(withdrawn)
        .await;
        conn.close(close::ENDED, by.as_str().as_bytes()).await;
        Ok(Some(by))
    }
}

/// The consent outcome an agent reports when the technician's end of the
/// session closed before the employee answered; the relay records it as
/// `session.withdrawn`.
pub const WITHDRAWN_OUTCOME: &str = "withdrawn";

/// How the consent question ended.
enum Asked {
    /// The employee (or the dialog's timeout) answered.
    Answer(ConsentAnswer),
    /// The technician withdrew the request first: told by the relay, or
    /// seen as their end-to-end connection closing.
    Withdrawn {
        /// Whether the relay said so (and has recorded it).
        by_relay: bool,
    },
}

/// Shows the consent dialog through the helper; the technician giving up
/// (the relay says so, or the connection closes) withdraws the request.
async fn ask(
    line: &mut HelperLine,
    conn: &SessionConn,
    request: &SessionRequest,
    code: &str,
    withdrawn: &mut oneshot::Receiver<()>,
) -> Asked {
    let prompt = ConsentPrompt {
        session_id: request.session_id,
        technician: request.technician.clone(),
        organisation: request.organisation.clone(),
        capabilities: request.capabilities,
        reason: request.reason.clone(),
        verification_code: code.to_owned(),
        timeout_secs: CONSENT_TIMEOUT.as_secs(),
    };
    if line
        .tx
        .send(ServiceToHelper::Consent(prompt))
        .await
        .is_err()
    {
        return Asked::Answer(ConsentAnswer::Failed);
    }
    let wait = async {
        loop {
            match line.rx.recv().await {
                Some(HelperToService::Consent { answer, .. }) => return answer,
                Some(other) => tracing::debug!(?other, "ignored before consent"),
                None => return ConsentAnswer::Failed,
            }
        }
    };
    // The dialog times out by itself; this bound only guards a stuck helper.
    tokio::select! {
        answer = tokio::time::timeout(CONSENT_TIMEOUT + Duration::from_secs(15), wait) => {
            Asked::Answer(answer.unwrap_or(ConsentAnswer::TimedOut))
        }
        Ok(()) = &mut *withdrawn => Asked::Withdrawn { by_relay: true },
        _ = conn.connection.closed() => Asked::Withdrawn { by_relay: false },
    }
}

/// A session after consent.
struct Running {
    conn: quinn::Connection,
    line: HelperLine,
    id: SessionId,
    granted: Capabilities,
    grant: Duration,
}

impl Running {
    fn new(
        conn: quinn::Connection,
        line: HelperLine,
        id: SessionId,
        granted: Capabilities,
        grant_secs: u64,
    ) -> Self {
        Self {
            conn,
            line,
            id,
            granted,
            grant: Duration::from_secs(grant_secs.max(1)),
        }
    }

    /// Runs the session until someone ends it. `ended_by_relay` fires when
    /// the relay ended the session (an administrator, or the technician's
    /// access was revoked or expired): the relay forwards nothing more, so
    /// the session ends here at once, as if the technician had ended it.
    async fn run(mut self, ended_by_relay: oneshot::Receiver<()>) -> EndedBy {
        // `None` once the sender is gone: a finished oneshot must not be
        // polled again.
        let mut ended_by_relay = Some(ended_by_relay);
        let (control_send, control_recv) = match self.conn.open_bi().await {
            Ok(streams) => streams,
            Err(_) => return EndedBy::ConnectionLost,
        };
        let mut control = FramedSend::new(control_send, MAX_CONTROL_FRAME_LEN);
        let mut control_in = FramedRecv::new(control_recv, MAX_CONTROL_FRAME_LEN);
        let video = match self.conn.open_uni().await {
            Ok(stream) => FramedSend::new(stream, MAX_VIDEO_FRAME_LEN),
            Err(_) => return EndedBy::ConnectionLost,
        };
        let id = self.id;
        let helper = self.line.tx.clone();
        if helper
            .send(ServiceToHelper::Start {
                session_id: id,
                granted: self.granted,
                expires_in_secs: self.grant.as_secs(),
            })
            .await
            .is_err()
        {
            return EndedBy::HelperGone;
        }
        // Only now: the writer's first credit must reach the helper after
        // `Start`, or the helper, with no session yet, ignores it and never
        // sends a frame.
        let (frames_tx, frames_rx) =
            mpsc::channel::<VideoFrame>(super::pace::FRAMES_IN_FLIGHT as usize);
        let credit = self.line.tx.clone();
        // What the console says it has read, for the writer's credits
        // (latest value wins: a later acknowledgement covers the earlier).
        let (acks_tx, acks_rx) = watch::channel(Acks::default());
        tokio::spawn(write_video(
            VideoWriter {
                video,
                frames: frames_rx,
                credit,
                acks: acks_rx,
            },
            id,
            self.conn.clone(),
        ));
        let (input_tx, mut input_rx) = mpsc::channel::<InputEvent>(256);
        tokio::spawn(read_input(self.conn.clone(), input_tx));
        let deadline = tokio::time::sleep(self.grant);
        tokio::pin!(deadline);
        let mut dropped_input = 0u64;
        let by = loop {
            tokio::select! {
                message = self.line.rx.recv() => match message {
                    Some(HelperToService::Video { frame, .. }) => {
                        // The writer holds at most FRAMES_IN_FLIGHT frames;
                        // the helper waits for credit (given when the
                        // console has read a frame, `delivery.rs`), so this
                        // never queues stale ones.
                        if frames_tx.try_send(frame).is_err() {
                            tracing::debug!("video writer busy; frame dropped");
                        }
                    }
                    Some(HelperToService::ToConsole { message: Nested(message), .. }) => {
                        let ended = match &message {
                            AgentToConsole::Granted(caps) => {
                                // Only ever a downgrade: the helper cannot
                                // grant more than the employee accepted.
                                self.granted.control &= caps.control;
                                None
                            }
                            AgentToConsole::Ended { by } => Some(*by),
                            _ => None,
                        };
                        if let Some(by) = ended {
                            break by;
                        }
                        if control.send(&message).await.is_err() {
                            break EndedBy::ConnectionLost;
                        }
                    }
                    Some(other) => tracing::debug!(?other, "ignored during the session"),
                    None => break EndedBy::HelperGone,
                },
                message = control_in.recv::<ConsoleToAgent>() => match message {
                    Ok(Some(ConsoleToAgent::End)) => break EndedBy::Technician,
                    Ok(Some(ConsoleToAgent::Unknown { tag })) => {
                        tracing::debug!(tag, "ignoring a message from a newer console");
                    }
                    // The video writer's business, not the helper's.
                    Ok(Some(ConsoleToAgent::AcknowledgesFrames)) => {
                        acks_tx.send_modify(|acks| acks.announced = true);
                    }
                    Ok(Some(ConsoleToAgent::FrameReceived { seq })) => {
                        acks_tx.send_modify(|acks| {
                            acks.through = acks.through.max(Some(seq));
                        });
                    }
                    Ok(Some(message)) => {
                        if matches!(message, ConsoleToAgent::DropControl) {
                            self.granted.control = false;
                        }
                        if helper.send(ServiceToHelper::FromConsole { session_id: id, message: Nested(message) }).await.is_err() {
                            break EndedBy::HelperGone;
                        }
                    }
                    Ok(None) | Err(_) => break EndedBy::ConnectionLost,
                },
                event = input_rx.recv() => match event {
                    Some(event) if self.granted.control => {
                        let forwarded = helper
                            .send(ServiceToHelper::Input { session_id: id, event: Nested(event) })
                            .await;
                        match forwarded {
                            Ok(()) => {}
                            Err(_) => break EndedBy::HelperGone,
                        }
                    }
                    Some(_) => {
                        dropped_input += 1;
                        if dropped_input == 1 {
                            tracing::info!("dropping input: this session is view-only");
                        }
                    }
                    None => {}
                },
                _ = &mut deadline => break EndedBy::Expired,
                _ = self.conn.closed() => break EndedBy::ConnectionLost,
                ended = async {
                    match ended_by_relay.as_mut() {
                        Some(receiver) => receiver.await,
                        None => std::future::pending().await,
                    }
                } => match ended {
                    Ok(()) => {
                        tracing::info!("the relay ended the session (an administrator, or the technician's access ended)");
                        break EndedBy::Technician;
                    }
                    Err(_) => ended_by_relay = None,
                },
            }
        };
        if dropped_input > 0 {
            tracing::info!(dropped_input, "input events dropped (view-only)");
        }
        let _ = helper
            .send(ServiceToHelper::End { session_id: id, by })
            .await;
        let _ = control.send(&AgentToConsole::Ended { by }).await;
        control.finish();
        // Let the console read who ended it before the connection closes.
        let _ = tokio::time::timeout(Duration::from_secs(1), control.stream().stopped()).await;
        by
    }
}

/// What the console has said about the frames it read.
#[derive(Clone, Copy, Debug, Default)]
struct Acks {
    /// It acknowledges frames ([`ConsoleToAgent::AcknowledgesFrames`]).
    announced: bool,
    /// The latest frame it has read ([`ConsoleToAgent::FrameReceived`]).
    through: Option<u64>,
}

/// The video writer's ends: the stream, the helper's frames, the credits
/// back to the helper and the console's acknowledgements.
struct VideoWriter {
    video: FramedSend,
    frames: mpsc::Receiver<VideoFrame>,
    credit: mpsc::Sender<ServiceToHelper>,
    acks: watch::Receiver<Acks>,
}

/// Writes the helper's frames into the video stream and gives the helper a
/// frame credit for each frame the console has read (`delivery.rs`), so
/// at most `pace::FRAMES_IN_FLIGHT` frames are ever on their way.
async fn write_video(writer: VideoWriter, session_id: SessionId, conn: quinn::Connection) {
    let VideoWriter {
        mut video,
        mut frames,
        credit,
        mut acks,
    } = writer;
    let credit_now = || ServiceToHelper::FrameCredit {
        session_id,
        rtt_ms: u32::try_from(conn.rtt().as_millis()).unwrap_or(u32::MAX),
    };
    // The helper may send its first frames at once: one credit per frame
    // slot (`pace::FRAMES_IN_FLIGHT`), then one for each frame the console
    // has read, so one frame's way to the console never stalls the capture
    // of the next. An older helper counts only one.
    for _ in 0..super::pace::FRAMES_IN_FLIGHT {
        let _ = credit.send(credit_now()).await;
    }
    let mut delivery = Delivery::new(std::time::Instant::now());
    loop {
        let fallback = delivery.poll_timeout();
        let credits = tokio::select! {
            frame = frames.recv() => {
                let Some(frame) = frame else { break };
                let seq = frame.seq;
                if let Err(e) = video.send_value(&frame).await {
                    tracing::debug!("video stream closed: {e}");
                    break;
                }
                delivery.handle_written(seq)
            }
            changed = acks.changed() => {
                if changed.is_err() {
                    break;
                }
                let Acks { announced, through } = *acks.borrow_and_update();
                if announced {
                    delivery.handle_announced();
                }
                through.map_or(0, |seq| delivery.handle_received(seq))
            }
            () = sleep_until_std(fallback), if fallback.is_some() => {
                delivery.handle_timeout(std::time::Instant::now())
            }
        };
        for _ in 0..credits {
            if credit.send(credit_now()).await.is_err() {
                return;
            }
        }
    }
}

/// Sleeps until `at` (forever when `None`).
async fn sleep_until_std(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn read_input(conn: quinn::Connection, events: mpsc::Sender<InputEvent>) {
    let Ok(stream) = conn.accept_uni().await else {
        return;
    };
    let mut input = FramedRecv::new(stream, MAX_CONTROL_FRAME_LEN);
    while let Ok(Some(event)) = input.recv::<InputEvent>().await {
        if events.send(event).await.is_err() {
            break;
        }
    }
}
