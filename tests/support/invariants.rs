//! The checks every fault scenario ends with, in one place: whatever went wrong on the way,
//! every file is in S3 byte-identical, the history holds it once as uploaded, the backend
//! recorded it exactly once, no signature was written down, and what was sent twice stays
//! within a stated bound.
//!
//! It reads the end state only — the bucket, the data dir's history, the backend's records and
//! the proxy's counters — so it works the same after one clean run, after retries, and after a
//! `kill -9` and a second run over the same data dir. For a crash scenario, keep one proxy in
//! front of S3 for both runs, so its counters cover both, and bound the re-sent bytes by what
//! could have been in flight when the client died:
//!
//! ```ignore
//! let s3_proxy = FaultProxy::start(Vec::new());
//! // first run killed with SIGKILL mid-upload, then `dropship upload` (or `resume`) again …
//! let in_flight = concurrency as u64 * part_size;
//! assert_nothing_lost(s3, &backend, &workspace, Expected::files(&files).through(&s3_proxy, in_flight).output(&texts));
//! ```

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use dropship_testkit::{Backend, FaultProxy, S3Server};
use serde_json::Value;

use crate::cli::Workspace;

/// What a scenario expects at the end.
pub struct Expected<'a> {
    /// Every file that must have landed, with the bytes it must have in S3.
    pub files: &'a [(PathBuf, Vec<u8>)],
    /// The bytes S3 may receive beyond one copy of each file (parts or files in flight when a
    /// fault hit), checked against `proxy`'s counters when both are given.
    pub max_resent_bytes: Option<u64>,
    /// The proxy between the client and S3, whose counters show what was sent.
    pub s3_proxy: Option<&'a FaultProxy>,
    /// Text the client printed (stdout and stderr of every run), scanned for signatures.
    pub client_output: &'a [String],
}

impl<'a> Expected<'a> {
    pub fn files(files: &'a [(PathBuf, Vec<u8>)]) -> Self {
        Expected { files, max_resent_bytes: None, s3_proxy: None, client_output: &[] }
    }

    /// Bounds the bytes re-sent through `proxy` to `max_resent_bytes`.
    pub fn through(mut self, proxy: &'a FaultProxy, max_resent_bytes: u64) -> Self {
        self.s3_proxy = Some(proxy);
        self.max_resent_bytes = Some(max_resent_bytes);
        self
    }

    pub fn output(mut self, client_output: &'a [String]) -> Self {
        self.client_output = client_output;
        self
    }
}

/// What the checks measured, for scenarios that assert more or print figures.
#[derive(Debug, Default)]
pub struct Landed {
    /// Key of each expected file, in the order given.
    pub keys: Vec<String>,
    /// Body bytes that went to S3 through the proxy (0 without one).
    pub bytes_sent: u64,
    /// Of those, the bytes beyond one copy of every file.
    pub bytes_resent: u64,
}

/// Runs every check and panics with a message naming the file and the broken promise.
pub fn assert_nothing_lost(s3: &S3Server, backend: &Backend, workspace: &Workspace, expected: Expected<'_>) -> Landed {
    let history = full_history(workspace);
    // Straight from the backend's database: the API pages at 1,000 records, a soak has more.
    let records = backend.all_records();

    // No history row twice.
    let mut seen = HashSet::new();
    let mut rows_by_path: HashMap<&str, Vec<&Value>> = HashMap::new();
    for row in &history {
        let id = row["upload_id"].as_str().expect("every history row has an upload id");
        assert!(seen.insert(id), "upload id {id} appears twice in the history");
        rows_by_path.entry(row["path"].as_str().unwrap_or_default()).or_default().push(row);
    }
    let mut records_by_key: HashMap<&str, Vec<&Value>> = HashMap::new();
    for record in &records {
        records_by_key.entry(record["key"].as_str().unwrap_or_default()).or_default().push(record);
    }

    // Each expected file: one uploaded row, its object byte-identical, one record.
    let mut keys = Vec::with_capacity(expected.files.len());
    let mut uploaded_keys = HashSet::new();
    for (path, bytes) in expected.files {
        let shown = path.to_str().expect("test paths are UTF-8");
        let rows = rows_by_path.get(shown).cloned().unwrap_or_default();
        let uploaded: Vec<&Value> = rows.iter().copied().filter(|h| h["status"] == "uploaded").collect();
        assert_eq!(uploaded.len(), 1, "{shown} should be in the history as uploaded exactly once; its rows: {rows:?}");
        let row = uploaded[0];
        let key = row["key"].as_str().unwrap_or_else(|| panic!("an uploaded row has a key: {row}")).to_owned();
        assert!(uploaded_keys.insert(key.clone()), "two files were uploaded to the same key {key}");
        let stored = s3.get_object(&key).unwrap_or_else(|| panic!("{shown} should be in the bucket at {key}"));
        assert!(
            stored == *bytes,
            "{shown} should be byte-identical in S3 at {key} ({} bytes stored, {} expected)",
            stored.len(),
            bytes.len()
        );
        assert_eq!(row["size"], bytes.len() as u64, "the history has {shown}'s size");
        assert!(row["reported_at"].is_string(), "an uploaded row says when it was reported: {row}");

        let matching = records_by_key.get(key.as_str()).cloned().unwrap_or_default();
        assert_eq!(matching.len(), 1, "the backend should record {key} ({shown}) exactly once: {matching:?}");
        assert_eq!(matching[0]["size"], bytes.len() as u64, "the backend has {shown}'s size");
        if let Some(id) = matching[0]["client_upload_id"].as_str() {
            assert_eq!(Some(id), row["upload_id"].as_str(), "the record carries the history's upload id");
        }
        keys.push(key);
    }

    // No record the client does not know as uploaded (a report recorded but thought lost), and
    // no client upload id recorded twice.
    let mut record_ids = HashSet::new();
    for record in &records {
        let key = record["key"].as_str().unwrap_or_default();
        assert!(
            uploaded_keys.contains(key),
            "the backend recorded {key}, which the client does not have as an uploaded file: {record}"
        );
        if let Some(id) = record["client_upload_id"].as_str() {
            assert!(record_ids.insert(id.to_owned()), "client upload id {id} recorded twice");
        }
    }

    assert_no_signature_written(workspace, expected.client_output);

    let mut landed = Landed { keys, ..Landed::default() };
    if let Some(proxy) = expected.s3_proxy {
        let total: u64 = expected.files.iter().map(|(_, b)| b.len() as u64).sum();
        // S3 requests carry the bucket in the path; backend requests start with /api.
        landed.bytes_sent = proxy.bytes_forwarded("PUT", &format!("/{}/", s3.bucket))
            + proxy.bytes_forwarded("POST", &format!("/{}", s3.bucket));
        landed.bytes_resent = landed.bytes_sent.saturating_sub(total);
        if let Some(limit) = expected.max_resent_bytes {
            assert!(
                landed.bytes_resent <= limit,
                "{} bytes were sent to S3 again, more than the {limit} allowed (sent {} for {total} bytes of files)",
                landed.bytes_resent,
                landed.bytes_sent
            );
        }
    }
    landed
}

/// Every history row of the workspace's data dir (the CLI's `--limit` goes to 100,000).
pub fn full_history(workspace: &Workspace) -> Vec<Value> {
    let output = std::process::Command::new(dropship_testkit::target_bin("dropship"))
        .args(["history", "--json", "--limit", "100000", "--data-dir"])
        .arg(workspace.data_dir())
        .output()
        .expect("run dropship history");
    assert!(output.status.success(), "history should always work: {}", String::from_utf8_lossy(&output.stderr));
    crate::cli::json_lines(&output)
}

/// Neither the files of the data dir (every file under it, at any depth: the history database
/// with its WAL and shared memory, the outbox, the settings) nor the client's output hold a
/// presigned URL's signature (`X-Amz-Signature`, or a `Signature=` of a header-signed or
/// older-style URL) or a bearer token the workspace handed to `dropship`. Files are read as
/// bytes, so a secret inside a SQLite page is found as well as one in a text file. The one place
/// a token may be is `settings.json`, where a person without a keyring keeps it by design.
pub fn assert_no_signature_written(workspace: &Workspace, client_output: &[String]) {
    let tokens = workspace.tokens();
    let secrets = |in_settings: bool| {
        let mut secrets: Vec<(String, Vec<u8>)> = vec![
            ("a presigned URL's signature".into(), b"x-amz-signature".to_vec()),
            ("a signature (`Signature=`)".into(), b"signature=".to_vec()),
        ];
        if !in_settings {
            // Tokens are compared as written, not lowercased: they are case-sensitive.
            secrets.extend(tokens.iter().map(|t| ("the bearer token".to_owned(), t.as_bytes().to_vec())));
        }
        secrets
    };
    let contains = |haystack: &[u8], needle: &[u8], fold: bool| {
        !needle.is_empty()
            && haystack.windows(needle.len()).any(|w| if fold { w.eq_ignore_ascii_case(needle) } else { w == needle })
    };
    let data_dir = workspace.data_dir();
    let mut folders = vec![data_dir.clone()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                folders.push(path);
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let bytes =
                std::fs::read(&path).unwrap_or_else(|e| panic!("could not read {} to check it: {e}", path.display()));
            let in_settings = path.parent() == Some(data_dir.as_path()) && entry.file_name() == "settings.json";
            for (what, needle) in secrets(in_settings) {
                let is_token = what == "the bearer token";
                assert!(!contains(&bytes, &needle, !is_token), "{} holds {what}", path.display());
            }
        }
    }
    for (i, text) in client_output.iter().enumerate() {
        for (what, needle) in secrets(false) {
            let is_token = what == "the bearer token";
            assert!(!contains(text.as_bytes(), &needle, !is_token), "client output #{i} shows {what}:\n{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fails(check: impl FnOnce() + std::panic::UnwindSafe) -> bool {
        std::panic::catch_unwind(check).is_err()
    }

    #[test]
    fn a_signature_or_token_anywhere_in_the_data_dir_or_the_output_is_found() {
        let workspace = Workspace::new();
        let backend_token = "test-0123456789abcdef";
        workspace.tokens.lock().unwrap().push(backend_token.to_owned());
        let nested = workspace.data_dir().join("outbox/2026");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(workspace.data_dir().join("settings.json"), format!("{{\"token\":\"{backend_token}\"}}"))
            .unwrap();
        assert!(
            !fails(|| assert_no_signature_written(&workspace, &["all fine".into()])),
            "a token in settings.json is allowed"
        );

        let wal = nested.join("history.sqlite-wal");
        std::fs::write(&wal, b"\0\x01page https://s3/k?X-Amz-Signature=ab12\0").unwrap();
        assert!(fails(|| assert_no_signature_written(&workspace, &[])), "a signature in a nested WAL file is found");
        std::fs::write(&wal, b"Authorization: AWS4-HMAC-SHA256 Credential=x, Signature=ab12").unwrap();
        assert!(fails(|| assert_no_signature_written(&workspace, &[])), "a header signature is found");
        std::fs::write(&wal, format!("\0bearer {backend_token}\0")).unwrap();
        assert!(fails(|| assert_no_signature_written(&workspace, &[])), "the token in any other file is found");
        std::fs::remove_file(&wal).unwrap();

        let said = format!("sending with Authorization: Bearer {backend_token}");
        assert!(fails(|| assert_no_signature_written(&workspace, &[said])), "the token in the output is found");
    }
}
