//! Watched folders: every complete file that lands in one (or appeared while Dropship was not
//! running) goes up once through the [`Engine`], with `Source::Watch`. The OS reports changes
//! (inotify, or polling where inotify cannot serve); a file counts as complete once it has been
//! quiet for the stability window and nothing is writing to it; the index in SQLite remembers
//! which version of each file went up, and a version is marked done only after the engine
//! reports it uploaded. Nothing local being deleted or moved ever deletes anything in S3.

mod edit;
mod open_files;
mod pending;
mod rules;
mod service;
mod settings;
mod walk;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::{broadcast, mpsc};

use crate::config::HISTORY_FILE;
use crate::store::Store;
use crate::{Engine, Error, ErrorInfo, FileOutcome};

pub use edit::FolderView;
pub use rules::IgnoreRules;
pub use settings::{
    AfterUpload, FolderOptions, WatchSettings, WatchedFolder, DEFAULT_IGNORE, DEFAULT_POLL_INTERVAL_MS,
    DEFAULT_STABLE_FOR_MS, WATCH_FILE,
};

/// What one watched folder is doing, for the settings list and the tray.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum FolderState {
    /// The first scan is running.
    Starting,
    /// inotify tells us about changes.
    Watching,
    /// Walked every few seconds: asked for (network shares), or inotify ran out of watches.
    Polling,
    Paused,
    /// The folder is not there (an unplugged drive); watching resumes when it comes back.
    Missing,
    Error,
}

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct FolderStatus {
    #[ts(type = "string")]
    pub path: PathBuf,
    pub state: FolderState,
    /// Why the folder is polling, missing or failing, in words for a person.
    pub detail: Option<String>,
    /// Files seen changing and not yet complete.
    pub waiting: u32,
    /// Files handed to the engine and not finished.
    pub uploading: u32,
    /// Since Dropship started.
    pub uploaded: u32,
    pub failed: u32,
}

#[derive(Debug, Clone, Default, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct WatchStatus {
    pub folders: Vec<FolderStatus>,
    /// A problem that stops every folder (no backend configured, token refused); uploads are
    /// tried again every minute.
    pub error: Option<ErrorInfo>,
}

impl WatchStatus {
    /// No folder is on its first scan, and none has files waiting to settle or uploading.
    pub fn is_quiet(&self) -> bool {
        self.folders.iter().all(|f| f.waiting == 0 && f.uploading == 0 && f.state != FolderState::Starting)
    }
}

/// What the watcher tells the shells besides the engine's own events.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// A watched file's upload ended (uploaded or failed).
    File(FileOutcome),
    /// A folder changed state (started, began polling, went missing, came back...).
    Folder(FolderStatus),
    /// Something was skipped that a person may want to know about (an unreadable folder).
    Warning(String),
}

/// The handle on the running watcher. Dropping it does not stop it: call [`Watcher::stop`].
pub struct Watcher {
    /// The folders being watched, as saved: the one copy the shell's edits go through, so ids
    /// handed to the window stay valid while it runs.
    settings: Mutex<WatchSettings>,
    data_dir: PathBuf,
    commands: mpsc::UnboundedSender<service::Command>,
    status: Arc<Mutex<WatchStatus>>,
    events: broadcast::Sender<WatchEvent>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Watcher {
    /// Starts watching `settings.folders` on `runtime`: each folder is scanned first (catch-up),
    /// then watched. Uploads go through `engine`; the index lives in the engine's data folder.
    pub fn start(engine: Engine, settings: WatchSettings, runtime: &Handle) -> Result<Watcher, Error> {
        settings.validate()?;
        let store = Arc::new(Store::open(&engine.data_dir().join(HISTORY_FILE))?);
        let (commands, receiver) = mpsc::unbounded_channel();
        // Seeded, so a status asked for before the task first runs already lists the folders.
        let folders = settings
            .folders
            .iter()
            .map(|f| FolderStatus {
                path: f.path.clone(),
                state: FolderState::Starting,
                detail: None,
                waiting: 0,
                uploading: 0,
                uploaded: 0,
                failed: 0,
            })
            .collect();
        let status = Arc::new(Mutex::new(WatchStatus { folders, error: None }));
        let (events, _) = broadcast::channel(4096);
        let (kept, data_dir) = (Mutex::new(settings.clone()), engine.data_dir().to_owned());
        let service = service::Service::new(engine, store, settings, status.clone(), events.clone());
        let task = runtime.spawn(service.run(receiver));
        Ok(Watcher { settings: kept, data_dir, commands, status, events, task: Mutex::new(Some(task)) })
    }

    /// The folders watched now, as the window shows them.
    pub fn folders(&self) -> Vec<FolderView> {
        self.settings.lock().unwrap_or_else(|p| p.into_inner()).folder_views()
    }

    /// Applies `change` to the settings, saves them in the engine's data folder and applies them
    /// at once: folders added are scanned and watched, folders removed or paused stop being
    /// watched (what is uploading finishes), folders resumed catch up. When `change` or the
    /// save fails, nothing changes, on disk or in what is watched.
    pub fn edit<T>(&self, change: impl FnOnce(&mut WatchSettings) -> Result<T, Error>) -> Result<T, Error> {
        // Held across the save, so two edits at once cannot lose one another.
        let mut current = self.settings.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = current.clone();
        let out = change(&mut next)?;
        next.save(&self.data_dir)?;
        let _ = self.commands.send(service::Command::Configure(next.clone()));
        *current = next;
        Ok(out)
    }

    pub fn status(&self) -> WatchStatus {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<WatchEvent> {
        self.events.subscribe()
    }

    /// Stops watching. Uploads in flight get `grace` to finish; the ones still running then are
    /// cancelled, and since the index marks a file done only once it is uploaded, they go up
    /// at the next start.
    pub async fn stop(&self, grace: Duration) {
        let _ = self.commands.send(service::Command::Stop(grace));
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}
