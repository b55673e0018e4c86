//! The signing backend: the organisation's server that hands out presigned URLs and records
//! finished uploads. One trait, one implementation per API flavour; everything above this
//! module is flavour-blind.

mod companion;
pub(crate) mod http;
mod native;
mod patient;
mod rails;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{ApiFlavour, Error, Settings};

pub use companion::CompanionBackend;
pub(crate) use http::describe_reqwest_error as http_error_detail;
pub use http::Credential;
pub use native::NativeBackend;
pub use patient::{is_outage, OnOutage, PatientBackend};
pub use rails::{derive_key_from_url, RailsBackend};

/// A file about to be signed.
#[derive(Debug, Clone)]
pub struct FileToSign {
    pub upload_id: String,
    pub file_name: String,
    pub size: u64,
    pub content_type: String,
    pub checksum_sha256: String,
    /// A folder under the backend's key prefix (a watched folder's), where the API has one.
    pub key_prefix: Option<String>,
}

/// Where and how to send one file's bytes.
#[derive(Clone)]
pub struct PresignedUpload {
    pub upload_id: String,
    /// The object key, when the backend told us or it could be derived from the URL.
    pub key: Option<String>,
    pub url: url::Url,
    /// Headers that were signed into the URL and must be sent exactly.
    pub headers: BTreeMap<String, String>,
    pub method: UploadMethod,
    /// The object's URL without a query string (what history and reports show).
    pub object_url: String,
}

/// How the bytes go to the URL.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum UploadMethod {
    /// A PUT with the file as the body.
    #[default]
    Put,
    /// A presigned POST form (S3's browser-upload policy): these fields, in order, then the
    /// file as the last field.
    PostForm { fields: Vec<(String, String)> },
}

// A presigned URL is a bearer credential until it expires: never print its signature.
impl std::fmt::Debug for PresignedUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresignedUpload")
            .field("upload_id", &self.upload_id)
            .field("key", &self.key)
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

/// An upload URL from a backend's answer: it must be http(s) and name a host.
pub(crate) fn parse_upload_url(raw: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("the upload URL is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("the upload URL must be http(s) with a host, got scheme {:?}", url.scheme()));
    }
    Ok(url)
}

/// A URL with its query string (and so any signature) removed, fit for logs and history.
pub fn redact_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_password(None);
    shown.to_string()
}

/// An object URL as the backend gave it, without a query string, fragment or password: it is
/// kept in the history and shown, and a backend may hand out a signed URL here by mistake.
pub fn object_url_without_query(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(url) => redact_url(&url),
        Err(_) => raw.split(['?', '#']).next().unwrap_or_default().to_owned(),
    }
}

/// Whether the URL's host is this machine (plain http is acceptable only there).
pub(crate) fn is_this_machine(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The bearer token goes in clear text only to this machine: over the network a plain-http
/// backend would hand it to anyone on the way. Checked before a request carrying it is sent.
pub(crate) fn check_token_destination(base: &url::Url) -> Result<(), BackendError> {
    if base.scheme() == "http" && !is_this_machine(base) {
        return Err(BackendError::InsecureUrl { url: redact_url(base).trim_end_matches('/').to_owned() });
    }
    Ok(())
}

/// One file's presigned upload, or why this file got none.
pub type Signed = Result<PresignedUpload, BackendError>;

/// What the backend is told once an upload has landed (kept as JSON in the outbox until the
/// backend acknowledges it).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CompletionReport {
    pub upload_id: String,
    pub key: Option<String>,
    pub object_url: String,
    pub file_name: String,
    pub size: u64,
    pub content_type: String,
    pub checksum_sha256: String,
}

/// A multipart upload the backend created.
#[derive(Debug, Clone)]
pub struct MultipartUpload {
    pub key: String,
    pub upload_id: String,
    pub object_url: String,
}

#[derive(Debug, Clone)]
pub struct PartToSign {
    pub part_number: u32,
    pub size: u64,
    pub checksum_sha256: Option<String>,
    /// Base64 CRC32C of the part, for an upload created with CRC32C checksums.
    pub checksum_crc32c: Option<String>,
}

#[derive(Clone)]
pub struct SignedPart {
    pub part_number: u32,
    pub url: url::Url,
    pub headers: BTreeMap<String, String>,
    /// When S3 stops accepting the URL; `None` when the backend did not say.
    pub expires_at: Option<time::OffsetDateTime>,
}

/// A part S3 holds for a multipart upload, as listed for a resume.
#[derive(Debug, Clone)]
pub struct ListedPart {
    pub part_number: u32,
    pub etag: String,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct CompletedPart {
    pub part_number: u32,
    pub etag: String,
    pub checksum_sha256: Option<String>,
    pub checksum_crc32c: Option<String>,
}

#[async_trait]
pub trait SigningBackend: Send + Sync {
    /// The most files one `presign` call should carry.
    fn max_presign_batch(&self) -> usize;
    /// The largest file this flavour can upload.
    fn max_file_size(&self) -> u64;
    /// Presigns a single PUT for each file, in the order given. An answer that is wrong for one
    /// file (a URL that may not be used, say) fails that file only; the outer error is for the
    /// request as a whole.
    async fn presign(&self, files: &[FileToSign]) -> Result<Vec<Signed>, BackendError>;
    /// Tells the backend an upload finished; succeeds once it is recorded (or was already).
    async fn report(&self, report: &CompletionReport) -> Result<(), BackendError>;
    /// Reports many uploads in one round trip where the flavour allows; one result per report.
    async fn report_batch(&self, reports: &[CompletionReport]) -> Result<Vec<Result<(), BackendError>>, BackendError> {
        let mut results = Vec::with_capacity(reports.len());
        for report in reports {
            match self.report(report).await {
                Err(e) if e.is_batch_level() => return Err(e),
                result => results.push(result),
            }
        }
        Ok(results)
    }
    /// Checks that the backend is reachable and accepts the token.
    async fn check(&self) -> Result<(), BackendError>;

    /// Whether the flavour can upload in parts; without it files are capped at one PUT.
    fn supports_multipart(&self) -> bool {
        false
    }
    async fn create_multipart(&self, _file: &FileToSign) -> Result<MultipartUpload, BackendError> {
        Err(BackendError::Unsupported { what: "multipart uploads" })
    }
    /// Presigns the given parts, in order, in one round trip.
    async fn sign_parts(
        &self,
        _upload: &MultipartUpload,
        _parts: &[PartToSign],
    ) -> Result<Vec<SignedPart>, BackendError> {
        Err(BackendError::Unsupported { what: "multipart uploads" })
    }
    async fn complete_multipart(
        &self,
        _upload: &MultipartUpload,
        _parts: &[CompletedPart],
    ) -> Result<(), BackendError> {
        Err(BackendError::Unsupported { what: "multipart uploads" })
    }
    async fn abort_multipart(&self, _upload: &MultipartUpload) -> Result<(), BackendError> {
        Err(BackendError::Unsupported { what: "multipart uploads" })
    }
    /// The parts S3 holds for the upload, to resume it; `Rejected` when S3 no longer knows it.
    async fn list_parts(&self, _upload: &MultipartUpload) -> Result<Vec<ListedPart>, BackendError> {
        Err(BackendError::Unsupported { what: "multipart uploads" })
    }
}

/// S3's limit for a single PUT.
pub const SINGLE_PUT_LIMIT: u64 = 5 * 1024 * 1024 * 1024;

/// The bare HTTP conversation with the configured backend, for calls outside the flavours
/// (`/api/v1/me`).
pub(crate) fn http_for(
    settings: &Settings,
    client: reqwest::Client,
    credential: Credential,
) -> Result<http::BackendHttp, Error> {
    Ok(http::BackendHttp::with_credential(client, settings.validate()?, credential))
}

pub fn connect(
    settings: &Settings,
    client: http::ClientSource,
    credential: Credential,
) -> Result<Arc<dyn SigningBackend>, Error> {
    let base = settings.validate()?;
    let http = http::BackendHttp::from_source(client, base, credential);
    let backend: Arc<dyn SigningBackend> = match settings.api {
        ApiFlavour::Native => Arc::new(NativeBackend::new(http)),
        ApiFlavour::Rails => Arc::new(RailsBackend::new(http)),
        ApiFlavour::Companion => Arc::new(CompanionBackend::new(http)),
    };
    Ok(match UploadHosts::new(&settings.upload_hosts) {
        Some(allowed) => Arc::new(AllowedHostsOnly { inner: backend, allowed }),
        None => backend,
    })
}

/// The hosts upload URLs may point at, from the settings' allow-list: `s3.example.com` allows
/// that host, `.example.com` (or `*.example.com`) any host under it. Ports are not compared.
#[derive(Debug, Clone)]
pub struct UploadHosts(Vec<String>);

impl UploadHosts {
    /// `None` for an empty list, which allows every host.
    pub fn new(entries: &[String]) -> Option<UploadHosts> {
        let entries: Vec<String> = entries
            .iter()
            .map(|e| e.trim().trim_start_matches('*').to_ascii_lowercase())
            .filter(|e| !e.is_empty())
            .collect();
        (!entries.is_empty()).then_some(UploadHosts(entries))
    }

    pub fn allows(&self, url: &url::Url) -> bool {
        let Some(host) = url.host_str().map(|h| h.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase())
        else {
            return false;
        };
        self.0.iter().any(|entry| match entry.strip_prefix('.') {
            Some(domain) => host.ends_with(entry.as_str()) || host == domain,
            None => host == entry.trim_start_matches('[').trim_end_matches(']'),
        })
    }

    fn check(&self, url: &url::Url) -> Result<(), BackendError> {
        if self.allows(url) {
            Ok(())
        } else {
            Err(BackendError::HostNotAllowed { host: url.host_str().unwrap_or("?").to_owned() })
        }
    }
}

/// Any flavour, with every upload URL it hands out checked against the allow-list before a
/// byte is sent. A refused URL fails the files it was for, never the whole batch.
struct AllowedHostsOnly {
    inner: Arc<dyn SigningBackend>,
    allowed: UploadHosts,
}

#[async_trait]
impl SigningBackend for AllowedHostsOnly {
    fn max_presign_batch(&self) -> usize {
        self.inner.max_presign_batch()
    }
    fn max_file_size(&self) -> u64 {
        self.inner.max_file_size()
    }
    async fn presign(&self, files: &[FileToSign]) -> Result<Vec<Signed>, BackendError> {
        let uploads = self.inner.presign(files).await?;
        Ok(uploads.into_iter().map(|signed| signed.and_then(|u| self.allowed.check(&u.url).map(|()| u))).collect())
    }
    async fn report(&self, report: &CompletionReport) -> Result<(), BackendError> {
        self.inner.report(report).await
    }
    async fn report_batch(&self, reports: &[CompletionReport]) -> Result<Vec<Result<(), BackendError>>, BackendError> {
        self.inner.report_batch(reports).await
    }
    async fn check(&self) -> Result<(), BackendError> {
        self.inner.check().await
    }
    fn supports_multipart(&self) -> bool {
        self.inner.supports_multipart()
    }
    async fn create_multipart(&self, file: &FileToSign) -> Result<MultipartUpload, BackendError> {
        self.inner.create_multipart(file).await
    }
    async fn sign_parts(
        &self,
        upload: &MultipartUpload,
        parts: &[PartToSign],
    ) -> Result<Vec<SignedPart>, BackendError> {
        let signed = self.inner.sign_parts(upload, parts).await?;
        signed.iter().try_for_each(|p| self.allowed.check(&p.url))?;
        Ok(signed)
    }
    async fn complete_multipart(&self, upload: &MultipartUpload, parts: &[CompletedPart]) -> Result<(), BackendError> {
        self.inner.complete_multipart(upload, parts).await
    }
    async fn abort_multipart(&self, upload: &MultipartUpload) -> Result<(), BackendError> {
        self.inner.abort_multipart(upload).await
    }
    async fn list_parts(&self, upload: &MultipartUpload) -> Result<Vec<ListedPart>, BackendError> {
        self.inner.list_parts(upload).await
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    #[error("Could not reach the backend at {url} ({detail}). Check the backend URL in Settings (or --backend) and that the server is running.")]
    Unreachable { url: String, detail: String },
    #[error("The backend at {url} rejected the token (HTTP {status}). Sign in again (Settings, or `dropship login`), or set a valid token in Settings, or with --token / DROPSHIP_TOKEN.")]
    Unauthorized { url: String, status: u16 },
    #[error("The backend at {url} answered with something that is not the expected JSON ({detail}). Check the backend URL and the API flavour (native, rails or companion).")]
    BadResponse { url: String, detail: String },
    #[error("The backend refused: {message}")]
    Rejected { status: u16, message: String },
    #[error("This backend's API flavour does not offer {what}.")]
    Unsupported { what: &'static str },
    #[error("The backend at {url} failed with HTTP {status}{}. Try again later, or tell whoever runs the backend.", detail_suffix(.message))]
    ServerError { url: String, status: u16, message: String },
    #[error("The backend at {url} asked this client to slow down (HTTP 429); waiting {} s as it asked.", .retry_after.as_secs())]
    RateLimited { url: String, retry_after: std::time::Duration },
    #[error("{detail}")]
    SignInExpired { detail: String },
    #[error("The backend sent an upload URL for {host}, which is not in the allowed upload hosts in Settings. Nothing was sent; add the host to the list if it is yours, or tell whoever runs the backend.")]
    HostNotAllowed { host: String },
    #[error("Dropship does not trust the backend at {url}: {detail}. Nothing was sent.")]
    Certificate { url: String, detail: String },
    #[error("The request to the backend at {url} did not get through the proxy: {}.", crate::network::PROXY_AUTH)]
    ProxyAuth { url: String },
    #[error("The backend URL {url} is plain http to another machine, so the access token would cross the network unencrypted; nothing was sent. Use its https:// address in Settings (or --backend); plain http is only for a backend on this machine.")]
    InsecureUrl { url: String },
}

fn detail_suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

impl BackendError {
    pub fn code(&self) -> &'static str {
        match self {
            BackendError::Unreachable { .. } => "backend_unreachable",
            BackendError::Unauthorized { .. } => "unauthorized",
            BackendError::BadResponse { .. } => "backend_bad_response",
            BackendError::Rejected { .. } => "backend_rejected",
            BackendError::ServerError { .. } => "backend_error",
            BackendError::RateLimited { .. } => "backend_rate_limited",
            BackendError::Unsupported { .. } => "unsupported",
            BackendError::HostNotAllowed { .. } => "upload_host_not_allowed",
            BackendError::SignInExpired { .. } => "sign_in_expired",
            BackendError::InsecureUrl { .. } => "insecure_backend_url",
            BackendError::Certificate { .. } => "certificate_untrusted",
            BackendError::ProxyAuth { .. } => "proxy_auth_required",
        }
    }

    /// A rejection concerns one file; the others mean no file in the batch can go anywhere.
    pub fn is_batch_level(&self) -> bool {
        !matches!(
            self,
            BackendError::Rejected { .. } | BackendError::Unsupported { .. } | BackendError::HostNotAllowed { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(u: &str) -> url::Url {
        u.parse().unwrap()
    }

    #[test]
    fn an_empty_allow_list_allows_every_host() {
        assert!(UploadHosts::new(&[]).is_none());
        assert!(UploadHosts::new(&["  ".into()]).is_none());
    }

    #[test]
    fn the_allow_list_takes_exact_hosts_and_whole_domains() {
        let hosts = UploadHosts::new(&["S3.example.com".into(), ".uploads.example.org".into(), "*.cdn.test".into()])
            .expect("a list");
        assert!(hosts.allows(&url("https://s3.example.com/bucket/key?X-Amz-Signature=x")));
        assert!(hosts.allows(&url("https://s3.example.com:9000/k")), "ports are not compared");
        assert!(!hosts.allows(&url("https://evil-s3.example.com/k")), "an exact entry is not a suffix");
        assert!(!hosts.allows(&url("https://s3.example.com.evil.test/k")));
        assert!(hosts.allows(&url("https://a.b.uploads.example.org/k")));
        assert!(hosts.allows(&url("https://uploads.example.org/k")));
        assert!(!hosts.allows(&url("https://notuploads.example.org/k")), "a domain entry matches whole labels");
        assert!(hosts.allows(&url("https://x.cdn.test/k")));
        let refused = hosts.check(&url("https://attacker.test/k?X-Amz-Signature=x")).unwrap_err();
        assert_eq!(refused.code(), "upload_host_not_allowed");
        assert!(refused.to_string().contains("attacker.test") && !refused.to_string().contains("Signature"));
        assert!(!refused.is_batch_level(), "it fails the files the URL was for, not the batch");
    }

    #[tokio::test]
    async fn the_token_is_never_sent_in_clear_text_to_another_machine() {
        // TEST-NET-1: nothing answers there, so only a refusal before sending is quick.
        let http = http::BackendHttp::new(reqwest::Client::new(), url("http://192.0.2.1:9/api"), "secret".into());
        let refused = tokio::time::timeout(std::time::Duration::from_secs(2), http.get::<serde_json::Value>("/x"))
            .await
            .expect("refused at once, without trying to connect")
            .unwrap_err();
        assert_eq!(refused.code(), "insecure_backend_url", "{refused}");
        assert!(refused.to_string().contains("192.0.2.1") && refused.to_string().contains("https://"), "{refused}");
        assert!(!is_outage(&refused), "not an outage to wait out");
        assert!(check_token_destination(&url("http://127.0.0.1:8080")).is_ok(), "loopback http stays for local stacks");
        assert!(check_token_destination(&url("http://localhost/")).is_ok());
        assert!(check_token_destination(&url("http://[::1]:1/")).is_ok());
        assert!(check_token_destination(&url("https://backend.example.com")).is_ok());
        assert!(check_token_destination(&url("http://10.0.0.2/")).is_err(), "a LAN address is another machine");
    }

    #[test]
    fn redacted_urls_keep_no_signature_or_password() {
        let shown = redact_url(&url("https://user:pw@h/b/k?X-Amz-Signature=abc&X-Amz-Credential=AK#frag"));
        assert_eq!(shown, "https://user@h/b/k");
    }

    proptest::proptest! {
        #[test]
        fn an_exact_entry_allows_its_host_and_no_host_that_merely_ends_with_it(
            label in "[a-z0-9]{1,12}", domain in "[a-z]{1,10}\\.[a-z]{2,4}", prefix in "[a-z0-9-]{1,8}",
        ) {
            let host = format!("{label}.{domain}");
            let hosts = UploadHosts::new(std::slice::from_ref(&host)).expect("a list");
            proptest::prop_assert!(hosts.allows(&url(&format!("https://{host}/k"))), "{host} itself");
            proptest::prop_assert!(!hosts.allows(&url(&format!("https://{prefix}{host}/k"))), "an exact entry is not a suffix");
            proptest::prop_assert!(!hosts.allows(&url(&format!("https://{host}.{domain}/k"))), "{host} under another domain");
        }

        #[test]
        fn a_domain_entry_allows_whole_labels_under_it_only(
            sub in "[a-z0-9]{1,10}", domain in "[a-z]{1,10}\\.[a-z]{2,4}", glued in "[a-z0-9]{1,8}",
        ) {
            let hosts = UploadHosts::new(&[format!(".{domain}")]).expect("a list");
            proptest::prop_assert!(hosts.allows(&url(&format!("https://{sub}.{domain}/k"))), "{sub} under {domain}");
            proptest::prop_assert!(hosts.allows(&url(&format!("https://{domain}/k"))), "{domain} itself");
            proptest::prop_assert!(!hosts.allows(&url(&format!("https://{glued}{domain}/k"))), "whole labels only");
        }

        #[test]
        fn any_string_as_an_allow_list_or_upload_url_never_panics(entries in proptest::collection::vec(".{0,20}", 0..4), raw in ".{0,60}") {
            let hosts = UploadHosts::new(&entries);
            if let Ok(parsed) = parse_upload_url(&raw) {
                proptest::prop_assert!(matches!(parsed.scheme(), "http" | "https") && parsed.host_str().is_some());
                if let Some(hosts) = &hosts {
                    let _ = hosts.allows(&parsed);
                }
                let _ = check_token_destination(&parsed);
            }
        }

        #[test]
        fn an_object_url_is_never_kept_with_a_query_or_fragment(raw in ".{0,80}") {
            let kept = object_url_without_query(&raw);
            proptest::prop_assert!(!kept.contains('?') && !kept.contains('#'), "{raw:?} -> {kept:?}");
        }
    }
}
