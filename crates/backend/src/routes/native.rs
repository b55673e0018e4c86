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
use crate::db::{Flavour, NewRecord, PresignedPut, Record, RecordOutcome};
use crate::error::ApiError;
use crate::limits::{MAX_BATCH, MAX_RECORDS_PAGE, MAX_SINGLE_PUT_BYTES, REPORT_CHECK_CONCURRENCY};
use crate::signer::{without_query, Listing, ObjectHead, PutConditions};
use crate::validate::{
    canonical_upload_id, content_type_or_default, is_object_checksum, is_object_crc32c, is_sha256_base64,
    same_checksum_kind,
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
    /// A folder under the backend's prefix (e.g. a watched folder's `scans/2026`).
    #[serde(default)]
    key_prefix: Option<String>,
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
        let folder = crate::keys::sanitise_folder(file.key_prefix.as_deref().unwrap_or_default())
            .map_err(|message| ApiError::unprocessable("invalid_key_prefix", message))?;
        let key = app.keys.new_key_in(&folder, &file.file_name);
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
    // What each URL makes S3 enforce, so that reports of these keys can be checked by a listing.
    let signed = request
        .files
        .iter()
        .zip(&uploads)
        .map(|(file, upload)| PresignedPut {
            key: upload.key.clone(),
            checksum_sha256: file.checksum_sha256.clone(),
            object_url: upload.object_url.clone(),
        })
        .collect();
    app.db.remember_presigned(signed).await?;
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
    /// One of the two: the object's SHA-256 (or composite of part SHA-256s), or its composite
    /// CRC32C when it was uploaded in parts with CRC32C checksums.
    #[serde(default)]
    checksum_sha256: Option<String>,
    #[serde(default)]
    checksum_crc32c: Option<String>,
}

/// The object checksum a report states, checked for shape.
enum ReportedChecksum {
    Sha256(String),
    Crc32c(String),
}

impl ReportBody {
    fn checksum(&self) -> Result<ReportedChecksum, ApiError> {
        match (&self.checksum_sha256, &self.checksum_crc32c) {
            (Some(sha256), None) if is_object_checksum(sha256) => Ok(ReportedChecksum::Sha256(sha256.clone())),
            (None, Some(crc32c)) if is_object_crc32c(crc32c) => Ok(ReportedChecksum::Crc32c(crc32c.clone())),
            (Some(_), Some(_)) | (None, None) => Err(ApiError::unprocessable(
                "invalid_checksum",
                "Send exactly one of checksum_sha256 and checksum_crc32c: the one the object was uploaded with.",
            )),
            _ => Err(ApiError::unprocessable(
                "invalid_checksum",
                "checksum_sha256 must be the standard base64 (with padding) of the file's 32-byte SHA-256, \
                 or for a multipart upload S3's composite checksum `<base64>-<parts>`; checksum_crc32c must be \
                 S3's composite CRC32C `<base64 of 4 bytes>-<parts>`.",
            )),
        }
    }
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

/// A report whose fields are well-formed.
struct CheckedReport {
    client_upload_id: String,
    content_type: String,
    checksum: ReportedChecksum,
    report: ReportBody,
}

/// Checks a report's fields; no I/O.
fn check_report(app: &AppState, raw_client_upload_id: &str, report: ReportBody) -> Result<CheckedReport, ApiError> {
    let client_upload_id = canonical_upload_id(raw_client_upload_id).ok_or_else(|| {
        ApiError::unprocessable("invalid_client_upload_id", "The client_upload_id must be a UUID chosen by the client.")
    })?;
    check_issued_key(app, &report.key)?;
    let checksum = report.checksum()?;
    let content_type = content_type_or_default(report.content_type.as_deref()).ok_or_else(|| {
        ApiError::unprocessable(
            "invalid_content_type",
            "content_type must be a printable ASCII media type like `image/png`.",
        )
    })?;
    Ok(CheckedReport { client_upload_id, content_type, checksum, report })
}

/// A repeat needs no trip to S3: the first report already verified the object.
async fn already_recorded(app: &AppState, checked: &CheckedReport) -> Result<Option<Record>, ApiError> {
    match app.db.by_client_upload_id(checked.client_upload_id.clone()).await? {
        Some(existing) if existing.key == checked.report.key => Ok(Some(existing)),
        Some(existing) => Err(upload_id_conflict(&checked.client_upload_id, &existing)),
        None => Ok(None),
    }
}

/// Verifies a report against the bucket and records it: the single report route.
async fn record_report(
    app: &AppState,
    raw_client_upload_id: &str,
    report: ReportBody,
) -> Result<(ReportStatus, Record), ApiError> {
    let checked = check_report(app, raw_client_upload_id, report)?;
    if let Some(existing) = already_recorded(app, &checked).await? {
        return Ok((ReportStatus::AlreadyRecorded, existing));
    }
    verify_by_head(app, checked).await
}

/// HEADs the object: it exists, has the reported size and, when S3 keeps a checksum of the
/// reported kind, the reported checksum. Then records it.
async fn verify_by_head(app: &AppState, checked: CheckedReport) -> Result<(ReportStatus, Record), ApiError> {
    let Some(ObjectHead { size, checksum_sha256, checksum_crc32c }) = app.signer.head(&checked.report.key).await?
    else {
        return Err(object_missing(&checked.report.key));
    };
    check_size(&checked, size)?;
    let (stored, reported, name) = match &checked.checksum {
        ReportedChecksum::Sha256(sha256) => (checksum_sha256, sha256, "SHA-256"),
        ReportedChecksum::Crc32c(crc32c) => (checksum_crc32c, crc32c, "CRC32C"),
    };
    let differs = |stored: &String| same_checksum_kind(stored, reported) && stored != reported;
    if stored.as_ref().is_some_and(differs) {
        return Err(checksum_mismatch(&checked.report.key, name));
    }
    let object_url = app.signer.object_url(&checked.report.key).await?;
    store_report(app, checked, object_url).await
}

fn object_missing(key: &str) -> ApiError {
    ApiError::unprocessable(
        "object_missing",
        format!("There is no object at {key}; upload the file (PUT to the presigned URL) before reporting it."),
    )
}

/// The object holds as many bytes as the report says.
fn check_size(checked: &CheckedReport, size: u64) -> Result<(), ApiError> {
    if size == checked.report.size {
        return Ok(());
    }
    Err(ApiError::unprocessable(
        "size_mismatch",
        format!(
            "The object at {} holds {size} bytes but the report says {}; upload the file again.",
            checked.report.key, checked.report.size
        ),
    ))
}

fn checksum_mismatch(key: &str, name: &str) -> ApiError {
    ApiError::unprocessable(
        "checksum_mismatch",
        format!("The object at {key} has a different {name} than the report says; upload the file again."),
    )
}

async fn store_report(
    app: &AppState,
    checked: CheckedReport,
    object_url: String,
) -> Result<(ReportStatus, Record), ApiError> {
    let client_upload_id = checked.client_upload_id.clone();
    let outcome = app.db.record_native(new_record(checked, object_url)).await?;
    recorded(&client_upload_id, outcome)
}

fn new_record(checked: CheckedReport, object_url: String) -> NewRecord {
    let CheckedReport { client_upload_id, content_type, report, .. } = checked;
    NewRecord {
        client_upload_id: Some(client_upload_id),
        key: report.key,
        file_name: report.file_name,
        size: report.size,
        content_type,
        checksum_sha256: report.checksum_sha256,
        checksum_crc32c: report.checksum_crc32c,
        object_url,
        flavour: Flavour::Native,
    }
}

fn recorded(client_upload_id: &str, outcome: RecordOutcome) -> Result<(ReportStatus, Record), ApiError> {
    match outcome {
        RecordOutcome::Recorded(record) => {
            tracing::info!(key = %record.key, size = record.size, "recorded an upload");
            Ok((ReportStatus::Recorded, record))
        }
        RecordOutcome::AlreadyRecorded(record) => Ok((ReportStatus::AlreadyRecorded, record)),
        RecordOutcome::UploadIdConflict(existing) => Err(upload_id_conflict(client_upload_id, &existing)),
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
///
/// Reports of single PUTs this backend signed, whose checksum is the one signed into the URL,
/// are verified by one listing of their keys: S3 stored nothing at such a key unless the body
/// matched that checksum, so "it exists with this size" is all that is left to check. The
/// others (multipart objects, older presigns, other checksums) get a HEAD each.
pub async fn report_batch(
    State(app): State<AppState>,
    ApiJson(request): ApiJson<BatchReportRequest>,
) -> Result<Json<Value>, ApiError> {
    check_batch_size("reports", request.reports.len(), MAX_BATCH)?;
    let mut results: Vec<Option<Value>> = vec![None; request.reports.len()];
    let mut checked_reports = Vec::with_capacity(request.reports.len());
    for (index, item) in request.reports.into_iter().enumerate() {
        match check_report(&app, &item.client_upload_id, item.report) {
            Ok(checked) => checked_reports.push((index, checked)),
            Err(error) => results[index] = Some(batch_result(item.client_upload_id, Err(error))?),
        }
    }

    // A repeat needs no trip to S3: the first report already verified the object.
    let ids = checked_reports.iter().map(|(_, c)| c.client_upload_id.clone()).collect();
    let existing = app.db.by_client_upload_ids(ids).await?;
    let mut pending = Vec::with_capacity(checked_reports.len());
    for (index, checked) in checked_reports {
        let outcome = match existing.get(&checked.client_upload_id) {
            None => {
                pending.push((index, checked));
                continue;
            }
            Some(record) if record.key == checked.report.key => Ok((ReportStatus::AlreadyRecorded, record.clone())),
            Some(record) => Err(upload_id_conflict(&checked.client_upload_id, record)),
        };
        results[index] = Some(batch_result(checked.client_upload_id, outcome)?);
    }

    // Which reports a listing can verify: the key was signed here with this very checksum.
    let signed = app.db.presigned(pending.iter().map(|(_, c)| c.report.key.clone()).collect()).await?;
    let signed: std::collections::HashMap<String, PresignedPut> =
        signed.into_iter().map(|put| (put.key.clone(), put)).collect();
    let listable: Vec<String> = pending
        .iter()
        .filter(|(_, c)| signed.get(&c.report.key).is_some_and(|put| signed_checksum_matches(put, c)))
        .map(|(_, c)| c.report.key.clone())
        .collect();
    let listing = if listable.is_empty() {
        Listing::default()
    } else {
        // A HEAD per report is always correct, only slower: e.g. without s3:ListBucket.
        app.signer.list_sizes(&listable).await.unwrap_or_else(|error| {
            tracing::warn!(%error, "could not list the batch's keys; checking each report with a HEAD");
            Listing::default()
        })
    };
    tracing::info!(reports = results.len(), by_listing = listing.sizes.len(), "verifying a batch of reports");

    // Settled by the listing (recorded together, in one transaction), or left for a HEAD.
    let mut to_record = Vec::new();
    let mut to_head = Vec::new();
    for (index, checked) in pending {
        let put = signed.get(&checked.report.key);
        let key = &checked.report.key;
        let verdict = match (put, put.and_then(|_| listing.lookup(key))) {
            // S3 enforced the signed checksum, so the object cannot have the reported one.
            (Some(put), _) if !signed_checksum_matches(put, &checked) => Err(checksum_mismatch(key, "SHA-256")),
            (Some(_), Some(None)) => Err(object_missing(key)),
            (Some(put), Some(Some(size))) => check_size(&checked, size).map(|()| put.object_url.clone()),
            _ => {
                to_head.push((index, checked));
                continue;
            }
        };
        match verdict {
            Ok(object_url) => {
                to_record.push((index, checked.client_upload_id.clone(), new_record(checked, object_url)))
            }
            Err(error) => results[index] = Some(batch_result(checked.client_upload_id, Err(error))?),
        }
    }
    if !to_record.is_empty() {
        let (slots, news): (Vec<_>, Vec<_>) = to_record.into_iter().map(|(i, id, new)| ((i, id), new)).unzip();
        let outcomes = app.db.record_native_all(news).await?;
        for ((index, id), outcome) in slots.into_iter().zip(outcomes) {
            if let RecordOutcome::Recorded(record) = &outcome {
                tracing::debug!(key = %record.key, size = record.size, "recorded an upload");
            }
            results[index] = Some(batch_result(id.clone(), recorded(&id, outcome))?);
        }
    }

    let permits = Arc::new(Semaphore::new(REPORT_CHECK_CONCURRENCY));
    let mut tasks = JoinSet::new();
    for (index, checked) in to_head {
        let raw_id = checked.client_upload_id.clone();
        let app = Arc::clone(&app);
        let permits = Arc::clone(&permits);
        tasks.spawn(async move {
            // The semaphore is never closed, so acquiring only fails if that changes.
            let _permit = permits.acquire_owned().await.ok();
            (index, raw_id, verify_by_head(&app, checked).await)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (index, raw_id, outcome) = joined.map_err(|error| {
            tracing::error!(%error, "a report check task failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "A report could not be checked; send the batch again.",
            )
        })?;
        results[index] = Some(batch_result(raw_id, outcome)?);
    }
    Ok(Json(json!({ "results": results.into_iter().flatten().collect::<Vec<_>>() })))
}

/// Whether the report states the whole-file SHA-256 that was signed into the key's URL.
fn signed_checksum_matches(put: &PresignedPut, checked: &CheckedReport) -> bool {
    matches!(&checked.checksum, ReportedChecksum::Sha256(sha256) if *sha256 == put.checksum_sha256)
}

/// One entry of the batch answer; a failure on the backend's side fails the whole request.
fn batch_result(
    client_upload_id: String,
    outcome: Result<(ReportStatus, Record), ApiError>,
) -> Result<Value, ApiError> {
    Ok(match outcome {
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
    })
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
