//! The one error type that crosses into the shells. Each module has its own typed error; they
//! convert into [`Error`], whose `Display` is a sentence a person can act on and whose `code` is
//! stable, so the UI and scripts switch on the code, never on the wording.

use serde::Serialize;

use crate::auth::AuthError;
use crate::backend::BackendError;
use crate::store::StoreError;
use crate::transfer::TransferError;

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(
        "Dropship has no backend configured. Set the backend URL and token in Settings, \
         or pass --backend and --token (or DROPSHIP_BACKEND_URL and DROPSHIP_TOKEN)."
    )]
    NotConfigured,
    #[error("The settings are not valid: {0}")]
    InvalidSettings(String),
    #[error("No such file or folder: {path}. Check the path and try again.")]
    NotFound { path: String },
    #[error("Cannot read {path}: {detail}. Check that the file exists and that you may read it.")]
    Unreadable { path: String, detail: String },
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Dropship is shutting down; the upload was not finished.")]
    ShuttingDown,
    #[error("Cancelled. Nothing was left behind in the bucket.")]
    Cancelled,
    #[error(
        "The file is in S3, but the backend has not confirmed it yet ({detail}). Dropship keeps the report \
         and sends it as soon as the backend answers: keep Dropship open, or run `dropship resume` later."
    )]
    ReportPending { detail: String },
    #[error(
        "The file is in S3, but the backend refused to record it: {message} The report is kept: retry it \
         from History (or `dropship reports --retry`) once the backend accepts it."
    )]
    ReportRejected { message: String },
    #[error(
        "Dropship cannot read {path}: the file is damaged ({detail}). Move it aside (rename it, for example \
         to add .damaged to its name) and Dropship starts fresh with a new one; or put back a good copy."
    )]
    Damaged { path: String, detail: String },
    #[error(
        "No watched folder has the id {id:?}; it may have been removed meanwhile. Reopen Settings to see the \
         folders watched now."
    )]
    UnknownFolder { id: String },
    #[error("The diagnostics bundle could not be written to {path} ({detail}). Choose a folder you can write to.")]
    BundleFailed { path: String, detail: String },
    #[error("Something went wrong inside Dropship: {0}. Please report this.")]
    Internal(String),
    #[error(
        "No system keyring is available to keep the access token safe. {0} Dropship can keep the \
         token in its settings file instead, readable only by you, if you agree."
    )]
    KeyringUnavailable(String),
    #[error("The system keyring did not take the access token ({0}). Unlock the keyring and save again.")]
    KeyringFailed(String),
}

impl Error {
    /// A stable, snake_case identifier for the kind of failure.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotConfigured => "not_configured",
            Error::InvalidSettings(_) => "invalid_settings",
            Error::NotFound { .. } => "file_not_found",
            Error::Unreadable { .. } => "file_unreadable",
            Error::Backend(e) => e.code(),
            Error::Transfer(e) => e.code(),
            Error::Auth(e) => e.code(),
            Error::Store(_) => "history_store",
            Error::ShuttingDown => "shutting_down",
            Error::Cancelled => "cancelled",
            Error::ReportPending { .. } => "report_pending",
            Error::ReportRejected { .. } => "report_rejected",
            Error::Damaged { .. } => "damaged_file",
            Error::UnknownFolder { .. } => "unknown_folder",
            Error::BundleFailed { .. } => "bundle_failed",
            Error::Internal(_) => "internal",
            Error::KeyringUnavailable(_) => "keyring_unavailable",
            Error::KeyringFailed(_) => "keyring_failed",
        }
    }

    /// Whether the failure concerns the whole batch (the backend, the settings, the store)
    /// rather than the one file being uploaded.
    pub fn is_batch_level(&self) -> bool {
        match self {
            Error::NotConfigured | Error::InvalidSettings(_) | Error::Store(_) | Error::Damaged { .. } => true,
            Error::KeyringUnavailable(_) | Error::KeyringFailed(_) | Error::Auth(_) => true,
            Error::Backend(e) => e.is_batch_level(),
            _ => false,
        }
    }

    pub fn info(&self) -> ErrorInfo {
        ErrorInfo { code: self.code().to_owned(), message: self.to_string() }
    }
}

/// The shape an error takes at the IPC and JSON boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ErrorInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
