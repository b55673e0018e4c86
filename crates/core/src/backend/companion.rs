//! Uppy Companion's S3 routes, so an organisation that already runs Companion can use Dropship
//! as-is: `/s3/params` for one file (a presigned POST form, or a PUT from look-alike servers),
//! `/s3/multipart…` for parts. Companion keeps no records, so there is nothing to report to.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::json;

use super::http::BackendHttp;
use super::{
    BackendError, CompletedPart, CompletionReport, FileToSign, ListedPart, MultipartUpload, PartToSign,
    PresignedUpload, Signed, SignedPart, SigningBackend, UploadMethod,
};
use crate::transfer::MAX_OBJECT_SIZE;

/// Everything but RFC 3986's unreserved characters, as S3 itself encodes keys: safe in a path
/// segment and in a query value alike.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The file name `check` asks Companion to sign: signing is local to Companion, nothing is
/// written to the bucket.
const CHECK_FILE_NAME: &str = "dropship-connection-check.txt";

pub struct CompanionBackend {
    http: BackendHttp,
    /// The bucket's URL as Companion's forms name it, learned once: multipart answers carry no
    /// URL, and history should still show where the object is.
    bucket_url: tokio::sync::OnceCell<Option<String>>,
}

impl CompanionBackend {
    pub fn new(http: BackendHttp) -> Self {
        CompanionBackend { http, bucket_url: tokio::sync::OnceCell::new() }
    }

    async fn upload_parameters(&self, file_name: &str, content_type: &str) -> Result<UploadParameters, BackendError> {
        let route = params_route(file_name, content_type);
        self.http.get(&route).await.map_err(|e| self.not_companion_on_404(e, "s3/params"))
    }

    /// Companion answers every route it has for any file; a 404 means the server is not
    /// Companion, or runs without S3 uploads enabled — a setup problem, not this file's.
    fn not_companion_on_404(&self, error: BackendError, route: &str) -> BackendError {
        match error {
            BackendError::Rejected { status: 404, message } => BackendError::BadResponse {
                url: self.http.base_shown(),
                detail: format!(
                    "HTTP 404 for /{route} ({message}); is this Uppy Companion, with S3 uploads configured?"
                ),
            },
            other => other,
        }
    }

    fn bad(&self, detail: String) -> BackendError {
        BackendError::BadResponse { url: self.http.base_shown(), detail }
    }

    /// The bucket URL from one signed form, asked for at most once per backend.
    async fn bucket_url(&self, file: &FileToSign) -> Option<String> {
        self.bucket_url
            .get_or_init(|| async {
                match self.upload_parameters(&file.file_name, &content_type_of(file)).await {
                    Ok(params) if params.is_post() => url::Url::parse(&params.url).ok().map(|u| form_base(&u)),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::debug!("could not learn the bucket URL from Companion: {e}");
                        None
                    }
                }
            })
            .await
            .clone()
    }
}

/// `GET /s3/params` answer: `{method, url, fields, expires}`; look-alike servers may answer a
/// PUT with `headers` and `key`.
#[derive(Deserialize)]
struct UploadParameters {
    /// Uppy's own client treats a missing method as POST.
    #[serde(default = "post")]
    method: String,
    url: String,
    #[serde(default, deserialize_with = "fields_in_order")]
    fields: Vec<(String, String)>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    key: Option<String>,
}

impl UploadParameters {
    fn is_post(&self) -> bool {
        self.method.eq_ignore_ascii_case("POST")
    }
}

fn post() -> String {
    "POST".into()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreatedMultipart {
    key: String,
    upload_id: String,
    bucket: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignedBatch {
    presigned_urls: BTreeMap<String, String>,
}

#[async_trait]
impl SigningBackend for CompanionBackend {
    fn max_presign_batch(&self) -> usize {
        1
    }

    fn max_file_size(&self) -> u64 {
        MAX_OBJECT_SIZE
    }

    async fn presign(&self, files: &[FileToSign]) -> Result<Vec<Signed>, BackendError> {
        let mut signed = Vec::with_capacity(files.len());
        for file in files {
            let params = match self.upload_parameters(&file.file_name, &content_type_of(file)).await {
                Err(e) if e.is_batch_level() => return Err(e),
                Err(e) => {
                    signed.push(Err(e));
                    continue;
                }
                Ok(params) => params,
            };
            let upload = presigned_upload(file, params).map_err(|detail| self.bad(detail));
            if let Ok(PresignedUpload { method: UploadMethod::PostForm { .. }, url, .. }) = &upload {
                let _ = self.bucket_url.set(Some(form_base(url)));
            }
            signed.push(upload);
        }
        Ok(signed)
    }

    /// Companion has no completion route: the upload is done once S3 has the bytes.
    async fn report(&self, _report: &CompletionReport) -> Result<(), BackendError> {
        Ok(())
    }

    async fn check(&self) -> Result<(), BackendError> {
        let params = self.upload_parameters(CHECK_FILE_NAME, "text/plain").await?;
        super::parse_upload_url(&params.url).map_err(|detail| self.bad(detail))?;
        Ok(())
    }

    fn supports_multipart(&self) -> bool {
        true
    }

    async fn create_multipart(&self, file: &FileToSign) -> Result<MultipartUpload, BackendError> {
        let bucket_url = self.bucket_url(file).await;
        let body = json!({ "filename": file.file_name, "type": content_type_of(file), "metadata": {} });
        let created: CreatedMultipart =
            self.http.post("s3/multipart", &body).await.map_err(|e| self.not_companion_on_404(e, "s3/multipart"))?;
        if created.key.is_empty() || created.upload_id.is_empty() {
            return Err(self.bad("the multipart upload came back without a key or uploadId".into()));
        }
        let object_url = match (bucket_url, &created.bucket) {
            (Some(base), _) => object_url(&base, &created.key),
            (None, Some(bucket)) => format!("s3://{bucket}/{}", created.key),
            (None, None) => created.key.clone(),
        };
        Ok(MultipartUpload { key: created.key, upload_id: created.upload_id, object_url })
    }

    async fn sign_parts(
        &self,
        upload: &MultipartUpload,
        parts: &[PartToSign],
    ) -> Result<Vec<SignedPart>, BackendError> {
        let numbers: Vec<u32> = parts.iter().map(|p| p.part_number).collect();
        let signed: SignedBatch = self.http.get(&sign_parts_route(upload, &numbers)).await?;
        signed_parts(signed, &numbers).map_err(|detail| self.bad(detail))
    }

    async fn complete_multipart(&self, upload: &MultipartUpload, parts: &[CompletedPart]) -> Result<(), BackendError> {
        let body = json!({
            "parts": parts.iter().map(|p| json!({ "PartNumber": p.part_number, "ETag": p.etag })).collect::<Vec<_>>(),
        });
        let route = format!("{}/complete?key={}", multipart_route(upload), encode(&upload.key));
        let _: serde_json::Value = self.http.post(&route, &body).await?;
        Ok(())
    }

    async fn list_parts(&self, upload: &MultipartUpload) -> Result<Vec<ListedPart>, BackendError> {
        let route = format!("{}?key={}", multipart_route(upload), encode(&upload.key));
        let parts: Vec<CompanionPart> = self.http.get(&route).await?;
        Ok(parts.into_iter().map(|p| ListedPart { part_number: p.part_number, etag: p.etag, size: p.size }).collect())
    }

    async fn abort_multipart(&self, upload: &MultipartUpload) -> Result<(), BackendError> {
        let route = format!("{}?key={}", multipart_route(upload), encode(&upload.key));
        let _: serde_json::Value = self.http.delete(&route).await?;
        Ok(())
    }
}

fn content_type_of(file: &FileToSign) -> String {
    if file.content_type.is_empty() {
        "application/octet-stream".into()
    } else {
        file.content_type.clone()
    }
}

/// A part as Companion lists it (S3's ListParts, passed through).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CompanionPart {
    part_number: u32,
    #[serde(rename = "ETag")]
    etag: String,
    size: u64,
}

fn encode(component: &str) -> String {
    utf8_percent_encode(component, COMPONENT).to_string()
}

fn params_route(file_name: &str, content_type: &str) -> String {
    format!("s3/params?filename={}&type={}", encode(file_name), encode(content_type))
}

fn multipart_route(upload: &MultipartUpload) -> String {
    format!("s3/multipart/{}", encode(&upload.upload_id))
}

fn sign_parts_route(upload: &MultipartUpload, numbers: &[u32]) -> String {
    let numbers: Vec<String> = numbers.iter().map(u32::to_string).collect();
    format!("{}/batch?key={}&partNumbers={}", multipart_route(upload), encode(&upload.key), numbers.join(","))
}

/// The form's URL without a trailing slash (a virtual-hosted bucket's form URL is the host root).
fn form_base(url: &url::Url) -> String {
    super::redact_url(url).trim_end_matches('/').to_owned()
}

/// The object's path-style URL under a bucket URL, the key encoded segment by segment.
fn object_url(bucket_url: &str, key: &str) -> String {
    let segments: Vec<String> = key.split('/').map(encode).collect();
    format!("{bucket_url}/{}", segments.join("/"))
}

fn presigned_upload(file: &FileToSign, params: UploadParameters) -> Result<PresignedUpload, String> {
    let url = super::parse_upload_url(&params.url)?;
    if params.is_post() {
        let key = params
            .fields
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("key"))
            .map(|(_, key)| key.clone())
            .ok_or("the presigned POST form has no key field")?;
        if key.contains("${filename}") {
            return Err(format!(
                "the form's key {key:?} asks S3 to substitute the file name, which Dropship does not do"
            ));
        }
        Ok(PresignedUpload {
            upload_id: file.upload_id.clone(),
            object_url: object_url(&form_base(&url), &key),
            key: Some(key),
            url,
            headers: BTreeMap::new(),
            method: UploadMethod::PostForm { fields: params.fields },
        })
    } else if params.method.eq_ignore_ascii_case("PUT") {
        let key = params.key.filter(|k| !k.is_empty()).or_else(|| super::derive_key_from_url(&url));
        Ok(PresignedUpload {
            upload_id: file.upload_id.clone(),
            key,
            object_url: super::redact_url(&url),
            url,
            headers: params.headers,
            method: UploadMethod::Put,
        })
    } else {
        Err(format!("unsupported upload method {:?}; expected POST or PUT", params.method))
    }
}

/// The URLs in the order asked for; every part must have one.
fn signed_parts(batch: SignedBatch, numbers: &[u32]) -> Result<Vec<SignedPart>, String> {
    let mut urls = batch.presigned_urls;
    numbers
        .iter()
        .map(|&number| {
            let raw = urls.remove(&number.to_string()).ok_or_else(|| format!("no URL came back for part {number}"))?;
            Ok(SignedPart {
                part_number: number,
                url: super::parse_upload_url(&raw)?,
                // Companion signs no checksum and no headers, and does not say when URLs expire.
                headers: BTreeMap::new(),
                expires_at: None,
            })
        })
        .collect()
}

/// A form's fields in the order the server sent them: S3 wants the file last and the policy's
/// fields before it, and order is what a browser would keep. Non-string values are kept as
/// their JSON text; `null` reads as no fields.
fn fields_in_order<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<(String, String)>, D::Error> {
    struct Fields;
    impl<'de> Visitor<'de> for Fields {
        type Value = Vec<(String, String)>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object of form fields")
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
            while let Some((name, value)) = map.next_entry::<String, serde_json::Value>()? {
                let value = match value {
                    serde_json::Value::String(text) => text,
                    other => other.to_string(),
                };
                fields.push((name, value));
            }
            Ok(fields)
        }
    }
    deserializer.deserialize_any(Fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> FileToSign {
        FileToSign {
            upload_id: "u-1".into(),
            file_name: name.into(),
            size: 3,
            content_type: "application/pdf".into(),
            checksum_sha256: String::new(),
            key_prefix: None,
        }
    }

    fn parse(json: &str) -> UploadParameters {
        serde_json::from_str(json).expect("a Companion answer")
    }

    /// What Companion 6.2.2 answers on `/s3/params`, fields in its order.
    const POST_ANSWER: &str = r#"{"method":"POST","url":"http://127.0.0.1:8333/dropship-test","fields":{
        "success_action_status":"201","content-type":"application/pdf","bucket":"dropship-test",
        "X-Amz-Algorithm":"AWS4-HMAC-SHA256","X-Amz-Credential":"ak/20261129/us-east-1/s3/aws4_request",
        "X-Amz-Date":"20261129T202509Z","key":"d696d5db-résumé final (2).pdf","Policy":"eyJ9",
        "X-Amz-Signature":"1be0"},"expires":800}"#;

    #[test]
    fn a_post_answer_becomes_a_form_with_the_fields_in_the_order_companion_sent_them() {
        let upload = presigned_upload(&file("résumé final (2).pdf"), parse(POST_ANSWER)).unwrap();
        let UploadMethod::PostForm { fields } = &upload.method else { panic!("Companion answers a POST form") };
        let names: Vec<&str> = fields.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "success_action_status",
                "content-type",
                "bucket",
                "X-Amz-Algorithm",
                "X-Amz-Credential",
                "X-Amz-Date",
                "key",
                "Policy",
                "X-Amz-Signature"
            ],
            "the fields keep the server's order"
        );
        assert_eq!(upload.key.as_deref(), Some("d696d5db-résumé final (2).pdf"), "the key is the form's key field");
        assert_eq!(upload.url.as_str(), "http://127.0.0.1:8333/dropship-test");
        assert!(upload.headers.is_empty());
    }

    #[test]
    fn a_post_form_object_url_is_the_form_url_and_the_key_encoded_per_segment() {
        let upload = presigned_upload(&file("x"), parse(POST_ANSWER)).unwrap();
        assert_eq!(
            upload.object_url,
            "http://127.0.0.1:8333/dropship-test/d696d5db-r%C3%A9sum%C3%A9%20final%20%282%29.pdf"
        );
        assert_eq!(
            object_url("https://b.s3.amazonaws.com", "a b/c?d/é"),
            "https://b.s3.amazonaws.com/a%20b/c%3Fd/%C3%A9"
        );
        let host_root: url::Url = "https://b.s3.amazonaws.com/".parse().unwrap();
        assert_eq!(form_base(&host_root), "https://b.s3.amazonaws.com", "no double slash for a bucket in the host");
    }

    #[test]
    fn a_post_answer_without_a_key_field_is_a_bad_response() {
        let answer = parse(r#"{"method":"POST","url":"http://h/b","fields":{"Policy":"p"}}"#);
        assert!(presigned_upload(&file("x"), answer).unwrap_err().contains("no key field"));
    }

    #[test]
    fn a_missing_method_means_post_as_in_uppy() {
        let answer = parse(r#"{"url":"http://h/b","fields":{"key":"k","n":5}}"#);
        let upload = presigned_upload(&file("x"), answer).unwrap();
        let expected = UploadMethod::PostForm { fields: vec![("key".into(), "k".into()), ("n".into(), "5".into())] };
        assert!(upload.method == expected, "a POST form, numbers kept as text");
    }

    #[test]
    fn a_put_answer_keeps_its_headers_and_takes_the_key_from_the_answer_or_else_the_url() {
        let with_key = parse(
            r#"{"method":"PUT","url":"http://127.0.0.1:1/b/ignored?X-Amz-Signature=s","key":"given/k","headers":{"content-type":"application/pdf"},"fields":{}}"#,
        );
        let upload = presigned_upload(&file("x"), with_key).unwrap();
        assert!(upload.method == UploadMethod::Put);
        assert_eq!(upload.key.as_deref(), Some("given/k"));
        assert_eq!(upload.headers.get("content-type").map(String::as_str), Some("application/pdf"));
        assert_eq!(upload.object_url, "http://127.0.0.1:1/b/ignored", "no signature in the object URL");

        let without_key =
            parse(r#"{"method":"put","url":"http://127.0.0.1:1/b/a%20b.pdf?X-Amz-Signature=s","fields":null}"#);
        assert_eq!(presigned_upload(&file("x"), without_key).unwrap().key.as_deref(), Some("a b.pdf"));
    }

    #[test]
    fn an_unknown_method_or_a_url_that_is_not_http_is_refused() {
        assert!(presigned_upload(&file("x"), parse(r#"{"method":"PATCH","url":"http://h/b"}"#)).is_err());
        assert!(presigned_upload(&file("x"), parse(r#"{"method":"PUT","url":"ftp://h/b"}"#)).is_err());
    }

    #[test]
    fn routes_encode_the_file_name_key_and_upload_id() {
        assert_eq!(
            params_route("résumé final (2).pdf", "application/pdf"),
            "s3/params?filename=r%C3%A9sum%C3%A9%20final%20%282%29.pdf&type=application%2Fpdf"
        );
        let upload =
            MultipartUpload { key: "a/b&c=d.bin".into(), upload_id: "x/y+z".into(), object_url: String::new() };
        assert_eq!(
            sign_parts_route(&upload, &[1, 2, 3]),
            "s3/multipart/x%2Fy%2Bz/batch?key=a%2Fb%26c%3Dd.bin&partNumbers=1,2,3"
        );
        let http =
            BackendHttp::new(reqwest::Client::new(), "http://127.0.0.1:3020/companion".parse().unwrap(), String::new());
        assert_eq!(
            http.url(&sign_parts_route(&upload, &[7])).as_str(),
            "http://127.0.0.1:3020/companion/s3/multipart/x%2Fy%2Bz/batch?key=a%2Fb%26c%3Dd.bin&partNumbers=7",
            "joining onto the base keeps the encoding and the base path"
        );
    }

    #[test]
    fn batch_signed_part_urls_come_back_in_the_order_asked_without_headers_or_expiry() {
        let batch: SignedBatch = serde_json::from_str(
            r#"{"presignedUrls":{"2":"http://127.0.0.1:1/b/k?partNumber=2&X-Amz-Signature=s","1":"http://127.0.0.1:1/b/k?partNumber=1"}}"#,
        )
        .unwrap();
        let parts = signed_parts(batch, &[1, 2]).unwrap();
        assert_eq!(parts.iter().map(|p| p.part_number).collect::<Vec<_>>(), [1, 2]);
        assert!(parts[1].url.as_str().contains("partNumber=2"), "each part gets its own URL");
        assert!(parts.iter().all(|p| p.headers.is_empty() && p.expires_at.is_none()));
    }

    #[test]
    fn a_batch_missing_a_part_is_a_bad_response() {
        let batch: SignedBatch = serde_json::from_str(r#"{"presignedUrls":{"1":"http://h/b/k"}}"#).unwrap();
        let Err(error) = signed_parts(batch, &[1, 2]) else { panic!("part 2 has no URL") };
        assert_eq!(error, "no URL came back for part 2");
    }

    #[test]
    fn a_created_multipart_upload_reads_companions_camel_case() {
        let created: CreatedMultipart =
            serde_json::from_str(r#"{"key":"u-résumé.pdf","uploadId":"abc123","bucket":"dropship-test"}"#).unwrap();
        assert_eq!((created.key.as_str(), created.upload_id.as_str()), ("u-résumé.pdf", "abc123"));
        assert_eq!(created.bucket.as_deref(), Some("dropship-test"));
    }
}
