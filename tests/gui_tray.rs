//! The window closed to the tray and opened again: closing it ends WebKit's web process (its
//! memory goes back to the system) while the app syncs on in the tray, and *Open Dropship* in
//! the tray menu brings the window back with what the app did meanwhile. The real app in a
//! real WebKitGTK window under Xvfb, closed as a window manager's close button does and reopened
//! through the tray's dbusmenu (support/notification_server.py plays the panel).
//!
//!     cargo build -p dropship-desktop -p dropship-backend
//!     cargo test -p dropship-system-tests --test gui_tray

mod gui;

use std::path::Path;

use anyhow::{bail, Context};
use dropship_system_tests::desktop::close_window;
use dropship_system_tests::process::descendants;
use fantoccini::Client;
use gui::*;

/// The app's process for `data_dir`, and the WebKit web processes under it.
fn app_and_web_processes(data_dir: &Path) -> Option<(i32, Vec<i32>)> {
    let marker = format!("DROPSHIP_DATA_DIR={}", data_dir.display());
    let app = std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        let ours = environ.split(|&b| b == 0).any(|var| var == marker.as_bytes());
        (comm.trim() == "dropship-deskto" && ours).then_some(pid)
    })?;
    let web = descendants(app)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with("WebKitWebProces"))
        })
        .collect();
    Some((app, web))
}

/// WebDriver follows the window that *Open Dropship* built (the one it drove is gone).
async fn switch_to_the_new_window(client: &Client) -> anyhow::Result<()> {
    let window = poll(UI_TIMEOUT, "the reopened window among WebDriver's windows", || async {
        client.windows().await.ok()?.into_iter().next()
    })
    .await?;
    client.switch_to_window(window).await?;
    Ok(())
}

#[test]
fn closing_the_window_ends_webkits_processes_and_the_tray_reopens_it_with_the_upload_that_ran_meanwhile() {
    // About 15 s for the file: still running when the window comes back.
    let scene = Scene::new(serde_json::json!({ "transfer": { "bandwidth_limit": 200_000 } }));
    let file = scene.work.path().join("site survey.mp4");
    std::fs::write(&file, vec![7u8; 3_000_000]).unwrap();
    let uploading = "[data-testid=upload-item][data-file-name=\"site survey.mp4\"][data-status=uploading]";
    let uploaded = "[data-testid=upload-item][data-file-name=\"site survey.mp4\"][data-status=uploaded]";
    let data_dir = scene.data_dir.clone();

    scene
        .desktop
        .run(&data_dir, async |client, display| {
            wait_for_element(client, "[data-testid=uploads-view]").await?;
            drag_onto(client, display, &[&file], "[data-testid=drop-zone]").await?;
            wait_for_element(client, uploading).await.context("the upload should start")?;
            let (app, web) = app_and_web_processes(&data_dir).context("no app process")?;
            if web.is_empty() {
                bail!("the open window should have a WebKit web process under the app");
            }

            close_window(display, "^Dropship$")?;
            poll(UI_TIMEOUT, "WebKit's web processes to end", || async {
                let (_, web) = app_and_web_processes(&data_dir)?;
                web.is_empty().then_some(())
            })
            .await
            .context("closing the window should end its web process")?;
            let (still, _) = app_and_web_processes(&data_dir).context("the app should keep running in the tray")?;
            if still != app {
                bail!("the same app should run on in the tray (it was {app}, now {still})");
            }
            if !scene.backend.records().is_empty() {
                bail!("the upload should still be running when the window reopens (make the file bigger)");
            }

            scene.desktop.session().click_tray_item("Open Dropship")?;
            switch_to_the_new_window(client).await?;
            wait_for_element(client, "[data-testid=uploads-view]").await?;
            wait_for_element(client, &format!("{uploading}, {uploaded}"))
                .await
                .context("the reopened window should list the upload started before it closed")?;
            wait_for_element(client, uploaded).await.context("the upload should finish in the reopened window")?;
            wait_for_count(client, "[data-testid=history-item][data-status=uploaded]", 1)
                .await
                .context("the history should show the upload")?;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("the window did not close to the tray and come back: {e:#}"));

    let records = scene.backend.records();
    assert_eq!(records.len(), 1, "the upload that ran while the window was closed is recorded once: {records:?}");
}
