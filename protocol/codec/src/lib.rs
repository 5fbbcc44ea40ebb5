//! Screen encoding for remote sessions: changed tiles with zstd, and H.264.
//!
//! Pure: no I/O, no clock, no threads. The caller passes captured frames
//! (BGRA with a row stride, [`frame::BgraFrame`]), capture times and measured
//! path numbers; it gets payloads for
//! `deskside_protocol::session::VideoFrame` and, on the viewer side, straight
//! RGBA pictures.
//!
//! - [`tiles`]: lossless changed tiles (64×64, RGB, zstd level 1), payload
//!   format documented there; a static screen sends nothing.
//! - [`scroll`]: finds a vertical shift (scrolling) between two frames, so
//!   tiles send a copy, the uncovered strip and what still differs.
//! - [`h264`]: OpenH264 built from source; BGRA → I420, odd sizes padded and
//!   cropped.
//! - [`adapt`]: the policy that picks the codec, H.264 bitrate and frame rate.
//! - [`pointer`]: pointer shapes, each picture sent once and kept by number.
//! - [`stream`]: [`Encoder`] and [`Decoder`], which hide which codec is active
//!   and switch with a keyframe.
//!
//! Agent side:
//!
//! ```no_run
//! # use deskside_codec::{adapt, frame::BgraFrame, Encoder, EncoderConfig};
//! # use deskside_protocol::session::Quality;
//! # fn demo(bgra: &[u8], stride: usize, now_us: u64, bw: Option<u64>) -> Result<(), Box<dyn std::error::Error>> {
//! let mut encoder = Encoder::new(EncoderConfig::default())?;
//! // for each captured frame:
//! let path = adapt::PathEstimate { bandwidth_bps: bw, rtt_ms: None };
//! encoder.apply(&adapt::choose(Quality::Auto, path, encoder.recent()));
//! let frame = BgraFrame::new(bgra, 1920, 1080, stride)?;
//! if let Some(out) = encoder.encode(&frame, now_us)? {
//!     let video = out.into_video_frame(0, 0, now_us);
//!     // send `video` on the video stream
//! }
//! # Ok(()) }
//! ```
//!
//! Choices measured with `deskside-bench-codec --variants` (1920×1080,
//! synthetic screens): the *left* filter shrinks gradient wallpapers (static
//! desktop keyframe 114 KB → 37 KB) but grows text (typing +20 %, scrolling
//! +5 %) and is slower, so it is off by default; zstd level 3 is 5–10 %
//! smaller than level 1 at a similar speed on these screens, level 1 stays the
//! default for speed on slow laptops.

pub mod adapt;
pub mod frame;
pub mod h264;
pub mod pointer;
pub mod scroll;
pub mod stream;
pub mod tiles;

pub use stream::{
    DecodeError, Decoder, EncodeError, EncodedFrame, Encoder, EncoderConfig, Picture,
};
