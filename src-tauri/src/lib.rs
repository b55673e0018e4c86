//! The Dropship desktop shell: opens the core's [`Engine`], hands the window a few commands,
//! forwards the engine's events, and turns native file drops into uploads. Everything that
//! uploads or remembers lives in `dropship-core`; this crate only translates.

mod commands;
mod diagnose;
mod events;
mod footprint;
mod locale;
mod main_window;
mod notify;
mod prefs;
mod recovery;
mod tray;
mod tray_restart;
mod updates;
mod watch_commands;

use dropship_core::store::{HistoryChanges, CHANGE_POLL_INTERVAL};
use dropship_core::{default_data_dir, DamagedFile, Engine, Source, WatchSettings, Watcher};
use tauri::{DragDropEvent, Emitter, Manager, RunEvent, Window, WindowEvent};

/// The engine's own threads, a notch below the window's in the scheduler (Linux: nice 10, set
/// per thread). Uploads are background work: when the CPU is short (hashing, TLS and SQLite
/// while thousands of files go up), drawing the window and answering the person come first.
/// With CPU to spare, niceness changes nothing, so uploads are no slower on an idle machine.
fn engine_runtime() -> std::io::Result<tokio::runtime::Handle> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("dropship-engine")
        .enable_all()
        .on_thread_start(|| {
            #[cfg(target_os = "linux")]
            // SAFETY: changes only this thread's scheduling priority; no memory is touched.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
            }
        })
        .build()?;
    let handle = runtime.handle().clone();
    // It lives as long as the app (dropping a runtime from inside another one panics).
    std::mem::forget(runtime);
    Ok(handle)
}

/// "Dropship — alice@example.com" while someone is signed in, so whose uploads these are is
/// always in sight.
pub(crate) fn show_user_in_title(window: &tauri::WebviewWindow, user: Option<&str>) {
    let title = match user {
        Some(user) => format!("Dropship — {user}"),
        None => "Dropship".to_owned(),
    };
    if let Err(e) = window.set_title(&title) {
        tracing::warn!("could not set the window title: {e}");
    }
}

pub fn run() {
    tray_restart::after_restart();
    footprint::before_gtk_starts();
    if let Err(problem) = dropship_core::logging::init(&default_data_dir(), "desktop", Some("info")) {
        eprintln!("dropship: {problem}");
    }

    let app = tauri::Builder::default()
        // First, so a second launch hands over before anything else starts.
        .plugin(single_instance())
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            Some(vec![tray::HIDDEN_ARG]),
        ))
        .plugin(tauri_plugin_dialog::init())
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_opener::init())
        // The key comes from `updates::update_key` when checking, not from the config.
        .plugin(tauri_plugin_updater::Builder::new().build())
        .setup(|app| {
            let carried = tray_restart::carried();
            app.manage(updates::Updates::new(carried.and_then(|c| c.updates.as_ref())));
            app.manage(main_window::LastPlace::carried(carried));
            app.manage(commands::SessionStart::carried_or_now(carried));
            // A damaged settings file or history opens the window on the recovery screen
            // rather than stopping the app.
            let damaged = start(app.handle())?;
            let hidden = std::env::args().any(|a| a == tray::HIDDEN_ARG);
            if damaged.is_some() || !hidden {
                main_window::show(app.handle());
            } else {
                footprint::no_window_now(app.handle(), footprint::NoWindow::NeverBuilt);
            }
            app.manage(recovery::Recovery(std::sync::Mutex::new(damaged)));
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
            commands::get_holds,
            commands::upload_anyway,
            commands::window_session,
            watch_commands::list_watched_folders,
            watch_commands::add_watched_folder,
            watch_commands::update_watched_folder,
            watch_commands::remove_watched_folder,
            watch_commands::watch_status,
            watch_commands::get_start_at_login,
            watch_commands::set_start_at_login,
            commands::save_settings_token_in_file,
            commands::get_token_storage,
            commands::sign_in_state,
            commands::sign_in,
            commands::sign_out,
            commands::token_is_set,
            commands::get_prefs,
            commands::save_prefs,
            commands::export_history_csv,
            commands::retry_uploads,
            commands::reveal_upload,
            diagnose::create_diagnostics_bundle,
            recovery::get_damaged_file,
            recovery::move_damaged_aside,
            recovery::open_data_folder,
            updates::get_update_state,
            updates::check_for_updates,
            updates::install_update_and_restart,
            updates::save_update_source,
            locale::system_locale,
        ])
        .build(tauri::generate_context!())
        .expect("the Dropship window could not be created");

    app.run(|app, event| match event {
        // The last window closed: Dropship syncs on from the tray, and Quit there ends it. On
        // the recovery screen nothing runs and there is no tray: closing it quits.
        RunEvent::ExitRequested { code: None, api, .. } if app.try_state::<Engine>().is_some() => api.prevent_exit(),
        RunEvent::Exit => stop_background_work(app),
        _ => {}
    });
}

/// What the app's exit stops, in order: the watched folders, the tray's follower, the running
/// batches (their rows stay resumable in the history), the events to the window.
pub(crate) fn stop_background_work(app: &tauri::AppHandle) {
    if let Some(watcher) = app.try_state::<Watcher>() {
        tauri::async_runtime::block_on(watcher.stop(std::time::Duration::from_secs(5)));
    }
    if let Some(tray) = app.try_state::<tray::Tray>() {
        tray.stop();
    }
    if let Some(engine) = app.try_state::<Engine>() {
        tauri::async_runtime::block_on(engine.shutdown());
    }
    if let Some(forwarder) = app.try_state::<events::Forwarder>() {
        forwarder.stop();
    }
}

/// Opens the engine and starts everything that hangs off it. `Ok(Some(file))` when a file in
/// the data folder is damaged: nothing is started, and the window offers to move it aside.
pub(crate) fn start(app: &tauri::AppHandle) -> Result<Option<DamagedFile>, dropship_core::Error> {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Handle> = std::sync::OnceLock::new();
    let data_dir = default_data_dir();
    // One runtime for the app's life, also when the first start stopped at a damaged file.
    let runtime = match RUNTIME.get() {
        Some(runtime) => runtime.clone(),
        None => {
            let runtime = engine_runtime()
                .map_err(|e| dropship_core::Error::Internal(format!("the engine's threads could not start: {e}")))?;
            RUNTIME.get_or_init(|| runtime).clone()
        }
    };
    let engine = match Engine::open(&data_dir, runtime) {
        Ok(engine) => engine,
        Err(e) => {
            let damaged = DamagedFile::from_error(&e).ok_or(e)?;
            tracing::error!(path = %damaged.path, "a file in the data folder is damaged: {}", damaged.detail);
            return Ok(Some(damaged));
        }
    };
    tracing::info!(data_dir = %data_dir.display(), "engine opened");
    // A second connection to the same history, for the window's queries and exports.
    let history = data_dir.join(dropship_core::config::HISTORY_FILE);
    app.manage(dropship_core::store::Store::open(&history)?);
    // Uploads by the CLI or `dropship watch` show in the open window's history too.
    let window = app.clone();
    match HistoryChanges::watch(&history, CHANGE_POLL_INTERVAL, move || {
        let _ = window.emit(events::HISTORY_CHANGED_EVENT, ());
    }) {
        Ok(changes) => {
            app.manage(changes);
        }
        Err(e) => tracing::warn!("the history will not follow other processes' uploads: {e}"),
    }
    app.manage(prefs::Prefs::load(&data_dir));
    app.manage(events::Forwarder::start(app.clone(), engine.subscribe()));
    // Uploads that a crash, a kill or a power cut interrupted carry on where they stopped.
    match engine.submit_interrupted() {
        Ok(0) => {}
        Ok(count) => tracing::info!(count, "resuming interrupted uploads"),
        Err(e) => tracing::warn!("could not look for interrupted uploads: {e}"),
    }
    start_background_sync(app, &engine, &data_dir);
    updates::check_periodically(app);
    // After the recovery screen the window is already open.
    if let Some(window) = app.get_webview_window("main") {
        show_user_in_title(&window, engine.signed_in_user().as_deref());
    }
    app.manage(engine);
    Ok(None)
}

/// The window's close (see `main_window`) and its native file drops.
fn on_window_event(window: &Window, event: &WindowEvent) {
    match event {
        WindowEvent::CloseRequested { .. } => main_window::remember_place(window),
        WindowEvent::Destroyed => footprint::no_window_now(window.app_handle(), footprint::NoWindow::Closed),
        WindowEvent::DragDrop(drag) => on_drag(window, drag),
        _ => {}
    }
}

/// Native drag and drop: the paths go from the window system straight to the engine, so the
/// webview never gets to name files to read. The webview only learns whether to highlight.
fn on_drag(window: &Window, drag: &DragDropEvent) {
    let state = match drag {
        DragDropEvent::Enter { .. } => events::DragState::Enter,
        DragDropEvent::Leave => events::DragState::Leave,
        // Dragged text or links carry no paths: nothing to upload.
        DragDropEvent::Drop { paths, .. } if paths.is_empty() => events::DragState::Leave,
        DragDropEvent::Drop { paths, .. } => {
            // No engine while the recovery screen shows: nothing to upload with.
            let Some(engine) = window.try_state::<Engine>() else { return };
            let batch_id = engine.submit(paths.clone(), Source::Window);
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

/// Watched folders and the tray. A problem here is logged and leaves the window working.
fn start_background_sync(app: &tauri::AppHandle, engine: &Engine, data_dir: &std::path::Path) {
    let settings = WatchSettings::load(data_dir).unwrap_or_else(|e| {
        tracing::error!("watched folders not started: {e}");
        WatchSettings::default()
    });
    match Watcher::start(engine.clone(), settings, tauri::async_runtime::handle().inner()) {
        Ok(watcher) => drop(app.manage(watcher)),
        Err(e) => tracing::error!("watched folders not started: {e}"),
    }
    match tray::start(app, engine) {
        Ok(tray) => drop(app.manage(tray)),
        Err(e) => tracing::warn!("no tray icon (the desktop may not offer one): {e}"),
    }
}

/// A second launch shows the running app's window instead of starting another. Apps with
/// different data folders (DROPSHIP_DATA_DIR) are different instances.
fn single_instance() -> tauri::plugin::TauriPlugin<tauri::Wry> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    default_data_dir().hash(&mut hasher);
    tauri_plugin_single_instance::Builder::new()
        .dbus_id(format!("dev.dropship.desktop.d{:016x}", hasher.finish()))
        .callback(|app, _args, _cwd| main_window::show(app))
        .build()
}
