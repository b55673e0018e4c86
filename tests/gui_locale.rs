//! The window in the system's language, in a real WebKitGTK window under Xvfb: German words,
//! sizes and dates under `LANG=de_DE.UTF-8` (whether or not that locale is installed), and
//! English for a language without a catalogue.
//!
//!     cargo build -p dropship-desktop -p dropship-backend
//!     cargo test -p dropship-system-tests --test gui_locale
//!
//! `DROPSHIP_SCREENSHOTS=1` also saves docs/screenshot-de.png.

mod gui;

use std::ffi::OsString;
use std::path::Path;

use anyhow::{ensure, Context};
use dropship_core::store::Store;
use dropship_core::Source;
use dropship_testkit::{Backend, S3Server};
use fantoccini::Client;
use gui::*;

/// The system's locale as a person sets it (`Desktop` clears the caller's own).
fn system_language(tag: &str) -> [(&'static str, OsString); 2] {
    [("LANG", tag.into()), ("LC_ALL", tag.into())]
}

#[test]
fn under_a_german_system_locale_the_window_speaks_german_and_writes_sizes_and_dates_the_german_way() {
    let backend = Backend::start(S3Server::shared());
    let desktop = Desktop::without_keyring();
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    write_settings(
        &data_dir,
        serde_json::json!({ "backend_url": backend.url, "token": backend.token, "token_storage": "file" }),
    );
    seed_german_history(&data_dir);

    desktop
        .run_with_env(&data_dir, &system_language("de_DE.UTF-8"), async |client, display| {
            wait_for_history(client, 5).await.context("the seeded history should be listed")?;
            report_languages(client).await?;
            let lang = client.execute("return document.documentElement.lang", vec![]).await?;
            ensure!(lang == "de", "the page declares its language: {lang}");

            expect_text(client, "[data-testid=nav-settings]", "Einstellungen").await?;
            expect_text(client, "[data-testid=drop-zone] .headline", "Dateien oder Ordner hier ablegen").await?;
            expect_text(client, "[data-testid=choose-files]", "Dateien auswählen …").await?;
            expect_text(client, "#uploads-title", "Aktuelle Uploads").await?;
            expect_text(client, "#history-title", "Verlauf").await?;
            let report = "[data-testid=history-item][data-upload-id=report]";
            expect_text(client, &format!("{report} .pill"), "Hochgeladen").await?;
            expect_text(client, &format!("{report} [data-testid=history-size]"), "1,50 MB").await?;
            let failed = "[data-testid=history-item][data-upload-id=scan]";
            expect_text(client, &format!("{failed} .pill"), "Fehlgeschlagen").await?;
            expect_text(client, &format!("{failed} [data-testid=history-retry]"), "Wiederholen").await?;

            // Today's uploads show the time on a 24-hour clock, the whole date in the tooltip.
            let time = wait_for_element(client, &format!("{report} [data-testid=history-time]")).await?;
            let shown = time.text().await?;
            ensure!(is_german_time(&shown), "the time as Germans write it (14:03): {shown:?}");
            let full = time.attr("title").await?.unwrap_or_default();
            let (date, clock) = full.split_once(", ").unwrap_or_default();
            ensure!(is_german_date(date) && is_german_time(clock), "the date as Germans write it: {full:?}");
            screenshot(display, "de").await?;
            assert_accessible(client, "the upload view in German").await?;

            click(client, "[data-testid=nav-settings]").await?;
            expect_text(client, "[data-testid=settings-view] h2", "Einstellungen").await?;
            expect_text(client, "label[for=token]", "Zugriffstoken").await?;
            expect_text(client, "[data-testid=settings-save]", "Speichern").await?;
            expect_text(client, "[data-testid=settings-test]", "Verbindung testen").await?;
            expect_text(client, "[data-testid=watched-folders] h3", "Überwachte Ordner").await?;
            assert_accessible(client, "the settings in German").await?;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("the window did not follow the German locale: {e:#}"));
}

#[test]
fn a_system_language_without_a_catalogue_leaves_the_window_in_english() {
    let backend = Backend::start(S3Server::shared());
    let desktop = Desktop::without_keyring();
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    write_settings(
        &data_dir,
        serde_json::json!({ "backend_url": backend.url, "token": backend.token, "token_storage": "file" }),
    );
    seed_german_history(&data_dir);

    desktop
        .run_with_env(&data_dir, &system_language("fr_FR.UTF-8"), async |client, _| {
            wait_for_history(client, 5).await.context("the seeded history should be listed")?;
            report_languages(client).await?;
            let lang = client.execute("return document.documentElement.lang", vec![]).await?;
            ensure!(lang == "en", "the page declares English: {lang}");
            expect_text(client, "[data-testid=nav-settings]", "Settings").await?;
            expect_text(client, "#history-title", "History").await?;
            let report = "[data-testid=history-item][data-upload-id=report]";
            expect_text(client, &format!("{report} [data-testid=history-size]"), "1.50 MB").await?;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("the window did not fall back to English: {e:#}"));
}

/// What the webview and the shell each say the language is, for the record (WebKitGTK derives
/// `navigator.language` from the C locale it managed to set).
async fn report_languages(client: &Client) -> anyhow::Result<()> {
    const PROBE: &str = "const done = arguments[0];
        window.__TAURI_INTERNALS__.invoke('system_locale').then(
            (system) => done({ system, navigator: navigator.language, languages: navigator.languages }),
            (err) => done({ err }));";
    let seen = client.execute_async(PROBE, vec![]).await?;
    eprintln!("languages seen by the window: {seen}");
    Ok(())
}

async fn expect_text(client: &Client, css: &str, expected: &str) -> anyhow::Result<()> {
    wait_for_element(client, css).await?;
    let shown = text_of(client, css).await?;
    ensure!(shown == expected, "{css} should read {expected:?}, reads {shown:?}");
    Ok(())
}

/// "14:03"
fn is_german_time(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 5 && b[2] == b':' && [0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit())
}

/// "06.12.2026"
fn is_german_date(text: &str) -> bool {
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() == 3
        && [2, 2, 4].iter().zip(&parts).all(|(n, p)| p.len() == *n && p.bytes().all(|c| c.is_ascii_digit()))
}

/// Five uploads from today: the window, the CLI and a watched folder, one of them failed.
fn seed_german_history(data_dir: &Path) {
    let store = Store::open(&data_dir.join("history.sqlite")).unwrap();
    let uploads = [
        ("report", "Quartalsbericht 2026.pdf", 1_500_000, Source::Window),
        ("photos", "Betriebsausflug.zip", 248_300_000, Source::Cli),
        ("minutes", "Protokoll 12.04.docx", 38_400, Source::Window),
        ("invoice", "Rechnung-0815.pdf", 212_000, Source::Watch),
        ("scan", "Scan 001.tiff", 9_870_000, Source::Watch),
    ];
    for (id, name, size, source) in uploads {
        let upload = Finished {
            id,
            name,
            path: &format!("/home/staff/Dokumente/{name}"),
            size,
            source,
            uploaded_by: None,
            key: &format!("uploads/2026/{name}"),
        };
        record(&store, &upload, id == "scan");
    }
}
