//! Requests the backend refuses before S3 is involved, auth on every route, and the
//! documents and logs it serves.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Every route with a body that would be valid apart from the token.
fn protected_routes() -> Vec<(&'static str, String)> {
    let id = new_upload_id();
    vec![
        ("GET", "/api/v1/ping".to_owned()),
        ("POST", "/api/v1/uploads/presign".to_owned()),
        ("POST", format!("/api/v1/uploads/{id}/report")),
        ("POST", "/api/v1/reports".to_owned()),
        ("GET", "/api/v1/records".to_owned()),
        ("GET", format!("/api/v1/records/{id}")),
        ("POST", "/api/attachments/generate_upload_url".to_owned()),
        ("POST", "/api/attachments".to_owned()),
    ]
}

#[test]
fn every_api_route_answers_401_without_a_token_or_with_a_wrong_one() {
    let backend = start_backend();
    let body = json!({ "files": [] }).to_string().into_bytes();
    for (method, path) in protected_routes() {
        for token in [None, Some("wrong-token"), Some("")] {
            let reply = call(&backend, method, &path, token, Some(body.clone()));
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {path} with token {token:?}");
            assert_eq!(error_code(&reply), "unauthorized", "{method} {path}: {}", reply.text);
        }
    }
}

#[test]
fn a_valid_token_is_accepted_by_ping() {
    let backend = start_backend();
    let reply = get_json(&backend, "/api/v1/ping");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, json!({ "status": "ok", "service": "dropship-backend", "version": "0.1.0" }));
}

#[test]
fn the_openapi_document_is_served_without_a_token() {
    let backend = start_backend();
    let reply = call(&backend, "GET", "/openapi.json", None, None);
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body["openapi"].as_str().unwrap().starts_with("3.1"), "an OpenAPI 3.1 document");
    for (_, path) in protected_routes() {
        let template = path
            .replace(path.split('/').find(|s| uuid::Uuid::parse_str(s).is_ok()).unwrap_or("-"), "{client_upload_id}");
        assert!(reply.body["paths"][&template].is_object(), "{template} is documented");
    }
}

#[test]
fn malformed_json_answers_400_with_the_error_shape() {
    let backend = start_backend();
    let reply =
        call(&backend, "POST", "/api/v1/uploads/presign", Some(&backend.token), Some(b"{\"files\": [".to_vec()));
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&reply), "malformed_json", "{}", reply.text);
    assert!(reply.body["error"]["message"].as_str().unwrap().contains("not valid JSON"), "{}", reply.text);

    let empty = call(&backend, "POST", "/api/v1/uploads/presign", Some(&backend.token), None);
    assert_eq!(empty.status, StatusCode::BAD_REQUEST, "an empty body is malformed: {}", empty.text);
}

#[test]
fn a_missing_field_answers_400_naming_the_field_and_its_place() {
    let backend = start_backend();
    let mut file = presign_entry(&new_upload_id(), "a.txt", b"a", "text/plain");
    file.as_object_mut().unwrap().remove("checksum_sha256");
    let reply = post_json(&backend, "/api/v1/uploads/presign", &json!({ "files": [file] }));
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&reply), "invalid_request");
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("files[0]") && message.contains("checksum_sha256"), "{message}");
}

#[test]
fn a_batch_of_more_than_1000_files_answers_422() {
    let backend = start_backend();
    let files: Vec<Value> = (0..1001).map(|_| presign_entry(&new_upload_id(), "f", b"x", "text/plain")).collect();
    let reply = post_json(&backend, "/api/v1/uploads/presign", &json!({ "files": files }));
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.text);
    assert_eq!(error_code(&reply), "batch_too_large");

    let reports: Vec<Value> = (0..1001).map(|_| json!({ "client_upload_id": new_upload_id(), "key": "k", "file_name": "f", "size": 1, "checksum_sha256": sha256_base64(b"x") })).collect();
    let reply = post_json(&backend, "/api/v1/reports", &json!({ "reports": reports }));
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.text);
    assert_eq!(error_code(&reply), "batch_too_large");

    let none = post_json(&backend, "/api/v1/uploads/presign", &json!({ "files": [] }));
    assert_eq!(error_code(&none), "empty_batch", "an empty batch is refused too");
}

#[test]
fn exactly_1000_files_are_presigned() {
    let backend = start_backend();
    let files: Vec<Value> =
        (0..1000).map(|i| presign_entry(&new_upload_id(), &format!("f{i}"), b"x", "text/plain")).collect();
    let reply = post_json(&backend, "/api/v1/uploads/presign", &json!({ "files": files }));
    assert_eq!(reply.status, StatusCode::OK, "{}", &reply.text[..reply.text.len().min(300)]);
    assert_eq!(reply.body["uploads"].as_array().map(Vec::len), Some(1000));
}

#[test]
fn a_body_over_2_mib_answers_413() {
    let backend = start_backend();
    let huge = format!("{{\"files\":[{{\"file_name\":\"{}\"}}]}}", "a".repeat(3 * 1024 * 1024));
    let reply = call(&backend, "POST", "/api/v1/uploads/presign", Some(&backend.token), Some(huge.into_bytes()));
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&reply), "payload_too_large", "{}", reply.text);
}

#[test]
fn a_file_over_5_gib_is_refused_with_a_pointer_to_multipart() {
    let backend = start_backend();
    let mut file = presign_entry(&new_upload_id(), "huge.iso", b"x", "application/octet-stream");
    file["size"] = json!(5u64 * 1024 * 1024 * 1024 + 1);
    let reply = post_json(&backend, "/api/v1/uploads/presign", &json!({ "files": [file] }));
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(&reply), "file_too_large");
    assert!(reply.body["error"]["message"].as_str().unwrap().contains("multipart"), "{}", reply.text);
}

#[test]
fn invalid_fields_are_refused_with_their_own_codes() {
    let backend = start_backend();
    let cases = [
        ("client_upload_id", json!("not-a-uuid"), "invalid_client_upload_id"),
        ("checksum_sha256", json!("deadbeef"), "invalid_checksum"),
        ("content_type", json!("text/plain\r\nx-evil: 1"), "invalid_content_type"),
    ];
    for (field, value, code) in cases {
        let mut file = presign_entry(&new_upload_id(), "a.txt", b"a", "text/plain");
        file[field] = value;
        let reply = post_json(&backend, "/api/v1/uploads/presign", &json!({ "files": [file] }));
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {}", reply.text);
        assert_eq!(error_code(&reply), code, "{field}");
    }
    let id = new_upload_id();
    let twice = [presign_entry(&id, "a", b"a", "text/plain"), presign_entry(&id, "b", b"b", "text/plain")];
    let reply = post_json(&backend, "/api/v1/uploads/presign", &json!({ "files": twice }));
    assert_eq!(error_code(&reply), "duplicate_client_upload_id");
}

#[test]
fn unknown_routes_and_wrong_methods_answer_in_the_error_shape() {
    let backend = start_backend();
    let missing = get_json(&backend, "/api/v1/nothing-here");
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&missing), "not_found");
    let wrong = get_json(&backend, "/api/v1/uploads/presign");
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(&wrong), "method_not_allowed");
}

#[test]
fn the_log_never_contains_the_token_or_a_signature() {
    let backend = start_backend();
    let id = new_upload_id();
    let bytes = b"logged";
    let upload = upload_one(&backend, &id, "log.txt", bytes);
    assert_eq!(
        report(&backend, &id, &report_body(upload["key"].as_str().unwrap(), "log.txt", bytes)).status,
        StatusCode::CREATED
    );
    call(&backend, "GET", "/api/v1/ping", Some("a-wrong-token-value"), None);
    let log = backend.log();
    assert!(log.contains("presigned"), "the backend does log its work: {log}");
    assert!(!log.contains(&backend.token), "the token is never logged");
    assert!(!log.contains("a-wrong-token-value"), "nor a wrong one");
    assert!(!log.contains("X-Amz-Signature") && !log.contains("X-Amz-Credential"), "nor a presigned query: {log}");
}

#[test]
fn a_hundred_thousand_character_file_name_is_cleaned_and_cut_before_it_is_stored_or_keyed() {
    let backend = start_backend();
    let id = new_upload_id();
    let name = format!("{}\u{202E}\u{200B}\u{E0041}.txt", "é".repeat(100_000));
    let upload = upload_one(&backend, &id, &name, b"long name");
    let key = upload["key"].as_str().expect("a key");
    let key_name = key.rsplit('/').next().unwrap();
    assert!(key_name.len() <= 200 && key_name.ends_with(".txt"), "the key's name is capped: {key_name}");
    let reply = report(&backend, &id, &report_body(key, &name, b"long name"));
    assert_eq!(reply.status, StatusCode::CREATED, "accepted, not refused: {}", reply.text);
    let stored = reply.body["file_name"].as_str().expect("a stored name");
    assert_eq!(stored.len(), 1024, "the record keeps at most 1,024 bytes, cut on a character boundary");
    assert!(stored.chars().all(|c| c == 'é'), "the invisible characters are gone, only the visible name is left");
}

#[test]
fn a_report_batch_with_a_malformed_entry_is_refused_whole_and_records_nothing() {
    let backend = start_backend();
    let id = new_upload_id();
    let bytes = b"in a batch";
    let upload = upload_one(&backend, &id, "good.txt", bytes);
    let mut good = report_body(upload["key"].as_str().unwrap(), "good.txt", bytes);
    good["client_upload_id"] = json!(id);
    let cases = [
        ("client_upload_id", json!("not-a-uuid"), "invalid_client_upload_id"),
        ("checksum_sha256", json!("deadbeef"), "invalid_checksum"),
        ("checksum_crc32c", json!("\t\u{b6}"), "invalid_checksum"),
    ];
    for (field, value, code) in cases {
        let mut bad = report_body(upload["key"].as_str().unwrap(), "bad.txt", bytes);
        bad["client_upload_id"] = json!(new_upload_id());
        bad[field] = value;
        let reply = post_json(&backend, "/api/v1/reports", &json!({ "reports": [good, bad] }));
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {}", reply.text);
        assert_eq!(error_code(&reply), code, "{field}");
        assert!(reply.text.contains("Report 1"), "the entry is named: {}", reply.text);
    }
    let record = get_json(&backend, &format!("/api/v1/records/{id}"));
    assert_eq!(record.status, StatusCode::NOT_FOUND, "nothing in a refused batch is recorded: {}", record.text);
}
