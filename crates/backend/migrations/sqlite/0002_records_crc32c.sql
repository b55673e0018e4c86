-- Multipart uploads may carry CRC32C part checksums instead of SHA-256 ones; their object
-- checksum is then S3's composite CRC32C (`<base64>-<parts>`). A record keeps the one it was
-- verified with: checksum_sha256 or checksum_crc32c.
ALTER TABLE records ADD COLUMN checksum_crc32c TEXT;
