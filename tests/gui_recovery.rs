//! A damaged file in the data folder, in the real window: the app opens on a recovery screen
//! that names the file and what is wrong, and moving it aside reaches the first-run screen.
//!
//!     cargo build -p dropship-desktop
//!     cargo test -p dropship-system-tests --test gui_recovery

mod gui;

use anyhow::{ensure, Context};
use gui::*;

#[test]
fn a_settings_file_cut_short_opens_the_recovery_screen_and_moving_it_aside_reaches_first_run() {
    let desktop = Desktop::without_keyring();
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let cut_short = br#"{"backend_url": "https://uploads.example.com", "tok"#;
    std::fs::write(data_dir.join("settings.json"), cut_short).unwrap();

    desktop
        .run(&data_dir, async |client, display| {
            wait_for_element(client, "[data-testid=recovery]").await.context("the recovery screen should show")?;
            let heading = text_of(client, "[data-testid=recovery] h1").await?;
            ensure!(heading.contains("settings.json"), "the heading names the file: {heading}");
            let path = text_of(client, "[data-testid=damaged-path]").await?;
            ensure!(path == data_dir.join("settings.json").display().to_string(), "the full path is shown: {path}");
            let detail = text_of(client, "[data-testid=damaged-detail]").await?;
            ensure!(detail.contains("not valid settings JSON") && detail.contains("EOF"), "what is wrong: {detail}");
            screenshot(display, "recovery").await?;
            click(client, "[data-testid=move-aside]").await?;
            wait_for_element(client, "[data-testid=welcome]").await.context("then the first-run screen")?;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("the damaged settings file was not recovered from: {e:#}"));

    assert!(!data_dir.join("settings.json").exists(), "the damaged file no longer stops the app");
    let kept: Vec<_> = std::fs::read_dir(&data_dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|name| name.starts_with("settings.json.damaged-"))
        .collect();
    assert_eq!(kept.len(), 1, "the damaged file is kept beside, renamed: {kept:?}");
    assert_eq!(std::fs::read(data_dir.join(&kept[0])).unwrap(), cut_short, "byte for byte");
}
