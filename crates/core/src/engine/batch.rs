//! The batch pipeline: expand the dropped paths, adopt interrupted uploads, record the files,
//! then walk them in chunks through hash → presign → send → report, with several chunks in
//! flight. Apart from the handle so the order of a batch reads top to bottom in one file, with
//! each file's own sending in `single` and `multipart`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use futures_util::stream::{self, StreamExt};

use super::job::{file_name_of, Job, Sent};
use super::{BatchSummary, Engine, FileOutcome, FileStatus};
use crate::backend::{self, Credential, FileToSign, SigningBackend};
use crate::config::TransferSettings;
use crate::control::Gate;
use crate::store::{NewUpload, UploadStatus, Uploading};
use crate::transfer::{self, PartPlan, TransferError};
use crate::{checksum, scan, Error, ErrorInfo, Event, QueuedFile, Settings, Source};

/// Chunks of a batch in progress at once: enough that the presign and report round trips of
/// some chunks overlap the uploads of others. Over a 40 ms link, 2,000 × 64 KiB took 7.3 s with
/// three (1.29× s5cmd's wall time) and 6.1 s with six (1.07×); twelve gave nothing more.
const CHUNKS_IN_FLIGHT: usize = 6;
/// Files hashed at once; hashing is CPU-bound, one per core on a small machine.
const HASH_CONCURRENCY: usize = 2;

impl Engine {
    pub(super) async fn run_batch(
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
