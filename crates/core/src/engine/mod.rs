//! The one handle the shells hold. It owns the settings, the history store, the HTTP client and
//! every running batch: a batch walks its files through hash → presign → PUT → report, telling
//! subscribers what happens through [`Event`]s.
//!
//! This file is the handle and what it offers; the work has rooms of its own: `batch` (the
//! pipeline), `single` and `multipart` (one file's bytes), `reports` (the outbox's answers),
//! `resume` (interrupted uploads), `conditions` (holds and wakes), `connection` (HTTP client,
//! session, backend), and `job` (one file as all of them see it).

mod batch;
mod conditions;
mod connection;
mod job;
mod multipart;
mod reports;
mod resume;
mod single;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tokio::sync::Semaphore;

use self::conditions::Conditions;
use self::connection::HttpClient;
use crate::auth::{self, LiveSession};
use crate::conditions::ConditionsMonitor;
use crate::config::HISTORY_FILE;
use crate::control::Controls;
use crate::instance::InstanceLock;
use crate::report::Outbox;
use crate::schedule::ScheduleHandle;
use crate::store::Store;
use crate::transfer::{self, RetryNow, RetryPolicy, Throttle};
use crate::{Error, ErrorInfo, Event, HistoryEntry, HistoryQuery, Settings, Source};

/// Keeps `throttle` on the settings' bandwidth schedule, when they have one.
fn start_schedule(throttle: &Arc<Throttle>, settings: &Settings, runtime: &Handle) -> Option<ScheduleHandle> {
    let schedule = &settings.network.bandwidth_schedule;
    (!schedule.is_empty()).then(|| {
        crate::schedule::spawn(Arc::clone(throttle), settings.transfer.bandwidth_limit, schedule.clone(), runtime)
    })
}

const EVENT_BUFFER: usize = 4096;
/// How long a batch waits out a backend that is down, unless told otherwise: long enough for a
/// backend restart or a short network outage, short enough that a wrong URL ends in an error.
const DEFAULT_BACKEND_WAIT: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    data_dir: PathBuf,
    store: Arc<Store>,
    /// Marks this engine as running, so another one can tell its uploads from interrupted ones.
    instance: InstanceLock,
    outbox: Arc<Outbox>,
    /// How long a batch waits out a backend that is down: to sign (then its files fail) and to
    /// take reports (then the batch ends with them still queued in the outbox).
    backend_wait: Mutex<Duration>,
    settings: RwLock<Option<Settings>>,
    /// The signed-in session, used for the backend it was made for unless a token is given.
    session: RwLock<Option<Arc<LiveSession>>>,
    events: broadcast::Sender<Event>,
    /// Rebuilt when the proxy or the trusted certificates change; running requests keep theirs.
    http: RwLock<HttpClient>,
    runtime: Handle,
    /// [`transfer::PERMITS_PER_SLOT`] permits per unit of concurrency, shared by every file and
    /// part of every batch, so the concurrency setting bounds the whole engine: a large body
    /// takes a whole slot, a small one a share of it (see [`transfer::permits_for`]).
    permits: Semaphore,
    /// The memory parts are read into, shared by every multipart upload (see
    /// [`transfer::PartBuffers`]).
    part_buffers: transfer::PartBuffers,
    /// The permits `permits` was last sized to (settings can change it while running).
    permit_count: Mutex<usize>,
    retry: RetryPolicy,
    /// Rung when the machine wakes or the internet returns: backoffs end at once.
    retry_now: RetryNow,
    throttle: Arc<Throttle>,
    /// Moves the throttle along the bandwidth schedule; `None` without one.
    schedule: Mutex<Option<ScheduleHandle>>,
    conditions: Mutex<Conditions>,
    controls: Controls,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Batches between their start and their summary, however they were started.
    batches_running: AtomicUsize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    Uploaded,
    Failed,
    Skipped,
}

/// What happened to one file of a batch (the CLI prints these as JSON lines).
#[derive(Debug, Clone, Serialize)]
pub struct FileOutcome {
    /// Shown lossily in JSON: a name that is not UTF-8 would otherwise fail the whole line.
    #[serde(serialize_with = "path_lossy")]
    pub path: PathBuf,
    pub status: FileStatus,
    pub key: Option<String>,
    pub size: Option<u64>,
    pub upload_id: Option<String>,
    pub object_url: Option<String>,
    pub checksum_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

pub(crate) fn path_lossy<S: serde::Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&path.to_string_lossy())
}

#[derive(Debug)]
pub struct BatchSummary {
    pub batch_id: String,
    pub files: Vec<FileOutcome>,
    /// Set when the batch as a whole could not go on (no settings, backend down, bad token);
    /// the files it did not reach are in `files` as failed with the same error.
    pub error: Option<Error>,
}

impl BatchSummary {
    pub fn count(&self, status: FileStatus) -> usize {
        self.files.iter().filter(|f| f.status == status).count()
    }
}

impl Engine {
    /// Opens the data directory (settings and history) and runs batches on `runtime`.
    pub fn open(data_dir: &Path, runtime: Handle) -> Result<Engine, Error> {
        crate::config::create_private_dir(data_dir).map_err(|e| Error::Unreadable {
            path: data_dir.display().to_string(),
            detail: format!("could not create the data folder ({e})"),
        })?;
        let instance = InstanceLock::acquire(data_dir).map_err(|e| Error::Unreadable {
            path: data_dir.display().to_string(),
            detail: format!("could not mark Dropship as running there ({e})"),
        })?;
        let store = Store::open(&data_dir.join(HISTORY_FILE)).map_err(crate::recovery::damaged_or)?;
        let store = Arc::new(store.with_owner(instance.id().to_owned()));
        // Reports left by an earlier run go out now rather than after their backoff.
        store.reports_due_now()?;
        let settings = Settings::load(data_dir)?;
        let network = settings.as_ref().map(|s| s.network.clone()).unwrap_or_default();
        // A saved proxy or CA file that no longer works must not lock the person out of
        // Settings: start direct and say why; the first upload reports it again.
        let http = crate::network::http_client(&network).or_else(|e| {
            tracing::warn!("the saved network settings cannot be used ({e}); starting without them");
            crate::network::http_client(&Default::default())
        })?;
        let session = match auth::load_session(data_dir) {
            Ok(session) => session.map(|s| LiveSession::new(data_dir, http.clone(), s)),
            Err(e) => {
                tracing::warn!("the kept sign-in could not be read: {e}");
                None
            }
        };
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let transfer = settings.as_ref().map(|s| s.transfer).unwrap_or_default();
        let permits = transfer.concurrency as usize * transfer::PERMITS_PER_SLOT as usize;
        let throttle = Arc::new(Throttle::default());
        throttle.set_rate(transfer.bandwidth_limit);
        let schedule = settings.as_ref().and_then(|s| start_schedule(&throttle, s, &runtime));
        let engine = Engine {
            inner: Arc::new(Inner {
                data_dir: data_dir.to_owned(),
                store,
                instance,
                outbox: Arc::default(),
                backend_wait: Mutex::new(DEFAULT_BACKEND_WAIT),
                settings: RwLock::new(settings),
                session: RwLock::new(session),
                events,
                http: RwLock::new(HttpClient { client: http, network }),
                runtime,
                permits: Semaphore::new(permits),
                part_buffers: transfer::PartBuffers::default(),
                permit_count: Mutex::new(permits),
                retry: RetryPolicy::default(),
                retry_now: RetryNow::default(),
                throttle,
                schedule: Mutex::new(schedule),
                conditions: Mutex::default(),
                controls: Controls::default(),
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                batches_running: AtomicUsize::new(0),
            }),
        };
        engine.start_report_delivery();
        let monitor = ConditionsMonitor::start(&engine.inner.runtime);
        engine.follow_conditions(monitor);
        Ok(engine)
    }

    /// How long a batch waits out a backend that is down or failing, to sign URLs and to take
    /// completion reports; past it, files that still need a URL fail and reports stay queued.
    pub fn set_backend_wait(&self, wait: Duration) {
        *self.inner.backend_wait.lock().unwrap_or_else(|p| p.into_inner()) = wait;
    }

    fn backend_wait(&self) -> Duration {
        *self.inner.backend_wait.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    pub fn settings(&self) -> Option<Settings> {
        self.inner.settings.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Uses these settings from now on without saving them (the CLI's flags).
    pub fn apply_settings(&self, settings: Settings) -> Result<(), Error> {
        settings.validate()?;
        self.use_network(&settings.network)?;
        self.resize_permits(settings.transfer.concurrency as usize);
        self.inner.throttle.set_rate(settings.transfer.bandwidth_limit);
        // The old schedule stops before the new one sets the throttle.
        let mut schedule = self.inner.schedule.lock().unwrap_or_else(|p| p.into_inner());
        *schedule = None;
        *schedule = start_schedule(&self.inner.throttle, &settings, &self.inner.runtime);
        drop(schedule);
        crate::logging::apply_level(settings.log_level);
        *self.inner.settings.write().unwrap_or_else(|p| p.into_inner()) = Some(settings);
        self.reconsider_holds();
        // Reports waiting for a backend may have one now.
        self.inner.outbox.wake();
        Ok(())
    }

    /// Validates, saves to the data directory and applies at once.
    pub fn set_settings(&self, settings: Settings) -> Result<(), Error> {
        settings.validate()?;
        settings.save(&self.inner.data_dir)?;
        self.apply_settings(settings)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    pub fn history(&self, query: &HistoryQuery) -> Result<Vec<HistoryEntry>, Error> {
        Ok(self.inner.store.history(query)?)
    }

    pub fn history_entry(&self, upload_id: &str) -> Result<Option<HistoryEntry>, Error> {
        Ok(self.inner.store.get(upload_id)?)
    }

    /// Checks that the backend answers and accepts the token.
    pub async fn check_connection(&self) -> Result<(), Error> {
        Ok(self.backend()?.check().await?)
    }

    /// Starts uploading `paths` in the background and returns the batch id at once; progress
    /// and results arrive as events.
    pub fn submit(&self, paths: Vec<PathBuf>, source: Source) -> String {
        let batch_id = uuid::Uuid::new_v4().to_string();
        let engine = self.clone();
        let id = batch_id.clone();
        let shutdown = self.inner.shutdown.clone();
        self.inner.tasks.spawn_on(
            async move {
                tokio::select! {
                    _ = engine.run_batch(id, paths, source, None) => {}
                    _ = shutdown.cancelled() => {}
                }
            },
            &self.inner.runtime,
        );
        batch_id
    }

    /// Uploads `paths` (folders recursively) and returns what happened to each file.
    pub async fn upload(&self, paths: Vec<PathBuf>, source: Source) -> BatchSummary {
        self.run_batch(uuid::Uuid::new_v4().to_string(), paths, source, None).await
    }

    /// [`Engine::upload`], asking the backend to put the keys in `key_prefix` (a folder under
    /// its own prefix, e.g. a watched folder's `scans/2026`) where its API has that.
    pub async fn upload_into(&self, paths: Vec<PathBuf>, source: Source, key_prefix: Option<String>) -> BatchSummary {
        let key_prefix = key_prefix.map(|p| p.trim().trim_matches('/').to_owned()).filter(|p| !p.is_empty());
        self.run_batch(uuid::Uuid::new_v4().to_string(), paths, source, key_prefix).await
    }

    /// Pauses one running upload: nothing more is sent until it is resumed. False when there is
    /// no such upload running.
    pub fn pause(&self, upload_id: &str) -> bool {
        let found = self.inner.controls.set_paused(upload_id, true);
        if found {
            self.emit(Event::FilePaused { upload_id: upload_id.to_owned() });
        }
        found
    }

    pub fn resume(&self, upload_id: &str) -> bool {
        let found = self.inner.controls.set_paused(upload_id, false);
        if found {
            self.emit(Event::FileResumed { upload_id: upload_id.to_owned() });
        }
        found
    }

    /// Cancels one running upload; a multipart upload is aborted on the backend.
    pub fn cancel(&self, upload_id: &str) -> bool {
        self.inner.controls.cancel(upload_id)
    }

    /// Pauses every upload, the ones that start later included, until [`Engine::resume_all`].
    pub fn pause_all(&self) {
        self.inner.controls.set_all_paused(true);
        self.emit(Event::QueuePaused { paused: true });
    }

    pub fn resume_all(&self) {
        self.inner.controls.set_all_paused(false);
        self.emit(Event::QueuePaused { paused: false });
    }

    pub fn is_paused(&self) -> bool {
        self.inner.controls.all_paused()
    }

    pub fn cancel_all(&self) {
        self.inner.controls.cancel_all();
    }

    /// Nothing but the history and the settings hold what this engine knows: no batch runs,
    /// nothing is paused, and no *Upload anyway* is in force. An engine opened afresh on the
    /// same data folder would be in the same state (queued reports are in the history and go
    /// out from there).
    pub fn is_idle(&self) -> bool {
        self.inner.batches_running.load(Ordering::SeqCst) == 0 && !self.is_paused() && !self.holds().overridden
    }

    /// Stops running batches and waits for them to let go.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Applies a new concurrency at once: extra permits now, or fewer as running requests end.
    fn resize_permits(&self, concurrency: usize) {
        let wanted = concurrency * transfer::PERMITS_PER_SLOT as usize;
        let mut current = self.inner.permit_count.lock().unwrap_or_else(|p| p.into_inner());
        if wanted > *current {
            self.inner.permits.add_permits(wanted - *current);
        } else if wanted < *current {
            let forgotten = self.inner.permits.forget_permits(*current - wanted);
            if forgotten < *current - wanted {
                // Some are in use: take them back as they come free.
                let permits = self.clone();
                let missing = (*current - wanted - forgotten) as u32;
                self.inner.tasks.spawn_on(
                    async move {
                        if let Ok(p) = permits.inner.permits.acquire_many(missing).await {
                            p.forget();
                        }
                    },
                    &self.inner.runtime,
                );
            }
        }
        *current = wanted;
    }

    fn emit(&self, event: Event) {
        // Nobody listening is fine: the history holds the outcome.
        let _ = self.inner.events.send(event);
    }
}
