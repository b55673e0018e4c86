//! The backend's limits, named and documented in one place (docs/backend-api.md repeats them).

/// Largest request body accepted, in bytes; bigger bodies get 413. A full presign batch of
/// 1,000 files with long names is about 400 KiB, so this leaves ample headroom.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Most files in one presign request and most reports in one batch report.
pub const MAX_BATCH: usize = 1000;

/// S3's limit for a single PUT (5 GiB). Bigger files need multipart, which this backend does
/// not offer yet.
pub const MAX_SINGLE_PUT_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// Default and maximum `limit` of `GET /api/v1/records`.
pub const MAX_RECORDS_PAGE: u32 = 1000;

/// HEAD requests in flight at once while checking a batch report.
pub const REPORT_CHECK_CONCURRENCY: usize = 16;

/// Longest accepted `content_type`, in bytes.
pub const MAX_CONTENT_TYPE_BYTES: usize = 255;
