//! The Rails guide's two routes: a bare presigned URL, then the attachment record.

mod common;

use common::*;
use dropship_testkit::S3Server;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The key in a path-style URL: the URL-decoded path minus the bucket segment.
fn key_from_path_style_url(url: &str) -> String {
    let path = url.split_once("://").unwrap().1.split_once('/').unwrap().1.split('?').next().unwrap();
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8().unwrap().into_owned();
    decoded.split_once('/').unwrap().1.to_owned()
}

fn generate_upload_url(backend: &dropship_testkit::Backend, file_name: &str) -> String {
    let reply = post_json(backend, "/api/attachments/generate_upload_url", &json!({ "file_name": file_name }));
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let fields: Vec<&String> = reply.body.as_object().unwrap().keys().collect();
    assert_eq!(fields, ["url"], "the guide's contract: only a url");
    reply.body["url"].as_str().unwrap().to_owned()
}

fn attachment(key: Option<&str>, url: &str, bytes: &[u8]) -> Value {
    let mut attachment = json!({
        "file_name": "report final.pdf",
        "url": url.split('?').next().unwrap(),
        "byte_size": bytes.len(),
        "content_type": "application/pdf",
        "checksum": sha256_base64(bytes),
    });
    if let Some(key) = key {
        attachment["key"] = json!(key);
    }
    json!({ "attachment": attachment })
}

#[test]
fn generate_upload_url_then_put_then_attachments_records_the_upload() {
    let backend = start_backend();
    let bytes = b"%PDF-1.4 rails flavour";
    let url = generate_upload_url(&backend, "report final.pdf");
    let (status, text) = put(&url, &[("content-type".to_owned(), "application/pdf".to_owned())], bytes);
    assert_eq!(status, StatusCode::OK, "any content type is accepted on a rails URL: {text}");
    let key = key_from_path_style_url(&url);
    assert!(key.starts_with("uploads/") && key.ends_with("/report final.pdf"), "{key}");
    assert_eq!(S3Server::shared().get_object(&key).as_deref(), Some(bytes.as_slice()), "stored at the derived key");

    let reply = post_json(&backend, "/api/attachments", &attachment(Some(&key), &url, bytes));
    assert_eq!(reply.status, StatusCode::OK, "the guide's controller answers 200: {}", reply.text);
    assert!(reply.body["id"].as_i64().is_some(), "the record has a numeric id: {}", reply.text);
    assert_eq!(reply.body["key"], key);
    assert_eq!(reply.body["size"], bytes.len());
    assert_eq!(reply.body["flavour"], "rails");
    assert!(reply.body["client_upload_id"].is_null(), "rails records have no client upload id");

    let again = post_json(&backend, "/api/attachments", &attachment(Some(&key), &url, bytes));
    assert_eq!(again.status, StatusCode::OK, "a repeat is fine: {}", again.text);
    assert_eq!(again.body["id"], reply.body["id"], "idempotent on the key: the same record");
    let records = backend.records();
    assert_eq!(records.len(), 1, "one record");
    assert_eq!(records[0]["flavour"], "rails");
}

#[test]
fn a_rails_url_accepts_a_put_with_no_headers_at_all() {
    let backend = start_backend();
    let url = generate_upload_url(&backend, "bare.bin");
    let (status, text) = put(&url, &[], b"bare");
    assert_eq!(status, StatusCode::OK, "nothing but the host is signed: {text}");
}

#[test]
fn an_attachment_without_a_key_is_matched_through_its_url() {
    let backend = start_backend();
    let bytes = b"key from url";
    let url = generate_upload_url(&backend, "naïve name.txt");
    assert_eq!(put(&url, &[], bytes).0, StatusCode::OK);
    let reply = post_json(&backend, "/api/attachments", &attachment(None, &url, bytes));
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["key"], key_from_path_style_url(&url), "the key is derived from the URL path");
}

#[test]
fn rails_validation_failures_answer_422_with_the_errors_hash() {
    let backend = start_backend();
    let blank = post_json(&backend, "/api/attachments/generate_upload_url", &json!({}));
    assert_eq!(blank.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(blank.body, json!({ "errors": { "file_name": ["can't be blank"] } }), "Rails' errors shape");

    let empty = post_json(&backend, "/api/attachments", &json!({ "attachment": {} }));
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    for field in ["file_name", "byte_size", "key"] {
        assert!(empty.body["errors"][field].is_array(), "{field} is reported: {}", empty.text);
    }

    let url = generate_upload_url(&backend, "never.txt");
    let missing = post_json(&backend, "/api/attachments", &attachment(None, &url, b"never uploaded"));
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", missing.text);
    assert!(missing.body["errors"]["key"][0].as_str().unwrap().contains("no object"), "{}", missing.text);

    let bytes = b"sized";
    let url = generate_upload_url(&backend, "sized.txt");
    assert_eq!(put(&url, &[], bytes).0, StatusCode::OK);
    let mut wrong_size = attachment(None, &url, bytes);
    wrong_size["attachment"]["byte_size"] = json!(99);
    let reply = post_json(&backend, "/api/attachments", &wrong_size);
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(reply.body["errors"]["byte_size"].is_array(), "{}", reply.text);

    let mut bad_type = attachment(None, &url, bytes);
    bad_type["attachment"]["byte_size"] = json!("five");
    let reply = post_json(&backend, "/api/attachments", &bad_type);
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.text);
    assert!(
        reply.body["errors"]["byte_size"][0].as_str().is_some_and(|m| m.contains("invalid type")),
        "a mistyped field is that field's error: {}",
        reply.text
    );
    assert!(backend.records().is_empty(), "nothing was recorded");
}

#[test]
fn malformed_json_on_a_rails_route_answers_400_in_the_errors_shape() {
    let backend = start_backend();
    let reply = call(&backend, "POST", "/api/attachments", Some(&backend.token), Some(b"{not json".to_vec()));
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body["errors"]["base"][0].as_str().unwrap().contains("not valid JSON"), "{}", reply.text);
}
