//! The contract of the Rails guide "Secure Uploads to AWS S3", exactly: ask for a URL with
//! `{file_name}`, PUT the bytes, then create the attachment record. An existing backend written
//! from the guide works unchanged.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::http::BackendHttp;
use super::{BackendError, CompletionReport, FileToSign, PresignedUpload, Signed, SigningBackend, SINGLE_PUT_LIMIT};

pub struct RailsBackend {
    http: BackendHttp,
}

impl RailsBackend {
    pub fn new(http: BackendHttp) -> Self {
        RailsBackend { http }
    }
}

#[derive(Serialize)]
struct GenerateUploadUrl<'a> {
    file_name: &'a str,
}

#[derive(Deserialize)]
struct GeneratedUrl {
    url: String,
    key: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[async_trait]
impl SigningBackend for RailsBackend {
    fn max_presign_batch(&self) -> usize {
        1
    }

    fn max_file_size(&self) -> u64 {
        SINGLE_PUT_LIMIT
    }

    async fn presign(&self, files: &[FileToSign]) -> Result<Vec<Signed>, BackendError> {
        let mut signed = Vec::with_capacity(files.len());
        for file in files {
            let generated: Result<GeneratedUrl, _> = self
                .http
                .post("api/attachments/generate_upload_url", &GenerateUploadUrl { file_name: &file.file_name })
                .await;
            let generated = match generated {
                Err(e) if e.is_batch_level() => return Err(e),
                Err(e) => {
                    signed.push(Err(e));
                    continue;
                }
                Ok(generated) => generated,
            };
            let upload = super::parse_upload_url(&generated.url)
                .map_err(|detail| BackendError::BadResponse { url: self.http.base_shown(), detail })
                .map(|url| PresignedUpload {
                    upload_id: file.upload_id.clone(),
                    key: generated.key.or_else(|| derive_key_from_url(&url)),
                    object_url: super::redact_url(&url),
                    url,
                    headers: generated.headers,
                    method: super::UploadMethod::Put,
                });
            signed.push(upload);
        }
        Ok(signed)
    }

    async fn report(&self, report: &CompletionReport) -> Result<(), BackendError> {
        let mut attachment = json!({
            "file_name": report.file_name,
            "url": report.object_url,
            "byte_size": report.size,
            "content_type": report.content_type,
            "checksum": report.checksum_sha256,
        });
        if let Some(key) = &report.key {
            attachment["key"] = json!(key);
        }
        let _: serde_json::Value = self.http.post("api/attachments", &json!({ "attachment": attachment })).await?;
        Ok(())
    }

    async fn check(&self) -> Result<(), BackendError> {
        // The guide has no status route. An empty generate_upload_url request is answered 401
        // for a bad token and 4xx or 2xx otherwise, without signing anything useful.
        match self.http.post::<_, serde_json::Value>("api/attachments/generate_upload_url", &json!({})).await {
            Ok(_) | Err(BackendError::Rejected { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The object key S3 clients would read from a URL: the URL-decoded path, minus the bucket
/// segment when the URL is path-style (an IP or `localhost` host, or `s3[.-]<region>.amazonaws.com`),
/// whole when the bucket is in the host name.
pub fn derive_key_from_url(url: &url::Url) -> Option<String> {
    let path = percent_encoding::percent_decode_str(url.path()).decode_utf8().ok()?;
    let path = path.trim_start_matches('/');
    let path_style = match url.host()? {
        url::Host::Ipv4(_) | url::Host::Ipv6(_) => true,
        url::Host::Domain(host) => {
            let host = host.to_ascii_lowercase();
            host == "localhost" || is_path_style_aws_host(&host)
        }
    };
    let key = if path_style { path.split_once('/').map(|(_, key)| key)? } else { path };
    (!key.is_empty()).then(|| key.to_owned())
}

fn is_path_style_aws_host(host: &str) -> bool {
    let Some(rest) = host.strip_suffix(".amazonaws.com") else { return false };
    rest == "s3" || rest.starts_with("s3.") || rest.starts_with("s3-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(url: &str) -> Option<String> {
        derive_key_from_url(&url::Url::parse(url).unwrap())
    }

    #[test]
    fn a_path_style_url_loses_its_bucket_segment() {
        assert_eq!(
            key("http://127.0.0.1:8333/bucket/uploads/a%20b/r%C3%A9sum%C3%A9.pdf?X-Amz-Signature=1").as_deref(),
            Some("uploads/a b/résumé.pdf")
        );
        assert_eq!(key("http://localhost:9000/b/k").as_deref(), Some("k"));
        assert_eq!(key("https://s3.eu-west-1.amazonaws.com/b/k/x").as_deref(), Some("k/x"));
        assert_eq!(key("https://s3-eu-west-1.amazonaws.com/b/k").as_deref(), Some("k"));
    }

    #[test]
    fn a_virtual_hosted_url_keeps_its_whole_path() {
        assert_eq!(key("https://bucket.s3.amazonaws.com/uploads/k.pdf").as_deref(), Some("uploads/k.pdf"));
        assert_eq!(key("https://bucket.s3-accelerate.amazonaws.com/k").as_deref(), Some("k"));
    }

    #[test]
    fn a_url_with_no_key_gives_none() {
        assert_eq!(key("http://127.0.0.1:8333/bucket"), None);
    }
}
