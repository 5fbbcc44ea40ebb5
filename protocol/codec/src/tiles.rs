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
//!
//! # Copies and strips (flag bit 2)
//!
//! A frame that is not a keyframe may set flag bit 2 ([`FLAG_COPIES`]):
//! between the header and the first tile it then carries
//!
//! | bytes | field |
//! |---|---|
//! | 1 | number of copies `c` (at most [`MAX_COPIES`]) |
//! | `c` × 12 | each copy: `src_x`, `src_y`, `dst_x`, `dst_y`, `width`, `height`, 2 bytes each |
//! | 2 | number of strips `r` (at most [`MAX_STRIPS`]) |
//!
//! then `r` times: `x`, `y`, `w`, `h` (2 bytes each), a compressed length
//! (4 bytes) and one zstd frame of `w * h * 3` bytes (RGB rows, filtered like
//! tiles; at most [`MAX_STRIP_PIXELS`] pixels). The viewer applies the
//! copies in order (each copies a rectangle of its picture as it was before
//! that copy, like `memmove`), then pastes the strips, then the tiles. Every
//! rectangle lies inside the frame. The encoder uses this for scrolling
//! (`scroll.rs`): one copy for the rows that moved, one strip for the rows
//! the scroll uncovered, a strip for each thin band of rows the copy left
//! different (a capture taken while the application was redrawing), tiles
//! for whatever still differs. Only viewers that
//! announce it get such frames
//! (`ConsoleToAgent::DecodesTileCopies`): an older viewer refuses the flag
//! and asks for a keyframe, so it never draws a wrong picture.

use thiserror::Error;

use crate::frame::{check_dimensions, BgraFrame};
use crate::scroll::{ScrollFinder, Shift};

/// Format version written in byte 0.
pub const TILES_FORMAT_VERSION: u8 = 1;
/// Smallest tile size accepted.
pub const MIN_TILE_SIZE: u16 = 16;
/// Largest tile size accepted (a 256×256 tile is 192 KiB decompressed).
pub const MAX_TILE_SIZE: u16 = 256;

const HEADER_LEN: usize = 16;
const TILE_HEADER_LEN: usize = 8;
const FILTER_MASK: u8 = 0b11;
/// Flag bit 2: copies and strips follow the header (see the module
/// documentation).
pub const FLAG_COPIES: u8 = 0b100;
/// Most copies in one frame.
pub const MAX_COPIES: u8 = 8;
/// Most strips in one frame.
pub const MAX_STRIPS: u16 = 64;
/// Largest strip, in pixels (a 7680-pixel-wide screen, 256 rows): bounds
/// the decoder's scratch buffer to 6 MiB.
pub const MAX_STRIP_PIXELS: usize = 7680 * 256;
const COPY_LEN: usize = 12;

/// Whether a tiles payload carries copies and strips ([`FLAG_COPIES`]),
/// for statistics; a payload too short to say is `false`.
pub fn carries_copies(payload: &[u8]) -> bool {
    payload.get(1).is_some_and(|flags| flags & FLAG_COPIES != 0)
}

/// A rectangle of the viewer's picture copied elsewhere in it (scrolling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyRect {
    /// Left column of the source.
    pub src_x: u16,
    /// Top row of the source.
    pub src_y: u16,
    /// Left column of the destination.
    pub dst_x: u16,
    /// Top row of the destination.
    pub dst_y: u16,
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
}

impl CopyRect {
    /// Whether both rectangles are non-empty and inside a `width`×`height`
    /// frame.
    fn fits(&self, width: usize, height: usize) -> bool {
        let (w, h) = (usize::from(self.width), usize::from(self.height));
        w > 0
            && h > 0
            && usize::from(self.src_x) + w <= width
            && usize::from(self.dst_x) + w <= width
            && usize::from(self.src_y) + h <= height
            && usize::from(self.dst_y) + h <= height
    }

    /// Applies the copy to a packed 4-bytes-per-pixel picture whose rows
    /// are `row_len` bytes, as `memmove` would (overlap allowed). The
    /// rectangle must [`fit`](CopyRect::fits).
    fn apply(&self, picture: &mut [u8], row_len: usize) {
        let bytes = usize::from(self.width) * 4;
        let (src_x, dst_x) = (usize::from(self.src_x) * 4, usize::from(self.dst_x) * 4);
        let (src_y, dst_y) = (usize::from(self.src_y), usize::from(self.dst_y));
        let row = |r: usize| {
            let src = (src_y + r) * row_len + src_x;
            (src..src + bytes, (dst_y + r) * row_len + dst_x)
        };
        // Moving down: bottom row first, so no source row is overwritten
        // before it is read.
        if dst_y > src_y {
            for r in (0..usize::from(self.height)).rev() {
                let (src, dst) = row(r);
                picture.copy_within(src, dst);
            }
        } else {
            for r in 0..usize::from(self.height) {
                let (src, dst) = row(r);
                picture.copy_within(src, dst);
            }
        }
    }
}

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
    /// A keyframe carries copies or strips ([`FLAG_COPIES`]).
    #[error("a tile keyframe carries copies or strips; ask for a keyframe")]
    CopiesInKeyframe,
    /// More copies or strips than a frame may carry.
    #[error("tile payload announces {copies} copies and {strips} strips (at most {MAX_COPIES} and {MAX_STRIPS}); ask for a keyframe")]
    TooManyCopies {
        /// Copies announced.
        copies: u8,
        /// Strips announced (0 when the copies were refused first).
        strips: u16,
    },
    /// A copy's source or destination is empty or leaves the frame.
    #[error("copy {0:?} is empty or leaves the frame; ask for a keyframe")]
    CopyOutOfRange(CopyRect),
    /// A strip is empty, leaves the frame or is larger than
    /// [`MAX_STRIP_PIXELS`].
    #[error("strip {w}x{h} at ({x}, {y}) is empty, leaves the frame or is larger than {MAX_STRIP_PIXELS} pixels; ask for a keyframe")]
    StripOutOfRange {
        /// Left column.
        x: u16,
        /// Top row.
        y: u16,
        /// Width.
        w: u16,
        /// Height.
        h: u16,
    },
    /// A strip did not decompress to exactly its size.
    #[error("strip at ({x}, {y}) did not decompress to its {expected} bytes ({detail}); ask for a keyframe")]
    BadStripData {
        /// Left column.
        x: u16,
        /// Top row.
        y: u16,
        /// Bytes the strip must have.
        expected: usize,
        /// What zstd said, or the size it produced.
        detail: String,
    },
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
    /// How many copies it carries (scrolling).
    pub copies: usize,
    /// Pixels of the strips it carries.
    pub strip_pixels: usize,
}

/// What the encoder found to copy before comparing tiles: the copy and the
/// strips `(x, y, w, h)` (the uncovered rows, and bands of rows the copy
/// left different), all already applied to its picture of the viewer's.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Prepared {
    copies: Vec<CopyRect>,
    strips: Vec<(usize, usize, usize, usize)>,
}

/// Most copies the encoder looks for in one frame.
const SCROLL_COPIES: usize = 2;

/// Most rows left different after a copy that still go as strips rather
/// than tiles: a capture taken while the application was redrawing shows
/// a band where old and new rows meet, a few rows high, which strips carry
/// for a fraction of the 64-row tiles around it.
const BAND_ROWS: usize = 64;
/// Bands closer than this many rows are sent as one strip.
const BAND_GAP: usize = 8;

/// How a frame differs from the previous one once copies are applied: the
/// encoder's cheap estimate while another codec runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Tiles that still differ after the copies and strips.
    pub tiles: usize,
    /// Copies found (0 or 1).
    pub copies: usize,
    /// Pixels of the uncovered strips.
    pub strip_pixels: usize,
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
    /// Whether the viewer decodes [`FLAG_COPIES`] (it said so).
    copies_allowed: bool,
    finder: ScrollFinder,
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
            copies_allowed: false,
            finder: ScrollFinder::new(),
        })
    }

    /// Lets the encoder send copies and strips ([`FLAG_COPIES`]); only for
    /// a viewer that announced it decodes them. Off by default.
    pub fn allow_copies(&mut self, allowed: bool) {
        self.copies_allowed = allowed;
    }

    /// Whether copies and strips may be sent.
    pub fn copies_allowed(&self) -> bool {
        self.copies_allowed
    }

    /// Looks for a scroll from the previous frame to `frame` and, when one
    /// is found, applies its copy and its uncovered strip to the kept
    /// picture (as the viewer will), so the tile comparison that follows
    /// sees only what still differs.
    fn prepare(&mut self, frame: &BgraFrame<'_>, grid: Grid) -> Option<Prepared> {
        if !self.copies_allowed || self.grid != Some(grid) {
            return None;
        }
        let row_len = grid.width * 4;
        let mut copies = Vec::new();
        let mut exposed = Vec::new();
        // A capture taken while the application redraws may show two
        // shifts (the top of a pane moved twice, the bottom once): look
        // again after the first copy.
        while copies.len() < SCROLL_COPIES {
            let previous = &self.previous;
            let old = |y: usize| &previous[y * row_len..(y + 1) * row_len];
            let new = |y: usize| frame.row(y);
            let Some(shift): Option<Shift> =
                self.finder
                    .find(&old, &new, grid.width, grid.height, grid.size)
            else {
                break;
            };
            // Frame sides are at most MAX_DIMENSION (8192), so they fit u16.
            let copy = CopyRect {
                src_x: shift.x as u16,
                src_y: shift.src_y as u16,
                dst_x: shift.x as u16,
                dst_y: shift.dst_y as u16,
                width: shift.width as u16,
                height: shift.height as u16,
            };
            if !copy.fits(grid.width, grid.height) {
                break;
            }
            copy.apply(&mut self.previous, row_len);
            copies.push(copy);
            if let Some((y, h)) = shift.exposed {
                if shift.width * h <= MAX_STRIP_PIXELS {
                    exposed.push((shift.x, y, shift.width, h));
                }
            }
        }
        if copies.is_empty() {
            return None;
        }
        // Rows of the copies' columns that still differ: when they are a
        // few thin bands (the uncovered rows, a seam), strips carry them;
        // otherwise the uncovered rows go as strips and tiles do the rest.
        let x = copies
            .iter()
            .map(|c| usize::from(c.dst_x))
            .min()
            .unwrap_or(0);
        let x_end = copies
            .iter()
            .map(|c| usize::from(c.dst_x) + usize::from(c.width))
            .max()
            .unwrap_or(0);
        let (w, bytes) = (x_end - x, x * 4..x_end * 4);
        let mut bands: Vec<(usize, usize)> = Vec::new();
        for y in 0..grid.height {
            let row = &self.previous[y * row_len..(y + 1) * row_len];
            if row[bytes.clone()] == frame.row(y)[bytes.clone()] {
                continue;
            }
            match bands.last_mut() {
                Some((_, end)) if y - *end < BAND_GAP => *end = y + 1,
                _ => bands.push((y, y + 1)),
            }
        }
        let band_rows: usize = bands.iter().map(|(from, to)| to - from).sum();
        let strips: Vec<(usize, usize, usize, usize)> =
            if band_rows <= BAND_ROWS && bands.len() <= usize::from(MAX_STRIPS) {
                bands
                    .iter()
                    .map(|&(from, to)| (x, from, w, to - from))
                    .collect()
            } else {
                exposed
            };
        for &(x, y, w, h) in &strips {
            for row in y..y + h {
                self.previous[row * row_len + x * 4..row * row_len + (x + w) * 4]
                    .copy_from_slice(&frame.row(row)[x * 4..(x + w) * 4]);
            }
        }
        Some(Prepared { copies, strips })
    }

    /// [`TileEncoder::detect_changes`] with copies: what a frame would cost
    /// if it were encoded now (the kept picture moves on to `frame`).
    pub fn estimate_changes(&mut self, frame: &BgraFrame<'_>) -> Changes {
        let grid = Grid::new(frame.width(), frame.height(), self.config.tile_size);
        let prepared = self.prepare(frame, grid);
        Changes {
            tiles: self.detect_changes(frame),
            copies: prepared.as_ref().map_or(0, |p| p.copies.len()),
            strip_pixels: prepared.map_or(0, |p| p.strips.iter().map(|&(_, _, w, h)| w * h).sum()),
        }
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
        let prepared = if keyframe {
            None
        } else {
            self.prepare(frame, grid)
        };
        let changed = self.detect_changes(frame);
        if keyframe {
            self.changed.fill(true);
        } else if changed == 0 && prepared.is_none() {
            return Ok(None);
        }
        let tiles = if keyframe { grid.total() } else { changed };

        let mut payload = Vec::with_capacity(HEADER_LEN + tiles * (TILE_HEADER_LEN + 1024));
        payload.push(TILES_FORMAT_VERSION);
        let flags = self.config.filter.to_bits() | if prepared.is_some() { FLAG_COPIES } else { 0 };
        payload.push(flags);
        payload.extend_from_slice(&self.config.tile_size.to_le_bytes());
        payload.extend_from_slice(&frame.width().to_le_bytes());
        payload.extend_from_slice(&frame.height().to_le_bytes());
        payload.extend_from_slice(&(tiles as u32).to_le_bytes());
        let mut strip_pixels = 0;
        let copies = prepared.as_ref().map_or(0, |p| p.copies.len());
        if let Some(Prepared {
            copies: copy_list,
            strips,
        }) = prepared
        {
            // At most SCROLL_COPIES, below MAX_COPIES.
            payload.push(copy_list.len() as u8);
            for copy in copy_list {
                for field in [
                    copy.src_x,
                    copy.src_y,
                    copy.dst_x,
                    copy.dst_y,
                    copy.width,
                    copy.height,
                ] {
                    payload.extend_from_slice(&field.to_le_bytes());
                }
            }
            // At most MAX_STRIPS (prepare's bound).
            payload.extend_from_slice(&(strips.len() as u16).to_le_bytes());
            for (x, y, w, h) in strips {
                strip_pixels += w * h;
                self.scratch.clear();
                for row in y..y + h {
                    push_rgb(
                        &mut self.scratch,
                        &frame.row(row)[x * 4..(x + w) * 4],
                        self.config.filter,
                    );
                }
                for field in [x, y, w, h] {
                    payload.extend_from_slice(&(field as u16).to_le_bytes());
                }
                self.append_compressed(&mut payload)?;
            }
        }

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
                self.append_compressed(&mut payload)?;
            }
        }
        Ok(Some(TileFrame {
            keyframe,
            payload,
            tiles,
            copies,
            strip_pixels,
        }))
    }

    /// Appends the scratch buffer to `payload` as a 4-byte length and one
    /// zstd frame.
    fn append_compressed(&mut self, payload: &mut Vec<u8>) -> Result<(), TileEncodeError> {
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
        Ok(())
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

    /// Reads and applies the copies and strips of a [`FLAG_COPIES`] frame.
    fn decode_copies(
        &mut self,
        reader: &mut Reader<'_>,
        grid: Grid,
        filter: TileFilter,
    ) -> Result<(), TileDecodeError> {
        let row_len = grid.width * 4;
        let copies = reader.u8()?;
        if copies > MAX_COPIES {
            return Err(TileDecodeError::TooManyCopies { copies, strips: 0 });
        }
        for _ in 0..copies {
            let field = reader.take(COPY_LEN)?;
            let at = |i: usize| u16::from_le_bytes([field[2 * i], field[2 * i + 1]]);
            let copy = CopyRect {
                src_x: at(0),
                src_y: at(1),
                dst_x: at(2),
                dst_y: at(3),
                width: at(4),
                height: at(5),
            };
            if !copy.fits(grid.width, grid.height) {
                return Err(TileDecodeError::CopyOutOfRange(copy));
            }
            copy.apply(&mut self.framebuffer, row_len);
        }
        let strips = reader.u16()?;
        if strips > MAX_STRIPS {
            return Err(TileDecodeError::TooManyCopies { copies, strips });
        }
        for _ in 0..strips {
            let (x, y, w, h) = (reader.u16()?, reader.u16()?, reader.u16()?, reader.u16()?);
            let (xu, yu, wu, hu) = (
                usize::from(x),
                usize::from(y),
                usize::from(w),
                usize::from(h),
            );
            if wu == 0
                || hu == 0
                || xu + wu > grid.width
                || yu + hu > grid.height
                || wu * hu > MAX_STRIP_PIXELS
            {
                return Err(TileDecodeError::StripOutOfRange { x, y, w, h });
            }
            let len = reader.u32()? as usize;
            let compressed = reader.take(len)?;
            let expected = wu * hu * 3;
            if self.scratch.len() < expected {
                // Bounded by MAX_STRIP_PIXELS.
                self.scratch.resize(expected, 0);
            }
            let out = &mut self.scratch[..expected];
            let bad = |detail: String| TileDecodeError::BadStripData {
                x,
                y,
                expected,
                detail,
            };
            match self.decompressor.decompress_to_buffer(compressed, out) {
                Ok(n) if n == expected => {}
                Ok(n) => return Err(bad(format!("got {n} bytes"))),
                Err(e) => return Err(bad(e.to_string())),
            }
            for (row, data) in self.scratch[..expected].chunks_exact(wu * 3).enumerate() {
                let start = (yu + row) * row_len + xu * 4;
                write_rgba(&mut self.framebuffer[start..start + wu * 4], data, filter);
            }
        }
        Ok(())
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
            .filter(|_| flags & !(FILTER_MASK | FLAG_COPIES) == 0)
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

        let row_len = grid.width * 4;
        if flags & FLAG_COPIES != 0 {
            if keyframe {
                return Err(TileDecodeError::CopiesInKeyframe);
            }
            self.decode_copies(&mut reader, grid, filter)?;
        }
        self.seen.clear();
        self.seen.resize(total, false);
        let max_tile = grid.size * grid.size * 3;
        if self.scratch.len() < max_tile {
            self.scratch.resize(max_tile, 0);
        }
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

    fn scrolled(w: u32, h: u32, header: usize, sidebar: usize, offset: usize) -> Vec<u8> {
        crate::scroll::tests::screen(w as usize, h as usize, header, sidebar, offset)
    }

    /// Encodes `frames` one after the other (copies allowed or not),
    /// decodes each and checks the picture is exact every time; returns the
    /// encoded frames.
    fn run(frames: &[Vec<u8>], w: u32, h: u32, copies: bool) -> Vec<TileFrame> {
        let mut enc = encoder(TileFilter::None);
        enc.allow_copies(copies);
        let mut dec = TileDecoder::new().unwrap();
        let mut out = Vec::new();
        for (i, bgra) in frames.iter().enumerate() {
            let frame = BgraFrame::packed(bgra, w, h).unwrap();
            if let Some(encoded) = enc.encode(&frame, false).unwrap() {
                dec.decode(encoded.keyframe, w, h, &encoded.payload)
                    .unwrap();
                out.push(encoded);
            }
            assert!(
                dec.rgba().unwrap() == &expected_rgba(bgra)[..],
                "frame {i} is not exact"
            );
        }
        out
    }

    #[test]
    fn a_whole_frame_scroll_is_one_copy_and_a_strip_and_decodes_exactly() {
        let (w, h) = (320, 240);
        let frames: Vec<Vec<u8>> = (0..6).map(|f| scrolled(w, h, 0, 0, f * 18)).collect();
        let with = run(&frames, w, h, true);
        let without = run(&frames, w, h, false);
        for (f, out) in with.iter().enumerate().skip(1) {
            assert_eq!(out.copies, 1, "frame {f}");
            assert_eq!(out.payload[1] & FLAG_COPIES, FLAG_COPIES);
            assert!(out.strip_pixels > 0 && out.strip_pixels <= 18 * w as usize);
            assert!(out.tiles <= 5, "frame {f}: {} tiles", out.tiles);
        }
        let bytes =
            |frames: &[TileFrame]| frames[1..].iter().map(|f| f.payload.len()).sum::<usize>();
        assert!(
            bytes(&with) * 4 < bytes(&without),
            "copies {} B, tiles alone {} B",
            bytes(&with),
            bytes(&without)
        );
        // Without the viewer's word, never a copy.
        assert!(without
            .iter()
            .all(|f| f.copies == 0 && f.payload[1] & FLAG_COPIES == 0));
        // Scrolling back up works the same way.
        let back: Vec<Vec<u8>> = frames.iter().rev().cloned().collect();
        assert!(run(&back, w, h, true)[1..].iter().all(|f| f.copies == 1));
    }

    #[test]
    fn a_pane_below_a_fixed_header_scrolls_with_a_copy() {
        let (w, h) = (400, 300);
        let frames: Vec<Vec<u8>> = [0, 12, 30, 31, 60, 45]
            .iter()
            .map(|&offset| scrolled(w, h, 40, 70, offset))
            .collect();
        let out = run(&frames, w, h, true);
        for (f, frame) in out.iter().enumerate().skip(1) {
            assert_eq!(frame.copies, 1, "frame {f}");
            assert!(frame.tiles <= 7, "frame {f}: {} tiles", frame.tiles);
        }
    }

    /// A capture taken while the application redraws: the top of the page
    /// has scrolled, the bottom not yet. One copy, strips for the uncovered
    /// rows and the seam, few tiles; exact.
    #[test]
    fn a_half_redrawn_scroll_is_a_copy_and_thin_strips() {
        let (w, h) = (320, 256);
        let old = scrolled(w, h, 0, 0, 0);
        let new = scrolled(w, h, 0, 0, 6);
        let row = w as usize * 4;
        let mut torn = new.clone();
        torn[150 * row..].copy_from_slice(&old[150 * row..]);
        let out = run(&[old, torn, new], w, h, true);
        for frame in &out[1..] {
            assert_eq!(frame.copies, 1);
            assert!(frame.tiles <= 2, "{} tiles", frame.tiles);
            assert!(
                frame.strip_pixels <= 16 * w as usize,
                "{}",
                frame.strip_pixels
            );
        }
    }

    /// Mid-redraw after two scroll steps: the top of the page moved 12
    /// rows, the bottom 6. Two copies, thin strips, few tiles; exact.
    #[test]
    fn two_shifts_in_one_frame_are_two_copies() {
        let (w, h) = (320, 256);
        let old = scrolled(w, h, 0, 0, 0);
        let row = w as usize * 4;
        let mut torn = scrolled(w, h, 0, 0, 12);
        torn[130 * row..].copy_from_slice(&scrolled(w, h, 0, 0, 6)[130 * row..]);
        let out = run(&[old, torn], w, h, true);
        assert_eq!(out[1].copies, 2);
        assert!(out[1].tiles <= 2, "{} tiles", out[1].tiles);
        assert!(
            out[1].strip_pixels <= 32 * w as usize,
            "{}",
            out[1].strip_pixels
        );
    }

    #[test]
    fn changes_that_are_not_scrolls_send_tiles_only() {
        let (w, h) = (320, 240);
        let a = scrolled(w, h, 0, 0, 0);
        // Another page; then a few typed rows.
        let b = picture(w, h, 5);
        let mut c = b.clone();
        for byte in &mut c[100 * w as usize * 4..110 * w as usize * 4] {
            *byte ^= 0x33;
        }
        let out = run(&[a, b, c], w, h, true);
        assert_eq!(out.len(), 3);
        assert!(out
            .iter()
            .all(|f| f.copies == 0 && f.payload[1] & FLAG_COPIES == 0));
    }

    /// Builds a copies frame for a `w`×`h` picture by hand: `copies`, one
    /// strip `(x, y, w, h)` of grey if given, no tiles.
    fn copies_payload(w: u32, h: u32, copies: &[[u16; 6]], strip: Option<[u16; 4]>) -> Vec<u8> {
        let mut p = vec![TILES_FORMAT_VERSION, FLAG_COPIES, 64, 0];
        p.extend_from_slice(&w.to_le_bytes());
        p.extend_from_slice(&h.to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes());
        p.push(copies.len() as u8);
        for copy in copies {
            for field in copy {
                p.extend_from_slice(&field.to_le_bytes());
            }
        }
        p.extend_from_slice(&u16::from(strip.is_some()).to_le_bytes());
        if let Some(rect) = strip {
            for field in rect {
                p.extend_from_slice(&field.to_le_bytes());
            }
            let raw = vec![128u8; usize::from(rect[2]) * usize::from(rect[3]) * 3];
            let data = zstd::bulk::compress(&raw, 1).unwrap();
            p.extend_from_slice(&(data.len() as u32).to_le_bytes());
            p.extend_from_slice(&data);
        }
        p
    }

    #[test]
    fn copies_overlap_like_memmove_in_every_direction() {
        let (w, h, payload) = key_payload();
        let mut dec = TileDecoder::new().unwrap();
        dec.decode(true, w, h, &payload).unwrap();
        let before = dec.rgba().unwrap().to_vec();
        // Down by 5, up by 5, right by 3 (same rows), then a strip.
        let copies = [
            [10, 10, 10, 15, 50, 40],
            [0, 20, 0, 15, 60, 30],
            [5, 0, 8, 0, 40, 70],
        ];
        let p = copies_payload(w, h, &copies, Some([1, 2, 3, 4]));
        dec.decode(false, w, h, &p).unwrap();
        // The same steps on a plain copy of the picture, pixel by pixel.
        let mut want = before;
        let row = w as usize * 4;
        for [sx, sy, dx, dy, cw, ch] in copies.map(|c| c.map(usize::from)) {
            let source = want.clone();
            for r in 0..ch {
                for c in 0..cw * 4 {
                    want[(dy + r) * row + dx * 4 + c] = source[(sy + r) * row + sx * 4 + c];
                }
            }
        }
        for r in 2..6 {
            for c in 1..4 {
                want[r * row + c * 4..r * row + c * 4 + 4].copy_from_slice(&[128, 128, 128, 255]);
            }
        }
        assert!(dec.rgba().unwrap() == &want[..]);
    }

    #[test]
    fn bad_copies_and_strips_are_refused() {
        let (w, h, payload) = key_payload();
        let fresh = || {
            let mut dec = TileDecoder::new().unwrap();
            dec.decode(true, w, h, &payload).unwrap();
            dec
        };
        let refused = |p: &[u8]| {
            let mut dec = fresh();
            let err = dec.decode(false, w, h, p);
            assert!(!dec.is_valid());
            err
        };
        let inside = [0, 0, 0, 1, 10, 10];
        assert!(fresh()
            .decode(false, w, h, &copies_payload(w, h, &[inside], None))
            .is_ok());
        // A copy leaving the frame, an empty one, one past the bottom.
        for copy in [
            [95, 0, 0, 0, 10, 1],
            [0, 0, 0, 0, 0, 5],
            [0, 65, 0, 0, 4, 6],
        ] {
            assert!(matches!(
                refused(&copies_payload(w, h, &[copy], None)),
                Err(TileDecodeError::CopyOutOfRange(_))
            ));
        }
        assert!(matches!(
            refused(&copies_payload(w, h, &[inside; 9], None)),
            Err(TileDecodeError::TooManyCopies { copies: 9, .. })
        ));
        assert!(matches!(
            refused(&copies_payload(w, h, &[], Some([99, 0, 2, 1]))),
            Err(TileDecodeError::StripOutOfRange { .. })
        ));
        // A strip whose data is one row short of its size.
        let mut p = copies_payload(w, h, &[], Some([0, 0, 2, 2]));
        p[HEADER_LEN + 9..HEADER_LEN + 11].copy_from_slice(&3u16.to_le_bytes());
        assert!(matches!(
            refused(&p),
            Err(TileDecodeError::BadStripData { .. })
        ));
        let mut p = copies_payload(w, h, &[], None);
        p[HEADER_LEN + 1..HEADER_LEN + 3].copy_from_slice(&65u16.to_le_bytes());
        assert!(matches!(
            refused(&p),
            Err(TileDecodeError::TooManyCopies { strips: 65, .. })
        ));
        // Never in a keyframe.
        let mut p = payload.clone();
        p[1] |= FLAG_COPIES;
        assert_eq!(
            TileDecoder::new().unwrap().decode(true, w, h, &p),
            Err(TileDecodeError::CopiesInKeyframe)
        );
        // Cut anywhere: refused, never a panic.
        let p = copies_payload(w, h, &[inside], Some([0, 0, 5, 5]));
        for cut in HEADER_LEN..p.len() {
            assert!(refused(&p[..cut]).is_err(), "cut at {cut}");
        }
    }

    proptest::proptest! {
        // Each case encodes and decodes up to 5 frames of 200x150: 32 cases
        // keep the test at a few seconds in a debug build.
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

        /// Whatever two frames follow each other (a shifted copy of the
        /// first with noise, or anything else), copies or not, the viewer's
        /// picture is exact.
        #[test]
        fn any_frame_sequence_decodes_exactly_with_copies(
            shifts in proptest::collection::vec((0usize..200, 0usize..3, proptest::num::u8::ANY), 1..5),
            header in 0usize..60,
            sidebar in 0usize..100,
        ) {
            let (w, h) = (200u32, 150u32);
            let mut frames = vec![scrolled(w, h, header, sidebar, 50)];
            for (offset, kind, noise) in shifts {
                let mut next = scrolled(w, h, header, sidebar, offset);
                match kind {
                    // A pure scroll.
                    0 => {}
                    // A scroll with a changed pixel row somewhere.
                    1 => {
                        let at = usize::from(noise) % h as usize * w as usize * 4;
                        for byte in &mut next[at..at + w as usize * 4] {
                            *byte = byte.wrapping_add(noise | 1);
                        }
                    }
                    // Something else altogether.
                    _ => next = picture(w, h, u32::from(noise)),
                }
                frames.push(next);
            }
            run(&frames, w, h, true);
        }
    }

    proptest::proptest! {
        /// A well-formed header with the copies flag, then anything: refused
        /// or applied, never a panic, and the picture keeps its size.
        #[test]
        fn random_copies_never_panic(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let (w, h, payload) = key_payload();
            let mut dec = TileDecoder::new().unwrap();
            dec.decode(true, w, h, &payload).unwrap();
            let mut p = copies_payload(w, h, &[], None);
            p.truncate(HEADER_LEN);
            p.extend_from_slice(&tail);
            if dec.decode(false, w, h, &p).is_ok() {
                proptest::prop_assert_eq!(dec.rgba().map(<[u8]>::len), Some((w * h * 4) as usize));
            }
        }

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
