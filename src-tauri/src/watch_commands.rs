//! The watched-folder settings view's commands and "Start at login". Each takes state, calls
//! the core (or the autostart plugin) and maps the error to `{code, message}`. The page names
//! watched folders by id: a path enters only through the native picker, here in Rust.

use dropship_core::watch::WatchStatus;
use dropship_core::{ErrorInfo, FolderOptions, FolderView, Watcher};
use tauri::{AppHandle, Manager, State, Window};
use tauri_plugin_autostart::ManagerExt;
use tauri_plugin_dialog::DialogExt;
use tokio::sync::oneshot;

use crate::commands::local_path;

type CommandResult<T> = Result<T, ErrorInfo>;

/// The watched folders, each with the id the window names it by.
#[tauri::command]
pub fn list_watched_folders(watcher: State<'_, Watcher>) -> Vec<FolderView> {
    watcher.folders()
}

/// Opens the native folder picker and watches the folder chosen (saved and applied at once);
/// `None` when cancelled. The path goes from the picker to the watcher, never through the page.
#[tauri::command]
pub async fn add_watched_folder(
    app: AppHandle,
    window: Window,
    watcher: State<'_, Watcher>,
) -> CommandResult<Option<FolderView>> {
    let (tx, rx) = oneshot::channel();
    let mut dialog = app.dialog().file().set_parent(&window).set_title("Choose a folder to watch");
    // Watched folders live under the home folder (scans, exports, a synced share). Without a
    // starting folder GTK opens on "Recent", where a typed folder path cannot be chosen.
    if let Ok(home) = app.path().home_dir() {
        dialog = dialog.set_directory(home);
    }
    dialog.pick_folder(move |picked| {
        let _ = tx.send(picked);
    });
    let Some(picked) = rx.await.ok().flatten() else { return Ok(None) };
    let path = local_path(picked)?;
    watcher.edit(|settings| Ok(settings.add_folder(path))).map(Some).map_err(|e| e.info())
}

/// Changes the options of the folder with this id (saved and applied at once).
#[tauri::command]
pub fn update_watched_folder(
    watcher: State<'_, Watcher>,
    id: String,
    options: FolderOptions,
) -> CommandResult<FolderView> {
    watcher.edit(|settings| settings.update_folder(&id, options)).map_err(|e| e.info())
}

/// Stops watching the folder with this id; nothing local or in the bucket is touched.
#[tauri::command]
pub fn remove_watched_folder(watcher: State<'_, Watcher>, id: String) -> CommandResult<()> {
    watcher.edit(|settings| settings.remove_folder(&id)).map_err(|e| e.info())
}

#[tauri::command]
pub fn watch_status(watcher: State<'_, Watcher>) -> WatchStatus {
    watcher.status()
}

#[tauri::command]
pub fn get_start_at_login(app: AppHandle) -> bool {
    app.autolaunch().is_enabled().unwrap_or(false)
}

#[tauri::command]
pub fn set_start_at_login(app: AppHandle, enabled: bool) -> CommandResult<()> {
    let launcher = app.autolaunch();
    let result = if enabled { launcher.enable() } else { launcher.disable() };
    result.map_err(|e| ErrorInfo {
        code: "autostart".into(),
        message: format!("Could not change \"Start at login\" ({e}); check that ~/.config/autostart is writable."),
    })
}
