//! Two principals on one backend (static `NAME:TOKEN`s) and an admin: every upload is bound to
//! whoever asked for it, every route keeps the other out (404 as if missing, or 403), every
//! denial is in the audit log, and keys follow the configured template. Real SeaweedFS below.

mod common;

use common::*;
use dropship_testkit::{Backend, BackendOptions};
use reqwest::StatusCode;
use serde_json::{json, Value};

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789";
const AUDITOR: &str = "auditor-token-0123456789";

fn backend_with(extra: &[&str]) -> Backend {
    let mut extra_args: Vec<String> = vec![
        "--tokens".into(),
        format!("alice@example.com:{ALICE},bob:{BOB},auditor:{AUDITOR}"),
        "--admin-principals".into(),
        "auditor".into(),
    ];
    extra_args.extend(extra.iter().map(|a| a.to_string()));
    start_backend_with(BackendOptions { extra_args, ..Default::default() })
}

fn as_(backend: &Backend, token: &str, method: &str, path: &str, body: Option<Value>) -> Reply {
    call(backend, method, path, Some(token), body.map(|b| b.to_string().into_bytes()))
}

/// Presigns, uploads (PUT) and optionally reports one file as `token`: (id, key).
fn upload_as(backend: &Backend, token: &str, name: &str, bytes: &[u8], report_it: bool) -> (String, String) {
    let id = new_upload_id();
    let files = json!({ "files": [presign_entry(&id, name, bytes, "text/plain")] });
    let reply = as_(backend, token, "POST", "/api/v1/uploads/presign", Some(files));
    assert_eq!(reply.status, StatusCode::OK, "presign: {}", reply.text);
    let upload = &reply.body["uploads"][0];
    let (status, text) = put(upload["url"].as_str().unwrap(), &headers_of(upload), bytes);
    assert_eq!(status, StatusCode::OK, "S3 takes the PUT at the templated key: {text}");
    let key = upload["key"].as_str().unwrap().to_owned();
    if report_it {
        let path = format!("/api/v1/uploads/{id}/report");
        let reply = as_(backend, token, "POST", &path, Some(report_body(&key, name, bytes)));
        assert_eq!(reply.status, StatusCode::CREATED, "report: {}", reply.text);
        assert_eq!(reply.body["uploaded_by"], principal_of(backend, token), "the record names its principal");
    }
    (id, key)
}

fn principal_of(backend: &Backend, token: &str) -> String {
    as_(backend, token, "GET", "/api/v1/me", None).body["user"].as_str().unwrap().to_owned()
}

/// How principal B tries to reach A's upload on a route, and what must answer.
enum Attempt {
    /// The route acts on no upload of anyone else (its answer concerns the caller only).
    NothingOfOthers,
    /// B's request, and the status that must answer it (404 as if missing, or 403).
    Denied { request: (Option<Value>, String), status: StatusCode },
    /// A batch route: answers 200 with this item refused as not_found.
    DeniedInBatch(Value),
}

#[test]
fn principal_b_reaches_none_of_principal_as_uploads_on_any_route_and_every_denial_is_audited() {
    let backend = backend_with(&[]);
    let (recorded_id, _) = upload_as(&backend, ALICE, "recorded.txt", b"alice's recorded file", true);
    let unreported_bytes = b"alice's unreported file";
    let (unreported_id, unreported_key) = upload_as(&backend, ALICE, "unreported.txt", unreported_bytes, false);
    let created = as_(
        &backend,
        ALICE,
        "POST",
        "/api/v1/multipart",
        Some(json!({ "client_upload_id": new_upload_id(), "file_name": "big.bin", "size": 10 })),
    );
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let (mp_key, mp_id) = (created.body["key"].clone(), created.body["upload_id"].clone());
    let rails =
        as_(&backend, ALICE, "POST", "/api/attachments/generate_upload_url", Some(json!({ "file_name": "r.txt" })));
    let rails_url = rails.body["url"].as_str().unwrap().to_owned();
    assert_eq!(put(&rails_url, &[], b"rails bytes").0, StatusCode::OK);
    let rails_key = {
        let path = rails_url.split_once("://").unwrap().1.split_once('/').unwrap().1.split('?').next().unwrap();
        let decoded = percent_encoding::percent_decode_str(path).decode_utf8().unwrap().into_owned();
        decoded.split_once('/').unwrap().1.to_owned()
    };

    let report = report_body(&unreported_key, "unreported.txt", unreported_bytes);
    let mut batch_item = report.clone();
    batch_item["client_upload_id"] = json!(unreported_id);
    let attempt = |method: &str, path: &str| -> Attempt {
        let denied = |body: Option<Value>, path: String, status| Attempt::Denied { request: (body, path), status };
        let parts_query = format!(
            "/api/v1/multipart/parts?key={}&upload_id={}",
            percent_encoding::utf8_percent_encode(mp_key.as_str().unwrap(), percent_encoding::NON_ALPHANUMERIC),
            percent_encoding::utf8_percent_encode(mp_id.as_str().unwrap(), percent_encoding::NON_ALPHANUMERIC)
        );
        let upload_ref = json!({ "key": mp_key, "upload_id": mp_id });
        match (method, path) {
            (
                "GET",
                "/openapi.json" | "/api/v1/auth" | "/api/v1/ping" | "/api/v1/me" | "/healthz" | "/readyz" | "/metrics"
                // The desktop app's updates: the same files for everyone, no principal's data.
                | "/updates/{channel}/latest.json"
                | "/updates/{channel}/{target}/{arch}/{current_version}"
                | "/updates/{channel}/files/{name}",
            )
            | ("POST", "/api/v1/uploads/presign" | "/api/v1/multipart" | "/api/attachments/generate_upload_url") => {
                Attempt::NothingOfOthers
            }
            ("POST", "/api/v1/uploads/{client_upload_id}/report") => {
                denied(Some(report.clone()), format!("/api/v1/uploads/{unreported_id}/report"), StatusCode::NOT_FOUND)
            }
            ("POST", "/api/v1/reports") => Attempt::DeniedInBatch(json!({ "reports": [batch_item.clone()] })),
            ("GET", "/api/v1/records") => denied(None, "/api/v1/records?all=true".into(), StatusCode::FORBIDDEN),
            ("GET", "/api/v1/records/{client_upload_id}") => {
                denied(None, format!("/api/v1/records/{recorded_id}"), StatusCode::NOT_FOUND)
            }
            ("GET", "/api/v1/audit") => denied(None, path.to_owned(), StatusCode::FORBIDDEN),
            ("POST", "/api/v1/multipart/sign") => {
                let mut body = upload_ref.clone();
                body["parts"] = json!([{ "part_number": 1, "size": 10 }]);
                denied(Some(body), path.to_owned(), StatusCode::NOT_FOUND)
            }
            ("GET", "/api/v1/multipart/parts") => denied(None, parts_query, StatusCode::NOT_FOUND),
            ("POST", "/api/v1/multipart/complete") => {
                let mut body = upload_ref.clone();
                body["parts"] = json!([{ "part_number": 1, "etag": "\"e\"" }]);
                denied(Some(body), path.to_owned(), StatusCode::NOT_FOUND)
            }
            ("POST", "/api/v1/multipart/abort") => {
                denied(Some(upload_ref.clone()), path.to_owned(), StatusCode::NOT_FOUND)
            }
            ("POST", "/api/attachments") => denied(
                Some(json!({ "attachment": { "file_name": "r.txt", "key": rails_key, "byte_size": 11 } })),
                path.to_owned(),
                StatusCode::NOT_FOUND,
            ),
            _ => panic!("{method} {path} is served but this test has no cross-principal case for it: add one"),
        }
    };

    // Every route the server serves: openapi.json is held to the router in both directions.
    let document = call(&backend, "GET", "/openapi.json", None, None).body;
    let mut denied_routes = Vec::new();
    for (path, operations) in document["paths"].as_object().expect("paths") {
        for method in operations.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            let route = format!("{method} {path}");
            match attempt(&method, path) {
                Attempt::NothingOfOthers => {}
                Attempt::Denied { request: (body, target), status } => {
                    let reply = as_(&backend, BOB, &method, &target, body);
                    assert_eq!(reply.status, status, "{route}: bob is kept out of alice's upload: {}", reply.text);
                    if status == StatusCode::NOT_FOUND {
                        assert!(
                            ["not_found", "upload_not_found"].contains(&error_code(&reply))
                                || reply.body["errors"]["key"].is_array(),
                            "{route}: answered as if it did not exist: {}",
                            reply.text
                        );
                    }
                    denied_routes.push(route);
                }
                Attempt::DeniedInBatch(body) => {
                    let reply = as_(&backend, BOB, &method, path, Some(body));
                    assert_eq!(reply.status, StatusCode::OK, "{route}: {}", reply.text);
                    let result = &reply.body["results"][0];
                    assert_eq!(
                        result["error"]["code"], "not_found",
                        "{route}: the item is refused as missing: {}",
                        reply.text
                    );
                    denied_routes.push(route);
                }
            }
        }
    }
    assert!(denied_routes.len() >= 10, "the per-upload routes were all tried: {denied_routes:?}");

    let audit = as_(&backend, AUDITOR, "GET", "/api/v1/audit?user=bob", None);
    assert_eq!(audit.status, StatusCode::OK, "an admin reads the audit log: {}", audit.text);
    let lines: Vec<Value> =
        audit.text.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect();
    for route in &denied_routes {
        let audited_as = route.replace("GET /api/v1/records", "GET /api/v1/records?all=true");
        let audited_as = if route == "GET /api/v1/records/{client_upload_id}" { route.clone() } else { audited_as };
        assert!(
            lines.iter().any(|l| l["action"] == "denied" && l["outcome"].as_str().unwrap().starts_with(&audited_as)),
            "bob's denial on {route} is in the audit log: {}",
            audit.text
        );
    }
    assert!(lines.iter().all(|l| l["principal"] == "bob"), "?user= filters by principal");

    let parts = format!(
        "/api/v1/multipart/parts?key={}&upload_id={}",
        percent_encoding::utf8_percent_encode(mp_key.as_str().unwrap(), percent_encoding::NON_ALPHANUMERIC),
        percent_encoding::utf8_percent_encode(mp_id.as_str().unwrap(), percent_encoding::NON_ALPHANUMERIC)
    );
    assert_eq!(
        as_(&backend, ALICE, "GET", &parts, None).status,
        StatusCode::OK,
        "bob's abort did not abort alice's upload"
    );
    let path = format!("/api/v1/uploads/{unreported_id}/report");
    let mine =
        as_(&backend, ALICE, "POST", &path, Some(report_body(&unreported_key, "unreported.txt", unreported_bytes)));
    assert_eq!(mine.status, StatusCode::CREATED, "alice still reports her own upload: {}", mine.text);
}

#[test]
fn me_names_static_principals_and_admins_and_only_admins_list_everyones_records() {
    let backend = backend_with(&[]);
    let alice = as_(&backend, ALICE, "GET", "/api/v1/me", None);
    assert_eq!(alice.body, json!({ "user": "alice@example.com", "groups": [], "admin": false }), "{}", alice.text);
    let auditor = as_(&backend, AUDITOR, "GET", "/api/v1/me", None);
    assert_eq!(auditor.body, json!({ "user": "auditor", "groups": [], "admin": true }), "listed in --admin-principals");
    let bare = call(&backend, "GET", "/api/v1/me", Some(&backend.token), None);
    assert!(bare.body["user"].as_str().unwrap().starts_with("token-"), "a bare token is token-<hash>: {}", bare.text);

    upload_as(&backend, ALICE, "a.txt", b"alice's", true);
    upload_as(&backend, BOB, "b.txt", b"bob's", true);
    let bobs = as_(&backend, BOB, "GET", "/api/v1/records", None);
    let owners: Vec<&Value> = bobs.body["records"].as_array().unwrap().iter().map(|r| &r["uploaded_by"]).collect();
    assert_eq!(owners, [&json!("bob")], "bob lists only his own");
    let everyone = as_(&backend, AUDITOR, "GET", "/api/v1/records?all=true", None);
    assert_eq!(everyone.status, StatusCode::OK, "{}", everyone.text);
    assert_eq!(everyone.body["records"].as_array().unwrap().len(), 2, "an admin lists everyone's with all=true");
    let refused = as_(&backend, BOB, "GET", "/api/v1/records?all=true", None);
    assert_eq!((refused.status, error_code(&refused)), (StatusCode::FORBIDDEN, "forbidden"), "{}", refused.text);
    let audit = as_(&backend, AUDITOR, "GET", "/api/v1/audit", None);
    let lines: Vec<&str> = audit.text.lines().collect();
    assert!(
        lines.iter().any(|l| l.contains("\"denied\"") && l.contains("all=true")),
        "the 403 is audited: {}",
        audit.text
    );
    assert!(
        lines.iter().filter(|l| l.contains("\"presign\"")).count() >= 2
            && lines.iter().any(|l| l.contains("\"report\"")),
        "presigns and reports are audited: {}",
        audit.text
    );
    let stamps: Vec<String> =
        lines.iter().map(|l| serde_json::from_str::<Value>(l).unwrap()["at"].as_str().unwrap().to_owned()).collect();
    let mut sorted = stamps.clone();
    sorted.sort();
    assert_eq!(stamps, sorted, "oldest first");
    let denied = as_(&backend, BOB, "GET", "/api/v1/audit", None);
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "only admins read the audit log");
}

#[test]
fn a_user_and_date_template_makes_keys_s3_accepts_and_a_batch_is_still_verified_by_one_listing() {
    let backend = backend_with(&["--key-template", "{prefix}/{user}/{date}/{uuid}/{name}"]);
    let (id, key) = upload_as(&backend, ALICE, "résumé.pdf", b"templated", true);
    let date = time::OffsetDateTime::now_utc();
    let today = format!("{:04}/{:02}/{:02}", date.year(), u8::from(date.month()), date.day());
    assert!(key.starts_with(&format!("uploads/alice@example.com/{today}/")), "{{prefix}}/{{user}}/{{date}}: {key}");
    assert!(key.ends_with("/résumé.pdf"), "{key}");
    assert_eq!(dropship_testkit::S3Server::shared().get_object(&key).as_deref(), Some(&b"templated"[..]));
    assert_eq!(as_(&backend, ALICE, "GET", &format!("/api/v1/records/{id}"), None).body["key"], key);

    let mut reports = Vec::new();
    for n in 0..3 {
        let bytes = format!("batch {n}").into_bytes();
        let (id, key) = upload_as(&backend, ALICE, "b.txt", &bytes, false);
        let mut body = report_body(&key, "b.txt", &bytes);
        body["client_upload_id"] = json!(id);
        reports.push(body);
    }
    let reply = as_(&backend, ALICE, "POST", "/api/v1/reports", Some(json!({ "reports": reports })));
    let statuses: Vec<&Value> = reply.body["results"].as_array().unwrap().iter().map(|r| &r["status"]).collect();
    assert_eq!(statuses, [&json!("recorded"); 3], "{}", reply.text);
    assert!(backend.log().contains("by_listing=3"), "one listing under the user/date prefix verified all three");
}

#[test]
fn a_flat_template_puts_uuid_and_name_in_one_segment_that_s3_accepts() {
    let backend = backend_with(&["--key-template", "{prefix}/{uuid}-{name}"]);
    let (_, key) = upload_as(&backend, BOB, "report final.pdf", b"flat", true);
    let (prefix, leaf) = key.split_once('/').unwrap();
    assert_eq!(prefix, "uploads", "{key}");
    assert!(leaf.ends_with("-report final.pdf") && !leaf.contains('/'), "uuid-name in one segment: {key}");
    assert_eq!(dropship_testkit::S3Server::shared().get_object(&key).as_deref(), Some(&b"flat"[..]));
}
