//! The window under its CSP without `style-src 'unsafe-inline'`: each view loads, positioned
//! rows (Svelte `style:` directives, which set CSSOM properties) still land where they belong,
//! and the page records no CSP violation, while an inline style attribute is refused.
//!
//!     cargo build -p dropship-desktop -p dropship-backend
//!     cargo test -p dropship-system-tests --test gui_csp

mod gui;

use std::path::Path;

use anyhow::{ensure, Context};
use dropship_core::store::{NewUpload, Store};
use dropship_core::Source;
use dropship_testkit::{Backend, S3Server};
use fantoccini::Locator;
use gui::*;

/// Starts recording CSP violations in the page (what was blocked, and by which directive).
const RECORD_VIOLATIONS: &str = "window.__csp = window.__csp || [];
    document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));";

#[test]
fn every_view_works_without_inline_styles_and_breaks_no_csp_rule() {
    let backend = Backend::start(S3Server::shared());
    let desktop = Desktop::without_keyring();
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    write_settings(
        &data_dir,
        serde_json::json!({ "backend_url": backend.url, "token": backend.token, "token_storage": "file" }),
    );
    let store = Store::open(&data_dir.join("history.sqlite")).unwrap();
    let names = ["first.pdf", "second.pdf", "third.pdf"];
    let uploads: Vec<NewUpload<'_>> = names
        .iter()
        .map(|name| NewUpload {
            upload_id: name,
            batch_id: "seed",
            path: Path::new(name),
            file_name: name,
            size: 1_000,
            content_type: "application/pdf",
            source: Source::Cli,
            uploaded_by: Some("ada@example.com"),
        })
        .collect();
    store.insert_all(&uploads).unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(data_dir.join("history.sqlite")).unwrap();
    conn.execute("UPDATE uploads SET status = 'uploaded', key = 'k/' || file_name, reported_at = updated_at", [])
        .unwrap();
    drop(conn);

    desktop
        .run(&data_dir, async |client, _| {
            client.execute(RECORD_VIOLATIONS, vec![]).await?;
            // Through every view twice, so each is rendered while violations are recorded.
            for _ in 0..2 {
                click(client, "[data-testid=nav-settings]").await?;
                wait_for_element(client, "[data-testid=watched-folders]").await.context("the settings view")?;
                click(client, "[data-testid=nav-uploads]").await?;
                wait_for_element(client, "[data-testid=drop-zone]").await.context("the uploads view")?;
                wait_for_count(client, "[data-testid=history-item]", names.len()).await?;
            }
            let mut tops = Vec::new();
            for row in client.find_all(Locator::Css("[data-testid=history-item]")).await? {
                tops.push(row.rectangle().await?.1 as i64);
            }
            tops.sort();
            tops.dedup();
            ensure!(tops.len() == names.len(), "each history row has its own place (style:top applied): {tops:?}");
            let violations = client.execute("return window.__csp", vec![]).await?;
            ensure!(violations == serde_json::json!([]), "no CSP violation: {violations}");
            // And the rule is in force (the recorder works): an inline style attribute is refused.
            client
                .execute("document.body.insertAdjacentHTML('beforeend', '<i style=\"color: red\"></i>')", vec![])
                .await?;
            poll(UI_TIMEOUT, "the inline style to be refused", || async {
                let seen = client.execute("return window.__csp", vec![]).await.ok()?;
                seen.as_array().filter(|v| v.iter().any(|v| v.as_str().unwrap_or("").contains("style-src"))).map(drop)
            })
            .await?;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("the window does not work under its CSP: {e:#}"));
}
