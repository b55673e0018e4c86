//! The window staff use, end to end in a real WebKitGTK window under Xvfb, driven through
//! tauri-driver: files and folders dragged in with the mouse, the queue's controls, a failure
//! explained and retried, settings with the token in a real Secret Service (gnome-keyring on a
//! private session bus), the question asked when there is no keyring, one notification per
//! batch (recorded by a notification server on that bus), and the history's search and filters.
//!
//! Needs what gui_drag_drop needs, plus gnome-keyring and secret-tool (scripts/install-deps.sh):
//!
//!     cargo build -p dropship-desktop -p dropship-backend
//!     cargo test -p dropship-system-tests --test gui_window
//!
//! `DROPSHIP_SCREENSHOTS=1` also saves the README's screenshots under docs/.

mod gui;

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use dropship_core::store::{NewUpload, Store};
use dropship_core::Source;
use dropship_testkit::{Backend, S3Server};
use gui::*;

fn bytes(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32).map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

fn item(name: &str) -> String {
    format!("[data-testid=upload-item][data-file-name=\"{name}\"]")
}

#[test]
fn files_and_a_folder_dragged_in_at_once_are_uploaded_listed_in_history_and_announced_once() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let desktop = Desktop::with_keyring();
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    write_settings(&data_dir, serde_json::json!({ "backend_url": backend.url, "token": backend.token }));

    let files = work.path().join("files");
    std::fs::create_dir_all(files.join("photos/2024")).unwrap();
    let contents = [
        ("notes.txt", files.join("notes.txt"), bytes(2_000, 1)),
        ("scan.pdf", files.join("scan.pdf"), bytes(250_000, 2)),
        ("cover.jpg", files.join("photos/cover.jpg"), bytes(90_000, 3)),
        ("beach.jpg", files.join("photos/2024/beach.jpg"), bytes(120_000, 4)),
    ];
    for (_, path, data) in &contents {
        std::fs::write(path, data).unwrap();
    }

    desktop
        .run(&data_dir, async |client, display| {
            wait_for_element(client, "[data-testid=history-empty]").await?;
            let dragged = [files.join("notes.txt"), files.join("scan.pdf"), files.join("photos")];
            let dragged: Vec<&Path> = dragged.iter().map(|p| p.as_path()).collect();
            drag_onto(client, display, &dragged, "[data-testid=drop-zone]").await?;
            for (name, _, _) in &contents {
                let done = format!("{}[data-status=uploaded]", item(name));
                wait_for_element(client, &done).await.with_context(|| format!("{name} should be uploaded"))?;
            }
            wait_for_count(client, "[data-testid=history-item][data-status=uploaded]", contents.len())
                .await
                .context("the history should list all four uploads")?;
            screenshot(display, "uploads").await?;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("the dragged files and folder did not all go up: {e:#}"));

    for (name, _, data) in &contents {
        let records: Vec<_> = backend.records().into_iter().filter(|r| r["file_name"] == *name).collect();
        assert_eq!(records.len(), 1, "the backend should hold one record for {name}");
        let key = records[0]["key"].as_str().unwrap();
        assert_eq!(s3.get_object(key).as_deref(), Some(&data[..]), "S3 should hold {name} byte for byte");
    }
    // The batch's notification goes out when the batch ends, after every file in it. The app
    // shows notifications in the order of the engine's events, each delivered before the next,
    // so once the batch's own one is there, any that the files had caused are there too.
    let batch_done = dropship_system_tests::wait_for("the batch's notification", Duration::from_secs(30), || {
        let shown = desktop.session().notifications();
        shown.iter().any(|(_, body)| body == "4 files uploaded.").then_some(())
    });
    let shown = desktop.session().notifications();
    assert!(batch_done.is_ok(), "a notification should count the batch's files (\"4 files uploaded.\"): {shown:?}");
    assert_eq!(shown.len(), 1, "one notification for the one batch, not one per file: {shown:?}");
}

#[test]
fn a_file_refused_for_a_wrong_token_is_explained_and_uploads_on_retry_after_the_token_is_fixed_in_the_keyring() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let desktop = Desktop::with_keyring();
    let keyring = desktop.session();
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    // As an older Dropship left it: the token in settings.json.
    write_settings(&data_dir, serde_json::json!({ "backend_url": backend.url, "token": "a-wrong-token" }));
    let file = work.path().join("quarterly report.xlsx");
    std::fs::write(&file, bytes(40_000, 9)).unwrap();

    desktop
        .run(&data_dir, async |client, display| {
            wait_for_element(client, "[data-testid=uploads-view]").await?;
            drag_onto(client, display, &[&file], "[data-testid=drop-zone]").await?;
            let failed = format!("{}[data-status=failed]", item("quarterly report.xlsx"));
            wait_for_element(client, &failed).await.context("the upload should fail with the wrong token")?;
            let code = wait_for_element(client, &format!("{failed} [data-testid=upload-error]"))
                .await?
                .attr("data-code")
                .await?
                .unwrap_or_default();
            let message = text_of(client, &format!("{failed} [data-testid=upload-error]")).await?;
            if code != "unauthorized" || !message.contains("Settings") {
                bail!("the failure should say the token was refused and where to fix it: {code} {message:?}");
            }
            click(client, &format!("{failed} [data-testid=upload-details-toggle]")).await?;
            let details = text_of(client, &format!("{failed} [data-testid=upload-details]")).await?;
            if !details.contains("unauthorized") || !details.contains("quarterly report.xlsx") {
                bail!("the details should show the code and the file: {details:?}");
            }
            screenshot(display, "failure").await?;

            click(client, "[data-testid=nav-settings]").await?;
            type_into(client, "[data-testid=settings-token]", &backend.token).await?;
            click(client, "[data-testid=settings-save]").await?;
            let result = wait_for_element(client, "[data-testid=settings-result]").await?;
            if result.attr("data-result").await?.as_deref() != Some("ok") {
                bail!("saving the right token should succeed: {}", result.text().await?);
            }
            wait_for_element(client, "[data-testid=token-storage][data-storage=keyring]").await?;
            screenshot(display, "settings").await?;

            click(client, "[data-testid=nav-uploads]").await?;
            click(client, &format!("{failed} [data-testid=retry-upload]")).await?;
            let uploaded = format!("{}[data-status=uploaded]", item("quarterly report.xlsx"));
            wait_for_element(client, &uploaded).await.context("the retried upload should go through")?;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("the failure was not explained or the retry did not work: {e:#}"));

    let saved = read_settings(&data_dir);
    assert!(saved.get("token").is_none_or(|t| t == ""), "no token may stay in settings.json: {saved}");
    assert_eq!(
        keyring.stored_token(&data_dir).as_deref(),
        Some(backend.token.as_str()),
        "the Secret Service should hold the token typed in"
    );
    assert_eq!(backend.records().len(), 1, "the retry should have been recorded once");

    // A restart finds the token in the keyring: the form shows it and the connection works.
    desktop
        .run(&data_dir, async |client, _| {
            click(client, "[data-testid=nav-settings]").await?;
            wait_for_element(client, "[data-testid=token-storage][data-token-set=true]")
                .await
                .context("after a restart the window should know a token is saved")?;
            let field = wait_for_element(client, "[data-testid=settings-token]").await?;
            if field.prop("value").await?.unwrap_or_default() != "" || client.source().await?.contains(&backend.token) {
                bail!("the saved token must never reach the page");
            }
            click(client, "[data-testid=settings-test]").await?;
            let result = wait_for_element(client, "[data-testid=settings-result]").await?;
            match result.attr("data-result").await?.as_deref() {
                Some("ok") => Ok(()),
                _ => bail!("the connection test should pass: {}", result.text().await?),
            }
        })
        .unwrap_or_else(|e| panic!("the settings did not come back after a restart: {e:#}"));
}

#[test]
fn without_a_keyring_the_window_asks_before_keeping_the_token_in_a_file() {
    let backend = Backend::start(S3Server::shared());
    let desktop = Desktop::without_keyring();
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");

    desktop
        .run(&data_dir, async |client, display| {
            wait_for_element(client, "[data-testid=welcome]").await?;
            screenshot(display, "welcome").await?;
            type_into(client, "[data-testid=settings-backend-url]", &backend.url).await?;
            type_into(client, "[data-testid=settings-token]", &backend.token).await?;
            click(client, "[data-testid=settings-save]").await?;
            let ask = wait_for_element(client, "[data-testid=keyring-ask]").await.context("the window should ask")?;
            let text = ask.prop("textContent").await?.unwrap_or_default();
            if !text.contains("keyring") {
                bail!("the question should say there is no keyring: {text:?}");
            }
            if data_dir.join("settings.json").exists() {
                bail!("nothing may be saved before the person answers");
            }
            click(client, "[data-testid=keyring-ask-file]").await?;
            wait_for_element(client, "[data-testid=uploads-view]").await.context("agreeing should save and go on")?;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("the window did not ask before the file fallback: {e:#}"));

    let saved = read_settings(&data_dir);
    assert_eq!(saved["token"], backend.token.as_str(), "with consent, the token is in the file");
    assert_eq!(saved["token_storage"], "file", "and the file says so, so later saves do not ask again");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data_dir.join("settings.json")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a file holding the token is readable by its owner only");
    }
}

#[test]
fn uploads_are_paused_resumed_cancelled_and_retried_from_the_window() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let desktop = Desktop::without_keyring();
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    // 200 kB/s for both together, so there is time to press the buttons.
    let transfer = serde_json::json!({ "concurrency": 2, "bandwidth_limit": 200_000 });
    write_settings(
        &data_dir,
        serde_json::json!({ "backend_url": backend.url, "token": backend.token, "token_storage": "file", "transfer": transfer }),
    );
    let first = work.path().join("first.bin");
    let second = work.path().join("second.bin");
    std::fs::write(&first, bytes(1_200_000, 5)).unwrap();
    std::fs::write(&second, bytes(600_000, 6)).unwrap();

    desktop
        .run(&data_dir, async |client, display| {
            wait_for_element(client, "[data-testid=uploads-view]").await?;
            drag_onto(client, display, &[&first, &second], "[data-testid=drop-zone]").await?;
            wait_for_element(client, "[data-testid=uploads-overall]").await?;

            let a = item("first.bin");
            let b = item("second.bin");
            // Pause one and cancel the other before either can finish.
            click(client, &format!("{a} [data-testid=pause-upload]")).await?;
            wait_for_element(client, &format!("{a}[data-status=paused]")).await.context("pausing shows paused")?;
            click(client, &format!("{b} [data-testid=cancel-upload]")).await?;
            let cancelled = format!("{b}[data-status=failed]");
            wait_for_element(client, &cancelled).await.context("cancelling shows the upload as stopped")?;
            let code = wait_for_element(client, &format!("{cancelled} [data-testid=upload-error]"))
                .await?
                .attr("data-code")
                .await?;
            if code.as_deref() != Some("cancelled") {
                bail!("a cancelled upload should say so, not {code:?}");
            }
            screenshot(display, "queue").await?;

            click(client, &format!("{a} [data-testid=resume-upload]")).await?;
            wait_for_element(client, &format!("{a}[data-status=uploaded]")).await.context("resumed, it finishes")?;
            click(client, &format!("{cancelled} [data-testid=retry-upload]")).await?;
            wait_for_element(client, &format!("{b}[data-status=uploaded]")).await.context("retried, it finishes")?;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("the queue's controls did not work: {e:#}"));

    let names: Vec<String> =
        backend.records().iter().map(|r| r["file_name"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(names.len(), 2, "each file recorded once, the cancelled one after its retry: {names:?}");
}

#[test]
fn history_search_and_filters_find_uploads_by_name_status_source_and_date() {
    let backend = Backend::start(S3Server::shared());
    let desktop = Desktop::without_keyring();
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    write_settings(
        &data_dir,
        serde_json::json!({ "backend_url": backend.url, "token": backend.token, "token_storage": "file" }),
    );
    seed_history(&data_dir);

    desktop
        .run(&data_dir, async |client, display| {
            wait_for_history(client, 24).await.context("the seeded history should be listed")?;
            screenshot(display, "history").await?;

            type_into(client, "[data-testid=history-search]", "invoice").await?;
            wait_for_history(client, 8).await.context("searching by name")?;
            // One contract failed before it had a key.
            type_into(client, "[data-testid=history-search]", "uploads/2026/contract").await?;
            wait_for_history(client, 7).await.context("searching by key")?;
            set_value(client, "[data-testid=history-search]", "").await?;
            wait_for_history(client, 24).await?;

            select(client, "[data-testid=history-status]", "failed").await?;
            wait_for_count(client, "[data-testid=history-item][data-status=failed]", 4).await?;
            wait_for_history(client, 4).await.context("filtering by status")?;
            select(client, "[data-testid=history-status]", "").await?;
            select(client, "[data-testid=history-source]", "watch").await?;
            wait_for_history(client, 8).await.context("filtering by source")?;
            select(client, "[data-testid=history-source]", "").await?;
            wait_for_history(client, 24).await?;

            // Everything was uploaded today: from tomorrow on there is nothing, from today all.
            let tomorrow = client.execute(
                "const d = new Date(); d.setDate(d.getDate() + 1); return d.toLocaleDateString('sv');",
                vec![],
            );
            let tomorrow = tomorrow.await?.as_str().unwrap_or_default().to_owned();
            set_value(client, "[data-testid=history-since]", &tomorrow).await?;
            wait_for_element(client, "[data-testid=history-empty]").await.context("filtering by date")?;
            let today = client.execute("return new Date().toLocaleDateString('sv');", vec![]).await?;
            set_value(client, "[data-testid=history-since]", today.as_str().unwrap_or_default()).await?;
            wait_for_history(client, 24).await?;

            // The smallest size the window allows: everything still fits without sideways scrolling.
            set_window_size(client, 800, 600).await?;
            // Wait for the window manager to have applied the size (slow on a loaded machine), then
            // measure the page laid out at it.
            let resized_by = std::time::Instant::now() + Duration::from_secs(20);
            let fits = loop {
                let fits = client
                    .execute(
                        "const el = document.documentElement; return [el.scrollWidth, window.innerWidth, window.innerHeight];",
                        vec![],
                    )
                    .await?;
                let [width, height] = [1, 2].map(|i| fits[i].as_f64().unwrap_or(f64::MAX));
                if width <= 820.0 && height <= 620.0 {
                    break fits;
                }
                if std::time::Instant::now() > resized_by {
                    bail!("the window never took the 800×600 size: {fits}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            let [scroll_width, width] = [0, 1].map(|i| fits[i].as_f64().unwrap_or(0.0));
            if scroll_width > width {
                bail!("at 800×600 the page should fit its width: {fits}");
            }
            screenshot(display, "800x600").await?;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("the history's search and filters did not narrow the list: {e:#}"));
}

/// 24 uploads: 8 invoices from the window, 8 contracts from the CLI, 8 photos from a watched
/// folder; one in six failed.
#[test]
fn a_long_history_keeps_only_the_rows_in_view_in_the_page_reaches_the_oldest_by_scrolling_and_finds_one_file() {
    const ROWS: usize = 2_000;
    let backend = Backend::start(S3Server::shared());
    let desktop = Desktop::without_keyring();
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    write_settings(
        &data_dir,
        serde_json::json!({ "backend_url": backend.url, "token": backend.token, "token_storage": "file" }),
    );
    let store = Store::open(&data_dir.join("history.sqlite")).unwrap();
    let names: Vec<(String, String, String)> = (0..ROWS)
        .map(|i| (format!("long-{i:05}"), format!("scan-{i:05}.pdf"), format!("/home/staff/scans/scan-{i:05}.pdf")))
        .collect();
    let uploads: Vec<NewUpload<'_>> = names
        .iter()
        .map(|(id, name, path)| NewUpload {
            upload_id: id,
            batch_id: "seed",
            path: Path::new(path),
            file_name: name,
            size: 1_000,
            content_type: "application/pdf",
            source: Source::Cli,
            uploaded_by: None,
        })
        .collect();
    // One batch, as one big drop is: every row shares its start time. All uploaded (queued
    // rows would be resumed at launch as interrupted uploads).
    store.insert_all(&uploads).unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(data_dir.join("history.sqlite")).unwrap();
    conn.execute("UPDATE uploads SET status = 'uploaded', key = 'scans/' || file_name, reported_at = updated_at", [])
        .unwrap();
    drop(conn);
    let shown = |name: &str| format!("[data-testid=history-item][data-file-name=\"{name}\"]");

    desktop
        .run(&data_dir, async |client, _| {
            wait_for_element(client, &shown("scan-01999.pdf")).await.context("the newest upload comes first")?;
            let in_page = count(client, "[data-testid=history-item]").await;
            if in_page > 30 {
                bail!("only a screenful of rows should be in the page, not {in_page}");
            }
            // At the end of what is loaded, the next page comes: scroll down until the oldest.
            poll(Duration::from_secs(120), "the oldest upload after scrolling down", || async {
                client
                    .execute(
                        "const s = document.querySelector('[data-testid=history-scroller]');
                         s.scrollTop = s.scrollHeight;
                         s.dispatchEvent(new Event('scroll'));",
                        vec![],
                    )
                    .await
                    .ok()?;
                client.find(fantoccini::Locator::Css(&shown("scan-00000.pdf"))).await.ok()
            })
            .await?;
            wait_for_history(client, ROWS).await.context("every upload loaded by the end")?;
            let in_page = count(client, "[data-testid=history-item]").await;
            if in_page > 30 {
                bail!("scrolled to the end, still only a screenful should be in the page, not {in_page}");
            }

            type_into(client, "[data-testid=history-search]", "scan-01234").await?;
            wait_for_history(client, 1).await.context("searching for one file among thousands")?;
            wait_for_element(client, &shown("scan-01234.pdf")).await?;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("the long history did not scroll and search as it should: {e:#}"));
}

async fn select(client: &fantoccini::Client, css: &str, value: &str) -> anyhow::Result<()> {
    let element = wait_for_element(client, css).await?;
    element.select_by_value(value).await.with_context(|| format!("could not choose {value:?} in {css}"))?;
    Ok(())
}

/// Date inputs have no portable typing through WebDriver: set the value as the picker would.
async fn set_value(client: &fantoccini::Client, css: &str, date: &str) -> anyhow::Result<()> {
    let element = wait_for_element(client, css).await?;
    let element = serde_json::to_value(element)?;
    client
        .execute(
            "arguments[0].value = arguments[1];
             arguments[0].dispatchEvent(new Event('input', { bubbles: true }));
             arguments[0].dispatchEvent(new Event('change', { bubbles: true }));",
            vec![element, date.into()],
        )
        .await?;
    Ok(())
}

#[test]
fn an_upload_made_by_the_cli_while_the_window_is_open_appears_in_its_history_within_a_second() {
    let scene = Scene::new(serde_json::json!({}));
    // Bound by reference: the scene's backend and folders live until the test ends.
    let (backend, desktop, work, data_dir) = (&scene.backend, &scene.desktop, &scene.work, &scene.data_dir);
    let file = work.path().join("from-the-terminal.txt");
    std::fs::write(&file, bytes(4_000, 9)).unwrap();

    desktop
        .run(data_dir, async |client, _display| {
            wait_for_element(client, "[data-testid=history-empty]").await?;
            // The same data folder as the window: what a person running both gets by default.
            let output = std::process::Command::new(dropship_testkit::target_bin("dropship"))
                .arg("upload")
                .arg(&file)
                .env("DROPSHIP_DATA_DIR", data_dir)
                .env("DROPSHIP_BACKEND_URL", &backend.url)
                .env("DROPSHIP_TOKEN", &backend.token)
                .output()?;
            let exited = std::time::Instant::now();
            if !output.status.success() {
                bail!("dropship upload failed: {}", String::from_utf8_lossy(&output.stderr));
            }
            let row = "[data-testid=history-item][data-status=uploaded][data-source=cli][data-file-name=\"from-the-terminal.txt\"]";
            poll(Duration::from_secs(5), "the CLI's upload in the window's history", || async {
                (count(client, row).await == 1).then_some(())
            })
            .await?;
            let shown_after = exited.elapsed();
            println!("the CLI's upload showed in the window {} ms after the CLI exited", shown_after.as_millis());
            // A second, plus what a loaded two-core machine adds to finding the row over WebDriver.
            if shown_after > Duration::from_millis(2_000) {
                bail!("the upload took {shown_after:?} to show; the history should follow within a second");
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("the window did not follow the CLI's upload: {e:#}"));
}

#[test]
fn the_dock_icon_shows_the_runs_progress_and_drops_it_when_the_run_ends() {
    // Slow enough (about 3 s) that the bar is seen between empty and full.
    let scene = Scene::new(serde_json::json!({ "transfer": { "bandwidth_limit": 1_000_000 } }));
    // Bound by reference: the scene's backend and folders live until the test ends.
    let (desktop, work, data_dir) = (&scene.desktop, &scene.work, &scene.data_dir);
    let file = work.path().join("video.mp4");
    std::fs::write(&file, bytes(3_000_000, 5)).unwrap();

    desktop
        .run(data_dir, async |client, display| {
            wait_for_element(client, "[data-testid=history-empty]").await?;
            drag_onto(client, display, &[file.as_path()], "[data-testid=drop-zone]").await?;
            wait_for_element(client, &format!("{}[data-status=uploaded]", item("video.mp4"))).await?;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("the upload did not go up: {e:#}"));

    // The dock (the test session's stand-in that speaks the Unity launcher API) was told.
    let updates = desktop.session().launcher_updates();
    assert!(
        updates.iter().all(|u| u["app_uri"] == "application://Dropship.desktop"),
        "every update names the app's desktop entry: {updates:?}"
    );
    let shown: Vec<f64> = updates.iter().filter_map(|u| u["progress"].as_f64()).collect();
    assert!(shown.iter().any(|&p| p > 0.0 && p < 1.0), "the icon showed the run part-way: {updates:?}");
    assert!(shown.windows(2).all(|w| w[0] <= w[1]), "the bar only moves forward: {shown:?}");
    let last_visible = updates.iter().rev().find_map(|u| u["progress-visible"].as_bool());
    assert_eq!(last_visible, Some(false), "the bar goes when the run ends: {updates:?}");
}
