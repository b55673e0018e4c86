//! The engine's side of completion reports: the deliverer it runs in the background, the queue
//! a person can look at and retry, and a batch's wait for its files' answers. Kept apart from
//! the sends because a report outlives them: it waits in the outbox until the backend takes it.

use std::sync::Arc;
use std::time::Duration;

use super::job::Sent;
use super::{Engine, FileOutcome, FileStatus};
use crate::report::{Deliverer, Delivery};
use crate::store::{QueuedReport, UploadStatus};
use crate::{Error, Event, Source};

/// How often a batch waiting for its reports looks at the history too, for reports delivered
/// before it listened or by another Dropship on the same data folder.
const REPORT_RECHECK: Duration = Duration::from_millis(500);

impl Engine {
    /// Delivers the outbox's reports in the background for as long as the engine runs.
    pub(super) fn start_report_delivery(&self) {
        let weak = Arc::downgrade(&self.inner);
        let emitter = Arc::downgrade(&self.inner);
        let deliverer = Deliverer {
            outbox: Arc::clone(&self.inner.outbox),
            store: Arc::clone(&self.inner.store),
            connect: Box::new(move || {
                let inner = weak.upgrade().ok_or(Error::ShuttingDown)?;
                Engine { inner }.backend()
            }),
            emit: Box::new(move |event| {
                if let Some(inner) = emitter.upgrade() {
                    let _ = inner.events.send(event);
                }
            }),
            shutdown: self.inner.shutdown.clone(),
        };
        self.inner.tasks.spawn_on(deliverer.run(), &self.inner.runtime);
    }

    /// Reports not yet acknowledged by the backend, the rejected ones included.
    pub fn queued_reports(&self) -> Result<Vec<QueuedReport>, Error> {
        Ok(self.inner.store.queued_reports()?)
    }

    /// Sends rejected reports again (these, or every rejected one when `upload_ids` is empty)
    /// and returns how many went back in line.
    pub fn retry_reports(&self, upload_ids: &[&str]) -> Result<usize, Error> {
        let count = self.inner.store.retry_reports(upload_ids)?;
        self.inner.outbox.wake();
        Ok(count)
    }

    /// Tries failed uploads again: one whose report the backend refused is reported again as it
    /// is (its bytes are in S3); any other is uploaded anew. Returns the new batch's id, if
    /// anything needed uploading.
    pub fn retry(&self, upload_ids: &[String], source: Source) -> Result<Option<String>, Error> {
        let queued = self.inner.store.queued_reports()?;
        let (rejected, others): (Vec<&String>, Vec<&String>) =
            upload_ids.iter().partition(|id| queued.iter().any(|r| r.rejected && &r.upload_id == *id));
        if !rejected.is_empty() {
            self.retry_reports(&rejected.iter().map(|id| id.as_str()).collect::<Vec<_>>())?;
        }
        let others: Vec<String> = others.into_iter().cloned().collect();
        let paths = self.inner.store.failed_paths(&others)?;
        Ok((!paths.is_empty()).then(|| self.submit(paths, source)))
    }

    /// Waits until every report in the outbox that is not rejected is delivered, or `wait` has
    /// passed; returns how many are still waiting.
    pub async fn flush_reports(&self, wait: Duration) -> Result<usize, Error> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let waiting = self.inner.store.queued_reports()?.into_iter().filter(|r| !r.rejected).count();
            if waiting == 0 || tokio::time::Instant::now() >= deadline {
                return Ok(waiting);
            }
            self.inner.outbox.wake();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Queues the chunk's reports in the outbox, in the transaction that records the files as
    /// in S3, and waits for the deliverer's answer for each. Errs only when the history cannot
    /// be written.
    pub(super) async fn report_all(&self, sent: Vec<Sent>, files: &mut Vec<FileOutcome>) -> Result<(), Error> {
        if sent.is_empty() {
            return Ok(());
        }
        let reports: Vec<(&str, Option<&str>, String)> = sent
            .iter()
            .map(|done| {
                let report = serde_json::to_string(&done.report()).expect("reports serialise");
                (done.job.upload_id.as_str(), done.job.checksum.as_deref(), report)
            })
            .collect();
        // Watch before queueing: the deliverer may answer before this task runs again.
        let answers: Vec<_> = sent.iter().map(|done| self.inner.outbox.watch(&done.job.upload_id)).collect();
        if let Err(e) = self.inner.store.enqueue_reports(&reports) {
            let error = Error::from(e);
            files.extend(sent.iter().map(|done| self.fail(&done.job, &error)));
            return Err(error);
        }
        drop(reports);
        files.extend(self.await_reports_on(sent, answers).await);
        Ok(())
    }

    /// Waits for the deliverer's answers on uploads whose reports are already queued.
    pub(super) async fn await_reports(&self, sent: Vec<Sent>) -> Vec<FileOutcome> {
        let answers: Vec<_> = sent.iter().map(|done| self.inner.outbox.watch(&done.job.upload_id)).collect();
        self.await_reports_on(sent, answers).await
    }

    async fn await_reports_on(
        &self,
        sent: Vec<Sent>,
        answers: Vec<tokio::sync::oneshot::Receiver<Delivery>>,
    ) -> Vec<FileOutcome> {
        self.inner.outbox.wake();
        let deadline = tokio::time::Instant::now() + self.backend_wait();
        let mut outcomes = Vec::with_capacity(sent.len());
        for (done, answer) in sent.into_iter().zip(answers) {
            let settled = self.settled(&done.job.upload_id, answer);
            let answer = tokio::time::timeout_at(deadline, settled).await.ok();
            outcomes.push(match answer {
                Some(Some(Delivery::Recorded)) => self.uploaded(done),
                Some(Some(Delivery::Rejected(error))) => self.fail(&done.job, &error),
                // Still queued (the backend is away, or the engine is stopping): the history
                // keeps the upload as reporting and the outbox keeps its report.
                Some(None) | None => self.report_still_queued(done),
            });
        }
        outcomes
    }

    /// How the report of `upload_id` ended: the deliverer's answer, or what the history says
    /// once it no longer waits, for a report delivered before anyone listened (or by another
    /// Dropship on the same data folder). `None` when the engine stops first.
    async fn settled(&self, upload_id: &str, mut answer: tokio::sync::oneshot::Receiver<Delivery>) -> Option<Delivery> {
        let mut check = tokio::time::interval(REPORT_RECHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                delivered = &mut answer => return delivered.ok(),
                _ = check.tick() => {}
            }
            let entry = self.inner.store.get(upload_id).ok().flatten()?;
            match entry.status {
                UploadStatus::Uploaded => return Some(Delivery::Recorded),
                UploadStatus::Failed => {
                    let message = entry.error.unwrap_or_default();
                    return Some(Delivery::Rejected(Error::ReportRejected { message }));
                }
                _ => {}
            }
        }
    }

    fn report_still_queued(&self, done: Sent) -> FileOutcome {
        let detail = self
            .inner
            .store
            .queued_report(&done.job.upload_id)
            .ok()
            .flatten()
            .and_then(|r| r.last_error)
            .unwrap_or_else(|| "no answer yet".to_owned());
        let error = Error::ReportPending { detail };
        self.inner.controls.forget(&done.job.upload_id);
        let info = error.info();
        self.emit(Event::FileFailed {
            upload_id: done.job.upload_id.clone(),
            path: done.job.path.clone(),
            error: info.clone(),
        });
        FileOutcome {
            path: done.job.path,
            status: FileStatus::Failed,
            key: done.key,
            size: Some(done.job.size),
            upload_id: Some(done.job.upload_id),
            object_url: Some(done.object_url),
            checksum_sha256: done.job.checksum,
            error: Some(info),
        }
    }

    /// The bytes are in S3 and the backend recorded them (the deliverer told the shells).
    fn uploaded(&self, done: Sent) -> FileOutcome {
        let Sent { job, key, object_url } = done;
        self.inner.controls.forget(&job.upload_id);
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
}
