//! The transfer engine: sends a file's bytes to S3 through presigned URLs — one PUT for a small
//! file, parts in parallel for a large one — retrying what can succeed and re-signing URLs that
//! expired.

mod multipart;
mod plan;
mod post_form;
mod put;
mod retry;
mod throttle;

pub use multipart::{parts_in_flight, upload_parts, MultipartRun, OnRetry, PartBuffers};
pub use plan::{PartPlan, MAX_OBJECT_SIZE, MIN_PART_SIZE};
pub use put::{check_destination, permits_for, put_bytes, put_range, send_file, Progress, Range, PERMITS_PER_SLOT};
pub use retry::{classify, Next, RetryNow, RetryPolicy};
pub use throttle::Throttle;

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    #[error("The upload URL was refused by S3 ({code}: {message}). It may have expired; try the upload again.")]
    UrlRejected { code: String, message: String },
    #[error("S3 found that the bytes it received do not match the file's checksum ({message}). The file may have changed while it was sent; try again.")]
    ChecksumMismatch { message: String },
    #[error("S3 refused the upload with HTTP {status} ({code}: {message}).")]
    S3Error { status: u16, code: String, message: String },
    #[error("The connection to S3 failed ({detail}). Check the network and try again.")]
    Network { detail: String },
    #[error(
        "{path} changed while it was being uploaded ({detail}). Upload it again once it is no longer being written."
    )]
    FileChanged { path: String, detail: String },
    #[error("{path} is {size} bytes, more than the {limit}-byte limit of an upload with this backend{}.", if *.limit < MAX_OBJECT_SIZE { " (its API has no multipart uploads)" } else { "" })]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("S3 did not return an ETag for part {part} of the upload; the multipart upload was aborted.")]
    MissingEtag { part: u32 },
    #[error("The backend handed out an upload URL that Dropship will not use: {reason}. Nothing was sent; tell whoever runs the backend.")]
    UnsafeUrl { reason: String },
    #[error("Dropship does not trust the upload host: {detail}. Nothing was sent.")]
    Certificate { detail: String },
    #[error("The upload did not get through the proxy: {}.", crate::network::PROXY_AUTH)]
    ProxyAuth,
    #[error("The upload to {from} was redirected to {to}. Dropship does not follow redirects for uploads, so nothing was sent to {to}; tell whoever runs the backend that its upload URLs must point straight at the bucket's endpoint (the right region and host).")]
    Redirected { from: String, to: String },
}

impl TransferError {
    /// A request to an upload URL that got no answer.
    pub(crate) fn unanswered(e: &reqwest::Error) -> TransferError {
        use crate::network::NetworkFailure;
        let failure = crate::network::classify_failure(e);
        match failure {
            NetworkFailure::Certificate(_) => TransferError::Certificate {
                detail: failure.describe(e.url().and_then(|u| u.host_str()).unwrap_or("the upload host")),
            },
            NetworkFailure::ProxyAuth => TransferError::ProxyAuth,
            NetworkFailure::Other(detail) => TransferError::Network { detail },
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            TransferError::UrlRejected { .. } => "s3_url_rejected",
            TransferError::ChecksumMismatch { .. } => "checksum_mismatch",
            TransferError::S3Error { .. } => "s3_error",
            TransferError::Network { .. } => "network",
            TransferError::FileChanged { .. } => "file_changed",
            TransferError::TooLarge { .. } => "file_too_large",
            TransferError::MissingEtag { .. } => "s3_error",
            TransferError::UnsafeUrl { .. } => "unsafe_upload_url",
            TransferError::Redirected { .. } => "upload_redirected",
            TransferError::Certificate { .. } => "certificate_untrusted",
            TransferError::ProxyAuth => "proxy_auth_required",
        }
    }
}
