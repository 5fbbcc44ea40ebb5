//! One timeline sample from probes the agent already has: the platform's
//! network, Wi‑Fi and pressure readings, a few probes to the home router,
//! one name lookup, and the presence connection's own QUIC statistics for
//! the relay path (its round trip; sent and lost packets only when no path
//! probes ran: [`with_probes`] puts the probes' loss and jitter in).

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use deskside_diag::snapshot::{InterfaceKind, NetworkConfig};
use deskside_diag::timeline::{
    GatewaySample, LinkKind, Marker, PressureSample, RelaySample, Sample, WifiSample,
};
use deskside_diag::Probe;

use crate::diag::platform::{self, Privacy};

/// Longest wait for the name lookup.
const DNS_TIMEOUT: Duration = Duration::from_secs(2);
/// A wall-clock step this much larger than the monotonic one between two
/// samples means the machine slept (monotonic clocks stop during sleep on
/// Linux and Windows).
const SLEEP_SLACK: Duration = Duration::from_secs(30);
/// Round-trip readings kept between samples (one every few seconds).
const MAX_RTT_READINGS: usize = 64;

/// Interface names of phones and mobile modems sharing their connection
/// (USB tethering, RNDIS, WWAN modems). `enx…` is left out: it is usually
/// a USB Ethernet adapter.
fn is_mobile(name: &str) -> bool {
    ["usb", "rndis", "wwan", "wwp", "rmnet"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// The kind of link the default route leaves through.
pub fn link_kind(network: &NetworkConfig) -> LinkKind {
    let Some(route) = &network.default_route else {
        return LinkKind::None;
    };
    match network
        .interfaces
        .iter()
        .find(|i| i.name == route.interface)
    {
        Some(i) if i.kind == InterfaceKind::Wifi => LinkKind::Wifi,
        Some(i) if is_mobile(&i.name) => LinkKind::Mobile,
        Some(i) if i.kind == InterfaceKind::Ethernet => LinkKind::Ethernet,
        Some(_) => LinkKind::Other,
        None => LinkKind::Unknown,
    }
}

/// Median and mean absolute successive difference of `readings`.
pub fn rtt_summary(readings: &[f32]) -> (Option<f32>, Option<f32>) {
    if readings.is_empty() {
        return (None, None);
    }
    let mut sorted = readings.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let median = sorted[sorted.len() / 2];
    let jitter = (readings.len() > 1).then(|| {
        readings
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .sum::<f32>()
            / (readings.len() - 1) as f32
    });
    (Some(median), jitter)
}

/// What a sampler remembers between samples.
#[derive(Debug)]
pub struct Sampler {
    relay_host: Option<String>,
    relay_ip: Option<IpAddr>,
    system: Arc<Mutex<sysinfo::System>>,
    /// Sent and lost packet counters of the connection at the last sample,
    /// by the connection's stable id (a new connection starts again).
    last_counters: Option<(usize, u64, u64)>,
    rtt_readings: Vec<f32>,
    last_clocks: Option<(i64, Instant)>,
    next_marker: Option<Marker>,
    utc_offset_min: i16,
    offset_read_at: Option<Instant>,
}

/// What the relay path is sampled from: the presence connection's QUIC
/// statistics, or a parked agent's heartbeats ([`crate::park`]).
#[derive(Debug, Clone)]
pub enum RelayPath {
    /// The attached connection.
    Connection(quinn::Connection),
    /// Parked: the heartbeats' round trips and answers.
    Parked(Arc<crate::park::ParkPath>),
}

impl RelayPath {
    /// The current round-trip estimate, if there is one.
    pub fn rtt(&self) -> Option<Duration> {
        match self {
            RelayPath::Connection(connection) => Some(connection.rtt()),
            RelayPath::Parked(path) => path.rtt(),
        }
    }

    /// (which connection or parking, packets sent, packets lost) so far.
    pub fn counters(&self) -> (usize, u64, u64) {
        match self {
            RelayPath::Connection(connection) => {
                let stats = connection.stats();
                (
                    connection.stable_id(),
                    stats.path.sent_packets,
                    stats.path.lost_packets,
                )
            }
            RelayPath::Parked(path) => {
                let (sent, lost) = path.counters();
                (path.id, sent, lost)
            }
        }
    }
}

impl Sampler {
    /// A sampler for the relay at `relay` (`host:port`).
    pub fn new(relay: &str, relay_ip: Option<IpAddr>) -> Sampler {
        Sampler {
            relay_host: crate::diag::dns::host_name(relay),
            relay_ip,
            system: Arc::new(Mutex::new(sysinfo::System::new())),
            last_counters: None,
            rtt_readings: Vec::new(),
            last_clocks: None,
            next_marker: Some(Marker::Started),
            utc_offset_min: 0,
            offset_read_at: None,
        }
    }

    /// Notes the path's current round-trip estimate (called every few
    /// seconds between samples; reading it costs nothing on the wire).
    pub fn note_rtt(&mut self, path: &RelayPath) {
        if self.rtt_readings.len() < MAX_RTT_READINGS {
            if let Some(rtt) = path.rtt() {
                self.rtt_readings.push(rtt.as_secs_f32() * 1000.0);
            }
        }
    }

    /// The next sample is the first of a new monitoring run.
    pub fn restart(&mut self) {
        self.next_marker = Some(Marker::Started);
        self.last_counters = None;
        self.rtt_readings.clear();
    }

    /// The relay path over the interval, from the connection's counters.
    fn relay(&mut self, path: &RelayPath) -> RelaySample {
        self.note_rtt(path);
        let (id, sent, lost) = path.counters();
        let (sent_packets, lost_packets) = match self.last_counters {
            Some((last_id, last_sent, last_lost)) if last_id == id => (
                sent.saturating_sub(last_sent),
                lost.saturating_sub(last_lost),
            ),
            // A new connection: its counters so far.
            _ => (sent, lost),
        };
        self.last_counters = Some((id, sent, lost));
        let (rtt_ms, jitter_ms) = rtt_summary(&self.rtt_readings);
        self.rtt_readings.clear();
        RelaySample {
            rtt_ms,
            jitter_ms,
            sent_packets: u32::try_from(sent_packets).unwrap_or(u32::MAX),
            lost_packets: u32::try_from(lost_packets).unwrap_or(u32::MAX),
        }
    }

    fn marker(&mut self, wall_ms: i64, now: Instant) -> Option<Marker> {
        let mut marker = self.next_marker.take();
        if let Some((last_wall, last_mono)) = self.last_clocks {
            let wall = Duration::from_millis((wall_ms - last_wall).max(0) as u64);
            let mono = now.duration_since(last_mono);
            if wall > mono + SLEEP_SLACK {
                marker = Some(Marker::Resumed {
                    asleep_s: u32::try_from((wall - mono).as_secs()).unwrap_or(u32::MAX),
                });
            }
        }
        self.last_clocks = Some((wall_ms, now));
        marker
    }

    /// Takes one sample. `connection` is the presence connection; `taken`
    /// (wall-clock ms, monotonic) is the sample's time, when its path
    /// probes started (they run meanwhile; [`with_probes`] adds them).
    pub async fn sample(
        &mut self,
        connection: &RelayPath,
        privacy: &Privacy,
        taken: (i64, Instant),
    ) -> Sample {
        let (at_ms, now) = taken;
        let marker = self.marker(at_ms, now);
        if self
            .offset_read_at
            .is_none_or(|at| now.duration_since(at) > Duration::from_secs(3600))
        {
            self.offset_read_at = Some(now);
            self.utc_offset_min = utc_offset_min().await.unwrap_or(0);
        }
        let relay = self.relay(connection);
        let privacy = privacy.clone();
        let relay_ip = self.relay_ip;
        let system = Arc::clone(&self.system);
        let local = tokio::task::spawn_blocking(move || {
            let network = platform::network(relay_ip);
            let wifi = match &network {
                Probe::Measured(network) if link_kind(network) == LinkKind::Wifi => {
                    platform::wifi(network, &privacy)
                }
                _ => Probe::not_applicable("not on Wi‑Fi"),
            };
            let pressure = platform::pressure();
            let mut system = system.lock().unwrap_or_else(PoisonError::into_inner);
            system.refresh_cpu_usage();
            system.refresh_memory();
            let cpu = f64::from(system.global_cpu_usage());
            let total = system.total_memory();
            let available = system.available_memory();
            (network, wifi, pressure, cpu, total, available)
        })
        .await;
        let Ok((network, wifi, pressure, cpu, total, available)) = local else {
            return Sample {
                at_ms,
                utc_offset_min: self.utc_offset_min,
                relay: Some(relay),
                marker,
                ..Sample::default()
            };
        };
        let network = network.value().cloned();
        let link = network.as_ref().map_or(LinkKind::Unknown, link_kind);
        let gateway_ip = network
            .as_ref()
            .and_then(|n| n.default_route.as_ref())
            .and_then(|r| r.gateway.parse::<IpAddr>().ok());
        let gateway = match gateway_ip {
            Some(ip) => match crate::diag::gateway::probe(ip).await {
                Probe::Measured(g) => Some(GatewaySample {
                    sent: u8::try_from(g.sent).unwrap_or(u8::MAX),
                    received: u8::try_from(g.received.min(g.sent)).unwrap_or(u8::MAX),
                    rtt_ms: g.rtt.map(|r| r.median_ms as f32),
                }),
                _ => None,
            },
            None => None,
        };
        let dns_ms = match &self.relay_host {
            Some(name) => {
                let started = Instant::now();
                match tokio::time::timeout(
                    DNS_TIMEOUT,
                    tokio::net::lookup_host((name.as_str(), 443)),
                )
                .await
                {
                    Ok(Ok(_)) => Some(started.elapsed().as_secs_f32() * 1000.0),
                    // No answer in time is a very slow lookup.
                    Err(_) => Some(DNS_TIMEOUT.as_secs_f32() * 1000.0),
                    Ok(Err(_)) => None,
                }
            }
            None => None,
        };
        let psi = pressure.value();
        Sample {
            at_ms,
            utc_offset_min: self.utc_offset_min,
            link,
            wifi: wifi.value().map(|w| WifiSample {
                signal_dbm: w.signal_dbm.map(|v| v as f32),
                noise_dbm: w.noise_dbm.map(|v| v as f32),
                tx_rate_mbps: w.tx_bitrate_mbps.map(|v| v as f32),
                rx_rate_mbps: w.rx_bitrate_mbps.map(|v| v as f32),
                retries_percent: w.tx_retries_percent.map(|v| v as f32),
                access_point: w.bssid.clone(),
                band: w.band,
            }),
            vpn_up: network.as_ref().map(|n| !n.vpn_interfaces.is_empty()),
            gateway,
            relay: Some(relay),
            dns_ms,
            pressure: Some(PressureSample {
                cpu_usage_percent: Some(cpu as f32).filter(|v| v.is_finite()),
                cpu_some_avg60: psi.and_then(|p| p.cpu_some_avg60).map(|v| v as f32),
                memory_available_percent: (total > 0)
                    .then(|| (100.0 * available as f64 / total as f64) as f32),
                memory_full_avg10: psi.and_then(|p| p.memory_full_avg10).map(|v| v as f32),
            }),
            marker,
        }
    }
}

/// The local offset from UTC in minutes, from `date +%z` (read hourly, so
/// a change to or from summer time is followed). `None` where there is no
/// such command (Windows): samples then say UTC.
async fn utc_offset_min() -> Option<i16> {
    if !cfg!(unix) {
        return None;
    }
    let output = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::process::Command::new("date").arg("+%z").output(),
    )
    .await
    .ok()?
    .ok()?;
    parse_offset(std::str::from_utf8(&output.stdout).ok()?)
}

/// `+0130` → 90, `-0500` → −300.
pub fn parse_offset(text: &str) -> Option<i16> {
    let text = text.trim();
    let (sign, digits) = match text.split_at_checked(1)? {
        ("+", d) => (1, d),
        ("-", d) => (-1, d),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i16 = digits[..2].parse().ok()?;
    let minutes: i16 = digits[2..].parse().ok()?;
    (hours <= 14 && minutes < 60).then_some(sign * (hours * 60 + minutes))
}

/// The relay path with a probe burst's reading: with probes, the loss is
/// theirs (sent, not echoed: lost out or back) and so is the jitter (the
/// RFC 3550 interarrival jitter of probes 20 ms apart, as a call's audio
/// meets it, when at least two came back: [`ProbeBurst::jitter_ms`], the
/// snapshot's own arithmetic).
///
/// [`ProbeBurst::jitter_ms`]: deskside_net::tunnel::ProbeBurst::jitter_ms
/// QUIC's own count is only the fallback: it declares a packet lost a few
/// round trips late, so losses of the interval before spill into the next
/// sample and an episode would end one sample late.
///
/// The round trip is the echoes' median too: it is this moment's path.
/// QUIC's smoothed estimate moves an eighth of the way per acknowledgement
/// (RFC 9002) and is read before the burst, so a queue that filled since
/// the previous sample would show one sample late, and one that emptied
/// would linger.
pub(crate) fn with_probes(
    mut relay: RelaySample,
    burst: Option<&deskside_net::tunnel::ProbeBurst>,
) -> RelaySample {
    let Some(burst) = burst.filter(|b| b.sent > 0) else {
        return relay;
    };
    relay.sent_packets = burst.sent;
    relay.lost_packets = burst.lost;
    let round_trips: Vec<f32> = burst
        .echoes
        .iter()
        .map(|e| (e.arrived_ms - e.sent_ms) as f32)
        .collect();
    if let (Some(median), _) = rtt_summary(&round_trips) {
        relay.rtt_ms = Some(median);
    }
    if let Some(jitter) = burst.jitter_ms() {
        relay.jitter_ms = Some(jitter as f32);
    }
    relay
}

#[cfg(test)]
mod tests {
    use super::*;
    use deskside_diag::measure::ProbeTiming;
    use deskside_diag::snapshot::{DefaultRoute, Interface};
    use deskside_net::tunnel::ProbeBurst;

    /// Echoes of probes sent 20 ms apart, with these round trips.
    fn burst(sent: u32, lost: u32, rtts_ms: &[f64]) -> ProbeBurst {
        let echoes: Vec<ProbeTiming> = rtts_ms
            .iter()
            .enumerate()
            .map(|(i, rtt)| {
                let sent_ms = i as f64 * 20.0;
                ProbeTiming {
                    sent_ms,
                    arrived_ms: sent_ms + rtt,
                }
            })
            .collect();
        ProbeBurst { sent, lost, echoes }
    }

    #[test]
    fn probes_give_the_loss_and_the_jitter() {
        let quic = RelaySample {
            rtt_ms: Some(20.0),
            jitter_ms: Some(0.5),
            sent_packets: 3,
            lost_packets: 0,
        };
        // 4 of 20 probes unanswered: worse than QUIC's 0 of 3. Transit
        // differences 4 and 4: J = 4/16, then + (4 − J)/16 (RFC 3550).
        let merged = with_probes(quic.clone(), Some(&burst(20, 4, &[20.0, 24.0, 20.0])));
        assert_eq!((merged.sent_packets, merged.lost_packets), (20, 4));
        assert_eq!(merged.jitter_ms, Some(0.484375));
        assert_eq!(merged.rtt_ms, Some(20.0));
        // The round trip is the echoes' median, not QUIC's older estimate:
        // a queue that filled since shows at once.
        let queued = with_probes(quic.clone(), Some(&burst(20, 0, &[95.0, 101.0, 97.0])));
        assert_eq!(queued.rtt_ms, Some(97.0));
        // QUIC's late count of an earlier loss does not count.
        let late = RelaySample {
            lost_packets: 2,
            ..quic.clone()
        };
        let merged = with_probes(late, Some(&burst(20, 0, &[20.0; 20])));
        assert_eq!((merged.sent_packets, merged.lost_packets), (20, 0));
        assert_eq!(merged.jitter_ms, Some(0.0));
        // No burst (no carrier): QUIC's reading unchanged.
        assert_eq!(with_probes(quic.clone(), None), quic);
    }

    #[test]
    fn the_probes_jitter_is_rfc3550s_not_the_mean_successive_difference() {
        let quic = RelaySample {
            rtt_ms: Some(30.0),
            jitter_ms: None,
            sent_packets: 3,
            lost_packets: 0,
        };
        // One queue spike early in the burst (15 ms, less than the
        // spacing, so the echoes stay in order), then a steady path: every
        // successive difference averaged gives (15 + 15) / 19 = 1.6 ms,
        // while RFC 3550's running estimate (J += (|D| − J) / 16) has
        // mostly forgotten the spike by the last probe (0.6 ms).
        let mut rtts = vec![30.0; 20];
        rtts[1] = 45.0;
        let expected = {
            let mut j = 0.0_f64;
            for d in [15.0, 15.0].into_iter().chain([0.0; 17]) {
                j += (d - j) / 16.0;
            }
            j
        };
        let merged = with_probes(quic.clone(), Some(&burst(20, 0, &rtts)));
        let jitter = f64::from(merged.jitter_ms.unwrap());
        assert!((jitter - expected).abs() < 1e-4, "{jitter} vs {expected}");
        assert!(jitter < 1.0, "{jitter}: the mean difference would be 1.6");
        // A swing on every probe (30/50 ms): RFC 3550 climbs towards 20 ms
        // (1 − (15/16)^19 of it, 14.1 ms); the mean difference says 20.
        let swinging: Vec<f64> = (0..20)
            .map(|i| if i % 2 == 0 { 30.0 } else { 50.0 })
            .collect();
        let merged = with_probes(quic, Some(&burst(20, 0, &swinging)));
        let jitter = f64::from(merged.jitter_ms.unwrap());
        let expected = 20.0 * (1.0 - (15.0_f64 / 16.0).powi(19));
        assert!((jitter - expected).abs() < 1e-4, "{jitter} vs {expected}");
    }

    #[test]
    fn offsets_parse_as_date_prints_them() {
        // (text, minutes)
        for (text, expected) in [
            ("+0000\n", Some(0)),
            ("+0100", Some(60)),
            ("+0530", Some(330)),
            ("-0500", Some(-300)),
            ("0100", None),
            ("+1", None),
            ("+99xx", None),
        ] {
            assert_eq!(parse_offset(text), expected, "{text:?}");
        }
    }

    #[test]
    fn jitter_is_the_mean_difference_between_successive_readings() {
        assert_eq!(rtt_summary(&[]), (None, None));
        assert_eq!(rtt_summary(&[30.0]), (Some(30.0), None));
        // Differences 10, 20, 10 → 13.3; median of 20, 30, 50, 40 → 40.
        let (median, jitter) = rtt_summary(&[20.0, 30.0, 50.0, 40.0]);
        assert_eq!(median, Some(40.0));
        assert!((jitter.unwrap() - 40.0 / 3.0).abs() < 1e-4);
    }

    #[test]
    fn the_link_is_the_default_routes_interface() {
        let interface = |name: &str, kind| Interface {
            name: name.to_owned(),
            kind,
            up: true,
            ..Interface::default()
        };
        let network = |route: Option<&str>| NetworkConfig {
            interfaces: vec![
                interface("wlan0", InterfaceKind::Wifi),
                interface("eth0", InterfaceKind::Ethernet),
                interface("usb0", InterfaceKind::Other),
                interface("wg0", InterfaceKind::Vpn),
            ],
            default_route: route.map(|interface| DefaultRoute {
                interface: interface.to_owned(),
                gateway: "192.168.1.1".to_owned(),
            }),
            ..NetworkConfig::default()
        };
        // (route interface, link)
        for (route, expected) in [
            (Some("wlan0"), LinkKind::Wifi),
            (Some("eth0"), LinkKind::Ethernet),
            (Some("usb0"), LinkKind::Mobile),
            (Some("wg0"), LinkKind::Other),
            (Some("gone0"), LinkKind::Unknown),
            (None, LinkKind::None),
        ] {
            assert_eq!(link_kind(&network(route)), expected, "{route:?}");
        }
    }

    #[test]
    fn a_wall_clock_jump_beyond_the_monotonic_one_is_a_resume() {
        let mut sampler = Sampler::new("127.0.0.1:4433", None);
        let now = Instant::now();
        assert_eq!(sampler.marker(1_000_000, now), Some(Marker::Started));
        // One minute later on both clocks: nothing.
        let later = now + Duration::from_secs(60);
        assert_eq!(sampler.marker(1_060_000, later), None);
        // The wall clock moved an hour more than the monotonic one.
        let after_sleep = later + Duration::from_secs(60);
        assert_eq!(
            sampler.marker(1_060_000 + 3_660_000, after_sleep),
            Some(Marker::Resumed { asleep_s: 3600 })
        );
    }
}
