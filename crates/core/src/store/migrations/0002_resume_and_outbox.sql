-- Crash safety: which running Dropship owns an unfinished upload (so another one can tell an
-- interrupted upload from a running one), the state of each multipart upload as its parts finish,
-- and the outbox of completion reports the backend has not acknowledged yet.

ALTER TABLE uploads ADD COLUMN owner TEXT;               -- the engine instance working on it
ALTER TABLE uploads ADD COLUMN note TEXT;                -- why it started over, when it did

CREATE INDEX uploads_unfinished ON uploads (path) WHERE status IN ('queued', 'uploading', 'reporting');

CREATE TABLE multipart_state (
    upload_id       TEXT PRIMARY KEY REFERENCES uploads (upload_id) ON DELETE CASCADE,
    s3_upload_id    TEXT NOT NULL,
    key             TEXT NOT NULL,
    object_url      TEXT NOT NULL,                   -- without a query string
    part_size       INTEGER NOT NULL,
    file_size       INTEGER NOT NULL,
    file_mtime_ns   INTEGER NOT NULL,                -- the file's identity when the upload began
    file_inode      INTEGER,
    created_at      TEXT NOT NULL
);

CREATE TABLE multipart_parts (
    upload_id       TEXT NOT NULL REFERENCES multipart_state (upload_id) ON DELETE CASCADE,
    part_number     INTEGER NOT NULL,
    etag            TEXT NOT NULL,
    checksum        TEXT,                            -- base64, as signed into the part URL
    size            INTEGER NOT NULL,
    PRIMARY KEY (upload_id, part_number)
) WITHOUT ROWID;

CREATE TABLE outbox (
    upload_id       TEXT PRIMARY KEY REFERENCES uploads (upload_id) ON DELETE CASCADE,
    report          TEXT NOT NULL,                   -- the completion report, as JSON
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,                -- unix milliseconds
    rejected        INTEGER NOT NULL DEFAULT 0,      -- the backend refused it: only a person retries it
    last_error      TEXT,
    created_at      TEXT NOT NULL
);

CREATE INDEX outbox_due ON outbox (rejected, next_attempt_at);
