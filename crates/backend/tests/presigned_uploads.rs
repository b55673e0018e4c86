//! Presigned PUTs against the real SeaweedFS: what S3 accepts and what it refuses.

mod common;

use common::*;
use dropship_testkit::{BackendOptions, S3Server};
use reqwest::StatusCode;
use serde_json::json;

#[test]
fn a_presigned_put_with_the_returned_headers_stores_the_exact_bytes() {
    let backend = start_backend();
    let bytes: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let id = new_upload_id();
    let upload = upload_one(&backend, &id, "data.bin", &bytes);

    let key = upload["key"].as_str().unwrap();
    assert_eq!(upload["client_upload_id"], id, "the id is echoed");
    assert_eq!(upload["method"], "PUT");
    assert_eq!(
        S3Server::shared().get_object(key).as_deref(),
        Some(bytes.as_slice()),
        "the object in the bucket is byte-identical to what was sent"
    );
    let url = upload["url"].as_str().unwrap();
    assert_eq!(
        upload["object_url"].as_str().unwrap(),
        url.split('?').next().unwrap(),
        "object_url is the URL without its query"
    );
}

#[test]
fn the_presign_response_asks_for_exactly_the_content_type_and_checksum_headers() {
    let backend = start_backend();
    let bytes = b"hello";
    let upload = presign_one(&backend, &new_upload_id(), "hello.txt", bytes);
    assert_eq!(
        upload["headers"],
        json!({ "content-type": "text/plain", "x-amz-checksum-sha256": sha256_base64(bytes) }),
        "every signed header except host is returned"
    );
    let expires_at = upload["expires_at"].as_str().unwrap();
    assert!(expires_at.ends_with('Z') && expires_at.contains('T'), "RFC 3339 expiry: {expires_at}");
}

#[test]
fn a_batch_of_files_is_presigned_in_request_order() {
    let backend = start_backend();
    let ids: Vec<String> = (0..5).map(|_| new_upload_id()).collect();
    let files: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| presign_entry(id, &format!("file-{i}.txt"), format!("content {i}").as_bytes(), "text/plain"))
        .collect();
    let reply = post_json(&backend, "/api/v1/uploads/presign", &json!({ "files": files }));
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let uploads = reply.body["uploads"].as_array().unwrap();
    let echoed: Vec<&str> = uploads.iter().map(|u| u["client_upload_id"].as_str().unwrap()).collect();
    assert_eq!(echoed, ids.iter().map(String::as_str).collect::<Vec<_>>(), "same order as the request");
    for (i, upload) in uploads.iter().enumerate() {
        assert!(upload["key"].as_str().unwrap().ends_with(&format!("/file-{i}.txt")), "{upload}");
    }
}

#[test]
fn a_url_with_one_signature_character_changed_is_refused_by_s3() {
    let backend = start_backend();
    let bytes = b"tamper with the signature";
    let upload = presign_one(&backend, &new_upload_id(), "t.txt", bytes);
    let url = upload["url"].as_str().unwrap();
    let last = url.chars().last().unwrap();
    let tampered = format!("{}{}", &url[..url.len() - 1], if last == '0' { '1' } else { '0' });
    assert!(tampered.contains("X-Amz-Signature="), "the signature is the last parameter");
    let (status, text) = put(&tampered, &headers_of(&upload), bytes);
    assert_eq!(status, StatusCode::FORBIDDEN, "S3 refuses a changed signature: {text}");
    assert!(S3Server::shared().get_object(upload["key"].as_str().unwrap()).is_none(), "nothing was stored");
}

#[test]
fn a_url_with_the_key_changed_is_refused_by_s3() {
    let backend = start_backend();
    let bytes = b"tamper with the key";
    let upload = presign_one(&backend, &new_upload_id(), "original.txt", bytes);
    let url = upload["url"].as_str().unwrap();
    let tampered = url.replacen("original.txt", "other.txt", 1);
    assert_ne!(tampered, url);
    let (status, text) = put(&tampered, &headers_of(&upload), bytes);
    assert_eq!(status, StatusCode::FORBIDDEN, "a URL signed for one key cannot write another: {text}");
}

#[test]
fn a_different_content_type_than_the_signed_one_is_refused_by_s3() {
    let backend = start_backend();
    let bytes = b"content type is signed";
    let upload = presign_one(&backend, &new_upload_id(), "ct.txt", bytes);
    let mut headers = headers_of(&upload);
    for (name, value) in &mut headers {
        if name == "content-type" {
            *value = "application/json".to_owned();
        }
    }
    let (status, text) = put(upload["url"].as_str().unwrap(), &headers, bytes);
    assert_eq!(status, StatusCode::FORBIDDEN, "the content type is part of the signature: {text}");
}

#[test]
fn an_expired_url_is_refused_by_s3() {
    let backend = start_backend_with(BackendOptions { url_expiry_secs: Some(1), ..Default::default() });
    let bytes = b"too late";
    let upload = presign_one(&backend, &new_upload_id(), "late.txt", bytes);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (status, text) = put(upload["url"].as_str().unwrap(), &headers_of(&upload), bytes);
    assert_eq!(status, StatusCode::FORBIDDEN, "a URL past its expiry is refused: {text}");
}

#[test]
fn a_body_that_differs_from_the_signed_checksum_is_refused_by_s3() {
    let backend = start_backend();
    let signed_for = b"the bytes the client hashed";
    let upload = presign_one(&backend, &new_upload_id(), "corrupt.txt", signed_for);
    let corrupted = b"the bytes the client hashes"; // same length, one byte differs
    let (status, text) = put(upload["url"].as_str().unwrap(), &headers_of(&upload), corrupted);
    assert_eq!(status, StatusCode::BAD_REQUEST, "S3 verifies the signed SHA-256: {text}");
    assert!(text.contains("BadDigest"), "S3 names the digest mismatch: {text}");
    assert!(S3Server::shared().get_object(upload["key"].as_str().unwrap()).is_none(), "nothing was stored");
}

#[test]
fn a_put_without_the_checksum_header_is_refused_by_s3() {
    let backend = start_backend();
    let bytes = b"checksum header left out";
    let upload = presign_one(&backend, &new_upload_id(), "nock.txt", bytes);
    let headers: Vec<_> = headers_of(&upload).into_iter().filter(|(n, _)| n != "x-amz-checksum-sha256").collect();
    let (status, text) = put(upload["url"].as_str().unwrap(), &headers, bytes);
    assert_eq!(status, StatusCode::FORBIDDEN, "a signed header cannot be dropped: {text}");
}

#[test]
fn keys_are_prefix_uuid_and_sanitised_name_whatever_name_the_client_sends() {
    let backend = start_backend();
    let long_name = format!("{}.txt", "n".repeat(1000));
    let cases: &[(&str, &str)] = &[
        ("../../etc/passwd", "passwd"),
        ("a/b/c.txt", "c.txt"),
        ("dir\\sub\\win.txt", "win.txt"),
        ("ev\0il.txt", "evil.txt"),
        ("résumé final (2).pdf", "résumé final (2).pdf"),
        ("..", "file"),
        (&long_name, ""),
    ];
    for (name, expected) in cases {
        let bytes = format!("content of {name:?}").into_bytes();
        let upload = upload_one(&backend, &new_upload_id(), name, &bytes);
        let key = upload["key"].as_str().unwrap();
        let parts: Vec<&str> = key.splitn(3, '/').collect();
        assert_eq!(parts[0], "uploads", "the configured prefix comes first: {key}");
        assert!(uuid::Uuid::parse_str(parts[1]).is_ok(), "then a server-chosen UUID: {key}");
        assert!(!parts[2].contains('/') && !parts[2].contains('\0'), "then one clean segment: {key}");
        if expected.is_empty() {
            assert!(
                parts[2].len() <= 200 && parts[2].ends_with(".txt"),
                "a long name is capped, extension kept: {key}"
            );
        } else {
            assert_eq!(parts[2], *expected, "{name:?} is sanitised");
        }
        assert_eq!(
            S3Server::shared().get_object(key),
            Some(bytes),
            "the object landed under exactly the returned key {key:?}"
        );
    }
}
