//! Which instruction set the kernel uses: [`SimdLevel`].

/// The kernel implementation. Every level computes exactly the same bits (same
/// IEEE-754 operations in the same order, no FMA); they differ only in speed. Forcing
/// [`SimdLevel::Portable`] is how tests prove that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimdLevel {
    /// Plain Rust over small lane arrays (the compiler may use SSE2); runs anywhere.
    Portable,
    /// Hand-written AVX2 intrinsics, 4 doubles a vector; x86-64 with AVX2 only.
    Avx2,
}

impl SimdLevel {
    /// The fastest level this CPU supports (checked at run time).
    pub fn detect() -> Self {
        if Self::Avx2.is_available() {
            Self::Avx2
        } else {
            Self::Portable
        }
    }

    /// Whether this CPU can run the level.
    pub fn is_available(self) -> bool {
        match self {
            Self::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(not(target_arch = "x86_64"))]
            Self::Avx2 => false,
        }
    }
}
