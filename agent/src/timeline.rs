//! Monitoring: while `deskside-agent run` is connected, one small sample of
//! link and path quality every `monitoring_interval` (60 s by default),
//! kept on the device for seven days and sent to the relay in batches.
//!
//! The organisation's policy switches it off (`monitoring off`); the
//! employee reads what it keeps with `deskside-agent status` and
//! `deskside-agent history`. The relay path's round trip comes from the
//! presence connection's own QUIC statistics (see [`sampler`]); its loss
//! and jitter from 16 small path probes per sample (`PROBES`) that the
//! relay echoes on that same connection.
//!
//! Shape: [`spawn`] starts one task that owns the [`ring::Ring`] and the
//! [`sampler::Sampler`]; the relay link talks to it through a
//! [`TimelineLink`] (attached / detached / stored, and the upload messages
//! to send on the control stream). The task ends when `stop` is set.

pub mod ring;
pub mod sampler;

use std::net::IpAddr;
use std::time::Duration;

use deskside_protocol::agent::AgentToRelay;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::state::StateDir;

/// Most samples per upload: six hours at one a minute, about 21 KB off
/// Wi‑Fi, 59 KB on Wi‑Fi with a hashed access point.
pub const BATCH_SAMPLES: usize = 360;
/// An upload not confirmed within this long is sent again.
const RESEND_AFTER: Duration = Duration::from_secs(30);
/// How often the connection's round-trip estimate is read between samples.
const RTT_READING: Duration = Duration::from_secs(5);
/// How often the monitor looks at the policy (a changed interval or
/// `monitoring off` applies within this long) and whether a sample is due.
const POLICY_CHECK: Duration = Duration::from_secs(1);
/// Path probes per sample (echoed by the relay). Each costs about 47 bytes
/// on the wire (QUIC's header and tag around 10 bytes of probe), so they
/// are most of monitoring's upload: 20 measured +1,062 B/min over 10
/// minutes, over the 1 KB/min budget (README, timeline benchmark); 16 fit
/// it. At 10 % loss each way (about 3 of 16 lost) a sample still reads as
/// bad (2 or more lost) 84 % of the time, and two bad samples in a row open
/// an episode.
const PROBES: u8 = 16;
/// Spaced like audio packets, so jitter is what real-time media sees.
const PROBE_SPACING: Duration = Duration::from_millis(20);
/// The longest wait after the last probe for its echo.
const PROBE_WAIT: Duration = Duration::from_secs(1);

/// What the relay link tells the monitor.
#[derive(Debug)]
enum LinkEvent {
    Attached(quinn::Connection, Option<deskside_net::tunnel::Prober>),
    /// Parked: sample the heartbeats' path, keep the samples until an
    /// upload is due ([`PARKED_UPLOAD_EVERY`]).
    Parked(std::sync::Arc<crate::park::ParkPath>),
    Detached,
    Stored(u64),
}

/// How long a parked agent keeps its samples before it attaches to upload
/// them (the relay's view of a parked device's timeline lags this much at
/// most; any call from the relay uploads them sooner).
pub const PARKED_UPLOAD_EVERY: Duration = Duration::from_secs(600);

/// The relay link's end of the monitor.
#[derive(Debug)]
pub struct TimelineLink {
    events: mpsc::UnboundedSender<LinkEvent>,
    outbox: mpsc::Receiver<AgentToRelay>,
    /// True while parked with samples due for upload.
    upload_due: watch::Receiver<bool>,
}

/// Sends [`LinkEvent::Detached`] when dropped: however the connection's
/// loop ends, the monitor stops sampling it.
#[derive(Debug)]
pub struct DetachOnDrop(mpsc::UnboundedSender<LinkEvent>);

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(LinkEvent::Detached);
    }
}

impl TimelineLink {
    /// A connection is attached: sample it, and send path probes through
    /// `prober` (the session carrier's, which reads the connection's
    /// datagrams) when there is one. Dropping the guard detaches.
    pub fn attached(
        &self,
        connection: quinn::Connection,
        prober: Option<deskside_net::tunnel::Prober>,
    ) -> DetachOnDrop {
        let _ = self.events.send(LinkEvent::Attached(connection, prober));
        DetachOnDrop(self.events.clone())
    }

    /// The agent parked: sample the heartbeats' `path` until the guard
    /// is dropped.
    pub fn parked(&self, path: std::sync::Arc<crate::park::ParkPath>) -> DetachOnDrop {
        let _ = self.events.send(LinkEvent::Parked(path));
        DetachOnDrop(self.events.clone())
    }

    /// Resolves once a parked agent's samples are due for upload (it
    /// then attaches); never while the monitor is gone.
    pub async fn upload_due(&self) {
        let mut due = self.upload_due.clone();
        if due.wait_for(|due| *due).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// The relay stored the samples through `through_seq`.
    pub fn stored(&self, through_seq: u64) {
        let _ = self.events.send(LinkEvent::Stored(through_seq));
    }

    /// The next upload to send on the control stream.
    pub async fn next_message(&mut self) -> Option<AgentToRelay> {
        self.outbox.recv().await
    }
}

/// Where the monitor samples against.
#[derive(Clone, Debug)]
pub struct MonitorConfig {
    /// The state directory (ring, policy).
    pub state: StateDir,
    /// The relay, `host:port`.
    pub relay: String,
    /// Its address, when resolved.
    pub relay_ip: Option<IpAddr>,
}

/// Starts the monitor; it runs until `stop` is set.
pub fn spawn(
    config: MonitorConfig,
    stop: watch::Receiver<bool>,
) -> (TimelineLink, tokio::task::JoinHandle<()>) {
    let (events_tx, events) = mpsc::unbounded_channel();
    let (outbox_tx, outbox) = mpsc::channel(4);
    let (due_tx, upload_due) = watch::channel(false);
    let task = tokio::spawn(run(config, events, outbox_tx, due_tx, stop));
    (
        TimelineLink {
            events: events_tx,
            outbox,
            upload_due,
        },
        task,
    )
}

fn interval_of(policy: &deskside_diag::policy::Policy) -> Duration {
    Duration::from_secs(u64::from(policy.monitoring_interval.clamp(1, 3600)))
}

struct Uploader {
    in_flight: Option<(u64, Instant)>,
}

impl Uploader {
    /// Sends the oldest unconfirmed samples, unless a batch is waiting for
    /// its confirmation (for less than [`RESEND_AFTER`]).
    fn poll(&mut self, ring: &ring::Ring, outbox: &mpsc::Sender<AgentToRelay>) {
        if self
            .in_flight
            .is_some_and(|(_, sent)| sent.elapsed() < RESEND_AFTER)
        {
            return;
        }
        let Some(batch) = ring.next_batch(BATCH_SAMPLES) else {
            self.in_flight = None;
            return;
        };
        let message = AgentToRelay::TimelineSamples {
            first_seq: batch.first_seq,
            batch: batch.bytes,
        };
        if outbox.try_send(message).is_ok() {
            self.in_flight = Some((batch.last_seq, Instant::now()));
        }
    }
}

async fn run(
    config: MonitorConfig,
    mut events: mpsc::UnboundedReceiver<LinkEvent>,
    outbox: mpsc::Sender<AgentToRelay>,
    upload_due: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ring = match ring::Ring::open(config.state.root(), crate::clock::unix_millis()) {
        Ok(ring) => ring,
        Err(e) => {
            tracing::warn!("monitoring is off on this device: {e}");
            return;
        }
    };
    let mut sampler = sampler::Sampler::new(&config.relay, config.relay_ip);
    let mut connection: Option<sampler::RelayPath> = None;
    // Since when the agent is parked (its samples wait for an upload).
    let mut parked_since: Option<Instant> = None;
    // The last link was a parking (its end is not a gap in monitoring).
    let mut was_parked = false;
    let mut prober: Option<deskside_net::tunnel::Prober> = None;
    let mut uploader = Uploader { in_flight: None };
    // When the last sample was taken (or the connection attached).
    let mut last_sample = Instant::now();
    let mut due = tokio::time::interval(POLICY_CHECK);
    // Skip, not Delay: a sample that outlasts POLICY_CHECK must not push
    // every later tick (and so every later sample) back.
    due.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut rtt_tick = tokio::time::interval(RTT_READING);
    rtt_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut announced: Option<bool> = None;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            event = events.recv() => match event {
                None => break,
                Some(LinkEvent::Attached(c, p)) => {
                    connection = Some(sampler::RelayPath::Connection(c));
                    prober = p;
                    parked_since = None;
                    upload_due.send_replace(false);
                    // Attaching after parking continues the same run.
                    if !was_parked {
                        sampler.restart();
                    }
                    was_parked = false;
                    uploader.in_flight = None;
                    last_sample = Instant::now();
                    uploader.poll(&ring, &outbox);
                }
                Some(LinkEvent::Parked(path)) => {
                    was_parked = true;
                    // The same monitoring run: parking is not a gap.
                    connection = Some(sampler::RelayPath::Parked(path));
                    prober = None;
                    uploader.in_flight = None;
                    parked_since = Some(Instant::now());
                }
                Some(LinkEvent::Detached) => {
                    connection = None;
                    prober = None;
                    uploader.in_flight = None;
                    parked_since = None;
                }
                Some(LinkEvent::Stored(seq)) => {
                    if let Err(e) = ring.confirm(seq) {
                        tracing::warn!("{e}");
                    }
                    if uploader.in_flight.is_some_and(|(last, _)| last <= seq) {
                        uploader.in_flight = None;
                    }
                    uploader.poll(&ring, &outbox);
                }
            },
            tick = due.tick(), if connection.is_some() => {
                let policy = config.state.policy();
                // Measured from the tick's own instant: `now()` read after
                // the tick fired is a little late, so the next tick one
                // interval on saw "not yet" and every sample slipped a
                // whole POLICY_CHECK (2 s became 3 s, 60 s became 61 s).
                if tick.saturating_duration_since(last_sample) < interval_of(&policy) {
                    continue;
                }
                last_sample = tick;
                if announced != Some(policy.monitoring) {
                    announced = Some(policy.monitoring);
                    if policy.monitoring {
                        tracing::info!(interval_s = policy.monitoring_interval, "monitoring link and path quality (the organisation's policy)");
                    } else {
                        tracing::info!("monitoring is off (the organisation's policy)");
                    }
                }
                if !policy.monitoring {
                    sampler.restart();
                    continue;
                }
                let Some(c) = connection.as_ref() else { continue };
                let privacy = crate::diag::options_for(&policy).privacy;
                let taken = (crate::clock::unix_millis(), std::time::Instant::now());
                // The path probes run while the rest of the sample is read.
                let burst = async {
                    match prober.as_ref() {
                        Some(p) => {
                            // Four round trips (at least 250 ms, at most
                            // PROBE_WAIT): a dead relay must not hold the
                            // sample up longer than needed.
                            let wait = (c.rtt().unwrap_or(PROBE_WAIT) * 4).clamp(Duration::from_millis(250), PROBE_WAIT);
                            p.burst(PROBES, PROBE_SPACING, wait).await
                        }
                        None => None,
                    }
                };
                let (burst, mut sample) = tokio::join!(burst, sampler.sample(c, &privacy, taken));
                sample.relay = sample
                    .relay
                    .map(|relay| sampler::with_probes(relay, burst.as_ref()));
                if let Err(e) = ring.append(&sample, crate::clock::unix_millis()) {
                    tracing::warn!("cannot keep a timeline sample: {e}");
                }
                match parked_since {
                    None => uploader.poll(&ring, &outbox),
                    Some(since) => {
                        if since.elapsed() >= PARKED_UPLOAD_EVERY && ring.next_batch(1).is_some() {
                            upload_due.send_replace(true);
                        }
                    }
                }
            }
            _ = rtt_tick.tick(), if connection.is_some() => {
                if let Some(c) = connection.as_ref() {
                    sampler.note_rtt(c);
                }
                // A lost confirmation: send again.
                if parked_since.is_none() {
                    uploader.poll(&ring, &outbox);
                }
            }
        }
    }
}

/// What `deskside-agent status` and `history` tell the employee about
/// monitoring: whether it is on, what one sample holds, and what is kept.
pub fn disclosure(state: &StateDir, french: bool) -> (serde_json::Value, String) {
    let policy = state.policy();
    let records = ring::Ring::read_all(state.root());
    let oldest = records.iter().map(|r| r.sample.at_ms).min();
    let json = serde_json::json!({
        "monitoring": policy.monitoring,
        "interval_s": policy.monitoring_interval,
        "kept_samples": records.len(),
        "kept_since_ms": oldest,
        "kept_days": ring::KEEP_MS / 86_400_000,
        "records": [
            "wifi signal, noise, rates, retries, access point (hashed), band",
            "link in use, vpn up or down",
            "home router probes", "relay round trip, jitter and loss (from the existing connection)",
            "dns lookup time", "cpu and memory pressure", "sleep and resume"
        ],
    });
    let since = oldest
        .map(|ms| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64),
            )
            .to_string()
        })
        .unwrap_or_default();
    let text = match (policy.monitoring, french) {
        (true, false) => format!(
            "Monitoring: on (your organisation's policy). While connected, every {} s this device records Wi‑Fi signal and access point (hashed), the link in use, VPN up or down, a few probes to your router, the round trip and loss to the relay, DNS time, CPU and memory pressure, and sleep; no content, no names of sites. Kept here 7 days ({} samples{}) and sent to IT.\n",
            policy.monitoring_interval,
            records.len(),
            if since.is_empty() { String::new() } else { format!(" since {since}") }
        ),
        (true, true) => format!(
            "Surveillance de la connexion : active (règle de votre organisation). Tant qu'il est connecté, toutes les {} s, cet ordinateur note le signal Wi‑Fi et le point d'accès (haché), la liaison utilisée, l'état du VPN, quelques sondes vers votre box, l'aller-retour et les pertes vers le relais, le temps DNS, la charge processeur et mémoire, et la mise en veille ; aucun contenu, aucun nom de site. Gardé ici 7 jours ({} mesures{}) et envoyé au service informatique.\n",
            policy.monitoring_interval,
            records.len(),
            if since.is_empty() { String::new() } else { format!(" depuis {since}") }
        ),
        (false, false) => format!(
            "Monitoring: off (your organisation's policy); {} earlier samples kept here until they are 7 days old.\n",
            records.len()
        ),
        (false, true) => format!(
            "Surveillance de la connexion : désactivée (règle de votre organisation) ; {} mesures antérieures gardées ici jusqu'à 7 jours.\n",
            records.len()
        ),
    };
    (json, text)
}
