//! The backend's limits, named and documented in one place (docs/backend-api.md repeats them).

/// Largest request body accepted, in bytes; bigger bodies get 413. A full presign batch of
/// 1,000 files with long names is about 400 KiB, so this leaves ample headroom.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Most files in one presign request and most reports in one batch report.
pub const MAX_BATCH: usize = 1000;

/// S3's limit for a single PUT (5 GiB). Bigger files need a multipart upload.
pub const MAX_SINGLE_PUT_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// S3's limit for one object, and so for a multipart upload (5 TiB).
pub const MAX_MULTIPART_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * 1024 * 1024;

/// S3's limit for one part (5 GiB). Its 5 MiB minimum (for every part but the last) is left
/// to S3, which enforces it on completion (`EntityTooSmall`).
pub const MAX_PART_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// S3's highest part number, and so the most parts one upload can complete with.
pub const MAX_PART_NUMBER: i64 = 10_000;

/// Most parts signed in one request: a client signs a window of parts at a time, and URLs
/// expire, so signing all 10,000 at once would only waste them.
pub const MAX_PARTS_PER_SIGN: usize = 1000;

/// Longest accepted S3 upload id or ETag, in bytes (AWS's are well under 200).
pub const MAX_UPLOAD_TOKEN_BYTES: usize = 1024;

/// Default and maximum `limit` of `GET /api/v1/records`.
pub const MAX_RECORDS_PAGE: u32 = 1000;

/// HEAD requests in flight at once while checking a batch report.
pub const REPORT_CHECK_CONCURRENCY: usize = 16;

/// Longest accepted `content_type`, in bytes.
pub const MAX_CONTENT_TYPE_BYTES: usize = 255;

/// Default and maximum `limit` of `GET /api/v1/audit`.
pub const MAX_AUDIT_PAGE: u32 = 10_000;

/// ListObjectsV2 listings per batch report: one per group of keys issued together (same
/// prefix, user, date and folder); the keys of further groups get a HEAD each.
pub const MAX_LISTINGS_PER_BATCH: usize = 4;

/// How long the backend waits for a TCP (and TLS) connection to S3.
pub const S3_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long one attempt of an S3 call may take; the SDK retries a timed-out attempt.
pub const S3_ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long an S3 call may take with all its retries: inside the default request deadline
/// (60 s), so a request that waits on S3 still gets a JSON answer from its handler.
pub const S3_OPERATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(25);

/// Bytes of an S3 error answer read at most: S3's XML errors are a few hundred bytes, and a
/// misbehaving endpoint must not make the backend buffer without bound.
pub const MAX_S3_ERROR_BODY_BYTES: usize = 64 * 1024;
