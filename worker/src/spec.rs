//! A render task: raw [`FractalParams`] as they arrive, parsed into a [`FractalSpec`]
//! that holds only valid values ("parse, don't validate").

use crate::constant::{ConstantSource, JuliaConstant};
use crate::dimensions::{Height, Width};
use crate::error::ParamError;
use crate::iterations::Iterations;
use crate::seed::Seed;
use crate::viewport::Viewport;

/// The unchecked numbers of a task (as a JSON message or the CLI carries them).
///
/// Integers are `i64` so that negative input reaches the parser and gets a typed
/// error instead of a deserialisation failure. Give `c` through [`Self::c_re`] and
/// [`Self::c_im`] (both or neither), else a seed; with neither, `uuid` must be set
/// and the seed is derived from it ([`Seed::from_uuid`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FractalParams {
    /// Image width in pixels (>= 2).
    pub width: i64,
    /// Image height in pixels (>= 2).
    pub height: i64,
    /// Maximum iterations per pixel (>= 1).
    pub iterations: i64,
    /// Left edge of the view.
    pub xa: f64,
    /// Right edge of the view.
    pub xb: f64,
    /// Edge of the view shown in row 0.
    pub ya: f64,
    /// Edge of the view shown in the last row.
    pub yb: f64,
    /// Real part of an explicit `c`.
    pub c_re: Option<f64>,
    /// Imaginary part of an explicit `c`.
    pub c_im: Option<f64>,
    /// Seed for drawing `c` when it is not explicit.
    pub seed: Option<u64>,
    /// The task uuid, for deriving a seed when there is neither `c` nor a seed.
    pub uuid: Option<String>,
}

impl Default for FractalParams {
    /// The bench view: 1024x1024 pixels, 512 iterations, `[-2, 2] x [-1.5, 1.5]`,
    /// no source for `c` yet.
    fn default() -> Self {
        Self {
            width: 1024,
            height: 1024,
            iterations: 512,
            xa: Viewport::DEFAULT.xa(),
            xb: Viewport::DEFAULT.xb(),
            ya: Viewport::DEFAULT.ya(),
            yb: Viewport::DEFAULT.yb(),
            c_re: None,
            c_im: None,
            seed: None,
            uuid: None,
        }
    }
}

impl FractalParams {
    /// The same parameters with an explicit `c` (and no seed), for builders and tests.
    pub fn with_c(self, re: f64, im: f64) -> Self {
        Self {
            c_re: Some(re),
            c_im: Some(im),
            seed: None,
            ..self
        }
    }

    /// The same parameters with a seed (and no explicit `c`).
    pub fn with_seed(self, seed: u64) -> Self {
        Self {
            c_re: None,
            c_im: None,
            seed: Some(seed),
            ..self
        }
    }
}

/// A valid render task: what to draw and where `c` comes from. Only obtainable by
/// parsing [`FractalParams`] (or from parts that are valid by construction).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FractalSpec {
    /// Image width.
    pub width: Width,
    /// Image height.
    pub height: Height,
    /// Iteration budget per pixel.
    pub iterations: Iterations,
    /// The region of the plane shown.
    pub viewport: Viewport,
    /// Where `c` comes from.
    pub constant: ConstantSource,
}

impl FractalSpec {
    /// `width * height`, the figure the pixel cap applies to.
    pub fn pixel_count(&self) -> u64 {
        u64::from(self.width.get()) * u64::from(self.height.get())
    }
}

impl TryFrom<FractalParams> for FractalSpec {
    type Error = ParamError;

    fn try_from(params: FractalParams) -> Result<Self, Self::Error> {
        let constant = match (params.c_re, params.c_im, params.seed, &params.uuid) {
            (Some(re), Some(im), _, _) => ConstantSource::Explicit(JuliaConstant::new(re, im)?),
            (Some(_), None, _, _) | (None, Some(_), _, _) => {
                return Err(ParamError::IncompleteConstant);
            }
            (None, None, Some(seed), _) => ConstantSource::Seeded(Seed(seed)),
            (None, None, None, Some(uuid)) => ConstantSource::Seeded(Seed::from_uuid_str(uuid)?),
            (None, None, None, None) => return Err(ParamError::MissingConstantSource),
        };
        Ok(Self {
            width: Width::new(params.width)?,
            height: Height::new(params.height)?,
            iterations: Iterations::new(params.iterations)?,
            viewport: Viewport::new(params.xa, params.xb, params.ya, params.yb)?,
            constant,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_half_given_c_is_refused() {
        let params = FractalParams {
            c_re: Some(0.1),
            ..FractalParams::default()
        };
        assert_eq!(
            FractalSpec::try_from(params),
            Err(ParamError::IncompleteConstant)
        );
    }

    #[test]
    fn no_source_for_c_is_refused() {
        assert_eq!(
            FractalSpec::try_from(FractalParams::default()),
            Err(ParamError::MissingConstantSource)
        );
    }

    #[test]
    fn the_uuid_gives_the_seed_when_there_is_none() {
        let uuid = "212e8c23-e67f-4bd3-86e1-5a5e811ee2f4";
        let params = FractalParams {
            uuid: Some(uuid.into()),
            ..FractalParams::default()
        };
        let spec = FractalSpec::try_from(params).expect("valid");
        assert_eq!(
            spec.constant,
            ConstantSource::Seeded(Seed::from_uuid_str(uuid).expect("valid uuid"))
        );
    }
}
