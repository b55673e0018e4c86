//! The main window comes and goes; the app stays. Closing it destroys the webview, so WebKit's
//! web process exits and gives its memory back while Dropship syncs from the tray (hiding it
//! kept ~250 MiB alive). *Open Dropship* builds it again from the app's config, where it was.

use std::sync::Mutex;

use dropship_core::Engine;
use tauri::{AppHandle, Manager, PhysicalPosition, PhysicalSize, WebviewWindow, Window};

/// The label in tauri.conf.json, which the capability in capabilities/main.json names.
const LABEL: &str = "main";

/// Where the window was when it was closed, so that it opens there again. In memory, and
/// carried over when the app starts over in the tray (`tray_restart`); after a quit or a
/// reboot it opens where the config puts it, as it always has.
pub struct LastPlace(Mutex<Option<(PhysicalPosition<i32>, PhysicalSize<u32>)>>);

impl LastPlace {
    /// Where the process before a restart in the tray last had the window, if it had one.
    pub fn carried(carried: Option<&crate::tray_restart::Carried>) -> LastPlace {
        let place = carried
            .and_then(|c| c.window_place)
            .map(|(x, y, width, height)| (PhysicalPosition::new(x, y), PhysicalSize::new(width, height)));
        LastPlace(Mutex::new(place))
    }
}

/// Where the window was when it was last closed, as (x, y, width, height).
pub fn last_place(app: &AppHandle) -> Option<(i32, i32, u32, u32)> {
    let place = *app.state::<LastPlace>().0.lock().unwrap_or_else(|p| p.into_inner());
    place.map(|(position, size)| (position.x, position.y, size.width, size.height))
}

/// Shows the window, building it first when it was closed (or never opened: a login start).
pub fn show(app: &AppHandle) {
    crate::footprint::window_opening();
    if let Some(window) = app.get_webview_window(LABEL) {
        return bring_forward(&window);
    }
    // Built off the event loop's thread, which calls this from the tray menu and the
    // single-instance hand-over: on Windows, building a webview from an event handler
    // deadlocks (wry#583). One path on every platform, the one the tests take. The thread ends
    // once the window is up.
    let app = app.clone();
    let spawned = std::thread::Builder::new().name("open-window".into()).spawn(move || match build(&app) {
        Ok(window) => bring_forward(&window),
        Err(e) => tracing::error!("could not open the window: {e}"),
    });
    if let Err(e) = spawned {
        tracing::error!("could not open the window: {e}");
    }
}

fn bring_forward(window: &WebviewWindow) {
    let _ = window.unminimize();
    let _ = window.show();
    let _ = window.set_focus();
}

/// Built hidden (the config says `visible: false`), so it appears once, in its place.
fn build(app: &AppHandle) -> tauri::Result<WebviewWindow> {
    let config = app.config().app.windows.iter().find(|w| w.label == LABEL).ok_or(tauri::Error::WindowNotFound)?;
    let window = tauri::WebviewWindowBuilder::from_config(app, config)?.build()?;
    let last = *app.state::<LastPlace>().0.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((position, size)) = last {
        let _ = window.set_size(size);
        let _ = window.set_position(position);
    }
    // No engine on the recovery screen, so nobody signed in to name.
    if let Some(engine) = app.try_state::<Engine>() {
        crate::show_user_in_title(&window, engine.signed_in_user().as_deref());
    }
    Ok(window)
}

/// Before the window goes: where it is, for [`show`] to put it back.
pub fn remember_place(window: &Window) {
    if let (Ok(position), Ok(size)) = (window.outer_position(), window.inner_size()) {
        *window.state::<LastPlace>().0.lock().unwrap_or_else(|p| p.into_inner()) = Some((position, size));
    }
}
