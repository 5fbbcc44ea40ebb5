//! Lossless changed tiles: the encoder keeps the previous frame, finds the
//! square tiles that changed and sends only those, each compressed with zstd;
//! the decoder keeps an RGBA framebuffer and pastes tiles into it.
//!
//! This module never trusts a payload: every length, index and size is
//! checked before it is used, decompression is bounded by the tile's size, and
//! any error leaves the decoder wanting a keyframe (it never panics).
//!
//! # Payload format (version 1)
//!
//! All integers are little-endian.
//!
//! | bytes | field |
//! |---|---|
//! | 1 | format version, `1` |
//! | 1 | flags: bits 0–1 the filter ([`TileFilter`]: 0 none, 1 left); other bits 0 |
//! | 2 | tile size `s` in pixels ([`MIN_TILE_SIZE`]..=[`MAX_TILE_SIZE`]) |
//! | 4 | frame width in pixels |
//! | 4 | frame height in pixels |
//! | 4 | number of tiles `n` that follow |
//!
//! then `n` times:
//!
//! | bytes | field |
//! |---|---|
//! | 2 | tile column `tx` (the tile covers pixels `tx*s ..`) |
//! | 2 | tile row `ty` |
//! | 4 | compressed length `len` |
//! | `len` | one zstd frame |
//!
//! Tiles on the right and bottom edges are partial (`min(s, width - tx*s)`
//! wide). A tile decompresses to exactly `w * h * 3` bytes: rows top to
//! bottom, pixels left to right, `R G B` (alpha is not sent: screens are
//! opaque and capturers often leave alpha at 0, which would make the viewer
//! transparent; decoded alpha is always 255). With the *left* filter each byte
//! holds the difference (mod 256) from the same channel of the pixel to its
//! left, the first pixel of each tile row being sent as is. A keyframe
//! carries every tile of the frame exactly once; other frames carry each
//! changed tile at most once.

use thiserror::Error;

use crate::frame::{check_dimensions, BgraFrame};

/// Format version written in byte 0.
pub const TILES_FORMAT_VERSION: u8 = 1;
/// Smallest tile size accepted.
pub const MIN_TILE_SIZE: u16 = 16;
/// Largest tile size accepted (a 256×256 tile is 192 KiB decompressed).
pub const MAX_TILE_SIZE: u16 = 256;

const HEADER_LEN: usize = 16;
const TILE_HEADER_LEN: usize = 8;
const FILTER_MASK: u8 = 0b11;

/// A reversible per-tile filter applied before zstd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TileFilter {
    /// Pixels as they are.
    None,
    /// Each channel minus the same channel of the pixel to its left (mod 256):
    /// flat areas become runs of zeros, gradients become runs of small values.
    Left,
}

impl TileFilter {
    fn to_bits(self) -> u8 {
        match self {
            TileFilter::None => 0,
            TileFilter::Left => 1,
        }
    }

    fn from_bits(bits: u8) -> Option<Self> {
        match bits {
            0 => Some(TileFilter::None),
            1 => Some(TileFilter::Left),
            _ => None,
        }
    }
}

/// How the tile encoder works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileConfig {
    /// Tile side in pixels, [`MIN_TILE_SIZE`]..=[`MAX_TILE_SIZE`]. Default 64:
    /// small enough that a typed glyph sends little, large enough that the
    /// per-tile header and zstd frame overhead stay small.
    pub tile_size: u16,
    /// zstd level. Default 1 (fastest of the regular levels; see the
    /// benchmark in `deskside-bench-codec` for the trade-off).
    pub zstd_level: i32,
    /// Filter before compression. Default [`TileFilter::None`] (measured: see
    /// the crate's README section in `lib.rs`).
    pub filter: TileFilter,
}

impl Default for TileConfig {
    fn default() -> Self {
        Self {
            tile_size: 64,
            zstd_level: 1,
            filter: TileFilter::None,
        }
    }
}

/// Why the tile encoder could not encode a frame.
#[derive(Debug, Error)]
pub enum TileEncodeError {
    /// The tile size is out of range.
    #[error(
        "tile size {0} is out of range ({MIN_TILE_SIZE}..={MAX_TILE_SIZE}); use the default of 64"
    )]
    BadTileSize(u16),
    /// zstd refused its parameters or failed to compress.
    #[error("zstd compression failed: {0}; check the configured zstd level (1 to 19)")]
    Zstd(std::io::Error),
}

/// Why a tile payload was refused. After any of these the decoder's picture
/// is not trustworthy: ask the agent for a keyframe.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TileDecodeError {
    /// The payload ends before a field it announced.
    #[error("tile payload is truncated (needed {needed} bytes at offset {offset}, {len} in total); ask for a keyframe")]
    Truncated {
        /// Where the missing field starts.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Payload length.
        len: usize,
    },
    /// The format version is not one this decoder knows.
    #[error("tile payload version {0} is not supported (this viewer knows version {TILES_FORMAT_VERSION}); upgrade the viewer")]
    UnsupportedVersion(u8),
    /// Unknown flag bits or filter.
    #[error("tile payload flags {0:#04x} are not supported; upgrade the viewer")]
    UnsupportedFlags(u8),
    /// The tile size is out of range.
    #[error("tile size {0} in the payload is out of range ({MIN_TILE_SIZE}..={MAX_TILE_SIZE}); ask for a keyframe")]
    BadTileSize(u16),
    /// The payload's frame size differs from the frame's, or is unsupported.
    #[error("tile payload is for a {payload_width}x{payload_height} frame but the frame says {width}x{height} or the size is unsupported; ask for a keyframe")]
    SizeMismatch {
        /// Width in the payload header.
        payload_width: u32,
        /// Height in the payload header.
        payload_height: u32,
        /// Width of the video frame.
        width: u32,
        /// Height of the video frame.
        height: u32,
    },
    /// A delta frame arrived without a matching picture to apply it to.
    #[error("a changed-tiles frame arrived before a keyframe of that size (or after an error); ask for a keyframe")]
    NeedKeyframe,
    /// More tiles than the frame has.
    #[error("tile payload announces {count} tiles but a frame of this size has {total}; ask for a keyframe")]
    TooManyTiles {
        /// Announced.
        count: u32,
        /// Tiles in the frame.
        total: usize,
    },
    /// A tile index is outside the frame.
    #[error("tile ({tx}, {ty}) is outside the {tiles_x}x{tiles_y} tile grid; ask for a keyframe")]
    TileOutOfRange {
        /// Column.
        tx: u16,
        /// Row.
        ty: u16,
        /// Columns in the grid.
        tiles_x: usize,
        /// Rows in the grid.
        tiles_y: usize,
    },
    /// The same tile appears twice.
    #[error("tile ({tx}, {ty}) appears twice in one payload; ask for a keyframe")]
    DuplicateTile {
        /// Column.
        tx: u16,
        /// Row.
        ty: u16,
    },
    /// A keyframe does not cover the whole frame.
    #[error("keyframe carries {count} of the frame's {total} tiles; ask for a keyframe")]
    IncompleteKeyframe {
        /// Tiles carried.
        count: u32,
        /// Tiles in the frame.
        total: usize,
    },
    /// A tile did not decompress to exactly its size (corrupt, or larger than
    /// the tile: decompression stops at the tile's size).
    #[error("tile ({tx}, {ty}) did not decompress to its {expected} bytes ({detail}); ask for a keyframe")]
    BadTileData {
        /// Column.
        tx: u16,
        /// Row.
        ty: u16,
        /// Bytes the tile must have.
        expected: usize,
        /// What zstd said, or the size it produced.
        detail: String,
    },
    /// Bytes follow the last tile.
    #[error("tile payload has {0} bytes after its last tile; ask for a keyframe")]
    TrailingBytes(usize),
    /// zstd could not set up a decompression context.
    #[error("zstd could not start: {0}; the process may be out of memory")]
    Zstd(String),
}

/// Tile grid of a frame: `tiles_x` columns by `tiles_y` rows of `size`-pixel tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Grid {
    width: usize,
    height: usize,
    size: usize,
    tiles_x: usize,
    tiles_y: usize,
}

impl Grid {
    fn new(width: u32, height: u32, size: u16) -> Self {
        let (width, height, size) = (width as usize, height as usize, usize::from(size));
        Self {
            width,
            height,
            size,
            tiles_x: width.div_ceil(size),
            tiles_y: height.div_ceil(size),
        }
    }

    fn total(&self) -> usize {
        self.tiles_x * self.tiles_y
    }

    /// Pixel rectangle `(x, y, w, h)` of tile (`tx`, `ty`), both in range.
    fn rect(&self, tx: usize, ty: usize) -> (usize, usize, usize, usize) {
        let x = tx * self.size;
        let y = ty * self.size;
        (
            x,
            y,
            self.size.min(self.width - x),
            self.size.min(self.height - y),
        )
    }
}

/// One encoded tiles frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TileFrame {
    /// Whether it carries every tile (decodes on its own).
    pub keyframe: bool,
    /// The payload (format in the module documentation).
    pub payload: Vec<u8>,
    /// How many tiles it carries.
    pub tiles: usize,
}

/// Encoder for changed tiles. Keeps a copy of the previous frame.
pub struct TileEncoder {
    config: TileConfig,
    compressor: zstd::bulk::Compressor<'static>,
    /// Previous frame, packed BGRA; meaningful only when `grid` is `Some`.
    previous: Vec<u8>,
    /// Grid of the previous frame; `None` before the first frame or after
    /// [`TileEncoder::invalidate`], which makes the next frame a keyframe.
    grid: Option<Grid>,
    changed: Vec<bool>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for TileEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TileEncoder")
            .field("config", &self.config)
            .field("grid", &self.grid)
            .finish_non_exhaustive()
    }
}

impl TileEncoder {
    /// Creates an encoder; the first frame it encodes is a keyframe.
    pub fn new(config: TileConfig) -> Result<Self, TileEncodeError> {
        if !(MIN_TILE_SIZE..=MAX_TILE_SIZE).contains(&config.tile_size) {
            return Err(TileEncodeError::BadTileSize(config.tile_size));
        }
        let compressor =
            zstd::bulk::Compressor::new(config.zstd_level).map_err(TileEncodeError::Zstd)?;
        Ok(Self {
            config,
            compressor,
            previous: Vec::new(),
            grid: None,
            changed: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> TileConfig {
        self.config
    }

    /// Forgets the previous frame: the next [`TileEncoder::encode`] is a keyframe.
    pub fn invalidate(&mut self) {
        self.grid = None;
    }

    /// Compares `frame` with the previous one, remembers it, and returns how
    /// many tiles changed (all of them on the first frame or a size change).
    /// This is the cheap part of [`TileEncoder::encode`]; the session calls it
    /// alone while H.264 is active to estimate what lossless would cost.
    pub fn detect_changes(&mut self, frame: &BgraFrame<'_>) -> usize {
        let grid = Grid::new(frame.width(), frame.height(), self.config.tile_size);
        let row_len = grid.width * 4;
        if self.grid != Some(grid) {
            // First frame or new size: everything changed.
            self.previous.clear();
            self.previous.reserve(row_len * grid.height);
            for y in 0..grid.height {
                self.previous.extend_from_slice(frame.row(y));
            }
            self.changed.clear();
            self.changed.resize(grid.total(), true);
            self.grid = Some(grid);
            return grid.total();
        }
        self.changed.fill(false);
        let tile_bytes = grid.size * 4;
        let mut count = 0;
        for ty in 0..grid.tiles_y {
            let flags = &mut self.changed[ty * grid.tiles_x..(ty + 1) * grid.tiles_x];
            let y_end = ((ty + 1) * grid.size).min(grid.height);
            for y in ty * grid.size..y_end {
                let current = frame.row(y);
                let old = &mut self.previous[y * row_len..(y + 1) * row_len];
                // One memcmp per row: static rows cost little.
                if current == &old[..] {
                    continue;
                }
                for (tx, flag) in flags.iter_mut().enumerate() {
                    if !*flag {
                        let start = tx * tile_bytes;
                        let end = (start + tile_bytes).min(row_len);
                        if current[start..end] != old[start..end] {
                            *flag = true;
                            count += 1;
                        }
                    }
                }
                old.copy_from_slice(current);
            }
        }
        count
    }

    /// Encodes the tiles of `frame` that changed since the previous frame,
    /// or every tile when `keyframe` is asked for (or on the first frame, or
    /// when the size changed). Returns `None` when nothing changed and no
    /// keyframe is due: send nothing.
    pub fn encode(
        &mut self,
        frame: &BgraFrame<'_>,
        keyframe: bool,
    ) -> Result<Option<TileFrame>, TileEncodeError> {
        let grid = Grid::new(frame.width(), frame.height(), self.config.tile_size);
        let keyframe = keyframe || self.grid != Some(grid);
        let changed = self.detect_changes(frame);
        if keyframe {
            self.changed.fill(true);
        } else if changed == 0 {
            return Ok(None);
        }
        let tiles = if keyframe { grid.total() } else { changed };

        let mut payload = Vec::with_capacity(HEADER_LEN + tiles * (TILE_HEADER_LEN + 1024));
        payload.push(TILES_FORMAT_VERSION);
        payload.push(self.config.filter.to_bits());
        payload.extend_from_slice(&self.config.tile_size.to_le_bytes());
        payload.extend_from_slice(&frame.width().to_le_bytes());
        payload.extend_from_slice(&frame.height().to_le_bytes());
        payload.extend_from_slice(&(tiles as u32).to_le_bytes());

        for ty in 0..grid.tiles_y {
            for tx in 0..grid.tiles_x {
                if !self.changed[ty * grid.tiles_x + tx] {
                    continue;
                }
                let (x, y, w, h) = grid.rect(tx, ty);
                self.scratch.clear();
                for row in y..y + h {
                    let pixels = &frame.row(row)[x * 4..(x + w) * 4];
                    push_rgb(&mut self.scratch, pixels, self.config.filter);
                }
                // Grid dimensions are at most MAX_DIMENSION / MIN_TILE_SIZE.
                payload.extend_from_slice(&(tx as u16).to_le_bytes());
                payload.extend_from_slice(&(ty as u16).to_le_bytes());
                let len_at = payload.len();
                payload.extend_from_slice(&[0; 4]);
                let data_at = payload.len();
                let bound = zstd::zstd_safe::compress_bound(self.scratch.len());
                payload.resize(data_at + bound, 0);
                let written = self
                    .compressor
                    .compress_to_buffer(&self.scratch[..], &mut payload[data_at..])
                    .map_err(TileEncodeError::Zstd)?;
                payload.truncate(data_at + written);
                payload[len_at..data_at].copy_from_slice(&(written as u32).to_le_bytes());
            }
        }
        Ok(Some(TileFrame {
            keyframe,
            payload,
            tiles,
        }))
    }
}

/// Appends BGRA `pixels` to `out` as RGB, filtered.
fn push_rgb(out: &mut Vec<u8>, pixels: &[u8], filter: TileFilter) {
    match filter {
        TileFilter::None => {
            for px in pixels.chunks_exact(4) {
                out.extend_from_slice(&[px[2], px[1], px[0]]);
            }
        }
        TileFilter::Left => {
            let (mut r0, mut g0, mut b0) = (0u8, 0u8, 0u8);
            for px in pixels.chunks_exact(4) {
                let (b, g, r) = (px[0], px[1], px[2]);
                out.extend_from_slice(&[
                    r.wrapping_sub(r0),
                    g.wrapping_sub(g0),
                    b.wrapping_sub(b0),
                ]);
                (r0, g0, b0) = (r, g, b);
            }
        }
    }
}

/// Writes filtered RGB `data` (one tile row) into RGBA `out`, alpha 255.
fn write_rgba(out: &mut [u8], data: &[u8], filter: TileFilter) {
    match filter {
        TileFilter::None => {
            for (dst, src) in out.chunks_exact_mut(4).zip(data.chunks_exact(3)) {
                dst.copy_from_slice(&[src[0], src[1], src[2], 255]);
            }
        }
        TileFilter::Left => {
            let (mut r, mut g, mut b) = (0u8, 0u8, 0u8);
            for (dst, src) in out.chunks_exact_mut(4).zip(data.chunks_exact(3)) {
                r = r.wrapping_add(src[0]);
                g = g.wrapping_add(src[1]);
                b = b.wrapping_add(src[2]);
                dst.copy_from_slice(&[r, g, b, 255]);
            }
        }
    }
}

/// A cursor over a payload that reports truncation instead of panicking.
struct Reader<'a> {
    data: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TileDecodeError> {
        let truncated = TileDecodeError::Truncated {
            offset: self.offset,
            needed: n,
            len: self.data.len(),
        };
        let end = self.offset.checked_add(n).ok_or(truncated.clone())?;
        let bytes = self.data.get(self.offset..end).ok_or(truncated)?;
        self.offset = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, TileDecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, TileDecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, TileDecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.offset
    }
}

/// Decoder for changed tiles: keeps the picture as straight RGBA.
pub struct TileDecoder {
    decompressor: zstd::bulk::Decompressor<'static>,
    /// The picture, `width * height * 4` bytes, RGBA.
    framebuffer: Vec<u8>,
    width: u32,
    height: u32,
    /// False before the first keyframe and after any error.
    valid: bool,
    seen: Vec<bool>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for TileDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TileDecoder")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("valid", &self.valid)
            .finish_non_exhaustive()
    }
}

impl TileDecoder {
    /// Creates a decoder with no picture; the first frame must be a keyframe.
    pub fn new() -> Result<Self, TileDecodeError> {
        let decompressor =
            zstd::bulk::Decompressor::new().map_err(|e| TileDecodeError::Zstd(e.to_string()))?;
        Ok(Self {
            decompressor,
            framebuffer: Vec::new(),
            width: 0,
            height: 0,
            valid: false,
            seen: Vec::new(),
            scratch: Vec::new(),
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

    /// Whether the picture is complete (a keyframe and every frame since
    /// decoded).
    pub fn is_valid(&self) -> bool {
        self.valid
    }

    /// Forgets the picture: only a keyframe decodes next.
    pub fn invalidate(&mut self) {
        self.valid = false;
    }

    /// Applies one payload of a `width`×`height` frame and returns how many
    /// tiles it carried. On error the picture is marked invalid until the next
    /// keyframe.
    pub fn decode(
        &mut self,
        keyframe: bool,
        width: u32,
        height: u32,
        payload: &[u8],
    ) -> Result<usize, TileDecodeError> {
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
    ) -> Result<usize, TileDecodeError> {
        let mut reader = Reader {
            data: payload,
            offset: 0,
        };
        let version = reader.u8()?;
        if version != TILES_FORMAT_VERSION {
            return Err(TileDecodeError::UnsupportedVersion(version));
        }
        let flags = reader.u8()?;
        let filter = TileFilter::from_bits(flags & FILTER_MASK)
            .filter(|_| flags & !FILTER_MASK == 0)
            .ok_or(TileDecodeError::UnsupportedFlags(flags))?;
        let tile_size = reader.u16()?;
        if !(MIN_TILE_SIZE..=MAX_TILE_SIZE).contains(&tile_size) {
            return Err(TileDecodeError::BadTileSize(tile_size));
        }
        let payload_width = reader.u32()?;
        let payload_height = reader.u32()?;
        if payload_width != width
            || payload_height != height
            || check_dimensions(width, height).is_err()
        {
            return Err(TileDecodeError::SizeMismatch {
                payload_width,
                payload_height,
                width,
                height,
            });
        }
        let count = reader.u32()?;
        let grid = Grid::new(width, height, tile_size);
        let total = grid.total();
        if count as usize > total {
            return Err(TileDecodeError::TooManyTiles { count, total });
        }
        if keyframe {
            if count as usize != total {
                return Err(TileDecodeError::IncompleteKeyframe { count, total });
            }
            self.valid = false;
            if (self.width, self.height) != (width, height) {
                // Bounded by check_dimensions above.
                self.framebuffer = vec![0; width as usize * height as usize * 4];
                self.width = width;
                self.height = height;
            }
        } else if !self.valid || (self.width, self.height) != (width, height) {
            return Err(TileDecodeError::NeedKeyframe);
        }

        self.seen.clear();
        self.seen.resize(total, false);
        let max_tile = grid.size * grid.size * 3;
        if self.scratch.len() < max_tile {
            self.scratch.resize(max_tile, 0);
        }
        let row_len = grid.width * 4;
        for _ in 0..count {
            let tx = reader.u16()?;
            let ty = reader.u16()?;
            let len = reader.u32()? as usize;
            let (txu, tyu) = (usize::from(tx), usize::from(ty));
            if txu >= grid.tiles_x || tyu >= grid.tiles_y {
                return Err(TileDecodeError::TileOutOfRange {
                    tx,
                    ty,
                    tiles_x: grid.tiles_x,
                    tiles_y: grid.tiles_y,
                });
            }
            let seen = &mut self.seen[tyu * grid.tiles_x + txu];
            if *seen {
                return Err(TileDecodeError::DuplicateTile { tx, ty });
            }
            *seen = true;
            let compressed = reader.take(len)?;
            let (x, y, w, h) = grid.rect(txu, tyu);
            let expected = w * h * 3;
            let out = &mut self.scratch[..expected];
            // The output buffer is exactly the tile: zstd stops with an error
            // rather than write more, so a hostile frame cannot make us
            // allocate or write past it.
            match self.decompressor.decompress_to_buffer(compressed, out) {
                Ok(n) if n == expected => {}
                Ok(n) => {
                    return Err(TileDecodeError::BadTileData {
                        tx,
                        ty,
                        expected,
                        detail: format!("got {n} bytes"),
                    })
                }
                Err(e) => {
                    return Err(TileDecodeError::BadTileData {
                        tx,
                        ty,
                        expected,
                        detail: e.to_string(),
                    })
                }
            }
            for (row, data) in self.scratch[..expected].chunks_exact(w * 3).enumerate() {
                let start = (y + row) * row_len + x * 4;
                write_rgba(&mut self.framebuffer[start..start + w * 4], data, filter);
            }
        }
        if reader.remaining() != 0 {
            return Err(TileDecodeError::TrailingBytes(reader.remaining()));
        }
        if keyframe {
            self.valid = true;
        }
        Ok(count as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic BGRA test picture with some structure and some noise.
    fn picture(width: u32, height: u32, seed: u32) -> Vec<u8> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let mut out = Vec::with_capacity((width * height * 4) as usize);
        for y in 0..height {
            for x in 0..width {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let noise = if (x / 8 + y / 8) % 3 == 0 {
                    state as u8
                } else {
                    0
                };
                out.extend_from_slice(&[(x * 3) as u8 ^ noise, (y * 5) as u8, 200, 0]);
            }
        }
        out
    }

    /// The RGBA a decoder must produce for BGRA `bgra`.
    fn expected_rgba(bgra: &[u8]) -> Vec<u8> {
        bgra.chunks_exact(4)
            .flat_map(|p| [p[2], p[1], p[0], 255])
            .collect()
    }

    fn encoder(filter: TileFilter) -> TileEncoder {
        TileEncoder::new(TileConfig {
            filter,
            ..TileConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn round_trip_is_exact_with_partial_edge_tiles() {
        for filter in [TileFilter::None, TileFilter::Left] {
            let (w, h) = (150, 77);
            let mut enc = encoder(filter);
            let mut dec = TileDecoder::new().unwrap();
            for seed in 0..3 {
                let bgra = picture(w, h, seed);
                let frame = BgraFrame::packed(&bgra, w, h).unwrap();
                let out = enc.encode(&frame, false).unwrap().unwrap();
                assert_eq!(out.keyframe, seed == 0);
                dec.decode(out.keyframe, w, h, &out.payload).unwrap();
                assert_eq!(dec.rgba().unwrap(), &expected_rgba(&bgra)[..], "{filter:?}");
            }
        }
    }

    #[test]
    fn round_trip_with_padded_stride() {
        let (w, h) = (70, 65);
        let packed = picture(w, h, 9);
        let stride = w as usize * 4 + 12;
        let mut padded = vec![0xEE; stride * h as usize];
        for y in 0..h as usize {
            padded[y * stride..y * stride + w as usize * 4]
                .copy_from_slice(&packed[y * w as usize * 4..(y + 1) * w as usize * 4]);
        }
        let frame = BgraFrame::new(&padded, w, h, stride).unwrap();
        let out = encoder(TileFilter::Left)
            .encode(&frame, false)
            .unwrap()
            .unwrap();
        let mut dec = TileDecoder::new().unwrap();
        dec.decode(true, w, h, &out.payload).unwrap();
        assert_eq!(dec.rgba().unwrap(), &expected_rgba(&packed)[..]);
    }

    #[test]
    fn static_frame_produces_nothing() {
        let (w, h) = (200, 130);
        let bgra = picture(w, h, 1);
        let frame = BgraFrame::packed(&bgra, w, h).unwrap();
        let mut enc = encoder(TileFilter::None);
        assert!(enc.encode(&frame, false).unwrap().unwrap().keyframe);
        assert_eq!(enc.encode(&frame, false).unwrap(), None);
        assert_eq!(enc.detect_changes(&frame), 0);
        // A keyframe on request even when nothing changed.
        let key = enc.encode(&frame, true).unwrap().unwrap();
        assert!(key.keyframe);
        assert_eq!(key.tiles, 4 * 3);
    }

    #[test]
    fn one_changed_pixel_is_one_tile() {
        let (w, h) = (200, 130);
        let mut bgra = picture(w, h, 1);
        let mut enc = encoder(TileFilter::None);
        let mut dec = TileDecoder::new().unwrap();
        let key = enc
            .encode(&BgraFrame::packed(&bgra, w, h).unwrap(), false)
            .unwrap()
            .unwrap();
        dec.decode(true, w, h, &key.payload).unwrap();
        // Pixel (130, 70) is in tile (2, 1).
        let at = (70 * w as usize + 130) * 4;
        bgra[at] ^= 0xFF;
        let out = enc
            .encode(&BgraFrame::packed(&bgra, w, h).unwrap(), false)
            .unwrap()
            .unwrap();
        assert!(!out.keyframe);
        assert_eq!(out.tiles, 1);
        assert_eq!(&out.payload[HEADER_LEN..HEADER_LEN + 4], &[2, 0, 1, 0]);
        assert_eq!(dec.decode(false, w, h, &out.payload).unwrap(), 1);
        assert_eq!(dec.rgba().unwrap(), &expected_rgba(&bgra)[..]);
    }

    #[test]
    fn size_change_forces_a_keyframe() {
        let mut enc = encoder(TileFilter::None);
        let a = picture(64, 64, 1);
        let b = picture(80, 64, 1);
        enc.encode(&BgraFrame::packed(&a, 64, 64).unwrap(), false)
            .unwrap();
        let out = enc
            .encode(&BgraFrame::packed(&b, 80, 64).unwrap(), false)
            .unwrap()
            .unwrap();
        assert!(out.keyframe);
        assert_eq!(out.tiles, 2);
    }

    fn key_payload() -> (u32, u32, Vec<u8>) {
        let (w, h) = (100, 70);
        let bgra = picture(w, h, 3);
        let out = encoder(TileFilter::None)
            .encode(&BgraFrame::packed(&bgra, w, h).unwrap(), false)
            .unwrap()
            .unwrap();
        (w, h, out.payload)
    }

    #[test]
    fn delta_before_keyframe_is_refused() {
        let (w, h, payload) = key_payload();
        let mut dec = TileDecoder::new().unwrap();
        assert_eq!(
            dec.decode(false, w, h, &payload),
            Err(TileDecodeError::NeedKeyframe)
        );
    }

    #[test]
    fn truncated_payloads_are_refused() {
        let (w, h, payload) = key_payload();
        for cut in 0..payload.len() {
            let mut dec = TileDecoder::new().unwrap();
            assert!(
                dec.decode(true, w, h, &payload[..cut]).is_err(),
                "cut at {cut}"
            );
            assert!(dec.rgba().is_none());
        }
        let mut longer = payload.clone();
        longer.push(0);
        assert_eq!(
            TileDecoder::new().unwrap().decode(true, w, h, &longer),
            Err(TileDecodeError::TrailingBytes(1))
        );
    }

    #[test]
    fn bad_headers_and_indices_are_refused() {
        let (w, h, payload) = key_payload();
        let decode = |p: &[u8]| TileDecoder::new().unwrap().decode(true, w, h, p);
        let mut p = payload.clone();
        p[0] = 2;
        assert_eq!(decode(&p), Err(TileDecodeError::UnsupportedVersion(2)));
        let mut p = payload.clone();
        p[1] = 0x80;
        assert_eq!(decode(&p), Err(TileDecodeError::UnsupportedFlags(0x80)));
        let mut p = payload.clone();
        p[2..4].copy_from_slice(&8u16.to_le_bytes());
        assert_eq!(decode(&p), Err(TileDecodeError::BadTileSize(8)));
        assert!(matches!(
            TileDecoder::new().unwrap().decode(true, w + 1, h, &payload),
            Err(TileDecodeError::SizeMismatch { .. })
        ));
        let mut p = payload.clone();
        p[12..16].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(
            decode(&p),
            Err(TileDecodeError::TooManyTiles { .. })
        ));
        // First tile's column out of the 2x2 grid.
        let mut p = payload.clone();
        p[HEADER_LEN..HEADER_LEN + 2].copy_from_slice(&2u16.to_le_bytes());
        assert!(matches!(
            decode(&p),
            Err(TileDecodeError::TileOutOfRange { .. })
        ));
        // Second tile claims to be the first: duplicate.
        let mut p = payload.clone();
        let first_len = u32::from_le_bytes(p[HEADER_LEN + 4..HEADER_LEN + 8].try_into().unwrap());
        let second = HEADER_LEN + TILE_HEADER_LEN + first_len as usize;
        assert_eq!(&p[second..second + 4], &[1, 0, 0, 0]);
        p[second..second + 2].copy_from_slice(&0u16.to_le_bytes());
        assert!(matches!(
            decode(&p),
            Err(TileDecodeError::DuplicateTile { .. })
        ));
        // A keyframe without all its tiles.
        let mut p = payload.clone();
        p[12..16].copy_from_slice(&3u32.to_le_bytes());
        assert!(matches!(
            decode(&p),
            Err(TileDecodeError::IncompleteKeyframe { .. })
        ));
    }

    #[test]
    fn oversize_and_undersize_tiles_are_refused() {
        // A one-tile 64x64 frame whose tile decompresses to one byte too many,
        // then one too few.
        for extra in [1i64, -1] {
            let size = (64 * 64 * 3) as i64 + extra;
            let data = zstd::bulk::compress(&vec![7u8; size as usize], 1).unwrap();
            let mut p = vec![TILES_FORMAT_VERSION, 0, 64, 0];
            p.extend_from_slice(&64u32.to_le_bytes());
            p.extend_from_slice(&64u32.to_le_bytes());
            p.extend_from_slice(&1u32.to_le_bytes());
            p.extend_from_slice(&[0, 0, 0, 0]);
            p.extend_from_slice(&(data.len() as u32).to_le_bytes());
            p.extend_from_slice(&data);
            let err = TileDecoder::new().unwrap().decode(true, 64, 64, &p);
            assert!(
                matches!(err, Err(TileDecodeError::BadTileData { .. })),
                "{err:?}"
            );
        }
    }

    #[test]
    fn error_invalidates_until_keyframe() {
        let (w, h, payload) = key_payload();
        let mut dec = TileDecoder::new().unwrap();
        dec.decode(true, w, h, &payload).unwrap();
        assert!(dec.decode(false, w, h, &payload[..20]).is_err());
        assert_eq!(
            dec.decode(false, w, h, &payload),
            Err(TileDecodeError::NeedKeyframe)
        );
        dec.decode(true, w, h, &payload).unwrap();
        assert!(dec.is_valid());
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
                                    keyframe in proptest::bool::ANY) {
            let mut dec = TileDecoder::new().unwrap();
            let _ = dec.decode(keyframe, 100, 70, &bytes);
        }

        #[test]
        fn corrupted_payloads_never_panic(flips in proptest::collection::vec((0usize..10_000, 0u8..=255), 1..8)) {
            let (w, h, mut payload) = key_payload();
            for (at, value) in flips {
                let len = payload.len();
                payload[at % len] = value;
            }
            let mut dec = TileDecoder::new().unwrap();
            if dec.decode(true, w, h, &payload).is_ok() {
                proptest::prop_assert_eq!(dec.rgba().map(<[u8]>::len), Some((w * h * 4) as usize));
            }
        }
    }
}
