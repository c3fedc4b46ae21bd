//! API versions and oslo's compatibility rule.

use std::fmt;
use std::str::FromStr;

/// An RPC API version `major.minor[.revision]`, as oslo.messaging uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    /// Incompatible changes bump the major version.
    pub major: u32,
    /// Backward-compatible additions bump the minor version.
    pub minor: u32,
    /// Optional third component.
    pub revision: u32,
}

impl Version {
    /// `1.0`, the version of a message or endpoint that states none.
    pub const DEFAULT: Version = Version::new(1, 0);

    /// Builds `major.minor`.
    pub const fn new(major: u32, minor: u32) -> Self {
        Self {
            major,
            minor,
            revision: 0,
        }
    }

    /// oslo's rule: an endpoint at `self` can serve a request for
    /// `requested` when the majors are equal and the requested minor (then
    /// revision) is not newer.
    pub fn can_serve(&self, requested: &Version) -> bool {
        self.major == requested.major
            && (requested.minor, requested.revision) <= (self.minor, self.revision)
    }
}

impl Default for Version {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.revision == 0 {
            write!(f, "{}.{}", self.major, self.minor)
        } else {
            write!(f, "{}.{}.{}", self.major, self.minor, self.revision)
        }
    }
}

/// A version string that is not `major.minor[.revision]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version '{0}': expected major.minor[.revision], e.g. 1.2")]
pub struct InvalidVersion(pub String);

impl FromStr for Version {
    type Err = InvalidVersion;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidVersion(s.to_string());
        let mut parts = s.split('.');
        let mut next = |required: bool| -> Result<u32, InvalidVersion> {
            match parts.next() {
                Some(p) => p.parse().map_err(|_| bad()),
                None if required => Err(bad()),
                None => Ok(0),
            }
        };
        let major = next(true)?;
        let minor = next(false)?;
        let revision = next(false)?;
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self {
            major,
            minor,
            revision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().expect("valid version")
    }

    #[test]
    fn parses_and_prints() {
        assert_eq!(v("1.2"), Version::new(1, 2));
        assert_eq!(v("2"), Version::new(2, 0));
        assert_eq!(v("1.2.3").to_string(), "1.2.3");
        assert!("1.x".parse::<Version>().is_err());
        assert!("".parse::<Version>().is_err());
        assert!("1.2.3.4".parse::<Version>().is_err());
    }

    #[test]
    fn oslo_compatibility_rule() {
        assert!(v("1.2").can_serve(&v("1.0")));
        assert!(v("1.2").can_serve(&v("1.2")));
        assert!(!v("1.2").can_serve(&v("1.3")));
        assert!(!v("2.0").can_serve(&v("1.0")));
        assert!(!v("1.5").can_serve(&v("2.0")));
        assert!(v("1.2.5").can_serve(&v("1.2.4")));
        assert!(!v("1.2.3").can_serve(&v("1.2.4")));
    }
}
