//! `GET /status/{status}`: the newest fractals of one status, with their
//! last errors. The first page shows finished fractals only; the counts at
//! the top of the index and status pages link here, so that the failed
//! ones (and the pending and running) can be read from the web page, not
//! only with `faafo list --status failed`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use faafo_common::fractal::FractalStatus;
use maud::html;

use super::{Live, error_page, html_page, layout, not_found};
use crate::domain::{ListQuery, Order, OrderKey};
use crate::error::ApiError;
use crate::state::AppState;

/// Rows on a status's page: the newest; `faafo list` has them all.
const STATUS_ROWS: u32 = 100;

/// Characters of an error shown in the table; the fractal's page has it
/// whole.
const ERROR_CHARS: usize = 200;

/// `GET /status/{status}`: the newest fractals of `status`.
#[utoipa::path(get, path = "/status/{status}", tag = "pages",
    params(("status" = crate::openapi::schema::FractalStatus, Path, description = "pending, running, done or failed")),
    responses(
        (status = 200, description = "The newest fractals of that status, with their last errors", content_type = "text/html", body = String),
        (status = 404, description = "Not a status", content_type = "text/html", body = String),
        (status = 503, description = "The database does not answer", content_type = "text/html", body = String),
    ))]
pub async fn status_page(
    State(state): State<AppState>,
    status: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    let Some(status) = status
        .ok()
        .and_then(|Path(text)| text.parse::<FractalStatus>().ok())
    else {
        return not_found("There is no such status: pending, running, done or failed.");
    };
    render(&state, status).await.unwrap_or_else(error_page)
}

async fn render(state: &AppState, status: FractalStatus) -> Result<Response, ApiError> {
    let counts = state.db.count_by_status().await?;
    let query = ListQuery {
        page: 1,
        per_page: STATUS_ROWS,
        status: Some(status),
        updated_before: None,
        uuid_after: None,
        order: Order {
            key: OrderKey::UpdatedAt,
            descending: true,
        },
    };
    let (total, records) = state.db.list(&query).await?;
    let body = html! {
        main.status-list {
            h2 { (total) " " (status) }
            @if records.is_empty() {
                p.empty {
                    @if status == FractalStatus::Done {
                        "No fractal is finished yet."
                    } @else {
                        "No " (status) " fractal."
                    }
                }
            } @else {
                @if total > records.len() as u64 {
                    p { "The newest " (records.len()) " of " (total) "; "
                        code { "faafo list --status " (status) } " lists them all." }
                }
                // Scrolled sideways on a narrow screen, not folded letter by
                // letter.
                div.wide {
                    table {
                        thead { tr {
                            th { "UUID" } th { "Size" } th { "Iterations" }
                            th { "Attempts" } th { "Updated (UTC)" }
                        } }
                        tbody {
                            @for r in &records {
                                tr.has-error[r.error.is_some()] {
                                    td.nowrap { a href={ "/show/" (r.uuid) } { code { (r.uuid) } } }
                                    td.nowrap { (r.width) " x " (r.height) }
                                    td { (r.iterations) }
                                    td { (r.attempts) }
                                    td.nowrap { (r.updated_at.to_the_second()) }
                                }
                                // Its last error on a row of its own, the
                                // table's width: a column of it was too
                                // narrow to read, or too wide for the page.
                                @if let Some(e) = &r.error {
                                    tr.error-row {
                                        td.error colspan="5" {
                                            "Last error: " (faafo_common::fractal::truncate(e, ERROR_CHARS))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    // Pending and running fractals move on every few seconds; the page
    // follows them (and the counts), as the first page does.
    Ok(html_page(
        StatusCode::OK,
        layout(&format!("faafo — {status}"), Some(&counts), Live::Yes, body),
    ))
}
