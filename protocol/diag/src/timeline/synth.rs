//! Synthetic sample series for the timeline's tests: a healthy home
//! connection with realistic noise from a seeded generator, which each test
//! then impairs at chosen minutes. Deterministic: the same seed gives the
//! same series on every machine.

use super::sample::*;
use crate::snapshot::Band;

/// 2025-12-01 00:00 UTC, a Monday.
pub const DAY0_MS: i64 = 1_764_547_200_000;
pub const MINUTE_MS: i64 = 60_000;
pub const DAY_MIN: usize = 1_440;

/// A small seeded generator (SplitMix64): enough for noise, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Normal with this mean and standard deviation (Box–Muller).
    pub fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let u1 = self.unit().max(1e-12);
        let u2 = self.unit();
        mean + sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    pub fn range(&mut self, low: u32, high: u32) -> u32 {
        low + (self.next_u64() % u64::from(high - low + 1)) as u32
    }

    /// Packets lost of `sent`, each with probability `p`.
    pub fn losses(&mut self, sent: u32, p: f64) -> u32 {
        (0..sent).filter(|_| self.chance(p)).count() as u32
    }
}

/// What the series' noise looks like. The defaults are a good home
/// connection on 5 GHz Wi‑Fi, with the rare single-minute blips real
/// measurements show (a lost packet or three, a DNS cache miss, a busy
/// processor during an update).
pub struct Noise {
    pub signal_dbm: f64,
    pub relay_rtt_ms: f64,
    pub packet_loss: f64,
    pub gateway_probe_loss: f64,
    /// Chance per minute of a single-minute blip on each metric.
    pub blip: f64,
}

impl Default for Noise {
    fn default() -> Self {
        Noise {
            signal_dbm: -58.0,
            relay_rtt_ms: 28.0,
            packet_loss: 0.001,
            gateway_probe_loss: 0.001,
            blip: 0.002,
        }
    }
}

/// A healthy sample at minute `minute` of the series.
pub fn healthy(rng: &mut Rng, noise: &Noise, minute: usize) -> Sample {
    let at_ms = DAY0_MS + minute as i64 * MINUTE_MS;
    let mut signal = rng.normal(noise.signal_dbm, 2.5);
    if rng.chance(noise.blip) {
        signal -= 20.0; // a door closed, a microwave oven
    }
    let mut retries = rng.normal(6.0, 3.0).max(0.0);
    if rng.chance(noise.blip) {
        retries = 30.0;
    }
    let gateway_sent = 3u32;
    let gateway_lost = rng.losses(gateway_sent, noise.gateway_probe_loss);
    let mut gateway_rtt = rng.normal(2.5, 1.0).max(0.4);
    if rng.chance(noise.blip) {
        gateway_rtt = 45.0;
    }
    let sent = rng.range(18, 34);
    let mut lost = rng.losses(sent, noise.packet_loss);
    if rng.chance(noise.blip) {
        lost += rng.range(2, 4); // a burst within one minute
    }
    let mut rtt = rng.normal(noise.relay_rtt_ms, 4.0).max(5.0);
    let mut jitter = rng.normal(2.0, 1.0).max(0.1);
    if rng.chance(noise.blip) {
        rtt += 120.0;
        jitter = 45.0;
    }
    let mut dns = rng.normal(25.0, 10.0).max(2.0);
    if rng.chance(noise.blip) {
        dns = 450.0; // an uncached name behind a slow resolver
    }
    let mut cpu = rng.normal(15.0, 8.0).clamp(1.0, 100.0);
    let mut psi = rng.normal(2.0, 1.5).max(0.0);
    if rng.chance(noise.blip) {
        cpu = 98.0;
        psi = 40.0;
    }
    Sample {
        at_ms,
        utc_offset_min: 60,
        link: LinkKind::Wifi,
        wifi: Some(WifiSample {
            signal_dbm: Some(signal as f32),
            noise_dbm: Some(rng.normal(-93.0, 1.0) as f32),
            tx_rate_mbps: Some(866.7),
            rx_rate_mbps: Some(780.0),
            retries_percent: Some(retries as f32),
            access_point: Some("ap-office".to_owned()),
            band: Some(Band::Ghz5),
        }),
        vpn_up: Some(false),
        gateway: Some(GatewaySample {
            sent: gateway_sent as u8,
            received: (gateway_sent - gateway_lost) as u8,
            rtt_ms: Some(gateway_rtt as f32),
        }),
        relay: Some(RelaySample {
            rtt_ms: Some(rtt as f32),
            jitter_ms: Some(jitter as f32),
            sent_packets: sent,
            lost_packets: lost,
        }),
        dns_ms: Some(dns as f32),
        pressure: Some(PressureSample {
            cpu_usage_percent: Some(cpu as f32),
            cpu_some_avg60: Some(psi as f32),
            memory_available_percent: Some(rng.normal(55.0, 5.0) as f32),
            memory_full_avg10: Some(0.0),
        }),
        marker: (minute == 0).then_some(Marker::Started),
    }
}

/// `minutes` healthy samples from [`DAY0_MS`], each passed through
/// `impair(minute, rng, sample)` so a test can spoil chosen minutes.
pub fn series(
    seed: u64,
    minutes: usize,
    noise: &Noise,
    mut impair: impl FnMut(usize, &mut Rng, &mut Sample),
) -> Vec<Sample> {
    let mut rng = Rng::new(seed);
    (0..minutes)
        .map(|minute| {
            let mut sample = healthy(&mut rng, noise, minute);
            impair(minute, &mut rng, &mut sample);
            sample
        })
        .collect()
}

/// The time of minute `minute` of the series.
pub fn at(minute: usize) -> i64 {
    DAY0_MS + minute as i64 * MINUTE_MS
}

pub fn wifi(sample: &mut Sample) -> &mut WifiSample {
    sample.wifi.get_or_insert_with(WifiSample::default)
}

pub fn relay(sample: &mut Sample) -> &mut RelaySample {
    sample.relay.get_or_insert_with(RelaySample::default)
}

pub fn gateway(sample: &mut Sample) -> &mut GatewaySample {
    sample.gateway.get_or_insert_with(GatewaySample::default)
}
