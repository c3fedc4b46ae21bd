//! Rendered pixels: a [`PixelGrid`] of palette indices ([`PaletteImage`], what the
//! PNG stores) or of escape indices ([`EscapeIndexImage`], for verification).

use crate::dimensions::{Height, Width};

/// A row-major `width x height` grid, row 0 first (row 0 shows `ya`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PixelGrid<T> {
    width: Width,
    height: Height,
    pixels: Vec<T>,
}

/// Palette indices (`escape index % 32`), one byte a pixel: the image itself.
pub type PaletteImage = PixelGrid<u8>;

/// The original's escape index `i` per pixel (`iterations - 1` where `z` never
/// escapes): what the Python worker computed before colouring, for comparisons.
pub type EscapeIndexImage = PixelGrid<u32>;

impl<T> PixelGrid<T> {
    /// Wraps a buffer; `None` when its length is not `width * height`.
    pub fn from_pixels(width: Width, height: Height, pixels: Vec<T>) -> Option<Self> {
        let expected = u64::from(width.get()) * u64::from(height.get());
        (pixels.len() as u64 == expected).then_some(Self {
            width,
            height,
            pixels,
        })
    }

    /// Wraps a buffer the renderer sized as `width * height`.
    pub(crate) fn from_rendered(width: Width, height: Height, pixels: Vec<T>) -> Self {
        debug_assert_eq!(
            pixels.len() as u64,
            u64::from(width.get()) * u64::from(height.get())
        );
        Self {
            width,
            height,
            pixels,
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> Width {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> Height {
        self.height
    }

    /// All pixels, row-major.
    pub fn pixels(&self) -> &[T] {
        &self.pixels
    }

    /// Gives the buffer back.
    pub fn into_pixels(self) -> Vec<T> {
        self.pixels
    }
}
