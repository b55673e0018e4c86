//! The window's commands. Each takes the engine, calls the core and maps its error to the
//! `{code, message}` the UI switches on. Anything longer belongs in the core.

use std::path::PathBuf;

use dropship_core::settings_edit::{self, TokenEdit};
use dropship_core::store::Store;
use dropship_core::{
    token_storage, Engine, ErrorInfo, HistoryEntry, HistoryQuery, Settings, SignInState, Source, TokenStorage,
    UploadStatus, WindowPrefs,
};
use serde::{Deserialize, Serialize};
use tauri::{AppHandle, State, Window};
use tauri_plugin_dialog::{DialogExt, FilePath, MessageDialogButtons, MessageDialogKind};
use tauri_plugin_opener::OpenerExt;
use tokio::sync::oneshot;

use crate::prefs::Prefs;

type CommandResult<T> = Result<T, ErrorInfo>;

/// The settings without the token: the page only learns whether one is saved.
#[tauri::command]
pub fn get_settings(engine: State<'_, Engine>) -> Option<Settings> {
    engine.settings().as_ref().map(settings_edit::for_page)
}

#[tauri::command]
pub fn token_is_set(engine: State<'_, Engine>) -> bool {
    engine.settings().is_some_and(|s| !s.token.is_empty())
}

// Saving talks to the keyring over D-Bus: off the main thread (`async`).
#[tauri::command]
pub async fn save_settings(
    engine: State<'_, Engine>,
    app: AppHandle,
    window: Window,
    settings: Settings,
    token: TokenEdit,
) -> CommandResult<()> {
    let next = confirmed_settings(&engine, &app, &window, settings, token).await?;
    engine.set_settings(next).map_err(|e| e.info())
}

/// Saves with the token in settings.json: only after the person agreed, when there was no
/// keyring (`save_settings` failed with `keyring_unavailable`).
#[tauri::command]
pub async fn save_settings_token_in_file(
    engine: State<'_, Engine>,
    app: AppHandle,
    window: Window,
    settings: Settings,
    token: TokenEdit,
) -> CommandResult<()> {
    let next = confirmed_settings(&engine, &app, &window, settings, token).await?;
    next.validate().map_err(|e| e.info())?;
    next.save_with_token_in_file(engine.data_dir()).map_err(|e| e.info())?;
    engine.set_settings(next).map_err(|e| e.info())
}

/// The page's settings with the token it never saw resolved; a change that would send uploads
/// or the token elsewhere is put to the person in a native dialog the page cannot answer.
async fn confirmed_settings(
    engine: &Engine,
    app: &AppHandle,
    window: &Window,
    settings: Settings,
    token: TokenEdit,
) -> CommandResult<Settings> {
    let current = engine.settings();
    let next = settings_edit::resolve(current.as_ref(), settings, token);
    let Some(question) = settings_edit::redirecting_change(current.as_ref(), &next) else { return Ok(next) };
    let (tx, rx) = oneshot::channel();
    app.dialog()
        .message(question)
        .title("Change where uploads go?")
        .kind(MessageDialogKind::Warning)
        .buttons(MessageDialogButtons::OkCancelCustom("Change".into(), "Cancel".into()))
        .parent(window)
        .show(move |ok| {
            let _ = tx.send(ok);
        });
    match rx.await {
        Ok(true) => Ok(next),
        _ => Err(ErrorInfo {
            code: "change_declined".into(),
            message: "Nothing was saved: the change of where uploads go was not confirmed.".into(),
        }),
    }
}

/// Who is signed in, and whether the backend offers signing in with the organisation.
#[tauri::command]
pub async fn sign_in_state(engine: State<'_, Engine>) -> CommandResult<SignInState> {
    Ok(engine.sign_in_state().await)
}

/// Signs in in the system browser; the tokens stay in Rust and the keyring, the page learns
/// only who signed in.
#[tauri::command]
pub async fn sign_in(engine: State<'_, Engine>, window: tauri::WebviewWindow) -> CommandResult<String> {
    // The browser may still be on its way back when the window closes.
    let _busy = crate::tray_restart::busy();
    let user = engine.sign_in_with_browser().await.map_err(|e| e.info())?;
    crate::show_user_in_title(&window, Some(&user));
    Ok(user)
}

#[tauri::command]
pub async fn sign_out(engine: State<'_, Engine>, window: tauri::WebviewWindow) -> CommandResult<()> {
    engine.sign_out().await.map_err(|e| e.info())?;
    crate::show_user_in_title(&window, None);
    Ok(())
}

#[tauri::command]
pub fn get_token_storage(engine: State<'_, Engine>) -> CommandResult<Option<TokenStorage>> {
    token_storage(engine.data_dir()).map_err(|e| e.info())
}

#[tauri::command]
pub fn get_prefs(prefs: State<'_, Prefs>) -> WindowPrefs {
    prefs.get()
}

#[tauri::command]
pub fn save_prefs(engine: State<'_, Engine>, prefs: State<'_, Prefs>, next: WindowPrefs) -> CommandResult<()> {
    prefs.set(engine.data_dir(), next).map_err(|e| e.info())
}

#[tauri::command]
pub async fn test_connection(engine: State<'_, Engine>) -> CommandResult<()> {
    engine.check_connection().await.map_err(|e| e.info())
}

/// What the history view asks for; the same filters drive the CSV export.
#[derive(Debug, Default, Deserialize)]
pub struct HistoryFilter {
    search: Option<String>,
    status: Option<String>,
    source: Option<Source>,
    /// RFC 3339 instants, computed by the window from the local dates picked.
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    /// Where the page starts among the matches (the list fetches pages as it scrolls).
    offset: Option<usize>,
}

impl HistoryFilter {
    fn query(self) -> CommandResult<HistoryQuery> {
        let status = match self.status.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(UploadStatus::parse(s).ok_or_else(|| invalid_status(s))?),
        };
        let (since, until) = (self.since, self.until);
        let limit = self.limit.unwrap_or(0);
        let offset = self.offset.unwrap_or(0);
        Ok(HistoryQuery { search: self.search, status, limit, source: self.source, since, until, offset })
    }
}

#[tauri::command(async)]
pub fn list_history(history: State<'_, Store>, filter: HistoryFilter) -> CommandResult<Vec<HistoryEntry>> {
    history.history(&filter.query()?).map_err(|e| dropship_core::Error::from(e).info())
}

/// Asks where to save, then writes the filtered history there as CSV; the number of rows, or
/// `None` when the person cancelled.
#[tauri::command]
pub async fn export_history_csv(
    app: AppHandle,
    window: Window,
    history: State<'_, Store>,
    filter: HistoryFilter,
) -> CommandResult<Option<usize>> {
    let query = filter.query()?;
    let (tx, rx) = oneshot::channel();
    let dialog = app.dialog().file().set_parent(&window).set_title("Export the history as CSV");
    dialog.add_filter("CSV", &["csv"]).set_file_name("dropship-history.csv").save_file(move |picked| {
        let _ = tx.send(picked);
    });
    let Some(target) = rx.await.ok().flatten() else { return Ok(None) };
    let path = local_path(target)?;
    let file = std::fs::File::create(&path).map_err(|e| ErrorInfo {
        code: "export_failed".into(),
        message: format!("Could not create {}: {e}. Choose a folder you can write to.", path.display()),
    })?;
    let mut out = std::io::BufWriter::new(file);
    history.export_csv(&query, &mut out).map(Some).map_err(|e| dropship_core::Error::from(e).info())
}

/// Tries these failed uploads again: a refused report is sent again, anything else uploaded
/// anew as a new batch (its id, or `None` when nothing needed uploading).
#[tauri::command(async)]
pub fn retry_uploads(engine: State<'_, Engine>, upload_ids: Vec<String>) -> CommandResult<Option<String>> {
    engine.retry(&upload_ids, Source::Window).map_err(|e| e.info())
}

/// Shows the uploaded file in the file manager. The window names the upload, never a path; the
/// path is the OS's own, also for a name that is not UTF-8.
#[tauri::command(async)]
pub fn reveal_upload(app: AppHandle, history: State<'_, Store>, upload_id: String) -> CommandResult<()> {
    let path = history.local_path(&upload_id).map_err(|e| dropship_core::Error::from(e).info())?;
    let path = path.filter(|p| p.exists()).ok_or_else(|| ErrorInfo {
        code: "file_not_found".into(),
        message: "The local file is no longer where it was uploaded from; it was moved or deleted.".into(),
    })?;
    app.opener().reveal_item_in_dir(&path).map_err(|e| ErrorInfo {
        code: "reveal_failed".into(),
        message: format!("Could not open the file manager at {}: {e}", path.display()),
    })
}

/// Without a starting folder GTK opens its pickers on "Recent", where a path typed from the
/// keyboard (Ctrl+L) cannot be chosen; the home folder is where people's files are anyway.
fn starting_at_home<R: tauri::Runtime>(
    app: &AppHandle<R>,
    dialog: tauri_plugin_dialog::FileDialogBuilder<R>,
) -> tauri_plugin_dialog::FileDialogBuilder<R> {
    match tauri::Manager::path(app).home_dir() {
        Ok(home) => dialog.set_directory(home),
        Err(_) => dialog,
    }
}

/// Opens the file picker and uploads what was chosen; `None` when the picker was cancelled.
#[tauri::command]
pub async fn pick_files(app: AppHandle, window: Window, engine: State<'_, Engine>) -> CommandResult<Option<String>> {
    let (tx, rx) = oneshot::channel();
    let dialog = starting_at_home(&app, app.dialog().file().set_parent(&window).set_title("Choose files to upload"));
    dialog.pick_files(move |picked| {
        let _ = tx.send(picked.unwrap_or_default());
    });
    submit_picked(&engine, rx.await.unwrap_or_default())
}

/// Opens the folder picker and uploads the folder (recursively); `None` when cancelled.
#[tauri::command]
pub async fn pick_folder(app: AppHandle, window: Window, engine: State<'_, Engine>) -> CommandResult<Option<String>> {
    let (tx, rx) = oneshot::channel();
    let dialog = starting_at_home(&app, app.dialog().file().set_parent(&window).set_title("Choose a folder to upload"));
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

/// What a metered connection or battery holds now, and why.
#[tauri::command]
pub fn get_holds(engine: State<'_, Engine>) -> dropship_core::holds::Holds {
    engine.holds()
}

#[tauri::command]
pub fn upload_anyway(engine: State<'_, Engine>) {
    engine.upload_anyway()
}

/// When the app started (RFC 3339, as the history's timestamps), kept for [`window_session`].
pub struct SessionStart(String);

impl SessionStart {
    /// Now, or when the process before a restart in the tray started: for the person it is
    /// one session.
    pub fn carried_or_now(carried: Option<&crate::tray_restart::Carried>) -> SessionStart {
        if let Some(started) = carried.and_then(|c| c.session_start.clone()) {
            return SessionStart(started);
        }
        let now = time::OffsetDateTime::now_utc();
        SessionStart(now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default())
    }

    pub fn started_at(&self) -> &str {
        &self.0
    }
}

/// What a window opened after the app started needs to show what the app has been doing: it
/// lists the uploads since `started_at` from the history, and Pause all may be on already.
#[derive(Serialize)]
pub struct WindowSession {
    started_at: String,
    all_paused: bool,
}

#[tauri::command]
pub fn window_session(engine: State<'_, Engine>, start: State<'_, SessionStart>) -> WindowSession {
    WindowSession { started_at: start.0.clone(), all_paused: engine.is_paused() }
}

fn submit_picked(engine: &Engine, picked: Vec<FilePath>) -> CommandResult<Option<String>> {
    if picked.is_empty() {
        return Ok(None);
    }
    let paths = picked.into_iter().map(local_path).collect::<CommandResult<Vec<PathBuf>>>()?;
    Ok(Some(engine.submit(paths, Source::Window)))
}

pub(crate) fn local_path(picked: FilePath) -> CommandResult<PathBuf> {
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
