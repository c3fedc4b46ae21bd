-- faafo's fractals (PostgreSQL). Floats are double precision, times
-- timestamptz, the PNG a bytea in its own table.
CREATE TABLE fractal (
    uuid         VARCHAR(36) NOT NULL PRIMARY KEY CHECK (length(uuid) = 36),
    width        BIGINT NOT NULL CHECK (width >= 2),
    height       BIGINT NOT NULL CHECK (height >= 2),
    iterations   BIGINT NOT NULL CHECK (iterations >= 1),
    xa           DOUBLE PRECISION NOT NULL,
    xb           DOUBLE PRECISION NOT NULL,
    ya           DOUBLE PRECISION NOT NULL,
    yb           DOUBLE PRECISION NOT NULL,
    seed         BIGINT,
    c_re         DOUBLE PRECISION,
    c_im         DOUBLE PRECISION,
    status       VARCHAR(16) NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'running', 'done', 'failed')),
    error        TEXT,
    attempts     BIGINT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    duration     DOUBLE PRECISION,
    checksum     CHAR(64),
    size         BIGINT CHECK (size IS NULL OR size >= 0),
    generated_by VARCHAR(255),
    has_image    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    revision     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX fractal_created_at ON fractal (created_at, uuid);
CREATE INDEX fractal_updated_at ON fractal (updated_at, uuid);
CREATE INDEX fractal_status_updated_at ON fractal (status, updated_at, uuid);

CREATE TABLE fractal_image (
    uuid VARCHAR(36) NOT NULL PRIMARY KEY REFERENCES fractal (uuid) ON DELETE CASCADE,
    data BYTEA NOT NULL
);
