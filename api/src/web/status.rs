//! `GET /status/{status}`: the fractals of one status, newest first, a
//! hundred a page, with their last errors. The first page shows finished
//! fractals only; the counts at the top of the index and status pages
//! link here, so that the failed ones (and the pending and running) can be
//! read from the web page, not only with `faafo list --status failed`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use faafo_common::fractal::FractalStatus;
use maud::html;

use super::{
    Live, error_page, html_page, layout, no_such_page, not_found, page_number, pager, past_the_last,
};
use crate::domain::{ListQuery, Order, OrderKey};
use crate::error::ApiError;
use crate::state::AppState;

/// Rows on a page of a status.
const STATUS_ROWS: u32 = 100;

/// The query string of a status's page after the first.
#[derive(Debug, serde::Deserialize)]
pub struct StatusPageQuery {
    /// The page, from 1 (`?page=2`): the next hundred, older.
    page: Option<String>,
}

/// Characters of an error shown in the table; the fractal's page has it
/// whole.
const ERROR_CHARS: usize = 200;

/// `GET /status/{status}`: the fractals of `status`, newest first.
#[utoipa::path(get, path = "/status/{status}", tag = "pages",
    params(
        ("status" = crate::openapi::schema::FractalStatus, Path, description = "pending, running, done or failed"),
        ("page" = Option<i64>, Query, minimum = 1, description = "Page number, from 1: a hundred fractals a page, newest first"),
    ),
    responses(
        (status = 200, description = "A page of the fractals of that status, with their last errors", content_type = "text/html", body = String),
        (status = 404, description = "Not a status, not a page number, or past the last page", content_type = "text/html", body = String),
        (status = 503, description = "The database does not answer", content_type = "text/html", body = String),
    ))]
pub async fn status_page(
    State(state): State<AppState>,
    status: Result<Path<String>, axum::extract::rejection::PathRejection>,
    query: Result<Query<StatusPageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(status) = status
        .ok()
        .and_then(|Path(text)| text.parse::<FractalStatus>().ok())
    else {
        return not_found("There is no such status: pending, running, done or failed.");
    };
    let Some(page) = query
        .ok()
        .and_then(|Query(q)| q.page.as_deref().map_or(Some(1), page_number))
    else {
        return no_such_page();
    };
    render(&state, status, page)
        .await
        .unwrap_or_else(error_page)
}

/// The address of page `page` of `status`'s fractals.
fn page_url(status: FractalStatus, page: u64) -> String {
    if page == 1 {
        format!("/status/{status}")
    } else {
        format!("/status/{status}?page={page}")
    }
}

async fn render(state: &AppState, status: FractalStatus, page: u64) -> Result<Response, ApiError> {
    let counts = state.db.count_by_status().await?;
    let query = ListQuery {
        page,
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
    let pages = query.total_pages(total).max(1);
    if page > pages {
        return Ok(past_the_last(page, pages, &page_url(status, pages)));
    }
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
    let body = html! {
        (body)
        (pager(page, pages, |page| page_url(status, page)))
    };
    // Pending and running fractals move on every few seconds; the first
    // page follows them (and the counts), as the index's first page does.
    // A later one is history, as the index's are (live, it could turn into
    // a 404 past the last page as the fractals move, and stop there).
    let live = if page == 1 { Live::Yes } else { Live::No };
    let title = if page == 1 {
        format!("faafo — {status}")
    } else {
        format!("faafo — {status}, page {page}")
    };
    Ok(html_page(
        StatusCode::OK,
        layout(&title, Some(&counts), live, body),
    ))
}
