//! What the tray shows: one state (idle, uploading n of m, paused, offline, error) folded from
//! the engine's events and the watcher's status, and the tray menu's commands. Kept here, not
//! in the desktop shell, so it is tested against a real engine without a window.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::watch::{FolderState, WatchStatus};
use crate::{Engine, Event};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum ActivityState {
    Idle,
    Uploading,
    Paused,
    /// Every running upload is waiting for the network to come back.
    Offline,
    /// Something needs a look: files failed, the backend refused, a watched folder is missing.
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct Activity {
    pub state: ActivityState,
    /// Files finished and files in the current run, while uploading.
    pub done: u32,
    pub total: u32,
    /// What went wrong, for the error state.
    pub message: Option<String>,
    /// How far the current run is, by bytes (0–100), while uploading, paused or offline: what
    /// the taskbar or dock icon shows.
    pub percent: Option<u8>,
}

impl Activity {
    /// The tray's tooltip and status line.
    pub fn label(&self) -> String {
        match self.state {
            ActivityState::Idle => "Dropship — up to date".into(),
            ActivityState::Uploading => format!("Uploading {} of {}", (self.done + 1).min(self.total), self.total),
            ActivityState::Paused => self.message.clone().unwrap_or_else(|| "Paused".into()),
            ActivityState::Offline => "Offline — uploads resume when the network is back".into(),
            ActivityState::Error => format!("Error: {}", self.message.as_deref().unwrap_or("open Dropship to see why")),
        }
    }
}

/// Folds engine events into the tray's state. A "run" lasts from the first file queued while
/// idle until every file queued since has finished.
#[derive(Debug, Default)]
pub struct ActivityTracker {
    running: HashSet<String>,
    offline: HashSet<String>,
    /// Each running file's size and bytes sent so far.
    progress: HashMap<String, (u64, u64)>,
    bytes_total: u64,
    /// Sent in this run, finished files included: kept as events come (the tray folds every
    /// progress event of a 10,000-file queue, so no sum over the files per event).
    bytes_sent: u64,
    total: u32,
    done: u32,
    failed: u32,
    last_error: Option<String>,
    paused: bool,
    /// "Paused: metered connection" while the machine's conditions hold uploads.
    held: Option<String>,
}

impl ActivityTracker {
    pub fn new(paused: bool) -> ActivityTracker {
        ActivityTracker { paused, ..Default::default() }
    }

    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::FilesQueued { files, .. } => {
                if self.running.is_empty() && !files.is_empty() {
                    (self.total, self.done, self.failed, self.last_error) = (0, 0, 0, None);
                    (self.bytes_total, self.bytes_sent) = (0, 0);
                }
                for file in files {
                    if self.running.insert(file.upload_id.clone()) {
                        self.total += 1;
                        self.bytes_total += file.size;
                        self.progress.insert(file.upload_id.clone(), (file.size, 0));
                    }
                }
            }
            Event::FileProgress { upload_id, bytes_done, .. } => {
                self.offline.remove(upload_id);
                if let Some((size, sent)) = self.progress.get_mut(upload_id) {
                    // `bytes_sent` holds this file's previous count (it can also go back: a part
                    // sent again after a retry).
                    let now = (*bytes_done).min(*size);
                    self.bytes_sent = self.bytes_sent - *sent + now;
                    *sent = now;
                }
            }
            Event::FileResumed { upload_id } => {
                self.offline.remove(upload_id);
            }
            Event::FileRetrying { upload_id, offline, .. } => {
                if *offline {
                    self.offline.insert(upload_id.clone());
                } else {
                    self.offline.remove(upload_id);
                }
            }
            Event::FileUploaded { upload_id, .. } => self.finish(upload_id, true),
            Event::FileFailed { upload_id, error, .. } => {
                self.finish(upload_id, false);
                if error.code != "cancelled" {
                    self.failed += 1;
                    self.last_error = Some(error.message.clone());
                }
            }
            Event::BatchFailed { error, .. } => self.last_error = Some(error.message.clone()),
            Event::QueuePaused { paused } => self.paused = *paused,
            Event::HoldsChanged { holds } => {
                self.held = holds.holds_anything().then(|| holds.message.clone()).flatten();
            }
            _ => {}
        }
    }

    fn finish(&mut self, upload_id: &str, uploaded: bool) {
        if self.running.remove(upload_id) {
            self.done += 1;
        }
        if let Some((size, sent)) = self.progress.remove(upload_id) {
            if uploaded {
                self.bytes_sent += size - sent;
            } else {
                // A failed or cancelled file sends no more: what it did not send leaves the run.
                self.bytes_total -= size - sent;
            }
        }
        self.offline.remove(upload_id);
    }

    fn percent(&self) -> Option<u8> {
        if self.running.is_empty() {
            return None;
        }
        // Empty files only: count files instead of bytes.
        let (part, whole) = if self.bytes_total == 0 {
            (u64::from(self.done), u64::from(self.total.max(1)))
        } else {
            (self.bytes_sent.min(self.bytes_total), self.bytes_total)
        };
        Some((part * 100 / whole) as u8)
    }

    pub fn activity(&self, watch: Option<&WatchStatus>) -> Activity {
        let mut activity = Activity {
            state: ActivityState::Idle,
            done: self.done,
            total: self.total,
            message: None,
            percent: self.percent(),
        };
        if self.paused {
            activity.state = ActivityState::Paused;
        } else if let Some(why) = &self.held {
            // Said even when idle: files landing in watched folders wait.
            activity.state = ActivityState::Paused;
            activity.message = Some(why.clone());
        } else if !self.running.is_empty() && self.offline.len() >= self.running.len() {
            activity.state = ActivityState::Offline;
        } else if !self.running.is_empty() {
            activity.state = ActivityState::Uploading;
        } else if let Some(problem) = self.problem(watch) {
            activity.state = ActivityState::Error;
            activity.message = Some(problem);
        }
        activity
    }

    fn problem(&self, watch: Option<&WatchStatus>) -> Option<String> {
        if let Some(error) = watch.and_then(|w| w.error.as_ref()) {
            return Some(error.message.clone());
        }
        let missing =
            watch.and_then(|w| w.folders.iter().find(|f| matches!(f.state, FolderState::Missing | FolderState::Error)));
        if let Some(folder) = missing {
            return Some(format!("the watched folder {} is not available", folder.path.display()));
        }
        match (self.failed, &self.last_error) {
            (0, None) => None,
            (0 | 1, Some(message)) => Some(message.clone()),
            (n, _) => Some(format!("{n} files failed; open Dropship to see why")),
        }
    }
}

/// The tray menu's commands that act on the engine; the shell handles "open" and "quit".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrayCommand {
    PauseAll,
    ResumeAll,
    /// Lets uploads held by a metered connection or battery go (see [`Engine::upload_anyway`]).
    UploadAnyway,
}

impl TrayCommand {
    pub const PAUSE_ALL: &'static str = "pause_all";
    pub const RESUME_ALL: &'static str = "resume_all";
    pub const UPLOAD_ANYWAY: &'static str = "upload_anyway";

    pub fn from_menu_id(id: &str) -> Option<TrayCommand> {
        match id {
            Self::PAUSE_ALL => Some(TrayCommand::PauseAll),
            Self::RESUME_ALL => Some(TrayCommand::ResumeAll),
            Self::UPLOAD_ANYWAY => Some(TrayCommand::UploadAnyway),
            _ => None,
        }
    }

    pub fn apply(self, engine: &Engine) {
        match self {
            TrayCommand::PauseAll => engine.pause_all(),
            TrayCommand::ResumeAll => engine.resume_all(),
            TrayCommand::UploadAnyway => engine.upload_anyway(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorInfo;

    fn queued(id: &str) -> Event {
        Event::FilesQueued {
            batch_id: "b".into(),
            files: vec![crate::QueuedFile { upload_id: id.into(), path: "/a".into(), file_name: "a".into(), size: 1 }],
        }
    }

    fn queued_sized(files: &[(&str, u64)]) -> Event {
        Event::FilesQueued {
            batch_id: "b".into(),
            files: files
                .iter()
                .map(|&(id, size)| crate::QueuedFile {
                    upload_id: id.into(),
                    path: "/a".into(),
                    file_name: "a".into(),
                    size,
                })
                .collect(),
        }
    }

    fn progress(id: &str, bytes_done: u64, total: u64) -> Event {
        Event::FileProgress { upload_id: id.into(), bytes_done, total, bytes_per_second: 0 }
    }

    #[test]
    fn the_icon_progress_is_by_bytes_over_the_whole_run_and_a_failed_file_leaves_it() {
        let mut tracker = ActivityTracker::default();
        assert_eq!(tracker.activity(None).percent, None, "no bar while idle");
        tracker.apply(&queued_sized(&[("small", 100), ("big", 300)]));
        assert_eq!(tracker.activity(None).percent, Some(0));
        tracker.apply(&progress("small", 50, 100));
        assert_eq!(tracker.activity(None).percent, Some(12), "50 of 400 bytes");
        tracker.apply(&Event::FileUploaded {
            upload_id: "small".into(),
            key: "k".into(),
            object_url: "u".into(),
            size: 100,
        });
        tracker.apply(&progress("big", 100, 300));
        assert_eq!(tracker.activity(None).percent, Some(50), "200 of 400 bytes");
        // A file queued mid-run joins the same bar.
        tracker.apply(&queued_sized(&[("late", 400)]));
        assert_eq!(tracker.activity(None).percent, Some(25), "200 of 800 bytes");
        // The big file fails after 100 bytes: its other 200 will never be sent.
        tracker.apply(&Event::FileFailed {
            upload_id: "big".into(),
            path: "/a".into(),
            error: ErrorInfo { code: "network".into(), message: "cut".into() },
        });
        assert_eq!(tracker.activity(None).percent, Some(33), "200 of 600 bytes");
        tracker.apply(&progress("late", 400, 400));
        assert_eq!(tracker.activity(None).percent, Some(100));
        tracker.apply(&Event::FileUploaded {
            upload_id: "late".into(),
            key: "k".into(),
            object_url: "u".into(),
            size: 400,
        });
        assert_eq!(tracker.activity(None).percent, None, "the bar goes when the run ends");
    }

    #[test]
    fn a_run_counts_up_to_its_total_and_ends_idle() {
        let mut tracker = ActivityTracker::default();
        tracker.apply(&queued("1"));
        tracker.apply(&queued("2"));
        assert_eq!(tracker.activity(None).label(), "Uploading 1 of 2");
        tracker.apply(&Event::FileUploaded { upload_id: "1".into(), key: "k".into(), object_url: "u".into(), size: 1 });
        assert_eq!(tracker.activity(None).label(), "Uploading 2 of 2");
        tracker.apply(&Event::FileUploaded { upload_id: "2".into(), key: "k".into(), object_url: "u".into(), size: 1 });
        assert_eq!(tracker.activity(None).state, ActivityState::Idle);
    }

    #[test]
    fn offline_while_every_upload_waits_for_the_network_and_error_after_a_failure() {
        let mut tracker = ActivityTracker::default();
        tracker.apply(&queued("1"));
        let reason = ErrorInfo { code: "network".into(), message: "no route".into() };
        tracker.apply(&Event::FileRetrying {
            upload_id: "1".into(),
            attempt: 1,
            retry_in_ms: 1000,
            offline: true,
            reason: reason.clone(),
        });
        assert_eq!(tracker.activity(None).state, ActivityState::Offline);
        tracker.apply(&Event::FileFailed { upload_id: "1".into(), path: "/a".into(), error: reason });
        let activity = tracker.activity(None);
        assert_eq!((activity.state, activity.message.as_deref()), (ActivityState::Error, Some("no route")));
        tracker.apply(&queued("2"));
        assert_eq!(tracker.activity(None).state, ActivityState::Uploading, "a new run clears the error");
    }

    #[test]
    fn held_uploads_show_why_even_while_idle_and_upload_anyway_clears_it() {
        let mut tracker = ActivityTracker::default();
        let state = crate::conditions::MachineState { metered: true, on_battery: false };
        let network = crate::network::NetworkSettings::default();
        let holds = crate::holds::Holds::for_conditions(state, &network, None);
        tracker.apply(&Event::HoldsChanged { holds });
        let activity = tracker.activity(None);
        assert_eq!(activity.state, ActivityState::Paused);
        assert_eq!(activity.label(), "Paused: metered connection");
        let anyway = crate::holds::Holds::for_conditions(state, &network, Some(crate::holds::HoldReason::Metered));
        tracker.apply(&Event::HoldsChanged { holds: anyway });
        assert_eq!(tracker.activity(None).state, ActivityState::Idle);
    }

    #[test]
    fn menu_ids_map_to_commands() {
        assert_eq!(TrayCommand::from_menu_id("upload_anyway"), Some(TrayCommand::UploadAnyway));
        assert_eq!(TrayCommand::from_menu_id("pause_all"), Some(TrayCommand::PauseAll));
        assert_eq!(TrayCommand::from_menu_id("quit"), None);
    }
}
