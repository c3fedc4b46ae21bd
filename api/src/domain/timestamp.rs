//! Points in time, in UTC with microsecond precision: what all three
//! databases store exactly, so a value read back equals the value written.

use std::fmt;

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use super::Invalid;

/// A UTC time truncated to microseconds. Its text form is RFC 3339 with
/// exactly six decimals and `Z` (`2026-11-22T23:01:29.308123Z`): fixed
/// width, so text order is time order (which SQLite, storing text, needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// Now.
    pub fn now() -> Self {
        Self::from_datetime(OffsetDateTime::now_utc())
    }

    /// `datetime` in UTC, truncated to microseconds.
    pub fn from_datetime(datetime: OffsetDateTime) -> Self {
        let utc = datetime.to_offset(UtcOffset::UTC);
        let micros = utc.microsecond();
        // Truncating sub-microsecond digits cannot fail: the value stays in range.
        Self(utc.replace_microsecond(micros).unwrap_or(utc))
    }

    /// Parses an RFC 3339 time (any offset; kept in UTC). Refuses years
    /// outside 0001..=9999, which some databases cannot store.
    pub fn parse_rfc3339(text: &str) -> Result<Self, Invalid> {
        let parsed = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
            Invalid(format!(
                "{:?} is not an RFC 3339 time such as 2026-01-31T12:00:00Z ({e})",
                super::fractal_id::shorten(text)
            ))
        })?;
        // In UTC the year may leave what `time` holds (9999-12-31T23:30-01:00
        // is in year 10000): checked, where `to_offset` would panic.
        let out_of_range = || {
            Invalid(format!(
                "{:?} is out of range (years 1 to 9999)",
                super::fractal_id::shorten(text)
            ))
        };
        let utc = parsed
            .checked_to_offset(UtcOffset::UTC)
            .ok_or_else(out_of_range)?;
        let time = Self::from_datetime(utc);
        if !(1..=9999).contains(&time.0.year()) {
            return Err(out_of_range());
        }
        Ok(time)
    }

    /// `micros` microseconds later (this one when that leaves the range
    /// of times).
    pub fn plus_micros(self, micros: i64) -> Self {
        self.0
            .checked_add(time::Duration::microseconds(micros))
            .map_or(self, Self)
    }

    /// The UTC date and time.
    pub fn datetime(self) -> OffsetDateTime {
        self.0
    }

    /// Microseconds since the Unix epoch.
    pub fn unix_micros(self) -> i64 {
        i64::try_from(self.0.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
    }

    /// Seconds since the Unix epoch (for the web page's ages).
    pub fn unix_seconds(self) -> i64 {
        self.0.unix_timestamp()
    }
}

impl Timestamp {
    /// To the second, as a person reads it: `2026-11-25 07:35:36` (UTC).
    pub fn to_the_second(&self) -> String {
        let t = self.0;
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }
}

impl fmt::Display for Timestamp {
    /// The fixed-width RFC 3339 form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_to_the_second() {
        let t = Timestamp::parse_rfc3339("2026-11-25T07:35:36.594768Z").expect("a time");
        assert_eq!(t.to_the_second(), "2026-11-25 07:35:36");
    }

    #[test]
    fn text_is_fixed_width_utc_and_round_trips() {
        let t = Timestamp::parse_rfc3339("2026-11-22T23:01:29.3081239+01:00").expect("valid");
        assert_eq!(t.to_string(), "2026-11-22T22:01:29.308123Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_string()), Ok(t));
        let whole = Timestamp::parse_rfc3339("2026-11-22T22:01:29Z").expect("valid");
        assert_eq!(whole.to_string(), "2026-11-22T22:01:29.000000Z");
        assert!(whole < t && whole.to_string() < t.to_string());
    }

    #[test]
    fn junk_and_far_years_are_refused() {
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
        assert!(Timestamp::parse_rfc3339("2026-13-01T00:00:00Z").is_err());
        assert!(Timestamp::parse_rfc3339("0000-01-01T00:00:00Z").is_err());
        // Past year 9999 once in UTC, and before year 1: refused, no panic.
        assert!(Timestamp::parse_rfc3339("9999-12-31T23:30:00-01:00").is_err());
        assert!(Timestamp::parse_rfc3339("0001-01-01T00:30:00+01:00").is_err());
    }
}
