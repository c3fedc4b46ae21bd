//! The web page, server-rendered with maud (which escapes every value):
//! finished fractals, newest first, 5 per page, each a thumbnail linking
//! to the full image beside the original's details table; the counts by
//! status; a page per fractal. No external asset; inline CSS that folds
//! to one column on a phone. The pages that still change (the first page,
//! a fractal's page until it is done or failed) load one small script of
//! our own ([`LIVE_JS`], served at [`LIVE_JS_PATH`]) that keeps them up to
//! date while they are looked at; every page works without it. Every page
//! carries a Content-Security-Policy ([`CSP`]) that lets in nothing else.

use std::sync::LazyLock;

use axum::extract::{Path, Query, RawQuery, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use faafo_common::fractal::FractalStatus;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::db::StatusCounts;
use crate::domain::{FractalId, FractalRecord, ListQuery, Order, OrderKey, Timestamp};
use crate::error::ApiError;
use crate::state::AppState;

mod status;

pub use status::{__path_status_page, status_page};

/// Fractals per page, as the original.
pub const PER_PAGE: u32 = 5;

const STYLE: &str = r#"
*{box-sizing:border-box}
body{margin:0;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;background:#f4f4f6}
header,main,nav,footer{max-width:60rem;margin:0 auto;padding:0 1rem}
header{padding-top:1rem}
h1{margin:.2rem 0;font-size:1.6rem}
h1 a{color:inherit;text-decoration:none}
.counts{display:flex;flex-wrap:wrap;gap:.5rem;margin:.5rem 0 1rem;padding:0;list-style:none}
.counts li{background:#fff;border:1px solid #ddd;border-radius:1rem;padding:.1rem .7rem;font-size:.9rem}
.counts a{color:#0645ad;text-decoration:none}
.counts a:hover,.counts a:focus{text-decoration:underline}
.wide{overflow-x:auto;margin-bottom:1rem}
.status-list table{width:100%;background:#fff;border:1px solid #ddd}
.status-list th,.status-list td{padding:.3rem .5rem;border-bottom:1px solid #eee;vertical-align:top}
.status-list .nowrap{white-space:nowrap;overflow-wrap:normal}
.status-list tr.has-error td{border-bottom:none;padding-bottom:0}
.status-list td.error{white-space:normal;font-size:.88rem}
.fractal{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start;background:#fff;border:1px solid #ddd;border-radius:.5rem;padding:1rem;margin-bottom:1rem}
.fractal img{display:block;max-width:min(300px,100%);max-height:300px;width:auto;height:auto;border-radius:.25rem;background:#000}
.thumb{flex:0 1 300px;min-width:0}
table{border-collapse:collapse;flex:1 1 20rem;min-width:0;font-size:.92rem}
th{text-align:left;font-weight:600;padding:.15rem .8rem .15rem 0;vertical-align:top;white-space:nowrap;color:#555}
td{padding:.15rem 0;overflow-wrap:anywhere}
code{font-size:.85rem}
nav{display:flex;justify-content:space-between;align-items:center;padding-bottom:2rem}
nav a,.pill{display:inline-block;padding:.35rem .9rem;border-radius:.3rem;background:#2b59c3;color:#fff;text-decoration:none}
.disabled{visibility:hidden}
.status{font-weight:600}
.empty{background:#fff;border:1px dashed #bbb;border-radius:.5rem;padding:2rem;text-align:center;color:#666}
footer{color:#595959;font-size:.8rem;padding-bottom:1rem}
.detail .thumb{flex-basis:100%}
.detail>div{flex:1 1 20rem;min-width:0}
.error{white-space:pre-wrap;overflow-wrap:anywhere}
.news{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%);white-space:nowrap}
.detail img{max-width:100%;max-height:none}
@media (max-width:36rem){.thumb{flex-basis:100%}.fractal img{max-width:100%}}
"#;

/// The script of the pages that still change: polls the page's own URL
/// every few seconds while the tab is visible and puts in what changed
/// (the counts, new fractals, the page links; a fractal's details and
/// image), until the fresh page no longer links it (the fractal is final,
/// or gone).
pub const LIVE_JS: &str = include_str!("web/live.js");

/// The web pages' routes, which a browser opens: refused for want of a
/// token, they answer with a page that says why, not with JSON.
pub const PAGE_ROUTES: [&str; 4] = ["/", "/index/{page}", "/show/{uuid}", "/status/{status}"];

/// Whether a request's `path` is one of [`PAGE_ROUTES`].
pub fn is_page(path: &str) -> bool {
    PAGE_ROUTES.iter().any(|route| match route.split_once('{') {
        Some((prefix, _)) => path.starts_with(prefix),
        None => path == *route,
    })
}

/// Where [`LIVE_JS`] is served. The page links it with `?v=` and
/// [`live_js_version`], so that a new version is a new URL.
pub const LIVE_JS_PATH: &str = "/static/live.js";

/// The first 16 hex digits of [`LIVE_JS`]'s sha256.
pub fn live_js_version() -> &'static str {
    static VERSION: LazyLock<String> =
        LazyLock::new(|| faafo_common::fractal::sha256_hex(LIVE_JS.as_bytes())[..16].to_string());
    &VERSION
}

/// The pages' Content-Security-Policy: scripts only from this server (the
/// one above: no inline script), the inline style only by its hash, images
/// from this server and the `data:` icon, requests (the script's polling)
/// only to this server; no plugin, no frame around the page, no form.
pub static CSP: LazyLock<String> = LazyLock::new(|| {
    use base64::Engine;
    let style = base64::engine::general_purpose::STANDARD
        .encode(faafo_common::fractal::sha256(STYLE.as_bytes()));
    format!(
        "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' data:; \
         style-src 'sha256-{style}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
});

/// A blue disc, the site's icon.
const FAVICON: &str = "data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'><circle cx='8' cy='8' r='7' fill='%232b59c3'/></svg>";

/// Whether a page keeps itself up to date ([`LIVE_JS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Live {
    Yes,
    No,
}

fn layout(title: &str, counts: Option<&StatusCounts>, live: Live, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                // Inline: a browser asks for /favicon.ico otherwise, a 404
                // on every visit.
                link rel="icon" href=(FAVICON);
                style { (PreEscaped(STYLE)) }
                @if live == Live::Yes {
                    script src={ (LIVE_JS_PATH) "?v=" (live_js_version()) } defer {}
                }
            }
            body {
                header {
                    h1 { a href="/" { "faafo" } }
                    @if let Some(counts) = counts {
                        // Not a live region: during `faafo up` the counts
                        // change every few seconds, and a screen reader
                        // would be interrupted by each change.
                        ul.counts aria-label="fractals by status" {
                            @for (status, n) in counts {
                                li { a href=(status_url(*status)) { (n) " " (status) } }
                            }
                        }
                    }
                }
                (body)
                footer { "faafo — First App Application For OpenStack, in Rust" }
            }
        }
    }
}

/// Where a status's count leads: the finished fractals' pictures, or the
/// list of the others with their errors.
fn status_url(status: FractalStatus) -> String {
    match status {
        FractalStatus::Done => "/".into(),
        other => format!("/status/{other}"),
    }
}

/// `GET /`: the first page.
#[utoipa::path(get, path = "/", tag = "pages",
    responses(
        (status = 200, description = "The newest finished fractals", content_type = "text/html", body = String),
        (status = 503, description = "The database does not answer", content_type = "text/html", body = String),
    ))]
pub async fn index(State(state): State<AppState>) -> Response {
    render_index(&state, 1, None)
        .await
        .unwrap_or_else(error_page)
}

/// The query string of a page after the first.
#[derive(Debug, serde::Deserialize)]
pub struct PageQuery {
    /// Only the fractals finished before this time: the pages the links
    /// of one first page lead to list the fractals that page listed, in
    /// the same places, however many finish meanwhile.
    until: Option<String>,
}

/// `GET /index/{page}`: page `page` (from 1) of the finished fractals.
#[utoipa::path(get, path = "/index/{page}", tag = "pages",
    params(
        ("page" = i64, Path, minimum = 1, description = "Page number, from 1"),
        ("until" = Option<String>, Query, description = "Only the fractals finished before this RFC 3339 time: the page's links carry it, so that the pages stay put while fractals finish"),
    ),
    responses(
        (status = 200, description = "A page of finished fractals", content_type = "text/html", body = String),
        (status = 404, description = "Not a page number, past the last page, or an `until` that is not a time", content_type = "text/html", body = String),
        (status = 503, description = "The database does not answer", content_type = "text/html", body = String),
    ))]
pub async fn index_page(
    State(state): State<AppState>,
    page: Result<Path<String>, axum::extract::rejection::PathRejection>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(page) = page.ok().and_then(|Path(p)| page_number(&p)) else {
        return no_such_page();
    };
    let until = match query.map(|Query(q)| q.until.as_deref().map(Timestamp::parse_rfc3339)) {
        Ok(None) => None,
        Ok(Some(Ok(until))) => Some(until),
        Ok(Some(Err(_))) | Err(_) => {
            return not_found(
                "There is no such page: its address is not one of this site's links.",
            );
        }
    };
    render_index(&state, page, until)
        .await
        .unwrap_or_else(error_page)
}

async fn render_index(
    state: &AppState,
    page: u64,
    until: Option<Timestamp>,
) -> Result<Response, ApiError> {
    let counts = state.db.count_by_status().await?;
    // Only the first page as it is now follows the news: the later ones,
    // and the first as one of them showed it, are history.
    let live = if page == 1 && until.is_none() {
        Live::Yes
    } else {
        Live::No
    };
    let query = ListQuery {
        page,
        per_page: PER_PAGE,
        status: Some(FractalStatus::Done),
        updated_before: until,
        uuid_after: None,
        order: Order {
            key: OrderKey::UpdatedAt,
            descending: true,
        },
    };
    let (total, records) = state.db.list(&query).await?;
    let pages = query.total_pages(total).max(1);
    // The first page's links hold on to what it lists: the fractals
    // finished up to its newest one. (Not the time of the request: the
    // links would change at every poll of the live page, taking the
    // keyboard's focus off them.)
    let until = until.or_else(|| {
        (page == 1)
            .then(|| records.first())
            .flatten()
            .map(|newest| newest.updated_at.plus_micros(1))
    });
    if page > pages {
        return Ok(past_the_last(page, pages, &page_url(pages, until)));
    }
    let body = html! {
        main {
            @if records.is_empty() {
                p.empty { "No fractal is finished yet." }
            }
            @for record in &records {
                article.fractal {
                    (thumbnail(record))
                    table { (details(record)) }
                }
            }
        }
        (pager(page, pages, |page| page_url(page, until)))
    };
    Ok(html_page(
        StatusCode::OK,
        layout(
            &if page == 1 {
                "faafo".to_string()
            } else {
                format!("faafo — page {page}")
            },
            Some(&counts),
            live,
            body,
        ),
    ))
}

/// Page `page`'s address, keeping to the fractals finished before
/// `until`: "newer" from page 2 leads back to the first page as the reader
/// saw it, not to today's, whose entries the next "older" would show again.
/// Without `until`, the first page is the live one, `/`.
fn page_url(page: u64, until: Option<Timestamp>) -> String {
    match (page, until) {
        (_, Some(until)) => format!("/index/{page}?until={until}"),
        (1, None) => "/".into(),
        (_, None) => format!("/index/{page}"),
    }
}

/// The image's URL with its checksum: the image is cached for good, and a
/// uuid used again after a delete must not show the old picture.
fn image_url(r: &FractalRecord) -> String {
    match &r.checksum {
        Some(checksum) => format!("/fractal/{}?v={checksum}", r.uuid),
        None => format!("/fractal/{}", r.uuid),
    }
}

/// The rows of the original's details table, plus c: a table of their own
/// on the index; on a fractal's page, in one table with more rows, so that
/// the columns line up.
fn details(r: &FractalRecord) -> Markup {
    html! {
        tr { th { "UUID" } td { a href={ "/show/" (r.uuid) } { code { (r.uuid) } } } }
        tr { th { "Duration" } td { @if let Some(d) = r.duration { (seconds(d)) " s" } @else { "—" } } }
        tr { th { "Dimensions" } td { (r.width) " x " (r.height) " px" } }
        tr { th { "Iterations" } td { (r.iterations) } }
        tr { th { "Parameters" } td {
            "xa = " (number(r.xa)) br; "xb = " (number(r.xb)) br;
            "ya = " (number(r.ya)) br; "yb = " (number(r.yb))
        } }
        tr { th { "c" } td { (constant(r)) } }
        tr { th { "File size" } td { @if let Some(s) = r.size { (file_size(s)) } @else { "—" } } }
        tr { th { "Checksum" } td { @if let Some(c) = &r.checksum { code { (c) } } @else { "—" } } }
        tr { th { "Generated by" } td { @if let Some(g) = &r.generated_by { (g) } @else { "—" } } }
    }
}

/// The image, linked to itself.
fn thumbnail(r: &FractalRecord) -> Markup {
    html! {
        a.thumb href=(image_url(r)) {
            img src=(image_url(r)) alt={ "Julia set " (r.uuid) } width=(r.width) height=(r.height);
        }
    }
}

/// A number as a person reads it: as Rust writes it (the shortest form
/// that reads back the same) within 1e-4 and 1e15, with an exponent
/// beyond (`1e300`, not three hundred digits), and -0 as 0.
fn number(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if (1e-4..1e15).contains(&x.abs()) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// A duration in seconds, to the millisecond.
fn seconds(d: f64) -> String {
    if d.abs() < 1e15 {
        format!("{d:.3}")
    } else {
        number(d)
    }
}

fn constant(r: &FractalRecord) -> String {
    match (r.c_re, r.c_im, r.seed) {
        // ASCII minus: what `faafo create --c-re/--c-im` and the JSON take.
        (Some(re), Some(im), _) if im < 0.0 => format!("{} - {}i", number(re), number(-im)),
        (Some(re), Some(im), _) => format!("{} + {}i", number(re), number(im)),
        (_, _, Some(seed)) => format!("drawn from seed {seed}"),
        _ => "drawn from the uuid".into(),
    }
}

fn file_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {} ({bytes} bytes)", UNITS[unit])
    }
}

/// `GET /show/{uuid}`: one fractal, in any status.
#[utoipa::path(get, path = "/show/{uuid}", tag = "pages", operation_id = "show_page",
    params(("uuid" = uuid::Uuid, Path, description = "The fractal's id")),
    responses(
        (status = 200, description = "The fractal's page", content_type = "text/html", body = String),
        (status = 404, description = "No such fractal", content_type = "text/html", body = String),
        (status = 503, description = "The database does not answer", content_type = "text/html", body = String),
    ))]
pub async fn show(
    State(state): State<AppState>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Response {
    render_show(&state, id).await.unwrap_or_else(error_page)
}

async fn render_show(
    state: &AppState,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Some(id) = id.ok().and_then(|Path(text)| FractalId::parse(&text).ok()) else {
        return Ok(not_found("That is not a fractal's id."));
    };
    let Some(record) = state.db.get(id).await? else {
        return Ok(not_found(&format!("There is no fractal {id}.")));
    };
    let done = record.status == FractalStatus::Done && record.has_image;
    let live = live_until_final(record.status);
    let body = html! {
        main {
            article.fractal.detail {
                @if done {
                    (thumbnail(&record))
                }
                div {
                    p { "Status: " span.status { (record.status) } }
                    @if let Some(e) = &record.error {
                        // Kept while the fractal is tried again (by the
                        // producer, or put back to pending by hand): said
                        // to be the last try's, not the fractal's end.
                        @if record.status == FractalStatus::Failed {
                            p.error { (e) }
                        } @else {
                            p.error { "Last error (tried again since): " (e) }
                        }
                    }
                    table {
                        (details(&record))
                        tr { th { "Attempts" } td { (record.attempts) } }
                        tr { th { "Created" } td { (record.created_at) } }
                        tr { th { "Updated" } td { (record.updated_at) } }
                    }
                }
            }
        }
        nav { a href="/" { "← all fractals" } }
    };
    Ok(html_page(
        StatusCode::OK,
        layout(&format!("faafo — {id}"), None, live, body),
    ))
}

/// A fractal's page follows it while it can still change; once it is done
/// or failed, nothing more will come, so the page has no script to ask.
fn live_until_final(status: FractalStatus) -> Live {
    match status {
        FractalStatus::Pending | FractalStatus::Running => Live::Yes,
        FractalStatus::Done | FractalStatus::Failed => Live::No,
    }
}

/// A page number as a page's address gives it (the index's path, a
/// status's `?page=`): from 1, and within an `i64` (the databases' own
/// numbers).
fn page_number(text: &str) -> Option<u64> {
    text.parse::<i64>()
        .ok()
        .filter(|&page| page >= 1)
        .map(i64::unsigned_abs)
}

/// The 404 for an address whose page number is not one.
fn no_such_page() -> Response {
    not_found("There is no such page: pages are numbered from 1.")
}

/// The links to the newer and older pages around page `page` of `pages`,
/// each at `url(page)`.
fn pager(page: u64, pages: u64, url: impl Fn(u64) -> String) -> Markup {
    html! {
        nav aria-label="pages" {
            @if page > 1 {
                a href=(url(page - 1)) rel="prev" { "← newer" }
            } @else {
                span.disabled { "← newer" }
            }
            span { "page " (page) " of " (pages) }
            @if page < pages {
                a href=(url(page + 1)) rel="next" { "older →" }
            } @else {
                span.disabled { "older →" }
            }
        }
    }
}

/// A 404 for a page number past the last page, with a link to the last
/// one, at `last` (pages move as fractals finish, so an old link can end
/// up there).
fn past_the_last(page: u64, pages: u64, last: &str) -> Response {
    let body = html! {
        main { p.empty { "There is no page " (page) ": the last page is " (pages) "." } }
        nav aria-label="pages" {
            a href=(last) { "← page " (pages) }
        }
    };
    html_page(
        StatusCode::NOT_FOUND,
        layout("faafo — not found", None, Live::No, body),
    )
}

/// A page's error as a page (a browser shows the JSON of the API's errors
/// as raw text): its status, and its message (a 503 says the database is
/// away and why; a 500 only that the log has the details). A 503 page
/// links the live script, which asks again (less and less often) and
/// loads the page once it can be shown: a screen left on it while the
/// database restarts comes back by itself.
fn error_page(error: ApiError) -> Response {
    error.log();
    let status = error.status();
    let message = error.body().message;
    let (title, lead, live) = match error {
        ApiError::Unavailable(_) => (
            "faafo — unavailable",
            "The database is unavailable; this page will load once it is back.",
            Live::Yes,
        ),
        _ => ("faafo — error", "This page cannot be shown.", Live::No),
    };
    let body = html! {
        main.unavailable[live == Live::Yes] { p.empty { (lead) br; code { (message) } } }
        nav { a href="/" { "← all fractals" } }
    };
    html_page(status, layout(title, None, live, body))
}

/// The page of a 401, for a browser opening a page of an API whose reads
/// need a token (`protect_reads`): it cannot send `X-Auth-Token`, and the
/// API's JSON would be shown as raw text.
pub(crate) fn unauthorized() -> Response {
    let body = html! {
        main {
            p.empty {
                "Reading this API needs a token (auth_strategy = token, protect_reads = true), "
                "which a browser cannot send. Put a proxy in front of it that adds the "
                code { "X-Auth-Token" } " header, or set " code { "protect_reads = false" }
                " to let anyone read."
            }
        }
    };
    html_page(
        StatusCode::UNAUTHORIZED,
        layout("faafo — token needed", None, Live::No, body),
    )
}

/// The page of a 404, for a browser (a page's URL mistyped, a deleted
/// fractal's page).
pub(crate) fn not_found(message: &str) -> Response {
    let body = html! {
        main { p.empty { (message) } }
        nav { a href="/" { "← all fractals" } }
    };
    html_page(
        StatusCode::NOT_FOUND,
        layout("faafo — not found", None, Live::No, body),
    )
}

/// An HTML answer, with the pages' Content-Security-Policy.
fn html_page(status: StatusCode, page: Markup) -> Response {
    let mut response = (status, Html(page.into_string())).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&CSP).expect("the policy is ASCII"),
    );
    // A page shows what is stored now: a browser going back to one asks
    // again (a cheap answer) instead of showing an old list.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /static/live.js`: the script of the pages that still change.
/// Asked for with the current `?v=` (what the page links), it is cached
/// for good; any other URL (an old version's, none) is revalidated every
/// time.
#[utoipa::path(get, path = "/static/live.js", tag = "pages", operation_id = "live_script",
    responses((status = 200, description = "The script that keeps the first page, and a fractal's page until it is final, up to date", content_type = "text/javascript", body = String)))]
pub async fn live_script(RawQuery(query): RawQuery) -> Response {
    let current = query
        .as_deref()
        .and_then(|q| q.strip_prefix("v="))
        .is_some_and(|v| v == live_js_version());
    let cache = if current {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, cache),
        ],
        LIVE_JS,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well_at_any_size() {
        assert_eq!(number(-1.5), "-1.5");
        assert_eq!(number(0.156), "0.156");
        assert_eq!(number(-0.0), "0");
        assert_eq!(number(1e300), "1e300");
        assert_eq!(number(-1.5e-7), "-1.5e-7");
        assert_eq!(seconds(0.8766), "0.877");
        assert_eq!(seconds(1e300), "1e300");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(file_size(999), "999 bytes");
        assert_eq!(file_size(12_345), "12.1 KiB (12345 bytes)");
    }

    #[test]
    fn values_are_escaped() {
        let page = layout("<script>", None, Live::No, html! { p { ("<b>&") } });
        let text = page.into_string();
        assert!(!text.contains("<script>"));
        assert!(text.contains("&lt;b&gt;&amp;"));
    }

    #[test]
    fn the_policy_admits_the_inline_style_and_no_inline_script() {
        use base64::Engine;
        // Computed here again from the text the page inlines.
        let hash = base64::engine::general_purpose::STANDARD
            .encode(faafo_common::fractal::sha256(STYLE.as_bytes()));
        assert!(
            CSP.contains(&format!("style-src 'sha256-{hash}'")),
            "{}",
            *CSP
        );
        assert!(CSP.contains("script-src 'self';"), "{}", *CSP);
        assert!(!CSP.contains("unsafe"), "{}", *CSP);
    }

    #[test]
    fn only_live_pages_load_the_script() {
        let with = layout("faafo", None, Live::Yes, html! {}).into_string();
        assert!(
            with.contains(&format!(
                r#"<script src="/static/live.js?v={}" defer></script>"#,
                live_js_version()
            )),
            "{with}"
        );
        let without = layout("faafo", None, Live::No, html! {}).into_string();
        assert!(!without.contains("<script"), "{without}");
    }

    #[test]
    fn a_fractals_page_is_live_until_the_fractal_is_final() {
        assert_eq!(live_until_final(FractalStatus::Pending), Live::Yes);
        assert_eq!(live_until_final(FractalStatus::Running), Live::Yes);
        assert_eq!(live_until_final(FractalStatus::Done), Live::No);
        assert_eq!(live_until_final(FractalStatus::Failed), Live::No);
    }

    #[tokio::test]
    async fn the_script_is_cached_for_good_only_at_its_current_url() {
        let current = live_script(RawQuery(Some(format!("v={}", live_js_version())))).await;
        assert_eq!(current.status(), StatusCode::OK);
        assert_eq!(
            current.headers()[CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            current.headers()[CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        for query in [
            None,
            Some("v=0123456789abcdef".to_string()),
            Some(String::new()),
        ] {
            let other = live_script(RawQuery(query.clone())).await;
            assert_eq!(other.headers()[CACHE_CONTROL], "no-cache", "{query:?}");
        }
    }
}
