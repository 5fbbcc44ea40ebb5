//! Benchmark of the screen codecs on synthetic 1920×1080 scenarios.
//!
//! ```text
//! deskside-bench-codec [--frames N] [--json] [--ffmpeg] [--variants]
//! ```
//!
//! Scenarios are generated deterministically (static desktop, typing in a
//! terminal, scrolling text, a moving window). For each, every codec encodes
//! the same frames on this thread; the table shows encode speed, bytes per
//! frame and the bitrate at 30 fps. `--variants` adds tile encoder variants
//! (filter, zstd level); `--ffmpeg` pipes the frames to ffmpeg's libx264 for
//! comparison (needs the `ffmpeg` package).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use deskside_codec::frame::BgraFrame;
use deskside_codec::h264::{H264Config, H264Decoder, H264Encoder};
use deskside_codec::tiles::{TileConfig, TileDecoder, TileEncoder, TileFilter};

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

fn bench_tiles(name: &str, frames: &[Vec<u8>], config: TileConfig) -> Result<Row> {
    let mut encoder = TileEncoder::new(config)?;
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
        "tiles l{} {}",
        config.zstd_level,
        match config.filter {
            TileFilter::None => "raw",
            TileFilter::Left => "left",
        }
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
    Ok(Row::from_sizes(name, label.to_string(), &sizes, None, None))
}

fn main() -> Result<()> {
    let mut frames = 60usize;
    let mut json = false;
    let mut ffmpeg = false;
    let mut variants = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => json = true,
            "--ffmpeg" => ffmpeg = true,
            "--variants" => variants = true,
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
                bail!("unknown argument {other}; use --frames N, --json, --ffmpeg, --variants")
            }
        }
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
            rows.push(bench_tiles(name, &frames, *config)?);
        }
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
