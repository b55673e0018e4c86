//! Guards against clients that are slow, many or greedy: a deadline on every request, a cap on
//! requests in flight, and per-principal rate limits. Each refusal is the native JSON error
//! with a `Retry-After`, so a client knows to come back instead of giving up.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::metrics;
use super::rate_limit::{retry_after_secs, RateLimiter};
use crate::config::ServeSettings;
use crate::error::ApiError;

/// The limits in force, shared by every request.
#[derive(Debug)]
pub struct Guards {
    request_timeout: Duration,
    in_flight: Arc<Semaphore>,
    rate_limiter: Option<RateLimiter>,
}

impl Guards {
    pub fn new(settings: &ServeSettings) -> Self {
        Self {
            request_timeout: settings.request_timeout,
            in_flight: Arc::new(Semaphore::new(settings.max_concurrent_requests)),
            rate_limiter: settings.rate_limit.map(RateLimiter::new),
        }
    }

    /// `Err` when `principal` has used up its rate.
    pub fn check_rate(&self, principal: &str) -> Result<(), RateLimited> {
        let Some(limiter) = &self.rate_limiter else { return Ok(()) };
        limiter.check(principal).map_err(|wait| {
            metrics::global().rate_limited();
            let retry_after_secs = retry_after_secs(wait);
            tracing::info!(%principal, retry_after_secs, "rate limited");
            RateLimited { retry_after_secs }
        })
    }
}

/// A principal over its rate: answered 429 with `Retry-After`.
#[derive(Debug, Clone, Copy)]
pub struct RateLimited {
    retry_after_secs: u64,
}

impl IntoResponse for RateLimited {
    fn into_response(self) -> Response {
        let secs = self.retry_after_secs;
        with_retry_after(
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("Too many requests for this principal; send again in {secs} s (Retry-After)."),
            ),
            secs,
        )
    }
}

/// Answers 503 at once when the cap of requests in flight is reached (a queue would only make
/// every waiting client time out later), and 503 when a request passes its deadline.
pub async fn limit_requests(State(guards): State<Arc<Guards>>, request: Request, next: Next) -> Response {
    let Ok(_permit) = Arc::clone(&guards.in_flight).try_acquire_owned() else {
        metrics::global().overloaded();
        tracing::warn!("too many requests in flight; answering 503");
        return with_retry_after(
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "The backend is handling as many requests as it may; send again shortly (Retry-After).",
            ),
            1,
        );
    };
    match tokio::time::timeout(guards.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::global().timed_out();
            tracing::warn!(timeout_secs = guards.request_timeout.as_secs(), "request timed out; answering 503");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "request_timeout",
                "The backend could not answer in time; send the request again.",
            )
            .into_response()
        }
    }
}

fn with_retry_after(error: ApiError, secs: u64) -> Response {
    let mut response = error.into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}
