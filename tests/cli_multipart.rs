//! Large files through the multipart engine: parts planned to S3's limits, signed as they go,
//! sent in parallel, checked by S3 against their signed checksums, completed and reported.

use dropship_system_tests::cli::{assert_landed, json_lines, pattern, run, Workspace};
use dropship_testkit::{Backend, BackendOptions, Fault, FaultProxy, Rule, S3Server};

const MIB: usize = 1024 * 1024;

fn upload_in_parts(size: usize, extra_args: &[&str], backend: &Backend) {
    let s3 = S3Server::shared();
    let workspace = Workspace::new();
    let bytes = pattern(size, (size % 251) as u8);
    let path = workspace.file("large.bin", &bytes);
    let mut command = workspace.dropship(backend, "native");
    command.args(["upload", "--json"]).args(extra_args).arg(&path);
    let output = run(command);
    let lines = json_lines(&output);
    assert!(output.status.success(), "the upload should succeed: {lines:?}");
    let checksum = lines[0]["checksum_sha256"].as_str().unwrap();
    assert!(checksum.contains('-'), "a multipart upload keeps S3's composite checksum: {checksum}");
    assert_landed(s3, backend, &workspace, &lines, &[(path, bytes)]);
}

#[test]
fn five_mib_and_one_byte_goes_up_as_two_parts_and_reads_back_identical() {
    let backend = Backend::start(S3Server::shared());
    let five_mib = (5 * MIB).to_string();
    upload_in_parts(5 * MIB + 1, &["--multipart-threshold", &five_mib, "--part-size", &five_mib], &backend);
}

#[test]
fn a_64_mib_file_goes_up_in_parallel_parts_and_reads_back_identical() {
    let backend = Backend::start(S3Server::shared());
    upload_in_parts(64 * MIB, &[], &backend);
}

#[test]
fn a_1_gib_file_reads_back_identical() {
    let backend = Backend::start(S3Server::shared());
    upload_in_parts(1024 * MIB, &[], &backend);
}

#[test]
fn a_part_url_that_expired_before_use_is_signed_again() {
    // Parts are signed just before they go, so a URL goes stale only on the way: the proxy
    // holds part 3's first PUT until its two-second URL has expired, and S3 refuses it.
    let options = BackendOptions { url_expiry_secs: Some(2), ..Default::default() };
    let backend = Backend::start_with(S3Server::shared(), options);
    let proxy = FaultProxy::start(vec![Rule {
        method: "PUT",
        target_contains: "partNumber=3",
        fault: Fault::HoldUntilExpired,
        times: 1,
    }]);
    let workspace = Workspace::new();
    let bytes = pattern(40 * MIB, 7);
    let path = workspace.file("large.bin", &bytes);
    let five_mib = (5 * MIB).to_string();
    let mut command = workspace.dropship(&backend, "native");
    command
        .env("HTTP_PROXY", &proxy.url)
        .env("DROPSHIP_LOG", "info")
        .args(["upload", "--json", "--multipart-threshold", &five_mib, "--part-size", &five_mib])
        .arg(&path);
    let output = run(command);
    let lines = json_lines(&output);
    assert!(output.status.success(), "the upload should succeed: {lines:?}");
    assert_eq!(proxy.injected(), 1, "part 3's first URL was held until it expired");
    assert_landed(S3Server::shared(), &backend, &workspace, &lines, &[(path, bytes)]);
    // The backend's audit log has one `sign` entry per signing request, naming its parts.
    let signed = signed_parts(&backend);
    let mut times: std::collections::BTreeMap<u32, usize> = Default::default();
    for part in signed.iter().flatten() {
        *times.entry(*part).or_default() += 1;
    }
    assert_eq!(times.len(), 8, "all eight parts were signed: {signed:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let resigned: Vec<&str> = stderr.lines().filter(|l| l.contains("part URL refused, signing it again")).collect();
    assert!(
        resigned.len() == 1 && resigned[0].contains("part=3"),
        "S3 refused part 3's stale URL once and the part was signed again: {resigned:?}"
    );
    assert_eq!(signed.last(), Some(&vec![3]), "the last signing request was part 3's fresh URL: {signed:?}");
}

/// The part numbers of each multipart signing request the backend served, in order, from its
/// audit log (read with `sqlite3`, as `Backend::all_records` does).
fn signed_parts(backend: &Backend) -> Vec<Vec<u32>> {
    let output = std::process::Command::new("sqlite3")
        .arg(&backend.db_path)
        .arg("SELECT outcome FROM audit_log WHERE action = 'sign' ORDER BY id")
        .output()
        .expect("sqlite3 runs (scripts/install-deps.sh installs it)");
    assert!(output.status.success(), "sqlite3 reads the audit log: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let numbers = line.strip_prefix("signed parts ").unwrap_or_else(|| panic!("a sign entry: {line}"));
            numbers.split(',').map(|n| n.parse().unwrap_or_else(|_| panic!("a part number in {line}"))).collect()
        })
        .collect()
}

#[test]
fn the_bandwidth_limit_holds_uploads_to_the_set_rate() {
    let backend = Backend::start(S3Server::shared());
    let five_mib = (5 * MIB).to_string();
    let limit = 4 * MIB;
    let size = 16 * MIB;
    let parts = ["--multipart-threshold", five_mib.as_str(), "--part-size", five_mib.as_str()];
    // The same upload without a limit: what this machine, loaded or not, needs besides the wait.
    let started = std::time::Instant::now();
    upload_in_parts(size, &parts, &backend);
    let unlimited = started.elapsed().as_secs_f64();

    let started = std::time::Instant::now();
    upload_in_parts(size, &[&parts[..], &["--bandwidth-limit", &limit.to_string()]].concat(), &backend);
    let elapsed = started.elapsed().as_secs_f64();
    // A tenth of a second's burst is allowed up front; beyond that, no faster than the limit.
    let fastest = (size as f64 / limit as f64) - 0.1;
    assert!(elapsed >= fastest * 0.95, "16 MiB at 4 MiB/s took only {elapsed:.2} s");
    // And the limit costs no more than it must: beyond the 4 s it demands, at most a few times
    // what the unlimited upload took on this machine just now (so load slows both alike).
    let allowed = fastest + 3.0 * unlimited + 1.0;
    assert!(
        elapsed <= allowed,
        "the limit slowed the upload beyond the rate: {elapsed:.2} s, where {fastest:.2} s at the limit plus \
         3 × {unlimited:.2} s unlimited allows {allowed:.2} s"
    );
}

#[test]
fn sigterm_during_a_multipart_upload_aborts_it_and_exits_130() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let path = workspace.file("interrupted.bin", &pattern(40 * MIB, 9));
    let five_mib = (5 * MIB).to_string();
    let mut command = workspace.dropship(&backend, "native");
    // Slowed to 8 MiB/s so the upload is surely in flight when the signal comes.
    command.args(["upload", "--json", "--multipart-threshold", &five_mib, "--part-size", &five_mib]);
    command.args(["--bandwidth-limit", &(8 * MIB).to_string()]).arg(&path);
    let child = command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let key = dropship_system_tests::wait_for("the upload to start", std::time::Duration::from_secs(20), || {
        workspace.history().first().and_then(|row| row["key"].as_str().map(str::to_owned))
    });
    let key = match key {
        Ok(key) => key,
        Err(e) => {
            let output = child.wait_with_output().unwrap();
            panic!("{e}; the upload ended with {:?}: {}", output.status, String::from_utf8_lossy(&output.stderr));
        }
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    // SAFETY: kill(2) on the child we spawned and have not yet waited for.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", String::from_utf8_lossy(&output.stderr));
    let lines = json_lines(&output);
    assert_eq!(lines[0]["error"]["code"], "cancelled", "the file is reported as cancelled: {lines:?}");
    let open = dropship_testkit::block_on(s3.client().list_multipart_uploads().bucket(&s3.bucket).prefix(&key).send())
        .expect("list multipart uploads");
    assert!(open.uploads().is_empty(), "the multipart upload was aborted");
    assert_eq!(s3.get_object(&key), None, "and no object was made");
}
