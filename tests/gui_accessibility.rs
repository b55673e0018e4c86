//! Every view of the real window checked with axe-core (WCAG 2.1 A and AA, and axe's best
//! practices) for serious and critical problems, and the window used with the keyboard alone:
//! a folder chosen through the drop zone's picker, an upload paused and resumed, the history
//! searched and a failed upload retried, the settings changed and saved, all without the mouse.
//!
//!     cargo build -p dropship-desktop -p dropship-backend
//!     cargo test -p dropship-system-tests --test gui_accessibility

mod gui;

use std::time::Duration;

use anyhow::{bail, Context};
use dropship_system_tests::desktop::choose_in_folder_picker;
use fantoccini::key::Key;
use gui::*;

#[test]
fn the_welcome_and_recovery_screens_have_no_serious_accessibility_problems() {
    let desktop = Desktop::with_keyring();
    let work = tempfile::tempdir().unwrap();
    desktop
        .run(&work.path().join("fresh"), async |client, _| {
            wait_for_element(client, "[data-testid=welcome]").await?;
            assert_accessible(client, "the welcome screen").await
        })
        .unwrap_or_else(|e| panic!("{e:#}"));

    let damaged = work.path().join("damaged");
    std::fs::create_dir_all(&damaged).unwrap();
    std::fs::write(damaged.join("settings.json"), b"{ not json").unwrap();
    desktop
        .run(&damaged, async |client, _| {
            wait_for_element(client, "[data-testid=recovery]").await?;
            assert_accessible(client, "the recovery screen").await
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
}

#[test]
fn in_the_dark_theme_the_views_have_no_serious_accessibility_problems() {
    let scene = Scene::new(serde_json::json!({}));
    // Bound by reference: the scene's backend and folders live until the test ends.
    let (desktop, data_dir) = (&scene.desktop, &scene.data_dir);
    seed_history(data_dir);
    // GTK's dark variant is what a desktop in dark mode gives the app; WebKitGTK turns it into
    // prefers-color-scheme: dark.
    let dark = [("GTK_THEME", std::ffi::OsString::from("Adwaita:dark"))];
    desktop
        .run_with_env(data_dir, &dark, async |client, _| {
            wait_for_history(client, 24).await?;
            let dark = client.execute("return matchMedia('(prefers-color-scheme: dark)').matches", vec![]).await?;
            if dark != serde_json::Value::Bool(true) {
                bail!("the window did not switch to its dark theme");
            }
            assert_accessible(client, "the upload view, dark").await?;
            click(client, "[data-testid=nav-settings]").await?;
            wait_for_element(client, "[data-testid=settings-view]").await?;
            assert_accessible(client, "the settings, dark").await
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
}

#[test]
fn the_window_is_used_with_the_keyboard_alone_and_every_view_passes_axe() {
    // Slow enough that the chosen files are still going up while the queue is worked with.
    let scene = Scene::new(serde_json::json!({ "transfer": { "bandwidth_limit": 300_000 } }));
    // Bound by reference: the scene's backend and folders live until the test ends.
    let (desktop, work, data_dir) = (&scene.desktop, &scene.work, &scene.data_dir);
    seed_history(data_dir);
    let folder = work.path().join("scans");
    std::fs::create_dir_all(&folder).unwrap();
    for name in ["scan-1.pdf", "scan-2.pdf"] {
        std::fs::write(folder.join(name), vec![7u8; 1_500_000]).unwrap();
    }

    desktop
        .run(data_dir, async |client, display| {
            wait_for_history(client, 24).await?;
            assert_accessible(client, "the upload view with a history").await?;

            // The drop zone's folder picker, opened and answered from the keyboard.
            tab_to(client, "[data-testid=choose-folder]", 10).await?;
            press(client, Key::Enter).await?;
            let (owned, chosen) = (display.to_owned(), folder.clone());
            tokio::task::spawn_blocking(move || choose_in_folder_picker(&owned, "Choose a folder to upload", &chosen))
                .await??;
            wait_for_count(client, "[data-testid=upload-item]", 2).await?;
            assert_accessible(client, "the queue while uploading").await?;

            // Pause the first upload and resume it: the focus stays on the button pressed.
            tab_to(client, "[data-testid=pause-upload]", 20).await?;
            press(client, Key::Enter).await?;
            poll(Duration::from_secs(10), "an upload paused from the keyboard", || async {
                (count(client, "[data-testid=upload-item][data-status=paused]").await == 1).then_some(())
            })
            .await?;
            let on_resume =
                client.execute("return document.activeElement.matches('[data-testid=resume-upload]')", vec![]).await?;
            if on_resume != serde_json::Value::Bool(true) {
                bail!("after Pause the keyboard focus should be on Resume, where the person pressed");
            }
            assert_accessible(client, "the queue with a paused upload").await?;
            press(client, Key::Enter).await?;
            for name in ["scan-1.pdf", "scan-2.pdf"] {
                let done = format!("[data-testid=upload-item][data-file-name=\"{name}\"][data-status=uploaded]");
                poll(Duration::from_secs(60), &format!("{name} uploaded after Resume"), || async {
                    client.find(fantoccini::Locator::Css(&done)).await.ok()
                })
                .await?;
            }
            assert_accessible(client, "the queue when done").await?;

            // The history: search from the keyboard, then retry a failed upload.
            tab_to(client, "[data-testid=history-search]", 30).await?;
            client.active_element().await?.send_keys("contract-003").await?;
            wait_for_history(client, 1).await.context("the search typed from the keyboard")?;
            tab_to(client, "[data-testid=history-retry]", 40).await?;
            press(client, Key::Enter).await?;
            wait_for_element(
                client,
                "[data-testid=history-notice][data-result=error], [data-testid=history-notice][data-result=ok]",
            )
            .await?;
            assert_accessible(client, "the history, searched, after a retry").await?;

            // Settings: reached, changed and saved without the mouse.
            tab_to(client, "[data-testid=nav-settings]", 60).await?;
            press(client, Key::Enter).await?;
            wait_for_element(client, "[data-testid=settings-view]").await?;
            assert_accessible(client, "the settings").await?;
            tab_to(client, "[data-testid=settings-concurrency]", 30).await?;
            let field = client.active_element().await?;
            field.clear().await?;
            field.send_keys("3").await?;
            tab_to(client, "[data-testid=settings-save]", 40).await?;
            press(client, Key::Enter).await?;
            wait_for_element(client, "[data-testid=settings-result]").await?;
            assert_accessible(client, "the settings after saving").await?;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e:#}"));

    assert_eq!(read_settings(data_dir)["transfer"]["concurrency"], 3, "the concurrency saved from the keyboard");
}
