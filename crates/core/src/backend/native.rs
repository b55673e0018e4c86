//! Dropship's own API, served by `dropship-backend` (docs/backend-api.md): batch presigning with
//! server-chosen keys and a signed checksum, and an idempotent completion report.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::http::BackendHttp;
use super::{BackendError, CompletionReport, FileToSign, PresignedUpload, SigningBackend, SINGLE_PUT_LIMIT};

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
}

#[derive(Deserialize)]
struct PresignResponse {
    uploads: Vec<PresignedEntry>,
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

fn put() -> String {
    "PUT".into()
}

#[derive(Serialize)]
struct ReportBody<'a> {
    key: Option<&'a str>,
    file_name: &'a str,
    size: u64,
    content_type: &'a str,
    checksum_sha256: &'a str,
}

#[async_trait]
impl SigningBackend for NativeBackend {
    fn max_presign_batch(&self) -> usize {
        PRESIGN_BATCH
    }

    fn max_file_size(&self) -> u64 {
        SINGLE_PUT_LIMIT
    }

    async fn presign(&self, files: &[FileToSign]) -> Result<Vec<PresignedUpload>, BackendError> {
        let request = PresignRequest {
            files: files
                .iter()
                .map(|f| PresignFile {
                    client_upload_id: &f.upload_id,
                    file_name: &f.file_name,
                    size: f.size,
                    content_type: &f.content_type,
                    checksum_sha256: &f.checksum_sha256,
                })
                .collect(),
        };
        let response: PresignResponse = self.http.post("api/v1/uploads/presign", &request).await?;
        let bad = |detail: String| BackendError::BadResponse { url: self.http.base_shown(), detail };
        if response.uploads.len() != files.len() {
            return Err(bad(format!("asked to sign {} files, got {} URLs", files.len(), response.uploads.len())));
        }
        files
            .iter()
            .zip(response.uploads)
            .map(|(file, entry)| {
                if entry.client_upload_id != file.upload_id {
                    return Err(bad("the signed URLs came back for other uploads".into()));
                }
                if !entry.method.eq_ignore_ascii_case("PUT") {
                    return Err(bad(format!("unsupported upload method {:?}", entry.method)));
                }
                let url = super::rails::parse_upload_url(&entry.url).map_err(bad)?;
                let object_url = entry.object_url.unwrap_or_else(|| super::redact_url(&url));
                Ok(PresignedUpload { upload_id: entry.client_upload_id, key: Some(entry.key), url, headers: entry.headers, object_url })
            })
            .collect()
    }

    async fn report(&self, report: &CompletionReport) -> Result<(), BackendError> {
        let body = ReportBody {
            key: report.key.as_deref(),
            file_name: &report.file_name,
            size: report.size,
            content_type: &report.content_type,
            checksum_sha256: &report.checksum_sha256,
        };
        let route = format!("api/v1/uploads/{}/report", report.upload_id);
        let _: serde_json::Value = self.http.post(&route, &body).await?;
        Ok(())
    }

    async fn check(&self) -> Result<(), BackendError> {
        let _: serde_json::Value = self.http.get("api/v1/ping").await?;
        Ok(())
    }
}
