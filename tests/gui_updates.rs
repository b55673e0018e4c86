//! Signed self-updates in the real window: the app asks its organisation's update source (the
//! backend's `--updates-dir`, or any static folder), downloads what is newer, verifies it
//! against the organisation's public key and the version it was signed for, and offers
//! *Restart to update*. A download signed by another key, or a signature replayed for another
//! version, is refused with a message and nothing is kept. Keys and signatures are made with
//! the real `tauri signer` (the Tauri CLI the UI's dev dependencies bring).
//!
//!     cargo build -p dropship-desktop -p dropship-backend
//!     cargo test -p dropship-system-tests --test gui_updates

mod gui;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::bail;
use dropship_system_tests::process::ProcessGuard;
use dropship_testkit::{Backend, BackendOptions, S3Server};
use gui::*;

fn tauri_cli() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/node_modules/.bin/tauri")
}

/// A `tauri signer` key pair without a password: (private key file, public key text).
fn key_pair(dir: &Path, name: &str) -> (PathBuf, String) {
    let private = dir.join(format!("{name}.key"));
    let status = Command::new(tauri_cli())
        .args(["signer", "generate", "--ci", "-p", "", "-w"])
        .arg(&private)
        .stdout(Stdio::null())
        .status()
        .expect("run tauri signer generate (scripts/install-deps.sh installs the Tauri CLI)");
    assert!(status.success(), "tauri signer generate failed");
    let public = std::fs::read_to_string(dir.join(format!("{name}.key.pub"))).unwrap();
    (private, public.trim().to_owned())
}

/// Signs `file` for `version` with `key`, as `scripts/package` does; the signature's text.
fn sign(file: &Path, key: &Path, version: &str) -> String {
    let status = Command::new(tauri_cli())
        .args(["signer", "sign", "-p", "", "--app-version", version, "-f"])
        .arg(key)
        .arg(file)
        .env("TAURI_SIGNING_PRIVATE_KEY_PASSWORD", "")
        .stdout(Stdio::null())
        .status()
        .expect("run tauri signer sign");
    assert!(status.success(), "tauri signer sign failed");
    std::fs::read_to_string(file.with_file_name(format!("{}.sig", file.file_name().unwrap().to_string_lossy())))
        .unwrap()
}

/// Publishes `version` into `channel_dir` as an organisation does: the artifact, and a
/// `latest.json` naming it at `url_prefix` (empty: a URL relative to the manifest, which the
/// backend resolves), signed by `key` for `signed_for`.
fn publish(channel_dir: &Path, version: &str, key: &Path, signed_for: &str, url_prefix: &str) {
    std::fs::create_dir_all(channel_dir).unwrap();
    let name = format!("Dropship_{version}_amd64.AppImage");
    let artifact = channel_dir.join(&name);
    // An ELF header and some body: what an AppImage starts with; never installed here.
    let mut bytes = b"\x7fELF\x02\x01\x01\x00".to_vec();
    bytes.extend((0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8));
    std::fs::write(&artifact, bytes).unwrap();
    let signature = sign(&artifact, key, signed_for);
    let manifest = serde_json::json!({
        "version": version,
        "notes": "Uploads resume faster after sleep.",
        "pub_date": "2026-12-01T10:00:00Z",
        "platforms": { "linux-x86_64": { "signature": signature, "url": format!("{url_prefix}{name}") } }
    });
    std::fs::write(channel_dir.join("latest.json"), serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
}

fn with_key(public: &str) -> Vec<(&'static str, OsString)> {
    vec![("DROPSHIP_UPDATER_PUBKEY", public.into())]
}

async fn check_in_settings(client: &fantoccini::Client) -> anyhow::Result<String> {
    click(client, "[data-testid=nav-settings]").await?;
    click(client, "[data-testid=update-check]").await?;
    let status = poll(std::time::Duration::from_secs(60), "the update check to end", || async {
        let state = client
            .find(fantoccini::Locator::Css("[data-testid=update-status]"))
            .await
            .ok()?
            .attr("data-state")
            .await
            .ok()??;
        matches!(state.as_str(), "ready" | "failed" | "up_to_date").then_some(state)
    })
    .await?;
    Ok(status)
}

#[test]
fn the_backend_rolls_out_a_signed_update_and_the_window_offers_restart_to_update() {
    let s3 = S3Server::shared();
    let work = tempfile::tempdir().unwrap();
    let (org_key, org_public) = key_pair(work.path(), "organisation");
    let updates = work.path().join("updates");
    publish(&updates.join("stable"), "9.9.9", &org_key, "9.9.9", "");
    let backend = Backend::start_with(
        s3,
        BackendOptions {
            extra_args: vec!["--updates-dir".into(), updates.display().to_string()],
            ..Default::default()
        },
    );
    let desktop = Desktop::with_keyring();
    let data_dir = work.path().join("data");
    write_settings(&data_dir, serde_json::json!({ "backend_url": backend.url, "token": backend.token }));

    desktop
        .run_with_env(&data_dir, &with_key(&org_public), async |client, display| {
            wait_for_element(client, "[data-testid=uploads-view]").await?;
            let state = check_in_settings(client).await?;
            if state != "ready" {
                bail!(
                    "the update should be downloaded and verified, not {state}: {}",
                    text_of(client, "[data-testid=update-status]").await?
                );
            }
            let offered = text_of(client, "[data-testid=update-version]").await?;
            if offered != "9.9.9" {
                bail!("offered {offered:?}");
            }
            wait_for_element(client, "[data-testid=update-restart]").await?;
            screenshot(display, "update-ready").await?;
            assert_accessible(client, "Settings with an update ready").await?;
            // A development build is not an installed package: it refuses to overwrite itself
            // and says what to do instead.
            click(client, "[data-testid=update-restart]").await?;
            let refused = wait_for_element(client, "[data-testid=update-error][data-code=update_install]").await?;
            let message = refused.text().await?;
            if !message.contains("AppImage, .deb and .rpm") {
                bail!("the refusal should say which installs update themselves: {message}");
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(target_bin_intact(), "the development binary must not have been replaced");
}

fn target_bin_intact() -> bool {
    let bytes = std::fs::read(dropship_testkit::target_bin("dropship-desktop")).unwrap_or_default();
    bytes.len() > 1_000_000 && bytes.starts_with(b"\x7fELF")
}

#[test]
fn an_update_signed_by_another_key_or_for_another_version_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let (org_key, org_public) = key_pair(work.path(), "organisation");
    let (other_key, _) = key_pair(work.path(), "someone-else");
    let desktop = Desktop::with_keyring();
    let backend = Backend::start(S3Server::shared());

    // Any static folder the organisation controls, here served by a plain file server.
    let folder = work.path().join("site");
    let server = StaticFolder::serve(&folder);
    for (case, key, signed_for, says) in [
        ("another key", &other_key, "9.9.9", "does not match your organisation's update key"),
        ("an older release's signature announced as new", &org_key, "9.9.8", "signed for 9.9.8"),
    ] {
        publish(&folder, "9.9.9", key, signed_for, &format!("{}/", server.url));
        let data_dir = work.path().join(case.replace(' ', "-"));
        write_settings(&data_dir, serde_json::json!({ "backend_url": backend.url, "token": backend.token }));
        std::fs::write(
            data_dir.join("updates.json"),
            serde_json::to_vec(
                &serde_json::json!({ "url": format!("{}/latest.json", server.url), "check_automatically": false }),
            )
            .unwrap(),
        )
        .unwrap();
        desktop
            .run_with_env(&data_dir, &with_key(&org_public), async |client, _| {
                wait_for_element(client, "[data-testid=uploads-view]").await?;
                let state = check_in_settings(client).await?;
                let message = text_of(client, "[data-testid=update-status]").await?;
                if state != "failed" || !message.contains(says) || !message.contains("Nothing was installed") {
                    bail!("{case}: the update should be refused saying {says:?}; the window says ({state}) {message}");
                }
                if count(client, "[data-testid=update-restart]").await != 0 {
                    bail!("{case}: a refused update must not be offered for restart");
                }
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
}

#[test]
fn a_build_without_an_update_key_says_it_is_updated_by_it() {
    let work = tempfile::tempdir().unwrap();
    let desktop = Desktop::with_keyring();
    let backend = Backend::start(S3Server::shared());
    let data_dir = work.path().join("data");
    write_settings(&data_dir, serde_json::json!({ "backend_url": backend.url, "token": backend.token }));
    desktop
        .run(&data_dir, async |client, _| {
            click(client, "[data-testid=nav-settings]").await?;
            let status = wait_for_element(client, "[data-testid=update-status][data-state=unavailable]").await?;
            let text = status.text().await?;
            if !text.contains("IT department") {
                bail!("the window should say who updates this copy: {text}");
            }
            let check = wait_for_element(client, "[data-testid=update-check]").await?;
            if check.attr("disabled").await?.is_none() {
                bail!("Check for updates should be disabled without a key");
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
}

/// A folder served over HTTP on loopback, as any web server an organisation runs would.
struct StaticFolder {
    url: String,
    _server: ProcessGuard,
}

impl StaticFolder {
    fn serve(dir: &Path) -> StaticFolder {
        std::fs::create_dir_all(dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = ProcessGuard::spawn(
            "static file server",
            Command::new("python3")
                .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string(), "--directory"])
                .arg(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline && !server.has_exited(), "the file server did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        StaticFolder { url: format!("http://127.0.0.1:{port}"), _server: server }
    }
}
