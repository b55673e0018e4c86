-- The schema as SQLite's migrations 0001-0004 leave it, in Postgres terms: the upload records,
-- what was issued to whom, and the append-only audit log. Times are the same RFC 3339 UTC text
-- as on SQLite (fixed width, so text order is time order), so both answer identically.

-- One row per upload the backend has verified (HEAD) and recorded. client_upload_id is the
-- native flavour's idempotency key; rails reports have none and are idempotent on key
-- instead. A key belongs to exactly one record. The UNIQUE constraints are what make a report
-- sent to two instances at once land once (INSERT … ON CONFLICT DO NOTHING).
CREATE TABLE records (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_upload_id TEXT UNIQUE,
    key              TEXT NOT NULL UNIQUE,
    file_name        TEXT NOT NULL,
    size             BIGINT NOT NULL CHECK (size >= 0),
    content_type     TEXT NOT NULL,
    checksum_sha256  TEXT,
    object_url       TEXT NOT NULL,
    flavour          TEXT NOT NULL CHECK (flavour IN ('native', 'rails')),
    recorded_at      TEXT NOT NULL,
    checksum_crc32c  TEXT,
    uploaded_by      TEXT
);
CREATE INDEX records_uploaded_by ON records (uploaded_by, id);

-- Every single PUT the backend signed and that is not reported yet, and for whom.
CREATE TABLE presigned_puts (
    key             TEXT PRIMARY KEY,
    checksum_sha256 TEXT,
    object_url      TEXT NOT NULL,
    signed_at       TEXT NOT NULL,
    uploaded_by     TEXT
);
CREATE INDEX presigned_puts_signed_at ON presigned_puts (signed_at);

-- One row per multipart upload the backend created at S3, looked up by (upload id, key,
-- principal) on every later call.
CREATE TABLE multipart_uploads (
    upload_id        TEXT NOT NULL,
    key              TEXT NOT NULL,
    uploaded_by      TEXT NOT NULL,
    client_upload_id TEXT,
    created_at       TEXT NOT NULL,
    PRIMARY KEY (upload_id, key)
);
CREATE INDEX multipart_uploads_key ON multipart_uploads (key);

-- Who did what, denials included. Append-only: the trigger refuses UPDATE and DELETE from
-- anywhere (psql included) short of dropping it.
CREATE TABLE audit_log (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at               TEXT NOT NULL,
    principal        TEXT NOT NULL,
    action           TEXT NOT NULL
        CHECK (action IN ('presign', 'create', 'sign', 'complete', 'abort', 'report', 'denied')),
    key              TEXT,
    client_upload_id TEXT,
    outcome          TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_principal ON audit_log (principal, at);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
