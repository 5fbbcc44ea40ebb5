//! The compact sample an agent records every monitoring interval (60 s by
//! default), and the versioned batch format samples travel and rest in.
//!
//! A sample holds only what the timeline judges: a few numbers per segment
//! of the path, each `None` when it could not be read (never a made-up
//! zero). Numbers are `f32` and counters small integers so that a sample is
//! about 60 bytes in postcard off Wi‑Fi, and about 165 on Wi‑Fi, most of
//! them the hashed access point (`hmac-sha256:` and 64 hex digits;
//! measured with the tests' `full_sample` given such an access point);
//! [`encode_batch`] prefixes a batch with [`SAMPLE_FORMAT`] so that a newer
//! agent's batch is refused with a clear error rather than misread.

use serde::{Deserialize, Serialize};

use crate::snapshot::Band;

/// Version of the sample format inside a batch. Bump it when [`Sample`]
/// changes shape (postcard has no field names, so old readers cannot skip
/// new fields).
pub const SAMPLE_FORMAT: u8 = 1;

/// The longest batch [`decode_batch`] accepts, in samples: a day at one
/// sample a minute. Longer uploads are split by the sender.
pub const MAX_BATCH_SAMPLES: usize = 1_440;

/// Which kind of link carries the device's traffic (the default route's
/// interface).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    /// Could not be told.
    #[default]
    Unknown,
    /// No default route: the device is offline.
    None,
    /// Wi‑Fi.
    Wifi,
    /// Wired Ethernet.
    Ethernet,
    /// A phone shared over USB or Bluetooth, or a mobile modem.
    Mobile,
    /// Something else (a bridge, a virtual interface…).
    Other,
}

impl LinkKind {
    /// Stable lowercase name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Unknown => "unknown",
            LinkKind::None => "none",
            LinkKind::Wifi => "wifi",
            LinkKind::Ethernet => "ethernet",
            LinkKind::Mobile => "mobile",
            LinkKind::Other => "other",
        }
    }
}

/// The Wi‑Fi radio at sample time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WifiSample {
    /// Signal, dBm.
    pub signal_dbm: Option<f32>,
    /// Noise floor, dBm.
    pub noise_dbm: Option<f32>,
    /// Transmit bit rate, Mbit/s.
    pub tx_rate_mbps: Option<f32>,
    /// Receive bit rate, Mbit/s.
    pub rx_rate_mbps: Option<f32>,
    /// Share of transmitted frames that needed a retry since the previous
    /// sample, percent.
    pub retries_percent: Option<f32>,
    /// The access point (BSSID), hashed like the snapshot's unless the
    /// organisation's policy says otherwise; a change is a roam.
    pub access_point: Option<String>,
    /// The band.
    pub band: Option<Band>,
}

/// A few probes to the home router.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewaySample {
    /// Probes sent.
    pub sent: u8,
    /// Probes answered.
    pub received: u8,
    /// Median round trip of the answered probes, ms.
    pub rtt_ms: Option<f32>,
}

/// The path to the relay, read from the presence connection's own QUIC
/// statistics over the interval (no extra traffic) and from a burst of 16
/// path probes (20 ms apart) the relay echoes at the start of each sample.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RelaySample {
    /// Median round trip of the echoed path probes, ms; without probes,
    /// the median of QUIC's estimates read during the interval.
    pub rtt_ms: Option<f32>,
    /// Mean absolute difference between consecutive round trips, ms: of
    /// the probes when at least two came back (per packet, as real-time
    /// media sees it), else of QUIC's own estimates over the interval.
    pub jitter_ms: Option<f32>,
    /// Packets counted for the loss: the probes sent, or without probes
    /// (no session carrier) the packets the agent sent on the connection
    /// during the interval.
    pub sent_packets: u32,
    /// Of those, probes not echoed (lost out or back), or packets QUIC
    /// declared lost.
    pub lost_packets: u32,
}

impl RelaySample {
    /// Loss over the interval, percent; `None` when nothing was sent.
    pub fn loss_percent(&self) -> Option<f64> {
        (self.sent_packets > 0).then(|| {
            100.0 * f64::from(self.lost_packets.min(self.sent_packets))
                / f64::from(self.sent_packets)
        })
    }
}

/// Processor and memory pressure.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PressureSample {
    /// Whole-machine CPU usage, percent.
    pub cpu_usage_percent: Option<f32>,
    /// Linux PSI `cpu some avg60`, percent.
    pub cpu_some_avg60: Option<f32>,
    /// Available memory as a share of installed memory, percent.
    pub memory_available_percent: Option<f32>,
    /// Linux PSI `memory full avg10`, percent.
    pub memory_full_avg10: Option<f32>,
}

/// Something that happened to the agent itself before this sample.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Marker {
    /// The first sample since the agent started monitoring (after a start,
    /// a reconnection or a policy change that switched monitoring on).
    Started,
    /// The machine slept: the wall clock moved this many seconds more than
    /// the agent's own monotonic clock since the previous sample.
    Resumed {
        /// Seconds spent asleep.
        asleep_s: u32,
    },
}

/// One sample.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sample {
    /// When it was taken, ms since the Unix epoch (the agent's clock).
    pub at_ms: i64,
    /// The agent's offset from UTC at that time, minutes (for "the same
    /// hour every day" in the employee's local time).
    pub utc_offset_min: i16,
    /// Which link carries traffic.
    pub link: LinkKind,
    /// The Wi‑Fi radio, when the device is on Wi‑Fi and it could be read.
    pub wifi: Option<WifiSample>,
    /// Whether a VPN interface is up; `None` when it could not be told.
    pub vpn_up: Option<bool>,
    /// Probes to the home router.
    pub gateway: Option<GatewaySample>,
    /// The path to the relay.
    pub relay: Option<RelaySample>,
    /// Time to resolve the relay's name (or a well-known name), ms.
    pub dns_ms: Option<f32>,
    /// Processor and memory pressure.
    pub pressure: Option<PressureSample>,
    /// What happened to the agent before this sample.
    pub marker: Option<Marker>,
}

/// One sample summarising `samples` (of one device, oldest first) by the
/// worst of each metric: the weakest signal, the longest round trip, the
/// lost packets and probes added up, the VPN down if it was down once.
/// Used by the relay to keep 10-minute summaries of old samples, so an old
/// episode is not averaged away (its bounds become exact to the summary's
/// length). `None` for no samples.
pub fn worst_of(samples: &[Sample]) -> Option<Sample> {
    let first = samples.first()?;
    let last = samples.last()?;
    fn max(values: impl Iterator<Item = Option<f32>>) -> Option<f32> {
        values.flatten().filter(|v| v.is_finite()).reduce(f32::max)
    }
    fn min(values: impl Iterator<Item = Option<f32>>) -> Option<f32> {
        values.flatten().filter(|v| v.is_finite()).reduce(f32::min)
    }
    let wifis: Vec<&WifiSample> = samples.iter().filter_map(|s| s.wifi.as_ref()).collect();
    let wifi = (!wifis.is_empty()).then(|| WifiSample {
        signal_dbm: min(wifis.iter().map(|w| w.signal_dbm)),
        noise_dbm: max(wifis.iter().map(|w| w.noise_dbm)),
        tx_rate_mbps: min(wifis.iter().map(|w| w.tx_rate_mbps)),
        rx_rate_mbps: min(wifis.iter().map(|w| w.rx_rate_mbps)),
        retries_percent: max(wifis.iter().map(|w| w.retries_percent)),
        // The access point of the weakest signal: where the trouble was.
        access_point: wifis
            .iter()
            .filter(|w| w.signal_dbm.is_some())
            .min_by(|a, b| {
                a.signal_dbm
                    .partial_cmp(&b.signal_dbm)
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
            .or(wifis.last())
            .and_then(|w| w.access_point.clone()),
        band: wifis.last().and_then(|w| w.band),
    });
    let gateways: Vec<&GatewaySample> = samples.iter().filter_map(|s| s.gateway.as_ref()).collect();
    let gateway = (!gateways.is_empty()).then(|| {
        // Keep the loss ratio within u8 counts: scale down if needed.
        let sent: u32 = gateways.iter().map(|g| u32::from(g.sent)).sum();
        let received: u32 = gateways
            .iter()
            .map(|g| u32::from(g.received.min(g.sent)))
            .sum();
        let scale = sent.div_ceil(250).max(1);
        GatewaySample {
            sent: (sent / scale) as u8,
            received: (received / scale) as u8,
            rtt_ms: max(gateways.iter().map(|g| g.rtt_ms)),
        }
    });
    let relays: Vec<&RelaySample> = samples.iter().filter_map(|s| s.relay.as_ref()).collect();
    let relay = (!relays.is_empty()).then(|| RelaySample {
        rtt_ms: max(relays.iter().map(|r| r.rtt_ms)),
        jitter_ms: max(relays.iter().map(|r| r.jitter_ms)),
        sent_packets: relays
            .iter()
            .map(|r| r.sent_packets)
            .fold(0, u32::saturating_add),
        lost_packets: relays
            .iter()
            .map(|r| r.lost_packets)
            .fold(0, u32::saturating_add),
    });
    let pressures: Vec<&PressureSample> =
        samples.iter().filter_map(|s| s.pressure.as_ref()).collect();
    let pressure = (!pressures.is_empty()).then(|| PressureSample {
        cpu_usage_percent: max(pressures.iter().map(|p| p.cpu_usage_percent)),
        cpu_some_avg60: max(pressures.iter().map(|p| p.cpu_some_avg60)),
        memory_available_percent: min(pressures.iter().map(|p| p.memory_available_percent)),
        memory_full_avg10: max(pressures.iter().map(|p| p.memory_full_avg10)),
    });
    let vpn_up = if samples.iter().any(|s| s.vpn_up == Some(false))
        && samples.iter().any(|s| s.vpn_up == Some(true))
    {
        Some(false)
    } else {
        last.vpn_up.or(first.vpn_up)
    };
    Some(Sample {
        at_ms: first.at_ms,
        utc_offset_min: first.utc_offset_min,
        link: last.link,
        wifi,
        vpn_up,
        gateway,
        relay,
        dns_ms: max(samples.iter().map(|s| s.dns_ms)),
        pressure,
        marker: samples.iter().find_map(|s| s.marker.clone()),
    })
}

/// Why a batch of samples could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The batch is empty (not even a format byte).
    #[error("the timeline batch is empty; the agent should send at least its format byte")]
    Empty,
    /// A newer (or unknown) sample format.
    #[error("timeline samples in format {found}, this program reads format {SAMPLE_FORMAT}; upgrade the relay or console to read them")]
    Format {
        /// The format byte found.
        found: u8,
    },
    /// More samples than [`MAX_BATCH_SAMPLES`].
    #[error("a timeline batch holds {count} samples, more than the {MAX_BATCH_SAMPLES} allowed; the agent must split it")]
    TooLong {
        /// How many samples it claims.
        count: usize,
    },
    /// The bytes do not decode.
    #[error(
        "timeline samples do not decode ({0}); the batch is damaged or from an incompatible agent"
    )]
    Decode(String),
}

/// Encodes samples as one batch: [`SAMPLE_FORMAT`], then postcard.
pub fn encode_batch(samples: &[Sample]) -> Vec<u8> {
    let mut out = vec![SAMPLE_FORMAT];
    // Serialising plain data into a Vec cannot fail; an empty payload would
    // be refused by the reader rather than misread.
    if let Ok(bytes) = postcard::to_stdvec(samples) {
        out.extend_from_slice(&bytes);
    }
    out
}

/// Decodes a batch written by [`encode_batch`], checking its format and
/// length before allocating for the samples.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<Sample>, BatchError> {
    let (&format, rest) = bytes.split_first().ok_or(BatchError::Empty)?;
    if format != SAMPLE_FORMAT {
        return Err(BatchError::Format { found: format });
    }
    // The sequence length is postcard's leading varint: check it first so
    // a hostile length cannot make the decoder reserve memory for it.
    let (count, _): (u64, _) = postcard::take_from_bytes(rest)
        .map_err(|_| BatchError::Decode("the sample count is missing or malformed".to_owned()))?;
    if count > MAX_BATCH_SAMPLES as u64 {
        return Err(BatchError::TooLong {
            count: usize::try_from(count).unwrap_or(usize::MAX),
        });
    }
    let (samples, unread): (Vec<Sample>, &[u8]) =
        postcard::take_from_bytes(rest).map_err(|e| BatchError::Decode(e.to_string()))?;
    if !unread.is_empty() {
        return Err(BatchError::Decode(format!(
            "{} bytes left over after the samples",
            unread.len()
        )));
    }
    Ok(samples)
}

/// One sample's body in a batch: postcard, without the format byte and the
/// count. For stores that keep samples one by one (the agent's ring) and
/// join them with [`batch_from_bodies`] without decoding them again.
pub fn encode_sample_body(sample: &Sample) -> Vec<u8> {
    // As in `encode_batch`: plain data into a Vec cannot fail.
    postcard::to_stdvec(sample).unwrap_or_default()
}

/// Decodes a body written by [`encode_sample_body`] (nothing may be left
/// over).
pub fn decode_sample_body(body: &[u8]) -> Result<Sample, BatchError> {
    let (sample, unread): (Sample, &[u8]) =
        postcard::take_from_bytes(body).map_err(|e| BatchError::Decode(e.to_string()))?;
    if !unread.is_empty() {
        return Err(BatchError::Decode(format!(
            "{} bytes left over after the sample",
            unread.len()
        )));
    }
    Ok(sample)
}

/// The batch of `bodies` (each from [`encode_sample_body`]), the same bytes
/// as [`encode_batch`] of their samples.
pub fn batch_from_bodies(bodies: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![SAMPLE_FORMAT];
    // postcard's sequence length is the count as a varint, as a `usize`
    // is encoded; the elements follow.
    out = postcard::to_extend(&bodies.len(), out).unwrap_or_else(|_| vec![SAMPLE_FORMAT]);
    for body in bodies {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn full_sample() -> Sample {
        Sample {
            at_ms: 1_765_000_000_000,
            utc_offset_min: 60,
            link: LinkKind::Wifi,
            wifi: Some(WifiSample {
                signal_dbm: Some(-61.0),
                noise_dbm: Some(-92.0),
                tx_rate_mbps: Some(866.7),
                rx_rate_mbps: Some(780.0),
                retries_percent: Some(4.5),
                access_point: Some("h:3f9a1c2e4b5d6f70".to_owned()),
                band: Some(Band::Ghz5),
            }),
            vpn_up: Some(true),
            gateway: Some(GatewaySample {
                sent: 3,
                received: 3,
                rtt_ms: Some(2.4),
            }),
            relay: Some(RelaySample {
                rtt_ms: Some(31.5),
                jitter_ms: Some(1.2),
                sent_packets: 24,
                lost_packets: 0,
            }),
            dns_ms: Some(18.0),
            pressure: Some(PressureSample {
                cpu_usage_percent: Some(12.0),
                cpu_some_avg60: Some(1.5),
                memory_available_percent: Some(55.0),
                memory_full_avg10: Some(0.0),
            }),
            marker: Some(Marker::Resumed { asleep_s: 3600 }),
        }
    }

    #[test]
    fn a_batch_round_trips() {
        let samples = vec![full_sample(), Sample::default()];
        let bytes = encode_batch(&samples);
        assert_eq!(bytes[0], SAMPLE_FORMAT);
        assert_eq!(decode_batch(&bytes).unwrap(), samples);
    }

    #[test]
    fn a_batch_of_bodies_is_the_batch_of_their_samples() {
        let samples = vec![full_sample(), Sample::default(), full_sample()];
        let bodies: Vec<Vec<u8>> = samples.iter().map(encode_sample_body).collect();
        let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        assert_eq!(batch_from_bodies(&refs), encode_batch(&samples));
        assert_eq!(decode_sample_body(&bodies[0]), Ok(full_sample()));
        // 200 bodies: the count takes two varint bytes.
        let many = vec![bodies[1].as_slice(); 200];
        assert_eq!(
            batch_from_bodies(&many),
            encode_batch(&vec![Sample::default(); 200])
        );
        let mut trailing = bodies[0].clone();
        trailing.push(0);
        assert!(matches!(
            decode_sample_body(&trailing),
            Err(BatchError::Decode(_))
        ));
    }

    #[test]
    fn a_full_sample_fits_the_per_minute_budget() {
        // The budget is under 1 KB a minute to the relay; one sample
        // a minute must leave most of it for framing and acknowledgements.
        let bytes = encode_batch(&[full_sample()]);
        assert!(bytes.len() <= 128, "{} bytes", bytes.len());
    }

    #[test]
    fn a_summary_keeps_the_worst_of_each_metric() {
        let good = full_sample();
        let mut bad = full_sample();
        bad.at_ms += 60_000;
        if let Some(w) = bad.wifi.as_mut() {
            w.signal_dbm = Some(-80.0);
            w.access_point = Some("kitchen".to_owned());
        }
        bad.relay = Some(RelaySample {
            rtt_ms: Some(210.0),
            jitter_ms: Some(3.0),
            sent_packets: 20,
            lost_packets: 4,
        });
        bad.vpn_up = Some(false);
        let summary = worst_of(&[good.clone(), bad, good.clone()]).unwrap();
        assert_eq!(summary.at_ms, good.at_ms);
        let wifi = summary.wifi.unwrap();
        assert_eq!(wifi.signal_dbm, Some(-80.0));
        assert_eq!(wifi.access_point.as_deref(), Some("kitchen"));
        let relay = summary.relay.unwrap();
        assert_eq!(relay.rtt_ms, Some(210.0));
        assert_eq!((relay.sent_packets, relay.lost_packets), (68, 4));
        assert_eq!(summary.vpn_up, Some(false));
        assert_eq!(summary.gateway.unwrap().sent, 9);
        assert_eq!(worst_of(&[]), None);
    }

    #[test]
    fn bad_batches_are_refused_with_a_reason() {
        assert_eq!(decode_batch(&[]), Err(BatchError::Empty));
        assert_eq!(
            decode_batch(&[SAMPLE_FORMAT + 1, 0]),
            Err(BatchError::Format {
                found: SAMPLE_FORMAT + 1
            })
        );
        // A claimed count of 2^35 samples is refused before allocating.
        let huge = [SAMPLE_FORMAT, 0x80, 0x80, 0x80, 0x80, 0x01];
        assert!(matches!(
            decode_batch(&huge),
            Err(BatchError::TooLong { .. })
        ));
        let mut truncated = encode_batch(&[full_sample()]);
        truncated.truncate(truncated.len() - 3);
        assert!(matches!(
            decode_batch(&truncated),
            Err(BatchError::Decode(_))
        ));
        let mut trailing = encode_batch(&[full_sample()]);
        trailing.push(0);
        assert!(matches!(
            decode_batch(&trailing),
            Err(BatchError::Decode(_))
        ));
    }
}
