//! From the engine to the webview: every core [`Event`] goes out unchanged on one event name,
//! plus the drag highlight and a resync hint when the window fell behind.

use dropship_core::Event;
use serde::Serialize;
use tauri::async_runtime::JoinHandle;
use tauri::{AppHandle, Emitter};
use tokio::sync::broadcast::{error::RecvError, Receiver};

/// Carries a serialised [`dropship_core::Event`] (tagged by `type`).
pub const ENGINE_EVENT: &str = "dropship://event";
/// Carries a [`DragState`].
pub const DRAG_EVENT: &str = "dropship://drag";
/// Tells the window it missed events and should reload what it shows from the history.
pub const RESYNC_EVENT: &str = "dropship://resync";

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DragState {
    Enter,
    Leave,
    Drop,
}

/// The task that relays engine events to the webview; stopped when the app exits.
pub struct Forwarder {
    task: JoinHandle<()>,
}

impl Forwarder {
    pub fn start(app: AppHandle, mut events: Receiver<Event>) -> Forwarder {
        let task = tauri::async_runtime::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => {
                        if let Err(e) = app.emit(ENGINE_EVENT, &event) {
                            tracing::warn!("could not forward an engine event: {e}");
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "the window fell behind the engine's events");
                        let _ = app.emit(RESYNC_EVENT, missed);
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        });
        Forwarder { task }
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}
