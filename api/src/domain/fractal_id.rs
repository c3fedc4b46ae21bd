//! A fractal's id: a UUID in its canonical 36-character form.

use std::fmt;

use uuid::Uuid;

use super::Invalid;

/// A fractal's id. Parsing accepts the hyphenated form in either case and
/// keeps it lower-case, so one fractal has exactly one spelling in the
/// database and in URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FractalId(Uuid);

impl FractalId {
    /// A new id for a fractal posted without one: a UUIDv7 (RFC 9562),
    /// which starts with the time in milliseconds. Ids made one after the
    /// other sort one after the other, so each insert lands at the end of
    /// the primary key's B-tree instead of on a random page: a group commit
    /// writes a few pages instead of one per row (see docs/benchmarks.md).
    pub fn new_time_ordered() -> Self {
        Self(Uuid::now_v7())
    }

    /// Parses the 36-character hyphenated form (`8-4-4-4-12` hex digits).
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let refuse = || {
            Invalid(format!(
                "{:?} is not a UUID (expected 8-4-4-4-12 hex digits)",
                shorten(text)
            ))
        };
        if text.len() != 36 {
            return Err(refuse());
        }
        Uuid::try_parse(text).map(Self).map_err(|_| refuse())
    }
}

impl fmt::Display for FractalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

pub(crate) use faafo_common::fractal::shorten;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_is_lower_case_and_hyphenated() {
        let id = FractalId::parse("212E8C23-E67F-4BD3-86E1-5A5E811EE2F4").expect("valid");
        assert_eq!(id.to_string(), "212e8c23-e67f-4bd3-86e1-5a5e811ee2f4");
    }

    #[test]
    fn other_spellings_and_junk_are_refused() {
        for bad in [
            "",
            "212e8c23e67f4bd386e15a5e811ee2f4",
            "{212e8c23-e67f-4bd3-86e1-5a5e811ee2f4}",
            "212e8c23-e67f-4bd3-86e1-5a5e811ee2fz",
            "' OR 1=1 --",
        ] {
            assert!(FractalId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_junk_is_shortened_in_messages() {
        let err = FractalId::parse(&"x".repeat(1000)).expect_err("refused");
        assert!(err.0.len() < 120, "{}", err.0);
    }
}
