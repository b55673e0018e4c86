//! The one handle the shells hold. It owns the settings, the history store, the HTTP client and
//! every running batch: a batch walks its files through hash → presign → PUT → report, telling
//! subscribers what happens through [`Event`]s.

mod conditions;
mod job;
mod multipart;
mod reports;
mod resume;
mod single;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tokio::sync::Semaphore;

use self::conditions::Conditions;
use self::job::{file_name_of, Job, Sent};
use crate::auth::{self, LiveSession, Session};
use crate::backend::{self, Credential, FileToSign, PatientBackend, SigningBackend};
use crate::conditions::ConditionsMonitor;
use crate::config::{TransferSettings, HISTORY_FILE};
use crate::control::{Controls, Gate};
use crate::instance::InstanceLock;
use crate::network::NetworkSettings;
use crate::report::Outbox;
use crate::schedule::ScheduleHandle;
use crate::store::{NewUpload, Store, UploadStatus, Uploading};
use crate::transfer::{self, PartPlan, RetryNow, RetryPolicy, Throttle, TransferError};
use crate::{checksum, scan, Error, ErrorInfo, Event, HistoryEntry, HistoryQuery, QueuedFile, Settings, Source};

/// Keeps `throttle` on the settings' bandwidth schedule, when they have one.
fn start_schedule(throttle: &Arc<Throttle>, settings: &Settings, runtime: &Handle) -> Option<ScheduleHandle> {
    let schedule = &settings.network.bandwidth_schedule;
    (!schedule.is_empty()).then(|| {
        crate::schedule::spawn(Arc::clone(throttle), settings.transfer.bandwidth_limit, schedule.clone(), runtime)
    })
}

/// Chunks of a batch in progress at once: enough that a chunk's report round trip overlaps
/// the next chunk's uploads.
const CHUNKS_IN_FLIGHT: usize = 3;
/// Files hashed at once; hashing is CPU-bound, one per core on a small machine.
const HASH_CONCURRENCY: usize = 2;
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
}

/// The engine's HTTP client and the network settings it was built for.
struct HttpClient {
    client: reqwest::Client,
    network: NetworkSettings,
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
                permit_count: Mutex::new(permits),
                retry: RetryPolicy::default(),
                retry_now: RetryNow::default(),
                throttle,
                schedule: Mutex::new(schedule),
                conditions: Mutex::default(),
                controls: Controls::default(),
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
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

    fn backend(&self) -> Result<Arc<dyn SigningBackend>, Error> {
        self.connect(&self.settings().ok_or(Error::NotConfigured)?)
    }

    fn connect(&self, settings: &Settings) -> Result<Arc<dyn SigningBackend>, Error> {
        // Each request asks the engine for its client then, so a backend made before the
        // machine slept uses the one made after it.
        let engine = Arc::downgrade(&self.inner);
        let client: backend::http::ClientSource =
            Arc::new(move || engine.upgrade().map(|inner| Engine { inner }.http()).unwrap_or_default());
        backend::connect(settings, client, self.credential_for(settings))
    }

    /// A pasted token wins; else the session, when it was made for this backend.
    pub(crate) fn credential_for(&self, settings: &Settings) -> Credential {
        let session = self.session().filter(|s| s.is_for(&settings.backend_url));
        Credential::choose(&settings.token, session)
    }

    /// The signed-in session, if any (whichever backend it is for).
    pub fn session(&self) -> Option<Arc<LiveSession>> {
        self.inner.session.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Uses `session` from now on (`None` after signing out); running batches keep theirs.
    pub fn set_session(&self, session: Option<Session>) {
        let live = session.map(|s| LiveSession::new(&self.inner.data_dir, self.http(), s));
        *self.inner.session.write().unwrap_or_else(|p| p.into_inner()) = live;
    }

    /// The HTTP client every request of this engine goes through (cheap to clone).
    pub fn http(&self) -> reqwest::Client {
        self.inner.http.read().unwrap_or_else(|p| p.into_inner()).client.clone()
    }

    /// Builds the HTTP client anew when the proxy or the trusted certificates changed, for the
    /// backend, the uploads and the sign-in's refreshes alike.
    fn use_network(&self, network: &NetworkSettings) -> Result<(), Error> {
        if !self.inner.http.read().unwrap_or_else(|p| p.into_inner()).network.needs_new_client(network) {
            return Ok(());
        }
        let client = crate::network::http_client(network)?;
        if let Some(session) = self.session() {
            session.use_http(client.clone());
        }
        *self.inner.http.write().unwrap_or_else(|p| p.into_inner()) = HttpClient { client, network: network.clone() };
        Ok(())
    }

    /// The backend a batch signs with: it waits out outages, telling the shells while it does.
    fn connect_patiently(&self, settings: &Settings) -> Result<Arc<dyn SigningBackend>, Error> {
        let engine = self.clone();
        let on_outage: backend::OnOutage = Arc::new(move |attempt, pause, error| {
            let reason = Error::from(error.clone()).info();
            engine.emit(Event::BackendRetrying { attempt, retry_in_ms: pause.as_millis() as u64, reason });
        });
        let patient = PatientBackend::new(self.connect(settings)?, self.backend_wait(), on_outage)
            .retrying_now_with(self.inner.retry_now.clone())
            .restarting_with(self.inner.controls.restarts());
        Ok(Arc::new(patient))
    }

    fn emit(&self, event: Event) {
        // Nobody listening is fine: the history holds the outcome.
        let _ = self.inner.events.send(event);
    }

    async fn run_batch(
        &self,
        batch_id: String,
        paths: Vec<PathBuf>,
        source: Source,
        key_prefix: Option<String>,
    ) -> BatchSummary {
        let mut summary = BatchSummary { batch_id: batch_id.clone(), files: Vec::new(), error: None };
        self.conditions_known().await;
        // One snapshot of the settings for the whole batch, so a change meanwhile cannot pair
        // one backend with another's transfer settings.
        let settings = self.settings();
        let settings_snapshot = settings.clone();
        let backend = match settings.as_ref().ok_or(Error::NotConfigured).and_then(|s| self.connect_patiently(s)) {
            Ok(backend) => backend,
            Err(e) => return self.fail_batch(summary, e),
        };
        let transfer = settings.map(|s| s.transfer).unwrap_or_default();

        let scan::Expanded { files: found, failures: unreadable, skipped } =
            match tokio::task::spawn_blocking(move || scan::expand(&paths)).await {
                Ok(result) => result,
                Err(e) => {
                    let error = Error::Unreadable { path: "the dropped paths".into(), detail: e.to_string() };
                    return self.fail_batch(summary, error);
                }
            };
        for (path, error) in unreadable {
            let outcome = self.record_unreadable(&batch_id, &path, source, error);
            summary.files.push(outcome);
        }
        summary.files.extend(skipped.into_iter().map(|(path, reason)| FileOutcome {
            path,
            status: FileStatus::Skipped,
            key: None,
            size: None,
            upload_id: None,
            object_url: None,
            checksum_sha256: None,
            error: Some(ErrorInfo { code: "link_outside_folder".into(), message: reason }),
        }));

        // A file whose upload an earlier run left unfinished carries on under the same history
        // row (and, for parts, the same multipart upload), never as a second one.
        let mut interrupted = match self.interrupted_by_path() {
            Ok(interrupted) => interrupted,
            Err(e) => return self.fail_batch(summary, e),
        };
        let mut adopted = std::collections::HashSet::new();
        let mut awaiting_report = Vec::new();
        let mut jobs: Vec<Job> = Vec::with_capacity(found.len());
        for file in found {
            let earlier = (!interrupted.is_empty())
                .then(|| std::fs::canonicalize(&file.path).ok().and_then(|p| interrupted.remove(&p)))
                .flatten();
            let upload_id = earlier.as_ref().map_or_else(|| uuid::Uuid::new_v4().to_string(), |u| u.upload_id.clone());
            let job = Job {
                file_name: file_name_of(&file.path),
                content_type: mime_guess::from_path(&file.path).first_or_octet_stream().essence_str().to_owned(),
                path: file.path,
                size: file.size,
                checksum: None,
                parts: None,
                gate: self.inner.controls.register(&upload_id, source.into()),
                upload_id,
                key_prefix: key_prefix.clone(),
            };
            let Some(earlier) = earlier else {
                jobs.push(job);
                continue;
            };
            // The outbox is looked at before the row is taken over: a report queued then is
            // either still queued or delivered by now, never lost in between (the deliverer
            // may be sending it this very moment).
            let report_queued = self.report_is_queued(&earlier.upload_id);
            let status = match self.inner.store.adopt(&job.upload_id, &batch_id, job.size) {
                Ok(status) => status,
                Err(e) => return self.fail_batch(summary, e.into()),
            };
            tracing::info!(upload_id = %job.upload_id, path = %job.path.display(), ?status, "carrying on with an interrupted upload");
            adopted.insert(job.upload_id.clone());
            match status {
                // Finished meanwhile, or in S3 with its report queued: only the report's
                // outcome is left to wait for.
                None => awaiting_report.push(job),
                Some(UploadStatus::Reporting) if report_queued => awaiting_report.push(job),
                Some(_) => jobs.push(job),
            }
        }
        let uploaded_by = settings_user(self, settings_snapshot.as_ref());
        let queued: Vec<NewUpload<'_>> = jobs
            .iter()
            .filter(|job| !adopted.contains(&job.upload_id))
            .map(|job| NewUpload {
                upload_id: &job.upload_id,
                batch_id: &batch_id,
                path: &job.path,
                file_name: &job.file_name,
                size: job.size,
                content_type: &job.content_type,
                source,
                uploaded_by: uploaded_by.as_deref(),
            })
            .collect();
        if let Err(e) = self.inner.store.insert_all(&queued) {
            return self.fail_batch(summary, e.into());
        }
        drop(queued);
        // One event for the whole batch: per-file events overflowed the channel on big drops.
        let files: Vec<QueuedFile> = jobs
            .iter()
            .chain(&awaiting_report)
            .map(|job| QueuedFile {
                upload_id: job.upload_id.clone(),
                path: job.path.clone(),
                file_name: job.file_name.clone(),
                size: job.size,
            })
            .collect();
        if !files.is_empty() {
            self.emit(Event::FilesQueued { batch_id: batch_id.clone(), files });
        }

        // Chunks overlap: one chunk's hashing, presigning and report round trips hide behind
        // the next one's uploads. The shared permits still bound the requests in flight.
        let chunk_size = backend.max_presign_batch();
        let chunks_in_flight = if chunk_size == 1 { transfer.concurrency as usize } else { CHUNKS_IN_FLIGHT };
        let halted = OnceLock::new();
        let mut jobs = jobs.into_iter().peekable();
        let chunks = std::iter::from_fn(|| jobs.peek().is_some().then(|| jobs.by_ref().take(chunk_size).collect()));
        let outcomes: Vec<Vec<FileOutcome>> = stream::iter(chunks)
            .map(|chunk| self.run_chunk(chunk, &transfer, backend.as_ref(), &halted))
            .buffer_unordered(chunks_in_flight)
            .collect()
            .await;
        summary.files.extend(outcomes.into_iter().flatten());
        if !awaiting_report.is_empty() {
            let sent = awaiting_report.into_iter().filter_map(|job| self.already_sent(job)).collect();
            summary.files.extend(self.await_reports(sent).await);
        }
        if let Some(error) = halted.into_inner() {
            return self.fail_batch(summary, error);
        }

        self.emit(Event::BatchFinished {
            batch_id,
            uploaded: summary.count(FileStatus::Uploaded),
            failed: summary.count(FileStatus::Failed),
        });
        summary
    }

    /// One chunk of a batch, as many files as one presign request carries: hash, presign, send,
    /// report. A failure that stops the whole batch (backend down, token refused) is kept in
    /// `halted`, and the chunks after it fail their files with it without asking again.
    async fn run_chunk(
        &self,
        chunk: Vec<Job>,
        transfer: &TransferSettings,
        backend: &dyn SigningBackend,
        halted: &OnceLock<Error>,
    ) -> Vec<FileOutcome> {
        let mut files = Vec::with_capacity(chunk.len());
        if let Some(error) = halted.get() {
            files.extend(chunk.iter().map(|job| self.fail(job, error)));
            return files;
        }
        let ready = self.prepare(chunk, transfer, backend, &mut files).await;
        let (multipart, single): (Vec<Job>, Vec<Job>) = ready.into_iter().partition(|job| job.parts.is_some());
        let (single, signed) = match self.presign_all(&single, backend).await {
            Ok(signed) => (single, signed),
            Err(error) if error.is_batch_level() => {
                let error = halted.get_or_init(|| error);
                files.extend(single.iter().chain(&multipart).map(|job| self.fail(job, error)));
                return files;
            }
            Err(error) => {
                files.extend(single.iter().map(|job| self.fail(job, &error)));
                (Vec::new(), Vec::new())
            }
        };
        let mut singles = Vec::with_capacity(single.len());
        for (job, signed) in single.into_iter().zip(signed) {
            match signed {
                Ok(url) => singles.push((job, Some(url))),
                // This file's answer was unusable (a URL it may not use, say): it alone fails.
                Err(error) => files.push(self.fail(&job, &error.into())),
            }
        }
        // Where each file goes, recorded for the whole chunk in one transaction: a commit per
        // file was the history's main cost per small file (each one also updates the search index).
        let destinations: Vec<Uploading<'_>> = singles
            .iter()
            .filter_map(|(job, url)| {
                let url = url.as_ref()?;
                Some(Uploading {
                    upload_id: &job.upload_id,
                    checksum: job.checksum.as_deref(),
                    key: url.key.as_deref(),
                    object_url: &url.object_url,
                })
            })
            .collect();
        if let Err(error) = self.inner.store.mark_all_uploading(&destinations) {
            drop(destinations);
            let error = Error::from(error);
            files.extend(singles.iter().map(|(job, _)| self.fail(job, &error)));
            singles.clear();
        }
        let all = singles.into_iter().chain(multipart.into_iter().map(|job| (job, None)));
        let results: Vec<Result<Sent, FileOutcome>> = stream::iter(all)
            .map(|(job, url)| self.send(job, url, transfer, backend))
            // The permits decide how many actually send; see `transfer::permits_for`.
            .buffer_unordered(transfer.concurrency as usize * transfer::PERMITS_PER_SLOT as usize)
            .collect()
            .await;
        let mut sent = Vec::with_capacity(results.len());
        for result in results {
            match result {
                Ok(done) => sent.push(done),
                Err(failed) => files.push(failed),
            }
        }
        if let Err(error) = self.report_all(sent, &mut files).await {
            let _ = halted.set(error);
        }
        files
    }

    /// Hashes the chunk's files (in parts, for the ones that go up in parts); the ones that
    /// cannot be read or are too large fail here.
    async fn prepare(
        &self,
        chunk: Vec<Job>,
        transfer: &TransferSettings,
        backend: &dyn SigningBackend,
        failed: &mut Vec<FileOutcome>,
    ) -> Vec<Job> {
        let max_size = backend.max_file_size();
        let multipart = backend.supports_multipart();
        let hashed: Vec<(Job, Result<(), Error>)> = stream::iter(chunk)
            .map(|mut job| async move {
                if job.size > max_size {
                    let error = TransferError::TooLarge {
                        path: job.path.display().to_string(),
                        size: job.size,
                        limit: max_size,
                    };
                    return (job, Err(error.into()));
                }
                let plan = (multipart && job.size >= transfer.multipart_threshold)
                    .then(|| PartPlan::new(job.size, transfer.part_size))
                    .flatten();
                if plan.is_some() {
                    // Large files are hashed part by part during the upload, not ahead of it.
                    job.parts = plan;
                    return (job, Ok(()));
                }
                let path = job.path.clone();
                let hashed = tokio::task::spawn_blocking(move || checksum::sha256_file(&path)).await;
                let result = match hashed {
                    Ok(Ok((_, len))) if len != job.size => Err(TransferError::FileChanged {
                        path: job.path.display().to_string(),
                        detail: format!("it was {} bytes and then {len} bytes", job.size),
                    }
                    .into()),
                    Ok(Ok((whole, _))) => {
                        job.checksum = Some(whole);
                        Ok(())
                    }
                    Ok(Err(e)) => Err(scan::io_error(&job.path, e)),
                    Err(e) => Err(Error::Unreadable { path: job.path.display().to_string(), detail: e.to_string() }),
                };
                (job, result)
            })
            .buffered(HASH_CONCURRENCY)
            .collect()
            .await;
        let mut ready = Vec::with_capacity(hashed.len());
        for (job, result) in hashed {
            match result {
                Ok(()) => ready.push(job),
                Err(error) => failed.push(self.fail(&job, &error)),
            }
        }
        ready
    }

    async fn presign_all(&self, jobs: &[Job], backend: &dyn SigningBackend) -> Result<Vec<backend::Signed>, Error> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let files: Vec<FileToSign> = jobs.iter().map(Job::to_sign).collect();
        Ok(backend.presign(&files).await?)
    }

    /// A path that could not even be listed still gets a history row, so the person sees it.
    fn record_unreadable(&self, batch_id: &str, path: &Path, source: Source, error: Error) -> FileOutcome {
        let job = Job {
            upload_id: uuid::Uuid::new_v4().to_string(),
            path: path.to_owned(),
            file_name: file_name_of(path),
            size: 0,
            content_type: String::new(),
            checksum: None,
            parts: None,
            gate: Gate::inert(),
            key_prefix: None,
        };
        let new = NewUpload {
            upload_id: &job.upload_id,
            batch_id,
            path,
            file_name: &job.file_name,
            size: 0,
            content_type: "",
            source,
            uploaded_by: None,
        };
        if let Err(e) = self.inner.store.insert(&new) {
            tracing::error!("could not record {} in history: {e}", path.display());
        }
        let mut outcome = self.fail(&job, &error);
        outcome.size = None;
        outcome
    }

    fn fail_batch(&self, mut summary: BatchSummary, error: Error) -> BatchSummary {
        tracing::error!(batch_id = %summary.batch_id, code = error.code(), "batch failed: {error}");
        self.emit(Event::BatchFailed { batch_id: summary.batch_id.clone(), error: error.info() });
        summary.error = Some(error);
        summary
    }
}

/// Whom the batch uploads as, when it runs under a sign-in (a pasted token names nobody here).
fn settings_user(engine: &Engine, settings: Option<&Settings>) -> Option<String> {
    match engine.credential_for(settings?) {
        Credential::Session(session) => Some(session.user().to_owned()),
        Credential::Token(_) | Credential::None => None,
    }
}
