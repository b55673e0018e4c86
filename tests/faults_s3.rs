//! Fault scenarios between the CLI and S3: a loopback proxy (reached through `HTTP_PROXY`) in
//! front of the real SeaweedFS cuts connections mid-part, answers 500/503/SlowDown/429, stalls
//! and delays requests, or fails a seeded 5% of them. The backend and SeaweedFS are real; every
//! scenario ends with the same checks (tests/support/invariants.rs).

use std::path::PathBuf;
use std::time::Duration;

use dropship_system_tests::cli::{json_lines, pattern, Workspace};
use dropship_system_tests::invariants::{assert_nothing_lost, Expected};
use dropship_testkit::{Backend, Fault, FaultProxy, RandomFaults, Rule, S3Server};

const MIB: usize = 1024 * 1024;
const PART: usize = 5 * MIB;

/// S3 requests through the proxy carry the test bucket in their path; the backend's do not.
const BUCKET_PATH: &str = "/dropship-test/";

struct Scenario {
    backend: Backend,
    workspace: Workspace,
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl Scenario {
    fn new(sizes: &[usize]) -> Scenario {
        let backend = Backend::start(S3Server::shared());
        let workspace = Workspace::new();
        let files = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| {
                let bytes = pattern(size, i as u8);
                (workspace.file(&format!("file-{i:04}.bin"), &bytes), bytes)
            })
            .collect();
        Scenario { backend, workspace, files }
    }

    /// Uploads every file through `proxy` with 5 MiB parts for anything from 5 MiB up, and
    /// returns the CLI's JSON lines and its output (for the signature scan).
    fn upload_through(&self, proxy: &FaultProxy, extra_args: &[&str]) -> (Vec<serde_json::Value>, Vec<String>) {
        let part = PART.to_string();
        let mut command = self.workspace.dropship(&self.backend, "native");
        command
            .env("HTTP_PROXY", &proxy.url)
            .env("DROPSHIP_LOG", "info")
            .args(["upload", "--json", "--multipart-threshold", &part, "--part-size", &part])
            .args(extra_args)
            .arg(self.workspace.dir.path().join("files"));
        let output = command.output().expect("run dropship");
        let lines = json_lines(&output);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let failed: Vec<_> = lines.iter().filter(|l| l["status"] != "uploaded").collect();
        assert!(
            output.status.success(),
            "every file should get through the faults; failed: {failed:?}\nstderr tail:\n{}",
            tail(&stderr, 30)
        );
        (lines, vec![String::from_utf8_lossy(&output.stdout).into_owned(), stderr])
    }

    fn total_bytes(&self) -> u64 {
        self.files.iter().map(|(_, b)| b.len() as u64).sum()
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn retries_logged(output: &[String]) -> usize {
    output.iter().map(|text| text.matches("retrying").count()).sum()
}

#[test]
fn a_connection_cut_mid_part_sends_only_that_part_again() {
    let scenario = Scenario::new(&[3 * PART + 1234]);
    let proxy = FaultProxy::start(vec![Rule {
        method: "PUT",
        target_contains: "partNumber=2",
        fault: Fault::CutAfter(MIB as u64),
        times: 2,
    }]);
    let (_, output) = scenario.upload_through(&proxy, &[]);
    assert_eq!(proxy.injected(), 2, "part 2 was cut twice");
    // What S3 got twice is exactly the two cut beginnings of part 2: nothing else was re-sent.
    let landed = assert_nothing_lost(
        S3Server::shared(),
        &scenario.backend,
        &scenario.workspace,
        Expected::files(&scenario.files).through(&proxy, 2 * MIB as u64).output(&output),
    );
    assert_eq!(landed.bytes_resent, 2 * MIB as u64, "only the cut bytes went twice");
    let per_part = proxy.traffic("PUT", BUCKET_PATH);
    for ((_, _, part), traffic) in &per_part {
        let expected = if *part == Some(2) { 3 } else { 1 };
        assert_eq!(traffic.requests, expected, "part {part:?} was sent {} times", traffic.requests);
        assert_eq!(traffic.succeeded, 1, "part {part:?} landed once");
    }
}

#[test]
fn a_connection_cut_mid_file_sends_the_single_put_again() {
    let scenario = Scenario::new(&[300 * 1024, 2000, 1]);
    let proxy = FaultProxy::start(vec![Rule {
        method: "PUT",
        target_contains: "/file-0000.bin",
        fault: Fault::CutAfter(100 * 1024),
        times: 1,
    }]);
    let (_, output) = scenario.upload_through(&proxy, &[]);
    assert_nothing_lost(
        S3Server::shared(),
        &scenario.backend,
        &scenario.workspace,
        Expected::files(&scenario.files).through(&proxy, 100 * 1024).output(&output),
    );
}

#[test]
fn storms_of_500_503_slowdown_and_429_answers_are_ridden_out() {
    let mut sizes = vec![64 * 1024; 16];
    sizes.push(2 * PART + 7);
    let scenario = Scenario::new(&sizes);
    let storm = |fault| Rule { method: "PUT", target_contains: BUCKET_PATH, fault, times: 3 };
    let proxy = FaultProxy::start(vec![
        storm(Fault::Status(500)),
        storm(Fault::Status(503)),
        storm(Fault::SlowDown),
        storm(Fault::Status(429)),
    ]);
    let (_, output) = scenario.upload_through(&proxy, &[]);
    assert_eq!(proxy.injected(), 12, "every error of the storm was served");
    assert!(retries_logged(&output) >= 12, "each error was retried:\n{}", output[1]);
    // Error answers are given before the body reaches S3: nothing is sent twice.
    assert_nothing_lost(
        S3Server::shared(),
        &scenario.backend,
        &scenario.workspace,
        Expected::files(&scenario.files).through(&proxy, 0).output(&output),
    );
}

#[test]
fn delayed_requests_slow_the_upload_but_lose_nothing() {
    let mut sizes = vec![10 * 1024; 6];
    sizes.push(2 * PART);
    let scenario = Scenario::new(&sizes);
    let proxy = FaultProxy::start(vec![Rule {
        method: "PUT",
        target_contains: BUCKET_PATH,
        fault: Fault::Delay(Duration::from_millis(1500)),
        times: 6,
    }]);
    let started = std::time::Instant::now();
    let (_, output) = scenario.upload_through(&proxy, &["--concurrency", "2"]);
    assert!(started.elapsed() >= Duration::from_millis(1500), "the delays were served");
    assert_eq!(retries_logged(&output), 0, "a slow answer is not a failure: nothing was retried");
    assert_nothing_lost(
        S3Server::shared(),
        &scenario.backend,
        &scenario.workspace,
        Expected::files(&scenario.files).through(&proxy, 0).output(&output),
    );
}

/// Costs about a minute: the client's read timeout (60 s) has to run out.
#[test]
fn a_stalled_request_times_out_and_is_sent_again() {
    let scenario = Scenario::new(&[200 * 1024, 3000]);
    let proxy = FaultProxy::start(vec![Rule {
        method: "PUT",
        target_contains: "/file-0000.bin",
        fault: Fault::Stall(Duration::from_secs(120)),
        times: 1,
    }]);
    let started = std::time::Instant::now();
    let (_, output) = scenario.upload_through(&proxy, &[]);
    assert!(started.elapsed() < Duration::from_secs(110), "the client gave up on the stall before the proxy did");
    assert!(retries_logged(&output) >= 1, "the stalled PUT was retried:\n{}", output[1]);
    assert_nothing_lost(
        S3Server::shared(),
        &scenario.backend,
        &scenario.workspace,
        Expected::files(&scenario.files).through(&proxy, 200 * 1024).output(&output),
    );
}

#[test]
fn five_percent_of_requests_failing_at_random_loses_nothing() {
    let mut sizes: Vec<usize> = (0..150).map(|i| [0, 1, 700, 4096, 65 * 1024][i % 5]).collect();
    sizes.extend([2 * PART + 3, 3 * PART]);
    let scenario = Scenario::new(&sizes);
    let random = RandomFaults {
        rate: 0.05,
        seed: 4,
        method: "PUT",
        target_contains: BUCKET_PATH,
        faults: vec![
            Fault::CutAfter(1000),
            Fault::Status(500),
            Fault::Status(503),
            Fault::SlowDown,
            Fault::Status(429),
            Fault::FlipBodyByte,
        ],
    };
    let proxy = FaultProxy::start_random(Vec::new(), random);
    let (_, output) = scenario.upload_through(&proxy, &[]);
    let injected = proxy.injected();
    assert!(injected >= 3, "about 5% of ~170 requests failed, got {injected}");
    // Each fault costs at most the one request it hit: a whole part or file, sent again.
    let largest_request = PART as u64;
    let landed = assert_nothing_lost(
        S3Server::shared(),
        &scenario.backend,
        &scenario.workspace,
        Expected::files(&scenario.files).through(&proxy, injected as u64 * largest_request).output(&output),
    );
    eprintln!(
        "{injected} faults over {} bytes: {} bytes sent again, {} retries",
        scenario.total_bytes(),
        landed.bytes_resent,
        retries_logged(&output)
    );
}
