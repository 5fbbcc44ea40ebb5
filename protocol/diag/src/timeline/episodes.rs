//! Samples → episodes: a metric beyond its threshold for a while, with
//! hysteresis, attributed to a segment by the snapshot classifier's path
//! order.
//!
//! # Hysteresis
//!
//! Each sample gives each metric a reading: *bad* (beyond the classifier's
//! threshold), *clear* (back inside it with a margin), *between* (inside the
//! threshold but not by the margin) or *unknown*. An episode opens after
//! [`EpisodeRules::min_bad_samples`] bad readings in a row and starts at the
//! first of them; it closes after [`EpisodeRules::min_good_samples`] clear
//! readings in a row and ends at the first of those. So one bad sample is
//! not an episode, a value hovering at the threshold neither opens nor
//! closes one, and start and end are exact to one sample interval. Unknown
//! readings neither open nor close anything. A gap in the samples (the agent
//! stopped, the machine slept) closes an open episode where the samples
//! stopped.
//!
//! Loss is only bad when enough packets were lost to say so
//! ([`EpisodeRules::min_lost_packets`]): one packet of twenty lost in a
//! minute is 5 %, but it is noise, not an episode.
//!
//! The round trip to the relay is bad beyond the classifier's limit
//! (`path_rtt_ms`) *or* beyond the path's own floor by the latency a bloated
//! queue adds at the bufferbloat warning grade (`bufferbloat_grade`, C:
//! 60 ms). The floor is the lowest round trip of the previous
//! [`EpisodeRules::rtt_floor_samples`] samples on the same link and
//! connection run (a link change, a restart or a gap starts a new floor).
//! Without it a queue filling behind an upload on a short path is invisible:
//! a 15 ms path with 70 ms queued reads 85 ms, under the 100 ms limit.
//!
//! # Attribution
//!
//! Each metric sits at a [`Stage`] of the path. An episode is attributed to
//! the segment of its own stage unless a problem episode upstream (in the
//! same order as [`crate::verdict`]: link → gateway → configuration → ISP)
//! covers at least [`EpisodeRules::explain_overlap`] of its time: then it is
//! attributed to that upstream segment, with [`Confidence::Low`] for its own
//! stage and the upstream episodes named in `explained_by`. So relay loss
//! while the home router also loses probes is the home network, not the
//! ISP.

use serde::{Deserialize, Serialize};

use super::sample::{LinkKind, Marker, Sample};
use crate::snapshot::Grade;
use crate::thresholds::Thresholds;
use crate::verdict::{Confidence, Evidence, EvidenceValue, Segment, Severity, Stage, Text};

/// How episodes are cut from samples. Thresholds come from
/// [`Thresholds`]; these are the timeline's own choices, each explained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EpisodeRules {
    /// Bad readings in a row that open an episode. Default 2: at one sample
    /// a minute, a problem must last about two minutes, which is what a
    /// call notices; one bad minute is noise.
    pub min_bad_samples: u32,
    /// Clear readings in a row that close an episode. Default 2, so that an
    /// episode flapping around its threshold stays one episode.
    pub min_good_samples: u32,
    /// Fewest lost packets or probes in one sample for loss to count as bad.
    /// Default 2 for the relay path (16 path probes a sample, or without
    /// them QUIC's own count of the agent's packets); the gateway uses 1
    /// because it sends only a few probes.
    pub min_lost_packets: u32,
    /// A hole longer than this many sample intervals is a gap (the agent
    /// stopped or the machine slept). Default 2.5.
    pub gap_intervals: f64,
    /// For metrics that are bad *above* a threshold, the reading is clear
    /// again at or below this share of it. Default 0.8 (a 100 ms limit
    /// clears at 80 ms).
    pub clear_fraction: f64,
    /// For the Wi‑Fi signal, dB above the weak threshold at which the
    /// signal is clear again. Default 3 dB (a third of the weak band's
    /// width, above the ±2 dB a still laptop's readings wander).
    pub signal_clear_margin_db: f64,
    /// Share of an episode's time an upstream episode must cover to explain
    /// it. Default 0.5.
    pub explain_overlap: f64,
    /// Samples before each one whose lowest relay round trip is the path's
    /// floor, from which latency added by a queue (bufferbloat) is
    /// counted. Default 240: four hours at one sample a minute, longer than
    /// an evening's congestion, so a long episode does not become its own
    /// floor and end early.
    pub rtt_floor_samples: u32,
    /// Distinct days an episode must start at about the same local time to
    /// be a daily recurrence. Default 3.
    pub daily_min_days: u32,
    /// How far apart, in minutes, episode starts may be and still count as
    /// "the same time of day". Default 60.
    pub daily_window_min: u32,
    /// Fewest episodes for a regular period to be recognised. Default 4.
    pub periodic_min_episodes: u32,
    /// How far the gaps between starts may stray from their median and
    /// still count as regular, as a share of the median. Default 0.2.
    pub periodic_tolerance: f64,
}

impl Default for EpisodeRules {
    fn default() -> Self {
        EpisodeRules {
            min_bad_samples: 2,
            min_good_samples: 2,
            min_lost_packets: 2,
            gap_intervals: 2.5,
            clear_fraction: 0.8,
            signal_clear_margin_db: 3.0,
            explain_overlap: 0.5,
            rtt_floor_samples: 240,
            daily_min_days: 3,
            daily_window_min: 60,
            periodic_min_episodes: 4,
            periodic_tolerance: 0.2,
        }
    }
}

/// What an episode is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Processor saturated.
    CpuBusy,
    /// Memory short.
    MemoryShort,
    /// Wi‑Fi signal weak.
    WifiSignal,
    /// Wi‑Fi retries high.
    WifiRetries,
    /// Probes to the home router lost.
    GatewayLoss,
    /// Home router slow to answer.
    GatewayRtt,
    /// Name resolution slow.
    DnsSlow,
    /// The VPN went down after having been up.
    VpnDown,
    /// Packets to the relay lost.
    RelayLoss,
    /// Round trip to the relay long.
    RelayRtt,
    /// Round trip to the relay unsteady.
    RelayJitter,
}

/// Every metric, in path order.
pub const METRICS: [Metric; 11] = [
    Metric::CpuBusy,
    Metric::MemoryShort,
    Metric::WifiSignal,
    Metric::WifiRetries,
    Metric::GatewayLoss,
    Metric::GatewayRtt,
    Metric::DnsSlow,
    Metric::VpnDown,
    Metric::RelayLoss,
    Metric::RelayRtt,
    Metric::RelayJitter,
];

impl Metric {
    /// Stable identifier, e.g. `relay.loss`.
    pub fn id(self) -> &'static str {
        match self {
            Metric::CpuBusy => "device.cpu_busy",
            Metric::MemoryShort => "device.memory_short",
            Metric::WifiSignal => "wifi.signal",
            Metric::WifiRetries => "wifi.retries",
            Metric::GatewayLoss => "gateway.loss",
            Metric::GatewayRtt => "gateway.rtt",
            Metric::DnsSlow => "dns.slow",
            Metric::VpnDown => "vpn.down",
            Metric::RelayLoss => "relay.loss",
            Metric::RelayRtt => "relay.rtt",
            Metric::RelayJitter => "relay.jitter",
        }
    }

    /// Where along the path it is measured.
    pub fn stage(self) -> Stage {
        match self {
            Metric::CpuBusy | Metric::MemoryShort => Stage::Device,
            Metric::WifiSignal | Metric::WifiRetries => Stage::Link,
            Metric::GatewayLoss | Metric::GatewayRtt => Stage::Gateway,
            Metric::DnsSlow | Metric::VpnDown => Stage::Configuration,
            Metric::RelayLoss | Metric::RelayRtt | Metric::RelayJitter => Stage::Isp,
        }
    }

    /// The upstream stages whose episodes can explain this one (the same
    /// table as the snapshot classifier's rules: timing on the path can
    /// also come from a saturated processor).
    pub fn upstream(self) -> &'static [Stage] {
        match self {
            Metric::CpuBusy | Metric::MemoryShort | Metric::WifiSignal | Metric::WifiRetries => &[],
            Metric::GatewayLoss | Metric::GatewayRtt => &[Stage::Link],
            Metric::DnsSlow | Metric::VpnDown | Metric::RelayLoss => &[Stage::Link, Stage::Gateway],
            Metric::RelayRtt | Metric::RelayJitter => &[Stage::Device, Stage::Link, Stage::Gateway],
        }
    }

    /// One-line description, English and French.
    pub fn title(self) -> Text {
        let (en, fr) = match self {
            Metric::CpuBusy => ("The processor was saturated", "Le processeur était saturé"),
            Metric::MemoryShort => ("Memory was short", "La mémoire manquait"),
            Metric::WifiSignal => ("The Wi‑Fi signal was weak", "Le signal Wi‑Fi était faible"),
            Metric::WifiRetries => (
                "Wi‑Fi frames needed many retries",
                "Les trames Wi‑Fi étaient souvent réémises",
            ),
            Metric::GatewayLoss => ("The home router lost probes", "La box perdait des sondes"),
            Metric::GatewayRtt => (
                "The home router answered slowly",
                "La box répondait lentement",
            ),
            Metric::DnsSlow => (
                "Name resolution (DNS) was slow",
                "La résolution de noms (DNS) était lente",
            ),
            Metric::VpnDown => ("The VPN was down", "Le VPN était coupé"),
            Metric::RelayLoss => (
                "Packets to the relay were lost",
                "Des paquets vers le relais se perdaient",
            ),
            Metric::RelayRtt => (
                "The round trip to the relay was long",
                "L'aller-retour vers le relais était long",
            ),
            Metric::RelayJitter => (
                "The round trip to the relay was unsteady (jitter)",
                "L'aller-retour vers le relais était irrégulier (gigue)",
            ),
        };
        Text::new(en, fr)
    }

    /// Hysteresis overrides: a VPN's state is a fact, not a noisy
    /// measurement, so one sample of it down (after it was up) is enough.
    fn runs(self, rules: &EpisodeRules) -> (u32, u32) {
        match self {
            Metric::VpnDown => (1, 1),
            _ => (rules.min_bad_samples.max(1), rules.min_good_samples.max(1)),
        }
    }
}

/// One metric's verdict on one sample.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Reading {
    /// Beyond the threshold.
    Bad {
        value: f64,
        severity: Severity,
        evidence_metric: &'static str,
        threshold: String,
    },
    /// Inside the threshold, by the clearing margin.
    Clear,
    /// Inside the threshold but not by the margin.
    Between,
    /// Not measured.
    Unknown,
}

/// A metric beyond its threshold for a while.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// The metric's identifier, e.g. `relay.loss`.
    pub id: String,
    /// The metric.
    pub metric: Metric,
    /// Where the metric is measured.
    pub stage: Stage,
    /// The segment the episode is attributed to (its own stage's, or an
    /// upstream one that explains it).
    pub segment: Segment,
    /// The worst severity seen.
    pub severity: Severity,
    /// How sure the attribution to its own stage is: low when an upstream
    /// episode explains it.
    pub confidence: Confidence,
    /// One-line description.
    pub title: Text,
    /// The first bad sample's time, ms since the Unix epoch.
    pub start_ms: i64,
    /// The first clear sample's time (or where the samples stopped); `None`
    /// while it is still going at the end of the samples.
    pub end_ms: Option<i64>,
    /// Bad samples inside it.
    pub bad_samples: u32,
    /// The worst value and the threshold it crossed.
    pub evidence: Vec<Evidence>,
    /// The Wi‑Fi access point at its start, when on Wi‑Fi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_point: Option<String>,
    /// Upstream episodes that explain it, as `id@start_ms`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub explained_by: Vec<String>,
}

impl Episode {
    /// `id@start_ms`: names this episode in other episodes' `explained_by`.
    pub fn key(&self) -> String {
        format!("{}@{}", self.id, self.start_ms)
    }

    /// End for overlap arithmetic: the end, or `open_until_ms` when it is
    /// still going.
    pub fn end_or(&self, open_until_ms: i64) -> i64 {
        self.end_ms.unwrap_or(open_until_ms)
    }
}

/// Something that happened at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// The Wi‑Fi moved to another access point.
    Roam {
        /// The access point before.
        from: String,
        /// The access point after.
        to: String,
    },
    /// Another link took the traffic (Wi‑Fi → Ethernet…).
    LinkChange {
        /// Before.
        from: LinkKind,
        /// After.
        to: LinkKind,
    },
    /// The agent started monitoring.
    Started,
    /// The machine woke up after sleeping.
    Resumed {
        /// Seconds asleep.
        asleep_s: u32,
    },
    /// No samples for a while (agent stopped, machine off or asleep).
    Gap {
        /// Where the samples resumed, ms since the Unix epoch.
        until_ms: i64,
    },
}

/// An event and its time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When, ms since the Unix epoch.
    pub at_ms: i64,
    /// What.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Reads `metric` in `sample`. `vpn_was_up` says whether the VPN was seen
/// up earlier in the series; `rtt_floor_ms` is the lowest relay round trip
/// of the samples before ([`RttFloor`]), `None` when there were none.
pub(crate) fn read(
    metric: Metric,
    sample: &Sample,
    vpn_was_up: bool,
    rtt_floor_ms: Option<f64>,
    t: &Thresholds,
    rules: &EpisodeRules,
) -> Reading {
    match metric {
        Metric::CpuBusy => {
            let Some(p) = &sample.pressure else {
                return Reading::Unknown;
            };
            if let Some(psi) = finite(p.cpu_some_avg60) {
                above(
                    psi,
                    t.cpu_pressure_some_avg60_percent,
                    None,
                    "pressure.cpu_some_avg60",
                    "%",
                    rules,
                )
            } else if let Some(usage) = finite(p.cpu_usage_percent) {
                above(
                    usage,
                    t.cpu_usage_percent,
                    None,
                    "cpu.usage_percent",
                    "%",
                    rules,
                )
            } else {
                Reading::Unknown
            }
        }
        Metric::MemoryShort => {
            let Some(p) = &sample.pressure else {
                return Reading::Unknown;
            };
            if let Some(psi) = finite(p.memory_full_avg10) {
                above(
                    psi,
                    t.memory_pressure_full_avg10_percent,
                    None,
                    "pressure.memory_full_avg10",
                    "%",
                    rules,
                )
            } else if let Some(available) = finite(p.memory_available_percent) {
                below(
                    available,
                    t.memory_available_percent,
                    None,
                    t.memory_available_percent * 1.5,
                    "memory.available_percent",
                    "%",
                )
            } else {
                Reading::Unknown
            }
        }
        Metric::WifiSignal => {
            let Some(signal) = sample.wifi.as_ref().and_then(|w| finite(w.signal_dbm)) else {
                return Reading::Unknown;
            };
            below(
                signal,
                t.wifi_signal_weak_dbm,
                Some(t.wifi_signal_unusable_dbm),
                t.wifi_signal_weak_dbm + rules.signal_clear_margin_db,
                "wifi.signal_dbm",
                "dBm",
            )
        }
        Metric::WifiRetries => {
            let Some(retries) = sample.wifi.as_ref().and_then(|w| finite(w.retries_percent)) else {
                return Reading::Unknown;
            };
            above(
                retries,
                t.wifi_retries_percent,
                None,
                "wifi.retries_percent",
                "%",
                rules,
            )
        }
        Metric::GatewayLoss => {
            let Some(g) = &sample.gateway else {
                return Reading::Unknown;
            };
            if g.sent == 0 || g.received > g.sent {
                return Reading::Unknown;
            }
            let lost = u32::from(g.sent - g.received);
            let loss = 100.0 * f64::from(lost) / f64::from(g.sent);
            loss_reading(
                loss,
                lost,
                1,
                t.gateway_loss_percent,
                t.gateway_loss_critical_percent,
                "gateway.loss_percent",
            )
        }
        Metric::GatewayRtt => match sample.gateway.as_ref().and_then(|g| finite(g.rtt_ms)) {
            Some(rtt) => above(rtt, t.gateway_rtt_ms, None, "gateway.rtt_ms", "ms", rules),
            None => Reading::Unknown,
        },
        Metric::DnsSlow => match finite(sample.dns_ms) {
            Some(ms) => above(ms, t.dns_slow_ms, None, "dns.lookup_ms", "ms", rules),
            None => Reading::Unknown,
        },
        Metric::VpnDown => match sample.vpn_up {
            Some(false) if vpn_was_up => Reading::Bad {
                value: 0.0,
                severity: Severity::Warning,
                evidence_metric: "vpn.up",
                threshold: "down after being up".to_owned(),
            },
            Some(_) => Reading::Clear,
            None => Reading::Unknown,
        },
        Metric::RelayLoss => {
            let Some(r) = &sample.relay else {
                return Reading::Unknown;
            };
            let Some(loss) = r.loss_percent() else {
                return Reading::Unknown;
            };
            loss_reading(
                loss,
                r.lost_packets.min(r.sent_packets),
                rules.min_lost_packets,
                t.path_loss_percent,
                t.path_loss_critical_percent,
                "relay.loss_percent",
            )
        }
        Metric::RelayRtt => match sample.relay.as_ref().and_then(|r| finite(r.rtt_ms)) {
            Some(rtt) => relay_rtt(rtt, rtt_floor_ms, t, rules),
            None => Reading::Unknown,
        },
        Metric::RelayJitter => match sample.relay.as_ref().and_then(|r| finite(r.jitter_ms)) {
            Some(jitter) => above(
                jitter,
                t.path_jitter_ms,
                None,
                "relay.jitter_ms",
                "ms",
                rules,
            ),
            None => Reading::Unknown,
        },
    }
}

/// The relay round trip's reading: beyond the absolute limit, or beyond
/// the floor plus the latency of the warning grade (critical: of the
/// critical grade), whichever is lower. The evidence stays the round trip;
/// its threshold says when the floor set it.
fn relay_rtt(rtt: f64, floor: Option<f64>, t: &Thresholds, rules: &EpisodeRules) -> Reading {
    // Whole milliseconds: the threshold reads "> 61 ms", not "> 60.93…".
    let floor = floor.filter(|f| f.is_finite() && *f >= 0.0).map(f64::round);
    // (limit, the grade when the floor set it)
    let limit = |absolute: f64, grade: Grade| match floor {
        Some(f) if f + grade.least_added_ms() < absolute => {
            (f + grade.least_added_ms(), Some(grade))
        }
        _ => (absolute, None),
    };
    let (warning, warning_grade) = limit(t.path_rtt_ms, t.bufferbloat_grade);
    let (critical, critical_grade) = limit(t.path_rtt_critical_ms, t.bufferbloat_critical_grade);
    match above(rtt, warning, Some(critical), "relay.rtt_ms", "ms", rules) {
        Reading::Bad {
            value,
            severity,
            evidence_metric,
            threshold,
        } => {
            let grade = if severity == Severity::Critical {
                critical_grade
            } else {
                warning_grade
            };
            let threshold = match (grade, floor) {
                (Some(grade), Some(floor)) => format!(
                    "{threshold}: the path's usual {} ms + {} ms queued (bufferbloat grade {})",
                    number(floor),
                    number(grade.least_added_ms()),
                    grade.name()
                ),
                _ => threshold,
            };
            Reading::Bad {
                value,
                severity,
                evidence_metric,
                threshold,
            }
        }
        other => other,
    }
}

/// The lowest relay round trip of the last `window` samples (a sliding
/// minimum, amortised O(1) a sample): what the path does when no queue is
/// filling.
pub(crate) struct RttFloor {
    window: u64,
    seen: u64,
    /// (sample index, round trip), the round trips increasing: each is the
    /// floor once those before it have left the window.
    candidates: std::collections::VecDeque<(u64, f64)>,
}

impl RttFloor {
    pub(crate) fn new(window: u32) -> RttFloor {
        RttFloor {
            window: u64::from(window.max(1)),
            seen: 0,
            candidates: std::collections::VecDeque::new(),
        }
    }

    /// The floor of the samples pushed so far (within the window).
    pub(crate) fn floor(&self) -> Option<f64> {
        self.candidates.front().map(|(_, rtt)| *rtt)
    }

    /// Counts `sample` (one sample more, with or without a round trip).
    pub(crate) fn push(&mut self, sample: &Sample) {
        self.seen += 1;
        while self
            .candidates
            .front()
            .is_some_and(|(at, _)| at + self.window <= self.seen)
        {
            self.candidates.pop_front();
        }
        if let Some(rtt) = sample.relay.as_ref().and_then(|r| finite(r.rtt_ms)) {
            while self.candidates.back().is_some_and(|(_, r)| *r >= rtt) {
                self.candidates.pop_back();
            }
            self.candidates.push_back((self.seen, rtt));
        }
    }

    /// Forgets the floor: the path may have changed.
    pub(crate) fn reset(&mut self) {
        self.candidates.clear();
    }
}

fn finite(value: Option<f32>) -> Option<f64> {
    value.map(f64::from).filter(|v| v.is_finite())
}

fn above(
    value: f64,
    limit: f64,
    critical: Option<f64>,
    evidence_metric: &'static str,
    unit: &str,
    rules: &EpisodeRules,
) -> Reading {
    if value > limit {
        let (severity, shown) = match critical {
            Some(c) if value > c => (Severity::Critical, c),
            _ => (Severity::Warning, limit),
        };
        Reading::Bad {
            value,
            severity,
            evidence_metric,
            threshold: format!("> {} {unit}", number(shown)),
        }
    } else if value <= limit * rules.clear_fraction {
        Reading::Clear
    } else {
        Reading::Between
    }
}

fn below(
    value: f64,
    limit: f64,
    critical: Option<f64>,
    clear_at: f64,
    evidence_metric: &'static str,
    unit: &str,
) -> Reading {
    if value < limit {
        let (severity, shown) = match critical {
            Some(c) if value < c => (Severity::Critical, c),
            _ => (Severity::Warning, limit),
        };
        Reading::Bad {
            value,
            severity,
            evidence_metric,
            threshold: format!("< {} {unit}", number(shown)),
        }
    } else if value >= clear_at {
        Reading::Clear
    } else {
        Reading::Between
    }
}

fn loss_reading(
    loss: f64,
    lost: u32,
    min_lost: u32,
    limit: f64,
    critical: f64,
    evidence_metric: &'static str,
) -> Reading {
    if loss > limit && lost >= min_lost {
        let (severity, shown) = if loss > critical {
            (Severity::Critical, critical)
        } else {
            (Severity::Warning, limit)
        };
        Reading::Bad {
            value: loss,
            severity,
            evidence_metric,
            threshold: format!("> {} %", number(shown)),
        }
    } else if loss <= limit || lost == 0 {
        Reading::Clear
    } else {
        // Beyond the limit by too few packets to say: keeps an open episode
        // open, opens none.
        Reading::Between
    }
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

/// The usual spacing of the samples: the median of the positive
/// differences between consecutive times; 60 s when it cannot be told.
pub fn sample_interval_ms(samples: &[Sample]) -> i64 {
    let mut diffs: Vec<i64> = samples
        .windows(2)
        .map(|w| w[1].at_ms - w[0].at_ms)
        .filter(|d| *d > 0)
        .collect();
    if diffs.is_empty() {
        return 60_000;
    }
    diffs.sort_unstable();
    diffs[diffs.len() / 2]
}

/// An episode being built: a run of bad readings, confirmed once it is
/// [`EpisodeRules::min_bad_samples`] long.
struct Open {
    confirmed: bool,
    start_ms: i64,
    bad_samples: u32,
    worst: f64,
    severity: Severity,
    evidence_metric: &'static str,
    threshold: String,
    access_point: Option<String>,
    good_run: u32,
    first_good_ms: i64,
}

/// Cuts `samples` (sorted by time) into episodes of `metric`, not yet
/// attributed (segment = own stage's).
pub(crate) fn episodes_of(
    metric: Metric,
    samples: &[Sample],
    interval_ms: i64,
    t: &Thresholds,
    rules: &EpisodeRules,
) -> Vec<Episode> {
    let (min_bad, min_good) = metric.runs(rules);
    let gap_ms = (interval_ms as f64 * rules.gap_intervals) as i64;
    let lower_is_worse = matches!(metric, Metric::WifiSignal | Metric::MemoryShort);
    let mut out = Vec::new();
    let mut current: Option<Open> = None;
    let mut vpn_was_up = false;
    let mut rtt_floor = RttFloor::new(rules.rtt_floor_samples);
    let mut previous: Option<&Sample> = None;
    for sample in samples {
        // A new link or connection run may be another path: a new floor.
        if matches!(sample.marker, Some(Marker::Started))
            || previous.is_some_and(|p| {
                let known = |l: LinkKind| l != LinkKind::Unknown;
                known(p.link) && known(sample.link) && p.link != sample.link
            })
        {
            rtt_floor.reset();
        }
        if let Some(previous) = previous.map(|p| p.at_ms) {
            if sample.at_ms - previous > gap_ms {
                // The samples stopped: an episode ends where they did (or
                // at its first clear reading, if one came).
                if let Some(open) = current.take().filter(|o| o.confirmed) {
                    let end = if open.good_run > 0 {
                        open.first_good_ms
                    } else {
                        previous + interval_ms
                    };
                    out.push(finish(metric, open, Some(end)));
                }
                vpn_was_up = false;
                rtt_floor.reset();
            }
        }
        previous = Some(sample);
        let reading = read(metric, sample, vpn_was_up, rtt_floor.floor(), t, rules);
        if sample.vpn_up == Some(true) {
            vpn_was_up = true;
        }
        rtt_floor.push(sample);
        match reading {
            Reading::Unknown => {}
            Reading::Bad {
                value,
                severity,
                evidence_metric,
                threshold,
            } => match &mut current {
                Some(open) => {
                    open.good_run = 0;
                    open.bad_samples += 1;
                    let worse = if lower_is_worse {
                        value < open.worst
                    } else {
                        value > open.worst
                    };
                    if worse {
                        open.worst = value;
                        open.evidence_metric = evidence_metric;
                    }
                    if severity > open.severity {
                        open.severity = severity;
                        open.threshold = threshold;
                    }
                    if open.bad_samples >= min_bad {
                        open.confirmed = true;
                    }
                }
                None => {
                    current = Some(Open {
                        confirmed: min_bad <= 1,
                        start_ms: sample.at_ms,
                        bad_samples: 1,
                        worst: value,
                        severity,
                        evidence_metric,
                        threshold,
                        access_point: access_point(sample),
                        good_run: 0,
                        first_good_ms: 0,
                    });
                }
            },
            Reading::Clear => {
                if let Some(open) = current.as_mut().filter(|o| o.confirmed) {
                    if open.good_run == 0 {
                        open.first_good_ms = sample.at_ms;
                    }
                    open.good_run += 1;
                    if open.good_run >= min_good {
                        let end = open.first_good_ms;
                        if let Some(open) = current.take() {
                            out.push(finish(metric, open, Some(end)));
                        }
                    }
                } else {
                    current = None;
                }
            }
            Reading::Between => {
                if let Some(open) = current.as_mut().filter(|o| o.confirmed) {
                    open.good_run = 0;
                } else {
                    current = None;
                }
            }
        }
    }
    if let Some(open) = current.take().filter(|o| o.confirmed) {
        out.push(finish(metric, open, None));
    }
    out
}

fn access_point(sample: &Sample) -> Option<String> {
    sample
        .wifi
        .as_ref()
        .filter(|_| matches!(sample.link, LinkKind::Wifi | LinkKind::Unknown))
        .and_then(|w| w.access_point.clone())
}

fn finish(metric: Metric, open: Open, end_ms: Option<i64>) -> Episode {
    Episode {
        id: metric.id().to_owned(),
        metric,
        stage: metric.stage(),
        segment: metric.stage().segment(),
        severity: open.severity,
        confidence: Confidence::High,
        title: metric.title(),
        start_ms: open.start_ms,
        end_ms,
        bad_samples: open.bad_samples,
        evidence: vec![Evidence {
            metric: open.evidence_metric.to_owned(),
            value: EvidenceValue::Number(open.worst),
            threshold: open.threshold,
        }],
        access_point: open.access_point,
        explained_by: Vec::new(),
    }
}

/// Attributes each episode: to the most upstream problem episode that
/// covers enough of its time, else to its own stage.
pub(crate) fn attribute(episodes: &mut [Episode], open_until_ms: i64, rules: &EpisodeRules) {
    let snapshot: Vec<(Stage, Severity, i64, i64, String)> = episodes
        .iter()
        .map(|e| {
            (
                e.stage,
                e.severity,
                e.start_ms,
                e.end_or(open_until_ms),
                e.key(),
            )
        })
        .collect();
    for episode in episodes.iter_mut() {
        let upstream = episode.metric.upstream();
        let start = episode.start_ms;
        let end = episode.end_or(open_until_ms).max(start + 1);
        let needed = ((end - start) as f64 * rules.explain_overlap).max(1.0);
        let mut explainers: Vec<(Stage, &str)> = snapshot
            .iter()
            .filter(|(stage, severity, ..)| {
                upstream.contains(stage) && *severity >= Severity::Warning
            })
            .filter(|(_, _, s, e, _)| {
                let overlap = (end.min(*e) - start.max(*s)).max(0);
                overlap as f64 >= needed
            })
            .map(|(stage, _, _, _, key)| (*stage, key.as_str()))
            .collect();
        if explainers.is_empty() {
            continue;
        }
        explainers.sort();
        episode.segment = explainers[0].0.segment();
        episode.confidence = Confidence::Low;
        episode.explained_by = explainers
            .iter()
            .map(|(_, key)| (*key).to_owned())
            .collect();
    }
}

/// The roams, link changes, markers and gaps in `samples` (sorted).
pub(crate) fn events(samples: &[Sample], interval_ms: i64, rules: &EpisodeRules) -> Vec<Event> {
    let gap_ms = (interval_ms as f64 * rules.gap_intervals) as i64;
    let mut out = Vec::new();
    let mut previous: Option<&Sample> = None;
    for sample in samples {
        match &sample.marker {
            Some(Marker::Started) => out.push(Event {
                at_ms: sample.at_ms,
                kind: EventKind::Started,
            }),
            Some(Marker::Resumed { asleep_s }) => out.push(Event {
                at_ms: sample.at_ms,
                kind: EventKind::Resumed {
                    asleep_s: *asleep_s,
                },
            }),
            None => {}
        }
        if let Some(before) = previous {
            if sample.at_ms - before.at_ms > gap_ms {
                out.push(Event {
                    at_ms: before.at_ms + interval_ms,
                    kind: EventKind::Gap {
                        until_ms: sample.at_ms,
                    },
                });
            }
            let known = |l: LinkKind| l != LinkKind::Unknown;
            if known(before.link) && known(sample.link) && before.link != sample.link {
                out.push(Event {
                    at_ms: sample.at_ms,
                    kind: EventKind::LinkChange {
                        from: before.link,
                        to: sample.link,
                    },
                });
            }
            let ap = |s: &Sample| s.wifi.as_ref().and_then(|w| w.access_point.clone());
            if let (Some(from), Some(to)) = (ap(before), ap(sample)) {
                if from != to {
                    out.push(Event {
                        at_ms: sample.at_ms,
                        kind: EventKind::Roam { from, to },
                    });
                }
            }
        }
        previous = Some(sample);
    }
    out
}
