//! The PNG of a fractal: uploaded by the producer with the result, served
//! to everyone once the fractal is done.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use faafo_common::fractal::{Fractal, FractalStatus, FractalUpdate};

use crate::domain::update::{UpdateFractal, attach_image, check_image_fits};
use crate::domain::{Outcome, PngImage, Timestamp};
use crate::error::ApiError;
use crate::extract::{IfCreatedAt, IfMatch, PathId, QueryString, body_bytes};
use crate::images::ImageStoreError;
use crate::routes::fractals::{MAX_WRITE_ATTEMPTS, busy, existing};
use crate::settings::AuthPolicy;
use crate::state::AppState;

/// Cache policy of an image: a done fractal's image never changes (the
/// page links it with its checksum, `?v=<sha256>`, so a uuid reused after a
/// delete is another URL).
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The same when reads need a token: no shared cache may keep it (the
/// token is a header of faafo's own, which caches know nothing about).
const PRIVATE_IMMUTABLE: &str = "private, max-age=31536000, immutable";

/// Images up to this size are hashed on the async thread that took them
/// (a default-size fractal's, about 1 ms at most); larger ones aside.
const HASHED_IN_PLACE: usize = 1 << 20;

/// How long and where an image may be cached under `auth`: for good at
/// the URL that names its checksum (`?v=`), else only with a revalidation
/// each time (a cheap 304 by its ETag). At the plain URL a fractal deleted
/// and made again under its uuid, whose uuid a client may choose, has
/// another image.
fn cache_policy(auth: &AuthPolicy, versioned: bool) -> &'static str {
    let private = matches!(
        auth,
        AuthPolicy::Token {
            protect_reads: true,
            ..
        }
    );
    match (versioned, private) {
        (true, false) => IMMUTABLE,
        (true, true) => PRIVATE_IMMUTABLE,
        (false, false) => "no-cache",
        (false, true) => "private, no-cache",
    }
}

/// `PUT /v1/fractal/{uuid}/image`: stores the fractal's PNG (raw bytes,
/// `Content-Type: image/png`). Its sha256 must match the checksum the
/// fractal already names, if any; storing the same image again is a no-op.
///
/// The query string may carry an update (the fields of
/// `PUT /v1/fractal/{uuid}`, such as `status=done&duration=0.87`), applied
/// after the image is attached and written with it: a producer stores a
/// result in one request instead of two.
#[utoipa::path(
    put,
    path = "/v1/fractal/{uuid}/image",
    tag = "images",
    params(
        ("uuid" = uuid::Uuid, Path, description = "The fractal's id"),
        ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^[ \t]*(\*|((W/)?"[!#-~]*")?([ \t]*,[ \t]*((W/)?"[!#-~]*")?)*)[ \t]*$"#, description = "Store only if the fractal is at this revision: its ETag, `\"<revision>\"`, or `*`"),
        ("Faafo-If-Created-At" = Option<String>, Header, nullable = false, format = DateTime, description = "Apply only to the fractal created at this time (its `created_at`); a uuid deleted and created again is another fractal: 412"),
        crate::openapi::schema::FractalUpdate,
    ),
    request_body(content = Vec<u8>, content_type = "image/png", description = "The PNG file"),
    responses(
        (status = 200, description = "Stored; the fractal with the image's checksum and size", body = crate::openapi::schema::Fractal),
        (status = 400, description = "Not a UUID, unreadable body, bad query string or a malformed If-Match or Faafo-If-Created-At", body = crate::openapi::schema::ErrorBody),
        (status = 404, description = "No such fractal", body = crate::openapi::schema::ErrorBody),
        (status = 409, description = "Another image (checksum mismatch), or an update contradicting the fractal's state", body = crate::openapi::schema::ErrorBody),
        (status = 412, description = "The fractal is no longer at the revision If-Match names, or was not created at the time Faafo-If-Created-At names", body = crate::openapi::schema::ErrorBody),
        (status = 408, description = "The body stopped arriving for 30 s", body = crate::openapi::schema::ErrorBody),
        (status = 413, description = "Image larger than max_body_size", body = crate::openapi::schema::ErrorBody),
        (status = 414, description = "A URL longer than the HTTP server reads (64 KiB): a query string (error=...) that long is refused before the API sees it, with an empty body"),
        (status = 415, description = "Not image/png", body = crate::openapi::schema::ErrorBody),
        (status = 422, description = "Not a PNG, not the fractal's size, or an invalid update", body = crate::openapi::schema::ErrorBody),
    )
)]
pub async fn upload(
    State(state): State<AppState>,
    PathId(id): PathId,
    if_match: IfMatch,
    if_created: IfCreatedAt,
    QueryString(update): QueryString<FractalUpdate>,
    request: Request,
) -> Result<Json<Fractal>, ApiError> {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let essence = content_type.map(|c| {
        c.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    if essence.as_deref() != Some("image/png") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "expected Content-Type: image/png, got {}",
            content_type.map_or("none".to_string(), crate::domain::fractal_id::shorten)
        )));
    }
    let update = UpdateFractal::parse(update, id)?;
    let bytes = body_bytes(request, &()).await?;
    // Hashing a large image takes a while: not on the async threads, which
    // serve every other request meanwhile.
    let png = if bytes.len() > HASHED_IN_PLACE {
        tokio::task::spawn_blocking(move || PngImage::parse(bytes))
            .await
            .map_err(|e| ApiError::Internal(format!("hashing the image failed: {e}")))??
    } else {
        PngImage::parse(bytes)?
    };
    // Filesystem store: whether an earlier try of this request wrote the
    // image's file (then lost the race for the record).
    let mut wrote_file = false;
    for _ in 0..MAX_WRITE_ATTEMPTS {
        let record = existing(&state, id).await?;
        // Before the size: a render of a deleted fractal whose uuid was
        // created again at another size is that (412), not a bad image.
        if_created.check(&record)?;
        check_image_fits(&record, &png)?;
        let now = Timestamp::now();
        // The image attached, then the update applied on top; a conflict
        // in either refuses the whole request.
        let planned = attach_image(&record, &png, now).and_then(|attached| {
            let with_image = match &attached {
                Outcome::Unchanged => record.clone(),
                Outcome::Changed(next) => (**next).clone(),
            };
            let next = match update.apply(&with_image, now)? {
                Outcome::Unchanged => with_image,
                // One write: one revision on from the record read.
                Outcome::Changed(next) => next.changed(&record, now),
            };
            Ok((attached, next))
        });
        let changes_nothing = matches!(&planned, Ok((Outcome::Unchanged, next)) if *next == record);
        let planned = if_match
            .check(&record, changes_nothing)
            .and_then(|()| planned.map_err(ApiError::from));
        let (attached, next) = match planned {
            Ok(planned) => planned,
            Err(refusal) => {
                // Filesystem store: drop a file an earlier try of ours left,
                // unless a concurrent upload of the same image has just
                // made it the fractal's (re-read: `record` may be old). A
                // file this request did not write is another upload's (the
                // same image has the same name), which may be about to
                // record it: left alone, as it is when the re-read fails.
                if wrote_file && record.checksum.as_ref() != Some(png.checksum()) {
                    let current = state.db.get(id).await;
                    if let Ok(current) = current
                        && current.and_then(|r| r.checksum).as_ref() != Some(png.checksum())
                    {
                        state.images.discard(id, png.checksum()).await;
                    }
                }
                return Err(refusal);
            }
        };
        let image_changed = matches!(attached, Outcome::Changed(_));
        if matches!(attached, Outcome::Unchanged) {
            // The image again: its file, if it went missing, is written
            // back (filesystem store), so that delivering it again repairs
            // a fractal whose picture was lost.
            state.images.restore(&state.db, &record, &png).await?;
        }
        let written = match attached {
            Outcome::Unchanged if next == record => return Ok(Json(record.to_json())),
            Outcome::Unchanged => state.db.replace(&record, &next).await?,
            Outcome::Changed(_) => {
                wrote_file = true;
                state.images.store(&state.db, &record, &next, &png).await?
            }
        };
        if written {
            // One line for what this request did.
            let status = (next.status != record.status).then_some(next.status);
            match (image_changed, status) {
                (true, Some(status)) => tracing::info!(
                    "stored the image of fractal {id} ({} bytes, sha256 {}); it is {status}",
                    png.size(),
                    png.checksum()
                ),
                (true, None) => tracing::info!(
                    "stored the image of fractal {id} ({} bytes, sha256 {})",
                    png.size(),
                    png.checksum()
                ),
                (false, Some(status)) => tracing::info!("fractal {id} is {status}"),
                (false, None) => {}
            }
            return Ok(Json(next.to_json()));
        }
    }
    Err(busy(id))
}

/// `GET /fractal/{uuid}`: the PNG of a done fractal, with its checksum as
/// ETag (`If-None-Match` gives 304) and long-lived cache headers.
#[utoipa::path(
    get,
    path = "/fractal/{uuid}",
    tag = "images",
    params(
        ("uuid" = uuid::Uuid, Path, description = "The fractal's id"),
        ("If-None-Match" = Option<String>, Header, description = "ETag(s) the client has"),
    ),
    responses(
        (status = 200, description = "The PNG", content_type = "image/png", body = Vec<u8>,
            headers(("ETag" = String, description = "\"<sha256>\""), ("Cache-Control" = String))),
        (status = 304, description = "The client's copy is current"),
        (status = 400, description = "Not a UUID", body = crate::openapi::schema::ErrorBody),
        (status = 404, description = "No such fractal", body = crate::openapi::schema::ErrorBody),
        (status = 409, description = "Not done yet, or failed: no image", body = crate::openapi::schema::ErrorBody),
    )
)]
pub async fn image(
    State(state): State<AppState>,
    PathId(id): PathId,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let record = existing(&state, id).await?;
    let checksum = match (&record.status, &record.checksum) {
        (FractalStatus::Done, Some(checksum)) if record.has_image => checksum.clone(),
        (FractalStatus::Failed, _) => {
            let why = record.error.as_deref().unwrap_or("no reason given");
            return Err(ApiError::Conflict(format!(
                "fractal {id} failed: it has no image ({why})"
            )));
        }
        (status, _) => {
            return Err(ApiError::Conflict(format!(
                "fractal {id} is {status}: it has no image yet"
            )));
        }
    };
    let etag = format!("\"{checksum}\"");
    let etag_value = HeaderValue::from_str(&etag).map_err(|e| ApiError::Internal(e.to_string()))?;
    // The page asks for `?v=<checksum>`: an old page's URL (the uuid
    // since deleted and made again) gets today's image, but not for good;
    // nor does the plain URL.
    let asked = uri
        .query()
        .into_iter()
        .flat_map(|query| query.split('&'))
        .find_map(|pair| pair.strip_prefix("v="));
    let policy = cache_policy(
        &state.settings.auth,
        asked.is_some_and(|version| version == checksum.as_str()),
    );
    let cache = [
        (ETAG, etag_value),
        (CACHE_CONTROL, HeaderValue::from_static(policy)),
    ];
    if headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| etag_matches(v, checksum.as_str()))
    {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    let png = match state.images.load(&state.db, &record).await {
        Ok(png) => png,
        // Deleted between the two reads: a 404, as a moment later; or
        // deleted and created again with another image (or none): that
        // one is not this ETag's, and a new read finds it.
        Err(ImageStoreError::Missing(_)) => match state.db.get(id).await? {
            None => return Err(ApiError::no_fractal(id)),
            Some(now) if now.checksum.as_ref() != Some(&checksum) => {
                return Err(ApiError::Unavailable(format!(
                    "fractal {id} was deleted and created again while its image was read; try again"
                )));
            }
            Some(_) => return Err(ImageStoreError::Missing(id).into()),
        },
        Err(e) => return Err(e.into()),
    };
    Ok((
        cache,
        [(CONTENT_TYPE, HeaderValue::from_static("image/png"))],
        png,
    )
        .into_response())
}

/// Whether an `If-None-Match` value (`*`, or a list of strong or weak
/// tags) names the checksum.
fn etag_matches(header: &str, checksum: &str) -> bool {
    header.split(',').map(str::trim).any(|tag| {
        tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).trim_matches('"') == checksum
    })
}

#[cfg(test)]
mod tests {
    use super::etag_matches;

    #[test]
    fn if_none_match_forms() {
        assert!(etag_matches("\"abc\"", "abc"));
        assert!(etag_matches("W/\"abc\"", "abc"));
        assert!(etag_matches("\"x\", \"abc\"", "abc"));
        assert!(etag_matches("*", "abc"));
        assert!(!etag_matches("\"abd\"", "abc"));
        assert!(!etag_matches("", "abc"));
    }
}
