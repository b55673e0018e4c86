-- Principals: every upload is bound to the principal (a static token's name or an OpenID
-- Connect user) that asked for it, and an append-only audit log keeps who did what.

-- Records made before this migration keep uploaded_by NULL: nobody signed in then, so no
-- principal owns them. They are listed only to an admin (`GET /api/v1/records?all=true`) and
-- show `"uploaded_by": null`.
ALTER TABLE records ADD COLUMN uploaded_by TEXT;
CREATE INDEX records_uploaded_by ON records (uploaded_by, id);

-- Presigned single PUTs (native and now rails) are remembered with the principal they were
-- signed for, so a report of that key by anyone else is refused. Rails URLs sign no checksum,
-- hence checksum_sha256 becomes nullable; SQLite cannot drop a NOT NULL, so the table is
-- rebuilt. Rows signed before this migration keep uploaded_by NULL: nobody's, so their keys
-- can no longer be reported (they are at most 7 days old and their URLs have expired anyway).
CREATE TABLE presigned_puts_v4 (
    key             TEXT PRIMARY KEY,
    checksum_sha256 TEXT,
    object_url      TEXT NOT NULL,
    signed_at       TEXT NOT NULL,
    uploaded_by     TEXT
) WITHOUT ROWID;
INSERT INTO presigned_puts_v4 (key, checksum_sha256, object_url, signed_at, uploaded_by)
    SELECT key, checksum_sha256, object_url, signed_at, NULL FROM presigned_puts;
DROP TABLE presigned_puts;
ALTER TABLE presigned_puts_v4 RENAME TO presigned_puts;
CREATE INDEX presigned_puts_signed_at ON presigned_puts (signed_at);

-- One row per multipart upload, written when the backend creates it at S3: every later call
-- (sign, list parts, complete, abort) is looked up by (upload id, key, principal), so the
-- client's word is never enough to reach another principal's upload. Uploads created before
-- this migration have no row and answer 404 upload_not_found; clients start them anew.
CREATE TABLE multipart_uploads (
    upload_id        TEXT NOT NULL,
    key              TEXT NOT NULL,
    uploaded_by      TEXT NOT NULL,
    client_upload_id TEXT,
    created_at       TEXT NOT NULL,
    PRIMARY KEY (upload_id, key)
) WITHOUT ROWID;
CREATE INDEX multipart_uploads_key ON multipart_uploads (key);

-- Who did what, denials included. Append-only: the backend has no UPDATE or DELETE of it, and
-- these triggers refuse one from anywhere else (sqlite3 included) short of dropping them.
CREATE TABLE audit_log (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
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
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
