-- Every native single PUT the backend signed and that is not reported yet: the SHA-256 signed
-- into its URL (S3 stores nothing at the key unless the body matches it), and the object URL.
-- A batch report whose checksum equals the signed one is then verified by listing the keys
-- (one ListObjectsV2 per batch) instead of a HEAD per object. Rows go when the upload is
-- recorded, or when they are a week old.
CREATE TABLE presigned_puts (
    key             TEXT PRIMARY KEY,
    checksum_sha256 TEXT NOT NULL,
    object_url      TEXT NOT NULL,
    signed_at       TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX presigned_puts_signed_at ON presigned_puts (signed_at);
