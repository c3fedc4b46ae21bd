//! A page of the collection: which fractals, in what order.

use faafo_common::fractal::FractalStatus;
use serde::Deserialize;

use super::{FractalId, Invalid, Timestamp};

/// The query string of `GET /v1/fractal`, as text: parsed by
/// [`ListQuery::parse`] so each bad value gets its own message.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// 1-based page number.
    pub page: Option<String>,
    /// Page size.
    pub results_per_page: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// Only fractals updated before this RFC 3339 time.
    pub updated_before: Option<String>,
    /// `created_at`, `updated_at` or `uuid`, `-` first for descending.
    pub order_by: Option<String>,
    /// Only fractals whose uuid sorts after this one.
    pub uuid_after: Option<String>,
}

/// A sort key of the collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderKey {
    /// Creation time (the default).
    CreatedAt,
    /// Time of the last change.
    UpdatedAt,
    /// The id.
    Uuid,
}

/// The order of a page: a key, ascending or descending (ties broken by uuid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    /// What to sort by.
    pub key: OrderKey,
    /// Largest first.
    pub descending: bool,
}

impl Order {
    /// Oldest first, as the original listed.
    pub const DEFAULT: Order = Order {
        key: OrderKey::CreatedAt,
        descending: false,
    };
}

/// A valid request for a page.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    /// 1-based page.
    pub page: u64,
    /// Page size, within the configured maximum.
    pub per_page: u32,
    /// Only this status.
    pub status: Option<FractalStatus>,
    /// Only fractals updated strictly before this time.
    pub updated_before: Option<Timestamp>,
    /// Only fractals whose uuid sorts after this one: with the uuid order,
    /// pages that follow each other by their last uuid instead of by
    /// number, and so skip and repeat nothing while the collection
    /// changes (statuses, inserts, deletions) between two pages.
    pub uuid_after: Option<FractalId>,
    /// The order.
    pub order: Order,
}

impl ListQuery {
    /// Parses the query string. Numbers must fit a signed 64-bit integer
    /// (as the OpenAPI document says). A page size above `max_per_page` is
    /// clamped to it (Flask-Restless did the same); zero is refused.
    pub fn parse(
        params: ListParams,
        default_per_page: u32,
        max_per_page: u32,
    ) -> Result<Self, Invalid> {
        let page = match params.page.as_deref() {
            None => 1,
            Some(text) => match text.parse::<i64>() {
                Ok(page) if page >= 1 => page.unsigned_abs(),
                _ => {
                    return Err(Invalid(format!(
                        "page must be a whole number from 1 to {}, got {:?}",
                        i64::MAX,
                        short(text)
                    )));
                }
            },
        };
        let per_page = match params.results_per_page.as_deref() {
            None => default_per_page,
            Some(text) => match text.parse::<i64>() {
                Ok(n) if n >= 1 => u32::try_from(n).unwrap_or(u32::MAX).min(max_per_page),
                _ => {
                    return Err(Invalid(format!(
                        "results_per_page must be a whole number from 1 to {}, got {:?}",
                        i64::MAX,
                        short(text)
                    )));
                }
            },
        };
        let status = params
            .status
            .as_deref()
            .map(|text| {
                text.parse::<FractalStatus>().map_err(|_| {
                    Invalid(format!(
                        "status must be pending, running, done or failed, got {:?}",
                        short(text)
                    ))
                })
            })
            .transpose()?;
        let updated_before = params
            .updated_before
            .as_deref()
            .map(|text| {
                Timestamp::parse_rfc3339(text).map_err(|e| Invalid(format!("updated_before: {e}")))
            })
            .transpose()?;
        let order = match params.order_by.as_deref() {
            None => Order::DEFAULT,
            Some(text) => {
                let (descending, name) = match text.strip_prefix('-') {
                    Some(name) => (true, name),
                    None => (false, text),
                };
                let key = match name {
                    "created_at" => OrderKey::CreatedAt,
                    "updated_at" => OrderKey::UpdatedAt,
                    "uuid" => OrderKey::Uuid,
                    _ => {
                        return Err(Invalid(format!(
                            "order_by must be created_at, updated_at or uuid, optionally with a leading -, got {:?}",
                            short(text)
                        )));
                    }
                };
                Order { key, descending }
            }
        };
        let uuid_after = params
            .uuid_after
            .as_deref()
            .map(|text| FractalId::parse(text).map_err(|e| Invalid(format!("uuid_after: {}", e.0))))
            .transpose()?;
        Ok(Self {
            page,
            per_page,
            status,
            updated_before,
            uuid_after,
            order,
        })
    }

    /// Rows to skip, or `None` when the page is so far out that no
    /// database could have that many rows.
    pub fn offset(&self) -> Option<i64> {
        (self.page - 1)
            .checked_mul(u64::from(self.per_page))
            .and_then(|offset| i64::try_from(offset).ok())
    }

    /// Number of pages for `num_results` fractals (0 when there are none,
    /// as Flask-Restless answered).
    pub fn total_pages(&self, num_results: u64) -> u64 {
        num_results.div_ceil(u64::from(self.per_page))
    }
}

fn short(text: &str) -> String {
    super::fractal_id::shorten(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(params: ListParams) -> Result<ListQuery, Invalid> {
        ListQuery::parse(params, 10, 100)
    }

    #[test]
    fn defaults() {
        let q = parse(ListParams::default()).expect("valid");
        assert_eq!(
            (q.page, q.per_page, q.status, q.order),
            (1, 10, None, Order::DEFAULT)
        );
        assert_eq!(q.offset(), Some(0));
        assert_eq!(q.total_pages(0), 0);
        assert_eq!(q.total_pages(21), 3);
    }

    #[test]
    fn values_are_parsed_and_page_size_clamped() {
        let q = parse(ListParams {
            page: Some("3".into()),
            results_per_page: Some("1000".into()),
            status: Some("done".into()),
            updated_before: Some("2026-01-01T00:00:00Z".into()),
            order_by: Some("-updated_at".into()),
            uuid_after: Some("01A20784-FE99-72FE-A554-9A9B678B0FE0".into()),
        })
        .expect("valid");
        assert_eq!(q.per_page, 100);
        assert_eq!(
            q.uuid_after.map(|id| id.to_string()).as_deref(),
            Some("01a20784-fe99-72fe-a554-9a9b678b0fe0")
        );
        assert_eq!(q.offset(), Some(200));
        assert_eq!(q.status, Some(FractalStatus::Done));
        assert_eq!(
            q.order,
            Order {
                key: OrderKey::UpdatedAt,
                descending: true
            }
        );
    }

    #[test]
    fn bad_values_are_refused() {
        let bad = [
            ListParams {
                page: Some("0".into()),
                ..ListParams::default()
            },
            ListParams {
                page: Some("-1".into()),
                ..ListParams::default()
            },
            ListParams {
                results_per_page: Some("0".into()),
                ..ListParams::default()
            },
            ListParams {
                status: Some("done' OR '1'='1".into()),
                ..ListParams::default()
            },
            ListParams {
                updated_before: Some("now".into()),
                ..ListParams::default()
            },
            ListParams {
                order_by: Some("width; DROP TABLE fractal".into()),
                ..ListParams::default()
            },
            ListParams {
                uuid_after: Some("01a20784' OR '1'='1".into()),
                ..ListParams::default()
            },
        ];
        for params in bad {
            assert!(parse(params.clone()).is_err(), "{params:?}");
        }
    }

    #[test]
    fn far_pages_have_no_offset() {
        let q = parse(ListParams {
            page: Some(i64::MAX.to_string()),
            ..ListParams::default()
        })
        .expect("valid");
        assert_eq!(q.offset(), None);
        assert!(
            parse(ListParams {
                page: Some(u64::MAX.to_string()),
                ..ListParams::default()
            })
            .is_err()
        );
    }
}
