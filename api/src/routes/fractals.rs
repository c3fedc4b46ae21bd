//! The collection `/v1/fractal` (and, for seed-era clients, `/api/fractal`).

use axum::Json;
use axum::extract::{MatchedPath, State};
use axum::http::StatusCode;
use axum::http::header::{ETAG, LOCATION};
use axum::response::{IntoResponse, Response};
use faafo_common::fractal::{FractalPage, FractalUpdate, NewFractal};

use crate::domain::list::ListParams;
use crate::domain::{
    CreateFractal, FractalId, FractalRecord, ListQuery, Outcome, Timestamp, UpdateFractal,
};
use crate::error::ApiError;
use crate::extract::{IfCreatedAt, IfMatch, JsonBody, PathId, QueryString, revision_etag};
use crate::state::AppState;

/// Compare-and-swap attempts before a write gives up with 503 ([`busy`]).
pub const MAX_WRITE_ATTEMPTS: usize = 8;

/// `GET /v1/fractal`: a page of fractals, filtered and ordered.
#[utoipa::path(
    get,
    path = "/v1/fractal",
    tag = "fractals",
    params(crate::openapi::schema::ListParams),
    responses(
        (status = 200, description = "A page of fractals", body = crate::openapi::schema::FractalPage),
        (status = 400, description = "Bad query string", body = crate::openapi::schema::ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    QueryString(params): QueryString<ListParams>,
) -> Result<Json<FractalPage>, ApiError> {
    let settings = &state.settings;
    let query = ListQuery::parse(
        params,
        settings.results_per_page,
        settings.max_results_per_page,
    )
    .map_err(|e| ApiError::BadRequest(e.0))?;
    let (total, records) = state.db.list(&query).await?;
    Ok(Json(FractalPage {
        num_results: total,
        objects: records.iter().map(FractalRecord::to_json).collect(),
        page: query.page,
        total_pages: query.total_pages(total),
    }))
}

/// `POST /v1/fractal`: creates a pending fractal (its uuid generated when
/// absent); 201 with the object and its `Location`.
#[utoipa::path(
    post,
    path = "/v1/fractal",
    tag = "fractals",
    request_body(content = crate::openapi::schema::NewFractal, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = crate::openapi::schema::Fractal,
            headers(
                ("Location" = String, description = "URL of the new fractal"),
                ("ETag" = String, description = "The fractal's revision, quoted, for a later If-Match"),
            )),
        (status = 400, description = "Malformed JSON", body = crate::openapi::schema::ErrorBody),
        (status = 409, description = "A fractal with this uuid exists", body = crate::openapi::schema::ErrorBody),
        (status = 408, description = "The body stopped arriving for 30 s", body = crate::openapi::schema::ErrorBody),
        (status = 413, description = "Body too large", body = crate::openapi::schema::ErrorBody),
        (status = 415, description = "Not JSON", body = crate::openapi::schema::ErrorBody),
        (status = 422, description = "Invalid fractal", body = crate::openapi::schema::ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    JsonBody(body): JsonBody<NewFractal>,
) -> Result<Response, ApiError> {
    let create = CreateFractal::parse(body, state.settings.limits)?;
    let record = FractalRecord::new(&create, Timestamp::now());
    state.db.insert(&record).await.map_err(|e| match e {
        crate::db::DbError::Duplicate => {
            ApiError::Conflict(format!("fractal {} exists already", record.uuid))
        }
        other => other.into(),
    })?;
    tracing::info!("created fractal {}", record.uuid);
    let collection = matched
        .as_ref()
        .map(MatchedPath::as_str)
        .filter(|p| p.starts_with("/api/"))
        .map_or("/v1/fractal", |_| "/api/fractal");
    let location = format!("{collection}/{}", record.uuid);
    Ok((
        StatusCode::CREATED,
        [(LOCATION, location), (ETAG, revision_etag(&record))],
        Json(record.to_json()),
    )
        .into_response())
}

/// `GET /v1/fractal/{uuid}`: one fractal (every column but the image).
#[utoipa::path(
    get,
    path = "/v1/fractal/{uuid}",
    tag = "fractals",
    params(("uuid" = uuid::Uuid, Path, description = "The fractal's id")),
    responses(
        (status = 200, description = "The fractal", body = crate::openapi::schema::Fractal,
            headers(("ETag" = String, description = "The fractal's revision, quoted, for a later If-Match"))),
        (status = 400, description = "Not a UUID", body = crate::openapi::schema::ErrorBody),
        (status = 404, description = "No such fractal", body = crate::openapi::schema::ErrorBody),
    )
)]
pub async fn show(State(state): State<AppState>, PathId(id): PathId) -> Result<Response, ApiError> {
    let record = existing(&state, id).await?;
    Ok(tagged(StatusCode::OK, &record))
}

/// `PUT /v1/fractal/{uuid}`: a partial update (status, error, attempts,
/// the result fields), by the rules of docs/api.md ("Updating").
#[utoipa::path(
    put,
    path = "/v1/fractal/{uuid}",
    tag = "fractals",
    params(
        ("uuid" = uuid::Uuid, Path, description = "The fractal's id"),
        ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^[ \t]*(\*|((W/)?"[!#-~]*")?([ \t]*,[ \t]*((W/)?"[!#-~]*")?)*)[ \t]*$"#, description = "Apply only if the fractal is at this revision: its ETag, `\"<revision>\"`, or `*`"),
        ("Faafo-If-Created-At" = Option<String>, Header, nullable = false, format = DateTime, description = "Apply only to the fractal created at this time (its `created_at`); a uuid deleted and created again is another fractal: 412"),
    ),
    request_body(content = crate::openapi::schema::FractalUpdate, content_type = "application/json"),
    responses(
        (status = 200, description = "The fractal as updated", body = crate::openapi::schema::Fractal,
            headers(("ETag" = String, description = "The fractal's revision, quoted, for a later If-Match"))),
        (status = 412, description = "The fractal is no longer at the revision If-Match names, or was not created at the time Faafo-If-Created-At names", body = crate::openapi::schema::ErrorBody),
        (status = 400, description = "Malformed JSON, not a UUID or a malformed If-Match or Faafo-If-Created-At", body = crate::openapi::schema::ErrorBody),
        (status = 404, description = "No such fractal", body = crate::openapi::schema::ErrorBody),
        (status = 409, description = "Contradicts the fractal's state", body = crate::openapi::schema::ErrorBody),
        (status = 408, description = "The body stopped arriving for 30 s", body = crate::openapi::schema::ErrorBody),
        (status = 413, description = "Body too large", body = crate::openapi::schema::ErrorBody),
        (status = 415, description = "Not JSON", body = crate::openapi::schema::ErrorBody),
        (status = 422, description = "Invalid update", body = crate::openapi::schema::ErrorBody),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    PathId(id): PathId,
    if_match: IfMatch,
    if_created: IfCreatedAt,
    JsonBody(body): JsonBody<FractalUpdate>,
) -> Result<Response, ApiError> {
    let update = UpdateFractal::parse(body, id)?;
    for _ in 0..MAX_WRITE_ATTEMPTS {
        let record = existing(&state, id).await?;
        if_created.check(&record)?;
        let planned = update.apply(&record, Timestamp::now());
        if_match.check(&record, matches!(planned, Ok(Outcome::Unchanged)))?;
        match planned? {
            Outcome::Unchanged => return Ok(tagged(StatusCode::OK, &record)),
            Outcome::Changed(next) => {
                // Compare and swap on the revision read above: what the
                // precondition admitted is what is replaced.
                if state.db.replace(&record, &next).await? {
                    if next.status != record.status {
                        tracing::info!("fractal {id} is {}", next.status);
                    }
                    return Ok(tagged(StatusCode::OK, &next));
                }
            }
        }
    }
    Err(busy(id))
}

/// Fractal `id` as stored, or a 404.
pub async fn existing(state: &AppState, id: FractalId) -> Result<FractalRecord, ApiError> {
    state
        .db
        .get(id)
        .await?
        .ok_or_else(|| ApiError::no_fractal(id))
}

/// A fractal's JSON with its revision as `ETag`, for a later `If-Match`.
pub fn tagged(status: StatusCode, record: &FractalRecord) -> Response {
    (
        status,
        [(ETAG, revision_etag(record))],
        Json(record.to_json()),
    )
        .into_response()
}

/// `DELETE /v1/fractal/{uuid}`: removes the fractal and its image.
#[utoipa::path(
    delete,
    path = "/v1/fractal/{uuid}",
    tag = "fractals",
    params(
        ("uuid" = uuid::Uuid, Path, description = "The fractal's id"),
        ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^[ \t]*(\*|((W/)?"[!#-~]*")?([ \t]*,[ \t]*((W/)?"[!#-~]*")?)*)[ \t]*$"#, description = "Delete only if the fractal is at this revision: its ETag, `\"<revision>\"`, or `*`"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Not a UUID, or a malformed If-Match", body = crate::openapi::schema::ErrorBody),
        (status = 404, description = "No such fractal", body = crate::openapi::schema::ErrorBody),
        (status = 412, description = "The fractal is no longer at the revision If-Match names", body = crate::openapi::schema::ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    PathId(id): PathId,
    if_match: IfMatch,
) -> Result<StatusCode, ApiError> {
    for _ in 0..MAX_WRITE_ATTEMPTS {
        let record = existing(&state, id).await?;
        if_match.check(&record, false)?;
        // Compare and delete on the revision read: what the precondition
        // admitted (and whose image file is removed) is what is deleted.
        if state.db.delete(&record).await? {
            state.images.remove(&record).await;
            tracing::info!("deleted fractal {id}");
            return Ok(StatusCode::NO_CONTENT);
        }
    }
    Err(busy(id))
}

/// 503 after [`MAX_WRITE_ATTEMPTS`] lost races: the fractal is changing
/// under other writers now, and the same request can succeed later. (A
/// 409 would say the request contradicts the fractal, which clients
/// rightly do not send again: a producer would drop a rendered result.)
pub fn busy(id: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!(
        "fractal {id} kept changing while this request tried to update it; try again"
    ))
}
