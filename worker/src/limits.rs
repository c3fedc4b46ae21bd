//! Resource caps of a worker: [`RenderLimits`].

use crate::error::RenderError;
use crate::spec::FractalSpec;

/// Caps that keep one task from exhausting the worker's memory or time (the
/// original accepted any size). Configurable per worker; a task beyond them gets
/// [`RenderError::TooManyPixels`] or [`RenderError::TooManyIterations`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderLimits {
    /// Largest `width * height` accepted (the image buffer takes one byte a pixel).
    pub max_pixels: u64,
    /// Largest iteration count accepted.
    pub max_iterations: u32,
}

impl RenderLimits {
    /// Default pixel cap: 16 Mpixel (4096 x 4096), 16 MiB of palette indices.
    pub const DEFAULT_MAX_PIXELS: u64 = 16 * 1024 * 1024;
    /// Default iteration cap.
    pub const DEFAULT_MAX_ITERATIONS: u32 = 100_000;

    /// Checks a task against the caps before any memory is allocated.
    pub fn check(&self, spec: &FractalSpec) -> Result<(), RenderError> {
        let pixels = spec.pixel_count();
        if pixels > self.max_pixels {
            return Err(RenderError::TooManyPixels {
                pixels,
                max: self.max_pixels,
            });
        }
        let iterations = spec.iterations.get();
        if iterations > self.max_iterations {
            return Err(RenderError::TooManyIterations {
                iterations,
                max: self.max_iterations,
            });
        }
        Ok(())
    }
}

impl Default for RenderLimits {
    fn default() -> Self {
        Self {
            max_pixels: Self::DEFAULT_MAX_PIXELS,
            max_iterations: Self::DEFAULT_MAX_ITERATIONS,
        }
    }
}
