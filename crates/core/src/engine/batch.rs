//! The batch pipeline: expand the dropped paths, adopt interrupted uploads, record the files,
//! and walk them in chunks through hash → presign → send → report, the chunks hashed and
//! signed ahead of one queue of sends. Apart from the handle so the order of a batch reads top to bottom in one file, with
//! each file's own sending in `single` and `multipart`.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use futures_util::stream::{self, FuturesUnordered, StreamExt};

use super::job::{file_name_of, Job, Sent};
use super::{BatchSummary, Engine, FileOutcome, FileStatus};
use crate::backend::{self, Credential, FileToSign, PresignedUpload, SigningBackend};
use crate::config::TransferSettings;
use crate::control::Gate;
use crate::store::{NewUpload, UploadStatus, Uploading};
use crate::transfer::{self, PartPlan, TransferError};
use crate::{checksum, scan, Error, ErrorInfo, Event, QueuedFile, Settings, Source};

/// Chunks hashed and signed at once, ahead of the sends. Two keep the next chunk's URLs ready
/// while one chunk's hashing waits on the disk; more would only sign URLs long before use.
/// Flavours that sign one file per request sign as many files at once as wait to send: a round
/// trip per file, eight at a time, held Companion's 2,000 small files to 12.7 s over a 40 ms
/// link; 32 at a time took 6.3 s (s5cmd 5.7).
const CHUNKS_PREPARED_AT_ONCE: usize = 2;
/// The first chunk is smaller, so the first files start sending after hashing and signing a
/// few of them rather than a whole presign request's worth.
const FIRST_CHUNK: usize = 20;
/// Bytes of whole-file hashing a chunk holds at most (a chunk has at least one file), so that
/// files of some megabytes each do not wait for a hundred of them to be hashed: the first
/// chunk's bound is what is hashed before the first byte goes, later ones' what is hashed
/// while earlier ones send. Files that go up in parts are hashed as they are sent, and do not
/// count.
const FIRST_CHUNK_BYTES: u64 = 16 * 1024 * 1024;
const CHUNK_BYTES: u64 = 256 * 1024 * 1024;
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
        let _running = RunningBatch::count(&self.inner.batches_running);
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
        let halted = OnceLock::new();
        let hashed_whole_below = if backend.supports_multipart() { transfer.multipart_threshold } else { u64::MAX };
        let chunks = chunked(jobs, backend.max_presign_batch(), hashed_whole_below);
        let record = Record {
            batch_id: batch_id.clone(),
            source,
            uploaded_by: settings_user(self, settings_snapshot.as_ref()),
            rows: chunks.iter().flatten().filter(|job| !adopted.contains(&job.upload_id)).map(Row::of).collect(),
        };
        // One event for the whole batch: per-file events overflowed the channel on big drops.
        let files: Vec<QueuedFile> = chunks
            .iter()
            .flatten()
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

        let outcomes = self.run_chunks(chunks, record, &transfer, backend.as_ref(), &halted).await;
        summary.files.extend(outcomes);
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

    /// Walks the batch's files through hash → presign → send → report as one pipeline: chunks
    /// (as many files as one presign request carries) are hashed and signed a little ahead of
    /// the sends, every file is sent in the batch's order from one queue, and a chunk is
    /// reported as soon as its last file is in S3, while later ones send.
    ///
    /// The batch is recorded in the history meanwhile, off the async threads: 2,000 rows took
    /// 65 ms, which the first chunk's hashing and signing now overlap instead of waiting on.
    ///
    /// Chunks used to run whole, six at a time; they started together and finished together,
    /// and the link idled while the next six hashed and signed (over a 40 ms link that was
    /// about a tenth of a run of 2,000 small files).
    ///
    /// A failure that stops the whole batch (backend down, token refused) is kept in `halted`,
    /// and the chunks after it fail their files with it without asking again.
    async fn run_chunks(
        &self,
        chunks: Vec<Vec<Job>>,
        record: Record,
        transfer: &TransferSettings,
        backend: &dyn SigningBackend,
        halted: &OnceLock<Error>,
    ) -> Vec<FileOutcome> {
        // The permits decide how many actually send; see `transfer::permits_for`. This only
        // bounds the futures waiting for one, so that the queue, not the permits' wait list,
        // holds the order.
        let sends_at_once = transfer.concurrency as usize * transfer::PERMITS_PER_SLOT as usize;
        let prepared_at_once = if backend.max_presign_batch() == 1 { sends_at_once } else { CHUNKS_PREPARED_AT_ONCE };
        let chunk_count = chunks.len();
        let (recorded_tx, recorded_rx) = tokio::sync::watch::channel(false);
        let recording = self.record(record, recorded_tx, halted);
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<Prepared>(1);
        let preparing = async move {
            let mut prepared = stream::iter(chunks.into_iter().enumerate())
                .map(|(index, chunk)| {
                    let recorded = recorded_rx.clone();
                    self.prepare_chunk(index, chunk, recorded, transfer, backend, halted)
                })
                .buffered(prepared_at_once);
            while let Some(chunk) = prepared.next().await {
                if ready_tx.send(chunk).await.is_err() {
                    break;
                }
            }
        };

        let sending = async {
            let mut files = Vec::new();
            let mut waiting: VecDeque<(usize, Job, Option<PresignedUpload>)> = VecDeque::new();
            let mut unsent: Vec<usize> = vec![0; chunk_count];
            let mut sent: Vec<Vec<Sent>> = (0..chunk_count).map(|_| Vec::new()).collect();
            let mut sends = FuturesUnordered::new();
            let mut reports = FuturesUnordered::new();
            let mut more_chunks = true;
            loop {
                while sends.len() < sends_at_once {
                    let Some((index, job, url)) = waiting.pop_front() else { break };
                    sends.push(async move { (index, self.send(job, url, transfer, backend).await) });
                }
                if !more_chunks && waiting.is_empty() && sends.is_empty() && reports.is_empty() {
                    return files;
                }
                tokio::select! {
                    // The next chunk is taken only when this one's files run low, so URLs are
                    // signed shortly before they are used.
                    chunk = ready_rx.recv(), if more_chunks && waiting.len() < sends_at_once => {
                        let Some(chunk) = chunk else {
                            more_chunks = false;
                            continue;
                        };
                        files.extend(chunk.failed);
                        unsent[chunk.index] = chunk.to_send.len();
                        waiting.extend(chunk.to_send.into_iter().map(|(job, url)| (chunk.index, job, url)));
                    }
                    Some((index, result)) = sends.next(), if !sends.is_empty() => {
                        match result {
                            Ok(done) => sent[index].push(done),
                            Err(failed) => files.push(failed),
                        }
                        unsent[index] -= 1;
                        if unsent[index] == 0 && !sent[index].is_empty() {
                            let chunk = std::mem::take(&mut sent[index]);
                            tracing::debug!(chunk = index, files = chunk.len(), "chunk sent");
                            reports.push(async move {
                                let mut files = Vec::with_capacity(chunk.len());
                                let result = self.report_all(chunk, &mut files).await;
                                tracing::debug!(chunk = index, "chunk reported");
                                (files, result)
                            });
                        }
                    }
                    Some((reported, result)) = reports.next(), if !reports.is_empty() => {
                        files.extend(reported);
                        if let Err(error) = result {
                            let _ = halted.set(error);
                        }
                    }
                }
            }
        };
        let ((), (), files) = futures_util::join!(recording, preparing, sending);
        files
    }

    /// Records the batch's files in the history as queued, in one transaction off the async
    /// threads, and says so on `recorded`. When the history cannot be written, the batch halts
    /// with that error.
    async fn record(&self, record: Record, recorded: tokio::sync::watch::Sender<bool>, halted: &OnceLock<Error>) {
        let Record { batch_id, source, uploaded_by, rows } = record;
        let store = Arc::clone(&self.inner.store);
        let written = tokio::task::spawn_blocking(move || {
            let queued: Vec<NewUpload<'_>> = rows
                .iter()
                .map(|row| NewUpload {
                    upload_id: &row.upload_id,
                    batch_id: &batch_id,
                    path: &row.path,
                    file_name: &row.file_name,
                    size: row.size,
                    content_type: &row.content_type,
                    source,
                    uploaded_by: uploaded_by.as_deref(),
                })
                .collect();
            store.insert_all(&queued)
        })
        .await;
        let error = match written {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(Error::from(e)),
            Err(e) => Some(Error::Internal(format!("recording the files in the history: {e}"))),
        };
        if let Some(error) = error {
            halted.get_or_init(|| error);
        }
        recorded.send_replace(true);
    }

    /// Gets one chunk ready to send: its files hashed, their URLs signed in one request, and
    /// where each goes recorded. The files that cannot go fail here.
    ///
    /// Hashing and signing write nothing, so they go ahead while the batch is being recorded;
    /// nothing is written about a file, and nothing sent, before every file of the batch is in
    /// the history, so that a crash at any moment leaves the whole batch for `resume`.
    async fn prepare_chunk(
        &self,
        index: usize,
        chunk: Vec<Job>,
        mut recorded: tokio::sync::watch::Receiver<bool>,
        transfer: &TransferSettings,
        backend: &dyn SigningBackend,
        halted: &OnceLock<Error>,
    ) -> Prepared {
        let mut failing: Vec<(Job, Arc<Error>)> = Vec::new();
        let mut singles = Vec::with_capacity(chunk.len());
        let mut multipart = Vec::new();
        let mut halting = Vec::new();
        if halted.get().is_some() {
            halting = chunk;
        } else {
            let (ready, unreadable) = self.prepare(chunk, transfer, backend).await;
            failing.extend(unreadable);
            let (parts, single): (Vec<Job>, Vec<Job>) = ready.into_iter().partition(|job| job.parts.is_some());
            match self.presign_all(&single, backend).await {
                Ok(signed) => {
                    tracing::debug!(chunk = index, files = single.len(), "chunk signed");
                    multipart = parts;
                    for (job, signed) in single.into_iter().zip(signed) {
                        match signed {
                            Ok(url) => singles.push((job, url)),
                            // This file's answer was unusable (a URL it may not use, say): it
                            // alone fails.
                            Err(error) => failing.push((job, Arc::new(error.into()))),
                        }
                    }
                }
                Err(error) if error.is_batch_level() => {
                    halted.get_or_init(|| error);
                    halting = single.into_iter().chain(parts).collect();
                }
                Err(error) => {
                    let error = Arc::new(error);
                    failing.extend(single.into_iter().map(|job| (job, Arc::clone(&error))));
                    multipart = parts;
                }
            }
        }

        // The recorder only says so once it is done or has halted the batch.
        let _ = recorded.wait_for(|done| *done).await;
        let mut failed: Vec<FileOutcome> = failing.iter().map(|(job, error)| self.fail(job, error)).collect();
        if let Some(error) = halted.get() {
            failed.extend(
                halting
                    .iter()
                    .chain(singles.iter().map(|(job, _)| job))
                    .chain(&multipart)
                    .map(|job| self.fail(job, error)),
            );
            return Prepared { index, to_send: Vec::new(), failed };
        }
        // Where each file goes, recorded for the whole chunk in one transaction: a commit per
        // file was the history's main cost per small file (each one also updates the search index).
        let destinations: Vec<Uploading<'_>> = singles
            .iter()
            .map(|(job, url)| Uploading {
                upload_id: &job.upload_id,
                checksum: job.checksum.as_deref(),
                key: url.key.as_deref(),
                object_url: &url.object_url,
            })
            .collect();
        if let Err(error) = self.inner.store.mark_all_uploading(&destinations) {
            drop(destinations);
            let error = Error::from(error);
            failed.extend(singles.iter().map(|(job, _)| self.fail(job, &error)));
            singles.clear();
        }
        let to_send = singles
            .into_iter()
            .map(|(job, url)| (job, Some(url)))
            .chain(multipart.into_iter().map(|job| (job, None)))
            .collect();
        Prepared { index, to_send, failed }
    }

    /// Hashes the chunk's files (in parts, for the ones that go up in parts); returns them, and
    /// apart the ones that cannot be read or are too large, with why.
    async fn prepare(
        &self,
        chunk: Vec<Job>,
        transfer: &TransferSettings,
        backend: &dyn SigningBackend,
    ) -> (Vec<Job>, Vec<(Job, Arc<Error>)>) {
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
        let mut unreadable = Vec::new();
        for (job, result) in hashed {
            match result {
                Ok(()) => ready.push(job),
                Err(error) => unreadable.push((job, Arc::new(error))),
            }
        }
        (ready, unreadable)
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

/// Counts a batch as running until it is dropped, whichever way the batch ends (a summary, an
/// error, or its task cancelled at shutdown).
struct RunningBatch<'a>(&'a AtomicUsize);

impl<'a> RunningBatch<'a> {
    fn count(running: &'a AtomicUsize) -> RunningBatch<'a> {
        running.fetch_add(1, Ordering::SeqCst);
        RunningBatch(running)
    }
}

impl Drop for RunningBatch<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One chunk, hashed and signed: the files to send (a URL each, or none for those that go up
/// in parts) and the ones that failed on the way.
struct Prepared {
    index: usize,
    to_send: Vec<(Job, Option<PresignedUpload>)>,
    failed: Vec<FileOutcome>,
}

/// The batch's files to record in the history, and what all their rows share.
struct Record {
    batch_id: String,
    source: Source,
    uploaded_by: Option<String>,
    rows: Vec<Row>,
}

/// One file's history row, owned, so it can be written off the async threads.
struct Row {
    upload_id: String,
    path: PathBuf,
    file_name: String,
    size: u64,
    content_type: String,
}

impl Row {
    fn of(job: &Job) -> Row {
        Row {
            upload_id: job.upload_id.clone(),
            path: job.path.clone(),
            file_name: job.file_name.clone(),
            size: job.size,
            content_type: job.content_type.clone(),
        }
    }
}

/// Cuts the batch into chunks of at most `size` files and [`CHUNK_BYTES`] of files smaller than
/// `hashed_whole_below`, the first one smaller (see [`FIRST_CHUNK`]).
fn chunked(jobs: Vec<Job>, size: usize, hashed_whole_below: u64) -> Vec<Vec<Job>> {
    let (mut files, mut bytes) = (size.clamp(1, FIRST_CHUNK), FIRST_CHUNK_BYTES);
    let mut chunks = Vec::new();
    let mut chunk: Vec<Job> = Vec::new();
    let mut hashed = 0u64;
    for job in jobs {
        let to_hash = if job.size < hashed_whole_below { job.size } else { 0 };
        if !chunk.is_empty() && (chunk.len() == files || hashed + to_hash > bytes) {
            chunks.push(std::mem::take(&mut chunk));
            (files, bytes, hashed) = (size.max(1), CHUNK_BYTES, 0);
        }
        hashed += to_hash;
        chunk.push(job);
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    chunks
}

/// Whom the batch uploads as, when it runs under a sign-in (a pasted token names nobody here).
fn settings_user(engine: &Engine, settings: Option<&Settings>) -> Option<String> {
    match engine.credential_for(settings?) {
        Credential::Session(session) => Some(session.user().to_owned()),
        Credential::Token(_) | Credential::None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn job(i: usize) -> Job {
        sized(i, 64 * 1024)
    }

    fn sized(i: usize, size: u64) -> Job {
        Job {
            upload_id: i.to_string(),
            path: PathBuf::from(format!("f{i}")),
            file_name: format!("f{i}"),
            size,
            content_type: String::new(),
            checksum: None,
            parts: None,
            gate: Gate::inert(),
            key_prefix: None,
        }
    }

    fn sizes(files: usize, per_request: usize) -> Vec<usize> {
        chunked((0..files).map(job).collect(), per_request, 64 * MIB).iter().map(Vec::len).collect()
    }

    #[test]
    fn the_first_chunk_is_small_and_the_others_fill_a_presign_request() {
        assert_eq!(sizes(250, 100), [FIRST_CHUNK, 100, 100, 250 - FIRST_CHUNK - 200]);
        assert_eq!(sizes(5, 100), [5]);
        assert_eq!(sizes(3, 1), [1, 1, 1], "flavours that sign one file per request");
        assert!(sizes(0, 100).is_empty());
    }

    #[test]
    fn chunks_of_larger_files_are_bounded_by_the_bytes_hashed_ahead() {
        let lens = |jobs: Vec<Job>| chunked(jobs, 100, 64 * MIB).iter().map(Vec::len).collect::<Vec<_>>();
        // 20 x 50 MiB: the first one alone, then five at a time (250 of 256 MiB).
        assert_eq!(lens((0..20).map(|i| sized(i, 50 * MIB)).collect()), [1, 5, 5, 5, 4]);
        // Files that go up in parts are not hashed ahead: they do not fill a chunk.
        assert_eq!(lens((0..30).map(|i| sized(i, 100 * MIB)).collect()), [20, 10]);
        // A file larger than the bound still makes a chunk of its own.
        let jobs = vec![sized(0, MIB), sized(1, 300 * MIB), sized(2, MIB)];
        assert_eq!(chunked(jobs, 100, u64::MAX).iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
    }

    #[test]
    fn chunks_keep_the_batch_in_order() {
        let ids: Vec<String> =
            chunked((0..250).map(job).collect(), 100, 64 * MIB).into_iter().flatten().map(|j| j.upload_id).collect();
        assert_eq!(ids, (0..250).map(|i| i.to_string()).collect::<Vec<_>>());
    }
}
