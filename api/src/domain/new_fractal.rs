//! A fractal to create: the body of `POST /v1/fractal`, parsed.

use faafo_common::fractal::{FractalStatus, MIN_DRAWN_ITERATIONS, NewFractal};

use super::{FractalId, Invalid, without_negative_zero};

/// The caps the configuration puts on a fractal's size and cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most pixels (width x height).
    pub pixel_limit: u64,
    /// Most iterations per pixel.
    pub iteration_limit: u32,
}

/// Where the Julia constant of a new fractal comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConstantSource {
    /// Drawn by the worker from the uuid (the default).
    FromUuid,
    /// Drawn by the worker from this seed.
    Seed(u64),
    /// Given: `c = re + i im`.
    Given {
        /// Real part.
        re: f64,
        /// Imaginary part.
        im: f64,
    },
}

/// A valid new fractal: sizes within the caps, a non-empty finite viewport,
/// a finite constant given whole or not at all.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateFractal {
    /// The id given, or a new one.
    pub uuid: FractalId,
    /// Width in pixels (>= 2).
    pub width: u32,
    /// Height in pixels (>= 2).
    pub height: u32,
    /// Iterations per pixel (1..=iteration_limit).
    pub iterations: u32,
    /// Left bound (< xb).
    pub xa: f64,
    /// Right bound.
    pub xb: f64,
    /// Lower bound of the imaginary part (< yb): the image's top row.
    pub ya: f64,
    /// Upper bound of the imaginary part: the image's bottom row.
    pub yb: f64,
    /// Where c comes from.
    pub constant: ConstantSource,
    /// `Pending` or `Running` (a producer dispatching it at once).
    pub status: FractalStatus,
    /// Dispatches so far.
    pub attempts: u32,
}

impl CreateFractal {
    /// Parses a request body against the configured caps.
    pub fn parse(body: NewFractal, limits: Limits) -> Result<Self, Invalid> {
        let uuid = match body.uuid.as_deref() {
            Some(text) => FractalId::parse(text).map_err(|e| Invalid(format!("uuid: {e}")))?,
            None => FractalId::new_time_ordered(),
        };
        for (name, value) in [("width", body.width), ("height", body.height)] {
            if value < 2 {
                return Err(Invalid(format!(
                    "{name} must be at least 2 pixels, got {value}"
                )));
            }
        }
        let pixels = u64::from(body.width) * u64::from(body.height);
        if pixels > limits.pixel_limit {
            return Err(Invalid(format!(
                "{} x {} = {pixels} pixels exceeds the limit of {} pixels",
                body.width, body.height, limits.pixel_limit
            )));
        }
        if body.iterations == 0 || body.iterations > limits.iteration_limit {
            return Err(Invalid(format!(
                "iterations must be between 1 and {}, got {}",
                limits.iteration_limit, body.iterations
            )));
        }
        check_range("xa", body.xa, "xb", body.xb)?;
        check_range("ya", body.ya, "yb", body.yb)?;
        let constant = match (body.c_re, body.c_im, body.seed) {
            (Some(re), Some(im), None) => {
                if !(re.is_finite() && im.is_finite()) {
                    return Err(Invalid(format!(
                        "c_re and c_im must be finite, got {re} and {im}"
                    )));
                }
                ConstantSource::Given {
                    re: without_negative_zero(re),
                    im: without_negative_zero(im),
                }
            }
            (Some(_), Some(_), Some(_)) => {
                return Err(Invalid(
                    "give either a seed or the constant (c_re, c_im), not both".into(),
                ));
            }
            (Some(_), None, _) | (None, Some(_), _) => {
                return Err(Invalid(
                    "c_re and c_im go together: give both or neither".into(),
                ));
            }
            (None, None, Some(seed)) => ConstantSource::Seed(seed),
            (None, None, None) => ConstantSource::FromUuid,
        };
        if !matches!(constant, ConstantSource::Given { .. })
            && body.iterations < MIN_DRAWN_ITERATIONS
        {
            return Err(Invalid(format!(
                "iterations {}: a worker draws the Julia constant only for \
                 {MIN_DRAWN_ITERATIONS} iterations or more; give c_re and c_im to render fewer",
                body.iterations
            )));
        }
        let status = match body.status.unwrap_or(FractalStatus::Pending) {
            status @ (FractalStatus::Pending | FractalStatus::Running) => status,
            other => {
                return Err(Invalid(format!(
                    "a new fractal is pending or running, not {other}: it is done once its image is stored"
                )));
            }
        };
        Ok(Self {
            uuid,
            width: body.width,
            height: body.height,
            iterations: body.iterations,
            xa: without_negative_zero(body.xa),
            xb: without_negative_zero(body.xb),
            ya: without_negative_zero(body.ya),
            yb: without_negative_zero(body.yb),
            constant,
            status,
            attempts: body.attempts.unwrap_or(0),
        })
    }
}

/// `low < high`, both finite and their difference too.
fn check_range(low_name: &str, low: f64, high_name: &str, high: f64) -> Result<(), Invalid> {
    for (name, value) in [(low_name, low), (high_name, high)] {
        if !value.is_finite() {
            return Err(Invalid(format!(
                "{name} must be a finite number, got {value}"
            )));
        }
    }
    if low >= high {
        return Err(Invalid(format!(
            "{low_name} must be less than {high_name}, got {low} >= {high}"
        )));
    }
    if !(high - low).is_finite() {
        return Err(Invalid(format!(
            "{high_name} - {low_name} overflows: {high} - {low} is not a finite number"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        pixel_limit: 1_000_000,
        iteration_limit: 1000,
    };

    fn body() -> NewFractal {
        NewFractal {
            uuid: None,
            width: 510,
            height: 278,
            iterations: 281,
            xa: -3.35,
            xb: 1.14,
            ya: -2.13,
            yb: 2.47,
            seed: None,
            c_re: None,
            c_im: None,
            status: None,
            attempts: None,
        }
    }

    fn refused(body: NewFractal) -> String {
        CreateFractal::parse(body, LIMITS).expect_err("refused").0
    }

    #[test]
    fn the_originals_task_is_accepted_with_a_new_uuid() {
        let a = CreateFractal::parse(body(), LIMITS).expect("valid");
        let b = CreateFractal::parse(body(), LIMITS).expect("valid");
        assert_ne!(a.uuid, b.uuid);
        assert_eq!(a.constant, ConstantSource::FromUuid);
    }

    #[test]
    fn too_few_iterations_to_draw_a_constant_need_one_given() {
        for seed in [None, Some(7)] {
            let few = NewFractal {
                iterations: 11,
                seed,
                ..body()
            };
            assert!(refused(few).contains("give c_re and c_im"), "{seed:?}");
            let enough = NewFractal {
                iterations: 12,
                seed,
                ..body()
            };
            assert!(CreateFractal::parse(enough, LIMITS).is_ok(), "{seed:?}");
        }
        let given = NewFractal {
            iterations: 1,
            c_re: Some(-0.8),
            c_im: Some(0.156),
            ..body()
        };
        assert!(CreateFractal::parse(given, LIMITS).is_ok());
    }

    #[test]
    fn sizes_and_caps() {
        assert!(refused(NewFractal { width: 1, ..body() }).contains("width must be at least 2"));
        assert!(
            refused(NewFractal {
                height: 0,
                ..body()
            })
            .contains("height")
        );
        assert!(
            refused(NewFractal {
                width: 1001,
                height: 1000,
                ..body()
            })
            .contains("exceeds the limit")
        );
        assert!(
            refused(NewFractal {
                iterations: 0,
                ..body()
            })
            .contains("iterations")
        );
        assert!(
            refused(NewFractal {
                iterations: 1001,
                ..body()
            })
            .contains("iterations")
        );
        let at_cap = NewFractal {
            width: 1000,
            height: 1000,
            iterations: 1000,
            ..body()
        };
        assert!(CreateFractal::parse(at_cap, LIMITS).is_ok());
    }

    #[test]
    fn bounds() {
        assert!(
            refused(NewFractal {
                xa: 2.0,
                xb: 2.0,
                ..body()
            })
            .contains("xa must be less than xb")
        );
        assert!(refused(NewFractal { ya: 3.0, ..body() }).contains("ya must be less than yb"));
        assert!(
            refused(NewFractal {
                xa: f64::NAN,
                ..body()
            })
            .contains("finite")
        );
        assert!(
            refused(NewFractal {
                yb: f64::INFINITY,
                ..body()
            })
            .contains("finite")
        );
        assert!(
            refused(NewFractal {
                xa: -f64::MAX,
                xb: f64::MAX,
                ..body()
            })
            .contains("overflows")
        );
    }

    #[test]
    fn constant_whole_or_not_at_all() {
        assert!(
            refused(NewFractal {
                c_re: Some(0.1),
                ..body()
            })
            .contains("both or neither")
        );
        assert!(
            refused(NewFractal {
                c_re: Some(0.1),
                c_im: Some(f64::NAN),
                ..body()
            })
            .contains("finite")
        );
        assert!(
            refused(NewFractal {
                c_re: Some(0.1),
                c_im: Some(0.2),
                seed: Some(1),
                ..body()
            })
            .contains("not both")
        );
        let given = CreateFractal::parse(
            NewFractal {
                c_re: Some(-0.8),
                c_im: Some(0.156),
                ..body()
            },
            LIMITS,
        );
        assert_eq!(
            given.expect("valid").constant,
            ConstantSource::Given {
                re: -0.8,
                im: 0.156
            }
        );
    }

    #[test]
    fn uuid_must_be_a_uuid() {
        assert!(
            refused(NewFractal {
                uuid: Some("nope".into()),
                ..body()
            })
            .starts_with("uuid:")
        );
    }
}
