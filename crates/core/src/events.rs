//! What the engine tells the shells while it works. The desktop turns these into webview
//! events, the CLI into a progress bar or JSON lines.

use std::path::PathBuf;

use serde::Serialize;

use crate::ErrorInfo;

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[serde(tag = "type", rename_all = "snake_case")]
#[ts(export, rename = "EngineEvent")]
pub enum Event {
    /// The files of one batch, queued: one event for the whole batch (a drop of 10,000 files is
    /// one event, not 10,000, so it cannot overflow the shells' event channel).
    FilesQueued {
        batch_id: String,
        files: Vec<QueuedFile>,
    },
    FileProgress {
        upload_id: String,
        #[ts(type = "number")]
        bytes_done: u64,
        #[ts(type = "number")]
        total: u64,
        /// Smoothed over the last few seconds.
        #[ts(type = "number")]
        bytes_per_second: u64,
    },
    /// A request failed and will be tried again after `retry_in_ms`. `offline` when the
    /// network itself failed (no connection, timeouts), so the UI can say "offline".
    FileRetrying {
        upload_id: String,
        attempt: u32,
        #[ts(type = "number")]
        retry_in_ms: u64,
        offline: bool,
        reason: ErrorInfo,
    },
    FilePaused {
        upload_id: String,
    },
    FileResumed {
        upload_id: String,
    },
    /// Everything is paused (`paused: true`) or running again.
    QueuePaused {
        paused: bool,
    },
    /// The machine's conditions (a metered connection, battery power) now hold these uploads,
    /// or no longer do.
    HoldsChanged {
        holds: crate::holds::Holds,
    },
    FileUploaded {
        upload_id: String,
        key: String,
        object_url: String,
        #[ts(type = "number")]
        size: u64,
    },
    FileFailed {
        upload_id: String,
        #[ts(type = "string")]
        #[serde(serialize_with = "crate::engine::path_lossy")]
        path: PathBuf,
        error: ErrorInfo,
    },
    /// The backend could not be reached (or failed) while signing: the uploads that need it wait
    /// and ask again after `retry_in_ms`.
    BackendRetrying {
        attempt: u32,
        #[ts(type = "number")]
        retry_in_ms: u64,
        reason: ErrorInfo,
    },
    /// Completion reports the backend could not take yet; they are kept on disk and sent again
    /// after `retry_in_ms`. The files are in S3.
    ReportsQueued {
        #[ts(type = "number")]
        count: usize,
        #[ts(type = "number")]
        retry_in_ms: u64,
        reason: ErrorInfo,
    },
    BatchFinished {
        batch_id: String,
        #[ts(type = "number")]
        uploaded: usize,
        #[ts(type = "number")]
        failed: usize,
    },
    BatchFailed {
        batch_id: String,
        error: ErrorInfo,
    },
}

/// One file of a [`Event::FilesQueued`].
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct QueuedFile {
    pub upload_id: String,
    #[ts(type = "string")]
    #[serde(serialize_with = "crate::engine::path_lossy")]
    pub path: PathBuf,
    pub file_name: String,
    #[ts(type = "number")]
    pub size: u64,
}
