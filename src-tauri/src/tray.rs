//! Background sync from the tray: closing the window keeps Dropship running; the tray icon and
//! its first menu line show the state (folded by the core's `ActivityTracker`), and the menu
//! pauses, resumes, opens the window or quits. Started at login with `--hidden`, the app shows
//! only this.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dropship_core::activity::{Activity, ActivityState, ActivityTracker, TrayCommand};
use dropship_core::updates::UpdateStatus;
use dropship_core::{Engine, Watcher};
use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::window::{ProgressBarState, ProgressBarStatus};
use tauri::{AppHandle, Manager, Wry};
use tokio::sync::broadcast::error::RecvError;

/// The argument autostart launches the app with: start in the tray, without a window.
pub const HIDDEN_ARG: &str = "--hidden";
const OPEN: &str = "open";
const DIAGNOSE: &str = "diagnose";
const RESTART_TO_UPDATE: &str = "restart_to_update";
const QUIT: &str = "quit";
/// The watcher's folder states (a folder going missing) are not events: look this often.
const WATCH_STATUS_EVERY: Duration = Duration::from_secs(2);

/// Kept in app state so the tray lives as long as the app.
pub struct Tray {
    _icon: TrayIcon,
    task: tauri::async_runtime::JoinHandle<()>,
    menu: Menu<Wry>,
    /// In the menu only while a downloaded, verified update waits.
    restart_to_update: MenuItem<Wry>,
    restart_shown: Mutex<bool>,
    /// What the icon shows now; `None` until the first look.
    showing: Arc<Mutex<Option<ActivityState>>>,
}

impl Tray {
    pub fn stop(&self) {
        self.task.abort();
    }

    /// The state the icon shows: idle only when nothing runs, waits, is paused or went wrong.
    pub fn showing(&self) -> Option<ActivityState> {
        *self.showing.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub fn start(app: &AppHandle, engine: &Engine) -> tauri::Result<Tray> {
    let status = MenuItem::with_id(app, "status", "Dropship — up to date", false, None::<&str>)?;
    // Enabled only while a metered connection or battery holds uploads.
    let upload_anyway = MenuItem::with_id(app, TrayCommand::UPLOAD_ANYWAY, "Upload anyway", false, None::<&str>)?;
    let menu = Menu::with_items(
        app,
        &[
            &status,
            &PredefinedMenuItem::separator(app)?,
            &MenuItem::with_id(app, TrayCommand::PAUSE_ALL, "Pause all", true, None::<&str>)?,
            &MenuItem::with_id(app, TrayCommand::RESUME_ALL, "Resume all", true, None::<&str>)?,
            &upload_anyway,
            &PredefinedMenuItem::separator(app)?,
            &MenuItem::with_id(app, OPEN, "Open Dropship", true, None::<&str>)?,
            &MenuItem::with_id(app, DIAGNOSE, "Create diagnostics bundle…", true, None::<&str>)?,
            &MenuItem::with_id(app, QUIT, "Quit", true, None::<&str>)?,
        ],
    )?;
    let icon = TrayIconBuilder::with_id("dropship")
        .icon(icon_for(ActivityState::Idle)?)
        .tooltip("Dropship — up to date")
        .menu(&menu)
        .on_menu_event(|app, event| on_menu(app, event.id().as_ref()))
        .build(app)?;
    let showing = Arc::default();
    let task = tauri::async_runtime::spawn(follow(
        app.clone(),
        engine.clone(),
        icon.clone(),
        status,
        upload_anyway,
        Arc::clone(&showing),
    ));
    let restart_to_update = MenuItem::with_id(app, RESTART_TO_UPDATE, "Restart to update", true, None::<&str>)?;
    Ok(Tray { _icon: icon, task, menu, restart_to_update, restart_shown: Mutex::new(false), showing })
}

fn on_menu(app: &AppHandle, id: &str) {
    if let Some(command) = TrayCommand::from_menu_id(id) {
        command.apply(&app.state::<Engine>());
    } else if id == OPEN {
        crate::main_window::show(app);
    } else if id == DIAGNOSE {
        crate::diagnose::from_tray(app);
    } else if id == RESTART_TO_UPDATE {
        // A failure is in the update status, which Settings shows.
        let _ = crate::updates::restart_to_update(app);
    } else if id == QUIT {
        app.exit(0);
    }
}

/// *Restart to update to X* appears under the status line once an update is ready.
pub fn show_update(app: &AppHandle, status: &UpdateStatus) {
    let Some(tray) = app.try_state::<Tray>() else { return };
    let mut shown = tray.restart_shown.lock().unwrap_or_else(|p| p.into_inner());
    match status {
        UpdateStatus::Ready { version, .. } if !*shown => {
            let _ = tray.restart_to_update.set_text(format!("Restart to update to {version}"));
            *shown = tray.menu.insert(&tray.restart_to_update, 1).is_ok();
        }
        UpdateStatus::Ready { .. } => {}
        _ if *shown => *shown = tray.menu.remove(&tray.restart_to_update).is_err(),
        _ => {}
    }
}

/// Keeps the icon and the status line in step with the engine and the watcher.
async fn follow(
    app: AppHandle,
    engine: Engine,
    icon: TrayIcon,
    status: MenuItem<Wry>,
    upload_anyway: MenuItem<Wry>,
    showing: Arc<Mutex<Option<ActivityState>>>,
) {
    let mut events = engine.subscribe();
    let mut tracker = ActivityTracker::new(engine.is_paused());
    tracker.apply(&dropship_core::Event::HoldsChanged { holds: engine.holds() });
    let mut shown: Option<Activity> = None;
    let mut every = tokio::time::interval(WATCH_STATUS_EVERY);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => tracker.apply(&event),
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            _ = every.tick() => {}
        }
        let watch = app.try_state::<Watcher>().map(|w| w.status());
        let activity = tracker.activity(watch.as_ref());
        if shown.as_ref() == Some(&activity) {
            continue;
        }
        let label = activity.label();
        if shown.as_ref().map(|s| s.state) != Some(activity.state) {
            match icon_for(activity.state) {
                Ok(image) => drop(icon.set_icon(Some(image))),
                Err(e) => tracing::warn!("could not set the tray icon: {e}"),
            }
        }
        let _ = icon.set_tooltip(Some(&label));
        let _ = status.set_text(&label);
        let _ = upload_anyway.set_enabled(engine.holds().holds_anything());
        let bar = IconBar::of(&activity);
        if shown.as_ref().map(IconBar::of) != Some(bar) {
            if let Some(window) = app.get_webview_window("main") {
                // Docks without the Unity launcher API (most Linux ones) ignore it.
                if let Err(e) = window.set_progress_bar(bar.state()) {
                    tracing::debug!("could not show progress on the taskbar icon: {e}");
                }
            }
        }
        *showing.lock().unwrap_or_else(|p| p.into_inner()) = Some(activity.state);
        shown = Some(activity);
    }
}

fn icon_for(state: ActivityState) -> tauri::Result<Image<'static>> {
    let bytes: &'static [u8] = match state {
        ActivityState::Idle => include_bytes!("../icons/tray-idle.png"),
        ActivityState::Uploading => include_bytes!("../icons/tray-uploading.png"),
        ActivityState::Paused => include_bytes!("../icons/tray-paused.png"),
        ActivityState::Offline => include_bytes!("../icons/tray-offline.png"),
        ActivityState::Error => include_bytes!("../icons/tray-error.png"),
    };
    Image::from_bytes(bytes)
}

/// The taskbar (Windows), dock (macOS) or launcher (Unity API on Linux) icon's bar: the run's
/// bytes while it runs, in the paused colour while paused or offline, gone otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IconBar {
    Hidden,
    Running(u8),
    Held(u8),
}

impl IconBar {
    fn of(activity: &Activity) -> IconBar {
        match (activity.state, activity.percent) {
            (ActivityState::Uploading, Some(percent)) => IconBar::Running(percent),
            (ActivityState::Paused | ActivityState::Offline, Some(percent)) => IconBar::Held(percent),
            _ => IconBar::Hidden,
        }
    }

    fn state(self) -> ProgressBarState {
        let (status, progress) = match self {
            IconBar::Hidden => (ProgressBarStatus::None, None),
            IconBar::Running(percent) => (ProgressBarStatus::Normal, Some(percent.into())),
            IconBar::Held(percent) => (ProgressBarStatus::Paused, Some(percent.into())),
        };
        ProgressBarState { status: Some(status), progress }
    }
}
