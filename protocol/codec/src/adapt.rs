//! Which codec to use: a pure policy over the technician's preference, the
//! measured path and what lossless tiles have been costing.
//!
//! Nothing here reads a clock or the network: the caller passes times (in
//! microseconds of its own monotonic clock) and byte counts it measured.
//!
//! The rule, in short: lossless tiles while their recent bitrate fits
//! comfortably in the measured bandwidth, H.264 at about 70 % of the bandwidth
//! otherwise. Hysteresis keeps it from flipping: tiles are left when they need
//! more than 80 % of the bandwidth and taken back only when they would need at
//! most 50 %, and an automatic switch waits at least 3 s after the previous
//! one (each switch costs a keyframe).

use std::collections::VecDeque;

use deskside_protocol::session::{Codec, Quality};

/// Share of the bandwidth H.264 aims for; the rest absorbs keyframes, input,
/// chat and estimate errors.
pub const H264_SHARE: f64 = 0.7;
/// Tiles are left when their demand exceeds this share of the bandwidth.
pub const LEAVE_LOSSLESS_SHARE: f64 = 0.8;
/// Tiles are taken back when their demand is at most this share.
pub const RETURN_LOSSLESS_SHARE: f64 = 0.5;
/// Least time between two automatic switches.
pub const MIN_DWELL_US: u64 = 3_000_000;
/// H.264 bitrate bounds: below 150 kbit/s a 1080p screen is unreadable, above
/// 8 Mbit/s lossless tiles would usually fit anyway.
pub const MIN_H264_BPS: u32 = 150_000;
/// See [`MIN_H264_BPS`].
pub const MAX_H264_BPS: u32 = 8_000_000;
/// H.264 bitrate when the bandwidth is not known yet.
pub const DEFAULT_H264_BPS: u32 = 2_000_000;
/// Bitrates are rounded down to this step, so small estimate changes do not
/// restart the encoder.
pub const H264_BPS_STEP: u32 = 50_000;
/// Frame rate normally planned for.
pub const FULL_FPS: u32 = 30;
/// Frame rate on slow (< 1 Mbit/s) or far (RTT > 250 ms) paths: fewer,
/// better frames.
pub const SLOW_PATH_FPS: u32 = 15;
/// How far back the lossless demand looks.
pub const DEMAND_WINDOW_US: u64 = 2_000_000;
/// Most frames kept in the demand window.
const MAX_SAMPLES: usize = 120;
/// Lossless bytes per changed tile assumed before any were measured
/// (a 64×64 tile of text at zstd level 1 is typically a few KB).
const INITIAL_BYTES_PER_TILE: f64 = 3000.0;

/// What the caller knows about the path to the viewer.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PathEstimate {
    /// Bandwidth available to the session, bits per second (for example from
    /// [`BandwidthEstimator`], the QUIC congestion window over the RTT, or the
    /// diagnostics throughput measurement).
    pub bandwidth_bps: Option<u64>,
    /// Round-trip time in milliseconds.
    pub rtt_ms: Option<f64>,
}

/// What the encoder should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    /// Codec for the next frames.
    pub codec: Codec,
    /// H.264 target bitrate, bits per second (used when `codec` is H.264).
    pub h264_bitrate_bps: u32,
    /// Frames per second the capture loop should not exceed.
    pub max_fps: u32,
}

/// One frame as the encoder saw it, recorded into [`RecentStats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameSample {
    /// Capture time, microseconds.
    pub at_us: u64,
    /// Codec active for this frame.
    pub codec: Codec,
    /// Whether a keyframe was sent.
    pub keyframe: bool,
    /// Payload bytes sent (0 when nothing changed).
    pub bytes: usize,
    /// Tiles that changed since the previous frame.
    pub changed_tiles: usize,
}

/// Recent encoder history: which codec is active since when, and what lossless
/// tiles cost (measured while active, estimated from changed tiles while
/// H.264 runs).
#[derive(Clone, Debug)]
pub struct RecentStats {
    active: Codec,
    switched_at_us: Option<u64>,
    latest_us: u64,
    /// (capture time, lossless bytes of that frame, measured or estimated).
    demand: VecDeque<(u64, f64)>,
    bytes_per_tile: f64,
}

impl Default for RecentStats {
    fn default() -> Self {
        Self::new()
    }
}

impl RecentStats {
    /// No history; lossless tiles active.
    pub fn new() -> Self {
        Self {
            active: Codec::ZstdTiles,
            switched_at_us: None,
            latest_us: 0,
            demand: VecDeque::new(),
            bytes_per_tile: INITIAL_BYTES_PER_TILE,
        }
    }

    /// The codec of the latest frame.
    pub fn active(&self) -> Codec {
        self.active
    }

    /// Records one captured frame (also the ones that sent nothing).
    pub fn record(&mut self, sample: FrameSample) {
        if sample.codec != self.active {
            self.active = sample.codec;
            self.switched_at_us = Some(sample.at_us);
        }
        self.latest_us = self.latest_us.max(sample.at_us);
        let lossless_bytes = match sample.codec {
            Codec::ZstdTiles => {
                if sample.changed_tiles > 0 {
                    let per_tile = sample.bytes as f64 / sample.changed_tiles as f64;
                    self.bytes_per_tile = 0.8 * self.bytes_per_tile + 0.2 * per_tile;
                }
                // A keyframe is a one-off cost, not the content's rate.
                if sample.keyframe {
                    None
                } else {
                    Some(sample.bytes as f64)
                }
            }
            Codec::H264 => Some(sample.changed_tiles as f64 * self.bytes_per_tile),
        };
        if let Some(bytes) = lossless_bytes {
            self.demand.push_back((sample.at_us, bytes));
        }
        let oldest = self.latest_us.saturating_sub(DEMAND_WINDOW_US);
        while self
            .demand
            .front()
            .is_some_and(|&(at, _)| at < oldest || self.demand.len() > MAX_SAMPLES)
        {
            self.demand.pop_front();
        }
    }

    /// What lossless tiles need at `fps`, bits per second: the mean bytes per
    /// captured frame over the last [`DEMAND_WINDOW_US`] times `fps`. `None`
    /// before any frame.
    ///
    /// Per frame rather than per second on purpose: when the link is the
    /// bottleneck fewer frames are captured, and a per-second rate would then
    /// only ever measure the link.
    pub fn lossless_bps(&self, fps: u32) -> Option<f64> {
        if self.demand.is_empty() {
            return None;
        }
        let mean = self.demand.iter().map(|&(_, b)| b).sum::<f64>() / self.demand.len() as f64;
        Some(mean * 8.0 * f64::from(fps))
    }

    /// Time since the last switch, if there was one.
    fn since_switch_us(&self) -> Option<u64> {
        self.switched_at_us
            .map(|at| self.latest_us.saturating_sub(at))
    }
}

/// Decides codec, H.264 bitrate and frame rate. Pure: same inputs, same choice.
pub fn choose(pref: Quality, path: PathEstimate, recent: &RecentStats) -> Choice {
    let slow =
        path.bandwidth_bps.is_some_and(|b| b < 1_000_000) || path.rtt_ms.is_some_and(|r| r > 250.0);
    let max_fps = if slow { SLOW_PATH_FPS } else { FULL_FPS };
    let h264_bitrate_bps = match path.bandwidth_bps {
        None => DEFAULT_H264_BPS,
        Some(bw) => {
            let target = (bw as f64 * H264_SHARE) as u64;
            let clamped = target.clamp(u64::from(MIN_H264_BPS), u64::from(MAX_H264_BPS)) as u32;
            (clamped / H264_BPS_STEP * H264_BPS_STEP).max(MIN_H264_BPS)
        }
    };
    let codec = match pref {
        Quality::Lossless => Codec::ZstdTiles,
        Quality::LowBandwidth => Codec::H264,
        Quality::Auto => auto_codec(path, recent, max_fps),
    };
    Choice {
        codec,
        h264_bitrate_bps,
        max_fps,
    }
}

fn auto_codec(path: PathEstimate, recent: &RecentStats, fps: u32) -> Codec {
    let active = recent.active();
    let (Some(bandwidth), Some(demand)) = (path.bandwidth_bps, recent.lossless_bps(fps)) else {
        // Nothing measured yet: keep going (tiles at the start).
        return active;
    };
    if recent.since_switch_us().is_some_and(|t| t < MIN_DWELL_US) {
        return active;
    }
    let bandwidth = bandwidth as f64;
    match active {
        Codec::ZstdTiles if demand > LEAVE_LOSSLESS_SHARE * bandwidth => Codec::H264,
        Codec::H264 if demand <= RETURN_LOSSLESS_SHARE * bandwidth => Codec::ZstdTiles,
        other => other,
    }
}

/// Bandwidth from delivery samples: bytes the peer acknowledged over an
/// interval. The estimate is the highest of the last 8 samples.
///
/// A sample taken while the session had little to send (a static screen)
/// only shows a lower bound of the bandwidth; taking the maximum keeps such
/// samples from dragging the estimate down, while 8 samples still let it fall
/// within a few seconds when the link really slows down. When the transport
/// knows better (QUIC's congestion window over the RTT), pass that instead.
#[derive(Clone, Debug, Default)]
pub struct BandwidthEstimator {
    samples: VecDeque<u64>,
}

impl BandwidthEstimator {
    const KEEP: usize = 8;

    /// No samples.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `bytes` were delivered over `interval_us` microseconds.
    /// Intervals under 10 ms are ignored (too noisy).
    pub fn record(&mut self, bytes: u64, interval_us: u64) {
        if interval_us < 10_000 {
            return;
        }
        let bps = (u128::from(bytes) * 8 * 1_000_000 / u128::from(interval_us)) as u64;
        if self.samples.len() == Self::KEEP {
            self.samples.pop_front();
        }
        self.samples.push_back(bps);
    }

    /// The estimate in bits per second, if any sample was recorded.
    pub fn estimate(&self) -> Option<u64> {
        self.samples.iter().copied().max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MBIT: u64 = 1_000_000;

    fn path(mbit: f64) -> PathEstimate {
        PathEstimate {
            bandwidth_bps: Some((mbit * MBIT as f64) as u64),
            rtt_ms: Some(20.0),
        }
    }

    /// Records `frames` frames at 30 fps starting at `start_us`, each with
    /// `bytes` lossless bytes (tiles active) or `tiles` changed tiles (H.264).
    fn feed(
        stats: &mut RecentStats,
        codec: Codec,
        start_us: u64,
        frames: u64,
        bytes: usize,
        tiles: usize,
    ) -> u64 {
        let mut at = start_us;
        for _ in 0..frames {
            stats.record(FrameSample {
                at_us: at,
                codec,
                keyframe: false,
                bytes,
                changed_tiles: tiles,
            });
            at += 33_333;
        }
        at
    }

    #[test]
    fn preference_wins() {
        let stats = RecentStats::new();
        assert_eq!(
            choose(Quality::Lossless, path(0.3), &stats).codec,
            Codec::ZstdTiles
        );
        assert_eq!(
            choose(Quality::LowBandwidth, path(100.0), &stats).codec,
            Codec::H264
        );
    }

    #[test]
    fn unknown_path_keeps_tiles_with_default_bitrate() {
        let choice = choose(Quality::Auto, PathEstimate::default(), &RecentStats::new());
        assert_eq!(
            choice,
            Choice {
                codec: Codec::ZstdTiles,
                h264_bitrate_bps: DEFAULT_H264_BPS,
                max_fps: FULL_FPS
            }
        );
    }

    #[test]
    fn bitrate_is_seventy_percent_clamped_and_stepped() {
        let stats = RecentStats::new();
        let rate = |mbit| choose(Quality::LowBandwidth, path(mbit), &stats).h264_bitrate_bps;
        assert_eq!(rate(3.0), 2_100_000);
        assert_eq!(rate(3.01), 2_100_000);
        assert_eq!(rate(0.1), MIN_H264_BPS);
        assert_eq!(rate(1000.0), MAX_H264_BPS);
    }

    #[test]
    fn slow_or_far_paths_get_fewer_frames() {
        let stats = RecentStats::new();
        assert_eq!(
            choose(Quality::Auto, path(0.8), &stats).max_fps,
            SLOW_PATH_FPS
        );
        let far = PathEstimate {
            rtt_ms: Some(400.0),
            ..path(50.0)
        };
        assert_eq!(choose(Quality::Auto, far, &stats).max_fps, SLOW_PATH_FPS);
        assert_eq!(choose(Quality::Auto, path(50.0), &stats).max_fps, FULL_FPS);
    }

    #[test]
    fn heavy_lossless_moves_to_h264_and_back_with_hysteresis() {
        let mut stats = RecentStats::new();
        // 20 KB per frame at 30 fps = 4.8 Mbit/s of lossless demand.
        let t = feed(&mut stats, Codec::ZstdTiles, 0, 60, 20_000, 10);
        assert_eq!(
            choose(Quality::Auto, path(50.0), &stats).codec,
            Codec::ZstdTiles
        );
        // 4.8 > 0.8 * 5: leave tiles.
        assert_eq!(choose(Quality::Auto, path(5.0), &stats).codec, Codec::H264);
        // 4.8 <= 0.8 * 6.5: stay.
        assert_eq!(
            choose(Quality::Auto, path(6.5), &stats).codec,
            Codec::ZstdTiles
        );

        // Now H.264 runs; tiles learned ~2000 bytes per changed tile. 10
        // changed tiles per frame = 4.8 Mbit/s estimated.
        let t = feed(&mut stats, Codec::H264, t, 120, 5_000, 10);
        assert_eq!(stats.active(), Codec::H264);
        // 4.8 > 0.5 * 6.5: stay on H.264 although tiles would have stayed above.
        assert_eq!(choose(Quality::Auto, path(6.5), &stats).codec, Codec::H264);
        // 4.8 <= 0.5 * 10: back to tiles.
        assert_eq!(
            choose(Quality::Auto, path(10.0), &stats).codec,
            Codec::ZstdTiles
        );
        // Screen calms down: 1 tile per frame.
        feed(&mut stats, Codec::H264, t, 60, 5_000, 1);
        assert_eq!(
            choose(Quality::Auto, path(6.5), &stats).codec,
            Codec::ZstdTiles
        );
    }

    #[test]
    fn no_switch_within_dwell_time() {
        let mut stats = RecentStats::new();
        let t = feed(&mut stats, Codec::ZstdTiles, 0, 30, 1_000, 1);
        // Just switched to H.264 (1 s ago) with a quiet screen.
        feed(&mut stats, Codec::H264, t, 30, 1_000, 0);
        assert_eq!(choose(Quality::Auto, path(50.0), &stats).codec, Codec::H264);
        let mut later = stats.clone();
        feed(&mut later, Codec::H264, t + 1_000_000, 90, 1_000, 0);
        assert_eq!(
            choose(Quality::Auto, path(50.0), &later).codec,
            Codec::ZstdTiles
        );
    }

    #[test]
    fn keyframes_do_not_count_as_demand() {
        let mut stats = RecentStats::new();
        stats.record(FrameSample {
            at_us: 0,
            codec: Codec::ZstdTiles,
            keyframe: true,
            bytes: 2_000_000,
            changed_tiles: 510,
        });
        assert_eq!(stats.lossless_bps(30), None);
        feed(&mut stats, Codec::ZstdTiles, 33_333, 30, 0, 0);
        assert_eq!(stats.lossless_bps(30), Some(0.0));
    }

    #[test]
    fn old_demand_leaves_the_window() {
        let mut stats = RecentStats::new();
        let t = feed(&mut stats, Codec::ZstdTiles, 0, 30, 100_000, 40);
        feed(&mut stats, Codec::ZstdTiles, t + 5_000_000, 30, 0, 0);
        assert_eq!(stats.lossless_bps(30), Some(0.0));
    }

    #[test]
    fn bandwidth_estimator_takes_recent_maximum() {
        let mut est = BandwidthEstimator::new();
        assert_eq!(est.estimate(), None);
        est.record(125_000, 100_000); // 10 Mbit/s
        est.record(12_500, 100_000); // 1 Mbit/s (app-limited)
        est.record(1_000_000, 1_000); // too short, ignored
        assert_eq!(est.estimate(), Some(10_000_000));
        for _ in 0..8 {
            est.record(25_000, 100_000); // 2 Mbit/s
        }
        assert_eq!(est.estimate(), Some(2_000_000));
    }
}
