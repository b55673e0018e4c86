//! Carrying on with uploads an earlier run left unfinished (it crashed, was killed, or lost
//! power): finding them, adopting them into a new batch under the same history row, and
//! reconciling an interrupted multipart upload with what S3 still holds. Kept in one place so
//! what "interrupted" means is decided once.

use std::collections::HashMap;
use std::path::PathBuf;

use super::job::{Job, Sent};
use super::multipart::Resumed;
use super::{BatchSummary, Engine};
use crate::backend::{CompletedPart, MultipartUpload, SigningBackend};
use crate::store::{FileIdentity, Unfinished};
use crate::transfer::PartPlan;
use crate::{scan, Error, Source};

impl Engine {
    /// Uploads that an earlier run left unfinished (it crashed, was killed, or lost power).
    pub fn interrupted(&self) -> Result<Vec<Unfinished>, Error> {
        let unfinished = self.inner.store.unfinished_elsewhere()?;
        Ok(unfinished
            .into_iter()
            .filter(|u| !u.owner.as_deref().is_some_and(|owner| self.inner.instance.is_running(owner)))
            .collect())
    }

    /// Carries on with every interrupted upload, one batch per source, from where each stopped.
    pub async fn resume_interrupted(&self) -> Result<Vec<BatchSummary>, Error> {
        let mut by_source: Vec<(Source, Vec<PathBuf>)> = Vec::new();
        for upload in self.interrupted()? {
            match by_source.iter_mut().find(|(source, _)| *source == upload.source) {
                Some((_, paths)) => paths.push(upload.path),
                None => by_source.push((upload.source, vec![upload.path])),
            }
        }
        let mut summaries = Vec::with_capacity(by_source.len());
        for (source, paths) in by_source {
            summaries.push(self.upload(paths, source).await);
        }
        Ok(summaries)
    }

    /// Starts carrying on with interrupted uploads in the background (the desktop app at start).
    pub fn submit_interrupted(&self) -> Result<usize, Error> {
        let interrupted: Vec<Unfinished> =
            self.interrupted()?.into_iter().filter(|u| u.source != Source::Watch).collect();
        let count = interrupted.len();
        // Watched folders' uploads are the watcher's: its catch-up sends them again, and the
        // batch adopts the interrupted upload then.
        for source in [Source::Window, Source::Cli] {
            let paths: Vec<PathBuf> =
                interrupted.iter().filter(|u| u.source == source).map(|u| u.path.clone()).collect();
            if !paths.is_empty() {
                self.submit(paths, source);
            }
        }
        Ok(count)
    }

    /// The interrupted multipart upload of this job, reconciled with what S3 holds, when it
    /// can go on: same file, and S3 still knows the upload. Otherwise the history notes why
    /// it starts over.
    pub(super) async fn resume_multipart(
        &self,
        job: &Job,
        backend: &dyn SigningBackend,
    ) -> Result<Option<Resumed>, Error> {
        let Some((state, recorded)) = self.inner.store.multipart(&job.upload_id)? else { return Ok(None) };
        let upload = MultipartUpload {
            key: state.key.clone(),
            upload_id: state.s3_upload_id.clone(),
            object_url: state.object_url.clone(),
        };
        let identity = FileIdentity::read(&job.path).map_err(|e| scan::io_error(&job.path, e))?;
        let plan = PartPlan::new(job.size, state.part_size).filter(|plan| plan.part_size == state.part_size);
        let why_not = match plan {
            _ if identity != state.file => "the file changed after the interrupted upload began".to_owned(),
            None => "the interrupted upload's part size no longer fits the file".to_owned(),
            Some(plan) => match backend.list_parts(&upload).await {
                Ok(listed) => {
                    let finished: Vec<CompletedPart> = recorded
                        .into_iter()
                        .filter(|part| {
                            listed.iter().any(|l| {
                                l.part_number == part.part_number
                                    && l.size == part.size
                                    && l.etag.trim_matches('"') == part.etag.trim_matches('"')
                            })
                        })
                        .map(|part| CompletedPart {
                            part_number: part.part_number,
                            etag: part.etag,
                            checksum_sha256: None,
                            checksum_crc32c: part.checksum,
                        })
                        .collect();
                    tracing::info!(upload_id = %job.upload_id, finished = finished.len(), parts = plan.part_count, "resuming a multipart upload");
                    return Ok(Some(Resumed { upload, plan, finished }));
                }
                Err(e) if e.is_batch_level() => return Err(e.into()),
                Err(e) => format!("S3 no longer knows the interrupted upload ({e})"),
            },
        };
        tracing::info!(upload_id = %job.upload_id, "starting over: {why_not}");
        self.inner.store.note(&job.upload_id, &format!("Started over: {why_not}."))?;
        if let Err(e) = backend.abort_multipart(&upload).await {
            tracing::debug!(upload_id = %job.upload_id, "the interrupted upload could not be aborted: {e}");
        }
        self.inner.store.forget_multipart(&job.upload_id)?;
        Ok(None)
    }

    /// Interrupted uploads by their file's canonical path, for a new batch to adopt.
    pub(super) fn interrupted_by_path(&self) -> Result<HashMap<PathBuf, Unfinished>, Error> {
        Ok(self
            .interrupted()?
            .into_iter()
            .filter_map(|upload| Some((std::fs::canonicalize(&upload.path).ok()?, upload)))
            .collect())
    }

    pub(super) fn report_is_queued(&self, upload_id: &str) -> bool {
        self.inner.store.queued_report(upload_id).is_ok_and(|queued| queued.is_some_and(|r| !r.rejected))
    }

    /// An adopted upload whose bytes are in S3 already: only its report is outstanding.
    pub(super) fn already_sent(&self, mut job: Job) -> Option<Sent> {
        let entry = self.inner.store.get(&job.upload_id).ok().flatten()?;
        job.checksum = entry.checksum_sha256;
        Some(Sent { job, key: entry.key, object_url: entry.object_url.unwrap_or_default() })
    }
}
