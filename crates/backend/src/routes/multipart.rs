//! The native multipart routes: create an upload, sign its parts in batches, list what S3
//! holds (to resume), complete and abort. The issued key and S3's upload id are the handle;
//! the backend remembers which principal created each upload and answers every later call
//! for it only to that principal. See docs/backend-api.md for the shapes.

use std::collections::{BTreeMap, HashSet};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;

use super::body::ApiJson;
use super::native::{check_batch_size, check_issued_key};
use super::{deny_unless_mine, AppState};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::limits::{
    MAX_MULTIPART_OBJECT_BYTES, MAX_PARTS_PER_SIGN, MAX_PART_BYTES, MAX_PART_NUMBER, MAX_UPLOAD_TOKEN_BYTES,
};
use crate::signer::{CompletingPart, MultipartError, PartChecksum, PartToSign, UploadedPart};
use crate::store::{AuditAction, AuditEntry, MultipartUpload};
use crate::validate::{canonical_upload_id, content_type_or_default, is_crc32c_base64, is_sha256_base64};

/// The values of `checksum_algorithm` the backend knows, spelled as S3 spells them.
const SHA256: &str = "SHA256";
const CRC32C: &str = "CRC32C";

#[derive(Debug, Deserialize)]
pub struct CreateRequest {
    client_upload_id: String,
    file_name: String,
    size: u64,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    checksum_algorithm: Option<String>,
    /// A folder under the backend's prefix (e.g. a watched folder's `scans/2026`).
    #[serde(default)]
    key_prefix: Option<String>,
}

/// What a valid create request asks for.
#[derive(Debug, PartialEq, Eq)]
struct CheckedCreate {
    client_upload_id: String,
    content_type: String,
    part_checksum: Option<PartChecksum>,
}

#[derive(Debug, Serialize)]
pub struct CreatedUpload {
    client_upload_id: String,
    key: String,
    upload_id: String,
    object_url: String,
}

/// `POST /api/v1/multipart`: a fresh key and an S3 multipart upload for it, 201.
pub async fn create_upload(
    State(app): State<AppState>,
    principal: Principal,
    ApiJson(request): ApiJson<CreateRequest>,
) -> Result<(StatusCode, Json<CreatedUpload>), ApiError> {
    let checked = check_create(&request)?;
    let folder = crate::keys::sanitise_folder(request.key_prefix.as_deref().unwrap_or_default())
        .map_err(|message| ApiError::unprocessable("invalid_key_prefix", message))?;
    let key = app.keys.new_key_in(&folder, &request.file_name, &principal.name);
    // Before S3 is asked, so a failure here cannot leave an upload nobody knows about.
    let object_url = app.signer.object_url(&key).await?;
    let upload_id = app.signer.create_multipart(&key, &checked.content_type, checked.part_checksum).await?;
    // Bound to its creator before anyone learns the upload id. Should this write fail, the S3
    // upload is orphaned, not reachable: nobody can sign parts for it.
    let upload = MultipartUpload {
        upload_id: upload_id.clone(),
        key: key.clone(),
        uploaded_by: principal.name.clone(),
        client_upload_id: Some(checked.client_upload_id.clone()),
    };
    let audit = AuditEntry::new(&principal.name, AuditAction::Create, "created")
        .key(&key)
        .client_upload_id(&checked.client_upload_id);
    app.db.remember_multipart(upload, audit).await?;
    tracing::info!(
        %key,
        %upload_id,
        size = request.size,
        checksums = ?checked.part_checksum,
        "created a multipart upload"
    );
    Ok((
        StatusCode::CREATED,
        Json(CreatedUpload { client_upload_id: checked.client_upload_id, key, upload_id, object_url }),
    ))
}

fn check_create(request: &CreateRequest) -> Result<CheckedCreate, ApiError> {
    let client_upload_id = canonical_upload_id(&request.client_upload_id).ok_or_else(|| {
        ApiError::unprocessable("invalid_client_upload_id", "client_upload_id must be a UUID chosen by the client.")
    })?;
    if request.size == 0 {
        return Err(ApiError::unprocessable(
            "empty_file",
            "A multipart upload needs at least 1 byte; upload an empty file with POST /api/v1/uploads/presign.",
        ));
    }
    if request.size > MAX_MULTIPART_OBJECT_BYTES {
        return Err(ApiError::unprocessable(
            "file_too_large",
            format!(
                "The file is {} bytes; S3 stores at most 5 TiB ({MAX_MULTIPART_OBJECT_BYTES} bytes) in one object.",
                request.size
            ),
        ));
    }
    let content_type = content_type_or_default(request.content_type.as_deref()).ok_or_else(|| {
        ApiError::unprocessable(
            "invalid_content_type",
            "content_type must be a printable ASCII media type like `image/png`.",
        )
    })?;
    let part_checksum = match request.checksum_algorithm.as_deref() {
        None => None,
        Some(algorithm) if algorithm.eq_ignore_ascii_case(SHA256) => Some(PartChecksum::Sha256),
        Some(algorithm) if algorithm.eq_ignore_ascii_case(CRC32C) => Some(PartChecksum::Crc32c),
        Some(algorithm) => {
            return Err(ApiError::unprocessable(
                "invalid_checksum_algorithm",
                format!("checksum_algorithm {algorithm:?} is not supported; send \"{CRC32C}\", \"{SHA256}\" or null."),
            ))
        }
    };
    Ok(CheckedCreate { client_upload_id, content_type, part_checksum })
}

#[derive(Debug, Deserialize)]
pub struct SignRequest {
    key: String,
    upload_id: String,
    parts: Vec<PartRequest>,
}

#[derive(Debug, Deserialize)]
struct PartRequest {
    // Wider than S3's i32 so that 0, negative and too-large numbers get a 422 naming the part
    // instead of a type error.
    part_number: i64,
    size: u64,
    #[serde(default)]
    checksum_sha256: Option<String>,
    #[serde(default)]
    checksum_crc32c: Option<String>,
}

#[derive(Debug, Serialize)]
struct SignedPart {
    part_number: i32,
    url: String,
    headers: BTreeMap<String, String>,
    expires_at: String,
}

#[derive(Debug, Serialize)]
pub struct SignedParts {
    parts: Vec<SignedPart>,
}

/// `POST /api/v1/multipart/sign`: one presigned part URL per requested part, in request order.
/// Nothing is asked of S3; it checks the upload id when the part is PUT.
pub async fn sign_parts(
    State(app): State<AppState>,
    principal: Principal,
    ApiJson(request): ApiJson<SignRequest>,
) -> Result<Json<SignedParts>, ApiError> {
    check_issued_key(&app, &request.key)?;
    check_upload_id(&request.upload_id)?;
    let parts = check_parts_to_sign(&request.parts)?;
    require_own_upload(&app, &principal, "POST /api/v1/multipart/sign", &request.key, &request.upload_id).await?;
    let signed = app.signer.presign_parts(&request.key, &request.upload_id, &parts).await?;
    tracing::debug!(key = %request.key, count = parts.len(), "presigned multipart parts");
    let numbers: Vec<String> = parts.iter().map(|part| part.part_number.to_string()).collect();
    let audit = AuditEntry::new(&principal.name, AuditAction::Sign, format!("signed parts {}", numbers.join(",")))
        .key(&request.key);
    app.db.audit(vec![audit]).await?;
    let parts = parts
        .iter()
        .zip(signed)
        .map(|(part, put)| SignedPart {
            part_number: part.part_number,
            expires_at: put.expires_at.format(&Rfc3339).unwrap_or_default(),
            url: put.url,
            headers: put.headers,
        })
        .collect();
    Ok(Json(SignedParts { parts }))
}

fn check_parts_to_sign(parts: &[PartRequest]) -> Result<Vec<PartToSign>, ApiError> {
    check_batch_size("parts", parts.len(), MAX_PARTS_PER_SIGN)?;
    let mut seen = HashSet::new();
    let mut checked = Vec::with_capacity(parts.len());
    for (index, part) in parts.iter().enumerate() {
        let part_number = check_part_number(index, part.part_number, &mut seen)?;
        if part.size == 0 || part.size > MAX_PART_BYTES {
            return Err(ApiError::unprocessable(
                "invalid_part_size",
                format!("parts[{index}].size is {}; a part holds 1 byte to 5 GiB ({MAX_PART_BYTES} bytes).", part.size),
            ));
        }
        let (checksum_sha256, checksum_crc32c) =
            check_part_checksums(index, part.checksum_sha256.as_deref(), part.checksum_crc32c.as_deref())?;
        checked.push(PartToSign { part_number, size: part.size, checksum_sha256, checksum_crc32c });
    }
    Ok(checked)
}

#[derive(Debug, Deserialize)]
pub struct PartsQuery {
    key: String,
    upload_id: String,
}

#[derive(Debug, Serialize)]
pub struct ListedParts {
    parts: Vec<UploadedPart>,
}

/// `GET /api/v1/multipart/parts?key=…&upload_id=…`: every part S3 holds, for resuming.
pub async fn list_parts(
    State(app): State<AppState>,
    principal: Principal,
    query: Result<Query<PartsQuery>, QueryRejection>,
) -> Result<Json<ListedParts>, ApiError> {
    let Query(query) = query.map_err(|_| {
        ApiError::bad_request("invalid_request", "Send both `key` and `upload_id` as query parameters.")
    })?;
    check_issued_key(&app, &query.key)?;
    check_upload_id(&query.upload_id)?;
    require_own_upload(&app, &principal, "GET /api/v1/multipart/parts", &query.key, &query.upload_id).await?;
    let parts = app.signer.list_parts(&query.key, &query.upload_id).await?;
    Ok(Json(ListedParts { parts }))
}

#[derive(Debug, Deserialize)]
pub struct CompleteRequest {
    key: String,
    upload_id: String,
    parts: Vec<CompletePartRequest>,
}

#[derive(Debug, Deserialize)]
struct CompletePartRequest {
    part_number: i64,
    etag: String,
    #[serde(default)]
    checksum_sha256: Option<String>,
    #[serde(default)]
    checksum_crc32c: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CompletedUpload {
    key: String,
    object_url: String,
    size: u64,
}

/// `POST /api/v1/multipart/complete`: S3 assembles the object; the answer carries its size.
pub async fn complete_upload(
    State(app): State<AppState>,
    principal: Principal,
    ApiJson(request): ApiJson<CompleteRequest>,
) -> Result<Json<CompletedUpload>, ApiError> {
    check_issued_key(&app, &request.key)?;
    check_upload_id(&request.upload_id)?;
    let parts = check_parts_to_complete(&request.parts)?;
    require_own_upload(&app, &principal, "POST /api/v1/multipart/complete", &request.key, &request.upload_id).await?;
    let key = request.key;
    let outcome = complete_at_s3(&app, &key, &request.upload_id, &parts).await;
    let text = match &outcome {
        Ok(size) => format!("completed: {size} bytes in {} parts", parts.len()),
        Err(error) => format!("rejected: {}", error.code),
    };
    app.db.audit(vec![AuditEntry::new(&principal.name, AuditAction::Complete, text).key(&key)]).await?;
    let size = outcome?;
    let object_url = app.signer.object_url(&key).await?;
    tracing::info!(%key, size, parts = parts.len(), "completed a multipart upload");
    Ok(Json(CompletedUpload { key, object_url, size }))
}

/// Asks S3 to assemble the object; its size once it is there.
async fn complete_at_s3(app: &AppState, key: &str, upload_id: &str, parts: &[CompletingPart]) -> Result<u64, ApiError> {
    let head = match app.signer.complete_multipart(key, upload_id, parts).await {
        Ok(()) => app.signer.head(key).await?,
        Err(MultipartError::Refused { code, message, .. }) => {
            tracing::info!(%key, %code, %message, "S3 refused to complete a multipart upload");
            return Err(ApiError::unprocessable(
                "completion_rejected",
                format!(
                    "S3 refused to complete the upload: {code}: {message} Check that each part is listed once with \
                     the ETag its PUT returned (and its checksum_crc32c or checksum_sha256 when the upload was \
                     created with CRC32C or SHA256), \
                     and that every part but the last holds at least 5 MiB; GET /api/v1/multipart/parts lists what \
                     S3 holds."
                ),
            ));
        }
        Err(error @ MultipartError::NoSuchUpload { .. }) => {
            // A repeat whose first answer was lost: S3 may have forgotten the upload already,
            // but the object is there, and only this upload can have written its key (each
            // key is issued once).
            let head = app.signer.head(key).await?;
            if head.is_none() {
                return Err(error.into());
            }
            tracing::info!(%key, "the multipart upload was completed before; answering with the object");
            head
        }
        Err(error) => return Err(error.into()),
    };
    let head = head.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "storage_unavailable",
            format!("S3 completed the upload but has no object at {key} yet; complete it again later."),
        )
    })?;
    Ok(head.size)
}

/// Checks the parts and sorts them by part number, the order S3 insists on.
fn check_parts_to_complete(parts: &[CompletePartRequest]) -> Result<Vec<CompletingPart>, ApiError> {
    check_batch_size("parts", parts.len(), MAX_PART_NUMBER as usize)?;
    let mut seen = HashSet::new();
    let mut checked = Vec::with_capacity(parts.len());
    for (index, part) in parts.iter().enumerate() {
        let part_number = check_part_number(index, part.part_number, &mut seen)?;
        if !is_upload_token(&part.etag) {
            return Err(ApiError::unprocessable(
                "invalid_etag",
                format!("parts[{index}].etag must be the ETag header that S3 answered the part's PUT with."),
            ));
        }
        let (checksum_sha256, checksum_crc32c) =
            check_part_checksums(index, part.checksum_sha256.as_deref(), part.checksum_crc32c.as_deref())?;
        checked.push(CompletingPart { part_number, etag: part.etag.clone(), checksum_sha256, checksum_crc32c });
    }
    checked.sort_by_key(|part| part.part_number);
    Ok(checked)
}

#[derive(Debug, Deserialize)]
pub struct AbortRequest {
    key: String,
    upload_id: String,
}

/// `POST /api/v1/multipart/abort`: 204, also when S3 no longer knows the upload, so that a
/// client's cancel never fails on a repeat.
pub async fn abort_upload(
    State(app): State<AppState>,
    principal: Principal,
    ApiJson(request): ApiJson<AbortRequest>,
) -> Result<StatusCode, ApiError> {
    check_issued_key(&app, &request.key)?;
    check_upload_id(&request.upload_id)?;
    require_own_upload(&app, &principal, "POST /api/v1/multipart/abort", &request.key, &request.upload_id).await?;
    let outcome = match app.signer.abort_multipart(&request.key, &request.upload_id).await {
        Ok(()) => {
            tracing::info!(key = %request.key, upload_id = %request.upload_id, "aborted a multipart upload");
            Ok("aborted")
        }
        Err(MultipartError::NoSuchUpload { .. }) => Ok("aborted before, or completed"),
        Err(error) => Err(ApiError::from(error)),
    };
    let text = match &outcome {
        Ok(text) => (*text).to_owned(),
        Err(error) => format!("rejected: {}", error.code),
    };
    app.db.audit(vec![AuditEntry::new(&principal.name, AuditAction::Abort, text).key(&request.key)]).await?;
    outcome.map(|_| StatusCode::NO_CONTENT)
}

/// Lets the call through only for an upload this principal created; for any other answers
/// exactly what S3 answers for an upload it does not know (404 `upload_not_found`), so
/// nobody learns of another's uploads, and audits the denial.
async fn require_own_upload(
    app: &AppState,
    principal: &Principal,
    route: &str,
    key: &str,
    upload_id: &str,
) -> Result<(), ApiError> {
    let ownership = app.db.multipart_owner(principal.name.clone(), upload_id.to_owned(), key.to_owned()).await?;
    if deny_unless_mine(app, principal, ownership, route, key, None).await? {
        return Ok(());
    }
    Err(MultipartError::NoSuchUpload { key: key.to_owned(), upload_id: upload_id.to_owned() }.into())
}

/// `invalid_upload_id` unless the id could be one S3 issued: printable ASCII without spaces.
fn check_upload_id(upload_id: &str) -> Result<(), ApiError> {
    if is_upload_token(upload_id) {
        Ok(())
    } else {
        Err(ApiError::unprocessable(
            "invalid_upload_id",
            "upload_id must be the upload_id that POST /api/v1/multipart answered with.",
        ))
    }
}

/// Upload ids and ETags: 1 to 1,024 bytes of printable ASCII without spaces.
fn is_upload_token(value: &str) -> bool {
    !value.is_empty() && value.len() <= MAX_UPLOAD_TOKEN_BYTES && value.bytes().all(|b| b.is_ascii_graphic())
}

/// The part number as S3 takes it, refusing numbers outside 1..=10,000 and repeats.
fn check_part_number(index: usize, part_number: i64, seen: &mut HashSet<i64>) -> Result<i32, ApiError> {
    let number = i32::try_from(part_number).ok().filter(|n| (1..=MAX_PART_NUMBER).contains(&i64::from(*n)));
    let Some(number) = number else {
        return Err(ApiError::unprocessable(
            "invalid_part_number",
            format!("parts[{index}].part_number is {part_number}; part numbers run from 1 to {MAX_PART_NUMBER}."),
        ));
    };
    if !seen.insert(part_number) {
        return Err(ApiError::unprocessable(
            "duplicate_part_number",
            format!("parts[{index}].part_number {part_number} appears twice in this request; list each part once."),
        ));
    }
    Ok(number)
}

/// A part's checksums, at most one of them: the one its upload was created with. Which one that
/// is stays S3's to check (it refuses a part or a completion without the right one).
type PartChecksums = (Option<String>, Option<String>);

fn check_part_checksums(index: usize, sha256: Option<&str>, crc32c: Option<&str>) -> Result<PartChecksums, ApiError> {
    if sha256.is_some_and(|c| !is_sha256_base64(c)) {
        return Err(ApiError::unprocessable(
            "invalid_checksum",
            format!(
                "parts[{index}].checksum_sha256 must be the standard base64 (with padding) of the part's 32-byte SHA-256, or null."
            ),
        ));
    }
    if crc32c.is_some_and(|c| !is_crc32c_base64(c)) {
        return Err(ApiError::unprocessable(
            "invalid_checksum",
            format!(
                "parts[{index}].checksum_crc32c must be the standard base64 (with padding) of the part's 4-byte big-endian CRC32C, or null."
            ),
        ));
    }
    if sha256.is_some() && crc32c.is_some() {
        return Err(ApiError::unprocessable(
            "invalid_checksum",
            format!("parts[{index}] has both checksum_sha256 and checksum_crc32c; send the one the upload was created with."),
        ));
    }
    Ok((sha256.map(str::to_owned), crc32c.map(str::to_owned)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECKSUM: &str = "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=";
    const ID: &str = "0B6B6B0E-5F2C-4C1E-9A55-2A8F3F5B9C11";

    fn create(size: u64, checksum_algorithm: Option<&str>) -> CreateRequest {
        CreateRequest {
            client_upload_id: ID.to_owned(),
            file_name: "a.bin".to_owned(),
            size,
            content_type: None,
            checksum_algorithm: checksum_algorithm.map(str::to_owned),
            key_prefix: None,
        }
    }

    fn sign_part(part_number: i64, size: u64, checksum: Option<&str>) -> PartRequest {
        PartRequest { part_number, size, checksum_sha256: checksum.map(str::to_owned), checksum_crc32c: None }
    }

    fn complete_part(part_number: i64, etag: &str) -> CompletePartRequest {
        CompletePartRequest { part_number, etag: etag.to_owned(), checksum_sha256: None, checksum_crc32c: None }
    }

    fn code<T: std::fmt::Debug>(result: Result<T, ApiError>) -> &'static str {
        result.expect_err("the request is refused").code
    }

    #[test]
    fn a_create_request_is_read_into_a_canonical_id_a_content_type_and_the_checksum_choice() {
        let checked = check_create(&create(1, Some("SHA256"))).expect("valid");
        assert_eq!(
            checked,
            CheckedCreate {
                client_upload_id: ID.to_lowercase(),
                content_type: "application/octet-stream".to_owned(),
                part_checksum: Some(PartChecksum::Sha256),
            },
            "the id is lower-cased and the content type defaulted"
        );
        assert_eq!(check_create(&create(1, None)).unwrap().part_checksum, None, "null means no checksum algorithm");
        assert_eq!(
            check_create(&create(1, Some("sha256"))).unwrap().part_checksum,
            Some(PartChecksum::Sha256),
            "the spelling's case is free"
        );
        assert_eq!(check_create(&create(1, Some("CRC32C"))).unwrap().part_checksum, Some(PartChecksum::Crc32c));
    }

    #[test]
    fn a_multipart_upload_holds_1_byte_to_5_tib() {
        assert_eq!(code(check_create(&create(0, None))), "empty_file");
        assert!(check_create(&create(MAX_MULTIPART_OBJECT_BYTES, None)).is_ok(), "exactly 5 TiB is allowed");
        assert_eq!(code(check_create(&create(MAX_MULTIPART_OBJECT_BYTES + 1, None))), "file_too_large");
    }

    #[test]
    fn only_sha256_and_crc32c_are_checksum_algorithms() {
        for algorithm in ["CRC32", "", "SHA-256", "MD5", "CRC-32C"] {
            assert_eq!(code(check_create(&create(1, Some(algorithm)))), "invalid_checksum_algorithm", "{algorithm:?}");
        }
    }

    #[test]
    fn a_create_request_needs_a_uuid_and_a_sendable_content_type() {
        let mut request = create(1, None);
        request.client_upload_id = "upload-1".to_owned();
        assert_eq!(code(check_create(&request)), "invalid_client_upload_id");
        let mut request = create(1, None);
        request.content_type = Some("text/plain\r\nx-evil: 1".to_owned());
        assert_eq!(code(check_create(&request)), "invalid_content_type");
    }

    #[test]
    fn parts_to_sign_keep_their_order_size_and_checksum() {
        let checked = check_parts_to_sign(&[sign_part(3, 1, None), sign_part(1, 5, Some(CHECKSUM))]).unwrap();
        assert_eq!(
            checked,
            vec![
                PartToSign { part_number: 3, size: 1, checksum_sha256: None, checksum_crc32c: None },
                PartToSign {
                    part_number: 1,
                    size: 5,
                    checksum_sha256: Some(CHECKSUM.to_owned()),
                    checksum_crc32c: None
                },
            ],
            "signed in request order, as asked"
        );
    }

    #[test]
    fn one_to_a_thousand_parts_are_signed_per_request() {
        assert_eq!(code(check_parts_to_sign(&[])), "empty_batch");
        let thousand: Vec<_> = (1..=1000).map(|n| sign_part(n, 1, None)).collect();
        assert_eq!(check_parts_to_sign(&thousand).map(|p| p.len()).ok(), Some(1000));
        let more: Vec<_> = (1..=1001).map(|n| sign_part(n, 1, None)).collect();
        assert_eq!(code(check_parts_to_sign(&more)), "batch_too_large");
    }

    #[test]
    fn part_numbers_run_from_1_to_10000_and_appear_once() {
        for number in [0, -1, 10_001, i64::from(i32::MAX) + 1, i64::MIN] {
            assert_eq!(code(check_parts_to_sign(&[sign_part(number, 1, None)])), "invalid_part_number", "{number}");
        }
        assert!(check_parts_to_sign(&[sign_part(10_000, 1, None)]).is_ok(), "10,000 is the last part number");
        let twice = [sign_part(2, 1, None), sign_part(2, 1, None)];
        let error = check_parts_to_sign(&twice).unwrap_err();
        assert_eq!(error.code, "duplicate_part_number");
        assert!(error.message.contains("parts[1]"), "the message names the repeat: {}", error.message);
    }

    #[test]
    fn a_part_holds_1_byte_to_5_gib() {
        assert_eq!(code(check_parts_to_sign(&[sign_part(1, 0, None)])), "invalid_part_size");
        assert!(check_parts_to_sign(&[sign_part(1, MAX_PART_BYTES, None)]).is_ok());
        assert_eq!(code(check_parts_to_sign(&[sign_part(1, MAX_PART_BYTES + 1, None)])), "invalid_part_size");
    }

    #[test]
    fn a_part_checksum_is_the_base64_of_a_sha256_or_null() {
        assert_eq!(code(check_parts_to_sign(&[sign_part(1, 1, Some("deadbeef"))])), "invalid_checksum");
        assert_eq!(code(check_parts_to_sign(&[sign_part(1, 1, Some(""))])), "invalid_checksum");
    }

    #[test]
    fn parts_to_complete_are_sorted_by_part_number() {
        let parts = [complete_part(3, "\"c\""), complete_part(1, "\"a\""), complete_part(2, "\"b\"")];
        let numbers: Vec<i32> = check_parts_to_complete(&parts).unwrap().iter().map(|p| p.part_number).collect();
        assert_eq!(numbers, vec![1, 2, 3], "S3 wants ascending order, so the backend sorts");
    }

    #[test]
    fn parts_to_complete_need_an_etag_and_a_unique_number() {
        assert_eq!(code(check_parts_to_complete(&[complete_part(1, "")])), "invalid_etag");
        assert_eq!(code(check_parts_to_complete(&[complete_part(1, "a b")])), "invalid_etag");
        assert_eq!(
            code(check_parts_to_complete(&[complete_part(1, "a"), complete_part(1, "b")])),
            "duplicate_part_number"
        );
        assert_eq!(code(check_parts_to_complete(&[])), "empty_batch");
        let all: Vec<_> = (1..=10_000).map(|n| complete_part(n, "e")).collect();
        assert!(check_parts_to_complete(&all).is_ok(), "an upload completes with up to 10,000 parts");
    }

    #[test]
    fn upload_ids_are_printable_ascii_without_spaces() {
        assert!(check_upload_id("VXBsb2FkIElE.ZnJvbSBBV1M-_x").is_ok());
        for id in ["", "a b", "id\n", "ïd", &"x".repeat(MAX_UPLOAD_TOKEN_BYTES + 1)] {
            assert_eq!(code(check_upload_id(id)), "invalid_upload_id", "{id:?}");
        }
    }
}
