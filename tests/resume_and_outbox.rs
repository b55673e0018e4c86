//! Nothing lost: a CLI killed with SIGKILL in the middle of a multipart upload carries on from
//! the parts it had finished when run again; a file that changed meanwhile starts over and the
//! history says why; a killed batch of small files is finished by `dropship resume` with no
//! duplicate; completion reports the backend cannot take wait in the outbox and are delivered
//! exactly once when it can.

use std::process::{Child, Stdio};
use std::time::Duration;

use dropship_system_tests::cli::{assert_landed, json_lines, pattern, run, Workspace};
use dropship_system_tests::invariants::{assert_nothing_lost, Expected};
use dropship_system_tests::wait_for;
use dropship_testkit::{Backend, Fault, FaultProxy, Rule, S3Server};

const MIB: usize = 1024 * 1024;
const PART: usize = 5 * MIB;

/// Rows of the data dir's SQLite history, read directly (what the CLI recorded so far).
fn count(workspace: &Workspace, sql: &str) -> i64 {
    // Not created here: before the CLI makes it, there is nothing to count.
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE;
    let Ok(db) = rusqlite::Connection::open_with_flags(workspace.data_dir().join("history.sqlite"), flags) else {
        return 0;
    };
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.query_row(sql, [], |r| r.get(0)).unwrap_or(0)
}

fn kill_hard(child: &mut Child) {
    // SAFETY: kill(2) on the child we spawned and have not yet waited for.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    child.wait().expect("reap the killed CLI");
}

/// Starts a slowed multipart upload of `path` and SIGKILLs it once `parts` parts are recorded.
fn start_and_kill_after_parts(workspace: &Workspace, backend: &Backend, path: &std::path::Path, parts: i64) {
    let mut command = workspace.dropship(backend, "native");
    command.args(["upload", "--json", "--multipart-threshold", &PART.to_string(), "--part-size", &PART.to_string()]);
    command.args(["--concurrency", "2", "--bandwidth-limit", &(10 * MIB).to_string()]).arg(path);
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let recorded = wait_for("parts to be recorded", Duration::from_secs(60), || {
        let n = count(workspace, "SELECT COUNT(*) FROM multipart_parts");
        (n >= parts).then_some(n)
    });
    kill_hard(&mut child);
    recorded.expect("the upload records its parts as they finish");
}

fn open_uploads(s3: &S3Server, key: &str) -> Vec<String> {
    let listed = dropship_testkit::block_on(s3.client().list_multipart_uploads().bucket(&s3.bucket).prefix(key).send())
        .expect("list multipart uploads");
    listed.uploads().iter().filter_map(|u| u.upload_id().map(str::to_owned)).collect()
}

fn parts_in_s3(s3: &S3Server, key: &str, upload_id: &str) -> usize {
    let listed =
        dropship_testkit::block_on(s3.client().list_parts().bucket(&s3.bucket).key(key).upload_id(upload_id).send())
            .expect("list parts");
    listed.parts().len()
}

fn strip_colours(log: &str) -> String {
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            plain.push(c);
        }
    }
    plain
}

fn only_history_row(workspace: &Workspace) -> serde_json::Value {
    let history = workspace.history();
    assert_eq!(history.len(), 1, "one upload, one history row: {history:?}");
    history.into_iter().next().unwrap()
}

#[test]
fn a_multipart_upload_killed_mid_way_carries_on_from_its_finished_parts() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let bytes = pattern(12 * PART + 1234, 31);
    let path = workspace.file("killed.bin", &bytes);
    start_and_kill_after_parts(&workspace, &backend, &path, 4);

    let recorded = count(&workspace, "SELECT COUNT(*) FROM multipart_parts") as usize;
    let row = only_history_row(&workspace);
    let key = row["key"].as_str().expect("the key was recorded before any part went out").to_owned();
    let open = open_uploads(s3, &key);
    assert_eq!(open.len(), 1, "a killed CLI leaves its multipart upload open for the resume");
    let in_s3_at_kill = parts_in_s3(s3, &key, &open[0]);

    let mut command = workspace.dropship(&backend, "native");
    command.env("DROPSHIP_LOG", "dropship_core=info");
    command.args(["upload", "--json", "--multipart-threshold", &PART.to_string(), "--part-size", &PART.to_string()]);
    command.arg(&path);
    let output = run(command);
    let lines = json_lines(&output);
    let log = strip_colours(&String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the rerun finishes the upload: {lines:?}\n{log}");
    let finished: usize = log
        .lines()
        .find(|l| l.contains("resuming a multipart upload"))
        .and_then(|l| l.split("finished=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the rerun says it resumes, with how many parts were finished:\n{log}"));
    assert!(finished >= recorded, "every part recorded before the kill is kept ({finished} of {recorded})");
    let resent = in_s3_at_kill.saturating_sub(finished);
    assert!(resent <= 2, "only parts in flight at the kill go again: {resent} re-sent, concurrency 2");

    assert_eq!(lines[0]["upload_id"], row["upload_id"], "the same upload carried on");
    assert_landed(s3, &backend, &workspace, &lines, &[(path, bytes)]);
    assert_eq!(only_history_row(&workspace)["status"], "uploaded");
    assert!(open_uploads(s3, &key).is_empty(), "nothing is left open in the bucket");
    assert_eq!(count(&workspace, "SELECT COUNT(*) FROM multipart_state"), 0, "the resume state is tidied away");
}

#[test]
fn a_file_that_changed_after_the_kill_starts_over_and_the_history_says_why() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let path = workspace.file("edited.bin", &pattern(8 * PART, 5));
    start_and_kill_after_parts(&workspace, &backend, &path, 2);
    let old_key = only_history_row(&workspace)["key"].as_str().unwrap().to_owned();

    std::thread::sleep(Duration::from_millis(20));
    let edited = pattern(8 * PART, 77);
    std::fs::write(&path, &edited).unwrap();
    let mut command = workspace.dropship(&backend, "native");
    command.args(["upload", "--json", "--multipart-threshold", &PART.to_string(), "--part-size", &PART.to_string()]);
    command.arg(&path);
    let output = run(command);
    let lines = json_lines(&output);
    assert!(output.status.success(), "{lines:?}");
    assert_landed(s3, &backend, &workspace, &lines, &[(path, edited)]);
    let row = only_history_row(&workspace);
    assert!(row["note"].as_str().is_some_and(|n| n.contains("changed")), "the history says why: {row}");
    assert!(open_uploads(s3, &old_key).is_empty(), "the stale multipart upload was aborted");
}

#[test]
fn a_killed_batch_of_small_files_is_finished_by_resume_with_no_duplicates() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let files: Vec<_> =
        (0..300).map(|i| workspace.file(&format!("batch/f{i:03}.txt"), &pattern(2048 + i * 7, i as u8))).collect();
    let mut command = workspace.dropship(&backend, "native");
    command.args(["upload", "--json", "--concurrency", "2", "--bandwidth-limit", &(256 * 1024).to_string()]);
    let mut child = command.arg(workspace.dir.path().join("files/batch")).stdout(Stdio::null()).spawn().unwrap();
    wait_for("the first file to be on its way", Duration::from_secs(60), || {
        (count(&workspace, "SELECT COUNT(*) FROM uploads WHERE status != 'queued'") > 0).then_some(())
    })
    .unwrap();
    // What `resume` finds is what the history holds: a file recorded only after others started
    // would be lost by a crash in between.
    let recorded = count(&workspace, "SELECT COUNT(*) FROM uploads");
    assert_eq!(recorded, files.len() as i64, "every file of the batch is in the history before any is sent");
    wait_for("some files to land", Duration::from_secs(60), || {
        (count(&workspace, "SELECT COUNT(*) FROM uploads WHERE status IN ('reporting', 'uploaded')") >= 20)
            .then_some(())
    })
    .unwrap();
    kill_hard(&mut child);
    let unfinished = count(&workspace, "SELECT COUNT(*) FROM uploads WHERE status != 'uploaded'");
    assert!(unfinished > 0, "the kill came before the batch finished");

    let mut command = workspace.dropship(&backend, "native");
    command.args(["resume", "--json"]);
    let output = run(command);
    let lines = json_lines(&output);
    assert!(output.status.success(), "resume finishes the batch: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(lines.len() as i64, unfinished, "resume carries on with exactly the unfinished uploads");

    let history = workspace.history();
    assert_eq!(history.len(), files.len(), "one history row per file, none twice");
    assert!(history.iter().all(|row| row["status"] == "uploaded"), "every file is uploaded");
    let records = backend.records();
    assert_eq!(records.len(), files.len(), "the backend recorded each file exactly once");
    for row in &history {
        let key = row["key"].as_str().unwrap();
        let local = std::fs::read(row["path"].as_str().unwrap()).unwrap();
        assert_eq!(s3.get_object(key).as_deref(), Some(&local[..]), "{key} is byte-identical");
        assert_eq!(records.iter().filter(|r| r["key"] == key).count(), 1, "{key} recorded once");
    }
}

#[test]
fn reports_wait_in_the_outbox_while_the_backend_fails_and_go_out_exactly_once_later() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let files: Vec<_> = (0..5).map(|i| workspace.file(&format!("r{i}.txt"), &pattern(1000 + i, i as u8))).collect();
    // Every report is answered 503 (a backend in trouble); signing and S3 work.
    let proxy = FaultProxy::start(vec![Rule {
        method: "POST",
        target_contains: "/api/v1/reports",
        fault: Fault::SlowDown,
        times: usize::MAX,
    }]);
    let mut command = workspace.dropship(&backend, "native");
    command.env("HTTP_PROXY", &proxy.url).args(["upload", "--json", "--backend-wait", "3"]).args(&files);
    let output = run(command);
    let lines = json_lines(&output);
    assert_eq!(output.status.code(), Some(1), "not every file is reported yet: {lines:?}");
    assert!(lines.iter().all(|l| l["error"]["code"] == "report_pending"), "each file says its report waits: {lines:?}");
    assert!(proxy.injected() >= 2, "the deliverer tried more than once");
    assert!(backend.records().is_empty());
    assert!(workspace.history().iter().all(|row| row["status"] == "reporting"), "in S3, report queued");

    let listed = run({
        let mut command = workspace.dropship(&backend, "native");
        command.args(["reports", "--json"]);
        command
    });
    let queued = json_lines(&listed);
    assert_eq!(queued.len(), files.len(), "every report is in the outbox: {queued:?}");
    assert!(queued.iter().all(|r| r["state"] == "waiting" && r["attempts"].as_u64() >= Some(1)), "{queued:?}");

    // The backend is healthy again: the next run delivers what the last one left.
    let output = run({
        let mut command = workspace.dropship(&backend, "native");
        command.args(["resume", "--json"]);
        command
    });
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(json_lines(&output).len(), files.len());
    let history = workspace.history();
    assert!(history.iter().all(|row| row["status"] == "uploaded"), "{history:?}");
    let records = backend.records();
    assert_eq!(records.len(), files.len(), "each report recorded exactly once: {records:?}");
    assert!(json_lines(&run({
        let mut command = workspace.dropship(&backend, "native");
        command.args(["reports", "--json"]);
        command
    }))
    .is_empty());
}

#[test]
fn signing_waits_out_a_backend_that_fails_for_a_while() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let small = workspace.file("small.txt", &pattern(4000, 3));
    let large = workspace.file("large.bin", &pattern(3 * PART, 4));
    // The first answers to presign, multipart create and part signing are 503s.
    let rules = ["/api/v1/uploads/presign", "/api/v1/multipart/sign"]
        .into_iter()
        .map(|target| Rule { method: "POST", target_contains: target, fault: Fault::SlowDown, times: 3 })
        .collect();
    let proxy = FaultProxy::start(rules);
    let mut command = workspace.dropship(&backend, "native");
    command.env("HTTP_PROXY", &proxy.url).args(["upload", "--json", "--multipart-threshold", &PART.to_string()]);
    command.args(["--part-size", &PART.to_string()]).arg(&small).arg(&large);
    let output = run(command);
    let lines = json_lines(&output);
    assert!(output.status.success(), "both files wait out the outage and land: {lines:?}");
    assert_eq!(proxy.injected(), 6, "every injected failure was met and waited out");
    let files = [(small, pattern(4000, 3)), (large, pattern(3 * PART, 4))];
    assert_landed(s3, &backend, &workspace, &lines, &files);
}

#[test]
fn a_report_the_backend_rejects_is_kept_with_its_reason_and_goes_through_when_retried_by_hand() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let bytes = pattern(3000, 8);
    let path = workspace.file("disputed.txt", &bytes);
    let dropship = |args: &[&str]| {
        let mut command = workspace.dropship(&backend, "native");
        command.args(args);
        command
    };
    // The report cannot get through at first, so the object can be tampered with before it does.
    let proxy = FaultProxy::start(vec![Rule {
        method: "POST",
        target_contains: "/api/v1/reports",
        fault: Fault::SlowDown,
        times: usize::MAX,
    }]);
    let mut first = dropship(&["upload", "--json", "--backend-wait", "1"]);
    first.env("HTTP_PROXY", &proxy.url).arg(&path);
    let lines = json_lines(&run(first));
    let key = lines[0]["key"].as_str().expect("the file is in S3").to_owned();
    s3.put_object(&key, b"someone else's bytes");

    // The backend HEADs the object, finds another size and refuses to record it (422).
    let output = run(dropship(&["resume", "--json"]));
    let lines = json_lines(&output);
    assert_eq!(output.status.code(), Some(1), "{lines:?}");
    assert_eq!(lines[0]["error"]["code"], "report_rejected", "{lines:?}");
    let reason = lines[0]["error"]["message"].as_str().unwrap();
    assert!(reason.contains("holds 20 bytes"), "the backend's reason is shown: {reason}");
    let row = only_history_row(&workspace);
    assert_eq!((row["status"].as_str(), row["error_code"].as_str()), (Some("failed"), Some("report_rejected")));
    let queued = json_lines(&run(dropship(&["reports", "--json"])));
    assert_eq!(queued.len(), 1, "the rejected report is kept");
    assert_eq!(queued[0]["state"], "rejected");
    assert!(
        json_lines(&run(dropship(&["resume", "--json"]))).is_empty(),
        "a rejected report is not retried on its own"
    );

    // Put right what the backend objected to, then retry by hand.
    s3.put_object(&key, &bytes);
    let output = run(dropship(&["reports", "--retry", "--json"]));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(json_lines(&output).is_empty(), "nothing is left waiting");
    assert_eq!(only_history_row(&workspace)["status"], "uploaded");
    let records = backend.records();
    assert_eq!(records.iter().filter(|r| r["key"] == key.as_str()).count(), 1, "recorded once: {records:?}");
}

/// SIGKILL at random moments, three times over, through a first run and two resumes; the
/// fourth run finishes. Nothing is lost or doubled, and what S3 received twice is no more than
/// what could have been in flight at each kill. The seed is printed; set
/// `DROPSHIP_KILL_SEED` to replay a failure.
#[test]
fn kills_at_random_moments_lose_nothing_and_resend_at_most_what_was_in_flight() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let mut files = vec![{
        let bytes = pattern(10 * PART + 999, 61);
        (workspace.file("mixed/big.bin", &bytes), bytes)
    }];
    for i in 0..40 {
        let bytes = pattern(500 + i * 97, i as u8);
        files.push((workspace.file(&format!("mixed/small-{i:02}.txt"), &bytes), bytes));
    }
    let seed: u64 = std::env::var("DROPSHIP_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    println!("DROPSHIP_KILL_SEED={seed}");
    let mut state = seed | 1;
    let mut next_delay = move || {
        // xorshift: enough randomness for kill times, and replayable from the seed.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        Duration::from_millis(200 + state % 2300)
    };
    let proxy = FaultProxy::start(Vec::new());
    let command = |args: &[&str]| {
        let mut command = workspace.dropship(&backend, "native");
        command.env("HTTP_PROXY", &proxy.url).args(args);
        command.args(["--multipart-threshold", &PART.to_string(), "--part-size", &PART.to_string()]);
        command.args(["--concurrency", "2", "--bandwidth-limit", &(8 * MIB).to_string()]);
        command
    };
    let mut outputs = Vec::new();
    for kill in 0..3 {
        let mut run = if kill == 0 { command(&["upload", "--json"]) } else { command(&["resume", "--json"]) };
        if kill == 0 {
            run.arg(workspace.dir.path().join("files/mixed"));
        }
        let mut child = run.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        if kill == 0 {
            // Every file has its history row before the first kill, so a resume can find it.
            wait_for("the batch to be queued", Duration::from_secs(30), || {
                (count(&workspace, "SELECT COUNT(*) FROM uploads") == files.len() as i64).then_some(())
            })
            .unwrap();
        }
        std::thread::sleep(next_delay());
        kill_hard(&mut child);
        let mut stdout = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
        outputs.push(stdout);
    }
    let last = run(command(&["resume", "--json"]));
    assert!(last.status.success(), "the last run finishes everything: {}", String::from_utf8_lossy(&last.stderr));
    outputs.push(String::from_utf8_lossy(&last.stdout).into_owned());
    outputs.push(String::from_utf8_lossy(&last.stderr).into_owned());

    let in_flight_per_kill = 2 * PART as u64;
    let expected = Expected::files(&files).through(&proxy, 3 * in_flight_per_kill).output(&outputs);
    assert_nothing_lost(s3, &backend, &workspace, expected);
}
