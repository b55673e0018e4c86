//! What the engine tells the shells while it works. The desktop turns these into webview
//! events, the CLI into a progress bar or JSON lines.

use std::path::PathBuf;

use serde::Serialize;

use crate::ErrorInfo;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    FileQueued { upload_id: String, batch_id: String, path: PathBuf, file_name: String, size: u64 },
    FileProgress { upload_id: String, bytes_done: u64, total: u64 },
    FileUploaded { upload_id: String, key: String, object_url: String, size: u64 },
    FileFailed { upload_id: String, path: PathBuf, error: ErrorInfo },
    BatchFinished { batch_id: String, uploaded: usize, failed: usize },
    BatchFailed { batch_id: String, error: ErrorInfo },
}
