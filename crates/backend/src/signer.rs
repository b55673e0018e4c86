//! Everything that talks to S3: presigned PUT URLs for clients, the HEAD that checks an
//! object really exists before the backend records it, and multipart uploads (`multipart`).
//! No other module touches the SDK. Every S3 call has a deadline (`limits`), and an error
//! answer is read only up to a cap (`interceptor`).

mod interceptor;
mod multipart;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::{Credentials, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};
use aws_sdk_s3::types::{ChecksumMode, ChecksumType};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use time::OffsetDateTime;

use crate::config::S3Settings;
use crate::limits::{S3_ATTEMPT_TIMEOUT, S3_CONNECT_TIMEOUT, S3_OPERATION_TIMEOUT};

pub use multipart::{CompletingPart, MultipartError, PartChecksum, PartToSign, UploadedPart};

/// A URL the client PUTs its bytes to, and the headers it must send with it.
#[derive(Debug, Clone)]
pub struct PresignedPut {
    pub url: String,
    /// Every signed header except `host`, lower-case names. Sending anything else in their
    /// place makes S3 answer 403 (a different value) or 400 BadDigest (a different body).
    pub headers: BTreeMap<String, String>,
    pub expires_at: OffsetDateTime,
}

/// What a HEAD of an object says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    pub size: u64,
    /// Base64 SHA-256 of the whole object when S3 holds one (a single PUT with a checksum);
    /// `None` for multipart objects, whose checksum covers the parts' checksums instead.
    pub checksum_sha256: Option<String>,
    /// Base64 CRC32C, or for a multipart object created with CRC32C S3's composite
    /// `<base64>-<parts>`.
    pub checksum_crc32c: Option<String>,
}

/// What the client asked to be signed into a single PUT.
#[derive(Debug, Clone, Default)]
pub struct PutConditions<'a> {
    pub content_type: Option<&'a str>,
    pub checksum_sha256: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("could not presign a PUT for {key}: {detail}")]
    Presign { key: String, detail: String },
    #[error("could not HEAD {key} in the bucket: {detail}")]
    Head { key: String, detail: String },
    /// Any other S3 call that failed on the storage's side (network, 5xx, the backend's own
    /// credentials or bucket refused).
    #[error("could not {operation} {key}: {detail}")]
    Storage { operation: &'static str, key: String, detail: String },
}

/// Presigns and checks objects in one bucket.
#[derive(Debug, Clone)]
pub struct Signer {
    client: Client,
    bucket: String,
    url_expiry: Duration,
}

impl Signer {
    /// Builds the S3 client. No request is made here: credentials from the AWS chain are
    /// resolved lazily, on the first presign.
    pub async fn new(settings: &S3Settings) -> Self {
        // The SDK's default TLS stack is aws-lc; the workspace already has rustls with ring.
        let http_client =
            aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).build_https();
        // Without these the SDK waits on a silent S3 for as long as the TCP stack does; each
        // attempt, and the whole call with its retries, ends well inside a request's deadline.
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(S3_CONNECT_TIMEOUT)
            .operation_attempt_timeout(S3_ATTEMPT_TIMEOUT)
            .operation_timeout(S3_OPERATION_TIMEOUT)
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .timeout_config(timeouts)
            .http_client(http_client);
        if let Some((id, secret)) = &settings.static_credentials {
            loader = loader.credentials_provider(Credentials::new(
                id.clone(),
                secret.clone(),
                None,
                None,
                "dropship-backend-flags",
            ));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(settings.path_style)
            .accelerate(settings.accelerate)
            // Only the checksum the client gave us belongs in the signature. aws-sdk-s3 1.157
            // adds none of its own to presigned requests, but releases from early 2025 signed a
            // CRC32 of the *empty* body into them (awslabs/aws-sdk-rust#1253), which no real
            // upload can match; `WhenRequired` keeps that from coming back with an upgrade.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .interceptor(interceptor::CappedErrorsCounted);
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        Self {
            client: Client::from_conf(builder.build()),
            bucket: settings.bucket.clone(),
            url_expiry: settings.url_expiry,
        }
    }

    /// Signs a single PUT of `key`. The content type and checksum, when given, become signed
    /// headers: S3 refuses the PUT unless the client sends exactly those values, and verifies
    /// the body against the SHA-256.
    pub async fn presign_put(&self, key: &str, conditions: PutConditions<'_>) -> Result<PresignedPut, SignerError> {
        // SigV4 dates have whole seconds; starting on one makes `expires_at` exact instead of
        // up to a second later than the moment S3 starts refusing the URL.
        let start = whole_seconds(SystemTime::now());
        let presigning =
            self.presigning_config(start).map_err(|detail| SignerError::Presign { key: key.to_owned(), detail })?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .set_content_type(conditions.content_type.map(str::to_owned))
            .set_checksum_sha256(conditions.checksum_sha256.map(str::to_owned))
            .presigned(presigning)
            .await
            .map_err(|e| SignerError::Presign { key: key.to_owned(), detail: DisplayErrorContext(&e).to_string() })?;
        crate::ops::metrics::global().presigned(1);
        Ok(PresignedPut {
            url: request.uri().to_owned(),
            headers: headers_to_send(&request),
            expires_at: OffsetDateTime::from(start + self.url_expiry),
        })
    }

    /// HeadBucket: the bucket exists and these credentials may use it (the readiness check).
    pub async fn head_bucket(&self) -> Result<(), SignerError> {
        self.client.head_bucket().bucket(&self.bucket).send().await.map(|_| ()).map_err(|e| SignerError::Storage {
            operation: "reach",
            key: format!("the bucket {}", self.bucket),
            detail: DisplayErrorContext(&e).to_string(),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object's address without any signature: what records keep and logs may show.
    pub async fn object_url(&self, key: &str) -> Result<String, SignerError> {
        // Presigning a GET costs no request and yields exactly the URL the SDK would address
        // (path-style or virtual-hosted, percent-encoded the SDK's way); the query is dropped.
        let presigning = self
            .presigning_config(SystemTime::now())
            .map_err(|detail| SignerError::Presign { key: key.to_owned(), detail })?;
        let request =
            self.client.get_object().bucket(&self.bucket).key(key).presigned(presigning).await.map_err(|e| {
                SignerError::Presign { key: key.to_owned(), detail: DisplayErrorContext(&e).to_string() }
            })?;
        Ok(without_query(request.uri()).to_owned())
    }

    /// HEADs `key`: `Ok(None)` when it does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectHead>, SignerError> {
        let result =
            self.client.head_object().bucket(&self.bucket).key(key).checksum_mode(ChecksumMode::Enabled).send().await;
        match result {
            Ok(head) => {
                // A multipart object created with SHA-256 carries a checksum of its parts'
                // checksums ("<base64>-N", type COMPOSITE), not the file's; keep it in that
                // form so it is only ever compared with a composite checksum.
                let composite = head.checksum_type() == Some(&ChecksumType::Composite);
                let stated =
                    |checksum: Option<&str>| checksum.filter(|c| !composite || c.contains('-')).map(str::to_owned);
                Ok(Some(ObjectHead {
                    size: head.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                    checksum_sha256: stated(head.checksum_sha256()),
                    checksum_crc32c: stated(head.checksum_crc32_c()),
                }))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(SignerError::Head { key: key.to_owned(), detail: DisplayErrorContext(&e).to_string() }),
        }
    }

    /// The sizes of those of `keys` that exist, found by listing the key range they span
    /// (ListObjectsV2 pages of about as many keys as asked for, plus [`LIST_SLACK`]) instead of
    /// a HEAD each.
    /// Keys issued together are adjacent in the bucket's order (see `keys`), so a batch usually
    /// takes one request. Listing stops after [`MAX_LIST_PAGES`]; `complete_through` is the
    /// last key the listing covered: a key at or before it that is not in `sizes` does not
    /// exist, and one after it was not looked at.
    pub async fn list_sizes(&self, keys: &[String]) -> Result<Listing, SignerError> {
        let mut wanted: Vec<&str> = keys.iter().map(String::as_str).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let (Some(first), Some(last)) = (wanted.first().copied(), wanted.last().copied()) else {
            return Ok(Listing::default());
        };
        let prefix = common_prefix(first, last);
        // Just before `first`: StartAfter is exclusive, and nothing issued sorts in between.
        let start_after = first.char_indices().last().map_or("", |(at, _)| &first[..at]);
        // Room for some other uploads' keys landing in between, without listing far past `last`.
        let page_size = i32::try_from((wanted.len() + LIST_SLACK).min(1000)).unwrap_or(1000);
        let fail = |detail: String| SignerError::Storage { operation: "list", key: prefix.to_owned(), detail };

        let mut listing = Listing::default();
        let mut token = None;
        for _ in 0..MAX_LIST_PAGES {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .start_after(start_after)
                .max_keys(page_size)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| fail(DisplayErrorContext(&e).to_string()))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                if wanted.binary_search(&key).is_ok() {
                    let size = object.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
                    listing.sizes.insert(key.to_owned(), size);
                }
                listing.complete_through = Some(key.to_owned());
            }
            let past_last = listing.complete_through.as_deref().is_some_and(|k| k >= last);
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) && !past_last => token = Some(next.to_owned()),
                // The listing ended: every key up to the last one asked for was covered.
                _ => {
                    listing.complete_through = Some(last.to_owned()).max(listing.complete_through);
                    return Ok(listing);
                }
            }
        }
        Ok(listing)
    }

    fn presigning_config(&self, start: SystemTime) -> Result<PresigningConfig, String> {
        PresigningConfig::builder().start_time(start).expires_in(self.url_expiry).build().map_err(|e| e.to_string())
    }
}

/// Pages one [`Signer::list_sizes`] reads at most; other uploads landing between a batch's keys
/// can make its range longer than the batch, and past this the caller HEADs the rest.
const MAX_LIST_PAGES: usize = 4;
/// Keys per listing page beyond the ones asked for.
const LIST_SLACK: usize = 16;

/// What a listing found; see [`Signer::list_sizes`].
#[derive(Debug, Default)]
pub struct Listing {
    pub sizes: std::collections::HashMap<String, u64>,
    pub complete_through: Option<String>,
}

impl Listing {
    /// `Some(size)` when listed, `Some(None)` when the listing shows it does not exist, `None`
    /// when the listing did not get that far.
    pub fn lookup(&self, key: &str) -> Option<Option<u64>> {
        match self.sizes.get(key) {
            Some(size) => Some(Some(*size)),
            None if self.complete_through.as_deref().is_some_and(|through| key <= through) => Some(None),
            None => None,
        }
    }
}

fn common_prefix<'a>(a: &'a str, b: &str) -> &'a str {
    let mut end = 0;
    for ((at, x), y) in a.char_indices().zip(b.chars()) {
        if x != y {
            break;
        }
        end = at + x.len_utf8();
    }
    &a[..end]
}

fn whole_seconds(time: SystemTime) -> SystemTime {
    let since_epoch = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    SystemTime::UNIX_EPOCH + Duration::from_secs(since_epoch.as_secs())
}

/// The headers a presigned request expects, minus `host` (the HTTP client sets it from the URL).
fn headers_to_send(request: &PresignedRequest) -> BTreeMap<String, String> {
    request
        .headers()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("host"))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
        .collect()
}

/// A URL without its query string: presigned URLs carry their credential scope and signature
/// there, and neither belongs in a log line or a stored record.
pub fn without_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(base, _)| base)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn settings(endpoint: Option<&str>, path_style: bool, accelerate: bool) -> S3Settings {
        S3Settings {
            endpoint: endpoint.map(str::to_owned),
            region: "us-east-1".to_owned(),
            bucket: "media".to_owned(),
            static_credentials: Some(("AKIDEXAMPLE".to_owned(), "secret".to_owned())),
            path_style,
            accelerate,
            url_expiry: Duration::from_secs(300),
        }
    }

    const CHECKSUM: &str = "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=";

    #[tokio::test]
    async fn a_put_with_conditions_signs_exactly_content_type_and_checksum() {
        let signer = Signer::new(&settings(Some("http://127.0.0.1:8333"), true, false)).await;
        let put = signer
            .presign_put(
                "uploads/x/a b.txt",
                PutConditions { content_type: Some("text/plain"), checksum_sha256: Some(CHECKSUM) },
            )
            .await
            .expect("presigning needs no network");
        let expected: BTreeMap<String, String> = [
            ("content-type".to_owned(), "text/plain".to_owned()),
            ("x-amz-checksum-sha256".to_owned(), CHECKSUM.to_owned()),
        ]
        .into();
        assert_eq!(put.headers, expected, "the client must send exactly these headers");
        assert!(
            put.url.starts_with("http://127.0.0.1:8333/media/uploads/x/a%20b.txt?"),
            "path-style URL on the configured endpoint: {}",
            put.url
        );
        let signed = query_param(&put.url, "X-Amz-SignedHeaders");
        assert_eq!(
            signed.as_deref(),
            Some("content-type%3Bhost%3Bx-amz-checksum-sha256"),
            "content-type and the checksum are part of the signature"
        );
        assert!(!put.url.contains("crc32"), "no SDK default checksum sneaks in: {}", put.url);
        assert_eq!(query_param(&put.url, "X-Amz-Expires").as_deref(), Some("300"));
        let signed_at = query_param(&put.url, "X-Amz-Date").expect("a signing date");
        let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
        let signed_at = time::PrimitiveDateTime::parse(&signed_at, &format).expect("SigV4 date").assume_utc();
        assert_eq!(
            put.expires_at,
            signed_at + Duration::from_secs(300),
            "expires_at is exactly when S3 stops accepting"
        );
    }

    #[tokio::test]
    async fn a_bare_put_needs_no_headers_at_all() {
        let signer = Signer::new(&settings(Some("http://127.0.0.1:8333"), true, false)).await;
        let put = signer.presign_put("uploads/x/a.txt", PutConditions::default()).await.unwrap();
        assert!(put.headers.is_empty(), "nothing but host is signed: {:?}", put.headers);
        assert_eq!(query_param(&put.url, "X-Amz-SignedHeaders").as_deref(), Some("host"));
    }

    #[tokio::test]
    async fn accelerate_signs_for_the_transfer_acceleration_host() {
        let signer = Signer::new(&settings(None, false, true)).await;
        let put = signer.presign_put("uploads/x/a.txt", PutConditions::default()).await.unwrap();
        assert!(
            put.url.starts_with("https://media.s3-accelerate.amazonaws.com/uploads/x/a.txt?"),
            "virtual-hosted on the accelerate endpoint: {}",
            put.url
        );
    }

    #[tokio::test]
    async fn object_urls_have_no_query_string() {
        let signer = Signer::new(&settings(Some("http://127.0.0.1:8333"), true, false)).await;
        let url = signer.object_url("uploads/x/résumé.pdf").await.unwrap();
        assert_eq!(url, "http://127.0.0.1:8333/media/uploads/x/r%C3%A9sum%C3%A9.pdf");
    }

    #[test]
    fn a_listing_knows_which_keys_it_covered() {
        let listing = Listing { sizes: [("u/b".to_owned(), 3)].into(), complete_through: Some("u/c".to_owned()) };
        assert_eq!(listing.lookup("u/b"), Some(Some(3)), "listed");
        assert_eq!(listing.lookup("u/bb"), Some(None), "covered but absent: missing");
        assert_eq!(listing.lookup("u/d"), None, "beyond the listing: unknown");
        assert_eq!(common_prefix("uploads/0192a/x", "uploads/0193b/y"), "uploads/019");
        assert_eq!(common_prefix("é/a", "é/a"), "é/a");
    }

    #[test]
    fn without_query_drops_everything_after_the_question_mark() {
        assert_eq!(without_query("http://h/b/k?X-Amz-Signature=s"), "http://h/b/k");
        assert_eq!(without_query("http://h/b/k"), "http://h/b/k");
    }

    pub(super) fn query_param(url: &str, name: &str) -> Option<String> {
        let query = url.split_once('?')?.1;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
    }
}
