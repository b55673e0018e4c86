//! The backend as an operator runs it: probes and metrics without a token, request ids, JSON
//! logs, and the guards against slow, many and greedy clients; a drain on SIGTERM.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use dropship_testkit::BackendOptions;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn with_args(args: &[&str]) -> BackendOptions {
    BackendOptions { extra_args: args.iter().map(|a| a.to_string()).collect(), ..Default::default() }
}

fn address(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// Sends a request head and part of a body, then stops: the server waits for the rest.
fn start_slow_post(url: &str, token: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address(url)).expect("connects");
    let body = br#"{"files":[]}"#;
    write!(
        stream,
        "POST /api/v1/uploads/presign HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{{",
        body.len()
    )
    .expect("writes the head");
    stream
}

/// Reads a whole HTTP/1.1 answer sent with `connection: close` or until the timeout.
fn read_answer(stream: &mut TcpStream, timeout: Duration) -> String {
    stream.set_read_timeout(Some(timeout)).expect("a read timeout");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&answer).contains("}}") {
            break;
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn connections_that_send_half_a_header_are_closed_within_the_header_read_timeout() {
    let backend = start_backend_with(with_args(&["--header-read-timeout-secs", "1"]));
    let started = Instant::now();
    let mut streams: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut stream = TcpStream::connect(address(&backend.url)).expect("connects");
            stream.write_all(b"GET /api/v1/ping HTTP/1.1\r\nhost: x\r\nx-half: ").expect("writes half a head");
            stream
        })
        .collect();
    for (index, stream) in streams.iter_mut().enumerate() {
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 1024];
        // EOF, a reset or a 408 answer all mean the server gave up on the connection.
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "connection {index} was still open {:?} after it sent half a header",
            started.elapsed()
        );
    }
    let reply = get_json(&backend, "/api/v1/ping");
    assert_eq!(reply.status, StatusCode::OK, "the server still serves whole requests");
}

#[test]
fn a_principal_over_its_rate_gets_429_with_retry_after_and_the_error_shape() {
    let backend = start_backend_with(with_args(&["--rate-limit", "1:2"]));
    let url = format!("{}/api/v1/ping", backend.url);
    let token = backend.token.clone();
    let statuses: Vec<(StatusCode, Option<String>, Value)> = dropship_testkit::block_on(async move {
        let client = reqwest::Client::new();
        let mut seen = Vec::new();
        for _ in 0..3 {
            let response = client.get(&url).bearer_auth(&token).send().await.expect("answered");
            let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            seen.push((response.status(), retry, response.json().await.unwrap_or(Value::Null)));
        }
        seen
    });
    assert_eq!(statuses[0].0, StatusCode::OK, "the burst allows two");
    assert_eq!(statuses[1].0, StatusCode::OK, "the burst allows two");
    let (status, retry_after, body) = &statuses[2];
    assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS, "the third in the same instant is refused");
    assert_eq!(retry_after.as_deref(), Some("1"), "it says when to come back, in seconds");
    assert_eq!(body["error"]["code"], "rate_limited", "the native error shape: {body}");
    let metrics = call(&backend, "GET", "/metrics", None, None);
    assert!(metrics.text.contains("dropship_rate_limited_total 1\n"), "counted:\n{}", metrics.text);
}

#[test]
fn health_readiness_and_metrics_answer_without_a_token() {
    let backend = start_backend();
    let health = call(&backend, "GET", "/healthz", None, None);
    assert_eq!((health.status, health.body.clone()), (StatusCode::OK, json!({ "status": "ok" })), "alive");
    let ready = call(&backend, "GET", "/readyz", None, None);
    assert_eq!(ready.status, StatusCode::OK, "database and bucket reachable: {}", ready.text);
    assert_eq!(ready.body["checks"], json!({ "database": "ok", "storage": "ok" }));

    let id = new_upload_id();
    assert_eq!(get_json(&backend, &format!("/api/v1/records/{id}")).status, StatusCode::NOT_FOUND);
    presign_one(&backend, &new_upload_id(), "a.txt", b"abc");
    let metrics = call(&backend, "GET", "/metrics", None, None);
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics.text.contains(
            "dropship_http_requests_total{route=\"/api/v1/records/{client_upload_id}\",method=\"GET\",status=\"404\"} 1"
        ),
        "requests are counted by route template, not raw path:\n{}",
        metrics.text
    );
    assert!(!metrics.text.contains(&id), "no raw path with an id becomes a label");
    assert!(metrics.text.contains("dropship_presigned_urls_total 1\n"), "one URL handed out:\n{}", metrics.text);
    assert!(metrics.text.contains("dropship_webhook_backlog 0\n"), "the shared outbox is measured:\n{}", metrics.text);
    assert!(metrics
        .text
        .contains("dropship_http_request_duration_seconds_bucket{route=\"/api/v1/uploads/presign\",le=\"+Inf\"} 1"));
}

#[test]
fn readiness_names_the_bucket_when_s3_is_unreachable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = spawn_backend(&[
        "--s3-endpoint",
        &format!("http://127.0.0.1:{closed}"),
        "--db",
        dir.path().join("db.sqlite").to_str().unwrap(),
    ]);
    let reply = dropship_testkit::block_on(async move {
        let response = reqwest::get(format!("{url}/readyz")).await.expect("answered");
        (response.status(), response.json::<Value>().await.unwrap_or(Value::Null))
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(reply.0, StatusCode::SERVICE_UNAVAILABLE, "not ready without the bucket");
    assert_eq!(reply.1["checks"]["database"], "ok", "{}", reply.1);
    assert_ne!(reply.1["checks"]["storage"], "ok", "the bucket is named as what failed: {}", reply.1);
}

#[test]
fn a_sane_request_id_is_echoed_and_a_missing_or_insane_one_is_replaced() {
    let backend = start_backend();
    let url = format!("{}/healthz", backend.url);
    let ids = dropship_testkit::block_on(async move {
        let client = reqwest::Client::new();
        let mut ids = Vec::new();
        for sent in [Some("abc-123"), None, Some("bad id\twith spaces")] {
            let mut request = client.get(&url);
            if let Some(sent) = sent {
                request = request.header("x-request-id", sent);
            }
            let response = request.send().await.expect("answered");
            ids.push(response.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_owned()));
        }
        ids
    });
    assert_eq!(ids[0].as_deref(), Some("abc-123"), "a sane id is kept");
    assert!(ids[1].as_deref().is_some_and(|id| uuid::Uuid::parse_str(id).is_ok()), "a fresh UUID: {:?}", ids[1]);
    assert!(ids[2].as_deref().is_some_and(|id| uuid::Uuid::parse_str(id).is_ok()), "replaced: {:?}", ids[2]);
}

#[test]
fn json_logs_carry_the_request_id_on_every_line_of_the_request() {
    let backend = start_backend_with(with_args(&["--log-format", "json"]));
    let url = format!("{}/api/v1/uploads/presign", backend.url);
    let token = backend.token.clone();
    dropship_testkit::block_on(async move {
        let body = json!({ "files": [presign_entry(&new_upload_id(), "a.txt", b"abc", "text/plain")] });
        let response =
            reqwest::Client::new().post(&url).bearer_auth(token).header("x-request-id", "trace-42").json(&body).send();
        assert_eq!(response.await.expect("answered").status(), StatusCode::OK);
    });
    std::thread::sleep(Duration::from_millis(200));
    let log = backend.log();
    let lines: Vec<Value> = log.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    assert!(!lines.is_empty() && lines.len() == log.lines().count(), "every line is JSON:\n{log}");
    let of_request: Vec<&Value> = lines.iter().filter(|l| l["span"]["request_id"] == "trace-42").collect();
    assert!(
        of_request.iter().any(|l| l["fields"]["message"] == "presigned uploads"),
        "the handler's own line carries the id:\n{log}"
    );
    assert!(of_request.iter().any(|l| l["fields"]["message"] == "request"), "so does the access line:\n{log}");
}

#[test]
fn requests_beyond_the_cap_get_503_with_retry_after_and_slow_ones_time_out() {
    let backend = start_backend_with(with_args(&["--max-concurrent-requests", "1", "--request-timeout-secs", "2"]));
    let mut slow = start_slow_post(&backend.url, &backend.token);
    std::thread::sleep(Duration::from_millis(300));
    let url = format!("{}/healthz", backend.url);
    let (status, retry_after, body) = dropship_testkit::block_on(async move {
        let response = reqwest::get(url).await.expect("answered");
        let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        (response.status(), retry, response.json::<Value>().await.unwrap_or(Value::Null))
    });
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "the one slot is taken by the slow request");
    assert_eq!(retry_after.as_deref(), Some("1"), "told when to come back");
    assert_eq!(body["error"]["code"], "overloaded", "{body}");

    let answer = read_answer(&mut slow, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 503"), "the slow request passed its deadline: {answer}");
    assert!(answer.contains("request_timeout"), "with the JSON error: {answer}");
    assert_eq!(call(&backend, "GET", "/healthz", None, None).status, StatusCode::OK, "the slot is free again");
}

/// Starts the backend binary directly (the test kit's handle does not expose the process),
/// with a static token and a fake S3 unless `args` say otherwise; returns it and its URL.
fn spawn_backend(args: &[&str]) -> (std::process::Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dropship-backend"));
    command
        .args(["--listen", "127.0.0.1:0", "--bucket", "b", "--tokens", "t", "--path-style"])
        .args(["--access-key-id", "a", "--secret-access-key", "s"])
        .args(args)
        .env_remove("DROPSHIP_S3_ENDPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if !args.contains(&"--s3-endpoint") {
        command.args(["--s3-endpoint", "http://127.0.0.1:9"]);
    }
    let mut child = command.spawn().expect("the backend starts");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).expect("the listening line");
    let url = line.trim().trim_start_matches("listening on ").to_owned();
    assert!(url.starts_with("http://"), "listening line: {line}");
    (child, url)
}

#[test]
fn sigterm_lets_a_request_in_flight_finish_and_the_process_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = spawn_backend(&["--db", dir.path().join("db.sqlite").to_str().unwrap()]);
    let mut slow = start_slow_post(&url, "t");
    std::thread::sleep(Duration::from_millis(300));
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success(), "SIGTERM sent");
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().expect("waitable").is_none(), "the process waits for the request in flight");
    assert!(TcpStream::connect(address(&url)).is_err(), "no new connections are accepted while draining");
    slow.write_all(br#""files":[]}"#).expect("the rest of the body is still read");
    let answer = read_answer(&mut slow, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 422"), "the request got its whole answer: {answer}");
    assert!(answer.contains("empty_batch"), "{answer}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("waitable") {
            break exit;
        }
        assert!(Instant::now() < deadline, "the process exits after the drain");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "a drained shutdown exits 0: {exit:?}");
}
