-- Every upload Dropship has attempted, from the window, the CLI or a watched folder.
CREATE TABLE uploads (
    upload_id       TEXT PRIMARY KEY,          -- the client's id; the backend's idempotency key
    batch_id        TEXT NOT NULL,
    path            TEXT NOT NULL,             -- the local file, as given
    file_name       TEXT NOT NULL,
    size            INTEGER NOT NULL,
    content_type    TEXT NOT NULL,
    checksum_sha256 TEXT,                      -- base64, as sent to S3
    key             TEXT,
    object_url      TEXT,                      -- never with a query string (no signatures here)
    source          TEXT NOT NULL CHECK (source IN ('window', 'cli', 'watch')),
    status          TEXT NOT NULL CHECK (status IN ('queued', 'uploading', 'reporting', 'uploaded', 'failed')),
    error_code      TEXT,
    error           TEXT,
    created_at      TEXT NOT NULL,             -- RFC 3339, UTC
    updated_at      TEXT NOT NULL,
    reported_at     TEXT
);

CREATE INDEX uploads_by_time ON uploads (created_at DESC);
CREATE INDEX uploads_by_status ON uploads (status, created_at DESC);
