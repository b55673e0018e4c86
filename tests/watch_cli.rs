//! `dropship watch` end to end: real folders on disk, the real `dropship` binary, the real
//! `dropship-backend` and SeaweedFS. Every file that lands in a watched folder must reach S3
//! exactly once, after it is complete, including files added while the watcher was stopped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dropship_system_tests::cli::{pattern, Workspace};
use dropship_system_tests::wait_for;
use dropship_testkit::{Backend, S3Server};
use serde_json::Value;

/// Short, so the tests run quickly; the default (1 s) is what the latency figures use.
const STABLE_MS: &str = "300";

/// A running `dropship watch --json`, its output collected as it comes. Stopped (SIGTERM,
/// then SIGKILL) when dropped.
struct Watching {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    /// The threads reading stdout and stderr; they end when the process has closed both.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Watching {
    fn start(workspace: &Workspace, backend: &Backend, dir: &Path, extra: &[&str]) -> Watching {
        let mut command = workspace.dropship(backend, "native");
        command.args(["watch", "--json", "--stable-ms", STABLE_MS]).args(extra).arg(dir);
        Watching::spawn(command)
    }

    fn spawn(mut command: Command) -> Watching {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start dropship watch");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let collected = lines.clone();
        let out_reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                collected.lock().unwrap().push(value);
            }
        });
        let said = stderr.clone();
        let err_reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut said = said.lock().unwrap();
                said.push_str(&line);
                said.push('\n');
            }
        });
        let watching = Watching { child, lines, stderr, readers: vec![out_reader, err_reader] };
        watching.wait_for_stderr("watching ", Duration::from_secs(30));
        watching
    }

    fn wait_for_stderr(&self, text: &str, timeout: Duration) {
        let seen = wait_for(&format!("{text:?} on stderr"), timeout, || {
            self.stderr.lock().unwrap().contains(text).then_some(())
        });
        seen.unwrap_or_else(|e| panic!("{e}; stderr so far:\n{}", self.stderr.lock().unwrap()));
    }

    fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    fn lines_for(&self, path: &Path) -> Vec<Value> {
        self.lines().into_iter().filter(|l| l["path"].as_str() == path.to_str()).collect()
    }

    /// Waits until `path` has been uploaded `times` times, and returns its lines.
    fn wait_uploaded(&self, path: &Path, times: usize, timeout: Duration) -> Vec<Value> {
        let found = wait_for(&format!("{} uploaded {times} time(s)", path.display()), timeout, || {
            let lines = self.lines_for(path);
            if let Some(failed) = lines.iter().find(|l| l["status"] != "uploaded") {
                panic!("{} failed: {failed}", path.display());
            }
            (lines.len() >= times).then_some(lines)
        });
        found.unwrap_or_else(|e| panic!("{e}; stderr:\n{}", self.stderr.lock().unwrap()))
    }

    /// A positive sign that the watcher has dealt with everything that happened in its folder
    /// before now: a file written after it all goes up. What must not have happened is checked
    /// after this (and after [`Watching::terminate`], which lets uploads in progress finish and
    /// reads every last line), not after a sleep that a loaded machine can outlast.
    fn caught_up(&self, dir: &Path) {
        static MARKERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = MARKERS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let marker = dir.join(format!("{CAUGHT_UP}{n}.txt"));
        std::fs::write(&marker, b"marker").unwrap();
        self.wait_uploaded(&marker, 1, Duration::from_secs(60));
    }

    /// SIGTERM, and the exit status once it has stopped.
    fn terminate(mut self) -> (std::process::ExitStatus, Vec<Value>, String) {
        // SAFETY: kill(2) on the PID of a child we started and have not reaped yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "dropship watch did not stop within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        // The process is gone, so its pipes are closed: the readers end once they have the last lines.
        for reader in self.readers.drain(..) {
            reader.join().expect("an output reader");
        }
        (status, besides_markers(self.lines()), self.stderr.lock().unwrap().clone())
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The name [`Watching::caught_up`] gives its marker files.
const CAUGHT_UP: &str = "caught-up-marker-";

/// The lines, without those of [`Watching::caught_up`]'s markers.
fn besides_markers(lines: Vec<Value>) -> Vec<Value> {
    lines.into_iter().filter(|l| !l["path"].as_str().is_some_and(|p| p.contains(CAUGHT_UP))).collect()
}

/// The backend's records (all of them: the API's page of 1,000 would hide one of 1,000 files
/// and a marker), without those of [`Watching::caught_up`]'s markers.
fn records_besides_markers(backend: &Backend) -> Vec<Value> {
    backend.all_records().into_iter().filter(|r| !r["key"].as_str().is_some_and(|k| k.contains(CAUGHT_UP))).collect()
}

fn watched_dir(workspace: &Workspace) -> PathBuf {
    let dir = workspace.dir.path().join("watched");
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

/// The bytes under `key` in the bucket are `bytes`, and the history row says it came from a
/// watched folder.
fn assert_landed_from_watch(s3: &S3Server, workspace: &Workspace, line: &Value, bytes: &[u8]) {
    let key = line["key"].as_str().expect("an uploaded file has a key");
    let stored = s3.get_object(key).unwrap_or_else(|| panic!("{key} should be in the bucket"));
    assert!(stored == bytes, "{key} should be byte-identical ({} vs {} bytes)", stored.len(), bytes.len());
    let history = workspace.history();
    let row = history.iter().find(|h| h["upload_id"] == line["upload_id"]).expect("a history row per upload");
    assert_eq!(row["source"], "watch", "{row}");
    assert_eq!(row["status"], "uploaded", "{row}");
}

#[test]
fn new_slowly_written_and_renamed_in_files_each_go_up_once_when_complete_and_ignored_names_never() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let dir = watched_dir(&workspace);
    let watching = Watching::start(&workspace, &backend, &dir, &[]);

    // Created in one go.
    let plain = dir.join("scan-001.pdf");
    std::fs::write(&plain, b"%PDF-1.4 one").unwrap();

    // Written slowly: 8 chunks 400 ms apart, well past the 300 ms stability window, the file
    // open the whole time. It must go up once, whole, after the last chunk.
    let slow = dir.join("slow copy.bin");
    let slow_bytes = pattern(8 * 64 * 1024, 7);
    {
        let mut file = std::fs::File::create(&slow).unwrap();
        for chunk in slow_bytes.chunks(64 * 1024) {
            file.write_all(chunk).unwrap();
            file.flush().unwrap();
            std::thread::sleep(Duration::from_millis(400));
        }
    }

    // Written under a temporary name, then renamed into place (browsers, ShareX's blind spot).
    let part = dir.join("report.pdf.part");
    std::fs::write(&part, b"%PDF-1.4 report").unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let renamed = dir.join("report.pdf");
    std::fs::rename(&part, &renamed).unwrap();

    // Names that are never a finished file someone means to upload.
    let ignored = ["Thumbs.db", ".DS_Store", "~$letter.docx", "draft.tmp", "movie.mkv.crdownload"];
    for name in ignored {
        std::fs::write(dir.join(name), b"litter").unwrap();
    }
    // And a file in a new sub-folder.
    std::fs::create_dir_all(dir.join("2024/03")).unwrap();
    let nested = dir.join("2024/03/invoice.txt");
    std::fs::write(&nested, b"invoice").unwrap();

    let timeout = Duration::from_secs(30);
    let plain_line = watching.wait_uploaded(&plain, 1, timeout).remove(0);
    let slow_line = watching.wait_uploaded(&slow, 1, timeout).remove(0);
    let renamed_line = watching.wait_uploaded(&renamed, 1, timeout).remove(0);
    let nested_line = watching.wait_uploaded(&nested, 1, timeout).remove(0);
    // Any duplicate or ignored upload would have been decided on before the marker's.
    watching.caught_up(&dir);
    let (status, lines, stderr) = watching.terminate();

    assert!(status.success(), "SIGTERM is a clean stop: {status:?}\n{stderr}");
    assert_landed_from_watch(s3, &workspace, &plain_line, b"%PDF-1.4 one");
    assert_landed_from_watch(s3, &workspace, &slow_line, &slow_bytes);
    assert_landed_from_watch(s3, &workspace, &renamed_line, b"%PDF-1.4 report");
    assert_landed_from_watch(s3, &workspace, &nested_line, b"invoice");
    assert_eq!(lines.len(), 4, "each file exactly once, nothing ignored, no partial upload: {lines:#?}");
    let records = records_besides_markers(&backend);
    assert_eq!(records.len(), 4, "the backend recorded four uploads: {records:?}");
}

#[test]
fn a_changed_file_goes_up_again_as_a_new_version_and_deleting_it_deletes_nothing_remotely() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let dir = watched_dir(&workspace);
    let watching = Watching::start(&workspace, &backend, &dir, &[]);

    let path = dir.join("notes.txt");
    std::fs::write(&path, b"version one").unwrap();
    let first = watching.wait_uploaded(&path, 1, Duration::from_secs(30)).remove(0);
    std::fs::write(&path, b"version two, longer").unwrap();
    let both = watching.wait_uploaded(&path, 2, Duration::from_secs(30));
    assert_ne!(both[0]["key"], both[1]["key"], "a new version is a new object");

    // Touching without changing the bytes is not a new version.
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(std::time::SystemTime::now()).unwrap();
    drop(file);
    std::fs::remove_file(&path).unwrap();
    watching.caught_up(&dir);
    let (status, lines, _) = watching.terminate();
    assert!(status.success());
    assert_eq!(lines.len(), 2, "two versions, nothing for the touch or the delete: {lines:#?}");

    assert_landed_from_watch(s3, &workspace, &first, b"version one");
    assert_landed_from_watch(s3, &workspace, &both[1], b"version two, longer");
    let history = workspace.history();
    assert_eq!(history.iter().filter(|h| h["path"].as_str() == path.to_str()).count(), 2, "both stay in history");
}

#[test]
fn files_added_while_stopped_are_caught_up_at_start_and_unchanged_files_are_not_sent_again() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let dir = watched_dir(&workspace);
    let before = dir.join("before.txt");
    std::fs::write(&before, b"there before the first start").unwrap();
    let unchanged = dir.join("unchanged.txt");
    std::fs::write(&unchanged, b"same").unwrap();

    let first = Watching::start(&workspace, &backend, &dir, &[]);
    first.wait_uploaded(&before, 1, Duration::from_secs(30));
    first.wait_uploaded(&unchanged, 1, Duration::from_secs(30));
    let (status, _, stderr) = first.terminate();
    assert!(status.success(), "{stderr}");

    // While stopped: one file added, one changed, one left alone.
    let added = dir.join("added while stopped.txt");
    std::fs::write(&added, b"new").unwrap();
    std::fs::write(&before, b"changed while stopped").unwrap();

    let second = Watching::start(&workspace, &backend, &dir, &[]);
    let added_line = second.wait_uploaded(&added, 1, Duration::from_secs(30)).remove(0);
    let changed_line = second.wait_uploaded(&before, 1, Duration::from_secs(30)).remove(0);
    second.caught_up(&dir);
    let (status, lines, stderr) = second.terminate();
    assert!(status.success(), "{stderr}");
    assert_eq!(lines.len(), 2, "only the added and the changed file: {lines:#?}");
    assert_landed_from_watch(s3, &workspace, &added_line, b"new");
    assert_landed_from_watch(s3, &workspace, &changed_line, b"changed while stopped");
    assert_eq!(records_besides_markers(&backend).len(), 4, "before (twice), unchanged and added: nothing else");
}

#[test]
fn a_thousand_files_dropped_in_at_once_each_land_exactly_once() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let dir = watched_dir(&workspace);
    let watching = Watching::start(&workspace, &backend, &dir, &[]);

    // Prepared next door, then moved in as one folder-full, like a drag onto the folder.
    let staging = workspace.dir.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let files: Vec<(String, Vec<u8>)> =
        (0..1000).map(|i| (format!("photo-{i:04}.jpg"), pattern(1000 + i, i as u8))).collect();
    for (name, bytes) in &files {
        std::fs::write(staging.join(name), bytes).unwrap();
    }
    for (name, _) in &files {
        std::fs::rename(staging.join(name), dir.join(name)).unwrap();
    }

    let all = wait_for("1,000 uploads", Duration::from_secs(180), || {
        let lines = watching.lines();
        (lines.len() >= files.len()).then_some(lines)
    })
    .unwrap_or_else(|e| panic!("{e}: {} so far", watching.lines().len()));
    watching.caught_up(&dir);
    let (status, lines, stderr) = watching.terminate();
    assert!(status.success(), "{stderr}");
    assert_eq!(lines.len(), files.len(), "no file twice: {} lines", lines.len());
    let mut by_path: HashMap<&str, &Value> = HashMap::new();
    for line in &all {
        assert_eq!(line["status"], "uploaded", "{line}");
        assert!(by_path.insert(line["path"].as_str().unwrap(), line).is_none(), "{} went up twice", line["path"]);
    }
    let records = records_besides_markers(&backend);
    assert_eq!(records.len(), files.len(), "the backend recorded each exactly once");
    for (name, bytes) in files.iter().step_by(97) {
        let line = by_path[dir.join(name).to_str().unwrap()];
        let stored = s3.get_object(line["key"].as_str().unwrap()).expect("in the bucket");
        assert!(stored == *bytes, "{name} is byte-identical");
    }
}

#[test]
fn a_watched_folder_that_disappears_is_paused_and_picked_up_again_when_it_comes_back() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let dir = watched_dir(&workspace);
    let first = dir.join("first.txt");
    std::fs::write(&first, b"1").unwrap();
    let watching = Watching::start(&workspace, &backend, &dir, &[]);
    watching.wait_uploaded(&first, 1, Duration::from_secs(30));

    // Unplugged: the folder goes away with its files.
    let away = workspace.dir.path().join("unplugged");
    std::fs::rename(&dir, &away).unwrap();
    watching.wait_for_stderr("missing ", Duration::from_secs(15));
    // Files added on the drive while it was elsewhere.
    std::fs::write(away.join("while away.txt"), b"2").unwrap();
    std::fs::rename(&away, &dir).unwrap();
    watching.wait_for_stderr(&format!("watching {}\n", dir.display()), Duration::from_secs(15));
    let while_away = dir.join("while away.txt");
    watching.wait_uploaded(&while_away, 1, Duration::from_secs(30));
    let after = dir.join("after.txt");
    std::fs::write(&after, b"3").unwrap();
    watching.wait_uploaded(&after, 1, Duration::from_secs(30));
    watching.caught_up(&dir);
    let (status, lines, stderr) = watching.terminate();
    assert!(status.success(), "{stderr}");
    assert_eq!(lines.len(), 3, "first.txt is not sent again when the folder returns: {lines:#?}");
}

#[test]
fn sigterm_while_a_large_file_is_uploading_exits_zero_and_the_file_still_lands_exactly_once() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let dir = watched_dir(&workspace);
    let watching = Watching::start(&workspace, &backend, &dir, &[]);
    let path = dir.join("big.bin");
    let bytes = pattern(48 << 20, 9);
    std::fs::write(&path, &bytes).unwrap();
    // Past the stability window: the upload is starting or running.
    std::thread::sleep(Duration::from_millis(700));
    let started = Instant::now();
    let (status, lines, stderr) = watching.terminate();
    assert!(status.success(), "SIGTERM exits 0: {status:?}\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "it stops within the grace period");

    // Finished before stopping, or checkpointed and finished by the next run: once either way.
    let again = Watching::start(&workspace, &backend, &dir, &[]);
    let line = if lines.is_empty() {
        again.wait_uploaded(&path, 1, Duration::from_secs(60)).remove(0)
    } else {
        lines[0].clone()
    };
    again.caught_up(&dir);
    let (status, more, _) = again.terminate();
    assert!(status.success());
    assert_eq!(lines.len() + more.len(), 1, "exactly one upload across both runs: {lines:?} {more:?}");
    assert_landed_from_watch(s3, &workspace, &line, &bytes);
    assert_eq!(records_besides_markers(&backend).len(), 1, "recorded once across both runs");
}

#[test]
fn a_folder_set_to_polling_still_uploads_what_lands_in_it() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let dir = watched_dir(&workspace);
    let watching = Watching::start(&workspace, &backend, &dir, &["--poll"]);
    watching.wait_for_stderr("polling ", Duration::from_secs(5));
    let path = dir.join("from another machine.txt");
    std::fs::write(&path, b"over the share").unwrap();
    let line = watching.wait_uploaded(&path, 1, Duration::from_secs(30)).remove(0);
    let (status, _, _) = watching.terminate();
    assert!(status.success());
    assert_landed_from_watch(s3, &workspace, &line, b"over the share");
}

#[test]
fn a_folder_that_is_not_there_is_a_setup_error_that_names_it() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let mut command = workspace.dropship(&backend, "native");
    let output = command.args(["watch", "/no/such/folder"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/no/such/folder"));
}

#[test]
fn after_a_verified_upload_the_file_can_be_moved_aside_and_is_not_sent_again_from_there() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let dir = watched_dir(&workspace);
    let watching = Watching::start(&workspace, &backend, &dir, &["--move-uploaded-to", "Uploaded"]);
    std::fs::create_dir_all(dir.join("inbox")).unwrap();
    let path = dir.join("inbox/scan.pdf");
    std::fs::write(&path, b"%PDF scan").unwrap();
    let line = watching.wait_uploaded(&path, 1, Duration::from_secs(30)).remove(0);
    let moved = dir.join("Uploaded/inbox/scan.pdf");
    wait_for("the file moved aside", Duration::from_secs(10), || moved.exists().then_some(())).unwrap();
    assert!(!path.exists(), "moved, not copied");
    watching.caught_up(&dir);
    let (status, lines, _) = watching.terminate();
    assert!(status.success());
    assert_eq!(lines.len(), 1, "the moved file is not uploaded again: {lines:#?}");
    assert_landed_from_watch(s3, &workspace, &line, b"%PDF scan");
    assert_eq!(std::fs::read(&moved).unwrap(), b"%PDF scan");
}

/// Runs `dropship watch` in a private user namespace whose inotify watch limit is `limit`, so
/// the limit runs out without touching the machine's own setting.
/// `dropship watch` as an unprivileged user (`nobody`, in a user namespace of its own), so
/// permission bits hold as they would for a person; the workspace is opened up for it.
fn watch_as_nobody(workspace: &Workspace, backend: &Backend, dir: &Path) -> Watching {
    use std::os::unix::fs::PermissionsExt;
    let open = |path: &Path, mode| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    open(workspace.dir.path(), 0o755);
    std::fs::create_dir_all(workspace.data_dir()).unwrap();
    open(&workspace.data_dir(), 0o777);
    let base = workspace.dropship(backend, "native");
    let mut command = Command::new("unshare");
    command.env_clear();
    for (key, value) in base.get_envs() {
        if let Some(value) = value {
            command.env(key, value);
        }
    }
    command.arg("--user").arg(base.get_program());
    command.args(["watch", "--json", "--stable-ms", STABLE_MS]).arg(dir);
    Watching::spawn(command)
}

fn user_namespaces_allowed() -> bool {
    Command::new("unshare").args(["--user", "--map-root-user", "true"]).status().is_ok_and(|s| s.success())
}

#[test]
fn an_unreadable_sub_folder_is_skipped_with_a_warning_and_the_rest_still_uploads() {
    if !user_namespaces_allowed() {
        dropship_system_tests::skip_or_fail_in_ci(
            "this machine does not allow unprivileged user namespaces (unshare --user)",
        );
        return;
    }
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let dir = watched_dir(&workspace);
    let locked = dir.join("locked");
    std::fs::create_dir_all(&locked).unwrap();
    std::fs::write(locked.join("secret.txt"), b"not for us").unwrap();
    let readable = dir.join("open.txt");
    std::fs::write(&readable, b"for everyone").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();

    let watching = watch_as_nobody(&workspace, &backend, &dir);
    watching.wait_for_stderr("skipped", Duration::from_secs(10));
    let line = watching.wait_uploaded(&readable, 1, Duration::from_secs(30)).remove(0);
    let (status, lines, stderr) = watching.terminate();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("locked") && stderr.contains("ermission denied"),
        "the warning names the folder and why: {stderr}"
    );
    assert_eq!(lines.len(), 1, "only the readable file: {lines:#?}");
    assert_landed_from_watch(s3, &workspace, &line, b"for everyone");
}

fn watch_with_inotify_limit(workspace: &Workspace, backend: &Backend, dir: &Path, limit: u32) -> Watching {
    let base = workspace.dropship(backend, "native");
    let mut command = Command::new("unshare");
    command.env_clear();
    for (key, value) in base.get_envs() {
        if let Some(value) = value {
            command.env(key, value);
        }
    }
    command
        .args(["--user", "--map-root-user", "sh", "-c"])
        .arg(format!("echo {limit} > /proc/sys/user/max_inotify_watches && exec \"$0\" \"$@\""))
        .arg(base.get_program())
        .args(["watch", "--json", "--stable-ms", STABLE_MS])
        .arg(dir);
    Watching::spawn(command)
}

#[test]
fn when_inotify_runs_out_of_watches_the_folder_is_polled_says_so_and_still_uploads() {
    if !user_namespaces_allowed() {
        dropship_system_tests::skip_or_fail_in_ci(
            "this machine does not allow unprivileged user namespaces (unshare --user)",
        );
        return;
    }
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let dir = watched_dir(&workspace);
    for i in 0..10 {
        std::fs::create_dir_all(dir.join(format!("day-{i}"))).unwrap();
    }
    let watching = watch_with_inotify_limit(&workspace, &backend, &dir, 4);
    watching.wait_for_stderr("polling ", Duration::from_secs(10));
    watching.wait_for_stderr("max_user_watches", Duration::from_secs(1));
    let path = dir.join("day-9/late.txt");
    std::fs::write(&path, b"seen by polling").unwrap();
    let line = watching.wait_uploaded(&path, 1, Duration::from_secs(30)).remove(0);
    let (status, lines, _) = watching.terminate();
    assert!(status.success());
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_landed_from_watch(s3, &workspace, &line, b"seen by polling");
}

#[test]
fn a_folder_with_a_key_prefix_puts_its_files_under_that_folder_in_the_bucket() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let dir = watched_dir(&workspace);
    let watching = Watching::start(&workspace, &backend, &dir, &["--key-prefix", "scans/../2026 / front desk"]);
    let path = dir.join("page 1.txt");
    std::fs::write(&path, b"scanned").unwrap();
    let line = watching.wait_uploaded(&path, 1, Duration::from_secs(30)).remove(0);
    let (status, _, _) = watching.terminate();
    assert!(status.success());
    let key = line["key"].as_str().unwrap();
    assert!(key.starts_with("uploads/scans/2026/front desk/"), "the key is in the folder, cleaned: {key}");
    assert!(key.ends_with("/page 1.txt"), "{key}");
    assert_landed_from_watch(s3, &workspace, &line, b"scanned");
    let records = backend.records();
    assert_eq!(records.iter().filter(|r| r["key"] == key).count(), 1, "the backend recorded it: {records:?}");
}

#[cfg(unix)]
#[test]
fn a_link_out_of_a_watched_folder_is_skipped_with_a_warning_and_a_link_inside_it_goes_up() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let dir = watched_dir(&workspace);
    let secret = pattern(3000, 43);
    let outside = workspace.dir.path().join("home/.ssh");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("id_ed25519"), &secret).unwrap();
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/real.txt"), b"inside the folder").unwrap();
    // One link there before the watch starts (found by the catch-up walk), one made while it
    // runs (found through an event), and a link to a sub-folder, which must not loop.
    std::os::unix::fs::symlink(outside.join("id_ed25519"), dir.join("before.pdf")).unwrap();
    std::os::unix::fs::symlink(&dir, dir.join("sub/loop")).unwrap();
    let watching = Watching::start(&workspace, &backend, &dir, &[]);
    std::os::unix::fs::symlink(outside.join("id_ed25519"), dir.join("report.pdf")).unwrap();
    std::os::unix::fs::symlink(dir.join("sub/real.txt"), dir.join("inside.txt")).unwrap();

    let timeout = Duration::from_secs(30);
    let inside = watching.wait_uploaded(&dir.join("inside.txt"), 1, timeout).remove(0);
    watching.wait_uploaded(&dir.join("sub/real.txt"), 1, timeout);
    watching.wait_for_stderr("report.pdf", timeout);
    std::thread::sleep(Duration::from_secs(2));
    let (status, lines, stderr) = watching.terminate();

    assert!(status.success(), "{status:?}\n{stderr}");
    assert_landed_from_watch(s3, &workspace, &inside, b"inside the folder");
    for name in ["before.pdf", "report.pdf"] {
        assert!(
            stderr.lines().any(|l| l.contains("warning: skipped") && l.contains(name) && l.contains("outside")),
            "a warning names {name} and says why: {stderr}"
        );
        assert!(
            lines.iter().all(|l| !l["path"].as_str().unwrap_or("").ends_with(name)),
            "{name} never goes up: {lines:?}"
        );
    }
    assert_eq!(lines.len(), 2, "the inside link and the real file, once each: {lines:#?}");
    for record in backend.records() {
        let key = record["key"].as_str().unwrap();
        assert!(s3.get_object(key).unwrap() != secret, "the secret is nowhere in the bucket ({key})");
    }
}

#[cfg(unix)]
#[test]
fn a_file_whose_name_is_not_utf8_goes_up_once_and_is_known_again_after_a_restart() {
    use std::os::unix::ffi::OsStrExt;
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let dir = watched_dir(&workspace);
    let odd = dir.join(std::ffi::OsStr::from_bytes(b"scan-\xff\xfe.pdf"));
    std::fs::write(&odd, b"latin-1 name").unwrap();
    let shown = odd.to_string_lossy().into_owned();
    let uploaded_odd = |watching: &Watching| {
        watching.lines().into_iter().find(|l| l["path"].as_str() == Some(shown.as_str()) && l["status"] == "uploaded")
    };

    let first = Watching::start(&workspace, &backend, &dir, &[]);
    let line = wait_for("the non-UTF-8 file to go up", Duration::from_secs(30), || uploaded_odd(&first))
        .unwrap_or_else(|e| panic!("{e}; lines: {:?}", first.lines()));
    let (status, _, stderr) = first.terminate();
    assert!(status.success(), "{stderr}");
    assert_landed_from_watch(s3, &workspace, &line, b"latin-1 name");

    // Restarted: the catch-up must find the file in the index by its real name, not send it again.
    let later = dir.join("later.txt");
    std::fs::write(&later, b"later").unwrap();
    let second = Watching::start(&workspace, &backend, &dir, &[]);
    second.wait_uploaded(&later, 1, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let (status, lines, stderr) = second.terminate();
    assert!(status.success(), "{stderr}");
    assert_eq!(lines.len(), 1, "only the new file; the non-UTF-8 one is known: {lines:#?}");
    assert_eq!(backend.records().len(), 2, "each file recorded once");
}
