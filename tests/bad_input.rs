//! Bad input across the core: files that vanish, shrink or grow while they are sent; a backend
//! that answers with hostile JSON (wrong types, a huge body, a plain-http upload URL for another
//! machine); the allow-list of upload hosts; and presigned signatures kept out of logs and
//! history. Each is a clear error for the files it touches, and the rest of the batch goes on.
//!
//! The real backend cannot be made to answer hostile JSON, so those cases use a small loopback
//! fake (`FakeBackend`) that also plays the S3 endpoint for the URLs it hands out.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dropship_system_tests::cli::{json_lines, pattern, Workspace};
use dropship_system_tests::invariants::assert_no_signature_written;
use dropship_system_tests::wait_for;
use dropship_testkit::{Backend, S3Server};
use serde_json::{json, Value};

const MIB: usize = 1024 * 1024;

fn texts(output: &Output) -> Vec<String> {
    vec![String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned()]
}

fn line_for<'a>(lines: &'a [Value], name: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["path"].as_str().is_some_and(|p| p.ends_with(name)))
        .unwrap_or_else(|| panic!("a line for {name}: {lines:?}"))
}

// ---------------------------------------------------------------------------------------------
// Files that change while they are sent

/// Uploads `victim` (3 MiB, sent first at 1 MiB/s) and a small bystander through the real
/// stack, calls `change` on the victim a second into its upload, and returns the JSON lines.
fn change_during_upload(change: impl FnOnce(&Path)) -> (Vec<Value>, Backend) {
    let backend = Backend::start(S3Server::shared());
    let workspace = Workspace::new();
    let victim = workspace.file("a-victim.bin", &pattern(3 * MIB, 1));
    workspace.file("b-bystander.bin", &pattern(4000, 2));
    let mut command = workspace.dropship(&backend, "native");
    command
        .args(["upload", "--json", "--concurrency", "1", "--bandwidth-limit", &MIB.to_string()])
        .arg(workspace.dir.path().join("files"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().expect("run dropship");
    let history_says_uploading = || {
        let rows = workspace.history();
        rows.iter().any(|r| r["file_name"] == "a-victim.bin" && r["status"] == "uploading").then_some(())
    };
    wait_for("the victim to be uploading", Duration::from_secs(20), history_says_uploading).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    change(&victim);
    let output = child.wait_with_output().unwrap();
    let lines = json_lines(&output);
    assert_eq!(output.status.code(), Some(1), "some files failed: {}", texts(&output).join("\n"));

    let bystander = line_for(&lines, "b-bystander.bin");
    assert_eq!(bystander["status"], "uploaded", "the rest of the batch goes on: {bystander}");
    let history = workspace.history();
    let row = history.iter().find(|r| r["file_name"] == "a-victim.bin").expect("a history row for the victim");
    assert_eq!(row["status"], "failed", "{row}");
    assert_eq!(row["error_code"], "file_changed", "{row}");
    let records = backend.records();
    assert_eq!(records.len(), 1, "only the bystander is recorded: {records:?}");
    assert_no_signature_written(&workspace, &texts(&output));
    (lines, backend)
}

fn victim_error(lines: &[Value]) -> String {
    let victim = line_for(lines, "a-victim.bin");
    assert_eq!(victim["status"], "failed", "{victim}");
    assert_eq!(victim["error"]["code"], "file_changed", "{victim}");
    let message = victim["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("a-victim.bin") && message.contains("Upload it again"),
        "names the file and what to do: {message}"
    );
    message
}

#[test]
fn a_file_that_shrinks_while_it_is_sent_fails_alone_with_a_clear_error() {
    let (lines, _backend) = change_during_upload(|path| {
        std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(MIB as u64).unwrap();
    });
    let message = victim_error(&lines);
    assert!(message.contains(&format!("is {MIB} bytes now")), "{message}");
}

#[test]
fn a_file_that_grows_while_it_is_sent_fails_alone_with_a_clear_error() {
    let (lines, _backend) = change_during_upload(|path| {
        std::fs::OpenOptions::new().append(true).open(path).unwrap().write_all(b"more lines").unwrap();
    });
    let message = victim_error(&lines);
    assert!(message.contains(&format!("is {} bytes now", 3 * MIB + 10)), "{message}");
}

#[test]
fn a_file_deleted_while_it_is_sent_fails_alone_with_a_clear_error() {
    let (lines, _backend) = change_during_upload(|path| std::fs::remove_file(path).unwrap());
    let message = victim_error(&lines);
    assert!(message.contains("deleted or moved"), "{message}");
}

// ---------------------------------------------------------------------------------------------
// A backend that answers with hostile JSON

#[derive(Clone, Copy)]
enum Presign {
    /// `{"uploads": "…"}` where an array belongs.
    WrongTypes,
    /// A 9 MiB answer.
    Huge,
    /// Well-formed; files named `hostile*` get a plain-http URL on another machine, the others
    /// a loopback URL on this fake, which accepts the PUT like S3.
    PlainHttpForHostile,
    /// Like `PlainHttpForHostile`, but the `hostile*` entries carry a number where the URL belongs.
    WrongTypeForHostile,
    /// Well-formed loopback URLs on this fake, whose PUT answers 307 to the address given.
    RedirectTo(&'static str),
}

struct FakeBackend {
    url: String,
    puts: Arc<AtomicUsize>,
}

impl FakeBackend {
    fn start(presign: Presign) -> FakeBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let puts = Arc::new(AtomicUsize::new(0));
        let (base, counter) = (url.clone(), puts.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let (base, counter) = (base.clone(), counter.clone());
                std::thread::spawn(move || serve_fake(stream, presign, &base, &counter));
            }
        });
        FakeBackend { url, puts }
    }
}

fn serve_fake(mut stream: std::net::TcpStream, presign: Presign, base: &str, puts: &AtomicUsize) {
    let mut data = Vec::new();
    let mut buf = [0u8; 65536];
    let (head, body) = loop {
        let n = stream.read(&mut buf).unwrap_or(0);
        if n == 0 {
            return;
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..at]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0);
            let mut body = data[at + 4..].to_vec();
            while body.len() < len {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => body.extend_from_slice(&buf[..n]),
                }
            }
            break (head, body);
        }
    };
    let request_line = head.lines().next().unwrap_or_default().to_owned();
    let reply = |stream: &mut std::net::TcpStream, status: &str, extra: &str, body: &[u8]| {
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body);
    };
    if let (Presign::RedirectTo(elsewhere), true) = (presign, request_line.starts_with("PUT /s3/")) {
        puts.fetch_add(1, Ordering::SeqCst);
        let location = format!("location: {elsewhere}/stolen?X-Amz-Signature=0123456789abcdef\r\n");
        return reply(&mut stream, "307 Temporary Redirect", &location, b"");
    }
    if request_line.starts_with("PUT /s3/") {
        puts.fetch_add(1, Ordering::SeqCst);
        return reply(&mut stream, "200 OK", "etag: \"fake\"\r\n", b"");
    }
    if request_line.starts_with("POST /api/v1/uploads/presign") {
        match presign {
            Presign::WrongTypes => return reply(&mut stream, "200 OK", "", br#"{"uploads": "all of them"}"#),
            Presign::Huge => {
                let mut body = br#"{"uploads": [""#.to_vec();
                body.resize(9 * MIB, b'x');
                body.extend_from_slice(br#""]}"#);
                return reply(&mut stream, "200 OK", "", &body);
            }
            Presign::PlainHttpForHostile | Presign::WrongTypeForHostile | Presign::RedirectTo(_) => {
                let request: Value = serde_json::from_slice(&body).unwrap();
                let uploads: Vec<Value> = request["files"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| {
                        let name = f["file_name"].as_str().unwrap();
                        let host = if name.starts_with("hostile") { "http://uploads.example.com" } else { base };
                        let url = format!("{host}/s3/k/{name}?X-Amz-Signature=0123456789abcdef");
                        let url = match presign {
                            Presign::WrongTypeForHostile if name.starts_with("hostile") => json!(42),
                            _ => json!(url),
                        };
                        json!({
                            "client_upload_id": f["client_upload_id"],
                            "key": format!("k/{name}"),
                            "method": "PUT",
                            "url": url,
                        })
                    })
                    .collect();
                return reply(&mut stream, "200 OK", "", json!({ "uploads": uploads }).to_string().as_bytes());
            }
        }
    }
    if request_line.starts_with("POST /api/v1/reports") {
        let request: Value = serde_json::from_slice(&body).unwrap();
        let results: Vec<Value> =
            request["reports"].as_array().unwrap().iter().map(|_| json!({ "status": "recorded" })).collect();
        return reply(&mut stream, "200 OK", "", json!({ "results": results }).to_string().as_bytes());
    }
    reply(&mut stream, "404 Not Found", "", br#"{"error":{"code":"not_found","message":"no such route"}}"#);
}

fn upload_to_fake(fake: &FakeBackend, names: &[&str]) -> (Output, Vec<Value>, Workspace) {
    let workspace = Workspace::new();
    for (i, name) in names.iter().enumerate() {
        workspace.file(name, &pattern(1000 + i, i as u8));
    }
    let mut command = std::process::Command::new(dropship_testkit::target_bin("dropship"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DROPSHIP_LOG", "debug")
        .args(["upload", "--json", "--backend", &fake.url, "--token", "t", "--data-dir"])
        .arg(workspace.data_dir())
        .arg(workspace.dir.path().join("files"));
    let output = command.output().expect("run dropship");
    let lines = json_lines(&output);
    (output, lines, workspace)
}

#[test]
fn a_plain_http_upload_url_for_another_machine_fails_that_file_and_the_others_go_on() {
    let fake = FakeBackend::start(Presign::PlainHttpForHostile);
    let (output, lines, workspace) = upload_to_fake(&fake, &["fine-1.txt", "hostile.txt", "fine-2.txt"]);
    assert_eq!(output.status.code(), Some(1), "{}", texts(&output).join("\n"));
    let hostile = line_for(&lines, "hostile.txt");
    assert_eq!(hostile["status"], "failed", "{hostile}");
    assert_eq!(hostile["error"]["code"], "unsafe_upload_url", "{hostile}");
    let message = hostile["error"]["message"].as_str().unwrap();
    assert!(message.contains("uploads.example.com") && message.contains("unencrypted"), "{message}");
    for name in ["fine-1.txt", "fine-2.txt"] {
        assert_eq!(line_for(&lines, name)["status"], "uploaded", "the rest of the batch goes on");
    }
    assert_eq!(fake.puts.load(Ordering::SeqCst), 2, "only the two loopback URLs were used");
    assert_no_signature_written(&workspace, &texts(&output));
}

#[test]
fn a_presign_answer_with_wrong_types_is_a_clear_error_for_each_file() {
    let fake = FakeBackend::start(Presign::WrongTypes);
    let (output, lines, workspace) = upload_to_fake(&fake, &["one.txt", "two.txt"]);
    assert_eq!(output.status.code(), Some(2), "the backend as a whole is unusable: {}", texts(&output).join("\n"));
    assert_eq!(lines.len(), 2, "still one line per file: {lines:?}");
    for line in &lines {
        assert_eq!(line["status"], "failed");
        assert_eq!(line["error"]["code"], "backend_bad_response", "{line}");
        let message = line["error"]["message"].as_str().unwrap();
        assert!(message.contains("not the expected JSON") && message.contains("invalid type"), "{message}");
    }
    assert_eq!(fake.puts.load(Ordering::SeqCst), 0);
    assert_no_signature_written(&workspace, &texts(&output));
}

#[test]
fn one_entry_with_wrong_types_fails_only_its_file_and_the_others_go_on() {
    let fake = FakeBackend::start(Presign::WrongTypeForHostile);
    let (output, lines, workspace) = upload_to_fake(&fake, &["fine-1.txt", "hostile.txt", "fine-2.txt"]);
    assert_eq!(output.status.code(), Some(1), "{}", texts(&output).join("\n"));
    let hostile = line_for(&lines, "hostile.txt");
    assert_eq!(hostile["error"]["code"], "backend_bad_response", "{hostile}");
    let message = hostile["error"]["message"].as_str().unwrap();
    assert!(message.contains("hostile.txt") && message.contains("invalid type"), "{message}");
    for name in ["fine-1.txt", "fine-2.txt"] {
        assert_eq!(line_for(&lines, name)["status"], "uploaded", "the rest of the batch goes on");
    }
    assert_eq!(fake.puts.load(Ordering::SeqCst), 2);
    assert_no_signature_written(&workspace, &texts(&output));
}

#[test]
fn a_huge_answer_is_refused_without_buffering_it_all() {
    let fake = FakeBackend::start(Presign::Huge);
    let (output, lines, _workspace) = upload_to_fake(&fake, &["one.txt"]);
    assert_eq!(output.status.code(), Some(2), "{}", texts(&output).join("\n"));
    let line = line_for(&lines, "one.txt");
    assert_eq!(line["error"]["code"], "backend_bad_response", "{line}");
    assert!(line["error"]["message"].as_str().unwrap().contains("larger than 8 MiB"), "{line}");
}

/// A listener that counts the connections it is offered and accepts every request like S3,
/// so a client that followed a redirect there would believe the upload went through.
fn counting_listener(address: &str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind(address).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 65536];
            let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
            while stream.read(&mut buf).is_ok_and(|n| n > 0) {}
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\netag: \"stolen\"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, connections)
}

#[test]
fn an_upload_url_that_redirects_to_another_host_fails_the_file_and_sends_nothing_there() {
    // 127.0.0.2 is this machine too, but another host as far as the allow-list can tell.
    let (elsewhere, received) = counting_listener("127.0.0.2:0");
    let leaked: &'static str = Box::leak(elsewhere.clone().into_boxed_str());
    let fake = FakeBackend::start(Presign::RedirectTo(leaked));
    let workspace = Workspace::new();
    workspace.file("report.pdf", &pattern(4000, 3));
    std::fs::create_dir_all(workspace.data_dir()).unwrap();
    let settings = json!({ "backend_url": fake.url, "token": "t", "upload_hosts": ["127.0.0.1"] });
    std::fs::write(workspace.data_dir().join("settings.json"), settings.to_string()).unwrap();
    let mut command = std::process::Command::new(dropship_testkit::target_bin("dropship"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DROPSHIP_LOG", "debug")
        .args(["upload", "--json", "--data-dir"])
        .arg(workspace.data_dir())
        .arg(workspace.dir.path().join("files"));
    let output = command.output().expect("run dropship");
    let lines = json_lines(&output);

    assert_eq!(output.status.code(), Some(1), "a failed file exits 1: {}", texts(&output).join("\n"));
    let line = line_for(&lines, "report.pdf");
    assert_eq!(line["status"], "failed", "a redirected upload is not an upload: {line}");
    assert_eq!(line["error"]["code"], "upload_redirected", "{line}");
    let message = line["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("127.0.0.2") && message.contains("tell whoever runs the backend"),
        "names where it was sent and what to do: {message}"
    );
    assert_eq!(fake.puts.load(Ordering::SeqCst), 1, "one PUT to the allowed host, not retried");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(received.load(Ordering::SeqCst), 0, "the host it redirected to received nothing");
    let history = workspace.history();
    assert_eq!(history[0]["status"], "failed", "history agrees: {:?}", history);
    assert_eq!(history[0]["error_code"], "upload_redirected", "{:?}", history);
    assert_no_signature_written(&workspace, &texts(&output));
}

// ---------------------------------------------------------------------------------------------
// The allow-list of upload hosts, against the real backend

/// What one run with an allow-list left behind: the CLI's output and lines, and the stack.
type AllowListRun = (Output, Vec<Value>, Backend, Workspace, Vec<(PathBuf, Vec<u8>)>);

fn upload_with_allowed_hosts(hosts: &[&str]) -> AllowListRun {
    let backend = Backend::start(S3Server::shared());
    let workspace = Workspace::new();
    let files: Vec<(PathBuf, Vec<u8>)> = [("small.txt", 3000), ("parts.bin", 6 * MIB)]
        .iter()
        .enumerate()
        .map(|(i, (name, size))| {
            let bytes = pattern(*size, i as u8);
            (workspace.file(name, &bytes), bytes)
        })
        .collect();
    std::fs::create_dir_all(workspace.data_dir()).unwrap();
    let settings = json!({ "backend_url": backend.url, "token": backend.token, "upload_hosts": hosts });
    std::fs::write(workspace.data_dir().join("settings.json"), settings.to_string()).unwrap();
    let five_mib = (5 * MIB).to_string();
    let mut command = workspace.dropship(&backend, "native");
    command
        .args(["upload", "--json", "--multipart-threshold", &five_mib, "--part-size", &five_mib])
        .arg(workspace.dir.path().join("files"));
    let output = command.output().unwrap();
    let lines = json_lines(&output);
    (output, lines, backend, workspace, files)
}

#[test]
fn upload_urls_outside_the_allowed_hosts_are_refused_before_a_byte_is_sent() {
    let (output, lines, backend, workspace, _) = upload_with_allowed_hosts(&["uploads.example.com", ".s3.example.org"]);
    assert_eq!(output.status.code(), Some(1), "{}", texts(&output).join("\n"));
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert_eq!(line["status"], "failed", "{line}");
        assert_eq!(line["error"]["code"], "upload_host_not_allowed", "{line}");
        let message = line["error"]["message"].as_str().unwrap();
        assert!(message.contains("127.0.0.1") && message.contains("allowed upload hosts"), "{message}");
    }
    assert!(backend.records().is_empty());
    assert_no_signature_written(&workspace, &texts(&output));
}

#[test]
fn upload_urls_inside_the_allowed_hosts_go_through() {
    let (output, _, backend, workspace, files) = upload_with_allowed_hosts(&["127.0.0.1"]);
    assert!(output.status.success(), "{}", texts(&output).join("\n"));
    dropship_system_tests::invariants::assert_nothing_lost(
        S3Server::shared(),
        &backend,
        &workspace,
        dropship_system_tests::invariants::Expected::files(&files).output(&texts(&output)),
    );
}

// ---------------------------------------------------------------------------------------------
// Signatures

#[test]
fn no_signature_reaches_the_debug_log_or_the_history_even_when_urls_expire_and_are_signed_again() {
    let options = dropship_testkit::BackendOptions { url_expiry_secs: Some(1), ..Default::default() };
    let backend = Backend::start_with(S3Server::shared(), options);
    let workspace = Workspace::new();
    let bytes = pattern(12 * MIB, 9);
    workspace.file("slow.bin", &bytes);
    let five_mib = (5 * MIB).to_string();
    let mut command = workspace.dropship(&backend, "native");
    command
        .env("DROPSHIP_LOG", "debug")
        .args(["upload", "--json", "--multipart-threshold", &five_mib, "--part-size", &five_mib])
        .args(["--concurrency", "1", "--bandwidth-limit", &(4 * MIB).to_string()])
        .arg(workspace.dir.path().join("files"));
    let output = command.output().unwrap();
    let text = texts(&output);
    assert!(output.status.success(), "{}", text.join("\n"));
    assert!(text[1].contains("signing it again") || text[1].contains("uploading"), "the debug log has content");
    assert!(!text[1].is_empty(), "debug logging was on");
    assert_no_signature_written(&workspace, &text);
}
