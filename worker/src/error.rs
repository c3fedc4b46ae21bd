//! Typed errors: why a task was refused, why a render stopped, why a PNG could not be
//! written. The service maps them onto task failures; none of them is a panic.

use crate::simd::SimdLevel;

/// A task parameter that cannot describe a fractal, found while parsing raw input.
///
/// Returned by the domain constructors ([`crate::Width::new`], [`crate::Viewport::new`],
/// ...) so that a [`crate::FractalSpec`] can only hold valid values.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    /// Width below 2 pixels (the mapping divides by `width - 1`) or above
    /// [`MAX_SIDE`](crate::dimensions::MAX_SIDE).
    #[error("width must be between 2 and {max} pixels, got {value}", max = crate::dimensions::MAX_SIDE)]
    InvalidWidth {
        /// The rejected width.
        value: i64,
    },
    /// Height below 2 pixels (the mapping divides by `height - 1`) or above
    /// [`MAX_SIDE`](crate::dimensions::MAX_SIDE).
    #[error("height must be between 2 and {max} pixels, got {value}", max = crate::dimensions::MAX_SIDE)]
    InvalidHeight {
        /// The rejected height.
        value: i64,
    },
    /// Iterations below 1 (the original's loop would leave its index undefined) or
    /// above `u32::MAX`.
    #[error("iterations must be between 1 and {max}, got {value}", max = u32::MAX)]
    InvalidIterations {
        /// The rejected iteration count.
        value: i64,
    },
    /// A viewport bound that is NaN or infinite.
    #[error("{name} must be a finite number, got {value}")]
    NonFiniteBound {
        /// Which bound (`xa`, `xb`, `ya` or `yb`).
        name: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// A viewport range that is empty or reversed (`xa >= xb` or `ya >= yb`).
    #[error("{low_name} must be less than {high_name}, got {low} >= {high}")]
    EmptyRange {
        /// Name of the lower bound (`xa` or `ya`).
        low_name: &'static str,
        /// Name of the upper bound (`xb` or `yb`).
        high_name: &'static str,
        /// The lower bound.
        low: f64,
        /// The upper bound.
        high: f64,
    },
    /// A viewport range whose width overflows to infinity (`xb - xa` not finite).
    #[error("{high_name} - {low_name} overflows: {high} - {low} is not finite")]
    RangeOverflow {
        /// Name of the lower bound (`xa` or `ya`).
        low_name: &'static str,
        /// Name of the upper bound (`xb` or `yb`).
        high_name: &'static str,
        /// The lower bound.
        low: f64,
        /// The upper bound.
        high: f64,
    },
    /// A Julia constant with a NaN or infinite part.
    #[error("the Julia constant must be finite, got {re} + {im}i")]
    NonFiniteConstant {
        /// Real part.
        re: f64,
        /// Imaginary part.
        im: f64,
    },
    /// Only one part of an explicit `c` was given.
    #[error("an explicit Julia constant needs both c_re and c_im")]
    IncompleteConstant,
    /// Neither `c`, nor a seed, nor a uuid to derive a seed from.
    #[error("the task gives no Julia constant, no seed and no uuid to derive a seed from")]
    MissingConstantSource,
    /// A uuid string that does not parse (for deriving a seed).
    #[error("invalid task uuid {value:?}")]
    InvalidUuid {
        /// The rejected text.
        value: String,
    },
}

/// Why a render did not produce an image.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RenderError {
    /// The task's parameters are invalid.
    #[error(transparent)]
    Invalid(#[from] ParamError),
    /// `width * height` exceeds [`crate::RenderLimits::max_pixels`].
    #[error("image of {pixels} pixels exceeds the limit of {max} pixels")]
    TooManyPixels {
        /// Requested pixel count.
        pixels: u64,
        /// Configured cap.
        max: u64,
    },
    /// The iteration count exceeds [`crate::RenderLimits::max_iterations`].
    #[error("{iterations} iterations exceed the limit of {max}")]
    TooManyIterations {
        /// Requested iterations.
        iterations: u32,
        /// Configured cap.
        max: u32,
    },
    /// The seeded search found no `c` meeting the original's rule `10 < i < 100`
    /// (always the case for `iterations <= 11`, where the original looped forever).
    #[error(
        "no Julia constant in the viewport meets the rule 10 < i < 100 \
         after {attempts} draws with {iterations} iterations; give c explicitly \
         (c_re and c_im; `faafo create --c-re .. --c-im ..`)"
    )]
    NoQualifyingConstant {
        /// Draws tried (0 when the rule cannot hold for this iteration count).
        attempts: u32,
        /// The task's iteration count.
        iterations: u32,
    },
    /// The [`crate::CancelToken`] was cancelled while rendering.
    #[error("render cancelled")]
    Cancelled,
    /// The image buffer could not be allocated.
    #[error("cannot allocate {bytes} bytes for the image")]
    OutOfMemory {
        /// Size of the failed allocation.
        bytes: u64,
    },
    /// A forced [`SimdLevel`] is not supported by this CPU.
    #[error("SIMD level {0:?} is not available on this CPU")]
    SimdUnavailable(SimdLevel),
}

/// Why a PNG could not be encoded or written.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The png encoder refused the image or failed.
    #[error("PNG encoding failed: {0}")]
    Png(#[from] png::EncodingError),
    /// Writing the bytes failed.
    #[error("writing the PNG failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Why the whole pipeline (render, then encode) failed.
#[derive(Debug, thiserror::Error)]
pub enum FractalError {
    /// The render failed or was refused.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The PNG could not be written.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}
