use faafo_common::fractal::{FractalStatus, FractalUpdate, NewFractal};

use super::*;
use crate::domain::{CreateFractal, Limits};

const LIMITS: Limits = Limits {
    pixel_limit: 1 << 24,
    iteration_limit: 10_000,
};

fn record() -> FractalRecord {
    let body = NewFractal {
        uuid: None,
        width: 2,
        height: 2,
        iterations: 16,
        xa: -1.0,
        xb: 1.0,
        ya: -1.0,
        yb: 1.0,
        seed: None,
        c_re: None,
        c_im: None,
        status: None,
        attempts: None,
    };
    let create = CreateFractal::parse(body, LIMITS).expect("valid");
    FractalRecord::new(
        &create,
        Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").expect("time"),
    )
}

fn png(width: u32, height: u32, extra: u8) -> PngImage {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend_from_slice(&13u32.to_be_bytes());
    bytes.extend_from_slice(b"IHDR");
    bytes.extend_from_slice(&width.to_be_bytes());
    bytes.extend_from_slice(&height.to_be_bytes());
    bytes.extend_from_slice(&[8, 3, 0, 0, 0, extra, 0, 0, 0]);
    bytes.extend_from_slice(&0u32.to_be_bytes());
    bytes.extend_from_slice(b"IEND");
    bytes.extend_from_slice(&[0; 4]);
    PngImage::parse(bytes.into()).expect("png")
}

fn later() -> Timestamp {
    Timestamp::parse_rfc3339("2026-01-02T00:00:00Z").expect("time")
}

fn update(body: FractalUpdate, record: &FractalRecord) -> Result<Outcome, Conflict> {
    UpdateFractal::parse(body, record.uuid)
        .expect("valid")
        .apply(record, later())
}

fn changed(outcome: Result<Outcome, Conflict>) -> FractalRecord {
    match outcome {
        Ok(Outcome::Changed(next)) => *next,
        other => panic!("expected a change, got {other:?}"),
    }
}

fn with_image(record: &FractalRecord, image: &PngImage) -> FractalRecord {
    changed(attach_image(record, image, later()))
}

fn done() -> FractalUpdate {
    FractalUpdate {
        status: Some(FractalStatus::Done),
        ..FractalUpdate::default()
    }
}

#[test]
fn seed_era_result_fields_are_recorded_without_changing_status() {
    let r = record();
    let next = changed(update(
        FractalUpdate {
            duration: Some(0.87),
            checksum: Some("b".repeat(64)),
            ..FractalUpdate::default()
        },
        &r,
    ));
    assert_eq!(next.status, FractalStatus::Pending);
    assert_eq!(next.duration, Some(0.87));
    assert_eq!(next.updated_at, later());
}

#[test]
fn done_needs_the_image() {
    let r = record();
    let err = update(done(), &r).expect_err("no image");
    assert!(err.0.contains("has no image yet"), "{err}");
    let image = png(2, 2, 0);
    let stored = with_image(&r, &image);
    assert_eq!(stored.checksum.as_ref(), Some(image.checksum()));
    assert_eq!(stored.size, Some(image.size()));
    let next = changed(update(
        FractalUpdate {
            checksum: Some(image.checksum().to_string()),
            ..done()
        },
        &stored,
    ));
    assert_eq!(next.status, FractalStatus::Done);
}

#[test]
fn done_with_another_checksum_conflicts() {
    let image = png(2, 2, 0);
    let stored = with_image(&record(), &image);
    let other = png(2, 2, 1);
    let err = update(
        FractalUpdate {
            checksum: Some(other.checksum().to_string()),
            ..done()
        },
        &stored,
    )
    .expect_err("conflict");
    assert!(err.0.contains("does not match"), "{err}");
}

#[test]
fn a_repeated_done_changes_nothing_and_done_is_final() {
    let image = png(2, 2, 0);
    let finished = changed(update(done(), &with_image(&record(), &image)));
    let repeat = FractalUpdate {
        checksum: Some(image.checksum().to_string()),
        duration: Some(9.0),
        ..done()
    };
    assert_eq!(update(repeat, &finished), Ok(Outcome::Unchanged));
    let back = FractalUpdate {
        status: Some(FractalStatus::Pending),
        ..FractalUpdate::default()
    };
    assert!(
        update(back, &finished)
            .expect_err("final")
            .0
            .contains("final")
    );
    let error = FractalUpdate {
        error: Some("late".into()),
        ..FractalUpdate::default()
    };
    assert!(update(error, &finished).is_err());
    let other = FractalUpdate {
        checksum: Some(png(2, 2, 1).checksum().to_string()),
        ..done()
    };
    assert!(update(other, &finished).is_err());
    assert_eq!(
        update(FractalUpdate::default(), &finished),
        Ok(Outcome::Unchanged)
    );
}

#[test]
fn image_must_match_a_known_checksum_and_the_size() {
    let image = png(2, 2, 0);
    let r = changed(update(
        FractalUpdate {
            checksum: Some(png(2, 2, 1).checksum().to_string()),
            ..FractalUpdate::default()
        },
        &record(),
    ));
    assert!(attach_image(&r, &image, later()).is_err());
    assert!(check_image_fits(&r, &png(3, 2, 0)).is_err());
    assert!(check_image_fits(&r, &image).is_ok());
    let stored = with_image(&record(), &image);
    assert_eq!(
        attach_image(&stored, &image, later()),
        Ok(Outcome::Unchanged)
    );
    assert!(attach_image(&stored, &png(2, 2, 1), later()).is_err());
}

#[test]
fn failures_and_retries() {
    let r = record();
    let failed = changed(update(
        FractalUpdate {
            status: Some(FractalStatus::Failed),
            error: Some("worker died".into()),
            attempts: Some(3),
            ..FractalUpdate::default()
        },
        &r,
    ));
    assert_eq!(failed.error.as_deref(), Some("worker died"));
    let again = changed(update(
        FractalUpdate {
            status: Some(FractalStatus::Pending),
            ..FractalUpdate::default()
        },
        &failed,
    ));
    assert_eq!(again.status, FractalStatus::Pending);
}

#[test]
fn parse_refuses_bad_fields() {
    let id = record().uuid;
    let bad = [
        FractalUpdate {
            uuid: Some(FractalId::new_time_ordered().to_string()),
            ..FractalUpdate::default()
        },
        FractalUpdate {
            duration: Some(-1.0),
            ..FractalUpdate::default()
        },
        FractalUpdate {
            duration: Some(f64::NAN),
            ..FractalUpdate::default()
        },
        FractalUpdate {
            checksum: Some("x".into()),
            ..FractalUpdate::default()
        },
        FractalUpdate {
            size: Some(u64::MAX),
            ..FractalUpdate::default()
        },
        FractalUpdate {
            generated_by: Some(String::new()),
            ..FractalUpdate::default()
        },
        FractalUpdate {
            generated_by: Some("a\nb".into()),
            ..FractalUpdate::default()
        },
        FractalUpdate {
            c_re: Some(1.0),
            ..FractalUpdate::default()
        },
        FractalUpdate {
            error: Some("e".repeat(MAX_ERROR_CHARS + 1)),
            ..FractalUpdate::default()
        },
        FractalUpdate {
            error: Some("e".into()),
            ..done()
        },
    ];
    for body in bad {
        assert!(UpdateFractal::parse(body.clone(), id).is_err(), "{body:?}");
    }
}

#[test]
fn a_known_constant_cannot_be_contradicted() {
    let r = changed(update(
        FractalUpdate {
            c_re: Some(-0.8),
            c_im: Some(0.156),
            ..FractalUpdate::default()
        },
        &record(),
    ));
    let same = FractalUpdate {
        c_re: Some(-0.8),
        c_im: Some(0.156),
        ..FractalUpdate::default()
    };
    assert_eq!(update(same, &r), Ok(Outcome::Unchanged));
    let other = FractalUpdate {
        c_re: Some(0.3),
        c_im: Some(0.156),
        ..FractalUpdate::default()
    };
    assert!(update(other, &r).is_err());
}
