//! The rectangle of the complex plane an image shows: [`Viewport`].

use crate::error::ParamError;

/// The region `[xa, xb] x [ya, yb]` of the complex plane, endpoints inclusive:
/// column 0 is `xa`, the last column `xb`, row 0 is `ya`, the last row `yb`.
///
/// Always finite with `xa < xb`, `ya < yb` and finite spans `xb - xa`, `yb - ya`,
/// so the pixel mapping never produces NaN (MySQL FLOAT rounding of the original is
/// gone too: bounds are `f64` end to end).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Viewport {
    xa: f64,
    xb: f64,
    ya: f64,
    yb: f64,
}

fn check_range(
    low_name: &'static str,
    low: f64,
    high_name: &'static str,
    high: f64,
) -> Result<(), ParamError> {
    for (name, value) in [(low_name, low), (high_name, high)] {
        if !value.is_finite() {
            return Err(ParamError::NonFiniteBound { name, value });
        }
    }
    if low >= high {
        return Err(ParamError::EmptyRange {
            low_name,
            high_name,
            low,
            high,
        });
    }
    if !(high - low).is_finite() {
        return Err(ParamError::RangeOverflow {
            low_name,
            high_name,
            low,
            high,
        });
    }
    Ok(())
}

impl Viewport {
    /// The original's default view, `[-2, 2] x [-1.5, 1.5]` (also the bench view).
    pub const DEFAULT: Self = Self {
        xa: -2.0,
        xb: 2.0,
        ya: -1.5,
        yb: 1.5,
    };

    /// Parses the four bounds of a task, refusing NaN, infinities, empty or reversed
    /// ranges and spans that overflow.
    pub fn new(xa: f64, xb: f64, ya: f64, yb: f64) -> Result<Self, ParamError> {
        check_range("xa", xa, "xb", xb)?;
        check_range("ya", ya, "yb", yb)?;
        Ok(Self { xa, xb, ya, yb })
    }

    /// Left edge (real part of column 0).
    pub fn xa(&self) -> f64 {
        self.xa
    }

    /// Right edge (real part of the last column).
    pub fn xb(&self) -> f64 {
        self.xb
    }

    /// Top edge as stored (imaginary part of row 0).
    pub fn ya(&self) -> f64 {
        self.ya
    }

    /// Bottom edge as stored (imaginary part of the last row).
    pub fn yb(&self) -> f64 {
        self.yb
    }

    /// Real part of column `x` of a `width`-pixel image, evaluated exactly as the
    /// original: `x * (xb - xa) / (width - 1) + xa`, left to right, no FMA.
    pub fn column_re(&self, x: u32, width: u32) -> f64 {
        f64::from(x) * (self.xb - self.xa) / f64::from(width - 1) + self.xa
    }

    /// Imaginary part of row `y` of a `height`-pixel image, evaluated exactly as the
    /// original: `y * (yb - ya) / (height - 1) + ya`, left to right, no FMA.
    pub fn row_im(&self, y: u32, height: u32) -> f64 {
        f64::from(y) * (self.yb - self.ya) / f64::from(height - 1) + self.ya
    }
}

impl Default for Viewport {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_bounds_are_refused() {
        let nan = f64::NAN;
        let inf = f64::INFINITY;
        assert!(matches!(
            Viewport::new(nan, 1.0, 0.0, 1.0),
            Err(ParamError::NonFiniteBound { name: "xa", .. })
        ));
        assert!(matches!(
            Viewport::new(0.0, 1.0, 0.0, -inf),
            Err(ParamError::NonFiniteBound { name: "yb", .. })
        ));
        assert!(matches!(
            Viewport::new(1.0, 1.0, 0.0, 1.0),
            Err(ParamError::EmptyRange { .. })
        ));
        assert!(matches!(
            Viewport::new(0.0, 1.0, 2.0, 1.0),
            Err(ParamError::EmptyRange { .. })
        ));
        assert!(matches!(
            Viewport::new(-f64::MAX, f64::MAX, 0.0, 1.0),
            Err(ParamError::RangeOverflow { .. })
        ));
    }

    #[test]
    fn endpoints_are_inclusive() {
        let view = Viewport::DEFAULT;
        assert_eq!(view.column_re(0, 5), -2.0);
        assert_eq!(view.column_re(4, 5), 2.0);
        assert_eq!(view.row_im(0, 3), -1.5);
        assert_eq!(view.row_im(2, 3), 1.5);
    }
}
