//! A sha256 checksum in lower-case hex, as `sha256sum` prints it.

use std::fmt;

use super::Invalid;

/// The sha256 of a PNG: 64 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Checksum(String);

impl Checksum {
    /// Parses 64 hex digits (either case; kept lower-case).
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        if faafo_common::fractal::is_sha256_hex(text) {
            Ok(Self(text.to_ascii_lowercase()))
        } else {
            Err(Invalid(format!(
                "checksum must be a sha256 in hex (64 hex digits), got {:?}",
                super::fractal_id::shorten(text)
            )))
        }
    }

    /// The sha256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(faafo_common::fractal::sha256_hex(bytes))
    }

    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            Checksum::of(b"abc").as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parse_normalises_case_and_refuses_junk() {
        let upper = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
        assert_eq!(Checksum::parse(upper), Ok(Checksum::of(b"abc")));
        assert!(Checksum::parse("abc").is_err());
        assert!(Checksum::parse(&"g".repeat(64)).is_err());
    }
}
