//! The desktop app end to end: a real file, dragged with the mouse from another X11 window onto
//! Dropship's window, goes to a real S3 server through the real backend, shows up as uploaded,
//! and is listed in the history that the core keeps in SQLite. And on first run, the window
//! asks for the backend, checks it, and keeps what it was given (the token in a real Secret
//! Service: gnome-keyring on a private session bus).
//!
//! Needs Xvfb, xdotool, python3-gi with GTK 3, WebKitWebDriver and tauri-driver
//! (scripts/install-deps.sh with WITH_TAURI_DRIVER=1), and the binaries built first:
//!
//!     cargo build -p dropship-desktop -p dropship-backend
//!     cargo test -p dropship-system-tests --test gui_drag_drop

mod gui;

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use dropship_testkit::{Backend, S3Server};
use fantoccini::{Client, Locator};

use gui::{drag_onto, poll, text_of, type_into, wait_for_element, Desktop, UI_TIMEOUT};

const FILE_NAME: &str = "dragged report.bin";

#[test]
fn a_file_dragged_onto_the_window_is_uploaded_shown_and_kept_in_history() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);

    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let settings = serde_json::json!({ "backend_url": backend.url, "api": "native", "token": backend.token });
    std::fs::write(data_dir.join("settings.json"), serde_json::to_vec_pretty(&settings).unwrap()).unwrap();

    // Not all one byte value, so a truncated or shifted upload cannot compare equal.
    let contents: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let file = work.path().join(FILE_NAME);
    std::fs::write(&file, &contents).unwrap();

    let started = Instant::now();
    let outcome = Desktop::without_keyring()
        .run(&data_dir, async |client, display| drag_file_and_watch_the_window(client, display, &file).await);
    let key = outcome.unwrap_or_else(|e| panic!("the drag-and-drop upload did not go through: {e:#}"));
    eprintln!("dragged, uploaded and listed in {:.1?}", started.elapsed());

    let stored = s3.get_object(&key).unwrap_or_else(|| panic!("S3 should hold the uploaded object at {key}"));
    assert!(
        stored == contents,
        "the object in S3 should be byte-identical to the dragged file ({} vs {} bytes)",
        stored.len(),
        contents.len()
    );

    let records: Vec<_> = backend.records().into_iter().filter(|r| r["key"] == key.as_str()).collect();
    assert_eq!(records.len(), 1, "the backend should hold exactly one record for {key}: {records:?}");
    assert_eq!(records[0]["file_name"], FILE_NAME, "the record should carry the dragged file's name");
    assert_eq!(records[0]["size"], contents.len() as u64, "the record should carry the file's size");
}

#[test]
fn on_first_run_the_window_asks_for_the_backend_checks_it_and_keeps_it() {
    let backend = Backend::start(S3Server::shared());
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");

    let desktop = Desktop::with_keyring();
    let outcome = desktop
        .run(&data_dir, async |client, _| fill_in_the_first_run_form(client, &backend.url, &backend.token).await);
    outcome.unwrap_or_else(|e| panic!("the first-run screen did not lead to the upload view: {e:#}"));

    let saved: serde_json::Value = serde_json::from_slice(
        &std::fs::read(data_dir.join("settings.json")).expect("settings.json should be written"),
    )
    .unwrap();
    assert_eq!(saved["backend_url"], backend.url.as_str(), "the backend URL typed in should be saved");
    assert!(saved.get("token").is_none_or(|t| t == ""), "the token must not be in settings.json: {saved}");
    assert_eq!(
        desktop.session().stored_token(&data_dir).as_deref(),
        Some(backend.token.as_str()),
        "the token typed in should be in the keyring"
    );
    assert_eq!(saved["api"], "native", "the default API flavour should be saved");
}

/// A wrong token first (the window must say so, by code), then the right one, then Save.
async fn fill_in_the_first_run_form(client: &Client, backend_url: &str, token: &str) -> anyhow::Result<()> {
    wait_for_element(client, "[data-testid=welcome]").await.context("no first-run screen without settings")?;
    type_into(client, "[data-testid=settings-backend-url]", backend_url).await?;
    type_into(client, "[data-testid=settings-token]", "not-the-token").await?;
    let code = test_connection(client).await?;
    if code != "error:unauthorized" {
        bail!("a wrong token should be reported as unauthorized, the window said {code}");
    }

    type_into(client, "[data-testid=settings-token]", token).await?;
    let code = test_connection(client).await?;
    if code != "ok:" {
        let message = text_of(client, "[data-testid=settings-result]").await.unwrap_or_default();
        bail!("the right token should pass the connection test, the window said {code}: {message}");
    }

    client.find(Locator::Css("[data-testid=settings-save]")).await?.click().await?;
    wait_for_element(client, "[data-testid=uploads-view] [data-testid=drop-zone]")
        .await
        .context("saving on the first-run screen should lead to the upload view")?;
    Ok(())
}

/// Clicks "Test connection" and returns the outcome as `ok:` or `error:<code>`.
async fn test_connection(client: &Client) -> anyhow::Result<String> {
    // Drop the previous outcome first, so the one read below is new.
    client.execute("document.querySelector('[data-testid=settings-result]')?.remove()", vec![]).await?;
    client.find(Locator::Css("[data-testid=settings-test]")).await?.click().await?;
    let result = wait_for_element(client, "[data-testid=settings-result]").await?;
    let kind = result.attr("data-result").await?.unwrap_or_default();
    let code = result.attr("data-code").await?.unwrap_or_default();
    Ok(format!("{kind}:{code}"))
}

/// Drags the file onto the drop zone and waits until the window lists it as uploaded, both in
/// the current uploads and in the history. Returns the object key the window shows.
async fn drag_file_and_watch_the_window(client: &Client, display: &str, file: &Path) -> anyhow::Result<String> {
    wait_for_element(client, "[data-testid=drop-zone]").await.context("the upload view never appeared")?;
    // The history has loaded (empty here), so a later entry is a refresh, not the first load.
    wait_for_element(client, "[data-testid=history-empty]").await.context("the history should start empty")?;
    // While the file hovers, the shell tells the window, which highlights the drop zone.
    drag_onto(client, display, &[file], "[data-testid=drop-zone]").await?;

    let item = format!("[data-testid=upload-item][data-file-name=\"{FILE_NAME}\"]");
    let status = poll(UI_TIMEOUT, "the dropped file to finish uploading", || async {
        let element = client.find(Locator::Css(&item)).await.ok()?;
        let status = element.attr("data-status").await.ok()??;
        (status == "uploaded" || status == "failed").then_some(status)
    })
    .await?;
    if status != "uploaded" {
        let error = text_of(client, &format!("{item} [data-testid=upload-error]")).await.unwrap_or_default();
        bail!("the window shows the upload as failed: {error}");
    }
    let key = text_of(client, &format!("{item} [data-testid=upload-key]")).await?;
    let url = text_of(client, &format!("{item} [data-testid=upload-url]")).await?;
    // The object URL is percent-encoded; the key is shown as it is.
    let url_names_key = url.contains(&key) || url.contains(&key.replace(' ', "%20"));
    if key.is_empty() || !url_names_key {
        bail!("the window should show the key and an object URL for it, got key {key:?} and URL {url:?}");
    }

    let listed = format!("[data-testid=history-item][data-file-name=\"{FILE_NAME}\"][data-status=uploaded]");
    poll(UI_TIMEOUT, "the history to list the upload", || async { client.find(Locator::Css(&listed)).await.ok() })
        .await?;
    Ok(key)
}
