-- faafo's fractals (MariaDB / MySQL). Floats are DOUBLE (the original's
-- FLOAT rounded them); times DATETIME(6) in UTC; the PNG a LONGBLOB in its
-- own table (16 Mpixel images exceed a BLOB, and may exceed a MEDIUMBLOB).
CREATE TABLE fractal (
    uuid         CHAR(36) CHARACTER SET ascii NOT NULL PRIMARY KEY,
    width        BIGINT NOT NULL CHECK (width >= 2),
    height       BIGINT NOT NULL CHECK (height >= 2),
    iterations   BIGINT NOT NULL CHECK (iterations >= 1),
    xa           DOUBLE NOT NULL,
    xb           DOUBLE NOT NULL,
    ya           DOUBLE NOT NULL,
    yb           DOUBLE NOT NULL,
    seed         BIGINT NULL,
    c_re         DOUBLE NULL,
    c_im         DOUBLE NULL,
    status       VARCHAR(16) CHARACTER SET ascii NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'running', 'done', 'failed')),
    error        TEXT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    duration     DOUBLE NULL,
    checksum     CHAR(64) CHARACTER SET ascii NULL,
    size         BIGINT NULL CHECK (size IS NULL OR size >= 0),
    generated_by VARCHAR(255) NULL,
    has_image    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   DATETIME(6) NOT NULL,
    updated_at   DATETIME(6) NOT NULL,
    revision     BIGINT NOT NULL DEFAULT 0,
    INDEX fractal_created_at (created_at, uuid),
    INDEX fractal_updated_at (updated_at, uuid),
    INDEX fractal_status_updated_at (status, updated_at, uuid)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE fractal_image (
    uuid CHAR(36) CHARACTER SET ascii NOT NULL PRIMARY KEY,
    data LONGBLOB NOT NULL,
    CONSTRAINT fractal_image_fractal FOREIGN KEY (uuid) REFERENCES fractal (uuid) ON DELETE CASCADE
) ENGINE = InnoDB;
