//! Log lines and the request id. Every request runs inside a `request` span carrying its id
//! (the caller's `X-Request-Id` when it is sane, else a fresh UUID), so every line logged
//! while serving it, in text or JSON, names the request; the id is echoed in the response.
//! The same middleware counts the request for `/metrics` under its route template.

use std::io::IsTerminal;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use super::metrics;
use crate::config::LogFormat;

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id taken from a caller; longer ones are replaced, not cut.
const MAX_REQUEST_ID_BYTES: usize = 128;

/// The label for requests that matched no route (404s, probes of random paths), so scanners
/// cannot create a time series per path they try.
const UNMATCHED_ROUTE: &str = "unmatched";

/// Largest batch-report answer read back to count its outcomes (1,000 results with records).
const MAX_COUNTED_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Logs go to stderr: stdout carries only the `listening on` line that tests wait for.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("dropship_backend=info,warn"));
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        // The current span (with its request_id) on every line; the span list would repeat it.
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
    }
}

/// A caller's id is kept only if it cannot break a log line or a header: 1-128 characters of
/// letters, digits and `-_.:`.
fn sane_request_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let sane = !text.is_empty()
        && text.len() <= MAX_REQUEST_ID_BYTES
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    sane.then(|| text.to_owned())
}

/// One span and one log line per request; the request id in the response; the metrics.
pub async fn observe(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(sane_request_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let method = request.method().clone();
    // Only the path is logged: query strings and headers (tokens) never are.
    let path = request.uri().path().to_owned();
    let route = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let span = tracing::info_span!("request", request_id = %id);
    async move {
        let started = Instant::now();
        let mut response = next.run(request).await;
        let elapsed = started.elapsed();
        let status = response.status();
        let route = route.as_deref().unwrap_or(UNMATCHED_ROUTE);
        metrics::global().request(route, method.as_str(), status.as_u16(), elapsed);
        response = count_reports(route, response).await;
        tracing::info!(
            %method,
            %path,
            status = status.as_u16(),
            elapsed_ms = elapsed.as_millis() as u64,
            "request"
        );
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(REQUEST_ID.clone(), value);
        }
        response
    }
    .instrument(span)
    .await
}

/// Counts completion reports by outcome: a single report's from its status, a batch's from
/// the `status` of each result in its answer.
async fn count_reports(route: &str, response: Response) -> Response {
    let metrics = metrics::global();
    let status = response.status();
    match route {
        "/api/v1/uploads/{client_upload_id}/report" | "/api/attachments" => {
            if let Some(outcome) = outcome_of_status(status) {
                metrics.reports(outcome, 1);
            }
            response
        }
        "/api/v1/reports" if status == StatusCode::OK => {
            let (parts, body) = response.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, MAX_COUNTED_BODY_BYTES).await else {
                tracing::warn!("could not read a batch report's answer back to count it");
                return Response::from_parts(parts, Body::empty());
            };
            #[derive(serde::Deserialize)]
            struct Answer {
                results: Vec<Outcome>,
            }
            #[derive(serde::Deserialize)]
            struct Outcome {
                status: String,
            }
            if let Ok(answer) = serde_json::from_slice::<Answer>(&bytes) {
                for result in answer.results {
                    let outcome = match result.status.as_str() {
                        "recorded" => "recorded",
                        "already_recorded" => "already_recorded",
                        _ => "rejected",
                    };
                    metrics.reports(outcome, 1);
                }
            }
            Response::from_parts(parts, Body::from(bytes))
        }
        _ => response,
    }
}

/// A report's outcome from its answer's status; `None` for answers that are not about the
/// report (no token, rate limited).
fn outcome_of_status(status: StatusCode) -> Option<&'static str> {
    match status.as_u16() {
        201 => Some("recorded"),
        200 => Some("already_recorded"),
        401 | 403 | 429 => None,
        400..=499 => Some("rejected"),
        _ => Some("failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_request_ids_are_taken_from_the_caller() {
        let take = |raw: &str| sane_request_id(&HeaderValue::from_str(raw).expect("a header value"));
        assert_eq!(take("abc-123_x.y:z").as_deref(), Some("abc-123_x.y:z"), "an ordinary id is kept");
        assert_eq!(take(""), None, "empty is replaced");
        assert_eq!(take("a b"), None, "spaces could split a text log line");
        assert_eq!(take("{\"x\":1}"), None, "JSON-looking ids are replaced");
        assert_eq!(take(&"a".repeat(129)), None, "too long");
        assert_eq!(take(&"a".repeat(128)).map(|s| s.len()), Some(128), "the longest kept");
    }
}
