//! [`Carrier`]: moves the packets of any number of session tunnels over
//! whichever outer (relay) connection is current, and survives that
//! connection being replaced.
//!
//! The carrier holds each session's [`TunnelPort`] for as long as the session
//! lives. Outer connections come and go with [`Carrier::attach`]; while none
//! is attached, outgoing packets are dropped (the inner QUIC connection
//! retransmits once a new one is attached), so the inner connection needs no
//! new handshake after a relay reconnect shorter than its idle timeout. It
//! never decrypts anything and never waits on a full queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use deskside_diag::measure::{interarrival_jitter, ProbeTiming};
use deskside_protocol::SessionId;
use thiserror::Error;
use tokio::sync::mpsc;

use super::link::{
    packet_link, AbortOnDrop, LinkError, PacketReceiver, PacketSender, SessionPacket,
    PROBE_SESSION_ID,
};
use super::socket::{deliver, TunnelPort, TunnelStats};

/// Errors of the carrier.
#[derive(Debug, Error)]
pub enum CarrierError {
    /// A session with this id is already carried.
    #[error("session {0:#x} is already carried on this connection; end the old session first")]
    DuplicateSession(SessionId),
}

/// Counters of a carrier.
#[derive(Debug, Default)]
pub struct CarrierStats {
    dropped_detached: AtomicU64,
    unknown_session: AtomicU64,
    attachments: AtomicU64,
}

impl CarrierStats {
    /// Outgoing packets dropped because no outer connection was attached.
    pub fn dropped_detached(&self) -> u64 {
        self.dropped_detached.load(Ordering::Relaxed)
    }
    /// Incoming packets for a session this carrier did not carry (yet): the
    /// last few are kept briefly and delivered if it is carried soon.
    pub fn unknown_session(&self) -> u64 {
        self.unknown_session.load(Ordering::Relaxed)
    }
    /// How many outer connections have been attached so far.
    pub fn attachments(&self) -> u64 {
        self.attachments.load(Ordering::Relaxed)
    }
}

struct Incoming {
    queue: mpsc::Sender<Bytes>,
    stats: Arc<TunnelStats>,
}

/// Packets for sessions not carried yet, kept at most this many (oldest
/// dropped first). The relay tells the agent of a session on its control
/// stream and forwards the console's first handshake packets as datagrams;
/// the two race, and without this the first Initial was often dropped and
/// the handshake waited out QUIC's first retransmission timeout (~1 s).
const EARLY_PACKETS: usize = 16;
/// How long an early packet is kept for its session to be carried.
const EARLY_PACKET_TTL: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Default)]
struct Shared {
    // Not Debug: the queues say nothing useful; `Carrier`'s Debug shows stats.
    link: RwLock<Option<PacketSender>>,
    sessions: Mutex<HashMap<SessionId, Incoming>>,
    /// Packets that arrived before their session was carried (bounded,
    /// [`EARLY_PACKETS`]). Locked only while `sessions` is held.
    early: Mutex<std::collections::VecDeque<(SessionId, tokio::time::Instant, Bytes)>>,
    stats: CarrierStats,
    /// Where echoed path probes go while a [`Prober`] burst waits for them.
    probe_echoes: Mutex<Option<mpsc::Sender<(Bytes, tokio::time::Instant)>>>,
}

/// Carries session tunnels over the current outer connection. Create one
/// per relay connection *lineage* (the console's or the agent's link to the
/// relay, across its reconnects); it must live inside a tokio runtime.
pub struct Carrier {
    shared: Arc<Shared>,
    // The reader of the attached connection; replaced on each attach.
    reader: Mutex<Option<AbortOnDrop>>,
}

impl std::fmt::Debug for Carrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Carrier")
            .field("stats", &self.shared.stats)
            .finish_non_exhaustive()
    }
}

impl Default for Carrier {
    fn default() -> Self {
        Self::new()
    }
}

impl Carrier {
    /// A carrier with no outer connection and no session yet.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared::default()),
            reader: Mutex::new(None),
        }
    }

    /// Carries session packets over `outer` from now on, replacing the
    /// previous outer connection if any (which is no longer read or written,
    /// but not closed: it belongs to its owner). The connection's datagrams
    /// and incoming unidirectional streams belong to the carrier from now on.
    pub fn attach(&self, outer: quinn::Connection) {
        let (sender, receiver) = packet_link(outer);
        let stable_id = sender.connection().stable_id();
        let task = tokio::spawn(read_incoming(self.shared.clone(), receiver, stable_id));
        // Replace the sender first, then the reader: packets read by the old
        // reader in between are still delivered, nothing is lost but what
        // the old connection had in flight.
        *self.shared.link.write().unwrap_or_else(|p| p.into_inner()) = Some(sender);
        *self.reader.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(AbortOnDrop(vec![task.abort_handle()]));
        self.shared
            .stats
            .attachments
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            outer = stable_id,
            "session carrier attached to a relay connection"
        );
    }

    /// Stops using the current outer connection; packets are dropped until
    /// the next [`Carrier::attach`].
    pub fn detach(&self) {
        *self.shared.link.write().unwrap_or_else(|p| p.into_inner()) = None;
        *self.reader.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The sender of the attached outer connection, if any (for example to
    /// read [`PacketSender::max_datagram_payload`]).
    pub fn current(&self) -> Option<PacketSender> {
        self.shared
            .link
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A handle that sends path probes on whatever outer connection is
    /// attached when it runs.
    pub fn prober(&self) -> Prober {
        Prober {
            shared: self.shared.clone(),
        }
    }

    /// Starts carrying `port`'s packets as session `session_id`. The session
    /// is carried until the returned [`CarriedSession`] is dropped.
    pub fn carry(
        &self,
        session_id: SessionId,
        port: TunnelPort,
    ) -> Result<CarriedSession, CarrierError> {
        let TunnelPort {
            outgoing,
            incoming,
            stats,
        } = port;
        {
            let mut sessions = self
                .shared
                .sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if sessions.contains_key(&session_id) {
                return Err(CarrierError::DuplicateSession(session_id));
            }
            // Packets that beat the session here go first, in order.
            let mut early = self.shared.early.lock().unwrap_or_else(|p| p.into_inner());
            let now = tokio::time::Instant::now();
            early.retain(|(id, at, payload)| {
                if *id != session_id {
                    return now.duration_since(*at) < EARLY_PACKET_TTL;
                }
                if now.duration_since(*at) < EARLY_PACKET_TTL {
                    deliver(&incoming, &stats, payload.clone());
                }
                false
            });
            drop(early);
            sessions.insert(
                session_id,
                Incoming {
                    queue: incoming,
                    stats,
                },
            );
        }
        let pump = tokio::spawn(pump_outgoing(self.shared.clone(), session_id, outgoing));
        Ok(CarriedSession {
            shared: self.shared.clone(),
            session_id,
            _pump: AbortOnDrop(vec![pump.abort_handle()]),
        })
    }

    /// The carrier's counters.
    pub fn stats(&self) -> &CarrierStats {
        &self.shared.stats
    }

    /// Sessions carried right now.
    pub fn carried(&self) -> usize {
        self.shared
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

/// A session being carried; dropping it stops carrying the session (its
/// inner connection then fails on its next send).
pub struct CarriedSession {
    shared: Arc<Shared>,
    session_id: SessionId,
    _pump: AbortOnDrop,
}

impl std::fmt::Debug for CarriedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CarriedSession")
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

impl CarriedSession {
    /// The session id the packets are tagged with.
    pub fn session_id(&self) -> SessionId {
        self.session_id
    }
}

impl Drop for CarriedSession {
    fn drop(&mut self) {
        self.shared
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.session_id);
    }
}

/// Moves one session's outgoing packets to whichever link is current.
async fn pump_outgoing(
    shared: Arc<Shared>,
    session_id: SessionId,
    mut outgoing: mpsc::Receiver<Bytes>,
) {
    while let Some(payload) = outgoing.recv().await {
        let packet = SessionPacket::new(session_id, &payload);
        let link = shared.link.read().unwrap_or_else(|p| p.into_inner());
        match link.as_ref() {
            Some(link) => {
                link.send(packet);
            }
            None => {
                shared
                    .stats
                    .dropped_detached
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Reads one outer connection and hands each packet to its session.
async fn read_incoming(shared: Arc<Shared>, mut receiver: PacketReceiver, stable_id: usize) {
    loop {
        match receiver.recv().await {
            Ok(packet) => {
                let id = packet.session_id();
                if id == PROBE_SESSION_ID {
                    let echoes = shared
                        .probe_echoes
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    if let Some(echoes) = echoes.as_ref() {
                        let _ = echoes.try_send((packet.payload(), tokio::time::Instant::now()));
                    }
                    continue;
                }
                let sessions = shared.sessions.lock().unwrap_or_else(|p| p.into_inner());
                match sessions.get(&id) {
                    Some(session) => {
                        deliver(&session.queue, &session.stats, packet.payload());
                    }
                    None => {
                        shared.stats.unknown_session.fetch_add(1, Ordering::Relaxed);
                        tracing::trace!(
                            session = %id,
                            "kept a packet for a session not carried yet"
                        );
                        let mut early = shared.early.lock().unwrap_or_else(|p| p.into_inner());
                        if early.len() >= EARLY_PACKETS {
                            early.pop_front();
                        }
                        early.push_back((id, tokio::time::Instant::now(), packet.payload()));
                    }
                }
            }
            Err(LinkError::Malformed(reason)) => {
                tracing::warn!(%reason, "ignored a malformed session packet");
            }
            Err(LinkError::Closed(reason)) => {
                tracing::debug!(%reason, outer = stable_id, "relay connection carrying sessions closed");
                // Forget the link unless a newer one was attached meanwhile.
                let mut link = shared.link.write().unwrap_or_else(|p| p.into_inner());
                if link
                    .as_ref()
                    .is_some_and(|l| l.connection().stable_id() == stable_id)
                {
                    *link = None;
                }
                return;
            }
        }
    }
}

/// What one burst of path probes saw.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeBurst {
    /// Probes sent.
    pub sent: u32,
    /// Probes whose echo never came back (lost on the way out or back).
    pub lost: u32,
    /// When each echoed probe left and when its echo came back, ms after
    /// the burst began, in the order they were sent. The jitter is read
    /// from these by `deskside_diag::measure::interarrival_jitter` (RFC
    /// 3550), the same arithmetic as the snapshot's path measurement.
    pub echoes: Vec<ProbeTiming>,
}

impl ProbeBurst {
    /// The RFC 3550 interarrival jitter of the echoes, ms (`None` with
    /// fewer than two).
    pub fn jitter_ms(&self) -> Option<f64> {
        interarrival_jitter(&self.echoes)
    }
}

/// Sends bursts of path probes (session [`PROBE_SESSION_ID`]) that the
/// relay echoes; see [`Carrier::prober`].
#[derive(Clone)]
pub struct Prober {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober").finish_non_exhaustive()
    }
}

impl Prober {
    /// Sends `count` probes `spacing` apart and waits up to `wait` after
    /// the last for their echoes. `None` when no connection is attached.
    /// Each probe is 2 bytes after the session id: the burst's tag and the
    /// probe's index, so a late echo of an earlier burst is not counted.
    pub async fn burst(
        &self,
        count: u8,
        spacing: std::time::Duration,
        wait: std::time::Duration,
    ) -> Option<ProbeBurst> {
        let link = self
            .shared
            .link
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        let (tx, mut rx) = mpsc::channel(usize::from(count).max(1) * 2);
        *self
            .shared
            .probe_echoes
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(tx);
        static BURSTS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
        let tag = BURSTS.fetch_add(1, Ordering::Relaxed);
        let began = tokio::time::Instant::now();
        let ms_since = |at: tokio::time::Instant| at.duration_since(began).as_secs_f64() * 1000.0;
        let mut sent_at: Vec<Option<f64>> = vec![None; usize::from(count)];
        let mut echoed: Vec<Option<ProbeTiming>> = vec![None; usize::from(count)];
        let take = |payload: &Bytes,
                    at: tokio::time::Instant,
                    echoed: &mut Vec<Option<ProbeTiming>>,
                    sent_at: &[Option<f64>]| {
            if let [t, i] = payload[..] {
                let i = usize::from(i);
                if t == tag {
                    if let (Some(Some(sent)), Some(slot)) = (sent_at.get(i), echoed.get_mut(i)) {
                        slot.get_or_insert(ProbeTiming {
                            sent_ms: *sent,
                            arrived_ms: ms_since(at),
                        });
                    }
                }
            }
        };
        let mut next = tokio::time::Instant::now();
        for i in 0..count {
            tokio::time::sleep_until(next).await;
            sent_at[usize::from(i)] = Some(ms_since(tokio::time::Instant::now()));
            let _ = link.send(SessionPacket::new(PROBE_SESSION_ID, &[tag, i]));
            next += spacing;
            while let Ok((payload, at)) = rx.try_recv() {
                take(&payload, at, &mut echoed, &sent_at);
            }
        }
        let deadline = tokio::time::Instant::now() + wait;
        while echoed.iter().any(Option::is_none) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((payload, at))) => take(&payload, at, &mut echoed, &sent_at),
                _ => break,
            }
        }
        *self
            .shared
            .probe_echoes
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        let echoes: Vec<ProbeTiming> = echoed.iter().flatten().copied().collect();
        Some(ProbeBurst {
            sent: u32::from(count),
            lost: u32::from(count) - echoes.len() as u32,
            echoes,
        })
    }
}
