//! Operations: what an operator and their tooling need from a running backend. Liveness and
//! readiness probes, Prometheus metrics, log lines with request ids, the guards against slow,
//! many and greedy clients, and serving with a drain on shutdown.

pub mod guard;
pub mod logs;
pub mod metrics;
pub mod rate_limit;
pub mod serve;

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::routes::AppState;

/// How long each readiness check may take: a probe that hangs is worse than one that fails.
const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /healthz`: the process is up and serving. Touches nothing else, so a slow database or
/// bucket never gets a live process restarted.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the records database answers a query and the bucket answers a HeadBucket.
/// 503 names which one failed; the detail goes to the log, not to anonymous callers.
pub async fn readyz(State(app): State<AppState>) -> Response {
    let database = tokio::time::timeout(READY_CHECK_TIMEOUT, app.db.latest_of_everyone(1));
    let storage = tokio::time::timeout(READY_CHECK_TIMEOUT, app.signer.head_bucket());
    let (database, storage) = tokio::join!(database, storage);
    let database = match database {
        Ok(Ok(_)) => "ok",
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: the records database failed");
            "failed"
        }
        Err(_) => {
            tracing::warn!("readiness: the records database did not answer in time");
            "timed_out"
        }
    };
    let storage = match storage {
        Ok(Ok(())) => "ok",
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: the bucket failed");
            "failed"
        }
        Err(_) => {
            tracing::warn!("readiness: the bucket did not answer in time");
            "timed_out"
        }
    };
    let ready = database == "ok" && storage == "ok";
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if ready { "ok" } else { "unavailable" },
        "checks": { "database": database, "storage": storage },
    });
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text format. The webhook backlog is read from the database at
/// scrape time: the outbox is shared by every instance, so no instance's memory knows it.
pub async fn metrics(State(app): State<AppState>) -> Response {
    let mut text = metrics::global().render();
    match app.db.webhook_backlog().await {
        Ok(backlog) => metrics::write_gauge(
            &mut text,
            "dropship_webhook_backlog",
            "Recorded uploads whose webhook has not been delivered yet (all instances).",
            backlog,
        ),
        Err(e) => tracing::warn!("could not read the webhook backlog for /metrics: {e}"),
    }
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))], text)
        .into_response()
}
