//! One large file's multipart run: create (or carry on with) the S3 multipart upload, send the
//! parts it lacks through [`transfer::upload_parts`], complete it, and abort it when it fails.
//! Kept apart from the single PUT: a run spans many requests and keeps its state in the history,
//! so that a crash can carry on from the last part.

use super::job::Job;
use super::Engine;
use crate::backend::{CompletedPart, MultipartUpload, SigningBackend};
use crate::config::TransferSettings;
use crate::store::{FileIdentity, FinishedPart, MultipartState};
use crate::transfer::{self, MultipartRun, PartPlan};
use crate::{scan, Error};

/// A multipart upload ready to send its missing parts.
pub(super) struct Resumed {
    pub(super) upload: MultipartUpload,
    pub(super) plan: PartPlan,
    /// Parts S3 holds already, with their checksums.
    pub(super) finished: Vec<CompletedPart>,
}

impl Engine {
    pub(super) async fn send_multipart(
        &self,
        job: &Job,
        transfer: &TransferSettings,
        backend: &dyn SigningBackend,
    ) -> Result<(Option<String>, String, Option<String>), Error> {
        let resumed = self.resume_multipart(job, backend).await?;
        let was_resumed = resumed.is_some();
        match self.run_multipart(job, transfer, backend, resumed).await {
            // The backend refused a call about the interrupted upload (its URLs can no longer be
            // signed, say): start it over once, cleanly.
            Err(Error::Backend(e)) if was_resumed && !e.is_batch_level() => {
                tracing::info!(upload_id = %job.upload_id, "the interrupted upload could not go on, starting over: {e}");
                let _ = self
                    .inner
                    .store
                    .note(&job.upload_id, &format!("Started over: the interrupted upload could not go on ({e})."));
                self.run_multipart(job, transfer, backend, None).await
            }
            result => result,
        }
    }

    async fn run_multipart(
        &self,
        job: &Job,
        transfer: &TransferSettings,
        backend: &dyn SigningBackend,
        resumed: Option<Resumed>,
    ) -> Result<(Option<String>, String, Option<String>), Error> {
        let Resumed { upload, plan, finished } = match resumed {
            Some(resumed) => resumed,
            None => self.begin_multipart(job, backend).await?,
        };
        self.inner.store.mark_uploading(&job.upload_id, None, Some(&upload.key), &upload.object_url)?;
        tracing::info!(upload_id = %job.upload_id, key = %upload.key, parts = plan.part_count, "uploading in parts");
        let progress = self.progress_reporter(job);
        let http = || self.http();
        let record_part = |part: &CompletedPart| {
            let finished = FinishedPart {
                part_number: part.part_number,
                etag: part.etag.clone(),
                checksum: part.checksum_crc32c.clone(),
                size: plan.range(part.part_number).1,
            };
            // Losing this record costs only re-sending the part after a crash.
            if let Err(e) = self.inner.store.record_part(&job.upload_id, &finished) {
                tracing::warn!(upload_id = %job.upload_id, part = part.part_number, "could not record a finished part: {e}");
            }
        };
        let run = MultipartRun {
            client: &http,
            backend,
            upload: &upload,
            path: &job.path,
            plan,
            permits: &self.inner.permits,
            buffers: &self.inner.part_buffers,
            throttle: &self.inner.throttle,
            max_in_flight: transfer::parts_in_flight(transfer.concurrency),
            retry: self.inner.retry,
            retry_now: &self.inner.retry_now,
            progress,
            on_retry: self.retry_reporter(job),
            gate: job.gate.clone(),
            finished: &finished,
            on_part_done: &record_part,
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
        if let Err(e) = self.inner.store.forget_multipart(&job.upload_id) {
            tracing::warn!(upload_id = %job.upload_id, "could not forget the multipart upload's state: {e}");
        }
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

    /// Creates a new multipart upload and records it (with the file's identity) before any
    /// part goes out, so a crash from here on can resume it.
    async fn begin_multipart(&self, job: &Job, backend: &dyn SigningBackend) -> Result<Resumed, Error> {
        let plan = job.parts.expect("multipart jobs are planned");
        let identity = FileIdentity::read(&job.path).map_err(|e| scan::io_error(&job.path, e))?;
        let upload = backend.create_multipart(&job.to_sign()).await?;
        let state = MultipartState {
            s3_upload_id: upload.upload_id.clone(),
            key: upload.key.clone(),
            object_url: upload.object_url.clone(),
            part_size: plan.part_size,
            file: identity,
        };
        self.inner.store.save_multipart(&job.upload_id, &state)?;
        Ok(Resumed { upload, plan, finished: Vec::new() })
    }
}
