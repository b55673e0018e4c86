//! One file as a batch carries it: the [`Job`] it travels as, the [`Sent`] it becomes once its
//! bytes are in S3, and what every stage uses to speak about it (progress, retries, the failure
//! that ends it). It sits underneath the batch, the sends and the reports, so none of them has
//! to reach into another for these.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Engine, FileOutcome, FileStatus};
use crate::backend::{CompletionReport, FileToSign};
use crate::control::Gate;
use crate::transfer::{self, PartPlan, TransferError};
use crate::{Error, Event};

/// Progress events per file at most this often, so a fast upload does not flood the UI.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// One file's way through the batch.
pub(super) struct Job {
    pub(super) upload_id: String,
    pub(super) path: PathBuf,
    pub(super) file_name: String,
    pub(super) size: u64,
    pub(super) content_type: String,
    /// Base64 SHA-256 of the file, or S3's composite checksum (`<b64>-<parts>`) when it goes up
    /// in parts.
    pub(super) checksum: Option<String>,
    /// For files that go up in parts: how they are cut. Their parts are hashed as they go.
    pub(super) parts: Option<PartPlan>,
    pub(super) gate: Gate,
    /// The folder its key goes in, when the batch asked for one.
    pub(super) key_prefix: Option<String>,
}

impl Job {
    pub(super) fn to_sign(&self) -> FileToSign {
        FileToSign {
            upload_id: self.upload_id.clone(),
            file_name: self.file_name.clone(),
            size: self.size,
            content_type: self.content_type.clone(),
            checksum_sha256: self.checksum.clone().unwrap_or_default(),
            key_prefix: self.key_prefix.clone(),
        }
    }
}

/// A file whose bytes are in S3, waiting to be reported.
pub(super) struct Sent {
    pub(super) job: Job,
    pub(super) key: Option<String>,
    pub(super) object_url: String,
}

impl Sent {
    pub(super) fn report(&self) -> CompletionReport {
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
    pub(super) fn progress_reporter(&self, job: &Job) -> transfer::Progress {
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

    pub(super) fn retry_reporter(&self, job: &Job) -> transfer::OnRetry {
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

    pub(super) fn fail(&self, job: &Job, error: &Error) -> FileOutcome {
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
}

pub(super) fn file_name_of(path: &Path) -> String {
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
