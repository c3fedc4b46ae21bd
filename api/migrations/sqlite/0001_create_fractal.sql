-- faafo's fractals (SQLite). Times are UTC text, RFC 3339 with six decimals
-- (fixed width, so text order is time order); the image has its own table.
-- WITHOUT ROWID: the uuid is the table's own key (no separate index to
-- update on every insert).
CREATE TABLE fractal (
    uuid         TEXT    NOT NULL PRIMARY KEY CHECK (length(uuid) = 36),
    width        INTEGER NOT NULL CHECK (width >= 2),
    height       INTEGER NOT NULL CHECK (height >= 2),
    iterations   INTEGER NOT NULL CHECK (iterations >= 1),
    xa           REAL    NOT NULL,
    xb           REAL    NOT NULL,
    ya           REAL    NOT NULL,
    yb           REAL    NOT NULL,
    seed         INTEGER,
    c_re         REAL,
    c_im         REAL,
    status       TEXT    NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'running', 'done', 'failed')),
    error        TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    duration     REAL,
    checksum     TEXT    CHECK (checksum IS NULL OR length(checksum) = 64),
    size         INTEGER CHECK (size IS NULL OR size >= 0),
    generated_by TEXT,
    has_image    INTEGER NOT NULL DEFAULT 0 CHECK (has_image IN (0, 1)),
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL,
    revision     INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX fractal_created_at ON fractal (created_at, uuid);
CREATE INDEX fractal_updated_at ON fractal (updated_at, uuid);
CREATE INDEX fractal_status_updated_at ON fractal (status, updated_at, uuid);

CREATE TABLE fractal_image (
    uuid TEXT NOT NULL PRIMARY KEY REFERENCES fractal (uuid) ON DELETE CASCADE,
    data BLOB NOT NULL
);
