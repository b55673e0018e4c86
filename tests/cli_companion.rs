//! The `companion` API flavour end to end: the `dropship` CLI against the real Uppy Companion
//! (`@uppy/companion@6.2.2` on Node), which presigns for a real SeaweedFS. Small files go up as
//! Companion's presigned POST forms, large ones through its multipart routes; Companion keeps
//! no records, so what counts is what is in the bucket and in the local history.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use dropship_system_tests::cli::{
    assert_in_bucket_and_history, assert_one_clear_line, json_lines, pattern, run, Workspace,
};
use dropship_system_tests::companion::Companion;
use dropship_system_tests::wait_for;
use dropship_testkit::{target_bin, S3Server};
use serde_json::Value;

const MIB: usize = 1024 * 1024;

/// `dropship upload --api companion` against `backend_url`, with no token (Companion has none).
fn upload_command(workspace: &Workspace, backend_url: &str) -> Command {
    let mut command = Command::new(target_bin("dropship"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DROPSHIP_BACKEND_URL", backend_url)
        .env("DROPSHIP_TOKEN", "")
        .env("DROPSHIP_DATA_DIR", workspace.data_dir())
        .args(["upload", "--api", "companion"]);
    command
}

/// Uploads `files` (name, bytes) through a fresh Companion and checks that each one landed.
fn upload_through_companion(files: &[(&str, Vec<u8>)], extra_args: &[&str]) -> Vec<Value> {
    let s3 = S3Server::shared();
    let companion = Companion::start(s3);
    let workspace = Workspace::new();
    let files: Vec<(PathBuf, Vec<u8>)> =
        files.iter().map(|(name, bytes)| (workspace.file(name, bytes), bytes.clone())).collect();

    let mut command = upload_command(&workspace, &companion.url);
    command.arg("--json").args(extra_args).args(files.iter().map(|(path, _)| path));
    let output = run(command);
    let lines = json_lines(&output);
    assert!(
        output.status.success(),
        "every file should upload through Companion: {lines:?}\nCompanion's log:\n{}",
        companion.log_tail()
    );
    assert_landed_in_bucket(s3, &workspace, &lines, &files);
    lines
}

/// Each file is in the bucket byte-identical under the key the CLI printed — Companion's own
/// `<uuid>-<file name>` — and in the history as uploaded with that key and a signature-free URL.
/// (Unlike `cli::assert_landed`, there are no backend records to check: Companion keeps none.)
fn assert_landed_in_bucket(s3: &S3Server, workspace: &Workspace, lines: &[Value], files: &[(PathBuf, Vec<u8>)]) {
    assert_eq!(lines.len(), files.len(), "one JSON line per file: {lines:?}");
    let bucket_url = format!("{}/{}/", s3.endpoint, s3.bucket);
    for (line, (path, _)) in assert_in_bucket_and_history(s3, workspace, lines, files).into_iter().zip(files) {
        let key = line["key"].as_str().unwrap();
        let file_name = path.file_name().unwrap().to_str().unwrap();
        assert!(key.ends_with(&format!("-{file_name}")), "Companion chose the key, keeping the file name: {key}");
        let object_url = line["object_url"].as_str().expect("an uploaded file has an object URL");
        assert!(object_url.starts_with(&bucket_url), "the object URL is in the bucket: {object_url}");
    }
}

#[test]
fn a_small_file_goes_up_as_companions_presigned_post_form_and_reads_back_identical() {
    let lines = upload_through_companion(&[("notes.txt", pattern(4321, 7))], &[]);
    assert!(!lines[0]["checksum_sha256"].as_str().unwrap().contains('-'), "one request, not parts: {}", lines[0]);
}

#[test]
fn an_empty_file_goes_up_as_a_post_form_and_reads_back_empty() {
    upload_through_companion(&[("empty.bin", Vec::new())], &[]);
}

#[test]
fn a_unicode_file_name_with_spaces_and_parentheses_survives_companions_key() {
    let lines = upload_through_companion(&[("résumé final (2).pdf", pattern(12_345, 1))], &[]);
    let object_url = lines[0]["object_url"].as_str().unwrap();
    assert!(
        object_url.ends_with("-r%C3%A9sum%C3%A9%20final%20%282%29.pdf"),
        "the key is encoded in the URL: {object_url}"
    );
}

#[test]
fn a_12_mib_file_goes_up_in_parts_through_companions_multipart_routes() {
    let five_mib = (5 * MIB).to_string();
    // A name that needs encoding in every multipart route's `key` query parameter.
    let lines = upload_through_companion(
        &[("grand fichier (été) & co.bin", pattern(12 * MIB, 12))],
        &["--multipart-threshold", &five_mib, "--part-size", &five_mib],
    );
    let checksum = lines[0]["checksum_sha256"].as_str().unwrap();
    assert!(checksum.ends_with("-3"), "three parts (5 + 5 + 2 MiB), S3's composite checksum: {checksum}");
}

#[test]
fn an_interrupted_multipart_upload_is_aborted_through_companions_delete_route() {
    let s3 = S3Server::shared();
    let companion = Companion::start(s3);
    let workspace = Workspace::new();
    // Content does not matter here, only that 32 parts one at a time take a while: a sparse file.
    let path = workspace.file("interrupted.bin", b"");
    std::fs::File::options().write(true).open(&path).unwrap().set_len(160 * MIB as u64).unwrap();
    let five_mib = (5 * MIB).to_string();
    let mut command = upload_command(&workspace, &companion.url);
    command
        .args(["--json", "--concurrency", "1", "--multipart-threshold", &five_mib, "--part-size", &five_mib])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let cli = command.spawn().expect("dropship starts");

    // Parts are being signed, so the multipart upload exists: interrupt as Ctrl-C would.
    wait_for("the CLI to sign parts through Companion", Duration::from_secs(60), || {
        companion.log().contains("/batch?key=").then_some(())
    })
    .unwrap();
    // Other tests share the bucket: only this file's upload counts.
    let in_flight: Vec<String> =
        pending_multipart_uploads(s3, "").into_iter().filter(|key| key.ends_with("-interrupted.bin")).collect();
    assert_eq!(in_flight.len(), 1, "the bucket lists the upload in flight: {in_flight:?}");
    // SAFETY: kill(2) on the PID of a child this test started and has not reaped.
    unsafe { libc::kill(cli.id() as libc::pid_t, libc::SIGINT) };
    let output = cli.wait_with_output().unwrap();
    eprintln!("stderr: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(130), "interrupted, not finished: {}", companion.log_tail());

    let line = &json_lines(&output)[0];
    assert_eq!(line["status"], "failed", "{line}");
    let history = workspace.history();
    let key = history[0]["key"].as_str().expect("the multipart upload's key is in the history").to_owned();
    let log = companion.log();
    let abort =
        log.lines().find(|l| l.contains("\"DELETE /s3/multipart/")).expect("an abort request reached Companion");
    assert!(abort.contains("HTTP/1.1\" 200"), "Companion aborted it: {abort}");
    assert_eq!(in_flight[0], key, "the upload in flight was this file's");
    let pending = pending_multipart_uploads(s3, &key);
    assert!(pending.is_empty(), "no unfinished multipart upload is left in the bucket: {pending:?}");
    assert_eq!(s3.get_object(&key), None, "and no object either");
}

/// The keys of the multipart uploads under `prefix` that were started and neither completed nor
/// aborted.
fn pending_multipart_uploads(s3: &S3Server, prefix: &str) -> Vec<String> {
    dropship_testkit::block_on(async {
        let listed = s3.client().list_multipart_uploads().bucket(&s3.bucket).prefix(prefix).send().await.unwrap();
        listed.uploads().iter().filter_map(|u| u.key().map(str::to_owned)).collect()
    })
}

#[test]
fn an_unreachable_companion_gives_one_line_that_says_to_check_the_url() {
    let workspace = Workspace::new();
    let path = workspace.file("a.txt", b"a");
    let closed_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{closed_port}");
    let mut command = upload_command(&workspace, &url);
    command.arg(&path);
    assert_one_clear_line(&run(command), &["Could not reach the backend", &url]);
}

#[test]
fn a_companion_without_s3_configured_gives_one_line_that_says_so() {
    let companion = Companion::start_without_s3();
    let workspace = Workspace::new();
    let path = workspace.file("a.txt", b"a");
    let mut command = upload_command(&workspace, &companion.url);
    command.arg(&path);
    assert_one_clear_line(&run(command), &[&companion.url, "HTTP 404", "Companion"]);
}

#[test]
fn a_server_that_is_not_companion_gives_one_line_about_the_url_and_flavour() {
    // A web server answering every request with an HTML page, as a wrong URL often does.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let page = "<!doctype html><title>Welcome</title><p>It works!";
            let _ = write!(
                &stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    let workspace = Workspace::new();
    let path = workspace.file("a.txt", b"a");
    let mut command = upload_command(&workspace, &url);
    command.arg(&path);
    assert_one_clear_line(&run(command), &[&url, "not the expected JSON", "companion"]);
}
