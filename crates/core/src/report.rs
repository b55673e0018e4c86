//! Durable delivery of completion reports. The outbox in SQLite holds every report the backend
//! has not acknowledged; one deliverer per engine sends what is due in batches, backs off while
//! the backend is down, and tells whoever waits for a report how it ended. Reports survive
//! restarts: a new engine delivers what an old one left.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::backend::{BackendError, CompletionReport, SigningBackend};
use crate::store::{unix_millis, QueuedReport, Store};
use crate::{Error, Event};

/// Report requests in flight at once: enough that one slow batch (the backend HEADs every
/// object) does not hold back the next.
const DELIVERIES_IN_FLIGHT: usize = 3;
/// Waits between delivery attempts while the backend is down: doubling from the first, capped
/// so reports flush soon after the backend returns.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(30);
/// How long the deliverer sleeps when nothing is due and nobody wakes it; a backstop for
/// reports another process (the CLI beside the app) queued in the same data folder.
const IDLE_RECHECK: Duration = Duration::from_secs(60);

/// How a report ended, for the batch that waits for it.
#[derive(Debug, Clone)]
pub enum Delivery {
    Recorded,
    Rejected(Error),
}

/// The engine's side of the outbox: wakes the deliverer and hands out the outcomes.
#[derive(Default)]
pub struct Outbox {
    wake: Notify,
    in_flight: Mutex<HashSet<String>>,
    waiters: Mutex<HashMap<String, Vec<oneshot::Sender<Delivery>>>>,
}

/// What the deliverer needs from the engine.
pub struct Deliverer {
    pub outbox: Arc<Outbox>,
    pub store: Arc<Store>,
    pub connect: Box<dyn Fn() -> Result<Arc<dyn SigningBackend>, Error> + Send + Sync>,
    pub emit: Box<dyn Fn(Event) + Send + Sync>,
    pub shutdown: CancellationToken,
}

impl Outbox {
    /// New reports are queued (or settings changed): look at the outbox now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A receiver told when the report of `upload_id` is recorded or rejected.
    pub fn watch(&self, upload_id: &str) -> oneshot::Receiver<Delivery> {
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().unwrap_or_else(|p| p.into_inner()).entry(upload_id.to_owned()).or_default().push(tx);
        rx
    }

    fn settle(&self, upload_id: &str, delivery: &Delivery) {
        let waiting = self.waiters.lock().unwrap_or_else(|p| p.into_inner()).remove(upload_id);
        for waiter in waiting.into_iter().flatten() {
            let _ = waiter.send(delivery.clone());
        }
    }

    fn claim(&self, reports: &[QueuedReport]) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        in_flight.extend(reports.iter().map(|r| r.upload_id.clone()));
    }

    fn release(&self, upload_ids: &[String]) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        for id in upload_ids {
            in_flight.remove(id);
        }
    }

    fn is_in_flight(&self, upload_id: &str) -> bool {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).contains(upload_id)
    }
}

impl Deliverer {
    /// Delivers reports until the engine shuts down.
    pub async fn run(self) {
        let this = Arc::new(self);
        let mut deliveries = JoinSet::new();
        loop {
            while deliveries.try_join_next().is_some() {}
            if deliveries.len() < DELIVERIES_IN_FLIGHT {
                if let Some(delivery) = this.next_delivery() {
                    deliveries.spawn(delivery);
                    continue;
                }
            }
            let wait = this.time_until_due();
            tokio::select! {
                _ = this.shutdown.cancelled() => break,
                _ = this.outbox.wake.notified() => {}
                Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // Whatever was in flight stays in the outbox and goes out with the next start.
        deliveries.abort_all();
    }

    fn time_until_due(&self) -> Duration {
        match self.store.next_report_due() {
            Ok(Some(at)) => {
                Duration::from_millis((at - unix_millis()).clamp(10, IDLE_RECHECK.as_millis() as i64) as u64)
            }
            _ => IDLE_RECHECK,
        }
    }

    /// Takes the next batch of due reports off the outbox, if there is one and a backend.
    fn next_delivery(self: &Arc<Self>) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let backend = match (self.connect)() {
            Ok(backend) => backend,
            // Not configured yet: the reports wait for settings (which wake the outbox).
            Err(_) => return None,
        };
        let batch = backend.max_presign_batch().max(1);
        let due = match self.store.due_reports(batch, &|id| self.outbox.is_in_flight(id)) {
            Ok(due) if !due.is_empty() => due,
            Ok(_) => return None,
            Err(e) => {
                tracing::error!("could not read the report outbox: {e}");
                return None;
            }
        };
        self.outbox.claim(&due);
        let this = Arc::clone(self);
        Some(async move { this.deliver(backend, due).await })
    }

    async fn deliver(&self, backend: Arc<dyn SigningBackend>, due: Vec<QueuedReport>) {
        let ids: Vec<String> = due.iter().map(|r| r.upload_id.clone()).collect();
        let mut reports = Vec::with_capacity(due.len());
        let mut queued = Vec::with_capacity(due.len());
        for entry in due {
            match serde_json::from_str::<CompletionReport>(&entry.report) {
                Ok(report) => {
                    reports.push(report);
                    queued.push(entry);
                }
                Err(e) => {
                    let error = Error::Internal(format!("the queued report could not be read back ({e})"));
                    self.rejected(&entry.upload_id, &error);
                }
            }
        }
        if !reports.is_empty() {
            match backend.report_batch(&reports).await {
                Ok(results) => self.settle_all(&reports, results),
                Err(error) if error.is_batch_level() => self.postpone(&queued, error),
                // The backend refused the batch as a whole over one entry: judge each on its own,
                // so that one bad report cannot set the others aside.
                Err(error) if reports.len() > 1 => {
                    tracing::warn!(
                        reports = reports.len(),
                        "the backend refused a batch of reports, sending them one by one: {error}"
                    );
                    self.deliver_one_by_one(backend.as_ref(), &reports, &queued).await;
                }
                Err(error) => {
                    let error = rejection(error);
                    for report in &reports {
                        self.rejected(&report.upload_id, &error);
                    }
                }
            }
        }
        self.outbox.release(&ids);
    }

    /// `reports` and `queued` are the same reports, in the same order.
    async fn deliver_one_by_one(
        &self,
        backend: &dyn SigningBackend,
        reports: &[CompletionReport],
        queued: &[QueuedReport],
    ) {
        let mut results = Vec::with_capacity(reports.len());
        for report in reports {
            match backend.report(report).await {
                Err(error) if error.is_batch_level() => {
                    let done = results.len();
                    self.settle_all(&reports[..done], results);
                    self.postpone(&queued[done..], error);
                    return;
                }
                result => results.push(result),
            }
        }
        self.settle_all(reports, results);
    }

    fn settle_all(&self, reports: &[CompletionReport], results: Vec<Result<(), BackendError>>) {
        let mut recorded = Vec::with_capacity(reports.len());
        for (report, result) in reports.iter().zip(results) {
            match result {
                Ok(()) => recorded.push(report),
                Err(error) => self.rejected(&report.upload_id, &rejection(error)),
            }
        }
        let ids: Vec<&str> = recorded.iter().map(|r| r.upload_id.as_str()).collect();
        if let Err(e) = self.store.reports_delivered(&ids) {
            // Still in the outbox: they go again, and the backend answers a repeat as recorded.
            tracing::error!("could not record delivered reports: {e}");
            return;
        }
        for report in recorded {
            (self.emit)(Event::FileUploaded {
                upload_id: report.upload_id.clone(),
                key: report.key.clone().unwrap_or_default(),
                object_url: report.object_url.clone(),
                size: report.size,
            });
            self.outbox.settle(&report.upload_id, &Delivery::Recorded);
        }
    }

    fn rejected(&self, upload_id: &str, error: &Error) {
        let info = error.info();
        tracing::warn!(upload_id, code = %info.code, "the backend rejected the completion report: {}", info.message);
        if let Err(e) = self.store.report_rejected(upload_id, &info.code, &info.message) {
            tracing::error!(upload_id, "could not record the rejected report: {e}");
        }
        self.outbox.settle(upload_id, &Delivery::Rejected(error.clone()));
    }

    fn postpone(&self, queued: &[QueuedReport], error: BackendError) {
        let attempts = queued.iter().map(|r| r.attempts).max().unwrap_or(0);
        let wait = retry_delay(attempts);
        let error = Error::from(error);
        tracing::info!(reports = queued.len(), "the backend could not take reports, trying again in {wait:?}: {error}");
        let ids: Vec<&str> = queued.iter().map(|r| r.upload_id.as_str()).collect();
        let due = unix_millis() + wait.as_millis() as i64;
        if let Err(e) = self.store.report_postponed(&ids, &error.to_string(), due) {
            tracing::error!("could not postpone reports: {e}");
        }
        (self.emit)(Event::ReportsQueued {
            count: ids.len(),
            retry_in_ms: wait.as_millis() as u64,
            reason: error.info(),
        });
    }
}

/// The backend's own words, when it gave a reason.
fn rejection(error: BackendError) -> Error {
    let message = match error {
        BackendError::Rejected { message, .. } => message,
        other => other.to_string(),
    };
    Error::ReportRejected { message }
}

/// The wait after `attempts` failed deliveries: doubling, capped, with jitter so that many
/// clients do not all knock at once when the backend comes back.
fn retry_delay(attempts: u32) -> Duration {
    let ceiling = FIRST_RETRY.saturating_mul(1u32 << attempts.min(16)).min(LONGEST_RETRY);
    let fraction = 0.5 + (uuid::Uuid::new_v4().as_u128() % 500) as f64 / 1000.0;
    ceiling.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{FileToSign, Signed};

    /// Refuses every batch as a whole, as the backend does when one entry is malformed, and
    /// judges single reports by their file name.
    struct RefusesBatches;

    #[async_trait::async_trait]
    impl SigningBackend for RefusesBatches {
        fn max_presign_batch(&self) -> usize {
            100
        }
        fn max_file_size(&self) -> u64 {
            u64::MAX
        }
        async fn presign(&self, _files: &[FileToSign]) -> Result<Vec<Signed>, BackendError> {
            unreachable!("reports only")
        }
        async fn report(&self, report: &CompletionReport) -> Result<(), BackendError> {
            match report.file_name.as_str() {
                "bad" => Err(BackendError::Rejected { status: 422, message: "malformed".into() }),
                _ => Ok(()),
            }
        }
        async fn report_batch(&self, _: &[CompletionReport]) -> Result<Vec<Result<(), BackendError>>, BackendError> {
            Err(BackendError::Rejected { status: 422, message: "report 1 is malformed".into() })
        }
        async fn check(&self) -> Result<(), BackendError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_batch_refused_over_one_report_is_delivered_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("history.sqlite")).unwrap());
        let report = |id: &str, name: &str| CompletionReport {
            upload_id: id.into(),
            key: Some(format!("uploads/{id}")),
            object_url: format!("http://s3.test/uploads/{id}"),
            file_name: name.into(),
            size: 1,
            content_type: "text/plain".into(),
            checksum_sha256: "x".into(),
        };
        let queued: Vec<(String, CompletionReport)> = [("a", "good"), ("b", "bad"), ("c", "good")]
            .iter()
            .map(|(id, name)| (id.to_string(), report(id, name)))
            .collect();
        let rows: Vec<(&str, Option<&str>, String)> =
            queued.iter().map(|(id, r)| (id.as_str(), None, serde_json::to_string(r).unwrap())).collect();
        for (id, _) in &queued {
            crate::store::tests::add(&store, id, &format!("{id}.txt"));
        }
        store.enqueue_reports(&rows).unwrap();
        let deliverer = Deliverer {
            outbox: Arc::new(Outbox::default()),
            store: Arc::clone(&store),
            connect: Box::new(|| Ok(Arc::new(RefusesBatches) as Arc<dyn SigningBackend>)),
            emit: Box::new(|_| {}),
            shutdown: CancellationToken::new(),
        };
        let delivery = Arc::new(deliverer).next_delivery().expect("three reports are due");
        delivery.await;
        let left: Vec<(String, bool)> =
            store.queued_reports().unwrap().into_iter().map(|r| (r.upload_id, r.rejected)).collect();
        assert_eq!(left, vec![("b".to_owned(), true)], "the good reports are delivered, the bad one set aside");
    }

    #[test]
    fn retry_waits_grow_to_the_cap_and_not_beyond() {
        assert!(retry_delay(0) <= FIRST_RETRY);
        assert!(retry_delay(0) >= FIRST_RETRY / 2);
        for attempts in 0..40 {
            assert!(retry_delay(attempts) <= LONGEST_RETRY);
        }
        assert!(retry_delay(10) >= LONGEST_RETRY / 2, "a long outage waits near the cap");
    }
}
