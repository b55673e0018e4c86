//! Faults the real S3 server cannot be made to produce on demand, injected by a loopback proxy
//! between the CLI and SeaweedFS: corrupted bodies and SlowDown answers. SeaweedFS still does
//! the checking: a corrupted part is refused by it because its SHA-256 was signed.

use dropship_system_tests::cli::{assert_landed, json_lines, pattern, run, Workspace};
use dropship_testkit::{Backend, Fault, FaultProxy, Rule, S3Server};

const MIB: usize = 1024 * 1024;

fn upload_through(proxy: &FaultProxy, size: usize, extra_args: &[&str]) {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let bytes = pattern(size, 42);
    let path = workspace.file("through the proxy.bin", &bytes);
    let mut command = workspace.dropship(&backend, "native");
    command.env("HTTP_PROXY", &proxy.url).args(["upload", "--json"]).args(extra_args).arg(&path);
    let output = run(command);
    let lines = json_lines(&output);
    assert!(output.status.success(), "the upload should get through the faults: {lines:?}");
    assert!(proxy.injected() > 0, "the proxy was in the path and injected its faults");
    assert_landed(s3, &backend, &workspace, &lines, &[(path, bytes)]);
}

#[test]
fn a_part_corrupted_on_the_way_is_refused_by_s3_and_sent_again() {
    let proxy = FaultProxy::start(vec![Rule {
        method: "PUT",
        target_contains: "partNumber=2",
        fault: Fault::FlipBodyByte,
        times: 1,
    }]);
    let five_mib = (5 * MIB).to_string();
    upload_through(&proxy, 12 * MIB, &["--multipart-threshold", &five_mib, "--part-size", &five_mib]);
    assert_eq!(proxy.injected(), 1);
}

#[test]
fn a_single_put_corrupted_on_the_way_is_refused_by_s3_and_sent_again() {
    let proxy = FaultProxy::start(vec![Rule {
        method: "PUT",
        target_contains: "x-id=PutObject",
        fault: Fault::FlipBodyByte,
        times: 1,
    }]);
    upload_through(&proxy, 300 * 1024, &[]);
}

#[test]
fn slowdown_answers_are_retried_with_backoff_until_s3_accepts() {
    let proxy = FaultProxy::start(vec![Rule {
        method: "PUT",
        target_contains: "x-id=PutObject",
        fault: Fault::SlowDown,
        times: 3,
    }]);
    upload_through(&proxy, 64 * 1024, &[]);
    assert_eq!(proxy.injected(), 3, "three SlowDowns, then success");
}
