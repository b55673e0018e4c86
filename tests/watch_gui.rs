//! The desktop app's watched folders through its window: the Settings view lists a watched
//! folder with the watcher's live state, a file dropped into that folder is uploaded by the
//! app in the background, and the folder's Pause button pauses it (saved and applied). A
//! folder is added through the native picker and then changed and removed by its id; the page
//! itself can name no folder to watch. The real app under Xvfb via tauri-driver, the real
//! backend and SeaweedFS.
//!
//!     cargo build -p dropship-desktop -p dropship-backend
//!     cargo test -p dropship-system-tests --test watch_gui

mod gui;

use std::path::Path;

use anyhow::{bail, Context};
use dropship_system_tests::desktop::{choose_in_folder_picker, TauriDriver, Xvfb};
use dropship_testkit::{Backend, S3Server};
use fantoccini::{Client, Locator};
use serde_json::{json, Value};

use gui::{open_session, poll, text_of, wait_for_count, wait_for_element, UI_TIMEOUT};

#[test]
fn the_settings_view_shows_a_watched_folder_live_uploads_what_lands_in_it_and_pauses_it() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let work = tempfile::tempdir().unwrap();
    let (data_dir, watched) = (work.path().join("data"), work.path().join("scans"));
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::create_dir_all(&watched).unwrap();
    let watched = watched.canonicalize().unwrap();
    let settings = serde_json::json!({ "backend_url": backend.url, "api": "native", "token": backend.token });
    std::fs::write(data_dir.join("settings.json"), serde_json::to_vec(&settings).unwrap()).unwrap();
    let folders = serde_json::json!({ "folders": [{ "path": watched }], "stable_for_ms": 300 });
    std::fs::write(data_dir.join("watched-folders.json"), serde_json::to_vec(&folders).unwrap()).unwrap();

    let xvfb = Xvfb::start();
    let app_env = [("DROPSHIP_DATA_DIR", data_dir.as_os_str()), ("DROPSHIP_LOG", "warn".as_ref())];
    let mut driver = TauriDriver::start(&xvfb.display, &app_env);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let outcome: anyhow::Result<()> = runtime.block_on(async {
        let client = open_session(&driver.url).await?;
        let outcome = async {
            click(&client, "[data-testid=nav-settings]").await?;
            wait_for_text(&client, "[data-testid=watched-folder] [data-testid=watch-state]", "Watching").await?;
            let shown = text_of(&client, "[data-testid=watched-folder] code").await?;
            if shown != watched.display().to_string() {
                bail!("the folder shown is {shown:?}, not {}", watched.display());
            }
            gui::assert_accessible(&client, "the watched folders, one watching").await?;

            std::fs::write(watched.join("scan 001.pdf"), b"%PDF-1.4 from the scanner")?;
            poll(UI_TIMEOUT, "the app to upload the dropped file", || async {
                (backend.records().len() == 1).then_some(())
            })
            .await?;

            let pause =
                client.find(Locator::XPath("//li[@data-testid='watched-folder']//button[text()='Pause']")).await?;
            pause.click().await?;
            wait_for_text(&client, "[data-testid=watched-folder] [data-testid=watch-state]", "Paused").await?;
            Ok(())
        }
        .await;
        let _ = client.close().await;
        outcome
    });
    driver.stop();
    outcome.unwrap_or_else(|e| panic!("the watched-folder settings did not behave: {e:#}"));

    let records = backend.records();
    assert_eq!(records[0]["file_name"], "scan 001.pdf", "the watched file is the one recorded");
    let key = records[0]["key"].as_str().unwrap();
    assert_eq!(s3.get_object(key).as_deref(), Some(&b"%PDF-1.4 from the scanner"[..]));
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data_dir.join("watched-folders.json")).unwrap()).unwrap();
    assert_eq!(saved["folders"][0]["paused"], true, "pausing from the window is saved");
}

#[test]
fn the_page_cannot_name_a_folder_to_watch_nor_change_one_by_an_id_it_made_up() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    let secrets = work.path().join("home/.ssh");
    std::fs::create_dir_all(&secrets).unwrap();
    let secrets = secrets.canonicalize().unwrap();
    std::fs::write(secrets.join("id_ed25519"), b"-----BEGIN OPENSSH PRIVATE KEY-----").unwrap();
    std::fs::write(secrets.join(".hidden"), b"a hidden secret").unwrap();
    write_settings(&data_dir, &backend, None);

    let hostile_folder = json!({
        "path": secrets, "include_hidden": true, "after_upload": { "action": "delete" }, "ignore": [],
    });
    let answers = run_app(&data_dir, async |client: &Client, _display: &str| {
        click(client, "[data-testid=nav-settings]").await?;
        wait_for_element(client, "[data-testid=add-watched-folder]").await?;
        let mut answers = Vec::new();
        // What a script injected into the page would try: the command that used to take whole
        // settings with paths in them, and an id that is really a path.
        let settings = json!({ "folders": [hostile_folder], "stable_for_ms": 300 });
        answers.push((
            "save_watch_settings",
            invoke_from_page(client, "save_watch_settings", json!({ "settings": settings })).await?,
        ));
        let options = json!({
            "key_prefix": "", "ignore": [], "include_hidden": true, "paused": false, "polling": false,
            "after_upload": { "action": "delete" },
        });
        let by_path = json!({ "id": secrets, "options": options });
        answers.push(("update_watched_folder", invoke_from_page(client, "update_watched_folder", by_path).await?));
        answers.push((
            "remove_watched_folder",
            invoke_from_page(client, "remove_watched_folder", json!({ "id": "made-up" })).await?,
        ));
        let listed = invoke_from_page(client, "list_watched_folders", json!({})).await?;
        let status = invoke_from_page(client, "watch_status", json!({})).await?;
        Ok((answers, listed, status))
    })
    .unwrap_or_else(|e| panic!("the window did not behave: {e:#}"));

    let (answers, listed, status) = answers;
    for (command, answer) in &answers {
        assert!(answer.is_err(), "the page's {command} must be refused, got {answer:?}");
    }
    let unknown = answers[1].1.as_ref().unwrap_err();
    assert_eq!(unknown["code"], "unknown_folder", "an id that names no folder is refused as such: {unknown}");
    assert_eq!(answers[2].1.as_ref().unwrap_err()["code"], "unknown_folder");
    assert_eq!(listed.as_ref().ok(), Some(&json!([])), "no folder is watched");
    assert_eq!(status.as_ref().ok().map(|s| &s["folders"]), Some(&json!([])), "the watcher watches nothing");
    let saved = std::fs::read_to_string(data_dir.join("watched-folders.json")).unwrap_or_default();
    assert!(!saved.contains(".ssh"), "nothing the page named was saved: {saved}");
    assert!(secrets.join(".hidden").exists() && secrets.join("id_ed25519").exists(), "nothing was deleted");
    assert!(backend.records().is_empty(), "nothing was uploaded: {:?}", backend.records());
}

#[test]
fn a_folder_added_with_the_native_picker_is_changed_and_removed_by_its_id() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    let scans = work.path().join("scans");
    std::fs::create_dir_all(&scans).unwrap();
    let scans = scans.canonicalize().unwrap();
    write_settings(&data_dir, &backend, Some(300));

    let folder_css = "[data-testid=watched-folder]";
    run_app(&data_dir, async |client: &Client, display: &str| {
        click(client, "[data-testid=nav-settings]").await?;
        click(client, "[data-testid=add-watched-folder]").await?;
        let (display, folder) = (display.to_owned(), scans.clone());
        tokio::task::spawn_blocking(move || choose_in_folder_picker(&display, "Choose a folder to watch", &folder))
            .await??;
        wait_for_text(client, &format!("{folder_css} [data-testid=watch-state]"), "Watching").await?;
        let shown = text_of(client, &format!("{folder_css} code")).await?;
        if shown != scans.display().to_string() {
            bail!("the folder shown is {shown:?}, not {}", scans.display());
        }
        let saved = read_watched(&data_dir);
        let id = saved["folders"][0]["id"].as_str().context("the added folder is saved with an id")?.to_owned();
        if saved["folders"][0]["path"] != json!(scans) {
            bail!("the picked folder is not the one saved: {saved}");
        }

        // A folder just added shows its options. Hidden files too, from the window: a hidden
        // file then goes up.
        let hidden = "//li[@data-testid='watched-folder']//label[contains(., 'hidden files')]/input";
        client.find(Locator::XPath(hidden)).await?.click().await?;
        poll(UI_TIMEOUT, "the hidden-files option to be saved", || async {
            (read_watched(&data_dir)["folders"][0]["include_hidden"] == true).then_some(())
        })
        .await?;
        std::fs::write(scans.join(".notes.txt"), b"hidden, and wanted")?;
        poll(UI_TIMEOUT, "the hidden file to go up", || async { (backend.records().len() == 1).then_some(()) }).await?;

        // Removed by id: the list empties and nothing is watched any more.
        let remove = "//li[@data-testid='watched-folder']//button[text()='Remove']";
        client.find(Locator::XPath(remove)).await?.click().await?;
        wait_for_count(client, folder_css, 0).await?;
        if read_watched(&data_dir)["folders"] != json!([]) {
            bail!("the removal was not saved: {}", read_watched(&data_dir));
        }
        let status = invoke_from_page(client, "watch_status", json!({})).await?;
        if status.as_ref().map(|s| s["folders"].clone()).ok() != Some(json!([])) {
            bail!("the removed folder is still watched: {status:?}");
        }
        // The id of a removed folder names nothing any more.
        let again = invoke_from_page(client, "remove_watched_folder", json!({ "id": id })).await?;
        if again.as_ref().err().map(|e| e["code"].clone()) != Some(json!("unknown_folder")) {
            bail!("removing a removed folder again was not refused as unknown: {again:?}");
        }
        Ok(())
    })
    .unwrap_or_else(|e| panic!("adding, changing and removing a watched folder did not work: {e:#}"));

    let records = backend.records();
    assert_eq!(records[0]["file_name"], ".notes.txt", "the option changed by id took effect");
}

/// Settings with the test backend, and watched folders (none) with a short quiet time.
fn write_settings(data_dir: &Path, backend: &Backend, stable_for_ms: Option<u64>) {
    std::fs::create_dir_all(data_dir).unwrap();
    let settings = json!({ "backend_url": backend.url, "api": "native", "token": backend.token });
    std::fs::write(data_dir.join("settings.json"), serde_json::to_vec(&settings).unwrap()).unwrap();
    let folders = json!({ "folders": [], "stable_for_ms": stable_for_ms.unwrap_or(1000) });
    std::fs::write(data_dir.join("watched-folders.json"), serde_json::to_vec(&folders).unwrap()).unwrap();
}

fn read_watched(data_dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(data_dir.join("watched-folders.json")).unwrap_or_default())
        .unwrap_or(Value::Null)
}

/// Runs `scenario` against the app on a display of its own, with `data_dir`.
fn run_app<T>(data_dir: &Path, scenario: impl AsyncFnOnce(&Client, &str) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let xvfb = Xvfb::start();
    let app_env = [("DROPSHIP_DATA_DIR", data_dir.as_os_str()), ("DROPSHIP_LOG", "warn".as_ref())];
    let mut driver = TauriDriver::start(&xvfb.display, &app_env);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let outcome = runtime.block_on(async {
        let client = open_session(&driver.url).await?;
        let outcome = scenario(&client, &xvfb.display).await;
        if outcome.is_err() {
            gui::dump_page(&client).await;
        }
        let _ = client.close().await;
        outcome
    });
    driver.stop();
    outcome
}

/// What the page gets back when it calls `command` itself, as a script injected into it
/// would: `Ok(value)`, or `Err(what it was refused with)`.
async fn invoke_from_page(client: &Client, command: &str, args: Value) -> anyhow::Result<Result<Value, Value>> {
    const INVOKE: &str = "const [command, args, done] = arguments;
        window.__TAURI_INTERNALS__.invoke(command, args).then(
            (ok) => done({ ok: ok ?? null }),
            (err) => done({ err: err ?? null }));";
    let answer = client.execute_async(INVOKE, vec![command.into(), args]).await?;
    match answer.get("err") {
        Some(err) => Ok(Err(err.clone())),
        None => Ok(Ok(answer["ok"].clone())),
    }
}

async fn click(client: &Client, css: &str) -> anyhow::Result<()> {
    let element = poll(UI_TIMEOUT, css, || async { client.find(Locator::Css(css)).await.ok() }).await?;
    element.click().await?;
    Ok(())
}

async fn wait_for_text(client: &Client, css: &str, starts_with: &str) -> anyhow::Result<()> {
    poll(UI_TIMEOUT, &format!("{css} to say {starts_with:?}"), || async {
        text_of(client, css).await.ok().filter(|t| t.starts_with(starts_with)).map(drop)
    })
    .await
}
