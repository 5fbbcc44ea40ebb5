//! H.264 with OpenH264 (built from source by the `openh264` crate): BGRA →
//! YUV 4:2:0 → one access unit per frame, and back to straight RGBA.
//!
//! H.264 needs even dimensions: an odd-sized frame is padded by repeating its
//! last column and row, and the decoder crops the padding away again, so both
//! ends talk about the frame's real size. The encoder uses OpenH264's
//! screen-content mode with bitrate rate control, no periodic keyframes
//! (keyframes only when asked, or when the size changes). Frame skipping is
//! on, because OpenH264's rate control only holds the bitrate with it: a
//! skipped frame encodes to nothing (`Ok(None)`).
//!
//! The payload is the Annex B byte stream of one access unit (start codes,
//! SPS/PPS before every IDR). The decoder hands it to OpenH264, which parses
//! untrusted input; this module checks the payload size and the decoded
//! picture size before using anything.

use openh264::encoder::{
    BitRate, Complexity, EncoderConfig, FrameRate, FrameType, QpRange, RateControlMode, UsageType,
};
use openh264::formats::YUVSource;
use openh264::{OpenH264API, Timestamp};
use thiserror::Error;

use crate::frame::{check_dimensions, BgraFrame};

/// OpenH264's largest picture (level 5.2): 3840×2160, either way round.
pub const MAX_H264_LONG_SIDE: u32 = 3840;
/// See [`MAX_H264_LONG_SIDE`].
pub const MAX_H264_SHORT_SIDE: u32 = 2160;

/// Largest H.264 payload accepted by the decoder. A 4K keyframe at high
/// quality is a few MB; the video stream caps frames at 32 MiB anyway.
pub const MAX_H264_PAYLOAD: usize = 16 * 1024 * 1024;

/// Encoder settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct H264Config {
    /// Target bitrate in bits per second. Default 2 Mbit/s.
    pub bitrate_bps: u32,
    /// Frame rate the rate control plans for. Default 30.
    pub max_fps: f32,
    /// Encoder threads: 1 keeps the agent to one core on the employee's
    /// laptop; 0 lets OpenH264 decide. Default 1.
    pub threads: u16,
    /// Lowest quantizer (0–51, 0 is the finest) the rate control may use.
    /// Default 0. A floor keeps the first frame (an I-frame) from taking
    /// seconds of a low bitrate's budget, which OpenH264 then pays back by
    /// skipping frames.
    pub min_qp: u8,
}

impl Default for H264Config {
    fn default() -> Self {
        Self {
            bitrate_bps: 2_000_000,
            max_fps: 30.0,
            threads: 1,
            min_qp: 0,
        }
    }
}

/// Why H.264 encoding or decoding failed.
#[derive(Debug, Error)]
pub enum H264Error {
    /// The frame is larger than OpenH264 supports.
    #[error("a {width}x{height} frame is larger than H.264 here supports ({MAX_H264_LONG_SIDE}x{MAX_H264_SHORT_SIDE}); use lossless tiles for this monitor")]
    TooLarge {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// The bitrate or frame rate is unusable.
    #[error(
        "H.264 settings are invalid ({0}); use a bitrate of at least 50 kbit/s and 1 to 120 fps"
    )]
    BadConfig(String),
    /// OpenH264 reported an error while encoding.
    #[error("the H.264 encoder failed: {0}; request a keyframe, or switch to lossless tiles if it persists")]
    Encode(String),
    /// The payload is empty or larger than [`MAX_H264_PAYLOAD`].
    #[error("H.264 payload of {0} bytes is empty or too large; ask for a keyframe")]
    BadPayload(usize),
    /// OpenH264 could not decode the payload.
    #[error("the H.264 payload could not be decoded: {0}; ask for a keyframe")]
    Decode(String),
    /// The decoded picture has another size than the frame announced.
    #[error("H.264 picture is {got_width}x{got_height} but the frame says {width}x{height} (padded to even sizes); ask for a keyframe")]
    SizeMismatch {
        /// Decoded width.
        got_width: usize,
        /// Decoded height.
        got_height: usize,
        /// Announced width.
        width: u32,
        /// Announced height.
        height: u32,
    },
    /// A frame that needs earlier frames arrived without them.
    #[error("an H.264 frame arrived before a keyframe (or after an error); ask for a keyframe")]
    NeedKeyframe,
}

/// Rounds up to even.
fn even(n: u32) -> u32 {
    n + (n & 1)
}

/// Checks that H.264 can carry a `width`×`height` frame.
pub fn check_h264_size(width: u32, height: u32) -> Result<(), H264Error> {
    let (long, short) = (width.max(height), width.min(height));
    if check_dimensions(width, height).is_err()
        || even(long) > MAX_H264_LONG_SIDE
        || even(short) > MAX_H264_SHORT_SIDE
    {
        return Err(H264Error::TooLarge { width, height });
    }
    Ok(())
}

/// A 4:2:0 picture (I420, planes without padding), even-sized.
#[derive(Debug, Default)]
struct Yuv420 {
    width: usize,
    height: usize,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

impl YUVSource for Yuv420 {
    fn dimensions(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    fn strides(&self) -> (usize, usize, usize) {
        (self.width, self.width / 2, self.width / 2)
    }

    fn y(&self) -> &[u8] {
        &self.y
    }

    fn u(&self) -> &[u8] {
        &self.u
    }

    fn v(&self) -> &[u8] {
        &self.v
    }
}

// BT.601 limited range, 8-bit fixed point: what H.264 decoders (and the
// `openh264` crate's YUV → RGB) assume when the stream says nothing else.
fn luma(r: i32, g: i32, b: i32) -> u8 {
    (((66 * r + 129 * g + 25 * b + 128) >> 8) + 16) as u8
}

fn chroma_u(r: i32, g: i32, b: i32) -> u8 {
    (((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128) as u8
}

fn chroma_v(r: i32, g: i32, b: i32) -> u8 {
    (((112 * r - 94 * g - 18 * b + 128) >> 8) + 128) as u8
}

impl Yuv420 {
    /// Converts a BGRA frame, padding odd sizes by repeating the last column
    /// and row.
    fn fill_from(&mut self, frame: &BgraFrame<'_>) {
        let (w, h) = (frame.width() as usize, frame.height() as usize);
        let (pw, ph) = (even(frame.width()) as usize, even(frame.height()) as usize);
        self.width = pw;
        self.height = ph;
        self.y.resize(pw * ph, 0);
        self.u.resize(pw * ph / 4, 0);
        self.v.resize(pw * ph / 4, 0);
        let half = pw / 2;
        for cy in 0..ph / 2 {
            let top = frame.row((2 * cy).min(h - 1));
            let bottom = frame.row((2 * cy + 1).min(h - 1));
            let (y_top, y_bottom) = self.y[2 * cy * pw..(2 * cy + 2) * pw].split_at_mut(pw);
            let u_row = &mut self.u[cy * half..(cy + 1) * half];
            let v_row = &mut self.v[cy * half..(cy + 1) * half];
            for cx in 0..half {
                let x0 = 2 * cx;
                let x1 = (x0 + 1).min(w - 1);
                let mut sum = [0i32; 3];
                for (row, out) in [(top, &mut *y_top), (bottom, &mut *y_bottom)] {
                    for (x, dst) in [(x0, 2 * cx), (x1, 2 * cx + 1)] {
                        let px = &row[x * 4..x * 4 + 3];
                        let (b, g, r) = (i32::from(px[0]), i32::from(px[1]), i32::from(px[2]));
                        out[dst] = luma(r, g, b);
                        sum[0] += r;
                        sum[1] += g;
                        sum[2] += b;
                    }
                }
                let [r, g, b] = sum.map(|s| (s + 2) / 4);
                u_row[cx] = chroma_u(r, g, b);
                v_row[cx] = chroma_v(r, g, b);
            }
        }
    }
}

/// One encoded H.264 access unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct H264Frame {
    /// Whether it is an IDR/I frame (decodes on its own).
    pub keyframe: bool,
    /// Annex B bytes.
    pub payload: Vec<u8>,
}

/// H.264 encoder for BGRA frames.
pub struct H264Encoder {
    encoder: openh264::encoder::Encoder,
    config: H264Config,
    yuv: Yuv420,
}

impl std::fmt::Debug for H264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Encoder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl H264Encoder {
    /// Creates an encoder; the first frame it encodes is a keyframe.
    pub fn new(config: H264Config) -> Result<Self, H264Error> {
        if config.bitrate_bps < 50_000 || !(1.0..=120.0).contains(&config.max_fps) {
            return Err(H264Error::BadConfig(format!(
                "{} bit/s at {} fps",
                config.bitrate_bps, config.max_fps
            )));
        }
        let settings = EncoderConfig::new()
            .usage_type(UsageType::ScreenContentRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            .bitrate(BitRate::from_bps(config.bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(config.max_fps))
            // OpenH264 only holds the bitrate when it may skip frames; a
            // skipped frame returns `None` and the session's `Encoder` asks
            // again for a keyframe that was skipped.
            .skip_frames(true)
            .qp(QpRange::new(config.min_qp.min(51), 51))
            // Not supported for screen content (OpenH264 warns and turns them off).
            .adaptive_quantization(false)
            .background_detection(false)
            .complexity(Complexity::Low)
            .debug(false)
            .num_threads(config.threads);
        let encoder =
            openh264::encoder::Encoder::with_api_config(OpenH264API::from_source(), settings)
                .map_err(|e| H264Error::Encode(e.to_string()))?;
        Ok(Self {
            encoder,
            config,
            yuv: Yuv420::default(),
        })
    }

    /// The settings.
    pub fn config(&self) -> H264Config {
        self.config
    }

    /// Encodes one frame; `timestamp_ms` is the capture time (for rate
    /// control), `keyframe` forces an IDR. Returns `None` when OpenH264
    /// produced nothing for this frame.
    pub fn encode(
        &mut self,
        frame: &BgraFrame<'_>,
        timestamp_ms: u64,
        keyframe: bool,
    ) -> Result<Option<H264Frame>, H264Error> {
        check_h264_size(frame.width(), frame.height())?;
        self.yuv.fill_from(frame);
        if keyframe {
            self.encoder.force_intra_frame();
        }
        let stream = self
            .encoder
            .encode_at(&self.yuv, Timestamp::from_millis(timestamp_ms))
            .map_err(|e| H264Error::Encode(e.to_string()))?;
        let keyframe = matches!(stream.frame_type(), FrameType::IDR | FrameType::I);
        let payload = stream.to_vec();
        if payload.is_empty() {
            return Ok(None);
        }
        Ok(Some(H264Frame { keyframe, payload }))
    }
}

/// H.264 decoder producing straight RGBA of the frame's real size.
pub struct H264Decoder {
    decoder: openh264::decoder::Decoder,
    framebuffer: Vec<u8>,
    padded: Vec<u8>,
    width: u32,
    height: u32,
    valid: bool,
}

impl std::fmt::Debug for H264Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Decoder")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("valid", &self.valid)
            .finish_non_exhaustive()
    }
}

fn new_openh264_decoder() -> Result<openh264::decoder::Decoder, H264Error> {
    openh264::decoder::Decoder::new().map_err(|e| H264Error::Decode(e.to_string()))
}

impl H264Decoder {
    /// Creates a decoder; the first frame must be a keyframe.
    pub fn new() -> Result<Self, H264Error> {
        Ok(Self {
            decoder: new_openh264_decoder()?,
            framebuffer: Vec::new(),
            padded: Vec::new(),
            width: 0,
            height: 0,
            valid: false,
        })
    }

    /// The picture as straight RGBA (`width * height * 4` bytes), when the
    /// last frame decoded.
    pub fn rgba(&self) -> Option<&[u8]> {
        self.valid.then_some(&self.framebuffer[..])
    }

    /// Width and height of the picture.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Forgets the picture: only a keyframe decodes next.
    pub fn invalidate(&mut self) {
        self.valid = false;
    }

    /// Decodes one access unit of a `width`×`height` frame. Returns whether
    /// the picture changed (OpenH264 may need more data first). On error the
    /// decoder wants a keyframe.
    pub fn decode(
        &mut self,
        keyframe: bool,
        width: u32,
        height: u32,
        payload: &[u8],
    ) -> Result<bool, H264Error> {
        let result = self.decode_inner(keyframe, width, height, payload);
        if result.is_err() {
            self.valid = false;
        }
        result
    }

    fn decode_inner(
        &mut self,
        keyframe: bool,
        width: u32,
        height: u32,
        payload: &[u8],
    ) -> Result<bool, H264Error> {
        if payload.is_empty() || payload.len() > MAX_H264_PAYLOAD {
            return Err(H264Error::BadPayload(payload.len()));
        }
        check_h264_size(width, height)?;
        if keyframe {
            if !self.valid {
                // Start clean after an error: no reference to half-decoded state.
                self.decoder = new_openh264_decoder()?;
            }
        } else if !self.valid || (self.width, self.height) != (width, height) {
            return Err(H264Error::NeedKeyframe);
        }
        let Some(yuv) = self
            .decoder
            .decode(payload)
            .map_err(|e| H264Error::Decode(e.to_string()))?
        else {
            return Ok(false);
        };
        let (pw, ph) = (even(width) as usize, even(height) as usize);
        let (got_width, got_height) = yuv.dimensions();
        if (got_width, got_height) != (pw, ph) {
            return Err(H264Error::SizeMismatch {
                got_width,
                got_height,
                width,
                height,
            });
        }
        let (w, h) = (width as usize, height as usize);
        self.framebuffer.resize(w * h * 4, 0);
        if (pw, ph) == (w, h) {
            yuv.write_rgba8(&mut self.framebuffer);
        } else {
            self.padded.resize(pw * ph * 4, 0);
            yuv.write_rgba8(&mut self.padded);
            for (row, dst) in self.framebuffer.chunks_exact_mut(w * 4).enumerate() {
                dst.copy_from_slice(&self.padded[row * pw * 4..row * pw * 4 + w * 4]);
            }
        }
        self.width = width;
        self.height = height;
        self.valid = true;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(width: u32, height: u32, bgra: [u8; 4]) -> Vec<u8> {
        bgra.repeat((width * height) as usize)
    }

    fn mean_abs_error(rgba: &[u8], bgra: &[u8]) -> f64 {
        let mut sum = 0u64;
        for (d, s) in rgba.chunks_exact(4).zip(bgra.chunks_exact(4)) {
            sum += u64::from(d[0].abs_diff(s[2]))
                + u64::from(d[1].abs_diff(s[1]))
                + u64::from(d[2].abs_diff(s[0]));
        }
        sum as f64 / (rgba.len() / 4 * 3) as f64
    }

    #[test]
    fn flat_colour_round_trips_approximately_at_odd_size() {
        for (w, h) in [(64, 48), (101, 77)] {
            // An orange: B=30, G=140, R=230.
            let bgra = flat(w, h, [30, 140, 230, 0]);
            let frame = BgraFrame::packed(&bgra, w, h).unwrap();
            let mut enc = H264Encoder::new(H264Config::default()).unwrap();
            let mut dec = H264Decoder::new().unwrap();
            let first = enc.encode(&frame, 0, false).unwrap().unwrap();
            assert!(first.keyframe);
            assert!(dec.decode(true, w, h, &first.payload).unwrap());
            let rgba = dec.rgba().unwrap();
            assert_eq!(rgba.len(), (w * h * 4) as usize);
            let err = mean_abs_error(rgba, &bgra);
            assert!(err < 4.0, "{w}x{h}: mean abs error {err}");
            assert!(rgba.chunks_exact(4).all(|p| p[3] == 255));
            // A second frame is a P frame that decodes too.
            let next = enc.encode(&frame, 33, false).unwrap().unwrap();
            assert!(!next.keyframe);
            assert!(dec.decode(false, w, h, &next.payload).unwrap());
            // And a keyframe comes when asked.
            let key = enc.encode(&frame, 66, true).unwrap().unwrap();
            assert!(key.keyframe);
        }
    }

    #[test]
    fn conversion_pads_by_repeating_the_edge() {
        // 3x1 frame: black, black, white → 4x2 with the white column repeated.
        let bgra = [0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 0];
        let mut yuv = Yuv420::default();
        yuv.fill_from(&BgraFrame::packed(&bgra, 3, 1).unwrap());
        assert_eq!((yuv.width, yuv.height), (4, 2));
        assert_eq!(yuv.y, [16, 16, 235, 235, 16, 16, 235, 235]);
        assert_eq!(yuv.u, [128, 128]);
        assert_eq!(yuv.v, [128, 128]);
    }

    #[test]
    fn refuses_frames_it_cannot_carry() {
        let mut dec = H264Decoder::new().unwrap();
        assert!(matches!(
            dec.decode(true, 64, 64, &[]),
            Err(H264Error::BadPayload(0))
        ));
        assert!(matches!(
            dec.decode(false, 64, 64, &[0, 0, 0, 1, 0x65]),
            Err(H264Error::NeedKeyframe)
        ));
        assert!(matches!(
            check_h264_size(3841, 100),
            Err(H264Error::TooLarge { .. })
        ));
        assert!(check_h264_size(3840, 2160).is_ok());
        assert!(check_h264_size(2160, 3840).is_ok());
        assert!(H264Encoder::new(H264Config {
            bitrate_bps: 10,
            ..H264Config::default()
        })
        .is_err());
    }

    #[test]
    fn wrong_size_is_refused() {
        let bgra = flat(64, 48, [0, 0, 255, 0]);
        let mut enc = H264Encoder::new(H264Config::default()).unwrap();
        let key = enc
            .encode(&BgraFrame::packed(&bgra, 64, 48).unwrap(), 0, false)
            .unwrap()
            .unwrap();
        let mut dec = H264Decoder::new().unwrap();
        assert!(matches!(
            dec.decode(true, 64, 64, &key.payload),
            Err(H264Error::SizeMismatch { .. })
        ));
        assert!(dec.rgba().is_none());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn random_bytes_never_panic(mut bytes in proptest::collection::vec(proptest::num::u8::ANY, 1..300)) {
            // Half the cases look like an IDR NAL so OpenH264 parses deeper.
            if bytes.len() > 8 && bytes[0] & 1 == 0 {
                bytes[..5].copy_from_slice(&[0, 0, 0, 1, 0x67]);
            }
            let mut dec = H264Decoder::new().unwrap();
            let _ = dec.decode(true, 64, 48, &bytes);
        }
    }
}
