//! Completion reports: the backend HEADs the object, records it once, and says why it won't.

mod common;

use common::*;
use dropship_testkit::S3Server;
use reqwest::StatusCode;
use serde_json::json;

#[test]
fn a_report_for_an_uploaded_file_is_recorded_with_201() {
    let backend = start_backend();
    let id = new_upload_id();
    let bytes = b"recorded upload";
    let upload = upload_one(&backend, &id, "résumé.txt", bytes);
    let key = upload["key"].as_str().unwrap();

    let reply = report(&backend, &id, &report_body(key, "résumé.txt", bytes));
    assert_eq!(reply.status, StatusCode::CREATED, "the first report records: {}", reply.text);
    let record = &reply.body;
    assert_eq!(record["client_upload_id"], id);
    assert_eq!(record["key"], key);
    assert_eq!(record["file_name"], "résumé.txt", "the client's name is recorded as given");
    assert_eq!(record["size"], bytes.len());
    assert_eq!(record["content_type"], "text/plain");
    assert_eq!(record["checksum_sha256"], sha256_base64(bytes));
    assert_eq!(record["object_url"], upload["object_url"], "the same object URL as the presign answer");
    assert_eq!(record["flavour"], "native");
    assert!(record["recorded_at"].as_str().is_some_and(|t| t.ends_with('Z')), "RFC 3339 UTC");
    assert_eq!(backend.record(&id).as_ref(), Some(record), "GET /api/v1/records/{{id}} returns it");
}

#[test]
fn reporting_the_same_upload_twice_answers_201_then_200_with_one_record() {
    let backend = start_backend();
    let id = new_upload_id();
    let bytes = b"reported twice";
    let upload = upload_one(&backend, &id, "twice.txt", bytes);
    let body = report_body(upload["key"].as_str().unwrap(), "twice.txt", bytes);

    let first = report(&backend, &id, &body);
    let second = report(&backend, &id, &body);
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(second.status, StatusCode::OK, "a repeat is acknowledged, not re-recorded: {}", second.text);
    assert_eq!(first.body, second.body, "the repeat returns the same record");
    assert_eq!(backend.records().len(), 1, "exactly one record exists");
}

#[test]
fn the_upload_id_is_compared_case_insensitively() {
    let backend = start_backend();
    let id = new_upload_id();
    let bytes = b"upper case id";
    let upload = upload_one(&backend, &id.to_uppercase(), "case.txt", bytes);
    let body = report_body(upload["key"].as_str().unwrap(), "case.txt", bytes);
    assert_eq!(report(&backend, &id.to_uppercase(), &body).status, StatusCode::CREATED);
    assert_eq!(report(&backend, &id, &body).status, StatusCode::OK, "the lower-case id is the same upload");
}

#[test]
fn a_report_for_a_missing_object_is_refused_as_object_missing() {
    let backend = start_backend();
    let id = new_upload_id();
    let bytes = b"never uploaded";
    let upload = presign_one(&backend, &id, "ghost.txt", bytes);
    let reply = report(&backend, &id, &report_body(upload["key"].as_str().unwrap(), "ghost.txt", bytes));
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.text);
    assert_eq!(error_code(&reply), "object_missing", "the code says what is wrong");
    assert!(reply.body["error"]["message"].as_str().unwrap().contains("upload the file"), "{}", reply.text);
    assert!(backend.records().is_empty(), "nothing is recorded");
}

#[test]
fn a_report_with_the_wrong_size_is_refused_as_size_mismatch() {
    let backend = start_backend();
    let id = new_upload_id();
    let bytes = b"twelve bytes";
    let upload = upload_one(&backend, &id, "size.txt", bytes);
    let mut body = report_body(upload["key"].as_str().unwrap(), "size.txt", bytes);
    body["size"] = json!(13);
    let reply = report(&backend, &id, &body);
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.text);
    assert_eq!(error_code(&reply), "size_mismatch");
    assert!(backend.records().is_empty(), "nothing is recorded");
}

#[test]
fn a_report_for_a_key_outside_the_prefix_is_refused_as_key_not_allowed() {
    let backend = start_backend();
    let id = new_upload_id();
    let bytes = b"written around the backend";
    let key = format!("elsewhere/{}/x.txt", new_upload_id());
    S3Server::shared().put_object(&key, bytes);
    let reply = report(&backend, &id, &report_body(&key, "x.txt", bytes));
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.text);
    assert_eq!(error_code(&reply), "key_not_allowed", "only keys the backend hands out are recorded");
}

#[test]
fn reusing_an_upload_id_for_another_key_is_refused_as_upload_id_conflict() {
    let backend = start_backend();
    let id = new_upload_id();
    let (a, b) = (b"first file", b"second file");
    let first = upload_one(&backend, &id, "a.txt", a);
    assert_eq!(
        report(&backend, &id, &report_body(first["key"].as_str().unwrap(), "a.txt", a)).status,
        StatusCode::CREATED
    );
    let second = upload_one(&backend, &new_upload_id(), "b.txt", b);
    let reply = report(&backend, &id, &report_body(second["key"].as_str().unwrap(), "b.txt", b));
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.text);
    assert_eq!(error_code(&reply), "upload_id_conflict");
}

#[test]
fn a_report_with_a_different_checksum_than_s3_stored_is_refused_as_checksum_mismatch() {
    let backend = start_backend();
    let id = new_upload_id();
    let bytes = b"checksum on record";
    let upload = upload_one(&backend, &id, "sum.txt", bytes);
    let mut body = report_body(upload["key"].as_str().unwrap(), "sum.txt", bytes);
    body["checksum_sha256"] = json!(sha256_base64(b"something else"));
    let reply = report(&backend, &id, &body);
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.text);
    assert_eq!(error_code(&reply), "checksum_mismatch", "S3 keeps the signed SHA-256 and HEAD returns it");
    assert!(backend.records().is_empty(), "nothing is recorded");
}

#[test]
fn a_batch_report_answers_one_status_per_report_in_order() {
    let backend = start_backend();
    let (recorded_id, repeat_id, missing_id) = (new_upload_id(), new_upload_id(), new_upload_id());
    let (one, two, three) = (b"batch one".as_slice(), b"batch two".as_slice(), b"batch three".as_slice());
    let first = upload_one(&backend, &recorded_id, "one.txt", one);
    let second = upload_one(&backend, &repeat_id, "two.txt", two);
    let never = presign_one(&backend, &missing_id, "three.txt", three);
    let repeat_body = report_body(second["key"].as_str().unwrap(), "two.txt", two);
    assert_eq!(report(&backend, &repeat_id, &repeat_body).status, StatusCode::CREATED);

    let with_id = |id: &str, mut body: serde_json::Value| {
        body["client_upload_id"] = json!(id);
        body
    };
    let reports = json!({ "reports": [
        with_id(&recorded_id, report_body(first["key"].as_str().unwrap(), "one.txt", one)),
        with_id(&repeat_id, repeat_body.clone()),
        with_id(&missing_id, report_body(never["key"].as_str().unwrap(), "three.txt", three)),
    ]});
    let reply = post_json(&backend, "/api/v1/reports", &reports);
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let results = reply.body["results"].as_array().unwrap();
    let statuses: Vec<&str> = results.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["recorded", "already_recorded", "rejected"], "one status per report, in order");
    let ids: Vec<&str> = results.iter().map(|r| r["client_upload_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [recorded_id.as_str(), repeat_id.as_str(), missing_id.as_str()]);
    assert_eq!(results[0]["record"]["key"], first["key"], "a recorded report carries its record");
    assert!(results[0]["error"].is_null());
    assert_eq!(results[2]["error"]["code"], "object_missing", "a rejection carries its reason");
    assert!(results[2]["record"].is_null());
    assert_eq!(backend.records().len(), 2, "the missing object was not recorded");
}

#[test]
fn a_batch_of_presigned_uploads_is_checked_by_one_listing_that_still_catches_a_wrong_size_or_checksum() {
    let backend = start_backend();
    let files: Vec<(String, Vec<u8>)> =
        (0..5).map(|i| (new_upload_id(), format!("listed file {i}").into_bytes())).collect();
    let mut bodies = Vec::new();
    for (i, (id, bytes)) in files.iter().enumerate() {
        let upload = if i == 4 {
            presign_one(&backend, id, "never.txt", bytes)
        } else {
            upload_one(&backend, id, "l.txt", bytes)
        };
        let mut body = report_body(upload["key"].as_str().unwrap(), "l.txt", bytes);
        body["client_upload_id"] = json!(id);
        bodies.push(body);
    }
    bodies[2]["size"] = json!(files[2].1.len() + 1);
    bodies[3]["checksum_sha256"] = json!(sha256_base64(b"not what was signed"));
    let reply = post_json(&backend, "/api/v1/reports", &json!({ "reports": bodies }));
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let outcome: Vec<String> = reply.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"]["code"].as_str().unwrap_or(r["status"].as_str().unwrap()).to_owned())
        .collect();
    assert_eq!(
        outcome,
        ["recorded", "recorded", "size_mismatch", "checksum_mismatch", "object_missing"],
        "the listing is as strict as a HEAD per object"
    );
    assert!(
        backend.log().contains("by_listing=3"),
        "the three uploaded keys signed with the reported checksum were found by listing: {}",
        backend.log()
    );
    assert_eq!(backend.records().len(), 2);
}

#[test]
fn records_are_listed_newest_first_and_limited() {
    let backend = start_backend();
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = new_upload_id();
        let bytes = format!("listed {i}").into_bytes();
        let upload = upload_one(&backend, &id, "l.txt", &bytes);
        assert_eq!(
            report(&backend, &id, &report_body(upload["key"].as_str().unwrap(), "l.txt", &bytes)).status,
            StatusCode::CREATED
        );
        ids.push(id);
    }
    let listed: Vec<String> =
        backend.records().iter().map(|r| r["client_upload_id"].as_str().unwrap().to_owned()).collect();
    ids.reverse();
    assert_eq!(listed, ids, "newest first");
    let page = get_json(&backend, "/api/v1/records?limit=2");
    assert_eq!(page.body["records"].as_array().map(Vec::len), Some(2), "the limit applies");
    assert_eq!(get_json(&backend, "/api/v1/records?limit=0").status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(get_json(&backend, "/api/v1/records?limit=abc").status, StatusCode::BAD_REQUEST);
    assert_eq!(get_json(&backend, &format!("/api/v1/records/{}", new_upload_id())).status, StatusCode::NOT_FOUND);
}
