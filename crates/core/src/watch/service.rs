//! The watcher's one task: OS events and catch-up scans feed [`Pending`]; files that settle
//! are vetted (nothing writing to them, not already uploaded in this version) and handed to
//! the engine in batches; the index is updated from what the engine reports. Every piece of
//! blocking work (walks, /proc, hashing, SQLite) runs on the blocking pool, tracked in a
//! `JoinSet`, so the loop itself only moves messages.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RenameMode};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;

mod blocking;
use blocking::{after_upload, catch_up, inotify_limit_reason, start_polling, vet, watch_one};

use super::pending::{Pending, Settled, Touch};
use super::rules::IgnoreRules;
use super::settings::{AfterUpload, WatchSettings, WatchedFolder};
use super::walk::{self, Stat};
use super::{FolderState, FolderStatus, WatchEvent, WatchStatus};
use crate::store::{FileVersion, Store};
use crate::{BatchSummary, Engine, FileStatus, Source};

/// Files per engine batch: big enough that 1,000 files dropped at once share a few presign
/// round trips, small enough that the first of them start quickly.
const BATCH_FILES: usize = 250;
/// Batches in flight at once. The engine's own concurrency bounds the requests; a second batch
/// lets a new file start while a big one is still being reported.
const BATCHES_IN_FLIGHT: usize = 2;
/// How often the watched folders themselves are checked for being there (an unplugged drive).
const ROOT_CHECK: Duration = Duration::from_secs(2);
/// After a batch-level failure (backend down, token refused), try again this much later.
const BATCH_RETRY: Duration = Duration::from_secs(60);
const FIRST_RETRY: Duration = Duration::from_secs(15);
const MAX_RETRY: Duration = Duration::from_secs(600);

pub enum Command {
    Configure(WatchSettings),
    Stop(Duration),
}

type FsSource = Box<dyn notify::Watcher + Send>;

struct Folder {
    id: u64,
    config: WatchedFolder,
    rules: IgnoreRules,
    source: Option<FsSource>,
    state: FolderState,
    detail: Option<String>,
    uploaded: u32,
    failed: u32,
    /// Sub-folders created during the first scan, to watch once the scan hands the source back.
    late_dirs: Vec<PathBuf>,
}

impl Folder {
    fn root(&self) -> &Path {
        &self.config.path
    }

    fn key_prefix(&self) -> Option<String> {
        Some(self.config.options.key_prefix.trim().to_owned()).filter(|p| !p.is_empty())
    }

    /// Taking files: watched, polled, or still in its first scan (whose source is busy
    /// adding watches while events already arrive).
    fn is_active(&self) -> bool {
        matches!(self.state, FolderState::Starting | FolderState::Watching | FolderState::Polling)
    }
}

/// A settled file that passed vetting, with what it was when it was handed over.
#[derive(Debug, Clone)]
struct ReadyFile {
    folder: u64,
    root: PathBuf,
    path: PathBuf,
    stat: Stat,
    after_upload: AfterUpload,
}

struct CatchUp {
    folder: u64,
    source: Option<FsSource>,
    polling_reason: Option<String>,
    changed: Vec<(PathBuf, Stat, Duration)>,
    warnings: Vec<String>,
}

enum Work {
    CatchUp(CatchUp),
    /// Settled files that may go up now, and the ones found still open for writing.
    Vetted(Vec<ReadyFile>, Vec<Settled>),
    Batch(Vec<ReadyFile>, BatchSummary),
    /// The hold after a batch-level failure is over.
    HoldOver,
    Done,
}

pub struct Service {
    engine: Engine,
    store: Arc<Store>,
    initial: Option<WatchSettings>,
    folders: Vec<Folder>,
    next_id: u64,
    pending: Pending,
    ready: VecDeque<ReadyFile>,
    in_flight: HashMap<PathBuf, u64>,
    vetting: HashSet<PathBuf>,
    attempts: HashMap<PathBuf, u32>,
    work: JoinSet<Work>,
    batches: usize,
    /// The engine's batch-level failure, until a batch gets through again.
    halted: Option<crate::ErrorInfo>,
    fs_sender: mpsc::UnboundedSender<(u64, notify::Result<notify::Event>)>,
    fs_receiver: Option<mpsc::UnboundedReceiver<(u64, notify::Result<notify::Event>)>>,
    status: Arc<Mutex<WatchStatus>>,
    events: broadcast::Sender<WatchEvent>,
    stopping: bool,
}

impl Service {
    pub fn new(
        engine: Engine,
        store: Arc<Store>,
        settings: WatchSettings,
        status: Arc<Mutex<WatchStatus>>,
        events: broadcast::Sender<WatchEvent>,
    ) -> Service {
        let (fs_sender, fs_receiver) = mpsc::unbounded_channel();
        Service {
            engine,
            store,
            pending: Pending::new(settings.stable_for()),
            initial: Some(settings),
            folders: Vec::new(),
            next_id: 1,
            ready: VecDeque::new(),
            in_flight: HashMap::new(),
            vetting: HashSet::new(),
            attempts: HashMap::new(),
            work: JoinSet::new(),
            batches: 0,
            halted: None,
            fs_sender,
            fs_receiver: Some(fs_receiver),
            status,
            events,
            stopping: false,
        }
    }

    pub async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut fs = self.fs_receiver.take().expect("run once");
        if let Some(settings) = self.initial.take() {
            self.configure(settings);
        }
        let mut roots = tokio::time::interval(ROOT_CHECK);
        roots.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.publish();
        loop {
            let due = self.pending.next_due().map(tokio::time::Instant::from_std);
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Configure(settings)) => self.configure(settings),
                    Some(Command::Stop(grace)) => return self.stop(grace).await,
                    None => return self.stop(Duration::ZERO).await,
                },
                Some((folder, event)) = fs.recv() => {
                    self.on_fs_event(folder, event);
                    // A copy of many files makes bursts of events: take what is queued in one go.
                    while let Ok((folder, event)) = fs.try_recv() {
                        self.on_fs_event(folder, event);
                    }
                }
                Some(done) = self.work.join_next() => match done {
                    Ok(work) => self.on_work_done(work),
                    Err(e) => tracing::error!("a watched-folder task failed: {e}"),
                },
                _ = sleep_until(due) => self.on_due(),
                _ = roots.tick() => self.check_roots(),
            }
            self.dispatch();
            self.publish();
        }
    }

    // ---- folders ---------------------------------------------------------------------------

    fn configure(&mut self, settings: WatchSettings) {
        self.pending.set_window(settings.stable_for());
        let mut kept = Vec::new();
        for folder in std::mem::take(&mut self.folders) {
            match settings.folders.iter().find(|f| f.path == folder.config.path) {
                Some(config) if *config == folder.config => kept.push(folder),
                _ => {
                    self.pending.remove_folder(folder.id);
                    self.ready.retain(|r| r.folder != folder.id);
                }
            }
        }
        self.folders = kept;
        for config in settings.folders {
            if self.folders.iter().any(|f| f.config.path == config.path) {
                continue;
            }
            let rules = match IgnoreRules::new(&config) {
                Ok(rules) => rules,
                Err(e) => {
                    tracing::warn!(folder = %config.path.display(), "cannot watch: {e}");
                    continue;
                }
            };
            let id = self.next_id;
            self.next_id += 1;
            let mut folder = Folder {
                id,
                config,
                rules,
                source: None,
                state: FolderState::Starting,
                detail: None,
                uploaded: 0,
                failed: 0,
                late_dirs: Vec::new(),
            };
            self.start_folder(&mut folder);
            self.folders.push(folder);
        }
        self.publish_all_folders();
    }

    /// Scans the folder and starts watching it (or notes why it cannot).
    fn start_folder(&mut self, folder: &mut Folder) {
        folder.source = None;
        if folder.config.options.paused {
            folder.state = FolderState::Paused;
            folder.detail = None;
            return;
        }
        if !folder.root().is_dir() {
            folder.state = FolderState::Missing;
            folder.detail = Some(format!(
                "{} is not there (an unplugged drive or a removed folder); watching resumes when it is back",
                folder.root().display()
            ));
            return;
        }
        folder.state = FolderState::Starting;
        folder.detail = None;
        let (id, config, rules, store) = (folder.id, folder.config.clone(), folder.rules.clone(), self.store.clone());
        let sender = self.fs_sender.clone();
        self.work.spawn_blocking(move || Work::CatchUp(catch_up(id, &config, &rules, &store, sender)));
    }

    fn on_catch_up(&mut self, done: CatchUp) {
        let now = Instant::now();
        let Some(folder) = self.folders.iter_mut().find(|f| f.id == done.folder) else { return };
        if folder.state != FolderState::Starting {
            return; // paused or gone meanwhile
        }
        folder.source = done.source;
        let mut limit_hit = false;
        for dir in std::mem::take(&mut folder.late_dirs) {
            if done.polling_reason.is_none() && !limit_hit {
                watch_one(&mut folder.source, &dir, &mut limit_hit);
            }
        }
        folder.state = if done.polling_reason.is_some() { FolderState::Polling } else { FolderState::Watching };
        folder.detail = done.polling_reason.clone();
        if let (Some(reason), false) = (&done.polling_reason, folder.config.options.polling) {
            tracing::warn!(folder = %folder.root().display(), "{reason}");
            let _ = self.events.send(WatchEvent::Warning(format!("{}: {reason}", folder.root().display())));
        }
        for warning in done.warnings {
            tracing::warn!(folder = %folder.root().display(), "{warning}");
            let _ = self.events.send(WatchEvent::Warning(warning));
        }
        tracing::info!(folder = %folder.root().display(), changed = done.changed.len(), "caught up");
        let id = folder.id;
        for (path, stat, modified_ago) in done.changed {
            self.pending.found(id, path, stat, modified_ago, now);
        }
        self.publish_folder(id);
    }

    /// Notices folders that went away (an unplugged drive) and ones that came back.
    fn check_roots(&mut self) {
        let mut back = Vec::new();
        for (i, folder) in self.folders.iter_mut().enumerate() {
            let there = folder.root().is_dir();
            match folder.state {
                FolderState::Missing if there => back.push(i),
                FolderState::Paused | FolderState::Missing => {}
                _ if !there => {
                    tracing::warn!(folder = %folder.root().display(), "the watched folder went away; pausing it");
                    folder.source = None;
                    folder.state = FolderState::Missing;
                    folder.detail = Some(format!(
                        "{} went away (an unplugged drive or a removed folder); watching resumes when it is back",
                        folder.root().display()
                    ));
                    self.pending.remove_folder(folder.id);
                    let _ = self.events.send(WatchEvent::Folder(status_of(folder, &self.pending, &self.in_flight)));
                }
                _ => {}
            }
        }
        for i in back {
            let mut folder = self.folders.remove(i);
            tracing::info!(folder = %folder.root().display(), "the watched folder is back; catching up");
            self.start_folder(&mut folder);
            self.folders.insert(i, folder);
        }
    }

    // ---- events ----------------------------------------------------------------------------

    fn on_fs_event(&mut self, id: u64, event: notify::Result<notify::Event>) {
        let Some(index) = self.folders.iter().position(|f| f.id == id && f.is_active()) else { return };
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
                    self.fall_back_to_polling(index, inotify_limit_reason());
                } else {
                    tracing::warn!(folder = %self.folders[index].root().display(), "watch error: {e}");
                }
                return;
            }
        };
        if event.need_rescan() {
            // The OS dropped events (its queue overflowed): only a scan can tell what changed.
            let mut folder = self.folders.remove(index);
            self.start_folder(&mut folder);
            self.folders.insert(index, folder);
            return;
        }
        let touch = match event.kind {
            // Our own reads (hashing, uploading) open and close files: not a change.
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => Touch::Closed,
            EventKind::Access(_) => return,
            EventKind::Create(CreateKind::Folder) => Touch::Appeared,
            EventKind::Create(_) | EventKind::Modify(ModifyKind::Data(_)) => Touch::Written,
            EventKind::Modify(ModifyKind::Name(RenameMode::From)) | EventKind::Remove(_) => {
                for path in &event.paths {
                    self.pending.remove(path);
                }
                return;
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                if let Some(from) = event.paths.first() {
                    self.pending.remove(from);
                }
                Touch::Appeared
            }
            _ => Touch::Appeared,
        };
        // Polling sees only what changed between two walks, never a close: judge by the
        // stability window alone.
        let touch = if self.folders[index].state == FolderState::Polling { Touch::Appeared } else { touch };
        let paths = match event.kind {
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => event.paths.last().into_iter().collect(),
            _ => event.paths.iter().collect::<Vec<_>>(),
        };
        let now = Instant::now();
        for path in paths {
            let folder = &self.folders[index];
            let Ok(relative) = path.strip_prefix(folder.root()) else { continue };
            if relative.as_os_str().is_empty() {
                continue;
            }
            let meta = std::fs::symlink_metadata(path).ok();
            let is_dir = meta.as_ref().is_some_and(|m| m.is_dir());
            if folder.rules.ignores(relative, is_dir) {
                continue;
            }
            if is_dir {
                self.new_subfolder(index, path.clone());
            } else if let Some(reason) = walk::link_out_of(folder.root(), path) {
                self.warn(folder.root(), format!("skipped {reason}"));
            } else {
                // A link is whole the moment it is made (symlink(2) is atomic) and is never
                // closed after writing: do not wait out the grace for unclosed files.
                let is_link = meta.as_ref().is_some_and(|m| m.file_type().is_symlink());
                self.pending.touch(id, path, if is_link { Touch::Appeared } else { touch }, now);
            }
        }
    }

    /// A folder created or moved in: watch it and everything below it, and take the files that
    /// are already inside (they were written before the watch existed).
    fn new_subfolder(&mut self, index: usize, path: PathBuf) {
        let folder = &mut self.folders[index];
        let mut limit_hit = false;
        let walked = {
            let (root, rules) = (folder.config.path.clone(), folder.rules.clone());
            let polling = folder.state == FolderState::Polling;
            let starting = folder.state == FolderState::Starting;
            let (source, late) = (&mut folder.source, &mut folder.late_dirs);
            walk::walk(&root, &path, &rules, &mut |dir| {
                if starting {
                    late.push(dir.to_owned());
                    return true;
                }
                if polling || limit_hit {
                    return true;
                }
                watch_one(source, dir, &mut limit_hit)
            })
        };
        let (id, now) = (folder.id, Instant::now());
        for file in walked.files {
            self.pending.found(id, file.path, file.stat, Duration::ZERO, now);
        }
        let root = folder.root().to_owned();
        for warning in walked.warnings {
            self.warn(&root, warning);
        }
        if limit_hit {
            self.fall_back_to_polling(index, inotify_limit_reason());
        }
    }

    /// Something in a watched folder was left out that a person may want to know about.
    fn warn(&self, root: &Path, warning: String) {
        tracing::warn!(folder = %root.display(), "{warning}");
        let _ = self.events.send(WatchEvent::Warning(warning));
    }

    fn fall_back_to_polling(&mut self, index: usize, reason: String) {
        let folder = &mut self.folders[index];
        if folder.state == FolderState::Polling {
            return;
        }
        tracing::warn!(folder = %folder.root().display(), "{reason}");
        folder.source = start_polling(folder.id, folder.root(), self.fs_sender.clone()).ok();
        folder.state = FolderState::Polling;
        folder.detail = Some(reason.clone());
        let _ = self.events.send(WatchEvent::Warning(format!("{}: {reason}", folder.root().display())));
        let id = folder.id;
        self.publish_folder(id);
    }

    // ---- settling, vetting, uploading ------------------------------------------------------

    fn on_due(&mut self) {
        let now = Instant::now();
        let mut settled = Vec::new();
        for file in self.pending.take_settled(now) {
            if self.in_flight.contains_key(&file.path) || self.vetting.contains(&file.path) {
                // An older version is still going up: look again once it is done.
                self.pending.retry_after(file.folder, &file.path, file.stat, self.pending.window(), now);
            } else if self.folders.iter().any(|f| f.id == file.folder && f.is_active()) {
                settled.push(file);
            }
        }
        if settled.is_empty() {
            return;
        }
        self.vetting.extend(settled.iter().map(|s| s.path.clone()));
        let store = self.store.clone();
        let folders: HashMap<u64, (PathBuf, AfterUpload)> = self
            .folders
            .iter()
            .map(|f| (f.id, (f.config.path.clone(), f.config.options.after_upload.clone())))
            .collect();
        self.work.spawn_blocking(move || vet(settled, &store, &folders));
    }

    fn on_vetted(&mut self, ready: Vec<ReadyFile>, still_open: Vec<Settled>) {
        let now = Instant::now();
        for file in still_open {
            self.vetting.remove(&file.path);
            self.pending.retry_after(file.folder, &file.path, file.stat, self.pending.window(), now);
        }
        for file in ready {
            self.vetting.remove(&file.path);
            // It changed again while being vetted: its new version will come through pending.
            if !self.pending.contains(&file.path) {
                self.ready.push_back(file);
            }
        }
    }

    /// Hands ready files to the engine, a batch at a time.
    fn dispatch(&mut self) {
        while !self.stopping && self.halted.is_none() && self.batches < BATCHES_IN_FLIGHT && !self.ready.is_empty() {
            // One folder per batch: each folder's files go under its own key prefix.
            let folder = self.ready[0].folder;
            let (mut files, rest): (Vec<ReadyFile>, Vec<ReadyFile>) =
                self.ready.drain(..).partition(|file| file.folder == folder);
            self.ready.extend(rest);
            if files.len() > BATCH_FILES {
                for file in files.drain(BATCH_FILES..).rev() {
                    self.ready.push_front(file);
                }
            }
            let key_prefix = self.folders.iter().find(|f| f.id == folder).and_then(|f| f.key_prefix());
            let versions: Vec<FileVersion<'_>> = files.iter().map(version_of).collect();
            if let Err(e) = self.store.watch_index_mark_sending(&versions) {
                tracing::error!("could not record watched files as sending: {e}");
            }
            for file in &files {
                self.in_flight.insert(file.path.clone(), file.folder);
            }
            self.batches += 1;
            let engine = self.engine.clone();
            let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
            tracing::info!(files = files.len(), "uploading from watched folders");
            self.work.spawn(async move {
                let summary = engine.upload_into(paths, Source::Watch, key_prefix).await;
                Work::Batch(files, summary)
            });
        }
    }

    fn on_batch_done(&mut self, files: Vec<ReadyFile>, summary: BatchSummary) {
        self.batches -= 1;
        let now = Instant::now();
        let mut by_path: HashMap<PathBuf, ReadyFile> = files.into_iter().map(|f| (f.path.clone(), f)).collect();
        for file in by_path.keys() {
            self.in_flight.remove(file);
        }
        let mut done = Vec::new();
        let mut gone = Vec::new();
        for outcome in summary.files {
            let Some(file) = by_path.remove(&outcome.path) else { continue };
            let folder = self.folders.iter_mut().find(|f| f.id == file.folder);
            match (outcome.status, outcome.error.as_ref().map(|e| e.code.as_str())) {
                // In S3 with its report queued (or refused) in the outbox, which owns it from
                // here: sending the file again would make a second object.
                (FileStatus::Uploaded, _) | (_, Some("report_pending" | "report_rejected")) => {
                    if let Some(folder) = folder {
                        folder.uploaded += 1;
                    }
                    self.attempts.remove(&file.path);
                    done.push((file, outcome.clone()));
                }
                (_, Some("file_not_found")) => gone.push(file.path.clone()),
                // Stopped on purpose: the index still says `sending`, so the next start
                // settles it or sends it again.
                (_, Some("cancelled" | "shutting_down")) => {}
                (_, Some("file_changed")) => {
                    self.pending.retry_after(file.folder, &file.path, file.stat, Duration::ZERO, now)
                }
                _ => {
                    if let Some(folder) = folder {
                        folder.failed += 1;
                    }
                    let attempt = self.attempts.entry(file.path.clone()).or_insert(0);
                    *attempt += 1;
                    let delay = (FIRST_RETRY * 2u32.saturating_pow(*attempt - 1)).min(MAX_RETRY);
                    self.pending.retry_after(file.folder, &file.path, file.stat, delay, now);
                }
            }
            let _ = self.events.send(WatchEvent::File(outcome));
        }
        // Files the batch never reached: it stopped as a whole (no settings, backend refused).
        if let Some(error) = &summary.error {
            self.halted = Some(error.info());
            tracing::warn!("uploads from watched folders are held: {error}");
            self.work.spawn(async {
                tokio::time::sleep(BATCH_RETRY).await;
                Work::HoldOver
            });
        } else if !done.is_empty() {
            self.halted = None;
        }
        for (_, file) in by_path {
            self.pending.retry_after(file.folder, &file.path, file.stat, BATCH_RETRY, now);
        }
        if !gone.is_empty() {
            let paths: Vec<&Path> = gone.iter().map(PathBuf::as_path).collect();
            if let Err(e) = self.store.watch_index_forget(&paths) {
                tracing::error!("could not update the watched-folder index: {e}");
            }
        }
        if done.is_empty() {
            return;
        }
        let marks: Vec<(FileVersion<'_>, Option<&str>, Option<&str>)> = done
            .iter()
            .map(|(file, outcome)| (version_of(file), outcome.checksum_sha256.as_deref(), outcome.upload_id.as_deref()))
            .collect();
        if let Err(e) = self.store.watch_index_mark_done(&marks) {
            // The upload happened; the next catch-up settles the `sending` row from history.
            tracing::error!("could not mark watched files uploaded in the index: {e}");
        }
        let tidy: Vec<ReadyFile> =
            done.into_iter().map(|(f, _)| f).filter(|f| f.after_upload != AfterUpload::Keep).collect();
        if !tidy.is_empty() {
            let store = self.store.clone();
            self.work.spawn_blocking(move || {
                after_upload(&tidy, &store);
                Work::Done
            });
        }
    }

    fn on_work_done(&mut self, work: Work) {
        match work {
            Work::CatchUp(done) => self.on_catch_up(done),
            Work::Vetted(ready, still_open) => self.on_vetted(ready, still_open),
            Work::Batch(files, summary) => self.on_batch_done(files, summary),
            Work::HoldOver => self.halted = None,
            Work::Done => {}
        }
    }

    async fn stop(mut self, grace: Duration) {
        self.stopping = true;
        for folder in &mut self.folders {
            folder.source = None;
        }
        let deadline = tokio::time::Instant::now() + grace;
        let mut cancelled = false;
        while self.batches > 0 {
            tokio::select! {
                Some(done) = self.work.join_next() => {
                    // Only batches matter now: scans and vetting are for a run that is ending.
                    if let Ok(Work::Batch(files, summary)) = done {
                        self.on_batch_done(files, summary);
                    }
                }
                _ = tokio::time::sleep_until(deadline), if !cancelled => {
                    tracing::info!(batches = self.batches, "stopping: cancelling the uploads still running");
                    cancelled = true;
                    self.engine.cancel_all();
                }
            }
        }
        self.work.abort_all();
        self.publish();
    }

    // ---- status ----------------------------------------------------------------------------

    fn publish(&self) {
        let status = WatchStatus {
            folders: self.folders.iter().map(|f| status_of(f, &self.pending, &self.in_flight)).collect(),
            error: self.halted.clone(),
        };
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = status;
    }

    fn publish_folder(&self, id: u64) {
        if let Some(folder) = self.folders.iter().find(|f| f.id == id) {
            let _ = self.events.send(WatchEvent::Folder(status_of(folder, &self.pending, &self.in_flight)));
        }
    }

    fn publish_all_folders(&self) {
        for folder in &self.folders {
            self.publish_folder(folder.id);
        }
    }
}

fn status_of(folder: &Folder, pending: &Pending, in_flight: &HashMap<PathBuf, u64>) -> FolderStatus {
    FolderStatus {
        path: folder.config.path.clone(),
        state: folder.state.clone(),
        detail: folder.detail.clone(),
        waiting: pending.count_in(folder.id) as u32,
        uploading: in_flight.values().filter(|&&f| f == folder.id).count() as u32,
        uploaded: folder.uploaded,
        failed: folder.failed,
    }
}

async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

fn version_of(file: &ReadyFile) -> FileVersion<'_> {
    FileVersion { path: &file.path, folder: &file.root, size: file.stat.size, mtime_ns: file.stat.mtime_ns }
}
