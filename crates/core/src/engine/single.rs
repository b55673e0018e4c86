//! Sending one file's bytes: [`Engine::send`] picks a single PUT or the multipart run, and the
//! single PUT lives here whole, with its retries and re-signing. Kept apart from the batch, so
//! the retry loop of one PUT reads without the chunking around it.

use super::job::{Job, Sent};
use super::{Engine, FileOutcome};
use crate::backend::{self, PresignedUpload, SigningBackend};
use crate::config::TransferSettings;
use crate::transfer::{self, Next};
use crate::Error;

/// Fresh URLs asked for one file before giving up on it: a URL refused again right after
/// re-signing is not an expiry problem.
const MAX_RESIGNS: u32 = 2;

impl Engine {
    /// Sends one file's bytes: a single PUT when it has a URL, parts otherwise.
    pub(super) async fn send(
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
        // Marked as uploading with its chunk, in `prepare_chunk`.
        tracing::info!(upload_id = %job.upload_id, url = %backend::redact_url(&upload.url), size = job.size, "uploading");
        let (mut attempt, mut resigns) = (0u32, 0u32);
        let mut gate = job.gate.clone();
        let on_retry = self.retry_reporter(job);
        loop {
            gate.wait_open().await.map_err(|_| Error::Cancelled)?;
            let _permit = self
                .inner
                .permits
                .acquire_many(transfer::permits_for(job.size))
                .await
                .map_err(|_| Error::ShuttingDown)?;
            let progress = self.progress_reporter(job);
            // Asked afresh each attempt: after sleep the engine swaps in a client without the
            // connections that went stale.
            let http = self.http();
            let sending = transfer::send_file(&http, &upload, &job.path, job.size, progress, &self.inner.throttle);
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
                    self.inner.retry_now.wait_out(delay).await;
                }
                Next::Resign if resigns < MAX_RESIGNS => {
                    tracing::info!(upload_id = %job.upload_id, "upload URL refused, signing it again: {error}");
                    resigns += 1;
                    upload = backend.presign(&[job.to_sign()]).await?.pop().ok_or(error)??;
                    // Some flavours choose a new key with every signature: keep history true.
                    let (key, object_url) = (upload.key.as_deref(), upload.object_url.as_str());
                    self.inner.store.mark_uploading(&job.upload_id, job.checksum.as_deref(), key, object_url)?;
                }
                _ => return Err(error.into()),
            }
        }
    }
}
