//! The window's commands. Each takes the engine, calls the core and maps its error to the
//! `{code, message}` the UI switches on. Anything longer belongs in the core.

use std::path::PathBuf;

use dropship_core::{Engine, ErrorInfo, HistoryEntry, HistoryQuery, Settings, Source, UploadStatus};
use tauri::{AppHandle, State, Window};
use tauri_plugin_dialog::{DialogExt, FilePath};
use tokio::sync::oneshot;

type CommandResult<T> = Result<T, ErrorInfo>;

#[tauri::command]
pub fn get_settings(engine: State<'_, Engine>) -> Option<Settings> {
    engine.settings()
}

#[tauri::command]
pub fn save_settings(engine: State<'_, Engine>, settings: Settings) -> CommandResult<()> {
    engine.set_settings(settings).map_err(|e| e.info())
}

#[tauri::command]
pub async fn test_connection(engine: State<'_, Engine>) -> CommandResult<()> {
    engine.check_connection().await.map_err(|e| e.info())
}

#[tauri::command]
pub async fn list_history(
    engine: State<'_, Engine>,
    search: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
) -> CommandResult<Vec<HistoryEntry>> {
    let status = match status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(UploadStatus::parse(s).ok_or_else(|| invalid_status(s))?),
    };
    let query = HistoryQuery { search, status, limit: limit.unwrap_or(0) };
    engine.history(&query).map_err(|e| e.info())
}

/// Opens the file picker and uploads what was chosen; `None` when the picker was cancelled.
#[tauri::command]
pub async fn pick_files(app: AppHandle, window: Window, engine: State<'_, Engine>) -> CommandResult<Option<String>> {
    let (tx, rx) = oneshot::channel();
    let dialog = app.dialog().file().set_parent(&window).set_title("Choose files to upload");
    dialog.pick_files(move |picked| {
        let _ = tx.send(picked.unwrap_or_default());
    });
    submit_picked(&engine, rx.await.unwrap_or_default())
}

/// Opens the folder picker and uploads the folder (recursively); `None` when cancelled.
#[tauri::command]
pub async fn pick_folder(app: AppHandle, window: Window, engine: State<'_, Engine>) -> CommandResult<Option<String>> {
    let (tx, rx) = oneshot::channel();
    let dialog = app.dialog().file().set_parent(&window).set_title("Choose a folder to upload");
    dialog.pick_folder(move |picked| {
        let _ = tx.send(picked.into_iter().collect());
    });
    submit_picked(&engine, rx.await.unwrap_or_default())
}

/// Pauses one upload; false when it is no longer running (it finished meanwhile).
#[tauri::command]
pub fn pause_upload(engine: State<'_, Engine>, upload_id: String) -> bool {
    engine.pause(&upload_id)
}

#[tauri::command]
pub fn resume_upload(engine: State<'_, Engine>, upload_id: String) -> bool {
    engine.resume(&upload_id)
}

/// Cancels one upload (a multipart upload is aborted on the backend).
#[tauri::command]
pub fn cancel_upload(engine: State<'_, Engine>, upload_id: String) -> bool {
    engine.cancel(&upload_id)
}

#[tauri::command]
pub fn pause_all(engine: State<'_, Engine>) {
    engine.pause_all()
}

#[tauri::command]
pub fn resume_all(engine: State<'_, Engine>) {
    engine.resume_all()
}

#[tauri::command]
pub fn cancel_all(engine: State<'_, Engine>) {
    engine.cancel_all()
}

fn submit_picked(engine: &Engine, picked: Vec<FilePath>) -> CommandResult<Option<String>> {
    if picked.is_empty() {
        return Ok(None);
    }
    let paths = picked.into_iter().map(local_path).collect::<CommandResult<Vec<PathBuf>>>()?;
    Ok(Some(engine.submit(paths, Source::Window)))
}

fn local_path(picked: FilePath) -> CommandResult<PathBuf> {
    let shown = picked.to_string();
    picked.into_path().map_err(|_| ErrorInfo {
        code: "not_a_local_file".into(),
        message: format!("{shown} is not a file on this computer; choose a local file or folder."),
    })
}

fn invalid_status(status: &str) -> ErrorInfo {
    ErrorInfo {
        code: "invalid_query".into(),
        message: format!("Unknown upload status {status:?}; use queued, uploading, reporting, uploaded or failed."),
    }
}
