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
/// Something committed to the history, possibly another process (the CLI, `dropship watch`).
pub const HISTORY_CHANGED_EVENT: &str = "dropship://history-changed";
/// How often gathered events go to the window: at most ten updates a second.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// At most this many queued files in one list (see [`Pending::take`]).
const QUEUED_PER_LIST: usize = 1000;

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

    /// The events for one list to the window. A big drop's queued files are split across
    /// lists of at most [`QUEUED_PER_LIST`]: 10,000 files in one list took the page ~450 ms to
    /// parse and apply (one frozen frame); a thousand at a time cost a frame each. What follows
    /// a split waits for the next list, so the window never hears of a file before it is listed.
    fn take(&mut self) -> Vec<Event> {
        self.progress_at.clear();
        let mut events = std::mem::take(&mut self.events).into_iter();
        let mut list = Vec::new();
        let mut budget = QUEUED_PER_LIST;
        while let Some(event) = events.next() {
            match event {
                Event::FilesQueued { batch_id, mut files } if files.len() > budget => {
                    let rest = files.split_off(budget);
                    list.push(Event::FilesQueued { batch_id: batch_id.clone(), files });
                    self.push(Event::FilesQueued { batch_id, files: rest });
                    events.for_each(|later| self.push(later));
                    break;
                }
                Event::FilesQueued { batch_id, files } => {
                    budget -= files.len();
                    list.push(Event::FilesQueued { batch_id, files });
                }
                other => list.push(other),
            }
        }
        list
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

    fn queued(ids: std::ops::Range<usize>) -> Event {
        let files = ids
            .map(|i| dropship_core::QueuedFile {
                upload_id: i.to_string(),
                path: format!("/f/{i}").into(),
                file_name: i.to_string(),
                size: 1,
            })
            .collect();
        Event::FilesQueued { batch_id: "b".into(), files }
    }

    fn listed(list: &[Event]) -> usize {
        list.iter().map(|e| if let Event::FilesQueued { files, .. } = e { files.len() } else { 0 }).sum()
    }

    #[test]
    fn a_big_drop_is_listed_a_thousand_files_at_a_time_and_what_follows_waits_its_turn() {
        let mut pending = Pending::default();
        pending.push(queued(0..2_500));
        pending.push(progress("7", 1));
        pending.push(progress("2400", 1));
        let first = pending.take();
        assert_eq!((first.len(), listed(&first)), (1, QUEUED_PER_LIST), "only files, and no more than the limit");
        pending.push(progress("2400", 2));
        let second = pending.take();
        assert_eq!((second.len(), listed(&second)), (1, QUEUED_PER_LIST));
        let third = pending.take();
        assert_eq!(listed(&third), 500, "the rest of the files");
        let progress: Vec<_> = third[1..].iter().map(|e| format!("{e:?}")).collect();
        assert_eq!(progress.len(), 2, "then the progress, still one per file: {progress:?}");
        assert!(progress[1].contains("bytes_done: 2"), "at its latest: {progress:?}");
        assert!(pending.take().is_empty());
    }
}
