//! The transfer engine: sends a file's bytes to S3 through a presigned URL, streamed from disk
//! in fixed-size chunks so memory stays flat whatever the file size.

mod single_put;

pub use single_put::{put_file, Progress};

#[derive(Debug, thiserror::Error)]
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
    #[error("{path} changed while it was being uploaded ({detail}). Upload it again once it is no longer being written.")]
    FileChanged { path: String, detail: String },
    #[error("{path} is {size} bytes, more than the {limit}-byte limit of a single upload with this backend.")]
    TooLarge { path: String, size: u64, limit: u64 },
}

impl TransferError {
    pub fn code(&self) -> &'static str {
        match self {
            TransferError::UrlRejected { .. } => "s3_url_rejected",
            TransferError::ChecksumMismatch { .. } => "checksum_mismatch",
            TransferError::S3Error { .. } => "s3_error",
            TransferError::Network { .. } => "network",
            TransferError::FileChanged { .. } => "file_changed",
            TransferError::TooLarge { .. } => "file_too_large",
        }
    }
}
