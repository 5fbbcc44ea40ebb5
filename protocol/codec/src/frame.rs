//! Borrowed input frames (BGRA from the capturer) and the limits every codec
//! checks. Nothing here allocates.

use thiserror::Error;

/// Largest accepted width or height, in pixels (8K is 7680).
pub const MAX_DIMENSION: u32 = 8192;

/// Largest accepted frame area, in pixels: a 7680×4320 screen and a margin.
/// With 4 bytes per pixel the decoder's framebuffer stays below 160 MB.
pub const MAX_PIXELS: u64 = 40_000_000;

/// Why a frame's dimensions or buffer were refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Width or height is zero or above [`MAX_DIMENSION`], or the area is above
    /// [`MAX_PIXELS`].
    #[error(
        "frame size {width}x{height} is not supported (each side 1..={MAX_DIMENSION}, at most \
         {MAX_PIXELS} pixels); capture a smaller monitor or scale the picture down"
    )]
    BadDimensions {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// The row stride is shorter than a row of pixels.
    #[error(
        "row stride {stride} bytes is shorter than a row of {width} BGRA pixels ({} bytes); \
         pass the capturer's real stride",
        *width as u64 * 4
    )]
    StrideTooShort {
        /// Stride in bytes.
        stride: usize,
        /// Width in pixels.
        width: u32,
    },
    /// The buffer is shorter than `stride * (height - 1) + width * 4`.
    #[error(
        "BGRA buffer has {len} bytes but a {width}x{height} frame with stride {stride} needs \
         {needed}; pass the whole captured buffer"
    )]
    BufferTooShort {
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        needed: usize,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Stride in bytes.
        stride: usize,
    },
}

/// Checks a frame size against [`MAX_DIMENSION`] and [`MAX_PIXELS`].
pub fn check_dimensions(width: u32, height: u32) -> Result<(), FrameError> {
    let area = u64::from(width) * u64::from(height);
    if width == 0
        || height == 0
        || width > MAX_DIMENSION
        || height > MAX_DIMENSION
        || area > MAX_PIXELS
    {
        return Err(FrameError::BadDimensions { width, height });
    }
    Ok(())
}

/// A captured frame: BGRA, 4 bytes per pixel, rows `stride` bytes apart
/// (the capturer may pad rows). Alpha is ignored: screens are opaque.
#[derive(Clone, Copy, Debug)]
pub struct BgraFrame<'a> {
    data: &'a [u8],
    width: u32,
    height: u32,
    stride: usize,
}

impl<'a> BgraFrame<'a> {
    /// Wraps a captured buffer after checking that it holds the whole frame.
    pub fn new(data: &'a [u8], width: u32, height: u32, stride: usize) -> Result<Self, FrameError> {
        check_dimensions(width, height)?;
        let row_len = width as usize * 4;
        if stride < row_len {
            return Err(FrameError::StrideTooShort { stride, width });
        }
        let needed = stride
            .checked_mul(height as usize - 1)
            .and_then(|n| n.checked_add(row_len))
            .ok_or(FrameError::BadDimensions { width, height })?;
        if data.len() < needed {
            return Err(FrameError::BufferTooShort {
                len: data.len(),
                needed,
                width,
                height,
                stride,
            });
        }
        Ok(Self {
            data,
            width,
            height,
            stride,
        })
    }

    /// A tightly packed frame (stride = width × 4).
    pub fn packed(data: &'a [u8], width: u32, height: u32) -> Result<Self, FrameError> {
        Self::new(data, width, height, width as usize * 4)
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Bytes between the starts of two rows.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Row `y` (BGRA, exactly `width * 4` bytes). `y` must be below the height.
    pub(crate) fn row(&self, y: usize) -> &'a [u8] {
        let start = y * self.stride;
        &self.data[start..start + self.width as usize * 4]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_short_buffers_and_strides() {
        let buf = vec![0u8; 4 * 4 * 4];
        assert!(BgraFrame::packed(&buf, 4, 4).is_ok());
        assert!(matches!(
            BgraFrame::packed(&buf, 4, 5),
            Err(FrameError::BufferTooShort { .. })
        ));
        assert!(matches!(
            BgraFrame::new(&buf, 4, 4, 15),
            Err(FrameError::StrideTooShort { .. })
        ));
        assert!(matches!(
            BgraFrame::packed(&buf, 0, 4),
            Err(FrameError::BadDimensions { .. })
        ));
        // The last row needs no padding after it.
        let buf = vec![0u8; 20 * 3 + 16];
        assert!(BgraFrame::new(&buf, 4, 4, 20).is_ok());
    }

    #[test]
    fn rejects_huge_frames() {
        assert!(check_dimensions(MAX_DIMENSION + 1, 1).is_err());
        assert!(check_dimensions(8192, 8192).is_err());
        assert!(check_dimensions(7680, 4320).is_ok());
    }
}
