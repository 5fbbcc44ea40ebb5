//! Measuring the path to the relay over QUIC: connect time, idle round
//! trips, jitter, loss, clock offset, throughput both ways and latency under
//! load (bufferbloat).
//!
//! Runs on its own connection (`Measure`), so it never disturbs the agent's
//! presence connection. Round trips use QUIC datagrams, which are never
//! retransmitted: a lost probe is loss on the path. Download throughput is
//! counted at the agent after skipping the first quarter of the transfer
//! (congestion control is still ramping up); upload throughput is counted by
//! the relay, which reports what it received. Each transfer stops early by
//! the path's queue delay and every wait is bounded, so the whole
//! measurement fits its time budget ([`plan`]).

pub mod plan;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use deskside_diag::measure::{
    interarrival_jitter, judge_load, loaded_direction, ProbeTiming, MEDIA_PROBE_SPACING_MS,
};
use deskside_diag::snapshot::{Clock, Grade, Path, RttStats, SpeedTestRefusal, Throughput};
use deskside_diag::Probe;
use deskside_net::transport::{client_endpoint, resolve, ConnectOptions};
use deskside_net::{connect, FramedRecv, FramedSend, Identity, NetError};
use deskside_protocol::agent::{AgentToRelay, RelayToAgent};
use deskside_protocol::measure::{EchoReply, EchoRequest, MeasureReply, MeasureRequest};
use deskside_protocol::message::Nested;
use deskside_protocol::{Fingerprint, Refusal, MAX_CLIENT_FRAME_LEN, MAX_RELAY_FRAME_LEN};

/// What to measure and how hard.
#[derive(Clone, Debug)]
pub struct PathOptions {
    /// Round-trip probes on the idle connection.
    pub idle_probes: u32,
    /// Spacing of probes.
    pub probe_interval: Duration,
    /// How long to wait for the last probe's answer.
    pub probe_grace: Duration,
    /// Whether to run the throughput test.
    pub throughput: bool,
    /// Length of each transfer (download, then upload).
    pub transfer: Duration,
}

impl Default for PathOptions {
    /// About 0.9 s without throughput, 3.4 s with: within the snapshot
    /// budgets (≤ 1 s of probes, ≤ 3 s of transfer). Probes go 20 ms apart,
    /// like the packets of a call's audio, so the jitter measured is the
    /// jitter a call meets (back-to-back probes hide the queue swings that
    /// a steady 50 packets/s stream sees).
    fn default() -> Self {
        Self {
            idle_probes: 40,
            probe_interval: Duration::from_millis(MEDIA_PROBE_SPACING_MS),
            probe_grace: Duration::from_millis(300),
            throughput: false,
            transfer: Duration::from_millis(1250),
        }
    }
}

/// What the path measurement produced.
#[derive(Debug)]
pub struct PathReport {
    /// The path.
    pub path: Path,
    /// The clock offset, if the relay answered.
    pub clock: Probe<Clock>,
    /// The relay's refusal of the measurement, if it refused (a revoked or
    /// unknown device, another measurement running).
    pub refusal: Option<Refusal>,
    /// When each phase ended, from the start of the measurement (for
    /// benchmarks: where the time goes).
    pub phases: Vec<(&'static str, Duration)>,
}

/// Summary statistics of round trips in milliseconds, given in send order
/// (jitter is the mean absolute difference of consecutive samples, the
/// definition Cloudflare's speed test uses).
pub fn rtt_stats(samples_in_order: &[f64]) -> Option<RttStats> {
    let finite: Vec<f64> = samples_in_order
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    if finite.is_empty() {
        return None;
    }
    let mut sorted = finite.clone();
    sorted.sort_by(f64::total_cmp);
    let pick = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    let jitter = if finite.len() > 1 {
        finite.windows(2).map(|w| (w[1] - w[0]).abs()).sum::<f64>() / (finite.len() - 1) as f64
    } else {
        0.0
    };
    Some(RttStats {
        samples: finite.len() as u32,
        min_ms: sorted[0],
        median_ms: pick(0.5),
        p95_ms: pick(0.95),
        max_ms: sorted[sorted.len() - 1],
        jitter_ms: jitter,
    })
}

/// One answered probe.
#[derive(Clone, Copy, Debug)]
struct Answer {
    seq: u32,
    relay_time_ms: i64,
    sent_wall_ms: i64,
    /// Send and arrival times on the prober's monotonic clock.
    timing: ProbeTiming,
}

impl Answer {
    /// The probe's round trip.
    fn rtt_ms(&self) -> f64 {
        self.timing.arrived_ms - self.timing.sent_ms
    }
}

/// Probes sent and answered on one connection, by sequence number.
#[derive(Debug)]
struct Prober {
    connection: quinn::Connection,
    epoch: Instant,
    wall_epoch_ms: i64,
    next_seq: u32,
    sent: HashMap<u32, Instant>,
    answered: Vec<Answer>,
}

impl Prober {
    fn new(connection: quinn::Connection) -> Self {
        Self {
            connection,
            epoch: Instant::now(),
            wall_epoch_ms: crate::clock::unix_millis(),
            next_seq: 0,
            sent: HashMap::new(),
            answered: Vec::new(),
        }
    }

    /// Sends the next probe; false if the datagram could not be queued.
    fn send(&mut self) -> bool {
        let seq = self.next_seq;
        self.next_seq += 1;
        let now = Instant::now();
        let request = EchoRequest {
            seq,
            sent_us: now.duration_since(self.epoch).as_micros() as u64,
        };
        self.sent.insert(seq, now);
        self.connection
            .send_datagram(bytes::Bytes::copy_from_slice(&request.encode()))
            .is_ok()
    }

    /// Records an echo datagram; anything else is ignored.
    fn receive(&mut self, datagram: &[u8]) {
        let Some(reply) = EchoReply::decode(datagram) else {
            return;
        };
        let seq = reply.request.seq;
        let Some(sent) = self.sent.get(&seq) else {
            return;
        };
        if self.answered.iter().any(|a| a.seq == seq) {
            return;
        }
        let sent_ms = sent.duration_since(self.epoch).as_secs_f64() * 1000.0;
        self.answered.push(Answer {
            seq,
            timing: ProbeTiming {
                sent_ms,
                arrived_ms: self.epoch.elapsed().as_secs_f64() * 1000.0,
            },
            relay_time_ms: reply.relay_time_ms,
            sent_wall_ms: self.wall_epoch_ms + sent.duration_since(self.epoch).as_millis() as i64,
        });
    }

    /// RTT samples in send order for probes numbered `from..to`.
    fn rtts(&self, from: u32, to: u32) -> Vec<f64> {
        let mut in_range: Vec<_> = self
            .answered
            .iter()
            .filter(|a| (from..to).contains(&a.seq))
            .map(|a| (a.seq, a.rtt_ms()))
            .collect();
        in_range.sort_by_key(|(seq, _)| *seq);
        in_range.into_iter().map(|(_, rtt)| rtt).collect()
    }

    /// Send and arrival times of the answered probes numbered `from..to`.
    fn timings(&self, from: u32, to: u32) -> Vec<ProbeTiming> {
        self.answered
            .iter()
            .filter(|a| (from..to).contains(&a.seq))
            .map(|a| a.timing)
            .collect()
    }

    /// Waits until the path's queues have drained after a transfer: probes
    /// `interval` apart until one comes back within `settled_ms`, or until
    /// `limit`. Data the relay sent just before the download ended still
    /// sits in a slow link's queue (half a second at 1 Mbit/s); an upload
    /// started behind it would wait for its acknowledgements (a false low
    /// speed) and its probes would carry the download's delay (a false
    /// upload bufferbloat).
    async fn settle(&mut self, settled_ms: f64, interval: Duration, limit: Duration) {
        let first = self.next_seq;
        let deadline = tokio::time::Instant::now() + limit;
        let mut ticker = tokio::time::interval(interval);
        loop {
            let settled = self
                .answered
                .iter()
                .any(|a| a.seq >= first && a.rtt_ms() <= settled_ms);
            if settled {
                break;
            }
            let connection = self.connection.clone();
            tokio::select! {
                _ = ticker.tick() => { self.send(); }
                datagram = connection.read_datagram() => match datagram {
                    Ok(bytes) => self.receive(&bytes),
                    Err(_) => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
    }

    /// Sends `count` probes `interval` apart and collects answers until
    /// `grace` after the last one, or until all are answered. Returns
    /// (sent, answered).
    async fn burst(&mut self, count: u32, interval: Duration, grace: Duration) -> (u32, u32) {
        let first = self.next_seq;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sent = 0;
        let mut deadline = tokio::time::Instant::now() + interval * count + grace;
        loop {
            let answered = self.rtts(first, first + count).len() as u32;
            if sent == count && answered == count {
                break;
            }
            let connection = self.connection.clone();
            tokio::select! {
                _ = ticker.tick(), if sent < count => {
                    if self.send() {
                        sent += 1;
                    }
                    if sent == count {
                        deadline = tokio::time::Instant::now() + grace;
                    }
                }
                datagram = connection.read_datagram() => match datagram {
                    Ok(bytes) => self.receive(&bytes),
                    Err(_) => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        (sent, self.rtts(first, first + count).len() as u32)
    }

    /// The clock offset from the probe with the smallest round trip, which
    /// bounds the error best (±rtt/2).
    fn clock(&self) -> Probe<Clock> {
        self.answered
            .iter()
            .min_by(|a, b| a.rtt_ms().total_cmp(&b.rtt_ms()))
            .map(|a| {
                let midpoint = a.sent_wall_ms as f64 + a.rtt_ms() / 2.0;
                Probe::Measured(Clock {
                    offset_ms: (a.relay_time_ms as f64 - midpoint).round() as i64,
                    rtt_ms: a.rtt_ms(),
                })
            })
            .unwrap_or_else(|| Probe::unknown("no round-trip probe was answered"))
    }
}

/// Whether `addr` answers a TCP connection attempt: accepted or refused
/// (RST) both prove the host is reachable; silence does not.
async fn tcp_answers(addr: std::net::SocketAddr) -> bool {
    match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        Err(_) => false,
    }
}

fn unreachable_report(mut path: Path, reason: &str) -> PathReport {
    path.download = Probe::unknown(reason);
    path.upload = Probe::unknown(reason);
    PathReport {
        path,
        clock: Probe::unknown(reason),
        refusal: None,
        phases: Vec::new(),
    }
}

/// The stream reset / stop code the relay uses when the hourly byte
/// allowance runs out in the middle of a transfer.
const RESET_BUDGET_SPENT: u32 = 1;

/// The speed-test refusal a relay refusal stands for, if any.
fn speed_test_refusal(refusal: &Refusal) -> Option<SpeedTestRefusal> {
    match refusal {
        Refusal::MeasurementBusy { retry_after_s } => Some(SpeedTestRefusal::Busy {
            retry_after_s: *retry_after_s,
        }),
        Refusal::MeasurementBudgetSpent { retry_after_s } => Some(SpeedTestRefusal::BudgetSpent {
            retry_after_s: *retry_after_s,
        }),
        _ => None,
    }
}

/// Asks the relay whether a speed test may run now. `Ok` also when the
/// relay is too old to know the question (it then limits transfers as it
/// always did).
async fn ask_speed_test(connection: &quinn::Connection) -> Result<(), Refusal> {
    let Ok((send, recv)) = connection.open_bi().await else {
        return Ok(());
    };
    let mut send = FramedSend::new(send, MAX_CLIENT_FRAME_LEN);
    let mut recv = FramedRecv::new(recv, MAX_RELAY_FRAME_LEN);
    if send.send(&MeasureRequest::SpeedTest).await.is_err() {
        return Ok(());
    }
    send.finish();
    let answer = tokio::time::timeout(Duration::from_secs(5), recv.recv::<MeasureReply>()).await;
    match answer {
        Ok(Ok(Some(MeasureReply::Refused(Nested(refusal)))))
            if speed_test_refusal(&refusal).is_some() =>
        {
            Err(refusal)
        }
        _ => Ok(()),
    }
}

/// Measures the path to `relay`, authenticating as the device owning
/// `identity`. Never fails: what cannot be measured is reported as such.
pub async fn measure(
    relay: &str,
    fingerprint: Fingerprint,
    identity: Identity,
    options: &PathOptions,
) -> PathReport {
    let mut path = Path {
        relay: relay.to_owned(),
        download: Probe::not_applicable("throughput test not requested"),
        upload: Probe::not_applicable("throughput test not requested"),
        ..Path::default()
    };
    let by_name = relay
        .rsplit_once(':')
        .map(|(host, _)| host.trim_matches(['[', ']']))
        .is_some_and(|host| host.parse::<std::net::IpAddr>().is_err());
    let addr = match resolve(relay).await {
        Ok(addr) => {
            path.relay_resolved = by_name.then_some(true);
            addr
        }
        Err(e) => {
            path.relay_resolved = Some(false);
            path.udp_error = Some(e.to_string());
            return unreachable_report(path, "the relay address did not resolve");
        }
    };
    let endpoint = match client_endpoint(addr) {
        Ok(endpoint) => endpoint,
        Err(e) => {
            path.udp_error = Some(e.to_string());
            return unreachable_report(path, "no UDP socket could be opened");
        }
    };
    let started = Instant::now();
    let connected = connect(
        &endpoint,
        &ConnectOptions {
            relay: relay.to_owned(),
            fingerprint,
            identity: Some(identity),
            idle_timeout: Duration::from_secs(10),
            keep_alive: Some(Duration::from_secs(2)),
            software: format!("deskside-agent {} (measure)", env!("CARGO_PKG_VERSION")),
        },
    )
    .await;
    let mut connected = match connected {
        Ok(connected) => connected,
        Err(e) => {
            // No QUIC at all: that is the finding. Whether the relay's host
            // answers over TCP tells "UDP blocked" from "unreachable".
            path.udp_ok = false;
            path.udp_error = Some(e.to_string());
            path.tcp_reachable = Some(tcp_answers(addr).await);
            return unreachable_report(path, "no QUIC connection to the relay");
        }
    };
    path.udp_ok = true;
    let ready = async {
        connected.send.send(&AgentToRelay::Measure).await?;
        connected.recv.recv::<RelayToAgent>().await
    }
    .await;
    match ready {
        Ok(Some(RelayToAgent::MeasureReady { .. })) => {}
        Ok(Some(RelayToAgent::Refused(Nested(refusal)))) => {
            if options.throughput {
                path.speed_test_refused = speed_test_refusal(&refusal);
            }
            let mut report = unreachable_report(
                path,
                &format!("the relay refused the measurement: {refusal}"),
            );
            report.refusal = Some(refusal);
            return report;
        }
        other => {
            tracing::debug!("the measurement could not start: {other:?}");
            return unreachable_report(path, &start_failure(&other));
        }
    }
    path.connect_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    let mut phases = vec![("connect", started.elapsed())];
    let mut prober = Prober::new(connected.connection.clone());

    let (sent, received) = prober
        .burst(
            options.idle_probes,
            options.probe_interval,
            options.probe_grace,
        )
        .await;
    path.probes_sent = sent;
    path.probes_received = received;
    path.idle_rtt = rtt_stats(&prober.rtts(0, prober.next_seq));
    path.media_jitter_ms = interarrival_jitter(&prober.timings(0, prober.next_seq));
    let clock = prober.clock();
    phases.push(("idle probes", started.elapsed()));

    let granted = if options.throughput {
        ask_speed_test(&connected.connection).await
    } else {
        Ok(())
    };
    if options.throughput {
        phases.push(("speed test granted", started.elapsed()));
    }
    if let Err(refusal) = &granted {
        path.speed_test_refused = speed_test_refusal(refusal);
        let reason = format!("the speed test was not run: {refusal}");
        path.download = Probe::unknown(reason.clone());
        path.upload = Probe::unknown(reason);
    }
    if options.throughput && granted.is_ok() {
        // Each direction is graded on its own probes: pooled, a bloated
        // download queue would be averaged away by a clean upload.
        let mut loaded = [None, None];
        let mut download_probes: Option<std::ops::Range<u32>> = None;
        // Both transfers get the same length, fitted to what is left of
        // the budget.
        let length = plan::transfer_length(started.elapsed(), options.transfer);
        for (slot, direction) in [Direction::Down, Direction::Up].into_iter().enumerate() {
            if direction == Direction::Up {
                if let Some(idle) = &path.idle_rtt {
                    prober
                        .settle(
                            idle.median_ms * 2.0 + 5.0,
                            options.probe_interval,
                            plan::settle_limit(started.elapsed(), length),
                        )
                        .await;
                }
                phases.push(("settle", started.elapsed()));
                // The download's last probes were still in the queue when it
                // ended: counted now that it has drained, they are round
                // trips under load, not losses.
                if let (Some(probes), Probe::Measured(throughput)) =
                    (download_probes.take(), &mut path.download)
                {
                    throughput.loaded_rtt = rtt_stats(&prober.rtts(probes.start, probes.end));
                    loaded[0] = match (&path.idle_rtt, &throughput.loaded_rtt) {
                        (Some(idle), Some(under_load)) => {
                            loaded_direction(idle.median_ms, under_load, probes.len() as u32)
                        }
                        _ => None,
                    };
                }
            }
            let leg = Leg {
                direction,
                length,
                probe_interval: options.probe_interval,
                idle_rtt_ms: path.idle_rtt.as_ref().map(|idle| idle.median_ms),
                measurement_started: started,
            };
            let outcome = transfer(&mut prober, &leg).await;
            let probe = match outcome {
                Ok((throughput, probes)) => {
                    loaded[slot] = match (&path.idle_rtt, &throughput.loaded_rtt) {
                        (Some(idle), Some(under_load)) => {
                            loaded_direction(idle.median_ms, under_load, probes.len() as u32)
                        }
                        _ => None,
                    };
                    if direction == Direction::Down {
                        download_probes = Some(probes);
                    }
                    Probe::Measured(throughput)
                }
                Err(reason) => Probe::unknown(reason),
            };
            match direction {
                Direction::Down => path.download = probe,
                Direction::Up => path.upload = probe,
            }
            phases.push((
                match direction {
                    Direction::Down => "download",
                    Direction::Up => "upload and its answer",
                },
                started.elapsed(),
            ));
        }
        let [down, up] = loaded;
        if let Some((added, load)) = judge_load(down, up) {
            path.added_latency_ms = Some(added);
            path.bufferbloat = Some(Grade::from_added_latency(added));
            path.loaded = Some(Box::new(load));
        }
    }
    connected.send.finish();
    connected.connection.close(0u32.into(), b"measured");
    // The endpoint keeps driving the draining connection after this
    // returns; the wait only gives the close a moment to leave.
    let _ = tokio::time::timeout(plan::close_limit(started.elapsed()), endpoint.wait_idle()).await;
    phases.push(("close", started.elapsed()));
    PathReport {
        path,
        clock,
        refusal: None,
        phases,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Down,
    Up,
}

/// A transfer cut by the path (a short outage, a reset stream): a gap in
/// the measurement, said plainly, with what to do.
fn interrupted(direction: Direction) -> String {
    let what = match direction {
        Direction::Down => "download",
        Direction::Up => "upload",
    };
    format!(
        "the {what} test was interrupted (the connection to the support service dropped for a moment), so this direction has no result; run the check again"
    )
}

/// Why the measurement could not start, in plain words: the relay's
/// answer was neither "ready" nor a refusal.
fn start_failure(answer: &Result<Option<RelayToAgent>, NetError>) -> String {
    match answer {
        Ok(None) => "the support service closed the measurement before it began; run the check again in a moment".to_owned(),
        Ok(Some(_)) => "the support service answered in a way this agent does not understand; update the agent (or ask IT to update the relay)".to_owned(),
        Err(NetError::Frame(_) | NetError::Message(_)) => "the support service's answer was damaged; run the check again, and if it repeats, update the agent".to_owned(),
        Err(_) => "the connection to the support service was interrupted before the measurement began (a short outage); run the check again".to_owned(),
    }
}

/// The relay's answer to an upload test was not a result: a gap.
fn upload_answer_gap(answer: &Result<Option<MeasureReply>, NetError>) -> String {
    match answer {
        Ok(Some(_)) => "the support service answered the upload test in a way this agent does not understand; update the agent (or ask IT to update the relay)".to_owned(),
        Err(NetError::Frame(_) | NetError::Message(_)) => "the support service's answer to the upload test was damaged; run the check again".to_owned(),
        Ok(None) | Err(_) => interrupted(Direction::Up),
    }
}

/// One transfer of the throughput test and what it needs to know.
#[derive(Clone, Copy, Debug)]
struct Leg {
    direction: Direction,
    /// How long the transfer lasts ([`plan::transfer_length`]).
    length: Duration,
    /// Spacing of the probes sent beside it.
    probe_interval: Duration,
    /// The idle round trip's median, against which the queue delay under
    /// load is read.
    idle_rtt_ms: Option<f64>,
    /// When the whole measurement began (the budget's clock).
    measurement_started: Instant,
}

impl Leg {
    /// When to stop sending: the deadline less the queue delay the probes
    /// of this transfer saw (`plan::stop_lead`).
    fn stop_at(&self, prober: &Prober, first_probe: u32, started: Instant) -> tokio::time::Instant {
        let lead = match self.idle_rtt_ms {
            Some(idle) => plan::stop_lead(
                idle,
                &prober.rtts(first_probe, prober.next_seq),
                self.length,
            ),
            None => Duration::ZERO,
        };
        tokio::time::Instant::from_std(started + self.length - lead)
    }
}

/// After a download is stopped, a rise of the receive counter by at least
/// this much between two looks is data still arriving (a probe answer or
/// an acknowledgement is far smaller).
const DATA_ARRIVAL_MIN_BYTES: u64 = 600;

/// How often the receive counter is read after a download is stopped.
const ARRIVAL_WATCH: Duration = Duration::from_millis(2);

/// How long the link must stay quiet after a download is stopped before
/// its data is taken to have all arrived: eight full packets at the rate
/// measured so far, and 50 ms at least.
fn quiet_after_stop(bytes: u64, window: Duration) -> Duration {
    const FLOOR: Duration = Duration::from_millis(50);
    let seconds = window.as_secs_f64();
    if bytes == 0 || seconds <= 0.0 {
        return FLOOR;
    }
    let packet_time = 1500.0 / (bytes as f64 / seconds);
    Duration::from_secs_f64(packet_time * 8.0).max(FLOOR)
}

/// One timed transfer with probes running beside it; returns the
/// throughput (with the round trips measured under load so far) and the
/// numbers of the probes sent during it.
///
/// The sender stops early by the queue delay the probes see
/// ([`plan::stop_lead`]): what is already queued keeps the link busy until
/// about the deadline, and the next phase does not wait for a full queue
/// to drain. The counted window ends where the data stops arriving (the
/// download: the last arrival, or the deadline; the upload: the relay
/// counts until the reset, which travels behind the last data), so an
/// early stop never counts idle time.
async fn transfer(
    prober: &mut Prober,
    leg: &Leg,
) -> Result<(Throughput, std::ops::Range<u32>), String> {
    let direction = leg.direction;
    let connection = prober.connection.clone();
    let duration_ms = leg.length.as_millis().min(u128::from(u32::MAX)) as u32;
    let (send, recv) = connection.open_bi().await.map_err(|e| {
        tracing::debug!("cannot open a transfer stream: {e}");
        interrupted(direction)
    })?;
    let mut send = FramedSend::new(send, MAX_CLIENT_FRAME_LEN);
    let mut recv = FramedRecv::new(recv, MAX_RELAY_FRAME_LEN);
    let request = match direction {
        Direction::Down => MeasureRequest::Download { duration_ms },
        Direction::Up => MeasureRequest::Upload { duration_ms },
    };
    send.send(&request).await.map_err(|e| {
        tracing::debug!("cannot send the transfer request: {e}");
        interrupted(direction)
    })?;
    let first_probe = prober.next_seq;
    // Probes at the media spacing during the transfer, as a call running
    // beside a download would send: enough samples for a median and a loss
    // figure, negligible load (50 small datagrams a second).
    let mut ticker = tokio::time::interval(leg.probe_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started + leg.length);
    let mut stop_at = deadline;
    let (bytes, window) = match direction {
        Direction::Down => {
            // Counted where packets arrive (the connection's UDP receive
            // counter), not where the application reads: reads lag behind
            // arrivals by whatever sits in quinn's buffers, which would skew
            // a short window. The window skips the first quarter, while
            // congestion control is still ramping up.
            let window_open = tokio::time::Instant::from_std(started + leg.length / 4);
            let (mut stream, _) = recv.into_parts();
            let mut opened: Option<(Instant, u64)> = None;
            let mut moved_any = false;
            // Once stopped: the last look at the receive counter, and the
            // last look that saw data arrive.
            let mut stopped: Option<(u64, (Instant, u64))> = None;
            let mut watch = tokio::time::interval(ARRIVAL_WATCH);
            watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(window_open), if opened.is_none() => {
                        opened = Some((Instant::now(), connection.stats().udp_rx.bytes));
                    }
                    // Stop at our own deadline: on a slow path the relay's
                    // buffers hold seconds of data that would still drain.
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = tokio::time::sleep_until(stop_at), if stopped.is_none() && opened.is_some() => {
                        let _ = stream.stop(0u32.into());
                        let rx = connection.stats().udp_rx.bytes;
                        tracing::debug!(
                            "download stopped {:?} before its deadline",
                            deadline.saturating_duration_since(tokio::time::Instant::now())
                        );
                        stopped = Some((rx, (Instant::now(), rx)));
                    }
                    _ = watch.tick(), if stopped.is_some() => {
                        let now = Instant::now();
                        let rx = connection.stats().udp_rx.bytes;
                        if let (Some((seen, last)), Some(open)) = (stopped.as_mut(), opened) {
                            if rx.saturating_sub(*seen) >= DATA_ARRIVAL_MIN_BYTES {
                                *last = (now, rx);
                            }
                            *seen = rx;
                            let quiet = quiet_after_stop(
                                last.1.saturating_sub(open.1),
                                last.0.duration_since(open.0),
                            );
                            if now.duration_since(last.0) > quiet {
                                break;
                            }
                        }
                    }
                    chunk = stream.read_chunk(1 << 20, true), if stopped.is_none() => match chunk {
                        Ok(Some(_)) => moved_any = true,
                        Ok(None) => break,
                        Err(quinn::ReadError::Reset(code))
                            if code == quinn::VarInt::from_u32(RESET_BUDGET_SPENT) =>
                        {
                            return Err(
                                "the relay's hourly speed-test allowance for this device ran out during the download".to_owned(),
                            );
                        }
                        // The relay resets the stream when its time is up.
                        Err(quinn::ReadError::Reset(_)) => break,
                        Err(e) => {
                            tracing::debug!("download interrupted: {e}");
                            return Err(interrupted(direction));
                        }
                    },
                    _ = ticker.tick() => { prober.send(); }
                    datagram = connection.read_datagram() => if let Ok(bytes) = datagram {
                        prober.receive(&bytes);
                        stop_at = leg.stop_at(prober, first_probe, started);
                    },
                }
            }
            tracing::debug!(
                "download ended {:?} after its start (planned {:?}); stopped early: {}",
                started.elapsed(),
                leg.length,
                stopped.is_some()
            );
            let closed = match stopped {
                // Stopped early: the window ends with the last data that
                // arrived, never in the quiet after it.
                Some((_, last)) => last,
                None => {
                    let _ = stream.stop(0u32.into());
                    (Instant::now(), connection.stats().udp_rx.bytes)
                }
            };
            match opened {
                Some((at, bytes)) if moved_any => (
                    closed.1.saturating_sub(bytes),
                    closed.0.saturating_duration_since(at),
                ),
                _ => (0, Duration::ZERO),
            }
        }
        Direction::Up => {
            let filler = bytes::Bytes::from(vec![0u8; 64 * 1024]);
            let stream = send.stream();
            loop {
                tokio::select! {
                    written = stream.write_chunk(filler.clone()) => {
                        match written {
                            Ok(_) => {}
                            // The relay stopped reading: its answer says why.
                            Err(quinn::WriteError::Stopped(_)) => break,
                            Err(e) => {
                                tracing::debug!("upload interrupted: {e}");
                                return Err(interrupted(direction));
                            }
                        }
                    }
                    _ = ticker.tick() => { prober.send(); }
                    datagram = connection.read_datagram() => if let Ok(bytes) = datagram {
                        prober.receive(&bytes);
                        stop_at = leg.stop_at(prober, first_probe, started);
                    },
                    _ = tokio::time::sleep_until(stop_at) => break,
                }
            }
            tracing::debug!(
                "upload stopped {:?} before its deadline",
                deadline.saturating_duration_since(tokio::time::Instant::now())
            );
            // Discard what is still waiting to be sent: the relay counts
            // until this reset reaches it, right behind the data already
            // queued on the path, which keeps the link busy until then.
            let _ = stream.reset(0u32.into());
            // Keep collecting probe answers while the relay drains its side.
            let answer_by =
                tokio::time::Instant::now() + plan::answer_limit(leg.measurement_started.elapsed());
            let answer = loop {
                tokio::select! {
                    answer = recv.recv::<MeasureReply>() => break answer,
                    datagram = connection.read_datagram() => if let Ok(bytes) = datagram {
                        prober.receive(&bytes);
                    },
                    _ = tokio::time::sleep_until(answer_by) => {
                        return Err("the relay did not report what it received".to_owned());
                    }
                }
            };
            match answer {
                Ok(Some(MeasureReply::Received { bytes, duration_us })) => {
                    (bytes, Duration::from_micros(duration_us))
                }
                Ok(Some(MeasureReply::Refused(Nested(refusal)))) => {
                    return Err(format!("the relay refused the upload test: {refusal}"));
                }
                other => {
                    tracing::debug!("answer to the upload test: {other:?}");
                    return Err(upload_answer_gap(&other));
                }
            }
        }
    };
    if window.is_zero() || bytes == 0 {
        return Err("no data moved during the transfer".to_owned());
    }
    let mbps = bytes as f64 * 8.0 / window.as_secs_f64() / 1e6;
    let probes = first_probe..prober.next_seq;
    Ok((
        Throughput {
            mbps,
            bytes,
            duration_ms: window.as_millis() as u64,
            loaded_rtt: rtt_stats(&prober.rtts(probes.start, probes.end)),
        },
        probes,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a report must never show: Rust debug text.
    fn assert_plain(text: &str) {
        for debug in ["Ok(", "Err(", "Some(", "None", "{", "Timeout", "Connection"] {
            assert!(!text.contains(debug), "debug text {debug:?} in {text:?}");
        }
        assert!(text.contains("; "), "no advice in {text:?}");
    }

    #[test]
    fn an_interrupted_measurement_is_a_gap_in_plain_words() {
        // Today's code printed `the measurement could not start: Ok(None)`.
        let starts: [Result<Option<RelayToAgent>, NetError>; 4] = [
            Ok(None),
            Ok(Some(RelayToAgent::Unknown { tag: 99 })),
            Err(NetError::Timeout),
            Err(NetError::Truncated),
        ];
        for answer in &starts {
            assert_plain(&start_failure(answer));
        }
        let uploads: [Result<Option<MeasureReply>, NetError>; 3] = [
            Ok(None),
            Ok(Some(MeasureReply::Unknown { tag: 7 })),
            Err(NetError::Timeout),
        ];
        for answer in &uploads {
            assert_plain(&upload_answer_gap(answer));
        }
        assert!(upload_answer_gap(&Ok(None)).contains("upload test was interrupted"));
        assert_plain(&interrupted(Direction::Down));
    }

    #[test]
    fn probes_are_spaced_like_audio_packets_within_the_probe_budget() {
        let options = PathOptions::default();
        assert_eq!(options.probe_interval, Duration::from_millis(20));
        assert!(options.probe_interval * options.idle_probes <= Duration::from_secs(1));
    }

    #[test]
    fn rtt_statistics_are_exact_on_known_samples() {
        let stats = rtt_stats(&[10.0, 12.0, 11.0, 30.0, 10.0]).unwrap();
        assert_eq!(stats.samples, 5);
        assert_eq!(stats.min_ms, 10.0);
        assert_eq!(stats.median_ms, 11.0);
        assert_eq!(stats.max_ms, 30.0);
        assert_eq!(stats.p95_ms, 30.0);
        // |12-10| + |11-12| + |30-11| + |10-30| = 2 + 1 + 19 + 20 = 42, / 4
        assert_eq!(stats.jitter_ms, 10.5);
        assert_eq!(rtt_stats(&[]), None);
        assert_eq!(rtt_stats(&[f64::NAN]), None);
        assert_eq!(rtt_stats(&[5.0]).unwrap().jitter_ms, 0.0);
    }
}
