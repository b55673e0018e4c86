//! Logs and `dropship diagnose` end to end: a real upload through the real backend and SeaweedFS
//! (so real presigned URLs and a real token pass through the code that logs), one failure, then
//! the log file and the bundle are searched for what must never be in them.

use std::io::Read;
use std::path::Path;
use std::process::Output;

use dropship_core::diagnose::hash_name;
use dropship_system_tests::cli::{json_lines, run, Workspace};
use dropship_system_tests::invariants::assert_no_signature_written;
use dropship_testkit::{Backend, S3Server};

const SECRET_NAME: &str = "quarterly-board-minutes.pdf";
const MISSING_NAME: &str = "vanished-draft.txt";
/// What a settings.json kept from before the keyring (or by choice, without one) holds.
const TOKEN_IN_FILE: &str = "file-kept-token-7f3a9c2e51";

fn texts(output: &Output) -> Vec<String> {
    vec![String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned()]
}

/// One file uploaded (a token, presigned URLs), one missing: the history holds a failure.
fn upload_one_good_one_missing(backend: &Backend, workspace: &Workspace) -> Vec<String> {
    let good = workspace.file(SECRET_NAME, b"%PDF-1.4 minutes");
    let missing = workspace.dir.path().join("files").join(MISSING_NAME);
    let mut command = workspace.dropship(backend, "native");
    command.env("DROPSHIP_LOG", "debug").args(["upload", "--json"]).arg(&good).arg(&missing);
    let output = run(command);
    assert_eq!(output.status.code(), Some(1), "one failed file means exit 1");
    let lines = json_lines(&output);
    assert!(lines.iter().any(|l| l["status"] == "uploaded"), "the good file went up: {lines:?}");
    assert!(lines.iter().any(|l| l["error"]["code"] == "file_not_found"), "the missing one failed: {lines:?}");
    texts(&output)
}

/// Every entry of the zip, decompressed.
fn entries(zip_path: &Path) -> Vec<(String, String)> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(zip_path).unwrap()).expect("a valid zip");
    (0..archive.len())
        .map(|i| {
            let mut file = archive.by_index(i).unwrap();
            let mut text = String::new();
            file.read_to_string(&mut text).unwrap();
            (file.name().expect("a UTF-8 entry name").into_owned(), text)
        })
        .collect()
}

fn diagnose(backend: &Backend, workspace: &Workspace, out: &Path, extra: &[&str]) -> Vec<(String, String)> {
    let mut command = workspace.dropship(backend, "native");
    command.args(["diagnose", "-o"]).arg(out).args(extra);
    let output = run(command);
    assert!(output.status.success(), "diagnose succeeds: {:?}", texts(&output));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert_eq!(printed.trim(), out.display().to_string(), "it prints where the bundle is");
    entries(out)
}

fn assert_no_secret_in(entries: &[(String, String)], zip_path: &Path, tokens: &[String]) {
    let raw = std::fs::read(zip_path).unwrap();
    for (name, text) in entries {
        let lower = text.to_ascii_lowercase();
        assert!(!lower.contains("x-amz-signature"), "{name} holds a presigned URL's signature");
        assert!(!lower.contains("signature="), "{name} holds a signature");
        for token in tokens {
            assert!(!text.contains(token.as_str()), "{name} holds a token");
        }
    }
    for token in tokens {
        assert!(!raw.windows(token.len()).any(|w| w == token.as_bytes()), "the zip's own bytes hold a token");
    }
}

#[test]
fn the_log_file_records_an_upload_with_a_token_and_signed_urls_without_either() {
    let backend = Backend::start(S3Server::shared());
    let workspace = Workspace::new();
    let output = upload_one_good_one_missing(&backend, &workspace);

    let logs: Vec<_> = std::fs::read_dir(workspace.data_dir().join("logs"))
        .expect("a logs folder in the data folder")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(logs.len(), 1, "one file for the CLI today: {logs:?}");
    let text = std::fs::read_to_string(&logs[0]).unwrap();
    assert!(logs[0].file_name().unwrap().to_string_lossy().starts_with("dropship-cli."), "{logs:?}");
    assert!(text.contains("DEBUG") && text.lines().count() > 3, "the debug level reached the file:\n{text}");
    // The whole data folder, the log included, is searched byte by byte.
    assert_no_signature_written(&workspace, &output);
}

#[test]
fn a_bundle_holds_each_part_and_the_failure_code_and_no_secret() {
    let backend = Backend::start(S3Server::shared());
    let workspace = Workspace::new();
    upload_one_good_one_missing(&backend, &workspace);
    let settings = serde_json::json!({"backend_url": backend.url, "api": "native", "token": TOKEN_IN_FILE, "token_storage": "file"});
    std::fs::write(workspace.data_dir().join("settings.json"), settings.to_string()).unwrap();

    let zip_path = workspace.dir.path().join("bundle.zip");
    let entries = diagnose(&backend, &workspace, &zip_path, &[]);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "summary.txt",
        "about.json",
        "settings.json",
        "failures.json",
        "outbox.json",
        "multipart.json",
        "watch.json",
        "connection.json",
    ] {
        assert!(names.contains(&expected), "the bundle has {expected}: {names:?}");
    }
    assert!(names.iter().any(|n| n.starts_with("logs/dropship-cli.")), "the last logs are in: {names:?}");
    let entry = |name: &str| &entries.iter().find(|(n, _)| n == name).unwrap().1;

    let failures: serde_json::Value = serde_json::from_str(entry("failures.json")).unwrap();
    assert_eq!(failures["failures"][0]["error_code"], "file_not_found", "the failure and its code: {failures}");
    assert!(entry("summary.txt").contains("file_not_found"), "the summary names the failure code");
    assert!(entry("failures.json").contains(MISSING_NAME), "without --hash-names, names stay readable");

    let connection: serde_json::Value = serde_json::from_str(entry("connection.json")).unwrap();
    let probes = connection["probes"].as_array().unwrap();
    assert_eq!(probes[0]["what"], "backend");
    assert_eq!(probes[0]["ok"], true, "the backend answered and took the token: {connection}");
    assert_eq!(probes[1]["what"], "upload host");
    assert_eq!(probes[1]["ok"], true, "SeaweedFS is reachable: {connection}");

    let about: serde_json::Value = serde_json::from_str(entry("about.json")).unwrap();
    assert_eq!(about["dropship_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(about["os"], std::env::consts::OS);
    let settings: serde_json::Value = serde_json::from_str(entry("settings.json")).unwrap();
    assert!(settings["saved"].get("token").is_none(), "no token field: {settings}");
    assert_eq!(settings["in_use"]["token_set"], true);

    let mut tokens = workspace.tokens();
    tokens.push(TOKEN_IN_FILE.into());
    assert_no_secret_in(&entries, &zip_path, &tokens);
}

#[test]
fn with_hash_names_no_file_name_or_path_is_in_the_bundle_only_their_hashes() {
    let backend = Backend::start(S3Server::shared());
    let workspace = Workspace::new();
    upload_one_good_one_missing(&backend, &workspace);

    let zip_path = workspace.dir.path().join("hashed.zip");
    let entries = diagnose(&backend, &workspace, &zip_path, &["--hash-names"]);
    let files_dir = workspace.dir.path().join("files").display().to_string();
    let home = workspace.dir.path().display().to_string();
    for (name, text) in &entries {
        for secret_name in [SECRET_NAME, MISSING_NAME, "vanished-draft", "quarterly-board", &files_dir, &home] {
            assert!(!text.contains(secret_name), "{name} shows {secret_name}:\n{text}");
        }
    }
    let failures = &entries.iter().find(|(n, _)| n == "failures.json").unwrap().1;
    assert!(failures.contains(&hash_name(MISSING_NAME)), "the name is there as its stable hash: {failures}");
    assert!(failures.contains("file_not_found"), "codes stay readable");
    assert_no_secret_in(&entries, &zip_path, &workspace.tokens());
}

#[test]
fn a_proxys_password_is_not_in_the_bundle_but_the_proxy_in_use_is() {
    const PROXY_PASSWORD: &str = "Pr0xy-s3cret-1729";
    let backend = Backend::start(S3Server::shared());
    let workspace = Workspace::new();
    let zip_path = workspace.dir.path().join("bundle.zip");
    // Nothing listens on port 9: the connection tests fail through the proxy, and say so.
    let mut command = workspace.dropship(&backend, "native");
    command
        .args(["diagnose", "-o"])
        .arg(&zip_path)
        .args(["--proxy", &format!("http://proxy-user:{PROXY_PASSWORD}@127.0.0.1:9")]);
    let output = run(command);
    assert!(output.status.success(), "diagnose writes a bundle even when nothing connects: {:?}", texts(&output));
    assert!(!texts(&output).iter().any(|t| t.contains(PROXY_PASSWORD)), "the terminal never shows the password");
    let entries = entries(&zip_path);
    let entry = |name: &str| &entries.iter().find(|(n, _)| n == name).unwrap().1;

    let settings: serde_json::Value = serde_json::from_str(entry("settings.json")).unwrap();
    let proxy = &settings["in_use"]["network"]["proxy"];
    assert_eq!(proxy["mode"], "manual", "{settings}");
    assert_eq!(proxy["url"], "http://127.0.0.1:9/", "the proxy without its password: {settings}");
    assert_eq!(proxy["username_set"], true);
    assert_eq!(proxy["password_set"], true);
    assert_eq!(settings["updates"]["channel"], "stable", "where updates come from: {settings}");
    let connection: serde_json::Value = serde_json::from_str(entry("connection.json")).unwrap();
    assert_eq!(connection["probes"][0]["ok"], false, "the backend is not reached through a dead proxy: {connection}");

    let mut secrets = workspace.tokens();
    secrets.push(PROXY_PASSWORD.into());
    assert_no_secret_in(&entries, &zip_path, &secrets);
}
