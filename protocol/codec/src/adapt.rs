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
//!
//! Content comes first, though: large moving regions (scrolling, a video, a
//! window drag) cost lossless tiles tens of Mbit/s even when the link could
//! carry them, so when at least [`MOTION_FRAMES`] of the last
//! [`MOTION_WINDOW`] frames changed a large area ([`MOTION_AREA_SHARE`] of
//! the screen) at a lossless cost above what the path carries well
//! ([`MOTION_LOSSLESS_BUDGET_BPS`], or 80 % of a slower path), H.264 takes
//! over at once at no more than [`MOTION_H264_BPS`]. When the screen settles
//! (no such frame for [`SETTLE_US`], or [`SETTLE_AGAIN_US`] when episodes
//! follow each other closely, so it does not flap) lossless tiles return
//! with a keyframe: the refinement pass that makes the picture pixel-exact
//! again within a second. That quick return needs a path that carries a
//! lossless keyframe quickly ([`FAST_RETURN_MIN_BPS`]); on slower paths the
//! bandwidth rule above decides.
//!
//! Scrolling sent as copies (`scroll.rs`, for a viewer that decodes them)
//! is not a large moving region: [`FrameSample::changed_tiles`] counts what
//! the frame still carries after its copies (the tiles, and its strips as
//! the tiles their pixels would fill), so a scroll the copies explain keeps
//! lossless tiles, and while H.264 runs the estimate includes the copies,
//! so a scroll after a window drag brings tiles back once the drag is over.
//! H.264 stays for what copies cannot explain: video, drags.

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
/// A frame moves a large region when at least this share of the screen's
/// tiles changed (and at least [`MOTION_MIN_TILES`]): scrolling changes
/// nearly all of a window, a 640×360 video 12 % of a 1080p screen, typing
/// one or two tiles.
pub const MOTION_AREA_SHARE: f64 = 0.05;
/// Fewest changed tiles that count as a large region (small screens).
pub const MOTION_MIN_TILES: usize = 4;
/// Motion is sustained when this many of the last [`MOTION_WINDOW`] frames
/// moved: one big frame (a window opening) is not motion. Each frame
/// measured with tiles before the switch costs a whole lossless picture of
/// the moving area (about 220 KB for a 1080p scroll), so two it is.
pub const MOTION_FRAMES: usize = 2;
/// See [`MOTION_FRAMES`].
pub const MOTION_WINDOW: usize = 3;
/// Lossless bitrate a path carries well whatever its measured bandwidth: a
/// home uplink often gives 5–20 Mbit/s, and the session shares it. Moving
/// content whose tiles would cost more goes to H.264.
pub const MOTION_LOSSLESS_BUDGET_BPS: f64 = 8_000_000.0;
/// Highest H.264 bitrate while content moves: moving text is not read
/// closely, and the lossless keyframe after it restores every pixel.
/// OpenH264 holds it by skipping frames (a quantizer floor instead looked
/// better in `deskside-bench-codec --qp-sweep`, but encoding every frame
/// slowed the agent enough to delay the return to tiles).
pub const MOTION_H264_BPS: u32 = 1_200_000;
/// Quiet time (no moving frame) before lossless tiles return.
pub const SETTLE_US: u64 = 300_000;
/// Quiet time when the motion episode started soon after the previous one
/// ended ([`FLAP_WINDOW_US`]): a wheel scrolled in bursts does not send a
/// lossless keyframe after each burst. Still under a second in total.
pub const SETTLE_AGAIN_US: u64 = 700_000;
/// See [`SETTLE_AGAIN_US`].
pub const FLAP_WINDOW_US: u64 = 3_000_000;
/// Least bandwidth for the quick return to tiles: a lossless 1080p keyframe
/// of text is 100–300 KB, at most 2.4 s at 1 Mbit/s (the bandwidth rule
/// sends it too, only later). The agent's estimate comes from the delivery
/// of big frames, which a loaded machine slows: 5 Mbit/s was too close to
/// what a debug build measured on loopback.
pub const FAST_RETURN_MIN_BPS: u64 = 1_000_000;
/// Switch times remembered (for [`SETTLE_AGAIN_US`]).
const SWITCHES_KEPT: usize = 4;
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
    /// H.264 runs for moving content and lossless tiles come back as soon
    /// as the screen is quiet: H.264 need not refine a still picture (its
    /// frames would only delay the lossless keyframe and cost bytes).
    pub lossless_soon: bool,
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
    /// Tiles that changed since the previous frame, after any copies
    /// (scrolling); strips count as the tiles their pixels would fill.
    pub changed_tiles: usize,
    /// Tiles of the whole frame (for the share that changed).
    pub total_tiles: usize,
}

/// Recent encoder history: which codec is active since when, and what lossless
/// tiles cost (measured while active, estimated from changed tiles while
/// H.264 runs).
#[derive(Clone, Debug)]
pub struct RecentStats {
    active: Codec,
    switched_at_us: Option<u64>,
    /// The last few switch times, oldest first.
    switches: VecDeque<u64>,
    latest_us: u64,
    /// Frames of the last [`DEMAND_WINDOW_US`], oldest first.
    demand: VecDeque<Demand>,
    bytes_per_tile: f64,
}

/// One frame in the demand window.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Demand {
    /// Capture time.
    at_us: u64,
    /// Lossless bytes of the frame, measured or estimated.
    bytes: f64,
    /// Whether a large region changed ([`MOTION_AREA_SHARE`]).
    large: bool,
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
            switches: VecDeque::new(),
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
            if self.switches.len() == SWITCHES_KEPT {
                self.switches.pop_front();
            }
            self.switches.push_back(sample.at_us);
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
            let large_area = (sample.total_tiles as f64 * MOTION_AREA_SHARE).ceil() as usize;
            self.demand.push_back(Demand {
                at_us: sample.at_us,
                bytes,
                large: sample.changed_tiles >= large_area.max(MOTION_MIN_TILES),
            });
        }
        let oldest = self.latest_us.saturating_sub(DEMAND_WINDOW_US);
        while self
            .demand
            .front()
            .is_some_and(|d| d.at_us < oldest || self.demand.len() > MAX_SAMPLES)
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
        let mean = self.demand.iter().map(|d| d.bytes).sum::<f64>() / self.demand.len() as f64;
        Some(mean * 8.0 * f64::from(fps))
    }

    /// Whether a frame moved: a large region changed, and at `fps` its
    /// lossless bytes would need more than `budget_bps`.
    fn moved(d: &Demand, budget_bps: f64, fps: u32) -> bool {
        d.large && d.bytes * 8.0 * f64::from(fps) > budget_bps
    }

    /// Whether large regions are moving now: at least [`MOTION_FRAMES`] of
    /// the last [`MOTION_WINDOW`] frames moved (see [`RecentStats::moved`]).
    pub fn motion_now(&self, budget_bps: f64, fps: u32) -> bool {
        self.demand
            .iter()
            .rev()
            .take(MOTION_WINDOW)
            .filter(|d| Self::moved(d, budget_bps, fps))
            .count()
            >= MOTION_FRAMES
    }

    /// Capture time of the latest frame that moved, within the window.
    fn last_motion_us(&self, budget_bps: f64, fps: u32) -> Option<u64> {
        self.demand
            .iter()
            .rev()
            .find(|d| Self::moved(d, budget_bps, fps))
            .map(|d| d.at_us)
    }

    /// Lossless demand of the frames after `after_us`, bits per second at
    /// `fps` (0 when there is none).
    fn demand_after_bps(&self, after_us: u64, fps: u32) -> f64 {
        let (sum, n) = self
            .demand
            .iter()
            .filter(|d| d.at_us > after_us)
            .fold((0.0, 0usize), |(sum, n), d| (sum + d.bytes, n + 1));
        if n == 0 {
            0.0
        } else {
            sum / n as f64 * 8.0 * f64::from(fps)
        }
    }

    /// How long the screen must stay quiet before tiles return: longer when
    /// the active H.264 run started soon after the previous switch.
    fn settle_us(&self) -> u64 {
        let n = self.switches.len();
        let flapping = n >= 2 && self.switches[n - 1] - self.switches[n - 2] < FLAP_WINDOW_US;
        if flapping {
            SETTLE_AGAIN_US
        } else {
            SETTLE_US
        }
    }

    /// Whether the encoder should keep looking at an unchanged screen while
    /// H.264 runs: a motion episode may be about to settle, and only a
    /// captured frame moves the clock this policy reads.
    pub fn settling(&self) -> bool {
        self.active == Codec::H264
            && self.demand.iter().rev().find(|d| d.large).is_some_and(|d| {
                self.latest_us.saturating_sub(d.at_us) <= SETTLE_AGAIN_US + 100_000
            })
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
    let (codec, h264_bitrate_bps, lossless_soon) = match pref {
        Quality::Lossless => (Codec::ZstdTiles, h264_bitrate_bps, false),
        Quality::LowBandwidth => (Codec::H264, h264_bitrate_bps, false),
        Quality::Auto => {
            let budget = motion_budget_bps(path);
            let codec = content_codec(path, recent, max_fps, budget)
                .unwrap_or_else(|| auto_codec(path, recent, max_fps));
            // Moving content on H.264 gets the motion bitrate at most, and
            // keeps it until the episode is over (a change would restart
            // the encoder with a keyframe).
            let moving = recent.last_motion_us(budget, max_fps).is_some();
            let rate = if moving {
                h264_bitrate_bps.min(MOTION_H264_BPS)
            } else {
                h264_bitrate_bps
            };
            let fast = path
                .bandwidth_bps
                .is_none_or(|bw| bw >= FAST_RETURN_MIN_BPS);
            (codec, rate, moving && fast && codec == Codec::H264)
        }
    };
    Choice {
        codec,
        h264_bitrate_bps,
        max_fps,
        lossless_soon,
    }
}

/// Lossless bitrate the path carries well: [`MOTION_LOSSLESS_BUDGET_BPS`],
/// or less on a path slower than that.
fn motion_budget_bps(path: PathEstimate) -> f64 {
    match path.bandwidth_bps {
        Some(bw) => MOTION_LOSSLESS_BUDGET_BPS.min(LEAVE_LOSSLESS_SHARE * bw as f64),
        None => MOTION_LOSSLESS_BUDGET_BPS,
    }
}

/// The content rule (see the module documentation): `Some` when moving
/// content or its settling decides, `None` to leave it to the path rule.
fn content_codec(
    path: PathEstimate,
    recent: &RecentStats,
    fps: u32,
    budget_bps: f64,
) -> Option<Codec> {
    match recent.active() {
        Codec::ZstdTiles => recent.motion_now(budget_bps, fps).then_some(Codec::H264),
        Codec::H264 => {
            if path
                .bandwidth_bps
                .is_some_and(|bw| bw < FAST_RETURN_MIN_BPS)
            {
                return None;
            }
            let last = recent.last_motion_us(budget_bps, fps)?;
            if recent.latest_us.saturating_sub(last) < recent.settle_us() {
                // Still moving, or not quiet for long enough yet.
                return Some(Codec::H264);
            }
            // Quiet: back to tiles if what changes now fits the path.
            let rest = recent.demand_after_bps(last, fps);
            let fits = path
                .bandwidth_bps
                .is_none_or(|bw| rest <= RETURN_LOSSLESS_SHARE * bw as f64);
            fits.then_some(Codec::ZstdTiles)
        }
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
                total_tiles: 510,
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
                max_fps: FULL_FPS,
                lossless_soon: false,
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
            total_tiles: 510,
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

    /// 1080p: 30 × 17 tiles of 64 pixels.
    const TILES_1080P: usize = 510;

    /// A stand-in for the encoder: each frame asks the policy, then records
    /// what the chosen codec would have sent (`changed` tiles, `bytes` of
    /// lossless tiles for them; a switch to tiles sends a keyframe).
    /// Returns the choice made for each frame.
    fn drive(
        stats: &mut RecentStats,
        path: PathEstimate,
        start_us: u64,
        frames: &[(usize, usize)],
    ) -> Vec<Choice> {
        let mut at = start_us;
        frames
            .iter()
            .map(|&(changed, bytes)| {
                let choice = choose(Quality::Auto, path, stats);
                let switched = choice.codec != stats.active();
                stats.record(FrameSample {
                    at_us: at,
                    codec: choice.codec,
                    keyframe: switched,
                    bytes: match choice.codec {
                        Codec::ZstdTiles => bytes,
                        Codec::H264 => bytes / 40,
                    },
                    changed_tiles: changed,
                    total_tiles: TILES_1080P,
                });
                at += 33_333;
                choice
            })
            .collect()
    }

    /// Scrolling text at 1080p: nearly every tile, ~200 KB of lossless
    /// tiles a frame (48 Mbit/s at 30 fps, as measured).
    const SCROLL: (usize, usize) = (480, 200_000);
    /// A quiet screen.
    const QUIET: (usize, usize) = (0, 0);
    /// Typing: one tile, 1.5 KB.
    const TYPING: (usize, usize) = (1, 1_500);

    fn codecs(choices: &[Choice]) -> Vec<Codec> {
        choices.iter().map(|c| c.codec).collect()
    }

    #[test]
    fn a_scroll_burst_switches_to_h264_on_its_third_frame_on_a_fast_link() {
        let mut stats = RecentStats::new();
        let t = feed(&mut stats, Codec::ZstdTiles, 0, 30, 1_500, 1);
        let choices = drive(&mut stats, path(1000.0), t, &[SCROLL; 6]);
        use Codec::{ZstdTiles as T, H264 as H};
        // Two moving frames are measured with tiles, the third is H.264
        // although a 1 Gbit/s link would carry the tiles.
        assert_eq!(codecs(&choices), [T, T, H, H, H, H]);
        assert!(choices[2..]
            .iter()
            .all(|c| c.h264_bitrate_bps == MOTION_H264_BPS && c.lossless_soon));
        // The bandwidth rule alone would have stayed on tiles.
        assert_eq!(
            auto_codec(path(1000.0), &stats, FULL_FPS),
            Codec::H264,
            "the recorded codec is H.264 now"
        );
    }

    #[test]
    fn settling_returns_to_tiles_within_a_second_and_bursts_settle_later() {
        use Codec::{ZstdTiles as T, H264 as H};
        let mut stats = RecentStats::new();
        let mut t = feed(&mut stats, Codec::ZstdTiles, 0, 30, 1_500, 1);
        let scroll = drive(&mut stats, path(100.0), t, &[SCROLL; 60]);
        assert_eq!(scroll.last().map(|c| c.codec), Some(H));
        t += 60 * 33_333;
        let quiet = drive(&mut stats, path(100.0), t, &[QUIET; 30]);
        let back = codecs(&quiet).iter().position(|&c| c == T).unwrap();
        // The first quiet frame is at 0 ms: tiles return after SETTLE_US.
        assert_eq!(back, (SETTLE_US / 33_333) as usize + 1);
        assert!(
            codecs(&quiet)[back..].iter().all(|&c| c == T),
            "no flapping"
        );
        t += 30 * 33_333;

        // A second burst right after: H.264 again at once, and this time
        // tiles wait SETTLE_AGAIN_US (still under a second).
        let again = drive(&mut stats, path(100.0), t, &[SCROLL; 10]);
        assert_eq!(codecs(&again)[2..], [H; 8]);
        t += 10 * 33_333;
        let quiet = drive(&mut stats, path(100.0), t, &[QUIET; 40]);
        let back = codecs(&quiet).iter().position(|&c| c == T).unwrap();
        assert_eq!(back, (SETTLE_AGAIN_US / 33_333) as usize + 1);
        assert!(back as u64 * 33_333 < 1_000_000);
    }

    #[test]
    fn typing_and_single_big_frames_are_not_motion() {
        let mut stats = RecentStats::new();
        let mut frames = vec![TYPING; 30];
        // A window opens (one big frame), then a second one a bit later.
        frames[10] = SCROLL;
        frames[14] = SCROLL;
        let choices = drive(&mut stats, path(100.0), 0, &frames);
        assert!(codecs(&choices).iter().all(|&c| c == Codec::ZstdTiles));
    }

    #[test]
    fn small_moving_regions_stay_lossless_when_they_are_cheap() {
        // A progress bar: 20 tiles change every frame, but at 800 bytes a
        // frame (0.2 Mbit/s) tiles are cheap.
        let mut stats = RecentStats::new();
        let choices = drive(&mut stats, path(100.0), 0, &[(30, 800); 60]);
        assert!(codecs(&choices).iter().all(|&c| c == Codec::ZstdTiles));
    }

    #[test]
    fn a_slow_path_leaves_the_return_to_the_bandwidth_rule() {
        use Codec::H264 as H;
        // 0.8 Mbit/s: a lossless keyframe would take seconds, so tiles come
        // back only after the dwell time, when the bandwidth rule says so.
        let mut stats = RecentStats::new();
        let t = drive(&mut stats, path(0.8), 0, &[SCROLL; 10]);
        assert_eq!(t.last().map(|c| c.codec), Some(H));
        assert!(!t.last().is_some_and(|c| c.lossless_soon));
        let quiet = drive(&mut stats, path(0.8), 10 * 33_333, &[QUIET; 45]);
        assert!(codecs(&quiet).iter().all(|&c| c == H));
        let later = drive(&mut stats, path(0.8), 55 * 33_333, &[QUIET; 90]);
        assert_eq!(later.last().map(|c| c.codec), Some(Codec::ZstdTiles));
    }

    #[test]
    fn settling_waits_while_what_still_changes_does_not_fit() {
        // 6 Mbit/s path; after the scroll a smaller animation keeps costing
        // 3.6 Mbit/s of tiles (> 50 % of the path): stay on H.264.
        let mut stats = RecentStats::new();
        drive(&mut stats, path(6.0), 0, &[SCROLL; 10]);
        let busy = drive(&mut stats, path(6.0), 10 * 33_333, &[(20, 15_000); 30]);
        assert!(codecs(&busy).iter().all(|&c| c == Codec::H264));
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
