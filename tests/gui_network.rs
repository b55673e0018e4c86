//! The machine's conditions and the network settings in the real window: on a metered
//! connection (python-dbusmock's NetworkManager on a private system bus) the window says
//! "Paused: metered connection", a file landing in a watched folder waits, and "Upload anyway"
//! sends it; Settings › Network edits the pause rules and the bandwidth schedule, and a rule the
//! core cannot read is explained.
//!
//!     cargo build -p dropship-desktop -p dropship-backend
//!     cargo test -p dropship-system-tests --test gui_network

mod gui;

use std::time::Duration;

use anyhow::{ensure, Context};
use dropship_testkit::dbusmock::SystemBusMock;
use dropship_testkit::{Backend, S3Server};
use gui::*;

#[test]
fn on_a_metered_connection_the_window_says_so_and_upload_anyway_sends_the_watched_file() {
    let bus = SystemBusMock::start();
    // Metered before the app starts: the state at start counts, not only its changes.
    bus.set_metered(true);
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let work = tempfile::tempdir().unwrap();
    let (data_dir, watched) = (work.path().join("data"), work.path().join("scans"));
    std::fs::create_dir_all(&watched).unwrap();
    write_settings(&data_dir, serde_json::json!({ "backend_url": backend.url, "token": backend.token }));
    let folders = serde_json::json!({ "folders": [{ "path": watched.canonicalize().unwrap() }], "stable_for_ms": 300 });
    std::fs::write(data_dir.join("watched-folders.json"), serde_json::to_vec(&folders).unwrap()).unwrap();

    let desktop = Desktop::with_keyring();
    let system_bus = [("DBUS_SYSTEM_BUS_ADDRESS", bus.address.clone().into())];
    desktop
        .run_with_env(&data_dir, &system_bus, async |client, display| {
            wait_for_element(client, "[data-testid=hold-notice]").await.context("the window says why uploads wait")?;
            let notice = text_of(client, "[data-testid=hold-notice]").await?;
            ensure!(notice.contains("Paused: metered connection"), "the notice names the condition: {notice}");
            ensure!(notice.contains("watched folders"), "and who waits: {notice}");

            std::fs::write(watched.join("scan 001.pdf"), b"%PDF-1.4 over a hotspot")?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            ensure!(backend.records().is_empty(), "nothing from the watched folder goes on a metered connection");
            screenshot(display, "metered").await?;
            assert_accessible(client, "the uploads held by a metered connection").await?;

            click(client, "[data-testid=upload-anyway]").await?;
            poll(UI_TIMEOUT, "the held file to upload", || async { (backend.records().len() == 1).then_some(()) })
                .await?;
            wait_for_count(client, "[data-testid=hold-notice]", 0).await?;

            // Upload anyway lasts as long as the metered connection: the next one holds again.
            bus.set_metered(false);
            tokio::time::sleep(Duration::from_millis(500)).await;
            bus.set_metered(true);
            wait_for_element(client, "[data-testid=hold-notice]")
                .await
                .context("the next metered network holds again")?;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("the metered connection was not handled in the window: {e:#}"));
    let records = backend.records();
    assert_eq!(records[0]["file_name"], "scan 001.pdf");
    assert_eq!(s3.get_object(records[0]["key"].as_str().unwrap()).as_deref(), Some(&b"%PDF-1.4 over a hotspot"[..]));
}

#[test]
fn the_network_settings_are_edited_in_the_window_and_a_rule_that_cannot_be_read_is_explained() {
    let backend = Backend::start(S3Server::shared());
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    write_settings(&data_dir, serde_json::json!({ "backend_url": backend.url, "token": backend.token }));

    let desktop = Desktop::with_keyring();
    desktop
        .run(&data_dir, async |client, display| {
            click(client, "[data-testid=nav-settings]").await?;
            wait_for_element(client, "[data-testid=settings-network]").await?;
            let proxy = wait_for_element(client, "[data-testid=settings-proxy-mode]").await?;
            ensure!(proxy.prop("value").await?.as_deref() == Some("system"), "the system's proxy by default");
            let watched = wait_for_element(client, "[data-testid=settings-pause-metered-watched]").await?;
            ensure!(watched.prop("checked").await?.as_deref() == Some("true"), "watched folders pause on metered");

            click(client, "[data-testid=settings-pause-battery]").await?;
            type_into(client, "[data-testid=settings-schedule]", "Mon-Fri 08:00-18:00 2MB/s").await?;
            screenshot(display, "settings-network").await?;
            assert_accessible(client, "Settings › Network, filled in").await?;
            click(client, "[data-testid=settings-save]").await?;
            poll(UI_TIMEOUT, "the settings to be saved", || async {
                let saved = std::fs::read(data_dir.join("settings.json")).ok()?;
                let saved: serde_json::Value = serde_json::from_slice(&saved).ok()?;
                (saved["network"]["pause_on_battery"] == true).then_some(saved)
            })
            .await
            .and_then(|saved| {
                let schedule = &saved["network"]["bandwidth_schedule"];
                ensure!(*schedule == serde_json::json!(["Mon-Fri 08:00-18:00 2MB/s"]), "the rule is saved: {schedule}");
                Ok(())
            })?;

            type_into(client, "[data-testid=settings-schedule]", "Mon-Fri 25:00-18:00 2MB/s").await?;
            click(client, "[data-testid=settings-save]").await?;
            let refused = poll(UI_TIMEOUT, "the rule to be refused", || async {
                let result = client.find(fantoccini::Locator::Css("[data-testid=settings-result]")).await.ok()?;
                (result.attr("data-result").await.ok()?? == "error").then_some(result)
            })
            .await?;
            let message = refused.prop("textContent").await?.unwrap_or_default();
            ensure!(message.contains("25:00"), "the message quotes what cannot be read: {message}");
            ensure!(!message.contains("invalid args"), "and reads as a sentence, not a parse trace: {message}");
            let kept: serde_json::Value = serde_json::from_slice(&std::fs::read(data_dir.join("settings.json"))?)?;
            ensure!(
                kept["network"]["bandwidth_schedule"] == serde_json::json!(["Mon-Fri 08:00-18:00 2MB/s"]),
                "the saved rule is kept"
            );
            Ok(())
        })
        .unwrap_or_else(|e| panic!("the network settings were not edited in the window: {e:#}"));
}
