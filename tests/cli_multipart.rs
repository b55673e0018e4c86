//! Large files through the multipart engine: parts planned to S3's limits, signed in batches,
//! sent in parallel, checked by S3 against their signed checksums, completed and reported.

use dropship_system_tests::cli::{assert_landed, json_lines, pattern, run, Workspace};
use dropship_testkit::{Backend, BackendOptions, S3Server};

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
fn part_urls_that_expire_during_the_upload_are_signed_again() {
    // Every URL lives one second, far less than the upload takes at one part at a time.
    let options = BackendOptions { url_expiry_secs: Some(1), ..Default::default() };
    let backend = Backend::start_with(S3Server::shared(), options);
    let five_mib = (5 * MIB).to_string();
    upload_in_parts(
        40 * MIB,
        &["--multipart-threshold", &five_mib, "--part-size", &five_mib, "--concurrency", "1"],
        &backend,
    );
}

#[test]
fn the_bandwidth_limit_holds_uploads_to_the_set_rate() {
    let backend = Backend::start(S3Server::shared());
    let five_mib = (5 * MIB).to_string();
    let limit = 4 * MIB;
    let size = 16 * MIB;
    let started = std::time::Instant::now();
    upload_in_parts(
        size,
        &["--multipart-threshold", &five_mib, "--part-size", &five_mib, "--bandwidth-limit", &limit.to_string()],
        &backend,
    );
    let elapsed = started.elapsed().as_secs_f64();
    // A tenth of a second's burst is allowed up front; beyond that, no faster than the limit.
    let fastest = (size as f64 / limit as f64) - 0.1;
    assert!(elapsed >= fastest * 0.95, "16 MiB at 4 MiB/s took only {elapsed:.2} s");
    assert!(elapsed < fastest * 2.0 + 5.0, "and not far slower either: {elapsed:.2} s");
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
