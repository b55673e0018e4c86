//! When a failed request is tried again, and how long to wait first.

use std::time::Duration;

use super::TransferError;

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
