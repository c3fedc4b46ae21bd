//! The iteration budget per pixel: [`Iterations`], at least 1.

use std::num::NonZeroU32;

use crate::error::ParamError;

/// Maximum number of `z = z*z + c` steps per pixel; always `>= 1`, because the
/// original's `for i in range(iterations)` leaves `i` undefined for 0.
///
/// A pixel that never escapes is coloured with index `iterations - 1`, as in the
/// original. The upper cap is a [`crate::RenderLimits`] concern, checked at render time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Iterations(NonZeroU32);

impl Iterations {
    /// Parses an iteration count from any integer a task may carry; refuses
    /// anything below 1 or above `u32::MAX`.
    pub fn new(value: i64) -> Result<Self, ParamError> {
        u32::try_from(value)
            .ok()
            .and_then(NonZeroU32::new)
            .map(Self)
            .ok_or(ParamError::InvalidIterations { value })
    }

    /// The count, for the kernels' loop bound.
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_negative_and_huge_counts_are_refused() {
        for bad in [-5, 0, i64::from(u32::MAX) + 1] {
            assert_eq!(
                Iterations::new(bad),
                Err(ParamError::InvalidIterations { value: bad })
            );
        }
        assert_eq!(Iterations::new(1).map(Iterations::get), Ok(1));
    }
}
