//! Helpers shared by the backend's system tests: a small JSON client for the backend and raw
//! HTTP for presigned S3 URLs. Every request runs on the testkit's runtime.
#![allow(dead_code)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use dropship_testkit::{block_on, Backend, BackendOptions, S3Server};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A backend on the process's shared SeaweedFS, using the binary this package just built.
pub fn start_backend() -> Backend {
    start_backend_with(BackendOptions::default())
}

pub fn start_backend_with(mut options: BackendOptions) -> Backend {
    options.binary = Some(env!("CARGO_BIN_EXE_dropship-backend").into());
    Backend::start_with(S3Server::shared(), options)
}

pub fn sha256_base64(bytes: &[u8]) -> String {
    STANDARD.encode(Sha256::digest(bytes))
}

pub fn new_upload_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A JSON response: status and body (`Value::Null` when the body is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().build().expect("an HTTP client")
}

/// Sends `method path` to the backend with an optional bearer token and raw body.
pub fn call(backend: &Backend, method: &str, path: &str, token: Option<&str>, body: Option<Vec<u8>>) -> Reply {
    let url = format!("{}{path}", backend.url);
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a valid method");
    block_on(async move {
        let mut request = http().request(method, &url).header("content-type", "application/json");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("request to {url} failed: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Reply { status, body: serde_json::from_str(&text).unwrap_or(Value::Null), text }
    })
}

pub fn post_json(backend: &Backend, path: &str, body: &Value) -> Reply {
    call(backend, "POST", path, Some(&backend.token), Some(body.to_string().into_bytes()))
}

pub fn get_json(backend: &Backend, path: &str) -> Reply {
    call(backend, "GET", path, Some(&backend.token), None)
}

/// One file for `POST /api/v1/uploads/presign`.
pub fn presign_entry(id: &str, name: &str, bytes: &[u8], content_type: &str) -> Value {
    json!({
        "client_upload_id": id,
        "file_name": name,
        "size": bytes.len(),
        "content_type": content_type,
        "checksum_sha256": sha256_base64(bytes),
    })
}

/// Presigns one file and returns the upload entry of the answer.
pub fn presign_one(backend: &Backend, id: &str, name: &str, bytes: &[u8]) -> Value {
    let reply = post_json(
        backend,
        "/api/v1/uploads/presign",
        &json!({ "files": [presign_entry(id, name, bytes, "text/plain")] }),
    );
    assert_eq!(reply.status, StatusCode::OK, "presign succeeds: {}", reply.text);
    reply.body["uploads"][0].clone()
}

/// PUTs `body` to a URL with the given headers: (status, response text).
pub fn put(url: &str, headers: &[(String, String)], body: &[u8]) -> (StatusCode, String) {
    let reply = put_keeping_etag(url, headers, body);
    (reply.status, reply.text)
}

/// What S3 answered to a PUT of a part: status, `ETag` header and body text.
#[derive(Debug)]
pub struct PutReply {
    pub status: StatusCode,
    pub etag: Option<String>,
    pub text: String,
}

/// PUTs `body` to a URL with the given headers and keeps the `ETag` that S3 answers with.
pub fn put_keeping_etag(url: &str, headers: &[(String, String)], body: &[u8]) -> PutReply {
    let url = url.to_owned();
    let headers = headers.to_vec();
    let body = body.to_vec();
    block_on(async move {
        let mut request = http().put(&url).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("the PUT reaches S3");
        let status = response.status();
        let etag = response.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_owned);
        PutReply { status, etag, text: response.text().await.unwrap_or_default() }
    })
}

/// The `headers` object of a presigned upload as pairs.
pub fn headers_of(upload: &Value) -> Vec<(String, String)> {
    upload["headers"]
        .as_object()
        .map(|h| h.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
        .unwrap_or_default()
}

/// Presigns and uploads one file; returns the upload entry.
pub fn upload_one(backend: &Backend, id: &str, name: &str, bytes: &[u8]) -> Value {
    let upload = presign_one(backend, id, name, bytes);
    let url = upload["url"].as_str().expect("a url");
    let (status, text) = put(url, &headers_of(&upload), bytes);
    assert_eq!(status, StatusCode::OK, "the presigned PUT succeeds: {text}");
    upload
}

/// The report body for an uploaded file.
pub fn report_body(key: &str, name: &str, bytes: &[u8]) -> Value {
    json!({
        "key": key,
        "file_name": name,
        "size": bytes.len(),
        "content_type": "text/plain",
        "checksum_sha256": sha256_base64(bytes),
    })
}

pub fn report(backend: &Backend, id: &str, body: &Value) -> Reply {
    post_json(backend, &format!("/api/v1/uploads/{id}/report"), body)
}

/// The `error.code` of a native error body.
pub fn error_code(reply: &Reply) -> &str {
    reply.body["error"]["code"].as_str().unwrap_or("(no error code)")
}
