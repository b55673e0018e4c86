//! Fault scenarios on the backend's side: URLs that expire before they are used, a backend that
//! is slow, one that fails for a while, and one stopped and started again during a run. A fault
//! proxy stands in front of the backend (the CLI's backend URL points at it) or of S3 (through
//! `HTTP_PROXY`); every scenario ends with the shared checks (tests/support/invariants.rs).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use dropship_system_tests::cli::{pattern, Workspace};
use dropship_system_tests::invariants::{assert_nothing_lost, Expected};
use dropship_system_tests::wait_for;
use dropship_testkit::{Backend, BackendOptions, Fault, FaultProxy, Rule, S3Server};

const BUCKET_PATH: &str = "/dropship-test/";

fn files(workspace: &Workspace, count: usize, size: usize) -> Vec<(PathBuf, Vec<u8>)> {
    (0..count)
        .map(|i| {
            let bytes = pattern(size + i, i as u8);
            (workspace.file(&format!("f-{i:03}.bin"), &bytes), bytes)
        })
        .collect()
}

/// `dropship upload --json` of the workspace's files, with the backend URL `backend_url`.
fn upload(workspace: &Workspace, backend: &Backend, backend_url: &str, s3_proxy: Option<&FaultProxy>) -> Command {
    let mut command = workspace.dropship(backend, "native");
    command.env("DROPSHIP_BACKEND_URL", backend_url).env("DROPSHIP_LOG", "info");
    if let Some(proxy) = s3_proxy {
        command.env("HTTP_PROXY", &proxy.url);
    }
    command.args(["upload", "--json"]).arg(workspace.dir.path().join("files"));
    command
}

fn texts(output: &Output) -> Vec<String> {
    vec![String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned()]
}

#[test]
fn a_url_that_expires_before_its_put_is_signed_again() {
    // The proxy holds the first PUT until its URL has expired by the clock (its X-Amz-Date plus
    // X-Amz-Expires), however long the machine took to get there, then passes it on. The URLs
    // live long enough (8 s) that the fresh one is still fresh on a loaded machine, so the
    // exchange is exactly: refused once, then accepted.
    let options = BackendOptions { url_expiry_secs: Some(8), ..Default::default() };
    let backend = Backend::start_with(S3Server::shared(), options);
    let workspace = Workspace::new();
    let files = files(&workspace, 1, 100 * 1024);
    let proxy = FaultProxy::start(vec![Rule {
        method: "PUT",
        target_contains: BUCKET_PATH,
        fault: Fault::HoldUntilExpired,
        times: 1,
    }]);
    let output = upload(&workspace, &backend, &backend.url, Some(&proxy)).output().unwrap();
    assert!(output.status.success(), "the file lands with a fresh URL: {}", texts(&output).join("\n"));
    let puts = proxy.traffic("PUT", BUCKET_PATH);
    let statuses: Vec<_> = proxy.exchanges().iter().filter(|e| e.method == "PUT").map(|e| e.status).collect();
    assert_eq!(
        statuses,
        [Some(403), Some(200)],
        "S3 refused the expired URL, and the one fresh URL signed after it went through first time: {puts:?}"
    );
    assert!(texts(&output)[1].contains("signing it again"), "the log says the URL was signed again");
    assert_nothing_lost(
        S3Server::shared(),
        &backend,
        &workspace,
        Expected::files(&files).through(&proxy, files[0].1.len() as u64).output(&texts(&output)),
    );
}

#[test]
fn a_slow_backend_slows_the_batch_but_loses_nothing() {
    let backend = Backend::start(S3Server::shared());
    let workspace = Workspace::new();
    let files = files(&workspace, 12, 3000);
    let slow = Rule { method: "", target_contains: "/api/", fault: Fault::Delay(Duration::from_millis(800)), times: 4 };
    let front = FaultProxy::reverse(&backend.url, vec![slow]);
    let started = std::time::Instant::now();
    let output = upload(&workspace, &backend, &front.url, None).output().unwrap();
    assert!(output.status.success(), "{}", texts(&output).join("\n"));
    assert!(started.elapsed() >= Duration::from_millis(1600), "presign and report each waited");
    assert_eq!(front.injected(), 2, "one presign and one report request for 12 files, both delayed");
    assert_nothing_lost(S3Server::shared(), &backend, &workspace, Expected::files(&files).output(&texts(&output)));
}

/// Reports the backend cannot take wait in the outbox and go out when it recovers, in the
/// same run: each file is recorded once and counted as uploaded.
#[test]
fn reports_refused_while_the_backend_fails_are_delivered_once_it_recovers() {
    let backend = Backend::start(S3Server::shared());
    let workspace = Workspace::new();
    let files = files(&workspace, 5, 2000);
    let down = Rule { method: "POST", target_contains: "/api/v1/reports", fault: Fault::Status(503), times: 3 };
    let front = FaultProxy::reverse(&backend.url, vec![down]);
    let output = upload(&workspace, &backend, &front.url, None).output().unwrap();
    assert!(output.status.success(), "{}", texts(&output).join("\n"));
    assert_eq!(front.injected(), 3, "three deliveries met the failing backend before one got through");
    assert!(texts(&output)[1].contains("could not take reports"), "the log says the reports waited");
    assert_nothing_lost(S3Server::shared(), &backend, &workspace, Expected::files(&files).output(&texts(&output)));
}

#[test]
fn records_survive_a_backend_restart_or_kill_and_uploads_after_it_are_recorded_too() {
    let mut backend = Backend::start(S3Server::shared());
    let url = backend.url.clone();
    let before = Workspace::new();
    files(&before, 3, 1000);
    assert!(upload(&before, &backend, &backend.url, None).output().unwrap().status.success());

    backend.restart();
    assert_eq!(backend.url, url, "the backend came back on its port");
    assert_eq!(backend.records().len(), 3, "its records survived the restart");

    files(&before, 5, 1000); // two more beside the first three
    let output = upload(&before, &backend, &backend.url, None).output().unwrap();
    // The second run uploads the folder again: files 0–2 a second time, under new keys.
    assert!(output.status.success(), "{}", texts(&output).join("\n"));
    let history = before.history();
    assert_eq!(history.len(), 8, "3 rows from the first run, 5 from the second");
    assert_eq!(backend.records().len(), 8, "every upload recorded once");

    // A crash (SIGKILL) loses nothing either: the records are committed before each answer.
    backend.kill();
    assert!(!backend.is_running());
    backend.start_again();
    assert_eq!(backend.url, url);
    assert_eq!(backend.records().len(), 8, "the records survived a kill -9 of the backend");
}

/// The backend goes away in the middle of a run and comes back a few seconds later: the run
/// waits it out (signing and reports alike) and every file lands and is recorded once.
#[test]
fn a_backend_stopped_and_started_during_a_run_is_waited_out_and_nothing_is_lost() {
    let mut backend = Backend::start(S3Server::shared());
    let workspace = Workspace::new();
    let files = files(&workspace, 30, 4000);
    // Slow PUTs keep the run going long enough to stop the backend in the middle of it.
    let s3 = FaultProxy::start(vec![Rule {
        method: "PUT",
        target_contains: BUCKET_PATH,
        fault: Fault::Delay(Duration::from_millis(300)),
        times: usize::MAX,
    }]);
    let mut command = upload(&workspace, &backend, &backend.url, Some(&s3));
    let child = command.arg("--concurrency").arg("2").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for("the first PUTs", Duration::from_secs(30), || (s3.exchanges().len() >= 3).then_some(())).unwrap();
    backend.stop();
    // Longer than the PUTs take (30 × 300 ms over 2 connections): the reports meet the outage.
    std::thread::sleep(Duration::from_secs(7));
    backend.start_again();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "the run waited for the backend: {}", texts(&output).join("\n"));
    let log = &texts(&output)[1];
    assert!(
        log.contains("the backend is unavailable") || log.contains("could not take reports"),
        "the log says the run waited for the backend"
    );
    assert_nothing_lost(S3Server::shared(), &backend, &workspace, Expected::files(&files).output(&texts(&output)));
}

/// The backend records a report but its answer never arrives. The report is sent again under
/// the same client upload id (the idempotency key), recorded once, and the file counted as
/// uploaded.
#[test]
fn a_report_recorded_but_whose_answer_was_lost_is_sent_again_and_recorded_once() {
    let backend = Backend::start(S3Server::shared());
    let workspace = Workspace::new();
    let files = files(&workspace, 4, 1500);
    let lost = Rule { method: "POST", target_contains: "/api/v1/reports", fault: Fault::DropResponse, times: 1 };
    let front = FaultProxy::reverse(&backend.url, vec![lost]);
    let output = upload(&workspace, &backend, &front.url, None).output().unwrap();
    assert_eq!(front.injected(), 1, "the first report's answer was dropped");
    assert!(output.status.success(), "{}", texts(&output).join("\n"));
    assert_nothing_lost(S3Server::shared(), &backend, &workspace, Expected::files(&files).output(&texts(&output)));
}
