//! Scroll detection: finds a vertical shift between the previous frame and
//! the new one (the whole screen, or a pane below a fixed toolbar), so the
//! tile encoder can send "copy these rows from there" instead of the tiles
//! the shift touched.
//!
//! Pure and allocation-bounded: the finder keeps a few buffers sized by the
//! frame and reuses them. It never decides what the viewer sees on its own:
//! the encoder applies the copy to its own copy of the previous frame and
//! then compares every tile with the new frame, so whatever this module
//! gets wrong costs bytes, never exactness.
//!
//! How (each step cheap, bounded by the frame's size):
//!
//! 1. Rows that changed (one `memcmp` each). Fewer than
//!    [`MIN_CHANGED_ROWS`]: no scroll.
//! 2. Each tile-wide segment of a changed row is hashed, in both frames.
//!    A segment of the new frame whose hash appears exactly once among the
//!    old frame's segments of the same column votes for the shift between
//!    the two rows (blank segments appear many times and never vote).
//! 3. The shift with the most votes wins when it has at least
//!    [`MIN_VOTES`] and at least half of all votes.
//! 4. Columns: each pixel column of a sample of the voting rows is checked;
//!    the copy spans the widest run of columns around the votes where the
//!    copy would not overwrite a still pixel with a different one (a fixed
//!    sidebar stops it).
//! 5. Rows: each row of that span either matches the shifted old row
//!    exactly, stayed the same without matching (a fixed toolbar or status
//!    bar: the copy stops there), or changed otherwise (left to the tiles).
//!    The copy covers the run of rows around the votes without a still
//!    non-matching row, trimmed to matching rows at both ends, and must
//!    match on at least half its rows.
//! 6. The newly exposed strip is the rows next to the copy that the shift
//!    uncovered (at most the shift's height), trimmed to the rows that
//!    changed.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Fewest changed rows for a frame to be looked at (a typed glyph changes
/// about 18).
pub const MIN_CHANGED_ROWS: usize = 48;
/// Fewest segment votes for the winning shift.
pub const MIN_VOTES: u32 = 16;
/// Fewest rows of a copy that match the shifted old rows exactly.
pub const MIN_MATCHING_ROWS: usize = 32;
/// Narrowest copy, in pixels.
pub const MIN_COPY_WIDTH: usize = 32;
/// Rows sampled to choose the copy's columns.
const COLUMN_SAMPLE_ROWS: usize = 96;

/// A vertical shift found between two frames: rows `dst_y .. dst_y +
/// height` of the new frame, columns `x .. x + width`, are rows `src_y ..`
/// of the old one; `exposed` is the strip the shift uncovered (new pixels
/// to send whole), if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shift {
    /// Left column of the copy.
    pub x: usize,
    /// Width of the copy in pixels.
    pub width: usize,
    /// First row read from the old frame.
    pub src_y: usize,
    /// First row written in the new frame.
    pub dst_y: usize,
    /// Rows copied.
    pub height: usize,
    /// The uncovered strip: `(y, height)`, same columns as the copy.
    pub exposed: Option<(usize, usize)>,
}

/// Hasher for keys that are already hashes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Row-segment hash: four independent multiply lanes over 8-byte words,
/// so the multiplications overlap. Only for voting: a collision costs a
/// wrong vote, never a wrong picture.
fn segment_hash(bytes: &[u8], column: usize) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut lanes = [
        column as u64 ^ 0x243F_6A88_85A3_08D3,
        0x1319_8A2E_0370_7344,
        0xA409_3822_299F_31D0,
        0x082E_FA98_EC4E_6C89,
    ];
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        for (lane, word) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            *lane = (*lane ^ u64::from_le_bytes(w))
                .wrapping_mul(K)
                .rotate_left(31);
        }
    }
    for (i, &b) in blocks.remainder().iter().enumerate() {
        let lane = &mut lanes[i % 4];
        *lane = (*lane ^ u64::from(b)).wrapping_mul(K);
    }
    let mut h =
        lanes[0] ^ lanes[1].rotate_left(17) ^ lanes[2].rotate_left(34) ^ lanes[3].rotate_left(51);
    h ^= h >> 29;
    h = h.wrapping_mul(K);
    h ^ (h >> 32)
}

/// Marks a hash seen more than once.
const REPEATED: u32 = u32::MAX;

/// Finds vertical shifts; keeps its buffers between frames.
#[derive(Debug, Default)]
pub struct ScrollFinder {
    changed: Vec<bool>,
    old_hashes: Vec<u64>,
    new_hashes: Vec<u64>,
    rows_of: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    votes: Vec<u32>,
    /// `(row, column)` of each vote, with its shift.
    voters: Vec<(u32, u32, i32)>,
    breaks: Vec<u32>,
    matching: Vec<bool>,
}

impl ScrollFinder {
    /// A finder with empty buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Looks for a vertical shift from `old` to `new` (rows of packed BGRA,
    /// `width * 4` bytes each, `height` rows). `segment` is the width of the
    /// hashed row pieces in pixels (the tile size).
    pub fn find<'a>(
        &mut self,
        old: &dyn Fn(usize) -> &'a [u8],
        new: &dyn Fn(usize) -> &'a [u8],
        width: usize,
        height: usize,
        segment: usize,
    ) -> Option<Shift> {
        if height < 2 || width < MIN_COPY_WIDTH || segment == 0 {
            return None;
        }
        self.changed.clear();
        self.changed.extend((0..height).map(|y| old(y) != new(y)));
        let changed_rows = self.changed.iter().filter(|&&c| c).count();
        if changed_rows < MIN_CHANGED_ROWS {
            return None;
        }
        let dy = self.vote(old, new, width, height, segment)?;
        let (x0, x1) = self.columns(old, new, width, segment, dy)?;
        let (y0, y1) = self.rows(old, new, x0, x1, height, dy)?;
        let src_y = (y0 as i64 + dy) as usize;
        // The strip the shift uncovered: below the copy when the content
        // moved up (dy > 0), above it otherwise; only rows that differ.
        let shift = dy.unsigned_abs() as usize;
        let (strip_from, strip_to) = if dy > 0 {
            (y1, (y1 + shift).min(height))
        } else {
            (y0.saturating_sub(shift), y0)
        };
        let differs = |y: usize| old(y)[x0 * 4..x1 * 4] != new(y)[x0 * 4..x1 * 4];
        let mut from = strip_from;
        let mut to = strip_to;
        while from < to && !differs(from) {
            from += 1;
        }
        while to > from && !differs(to - 1) {
            to -= 1;
        }
        Some(Shift {
            x: x0,
            width: x1 - x0,
            src_y,
            dst_y: y0,
            height: y1 - y0,
            exposed: (from < to).then_some((from, to - from)),
        })
    }

    /// Steps 2 and 3: the shift (`src_y - dst_y`) most segments vote for.
    fn vote<'a>(
        &mut self,
        old: &dyn Fn(usize) -> &'a [u8],
        new: &dyn Fn(usize) -> &'a [u8],
        width: usize,
        height: usize,
        segment: usize,
    ) -> Option<i64> {
        let columns = width.div_ceil(segment);
        let seg_bytes = segment * 4;
        self.old_hashes.clear();
        self.old_hashes.resize(height * columns, 0);
        self.new_hashes.clear();
        self.new_hashes.resize(height * columns, 0);
        self.rows_of.clear();
        for y in (0..height).filter(|&y| self.changed[y]) {
            let (o, n) = (old(y), new(y));
            for c in 0..columns {
                let range = c * seg_bytes..((c + 1) * seg_bytes).min(width * 4);
                let oh = segment_hash(&o[range.clone()], c);
                let nh = segment_hash(&n[range], c);
                self.old_hashes[y * columns + c] = oh;
                self.new_hashes[y * columns + c] = nh;
                self.rows_of
                    .entry(oh)
                    .and_modify(|row| *row = REPEATED)
                    .or_insert(y as u32);
            }
        }
        self.votes.clear();
        self.votes.resize(2 * height, 0);
        self.voters.clear();
        for y in (0..height).filter(|&y| self.changed[y]) {
            for c in 0..columns {
                let at = y * columns + c;
                let nh = self.new_hashes[at];
                if nh == self.old_hashes[at] {
                    continue;
                }
                let Some(&row) = self.rows_of.get(&nh) else {
                    continue;
                };
                if row == REPEATED {
                    continue;
                }
                let dy = i64::from(row) - y as i64;
                self.votes[(dy + height as i64) as usize] += 1;
                self.voters.push((y as u32, c as u32, dy as i32));
            }
        }
        let total: u32 = self.votes.iter().sum();
        let (best, &count) = self.votes.iter().enumerate().max_by_key(|&(_, &v)| v)?;
        let dy = best as i64 - height as i64;
        (dy != 0 && count >= MIN_VOTES && count * 2 >= total).then_some(dy)
    }

    /// Step 4: the copy's columns `[x0, x1)`.
    fn columns<'a>(
        &mut self,
        old: &dyn Fn(usize) -> &'a [u8],
        new: &dyn Fn(usize) -> &'a [u8],
        width: usize,
        segment: usize,
        dy: i64,
    ) -> Option<(usize, usize)> {
        let dy32 = dy as i32;
        // Rows and columns of the winning votes.
        let mut rows: Vec<usize> = Vec::new();
        let (mut c0, mut c1) = (u32::MAX, 0u32);
        for &(y, c, d) in &self.voters {
            if d == dy32 {
                if rows.last() != Some(&(y as usize)) {
                    rows.push(y as usize);
                }
                c0 = c0.min(c);
                c1 = c1.max(c);
            }
        }
        if rows.is_empty() {
            return None;
        }
        let step = rows.len().div_ceil(COLUMN_SAMPLE_ROWS);
        let sample: Vec<usize> = rows.iter().copied().step_by(step).collect();
        // A column breaks when the copy would overwrite a still pixel with
        // a different one; a few breaks (a caret, a hover) are tolerated.
        self.breaks.clear();
        self.breaks.resize(width, 0);
        for &y in &sample {
            let src = (y as i64 + dy) as usize;
            let (o, n, s) = (old(y), new(y), old(src));
            let pixels = n
                .chunks_exact(4)
                .zip(o.chunks_exact(4))
                .zip(s.chunks_exact(4));
            for (breaks, ((n, o), s)) in self.breaks.iter_mut().zip(pixels) {
                if n == o && n != s {
                    *breaks += 1;
                }
            }
        }
        let tolerated = (sample.len() / 16) as u32;
        let ok = |x: usize| self.breaks[x] <= tolerated;
        // Start from the middle of the voting columns, widen both ways.
        let mid = (((c0 + c1) as usize / 2) * segment + segment / 2).min(width - 1);
        let start = (mid.saturating_sub(segment)..(mid + segment).min(width)).find(|&x| ok(x))?;
        let mut x0 = start;
        while x0 > 0 && ok(x0 - 1) {
            x0 -= 1;
        }
        let mut x1 = start + 1;
        while x1 < width && ok(x1) {
            x1 += 1;
        }
        (x1 - x0 >= MIN_COPY_WIDTH).then_some((x0, x1))
    }

    /// Step 5: the copy's destination rows `[y0, y1)`.
    fn rows<'a>(
        &mut self,
        old: &dyn Fn(usize) -> &'a [u8],
        new: &dyn Fn(usize) -> &'a [u8],
        x0: usize,
        x1: usize,
        height: usize,
        dy: i64,
    ) -> Option<(usize, usize)> {
        let bytes = x0 * 4..x1 * 4;
        // Destination rows whose source is inside the frame.
        let first = (-dy).max(0) as usize;
        let end = (height as i64 - dy.max(0)) as usize;
        // One comparison per row: does it match the shifted old row?
        self.matching.clear();
        self.matching.resize(height, false);
        for y in first..end {
            let src = (y as i64 + dy) as usize;
            self.matching[y] = new(y)[bytes.clone()] == old(src)[bytes.clone()];
        }
        let matches = |y: usize| self.matching[y];
        let still_other = |y: usize| !matches(y) && new(y)[bytes.clone()] == old(y)[bytes.clone()];
        let dy32 = dy as i32;
        let (mut lo, mut hi) = (usize::MAX, 0usize);
        for &(y, _, d) in &self.voters {
            if d == dy32 {
                lo = lo.min(y as usize);
                hi = hi.max(y as usize);
            }
        }
        if lo > hi || lo < first || hi >= end {
            return None;
        }
        let mut y0 = lo;
        while y0 > first && !still_other(y0 - 1) {
            y0 -= 1;
        }
        let mut y1 = hi + 1;
        while y1 < end && !still_other(y1) {
            y1 += 1;
        }
        while y0 < y1 && !matches(y0) {
            y0 += 1;
        }
        while y1 > y0 && !matches(y1 - 1) {
            y1 -= 1;
        }
        let matching = (y0..y1).filter(|&y| matches(y)).count();
        (matching >= MIN_MATCHING_ROWS && matching * 2 >= y1 - y0).then_some((y0, y1))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A page of text-like ink on white, `width` wide: the pixel at page
    /// row `y` (any size) depends on `(x, y, seed)` only, so a shifted view
    /// is an exact shift.
    pub(crate) fn page_pixel(x: usize, y: usize, seed: u64) -> [u8; 4] {
        let mut h = ((x as u64) << 32 | y as u64 ^ seed << 48).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
        let ink = y % 18 < 13 && (x / 9) % 7 != 6 && h.is_multiple_of(3);
        if ink {
            let v = (h >> 40) as u8 & 0x7F;
            [v, v, v.wrapping_add(3), 255]
        } else {
            [255, 255, 255, 255]
        }
    }

    /// A screen: `header` rows of a fixed toolbar, a fixed sidebar
    /// `sidebar` pixels wide, and the page scrolled to `offset` in the
    /// rest.
    pub(crate) fn screen(
        width: usize,
        height: usize,
        header: usize,
        sidebar: usize,
        offset: usize,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(width * height * 4);
        for y in 0..height {
            for x in 0..width {
                let px = if y < header {
                    page_pixel(x, y, 7)
                } else if x < sidebar {
                    page_pixel(x, y, 9)
                } else {
                    page_pixel(x, y - header + offset, 1)
                };
                out.extend_from_slice(&px);
            }
        }
        out
    }

    fn find(a: &[u8], b: &[u8], width: usize, height: usize) -> Option<Shift> {
        let old = |y: usize| &a[y * width * 4..(y + 1) * width * 4];
        let new = |y: usize| &b[y * width * 4..(y + 1) * width * 4];
        ScrollFinder::new().find(&old, &new, width, height, 64)
    }

    #[test]
    fn finds_a_whole_frame_scroll_both_ways() {
        let (w, h) = (320, 240);
        let a = screen(w, h, 0, 0, 100);
        let b = screen(w, h, 0, 0, 117);
        let shift = find(&a, &b, w, h).expect("scroll down found");
        assert_eq!(
            (shift.x, shift.width, shift.src_y, shift.dst_y, shift.height),
            (0, w, 17, 0, h - 17)
        );
        // The uncovered rows, less any that look the same as before (the
        // blank gap between two lines of text).
        let (y, rows) = shift.exposed.expect("a strip");
        assert!(y >= h - 17 && y + rows <= h && rows > 0, "{shift:?}");
        let shift = find(&b, &a, w, h).expect("scroll up found");
        assert_eq!((shift.src_y, shift.dst_y, shift.height), (0, 17, h - 17));
        let (y, rows) = shift.exposed.expect("a strip");
        assert!(y == 0 && rows <= 17, "{shift:?}");
    }

    #[test]
    fn finds_a_pane_below_a_fixed_header_beside_a_sidebar() {
        let (w, h) = (400, 300);
        let (header, sidebar) = (40, 70);
        let a = screen(w, h, header, sidebar, 0);
        let b = screen(w, h, header, sidebar, 25);
        let shift = find(&a, &b, w, h).expect("pane scroll found");
        // The copy stays right of the sidebar's ink and below the header.
        assert!(shift.x >= 60 && shift.x <= sidebar, "{shift:?}");
        assert_eq!(shift.x + shift.width, w);
        assert_eq!((shift.dst_y, shift.src_y), (header, header + 25));
        assert_eq!(shift.height, h - header - 25);
        let (y, rows) = shift.exposed.expect("a strip");
        assert!(y >= h - 25 && y + rows <= h && rows > 0, "{shift:?}");
    }

    #[test]
    fn a_change_that_is_not_a_scroll_is_not_taken_for_one() {
        let (w, h) = (320, 240);
        let a = screen(w, h, 0, 0, 0);
        // Another page altogether.
        let mut b = Vec::new();
        for y in 0..h {
            for x in 0..w {
                b.extend_from_slice(&page_pixel(x, y, 99));
            }
        }
        assert_eq!(find(&a, &b, w, h), None);
        // A few rows typed: too small to look at.
        let mut c = a.clone();
        for byte in &mut c[50 * w * 4..60 * w * 4] {
            *byte ^= 0x55;
        }
        assert_eq!(find(&a, &c, w, h), None);
        // Nothing changed.
        assert_eq!(find(&a, &a, w, h), None);
        // A uniform screen becoming another uniform colour: no votes.
        let white = vec![255u8; w * h * 4];
        let grey = vec![128u8; w * h * 4];
        assert_eq!(find(&white, &grey, w, h), None);
    }
}
