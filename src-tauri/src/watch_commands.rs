//! The watched-folder settings view's commands and "Start at login". Each takes state, calls
//! the core (or the autostart plugin) and maps the error to `{code, message}`.

use dropship_core::watch::WatchStatus;
use dropship_core::{Engine, ErrorInfo, WatchSettings, Watcher};
use tauri::{AppHandle, State, Window};
use tauri_plugin_autostart::ManagerExt;
use tauri_plugin_dialog::DialogExt;
use tokio::sync::oneshot;

type CommandResult<T> = Result<T, ErrorInfo>;

#[tauri::command]
pub fn get_watch_settings(engine: State<'_, Engine>) -> CommandResult<WatchSettings> {
    WatchSettings::load(engine.data_dir()).map_err(|e| e.info())
}

/// Saves the watched folders and applies them at once.
#[tauri::command]
pub fn save_watch_settings(
    engine: State<'_, Engine>,
    watcher: State<'_, Watcher>,
    settings: WatchSettings,
) -> CommandResult<()> {
    settings.save(engine.data_dir()).map_err(|e| e.info())?;
    watcher.configure(settings).map_err(|e| e.info())
}

#[tauri::command]
pub fn watch_status(watcher: State<'_, Watcher>) -> WatchStatus {
    watcher.status()
}

/// Opens the folder picker; the chosen folder's full path, or `None` when cancelled.
#[tauri::command]
pub async fn pick_watch_folder(app: AppHandle, window: Window) -> CommandResult<Option<String>> {
    let (tx, rx) = oneshot::channel();
    let dialog = app.dialog().file().set_parent(&window).set_title("Choose a folder to watch");
    dialog.pick_folder(move |picked| {
        let _ = tx.send(picked.and_then(|p| p.into_path().ok()));
    });
    Ok(rx.await.ok().flatten().map(|p| p.display().to_string()))
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
