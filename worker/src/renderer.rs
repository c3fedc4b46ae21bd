//! The renderer: [`JuliaRenderer`] turns a [`FractalSpec`] into pixels (and a PNG),
//! on all cores of the current rayon pool, with the best [`SimdLevel`]; or, for
//! renders that share a pool, in turns ([`JuliaRenderer::render_png_on`]).

use std::io::Write;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::cancel::CancelToken;
use crate::constant::JuliaConstant;
use crate::encode::{EncodedPng, encode_png};
use crate::error::{FractalError, RenderError};
use crate::image::PixelGrid;
use crate::kernel::{PixelValue, Tile, render_tile};
use crate::limits::RenderLimits;
use crate::simd::SimdLevel;
use crate::spec::FractalSpec;

/// Largest unit of work, in pixels (a run of row-major pixels, possibly across
/// rows): 256 units for the 1 Mpixel reference image keep both cores busy to the end.
const MAX_TILE_PIXELS: usize = 4096;
/// Smallest unit of work, in pixels.
const MIN_TILE_PIXELS: usize = 256;
/// Most units of work per pool thread in one turn of a render sharing its
/// pool ([`JuliaRenderer::render_png_on`]): enough that queueing each turn
/// costs nothing next to it, few enough that the other renders' turns come
/// soon.
const TURN_TILES_PER_THREAD: usize = 64;
/// Steps one thread's share of a turn may take at most (when no pixel
/// escapes), about 0.1 s with AVX2: a render cancelled while it waits for
/// its turn (a timeout, a deletion) is answered once the turns queued
/// ahead of it are done, so a turn is sized by its work, not by its tiles
/// alone (64 tiles of a 10-million-iteration task took minutes).
const MAX_TURN_STEPS: usize = MAX_TILE_STEPS * 8;
/// Steps a unit may take at most (when no pixel escapes): cancellation is polled
/// before each unit, so this bounds the time to notice it (about 10 ms with AVX2,
/// 40 ms with the portable kernel on the reference machine), except for iteration
/// counts above `2^24 / MIN_TILE_PIXELS`, where a unit of `MIN_TILE_PIXELS` takes longer.
const MAX_TILE_STEPS: usize = 1 << 24;

/// Pixels per unit of work for `iterations`: large for cheap pixels, small enough
/// for expensive ones that a cancellation is noticed quickly.
fn tile_pixels(iterations: u32) -> usize {
    let iterations = usize::try_from(iterations).unwrap_or(usize::MAX).max(1);
    (MAX_TILE_STEPS / iterations).clamp(MIN_TILE_PIXELS, MAX_TILE_PIXELS)
}

/// Units of work per pool thread in one turn, for units of `tile_len`
/// pixels of `iterations` each: at most [`MAX_TURN_STEPS`] of work, at
/// least one unit.
fn turn_tiles_per_thread(tile_len: usize, iterations: u32) -> usize {
    let iterations = usize::try_from(iterations).unwrap_or(usize::MAX).max(1);
    let tile_steps = tile_len.saturating_mul(iterations).max(1);
    (MAX_TURN_STEPS / tile_steps).clamp(1, TURN_TILES_PER_THREAD)
}

/// The cost and timing of one render, reported with each result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderStats {
    /// Sum over all pixels of the `z = z*z + c` steps performed (the escape index,
    /// or `iterations` for a pixel that never escaped): the work, for throughput.
    pub pixel_iterations: u64,
    /// Wall time spent choosing `c` and rendering the pixels (not encoding),
    /// less the time a render sharing a pool waited for its turns.
    pub duration: Duration,
}

impl RenderStats {
    /// Throughput in pixel-iterations per second (0 for an unmeasurably fast render).
    pub fn pixel_iterations_per_second(&self) -> f64 {
        let seconds = self.duration.as_secs_f64();
        if seconds > 0.0 {
            self.pixel_iterations as f64 / seconds
        } else {
            0.0
        }
    }
}

/// Pixels rendered for a task, with the `c` used (recorded so the image can be
/// reproduced) and the cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered<T> {
    /// The pixels.
    pub image: PixelGrid<T>,
    /// The Julia constant rendered.
    pub constant: JuliaConstant,
    /// Cost and timing.
    pub stats: RenderStats,
}

/// The result of [`JuliaRenderer::render_png`]: what the worker reports for a task.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FractalOutput {
    /// The Julia constant rendered.
    pub constant: JuliaConstant,
    /// Rendering cost and timing.
    pub render: RenderStats,
    /// Size, sha256 and encoding time of the PNG.
    pub png: EncodedPng,
}

impl FractalOutput {
    /// Render plus encode time: the task's `duration`.
    pub fn duration(&self) -> Duration {
        self.render.duration + self.png.duration
    }
}

/// Renders Julia sets within configured [`RenderLimits`] using a chosen
/// [`SimdLevel`]. Cheap to copy; holds no buffers.
///
/// Rendering is CPU-bound and blocking: it runs on the rayon pool it is called from
/// (the global pool, one thread per core, unless inside `ThreadPool::install`), so an
/// async service should call it from a blocking thread (e.g. tokio's
/// `spawn_blocking`) and cancel it through the [`CancelToken`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JuliaRenderer {
    limits: RenderLimits,
    simd: SimdLevel,
}

impl JuliaRenderer {
    /// A renderer with the fastest kernel this CPU supports.
    pub fn new(limits: RenderLimits) -> Self {
        Self {
            limits,
            simd: SimdLevel::detect(),
        }
    }

    /// The same renderer forced onto `level` (e.g. [`SimdLevel::Portable`] to check
    /// that it yields the same bytes); an error if this CPU cannot run it.
    pub fn with_simd_level(self, level: SimdLevel) -> Result<Self, RenderError> {
        if level.is_available() {
            Ok(Self {
                simd: level,
                ..self
            })
        } else {
            Err(RenderError::SimdUnavailable(level))
        }
    }

    /// The kernel in use.
    pub fn simd_level(&self) -> SimdLevel {
        self.simd
    }

    /// The caps in force.
    pub fn limits(&self) -> RenderLimits {
        self.limits
    }

    /// Renders the palette indices of the image (what the PNG stores).
    pub fn render(
        &self,
        spec: &FractalSpec,
        cancel: &CancelToken,
    ) -> Result<Rendered<u8>, RenderError> {
        self.render_grid(spec, cancel, None)
    }

    /// Renders the original's escape index of every pixel (4 bytes a pixel), to
    /// compare with other implementations.
    pub fn render_escape_indices(
        &self,
        spec: &FractalSpec,
        cancel: &CancelToken,
    ) -> Result<Rendered<u32>, RenderError> {
        self.render_grid(spec, cancel, None)
    }

    /// The worker's whole job for one task: render, then write the PNG to `out`
    /// while hashing it.
    pub fn render_png<W: Write>(
        &self,
        spec: &FractalSpec,
        cancel: &CancelToken,
        out: W,
    ) -> Result<FractalOutput, FractalError> {
        with_png(self.render(spec, cancel)?, out)
    }

    /// As [`Self::render_png`], for renders that share `pool` (a worker's
    /// render slots): the pixels are rendered on `pool` in turns of a few
    /// tiles per thread, each turn queued behind the turns of the other
    /// renders, so that they take turns and a long render does not hold up
    /// the others (inside one `install`, a pool's threads finish the render
    /// they are in before anything queued: a small task waited for all of a
    /// minutes-long one). The PNG is written by the calling thread, which
    /// must not be one of `pool`'s (a tokio blocking thread, say), so one
    /// render's PNG step leaves the pool's threads to the others' pixels.
    /// The image is the same, byte for byte.
    pub fn render_png_on<W: Write>(
        &self,
        pool: &rayon::ThreadPool,
        spec: &FractalSpec,
        cancel: &CancelToken,
        out: W,
    ) -> Result<FractalOutput, FractalError> {
        with_png(self.render_grid(spec, cancel, Some(pool))?, out)
    }

    /// The pixels, on the current pool at once (`turns` is `None`), or on
    /// the pool given in turns.
    fn render_grid<T: PixelValue>(
        &self,
        spec: &FractalSpec,
        cancel: &CancelToken,
        turns: Option<&rayon::ThreadPool>,
    ) -> Result<Rendered<T>, RenderError> {
        let started = Instant::now();
        self.limits.check(spec)?;
        let constant = spec.constant.resolve(&spec.viewport, spec.iterations)?;
        let (width, height) = (spec.width.get(), spec.height.get());
        let iterations = spec.iterations.get();
        let viewport = spec.viewport;

        let mut columns = zeroed::<f64>(u64::from(width))?;
        for (x, re) in (0..width).zip(columns.iter_mut()) {
            *re = viewport.column_re(x, width);
        }
        let mut rows = zeroed::<f64>(u64::from(height))?;
        for (y, im) in (0..height).zip(rows.iter_mut()) {
            *im = viewport.row_im(y, height);
        }
        let mut pixels = zeroed::<T>(spec.pixel_count())?;

        let level = self.simd;
        let tile_len = tile_pixels(iterations);
        // Tiles `first_tile..` into `chunk`, on the current pool.
        let render_tiles = |first_tile: usize, chunk: &mut [T]| {
            chunk
                .par_chunks_mut(tile_len)
                .enumerate()
                .map(|(index, out)| {
                    if cancel.is_cancelled() {
                        return Err(RenderError::Cancelled);
                    }
                    let tile = Tile {
                        columns: &columns,
                        rows: &rows,
                        first: (first_tile + index) * tile_len,
                    };
                    Ok(render_tile(level, &tile, constant, iterations, out))
                })
                .try_reduce(|| 0, |a, b| Ok(a + b))
        };
        // Time spent queued for the pool behind other renders' turns: not
        // this render's (a small task rendered beside large ones reported
        // several times its cost).
        let mut queued = Duration::ZERO;
        let pixel_iterations = match turns {
            None => render_tiles(0, &mut pixels)?,
            Some(pool) => {
                let turn_tiles =
                    pool.current_num_threads().max(1) * turn_tiles_per_thread(tile_len, iterations);
                let mut sum = 0;
                for (turn, chunk) in pixels.chunks_mut(turn_tiles * tile_len).enumerate() {
                    let asked = Instant::now();
                    let (tiles, ran) = pool.install(|| {
                        let began = Instant::now();
                        (render_tiles(turn * turn_tiles, chunk), began.elapsed())
                    });
                    queued += asked.elapsed().saturating_sub(ran);
                    sum += tiles?;
                }
                sum
            }
        };

        Ok(Rendered {
            image: PixelGrid::from_rendered(spec.width, spec.height, pixels),
            constant,
            stats: RenderStats {
                pixel_iterations,
                duration: started.elapsed().saturating_sub(queued),
            },
        })
    }
}

/// A render's output with its PNG, written to `out` while hashed.
fn with_png<W: Write>(rendered: Rendered<u8>, out: W) -> Result<FractalOutput, FractalError> {
    let png = encode_png(&rendered.image, out)?;
    Ok(FractalOutput {
        constant: rendered.constant,
        render: rendered.stats,
        png,
    })
}

/// A zero-filled buffer of `len` values, or [`RenderError::OutOfMemory`] instead of
/// an abort when the allocator refuses.
fn zeroed<T: Copy + Default>(len: u64) -> Result<Vec<T>, RenderError> {
    let bytes = len.saturating_mul(size_of::<T>() as u64);
    let out_of_memory = RenderError::OutOfMemory { bytes };
    let len = usize::try_from(len).map_err(|_| out_of_memory.clone())?;
    let mut buffer = Vec::new();
    buffer.try_reserve_exact(len).map_err(|_| out_of_memory)?;
    buffer.resize(len, T::default());
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_is_sized_by_its_work() {
        // The original's sizes (up to 512 iterations): 64 tiles a thread,
        // as before, whatever the image.
        for iterations in [1, 128, 512] {
            let tile = tile_pixels(iterations);
            assert_eq!(turn_tiles_per_thread(tile, iterations), 64, "{iterations}");
        }
        // Costly pixels: fewer tiles, never a turn past MAX_TURN_STEPS
        // (but at least one tile, however costly).
        for iterations in [100_000, 1_000_000, 10_000_000, u32::MAX] {
            let tile = tile_pixels(iterations);
            let tiles = turn_tiles_per_thread(tile, iterations);
            assert!(tiles >= 1, "{iterations}");
            assert!(
                tiles == 1 || tiles * tile * iterations as usize <= MAX_TURN_STEPS,
                "{iterations}: {tiles} tiles of {tile} pixels"
            );
        }
        assert_eq!(turn_tiles_per_thread(tile_pixels(100_000), 100_000), 5);
        assert_eq!(
            turn_tiles_per_thread(tile_pixels(10_000_000), 10_000_000),
            1
        );
    }

    /// A render that waits for a shared pool behind another render's turn
    /// does not count the wait as its own rendering time.
    #[test]
    fn a_turn_waited_for_is_not_counted_as_rendering() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool");
        let spec = FractalSpec::try_from(crate::FractalParams {
            width: 8,
            height: 8,
            iterations: 16,
            c_re: Some(-0.8),
            c_im: Some(0.156),
            ..Default::default()
        })
        .expect("spec");
        let held = std::sync::Barrier::new(2);
        let hold = Duration::from_millis(600);
        let (waited, reported) = std::thread::scope(|scope| {
            // Another render's turn holds the pool's one thread.
            scope.spawn(|| {
                pool.install(|| {
                    held.wait();
                    std::thread::sleep(hold);
                })
            });
            held.wait();
            let asked = Instant::now();
            let mut png = Vec::new();
            let output = JuliaRenderer::new(RenderLimits::default())
                .render_png_on(&pool, &spec, &CancelToken::new(), &mut png)
                .expect("renders");
            (asked.elapsed(), output.render.duration)
        });
        assert!(waited >= hold / 2, "the pool was not held: {waited:?}");
        assert!(
            reported < hold / 3,
            "{reported:?} reported for an 8x8 render that waited {waited:?} for its turn"
        );
    }
}
