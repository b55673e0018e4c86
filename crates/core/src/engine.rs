//! The one handle the shells hold. It owns the settings, the history store, the HTTP client and
//! every running batch: a batch walks its files through hash → presign → PUT → report, telling
//! subscribers what happens through [`Event`]s.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tokio::sync::Semaphore;

use crate::backend::{self, CompletionReport, FileToSign, PresignedUpload, SigningBackend};
use crate::config::{TransferSettings, HISTORY_FILE};
use crate::control::{Controls, Gate};
use crate::store::{NewUpload, Store};
use crate::transfer::{self, MultipartRun, Next, PartPlan, RetryPolicy, Throttle, TransferError};
use crate::{checksum, scan, Error, ErrorInfo, Event, HistoryEntry, HistoryQuery, Settings, Source};

/// Fresh URLs asked for one file before giving up on it: a URL refused again right after
/// re-signing is not an expiry problem.
const MAX_RESIGNS: u32 = 2;
/// Chunks of a batch in progress at once: enough that a chunk's report round trip overlaps
/// the next chunk's uploads.
const CHUNKS_IN_FLIGHT: usize = 3;
/// Files hashed at once; hashing is CPU-bound, one per core on a small machine.
const HASH_CONCURRENCY: usize = 2;
/// Progress events per file at most this often, so a fast upload does not flood the UI.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
const EVENT_BUFFER: usize = 4096;

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    data_dir: PathBuf,
    store: Store,
    settings: RwLock<Option<Settings>>,
    events: broadcast::Sender<Event>,
    http: reqwest::Client,
    runtime: Handle,
    /// One permit per request in flight, shared by every file and part of every batch, so the
    /// concurrency setting bounds the whole engine.
    permits: Semaphore,
    /// The permits `permits` was last sized to (settings can change it while running).
    permit_count: Mutex<usize>,
    retry: RetryPolicy,
    throttle: Arc<Throttle>,
    controls: Controls,
    tasks: TaskTracker,
    shutdown: CancellationToken,
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

/// One file's way through the batch.
struct Job {
    upload_id: String,
    path: PathBuf,
    file_name: String,
    size: u64,
    content_type: String,
    /// Base64 SHA-256 of the file, or S3's composite checksum (`<b64>-<parts>`) when it goes up
    /// in parts.
    checksum: Option<String>,
    /// For files that go up in parts: how they are cut. Their parts are hashed as they go.
    parts: Option<PartPlan>,
    gate: Gate,
}

impl Job {
    fn to_sign(&self) -> FileToSign {
        FileToSign {
            upload_id: self.upload_id.clone(),
            file_name: self.file_name.clone(),
            size: self.size,
            content_type: self.content_type.clone(),
            checksum_sha256: self.checksum.clone().unwrap_or_default(),
        }
    }
}

/// A file whose bytes are in S3, waiting to be reported.
struct Sent {
    job: Job,
    key: Option<String>,
    object_url: String,
}

impl Sent {
    fn report(&self) -> CompletionReport {
        CompletionReport {
            upload_id: self.job.upload_id.clone(),
            key: self.key.clone(),
            object_url: self.object_url.clone(),
            file_name: self.job.file_name.clone(),
            size: self.job.size,
            content_type: self.job.content_type.clone(),
            checksum_sha256: self.job.checksum.clone().unwrap_or_default(),
        }
    }
}

impl Engine {
    /// Opens the data directory (settings and history) and runs batches on `runtime`.
    pub fn open(data_dir: &Path, runtime: Handle) -> Result<Engine, Error> {
        let store = Store::open(&data_dir.join(HISTORY_FILE))?;
        let settings = Settings::load(data_dir)?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("dropship/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::InvalidSettings(format!("could not set up HTTP: {e}")))?;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let transfer = settings.as_ref().map(|s| s.transfer).unwrap_or_default();
        let concurrency = transfer.concurrency as usize;
        let throttle = Arc::new(Throttle::default());
        throttle.set_rate(transfer.bandwidth_limit);
        Ok(Engine {
            inner: Arc::new(Inner {
                data_dir: data_dir.to_owned(),
                store,
                settings: RwLock::new(settings),
                events,
                http,
                runtime,
                permits: Semaphore::new(concurrency),
                permit_count: Mutex::new(concurrency),
                retry: RetryPolicy::default(),
                throttle,
                controls: Controls::default(),
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
            }),
        })
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
        self.resize_permits(settings.transfer.concurrency as usize);
        self.inner.throttle.set_rate(settings.transfer.bandwidth_limit);
        *self.inner.settings.write().unwrap_or_else(|p| p.into_inner()) = Some(settings);
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
                    _ = engine.run_batch(id, paths, source) => {}
                    _ = shutdown.cancelled() => {}
                }
            },
            &self.inner.runtime,
        );
        batch_id
    }

    /// Uploads `paths` (folders recursively) and returns what happened to each file.
    pub async fn upload(&self, paths: Vec<PathBuf>, source: Source) -> BatchSummary {
        self.run_batch(uuid::Uuid::new_v4().to_string(), paths, source).await
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
    fn resize_permits(&self, wanted: usize) {
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
        backend::connect(settings, self.inner.http.clone())
    }

    fn emit(&self, event: Event) {
        // Nobody listening is fine: the history holds the outcome.
        let _ = self.inner.events.send(event);
    }

    async fn run_batch(&self, batch_id: String, paths: Vec<PathBuf>, source: Source) -> BatchSummary {
        let mut summary = BatchSummary { batch_id: batch_id.clone(), files: Vec::new(), error: None };
        // One snapshot of the settings for the whole batch, so a change meanwhile cannot pair
        // one backend with another's transfer settings.
        let settings = self.settings();
        let backend = match settings.as_ref().ok_or(Error::NotConfigured).and_then(|s| self.connect(s)) {
            Ok(backend) => backend,
            Err(e) => return self.fail_batch(summary, e),
        };
        let transfer = settings.map(|s| s.transfer).unwrap_or_default();

        let (found, unreadable) = match tokio::task::spawn_blocking(move || scan::expand(&paths)).await {
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

        let jobs: Vec<Job> = found
            .into_iter()
            .map(|file| {
                let upload_id = uuid::Uuid::new_v4().to_string();
                Job {
                    file_name: file_name_of(&file.path),
                    content_type: mime_guess::from_path(&file.path).first_or_octet_stream().essence_str().to_owned(),
                    path: file.path,
                    size: file.size,
                    checksum: None,
                    parts: None,
                    gate: self.inner.controls.register(&upload_id),
                    upload_id,
                }
            })
            .collect();
        let queued: Vec<NewUpload<'_>> = jobs
            .iter()
            .map(|job| NewUpload {
                upload_id: &job.upload_id,
                batch_id: &batch_id,
                path: &job.path,
                file_name: &job.file_name,
                size: job.size,
                content_type: &job.content_type,
                source,
            })
            .collect();
        if let Err(e) = self.inner.store.insert_all(&queued) {
            return self.fail_batch(summary, e.into());
        }
        drop(queued);
        for job in &jobs {
            self.emit(Event::FileQueued {
                upload_id: job.upload_id.clone(),
                batch_id: batch_id.clone(),
                path: job.path.clone(),
                file_name: job.file_name.clone(),
                size: job.size,
            });
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
        let singles = single.into_iter().zip(signed).map(|(job, url)| (job, Some(url)));
        let all = singles.chain(multipart.into_iter().map(|job| (job, None)));
        let results: Vec<Result<Sent, FileOutcome>> = stream::iter(all)
            .map(|(job, url)| self.send(job, url, transfer, backend))
            .buffer_unordered(transfer.concurrency as usize)
            .collect()
            .await;
        let mut sent = Vec::with_capacity(results.len());
        for result in results {
            match result {
                Ok(done) => sent.push(done),
                Err(failed) => files.push(failed),
            }
        }
        if let Err(error) = self.report_all(sent, backend, &mut files).await {
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

    async fn presign_all(&self, jobs: &[Job], backend: &dyn SigningBackend) -> Result<Vec<PresignedUpload>, Error> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let files: Vec<FileToSign> = jobs.iter().map(Job::to_sign).collect();
        Ok(backend.presign(&files).await?)
    }

    /// Sends one file's bytes: a single PUT when it has a URL, parts otherwise.
    async fn send(
        &self,
        job: Job,
        url: Option<PresignedUpload>,
        transfer: &TransferSettings,
        backend: &dyn SigningBackend,
    ) -> Result<Sent, FileOutcome> {
        let result = match url {
            _ if job.gate.is_cancelled() => Err(Error::Cancelled),
            Some(url) => self.send_single(&job, url, backend).await.map(|(key, url)| (key, url, None)),
            None => self.send_multipart(&job, transfer, backend).await,
        };
        match result {
            Ok((key, object_url, checksum)) => {
                let mut job = job;
                job.checksum = checksum.or(job.checksum);
                Ok(Sent { job, key, object_url })
            }
            Err(error) => Err(self.fail(&job, &error)),
        }
    }

    async fn send_single(
        &self,
        job: &Job,
        mut upload: PresignedUpload,
        backend: &dyn SigningBackend,
    ) -> Result<(Option<String>, String), Error> {
        self.inner.store.mark_uploading(
            &job.upload_id,
            job.checksum.as_deref(),
            upload.key.as_deref(),
            &upload.object_url,
        )?;
        tracing::info!(upload_id = %job.upload_id, url = %backend::redact_url(&upload.url), size = job.size, "uploading");
        let (mut attempt, mut resigns) = (0u32, 0u32);
        let mut gate = job.gate.clone();
        let on_retry = self.retry_reporter(job);
        loop {
            gate.wait_open().await.map_err(|_| Error::Cancelled)?;
            let _permit = self.inner.permits.acquire().await.map_err(|_| Error::ShuttingDown)?;
            let progress = self.progress_reporter(job);
            let sending =
                transfer::send_file(&self.inner.http, &upload, &job.path, job.size, progress, &self.inner.throttle);
            let result = tokio::select! {
                result = sending => result,
                // Paused or cancelled: a single PUT cannot be resumed midway, so it starts over.
                _ = gate.closed() => continue,
            };
            let error = match result {
                Ok(()) => return Ok((upload.key, upload.object_url)),
                Err(error) => error,
            };
            attempt += 1;
            match transfer::classify(&error) {
                Next::Retry if attempt < self.inner.retry.max_attempts => {
                    tracing::info!(upload_id = %job.upload_id, attempt, "upload failed, retrying: {error}");
                    let delay = self.inner.retry.delay(attempt);
                    on_retry(attempt, delay, &error);
                    drop(_permit);
                    tokio::time::sleep(delay).await;
                }
                Next::Resign if resigns < MAX_RESIGNS => {
                    tracing::info!(upload_id = %job.upload_id, "upload URL refused, signing it again: {error}");
                    resigns += 1;
                    upload = backend.presign(&[job.to_sign()]).await?.pop().ok_or(error)?;
                    // Some flavours choose a new key with every signature: keep history true.
                    let (key, object_url) = (upload.key.as_deref(), upload.object_url.as_str());
                    self.inner.store.mark_uploading(&job.upload_id, job.checksum.as_deref(), key, object_url)?;
                }
                _ => return Err(error.into()),
            }
        }
    }

    async fn send_multipart(
        &self,
        job: &Job,
        transfer: &TransferSettings,
        backend: &dyn SigningBackend,
    ) -> Result<(Option<String>, String, Option<String>), Error> {
        let plan = job.parts.as_ref().expect("multipart jobs are planned");
        let upload = backend.create_multipart(&job.to_sign()).await?;
        self.inner.store.mark_uploading(&job.upload_id, None, Some(&upload.key), &upload.object_url)?;
        tracing::info!(upload_id = %job.upload_id, key = %upload.key, parts = plan.part_count, "uploading in parts");
        let progress = self.progress_reporter(job);
        let run = MultipartRun {
            client: &self.inner.http,
            backend,
            upload: &upload,
            path: &job.path,
            plan: *plan,
            permits: &self.inner.permits,
            throttle: &self.inner.throttle,
            max_in_flight: transfer.concurrency as usize,
            retry: self.inner.retry,
            progress,
            on_retry: self.retry_reporter(job),
            gate: job.gate.clone(),
        };
        let sending = async {
            let (parts, checksum) = transfer::upload_parts(&run).await?;
            backend.complete_multipart(&upload, &parts).await?;
            Ok::<_, Error>(checksum)
        };
        let completed = tokio::select! {
            result = sending => result,
            _ = job.gate.cancelled() => Err(Error::Cancelled),
        };
        match completed {
            Ok(checksum) => Ok((Some(upload.key), upload.object_url, Some(checksum))),
            Err(error) => {
                // Leave nothing half-done in the bucket: S3 keeps (and bills) unfinished uploads.
                if let Err(abort) = backend.abort_multipart(&upload).await {
                    tracing::warn!(upload_id = %job.upload_id, "could not abort the multipart upload: {abort}");
                }
                Err(error)
            }
        }
    }

    /// Tells the backend about every file of the chunk that landed, in as few round trips as
    /// the flavour allows. Errs only when the backend as a whole is unusable.
    async fn report_all(
        &self,
        sent: Vec<Sent>,
        backend: &dyn SigningBackend,
        files: &mut Vec<FileOutcome>,
    ) -> Result<(), Error> {
        if sent.is_empty() {
            return Ok(());
        }
        let reporting: Vec<(&str, Option<&str>)> =
            sent.iter().map(|done| (done.job.upload_id.as_str(), done.job.checksum.as_deref())).collect();
        if let Err(e) = self.inner.store.mark_reporting_all(&reporting) {
            tracing::error!("could not record progress in history: {e}");
        }
        let reports: Vec<CompletionReport> = sent.iter().map(Sent::report).collect();
        let results = match backend.report_batch(&reports).await {
            Ok(results) => results,
            Err(e) => {
                let error = Error::from(e);
                for done in &sent {
                    files.push(self.fail(&done.job, &error));
                }
                return Err(error);
            }
        };
        let (recorded, rejected): (Vec<_>, Vec<_>) = sent.into_iter().zip(results).partition(|(_, r)| r.is_ok());
        for (done, result) in rejected {
            let error = Error::from(result.expect_err("partitioned on errors"));
            files.push(self.fail(&done.job, &error));
        }
        let ids: Vec<&str> = recorded.iter().map(|(done, _)| done.job.upload_id.as_str()).collect();
        match self.inner.store.mark_uploaded_all(&ids) {
            Ok(()) => files.extend(recorded.into_iter().map(|(done, _)| self.uploaded(done))),
            Err(e) => {
                let error = Error::from(e);
                files.extend(recorded.iter().map(|(done, _)| self.fail(&done.job, &error)));
            }
        }
        Ok(())
    }

    fn uploaded(&self, done: Sent) -> FileOutcome {
        let Sent { job, key, object_url } = done;
        self.inner.controls.forget(&job.upload_id);
        self.emit(Event::FileUploaded {
            upload_id: job.upload_id.clone(),
            key: key.clone().unwrap_or_default(),
            object_url: object_url.clone(),
            size: job.size,
        });
        FileOutcome {
            path: job.path,
            status: FileStatus::Uploaded,
            key,
            size: Some(job.size),
            upload_id: Some(job.upload_id),
            object_url: Some(object_url),
            checksum_sha256: job.checksum,
            error: None,
        }
    }

    fn progress_reporter(&self, job: &Job) -> transfer::Progress {
        let engine = self.clone();
        let upload_id = job.upload_id.clone();
        let total = job.size;
        let speed = Mutex::new(SpeedMeter::default());
        Arc::new(move |bytes_done| {
            let mut speed = speed.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(bytes_per_second) = speed.sample(bytes_done, bytes_done == total) {
                engine.emit(Event::FileProgress { upload_id: upload_id.clone(), bytes_done, total, bytes_per_second });
            }
        })
    }

    fn retry_reporter(&self, job: &Job) -> transfer::OnRetry {
        let engine = self.clone();
        let upload_id = job.upload_id.clone();
        Arc::new(move |attempt, delay, error| {
            engine.emit(Event::FileRetrying {
                upload_id: upload_id.clone(),
                attempt,
                retry_in_ms: delay.as_millis() as u64,
                offline: matches!(error, TransferError::Network { .. }),
                reason: Error::from(error.clone()).info(),
            });
        })
    }

    fn fail(&self, job: &Job, error: &Error) -> FileOutcome {
        self.inner.controls.forget(&job.upload_id);
        let info = error.info();
        if let Err(e) = self.inner.store.mark_failed(&job.upload_id, &info.code, &info.message) {
            tracing::error!(upload_id = %job.upload_id, "could not record the failure in history: {e}");
        }
        tracing::warn!(upload_id = %job.upload_id, path = %job.path.display(), code = %info.code, "upload failed: {}", info.message);
        self.emit(Event::FileFailed { upload_id: job.upload_id.clone(), path: job.path.clone(), error: info.clone() });
        FileOutcome {
            path: job.path.clone(),
            status: FileStatus::Failed,
            key: None,
            size: Some(job.size),
            upload_id: Some(job.upload_id.clone()),
            object_url: None,
            checksum_sha256: job.checksum.clone(),
            error: Some(info),
        }
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
        };
        let new = NewUpload {
            upload_id: &job.upload_id,
            batch_id,
            path,
            file_name: &job.file_name,
            size: 0,
            content_type: "",
            source,
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

fn file_name_of(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

/// Bytes per second, smoothed so the number a person reads does not jump with every chunk.
#[derive(Default)]
struct SpeedMeter {
    last: Option<(Instant, u64)>,
    smoothed: f64,
}

impl SpeedMeter {
    /// Takes a progress sample; returns the speed when an event is due (at most every
    /// [`PROGRESS_INTERVAL`], and always for the last byte).
    fn sample(&mut self, bytes_done: u64, finished: bool) -> Option<u64> {
        let now = Instant::now();
        let Some((at, bytes)) = self.last else {
            self.last = Some((now, bytes_done));
            return Some(0);
        };
        let elapsed = now.duration_since(at);
        if elapsed < PROGRESS_INTERVAL && !finished {
            return None;
        }
        let seconds = elapsed.as_secs_f64().max(1e-3);
        let instant = bytes_done.saturating_sub(bytes) as f64 / seconds;
        // An exponential moving average with a time constant of about two seconds.
        let weight = (seconds / 2.0).min(1.0);
        self.smoothed = if self.smoothed == 0.0 { instant } else { self.smoothed + weight * (instant - self.smoothed) };
        self.last = Some((now, bytes_done));
        Some(self.smoothed as u64)
    }
}
