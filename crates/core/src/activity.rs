//! What the tray shows: one state (idle, uploading n of m, paused, offline, error) folded from
//! the engine's events and the watcher's status, and the tray menu's commands. Kept here, not
//! in the desktop shell, so it is tested against a real engine without a window.

use std::collections::HashSet;

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
                }
                for file in files {
                    self.running.insert(file.upload_id.clone());
                    self.total += 1;
                }
            }
            Event::FileProgress { upload_id, .. } | Event::FileResumed { upload_id } => {
                self.offline.remove(upload_id);
            }
            Event::FileRetrying { upload_id, offline, .. } => {
                if *offline {
                    self.offline.insert(upload_id.clone());
                } else {
                    self.offline.remove(upload_id);
                }
            }
            Event::FileUploaded { upload_id, .. } => self.finish(upload_id),
            Event::FileFailed { upload_id, error, .. } => {
                self.finish(upload_id);
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

    fn finish(&mut self, upload_id: &str) {
        if self.running.remove(upload_id) {
            self.done += 1;
        }
        self.offline.remove(upload_id);
    }

    pub fn activity(&self, watch: Option<&WatchStatus>) -> Activity {
        let mut activity = Activity { state: ActivityState::Idle, done: self.done, total: self.total, message: None };
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
