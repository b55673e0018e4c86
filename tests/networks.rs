//! Corporate networks, with real parts: uploads, multipart runs and reports through a real
//! proxy (squid, with and without Basic authentication), chosen by flag, by the environment or
//! by the desktop's settings; and a backend behind TLS with a certificate from the
//! organisation's own CA, trusted through the system's trust store or `--ca-file`.

use std::process::Command;

use dropship_system_tests::cli::{assert_landed, assert_one_clear_line, json_lines, pattern, run, Workspace};
use dropship_testkit::{Backend, Nginx, S3Server, ServerCertificate, Squid};

const MIB: usize = 1024 * 1024;

/// A small file and a multipart one (three 5 MiB parts), uploaded with `configure` applied;
/// checks both landed and returns nothing else: the proxy's log tells the rest.
fn upload_two_files(backend: &Backend, configure: impl FnOnce(&mut Command)) {
    let s3 = S3Server::shared();
    let workspace = Workspace::new();
    let small = (workspace.file("note.txt", b"through the proxy"), b"through the proxy".to_vec());
    let large_bytes = pattern(12 * MIB, 7);
    let large = (workspace.file("scan.bin", &large_bytes), large_bytes);
    let five_mib = (5 * MIB).to_string();
    let mut command = workspace.dropship(backend, "native");
    command.args(["upload", "--json", "--multipart-threshold", &five_mib, "--part-size", &five_mib]);
    configure(&mut command);
    command.arg(&small.0).arg(&large.0);
    let output = run(command);
    let lines = json_lines(&output);
    assert!(output.status.success(), "both files should upload: {lines:?}");
    assert_landed(s3, backend, &workspace, &lines, &[small, large]);
}

/// The requests squid passed on to `origin` (`http://127.0.0.1:PORT`), as `status method path user`.
fn passed_on(squid: &Squid, origin: &str) -> Vec<String> {
    squid.access_log().lines().filter(|line| line.contains(origin)).map(|line| line.replace(origin, "")).collect()
}

fn assert_everything_went_through(squid: &Squid, backend: &Backend, user: &str) {
    let s3 = S3Server::shared();
    let to_backend = passed_on(squid, &backend.url);
    let to_s3 = passed_on(squid, &s3.endpoint);
    let has = |lines: &[String], method: &str, path: &str| {
        lines.iter().any(|l| l.starts_with(&format!("200 {method} {path}")) && l.ends_with(&format!(" {user}")))
    };
    assert!(has(&to_backend, "POST", "/api/v1/uploads/presign"), "presigning went through the proxy: {to_backend:?}");
    assert!(has(&to_backend, "POST", "/api/v1/multipart/sign"), "part URLs went through the proxy: {to_backend:?}");
    assert!(has(&to_backend, "POST", "/api/v1/multipart/complete"), "completing went through: {to_backend:?}");
    assert!(
        to_backend.iter().any(|l| l.contains("/report") || l.contains("/api/v1/reports")),
        "the completion reports went through the proxy: {to_backend:?}"
    );
    let puts = to_s3.iter().filter(|l| l.starts_with("200 PUT ") && l.ends_with(&format!(" {user}"))).count();
    assert!(puts >= 4, "the single PUT and the three parts went through the proxy: {to_s3:?}");
    assert!(to_s3.iter().all(|l| !l.contains("X-Amz-Signature")), "squid logs no query strings: {to_s3:?}");
}

#[test]
fn uploads_parts_and_reports_go_through_a_proxy_that_asks_for_a_password() {
    let squid = Squid::with_basic_auth("ann", "corp-pass");
    let backend = Backend::start(S3Server::shared());
    upload_two_files(&backend, |c| {
        c.args(["--proxy", &squid.url_with("ann", "corp-pass")]);
    });
    assert_everything_went_through(&squid, &backend, "ann");
}

#[test]
fn a_wrong_proxy_password_says_the_proxy_refused_and_what_to_set() {
    let squid = Squid::with_basic_auth("ann", "corp-pass");
    let backend = Backend::start(S3Server::shared());
    let workspace = Workspace::new();
    let file = workspace.file("note.txt", b"x");
    let mut command = workspace.dropship(&backend, "native");
    command.args(["upload", "--proxy", &squid.url_with("ann", "wrong")]).arg(&file);
    let output = run(command);
    assert_one_clear_line(&output, &["proxy", "407", "user name and password"]);
    assert!(!String::from_utf8_lossy(&output.stderr).contains("wrong"), "the password is never printed");
    assert!(backend.records().is_empty(), "nothing reached the backend");
}

#[test]
fn the_system_setting_uses_the_proxy_environment_variables() {
    let squid = Squid::open();
    let backend = Backend::start(S3Server::shared());
    upload_two_files(&backend, |c| {
        c.env("HTTP_PROXY", &squid.url).env("HTTPS_PROXY", &squid.url);
    });
    assert_everything_went_through(&squid, &backend, "-");
}

#[test]
fn no_proxy_goes_direct_even_when_the_environment_names_a_proxy() {
    let squid = Squid::open();
    let backend = Backend::start(S3Server::shared());
    upload_two_files(&backend, |c| {
        c.env("HTTP_PROXY", &squid.url).args(["--proxy", "none"]);
    });
    assert!(passed_on(&squid, &backend.url).is_empty(), "nothing went through squid: {}", squid.access_log());
}

#[test]
fn the_system_setting_follows_gnomes_proxy_settings() {
    let squid = Squid::open();
    let backend = Backend::start(S3Server::shared());
    // GNOME's settings, in gsettings' keyfile backend under a config folder of the test's own:
    // the same `gsettings` Dropship reads them with, without touching the machine's dconf.
    let config = tempfile::tempdir().unwrap();
    let port = squid.url.rsplit(':').next().unwrap().to_owned();
    let gsettings = |args: &[&str]| {
        let status = Command::new("gsettings")
            .args(args)
            .env("XDG_CONFIG_HOME", config.path())
            .env("GSETTINGS_BACKEND", "keyfile")
            .status()
            .expect("gsettings runs (gsettings-desktop-schemas is installed by scripts/install-deps.sh)");
        assert!(status.success(), "gsettings {args:?}");
    };
    gsettings(&["set", "org.gnome.system.proxy", "mode", "manual"]);
    gsettings(&["set", "org.gnome.system.proxy.http", "host", "127.0.0.1"]);
    gsettings(&["set", "org.gnome.system.proxy.http", "port", &port]);
    // GNOME skips the proxy for loopback by default; this test wants loopback to go through it.
    gsettings(&["set", "org.gnome.system.proxy", "ignore-hosts", "[]"]);
    upload_two_files(&backend, |c| {
        c.env("XDG_CONFIG_HOME", config.path())
            .env("GSETTINGS_BACKEND", "keyfile")
            .env("XDG_CURRENT_DESKTOP", "GNOME")
            .args(["--proxy", "system"]);
    });
    assert_everything_went_through(&squid, &backend, "-");
}

/// The backend behind an HTTPS front whose certificate the test's own CA issued.
struct TlsBackend {
    backend: Backend,
    front: Nginx,
    certificate: ServerCertificate,
}

impl TlsBackend {
    fn start() -> TlsBackend {
        let backend = Backend::start(S3Server::shared());
        let certificate = ServerCertificate::issue();
        let front = Nginx::tls_front(&backend.url, &certificate);
        TlsBackend { backend, front, certificate }
    }

    /// Uploads one file through the TLS front; `configure` adds flags (and `--json` where the
    /// test reads the result lines: a refusal is checked as the one line a person sees).
    fn upload(&self, workspace: &Workspace, configure: impl FnOnce(&mut Command)) -> std::process::Output {
        let file = workspace.file("note.txt", b"over TLS");
        let mut command = workspace.dropship(&self.backend, "native");
        command.env("DROPSHIP_BACKEND_URL", &self.front.url).arg("upload");
        configure(&mut command);
        command.arg(&file);
        run(command)
    }
}

#[test]
fn a_backend_whose_ca_is_not_trusted_is_refused_naming_the_certificate_problem() {
    let tls = TlsBackend::start();
    let output = tls.upload(&Workspace::new(), |_| {});
    assert_one_clear_line(&output, &["certificate", "not trusted", "certificate authority", "--ca-file"]);
    assert!(tls.backend.records().is_empty(), "nothing was sent");
}

#[test]
fn a_backend_whose_ca_is_in_the_system_trust_store_works_without_flags() {
    let tls = TlsBackend::start();
    let workspace = Workspace::new();
    let output = tls.upload(&workspace, |c| {
        c.arg("--json").env("SSL_CERT_FILE", tls.certificate.system_bundle_with_ca());
    });
    let lines = json_lines(&output);
    assert!(output.status.success(), "{lines:?}");
    assert_eq!(lines[0]["status"], "uploaded");
}

#[test]
fn a_ca_file_makes_the_organisations_certificate_trusted() {
    let tls = TlsBackend::start();
    let output = tls.upload(&Workspace::new(), |c| {
        c.arg("--json").arg("--ca-file").arg(&tls.certificate.ca);
    });
    let lines = json_lines(&output);
    assert!(output.status.success(), "{lines:?}");
    assert_eq!(lines[0]["status"], "uploaded");
}

#[test]
fn an_https_backend_is_reached_through_the_proxy_with_connect_and_a_wrong_password_is_named() {
    let tls = TlsBackend::start();
    let squid = Squid::with_basic_auth("ann", "corp-pass");
    let workspace = Workspace::new();
    let output = tls.upload(&workspace, |c| {
        c.arg("--json")
            .arg("--ca-file")
            .arg(&tls.certificate.ca)
            .args(["--proxy", &squid.url_with("ann", "corp-pass")]);
    });
    assert!(output.status.success(), "{:?}", json_lines(&output));
    let port = tls.front.url.rsplit(':').next().unwrap();
    assert!(
        squid.access_log().lines().any(|l| l.starts_with("200 CONNECT ") && l.contains(port) && l.ends_with(" ann")),
        "the TLS connection was tunnelled through the proxy: {}",
        squid.access_log()
    );

    let refused = tls.upload(&workspace, |c| {
        c.arg("--ca-file").arg(&tls.certificate.ca).args(["--proxy", &squid.url_with("ann", "wrong")]);
    });
    assert_one_clear_line(&refused, &["proxy", "407"]);
}

/// Lines the CLI writes on stderr, as they come.
fn stderr_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stderr = child.stderr.take().expect("stderr is piped");
    let (lines, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, containing: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(containing) => return line,
            Ok(_) => {}
            Err(_) => panic!("the CLI never said {containing:?} on stderr"),
        }
    }
}

#[test]
fn the_cli_holds_a_run_on_a_metered_connection_when_asked_says_so_and_goes_on_when_it_ends() {
    let bus = dropship_testkit::dbusmock::SystemBusMock::start();
    bus.set_metered(true);
    let backend = Backend::start(S3Server::shared());
    let workspace = Workspace::new();
    let file = workspace.file("note.txt", b"after the hotspot");
    let mut command = workspace.dropship(&backend, "native");
    command
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .args(["upload", "--json", "--pause-on-metered", "yes"])
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("start dropship");
    let lines = stderr_lines(&mut child);
    let held = wait_for_line(&lines, "Paused: metered connection");
    assert!(held.contains("--pause-on-metered no"), "the line says how not to wait: {held}");
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(backend.records().is_empty(), "nothing goes while metered");

    bus.set_metered(false);
    wait_for_line(&lines, "uploads go on");
    let output = child.wait_with_output().expect("dropship ends");
    assert!(output.status.success(), "the upload finishes once the connection is not metered");
    assert_eq!(json_lines(&output)[0]["status"], "uploaded");
    assert_eq!(backend.records().len(), 1);
}

#[test]
fn a_bandwidth_schedule_the_cli_cannot_read_is_one_clear_line() {
    let backend = Backend::start(S3Server::shared());
    let workspace = Workspace::new();
    let file = workspace.file("note.txt", b"x");
    let mut command = workspace.dropship(&backend, "native");
    command.args(["upload", "--bandwidth-schedule", "Mon-Fri 08:00-18:00 2MB/s; Sunday 9-17 fast"]).arg(&file);
    let output = run(command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "a usage error: {stderr}");
    assert!(stderr.contains("Sunday 9-17 fast") && stderr.contains("--bandwidth-schedule"), "{stderr}");
    assert!(backend.records().is_empty());
}
