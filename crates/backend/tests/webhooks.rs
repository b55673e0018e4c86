//! Completion webhooks against a loopback receiver in the test: every newly recorded upload
//! arrives signed, keyed by its idempotency key, once per key after the receiver's failures,
//! and across a backend restart.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use common::*;
use dropship_testkit::{block_on, runtime, Backend, BackendOptions};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const SECRET: &str = "webhook-secret-for-tests";

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    /// Bodies accepted with 2xx, per idempotency key.
    accepted: HashMap<String, Vec<Value>>,
    /// Every delivery attempt, answered or not.
    attempts: usize,
    /// Deliveries whose signature did not match.
    bad_signatures: usize,
}

/// A loopback HTTP server that checks signatures as a Rails app would, fails the first
/// `fail_first` deliveries with 500 and accepts the rest.
struct Receiver {
    url: String,
    fail_first: Arc<AtomicUsize>,
    seen: Arc<Mutex<Seen>>,
    _server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct ReceiverState {
    fail_first: Arc<AtomicUsize>,
    seen: Arc<Mutex<Seen>>,
}

impl Receiver {
    fn start(fail_first: usize) -> Receiver {
        let fail_first = Arc::new(AtomicUsize::new(fail_first));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let state = ReceiverState { fail_first: Arc::clone(&fail_first), seen: Arc::clone(&seen) };
        let listener = block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("a loopback port");
        let url = format!("http://{}/hooks/dropship", listener.local_addr().unwrap());
        let app = Router::new().route("/hooks/dropship", post(receive)).with_state(state);
        let server = runtime().spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, fail_first, seen, _server: server }
    }

    fn accept_everything_from_now_on(&self) {
        self.fail_first.store(0, Ordering::SeqCst);
    }

    /// Waits until `count` distinct keys were accepted, then a little longer for duplicates.
    fn wait_for_keys(&self, count: usize, within: Duration) {
        let started = Instant::now();
        while self.seen.lock().unwrap().accepted.len() < count {
            let seen = self.seen.lock().unwrap();
            assert!(
                started.elapsed() < within,
                "only {} of {count} webhooks accepted within {within:?} ({} attempts)",
                seen.accepted.len(),
                seen.attempts
            );
            drop(seen);
            std::thread::sleep(Duration::from_millis(100));
        }
        // A duplicate would come right after: give the worker one more poll.
        std::thread::sleep(Duration::from_millis(1500));
    }
}

async fn receive(State(state): State<ReceiverState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut seen = state.seen.lock().unwrap();
    seen.attempts += 1;
    let signature = headers.get("x-dropship-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    // What a Rails app does: OpenSSL::HMAC.hexdigest("SHA256", secret, request.raw_post).
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    if signature != expected {
        seen.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    if state.fail_first.load(Ordering::SeqCst) > 0 {
        state.fail_first.fetch_sub(1, Ordering::SeqCst);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.accepted.entry(key).or_default().push(value);
    StatusCode::NO_CONTENT
}

fn backend_announcing_to(receiver: &Receiver) -> Backend {
    start_backend_with(BackendOptions {
        extra_args: vec!["--webhook-url".into(), receiver.url.clone(), "--webhook-secret".into(), SECRET.into()],
        ..Default::default()
    })
}

/// Uploads and reports one native file; returns its client upload id.
fn record_native(backend: &Backend, name: &str) -> String {
    let id = new_upload_id();
    let bytes = format!("contents of {name}").into_bytes();
    let upload = upload_one(backend, &id, name, &bytes);
    let reply = report(backend, &id, &report_body(upload["key"].as_str().unwrap(), name, &bytes));
    assert_eq!(reply.status, StatusCode::CREATED, "recorded: {}", reply.text);
    id
}

#[test]
fn every_recorded_upload_arrives_signed_once_per_idempotency_key_after_the_receiver_fails_three_times() {
    let receiver = Receiver::start(3);
    let backend = backend_announcing_to(&receiver);
    let ids: Vec<String> = (0..3).map(|n| record_native(&backend, &format!("file{n}.txt"))).collect();
    // A repeated report records nothing new, so it announces nothing new.
    let again = report(
        &backend,
        &ids[0],
        &report_body(backend.record(&ids[0]).unwrap()["key"].as_str().unwrap(), "file0.txt", b"contents of file0.txt"),
    );
    assert_eq!(again.status, StatusCode::OK, "the repeat is acknowledged: {}", again.text);

    // A rails record, which has no client id.
    let reply = post_json(&backend, "/api/attachments/generate_upload_url", &json!({ "file_name": "r.pdf" }));
    let url = reply.body["url"].as_str().expect("a rails URL").to_owned();
    let (status, _) = put(&url, &[], b"rails bytes");
    assert_eq!(status, StatusCode::OK);
    let attachment = json!({ "attachment": {
        "file_name": "r.pdf", "url": url.split('?').next().unwrap(), "byte_size": 11,
        "content_type": "application/pdf", "checksum": sha256_base64(b"rails bytes"),
    }});
    let rails = post_json(&backend, "/api/attachments", &attachment);
    assert!(rails.status.is_success(), "the rails record is made: {}", rails.text);

    receiver.wait_for_keys(4, Duration::from_secs(60));
    let seen = receiver.seen.lock().unwrap();
    assert_eq!(seen.bad_signatures, 0, "every body is signed with the shared secret");
    assert!(seen.attempts >= 4 + 3, "the three failures were retried: {} attempts", seen.attempts);
    for id in &ids {
        let bodies = seen.accepted.get(id).unwrap_or_else(|| panic!("{id} was announced"));
        assert_eq!(bodies.len(), 1, "{id} was accepted exactly once");
        assert_eq!(bodies[0]["event"], "upload.recorded");
        assert_eq!(bodies[0]["record"]["client_upload_id"], id.as_str(), "the body is the record");
        assert!(bodies[0]["record"]["uploaded_by"].as_str().is_some_and(|p| !p.is_empty()), "with who uploaded it");
    }
    let rails_keys: Vec<&String> = seen.accepted.keys().filter(|k| k.starts_with("rails-")).collect();
    assert_eq!(rails_keys.len(), 1, "the rails record is keyed rails-<sha256 of its key>: {:?}", seen.accepted.keys());
    assert_eq!(seen.accepted[rails_keys[0]][0]["id"], rails.body["id"], "with the id rails answered");
    assert_eq!(seen.accepted.len(), 4, "nothing else was announced");
}

#[test]
fn a_backlog_left_by_a_stopped_backend_is_delivered_after_it_restarts() {
    let receiver = Receiver::start(usize::MAX);
    let mut backend = backend_announcing_to(&receiver);
    let ids: Vec<String> = (0..2).map(|n| record_native(&backend, &format!("backlog{n}.txt"))).collect();
    let started = Instant::now();
    while receiver.seen.lock().unwrap().attempts < 2 {
        assert!(started.elapsed() < Duration::from_secs(20), "the backend tries to deliver");
        std::thread::sleep(Duration::from_millis(50));
    }
    backend.stop();
    assert!(backend.log().contains("webhook worker stopped"), "the worker stops with the server");
    receiver.accept_everything_from_now_on();
    backend.start_again();

    receiver.wait_for_keys(2, Duration::from_secs(60));
    let seen = receiver.seen.lock().unwrap();
    for id in &ids {
        assert_eq!(seen.accepted.get(id).map(Vec::len), Some(1), "{id} arrives once after the restart");
    }
}
