//! The native API: batch presigning, completion reports (single and batch) and the records.
//! See docs/backend-api.md for the shapes; every failure is an [`ApiError`].

use std::collections::{BTreeMap, HashMap, HashSet};
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
use super::identity::forbidden;
use super::{audit_denial, deny_unless_mine, App, AppState};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::limits::{
    MAX_BATCH, MAX_LISTINGS_PER_BATCH, MAX_RECORDS_PAGE, MAX_SINGLE_PUT_BYTES, REPORT_CHECK_CONCURRENCY,
};
use crate::signer::{without_query, Listing, ObjectHead, PutConditions};
use crate::store::{
    AuditAction, AuditEntry, Flavour, NewRecord, Ownership, PresignedPut, Record, RecordOutcome, Scoped,
};
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
    principal: Principal,
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
        let key = app.keys.new_key_in(&folder, &file.file_name, &principal.name);
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
    // What each URL makes S3 enforce, so that reports of these keys can be checked by a listing,
    // and whom it was signed for, so that nobody else can report it.
    let signed = request
        .files
        .iter()
        .zip(&uploads)
        .map(|(file, upload)| PresignedPut {
            key: upload.key.clone(),
            checksum_sha256: Some(file.checksum_sha256.clone()),
            object_url: upload.object_url.clone(),
            uploaded_by: principal.name.clone(),
        })
        .collect();
    // A row per key, not per batch: "who was handed this key?" is then one lookup by key.
    let audit = uploads
        .iter()
        .map(|upload| {
            AuditEntry::new(&principal.name, AuditAction::Presign, "signed")
                .key(&upload.key)
                .client_upload_id(&upload.client_upload_id)
        })
        .collect();
    app.db.remember_presigned(signed, audit).await?;
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
            "The key {key:?} is not one this backend hands out (`{}` with the prefix {:?}); use the key from the presign or multipart response.",
            app.keys.template(),
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
    principal: Principal,
    Path(client_upload_id): Path<String>,
    ApiJson(report): ApiJson<ReportBody>,
) -> Result<(StatusCode, Json<Record>), ApiError> {
    let key = report.key.clone();
    let outcome = record_report(&app, &principal, &client_upload_id, report).await;
    if let Some(entry) = report_audit(&principal, &client_upload_id, &key, &outcome) {
        app.db.audit(vec![entry]).await?;
    }
    let (outcome_status, record) = outcome?;
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

const REPORT_ROUTE: &str = "POST /api/v1/uploads/{client_upload_id}/report";
const BATCH_REPORT_ROUTE: &str = "POST /api/v1/reports";

/// The audit row of a report's outcome; `None` for a denial, which was audited as one.
fn report_audit(
    principal: &Principal,
    client_upload_id: &str,
    key: &str,
    outcome: &Result<(ReportStatus, Record), ApiError>,
) -> Option<AuditEntry> {
    let text = match outcome {
        Ok((ReportStatus::Recorded, _)) => "recorded".to_owned(),
        Ok((ReportStatus::AlreadyRecorded, _)) => "already_recorded".to_owned(),
        Err(error) if error.code == "not_found" => return None,
        Err(error) => format!("rejected: {}", error.code),
    };
    let id = canonical_upload_id(client_upload_id).unwrap_or_else(|| client_upload_id.to_owned());
    Some(AuditEntry::new(&principal.name, AuditAction::Report, text).key(key).client_upload_id(id))
}

/// What a report of an upload that is not the principal's answers: exactly what a report of
/// one that was never issued answers, so it says nothing about anyone else's uploads.
fn report_not_found(client_upload_id: &str, key: &str) -> ApiError {
    ApiError::not_found(format!(
        "No upload {client_upload_id} of {key} was issued to you; report only uploads that you presigned or created."
    ))
}

/// Verifies a report against the bucket and records it: the single report route.
async fn record_report(
    app: &AppState,
    principal: &Principal,
    raw_client_upload_id: &str,
    report: ReportBody,
) -> Result<(ReportStatus, Record), ApiError> {
    let checked = check_report(app, raw_client_upload_id, report)?;
    let (id, key) = (checked.client_upload_id.clone(), checked.report.key.clone());
    // A repeat needs no trip to S3: the first report already verified the object.
    match app.db.record_of(principal.name.clone(), id.clone()).await? {
        Scoped::Mine(existing) if existing.key == key => return Ok((ReportStatus::AlreadyRecorded, existing)),
        Scoped::Mine(existing) => return Err(upload_id_conflict(&id, &existing)),
        Scoped::Others => {
            let why = "not_found: the client_upload_id is recorded for another principal";
            audit_denial(app, principal, REPORT_ROUTE, Some(&key), Some(&id), why).await?;
            return Err(report_not_found(&id, &key));
        }
        Scoped::Missing => {}
    }
    let ownership = app.db.key_owner(principal.name.clone(), key.clone()).await?;
    if !deny_unless_mine(app, principal, ownership, REPORT_ROUTE, &key, Some(&id)).await? {
        return Err(report_not_found(&id, &key));
    }
    verify_by_head(app, principal.name.clone(), checked).await
}

/// HEADs the object: it exists, has the reported size and, when S3 keeps a checksum of the
/// reported kind, the reported checksum. Then records it for `uploaded_by`.
async fn verify_by_head(
    app: &App,
    uploaded_by: String,
    checked: CheckedReport,
) -> Result<(ReportStatus, Record), ApiError> {
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
    store_report(app, uploaded_by, checked, object_url).await
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
    app: &App,
    uploaded_by: String,
    checked: CheckedReport,
    object_url: String,
) -> Result<(ReportStatus, Record), ApiError> {
    let (client_upload_id, key) = (checked.client_upload_id.clone(), checked.report.key.clone());
    let outcome = app.db.record_native(new_record(checked, object_url, uploaded_by)).await?;
    recorded(&client_upload_id, &key, outcome)
}

fn new_record(checked: CheckedReport, object_url: String, uploaded_by: String) -> NewRecord {
    let CheckedReport { client_upload_id, content_type, report, .. } = checked;
    NewRecord {
        client_upload_id: Some(client_upload_id),
        key: report.key,
        file_name: crate::keys::clean_file_name(&report.file_name),
        size: report.size,
        content_type,
        checksum_sha256: report.checksum_sha256,
        checksum_crc32c: report.checksum_crc32c,
        object_url,
        flavour: Flavour::Native,
        uploaded_by,
    }
}

fn recorded(client_upload_id: &str, key: &str, outcome: RecordOutcome) -> Result<(ReportStatus, Record), ApiError> {
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
        RecordOutcome::OthersRecord => Err(report_not_found(client_upload_id, key)),
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

/// Refuses the whole batch when a report breaks the shape openapi.json gives it (an id that is
/// no UUID, a checksum that is no checksum): that is a malformed request, which no client
/// following the document sends, not a report to be judged on its own. What the document cannot
/// say (a key never issued, an object that differs) is still answered per report.
fn check_batch_shape(reports: &[BatchReport]) -> Result<(), ApiError> {
    for (index, item) in reports.iter().enumerate() {
        let problem = if canonical_upload_id(&item.client_upload_id).is_none() {
            Some(("invalid_client_upload_id", "client_upload_id is not a UUID"))
        } else if item.report.checksum_sha256.as_deref().is_some_and(|c| !is_object_checksum(c)) {
            Some(("invalid_checksum", "checksum_sha256 is not a SHA-256 checksum in base64"))
        } else if item.report.checksum_crc32c.as_deref().is_some_and(|c| !is_object_crc32c(c)) {
            Some(("invalid_checksum", "checksum_crc32c is not a composite CRC32C in base64"))
        } else {
            None
        };
        if let Some((code, what)) = problem {
            return Err(ApiError::unprocessable(
                code,
                format!("Report {index} (counting from 0): {what}; nothing in this batch was recorded."),
            ));
        }
    }
    Ok(())
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
    principal: Principal,
    ApiJson(request): ApiJson<BatchReportRequest>,
) -> Result<Json<Value>, ApiError> {
    check_batch_size("reports", request.reports.len(), MAX_BATCH)?;
    check_batch_shape(&request.reports)?;
    let count = request.reports.len();
    let mut results: Vec<Option<Value>> = vec![None; count];
    let mut audit = Vec::with_capacity(count);
    // Each settled report: its answer, and its audit row (or its denial's).
    let mut settle = |index: usize, id: String, key: &str, outcome: Result<(ReportStatus, Record), ApiError>| {
        audit.extend(report_audit(&principal, &id, key, &outcome));
        batch_result(id, outcome).map(|value| results[index] = Some(value))
    };
    let mut checked_reports = Vec::with_capacity(count);
    for (index, item) in request.reports.into_iter().enumerate() {
        let key = item.report.key.clone();
        match check_report(&app, &item.client_upload_id, item.report) {
            Ok(checked) => checked_reports.push((index, checked)),
            Err(error) => settle(index, item.client_upload_id, &key, Err(error))?,
        }
    }

    // A repeat needs no trip to S3: the first report already verified the object. Uploads that
    // are not the principal's answer as if never issued, and their denials are audited.
    let mut denials = Vec::new();
    let ids = checked_reports.iter().map(|(_, c)| c.client_upload_id.clone()).collect();
    let existing = app.db.records_of(principal.name.clone(), ids).await?;
    let mut unrecorded = Vec::with_capacity(checked_reports.len());
    for (index, checked) in checked_reports {
        let (id, key) = (checked.client_upload_id.clone(), checked.report.key.clone());
        let outcome = match existing.get(&id) {
            None => {
                unrecorded.push((index, checked));
                continue;
            }
            Some(Scoped::Mine(record)) if record.key == key => Ok((ReportStatus::AlreadyRecorded, record.clone())),
            Some(Scoped::Mine(record)) => Err(upload_id_conflict(&id, record)),
            Some(_) => {
                denials.push((
                    key.clone(),
                    id.clone(),
                    "not_found: the client_upload_id is recorded for another principal",
                ));
                Err(report_not_found(&id, &key))
            }
        };
        settle(index, id, &key, outcome)?;
    }
    let owners = app
        .db
        .key_owners(principal.name.clone(), unrecorded.iter().map(|(_, c)| c.report.key.clone()).collect())
        .await?;
    let mut pending = Vec::with_capacity(unrecorded.len());
    for ((index, checked), owner) in unrecorded.into_iter().zip(owners) {
        if owner == Ownership::Mine {
            pending.push((index, checked));
            continue;
        }
        let (id, key) = (checked.client_upload_id.clone(), checked.report.key.clone());
        denials.push((key.clone(), id.clone(), owner.denial()));
        settle(index, id.clone(), &key, Err(report_not_found(&id, &key)))?;
    }

    // Which reports a listing can verify: the key was signed here, for this principal, with
    // this very checksum, and the key template lets keys issued together be listed together.
    let keys = pending.iter().map(|(_, c)| c.report.key.clone()).collect();
    let signed = app.db.presigned_for(principal.name.clone(), keys).await?;
    let signed: HashMap<String, PresignedPut> = signed.into_iter().map(|put| (put.key.clone(), put)).collect();
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, checked) in &pending {
        let key = &checked.report.key;
        if !signed.get(key).is_some_and(|put| signed_checksum_matches(put, checked)) {
            continue;
        }
        if let Some(prefix) = app.keys.listing_prefix(key) {
            groups.entry(prefix.to_owned()).or_default().push(key.clone());
        }
    }
    // One listing per group of keys issued together (usually one per batch), the largest
    // groups first; keys of the groups beyond the limit get a HEAD each.
    let mut groups: Vec<(String, Vec<String>)> = groups.into_iter().collect();
    groups.sort_by_key(|(_, keys)| std::cmp::Reverse(keys.len()));
    let mut listings: HashMap<String, Listing> = HashMap::new();
    for (prefix, keys) in groups.into_iter().take(MAX_LISTINGS_PER_BATCH) {
        // A HEAD per report is always correct, only slower: e.g. without s3:ListBucket.
        let listing = app.signer.list_sizes(&keys).await.unwrap_or_else(|error| {
            tracing::warn!(%error, "could not list the batch's keys; checking each report with a HEAD");
            Listing::default()
        });
        listings.insert(prefix, listing);
    }
    let by_listing: usize = listings.values().map(|listing| listing.sizes.len()).sum();
    tracing::info!(reports = count, by_listing, listings = listings.len(), "verifying a batch of reports");
    let listed = |key: &str| {
        let listing = listings.get(app.keys.listing_prefix(key)?)?;
        listing.lookup(key)
    };

    // Settled by the listing (recorded together, in one transaction), or left for a HEAD.
    let mut to_record = Vec::new();
    let mut to_head = Vec::new();
    for (index, checked) in pending {
        let put = signed.get(&checked.report.key);
        let key = checked.report.key.clone();
        let verdict = match (put, put.and_then(|_| listed(&key))) {
            // S3 enforced the signed checksum, so the object cannot have the reported one.
            (Some(put), _) if put.checksum_sha256.is_some() && !signed_checksum_matches(put, &checked) => {
                Err(checksum_mismatch(&key, "SHA-256"))
            }
            (Some(_), Some(None)) => Err(object_missing(&key)),
            (Some(put), Some(Some(size))) => check_size(&checked, size).map(|()| put.object_url.clone()),
            _ => {
                to_head.push((index, checked));
                continue;
            }
        };
        match verdict {
            Ok(object_url) => to_record.push((
                index,
                checked.client_upload_id.clone(),
                key,
                new_record(checked, object_url, principal.name.clone()),
            )),
            Err(error) => settle(index, checked.client_upload_id, &key, Err(error))?,
        }
    }
    if !to_record.is_empty() {
        let (slots, news): (Vec<_>, Vec<_>) =
            to_record.into_iter().map(|(i, id, key, new)| ((i, id, key), new)).unzip();
        let outcomes = app.db.record_native_all(news).await?;
        for ((index, id, key), outcome) in slots.into_iter().zip(outcomes) {
            if let RecordOutcome::Recorded(record) = &outcome {
                tracing::debug!(key = %record.key, size = record.size, "recorded an upload");
            }
            let outcome = recorded(&id, &key, outcome);
            settle(index, id, &key, outcome)?;
        }
    }

    let permits = Arc::new(Semaphore::new(REPORT_CHECK_CONCURRENCY));
    let mut tasks = JoinSet::new();
    for (index, checked) in to_head {
        let raw_id = checked.client_upload_id.clone();
        let key = checked.report.key.clone();
        let app = Arc::clone(&app);
        let permits = Arc::clone(&permits);
        let uploaded_by = principal.name.clone();
        tasks.spawn(async move {
            // The semaphore is never closed, so acquiring only fails if that changes.
            let _permit = permits.acquire_owned().await.ok();
            (index, raw_id, key, verify_by_head(&app, uploaded_by, checked).await)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (index, raw_id, key, outcome) = joined.map_err(|error| {
            tracing::error!(%error, "a report check task failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "A report could not be checked; send the batch again.",
            )
        })?;
        settle(index, raw_id, &key, outcome)?;
    }
    for (key, id, why) in denials {
        tracing::info!(principal = %principal.name, %key, %why, "denied");
        audit.push(
            AuditEntry::new(&principal.name, AuditAction::Denied, format!("{BATCH_REPORT_ROUTE}: {why}"))
                .key(key)
                .client_upload_id(id),
        );
    }
    app.db.audit(audit).await?;
    Ok(Json(json!({ "results": results.into_iter().flatten().collect::<Vec<_>>() })))
}

/// Whether the report states the whole-file SHA-256 that was signed into the key's URL.
fn signed_checksum_matches(put: &PresignedPut, checked: &CheckedReport) -> bool {
    matches!(&checked.checksum, ReportedChecksum::Sha256(sha256) if put.checksum_sha256.as_ref() == Some(sha256))
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
    /// Everyone's records instead of one's own: admins only.
    #[serde(default)]
    all: bool,
}

/// `GET /api/v1/records?limit=N[&all=true]`: the principal's records, newest first; an admin
/// may ask for everyone's.
pub async fn list_records(
    State(app): State<AppState>,
    principal: Principal,
    query: Result<Query<RecordsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|_| {
        ApiError::bad_request(
            "invalid_request",
            format!("`limit` must be a whole number from 1 to {MAX_RECORDS_PAGE}, and `all` true or false."),
        )
    })?;
    let limit = query.limit.unwrap_or(MAX_RECORDS_PAGE);
    if !(1..=MAX_RECORDS_PAGE).contains(&limit) {
        return Err(ApiError::unprocessable(
            "invalid_limit",
            format!("`limit` must be from 1 to {MAX_RECORDS_PAGE}, got {limit}."),
        ));
    }
    let records = if query.all {
        if !principal.admin {
            audit_denial(&app, &principal, "GET /api/v1/records?all=true", None, None, "forbidden: not an admin")
                .await?;
            return Err(forbidden("Only admins may list everyone's records (all=true); leave it out to list yours."));
        }
        app.db.latest_of_everyone(limit).await?
    } else {
        app.db.latest_of(principal.name.clone(), limit).await?
    };
    Ok(Json(json!({ "records": records })))
}

/// `GET /api/v1/records/{client_upload_id}`: one of the principal's records.
pub async fn get_record(
    State(app): State<AppState>,
    principal: Principal,
    Path(client_upload_id): Path<String>,
) -> Result<Json<Record>, ApiError> {
    let missing = || ApiError::not_found(format!("No upload {client_upload_id} of yours is recorded."));
    let id = canonical_upload_id(&client_upload_id).ok_or_else(missing)?;
    match app.db.record_of(principal.name.clone(), id.clone()).await? {
        Scoped::Mine(record) => Ok(Json(record)),
        Scoped::Others => {
            let why = "not_found: recorded for another principal";
            audit_denial(&app, &principal, "GET /api/v1/records/{client_upload_id}", None, Some(&id), why).await?;
            Err(missing())
        }
        Scoped::Missing => Err(missing()),
    }
}
