//! The AVX2 kernel, in two phases per tile:
//!
//! 1. **Prefilter**: blocks of [`VECTORS`] x 4 neighbouring pixels run in lock-step
//!    for at most [`PREFILTER_STEPS`] steps. Most pixels of a typical view escape
//!    within a few steps, together with their neighbours, so this settles them at
//!    little cost per pixel. The others are queued as survivors with their `z`.
//! 2. **Refill**: the survivors stream through [`VECTORS`] x 4 lanes; a lane whose
//!    pixel is done (escaped, or ran all iterations) takes the next survivor at once,
//!    so no lane idles while its neighbours keep iterating.
//!
//! Several vectors are in flight so the CPU overlaps their dependency chains. Each
//! pixel goes through exactly the original's arithmetic (separate `mul`/`add`
//! intrinsics; the `fma` feature is not enabled, so nothing is fused); only the
//! order in which pixels are visited differs from the portable kernel.

use std::arch::x86_64::{
    __m256d, __m256i, _CMP_GT_OQ, _CMP_NGT_UQ, _mm256_add_pd, _mm256_and_pd, _mm256_blendv_pd,
    _mm256_broadcast_sd, _mm256_castpd_si256, _mm256_castsi256_pd, _mm256_cmp_pd, _mm256_loadu_pd,
    _mm256_movemask_pd, _mm256_mul_pd, _mm256_or_pd, _mm256_set1_epi64x, _mm256_set1_pd,
    _mm256_setr_epi64x, _mm256_setzero_pd, _mm256_setzero_si256, _mm256_storeu_pd,
    _mm256_storeu_si256, _mm256_sub_epi64, _mm256_sub_pd, _mm256_testz_pd,
};

use super::{PixelValue, RowPiece, Tile, escape_index};
use crate::constant::JuliaConstant;

/// Vectors in flight; 4 lanes each (3 keeps everything in the 16 ymm registers).
const VECTORS: usize = 3;
/// Lanes in flight.
const LANES: usize = VECTORS * 4;
/// Lock-step steps of the prefilter before a pixel is queued for the refill phase.
const PREFILTER_STEPS: u32 = 8;

/// A pixel that outlived the prefilter, with its `z` after the prefilter's steps.
#[derive(Clone, Copy)]
struct Survivor {
    /// Index within the tile.
    pixel: usize,
    zr: f64,
    zi: f64,
}

/// Broadcast constants of a render.
#[derive(Clone, Copy)]
struct Constants {
    four: __m256d,
    cr: __m256d,
    ci: __m256d,
}

/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn render_tile<T: PixelValue>(
    tile: &Tile<'_>,
    c: JuliaConstant,
    iterations: u32,
    out: &mut [T],
) -> u64 {
    let constants = Constants {
        four: _mm256_set1_pd(4.0),
        cr: _mm256_set1_pd(c.re()),
        ci: _mm256_set1_pd(c.im()),
    };
    let prefilter_steps = PREFILTER_STEPS.min(iterations);
    let mut survivors = Vec::with_capacity(out.len());
    let mut work = 0;
    for piece in tile.pieces(out.len()) {
        work += prefilter(
            &piece,
            constants,
            prefilter_steps,
            iterations,
            out,
            &mut survivors,
        );
    }
    work + refill(&survivors, constants, prefilter_steps, iterations, out)
}

/// Phase 1: lock-step blocks; settles the pixels done within `steps` steps, queues
/// the rest (only when `steps < iterations`).
#[target_feature(enable = "avx2")]
fn prefilter<T: PixelValue>(
    piece: &RowPiece<'_>,
    constants: Constants,
    steps: u32,
    iterations: u32,
    out: &mut [T],
    survivors: &mut Vec<Survivor>,
) -> u64 {
    const BLOCK: usize = LANES;
    let Constants { four, cr, ci } = constants;
    let zy = _mm256_set1_pd(piece.zy);
    let all_lanes = _mm256_castsi256_pd(_mm256_set1_epi64x(-1));
    let mut work = 0u64;
    for (block, xs) in piece.xs.chunks(BLOCK).enumerate() {
        // Pad a short block with copies of its last pixel (never longer to finish).
        let last = xs.last().copied().unwrap_or_default();
        let mut start = [last; BLOCK];
        start[..xs.len()].copy_from_slice(xs);

        let mut zr = [_mm256_setzero_pd(); VECTORS];
        let mut zi = [zy; VECTORS];
        let mut active = [all_lanes; VECTORS];
        let mut counts = [_mm256_setzero_si256(); VECTORS];
        for (k, lanes) in start.chunks_exact(4).enumerate() {
            // SAFETY: `lanes` holds exactly 4 doubles; loadu has no alignment need.
            zr[k] = unsafe { _mm256_loadu_pd(lanes.as_ptr()) };
        }
        for _ in 0..steps {
            let mut any = _mm256_setzero_pd();
            for k in 0..VECTORS {
                let zr2 = _mm256_mul_pd(zr[k], zr[k]);
                let zi2 = _mm256_mul_pd(zi[k], zi[k]);
                let magnitude = _mm256_add_pd(zr2, zi2);
                // NGT_UQ: `!(m > 4)`, the original's test negated, exactly.
                let still = _mm256_and_pd(active[k], _mm256_cmp_pd::<_CMP_NGT_UQ>(magnitude, four));
                active[k] = still;
                // An active lane is all ones, i.e. -1: subtracting counts a step.
                counts[k] = _mm256_sub_epi64(counts[k], _mm256_castpd_si256(still));
                any = _mm256_or_pd(any, still);
                let cross = _mm256_mul_pd(zr[k], zi[k]);
                zi[k] = _mm256_add_pd(_mm256_add_pd(cross, cross), ci);
                zr[k] = _mm256_add_pd(_mm256_sub_pd(zr2, zi2), cr);
            }
            // testz_pd reads sign bits: 1 when no lane is active any more.
            if _mm256_testz_pd(any, any) == 1 {
                break;
            }
        }

        let mut lane_counts = [0u64; BLOCK];
        let mut lane_zr = [0f64; BLOCK];
        let mut lane_zi = [0f64; BLOCK];
        let mut unfinished = 0u32;
        for k in 0..VECTORS {
            let lanes = k * 4..k * 4 + 4;
            // SAFETY: each destination holds exactly 4 elements; storeu has no
            // alignment need.
            unsafe {
                _mm256_storeu_si256(
                    lane_counts[lanes.clone()].as_mut_ptr().cast::<__m256i>(),
                    counts[k],
                );
                _mm256_storeu_pd(lane_zr[lanes.clone()].as_mut_ptr(), zr[k]);
                _mm256_storeu_pd(lane_zi[lanes].as_mut_ptr(), zi[k]);
            }
            unfinished |= (_mm256_movemask_pd(active[k]) as u32) << (k * 4);
        }
        if steps == iterations {
            // Every pixel ran its whole budget here.
            unfinished = 0;
        }
        let first = piece.offset + block * BLOCK;
        let Some(dst) = out.get_mut(first..first + xs.len()) else {
            continue;
        };
        for (lane, (slot, &count)) in dst.iter_mut().zip(&lane_counts).enumerate() {
            if unfinished & (1 << lane) == 0 {
                // At most `iterations`, a u32.
                let count = count as u32;
                *slot = T::from_escape_index(escape_index(count, iterations));
                work += u64::from(count);
            } else {
                let (zr, zi) = (lane_zr[lane], lane_zi[lane]);
                survivors.push(Survivor {
                    pixel: first + lane,
                    zr,
                    zi,
                });
            }
        }
    }
    work
}

/// Per-lane bookkeeping of the refill phase, outside the vector registers.
struct Lanes {
    /// Tile index of the pixel a lane iterates.
    pixel: [usize; LANES],
    /// Global step at which the lane's pixel entered the lane.
    start: [u64; LANES],
    /// Global step at which the lane's pixel has run all iterations (`u64::MAX` for
    /// a lane with no pixel left).
    deadline: [u64; LANES],
}

/// Phase 2: streams `survivors` (each `done_steps` steps in) through refilled lanes.
#[target_feature(enable = "avx2")]
fn refill<T: PixelValue>(
    survivors: &[Survivor],
    constants: Constants,
    done_steps: u32,
    iterations: u32,
    out: &mut [T],
) -> u64 {
    let Constants { four, cr, ci } = constants;
    let base = u64::from(done_steps);
    let remaining = u64::from(iterations) - base;
    // A lane with no pixel holds NaN: `NaN > 4` is false under an ordered compare,
    // so it never reports an escape.
    let nan = _mm256_set1_pd(f64::NAN);
    let lane_mask = [
        _mm256_castsi256_pd(_mm256_setr_epi64x(-1, 0, 0, 0)),
        _mm256_castsi256_pd(_mm256_setr_epi64x(0, -1, 0, 0)),
        _mm256_castsi256_pd(_mm256_setr_epi64x(0, 0, -1, 0)),
        _mm256_castsi256_pd(_mm256_setr_epi64x(0, 0, 0, -1)),
    ];

    let mut zr = [nan; VECTORS];
    let mut zi = [nan; VECTORS];
    let mut lanes = Lanes {
        pixel: [0; LANES],
        start: [0; LANES],
        deadline: [u64::MAX; LANES],
    };
    let mut queue = survivors.iter();
    let mut live = 0usize;
    for lane in 0..LANES {
        if let Some(survivor) = queue.next() {
            let (k, l) = (lane / 4, lane % 4);
            zr[k] = _mm256_blendv_pd(zr[k], _mm256_broadcast_sd(&survivor.zr), lane_mask[l]);
            zi[k] = _mm256_blendv_pd(zi[k], _mm256_broadcast_sd(&survivor.zi), lane_mask[l]);
            lanes.pixel[lane] = survivor.pixel;
            lanes.deadline[lane] = remaining;
            live += 1;
        }
    }

    let mut step = 0u64;
    let mut min_deadline = remaining;
    let mut work = 0u64;
    while live > 0 {
        // Fast path: iterate all lanes until one escapes or runs out of iterations.
        let mut escaped = [_mm256_setzero_pd(); VECTORS];
        loop {
            let mut any = _mm256_setzero_pd();
            for k in 0..VECTORS {
                let zr2 = _mm256_mul_pd(zr[k], zr[k]);
                let zi2 = _mm256_mul_pd(zi[k], zi[k]);
                escaped[k] = _mm256_cmp_pd::<_CMP_GT_OQ>(_mm256_add_pd(zr2, zi2), four);
                any = _mm256_or_pd(any, escaped[k]);
                let cross = _mm256_mul_pd(zr[k], zi[k]);
                zi[k] = _mm256_add_pd(_mm256_add_pd(cross, cross), ci);
                zr[k] = _mm256_add_pd(_mm256_sub_pd(zr2, zi2), cr);
            }
            // testz_pd reads sign bits: 1 when no lane escaped.
            if _mm256_testz_pd(any, any) == 0 || step == min_deadline {
                break;
            }
            step += 1;
        }

        // Slow path: retire the lanes done at `step`, refill them.
        let capped = step == min_deadline;
        let mut recompute_min = capped;
        for k in 0..VECTORS {
            let mut done = _mm256_movemask_pd(escaped[k]) as u32;
            if capped {
                for l in 0..4 {
                    done |= u32::from(lanes.deadline[k * 4 + l] == step) << l;
                }
            }
            while done != 0 {
                let l = done.trailing_zeros() as usize;
                done &= done - 1;
                let lane = k * 4 + l;
                // Steps done: the escape index, or the budget if it never escaped.
                let steps = base + step - lanes.start[lane];
                work += steps;
                if let Some(pixel) = out.get_mut(lanes.pixel[lane]) {
                    // steps <= iterations, a u32.
                    *pixel = T::from_escape_index(escape_index(steps as u32, iterations));
                }
                recompute_min |= lanes.deadline[lane] == min_deadline;
                if let Some(survivor) = queue.next() {
                    let (x, y) = (
                        _mm256_broadcast_sd(&survivor.zr),
                        _mm256_broadcast_sd(&survivor.zi),
                    );
                    zr[k] = _mm256_blendv_pd(zr[k], x, lane_mask[l]);
                    zi[k] = _mm256_blendv_pd(zi[k], y, lane_mask[l]);
                    lanes.pixel[lane] = survivor.pixel;
                    lanes.start[lane] = step + 1;
                    lanes.deadline[lane] = step + 1 + remaining;
                } else {
                    zr[k] = _mm256_blendv_pd(zr[k], nan, lane_mask[l]);
                    zi[k] = _mm256_blendv_pd(zi[k], nan, lane_mask[l]);
                    lanes.deadline[lane] = u64::MAX;
                    live -= 1;
                }
            }
        }
        if recompute_min {
            // New deadlines are later than all others, so the minimum moves only
            // when a lane holding it retires.
            min_deadline = lanes.deadline.iter().copied().min().unwrap_or(u64::MAX);
        }
        step += 1;
    }
    work
}
