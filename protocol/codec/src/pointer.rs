//! Pointer shapes in a session: the agent numbers each distinct shape and
//! sends its picture once ([`ShapeSender`]); the console keeps the pictures
//! by number ([`ShapeCache`]), so a pointer that goes back to an arrow it
//! had before costs a few bytes, not the arrow again.
//!
//! Pure: no I/O, no clock, no logging (callers log the errors returned).
//!
//! Both sides keep at most [`MAX_SHAPES`] shapes and agree without talking:
//! numbers only grow; when the agent's table is full it forgets every shape
//! (and sends pictures again under new numbers), and the console forgets
//! its lowest numbers first. The agent only ever names shapes numbered
//! since its last reset, at most [`MAX_SHAPES`] of them and all higher than
//! any before, which are exactly the ones the console still holds.

use std::collections::BTreeMap;
use std::sync::Arc;

use deskside_protocol::session::{CursorShape, PointerImage, PointerImageError, PointerShape};

/// Shapes each side keeps. Desktops cycle through a handful (arrow, text
/// beam, hand, resize arrows, busy frames); a 64×64 picture is 16 KiB raw,
/// so the console holds at most 1 MiB for typical sizes.
pub const MAX_SHAPES: usize = 64;

/// zstd level for pointer pictures: they are small and sent once.
const ZSTD_LEVEL: i32 = 3;

/// A pointer shape that cannot be sent or shown.
#[derive(Debug, thiserror::Error)]
pub enum PointerError {
    /// Its size is out of bounds.
    #[error(transparent)]
    Size(#[from] PointerImageError),
    /// The pixel buffer's length does not match the size.
    #[error(
        "a {width}x{height} pointer picture needs {expected} bytes of RGBA but has {actual}; \
         the plain pointer marker is shown instead"
    )]
    Length {
        /// Width in pixels.
        width: u16,
        /// Height in pixels.
        height: u16,
        /// `width * height * 4`.
        expected: usize,
        /// What came.
        actual: usize,
    },
    /// zstd failed to compress, or the data did not decompress to at most
    /// the picture's size.
    #[error("pointer picture compression failed ({0}); the plain pointer marker is shown instead")]
    Zstd(String),
    /// The agent named a shape whose picture the console does not hold.
    #[error(
        "the device named pointer shape {0}, which this console never received; \
         the plain pointer marker is shown until the shape changes"
    )]
    UnknownId(u32),
}

/// What the agent sends when the pointer's shape changed.
#[derive(Debug, Default)]
pub struct ShapeChange {
    /// The message for the console, when there is something to say.
    pub message: Option<PointerShape>,
    /// Why the new shape could not be sent (it goes as
    /// [`PointerShape::UNKNOWN`]); for the log.
    pub refused: Option<PointerError>,
}

/// The agent's side: numbers shapes, sends each picture once and each
/// change once.
#[derive(Debug)]
pub struct ShapeSender {
    /// Shapes sent since the last reset, with their numbers.
    known: Vec<(u32, CursorShape)>,
    /// The number the next new shape gets.
    next_id: u32,
    /// The shape the console was last told about.
    current: Option<u32>,
}

impl Default for ShapeSender {
    fn default() -> Self {
        Self::new()
    }
}

impl ShapeSender {
    /// A sender for a new session: the console holds no shape yet.
    pub fn new() -> Self {
        Self {
            known: Vec::new(),
            next_id: 1,
            current: None,
        }
    }

    /// The capturer reported this shape (it may be the one the console
    /// already shows: capturers report a shape when the system's pointer
    /// object changed, and two objects can look the same).
    pub fn handle_shape(&mut self, shape: &CursorShape) -> ShapeChange {
        let (id, image, refused) = match self.known.iter().find(|(_, s)| s == shape) {
            Some((id, _)) => (*id, None, None),
            None => match pack(shape) {
                Ok(image) => {
                    if self.known.len() >= MAX_SHAPES {
                        self.known.clear();
                    }
                    let id = self.next_id;
                    // Numbers grow for 4 billion shapes; past that, start
                    // again (a console may then show a stale shape once).
                    self.next_id = self.next_id.checked_add(1).unwrap_or(1);
                    self.known.push((id, shape.clone()));
                    (id, Some(image), None)
                }
                Err(e) => (PointerShape::UNKNOWN, None, Some(e)),
            },
        };
        if self.current == Some(id) {
            return ShapeChange {
                message: None,
                refused,
            };
        }
        self.current = Some(id);
        ShapeChange {
            message: Some(PointerShape { id, image }),
            refused,
        }
    }
}

/// Compresses a captured shape for the wire, refusing shapes out of bounds.
pub fn pack(shape: &CursorShape) -> Result<PointerImage, PointerError> {
    let expected = PointerImage::raw_len(shape.width, shape.height)?;
    if shape.rgba.len() != expected {
        return Err(PointerError::Length {
            width: shape.width,
            height: shape.height,
            expected,
            actual: shape.rgba.len(),
        });
    }
    let rgba_zstd = zstd::bulk::compress(&shape.rgba, ZSTD_LEVEL)
        .map_err(|e| PointerError::Zstd(e.to_string()))?;
    Ok(PointerImage {
        width: shape.width,
        height: shape.height,
        hot_x: shape.hot_x,
        hot_y: shape.hot_y,
        rgba_zstd,
    })
}

/// Decompresses a picture from the wire: the size is checked before
/// anything is allocated, and the output may not exceed it.
pub fn unpack(image: &PointerImage) -> Result<CursorShape, PointerError> {
    let expected = PointerImage::raw_len(image.width, image.height)?;
    let rgba = zstd::bulk::decompress(&image.rgba_zstd, expected)
        .map_err(|e| PointerError::Zstd(e.to_string()))?;
    if rgba.len() != expected {
        return Err(PointerError::Length {
            width: image.width,
            height: image.height,
            expected,
            actual: rgba.len(),
        });
    }
    Ok(CursorShape {
        width: image.width,
        height: image.height,
        hot_x: image.hot_x,
        hot_y: image.hot_y,
        rgba,
    })
}

/// The console's side: the pictures by number.
#[derive(Debug, Default)]
pub struct ShapeCache {
    shapes: BTreeMap<u32, Arc<CursorShape>>,
}

impl ShapeCache {
    /// An empty cache, for a new session.
    pub fn new() -> Self {
        Self::default()
    }

    /// The pointer's shape changed: returns the shape to draw, or `None`
    /// for [`PointerShape::UNKNOWN`] (draw a plain marker). An error means
    /// the message was unusable (the caller logs it and draws the marker).
    pub fn handle_shape(
        &mut self,
        message: &PointerShape,
    ) -> Result<Option<Arc<CursorShape>>, PointerError> {
        if message.id == PointerShape::UNKNOWN {
            return Ok(None);
        }
        if let Some(image) = &message.image {
            let shape = Arc::new(unpack(image)?);
            self.shapes.insert(message.id, shape.clone());
            while self.shapes.len() > MAX_SHAPES {
                self.shapes.pop_first();
            }
            return Ok(Some(shape));
        }
        self.shapes
            .get(&message.id)
            .cloned()
            .map(Some)
            .ok_or(PointerError::UnknownId(message.id))
    }

    /// Shapes held.
    pub fn len(&self) -> usize {
        self.shapes.len()
    }

    /// Whether no shape is held.
    pub fn is_empty(&self) -> bool {
        self.shapes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deskside_protocol::session::MAX_POINTER_SIDE;

    fn shape(width: u16, height: u16, colour: u8) -> CursorShape {
        CursorShape {
            width,
            height,
            hot_x: width / 2,
            hot_y: height / 3,
            rgba: vec![colour; usize::from(width) * usize::from(height) * 4],
        }
    }

    #[test]
    fn each_change_is_sent_once_and_each_picture_once() {
        let (arrow, beam) = (shape(13, 7, 1), shape(9, 11, 2));
        let mut sender = ShapeSender::new();
        let mut cache = ShapeCache::new();
        let mut sent = Vec::new();
        // The capturer reports a shape per change of the system's pointer
        // object, sometimes the same picture twice in a row.
        for s in [&arrow, &arrow, &beam, &arrow, &arrow, &beam] {
            let change = sender.handle_shape(s);
            assert!(change.refused.is_none());
            if let Some(message) = change.message {
                let shown = cache.handle_shape(&message).expect("usable");
                assert_eq!(shown.as_deref(), Some(s));
                sent.push((message.id, message.image.is_some()));
            }
        }
        assert_eq!(sent, vec![(1, true), (2, true), (1, false), (2, false)]);
    }

    #[test]
    fn a_shape_too_large_goes_as_unknown_and_the_console_draws_a_marker() {
        let mut sender = ShapeSender::new();
        sender.handle_shape(&shape(8, 8, 1));
        let huge = shape(MAX_POINTER_SIDE + 1, 4, 9);
        let change = sender.handle_shape(&huge);
        assert!(matches!(change.refused, Some(PointerError::Size(_))));
        let message = change.message.expect("the console hears the change");
        assert_eq!(message.id, PointerShape::UNKNOWN);
        assert!(message.image.is_none());
        assert_eq!(ShapeCache::new().handle_shape(&message).expect("ok"), None);
        // A second refused shape in a row is no change.
        assert!(sender.handle_shape(&huge).message.is_none());
        // The largest allowed side goes through.
        let big = shape(MAX_POINTER_SIDE, MAX_POINTER_SIDE, 0);
        let message = sender.handle_shape(&big).message.expect("sent");
        assert!(message.image.is_some());
    }

    #[test]
    fn a_wrong_buffer_is_refused() {
        let mut bad = shape(4, 4, 1);
        bad.rgba.pop();
        assert!(matches!(pack(&bad), Err(PointerError::Length { .. })));
    }

    #[test]
    fn pictures_from_the_wire_are_checked() {
        let good = pack(&shape(4, 4, 7)).expect("packs");
        // Claims a larger size than its pixels: too short once unpacked.
        let short = PointerImage {
            width: 5,
            ..good.clone()
        };
        assert!(matches!(unpack(&short), Err(PointerError::Length { .. })));
        // Pixels that unpack to more than the claimed size.
        let long = PointerImage {
            width: 3,
            ..good.clone()
        };
        assert!(matches!(unpack(&long), Err(PointerError::Zstd(_))));
        // Out of bounds, whatever the pixels.
        let wide = PointerImage {
            width: MAX_POINTER_SIDE + 1,
            ..good.clone()
        };
        assert!(matches!(unpack(&wide), Err(PointerError::Size(_))));
        // Not zstd at all.
        let garbage = PointerImage {
            rgba_zstd: vec![1, 2, 3],
            ..good
        };
        assert!(matches!(unpack(&garbage), Err(PointerError::Zstd(_))));
        // A number the console never got.
        let mut cache = ShapeCache::new();
        assert!(matches!(
            cache.handle_shape(&PointerShape { id: 5, image: None }),
            Err(PointerError::UnknownId(5))
        ));
    }

    #[test]
    fn both_sides_forget_in_step_when_more_shapes_than_the_tables_hold_come() {
        let mut sender = ShapeSender::new();
        let mut cache = ShapeCache::new();
        let shapes: Vec<_> = (0..200u16)
            .map(|i| shape(1 + i % 50, 1 + i / 50, i as u8))
            .collect();
        // Walk through many shapes, going back to recent ones often: every
        // message the sender makes must resolve in the cache.
        for i in 0..shapes.len() {
            for j in [i, i.saturating_sub(3), i.saturating_sub(40), i] {
                if let Some(message) = sender.handle_shape(&shapes[j]).message {
                    let shown = cache.handle_shape(&message).expect("resolves");
                    assert_eq!(shown.as_deref(), Some(&shapes[j]));
                }
            }
            assert!(cache.len() <= MAX_SHAPES);
        }
    }
}
