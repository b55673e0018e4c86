//! Driving the `dropship` CLI in system tests, and checking that what it says it uploaded is
//! really in the bucket, in the history and in the backend's records.

use std::path::PathBuf;
use std::process::{Command, Output};

use dropship_testkit::{target_bin, Backend, S3Server};
use serde_json::Value;

/// A scratch folder with files to upload and its own data directory.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    /// Every bearer token handed to `dropship` through [`Workspace::dropship`], so the end-state
    /// checks can look for it where it must never be written or printed.
    pub(crate) tokens: std::sync::Mutex<Vec<String>>,
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace { dir: tempfile::tempdir().expect("temp dir"), tokens: Default::default() }
    }

    pub fn file(&self, relative: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join("files").join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn dropship(&self, backend: &Backend, api: &str) -> Command {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if !tokens.contains(&backend.token) {
            tokens.push(backend.token.clone());
        }
        let mut command = Command::new(target_bin("dropship"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DROPSHIP_BACKEND_URL", &backend.url)
            .env("DROPSHIP_TOKEN", &backend.token)
            .env("DROPSHIP_API", api)
            .env("DROPSHIP_DATA_DIR", self.data_dir());
        command
    }

    /// The bearer tokens this workspace has given to `dropship` so far.
    pub fn tokens(&self) -> Vec<String> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn history(&self) -> Vec<Value> {
        let output = Command::new(target_bin("dropship"))
            .args(["history", "--json", "--limit", "10000", "--data-dir"])
            .arg(self.data_dir())
            .output()
            .expect("run dropship history");
        assert!(output.status.success(), "history should always work: {}", String::from_utf8_lossy(&output.stderr));
        json_lines(&output)
    }
}

pub fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
        .collect()
}

pub fn run(mut command: Command) -> Output {
    let output = command.output().expect("run dropship");
    eprintln!("stderr: {}", String::from_utf8_lossy(&output.stderr));
    output
}

/// Deterministic, incompressible-looking bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ seed as u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Every file has an `uploaded` line from the CLI, is in S3 byte-identical, and is in the
/// history as uploaded from the CLI with the same key and a signature-free object URL. Returns
/// each file's line.
pub fn assert_in_bucket_and_history<'a>(
    s3: &S3Server,
    workspace: &Workspace,
    lines: &'a [Value],
    files: &[(PathBuf, Vec<u8>)],
) -> Vec<&'a Value> {
    let history = workspace.history();
    let mut found = Vec::with_capacity(files.len());
    for (path, bytes) in files {
        let line = lines
            .iter()
            .find(|l| l["path"].as_str() == Some(path.to_str().unwrap()))
            .unwrap_or_else(|| panic!("the CLI should print a line for {}", path.display()));
        assert_eq!(line["status"], "uploaded", "{} should upload: {line}", path.display());
        assert_eq!(line["size"], bytes.len() as u64);
        let key = line["key"].as_str().expect("an uploaded file has a key");
        let stored = s3.get_object(key).unwrap_or_else(|| panic!("{key} should be in the bucket"));
        assert!(stored == *bytes, "{key} should be byte-identical ({} vs {} bytes)", stored.len(), bytes.len());

        let row = history.iter().find(|h| h["upload_id"] == line["upload_id"]).expect("a history row per upload");
        assert_eq!(row["status"], "uploaded", "{row}");
        assert_eq!(row["key"], key, "history and CLI agree on the key");
        assert_eq!(row["object_url"], line["object_url"], "history and CLI agree on the object URL");
        assert_eq!(row["source"], "cli");
        assert!(row["object_url"].as_str().is_some_and(|u| !u.contains('?')), "no signature in history: {row}");
        found.push(line);
    }
    found
}

/// [`assert_in_bucket_and_history`], and the backend recorded each file exactly once with the
/// same key and size.
pub fn assert_landed(
    s3: &S3Server,
    backend: &Backend,
    workspace: &Workspace,
    lines: &[Value],
    files: &[(PathBuf, Vec<u8>)],
) {
    let records = backend.records();
    for (line, (_, bytes)) in assert_in_bucket_and_history(s3, workspace, lines, files).into_iter().zip(files) {
        let key = &line["key"];
        let matching: Vec<_> = records.iter().filter(|r| r["key"] == *key).collect();
        assert_eq!(matching.len(), 1, "the backend should record {key} exactly once: {records:?}");
        assert_eq!(matching[0]["size"], bytes.len() as u64, "the backend's size agrees");
    }
}

/// A setup problem: exit 2, one line on stderr that mentions each of `must_mention`, nothing
/// on stdout.
pub fn assert_one_clear_line(output: &Output, must_mention: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "a setup problem exits 2: {stderr}");
    let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one line saying what to fix: {stderr}");
    for word in must_mention {
        assert!(lines[0].contains(word), "the line should mention {word:?}: {}", lines[0]);
    }
    assert!(String::from_utf8_lossy(&output.stdout).trim().is_empty(), "no per-file noise without --json");
}
