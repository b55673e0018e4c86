//! The native API: batch presigning, completion reports (single and batch) and the records.
//! See docs/backend-api.md for the shapes; every failure is an [`ApiError`].

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::body::ApiJson;
use super::AppState;
use crate::db::{Flavour, NewRecord, Record, RecordOutcome};
use crate::error::ApiError;
use crate::limits::{MAX_BATCH, MAX_RECORDS_PAGE, MAX_SINGLE_PUT_BYTES, REPORT_CHECK_CONCURRENCY};
use crate::signer::{without_query, PutConditions};
use crate::validate::{
    canonical_upload_id, content_type_or_default, is_object_checksum, is_sha256_base64, same_checksum_kind,
};

pub async fn ping() -> Json<Value> {
    Json(json!({
        "status": "ok",
        "service": "dropship-backend",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

#[derive(Debug, Deserialize)]
pub struct PresignRequest {
    files: Vec<PresignFile>,
}

#[derive(Debug, Deserialize)]
struct PresignFile {
    client_upload_id: String,
    file_name: String,
    size: u64,
    #[serde(default)]
    content_type: Option<String>,
    checksum_sha256: String,
}

#[derive(Debug, Serialize)]
struct PresignedUpload {
    client_upload_id: String,
    key: String,
    method: &'static str,
    url: String,
    headers: BTreeMap<String, String>,
    expires_at: String,
    object_url: String,
}

/// `POST /api/v1/uploads/presign`: one presigned PUT per file, in request order. The whole
/// request is refused when any file is invalid, so a client never holds half a batch.
pub async fn presign_batch(
    State(app): State<AppState>,
    ApiJson(request): ApiJson<PresignRequest>,
) -> Result<Json<Value>, ApiError> {
    check_batch_size("files", request.files.len(), MAX_BATCH)?;
    let mut seen = HashSet::new();
    let mut checked = Vec::with_capacity(request.files.len());
    for (index, file) in request.files.iter().enumerate() {
        let id = check_presign_file(index, file)?;
        if !seen.insert(id.0.clone()) {
            return Err(ApiError::unprocessable(
                "duplicate_client_upload_id",
                format!(
                    "files[{index}].client_upload_id {} appears twice in this request; give each file its own id.",
                    id.0
                ),
            ));
        }
        checked.push(id);
    }

    let mut uploads = Vec::with_capacity(checked.len());
    for (file, (client_upload_id, content_type)) in request.files.iter().zip(checked) {
        let key = app.keys.new_key(&file.file_name);
        let put = app
            .signer
            .presign_put(
                &key,
                PutConditions { content_type: Some(&content_type), checksum_sha256: Some(&file.checksum_sha256) },
            )
            .await?;
        let object_url = without_query(&put.url).to_owned();
        tracing::debug!(%key, %object_url, "presigned a PUT");
        uploads.push(PresignedUpload {
            client_upload_id,
            key,
            method: "PUT",
            expires_at: put.expires_at.format(&Rfc3339).unwrap_or_default(),
            url: put.url,
            headers: put.headers,
            object_url,
        });
    }
    tracing::info!(count = uploads.len(), "presigned uploads");
    Ok(Json(json!({ "uploads": uploads })))
}

/// Validates one file of a presign request; returns its canonical id and content type.
fn check_presign_file(index: usize, file: &PresignFile) -> Result<(String, String), ApiError> {
    let id = canonical_upload_id(&file.client_upload_id).ok_or_else(|| {
        ApiError::unprocessable(
            "invalid_client_upload_id",
            format!("files[{index}].client_upload_id must be a UUID chosen by the client."),
        )
    })?;
    if file.size > MAX_SINGLE_PUT_BYTES {
        return Err(ApiError::unprocessable(
            "file_too_large",
            format!(
                "files[{index}] is {} bytes; a single PUT carries at most 5 GiB ({MAX_SINGLE_PUT_BYTES} bytes). \
                 Upload larger files in parts: POST /api/v1/multipart.",
                file.size
            ),
        ));
    }
    let content_type = content_type_or_default(file.content_type.as_deref()).ok_or_else(|| {
        ApiError::unprocessable(
            "invalid_content_type",
            format!("files[{index}].content_type must be a printable ASCII media type like `image/png`."),
        )
    })?;
    if !is_sha256_base64(&file.checksum_sha256) {
        return Err(ApiError::unprocessable(
            "invalid_checksum",
            format!("files[{index}].checksum_sha256 must be the standard base64 (with padding) of the file's 32-byte SHA-256."),
        ));
    }
    Ok((id, content_type))
}

/// `empty_batch` / `batch_too_large` unless `count` is from 1 to `max`.
pub(super) fn check_batch_size(field: &str, count: usize, max: usize) -> Result<(), ApiError> {
    if count == 0 {
        return Err(ApiError::unprocessable("empty_batch", format!("`{field}` is empty; send at least one.")));
    }
    if count > max {
        return Err(ApiError::unprocessable(
            "batch_too_large",
            format!("`{field}` has {count} entries; send at most {max} per request."),
        ));
    }
    Ok(())
}

/// `key_not_allowed` unless the key has the shape this backend hands out, so a client can only
/// ever act on objects inside the prefix that the backend itself named.
pub(super) fn check_issued_key(app: &AppState, key: &str) -> Result<(), ApiError> {
    if app.keys.is_issued_shape(key) {
        return Ok(());
    }
    Err(ApiError::unprocessable(
        "key_not_allowed",
        format!(
            "The key {key:?} is not one this backend hands out (`{}/<uuid>/<file name>`); use the key from the presign or multipart response.",
            app.keys.prefix()
        ),
    ))
}

/// The body of a completion report.
#[derive(Debug, Clone, Deserialize)]
pub struct ReportBody {
    key: String,
    file_name: String,
    size: u64,
    #[serde(default)]
    content_type: Option<String>,
    checksum_sha256: String,
}

/// `POST /api/v1/uploads/{client_upload_id}/report`: 201 with the new record, 200 with the
/// existing one on a repeat.
pub async fn report_upload(
    State(app): State<AppState>,
    Path(client_upload_id): Path<String>,
    ApiJson(report): ApiJson<ReportBody>,
) -> Result<(StatusCode, Json<Record>), ApiError> {
    let (outcome_status, record) = record_report(&app, &client_upload_id, report).await?;
    let status = match outcome_status {
        ReportStatus::Recorded => StatusCode::CREATED,
        ReportStatus::AlreadyRecorded => StatusCode::OK,
    };
    Ok((status, Json(record)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum ReportStatus {
    Recorded,
    AlreadyRecorded,
}

/// Verifies a report against the bucket and records it. Shared by the single and batch routes.
async fn record_report(
    app: &AppState,
    raw_client_upload_id: &str,
    report: ReportBody,
) -> Result<(ReportStatus, Record), ApiError> {
    let client_upload_id = canonical_upload_id(raw_client_upload_id).ok_or_else(|| {
        ApiError::unprocessable("invalid_client_upload_id", "The client_upload_id must be a UUID chosen by the client.")
    })?;
    check_issued_key(app, &report.key)?;
    if !is_object_checksum(&report.checksum_sha256) {
        return Err(ApiError::unprocessable(
            "invalid_checksum",
            "checksum_sha256 must be the standard base64 (with padding) of the file's 32-byte SHA-256, \
             or for a multipart upload S3's composite checksum `<base64>-<parts>`.",
        ));
    }
    let content_type = content_type_or_default(report.content_type.as_deref()).ok_or_else(|| {
        ApiError::unprocessable(
            "invalid_content_type",
            "content_type must be a printable ASCII media type like `image/png`.",
        )
    })?;

    // A repeat needs no trip to S3: the first report already verified the object.
    if let Some(existing) = app.db.by_client_upload_id(client_upload_id.clone()).await? {
        return if existing.key == report.key {
            Ok((ReportStatus::AlreadyRecorded, existing))
        } else {
            Err(upload_id_conflict(&client_upload_id, &existing))
        };
    }

    let head = app.signer.head(&report.key).await?.ok_or_else(|| {
        ApiError::unprocessable(
            "object_missing",
            format!(
                "There is no object at {}; upload the file (PUT to the presigned URL) before reporting it.",
                report.key
            ),
        )
    })?;
    if head.size != report.size {
        return Err(ApiError::unprocessable(
            "size_mismatch",
            format!(
                "The object at {} holds {} bytes but the report says {}; upload the file again.",
                report.key, head.size, report.size
            ),
        ));
    }
    let differs =
        |stored: &String| same_checksum_kind(stored, &report.checksum_sha256) && *stored != report.checksum_sha256;
    if head.checksum_sha256.as_ref().is_some_and(differs) {
        return Err(ApiError::unprocessable(
            "checksum_mismatch",
            format!(
                "The object at {} has a different SHA-256 than the report says; upload the file again.",
                report.key
            ),
        ));
    }

    let object_url = app.signer.object_url(&report.key).await?;
    let new = NewRecord {
        client_upload_id: Some(client_upload_id.clone()),
        key: report.key,
        file_name: report.file_name,
        size: report.size,
        content_type,
        checksum_sha256: Some(report.checksum_sha256),
        object_url,
        flavour: Flavour::Native,
    };
    match app.db.record_native(new).await? {
        RecordOutcome::Recorded(record) => {
            tracing::info!(key = %record.key, size = record.size, "recorded an upload");
            Ok((ReportStatus::Recorded, record))
        }
        RecordOutcome::AlreadyRecorded(record) => Ok((ReportStatus::AlreadyRecorded, record)),
        RecordOutcome::UploadIdConflict(existing) => Err(upload_id_conflict(&client_upload_id, &existing)),
        RecordOutcome::KeyConflict(existing) => Err(ApiError::unprocessable(
            "key_conflict",
            format!(
                "The key {} is already recorded for upload {}; each upload reports its own key.",
                existing.key,
                existing.client_upload_id.as_deref().unwrap_or("(a rails attachment)")
            ),
        )),
    }
}

fn upload_id_conflict(client_upload_id: &str, existing: &Record) -> ApiError {
    ApiError::unprocessable(
        "upload_id_conflict",
        format!(
            "Upload {client_upload_id} is already recorded with the key {}; a client_upload_id names one upload only.",
            existing.key
        ),
    )
}

#[derive(Debug, Deserialize)]
pub struct BatchReportRequest {
    reports: Vec<BatchReport>,
}

#[derive(Debug, Deserialize)]
struct BatchReport {
    client_upload_id: String,
    #[serde(flatten)]
    report: ReportBody,
}

/// `POST /api/v1/reports`: each report is verified and recorded on its own; the answer lists a
/// result per report, in request order. A failure on the backend's side (S3 unreachable, the
/// database) fails the whole request instead, so "rejected" always means "fix the report".
pub async fn report_batch(
    State(app): State<AppState>,
    ApiJson(request): ApiJson<BatchReportRequest>,
) -> Result<Json<Value>, ApiError> {
    check_batch_size("reports", request.reports.len(), MAX_BATCH)?;
    let total = request.reports.len();
    let permits = Arc::new(Semaphore::new(REPORT_CHECK_CONCURRENCY));
    let mut tasks = JoinSet::new();
    for (index, item) in request.reports.into_iter().enumerate() {
        let app = Arc::clone(&app);
        let permits = Arc::clone(&permits);
        tasks.spawn(async move {
            // The semaphore is never closed, so acquiring only fails if that changes.
            let _permit = permits.acquire_owned().await.ok();
            let outcome = record_report(&app, &item.client_upload_id, item.report).await;
            (index, item.client_upload_id, outcome)
        });
    }

    let mut results: Vec<Option<Value>> = vec![None; total];
    while let Some(joined) = tasks.join_next().await {
        let (index, client_upload_id, outcome) = joined.map_err(|error| {
            tracing::error!(%error, "a report check task failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "A report could not be checked; send the batch again.",
            )
        })?;
        let result = match outcome {
            Ok((status, record)) => json!({
                "client_upload_id": record.client_upload_id,
                "status": status,
                "record": record,
                "error": null,
            }),
            Err(error) if error.status.is_server_error() => return Err(error),
            Err(error) => json!({
                "client_upload_id": canonical_upload_id(&client_upload_id).unwrap_or(client_upload_id),
                "status": "rejected",
                "record": null,
                "error": { "code": error.code, "message": error.message },
            }),
        };
        if let Some(slot) = results.get_mut(index) {
            *slot = Some(result);
        }
    }
    Ok(Json(json!({ "results": results.into_iter().flatten().collect::<Vec<_>>() })))
}

#[derive(Debug, Deserialize)]
pub struct RecordsQuery {
    limit: Option<u32>,
}

/// `GET /api/v1/records?limit=N`: newest first.
pub async fn list_records(
    State(app): State<AppState>,
    query: Result<Query<RecordsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|_| {
        ApiError::bad_request(
            "invalid_request",
            format!("`limit` must be a whole number from 1 to {MAX_RECORDS_PAGE}."),
        )
    })?;
    let limit = query.limit.unwrap_or(MAX_RECORDS_PAGE);
    if !(1..=MAX_RECORDS_PAGE).contains(&limit) {
        return Err(ApiError::unprocessable(
            "invalid_limit",
            format!("`limit` must be from 1 to {MAX_RECORDS_PAGE}, got {limit}."),
        ));
    }
    let records = app.db.latest(limit).await?;
    Ok(Json(json!({ "records": records })))
}

/// `GET /api/v1/records/{client_upload_id}`.
pub async fn get_record(
    State(app): State<AppState>,
    Path(client_upload_id): Path<String>,
) -> Result<Json<Record>, ApiError> {
    let missing = || ApiError::not_found(format!("No upload {client_upload_id} is recorded."));
    let id = canonical_upload_id(&client_upload_id).ok_or_else(missing)?;
    app.db.by_client_upload_id(id).await?.map(Json).ok_or_else(missing)
}
