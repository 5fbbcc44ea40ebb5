//! A capturer that draws deterministic frames, for tests and benchmarks
//! without a display.
//!
//! Each monitor shows a pattern that depends only on its size and a
//! *generation* number: the same generation always gives the same pixels, a
//! new generation changes pixels everywhere. The screen stays static until
//! [`SyntheticControl::change`] is called, or changes on every capture once
//! [`SyntheticControl::set_animated`] is on.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use deskside_protocol::session::{CursorShape, Monitor};

use crate::capture::{CaptureError, Captured, Capturer, Frame};

/// Size of the synthetic cursor (a white square with a black border).
const CURSOR_SIZE: u16 = 8;

/// Handle to make a [`SyntheticCapturer`]'s screen change; clones share it.
#[derive(Clone, Debug, Default)]
pub struct SyntheticControl {
    generation: Arc<AtomicU64>,
    animated: Arc<AtomicBool>,
}

impl SyntheticControl {
    /// Makes the next capture of every monitor show a new picture.
    pub fn change(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// When on, every capture shows a new picture (a busy screen).
    pub fn set_animated(&self, animated: bool) {
        self.animated.store(animated, Ordering::Relaxed);
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }
}

/// Deterministic frames; see the module documentation.
#[derive(Debug)]
pub struct SyntheticCapturer {
    monitors: Vec<Monitor>,
    control: SyntheticControl,
    /// Per monitor: the generation drawn in the buffer (if any).
    drawn: Vec<Option<u64>>,
    /// Per monitor: the generation handed out by the last capture.
    last_seen: Vec<Option<u64>>,
    buffer: Vec<u8>,
    /// Which monitor the buffer holds.
    holds: Option<u8>,
    pointer: (i32, i32),
    cursor_sent: bool,
}

impl SyntheticCapturer {
    /// A desktop with these monitors (their `index` must be their position).
    pub fn new(monitors: Vec<Monitor>) -> Self {
        let n = monitors.len();
        Self {
            monitors,
            control: SyntheticControl::default(),
            drawn: vec![None; n],
            last_seen: vec![None; n],
            buffer: Vec::new(),
            holds: None,
            pointer: (0, 0),
            cursor_sent: false,
        }
    }

    /// A desktop with one primary monitor of `width` x `height`.
    pub fn single(width: u32, height: u32) -> Self {
        Self::new(vec![Monitor {
            index: 0,
            name: "synthetic-0".to_owned(),
            x: 0,
            y: 0,
            width,
            height,
            primary: true,
        }])
    }

    /// The handle that makes the screen change.
    pub fn control(&self) -> SyntheticControl {
        self.control.clone()
    }

    /// Sets where [`Capturer::cursor`] says the pointer is.
    pub fn set_pointer(&mut self, x: i32, y: i32) {
        self.pointer = (x, y);
    }

    /// The pixel `[b, g, r, 255]` that generation `generation` draws at
    /// (`x`, `y`), so tests can check frames without a copy of the pattern.
    pub fn expected_pixel(generation: u64, x: u32, y: u32) -> [u8; 4] {
        let g = generation as u32;
        [
            (x.wrapping_add(g.wrapping_mul(7))) as u8,
            (y.wrapping_add(g.wrapping_mul(13))) as u8,
            ((x / 16) ^ (y / 16) ^ g) as u8,
            0xff,
        ]
    }
}

impl Capturer for SyntheticCapturer {
    fn monitors(&mut self) -> Result<Vec<Monitor>, CaptureError> {
        Ok(self.monitors.clone())
    }

    fn capture(&mut self, monitor: u8) -> Result<Captured<'_>, CaptureError> {
        let i = usize::from(monitor);
        let m = self.monitors.get(i).ok_or(CaptureError::NoSuchMonitor {
            index: monitor,
            count: self.monitors.len(),
        })?;
        let (width, height) = (m.width, m.height);
        if self.control.animated.load(Ordering::Relaxed) {
            self.control.change();
        }
        let generation = self.control.generation();
        let changed = self.last_seen[i] != Some(generation);
        if self.holds != Some(monitor) || self.drawn[i] != Some(generation) {
            let len = width as usize * height as usize * 4;
            self.buffer.resize(len, 0);
            for (y, row) in self.buffer.chunks_exact_mut(width as usize * 4).enumerate() {
                for (x, px) in row.chunks_exact_mut(4).enumerate() {
                    px.copy_from_slice(&Self::expected_pixel(generation, x as u32, y as u32));
                }
            }
            self.holds = Some(monitor);
            self.drawn.iter_mut().for_each(|d| *d = None);
            self.drawn[i] = Some(generation);
        }
        self.last_seen[i] = Some(generation);
        Ok(Captured {
            frame: Frame {
                width,
                height,
                stride: width as usize * 4,
                data: &self.buffer,
            },
            changed,
        })
    }

    fn cursor(&mut self) -> Result<Option<(i32, i32, Option<CursorShape>)>, CaptureError> {
        let shape = if self.cursor_sent {
            None
        } else {
            self.cursor_sent = true;
            let n = CURSOR_SIZE;
            let mut rgba = Vec::with_capacity(usize::from(n) * usize::from(n) * 4);
            for y in 0..n {
                for x in 0..n {
                    let border = x == 0 || y == 0 || x == n - 1 || y == n - 1;
                    let v = if border { 0 } else { 0xff };
                    rgba.extend_from_slice(&[v, v, v, 0xff]);
                }
            }
            Some(CursorShape {
                width: n,
                height: n,
                hot_x: 0,
                hot_y: 0,
                rgba,
            })
        };
        Ok(Some((self.pointer.0, self.pointer.1, shape)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_until_changed_then_animated() {
        let mut c = SyntheticCapturer::single(64, 32);
        let control = c.control();
        let first = c.capture(0).unwrap();
        assert!(first.changed);
        assert_eq!(first.frame.data.len(), 64 * 32 * 4);
        assert_eq!(
            first.frame.pixel(17, 9),
            Some(SyntheticCapturer::expected_pixel(0, 17, 9))
        );
        assert!(!c.capture(0).unwrap().changed);
        control.change();
        let after = c.capture(0).unwrap();
        assert!(after.changed);
        assert_eq!(
            after.frame.pixel(17, 9),
            Some(SyntheticCapturer::expected_pixel(1, 17, 9))
        );
        assert_ne!(
            SyntheticCapturer::expected_pixel(0, 17, 9),
            SyntheticCapturer::expected_pixel(1, 17, 9)
        );
        control.set_animated(true);
        assert!(c.capture(0).unwrap().changed);
        assert!(c.capture(0).unwrap().changed);
        control.set_animated(false);
        assert!(!c.capture(0).unwrap().changed);
    }

    #[test]
    fn monitors_are_tracked_separately() {
        let mon = |index: u8, x: i32| Monitor {
            index,
            name: format!("s{index}"),
            x,
            y: 0,
            width: 8,
            height: 4,
            primary: index == 0,
        };
        let mut c = SyntheticCapturer::new(vec![mon(0, 0), mon(1, 8)]);
        assert!(c.capture(0).unwrap().changed);
        assert!(c.capture(1).unwrap().changed);
        assert!(!c.capture(0).unwrap().changed);
        assert!(!c.capture(1).unwrap().changed);
        assert!(matches!(
            c.capture(2),
            Err(CaptureError::NoSuchMonitor { index: 2, count: 2 })
        ));
    }

    #[test]
    fn cursor_shape_comes_once() {
        let mut c = SyntheticCapturer::single(8, 8);
        c.set_pointer(3, 4);
        let (x, y, shape) = c.cursor().unwrap().unwrap();
        assert_eq!((x, y), (3, 4));
        let shape = shape.unwrap();
        assert_eq!(shape.rgba.len(), 8 * 8 * 4);
        assert_eq!(c.cursor().unwrap().unwrap().2, None);
    }
}
