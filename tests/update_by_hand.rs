//! The update path with real packages, run by `scripts/try-update` (as root; ignored in the
//! suite, since it installs packages into the machine): version A of the app, installed from
//! its .deb, starts a large upload, finds version B through the backend's `--updates-dir`,
//! downloads and verifies it, and on *Restart to update* installs it and restarts into it. B
//! keeps the settings and the history, and finishes the upload A had started from its parts.

mod gui;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use dropship_system_tests::cli::json_lines;
use dropship_testkit::{target_bin, BackendOptions, Nginx, ServerCertificate};
use gui::*;

const INSTALLED: &str = "/usr/bin/dropship-desktop";

fn installed_version() -> String {
    let output = std::process::Command::new("dpkg-query").args(["-W", "-f=${Version}", "dropship"]).output().unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The app processes running with `data_dir` as their data folder, by their environment: A's
/// executable reads "… (deleted)" once dpkg has replaced it, B's is the installed file.
fn apps_for(data_dir: &Path) -> Vec<i32> {
    let wanted = format!("DROPSHIP_DATA_DIR={}", data_dir.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            exe.to_string_lossy().starts_with(INSTALLED) && environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes())
        })
        .collect()
}

/// Every log file of the data folder, one after the other.
fn logs(data_dir: &Path) -> String {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(data_dir.join("logs")).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    files.sort();
    files.iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect()
}

fn history(data_dir: &Path) -> Vec<serde_json::Value> {
    let output = std::process::Command::new(target_bin("dropship"))
        .args(["history", "--json", "--limit", "1000", "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    json_lines(&output)
}

#[test]
#[ignore = "run by scripts/try-update: installs the app's packages as root"]
fn version_a_updates_itself_to_b_and_b_keeps_settings_history_and_finishes_the_upload() {
    let updates = PathBuf::from(std::env::var("TRY_UPDATE_DIR").expect("TRY_UPDATE_DIR from scripts/try-update"));
    assert_eq!(installed_version(), "0.1.0", "scripts/try-update installs version A first");
    let options = BackendOptions {
        extra_args: vec!["--updates-dir".into(), updates.display().to_string()],
        ..Default::default()
    };
    let Scene { s3, backend, desktop, work, data_dir } = Scene::with_backend(options, serde_json::json!({}));
    // Release builds ask for updates over HTTPS only: the backend behind a TLS front, as an
    // organisation runs it, with a test CA the app is told to trust.
    let certificate = ServerCertificate::issue();
    let front = Nginx::tls_front(&backend.url, &certificate);
    // 96 MiB at 4 MB/s in three 32 MiB parts, one at a time: about 25 s, so the restart lands
    // mid-upload with a part done.
    write_settings(
        &data_dir,
        serde_json::json!({ "backend_url": front.url, "token": backend.token,
                            "transfer": { "bandwidth_limit": 4_000_000, "concurrency": 1,
                                          "part_size": 32 * 1024 * 1024 } }),
    );
    let env = [
        ("SSL_CERT_FILE", std::ffi::OsString::from(certificate.system_bundle_with_ca())),
        // What B does after the restart is read from its log.
        ("DROPSHIP_LOG", "info".into()),
    ];
    std::fs::write(data_dir.join("updates.json"), br#"{"check_automatically": false}"#).unwrap();
    seed_history(&data_dir);
    let big = work.path().join("site survey.mp4");
    let bytes: Vec<u8> = (0..96u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&big, &bytes).unwrap();

    // tauri-driver starts the installed copy, not the build (see gui::open_session).
    std::env::set_var("DROPSHIP_TEST_APP", INSTALLED);
    desktop
        .run_and_let_go(&data_dir, &env, async |client, display| {
            wait_for_history(client, 24).await?;
            drag_onto(client, display, &[big.as_path()], "[data-testid=drop-zone]").await?;
            let item = "[data-testid=upload-item][data-file-name=\"site survey.mp4\"][data-status=uploading]";
            wait_for_element(client, item).await?;
            // One part at a time: past 40 % the first 32 MiB part is in the bucket, and B must
            // not send it again.
            let bar = format!("{item} [role=progressbar]");
            poll(Duration::from_secs(60), "the first part to finish", || async {
                let element = client.find(fantoccini::Locator::Css(&bar)).await.ok()?;
                let now: u32 = element.attr("aria-valuenow").await.ok()??.parse().ok()?;
                (now >= 40).then_some(())
            })
            .await?;
            click(client, "[data-testid=nav-settings]").await?;
            let current = text_of(client, "[data-testid=update-current-version]").await?;
            if current != "0.1.0" {
                bail!("version A should say 0.1.0, not {current}");
            }
            click(client, "[data-testid=update-check]").await?;
            wait_for_element(client, "[data-testid=update-status][data-state=ready]").await?;
            let offered = text_of(client, "[data-testid=update-version]").await?;
            println!("version A offers {offered}, downloaded and verified; restarting to update");
            let a = apps_for(&data_dir);
            // The session ends with the process: the click's answer may never come.
            let _ = tokio::time::timeout(Duration::from_secs(5), click(client, "[data-testid=update-restart]")).await;
            // Until A has exited (after installing) and B runs: stopping tauri-driver stops what
            // runs under it, A included, and B is A's child until A exits.
            poll(Duration::from_secs(60), "A to exit and B to start", || async {
                let running = apps_for(&data_dir);
                (!running.is_empty() && running.iter().all(|pid| !a.contains(pid))).then_some(())
            })
            .await?;
            poll(Duration::from_secs(60), "B to open the engine", || async {
                (logs(&data_dir).matches("engine opened").count() >= 2).then_some(())
            })
            .await?;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e:#}"));

    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let uploaded = loop {
        let entries = history(&data_dir);
        let done = entries.iter().find(|e| e["file_name"] == "site survey.mp4" && e["status"] == "uploaded").cloned();
        if let Some(entry) = done {
            break entry;
        }
        if std::time::Instant::now() > deadline {
            let log = logs(&data_dir);
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            panic!(
                "B did not finish the upload ({:?}); installed {}, running {:?}; the logs end:\n{}",
                entries.first().map(|e| e["status"].clone()),
                installed_version(),
                apps_for(&data_dir),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(installed_version(), "0.1.1", "B is installed");
    let running = apps_for(&data_dir);
    println!("B is running as {running:?}; the upload finished: {}", uploaded["key"]);
    assert!(!running.is_empty(), "the app restarted into B");
    let key = uploaded["key"].as_str().unwrap();
    assert_eq!(s3.get_object(key).as_deref(), Some(&bytes[..]), "S3 holds the file byte for byte");
    assert_eq!(history(&data_dir).len(), 25, "the 24 earlier uploads are still in the history");
    let settings = read_settings(&data_dir);
    assert_eq!(settings["backend_url"], front.url, "the settings are kept");
    assert_eq!(backend.records().len(), 1, "one completion report for the one upload");
    let log = logs(&data_dir);
    let resumed = log.lines().find(|l| l.contains("resuming a multipart upload")).unwrap_or_default();
    println!("B: {}", resumed.split("INFO").last().unwrap_or_default().trim());
    assert!(
        resumed.contains("finished=1") || resumed.contains("finished=2"),
        "B carried on from A's finished parts:\n{log}"
    );
    for pid in running {
        // Started by the app's own restart, on our behalf: ours to stop.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}
