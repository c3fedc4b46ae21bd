//! The escape-time kernels: per pixel, the original's loop
//!
//! ```text
//! for i in range(iterations):
//!     if abs(z) > 2: break          # here: zr*zr + zi*zi > 4
//!     z = z*z + c
//! pixel = i                         # iterations - 1 when z never escaped
//! ```
//!
//! with `z*z + c` evaluated as CPython does for complex numbers:
//! `(zr*zr - zi*zi + cr) + (zr*zi + zi*zr + ci)*i`, every operation rounded to
//! `f64` separately (no FMA: Rust never contracts `a*b + c`, and no kernel enables
//! the `fma` target feature). All [`SimdLevel`]s and the [`reference`](mod@reference) therefore
//! compute identical escape indices, bit for bit.
//!
//! The kernels also count the work done: the number of `z = z*z + c` steps, i.e. the
//! escape index for escaping pixels and `iterations` for the others. Their sum over
//! an image is the render's pixel-iterations.

use crate::constant::JuliaConstant;
use crate::palette::palette_index;
use crate::simd::SimdLevel;

#[cfg(target_arch = "x86_64")]
mod avx2;
mod portable;
pub mod reference;

/// What a kernel writes per pixel, derived from the escape index.
pub(crate) trait PixelValue: Copy + Default + Send + Sync {
    /// Converts the original's escape index `i`.
    fn from_escape_index(escape_index: u32) -> Self;
}

impl PixelValue for u8 {
    fn from_escape_index(escape_index: u32) -> Self {
        palette_index(escape_index)
    }
}

impl PixelValue for u32 {
    fn from_escape_index(escape_index: u32) -> Self {
        escape_index
    }
}

/// A run of pixels of an image in row-major order, possibly spanning rows: the unit
/// of work the renderer hands to a kernel.
pub(crate) struct Tile<'a> {
    /// Real part of each column (`Viewport::column_re`), `width` values.
    pub columns: &'a [f64],
    /// Imaginary part of each row (`Viewport::row_im`), `height` values.
    pub rows: &'a [f64],
    /// Row-major index of the tile's first pixel in the image.
    pub first: usize,
}

/// One row's share of a tile.
struct RowPiece<'a> {
    /// Real parts of the piece's pixels.
    xs: &'a [f64],
    /// Imaginary part of the row.
    zy: f64,
    /// Index of the piece's first pixel within the tile.
    offset: usize,
}

impl<'a> Tile<'a> {
    /// Splits the tile's `len` pixels into row pieces.
    fn pieces(&self, len: usize) -> impl Iterator<Item = RowPiece<'a>> + use<'a> {
        let (columns, rows) = (self.columns, self.rows);
        let width = columns.len().max(1);
        let (first, end) = (self.first, self.first + len);
        let mut index = first;
        std::iter::from_fn(move || {
            if index >= end {
                return None;
            }
            let (y, x0) = (index / width, index % width);
            let x1 = width.min(x0 + (end - index));
            let piece = RowPiece {
                xs: columns.get(x0..x1)?,
                zy: *rows.get(y)?,
                offset: index - first,
            };
            index += x1 - x0;
            Some(piece)
        })
    }
}

/// Renders the `out.len()` pixels of `tile` into `out` and returns the steps
/// performed.
pub(crate) fn render_tile<T: PixelValue>(
    level: SimdLevel,
    tile: &Tile<'_>,
    c: JuliaConstant,
    iterations: u32,
    out: &mut [T],
) -> u64 {
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 if SimdLevel::Avx2.is_available() => {
            // SAFETY: AVX2 support was just checked at run time.
            unsafe { avx2::render_tile(tile, c, iterations, out) }
        }
        _ => tile
            .pieces(out.len())
            .map(|piece| {
                let out = &mut out[piece.offset..piece.offset + piece.xs.len()];
                portable::render_row_piece(piece.xs, piece.zy, c, iterations, out)
            })
            .sum(),
    }
}

/// Converts a lane's step count to the original's escape index: a lane that ran all
/// `iterations` steps never escaped and gets `iterations - 1`.
#[inline(always)]
fn escape_index(steps: u32, iterations: u32) -> u32 {
    steps.min(iterations - 1)
}
