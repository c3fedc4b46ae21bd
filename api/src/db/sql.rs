//! The SQL text, the same for every database (`?` placeholders, turned
//! into `$1, $2, ...` for PostgreSQL). Every value is a bound parameter;
//! the only text built at run time is from fixed fragments chosen by
//! [`ListQuery`]'s enums.

use faafo_common::fractal::FractalStatus;

use super::DbError;
use crate::domain::{ListQuery, OrderKey};

/// The columns of a [`crate::domain::FractalRecord`], in this order.
pub const COLUMNS: &str = "uuid, width, height, iterations, xa, xb, ya, yb, seed, c_re, c_im, status, error, \
                           attempts, duration, checksum, size, generated_by, has_image, created_at, updated_at, revision";

/// Inserts a record (all [`COLUMNS`]).
pub const INSERT: &str = "INSERT INTO fractal (uuid, width, height, iterations, xa, xb, ya, yb, seed, c_re, c_im, \
                          status, error, attempts, duration, checksum, size, generated_by, has_image, created_at, \
                          updated_at, revision) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// One record by uuid.
pub const SELECT_ONE: &str = "SELECT uuid, width, height, iterations, xa, xb, ya, yb, seed, c_re, c_im, status, \
                              error, attempts, duration, checksum, size, generated_by, has_image, created_at, \
                              updated_at, revision FROM fractal WHERE uuid = ?";

/// Fractals per status.
pub const COUNT_BY_STATUS: &str = "SELECT status, COUNT(*) AS n FROM fractal GROUP BY status";

/// Compare and swap of the mutable columns: `c_re, c_im, status, error,
/// attempts, duration, checksum, size, generated_by, has_image,
/// updated_at, new revision, uuid, old revision`.
pub const UPDATE: &str = "UPDATE fractal SET c_re = ?, c_im = ?, status = ?, error = ?, attempts = ?, duration = ?, \
                          checksum = ?, size = ?, generated_by = ?, has_image = ?, updated_at = ?, revision = ? \
                          WHERE uuid = ? AND revision = ?";

/// Removes a stored image.
pub const DELETE_IMAGE: &str = "DELETE FROM fractal_image WHERE uuid = ?";
/// Stores an image.
pub const INSERT_IMAGE: &str = "INSERT INTO fractal_image (uuid, data) VALUES (?, ?)";
/// Reads an image.
pub const SELECT_IMAGE: &str = "SELECT i.data FROM fractal_image i JOIN fractal f ON f.uuid = i.uuid \
     WHERE i.uuid = ? AND f.checksum = ?";
/// Removes a fractal, only at the revision given: `uuid, revision`.
pub const DELETE: &str = "DELETE FROM fractal WHERE uuid = ? AND revision = ?";

/// `(count, page)` statements of `query`; the parameters are, in order,
/// the status (if filtered), `updated_before` (if filtered), `uuid_after`
/// (if filtered), then for the page the limit and the offset.
pub fn list(query: &ListQuery) -> (String, String) {
    let mut filter = String::from(" WHERE 1 = 1");
    if query.status.is_some() {
        filter.push_str(" AND status = ?");
    }
    if query.updated_before.is_some() {
        filter.push_str(" AND updated_at < ?");
    }
    if query.uuid_after.is_some() {
        filter.push_str(" AND uuid > ?");
    }
    let direction = if query.order.descending {
        "DESC"
    } else {
        "ASC"
    };
    let order = match query.order.key {
        OrderKey::CreatedAt => format!("created_at {direction}, uuid {direction}"),
        OrderKey::UpdatedAt => format!("updated_at {direction}, uuid {direction}"),
        OrderKey::Uuid => format!("uuid {direction}"),
    };
    (
        format!("SELECT COUNT(*) FROM fractal{filter}"),
        format!("SELECT {COLUMNS} FROM fractal{filter} ORDER BY {order} LIMIT ? OFFSET ?"),
    )
}

/// `value` as the type of a column, or a corrupt-row error.
pub fn unsigned<T: TryFrom<i64>>(value: i64, column: &str) -> Result<T, DbError> {
    T::try_from(value).map_err(|_| DbError::Corrupt(format!("{column} = {value} is out of range")))
}

/// A stored status.
pub fn parse_status(text: &str) -> Result<FractalStatus, DbError> {
    text.parse().map_err(DbError::Corrupt)
}

/// A u64 for a BIGINT column (sizes never reach i64::MAX: checked at parse).
pub fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Every status with its count (zero for those absent from `rows`).
pub fn status_counts(rows: Vec<(String, i64)>) -> Result<Vec<(FractalStatus, u64)>, DbError> {
    let mut counts: Vec<(FractalStatus, u64)> =
        FractalStatus::ALL.iter().map(|s| (*s, 0)).collect();
    for (status, n) in rows {
        let status = parse_status(&status)?;
        let n = unsigned::<u64>(n, "COUNT(*)")?;
        if let Some(entry) = counts.iter_mut().find(|(s, _)| *s == status) {
            entry.1 = n;
        }
    }
    Ok(counts)
}

/// `?` placeholders as PostgreSQL's `$1, $2, ...` (faafo's SQL has no `?`
/// inside literals).
pub fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for ch in sql.chars() {
        if ch == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(
            numbered_placeholders("UPDATE t SET a = ?, b = ? WHERE c = ?"),
            "UPDATE t SET a = $1, b = $2 WHERE c = $3"
        );
    }

    #[test]
    fn select_one_reads_every_column() {
        assert!(SELECT_ONE.contains(COLUMNS));
        assert!(INSERT.contains(&format!("({COLUMNS})")));
        assert_eq!(INSERT.matches('?').count(), COLUMNS.split(',').count());
    }
}
