//! The `dropship` CLI end to end: the real binary, the real `dropship-backend`, a real SeaweedFS
//! that checks signatures and checksums, and a real SQLite history.

use std::path::PathBuf;
use std::process::Command;

use dropship_system_tests::cli::{assert_landed, assert_one_clear_line, json_lines, pattern, run, Workspace};
use dropship_testkit::{target_bin, Backend, S3Server};

fn edge_case_files(workspace: &Workspace) -> Vec<(PathBuf, Vec<u8>)> {
    let specs: Vec<(&str, Vec<u8>)> = vec![
        ("empty.bin", Vec::new()),
        ("one-byte.txt", b"x".to_vec()),
        ("résumé final (2).pdf", pattern(12_345, 1)),
        ("forty-mib.bin", pattern(40 << 20, 2)),
        ("nested/a/deep.txt", pattern(777, 3)),
        ("nested/a/b/deeper.json", br#"{"ok":true}"#.to_vec()),
        ("nested/top.csv", b"a,b\n1,2\n".to_vec()),
    ];
    specs.into_iter().map(|(name, bytes)| (workspace.file(name, &bytes), bytes)).collect()
}

fn upload_edge_cases_with(api: &str) {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let files = edge_case_files(&workspace);
    let root = workspace.dir.path().join("files");

    let mut command = workspace.dropship(&backend, api);
    command.args(["upload", "--json"]);
    for name in ["empty.bin", "one-byte.txt", "résumé final (2).pdf", "forty-mib.bin", "nested"] {
        command.arg(root.join(name));
    }
    let output = run(command);
    let lines = json_lines(&output);
    assert_eq!(lines.len(), files.len(), "one JSON line per file, the folder expanded: {lines:?}");
    assert!(output.status.success(), "every file uploaded means exit 0");
    assert_landed(s3, &backend, &workspace, &lines, &files);
}

#[test]
fn native_uploads_of_empty_tiny_unicode_large_and_nested_files_land_byte_identical() {
    upload_edge_cases_with("native");
}

#[test]
fn rails_uploads_of_the_same_files_land_byte_identical_and_are_recorded() {
    upload_edge_cases_with("rails");
}

#[test]
fn the_key_keeps_the_unicode_file_name() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let path = workspace.file("résumé final (2).pdf", b"%PDF-1.4");
    let mut command = workspace.dropship(&backend, "native");
    command.args(["upload", "--json"]).arg(&path);
    let lines = json_lines(&run(command));
    assert!(lines[0]["key"].as_str().unwrap().ends_with("/résumé final (2).pdf"), "{}", lines[0]);
}

#[test]
fn a_missing_path_fails_on_its_own_line_and_the_other_files_still_upload() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let good = workspace.file("good.txt", b"still here");
    let missing = workspace.dir.path().join("files/never-existed.txt");

    let mut command = workspace.dropship(&backend, "native");
    command.args(["upload", "--json"]).arg(&missing).arg(&good);
    let output = run(command);
    assert_eq!(output.status.code(), Some(1), "a failed file means exit 1");
    let lines = json_lines(&output);
    let failed = lines.iter().find(|l| l["path"] == missing.to_str().unwrap()).expect("a line for the missing path");
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "file_not_found");
    assert!(failed["error"]["message"].as_str().unwrap().contains("never-existed.txt"));
    assert_landed(s3, &backend, &workspace, &lines, &[(good, b"still here".to_vec())]);
}

#[test]
fn an_unreadable_file_fails_on_its_own_line_and_the_other_files_still_upload() {
    use std::os::unix::fs::PermissionsExt;
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let good = workspace.file("good.txt", b"readable");
    let secret = workspace.file("secret.txt", b"nobody may read this");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();

    let mut command = workspace.dropship(&backend, "native");
    command.args(["upload", "--json"]).arg(&secret).arg(&good);
    let output = run(as_unprivileged_user(command, &workspace));
    let lines = json_lines(&output);
    assert_eq!(output.status.code(), Some(1));
    let failed = lines.iter().find(|l| l["path"] == secret.to_str().unwrap()).expect("a line for the unreadable file");
    assert_eq!(failed["error"]["code"], "file_unreadable", "{failed}");
    assert!(failed["error"]["message"].as_str().unwrap().contains("permission denied"));
    assert_landed(s3, &backend, &workspace, &lines, &[(good, b"readable".to_vec())]);
}

/// Root reads every file whatever its mode; to see a real "permission denied" the CLI must run
/// as an ordinary user. When the tests run as root, drop to `nobody` for this one command.
fn as_unprivileged_user(command: Command, workspace: &Workspace) -> Command {
    use std::os::unix::fs::PermissionsExt;
    if unsafe { libc::geteuid() } != 0 {
        return command;
    }
    for dir in [workspace.dir.path().to_owned(), workspace.dir.path().join("files")] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::create_dir_all(workspace.data_dir()).unwrap();
    std::fs::set_permissions(workspace.data_dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut wrapped = Command::new("setpriv");
    wrapped.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(command.get_program());
    wrapped.args(command.get_args());
    wrapped.env_clear();
    for (name, value) in command.get_envs() {
        if let Some(value) = value {
            wrapped.env(name, value);
        }
    }
    wrapped
}

#[test]
fn an_unreachable_backend_gives_one_line_that_says_to_check_the_url() {
    let workspace = Workspace::new();
    let path = workspace.file("a.txt", b"a");
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let output = Command::new(target_bin("dropship"))
        .args(["upload", "--backend", &format!("http://127.0.0.1:{closed_port}"), "--token", "t", "--data-dir"])
        .arg(workspace.data_dir())
        .arg(&path)
        .output()
        .unwrap();
    assert_one_clear_line(&output, &["Could not reach the backend", "backend URL"]);
    let history = workspace.history();
    assert_eq!(history[0]["status"], "failed", "the attempt is in the history");
    assert_eq!(history[0]["error_code"], "backend_unreachable");
}

#[test]
fn a_rejected_token_gives_one_line_that_says_to_set_a_valid_token() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let path = workspace.file("a.txt", b"a");
    let mut command = workspace.dropship(&backend, "native");
    command.env("DROPSHIP_TOKEN", "not-the-token").arg("upload").arg(&path);
    assert_one_clear_line(&run(command), &["rejected the token", "--token"]);
    assert!(backend.records().is_empty(), "nothing recorded with a bad token");
}

#[test]
fn garbage_from_the_backend_gives_one_line_that_says_to_check_the_flavour() {
    // The real backend never answers garbage; a loopback stand-in does, to every request.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut stream, _)) = listener.accept() {
            let mut buf = [0u8; 8192];
            let _ = stream.read(&mut buf);
            let body = "<html><body>Welcome to nginx!</body></html>";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let workspace = Workspace::new();
    let path = workspace.file("a.txt", b"a");
    let output = Command::new(target_bin("dropship"))
        .args(["upload", "--backend", &url, "--token", "t", "--data-dir"])
        .arg(workspace.data_dir())
        .arg(&path)
        .output()
        .unwrap();
    server.join().unwrap();
    assert_one_clear_line(&output, &["not the expected JSON", "API flavour", "Welcome to nginx"]);
}

#[test]
fn no_backend_configured_says_how_to_configure_one() {
    let workspace = Workspace::new();
    let path = workspace.file("a.txt", b"a");
    let output = Command::new(target_bin("dropship"))
        .env_remove("DROPSHIP_BACKEND_URL")
        .env_remove("DROPSHIP_TOKEN")
        .args(["upload", "--data-dir"])
        .arg(workspace.data_dir())
        .arg(&path)
        .output()
        .unwrap();
    assert_one_clear_line(&output, &["--backend", "Settings"]);
}

#[test]
fn history_searches_by_name_and_filters_by_status() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let invoice = workspace.file("invoice-0042.pdf", b"%PDF");
    let photo = workspace.file("photo.jpg", b"\xFF\xD8\xFF");
    let mut command = workspace.dropship(&backend, "native");
    command.args(["upload", "--json"]).arg(&invoice).arg(&photo).arg(workspace.dir.path().join("files/gone.png"));
    run(command);

    let query = |args: &[&str]| {
        let output = Command::new(target_bin("dropship"))
            .args(["history", "--json", "--data-dir"])
            .arg(workspace.data_dir())
            .args(args)
            .output()
            .unwrap();
        json_lines(&output)
    };
    let found = query(&["--search", "INVOICE"]);
    assert_eq!(found.len(), 1, "search is case-insensitive on the name");
    assert_eq!(found[0]["file_name"], "invoice-0042.pdf");
    let key = found[0]["key"].as_str().unwrap().to_owned();
    assert_eq!(query(&["--search", &key]).len(), 1, "search finds by key too");
    let failed = query(&["--status", "failed"]);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["file_name"], "gone.png");
    assert_eq!(query(&["--status", "uploaded"]).len(), 2);

    let table = Command::new(target_bin("dropship"))
        .args(["history", "--data-dir"])
        .arg(workspace.data_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("invoice-0042.pdf") && text.contains("uploaded"), "the table shows names and states: {text}");
}

#[test]
fn history_rejects_an_unknown_status_with_the_valid_ones() {
    let workspace = Workspace::new();
    let output = Command::new(target_bin("dropship"))
        .args(["history", "--status", "done", "--data-dir"])
        .arg(workspace.data_dir())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("uploaded"));
}

#[test]
fn hundreds_of_small_files_go_up_in_overlapping_chunks_each_exactly_once() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let files: Vec<_> = (0..250)
        .map(|i| {
            let bytes = pattern(1000 + i, i as u8);
            (workspace.file(&format!("many/file-{i:03}.bin"), &bytes), bytes)
        })
        .collect();
    let mut command = workspace.dropship(&backend, "native");
    command.args(["upload", "--json"]).arg(workspace.dir.path().join("files/many"));
    let output = run(command);
    let lines = json_lines(&output);
    assert!(output.status.success(), "all 250 upload");
    assert_eq!(lines.len(), 250, "one line per file");
    assert_landed(s3, &backend, &workspace, &lines, &files);
    assert_eq!(backend.records().len(), 250, "each recorded once, none twice");
}

#[test]
fn a_key_prefix_puts_the_keys_in_that_folder_and_one_that_climbs_is_cleaned() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let bytes = pattern(3000, 2);
    let path = workspace.file("invoice.pdf", &bytes);
    let mut command = workspace.dropship(&backend, "native");
    command.args(["upload", "--json", "--key-prefix", "../accounts//2026/"]).arg(&path);
    let output = run(command);
    let lines = json_lines(&output);
    assert!(output.status.success(), "{lines:?}");
    let key = lines[0]["key"].as_str().unwrap();
    assert!(key.starts_with("uploads/accounts/2026/"), "under the backend's prefix, in the folder: {key}");
    assert_landed(s3, &backend, &workspace, &lines, &[(path, bytes)]);

    let mut command = workspace.dropship(&backend, "native");
    command.args(["upload", "--json", "--key-prefix", "a/b/c/d/e"]).arg(workspace.file("deep.txt", b"x"));
    let output = run(command);
    let lines = json_lines(&output);
    assert_eq!(output.status.code(), Some(1), "{lines:?}");
    assert_eq!(lines[0]["error"]["code"], "backend_rejected", "{lines:?}");
    assert!(lines[0]["error"]["message"].as_str().unwrap().contains("at most 4"), "{lines:?}");
}

/// A folder holding a real file, a link to it, and a link to a "private key" outside the
/// folder; the secret's bytes are unique to this test, so the bucket can be searched for them.
#[cfg(unix)]
fn folder_with_links(workspace: &Workspace) -> (PathBuf, Vec<u8>) {
    let secret = pattern(3000, 41);
    let outside = workspace.dir.path().join("home/.ssh");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("id_ed25519"), &secret).unwrap();
    workspace.file("sub/real.txt", b"inside the folder");
    let root = workspace.dir.path().join("files");
    std::os::unix::fs::symlink(root.join("sub/real.txt"), root.join("inside.txt")).unwrap();
    std::os::unix::fs::symlink(outside.join("id_ed25519"), root.join("report.pdf")).unwrap();
    std::os::unix::fs::symlink(root.join("sub"), root.join("sub-again")).unwrap();
    (root, secret)
}

#[cfg(unix)]
#[test]
fn a_link_out_of_an_uploaded_folder_is_skipped_with_a_warning_and_a_link_inside_it_goes_up() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let (root, secret) = folder_with_links(&workspace);

    let mut command = workspace.dropship(&backend, "native");
    command.args(["upload", "--json"]).arg(&root);
    let output = run(command);
    let lines = json_lines(&output);
    assert!(output.status.success(), "a skipped link is not a failure: {lines:?}");
    let line = |name: &str| {
        lines
            .iter()
            .find(|l| l["path"].as_str() == Some(root.join(name).to_str().unwrap()))
            .unwrap_or_else(|| panic!("a line for {name}: {lines:?}"))
            .clone()
    };
    assert_eq!(line("inside.txt")["status"], "uploaded", "a link to a file inside the folder goes up");
    assert_eq!(line("sub/real.txt")["status"], "uploaded");
    let skipped = line("report.pdf");
    assert_eq!(skipped["status"], "skipped", "the link out of the folder is left out: {skipped}");
    assert_eq!(skipped["error"]["code"], "link_outside_folder", "{skipped}");
    assert!(skipped["error"]["message"].as_str().unwrap().contains("id_ed25519"), "names the target: {skipped}");
    assert_eq!(lines.len(), 3, "the linked sub-folder is not walked twice: {lines:?}");
    let records = backend.records();
    assert_eq!(records.len(), 2, "only the two inside files are recorded: {records:?}");
    for record in &records {
        let key = record["key"].as_str().unwrap();
        assert!(s3.get_object(key).unwrap() != secret, "the secret is nowhere in the bucket ({key})");
    }

    // Without --json, a person sees a warning naming the link.
    let again = Workspace::new();
    let (root, _) = folder_with_links(&again);
    let mut command = again.dropship(&backend, "native");
    command.args(["upload"]).arg(&root);
    let output = run(command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: skipped") && stderr.contains("report.pdf") && stderr.contains("outside"),
        "the warning names the link and says why: {stderr}"
    );
}

#[test]
fn a_settings_file_cut_short_is_one_line_that_names_it_and_says_to_move_it_aside() {
    let backend = Backend::start(S3Server::shared());
    let workspace = Workspace::new();
    let file = workspace.file("a.txt", b"a");
    std::fs::create_dir_all(workspace.data_dir()).unwrap();
    std::fs::write(workspace.data_dir().join("settings.json"), br#"{"backend_url": "http://127.0.0.1:1", "to"#)
        .unwrap();
    let mut command = workspace.dropship(&backend, "native");
    command.args(["upload"]).arg(&file);
    assert_one_clear_line(&run(command), &["settings.json", "damaged", "Move it aside"]);
}

#[test]
fn a_history_cut_short_is_one_line_that_names_it_and_says_to_move_it_aside() {
    let backend = Backend::start(S3Server::shared());
    let workspace = Workspace::new();
    let file = workspace.file("a.txt", b"a");
    let mut first = workspace.dropship(&backend, "native");
    first.args(["upload"]).arg(&file);
    assert!(run(first).status.success(), "a first upload makes the history");
    let history = workspace.data_dir().join("history.sqlite");
    let bytes = std::fs::read(&history).unwrap();
    std::fs::write(&history, &bytes[..bytes.len() / 2]).unwrap();
    for companion in ["history.sqlite-wal", "history.sqlite-shm"] {
        let _ = std::fs::remove_file(workspace.data_dir().join(companion));
    }
    let mut command = workspace.dropship(&backend, "native");
    command.args(["upload"]).arg(&file);
    assert_one_clear_line(&run(command), &["history.sqlite", "damaged", "Move it aside"]);
}
