//! Waits out a backend that is down or failing. Signing calls that meet an outage (no
//! connection, a 5xx) are asked again with growing pauses until the backend answers or the
//! patience runs out, so an upload that needs a URL holds on through a backend restart instead
//! of failing. Refusals (401, 4xx, garbage) are not outages and pass through at once, and so
//! is a backend that cannot be reached before it ever answered: that is a wrong URL or a
//! server not started, which a person should hear about now. Reports are not retried here:
//! the outbox owns their delivery. A 429 is an outage of a known length: the wait is the
//! backend's `Retry-After` (capped at [`LONGEST_RATE_LIMIT_WAIT`]), told like any other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::transfer::RetryNow;

use super::{
    BackendError, CompletedPart, CompletionReport, FileToSign, ListedPart, MultipartUpload, PartToSign, Signed,
    SignedPart, SigningBackend,
};

/// Told about each wait: the attempt that failed, the pause before the next, and why.
pub type OnOutage = Arc<dyn Fn(u32, Duration, &BackendError) + Send + Sync>;

const FIRST_PAUSE: Duration = Duration::from_millis(500);
const LONGEST_PAUSE: Duration = Duration::from_secs(15);
/// The longest `Retry-After` obeyed: a backend asking for more is waited on in steps of this.
const LONGEST_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

pub struct PatientBackend {
    inner: Arc<dyn SigningBackend>,
    patience: Duration,
    on_outage: OnOutage,
    first_pause: Duration,
    /// Whether the backend has answered at all (even with an error) since this was made.
    answered: AtomicBool,
    retry_now: RetryNow,
    /// Changes when calls in flight should be sent again (after sleep, on fresh connections).
    restarts: Option<tokio::sync::watch::Receiver<u64>>,
}

impl PatientBackend {
    pub fn new(inner: Arc<dyn SigningBackend>, patience: Duration, on_outage: OnOutage) -> Self {
        PatientBackend {
            inner,
            patience,
            on_outage,
            first_pause: FIRST_PAUSE,
            answered: AtomicBool::new(false),
            retry_now: RetryNow::default(),
            restarts: None,
        }
    }

    /// Sends a call in flight again at once whenever `restarts` changes, rather than waiting
    /// for an answer on a connection that died while the machine slept.
    pub fn restarting_with(mut self, restarts: tokio::sync::watch::Receiver<u64>) -> Self {
        self.restarts = Some(restarts);
        self
    }

    /// One call, or `None` when a restart came first.
    async fn once<T, F>(&self, call: F) -> Option<Result<T, BackendError>>
    where
        F: std::future::Future<Output = Result<T, BackendError>>,
    {
        let Some(restarts) = &self.restarts else { return Some(call.await) };
        let mut restarts = restarts.clone();
        restarts.mark_unchanged();
        tokio::select! {
            result = call => Some(result),
            // A closed channel disables this branch: the call then runs to its end.
            Ok(()) = restarts.changed() => None,
        }
    }

    /// Asks again at once, rather than after the pause, when `retry_now` rings (the machine
    /// woke or the internet returned).
    pub fn retrying_now_with(mut self, retry_now: RetryNow) -> Self {
        self.retry_now = retry_now;
        self
    }

    async fn patiently<T, F>(&self, mut call: impl FnMut() -> F) -> Result<T, BackendError>
    where
        F: std::future::Future<Output = Result<T, BackendError>>,
    {
        let mut give_up_at = None;
        let mut attempt = 0u32;
        loop {
            let Some(result) = self.once(call()).await else {
                tracing::info!("a backend call was in flight as the machine slept; sending it again");
                continue;
            };
            let error = match result {
                Err(error @ BackendError::Unreachable { .. }) if !self.answered.load(Ordering::Relaxed) => {
                    return Err(error)
                }
                Err(error) if is_outage(&error) => error,
                other => {
                    self.answered.store(true, Ordering::Relaxed);
                    return other;
                }
            };
            if !matches!(error, BackendError::Unreachable { .. }) {
                self.answered.store(true, Ordering::Relaxed);
            }
            let give_up_at = *give_up_at.get_or_insert_with(|| Instant::now() + self.patience);
            let left = give_up_at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(error);
            }
            attempt += 1;
            let pause = match &error {
                // Exactly as long as asked: sooner would be refused again, later wastes time.
                BackendError::RateLimited { retry_after, .. } => (*retry_after).min(LONGEST_RATE_LIMIT_WAIT),
                _ => pause_after(self.first_pause, attempt),
            }
            .min(left);
            tracing::info!(attempt, "the backend is unavailable, asking again in {pause:?}: {error}");
            (self.on_outage)(attempt, pause, &error);
            self.retry_now.wait_out(pause).await;
        }
    }
}

/// An outage, as opposed to an answer: worth asking again later.
pub fn is_outage(error: &BackendError) -> bool {
    matches!(
        error,
        BackendError::Unreachable { .. } | BackendError::ServerError { .. } | BackendError::RateLimited { .. }
    )
}

fn pause_after(first: Duration, attempt: u32) -> Duration {
    let ceiling = first.saturating_mul(1u32 << attempt.min(16)).min(LONGEST_PAUSE);
    let fraction = 0.5 + (uuid::Uuid::new_v4().as_u128() % 500) as f64 / 1000.0;
    ceiling.mul_f64(fraction)
}

#[async_trait]
impl SigningBackend for PatientBackend {
    fn max_presign_batch(&self) -> usize {
        self.inner.max_presign_batch()
    }

    fn max_file_size(&self) -> u64 {
        self.inner.max_file_size()
    }

    async fn presign(&self, files: &[FileToSign]) -> Result<Vec<Signed>, BackendError> {
        self.patiently(|| self.inner.presign(files)).await
    }

    async fn report(&self, report: &CompletionReport) -> Result<(), BackendError> {
        self.inner.report(report).await
    }

    async fn report_batch(&self, reports: &[CompletionReport]) -> Result<Vec<Result<(), BackendError>>, BackendError> {
        self.inner.report_batch(reports).await
    }

    async fn check(&self) -> Result<(), BackendError> {
        self.inner.check().await
    }

    fn supports_multipart(&self) -> bool {
        self.inner.supports_multipart()
    }

    async fn create_multipart(&self, file: &FileToSign) -> Result<MultipartUpload, BackendError> {
        self.patiently(|| self.inner.create_multipart(file)).await
    }

    async fn sign_parts(
        &self,
        upload: &MultipartUpload,
        parts: &[PartToSign],
    ) -> Result<Vec<SignedPart>, BackendError> {
        self.patiently(|| self.inner.sign_parts(upload, parts)).await
    }

    async fn complete_multipart(&self, upload: &MultipartUpload, parts: &[CompletedPart]) -> Result<(), BackendError> {
        self.patiently(|| self.inner.complete_multipart(upload, parts)).await
    }

    async fn abort_multipart(&self, upload: &MultipartUpload) -> Result<(), BackendError> {
        self.patiently(|| self.inner.abort_multipart(upload)).await
    }

    async fn list_parts(&self, upload: &MultipartUpload) -> Result<Vec<ListedPart>, BackendError> {
        self.patiently(|| self.inner.list_parts(upload)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;

    /// Fails with `error` the first `failures` times, then signs.
    struct Flaky {
        failures: u32,
        calls: AtomicU32,
        error: BackendError,
    }

    #[async_trait]
    impl SigningBackend for Flaky {
        fn max_presign_batch(&self) -> usize {
            1
        }
        fn max_file_size(&self) -> u64 {
            1
        }
        async fn presign(&self, _files: &[FileToSign]) -> Result<Vec<Signed>, BackendError> {
            if self.calls.fetch_add(1, Ordering::SeqCst) < self.failures {
                Err(self.error.clone())
            } else {
                Ok(Vec::new())
            }
        }
        async fn report(&self, _report: &CompletionReport) -> Result<(), BackendError> {
            Ok(())
        }
        async fn check(&self) -> Result<(), BackendError> {
            Ok(())
        }
    }

    fn patient(failures: u32, error: BackendError, patience: Duration) -> (Arc<Flaky>, PatientBackend, Arc<AtomicU32>) {
        let flaky = Arc::new(Flaky { failures, calls: AtomicU32::new(0), error });
        let waits = Arc::new(AtomicU32::new(0));
        let counted = waits.clone();
        let on_outage: OnOutage = Arc::new(move |_, _, _| {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        let mut backend = PatientBackend::new(flaky.clone(), patience, on_outage);
        backend.first_pause = Duration::from_millis(10);
        (flaky, backend, waits)
    }

    fn down() -> BackendError {
        BackendError::Unreachable { url: "http://127.0.0.1:9".into(), detail: "connection refused".into() }
    }

    #[tokio::test]
    async fn an_outage_is_waited_out_and_each_wait_is_told() {
        let (flaky, backend, waits) = patient(3, failing(), Duration::from_secs(60));
        backend.presign(&[]).await.expect("signed once the backend is back");
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 4);
        assert_eq!(waits.load(Ordering::SeqCst), 3);
    }

    fn failing() -> BackendError {
        BackendError::ServerError { url: "http://x".into(), status: 503, message: String::new() }
    }

    #[tokio::test]
    async fn a_backend_never_reached_fails_at_once_but_one_that_answered_before_is_waited_for() {
        let (flaky, backend, _) = patient(3, down(), Duration::from_secs(60));
        assert!(
            matches!(backend.presign(&[]).await, Err(BackendError::Unreachable { .. })),
            "a wrong URL is said at once"
        );
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 1);
        backend.answered.store(true, Ordering::SeqCst);
        backend.presign(&[]).await.expect("after it answered once, an outage is waited out");
    }

    #[tokio::test]
    async fn patience_runs_out_with_the_last_error() {
        let flaky = Arc::new(Flaky { failures: u32::MAX, calls: AtomicU32::new(0), error: failing() });
        let pauses = Arc::new(Mutex::new(Vec::new()));
        let told = pauses.clone();
        let on_outage: OnOutage = Arc::new(move |_, pause, _| told.lock().unwrap().push(pause));
        let patience = Duration::from_millis(300);
        let mut backend = PatientBackend::new(flaky.clone(), patience, on_outage);
        backend.first_pause = Duration::from_millis(10);

        let started = Instant::now();
        // A guard against waiting forever, far beyond the patience, so a loaded machine cannot trip it.
        let asked = tokio::time::timeout(Duration::from_secs(60), backend.presign(&[])).await;
        let error = asked.expect("gave up rather than waiting forever").expect_err("the backend never came back");
        assert!(matches!(error, BackendError::ServerError { .. }), "the last error is the one returned: {error:?}");
        // What it proves is in the backend's own accounting, not in how fast this machine is:
        // the pauses it took add up to its patience and never past it.
        let pauses = pauses.lock().unwrap().clone();
        let waited: Duration = pauses.iter().sum();
        assert!(waited <= patience, "its pauses ({waited:?}: {pauses:?}) stay within its patience of {patience:?}");
        assert!(!pauses.is_empty(), "it waited and asked again before giving up: {pauses:?}");
        assert_eq!(flaky.calls.load(Ordering::SeqCst) as usize, pauses.len() + 1, "one call after each pause");
        assert!(
            started.elapsed() >= patience,
            "it gave up only once its patience had run out: {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_rate_limit_is_waited_out_for_exactly_its_retry_after_and_told() {
        let limited = BackendError::RateLimited { url: "http://x".into(), retry_after: Duration::from_millis(200) };
        let (flaky, backend, waits) = patient(2, limited, Duration::from_secs(60));
        let started = Instant::now();
        backend.presign(&[]).await.expect("signed once the rate allows");
        let waited = started.elapsed();
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 3, "asked again after each wait");
        assert_eq!(waits.load(Ordering::SeqCst), 2, "each wait is told, so the shells can say so");
        assert!(
            waited >= Duration::from_millis(400) && waited < Duration::from_secs(2),
            "two waits of the Retry-After, not the backoff's: {waited:?}"
        );
    }

    #[tokio::test]
    async fn a_refusal_is_not_an_outage_and_fails_at_once() {
        let refused = BackendError::Unauthorized { url: "http://x".into(), status: 401 };
        let (flaky, backend, _) = patient(1, refused, Duration::from_secs(60));
        assert!(matches!(backend.presign(&[]).await, Err(BackendError::Unauthorized { .. })));
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 1);
    }
}
