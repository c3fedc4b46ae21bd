//! Reproducible randomness: a task's [`Seed`] and the [`SplitMix64`] generator that
//! turns it into uniform numbers for choosing the Julia constant.
//!
//! Everything here is specified bit for bit so that another implementation (the
//! Python original patched, a future worker) can reproduce the same `c`:
//!
//! 1. **Seed from a uuid** ([`Seed::from_uuid`]): take the uuid's 16 bytes in their
//!    canonical (RFC 9562, big-endian) order, read bytes 0..8 and 8..16 as two
//!    big-endian `u64`s, and XOR them.
//! 2. **Generator** ([`SplitMix64`]): Steele, Lea and Flood's SplitMix64 as published
//!    by Vigna (`splitmix64.c`): `state += 0x9E3779B97F4A7C15;
//!    z = state; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
//!    z = (z ^ (z >> 27)) * 0x94D049BB133111EB; return z ^ (z >> 31)`, all arithmetic
//!    wrapping modulo 2^64, initial `state = seed`.
//! 3. **Uniform double** ([`SplitMix64::next_f64`]): `(next_u64() >> 11) * 2^-53`,
//!    i.e. the top 53 bits as a multiple of 2^-53 in `[0, 1)`, exact in `f64`.
//!
//! How the uniform numbers become `c` is documented on [`crate::ConstantSource`].

use crate::error::ParamError;

/// The seed a task carries for choosing its Julia constant; the same seed and view
/// always give the same `c` (the original drew `c` from an unseeded RNG and never
/// stored it, so its images could not be reproduced).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Seed(pub u64);

impl Seed {
    /// Derives the seed of a task that carries none from its uuid: the XOR of the
    /// big-endian high and low 64-bit halves of the uuid's 16 bytes.
    pub fn from_uuid(uuid: &uuid::Uuid) -> Self {
        let bits = uuid.as_u128();
        // Truncation is the point: the two halves of the 128 bits.
        let high = (bits >> 64) as u64;
        let low = bits as u64;
        Self(high ^ low)
    }

    /// Parses a uuid in any of the usual text forms and derives the seed from it
    /// (see [`Seed::from_uuid`]); a malformed uuid is a typed error.
    pub fn from_uuid_str(text: &str) -> Result<Self, ParamError> {
        uuid::Uuid::try_parse(text)
            .map(|uuid| Self::from_uuid(&uuid))
            .map_err(|_| ParamError::InvalidUuid {
                value: text.to_owned(),
            })
    }
}

/// SplitMix64: a tiny generator with a published, fixed definition (see the module
/// docs), chosen over `rand`'s generators so that `c` never changes with a crate
/// upgrade.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// Starts the generator with `state = seed`.
    pub fn new(seed: Seed) -> Self {
        Self { state: seed.0 }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Next uniform double in `[0, 1)`: the top 53 bits of [`Self::next_u64`] times
    /// 2^-53 (exact; independent of any library's float conversion).
    pub fn next_f64(&mut self) -> f64 {
        const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
        (self.next_u64() >> 11) as f64 * SCALE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_published_reference_outputs() {
        // First outputs of Vigna's splitmix64.c for seed 1234567 (also used as the
        // test vector of Java's SplittableRandom and of rand_xoshiro).
        let mut rng = SplitMix64::new(Seed(1_234_567));
        let expected = [
            6_457_827_717_110_365_317,
            3_203_168_211_198_807_973,
            9_817_491_932_198_370_423,
            4_593_380_528_125_082_431,
            16_408_922_859_458_223_821,
        ];
        for want in expected {
            assert_eq!(rng.next_u64(), want);
        }
    }

    #[test]
    fn uniform_doubles_use_the_top_53_bits() {
        let mut a = SplitMix64::new(Seed(42));
        let mut b = SplitMix64::new(Seed(42));
        let bits = a.next_u64();
        let value = b.next_f64();
        assert_eq!(value, (bits >> 11) as f64 / 9_007_199_254_740_992.0);
        assert!((0.0..1.0).contains(&value));
    }

    #[test]
    fn uuid_seed_is_the_xor_of_its_halves() {
        let seed = Seed::from_uuid_str("212e8c23-e67f-4bd3-86e1-5a5e811ee2f4");
        assert_eq!(
            seed,
            Ok(Seed(0x212e_8c23_e67f_4bd3 ^ 0x86e1_5a5e_811e_e2f4))
        );
        assert!(matches!(
            Seed::from_uuid_str("nope"),
            Err(ParamError::InvalidUuid { .. })
        ));
    }
}
