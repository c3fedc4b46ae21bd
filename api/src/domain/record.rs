//! A fractal as stored: every column but the image.

use faafo_common::fractal::{Fractal, FractalStatus};

use super::{Checksum, ConstantSource, CreateFractal, FractalId, Timestamp};

/// A stored fractal.
#[derive(Debug, Clone, PartialEq)]
pub struct FractalRecord {
    /// Its id.
    pub uuid: FractalId,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Iterations per pixel.
    pub iterations: u32,
    /// Left bound.
    pub xa: f64,
    /// Right bound.
    pub xb: f64,
    /// Lower bound of the imaginary part: the image's top row.
    pub ya: f64,
    /// Upper bound of the imaginary part: the image's bottom row.
    pub yb: f64,
    /// Seed of the Julia constant, if one was given.
    pub seed: Option<u64>,
    /// Julia constant (given, or reported by the worker), real part.
    pub c_re: Option<f64>,
    /// Julia constant, imaginary part.
    pub c_im: Option<f64>,
    /// Where it is in its life.
    pub status: FractalStatus,
    /// Why it failed.
    pub error: Option<String>,
    /// Times it was handed to a worker.
    pub attempts: u32,
    /// Seconds spent rendering.
    pub duration: Option<f64>,
    /// sha256 of the PNG (reported by the worker, or of the stored image).
    pub checksum: Option<Checksum>,
    /// Size of the PNG in bytes.
    pub size: Option<u64>,
    /// The worker's host name.
    pub generated_by: Option<String>,
    /// Whether the PNG is stored (its checksum and size are then the image's).
    pub has_image: bool,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// Bumped by every change; updates compare and swap on it, so two
    /// concurrent writers cannot both act on the same old state. Starts
    /// at the creation time in microseconds.
    pub revision: i64,
}

impl FractalRecord {
    /// The record of a fractal just created, at `now`.
    pub fn new(create: &CreateFractal, now: Timestamp) -> Self {
        let (seed, c_re, c_im) = match create.constant {
            ConstantSource::FromUuid => (None, None, None),
            ConstantSource::Seed(seed) => (Some(seed), None, None),
            ConstantSource::Given { re, im } => (None, Some(re), Some(im)),
        };
        Self {
            uuid: create.uuid,
            width: create.width,
            height: create.height,
            iterations: create.iterations,
            xa: create.xa,
            xb: create.xb,
            ya: create.ya,
            yb: create.yb,
            seed,
            c_re,
            c_im,
            status: create.status,
            error: None,
            attempts: create.attempts,
            duration: None,
            checksum: None,
            size: None,
            generated_by: None,
            has_image: false,
            created_at: now,
            updated_at: now,
            // Not 0: a uuid created again after a delete must not repeat
            // the revisions (ETags) of the fractal it had before, which a
            // client may still hold.
            revision: now.unix_micros(),
        }
    }

    /// `self`, a changed copy of `before`, as the write replacing
    /// `before` stores it: at `now`, one revision on.
    pub fn changed(mut self, before: &FractalRecord, now: Timestamp) -> Self {
        self.updated_at = now;
        self.revision = before.revision + 1;
        self
    }

    /// The JSON object the API returns.
    pub fn to_json(&self) -> Fractal {
        Fractal {
            uuid: self.uuid.to_string(),
            width: self.width,
            height: self.height,
            iterations: self.iterations,
            xa: self.xa,
            xb: self.xb,
            ya: self.ya,
            yb: self.yb,
            seed: self.seed,
            c_re: self.c_re,
            c_im: self.c_im,
            status: self.status,
            error: self.error.clone(),
            attempts: self.attempts,
            duration: self.duration,
            checksum: self.checksum.as_ref().map(|c| c.as_str().to_string()),
            size: self.size,
            generated_by: self.generated_by.clone(),
            created_at: self.created_at.to_string(),
            updated_at: self.updated_at.to_string(),
            revision: u64::try_from(self.revision).ok(),
        }
    }
}
