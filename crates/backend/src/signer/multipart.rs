//! Multipart uploads in S3: create, presigned part URLs, ListParts, complete and abort.
//! The backend keeps no state of its own about them; S3's upload id is the only handle, so a
//! client can resume after a restart of either side.

use std::time::SystemTime;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use serde::Serialize;
use time::OffsetDateTime;

use super::{headers_to_send, whole_seconds, PresignedPut, Signer, SignerError};

/// The checksum S3 keeps (and verifies) for every part of an upload, chosen at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartChecksum {
    Sha256,
    /// About a tenth of SHA-256's CPU on the client for the same protection against corrupted
    /// bytes in transit (S3 verifies it the same way).
    Crc32c,
}

/// A part the client is about to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartToSign {
    /// 1 to 10,000 (checked by the route).
    pub part_number: i32,
    /// Bytes; signed as `content-length`, so S3 refuses a body of any other length.
    pub size: u64,
    /// Base64 SHA-256 of the part; signed, so S3 refuses a body that does not match it.
    pub checksum_sha256: Option<String>,
    /// Base64 CRC32C of the part (big-endian bytes); signed the same way.
    pub checksum_crc32c: Option<String>,
}

/// A part S3 holds for an upload in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadedPart {
    pub part_number: i32,
    /// As S3 returns it, quotes included.
    pub etag: String,
    pub size: u64,
    pub checksum_sha256: Option<String>,
    pub checksum_crc32c: Option<String>,
}

/// A part as the client lists it to complete an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletingPart {
    pub part_number: i32,
    pub etag: String,
    pub checksum_sha256: Option<String>,
    pub checksum_crc32c: Option<String>,
}

/// Why a multipart call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum MultipartError {
    /// The upload was completed, aborted or never existed (S3's `NoSuchUpload`).
    #[error("S3 has no multipart upload {upload_id} for {key}")]
    NoSuchUpload { key: String, upload_id: String },
    /// S3 understood the request and refused it with 400 (`InvalidPart`, `EntityTooSmall`, …):
    /// the request is the client's to fix, not a failure of the backend.
    #[error("S3 refused to {operation} {key}: {code}: {message}")]
    Refused { operation: &'static str, key: String, code: String, message: String },
    #[error(transparent)]
    Signer(#[from] SignerError),
}

impl Signer {
    /// Starts a multipart upload of `key` and returns S3's upload id. With `part_checksum` the
    /// upload is created with that `ChecksumAlgorithm` (and S3's COMPOSITE type): S3 then
    /// keeps a checksum per part and wants every part's checksum again on completion.
    pub async fn create_multipart(
        &self,
        key: &str,
        content_type: &str,
        part_checksum: Option<PartChecksum>,
    ) -> Result<String, MultipartError> {
        let operation = "create a multipart upload of";
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .set_checksum_algorithm(part_checksum.map(|algorithm| match algorithm {
                PartChecksum::Sha256 => ChecksumAlgorithm::Sha256,
                PartChecksum::Crc32c => ChecksumAlgorithm::Crc32C,
            }))
            .send()
            .await
            .map_err(|e| classify(operation, key, "", e))?;
        created.upload_id().filter(|id| !id.is_empty()).map(str::to_owned).ok_or_else(|| {
            MultipartError::Signer(SignerError::Storage {
                operation,
                key: key.to_owned(),
                detail: "S3 answered without an upload id".to_owned(),
            })
        })
    }

    /// Presigned `UploadPart` URLs, one per part in the given order, all starting (and so
    /// expiring) at the same second. No request is made: S3 checks the upload id on the PUT.
    pub async fn presign_parts(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[PartToSign],
    ) -> Result<Vec<PresignedPut>, SignerError> {
        let start = whole_seconds(SystemTime::now());
        let expires_at = OffsetDateTime::from(start + self.url_expiry);
        let mut signed = Vec::with_capacity(parts.len());
        for part in parts {
            let presigning =
                self.presigning_config(start).map_err(|detail| SignerError::Presign { key: key.to_owned(), detail })?;
            let request = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(part.part_number)
                // At most 5 GiB (checked by the route), so the conversion cannot fail there.
                .set_content_length(i64::try_from(part.size).ok())
                .set_checksum_sha256(part.checksum_sha256.clone())
                .set_checksum_crc32_c(part.checksum_crc32c.clone())
                .presigned(presigning)
                .await
                .map_err(|e| SignerError::Presign {
                    key: key.to_owned(),
                    detail: DisplayErrorContext(&e).to_string(),
                })?;
            signed.push(PresignedPut { url: request.uri().to_owned(), headers: headers_to_send(&request), expires_at });
        }
        crate::ops::metrics::global().presigned(signed.len() as u64);
        Ok(signed)
    }

    /// Every part S3 holds for the upload, in part-number order (all pages of ListParts).
    pub async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<UploadedPart>, MultipartError> {
        let mut pages =
            self.client.list_parts().bucket(&self.bucket).key(key).upload_id(upload_id).into_paginator().send();
        let mut parts = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("list the parts of", key, upload_id, e))?;
            parts.extend(page.parts().iter().map(|part| UploadedPart {
                part_number: part.part_number().unwrap_or_default(),
                etag: part.e_tag().unwrap_or_default().to_owned(),
                size: part.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                checksum_sha256: part.checksum_sha256().map(str::to_owned),
                checksum_crc32c: part.checksum_crc32_c().map(str::to_owned),
            }));
        }
        Ok(parts)
    }

    /// Assembles the object from `parts`, which must be in ascending part-number order.
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletingPart],
    ) -> Result<(), MultipartError> {
        let completed = parts
            .iter()
            .map(|part| {
                CompletedPart::builder()
                    .part_number(part.part_number)
                    .e_tag(&part.etag)
                    .set_checksum_sha256(part.checksum_sha256.clone())
                    .set_checksum_crc32_c(part.checksum_crc32c.clone())
                    .build()
            })
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(completed)).build())
            .send()
            .await
            .map_err(|e| classify("complete the multipart upload of", key, upload_id, e))?;
        Ok(())
    }

    /// Aborts the upload; S3 drops the parts it holds.
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), MultipartError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| classify("abort the multipart upload of", key, upload_id, e))?;
        Ok(())
    }
}

/// Sorts an S3 failure into "no such upload", "refused, fix the request" (400) and "the
/// storage failed" (everything else: network, 5xx, throttling, and 403/404 for the bucket,
/// which mean the backend's own settings are wrong).
fn classify<E>(operation: &'static str, key: &str, upload_id: &str, error: SdkError<E, HttpResponse>) -> MultipartError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = error.raw_response().map(|response| response.status().as_u16());
    match (status, error.code()) {
        (_, Some("NoSuchUpload")) => {
            MultipartError::NoSuchUpload { key: key.to_owned(), upload_id: upload_id.to_owned() }
        }
        (Some(400), Some(code)) => MultipartError::Refused {
            operation,
            key: key.to_owned(),
            code: code.to_owned(),
            message: error.message().unwrap_or("no reason given").to_owned(),
        },
        _ => MultipartError::Signer(SignerError::Storage {
            operation,
            key: key.to_owned(),
            detail: DisplayErrorContext(&error).to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{query_param, settings};
    use super::*;

    const CHECKSUM: &str = "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=";

    #[tokio::test]
    async fn a_part_url_signs_its_length_and_checksum_and_names_the_upload() {
        let signer = Signer::new(&settings(Some("http://127.0.0.1:8333"), true, false)).await;
        let parts = [
            PartToSign {
                part_number: 1,
                size: 5_242_880,
                checksum_sha256: Some(CHECKSUM.to_owned()),
                checksum_crc32c: None,
            },
            PartToSign { part_number: 2, size: 1, checksum_sha256: None, checksum_crc32c: None },
        ];
        let signed = signer.presign_parts("uploads/x/a.bin", "up/load=id", &parts).await.expect("no network needed");
        assert_eq!(signed.len(), 2, "one URL per part");

        let first = &signed[0];
        assert_eq!(
            first.headers,
            [
                ("content-length".to_owned(), "5242880".to_owned()),
                ("x-amz-checksum-sha256".to_owned(), CHECKSUM.to_owned()),
            ]
            .into(),
            "the client sends exactly the length and the checksum"
        );
        assert_eq!(
            query_param(&first.url, "X-Amz-SignedHeaders").as_deref(),
            Some("content-length%3Bhost%3Bx-amz-checksum-sha256"),
            "both are part of the signature"
        );
        assert_eq!(query_param(&first.url, "partNumber").as_deref(), Some("1"));
        assert_eq!(query_param(&first.url, "uploadId").as_deref(), Some("up%2Fload%3Did"), "the id is encoded");
        assert!(!first.url.contains("crc32"), "no SDK default checksum sneaks in: {}", first.url);

        let second = &signed[1];
        assert_eq!(second.headers, [("content-length".to_owned(), "1".to_owned())].into(), "no checksum given");
        assert_eq!(query_param(&second.url, "partNumber").as_deref(), Some("2"));
        assert_eq!(first.expires_at, second.expires_at, "a batch expires at one moment");
    }

    #[tokio::test]
    async fn a_part_url_can_sign_a_crc32c_instead() {
        let signer = Signer::new(&settings(Some("http://127.0.0.1:8333"), true, false)).await;
        let parts =
            [PartToSign { part_number: 1, size: 9, checksum_sha256: None, checksum_crc32c: Some("4waSgw==".into()) }];
        let signed = signer.presign_parts("uploads/x/a.bin", "id", &parts).await.expect("no network needed");
        assert_eq!(
            signed[0].headers,
            [
                ("content-length".to_owned(), "9".to_owned()),
                ("x-amz-checksum-crc32c".to_owned(), "4waSgw==".to_owned())
            ]
            .into(),
            "the client sends exactly the length and the CRC32C"
        );
        assert_eq!(
            query_param(&signed[0].url, "X-Amz-SignedHeaders").as_deref(),
            Some("content-length%3Bhost%3Bx-amz-checksum-crc32c"),
            "the CRC32C is part of the signature, so S3 checks the body against it"
        );
    }
}
