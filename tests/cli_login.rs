//! `dropship login`, `whoami`, `upload` and `logout` against a real OpenID provider
//! (`oidc-provider`, started by the test kit), the real backend validating its JWTs, and the
//! real SeaweedFS. The test plays the person in the browser through the provider's own login
//! and consent pages.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use dropship_system_tests::cli::{json_lines, pattern, Workspace};
use dropship_testkit::{target_bin, Backend, BackendOptions, OidcOptions, OidcProvider, S3Server};
use serde_json::Value;

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";

fn backend_for(s3: &S3Server, provider: &OidcProvider) -> Backend {
    Backend::start_with(
        s3,
        BackendOptions {
            extra_args: [provider.backend_args(), vec!["--admin-group".into(), "dropship-admins".into()]].concat(),
            ..Default::default()
        },
    )
}

/// `dropship` with nothing from the caller's environment: no token, only a data folder.
fn dropship(workspace: &Workspace, args: &[&str]) -> Command {
    let mut command = Command::new(target_bin("dropship"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DROPSHIP_DATA_DIR", workspace.data_dir())
        .args(args);
    command
}

fn output_of(mut command: Command) -> Output {
    let output = command.output().expect("dropship runs");
    eprintln!("stderr: {}", String::from_utf8_lossy(&output.stderr));
    output
}

/// Starts `dropship login` with stderr piped; returns the child and its stderr lines.
fn start_login(workspace: &Workspace, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child =
        dropship(workspace, args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("dropship login starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("login: {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn wait_for_line(lines: &mpsc::Receiver<String>, what: &str, matches: impl Fn(&str) -> bool) -> String {
    loop {
        match lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if matches(&line) => return line,
            Ok(_) => {}
            Err(e) => panic!("dropship login never printed {what}: {e}"),
        }
    }
}

fn finish(child: Child) -> Output {
    let output = child.wait_with_output().expect("dropship login ends");
    assert!(output.status.success(), "dropship login should succeed, exit {:?}", output.status);
    output
}

/// `dropship login --no-browser` with the browser played through the provider's pages.
fn sign_in(workspace: &Workspace, backend: &Backend, provider: &OidcProvider, user: &str) {
    let (child, lines) = start_login(workspace, &["login", "--no-browser", "--backend", &backend.url]);
    let url = wait_for_line(&lines, "the sign-in address", |l| l.starts_with("http"));
    assert!(url.contains("code_challenge_method=S256"), "the address asks for PKCE: {url}");
    assert!(url.contains("redirect_uri=http%3A%2F%2F127.0.0.1%3A"), "the redirect is loopback: {url}");
    provider.login_in_browser(&url, user);
    let output = finish(child);
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), format!("Signed in as {user}"), "the contract line");
}

fn session_file(workspace: &Workspace) -> Value {
    let path = workspace.data_dir().join("session.json");
    serde_json::from_slice(&std::fs::read(&path).expect("without a keyring the sign-in is kept in session.json"))
        .expect("session.json is JSON")
}

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("the file exists").permissions().mode() & 0o777
}

#[test]
fn signing_in_in_the_browser_lets_the_cli_upload_as_that_person_until_logout_revokes_it() {
    let s3 = S3Server::shared();
    let provider = OidcProvider::start();
    let backend = backend_for(s3, &provider);
    let workspace = Workspace::new();

    sign_in(&workspace, &backend, &provider, ALICE);
    #[cfg(unix)]
    assert_eq!(mode_of(&workspace.data_dir().join("session.json")), 0o600, "only its owner may read the sign-in");

    let whoami = output_of(dropship(&workspace, &["whoami", "--json"]));
    assert!(whoami.status.success(), "whoami works after login");
    let me: Value = serde_json::from_slice(&whoami.stdout).expect("whoami --json prints JSON");
    assert_eq!(me["user"], ALICE, "the backend takes the CLI for alice");
    assert_eq!(me["admin"], true, "alice is in the admin group");

    // No --backend and no --token: the sign-in says where and who.
    let file = workspace.file("signed-in.bin", &pattern(100_000, 3));
    let uploaded = output_of({
        let mut c = dropship(&workspace, &["upload", "--json"]);
        c.arg(&file);
        c
    });
    assert!(uploaded.status.success(), "the upload goes through with the sign-in alone");
    let lines = json_lines(&uploaded);
    assert_eq!(lines[0]["status"], "uploaded", "{lines:?}");
    let key = lines[0]["key"].as_str().expect("a key").to_owned();
    assert_eq!(s3.get_object(&key), Some(pattern(100_000, 3)), "the bytes are in S3");

    let history = workspace.history();
    assert_eq!(history[0]["uploaded_by"], ALICE, "the local history says who uploaded it");

    let records = records_as(&backend, &provider.tokens_for(ALICE).access_token);
    let record = records.iter().find(|r| r["key"] == key.as_str()).expect("alice's record");
    assert_eq!(record["uploaded_by"], ALICE, "the record names who uploaded it");

    for output in [&whoami, &uploaded] {
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        let session = session_file(&workspace);
        for secret in ["access_token", "refresh_token"] {
            let token = session[secret].as_str().unwrap_or("no such token in the session");
            assert!(!text.contains(token), "the {secret} never appears in the CLI's output");
        }
    }

    let refresh_token = session_file(&workspace)["refresh_token"].as_str().expect("a refresh token").to_owned();
    let logout = output_of(dropship(&workspace, &["logout"]));
    assert!(logout.status.success(), "logout succeeds");
    assert_eq!(String::from_utf8_lossy(&logout.stdout).trim(), format!("Signed out {ALICE}"));
    assert!(!workspace.data_dir().join("session.json").exists(), "the sign-in is forgotten");
    assert!(provider.refresh(&refresh_token).is_err(), "logout revoked the refresh token at the provider");

    let after = output_of(dropship(&workspace, &["whoami"]));
    assert_eq!(after.status.code(), Some(2), "whoami after logout is a setup error");
    assert!(String::from_utf8_lossy(&after.stderr).contains("dropship login"), "it says how to sign in again");
}

fn records_as(backend: &Backend, access_token: &str) -> Vec<Value> {
    let url = format!("{}/api/v1/records", backend.url);
    let output = Command::new("curl")
        .args(["-sS", "--fail-with-body", "-H"])
        .arg(format!("Authorization: Bearer {access_token}"))
        .arg(&url)
        .output()
        .expect("curl runs");
    assert!(output.status.success(), "records answer: {}", String::from_utf8_lossy(&output.stdout));
    let body: Value = serde_json::from_slice(&output.stdout).expect("records are JSON");
    body["records"].as_array().cloned().unwrap_or_else(|| body.as_array().cloned().unwrap_or_default())
}

#[test]
fn an_access_token_that_expires_mid_upload_is_refreshed_and_survives_a_key_rotation() {
    let s3 = S3Server::shared();
    let provider = OidcProvider::start_with(OidcOptions { access_token_ttl_secs: 8, ..Default::default() });
    let backend = backend_for(s3, &provider);
    let workspace = Workspace::new();
    sign_in(&workspace, &backend, &provider, BOB);
    let first_token = session_file(&workspace)["access_token"].as_str().expect("an access token").to_owned();

    // 30 MiB in 5 MiB parts at 1.5 MiB/s: about 20 s, more than two token lifetimes, so parts
    // are signed with refreshed tokens; the provider's signing key changes on the way.
    let size = 30 * 1024 * 1024;
    let file = workspace.file("long.bin", &pattern(size, 9));
    let mut upload = dropship(&workspace, &["upload", "--json", "--multipart-threshold", "5242880"]);
    upload
        .args(["--part-size", "5242880", "--concurrency", "1", "--bandwidth-limit", "1572864"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = upload.spawn().expect("the upload starts");
    std::thread::sleep(Duration::from_secs(6));
    provider.rotate_signing_key();
    let output = child.wait_with_output().expect("the upload ends");
    eprintln!("stderr: {}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the upload outlives its first access token");
    let lines = json_lines(&output);
    assert_eq!(lines[0]["status"], "uploaded", "{lines:?}");
    assert_eq!(
        s3.get_object(lines[0]["key"].as_str().unwrap()).map(|b| b.len()),
        Some(size),
        "the whole file is in S3"
    );
    let last_token = session_file(&workspace)["access_token"].as_str().expect("an access token").to_owned();
    assert_ne!(first_token, last_token, "the access token was refreshed (and the refresh kept) during the upload");
}

#[test]
fn signing_in_on_another_device_with_a_code() {
    let s3 = S3Server::shared();
    let provider = OidcProvider::start();
    let backend = backend_for(s3, &provider);
    let workspace = Workspace::new();

    let (child, lines) = start_login(&workspace, &["login", "--device", "--backend", &backend.url]);
    let line = wait_for_line(&lines, "the device code", |l| l.contains("enter the code"));
    let code = line.rsplit(' ').next().expect("the code ends the line").to_owned();
    provider.approve_device_code(&code, BOB);
    let output = finish(child);
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), format!("Signed in as {BOB}"));

    let whoami = output_of(dropship(&workspace, &["whoami"]));
    assert!(String::from_utf8_lossy(&whoami.stdout).starts_with(BOB), "whoami names bob");
}

#[test]
fn login_against_a_backend_without_an_identity_provider_says_to_use_a_token() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let output = output_of(dropship(&workspace, &["login", "--no-browser", "--backend", &backend.url]));
    assert_eq!(output.status.code(), Some(2), "a setup error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("does not offer signing in") && stderr.contains("token"), "{stderr}");
}
