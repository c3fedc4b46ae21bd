//! Helpers shared by the integration tests.

#![allow(dead_code)]

use faafo_worker::{FractalParams, FractalSpec, JuliaRenderer, RenderLimits, SimdLevel};

/// Parses parameters the test knows to be valid.
pub fn spec(params: FractalParams) -> FractalSpec {
    FractalSpec::try_from(params).expect("test parameters are valid")
}

/// One renderer per kernel this CPU can run: the portable one always, AVX2 when
/// available, so every test checks them all.
pub fn renderers() -> Vec<JuliaRenderer> {
    let base = JuliaRenderer::new(RenderLimits::default());
    [SimdLevel::Portable, SimdLevel::Avx2]
        .into_iter()
        .filter(|level| level.is_available())
        .map(|level| base.with_simd_level(level).expect("level is available"))
        .collect()
}
