//! When a failed request is tried again, and how long to wait first.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::TransferError;

/// Cuts every waiting backoff short. Rung when the machine resumes from sleep or the internet
/// comes back: whatever failed likely failed for that, and waiting out the rest of a backoff
/// would only delay the uploads.
#[derive(Clone)]
pub struct RetryNow(Arc<watch::Sender<u64>>);

impl Default for RetryNow {
    fn default() -> Self {
        RetryNow(Arc::new(watch::channel(0).0))
    }
}

impl RetryNow {
    pub fn ring(&self) {
        self.0.send_modify(|rings| *rings = rings.wrapping_add(1));
    }

    /// Waits `delay`, or less when [`RetryNow::ring`] is called meanwhile.
    pub async fn wait_out(&self, delay: Duration) {
        let mut rung = self.0.subscribe();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = rung.changed() => {}
        }
    }
}

/// Exponential backoff with full jitter. The whole retry window (about a minute with the
/// defaults) stays well inside a presigned URL's lifetime, and a URL that did expire is
/// re-signed rather than retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 8, base_delay: Duration::from_millis(250), max_delay: Duration::from_secs(15) }
    }
}

/// What to do about one failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait, then send again with the same URL.
    Retry,
    /// Get a fresh URL from the backend, then send again.
    Resign,
    /// It cannot succeed; stop with this error.
    Fail,
}

impl RetryPolicy {
    /// The pause before attempt `attempt + 1`: a random time up to base·2^attempt, capped.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.base_delay.saturating_mul(1u32 << attempt.min(16)).min(self.max_delay);
        let fraction = (uuid::Uuid::new_v4().as_u128() % 1000) as u32;
        ceiling.mul_f64(f64::from(fraction) / 1000.0).max(Duration::from_millis(10))
    }
}

pub fn classify(error: &TransferError) -> Next {
    match error {
        TransferError::Network { .. } => Next::Retry,
        // S3 saw other bytes than were signed: corrupted on the way, so send them again.
        TransferError::ChecksumMismatch { .. } => Next::Retry,
        TransferError::UrlRejected { .. } => Next::Resign,
        TransferError::S3Error { status, code, .. } => {
            if *status >= 500 || *status == 429 || matches!(code.as_str(), "SlowDown" | "RequestTimeout") {
                Next::Retry
            } else {
                Next::Fail
            }
        }
        _ => Next::Fail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_ring_ends_every_waiting_backoff_at_once_and_a_ring_before_waiting_does_not() {
        let retry_now = RetryNow::default();
        retry_now.ring();
        let started = std::time::Instant::now();
        let waits: Vec<_> = (0..3)
            .map(|_| {
                let retry_now = retry_now.clone();
                tokio::spawn(async move { retry_now.wait_out(Duration::from_secs(60)).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(waits.iter().all(|w| !w.is_finished()), "an earlier ring does not cut a later wait");
        retry_now.ring();
        for wait in waits {
            wait.await.unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "every wait ended at the ring");
    }

    #[test]
    fn delays_grow_but_stay_under_the_cap() {
        let policy = RetryPolicy::default();
        for attempt in 0..20 {
            assert!(policy.delay(attempt) <= policy.max_delay);
        }
    }

    #[test]
    fn throttling_and_server_errors_are_retried_and_client_errors_are_not() {
        let s3 = |status, code: &str| TransferError::S3Error { status, code: code.into(), message: String::new() };
        assert_eq!(classify(&s3(503, "SlowDown")), Next::Retry);
        assert_eq!(classify(&s3(500, "InternalError")), Next::Retry);
        assert_eq!(classify(&s3(429, "")), Next::Retry);
        assert_eq!(classify(&s3(400, "InvalidArgument")), Next::Fail);
        let expired = TransferError::UrlRejected { code: "AccessDenied".into(), message: "Request has expired".into() };
        assert_eq!(classify(&expired), Next::Resign);
    }
}
