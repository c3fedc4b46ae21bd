//! # faafo-worker: the Julia-set renderer of faafo
//!
//! faafo ("First App Application For OpenStack") renders Julia-set fractals. This
//! crate is the worker: the rendering library, and [`service`], the RPC server
//! whose `process(task)` renders a task and answers with the PNG.
//! It keeps the original Python worker's pictures (same pixel-to-plane mapping,
//! escape test, iteration count and 32-colour scheme) and fixes its defects:
//!
//! * **Deterministic.** The Julia constant `c` is given by the task or drawn by the
//!   original's acceptance rule from a [`Seed`] (derived from the task uuid when the
//!   task has none). Rendering uses only IEEE-754 additions and multiplications with
//!   no fused multiply-add, so the same [`FractalSpec`] gives byte-identical PNGs (same
//!   sha256) on every run, every x86-64 machine and every [`SimdLevel`].
//! * **Validated.** Raw task parameters ([`FractalParams`]) are parsed into domain
//!   types ([`Width`], [`Height`], [`Iterations`], [`Viewport`], [`JuliaConstant`])
//!   that cannot hold a bad value; [`RenderLimits`] caps pixels and iterations. Bad
//!   input is a typed error, never a panic or an endless loop.
//! * **Fast.** AVX2 when the CPU has it (detected at run time), a portable path that
//!   yields the same bits otherwise, rayon over all cores, an 8-bit palette PNG with
//!   fast deflate, and the sha256 computed while the bytes are written.
//! * **Cancellable.** Renders poll a [`CancelToken`] between tiles.
//!
//! ```
//! use faafo_worker::{CancelToken, FractalParams, FractalSpec, JuliaRenderer, RenderLimits};
//!
//! let params = FractalParams { width: 64, height: 48, iterations: 128, ..FractalParams::default() };
//! let spec = FractalSpec::try_from(params.with_seed(7))?;
//! let renderer = JuliaRenderer::new(RenderLimits::default());
//! let mut png = Vec::new();
//! let output = renderer.render_png(&spec, &CancelToken::new(), &mut png)?;
//! println!("c = {}, sha256 = {}", output.constant, output.png.checksum);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Modules, one concept each: [`dimensions`], [`iterations`], [`viewport`],
//! [`constant`], [`seed`], [`spec`], [`limits`], [`cancel`], [`simd`], [`kernel`],
//! [`image`], [`renderer`], [`palette`], [`hashing_writer`], [`encode`], [`error`].

pub mod cancel;
pub mod constant;
pub mod dimensions;
pub mod encode;
pub mod error;
pub mod hashing_writer;
pub mod image;
pub mod iterations;
pub mod kernel;
pub mod limits;
pub mod palette;
pub mod renderer;
pub mod renders;
pub mod seed;
pub mod service;
pub mod simd;
pub mod spec;
pub mod viewport;

pub use cancel::CancelToken;
pub use constant::{ConstantSource, JuliaConstant, MAX_CONSTANT_ATTEMPTS};
pub use dimensions::{Height, Width};
pub use encode::{EncodedPng, encode_png};
pub use error::{EncodeError, FractalError, ParamError, RenderError};
pub use hashing_writer::{HashingWriter, Sha256Checksum};
pub use image::{EscapeIndexImage, PaletteImage, PixelGrid};
pub use iterations::Iterations;
pub use limits::RenderLimits;
pub use palette::{PALETTE, PALETTE_LEN};
pub use renderer::{FractalOutput, JuliaRenderer, RenderStats, Rendered};
pub use renders::{RenderRegistry, RenderTicket};
pub use seed::{Seed, SplitMix64};
pub use simd::SimdLevel;
pub use spec::{FractalParams, FractalSpec};
pub use viewport::Viewport;
