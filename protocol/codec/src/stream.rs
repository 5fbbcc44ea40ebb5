//! The session-facing pair: an [`Encoder`] that runs whichever codec the
//! policy chose and a [`Decoder`] that follows the codec of each frame, so
//! neither the agent nor the viewer cares which one is active.
//!
//! A codec switch always starts with a keyframe. While H.264 runs the encoder
//! still compares frames tile by tile (cheap), so a static screen sends
//! nothing with either codec and the policy knows what lossless would cost.

use deskside_protocol::session::{Codec, VideoFrame};
use thiserror::Error;

use crate::adapt::{Choice, FrameSample, RecentStats};
use crate::frame::BgraFrame;
use crate::h264::{check_h264_size, H264Config, H264Decoder, H264Encoder, H264Error};
use crate::tiles::{TileConfig, TileDecodeError, TileDecoder, TileEncodeError, TileEncoder};

/// Encoder settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EncoderConfig {
    /// Lossless tiles.
    pub tiles: TileConfig,
    /// H.264 (the bitrate and frame rate change with [`Encoder::apply`]).
    pub h264: H264Config,
    /// Codec to start with. Default lossless tiles.
    pub initial_codec: Codec,
    /// With H.264, frames still encoded after the screen stopped changing, so
    /// the picture sharpens instead of staying at the quality of the last
    /// change. Default 15 (half a second at 30 fps).
    pub h264_refine_frames: u32,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            tiles: TileConfig::default(),
            h264: H264Config::default(),
            initial_codec: Codec::ZstdTiles,
            h264_refine_frames: 15,
        }
    }
}

/// Why a frame could not be encoded.
#[derive(Debug, Error)]
pub enum EncodeError {
    /// Lossless tiles failed.
    #[error(transparent)]
    Tiles(#[from] TileEncodeError),
    /// H.264 failed.
    #[error(transparent)]
    H264(#[from] H264Error),
}

/// Why a frame could not be decoded. Whatever the variant, the picture is
/// stale: send `ConsoleToAgent::RequestKeyframe` and keep showing the last
/// good picture until a keyframe decodes.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// A lossless tiles payload was refused.
    #[error(transparent)]
    Tiles(#[from] TileDecodeError),
    /// An H.264 payload was refused.
    #[error(transparent)]
    H264(#[from] H264Error),
    /// The codec changed without a keyframe.
    #[error("the codec changed to {to:?} without a keyframe; ask for a keyframe")]
    SwitchWithoutKeyframe {
        /// The new codec.
        to: Codec,
    },
}

/// One encoded frame, ready for a [`VideoFrame`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedFrame {
    /// How `payload` is encoded.
    pub codec: Codec,
    /// Whether it decodes on its own.
    pub keyframe: bool,
    /// The bytes.
    pub payload: Vec<u8>,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
}

impl EncodedFrame {
    /// Wraps the frame into the session message (cursor left empty).
    pub fn into_video_frame(self, seq: u64, monitor: u8, captured_us: u64) -> VideoFrame {
        VideoFrame {
            seq,
            monitor,
            width: self.width,
            height: self.height,
            codec: self.codec,
            keyframe: self.keyframe,
            payload: self.payload,
            cursor: None,
            captured_us,
        }
    }
}

/// Encodes captured frames with the active codec.
#[derive(Debug)]
pub struct Encoder {
    tiles: TileEncoder,
    h264: Option<H264Encoder>,
    h264_config: H264Config,
    refine_frames: u32,
    active: Codec,
    keyframe_due: bool,
    /// Codec of the last frame sent; a frame of another codec is a keyframe.
    last_sent: Option<Codec>,
    frames_since_change: u32,
    /// From the policy: H.264 skips refining a still picture, since
    /// lossless tiles come back once the screen is quiet.
    lossless_soon: bool,
    recent: RecentStats,
}

impl Encoder {
    /// Creates an encoder; the first frame is a keyframe.
    pub fn new(config: EncoderConfig) -> Result<Self, EncodeError> {
        Ok(Self {
            tiles: TileEncoder::new(config.tiles)?,
            h264: None,
            h264_config: config.h264,
            refine_frames: config.h264_refine_frames,
            active: config.initial_codec,
            keyframe_due: true,
            last_sent: None,
            frames_since_change: 0,
            lossless_soon: false,
            recent: RecentStats::new(),
        })
    }

    /// The codec of the next frame.
    pub fn active_codec(&self) -> Codec {
        self.active
    }

    /// The H.264 settings in force.
    pub fn h264_config(&self) -> H264Config {
        self.h264_config
    }

    /// History for [`crate::adapt::choose`].
    pub fn recent(&self) -> &RecentStats {
        &self.recent
    }

    /// Whether [`Encoder::encode`] has work to do for a frame the capturer
    /// knows is identical to the previous one: a keyframe is due, the codec
    /// changed, H.264 is still refining the last change, or a motion episode
    /// is settling (the policy reads its time from frames). When `false`
    /// the caller may skip the call (and its full-frame comparison): its
    /// answer would be `None`.
    pub fn wants_unchanged_frame(&self) -> bool {
        if self.keyframe_due || self.last_sent != Some(self.active) || self.recent.settling() {
            return true;
        }
        self.active == Codec::H264 && self.frames_since_change <= self.refine_frames
    }

    /// Lets lossless tiles carry copies and strips (scrolling; see
    /// `tiles.rs`), for a viewer that announced it decodes them
    /// (`ConsoleToAgent::DecodesTileCopies`). Off by default: an older
    /// viewer would refuse such frames. With copies a scroll costs the
    /// uncovered strip, not the moved tiles, so the policy sees no large
    /// moving region and keeps the exact picture instead of switching to
    /// H.264.
    pub fn allow_copies(&mut self, allowed: bool) {
        self.tiles.allow_copies(allowed);
    }

    /// Makes the next frame a keyframe (the viewer asked, or a new viewer).
    pub fn request_keyframe(&mut self) {
        self.keyframe_due = true;
    }

    /// Follows the policy: switches codec (next frame is a keyframe) and
    /// retunes H.264. The H.264 encoder restarts (with a keyframe) only when
    /// the frame rate changes or the bitrate moves by more than 20 %, since
    /// OpenH264 cannot change them in place through the safe API.
    pub fn apply(&mut self, choice: &Choice) {
        self.lossless_soon = choice.lossless_soon;
        if choice.codec != self.active {
            // The keyframe follows from the codec differing from the last sent.
            self.active = choice.codec;
            self.frames_since_change = 0;
        }
        let old = self.h264_config;
        let ratio = f64::from(choice.h264_bitrate_bps) / f64::from(old.bitrate_bps.max(1));
        let fps = choice.max_fps as f32;
        if !(0.8..=1.25).contains(&ratio) || fps != old.max_fps {
            self.h264_config = H264Config {
                bitrate_bps: choice.h264_bitrate_bps,
                max_fps: fps,
                ..old
            };
            if self.h264.take().is_some() && self.active == Codec::H264 {
                self.keyframe_due = true;
            }
        }
    }

    /// Encodes one captured frame; `captured_us` is its capture time.
    /// Returns `None` when nothing needs sending (the screen did not change).
    pub fn encode(
        &mut self,
        frame: &BgraFrame<'_>,
        captured_us: u64,
    ) -> Result<Option<EncodedFrame>, EncodeError> {
        // H.264 cannot carry screens above 4K: fall back to tiles for them.
        let codec = match self.active {
            Codec::H264 if check_h264_size(frame.width(), frame.height()).is_err() => {
                Codec::ZstdTiles
            }
            other => other,
        };
        let want_keyframe = self.keyframe_due || self.last_sent != Some(codec);
        let tile = u32::from(self.tiles.config().tile_size.max(1));
        // A strip counts as the tiles its pixels would fill.
        let tile_area = (tile * tile) as usize;
        let (keyframe, payload, changed_tiles) = match codec {
            Codec::ZstdTiles => match self.tiles.encode(frame, want_keyframe)? {
                Some(out) => (
                    out.keyframe,
                    Some(out.payload),
                    out.tiles + out.strip_pixels.div_ceil(tile_area),
                ),
                None => (false, None, 0),
            },
            Codec::H264 => {
                // What tiles would send, copies included.
                let changes = self.tiles.estimate_changes(frame);
                let changed = changes.tiles + changes.strip_pixels.div_ceil(tile_area);
                if changed > 0 {
                    self.frames_since_change = 0;
                } else {
                    self.frames_since_change = self.frames_since_change.saturating_add(1);
                }
                let refined = self.frames_since_change > self.refine_frames
                    || (self.lossless_soon && changed == 0);
                if !want_keyframe && refined {
                    (false, None, 0)
                } else {
                    let encoder = match &mut self.h264 {
                        Some(encoder) => encoder,
                        None => self.h264.insert(H264Encoder::new(self.h264_config)?),
                    };
                    match encoder.encode(frame, captured_us / 1000, want_keyframe)? {
                        Some(out) => (out.keyframe, Some(out.payload), changed),
                        None => (false, None, changed),
                    }
                }
            }
        };
        if keyframe {
            self.keyframe_due = false;
            self.last_sent = Some(codec);
        }
        let total_tiles =
            frame.width().div_ceil(tile) as usize * frame.height().div_ceil(tile) as usize;
        self.recent.record(FrameSample {
            at_us: captured_us,
            codec,
            keyframe,
            bytes: payload.as_ref().map_or(0, Vec::len),
            changed_tiles,
            total_tiles,
        });
        Ok(payload.map(|payload| EncodedFrame {
            codec,
            keyframe,
            payload,
            width: frame.width(),
            height: frame.height(),
        }))
    }
}

/// A decoded picture: straight RGBA, `width * height * 4` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Picture<'a> {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixels, rows top to bottom, `R G B A` with A = 255.
    pub rgba: &'a [u8],
}

/// Decodes frames of either codec into one picture.
#[derive(Debug)]
pub struct Decoder {
    tiles: TileDecoder,
    h264: Option<H264Decoder>,
    current: Option<Codec>,
}

impl Decoder {
    /// Creates a decoder with no picture; the first frame must be a keyframe.
    pub fn new() -> Result<Self, DecodeError> {
        Ok(Self {
            tiles: TileDecoder::new()?,
            h264: None,
            current: None,
        })
    }

    /// Decodes a session video frame.
    pub fn decode_frame(&mut self, frame: &VideoFrame) -> Result<(), DecodeError> {
        self.decode(
            frame.codec,
            frame.keyframe,
            frame.width,
            frame.height,
            &frame.payload,
        )
    }

    /// Decodes one payload of a `width`×`height` frame. After an error, ask
    /// for a keyframe; [`Decoder::picture`] is `None` until one decodes.
    pub fn decode(
        &mut self,
        codec: Codec,
        keyframe: bool,
        width: u32,
        height: u32,
        payload: &[u8],
    ) -> Result<(), DecodeError> {
        if self.current != Some(codec) && !keyframe {
            self.current = None;
            return Err(DecodeError::SwitchWithoutKeyframe { to: codec });
        }
        self.current = Some(codec);
        let result = match codec {
            Codec::ZstdTiles => self
                .tiles
                .decode(keyframe, width, height, payload)
                .map(drop)
                .map_err(DecodeError::from),
            Codec::H264 => {
                let decoder = match &mut self.h264 {
                    Some(decoder) => decoder,
                    None => self.h264.insert(H264Decoder::new()?),
                };
                decoder
                    .decode(keyframe, width, height, payload)
                    .map(drop)
                    .map_err(DecodeError::from)
            }
        };
        if result.is_err() {
            self.current = None;
        }
        result
    }

    /// The current picture, if the last keyframe and every frame since
    /// decoded.
    pub fn picture(&self) -> Option<Picture<'_>> {
        let ((width, height), rgba) = match self.current? {
            Codec::ZstdTiles => (self.tiles.size(), self.tiles.rgba()?),
            Codec::H264 => {
                let h264 = self.h264.as_ref()?;
                (h264.size(), h264.rgba()?)
            }
        };
        Some(Picture {
            width,
            height,
            rgba,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapt::choose;
    use deskside_protocol::session::Quality;

    fn screen(width: u32, height: u32, shift: u32) -> Vec<u8> {
        let mut out = Vec::new();
        for y in 0..height {
            for x in 0..width {
                let text = (x + shift) % 9 < 2 && y % 12 < 8;
                let v: u8 = if text { 220 } else { 40 };
                out.extend_from_slice(&[v, v, v.saturating_add((x / 4) as u8), 255]);
            }
        }
        out
    }

    fn choice(codec: Codec) -> Choice {
        Choice {
            codec,
            h264_bitrate_bps: 2_000_000,
            max_fps: 30,
            lossless_soon: false,
        }
    }

    #[test]
    fn switches_codec_with_a_keyframe_and_decodes_both() {
        let (w, h) = (128, 96);
        let mut enc = Encoder::new(EncoderConfig::default()).unwrap();
        let mut dec = Decoder::new().unwrap();
        let a = screen(w, h, 0);
        let frame = BgraFrame::packed(&a, w, h).unwrap();
        let first = enc.encode(&frame, 0).unwrap().unwrap();
        assert_eq!((first.codec, first.keyframe), (Codec::ZstdTiles, true));
        let video = first.into_video_frame(0, 0, 0);
        dec.decode_frame(&video).unwrap();
        assert_eq!(dec.picture().unwrap().rgba.len(), (w * h * 4) as usize);
        // Static: nothing to send.
        assert_eq!(enc.encode(&frame, 33_000).unwrap(), None);

        enc.apply(&choice(Codec::H264));
        let key = enc.encode(&frame, 66_000).unwrap().unwrap();
        assert_eq!((key.codec, key.keyframe), (Codec::H264, true));
        dec.decode(key.codec, key.keyframe, w, h, &key.payload)
            .unwrap();
        let picture = dec.picture().unwrap();
        assert_eq!((picture.width, picture.height), (w, h));

        // Back to tiles: keyframe again, exact picture.
        enc.apply(&choice(Codec::ZstdTiles));
        let b = screen(w, h, 3);
        let out = enc
            .encode(&BgraFrame::packed(&b, w, h).unwrap(), 99_000)
            .unwrap()
            .unwrap();
        assert_eq!((out.codec, out.keyframe), (Codec::ZstdTiles, true));
        dec.decode(out.codec, out.keyframe, w, h, &out.payload)
            .unwrap();
        let expected: Vec<u8> = b
            .chunks_exact(4)
            .flat_map(|p| [p[2], p[1], p[0], 255])
            .collect();
        assert_eq!(dec.picture().unwrap().rgba, &expected[..]);
    }

    #[test]
    fn h264_stops_sending_after_refinement_on_a_static_screen() {
        let (w, h) = (64, 64);
        let mut enc = Encoder::new(EncoderConfig {
            initial_codec: Codec::H264,
            h264_refine_frames: 3,
            ..EncoderConfig::default()
        })
        .unwrap();
        let a = screen(w, h, 0);
        let frame = BgraFrame::packed(&a, w, h).unwrap();
        let sent: Vec<bool> = (0..8)
            .map(|i| enc.encode(&frame, i * 33_000).unwrap().is_some())
            .collect();
        // Keyframe, 3 refinement frames, then silence.
        assert_eq!(sent, [true, true, true, true, false, false, false, false]);
        enc.request_keyframe();
        let key = enc.encode(&frame, 300_000).unwrap().unwrap();
        assert!(key.keyframe);
    }

    /// `wants_unchanged_frame` is `false` exactly when encoding an
    /// identical frame would give `None`, for both codecs and across a
    /// keyframe request and a codec switch.
    #[test]
    fn an_unchanged_frame_is_skipped_only_when_encoding_it_would_send_nothing() {
        let (w, h) = (64, 64);
        let mut enc = Encoder::new(EncoderConfig {
            h264_refine_frames: 2,
            ..EncoderConfig::default()
        })
        .unwrap();
        let a = screen(w, h, 0);
        let frame = BgraFrame::packed(&a, w, h).unwrap();
        let mut t = 0;
        let mut step = |enc: &mut Encoder| {
            let wanted = enc.wants_unchanged_frame();
            t += 33_000;
            let sent = enc.encode(&frame, t).unwrap().is_some();
            assert!(wanted || !sent, "skipped a frame that had to be sent");
            (wanted, sent)
        };
        assert_eq!(step(&mut enc), (true, true), "first frame");
        assert_eq!(step(&mut enc), (false, false), "static tiles");
        enc.request_keyframe();
        assert_eq!(step(&mut enc), (true, true), "keyframe asked");
        assert!(!enc.wants_unchanged_frame());
        enc.apply(&choice(Codec::H264));
        let h264: Vec<(bool, bool)> = (0..5).map(|_| step(&mut enc)).collect();
        // Keyframe, one refinement (the switch frame already counted as
        // unchanged), one last check that sends nothing, then skipping.
        assert_eq!(
            h264,
            [
                (true, true),
                (true, true),
                (true, false),
                (false, false),
                (false, false)
            ]
        );
    }

    /// A page of noisy text (lossless tiles cost a lot), `offset` rows
    /// further down.
    fn page(width: u32, height: u32, offset: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity((width * height * 4) as usize);
        for y in offset..offset + height {
            for x in 0..width {
                let mut h = (u64::from(x) << 32 | u64::from(y)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                h ^= h >> 29;
                let ink = y % 16 < 11 && h % 3 == 0;
                let v = if ink { (h >> 40) as u8 & 0x7F } else { 250 };
                out.extend_from_slice(&[v, v, v.wrapping_add((h >> 8) as u8 & 3), 255]);
            }
        }
        out
    }

    /// The content rule end to end through the real codecs: a scroll goes to
    /// H.264 within a few frames on a fast link, and once the screen is
    /// still the viewer's picture is pixel-exact again within a second.
    #[test]
    fn a_scroll_goes_to_h264_and_settles_back_to_an_exact_picture() {
        let (w, h) = (640, 480);
        let mut enc = Encoder::new(EncoderConfig::default()).unwrap();
        let mut dec = Decoder::new().unwrap();
        let path = crate::adapt::PathEstimate {
            bandwidth_bps: Some(100_000_000),
            rtt_ms: Some(10.0),
        };
        let mut codecs = Vec::new();
        let mut step = |enc: &mut Encoder, pixels: &[u8], at_us: u64| {
            enc.apply(&choose(Quality::Auto, path, enc.recent()));
            let frame = BgraFrame::packed(pixels, w, h).unwrap();
            if let Some(out) = enc.encode(&frame, at_us).unwrap() {
                dec.decode(out.codec, out.keyframe, w, h, &out.payload)
                    .unwrap();
                codecs.push((at_us, out.codec));
            }
        };
        let mut at = 0;
        for offset in 0..20 {
            step(&mut enc, &page(w, h, offset * 3), at);
            at += 33_333;
        }
        let last = page(w, h, 19 * 3);
        let stopped_at = at;
        // Still screen: the capture loop keeps looking while it settles.
        while at < stopped_at + 1_000_000 && enc.wants_unchanged_frame() {
            step(&mut enc, &last, at);
            at += 33_333;
        }
        let first_h264 = codecs.iter().position(|&(_, c)| c == Codec::H264);
        assert!(
            first_h264.is_some_and(|i| i <= 3),
            "H.264 by the fourth frame of the scroll: {codecs:?}"
        );
        let &(back_at, codec) = codecs.last().unwrap();
        assert_eq!(codec, Codec::ZstdTiles, "tiles return: {codecs:?}");
        // No H.264 refinement of the still picture: the lossless keyframe
        // is the one frame sent after the scroll.
        assert_eq!(
            codecs.iter().filter(|&&(t, _)| t >= stopped_at).count(),
            1,
            "{codecs:?}"
        );
        assert!(back_at - stopped_at < 1_000_000);
        assert!(
            !enc.wants_unchanged_frame(),
            "settled: nothing more to look at"
        );
        let expected: Vec<u8> = last
            .chunks_exact(4)
            .flat_map(|p| [p[2], p[1], p[0], 255])
            .collect();
        assert!(
            dec.picture().unwrap().rgba == &expected[..],
            "the refined picture is pixel-exact"
        );
    }

    fn rgba(bgra: &[u8]) -> Vec<u8> {
        bgra.chunks_exact(4)
            .flat_map(|p| [p[2], p[1], p[0], 255])
            .collect()
    }

    /// Whether a tiles payload carries copies (flag bit 2).
    fn has_copies(out: &EncodedFrame) -> bool {
        out.codec == Codec::ZstdTiles && out.payload[1] & crate::tiles::FLAG_COPIES != 0
    }

    /// The same scroll as above with a viewer that decodes copies: lossless
    /// all along, exact at every frame, and a small part of the bytes.
    #[test]
    fn with_copies_a_scroll_stays_lossless_and_exact_at_every_frame() {
        let (w, h) = (640, 480);
        let path = crate::adapt::PathEstimate {
            bandwidth_bps: Some(100_000_000),
            rtt_ms: Some(10.0),
        };
        let mut bytes = [0usize; 2];
        for copies in [false, true] {
            let mut enc = Encoder::new(EncoderConfig::default()).unwrap();
            enc.allow_copies(copies);
            let mut dec = Decoder::new().unwrap();
            for offset in 0..30 {
                enc.apply(&choose(Quality::Auto, path, enc.recent()));
                let pixels = page(w, h, offset * 3);
                let frame = BgraFrame::packed(&pixels, w, h).unwrap();
                let out = enc.encode(&frame, u64::from(offset) * 33_333).unwrap();
                // H.264 may skip a frame to hold its rate; tiles never do.
                let Some(out) = out else {
                    assert!(!copies, "frame {offset}: nothing sent with copies");
                    continue;
                };
                dec.decode(out.codec, out.keyframe, w, h, &out.payload)
                    .unwrap();
                if offset > 0 {
                    bytes[usize::from(copies)] += out.payload.len();
                }
                if copies {
                    assert_eq!(out.codec, Codec::ZstdTiles, "frame {offset}");
                    assert_eq!(has_copies(&out), offset > 0, "frame {offset}");
                    assert!(
                        dec.picture().unwrap().rgba == &rgba(&pixels)[..],
                        "frame {offset} is not exact"
                    );
                }
            }
        }
        // Without copies: two lossless frames then H.264 (see above).
        assert!(
            bytes[1] * 4 < bytes[0],
            "with copies {} B, without {} B",
            bytes[1],
            bytes[0]
        );
    }

    /// A page `offset` pixels to the left (a horizontal drag: no copy).
    fn dragged(width: u32, height: u32, offset: u32) -> Vec<u8> {
        let wide = page(width + 200, height, 0);
        let row = (width + 200) as usize * 4;
        (0..height as usize)
            .flat_map(|y| {
                let start = y * row + offset as usize * 4;
                wide[start..start + width as usize * 4].to_vec()
            })
            .collect()
    }

    /// H.264 runs for a drag; a scroll that copies explain is not motion,
    /// so tiles come back within a second although the page keeps moving.
    #[test]
    fn a_scroll_explained_by_copies_brings_tiles_back_after_a_drag() {
        let (w, h) = (640, 480);
        let mut enc = Encoder::new(EncoderConfig::default()).unwrap();
        enc.allow_copies(true);
        let mut dec = Decoder::new().unwrap();
        let path = crate::adapt::PathEstimate {
            bandwidth_bps: Some(100_000_000),
            rtt_ms: Some(10.0),
        };
        let mut at = 0;
        let mut sent = Vec::new();
        let mut step = |enc: &mut Encoder, pixels: &[u8], sent: &mut Vec<(bool, Codec, bool)>| {
            enc.apply(&choose(Quality::Auto, path, enc.recent()));
            let frame = BgraFrame::packed(pixels, w, h).unwrap();
            if let Some(out) = enc.encode(&frame, at).unwrap() {
                dec.decode(out.codec, out.keyframe, w, h, &out.payload)
                    .unwrap();
                let exact = dec.picture().unwrap().rgba == &rgba(pixels)[..];
                sent.push((has_copies(&out), out.codec, exact));
            }
            at += 33_333;
        };
        for offset in 0..20 {
            step(&mut enc, &dragged(w, h, offset * 7), &mut sent);
        }
        assert!(sent.iter().any(|&(_, codec, _)| codec == Codec::H264));
        let drag_frames = sent.len();
        // Then the page scrolls for 2 s.
        for offset in 0..60 {
            step(&mut enc, &page(w, h, offset * 3), &mut sent);
        }
        let scroll = &sent[drag_frames..];
        let back = scroll
            .iter()
            .position(|&(_, codec, _)| codec == Codec::ZstdTiles)
            .expect("tiles return while it scrolls");
        assert!(back <= 30, "tiles back after {back} frames: {scroll:?}");
        // From then on: copies, and the exact picture at every frame.
        assert!(
            scroll[back + 1..]
                .iter()
                .all(|&(copy, codec, exact)| copy && codec == Codec::ZstdTiles && exact),
            "{scroll:?}"
        );
    }

    #[test]
    fn codec_switch_without_keyframe_is_refused() {
        let (w, h) = (64, 64);
        let mut enc = Encoder::new(EncoderConfig::default()).unwrap();
        let mut dec = Decoder::new().unwrap();
        let a = screen(w, h, 0);
        let key = enc
            .encode(&BgraFrame::packed(&a, w, h).unwrap(), 0)
            .unwrap()
            .unwrap();
        dec.decode(key.codec, true, w, h, &key.payload).unwrap();
        let err = dec.decode(Codec::H264, false, w, h, &[0, 0, 0, 1, 0x41]);
        assert!(matches!(
            err,
            Err(DecodeError::SwitchWithoutKeyframe { .. })
        ));
        assert!(dec.picture().is_none());
    }

    #[test]
    fn policy_drives_the_encoder() {
        let mut enc = Encoder::new(EncoderConfig::default()).unwrap();
        let c = choose(Quality::LowBandwidth, Default::default(), enc.recent());
        enc.apply(&c);
        assert_eq!(enc.active_codec(), Codec::H264);
        // A small bitrate change keeps the encoder; a large one retunes it.
        enc.apply(&Choice {
            h264_bitrate_bps: 2_200_000,
            ..c
        });
        assert_eq!(enc.h264_config().bitrate_bps, 2_000_000);
        enc.apply(&Choice {
            h264_bitrate_bps: 500_000,
            ..c
        });
        assert_eq!(enc.h264_config().bitrate_bps, 500_000);
    }
}
