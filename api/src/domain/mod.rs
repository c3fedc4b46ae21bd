//! What requests mean once parsed: each type here can only hold a valid
//! value ("parse, don't validate"), and the rules of a fractal's life (which
//! updates are allowed, when it may become `done`) live here, away from HTTP
//! and SQL.

pub mod checksum;
pub mod fractal_id;
pub mod list;
pub mod new_fractal;
pub mod png;
pub mod record;
pub mod timestamp;
pub mod update;

pub use checksum::Checksum;
pub use fractal_id::FractalId;
pub use list::{ListQuery, Order, OrderKey};
pub use new_fractal::{ConstantSource, CreateFractal, Limits};
pub use png::PngImage;
pub use record::FractalRecord;
pub use timestamp::Timestamp;
pub use update::{Outcome, UpdateFractal};

/// A request that is well formed but asks for something invalid (a 422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// `x`, with a negative zero made positive: SQLite stores a whole REAL
/// as an integer and gives `-0.0` back as `0.0`, where PostgreSQL and
/// MariaDB keep its sign. Stored this way, every backend answers the same.
pub(crate) fn without_negative_zero(x: f64) -> f64 {
    x + 0.0
}

/// A request that contradicts the fractal's current state (a 409).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Conflict(pub String);
