//! The Dropship desktop shell: opens the core's [`Engine`], hands the window a few commands,
//! forwards the engine's events, and turns native file drops into uploads. Everything that
//! uploads or remembers lives in `dropship-core`; this crate only translates.

mod commands;
mod events;
mod notify;
mod prefs;

use dropship_core::{default_data_dir, Engine, Source};
use tauri::{DragDropEvent, Emitter, Manager, RunEvent, Window, WindowEvent};
use tracing_subscriber::EnvFilter;

pub fn run() {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("DROPSHIP_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();

    let app = tauri::Builder::default()
        .plugin(tauri_plugin_dialog::init())
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_opener::init())
        .setup(|app| {
            let data_dir = default_data_dir();
            let runtime = tauri::async_runtime::handle().inner().clone();
            let engine = Engine::open(&data_dir, runtime)?;
            tracing::info!(data_dir = %data_dir.display(), "engine opened");
            // A second connection to the same history, for the window's queries and exports.
            app.manage(dropship_core::store::Store::open(&data_dir.join(dropship_core::config::HISTORY_FILE))?);
            app.manage(prefs::Prefs::load(&data_dir));
            app.manage(events::Forwarder::start(app.handle().clone(), engine.subscribe()));
            app.manage(engine);
            Ok(())
        })
        .on_window_event(on_window_event)
        .invoke_handler(tauri::generate_handler![
            commands::get_settings,
            commands::save_settings,
            commands::test_connection,
            commands::list_history,
            commands::pick_files,
            commands::pick_folder,
            commands::pause_upload,
            commands::resume_upload,
            commands::cancel_upload,
            commands::pause_all,
            commands::resume_all,
            commands::cancel_all,
            commands::save_settings_token_in_file,
            commands::get_token_storage,
            commands::get_prefs,
            commands::save_prefs,
            commands::export_history_csv,
            commands::retry_uploads,
            commands::reveal_upload,
        ])
        .build(tauri::generate_context!())
        .expect("the Dropship window could not be created");

    app.run(|app, event| {
        if let RunEvent::Exit = event {
            // Let running batches stop cleanly (their rows stay resumable in the history).
            if let Some(engine) = app.try_state::<Engine>() {
                tauri::async_runtime::block_on(engine.shutdown());
            }
            if let Some(forwarder) = app.try_state::<events::Forwarder>() {
                forwarder.stop();
            }
        }
    });
}

/// Native drag and drop: the paths go from the window system straight to the engine, so the
/// webview never gets to name files to read. The webview only learns whether to highlight.
fn on_window_event(window: &Window, event: &WindowEvent) {
    let WindowEvent::DragDrop(drag) = event else { return };
    let state = match drag {
        DragDropEvent::Enter { .. } => events::DragState::Enter,
        DragDropEvent::Leave => events::DragState::Leave,
        // Dragged text or links carry no paths: nothing to upload.
        DragDropEvent::Drop { paths, .. } if paths.is_empty() => events::DragState::Leave,
        DragDropEvent::Drop { paths, .. } => {
            let batch_id = window.state::<Engine>().submit(paths.clone(), Source::Window);
            tracing::info!(%batch_id, paths = paths.len(), "dropped onto the window");
            events::DragState::Drop
        }
        // `Over` fires on every mouse move; the highlight needs only enter and leave.
        _ => return,
    };
    if let Err(e) = window.emit(events::DRAG_EVENT, state) {
        tracing::warn!("could not tell the window about the drag: {e}");
    }
}
