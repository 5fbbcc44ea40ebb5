//! Benchmark of the screen codecs on synthetic 1920×1080 scenarios.
//!
//! ```text
//! deskside-bench-codec [--frames N] [--json] [--ffmpeg] [--variants] [--matched] [--qp-sweep]
//! ```
//!
//! Scenarios are generated deterministically (static desktop, typing in a
//! terminal, scrolling text, a moving window). For each, every codec encodes
//! the same frames on this thread; the table shows encode speed, bytes per
//! frame and the bitrate at 30 fps. Tiles run twice: as an older console
//! gets them, and with copies (scrolling as a copy and strips). `--variants` adds tile encoder variants
//! (filter, zstd level); `--ffmpeg` pipes the frames to ffmpeg's libx264 for
//! comparison (needs the `ffmpeg` package).
//!
//! `--matched` (needs ffmpeg) compares at matched quality instead of at
//! matched settings, on the moving scenarios (scrolling, moving window):
//!
//! 1. *session*: what a session sends with the content choice on
//!    ([`deskside_codec::adapt::choose`] in `Auto` on a 100 Mbit/s path,
//!    through [`deskside_codec::Encoder`]): a still screen first, then the
//!    motion, then still frames until the lossless keyframe made the picture
//!    exact again. Bytes and bitrate while it moves, the bytes of the
//!    settling (H.264 refinement and the lossless keyframe), the time to the
//!    exact picture, and the quality of the lossy frames.
//! 2. *matched*: OpenH264 at the motion bitrate on the moving frames alone,
//!    and x264 (ultrafast, zerolatency) at the highest CRF whose quality is
//!    at least OpenH264's, both decoded back (x264's by ffmpeg) and compared
//!    with the source frames: PSNR of the luma (BT.601, mean of the
//!    per-frame values) and SSIM (luma, 8×8 windows, our own small
//!    implementation). Then the other way round: the OpenH264 bitrate
//!    setting that reaches x264's default quality (CRF 23), if any does.
//!
//! `--qp-sweep` shows OpenH264 on the scrolling scenario at constant
//! quality (a quantizer floor, no bitrate limit, so no frame is skipped).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use deskside_codec::adapt::{self, PathEstimate, MOTION_H264_BPS};
use deskside_codec::frame::BgraFrame;
use deskside_codec::h264::{H264Config, H264Decoder, H264Encoder};
use deskside_codec::tiles::{TileConfig, TileDecoder, TileEncoder, TileFilter};
use deskside_codec::{Decoder, Encoder, EncoderConfig};
use deskside_protocol::session::{Codec, Quality};

const WIDTH: usize = 1920;
const HEIGHT: usize = 1080;
const GLYPH_W: usize = 9;
const GLYPH_H: usize = 18;

/// Small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// 96 glyph-like bitmaps (coverage 0–255), 9×18 cells with an anti-aliased look.
fn glyphs() -> Vec<[u8; GLYPH_W * GLYPH_H]> {
    let mut rng = Rng(0x5EED);
    (0..96)
        .map(|_| {
            let mut g = [0u8; GLYPH_W * GLYPH_H];
            // A few strokes inside the 7×12 body.
            for _ in 0..4 {
                let vertical = rng.below(2) == 0;
                let (x0, y0) = (1 + rng.below(7), 4 + rng.below(12));
                let len = 3 + rng.below(8);
                for i in 0..len {
                    let (x, y) = if vertical { (x0, y0 + i) } else { (x0 + i, y0) };
                    if x < GLYPH_W - 1 && y < GLYPH_H - 2 {
                        g[y * GLYPH_W + x] = 255;
                        // Anti-aliased neighbour.
                        let n = if vertical {
                            y * GLYPH_W + x + 1
                        } else {
                            (y + 1) * GLYPH_W + x
                        };
                        g[n] = g[n].max(96);
                    }
                }
            }
            g
        })
        .collect()
}

struct Canvas {
    bgra: Vec<u8>,
}

impl Canvas {
    fn new() -> Self {
        Self {
            bgra: vec![0; WIDTH * HEIGHT * 4],
        }
    }

    fn fill(&mut self, x: usize, y: usize, w: usize, h: usize, bgr: [u8; 3]) {
        for row in y..(y + h).min(HEIGHT) {
            for col in x..(x + w).min(WIDTH) {
                let at = (row * WIDTH + col) * 4;
                self.bgra[at..at + 4].copy_from_slice(&[bgr[0], bgr[1], bgr[2], 255]);
            }
        }
    }

    fn glyph(&mut self, x: usize, y: usize, glyph: &[u8], fg: [u8; 3], bg: [u8; 3]) {
        for gy in 0..GLYPH_H {
            for gx in 0..GLYPH_W {
                let (px, py) = (x + gx, y + gy);
                if px >= WIDTH || py >= HEIGHT {
                    continue;
                }
                let a = u16::from(glyph[gy * GLYPH_W + gx]);
                let at = (py * WIDTH + px) * 4;
                for c in 0..3 {
                    let v = (u16::from(fg[c]) * a + u16::from(bg[c]) * (255 - a)) / 255;
                    self.bgra[at + c] = v as u8;
                }
                self.bgra[at + 3] = 255;
            }
        }
    }

    /// A desktop: vertical gradient wallpaper, a taskbar and a few icons.
    fn desktop(&mut self) {
        for y in 0..HEIGHT {
            let t = (y * 255 / HEIGHT) as u8;
            for x in 0..WIDTH {
                let at = (y * WIDTH + x) * 4;
                self.bgra[at..at + 4].copy_from_slice(&[
                    120 + t / 3,
                    80 + t / 4,
                    40 + (x / 30) as u8,
                    255,
                ]);
            }
        }
        self.fill(0, HEIGHT - 40, WIDTH, 40, [40, 40, 40]);
        let mut rng = Rng(7);
        for i in 0..8 {
            let colour = [
                rng.below(256) as u8,
                rng.below(256) as u8,
                rng.below(256) as u8,
            ];
            self.fill(30, 30 + i * 100, 64, 64, colour);
        }
    }
}

fn text_row(
    canvas: &mut Canvas,
    glyphs: &[[u8; GLYPH_W * GLYPH_H]],
    rng: &mut Rng,
    y: usize,
    cols: usize,
    fg: [u8; 3],
    bg: [u8; 3],
) {
    let len = cols / 3 + rng.below(cols * 2 / 3);
    for col in 0..len {
        if rng.below(6) != 0 {
            let g = &glyphs[rng.below(glyphs.len())];
            canvas.glyph(8 + col * GLYPH_W, y, g, fg, bg);
        }
    }
}

/// One benchmark scenario: `frames` BGRA frames.
fn scenario(name: &str, frames: usize) -> Vec<Vec<u8>> {
    let glyphs = glyphs();
    let mut rng = Rng(42);
    let cols = (WIDTH - 16) / GLYPH_W;
    let rows = HEIGHT / GLYPH_H;
    match name {
        "static" => {
            let mut c = Canvas::new();
            c.desktop();
            vec![c.bgra; frames]
        }
        "typing" => {
            let (bg, fg) = ([30, 30, 30], [210, 220, 220]);
            let mut c = Canvas::new();
            c.fill(0, 0, WIDTH, HEIGHT, bg);
            for row in 0..rows - 10 {
                text_row(&mut c, &glyphs, &mut rng, row * GLYPH_H, cols, fg, bg);
            }
            let (mut col, mut row) = (0, rows - 10);
            let mut out = Vec::with_capacity(frames);
            for _ in 0..frames {
                for _ in 0..3 {
                    let g = &glyphs[rng.below(glyphs.len())];
                    c.glyph(8 + col * GLYPH_W, row * GLYPH_H, g, fg, bg);
                    col += 1;
                    if col == cols {
                        col = 0;
                        row = (row + 1).min(rows - 1);
                    }
                }
                out.push(c.bgra.clone());
            }
            out
        }
        "scrolling" => {
            // A tall page, shown one text line further down each frame.
            let page_rows = rows + frames + 1;
            let (bg, fg) = ([255, 255, 255], [20, 20, 20]);
            let mut page = vec![0u8; WIDTH * page_rows * GLYPH_H * 4];
            for line in 0..page_rows {
                let mut c = Canvas::new();
                c.fill(0, 0, WIDTH, GLYPH_H, bg);
                if line % 7 != 6 {
                    text_row(&mut c, &glyphs, &mut rng, 0, cols, fg, bg);
                }
                let bytes = WIDTH * GLYPH_H * 4;
                page[line * bytes..(line + 1) * bytes].copy_from_slice(&c.bgra[..bytes]);
            }
            (0..frames)
                .map(|f| {
                    let start = f * WIDTH * GLYPH_H * 4;
                    page[start..start + WIDTH * HEIGHT * 4].to_vec()
                })
                .collect()
        }
        "moving-window" => {
            let mut background = Canvas::new();
            background.desktop();
            // Window texture: title bar and text lines on light grey.
            let mut window = Canvas::new();
            window.fill(0, 0, 600, 400, [235, 235, 235]);
            window.fill(0, 0, 600, 28, [140, 90, 50]);
            for line in 0..19 {
                text_row(
                    &mut window,
                    &glyphs,
                    &mut rng,
                    34 + line * GLYPH_H,
                    60,
                    [30, 30, 30],
                    [235, 235, 235],
                );
            }
            (0..frames)
                .map(|f| {
                    let mut c = Canvas {
                        bgra: background.bgra.clone(),
                    };
                    let (x0, y0) = (100 + (f * 11) % 1200, 100 + (f * 5) % 560);
                    for y in 0..400 {
                        let src = &window.bgra[y * WIDTH * 4..y * WIDTH * 4 + 600 * 4];
                        let at = ((y0 + y) * WIDTH + x0) * 4;
                        c.bgra[at..at + 600 * 4].copy_from_slice(src);
                    }
                    c.bgra
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

#[derive(Debug)]
struct Row {
    scenario: String,
    codec: String,
    encode_fps: Option<f64>,
    decode_fps: Option<f64>,
    first_bytes: usize,
    mean_bytes: f64,
    p95_bytes: usize,
    /// Frames after the first that produced nothing (static screen).
    skipped: usize,
}

impl Row {
    fn from_sizes(
        scenario: &str,
        codec: String,
        sizes: &[usize],
        encode_s: Option<f64>,
        decode_s: Option<f64>,
    ) -> Self {
        // The first frame is a keyframe; the steady state is what follows.
        let rest = sizes.get(1..).unwrap_or(&[]);
        let mean_bytes = if rest.is_empty() {
            0.0
        } else {
            rest.iter().sum::<usize>() as f64 / rest.len() as f64
        };
        let mut sorted = rest.to_vec();
        sorted.sort_unstable();
        let p95_bytes = sorted
            .get((sorted.len() * 95).div_ceil(100).saturating_sub(1))
            .copied()
            .unwrap_or(0);
        Self {
            scenario: scenario.to_string(),
            codec,
            encode_fps: encode_s.map(|s| sizes.len() as f64 / s),
            decode_fps: decode_s.map(|s| sizes.len() as f64 / s),
            first_bytes: sizes.first().copied().unwrap_or(0),
            mean_bytes,
            p95_bytes,
            skipped: rest.iter().filter(|&&n| n == 0).count(),
        }
    }

    fn mbit_at_30(&self) -> f64 {
        self.mean_bytes * 8.0 * 30.0 / 1e6
    }
}

/// Tiles over `frames`; `copies`: with copies (scrolling) allowed, as for
/// today's console.
fn bench_tiles(name: &str, frames: &[Vec<u8>], config: TileConfig, copies: bool) -> Result<Row> {
    let mut encoder = TileEncoder::new(config)?;
    encoder.allow_copies(copies);
    let mut payloads = Vec::with_capacity(frames.len());
    let start = Instant::now();
    for bgra in frames {
        let frame = BgraFrame::packed(bgra, WIDTH as u32, HEIGHT as u32)?;
        payloads.push(encoder.encode(&frame, false)?);
    }
    let encode_s = start.elapsed().as_secs_f64();
    let mut decoder = TileDecoder::new()?;
    let start = Instant::now();
    for out in payloads.iter().flatten() {
        decoder.decode(out.keyframe, WIDTH as u32, HEIGHT as u32, &out.payload)?;
    }
    let decode_s = start.elapsed().as_secs_f64();
    // Check the last picture is exact, so the numbers are for a working codec.
    let last = frames.last().context("no frames")?;
    let picture = decoder.rgba().context("tiles did not decode")?;
    let exact = last
        .chunks_exact(4)
        .zip(picture.chunks_exact(4))
        .all(|(s, d)| [s[2], s[1], s[0]] == d[..3]);
    if !exact {
        bail!("tiles round trip differs in scenario {name}");
    }
    let sizes: Vec<usize> = payloads
        .iter()
        .map(|p| p.as_ref().map_or(0, |p| p.payload.len()))
        .collect();
    let label = format!(
        "tiles l{} {}{}",
        config.zstd_level,
        match config.filter {
            TileFilter::None => "raw",
            TileFilter::Left => "left",
        },
        if copies { " +copies" } else { "" }
    );
    Ok(Row::from_sizes(
        name,
        label,
        &sizes,
        Some(encode_s),
        Some(decode_s),
    ))
}

fn bench_h264(name: &str, frames: &[Vec<u8>], bitrate_bps: u32) -> Result<Row> {
    let mut encoder = H264Encoder::new(H264Config {
        bitrate_bps,
        ..H264Config::default()
    })?;
    let mut payloads = Vec::with_capacity(frames.len());
    let start = Instant::now();
    for (i, bgra) in frames.iter().enumerate() {
        let frame = BgraFrame::packed(bgra, WIDTH as u32, HEIGHT as u32)?;
        payloads.push(encoder.encode(&frame, i as u64 * 1000 / 30, false)?);
    }
    let encode_s = start.elapsed().as_secs_f64();
    let mut decoder = H264Decoder::new()?;
    let start = Instant::now();
    for out in payloads.iter().flatten() {
        decoder.decode(out.keyframe, WIDTH as u32, HEIGHT as u32, &out.payload)?;
    }
    let decode_s = start.elapsed().as_secs_f64();
    let sizes: Vec<usize> = payloads
        .iter()
        .map(|p| p.as_ref().map_or(0, |p| p.payload.len()))
        .collect();
    Ok(Row::from_sizes(
        name,
        format!("openh264 {:.1}M", f64::from(bitrate_bps) / 1e6),
        &sizes,
        Some(encode_s),
        Some(decode_s),
    ))
}

/// Runs ffmpeg/libx264 over the frames and returns bytes per frame (split at
/// the access unit delimiters the `h264_metadata` filter inserts).
fn bench_ffmpeg(name: &str, frames: &[Vec<u8>], rate: &[&str], label: &str) -> Result<Row> {
    let (_, sizes) = x264_encode(frames, rate)?;
    Ok(Row::from_sizes(name, label.to_string(), &sizes, None, None))
}

/// Encodes the frames with ffmpeg's libx264 (ultrafast, zerolatency, plus
/// `rate`); returns the stream and the bytes of each frame.
fn x264_encode(frames: &[Vec<u8>], rate: &[&str]) -> Result<(Vec<u8>, Vec<usize>)> {
    let mut args: Vec<&str> = "-hide_banner -loglevel error -f rawvideo -pix_fmt bgra -s 1920x1080 -r 30 -i - -c:v libx264 -preset ultrafast -tune zerolatency"
        .split(' ')
        .collect();
    args.extend_from_slice(rate);
    args.extend_from_slice(&["-bsf:v", "h264_metadata=aud=insert", "-f", "h264", "-"]);
    let mut child = Command::new("ffmpeg")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("could not start ffmpeg; install it (apt-get install ffmpeg) or drop --ffmpeg")?;
    let mut stdin = child.stdin.take().context("ffmpeg stdin")?;
    let input: Vec<Vec<u8>> = frames.to_vec();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        for f in &input {
            stdin.write_all(f)?;
        }
        Ok(())
    });
    let mut stream = Vec::new();
    child
        .stdout
        .take()
        .context("ffmpeg stdout")?
        .read_to_end(&mut stream)?;
    let status = child.wait()?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("ffmpeg writer thread panicked"))??;
    if !status.success() {
        bail!("ffmpeg failed ({status})");
    }
    // Access units start at AUD NAL units (type 9) behind a start code.
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 < stream.len() {
        if stream[i..i + 3] == [0, 0, 1] && stream[i + 3] & 0x1F == 9 {
            starts.push(if i > 0 && stream[i - 1] == 0 {
                i - 1
            } else {
                i
            });
            i += 4;
        } else {
            i += 1;
        }
    }
    starts.push(stream.len());
    let sizes: Vec<usize> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    if sizes.len() != frames.len() {
        bail!(
            "ffmpeg produced {} access units for {} frames",
            sizes.len(),
            frames.len()
        );
    }
    Ok((stream, sizes))
}

/// Decodes an H.264 stream with ffmpeg into RGB frames.
fn x264_decode(stream: Vec<u8>, frames: usize) -> Result<Vec<Vec<u8>>> {
    let mut child = Command::new("ffmpeg")
        .args("-hide_banner -loglevel error -f h264 -i - -f rawvideo -pix_fmt rgb24 -".split(' '))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("could not start ffmpeg; install it (apt-get install ffmpeg)")?;
    let mut stdin = child.stdin.take().context("ffmpeg stdin")?;
    let writer = std::thread::spawn(move || stdin.write_all(&stream));
    let mut raw = Vec::new();
    child
        .stdout
        .take()
        .context("ffmpeg stdout")?
        .read_to_end(&mut raw)?;
    let status = child.wait()?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("ffmpeg writer thread panicked"))??;
    if !status.success() {
        bail!("ffmpeg could not decode x264's stream ({status})");
    }
    let size = WIDTH * HEIGHT * 3;
    if raw.len() != size * frames {
        bail!(
            "ffmpeg decoded {} bytes, expected {frames} frames of {size}",
            raw.len()
        );
    }
    Ok(raw.chunks_exact(size).map(<[u8]>::to_vec).collect())
}

/// Quality of a decoded frame against its source.
#[derive(Clone, Copy, Debug)]
struct Fidelity {
    /// Luma PSNR in dB; [`EXACT_PSNR`] for an exact frame.
    psnr_db: f64,
    /// Luma SSIM, 0..=1.
    ssim: f64,
}

/// PSNR reported for an exact picture (the true value is infinite).
const EXACT_PSNR: f64 = 99.0;

/// BT.601 luma of the pixels of a frame whose pixels are `step` bytes
/// apart with red at `r`, green at `r + g` and blue at `r + b` (offsets).
fn luma(pixels: &[u8], step: usize, (r, g, b): (usize, usize, usize)) -> Vec<f32> {
    pixels
        .chunks_exact(step)
        .map(|p| 0.299 * f32::from(p[r]) + 0.587 * f32::from(p[g]) + 0.114 * f32::from(p[b]))
        .collect()
}

/// Compares a source BGRA frame with a decoded RGBA (`step` 4) or RGB
/// (`step` 3) picture.
fn fidelity(source_bgra: &[u8], decoded: &[u8], step: usize) -> Fidelity {
    let a = luma(source_bgra, 4, (2, 1, 0));
    let b = luma(decoded, step, (0, 1, 2));
    let mse = a
        .iter()
        .zip(&b)
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    let psnr_db = if mse < 1e-9 {
        EXACT_PSNR
    } else {
        (10.0 * (255.0f64 * 255.0 / mse).log10()).min(EXACT_PSNR)
    };
    Fidelity {
        psnr_db,
        ssim: ssim(&a, &b),
    }
}

/// Mean SSIM over non-overlapping 8×8 windows of two luma planes
/// (Wang et al. 2004, with C1 = (0.01·255)², C2 = (0.03·255)²).
fn ssim(a: &[f32], b: &[f32]) -> f64 {
    const N: usize = 8;
    let c1 = (0.01f64 * 255.0).powi(2);
    let c2 = (0.03f64 * 255.0).powi(2);
    let (mut total, mut windows) = (0.0, 0usize);
    for wy in (0..HEIGHT - N + 1).step_by(N) {
        for wx in (0..WIDTH - N + 1).step_by(N) {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
            for y in wy..wy + N {
                for x in wx..wx + N {
                    let (p, q) = (f64::from(a[y * WIDTH + x]), f64::from(b[y * WIDTH + x]));
                    sa += p;
                    sb += q;
                    saa += p * p;
                    sbb += q * q;
                    sab += p * q;
                }
            }
            let n = (N * N) as f64;
            let (ma, mb) = (sa / n, sb / n);
            let va = saa / n - ma * ma;
            let vb = sbb / n - mb * mb;
            let cov = sab / n - ma * mb;
            total += ((2.0 * ma * mb + c1) * (2.0 * cov + c2))
                / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            windows += 1;
        }
    }
    total / windows.max(1) as f64
}

/// Mean PSNR and SSIM of a list of frames.
fn mean(fidelities: &[Fidelity]) -> Fidelity {
    let n = fidelities.len().max(1) as f64;
    Fidelity {
        psnr_db: fidelities.iter().map(|f| f.psnr_db).sum::<f64>() / n,
        ssim: fidelities.iter().map(|f| f.ssim).sum::<f64>() / n,
    }
}

/// What a session sends for a scenario with the content choice on.
#[derive(Debug)]
struct SessionRun {
    /// Bytes sent while the content moved.
    motion_bytes: usize,
    /// Frames of each codec while it moved.
    motion_tiles_frames: usize,
    motion_h264_frames: usize,
    /// Quality of the viewer's picture at each moving frame after the
    /// switch to H.264 (a skipped frame leaves the previous picture).
    h264_quality: Fidelity,
    /// Bytes sent after the motion until the picture was exact.
    settle_bytes: usize,
    /// Time from the last moving frame to the exact picture, ms.
    exact_after_ms: Option<f64>,
    /// Quality of the viewer's picture at every moving frame.
    motion_quality: Fidelity,
    /// Moving frames that carried a copy (scrolling).
    motion_copy_frames: usize,
    /// Encoder time per moving frame, ms: mean and largest.
    encode_ms_mean: f64,
    encode_ms_max: f64,
}

/// Runs the session's encoder (the policy in `Auto` on a `path_bps` path,
/// as the agent's capture loop does) over: 30 still frames of the first
/// picture, the moving frames, and up to 60 still frames of the last one.
/// `copies`: the viewer decodes copies (scrolling as a copy and a strip),
/// as today's console announces; without, as an older viewer.
fn session_run(frames: &[Vec<u8>], path_bps: u64, copies: bool) -> Result<SessionRun> {
    const FRAME_US: u64 = 1_000_000 / 30;
    let path = PathEstimate {
        bandwidth_bps: Some(path_bps),
        rtt_ms: Some(20.0),
    };
    let (first, last) = (
        frames.first().context("no frames")?,
        frames.last().context("no frames")?,
    );
    let mut encoder = Encoder::new(EncoderConfig::default())?;
    encoder.allow_copies(copies);
    let mut decoder = Decoder::new()?;
    let mut motion_quality = Vec::new();
    let mut encode_ms = Vec::new();
    let mut run = SessionRun {
        motion_bytes: 0,
        motion_tiles_frames: 0,
        motion_h264_frames: 0,
        h264_quality: Fidelity {
            psnr_db: 0.0,
            ssim: 0.0,
        },
        settle_bytes: 0,
        exact_after_ms: None,
        motion_quality: Fidelity {
            psnr_db: 0.0,
            ssim: 0.0,
        },
        motion_copy_frames: 0,
        encode_ms_mean: 0.0,
        encode_ms_max: 0.0,
    };
    let mut h264_quality = Vec::new();
    let lead = 30;
    let sequence = std::iter::repeat_n(first, lead)
        .chain(frames.iter().skip(1))
        .chain(std::iter::repeat_n(last, 60));
    let motion_end = lead + frames.len() - 1;
    for (i, bgra) in sequence.enumerate() {
        let at_us = i as u64 * FRAME_US;
        encoder.apply(&adapt::choose(Quality::Auto, path, encoder.recent()));
        let still = i >= motion_end || i < lead;
        // As the agent: an unchanged screen is only encoded when asked for.
        if i > 0 && still && !encoder.wants_unchanged_frame() {
            if i >= motion_end {
                // Settled: nothing more will be sent. Exact already?
                let picture = decoder.picture().context("no picture")?;
                if run.exact_after_ms.is_none()
                    && fidelity(bgra, picture.rgba, 4).psnr_db >= EXACT_PSNR
                {
                    run.exact_after_ms =
                        Some((i + 1 - motion_end) as f64 * FRAME_US as f64 / 1000.0);
                }
                break;
            }
            continue;
        }
        let frame = BgraFrame::packed(bgra, WIDTH as u32, HEIGHT as u32)?;
        let started = Instant::now();
        let encoded = encoder.encode(&frame, at_us)?;
        if (lead..motion_end).contains(&i) {
            encode_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        if let Some(out) = &encoded {
            decoder.decode(
                out.codec,
                out.keyframe,
                WIDTH as u32,
                HEIGHT as u32,
                &out.payload,
            )?;
        }
        if i < lead {
            continue;
        }
        let picture = decoder
            .picture()
            .context("the session's frame did not decode")?;
        if i < motion_end {
            // What the viewer shows at each moving frame once H.264 took
            // over, skipped frames included (the previous picture stays).
            let h264_now = encoded.as_ref().is_some_and(|o| o.codec == Codec::H264);
            let quality = fidelity(bgra, picture.rgba, 4);
            motion_quality.push(quality);
            if run.motion_h264_frames > 0 || h264_now {
                h264_quality.push(quality);
            }
            let Some(out) = encoded else { continue };
            // Tiles payload byte 1, bit 2: the frame carries copies.
            if out.codec == Codec::ZstdTiles && out.payload.get(1).is_some_and(|f| f & 0b100 != 0) {
                run.motion_copy_frames += 1;
            }
            run.motion_bytes += out.payload.len();
            match out.codec {
                Codec::ZstdTiles => run.motion_tiles_frames += 1,
                Codec::H264 => run.motion_h264_frames += 1,
            }
        } else {
            run.settle_bytes += encoded.as_ref().map_or(0, |o| o.payload.len());
            let exact = run.exact_after_ms.is_none()
                && fidelity(bgra, picture.rgba, 4).psnr_db >= EXACT_PSNR;
            if exact {
                run.exact_after_ms = Some((i + 1 - motion_end) as f64 * FRAME_US as f64 / 1000.0);
            }
        }
    }
    run.h264_quality = mean(&h264_quality);
    run.motion_quality = mean(&motion_quality);
    run.encode_ms_mean = encode_ms.iter().sum::<f64>() / encode_ms.len().max(1) as f64;
    run.encode_ms_max = encode_ms.iter().copied().fold(0.0, f64::max);
    Ok(run)
}

/// OpenH264 alone over `frames`: bytes, and the mean quality of the
/// viewer's picture at each frame (a skipped frame leaves the previous
/// picture on screen, and counts so).
fn openh264_run(frames: &[Vec<u8>], bitrate_bps: u32, min_qp: u8) -> Result<(usize, Fidelity)> {
    let mut encoder = H264Encoder::new(H264Config {
        bitrate_bps,
        min_qp,
        ..H264Config::default()
    })?;
    let mut decoder = H264Decoder::new()?;
    let (mut bytes, mut quality) = (0usize, Vec::new());
    for (i, bgra) in frames.iter().enumerate() {
        let frame = BgraFrame::packed(bgra, WIDTH as u32, HEIGHT as u32)?;
        if let Some(out) = encoder.encode(&frame, i as u64 * 1000 / 30, false)? {
            bytes += out.payload.len();
            decoder.decode(out.keyframe, WIDTH as u32, HEIGHT as u32, &out.payload)?;
        }
        let rgba = decoder.rgba().context("OpenH264 did not decode")?;
        quality.push(fidelity(bgra, rgba, 4));
    }
    Ok((bytes, mean(&quality)))
}

/// Matched-quality comparison of one moving scenario; prints one JSON line
/// or a few lines of text.
fn matched(name: &str, frames: &[Vec<u8>], json: bool) -> Result<()> {
    let seconds = frames.len() as f64 / 30.0;
    let mbit = |bytes: usize, s: f64| bytes as f64 * 8.0 / s / 1e6;
    // The session as an older viewer gets it (no copies: H.264 while it
    // moves), and as today's console gets it (copies when it scrolls).
    let session = session_run(frames, 100_000_000, false)?;
    let copying = session_run(frames, 100_000_000, true)?;
    // OpenH264 alone as the session runs it for motion, over the moving
    // frames.
    let (ours_bytes, ours) = openh264_run(frames, MOTION_H264_BPS, 0)?;
    // x264: the highest CRF whose PSNR is at least ours (PSNR falls as the
    // CRF rises), by bisection over 0..=51.
    let x264_at = |crf: u32| -> Result<(usize, Fidelity)> {
        let crf = crf.to_string();
        let (stream, sizes) = x264_encode(frames, &["-crf", &crf])?;
        let decoded = x264_decode(stream, frames.len())?;
        let quality: Vec<Fidelity> = frames
            .iter()
            .zip(&decoded)
            .map(|(s, d)| fidelity(s, d, 3))
            .collect();
        Ok((sizes.iter().sum(), mean(&quality)))
    };
    let (mut lo, mut hi) = (0u32, 51u32);
    let mut best = x264_at(lo)?;
    if best.1.psnr_db < ours.psnr_db {
        bail!(
            "x264 at CRF 0 does not reach OpenH264's PSNR ({:.2} dB)",
            ours.psnr_db
        );
    }
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        let at = x264_at(mid)?;
        if at.1.psnr_db >= ours.psnr_db {
            lo = mid;
            best = at;
        } else {
            hi = mid - 1;
        }
    }
    let (x264_bytes, x264) = best;
    // The other way round: OpenH264's bitrate for x264's default quality
    // (CRF 23), doubling from 0.5 Mbit/s, then one step back to 3/4.
    let (x264_23_bytes, x264_23) = x264_at(23)?;
    let mut rate = 500_000u32;
    let mut at_rate = openh264_run(frames, rate, 0)?;
    while at_rate.1.psnr_db < x264_23.psnr_db && rate < 64_000_000 {
        rate *= 2;
        at_rate = openh264_run(frames, rate, 0)?;
    }
    if rate > 500_000 {
        let lower = rate / 4 * 3;
        let at_lower = openh264_run(frames, lower, 0)?;
        if at_lower.1.psnr_db >= x264_23.psnr_db {
            rate = lower;
            at_rate = at_lower;
        }
    }
    let settle_s = session.exact_after_ms.unwrap_or(2000.0) / 1000.0;
    // x264 at its best quality (CRF 0; still 4:2:0, so never exact): the
    // closest it comes to the copies' exact picture.
    let (x264_best_bytes, x264_best) = x264_at(0)?;
    let copy_settle_s = copying.exact_after_ms.unwrap_or(0.0) / 1000.0;
    if json {
        let line = serde_json::json!({
            "type": "codec_matched_copies",
            "scenario": name,
            "frames": frames.len(),
            "session_motion_mbit_per_s": mbit(copying.motion_bytes, seconds),
            "session_motion_copy_frames": copying.motion_copy_frames,
            "session_motion_tiles_frames": copying.motion_tiles_frames,
            "session_motion_h264_frames": copying.motion_h264_frames,
            "session_motion_psnr_db": copying.motion_quality.psnr_db,
            "session_motion_ssim": copying.motion_quality.ssim,
            "session_settle_bytes": copying.settle_bytes,
            "session_exact_after_ms": copying.exact_after_ms,
            "session_mbit_per_s_with_settle": mbit(copying.motion_bytes + copying.settle_bytes, seconds + copy_settle_s),
            "encode_ms_per_frame_mean": copying.encode_ms_mean,
            "encode_ms_per_frame_max": copying.encode_ms_max,
            "without_copies_motion_mbit_per_s": mbit(session.motion_bytes, seconds),
            "without_copies_motion_psnr_db": session.motion_quality.psnr_db,
            "without_copies_motion_ssim": session.motion_quality.ssim,
            "without_copies_encode_ms_per_frame_mean": session.encode_ms_mean,
            "x264_crf0_mbit_per_s": mbit(x264_best_bytes, seconds),
            "x264_crf0_psnr_db": x264_best.psnr_db,
            "x264_crf0_ssim": x264_best.ssim,
            "x264_crf0_bytes_per_session_byte": x264_best_bytes as f64 / copying.motion_bytes.max(1) as f64,
        });
        println!("{line}");
    } else {
        println!(
            "== {name}: {} frames ({seconds:.1} s at 30 fps), 1920x1080",
            frames.len()
        );
        println!(
            "session with copies (today's viewer, 100 Mbit/s path): {:.3} Mbit/s while moving ({} of {} tile frames with a copy, {} H.264 frames); the viewer's picture while moving: PSNR {:.2} dB, SSIM {:.4}; settling {} B, exact {} after; encode {:.2} ms/frame mean, {:.2} max",
            mbit(copying.motion_bytes, seconds),
            copying.motion_copy_frames,
            copying.motion_tiles_frames,
            copying.motion_h264_frames,
            copying.motion_quality.psnr_db,
            copying.motion_quality.ssim,
            copying.settle_bytes,
            copying.exact_after_ms.map_or("never".to_owned(), |ms| format!("{ms:.0} ms")),
            copying.encode_ms_mean,
            copying.encode_ms_max,
        );
        println!(
            "session without copies (older viewer): {:.3} Mbit/s while moving, PSNR {:.2} dB, SSIM {:.4} over all moving frames; encode {:.2} ms/frame mean | x264 ultrafast at its best (crf 0): {:.3} Mbit/s PSNR {:.2} dB SSIM {:.4} ({:.1}x the bytes with copies)",
            mbit(session.motion_bytes, seconds),
            session.motion_quality.psnr_db,
            session.motion_quality.ssim,
            session.encode_ms_mean,
            mbit(x264_best_bytes, seconds),
            x264_best.psnr_db,
            x264_best.ssim,
            x264_best_bytes as f64 / copying.motion_bytes.max(1) as f64,
        );
    }
    if json {
        let line = serde_json::json!({
            "type": "codec_matched",
            "scenario": name,
            "frames": frames.len(),
            "session_motion_mbit_per_s": mbit(session.motion_bytes, seconds),
            "session_motion_tiles_frames": session.motion_tiles_frames,
            "session_motion_h264_frames": session.motion_h264_frames,
            "session_h264_psnr_db": session.h264_quality.psnr_db,
            "session_h264_ssim": session.h264_quality.ssim,
            "session_settle_bytes": session.settle_bytes,
            "session_exact_after_ms": session.exact_after_ms,
            "session_mbit_per_s_with_settle": mbit(session.motion_bytes + session.settle_bytes, seconds + settle_s),
            "openh264_bitrate_bps": MOTION_H264_BPS,
            "openh264_mbit_per_s": mbit(ours_bytes, seconds),
            "openh264_psnr_db": ours.psnr_db,
            "openh264_ssim": ours.ssim,
            "x264_crf": lo,
            "x264_mbit_per_s": mbit(x264_bytes, seconds),
            "x264_psnr_db": x264.psnr_db,
            "x264_ssim": x264.ssim,
            "openh264_bytes_per_x264_byte": ours_bytes as f64 / x264_bytes.max(1) as f64,
            "x264_crf23_mbit_per_s": mbit(x264_23_bytes, seconds),
            "x264_crf23_psnr_db": x264_23.psnr_db,
            "x264_crf23_ssim": x264_23.ssim,
            "openh264_matching_crf23_bitrate_bps": rate,
            "openh264_matching_crf23_mbit_per_s": mbit(at_rate.0, seconds),
            "openh264_matching_crf23_psnr_db": at_rate.1.psnr_db,
            "openh264_matching_crf23_ssim": at_rate.1.ssim,
        });
        println!("{line}");
    } else {
        println!(
            "session (content choice, 100 Mbit/s path, no copies): {:.3} Mbit/s while moving ({} tile frames, then {} H.264 frames; the viewer's picture after the switch: PSNR {:.2} dB, SSIM {:.4}); settling {} B, exact picture {} after the motion; {:.3} Mbit/s over motion and settling",
            mbit(session.motion_bytes, seconds),
            session.motion_tiles_frames,
            session.motion_h264_frames,
            session.h264_quality.psnr_db,
            session.h264_quality.ssim,
            session.settle_bytes,
            session.exact_after_ms.map_or("never".to_owned(), |ms| format!("{ms:.0} ms")),
            mbit(session.motion_bytes + session.settle_bytes, seconds + settle_s),
        );
        println!(
            "matched quality: openh264 {:.1}M {:.3} Mbit/s PSNR {:.2} dB SSIM {:.4} | x264 ultrafast crf {lo} {:.3} Mbit/s PSNR {:.2} dB SSIM {:.4} | openh264/x264 bytes {:.2}",
            f64::from(MOTION_H264_BPS) / 1e6,
            mbit(ours_bytes, seconds),
            ours.psnr_db,
            ours.ssim,
            mbit(x264_bytes, seconds),
            x264.psnr_db,
            x264.ssim,
            ours_bytes as f64 / x264_bytes.max(1) as f64,
        );
        println!(
            "at x264's default quality: x264 ultrafast crf 23 {:.3} Mbit/s PSNR {:.2} dB SSIM {:.4} | openh264 at {:.2}M {:.3} Mbit/s PSNR {:.2} dB SSIM {:.4} | openh264/x264 bytes {:.2}",
            mbit(x264_23_bytes, seconds),
            x264_23.psnr_db,
            x264_23.ssim,
            f64::from(rate) / 1e6,
            mbit(at_rate.0, seconds),
            at_rate.1.psnr_db,
            at_rate.1.ssim,
            at_rate.0 as f64 / x264_23_bytes.max(1) as f64,
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let mut frames = 60usize;
    let mut json = false;
    let mut ffmpeg = false;
    let mut variants = false;
    let mut matched_only = false;
    let mut qp_sweep = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => json = true,
            "--ffmpeg" => ffmpeg = true,
            "--variants" => variants = true,
            "--matched" => matched_only = true,
            "--qp-sweep" => qp_sweep = true,
            "--frames" => {
                frames = args
                    .next()
                    .context("--frames needs a number")?
                    .parse()
                    .context("--frames needs a number of frames, e.g. 60")?;
                if frames < 2 {
                    bail!("--frames must be at least 2");
                }
            }
            other => {
                bail!("unknown argument {other}; use --frames N, --json, --ffmpeg, --variants, --matched, --qp-sweep")
            }
        }
    }
    if qp_sweep {
        // OpenH264 without a bitrate limit (60 Mbit/s) and a quantizer
        // floor: constant quality, nothing skipped.
        let f = scenario("scrolling", frames);
        let seconds = f.len() as f64 / 30.0;
        let runs = [24u8, 30, 34, 38, 42, 46, 50]
            .map(|qp| (60_000_000, qp))
            .into_iter()
            // And with a rate limit (frames skipped when over it).
            .chain([
                (1_200_000, 0),
                (1_200_000, 46),
                (1_500_000, 44),
                (1_500_000, 46),
            ]);
        for (rate, qp) in runs {
            let (bytes, q) = openh264_run(&f, rate, qp)?;
            println!(
                "scrolling openh264 {:.1}M min_qp {qp}: {:.3} Mbit/s PSNR {:.2} dB SSIM {:.4}",
                f64::from(rate) / 1e6,
                bytes as f64 * 8.0 / seconds / 1e6,
                q.psnr_db,
                q.ssim
            );
        }
        return Ok(());
    }
    if matched_only {
        for name in ["scrolling", "moving-window"] {
            matched(name, &scenario(name, frames), json)?;
        }
        return Ok(());
    }
    let mut tile_configs = vec![TileConfig::default()];
    if variants {
        for (level, filter) in [
            (1, TileFilter::Left),
            (3, TileFilter::None),
            (-3, TileFilter::None),
        ] {
            tile_configs.push(TileConfig {
                zstd_level: level,
                filter,
                ..TileConfig::default()
            });
        }
    }
    let mut rows = Vec::new();
    for name in ["static", "typing", "scrolling", "moving-window"] {
        let frames = scenario(name, frames);
        for config in &tile_configs {
            rows.push(bench_tiles(name, &frames, *config, false)?);
        }
        rows.push(bench_tiles(name, &frames, TileConfig::default(), true)?);
        rows.push(bench_h264(name, &frames, 2_000_000)?);
        if ffmpeg {
            rows.push(bench_ffmpeg(name, &frames, &[], "x264 ultrafast crf23")?);
            rows.push(bench_ffmpeg(
                name,
                &frames,
                &["-b:v", "2M", "-maxrate", "2M", "-bufsize", "1M"],
                "x264 ultrafast 2M",
            )?);
        }
    }
    if json {
        for r in &rows {
            let line = serde_json::json!({
                "type": "codec_bench",
                "scenario": r.scenario,
                "codec": r.codec,
                "encode_fps": r.encode_fps,
                "decode_fps": r.decode_fps,
                "first_frame_bytes": r.first_bytes,
                "mean_bytes": r.mean_bytes,
                "p95_bytes": r.p95_bytes,
                "frames_without_output": r.skipped,
                "mbit_per_s_at_30fps": r.mbit_at_30(),
            });
            println!("{line}");
        }
    } else {
        println!(
            "{:<14} {:<22} {:>8} {:>8} {:>10} {:>10} {:>10} {:>6} {:>9}",
            "scenario",
            "codec",
            "enc fps",
            "dec fps",
            "first B",
            "mean B",
            "p95 B",
            "empty",
            "Mbit@30"
        );
        for r in &rows {
            let fps = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
            println!(
                "{:<14} {:<22} {:>8} {:>8} {:>10} {:>10.0} {:>10} {:>6} {:>9.3}",
                r.scenario,
                r.codec,
                fps(r.encode_fps),
                fps(r.decode_fps),
                r.first_bytes,
                r.mean_bytes,
                r.p95_bytes,
                r.skipped,
                r.mbit_at_30()
            );
        }
        println!("(first B: first frame, a keyframe; mean/p95 over the frames after it; empty: frames with nothing to send)");
    }
    Ok(())
}
