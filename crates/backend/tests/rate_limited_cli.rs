//! The Dropship CLI against a rate-limited backend: 429 answers are waited out for as long as
//! the backend's Retry-After says, the CLI says that it waited, and every file lands.
//! Needs the CLI built next to the backend: `cargo build -p dropship-cli`.

mod common;

use std::process::{Command, Stdio};

use common::*;
use dropship_testkit::{target_bin, BackendOptions};
use serde_json::Value;

const RUNS: usize = 5;
const FILES_PER_RUN: usize = 10;

#[test]
fn fifty_files_in_five_concurrent_cli_runs_all_land_through_a_2_per_second_rate_limit() {
    let backend = start_backend_with(BackendOptions {
        extra_args: vec!["--rate-limit".into(), "2:2".into()],
        ..Default::default()
    });
    let dir = tempfile::tempdir().expect("a temp dir");
    let runs: Vec<_> = (0..RUNS)
        .map(|run| {
            let files = dir.path().join(format!("files-{run}"));
            std::fs::create_dir_all(&files).expect("a folder of files");
            for n in 0..FILES_PER_RUN {
                std::fs::write(files.join(format!("f{n}.txt")), format!("run {run} file {n}")).expect("a file");
            }
            Command::new(target_bin("dropship"))
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("DROPSHIP_LOG", "dropship_core=info")
                .args(["upload", "--json", "--backend", &backend.url, "--token", &backend.token, "--data-dir"])
                .arg(dir.path().join(format!("data-{run}")))
                .arg(&files)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("the CLI starts")
        })
        .collect();
    let outputs: Vec<_> = runs.into_iter().map(|child| child.wait_with_output().expect("the CLI ends")).collect();

    let mut uploaded = 0;
    let mut told_of_a_wait = false;
    for (run, output) in outputs.iter().enumerate() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "run {run} uploads every file despite the 429s: {stderr}");
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let outcome: Value = serde_json::from_str(line).expect("one JSON object per line");
            assert_eq!(outcome["status"], "uploaded", "run {run}: {outcome}");
            uploaded += 1;
        }
        told_of_a_wait |= stderr.contains("HTTP 429") && stderr.contains("waiting");
    }
    assert_eq!(uploaded, RUNS * FILES_PER_RUN, "all fifty files land");
    assert!(told_of_a_wait, "at least one run says it waited as the backend asked");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(backend.records().len(), RUNS * FILES_PER_RUN, "and all fifty are recorded");
}
