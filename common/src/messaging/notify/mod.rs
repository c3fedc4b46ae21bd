//! Notifications in oslo.messaging's messagingv2 format.

pub(crate) mod listener;
pub(crate) mod notifier;

use std::fmt;
use std::str::FromStr;

/// A notification's priority; it picks the queue (`notifications.info`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    /// Audit trail.
    Audit,
    /// Debugging detail.
    Debug,
    /// Normal events.
    Info,
    /// Something to look at.
    Warn,
    /// A failure.
    Error,
    /// A failure that needs action now.
    Critical,
    /// Metering samples.
    Sample,
}

impl Priority {
    /// All priorities, in oslo's order.
    pub const ALL: [Priority; 7] = [
        Priority::Audit,
        Priority::Debug,
        Priority::Info,
        Priority::Warn,
        Priority::Error,
        Priority::Critical,
        Priority::Sample,
    ];

    /// Lower-case name, as in routing keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Audit => "audit",
            Priority::Debug => "debug",
            Priority::Info => "info",
            Priority::Warn => "warn",
            Priority::Error => "error",
            Priority::Critical => "critical",
            Priority::Sample => "sample",
        }
    }

    /// Upper-case name, as in the message's `priority`.
    pub fn as_upper(self) -> &'static str {
        match self {
            Priority::Audit => "AUDIT",
            Priority::Debug => "DEBUG",
            Priority::Info => "INFO",
            Priority::Warn => "WARN",
            Priority::Error => "ERROR",
            Priority::Critical => "CRITICAL",
            Priority::Sample => "SAMPLE",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        Priority::ALL
            .into_iter()
            .find(|p| p.as_str() == lower || (lower == "warning" && *p == Priority::Warn))
            .ok_or_else(|| format!("unknown notification priority '{s}'"))
    }
}
