//! The Julia constant `c` of `z = z*z + c`: given by a task ([`JuliaConstant`]) or
//! drawn reproducibly from a [`Seed`] by the original's acceptance rule
//! ([`ConstantSource`]).

use std::fmt;

use crate::error::{ParamError, RenderError};
use crate::iterations::Iterations;
use crate::seed::{Seed, SplitMix64};
use crate::viewport::Viewport;

/// Draws tried by the seeded search before giving up with
/// [`RenderError::NoQualifyingConstant`] (the original searched forever). Each draw
/// costs at most 100 steps, so a hopeless search takes a few tens of milliseconds.
pub const MAX_CONSTANT_ATTEMPTS: u32 = 100_000;

/// Index bounds of the original's acceptance rule `10 < i < 100`.
const ACCEPT_ABOVE: u32 = 10;
// The API refuses tasks that could draw no constant by this bound.
const _: () = assert!(ACCEPT_ABOVE + 2 == faafo_common::fractal::MIN_DRAWN_ITERATIONS);
const ACCEPT_BELOW: u32 = 100;

/// A finite complex number `re + im*i`, the `c` of `z = z*z + c`; reported with each
/// result so the image can be reproduced and verified.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JuliaConstant {
    re: f64,
    im: f64,
}

impl JuliaConstant {
    /// Parses a constant, refusing NaN or infinite parts (they would make every
    /// pixel escape at once or poison the arithmetic).
    pub fn new(re: f64, im: f64) -> Result<Self, ParamError> {
        if re.is_finite() && im.is_finite() {
            Ok(Self { re, im })
        } else {
            Err(ParamError::NonFiniteConstant { re, im })
        }
    }

    /// Real part.
    pub fn re(&self) -> f64 {
        self.re
    }

    /// Imaginary part.
    pub fn im(&self) -> f64 {
        self.im
    }
}

impl fmt::Display for JuliaConstant {
    /// Shortest round-trip form, e.g. `-0.8+0.156i`, so a printed `c` parses back
    /// to the same bits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.im.is_sign_negative() { '-' } else { '+' };
        write!(f, "{:?}{sign}{:?}i", self.re, self.im.abs())
    }
}

/// Where a task's `c` comes from.
///
/// # The seeded rule, precisely
///
/// With `rng = SplitMix64::new(seed)` (see [`crate::seed`] for the generator and the
/// 53-bit uniform doubles), for attempt `k = 0, 1, ...` up to
/// [`MAX_CONSTANT_ATTEMPTS`] draws:
///
/// ```text
/// cx = rng.next_f64() * (xb - xa) + xa        # first draw: real part
/// cy = rng.next_f64() * (yb - ya) + ya        # second draw: imaginary part
/// z = cx + cy*i
/// for i in 0..iterations:
///     if zr*zr + zi*zi > 4: break             # |z| > 2, squared (no sqrt)
///     z = (zr*zr - zi*zi + cx) + (zr*zi + zr*zi + cy)*i
/// # i is the break index, or iterations - 1 when the loop ran out
/// accept c = cx + cy*i when 10 < i < 100
/// ```
///
/// This is the original worker's loop (Python's `for`/`break` semantics, including
/// `i = iterations - 1` for a `c` that never escapes), with every float operation
/// evaluated left to right in IEEE-754 double precision without FMA. When
/// `iterations <= 11` no `i` can exceed 10, so the search fails at once with
/// [`RenderError::NoQualifyingConstant`] `{ attempts: 0, .. }`; it also fails after
/// [`MAX_CONSTANT_ATTEMPTS`] rejected draws. The remedy is to give `c` explicitly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConstantSource {
    /// The task gives `c` directly.
    Explicit(JuliaConstant),
    /// The task gives a seed (or the caller derived one from the task uuid with
    /// [`Seed::from_uuid`]); `c` is drawn by the rule above.
    Seeded(Seed),
}

impl ConstantSource {
    /// Resolves the source to the constant to render with.
    pub fn resolve(
        &self,
        viewport: &Viewport,
        iterations: Iterations,
    ) -> Result<JuliaConstant, RenderError> {
        match *self {
            Self::Explicit(constant) => Ok(constant),
            Self::Seeded(seed) => search_seeded(seed, viewport, iterations),
        }
    }
}

/// The original's escape index of `z0 = c` (see [`ConstantSource`]), stopping early
/// once the index can no longer be below [`ACCEPT_BELOW`].
fn qualifies(cx: f64, cy: f64, iterations: u32) -> bool {
    let (mut zr, mut zi) = (cx, cy);
    let mut index = iterations - 1;
    for i in 0..iterations {
        let zr2 = zr * zr;
        let zi2 = zi * zi;
        if zr2 + zi2 > 4.0 {
            index = i;
            break;
        }
        if i >= ACCEPT_BELOW {
            return false;
        }
        let cross = zr * zi;
        zi = cross + cross + cy;
        zr = zr2 - zi2 + cx;
    }
    ACCEPT_ABOVE < index && index < ACCEPT_BELOW
}

fn search_seeded(
    seed: Seed,
    viewport: &Viewport,
    iterations: Iterations,
) -> Result<JuliaConstant, RenderError> {
    let iterations = iterations.get();
    if iterations <= ACCEPT_ABOVE + 1 {
        return Err(RenderError::NoQualifyingConstant {
            attempts: 0,
            iterations,
        });
    }
    let (xa, xb, ya, yb) = (viewport.xa(), viewport.xb(), viewport.ya(), viewport.yb());
    let mut rng = SplitMix64::new(seed);
    for _ in 0..MAX_CONSTANT_ATTEMPTS {
        let cx = rng.next_f64() * (xb - xa) + xa;
        let cy = rng.next_f64() * (yb - ya) + ya;
        if qualifies(cx, cy, iterations) {
            // cx, cy lie within the finite viewport, so this cannot fail.
            return Ok(JuliaConstant::new(cx, cy)?);
        }
    }
    Err(RenderError::NoQualifyingConstant {
        attempts: MAX_CONSTANT_ATTEMPTS,
        iterations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iterations(n: i64) -> Iterations {
        Iterations::new(n).expect("valid test iterations")
    }

    #[test]
    fn non_finite_constants_are_refused() {
        assert!(JuliaConstant::new(f64::NAN, 0.0).is_err());
        assert!(JuliaConstant::new(0.0, f64::INFINITY).is_err());
    }

    #[test]
    fn display_round_trips() {
        let c = JuliaConstant::new(-0.8, -0.156).expect("finite");
        assert_eq!(c.to_string(), "-0.8-0.156i");
        let c = JuliaConstant::new(0.1 + 0.2, 1e-300).expect("finite");
        assert_eq!(c.to_string(), "0.30000000000000004+1e-300i");
    }

    #[test]
    fn small_iteration_counts_fail_fast_instead_of_looping_forever() {
        for n in 1..=11 {
            let found = ConstantSource::Seeded(Seed(1)).resolve(&Viewport::DEFAULT, iterations(n));
            assert_eq!(
                found,
                Err(RenderError::NoQualifyingConstant {
                    attempts: 0,
                    iterations: n as u32
                })
            );
        }
    }

    #[test]
    fn a_view_far_from_the_set_exhausts_the_bounded_search() {
        let far = Viewport::new(10.0, 11.0, 10.0, 11.0).expect("valid view");
        let found = ConstantSource::Seeded(Seed(1)).resolve(&far, iterations(256));
        assert_eq!(
            found,
            Err(RenderError::NoQualifyingConstant {
                attempts: MAX_CONSTANT_ATTEMPTS,
                iterations: 256
            })
        );
    }

    #[test]
    fn seeded_constants_meet_the_rule_and_repeat() {
        for seed in 0..50 {
            let source = ConstantSource::Seeded(Seed(seed));
            let c = source
                .resolve(&Viewport::DEFAULT, iterations(256))
                .expect("found");
            assert!(qualifies(c.re(), c.im(), 256));
            assert_eq!(source.resolve(&Viewport::DEFAULT, iterations(256)), Ok(c));
        }
    }

    #[test]
    fn a_never_escaping_c_qualifies_when_iterations_is_between_12_and_100() {
        // c = 0 never escapes: index iterations - 1.
        assert!(qualifies(0.0, 0.0, 12));
        assert!(qualifies(0.0, 0.0, 100));
        assert!(!qualifies(0.0, 0.0, 11));
        assert!(!qualifies(0.0, 0.0, 101));
    }
}
