//! The desktop app's watched folders through its window: the Settings view lists a watched
//! folder with the watcher's live state, a file dropped into that folder is uploaded by the
//! app in the background, and the folder's Pause button pauses it (saved and applied).
//! The real app under Xvfb via tauri-driver, the real backend and SeaweedFS.
//!
//!     cargo build -p dropship-desktop -p dropship-backend
//!     cargo test -p dropship-system-tests --test watch_gui

mod gui;

use anyhow::bail;
use dropship_system_tests::desktop::{TauriDriver, Xvfb};
use dropship_testkit::{Backend, S3Server};
use fantoccini::{Client, Locator};

use gui::{open_session, poll, text_of, UI_TIMEOUT};

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
