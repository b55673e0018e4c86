-- One row per upload the backend has verified (HEAD) and recorded.
-- client_upload_id is the native flavour's idempotency key; rails reports have none and are
-- idempotent on key instead. A key belongs to exactly one record.
CREATE TABLE records (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    client_upload_id TEXT UNIQUE,
    key              TEXT NOT NULL UNIQUE,
    file_name        TEXT NOT NULL,
    size             INTEGER NOT NULL CHECK (size >= 0),
    content_type     TEXT NOT NULL,
    checksum_sha256  TEXT,
    object_url       TEXT NOT NULL,
    flavour          TEXT NOT NULL CHECK (flavour IN ('native', 'rails')),
    recorded_at      TEXT NOT NULL
);
