//! Native multipart uploads against the real SeaweedFS: create, sign parts in batches, PUT them,
//! list, complete, abort, and report the result. The tests named `seaweedfs_…` pin what the
//! S3 server itself does, so an upgrade that changes it shows up here first.

mod common;

use aws_sdk_s3::types::{ChecksumMode, ChecksumType};
use common::*;
use dropship_testkit::{block_on, Backend, S3Server};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const MIB: usize = 1024 * 1024;

/// `len` bytes that differ from part to part, so a part in the wrong place cannot go unnoticed.
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// A multipart upload under way, as the create route answered it.
struct Upload {
    client_upload_id: String,
    key: String,
    upload_id: String,
    object_url: String,
}

fn create(backend: &Backend, name: &str, size: usize, sha256: bool) -> Upload {
    let client_upload_id = new_upload_id();
    let reply = post_json(
        backend,
        "/api/v1/multipart",
        &json!({
            "client_upload_id": client_upload_id,
            "file_name": name,
            "size": size,
            "content_type": "application/octet-stream",
            "checksum_algorithm": if sha256 { json!("SHA256") } else { Value::Null },
        }),
    );
    assert_eq!(reply.status, StatusCode::CREATED, "create succeeds: {}", reply.text);
    assert_eq!(reply.body["client_upload_id"], client_upload_id, "the id is echoed");
    let field = |name: &str| reply.body[name].as_str().unwrap_or_else(|| panic!("{name} in {}", reply.text)).to_owned();
    Upload { client_upload_id, key: field("key"), upload_id: field("upload_id"), object_url: field("object_url") }
}

/// The sign request's entry for a part: its number, size and (optionally) its SHA-256.
fn part_entry(part_number: usize, body: &[u8], with_checksum: bool) -> Value {
    json!({
        "part_number": part_number,
        "size": body.len(),
        "checksum_sha256": if with_checksum { json!(sha256_base64(body)) } else { Value::Null },
    })
}

fn sign(backend: &Backend, upload: &Upload, parts: &[Value]) -> Reply {
    post_json(
        backend,
        "/api/v1/multipart/sign",
        &json!({ "key": upload.key, "upload_id": upload.upload_id, "parts": parts }),
    )
}

/// Signs every part (numbered from 1) in one request and returns the signed entries.
fn sign_all(backend: &Backend, upload: &Upload, bodies: &[&[u8]], with_checksum: bool) -> Vec<Value> {
    let entries: Vec<Value> =
        bodies.iter().enumerate().map(|(i, body)| part_entry(i + 1, body, with_checksum)).collect();
    let reply = sign(backend, upload, &entries);
    assert_eq!(reply.status, StatusCode::OK, "signing succeeds: {}", reply.text);
    reply.body["parts"].as_array().expect("a parts array").clone()
}

/// PUTs one part with exactly the headers the backend returned; expects 200 and returns the ETag.
fn put_part(signed: &Value, body: &[u8]) -> String {
    let reply = put_keeping_etag(signed["url"].as_str().expect("a url"), &headers_of(signed), body);
    assert_eq!(reply.status, StatusCode::OK, "S3 takes part {}: {}", signed["part_number"], reply.text);
    reply.etag.expect("S3 answers a part's PUT with its ETag")
}

fn complete(backend: &Backend, upload: &Upload, parts: &[Value]) -> Reply {
    post_json(
        backend,
        "/api/v1/multipart/complete",
        &json!({ "key": upload.key, "upload_id": upload.upload_id, "parts": parts }),
    )
}

fn list_parts(backend: &Backend, key: &str, upload_id: &str) -> Reply {
    let encode = |value: &str| utf8_percent_encode(value, NON_ALPHANUMERIC).to_string();
    get_json(backend, &format!("/api/v1/multipart/parts?key={}&upload_id={}", encode(key), encode(upload_id)))
}

fn abort(backend: &Backend, upload: &Upload) -> Reply {
    post_json(backend, "/api/v1/multipart/abort", &json!({ "key": upload.key, "upload_id": upload.upload_id }))
}

/// Uploads `bodies` as parts 1..=N (signed in one request) and returns the complete request's parts.
fn upload_parts(backend: &Backend, upload: &Upload, bodies: &[&[u8]], with_checksum: bool) -> Vec<Value> {
    let signed = sign_all(backend, upload, bodies, with_checksum);
    bodies
        .iter()
        .zip(&signed)
        .enumerate()
        .map(|(i, (body, signed))| {
            assert_eq!(signed["part_number"], i + 1, "signed in request order");
            json!({
                "part_number": i + 1,
                "etag": put_part(signed, body),
                "checksum_sha256": if with_checksum { json!(sha256_base64(body)) } else { Value::Null },
            })
        })
        .collect()
}

#[test]
fn a_file_in_three_parts_is_assembled_byte_identical_and_its_report_is_recorded() {
    let backend = start_backend();
    let parts = [bytes(5 * MIB, 1), bytes(5 * MIB, 2), bytes(1, 3)];
    let whole: Vec<u8> = parts.concat();
    let upload = create(&backend, "three parts.bin", whole.len(), true);
    assert!(upload.key.starts_with("uploads/") && upload.key.ends_with("/three parts.bin"), "{}", upload.key);

    let bodies: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let signed = sign_all(&backend, &upload, &bodies, true);
    assert_eq!(signed.len(), 3, "one URL per part");
    assert_eq!(
        signed[0]["headers"],
        json!({ "content-length": (5 * MIB).to_string(), "x-amz-checksum-sha256": sha256_base64(&parts[0]) }),
        "the part's length and checksum are the headers to send"
    );
    assert!(signed[0]["expires_at"].as_str().is_some_and(|t| t.ends_with('Z')), "RFC 3339 expiry");
    let completing: Vec<Value> = bodies
        .iter()
        .zip(&signed)
        .enumerate()
        .map(|(i, (body, signed))| {
            json!({ "part_number": i + 1, "etag": put_part(signed, body), "checksum_sha256": sha256_base64(body) })
        })
        .collect();

    let reply = complete(&backend, &upload, &completing);
    assert_eq!(reply.status, StatusCode::OK, "complete succeeds: {}", reply.text);
    assert_eq!(
        reply.body,
        json!({ "key": upload.key, "object_url": upload.object_url, "size": whole.len() }),
        "the answer names the object and its size"
    );
    assert!(S3Server::shared().get_object(&upload.key) == Some(whole.clone()), "the object reads back byte-identical");

    let report = report(&backend, &upload.client_upload_id, &report_body(&upload.key, "three parts.bin", &whole));
    assert_eq!(report.status, StatusCode::CREATED, "a multipart object is reported like any other: {}", report.text);
    let record = backend.record(&upload.client_upload_id).expect("the record exists");
    assert_eq!(record["key"], upload.key);
    assert_eq!(record["size"], whole.len());
    assert_eq!(record["object_url"], upload.object_url, "the same URL as the create answer");
}

#[test]
fn a_file_of_5_mib_and_1_byte_uploads_in_two_parts_listed_in_any_order() {
    let backend = start_backend();
    let whole = bytes(5 * MIB + 1, 7);
    let (first, last) = whole.split_at(5 * MIB);
    let upload = create(&backend, "just over.bin", whole.len(), false);
    let mut completing = upload_parts(&backend, &upload, &[first, last], false);
    completing.reverse();

    let reply = complete(&backend, &upload, &completing);
    assert_eq!(reply.status, StatusCode::OK, "the backend sorts the parts for S3: {}", reply.text);
    assert_eq!(reply.body["size"], whole.len());
    assert!(S3Server::shared().get_object(&upload.key) == Some(whole.clone()), "byte-identical");
    let s3 = S3Server::shared();
    let head = block_on(
        s3.client().head_object().bucket(&s3.bucket).key(&upload.key).checksum_mode(ChecksumMode::Enabled).send(),
    )
    .expect("HEAD succeeds");
    assert_eq!(head.checksum_sha256(), None, "SeaweedFS keeps no SHA-256 for an upload created without one");
    let report = report(&backend, &upload.client_upload_id, &report_body(&upload.key, "just over.bin", &whole));
    assert_eq!(report.status, StatusCode::CREATED, "the size alone is checked: {}", report.text);
}

#[test]
fn a_part_whose_body_differs_from_the_signed_checksum_is_refused_by_s3() {
    let backend = start_backend();
    let part = bytes(MIB, 4);
    let upload = create(&backend, "corrupt.bin", part.len(), true);
    let signed = sign_all(&backend, &upload, &[&part], true);
    let mut corrupted = part.clone();
    corrupted[1234] ^= 0xff; // same length, one byte differs

    let reply = put_keeping_etag(signed[0]["url"].as_str().unwrap(), &headers_of(&signed[0]), &corrupted);
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "S3 verifies the signed SHA-256 of a part: {}", reply.text);
    assert!(reply.text.contains("BadDigest"), "S3 names the digest mismatch: {}", reply.text);
    let listed = list_parts(&backend, &upload.key, &upload.upload_id);
    assert_eq!(listed.body["parts"], json!([]), "the corrupted part was not kept: {}", listed.text);
}

#[test]
fn seaweedfs_refuses_a_corrupted_part_even_when_the_upload_has_no_checksum_algorithm() {
    let backend = start_backend();
    let part = bytes(MIB, 5);
    let upload = create(&backend, "no algorithm.bin", part.len(), false);
    let signed = sign_all(&backend, &upload, &[&part], true);
    let mut corrupted = part.clone();
    corrupted[0] ^= 1;
    let reply = put_keeping_etag(signed[0]["url"].as_str().unwrap(), &headers_of(&signed[0]), &corrupted);
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "the signed header alone makes S3 check: {}", reply.text);
    assert!(reply.text.contains("BadDigest"), "{}", reply.text);
}

#[test]
fn seaweedfs_takes_a_part_without_a_checksum_even_when_the_upload_was_created_with_sha256() {
    let backend = start_backend();
    let part = bytes(MIB, 6);
    let upload = create(&backend, "unchecked part.bin", part.len(), true);
    let signed = sign_all(&backend, &upload, &[&part], false);
    assert_eq!(signed[0]["headers"], json!({ "content-length": MIB.to_string() }), "only the length is signed");
    let reply = put_keeping_etag(signed[0]["url"].as_str().unwrap(), &headers_of(&signed[0]), &part);
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "SeaweedFS 4.48 does not insist on a part checksum; the backend cannot either, so clients must send one: {}",
        reply.text
    );
}

#[test]
fn a_part_of_another_length_than_signed_is_refused_by_s3() {
    let backend = start_backend();
    let part = bytes(MIB, 8);
    let upload = create(&backend, "length.bin", part.len(), false);
    let signed = sign_all(&backend, &upload, &[&part], false);
    // The HTTP client sets Content-Length from the body, as it would for a truncated file.
    let reply = put_keeping_etag(signed[0]["url"].as_str().unwrap(), &[], &part[..MIB - 1]);
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "content-length is part of the signature: {}", reply.text);
}

#[test]
fn listing_parts_after_two_of_three_shows_those_two_with_etags_and_sizes() {
    let backend = start_backend();
    let parts = [bytes(5 * MIB, 9), bytes(5 * MIB, 10), bytes(100, 11)];
    let upload = create(&backend, "resume.bin", parts.iter().map(Vec::len).sum(), true);
    let bodies: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let signed = sign_all(&backend, &upload, &bodies, true);
    let etags: Vec<String> = signed[..2].iter().zip(&bodies).map(|(s, body)| put_part(s, body)).collect();

    let reply = list_parts(&backend, &upload.key, &upload.upload_id);
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let listed = reply.body["parts"].as_array().expect("a parts array");
    assert_eq!(listed.len(), 2, "exactly the uploaded parts: {}", reply.text);
    for (i, part) in listed.iter().enumerate() {
        assert_eq!(part["part_number"], i + 1);
        assert_eq!(part["etag"], etags[i], "the ETag the PUT answered with");
        assert_eq!(part["size"], 5 * MIB);
        assert!(
            part["checksum_sha256"].is_null(),
            "SeaweedFS 4.48 lists no part checksums, even for a SHA256 upload: {part}"
        );
    }

    // Resume: upload the missing part and complete with what was listed plus it.
    let last_etag = put_part(&signed[2], bodies[2]);
    let mut completing: Vec<Value> = listed
        .iter()
        .zip(&bodies)
        .map(|(p, body)| json!({ "part_number": p["part_number"], "etag": p["etag"], "checksum_sha256": sha256_base64(body) }))
        .collect();
    completing.push(json!({ "part_number": 3, "etag": last_etag, "checksum_sha256": sha256_base64(bodies[2]) }));
    let reply = complete(&backend, &upload, &completing);
    assert_eq!(reply.status, StatusCode::OK, "a resumed upload completes: {}", reply.text);
    assert!(S3Server::shared().get_object(&upload.key) == Some(parts.concat()), "byte-identical");
}

#[test]
fn completing_with_a_wrong_etag_answers_422_with_the_reason_from_s3() {
    let backend = start_backend();
    let part = bytes(MIB, 12);
    let upload = create(&backend, "wrong etag.bin", part.len(), false);
    upload_parts(&backend, &upload, &[&part], false);
    let reply =
        complete(&backend, &upload, &[json!({ "part_number": 1, "etag": "\"00000000000000000000000000000000\"" })]);
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.text);
    assert_eq!(error_code(&reply), "completion_rejected");
    let message = reply.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("InvalidPart"), "S3's reason is in the message: {message}");
    assert!(S3Server::shared().get_object(&upload.key).is_none(), "no object was made");
}

#[test]
fn completing_with_a_part_under_5_mib_that_is_not_the_last_answers_422() {
    let backend = start_backend();
    let parts = [bytes(MIB, 13), bytes(MIB, 14)];
    let upload = create(&backend, "small parts.bin", 2 * MIB, false);
    let completing = upload_parts(&backend, &upload, &[&parts[0], &parts[1]], false);
    let reply = complete(&backend, &upload, &completing);
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.text);
    assert_eq!(error_code(&reply), "completion_rejected");
    assert!(reply.text.contains("EntityTooSmall"), "S3's code is named: {}", reply.text);
}

#[test]
fn seaweedfs_wants_the_part_checksums_again_to_complete_a_sha256_upload() {
    let backend = start_backend();
    let part = bytes(MIB, 15);
    let upload = create(&backend, "checksums needed.bin", part.len(), true);
    let completing = upload_parts(&backend, &upload, &[&part], true);
    let without: Vec<Value> =
        completing.iter().map(|p| json!({ "part_number": p["part_number"], "etag": p["etag"] })).collect();

    let reply = complete(&backend, &upload, &without);
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.text);
    assert_eq!(error_code(&reply), "completion_rejected");
    assert!(reply.text.contains("InvalidRequest"), "SeaweedFS answers InvalidRequest: {}", reply.text);

    let mut wrong = completing.clone();
    wrong[0]["checksum_sha256"] = json!(sha256_base64(b"another part"));
    let reply = complete(&backend, &upload, &wrong);
    assert_eq!(error_code(&reply), "completion_rejected", "a wrong part checksum is refused too: {}", reply.text);
    assert!(reply.text.contains("BadDigest"), "{}", reply.text);

    let reply = complete(&backend, &upload, &completing);
    assert_eq!(reply.status, StatusCode::OK, "with the checksums it completes: {}", reply.text);
}

#[test]
fn seaweedfs_gives_a_multipart_object_a_composite_checksum_so_reports_check_its_size_only() {
    let backend = start_backend();
    let whole = bytes(5 * MIB + 10, 16);
    let (first, last) = whole.split_at(5 * MIB);
    let upload = create(&backend, "composite.bin", whole.len(), true);
    let completing = upload_parts(&backend, &upload, &[first, last], true);
    assert_eq!(complete(&backend, &upload, &completing).status, StatusCode::OK);

    let s3 = S3Server::shared();
    let head = block_on(
        s3.client().head_object().bucket(&s3.bucket).key(&upload.key).checksum_mode(ChecksumMode::Enabled).send(),
    )
    .expect("HEAD succeeds");
    let checksum = head.checksum_sha256().expect("SeaweedFS returns a SHA-256 for a SHA256 multipart object");
    assert!(checksum.ends_with("-2"), "a checksum of the 2 part checksums, not of the file: {checksum}");
    assert_ne!(checksum.trim_end_matches("-2"), sha256_base64(&whole), "it is not the whole file's SHA-256");
    let part_digests: Vec<u8> = [first, last].iter().flat_map(|part| Sha256::digest(part).to_vec()).collect();
    assert_eq!(
        checksum,
        format!("{}-2", sha256_base64(&part_digests)),
        "it is the SHA-256 of the parts' SHA-256s, as on AWS"
    );
    assert_eq!(head.checksum_type(), Some(&ChecksumType::Composite), "and it says so");

    let mut wrong_size = report_body(&upload.key, "composite.bin", &whole);
    wrong_size["size"] = json!(whole.len() - 1);
    let reply = report(&backend, &upload.client_upload_id, &wrong_size);
    assert_eq!(error_code(&reply), "size_mismatch", "the size is still checked: {}", reply.text);

    let mut other_checksum = report_body(&upload.key, "composite.bin", &whole);
    other_checksum["checksum_sha256"] = json!(sha256_base64(b"not this file"));
    let reply = report(&backend, &upload.client_upload_id, &other_checksum);
    assert_eq!(
        reply.status,
        StatusCode::CREATED,
        "a composite checksum cannot be compared with a whole-file SHA-256, so only the size is: {}",
        reply.text
    );
}

#[test]
fn a_report_carrying_the_composite_checksum_is_compared_with_the_one_s3_holds() {
    let backend = start_backend();
    let whole = bytes(5 * MIB + 3, 21);
    let (first, last) = whole.split_at(5 * MIB);
    let upload = create(&backend, "composite report.bin", whole.len(), true);
    let completing = upload_parts(&backend, &upload, &[first, last], true);
    assert_eq!(complete(&backend, &upload, &completing).status, StatusCode::OK);
    let part_digests: Vec<u8> = [first, last].iter().flat_map(|part| Sha256::digest(part).to_vec()).collect();
    let composite = format!("{}-2", sha256_base64(&part_digests));

    let mut wrong = report_body(&upload.key, "composite report.bin", &whole);
    wrong["checksum_sha256"] = json!(format!("{}-2", sha256_base64(b"other parts")));
    let reply = report(&backend, &upload.client_upload_id, &wrong);
    assert_eq!(error_code(&reply), "checksum_mismatch", "a wrong composite checksum is caught: {}", reply.text);

    let mut right = report_body(&upload.key, "composite report.bin", &whole);
    right["checksum_sha256"] = json!(composite);
    let reply = report(&backend, &upload.client_upload_id, &right);
    assert_eq!(reply.status, StatusCode::CREATED, "the matching composite checksum is recorded: {}", reply.text);
}

fn crc32c_base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, bytes) as u32;
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

#[test]
fn a_crc32c_upload_refuses_a_corrupted_part_and_its_composite_crc32c_report_is_compared_and_recorded() {
    let backend = start_backend();
    let whole = bytes(5 * MIB + 7, 31);
    let (first, last) = whole.split_at(5 * MIB);
    let client_upload_id = new_upload_id();
    let reply = post_json(
        &backend,
        "/api/v1/multipart",
        &json!({ "client_upload_id": client_upload_id, "file_name": "crc.bin", "size": whole.len(), "checksum_algorithm": "CRC32C" }),
    );
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let upload = Upload {
        client_upload_id,
        key: reply.body["key"].as_str().unwrap().to_owned(),
        upload_id: reply.body["upload_id"].as_str().unwrap().to_owned(),
        object_url: reply.body["object_url"].as_str().unwrap().to_owned(),
    };
    let entries: Vec<Value> = [first, last]
        .iter()
        .enumerate()
        .map(|(i, body)| json!({ "part_number": i + 1, "size": body.len(), "checksum_crc32c": crc32c_base64(body) }))
        .collect();
    let signed = sign(&backend, &upload, &entries);
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.text);
    let signed = signed.body["parts"].as_array().unwrap().clone();
    assert_eq!(signed[0]["headers"]["x-amz-checksum-crc32c"], json!(crc32c_base64(first)), "the CRC32C is signed");

    let mut corrupted = first.to_vec();
    corrupted[1234] ^= 0x01;
    let refused = put_keeping_etag(signed[0]["url"].as_str().unwrap(), &headers_of(&signed[0]), &corrupted);
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "one flipped bit is caught by S3: {}", refused.text);
    assert!(refused.text.contains("BadDigest"), "{}", refused.text);

    let completing: Vec<Value> = [first, last]
        .iter()
        .zip(&signed)
        .enumerate()
        .map(|(i, (body, signed))| {
            json!({ "part_number": i + 1, "etag": put_part(signed, body), "checksum_crc32c": crc32c_base64(body) })
        })
        .collect();
    let reply = complete(&backend, &upload, &completing);
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(S3Server::shared().get_object(&upload.key) == Some(whole.clone()), "the object reads back byte-identical");

    let part_crcs: Vec<u8> = [first, last]
        .iter()
        .flat_map(|part| (crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, part) as u32).to_be_bytes())
        .collect();
    let composite = format!("{}-2", crc32c_base64(&part_crcs));
    let report_with = |checksum: &str| json!({ "key": upload.key, "file_name": "crc.bin", "size": whole.len(), "checksum_crc32c": checksum });
    let reply = report(&backend, &upload.client_upload_id, &report_with("AAAAAA==-2"));
    assert_eq!(error_code(&reply), "checksum_mismatch", "a wrong composite CRC32C is caught: {}", reply.text);
    let reply = report(&backend, &upload.client_upload_id, &report_with(&composite));
    assert_eq!(reply.status, StatusCode::CREATED, "S3's composite CRC32C is recorded: {}", reply.text);
    assert_eq!(reply.body["checksum_crc32c"], json!(composite));
    assert!(reply.body["checksum_sha256"].is_null(), "{}", reply.text);
}

#[test]
fn completing_twice_answers_200_both_times() {
    let backend = start_backend();
    let part = bytes(1000, 17);
    let upload = create(&backend, "twice.bin", part.len(), false);
    let completing = upload_parts(&backend, &upload, &[&part], false);
    let first = complete(&backend, &upload, &completing);
    let second = complete(&backend, &upload, &completing);
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(second.status, StatusCode::OK, "a repeat (a lost answer) succeeds again: {}", second.text);
    assert_eq!(first.body, second.body, "with the same answer");
}

#[test]
fn a_repeat_complete_answers_200_even_when_s3_no_longer_knows_the_upload() {
    let backend = start_backend();
    let part = bytes(1000, 20);
    let upload = create(&backend, "forgotten.bin", part.len(), false);
    let completing = upload_parts(&backend, &upload, &[&part], false);
    let first = complete(&backend, &upload, &completing);
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);

    // AWS forgets a completed upload, so a retried complete can meet NoSuchUpload there.
    // SeaweedFS 4.48 completes again instead (even after an abort), so an id it never issued
    // stands in for the forgotten one, bound to this principal in the backend's database as
    // the create call would have bound it.
    let forgotten = Upload { upload_id: "forgotten-upload-id".to_owned(), ..upload };
    let me = get_json(&backend, "/api/v1/me").body["user"].as_str().expect("a principal name").to_owned();
    backend.execute_sql(&format!(
        "INSERT INTO multipart_uploads (upload_id, key, uploaded_by, created_at) \
         VALUES ('{}', '{}', '{me}', '2026-01-01T00:00:00Z')",
        forgotten.upload_id, forgotten.key
    ));
    assert_eq!(error_code(&list_parts(&backend, &forgotten.key, &forgotten.upload_id)), "upload_not_found");
    let again = complete(&backend, &forgotten, &completing);
    assert_eq!(again.status, StatusCode::OK, "the object at the issued key is this upload's: {}", again.text);
    assert_eq!(again.body, first.body, "with the same answer");
    assert!(backend.log().contains("completed before"), "S3 said NoSuchUpload and the backend found the object");
}

#[test]
fn an_aborted_upload_is_gone_and_aborting_it_again_answers_204() {
    let backend = start_backend();
    let part = bytes(MIB, 18);
    let upload = create(&backend, "aborted.bin", part.len(), false);
    let signed = sign_all(&backend, &upload, &[&part, &part], false);
    let completing = vec![json!({ "part_number": 1, "etag": put_part(&signed[0], &part) })];

    let reply = abort(&backend, &upload);
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    assert!(reply.text.is_empty(), "204 has no body");

    let listed = list_parts(&backend, &upload.key, &upload.upload_id);
    assert_eq!(listed.status, StatusCode::NOT_FOUND, "{}", listed.text);
    assert_eq!(error_code(&listed), "upload_not_found");
    assert_eq!(abort(&backend, &upload).status, StatusCode::NO_CONTENT, "aborting again is not an error");
    let late = put_keeping_etag(signed[1]["url"].as_str().unwrap(), &headers_of(&signed[1]), &part);
    assert_eq!(late.status, StatusCode::NOT_FOUND, "a part PUT after the abort is refused: {}", late.text);
    assert!(late.text.contains("NoSuchUpload"), "{}", late.text);

    let reply = complete(&backend, &upload, &completing);
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "an aborted upload cannot complete: {}", reply.text);
    assert_eq!(error_code(&reply), "upload_not_found");
    assert!(S3Server::shared().get_object(&upload.key).is_none(), "no object exists");
}

#[test]
fn an_upload_id_the_backend_never_issued_is_not_found_on_every_route_abort_included() {
    let backend = start_backend();
    let real = create(&backend, "real.bin", 10, false);
    let unknown = Upload { upload_id: "no-such-upload-id".to_owned(), ..real };
    let listed = list_parts(&backend, &unknown.key, &unknown.upload_id);
    assert_eq!(listed.status, StatusCode::NOT_FOUND, "{}", listed.text);
    assert_eq!(error_code(&listed), "upload_not_found");
    let reply = complete(&backend, &unknown, &[json!({ "part_number": 1, "etag": "\"e\"" })]);
    assert_eq!(error_code(&reply), "upload_not_found", "{}", reply.text);
    let aborted = abort(&backend, &unknown);
    assert_eq!(
        (aborted.status, error_code(&aborted)),
        (StatusCode::NOT_FOUND, "upload_not_found"),
        "an upload not bound to the caller is not found, as another principal's would be: {}",
        aborted.text
    );
}

#[test]
fn a_thousand_parts_are_signed_in_one_request_and_1001_are_refused() {
    let backend = start_backend();
    let upload = create(&backend, "many parts.bin", 1000 * 5 * MIB, true);
    let entry = |n: usize| json!({ "part_number": n, "size": 5 * MIB, "checksum_sha256": sha256_base64(&[n as u8]) });

    let thousand: Vec<Value> = (1..=1000).map(entry).collect();
    let reply = sign(&backend, &upload, &thousand);
    assert_eq!(reply.status, StatusCode::OK, "{}", &reply.text[..reply.text.len().min(300)]);
    let numbers: Vec<u64> =
        reply.body["parts"].as_array().unwrap().iter().map(|p| p["part_number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (1..=1000).collect::<Vec<u64>>(), "all 1000, in request order");

    let too_many: Vec<Value> = (1..=1001).map(entry).collect();
    let reply = sign(&backend, &upload, &too_many);
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.text);
    assert_eq!(error_code(&reply), "batch_too_large");
}

#[test]
fn a_key_this_backend_did_not_issue_is_refused_on_every_route() {
    let backend = start_backend();
    let upload = create(&backend, "mine.bin", 10, false);
    for key in ["elsewhere/secret.bin", "uploads/not-a-uuid/x.bin", "../uploads/x", ""] {
        let foreign = Upload {
            client_upload_id: upload.client_upload_id.clone(),
            key: key.to_owned(),
            upload_id: upload.upload_id.clone(),
            object_url: String::new(),
        };
        let replies = [
            sign(&backend, &foreign, &[json!({ "part_number": 1, "size": 10 })]),
            list_parts(&backend, &foreign.key, &foreign.upload_id),
            complete(&backend, &foreign, &[json!({ "part_number": 1, "etag": "\"e\"" })]),
            abort(&backend, &foreign),
        ];
        for reply in replies {
            assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{key}: {}", reply.text);
            assert_eq!(error_code(&reply), "key_not_allowed", "{key}");
        }
    }
    assert_eq!(abort(&backend, &upload).status, StatusCode::NO_CONTENT, "the issued key is accepted");
}

#[test]
fn invalid_multipart_requests_are_refused_with_their_own_codes() {
    let backend = start_backend();
    let valid_create = json!({ "client_upload_id": new_upload_id(), "file_name": "a.bin", "size": 1 });
    let cases = [
        ("size", json!(0), "empty_file"),
        ("size", json!(5u64 << 40 | 1), "file_too_large"),
        ("checksum_algorithm", json!("CRC32"), "invalid_checksum_algorithm"),
        ("client_upload_id", json!("nope"), "invalid_client_upload_id"),
    ];
    for (field, value, code) in cases {
        let mut body = valid_create.clone();
        body[field] = value;
        let reply = post_json(&backend, "/api/v1/multipart", &body);
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {}", reply.text);
        assert_eq!(error_code(&reply), code, "{field}");
    }

    let upload = create(&backend, "a.bin", 1, false);
    let part_cases = [
        (json!({ "part_number": 0, "size": 1 }), "invalid_part_number"),
        (json!({ "part_number": 10001, "size": 1 }), "invalid_part_number"),
        (json!({ "part_number": 1, "size": 0 }), "invalid_part_size"),
        (json!({ "part_number": 1, "size": 1, "checksum_sha256": "abc" }), "invalid_checksum"),
    ];
    for (part, code) in part_cases {
        let reply = sign(&backend, &upload, std::slice::from_ref(&part));
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{part}: {}", reply.text);
        assert_eq!(error_code(&reply), code, "{part}");
    }
    let reply = sign(&backend, &upload, &[json!({ "part_number": 1 })]);
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "a missing size is a shape error: {}", reply.text);
    assert!(reply.text.contains("parts[0]"), "and names the part: {}", reply.text);
    let bad_id = Upload { upload_id: "has space".to_owned(), ..upload };
    assert_eq!(error_code(&sign(&backend, &bad_id, &[json!({ "part_number": 1, "size": 1 })])), "invalid_upload_id");

    let reply = get_json(&backend, "/api/v1/multipart/parts?key=uploads");
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "both query parameters are required: {}", reply.text);
    assert_eq!(error_code(&reply), "invalid_request");
}

#[test]
fn every_multipart_route_answers_401_with_a_bad_token() {
    let backend = start_backend();
    let routes = [
        ("POST", "/api/v1/multipart"),
        ("POST", "/api/v1/multipart/sign"),
        ("GET", "/api/v1/multipart/parts?key=k&upload_id=u"),
        ("POST", "/api/v1/multipart/complete"),
        ("POST", "/api/v1/multipart/abort"),
    ];
    for (method, path) in routes {
        for token in [None, Some("wrong-token")] {
            let reply = call(&backend, method, path, token, Some(b"{}".to_vec()));
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {path} with {token:?}");
            assert_eq!(error_code(&reply), "unauthorized", "{method} {path}: {}", reply.text);
        }
    }
}

#[test]
fn the_log_never_contains_a_part_url_signature_or_the_token() {
    let backend = start_backend();
    let part = bytes(100, 19);
    let upload = create(&backend, "logged.bin", part.len(), true);
    let completing = upload_parts(&backend, &upload, &[&part], true);
    assert_eq!(complete(&backend, &upload, &completing).status, StatusCode::OK);
    let log = backend.log();
    assert!(log.contains("created a multipart upload") && log.contains("completed a multipart upload"), "{log}");
    assert!(!log.contains(&backend.token), "the token is never logged");
    assert!(!log.contains("X-Amz-Signature") && !log.contains("X-Amz-Credential"), "nor a presigned query: {log}");
}
