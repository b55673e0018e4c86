//! *Create diagnostics bundle…* from Settings and from the tray: the destination comes from a
//! native save dialog, never from the page; the bundle itself is `dropship_core::diagnose`.

use dropship_core::diagnose::{create_bundle, BundleOptions};
use dropship_core::{Engine, ErrorInfo, Watcher};
use serde::Serialize;
use tauri::{AppHandle, Manager, Window};
use tauri_plugin_dialog::{DialogExt, MessageDialogKind};
use tokio::sync::oneshot;

/// What the window shows once the bundle is written.
#[derive(Serialize)]
pub struct BundleWritten {
    pub path: String,
    /// The connection tests that failed, in words.
    pub problems: Vec<String>,
}

/// Asks where to save, then writes the bundle there; `None` when the person cancelled.
#[tauri::command]
pub async fn create_diagnostics_bundle(app: AppHandle, window: Window) -> Result<Option<BundleWritten>, ErrorInfo> {
    write_bundle(&app, Some(&window)).await
}

/// The tray's menu item: the same, with the outcome in a message box (there may be no window).
pub fn from_tray(app: &AppHandle) {
    let app = app.clone();
    // Until the message that says where it went is dismissed.
    let busy = crate::tray_restart::busy();
    tauri::async_runtime::spawn(async move {
        let (kind, text) = match write_bundle(&app, None).await {
            Ok(None) => return,
            Ok(Some(written)) if written.problems.is_empty() => {
                (MessageDialogKind::Info, format!("Saved to {}. Send it to your support.", written.path))
            }
            Ok(Some(written)) => (
                MessageDialogKind::Warning,
                format!("Saved to {}. The connection tests found:\n{}", written.path, written.problems.join("\n")),
            ),
            Err(e) => (MessageDialogKind::Error, e.message),
        };
        app.dialog().message(text).title("Diagnostics bundle").kind(kind).show(move |_| drop(busy));
    });
}

async fn write_bundle(app: &AppHandle, window: Option<&Window>) -> Result<Option<BundleWritten>, ErrorInfo> {
    let engine = app.try_state::<Engine>().ok_or_else(|| ErrorInfo {
        code: "not_started".into(),
        message: "Dropship has not started (a damaged file in the data folder): fix that first.".into(),
    })?;
    let (tx, rx) = oneshot::channel();
    let mut dialog = app.dialog().file().set_title("Save a diagnostics bundle");
    if let Some(window) = window {
        dialog = dialog.set_parent(window);
    }
    dialog.add_filter("Zip", &["zip"]).set_file_name("dropship-diagnostics.zip").save_file(move |picked| {
        let _ = tx.send(picked);
    });
    let Some(target) = rx.await.ok().flatten() else { return Ok(None) };
    let path = crate::commands::local_path(target)?;
    let watch_status = app.try_state::<Watcher>().map(|w| w.status());
    let options = BundleOptions { program: "desktop".into(), watch_status, ..Default::default() };
    let bundle = create_bundle(&engine, &path, options).await.map_err(|e| e.info())?;
    let problems = bundle.probes.iter().filter(|p| !p.ok).map(|p| format!("{} {}: {}", p.what, p.target, p.result));
    Ok(Some(BundleWritten { path: bundle.path.display().to_string(), problems: problems.collect() }))
}
