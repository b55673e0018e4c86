//! The recovery screen: when a file in the data folder is damaged, the window opens on it
//! instead of the app failing to start. The page never names a path: the damaged file is the
//! one the start-up found, kept here.

use std::sync::Mutex;

use dropship_core::{default_data_dir, DamagedFile, ErrorInfo};
use tauri::{AppHandle, State};
use tauri_plugin_opener::OpenerExt;

/// The damaged file the start-up stopped at, if any.
#[derive(Default)]
pub struct Recovery(pub Mutex<Option<DamagedFile>>);

#[tauri::command]
pub fn get_damaged_file(recovery: State<'_, Recovery>) -> Option<DamagedFile> {
    recovery.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Moves the damaged file aside and starts the app; returns the next damaged file if the
/// start-up stops at another one, `None` once the app runs.
#[tauri::command(async)]
pub fn move_damaged_aside(app: AppHandle, recovery: State<'_, Recovery>) -> Result<Option<DamagedFile>, ErrorInfo> {
    let mut damaged = recovery.0.lock().unwrap_or_else(|p| p.into_inner());
    let Some(file) = damaged.as_ref() else { return Ok(None) };
    dropship_core::recovery::move_aside(&default_data_dir(), file).map_err(|e| e.info())?;
    *damaged = crate::start(&app).map_err(|e| e.info())?;
    Ok(damaged.clone())
}

#[tauri::command]
pub fn open_data_folder(app: AppHandle) -> Result<(), ErrorInfo> {
    let dir = default_data_dir();
    app.opener().open_path(dir.display().to_string(), None::<&str>).map_err(|e| ErrorInfo {
        code: "open_failed".into(),
        message: format!("Could not open the folder {}: {e}", dir.display()),
    })
}
