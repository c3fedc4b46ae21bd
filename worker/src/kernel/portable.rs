//! The portable kernel: the vector algorithm of [`super::avx2`] over plain arrays of
//! [`LANES`] doubles, so it yields the same bits on any CPU (the compiler may map
//! it onto SSE2 or NEON).

use super::{PixelValue, escape_index};
use crate::constant::JuliaConstant;

/// Pixels iterated together.
const LANES: usize = 8;

/// Renders the pixels at real parts `xs` of the row at imaginary part `zy`.
pub(super) fn render_row_piece<T: PixelValue>(
    xs: &[f64],
    zy: f64,
    c: JuliaConstant,
    iterations: u32,
    out: &mut [T],
) -> u64 {
    let (cr, ci) = (c.re(), c.im());
    let mut steps_total = 0u64;
    for (xs, out) in xs.chunks(LANES).zip(out.chunks_mut(LANES)) {
        // Pad a short chunk with copies of its last pixel (never longer to finish).
        let last = xs.last().copied().unwrap_or_default();
        let mut zr = [last; LANES];
        zr[..xs.len()].copy_from_slice(xs);
        let mut zi = [zy; LANES];
        let mut active = [true; LANES];
        let mut steps = [0u32; LANES];
        for _ in 0..iterations {
            let mut any = false;
            for lane in 0..LANES {
                let zr2 = zr[lane] * zr[lane];
                let zi2 = zi[lane] * zi[lane];
                // The original's test, negated: `!(m > 4)` (not `m <= 4`), the same
                // predicate as the AVX2 kernel's, even for NaN.
                let escaped = zr2 + zi2 > 4.0;
                let still = active[lane] & !escaped;
                active[lane] = still;
                steps[lane] += u32::from(still);
                any |= still;
                let cross = zr[lane] * zi[lane];
                zi[lane] = cross + cross + ci;
                zr[lane] = zr2 - zi2 + cr;
            }
            if !any {
                break;
            }
        }
        for (pixel, &lane_steps) in out.iter_mut().zip(&steps) {
            *pixel = T::from_escape_index(escape_index(lane_steps, iterations));
            steps_total += u64::from(lane_steps);
        }
    }
    steps_total
}
