//! From the engine to the webview. Engine events are gathered and sent ten times a second as
//! one list, with each file's progress reduced to its latest value, so 10,000 queued files or
//! a fast upload cost the window at most ~10 updates a second. Plus the drag highlight, a
//! resync hint when the window fell behind, and one notification per finished batch.

use std::collections::HashMap;
use std::time::Duration;

use dropship_core::Event;
use serde::Serialize;
use tauri::async_runtime::JoinHandle;
use tauri::{AppHandle, Emitter, Manager};
use tokio::sync::broadcast::{error::RecvError, Receiver};

use crate::notify;
use crate::prefs::Prefs;

/// Carries a list of serialised [`dropship_core::Event`]s (each tagged by `type`), in order.
pub const ENGINE_EVENTS: &str = "dropship://events";
/// Carries a [`DragState`].
pub const DRAG_EVENT: &str = "dropship://drag";
/// Tells the window it missed events and should reload what it shows from the history.
pub const RESYNC_EVENT: &str = "dropship://resync";
/// How often gathered events go to the window: at most ten updates a second.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DragState {
    Enter,
    Leave,
    Drop,
}

/// Events waiting for the next flush; a file's newer progress replaces its older one in place.
#[derive(Default)]
struct Pending {
    events: Vec<Event>,
    progress_at: HashMap<String, usize>,
}

impl Pending {
    fn push(&mut self, event: Event) {
        if let Event::FileProgress { upload_id, .. } = &event {
            if let Some(&at) = self.progress_at.get(upload_id) {
                self.events[at] = event;
                return;
            }
            self.progress_at.insert(upload_id.clone(), self.events.len());
        }
        self.events.push(event);
    }

    fn take(&mut self) -> Vec<Event> {
        self.progress_at.clear();
        std::mem::take(&mut self.events)
    }
}

/// The task that relays engine events to the webview; stopped when the app exits.
pub struct Forwarder {
    task: JoinHandle<()>,
}

impl Forwarder {
    pub fn start(app: AppHandle, mut events: Receiver<Event>) -> Forwarder {
        let task = tauri::async_runtime::spawn(async move {
            let mut pending = Pending::default();
            let mut ticker = tokio::time::interval(FLUSH_INTERVAL);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    received = events.recv() => match received {
                        Ok(event) => {
                            if app.state::<Prefs>().get().notifications {
                                notify::batch_done(&app, &event);
                            }
                            pending.push(event);
                        }
                        Err(RecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "the window fell behind the engine's events");
                            let _ = app.emit(RESYNC_EVENT, missed);
                        }
                        Err(RecvError::Closed) => break,
                    },
                    _ = ticker.tick() => {
                        if !pending.events.is_empty() {
                            if let Err(e) = app.emit(ENGINE_EVENTS, pending.take()) {
                                tracing::warn!("could not forward engine events: {e}");
                            }
                        }
                    }
                }
            }
        });
        Forwarder { task }
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(id: &str, done: u64) -> Event {
        Event::FileProgress { upload_id: id.into(), bytes_done: done, total: 100, bytes_per_second: 1 }
    }

    #[test]
    fn a_files_progress_is_reduced_to_its_latest_value_in_place() {
        let mut pending = Pending::default();
        pending.push(progress("a", 1));
        pending.push(progress("b", 1));
        pending.push(progress("a", 2));
        pending.push(Event::FilePaused { upload_id: "a".into() });
        let sent = pending.take();
        assert_eq!(sent.len(), 3, "one progress per file, plus the pause: {sent:?}");
        assert!(matches!(&sent[0], Event::FileProgress { upload_id, bytes_done: 2, .. } if upload_id == "a"));
        assert!(matches!(&sent[2], Event::FilePaused { .. }), "order is kept");
        assert!(pending.take().is_empty());
    }
}
