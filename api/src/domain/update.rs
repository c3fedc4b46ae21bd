//! Changes to a fractal — `PUT /v1/fractal/<uuid>` and the image upload —
//! and the rules of its life:
//!
//! - it becomes `done` only once its image is stored, and only with that
//!   image's checksum;
//! - `done` is final: a repeated "done" with the same checksum (a result
//!   delivered twice) is accepted and changes nothing, anything else that
//!   would change it is a conflict;
//! - once the image is stored, the checksum and size are the image's.

use faafo_common::fractal::{FractalStatus, FractalUpdate};

use super::{
    Checksum, Conflict, FractalId, FractalRecord, Invalid, PngImage, Timestamp,
    without_negative_zero,
};

pub use faafo_common::fractal::{MAX_ERROR_CHARS, MAX_HOST_CHARS};

/// What a change does to a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Nothing: the record already says this (an idempotent repeat).
    Unchanged,
    /// The record as it becomes.
    Changed(Box<FractalRecord>),
}

/// A valid partial update.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateFractal {
    status: Option<FractalStatus>,
    error: Option<String>,
    attempts: Option<u32>,
    duration: Option<f64>,
    checksum: Option<Checksum>,
    size: Option<u64>,
    generated_by: Option<String>,
    constant: Option<(f64, f64)>,
}

impl UpdateFractal {
    /// Parses the body of a `PUT` to the fractal `path_id`.
    pub fn parse(body: FractalUpdate, path_id: FractalId) -> Result<Self, Invalid> {
        if let Some(uuid) = &body.uuid {
            let id = FractalId::parse(uuid).map_err(|e| Invalid(format!("uuid: {e}")))?;
            if id != path_id {
                return Err(Invalid(format!(
                    "the body's uuid {id} is not the URL's ({path_id})"
                )));
            }
        }
        if let Some(error) = &body.error
            && error.chars().count() > MAX_ERROR_CHARS
        {
            return Err(Invalid(format!(
                "error is longer than {MAX_ERROR_CHARS} characters"
            )));
        }
        if body.error.as_deref().is_some_and(|e| e.contains('\0')) {
            return Err(Invalid(
                "error must not contain NUL characters (PostgreSQL cannot store them)".into(),
            ));
        }
        if body.status == Some(FractalStatus::Done) && body.error.is_some() {
            return Err(Invalid(
                "a done fractal has no error: give status done or an error, not both".into(),
            ));
        }
        if let Some(duration) = body.duration
            && !(duration.is_finite() && duration >= 0.0)
        {
            return Err(Invalid(format!(
                "duration must be a finite number of seconds >= 0, got {duration}"
            )));
        }
        let checksum = body.checksum.as_deref().map(Checksum::parse).transpose()?;
        if let Some(size) = body.size
            && i64::try_from(size).is_err()
        {
            return Err(Invalid(format!("size {size} is too large")));
        }
        if let Some(host) = &body.generated_by
            && (host.is_empty()
                || host.chars().count() > MAX_HOST_CHARS
                || host.chars().any(char::is_control))
        {
            return Err(Invalid(format!(
                "generated_by must be a host name of 1 to {MAX_HOST_CHARS} printable characters"
            )));
        }
        let constant = match (body.c_re, body.c_im) {
            (Some(re), Some(im)) if re.is_finite() && im.is_finite() => {
                Some((without_negative_zero(re), without_negative_zero(im)))
            }
            (Some(re), Some(im)) => {
                return Err(Invalid(format!(
                    "c_re and c_im must be finite, got {re} and {im}"
                )));
            }
            (None, None) => None,
            _ => {
                return Err(Invalid(
                    "c_re and c_im go together: give both or neither".into(),
                ));
            }
        };
        Ok(Self {
            status: body.status,
            error: body.error,
            attempts: body.attempts,
            duration: body.duration.map(without_negative_zero),
            checksum,
            size: body.size,
            generated_by: body.generated_by,
            constant,
        })
    }

    /// What this update does to `record` at `now`, or why it may not.
    pub fn apply(&self, record: &FractalRecord, now: Timestamp) -> Result<Outcome, Conflict> {
        let id = record.uuid;
        if let Some(checksum) = &self.checksum
            && record.checksum.as_ref().is_some_and(|c| c != checksum)
            && (record.has_image || record.status == FractalStatus::Done)
        {
            return Err(Conflict(format!(
                "checksum {checksum} does not match the stored image of fractal {id} (sha256 {})",
                record.checksum.as_ref().map_or("none", |c| c.as_str())
            )));
        }
        if record.status == FractalStatus::Done {
            return match self.status {
                Some(FractalStatus::Done) => Ok(Outcome::Unchanged),
                Some(other) => Err(Conflict(format!(
                    "fractal {id} is done: its result is final, it cannot become {other}"
                ))),
                None if self.says_nothing_new(record) => Ok(Outcome::Unchanged),
                None => Err(Conflict(format!(
                    "fractal {id} is done: its result is final"
                ))),
            };
        }
        let mut next = record.clone();
        if let Some(size) = self.size {
            if record.has_image && record.size != Some(size) {
                return Err(Conflict(format!(
                    "size {size} does not match the stored image of fractal {id} ({} bytes)",
                    record.size.unwrap_or_default()
                )));
            }
            next.size = Some(size);
        }
        if let Some((re, im)) = self.constant {
            if let (Some(old_re), Some(old_im)) = (record.c_re, record.c_im)
                && (old_re != re || old_im != im)
            {
                return Err(Conflict(format!(
                    "fractal {id} already has c = {old_re} + {old_im}i; {re} + {im}i contradicts it"
                )));
            }
            next.c_re = Some(re);
            next.c_im = Some(im);
        }
        if let Some(checksum) = &self.checksum {
            next.checksum = Some(checksum.clone());
        }
        if let Some(error) = &self.error {
            next.error = Some(error.clone());
        }
        if let Some(attempts) = self.attempts {
            next.attempts = attempts;
        }
        if let Some(duration) = self.duration {
            next.duration = Some(duration);
        }
        if let Some(host) = &self.generated_by {
            next.generated_by = Some(host.clone());
        }
        if let Some(status) = self.status {
            if status == FractalStatus::Done {
                if !record.has_image {
                    return Err(Conflict(format!(
                        "fractal {id} has no image yet: upload it (PUT /v1/fractal/{id}/image) before marking it done"
                    )));
                }
                next.error = None;
            }
            next.status = status;
        }
        if next == *record {
            return Ok(Outcome::Unchanged);
        }
        Ok(Outcome::Changed(Box::new(next.changed(record, now))))
    }

    /// Whether every field given already has that value in `record`.
    fn says_nothing_new(&self, record: &FractalRecord) -> bool {
        same(self.error.as_ref(), record.error.as_ref())
            && same(self.attempts, Some(record.attempts))
            && same(self.duration, record.duration)
            && same(self.checksum.as_ref(), record.checksum.as_ref())
            && same(self.size, record.size)
            && same(self.generated_by.as_ref(), record.generated_by.as_ref())
            && same(self.constant, record.c_re.zip(record.c_im))
    }
}

/// Checks that `png` is an image of `record` (its dimensions).
pub fn check_image_fits(record: &FractalRecord, png: &PngImage) -> Result<(), Invalid> {
    let (width, height) = png.dimensions();
    if (width, height) != (record.width, record.height) {
        return Err(Invalid(format!(
            "the PNG is {width} x {height} pixels but fractal {} is {} x {}",
            record.uuid, record.width, record.height
        )));
    }
    Ok(())
}

/// What storing `png` as the image of `record` does: the image's checksum
/// and size become the record's. A record that already names a checksum
/// (reported by the worker, or of an image stored before) only takes that
/// very image.
pub fn attach_image(
    record: &FractalRecord,
    png: &PngImage,
    now: Timestamp,
) -> Result<Outcome, Conflict> {
    let id = record.uuid;
    if let Some(checksum) = &record.checksum
        && checksum != png.checksum()
    {
        return Err(Conflict(format!(
            "the image's sha256 {} does not match the checksum of fractal {id} ({checksum})",
            png.checksum()
        )));
    }
    if let Some(size) = record.size
        && size != png.size()
    {
        return Err(Conflict(format!(
            "the image is {} bytes but fractal {id} says {size}",
            png.size()
        )));
    }
    if record.has_image {
        return Ok(Outcome::Unchanged);
    }
    let mut next = record.clone();
    next.has_image = true;
    next.checksum = Some(png.checksum().clone());
    next.size = Some(png.size());
    Ok(Outcome::Changed(Box::new(next.changed(record, now))))
}

#[cfg(test)]
mod tests;

/// Whether `given` is absent or equal to `stored`.
fn same<T: PartialEq>(given: Option<T>, stored: Option<T>) -> bool {
    given.is_none() || given == stored
}
