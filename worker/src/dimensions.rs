//! Image sides: [`Width`] and [`Height`], at least 2 pixels because the original's
//! pixel-to-plane mapping divides by `side - 1` (a side of 1 divided by zero),
//! and at most [`MAX_SIDE`].

use crate::error::ParamError;

/// Smallest accepted side, in pixels.
const MIN_SIDE: u32 = 2;

/// Longest accepted side, in pixels. The pixel limit alone would let a
/// 2 x 8,388,608 image through, whose row and column coordinates (8 bytes
/// each) take four times the memory of its pixels; no picture needs a side
/// longer than this, and every PNG decoder reads it.
pub const MAX_SIDE: u32 = 65_536;

fn parse_side(value: i64) -> Option<u32> {
    u32::try_from(value)
        .ok()
        .filter(|side| (MIN_SIDE..=MAX_SIDE).contains(side))
}

/// Image width in pixels; always `>= 2` so that `x * (xb - xa) / (width - 1)` is
/// defined and the viewport's right edge `xb` is reached by the last column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Width(u32);

impl Width {
    /// Parses a width from any integer a task may carry (JSON numbers may be
    /// negative); refuses anything below 2 or above [`MAX_SIDE`].
    pub fn new(value: i64) -> Result<Self, ParamError> {
        parse_side(value)
            .map(Self)
            .ok_or(ParamError::InvalidWidth { value })
    }

    /// The width in pixels, for arithmetic and the PNG header.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// Image height in pixels; always `>= 2` so that `y * (yb - ya) / (height - 1)` is
/// defined and the viewport's bottom edge `yb` is reached by the last row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Height(u32);

impl Height {
    /// Parses a height from any integer a task may carry; refuses anything below 2
    /// or above [`MAX_SIDE`].
    pub fn new(value: i64) -> Result<Self, ParamError> {
        parse_side(value)
            .map(Self)
            .ok_or(ParamError::InvalidHeight { value })
    }

    /// The height in pixels, for arithmetic and the PNG header.
    pub fn get(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_below_two_or_beyond_the_maximum_are_refused() {
        for bad in [
            i64::MIN,
            -1,
            0,
            1,
            i64::from(MAX_SIDE) + 1,
            i64::from(u32::MAX) + 1,
        ] {
            assert_eq!(
                Width::new(bad),
                Err(ParamError::InvalidWidth { value: bad })
            );
            assert_eq!(
                Height::new(bad),
                Err(ParamError::InvalidHeight { value: bad })
            );
        }
        assert_eq!(Width::new(2).map(Width::get), Ok(2));
        assert_eq!(
            Height::new(i64::from(MAX_SIDE)).map(Height::get),
            Ok(MAX_SIDE)
        );
    }
}
