//! The one handle the shells hold. It owns the settings, the history store, the HTTP client and
//! every running batch: a batch walks its files through hash → presign → PUT → report, telling
//! subscribers what happens through [`Event`]s.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::{self, CompletionReport, FileToSign, PresignedUpload, SigningBackend};
use crate::config::HISTORY_FILE;
use crate::store::{NewUpload, Store};
use crate::transfer::{self, TransferError};
use crate::{checksum, scan, Error, ErrorInfo, Event, HistoryEntry, HistoryQuery, Settings, Source};

/// Files whose bytes are in flight at once. Enough to hide per-request latency on small files
/// without competing with itself for bandwidth on large ones.
const FILE_CONCURRENCY: usize = 4;
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
    checksum: Option<String>,
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
        Ok(Engine {
            inner: Arc::new(Inner {
                data_dir: data_dir.to_owned(),
                store,
                settings: RwLock::new(settings),
                events,
                http,
                runtime,
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

    /// Stops running batches and waits for them to let go.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    fn backend(&self) -> Result<Arc<dyn SigningBackend>, Error> {
        let settings = self.settings().ok_or(Error::NotConfigured)?;
        backend::connect(&settings, self.inner.http.clone())
    }

    fn emit(&self, event: Event) {
        // Nobody listening is fine: the history holds the outcome.
        let _ = self.inner.events.send(event);
    }

    async fn run_batch(&self, batch_id: String, paths: Vec<PathBuf>, source: Source) -> BatchSummary {
        let mut summary = BatchSummary { batch_id: batch_id.clone(), files: Vec::new(), error: None };
        let backend = match self.backend() {
            Ok(backend) => backend,
            Err(e) => return self.fail_batch(summary, e),
        };

        let (found, unreadable) = match tokio::task::spawn_blocking(move || scan::expand(&paths)).await {
            Ok(result) => result,
            Err(e) => return self.fail_batch(summary, Error::Unreadable { path: "the dropped paths".into(), detail: e.to_string() }),
        };
        for (path, error) in unreadable {
            let outcome = self.record_unreadable(&batch_id, &path, source, error);
            summary.files.push(outcome);
        }

        let mut jobs = Vec::with_capacity(found.len());
        for file in found {
            let job = Job {
                upload_id: uuid::Uuid::new_v4().to_string(),
                file_name: file_name_of(&file.path),
                content_type: mime_guess::from_path(&file.path).first_or_octet_stream().essence_str().to_owned(),
                path: file.path,
                size: file.size,
                checksum: None,
            };
            let new = NewUpload {
                upload_id: &job.upload_id,
                batch_id: &batch_id,
                path: &job.path,
                file_name: &job.file_name,
                size: job.size,
                content_type: &job.content_type,
                source,
            };
            if let Err(e) = self.inner.store.insert(&new) {
                return self.fail_batch(summary, e.into());
            }
            self.emit(Event::FileQueued {
                upload_id: job.upload_id.clone(),
                batch_id: batch_id.clone(),
                path: job.path.clone(),
                file_name: job.file_name.clone(),
                size: job.size,
            });
            jobs.push(job);
        }

        let mut pending = jobs.into_iter().peekable();
        while pending.peek().is_some() {
            let chunk: Vec<Job> = pending.by_ref().take(backend.max_presign_batch()).collect();
            let ready = self.prepare(chunk, backend.max_file_size(), &mut summary).await;
            if ready.is_empty() {
                continue;
            }
            let to_sign: Vec<FileToSign> = ready
                .iter()
                .map(|job| FileToSign {
                    upload_id: job.upload_id.clone(),
                    file_name: job.file_name.clone(),
                    size: job.size,
                    content_type: job.content_type.clone(),
                    checksum_sha256: job.checksum.clone().unwrap_or_default(),
                })
                .collect();
            let signed = match backend.presign(&to_sign).await {
                Ok(signed) => signed,
                Err(e) if e.is_batch_level() => {
                    let error = Error::from(e);
                    for job in ready.into_iter().chain(pending) {
                        summary.files.push(self.fail(&job, &error));
                    }
                    return self.fail_batch(summary, error);
                }
                Err(e) => {
                    let error = Error::from(e);
                    for job in ready {
                        summary.files.push(self.fail(&job, &error));
                    }
                    continue;
                }
            };
            let outcomes: Vec<FileOutcome> = stream::iter(ready.into_iter().zip(signed))
                .map(|(job, upload)| self.send_and_report(job, upload, backend.as_ref()))
                .buffer_unordered(FILE_CONCURRENCY)
                .collect()
                .await;
            summary.files.extend(outcomes);
        }

        self.emit(Event::BatchFinished {
            batch_id,
            uploaded: summary.count(FileStatus::Uploaded),
            failed: summary.count(FileStatus::Failed),
        });
        summary
    }

    /// Hashes the chunk's files; the ones that cannot be read or are too large fail here.
    async fn prepare(&self, chunk: Vec<Job>, max_size: u64, summary: &mut BatchSummary) -> Vec<Job> {
        let hashed: Vec<(Job, Result<String, Error>)> = stream::iter(chunk)
            .map(|job| async move {
                if job.size > max_size {
                    let error = TransferError::TooLarge { path: job.path.display().to_string(), size: job.size, limit: max_size };
                    return (job, Err(error.into()));
                }
                let path = job.path.clone();
                let result = match tokio::task::spawn_blocking(move || checksum::sha256_file(&path)).await {
                    Ok(Ok((digest, len))) if len == job.size => Ok(digest),
                    Ok(Ok((_, len))) => Err(TransferError::FileChanged {
                        path: job.path.display().to_string(),
                        detail: format!("it was {} bytes and then {len} bytes", job.size),
                    }
                    .into()),
                    Ok(Err(e)) => Err(scan::io_error(&job.path, e)),
                    Err(e) => Err(Error::Unreadable { path: job.path.display().to_string(), detail: e.to_string() }),
                };
                (job, result)
            })
            .buffered(HASH_CONCURRENCY)
            .collect()
            .await;
        let mut ready = Vec::with_capacity(hashed.len());
        for (mut job, result) in hashed {
            match result {
                Ok(digest) => {
                    job.checksum = Some(digest);
                    ready.push(job);
                }
                Err(error) => summary.files.push(self.fail(&job, &error)),
            }
        }
        ready
    }

    async fn send_and_report(&self, job: Job, upload: PresignedUpload, backend: &dyn SigningBackend) -> FileOutcome {
        let checksum = job.checksum.clone().unwrap_or_default();
        let store = &self.inner.store;
        if let Err(e) = store.mark_uploading(&job.upload_id, &checksum, upload.key.as_deref(), &upload.object_url) {
            return self.fail(&job, &e.into());
        }
        tracing::info!(upload_id = %job.upload_id, url = %backend::redact_url(&upload.url), size = job.size, "uploading");

        let progress = self.progress_reporter(&job);
        if let Err(e) = transfer::put_file(&self.inner.http, &upload, &job.path, job.size, progress).await {
            return self.fail(&job, &e.into());
        }
        if let Err(e) = store.mark_reporting(&job.upload_id) {
            return self.fail(&job, &e.into());
        }
        let report = CompletionReport {
            upload_id: job.upload_id.clone(),
            key: upload.key.clone(),
            object_url: upload.object_url.clone(),
            file_name: job.file_name.clone(),
            size: job.size,
            content_type: job.content_type.clone(),
            checksum_sha256: checksum.clone(),
        };
        if let Err(e) = backend.report(&report).await {
            return self.fail(&job, &e.into());
        }
        if let Err(e) = store.mark_uploaded(&job.upload_id) {
            return self.fail(&job, &e.into());
        }
        self.emit(Event::FileUploaded {
            upload_id: job.upload_id.clone(),
            key: upload.key.clone().unwrap_or_default(),
            object_url: upload.object_url.clone(),
            size: job.size,
        });
        FileOutcome {
            path: job.path,
            status: FileStatus::Uploaded,
            key: upload.key,
            size: Some(job.size),
            upload_id: Some(job.upload_id),
            object_url: Some(upload.object_url),
            checksum_sha256: Some(checksum),
            error: None,
        }
    }

    fn progress_reporter(&self, job: &Job) -> transfer::Progress {
        let engine = self.clone();
        let upload_id = job.upload_id.clone();
        let total = job.size;
        let last = Mutex::new(None::<Instant>);
        Arc::new(move |bytes_done| {
            let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|at| at.elapsed() >= PROGRESS_INTERVAL);
            if due || bytes_done == total {
                *last = Some(Instant::now());
                engine.emit(Event::FileProgress { upload_id: upload_id.clone(), bytes_done, total });
            }
        })
    }

    fn fail(&self, job: &Job, error: &Error) -> FileOutcome {
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
