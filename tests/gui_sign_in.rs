//! Signing in from the window with the organisation's identity provider: a real
//! `oidc-provider`, the real backend validating its tokens, the real window under Xvfb. The
//! system browser is replaced by a test opener (`DROPSHIP_BROWSER`) that records the address;
//! the test then walks the provider's own login and consent pages, as the person would.

mod gui;

use std::ffi::OsString;
use std::path::Path;

use anyhow::{bail, Context};
use dropship_system_tests::desktop::xdotool;
use dropship_testkit::{Backend, BackendOptions, OidcProvider, S3Server};
use gui::{click, drag_onto, poll, text_of, type_into, wait_for_element, Desktop, UI_TIMEOUT};

const ALICE: &str = "alice@example.test";

/// A "browser" that only writes down the address it was asked to open.
fn recording_opener(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let log = dir.join("opened.txt");
    let script = dir.join("open-browser.sh");
    std::fs::write(&script, format!("#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\n", log.display())).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    (script, log)
}

#[test]
fn first_run_offers_the_organisation_sign_in_and_the_window_uploads_as_that_person_until_sign_out() {
    let s3 = S3Server::shared();
    let provider = OidcProvider::start();
    let backend = Backend::start_with(s3, BackendOptions { extra_args: provider.backend_args(), ..Default::default() });
    let desktop = Desktop::with_keyring();
    let keyring = desktop.session();
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    let (opener, opened) = recording_opener(work.path());
    let file = work.path().join("signed report.pdf");
    std::fs::write(&file, vec![7u8; 30_000]).unwrap();
    let env = [("DROPSHIP_BROWSER", OsString::from(&opener))];

    desktop
        .run_with_env(&data_dir, &env, async |client, display| {
            wait_for_element(client, "[data-testid=welcome]").await?;
            type_into(client, "[data-testid=settings-backend-url]", &backend.url).await?;
            click(client, "[data-testid=settings-save]").await?;
            wait_for_element(client, "[data-testid=sign-in]")
                .await
                .context("the backend names a provider: sign-in is offered")?;
            gui::assert_accessible(client, "the first run offering sign-in").await?;
            click(client, "[data-testid=sign-in]").await?;

            let url = poll(UI_TIMEOUT, "the window to open the sign-in page", || async {
                std::fs::read_to_string(&opened).ok().and_then(|t| t.lines().next().map(str::to_owned))
            })
            .await?;
            if !url.starts_with(provider.issuer()) || !url.contains("code_challenge_method=S256") {
                bail!("the browser was sent somewhere unexpected: {url}");
            }
            let walked = {
                let (provider, url) = (&provider, url.clone());
                std::thread::scope(|scope| scope.spawn(move || provider.login_in_browser(&url, ALICE)).join())
            };
            walked.map_err(|_| anyhow::anyhow!("the provider's pages could not be walked"))?;

            // Signed in, the first run moves on to the uploads.
            wait_for_element(client, "[data-testid=uploads-view]")
                .await
                .context("after sign-in the window moves on")?;
            poll(UI_TIMEOUT, "the title bar to name alice", || async {
                xdotool(display, &["search", "--name", &format!("Dropship — {ALICE}")])
                    .ok()
                    .filter(|ids| !ids.trim().is_empty())
            })
            .await
            .context("the title bar shows who is signed in")?;

            drag_onto(client, display, &[&file], "[data-testid=drop-zone]").await?;
            let uploaded = "[data-testid=upload-item][data-file-name='signed report.pdf'][data-status=uploaded]";
            wait_for_element(client, uploaded).await.context("the upload goes through with the sign-in alone")?;
            poll(UI_TIMEOUT, "the history to say who uploaded it", || async {
                text_of(client, "[data-testid=history-uploaded-by]").await.ok().filter(|t| t.contains(ALICE))
            })
            .await
            .context("the history names who uploaded the file")?;

            if keyring.stored_session(&data_dir).is_none() {
                bail!("the session should be kept in the Secret Service");
            }
            click(client, "[data-testid=nav-settings]").await?;
            wait_for_element(client, "[data-testid=signed-in-as]").await?;
            let shown = text_of(client, "[data-testid=signed-in-as]").await?;
            if !shown.contains(ALICE) {
                bail!("Settings should say who is signed in: {shown:?}");
            }
            gui::screenshot(display, "signed-in").await?;
            gui::assert_accessible(client, "the settings while signed in").await?;
            let page = client.source().await?;
            if page.contains("eyJ") {
                bail!("a JWT reached the page");
            }
            click(client, "[data-testid=sign-out]").await?;
            wait_for_element(client, "[data-testid=sign-in]")
                .await
                .context("after sign out, sign-in is offered again")?;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("the window's sign-in did not work: {e:#}"));

    assert!(keyring.stored_session(&data_dir).is_none(), "signing out removes the session from the keyring");
    assert!(!data_dir.join("session.json").exists(), "with a keyring, no session file is ever written");
}
