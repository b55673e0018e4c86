//! Dropship's own API, served by `dropship-backend` (docs/backend-api.md): batch presigning with
//! server-chosen keys and a signed checksum, and an idempotent completion report.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::http::BackendHttp;
use super::{
    BackendError, CompletedPart, CompletionReport, FileToSign, ListedPart, MultipartUpload, PartToSign,
    PresignedUpload, Signed, SignedPart, SigningBackend,
};
use crate::transfer::MAX_OBJECT_SIZE;

/// The backend accepts up to 1,000 files per request; smaller batches keep the first PUT
/// starting soon and a failed request cheap to retry.
const PRESIGN_BATCH: usize = 100;

pub struct NativeBackend {
    http: BackendHttp,
}

impl NativeBackend {
    pub fn new(http: BackendHttp) -> Self {
        NativeBackend { http }
    }
}

#[derive(Serialize)]
struct PresignRequest<'a> {
    files: Vec<PresignFile<'a>>,
}

#[derive(Serialize)]
struct PresignFile<'a> {
    client_upload_id: &'a str,
    file_name: &'a str,
    size: u64,
    content_type: &'a str,
    checksum_sha256: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_prefix: Option<&'a str>,
}

#[derive(Deserialize)]
struct PresignResponse {
    /// Read entry by entry, so one malformed entry fails only its file.
    uploads: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct PresignedEntry {
    client_upload_id: String,
    key: String,
    #[serde(default = "put")]
    method: String,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    object_url: Option<String>,
}

fn report_body(report: &CompletionReport, with_id: bool) -> ReportBody<'_> {
    // A multipart object's checksum is S3's composite CRC32C, which has a field of its own.
    let (checksum_sha256, checksum_crc32c) = match report.checksum_sha256.strip_prefix(crate::checksum::CRC32C_TAG) {
        Some(crc32c) => (None, Some(crc32c)),
        None => (Some(report.checksum_sha256.as_str()), None),
    };
    ReportBody {
        client_upload_id: with_id.then_some(report.upload_id.as_str()),
        key: report.key.as_deref(),
        file_name: &report.file_name,
        size: report.size,
        content_type: &report.content_type,
        checksum_sha256,
        checksum_crc32c,
    }
}

#[derive(Deserialize)]
struct BatchReportResponse {
    results: Vec<BatchReportResult>,
}

#[derive(Deserialize)]
struct BatchReportResult {
    status: String,
    error: Option<crate::ErrorInfo>,
}

#[derive(Deserialize)]
struct CreatedMultipart {
    key: String,
    upload_id: String,
    object_url: String,
}

#[derive(Deserialize)]
struct ListedParts {
    parts: Vec<ListedPartEntry>,
}

#[derive(Deserialize)]
struct ListedPartEntry {
    part_number: u32,
    etag: String,
    size: u64,
}

#[derive(Deserialize)]
struct SignedParts {
    parts: Vec<SignedPartEntry>,
}

#[derive(Deserialize)]
struct SignedPartEntry {
    part_number: u32,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    expires_at: Option<String>,
}

fn put() -> String {
    "PUT".into()
}

#[derive(Serialize)]
struct ReportBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    client_upload_id: Option<&'a str>,
    key: Option<&'a str>,
    file_name: &'a str,
    size: u64,
    content_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    checksum_sha256: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checksum_crc32c: Option<&'a str>,
}

#[async_trait]
impl SigningBackend for NativeBackend {
    fn max_presign_batch(&self) -> usize {
        PRESIGN_BATCH
    }

    fn max_file_size(&self) -> u64 {
        MAX_OBJECT_SIZE
    }

    async fn presign(&self, files: &[FileToSign]) -> Result<Vec<Signed>, BackendError> {
        let request = PresignRequest {
            files: files
                .iter()
                .map(|f| PresignFile {
                    client_upload_id: &f.upload_id,
                    file_name: &f.file_name,
                    size: f.size,
                    content_type: &f.content_type,
                    checksum_sha256: &f.checksum_sha256,
                    key_prefix: f.key_prefix.as_deref(),
                })
                .collect(),
        };
        let response: PresignResponse = self.http.post("api/v1/uploads/presign", &request).await?;
        let bad = |detail: String| BackendError::BadResponse { url: self.http.base_shown(), detail };
        if response.uploads.len() != files.len() {
            return Err(bad(format!("asked to sign {} files, got {} URLs", files.len(), response.uploads.len())));
        }
        let ids = response.uploads.iter().map(|entry| entry.get("client_upload_id").and_then(|id| id.as_str()));
        if files.iter().zip(ids).any(|(file, id)| id.is_some_and(|id| id != file.upload_id)) {
            return Err(bad("the signed URLs came back for other uploads".into()));
        }
        Ok(response
            .uploads
            .into_iter()
            .zip(files)
            .map(|(entry, file)| {
                let entry: PresignedEntry = serde_json::from_value(entry)
                    .map_err(|e| bad(format!("the entry for {} is not as expected: {e}", file.file_name)))?;
                if !entry.method.eq_ignore_ascii_case("PUT") {
                    return Err(bad(format!("unsupported upload method {:?}", entry.method)));
                }
                let url = super::parse_upload_url(&entry.url).map_err(bad)?;
                let object_url =
                    entry.object_url.map_or_else(|| super::redact_url(&url), |u| super::object_url_without_query(&u));
                Ok(PresignedUpload {
                    upload_id: entry.client_upload_id,
                    key: Some(entry.key),
                    url,
                    headers: entry.headers,
                    method: super::UploadMethod::Put,
                    object_url,
                })
            })
            .collect())
    }

    async fn report(&self, report: &CompletionReport) -> Result<(), BackendError> {
        let route = format!("api/v1/uploads/{}/report", report.upload_id);
        let _: serde_json::Value = self.http.post(&route, &report_body(report, false)).await?;
        Ok(())
    }

    async fn report_batch(&self, reports: &[CompletionReport]) -> Result<Vec<Result<(), BackendError>>, BackendError> {
        let body = json!({ "reports": reports.iter().map(|r| report_body(r, true)).collect::<Vec<_>>() });
        let response: BatchReportResponse = self.http.post("api/v1/reports", &body).await?;
        let bad = |detail: String| BackendError::BadResponse { url: self.http.base_shown(), detail };
        if response.results.len() != reports.len() {
            return Err(bad(format!("sent {} reports, got {} results", reports.len(), response.results.len())));
        }
        Ok(response
            .results
            .into_iter()
            .map(|result| match result.status.as_str() {
                "recorded" | "already_recorded" => Ok(()),
                _ => Err(BackendError::Rejected {
                    status: 422,
                    message: result.error.map(|e| e.message).unwrap_or_else(|| format!("status {}", result.status)),
                }),
            })
            .collect())
    }

    fn supports_multipart(&self) -> bool {
        true
    }

    async fn create_multipart(&self, file: &FileToSign) -> Result<MultipartUpload, BackendError> {
        let body = json!({
            "client_upload_id": file.upload_id,
            "file_name": file.file_name,
            "size": file.size,
            "content_type": file.content_type,
            // CRC32C rather than SHA-256 per part: S3 verifies either, and CRC32C costs the
            // client about a tenth of the CPU on large files.
            "checksum_algorithm": "CRC32C",
            "key_prefix": file.key_prefix,
        });
        let created: CreatedMultipart = self.http.post("api/v1/multipart", &body).await?;
        Ok(MultipartUpload {
            key: created.key,
            upload_id: created.upload_id,
            object_url: super::object_url_without_query(&created.object_url),
        })
    }

    async fn sign_parts(
        &self,
        upload: &MultipartUpload,
        parts: &[PartToSign],
    ) -> Result<Vec<SignedPart>, BackendError> {
        let body = json!({
            "key": upload.key,
            "upload_id": upload.upload_id,
            "parts": parts.iter().map(|p| json!({
                "part_number": p.part_number,
                "size": p.size,
                "checksum_sha256": p.checksum_sha256,
                "checksum_crc32c": p.checksum_crc32c,
            })).collect::<Vec<_>>(),
        });
        let response: SignedParts = self.http.post("api/v1/multipart/sign", &body).await?;
        let bad = |detail: String| BackendError::BadResponse { url: self.http.base_shown(), detail };
        if response.parts.len() != parts.len() {
            return Err(bad(format!("asked to sign {} parts, got {}", parts.len(), response.parts.len())));
        }
        parts
            .iter()
            .zip(response.parts)
            .map(|(asked, signed)| {
                if asked.part_number != signed.part_number {
                    return Err(bad("the part URLs came back out of order".into()));
                }
                let expires_at = signed.expires_at.as_deref().and_then(|at| {
                    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()
                });
                Ok(SignedPart {
                    part_number: signed.part_number,
                    url: super::parse_upload_url(&signed.url).map_err(bad)?,
                    headers: signed.headers,
                    expires_at,
                })
            })
            .collect()
    }

    async fn complete_multipart(&self, upload: &MultipartUpload, parts: &[CompletedPart]) -> Result<(), BackendError> {
        let body = json!({
            "key": upload.key,
            "upload_id": upload.upload_id,
            "parts": parts.iter().map(|p| json!({
                "part_number": p.part_number,
                "etag": p.etag,
                "checksum_sha256": p.checksum_sha256,
                "checksum_crc32c": p.checksum_crc32c,
            })).collect::<Vec<_>>(),
        });
        let _: serde_json::Value = self.http.post("api/v1/multipart/complete", &body).await?;
        Ok(())
    }

    async fn abort_multipart(&self, upload: &MultipartUpload) -> Result<(), BackendError> {
        let body = json!({ "key": upload.key, "upload_id": upload.upload_id });
        let _: serde_json::Value = self.http.post("api/v1/multipart/abort", &body).await?;
        Ok(())
    }

    async fn list_parts(&self, upload: &MultipartUpload) -> Result<Vec<ListedPart>, BackendError> {
        let route = format!(
            "api/v1/multipart/parts?key={}&upload_id={}",
            percent_encoding::utf8_percent_encode(&upload.key, percent_encoding::NON_ALPHANUMERIC),
            percent_encoding::utf8_percent_encode(&upload.upload_id, percent_encoding::NON_ALPHANUMERIC),
        );
        let listed: ListedParts = self.http.get(&route).await?;
        Ok(listed
            .parts
            .into_iter()
            .map(|p| ListedPart { part_number: p.part_number, etag: p.etag, size: p.size })
            .collect())
    }

    async fn check(&self) -> Result<(), BackendError> {
        let _: serde_json::Value = self.http.get("api/v1/ping").await?;
        Ok(())
    }
}
