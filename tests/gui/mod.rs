//! What the window tests share: the app on a display of its own (with a private session bus,
//! a real keyring and a notification recorder), and small WebDriver helpers. Included by each
//! `gui_*` test file with `mod gui;`.

#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use dropship_core::store::{NewUpload, Store};
use dropship_core::Source;
use dropship_system_tests::desktop::{DesktopSession, TauriDriver, Xvfb};
use dropship_testkit::target_bin;
use fantoccini::{elements::Element, Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

/// Upper bound for anything the window has to show after an action.
pub const UI_TIMEOUT: Duration = Duration::from_secs(60);

/// A display, a desktop session (bus, keyring, notifications) and tauri-driver, kept across
/// several launches of the app, as a person's login session is.
pub struct Desktop {
    pub xvfb: Xvfb,
    /// `None` for a session without any keyring (and without a session bus).
    pub session: Option<DesktopSession>,
    _home: tempfile::TempDir,
}

impl Desktop {
    pub fn with_keyring() -> Desktop {
        let home = tempfile::tempdir().unwrap();
        let session = DesktopSession::start(home.path()).unwrap_or_else(|e| panic!("no desktop session: {e:#}"));
        Desktop { xvfb: Xvfb::start(), session: Some(session), _home: home }
    }

    pub fn without_keyring() -> Desktop {
        let home = tempfile::tempdir().unwrap();
        Desktop { xvfb: Xvfb::start(), session: None, _home: home }
    }

    pub fn session(&self) -> &DesktopSession {
        self.session.as_ref().expect("a desktop session with a keyring")
    }

    /// Runs `scenario` against a fresh launch of the app with `DROPSHIP_DATA_DIR=data_dir`. On
    /// failure it prints what the window showed. The session, the app and tauri-driver are
    /// stopped either way.
    pub fn run<T>(
        &self,
        data_dir: &Path,
        scenario: impl AsyncFnOnce(&Client, &str) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.run_with_env(data_dir, &[], scenario)
    }

    /// [`Desktop::run`] with more variables in the app's environment (`DROPSHIP_BROWSER`).
    pub fn run_with_env<T>(
        &self,
        data_dir: &Path,
        extra_env: &[(&'static str, OsString)],
        scenario: impl AsyncFnOnce(&Client, &str) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.launch(data_dir, extra_env, scenario, true)
    }

    /// [`Desktop::run_with_env`] for a scenario after which the app runs on by itself (it
    /// restarted into an update): the session is not closed and the driver is killed, since
    /// WebKitWebDriver closes every window it drives when it ends, which a restarted app's
    /// may be.
    pub fn run_and_let_go<T>(
        &self,
        data_dir: &Path,
        extra_env: &[(&'static str, OsString)],
        scenario: impl AsyncFnOnce(&Client, &str) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.launch(data_dir, extra_env, scenario, false)
    }

    fn launch<T>(
        &self,
        data_dir: &Path,
        extra_env: &[(&'static str, OsString)],
        scenario: impl AsyncFnOnce(&Client, &str) -> anyhow::Result<T>,
        close: bool,
    ) -> anyhow::Result<T> {
        // The window follows the system's language: English, whatever the caller's desktop
        // speaks, as the tests read some of its words (`extra_env` may name another).
        let mut app_env: Vec<(&str, OsString)> = vec![
            ("DROPSHIP_DATA_DIR", data_dir.into()),
            ("DROPSHIP_LOG", "warn".into()),
            ("LANG", "C.UTF-8".into()),
            ("LC_ALL", "".into()),
            ("LC_MESSAGES", "".into()),
            ("LANGUAGE", "".into()),
        ];
        app_env.extend(extra_env.iter().cloned());
        match &self.session {
            Some(session) => app_env.push(("DBUS_SESSION_BUS_ADDRESS", session.bus_address.clone().into())),
            // An empty address: the app must find no keyring rather than the caller's.
            None => app_env.push(("DBUS_SESSION_BUS_ADDRESS", "".into())),
        }
        let env: Vec<(&str, &std::ffi::OsStr)> = app_env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
        let mut driver = TauriDriver::start(&self.xvfb.display, &env);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let outcome = runtime.block_on(async {
            let client = open_session(&driver.url).await?;
            let outcome = scenario(&client, &self.xvfb.display).await;
            if outcome.is_err() {
                dump_page(&client).await;
            }
            if close {
                // Closing the session quits the app.
                let _ = client.close().await;
            }
            outcome
        });
        if close {
            driver.stop();
        } else {
            driver.kill();
        }
        outcome
    }
}

pub async fn open_session(url: &str) -> anyhow::Result<Client> {
    // DROPSHIP_TEST_APP: an installed copy instead of the build (scripts/try-update).
    let app =
        std::env::var_os("DROPSHIP_TEST_APP").map(PathBuf::from).unwrap_or_else(|| target_bin("dropship-desktop"));
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("tauri:options".into(), serde_json::json!({ "application": app }));
    capabilities.insert("browserName".into(), "wry".into());
    ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(url)
        .await
        .with_context(|| format!("tauri-driver at {url} could not start {}", app.display()))
}

/// What most window tests start from: a backend on the shared SeaweedFS, a desktop session
/// with a keyring, and a data folder whose settings point at the backend, with `extra` fields
/// (`{"transfer": {"bandwidth_limit": 1000000}}`) merged in.
pub struct Scene {
    pub s3: &'static dropship_testkit::S3Server,
    pub backend: dropship_testkit::Backend,
    pub desktop: Desktop,
    pub work: tempfile::TempDir,
    pub data_dir: PathBuf,
}

impl Scene {
    pub fn new(extra: serde_json::Value) -> Scene {
        Scene::with_backend(dropship_testkit::BackendOptions::default(), extra)
    }

    pub fn with_backend(options: dropship_testkit::BackendOptions, extra: serde_json::Value) -> Scene {
        let s3 = dropship_testkit::S3Server::shared();
        let backend = dropship_testkit::Backend::start_with(s3, options);
        let work = tempfile::tempdir().unwrap();
        let data_dir = work.path().join("data");
        let mut settings = serde_json::json!({ "backend_url": backend.url, "token": backend.token });
        if let (Some(settings), serde_json::Value::Object(extra)) = (settings.as_object_mut(), extra) {
            settings.extend(extra);
        }
        write_settings(&data_dir, settings);
        Scene { s3, backend, desktop: Desktop::with_keyring(), work, data_dir }
    }
}

/// Settings as the app saved them before the keyring (token in the file): the app moves the
/// token into the keyring when there is one.
pub fn write_settings(data_dir: &Path, settings: serde_json::Value) {
    std::fs::create_dir_all(data_dir).unwrap();
    std::fs::write(data_dir.join("settings.json"), serde_json::to_vec_pretty(&settings).unwrap()).unwrap();
}

pub fn read_settings(data_dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(data_dir.join("settings.json")).expect("settings.json should be written"))
        .unwrap()
}

pub async fn wait_for_element(client: &Client, css: &str) -> anyhow::Result<Element> {
    poll(UI_TIMEOUT, css, || async { client.find(Locator::Css(css)).await.ok() }).await
}

pub async fn click(client: &Client, css: &str) -> anyhow::Result<()> {
    let element = wait_for_element(client, css).await?;
    element.click().await.with_context(|| format!("could not click {css}"))
}

pub async fn type_into(client: &Client, css: &str, text: &str) -> anyhow::Result<()> {
    let field = wait_for_element(client, css).await?;
    field.clear().await?;
    field.send_keys(text).await?;
    Ok(())
}

/// The element's `textContent` (WebDriver's visible text leaves out what an ellipsis clips).
pub async fn text_of(client: &Client, css: &str) -> anyhow::Result<String> {
    let element = client.find(Locator::Css(css)).await.with_context(|| format!("no {css}"))?;
    Ok(element.prop("textContent").await?.unwrap_or_default().trim().to_owned())
}

pub async fn count(client: &Client, css: &str) -> usize {
    client.find_all(Locator::Css(css)).await.map(|v| v.len()).unwrap_or(0)
}

/// Waits until exactly `n` elements match `css`.
pub async fn wait_for_count(client: &Client, css: &str, n: usize) -> anyhow::Result<()> {
    poll(UI_TIMEOUT, &format!("{n} × {css}"), || async { (count(client, css).await == n).then_some(()) }).await
}

/// Waits until the history list has loaded exactly `n` matches, all of them (the list is
/// virtualised: only the rows in view are in the page, so counting elements would not do).
pub async fn wait_for_history(client: &Client, n: usize) -> anyhow::Result<()> {
    poll(UI_TIMEOUT, &format!("{n} uploads in the history"), || async {
        let list = client.find(Locator::Css("[data-testid=history-list]")).await.ok()?;
        let loaded = list.attr("data-count").await.ok()??;
        let complete = list.attr("data-complete").await.ok()??;
        (loaded == n.to_string() && complete == "true").then_some(())
    })
    .await
}

pub async fn poll<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Saves a PNG of the window under `docs/` when `DROPSHIP_SCREENSHOTS=1` (how the README's
/// pictures are made); a normal test run leaves the docs alone. ImageMagick's `import` grabs
/// the X window: WebDriver's own screenshot stalls WebKitGTK under Xvfb.
pub async fn screenshot(display: &str, name: &str) -> anyhow::Result<()> {
    if std::env::var_os("DROPSHIP_SCREENSHOTS").is_none_or(|v| v != "1") {
        return Ok(());
    }
    // Let transitions and the progress bars settle.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let ids =
        dropship_system_tests::desktop::xdotool(display, &["search", "--onlyvisible", "--name", "^Dropship( — .+)?$"])?;
    let id = ids.lines().next().context("no Dropship window to grab")?.trim().to_owned();
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs").join(format!("screenshot-{name}.png"));
    let status = std::process::Command::new("import")
        .args(["-display", display, "-window", &id])
        .arg(&path)
        .status()
        .context("could not run ImageMagick's import")?;
    if !status.success() {
        bail!("import could not grab the window for {}", path.display());
    }
    eprintln!("saved {}", path.display());
    Ok(())
}

/// Sizes the app window's inner area (the page) to `width`×`height` CSS pixels.
pub async fn set_window_size(client: &Client, width: u32, height: u32) -> anyhow::Result<()> {
    client.set_window_size(width, height).await?;
    Ok(())
}

/// On failure, what the window showed: the quickest way to see why.
pub async fn dump_page(client: &Client) {
    match client.find(Locator::Css("body")).await {
        Ok(body) => {
            let text = body.prop("innerText").await.ok().flatten().unwrap_or_default();
            eprintln!("--- window text at failure ---\n{text}");
        }
        Err(e) => eprintln!("--- could not read the window at failure: {e}"),
    }
}

/// Where `css` is on the X screen (its centre), for xdotool.
pub async fn screen_point(client: &Client, display: &str, css: &str) -> anyhow::Result<(i32, i32)> {
    let element = wait_for_element(client, css).await?;
    let (win_x, win_y, _, _) = poll(UI_TIMEOUT, "the Dropship window on screen", || async {
        dropship_system_tests::desktop::window_geometry(display, "^Dropship( — .+)?$").ok()
    })
    .await?;
    let (x, y, w, h) = element.rectangle().await?;
    Ok((win_x + (x + w / 2.0) as i32, win_y + (y + h / 2.0) as i32))
}

/// Drags `paths` (files and folders, all in one drag) from a GTK window onto `css` with the
/// mouse, as a person does from a file manager.
pub async fn drag_onto(client: &Client, display: &str, paths: &[&Path], css: &str) -> anyhow::Result<()> {
    use dropship_system_tests::desktop::{press_and_drag, release_mouse, DragSource};
    let target = screen_point(client, display, css).await?;
    let source = DragSource::start_many(display, paths, (Xvfb::WIDTH as i32 - 260, 80))?;
    let (owned, from) = (display.to_owned(), source.grab_point);
    tokio::task::spawn_blocking(move || press_and_drag(&owned, from, target)).await??;
    poll(Duration::from_secs(10), "the drop zone to highlight while the files hover", || async {
        client.find(Locator::Css("[data-testid=drop-zone][data-hover=true]")).await.ok()
    })
    .await?;
    let owned = display.to_owned();
    tokio::task::spawn_blocking(move || release_mouse(&owned)).await??;
    // The drag source must outlive the drop (the target asks it for the data).
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(source);
    Ok(())
}

/// Runs axe-core (the npm package the UI's dev dependencies bring) inside the page as it is now
/// and fails on any serious or critical violation of WCAG 2.1 A/AA or axe's best practices,
/// naming the rule and the elements. `view` names what is on screen, for the message.
pub async fn assert_accessible(client: &Client, view: &str) -> anyhow::Result<()> {
    static AXE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let source = AXE.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/node_modules/axe-core/axe.min.js");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} is missing ({e}); run scripts/install-deps.sh", path.display()))
    });
    // Loaded once per page; the script defines window.axe.
    let loaded = client.execute("return typeof window.axe === 'object'", vec![]).await?;
    if loaded != serde_json::Value::Bool(true) {
        client.execute(&format!("{source}\nreturn true;"), vec![]).await.context("axe-core did not load")?;
    }
    let report = client
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               window.axe
                 .run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] } })
                 .then((r) => done(r.violations
                   .filter((v) => v.impact === "serious" || v.impact === "critical")
                   .map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                                  nodes: v.nodes.map((n) => n.target.join(" ") + " — " + n.failureSummary) }))))
                 .catch((e) => done({ error: String(e) }));"#,
            vec![],
        )
        .await
        .context("axe-core did not run")?;
    if let Some(error) = report.get("error") {
        bail!("axe-core failed on {view}: {error}");
    }
    let violations = report.as_array().cloned().unwrap_or_default();
    if !violations.is_empty() {
        let lines: Vec<String> = violations
            .iter()
            .map(|v| format!("{} ({}): {}\n    {}", v["id"], v["impact"], v["help"], v["nodes"]))
            .collect();
        bail!("{} serious or critical accessibility violations on {view}:\n{}", violations.len(), lines.join("\n"));
    }
    Ok(())
}

/// 24 finished uploads in the history (every sixth failed), eight from each source: what a
/// window in use for a while lists.
pub fn seed_history(data_dir: &Path) {
    let store = Store::open(&data_dir.join("history.sqlite")).unwrap();
    let kinds =
        [("invoice", "pdf", Source::Window), ("contract", "docx", Source::Cli), ("photo", "jpg", Source::Watch)];
    for (k, (stem, ext, source)) in kinds.iter().enumerate() {
        for i in 0..8 {
            let name = format!("{stem}-{i:03}.{ext}");
            let upload = Finished {
                id: &format!("seed-{k}-{i}"),
                name: &name,
                path: &format!("/home/staff/{stem}s/{name}"),
                size: 10_000 + i as u64 * 1_234,
                source: *source,
                uploaded_by: Some("alice@example.test"),
                key: &format!("uploads/2026/{stem}/{name}"),
            };
            record(&store, &upload, (k * 8 + i) % 6 == 5);
        }
    }
}

/// One upload as the history keeps it once finished.
pub struct Finished<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub path: &'a str,
    pub size: u64,
    pub source: Source,
    pub uploaded_by: Option<&'a str>,
    pub key: &'a str,
}

/// Records `upload` in the history: uploaded with its report delivered, or failed as when the
/// backend did not answer.
pub fn record(store: &Store, upload: &Finished<'_>, failed: bool) {
    store
        .insert(&NewUpload {
            upload_id: upload.id,
            batch_id: "seed",
            path: Path::new(upload.path),
            file_name: upload.name,
            size: upload.size,
            content_type: "application/octet-stream",
            source: upload.source,
            uploaded_by: upload.uploaded_by,
        })
        .unwrap();
    if failed {
        store.mark_failed(upload.id, "backend_unreachable", "The backend did not answer. Check the network.").unwrap();
    } else {
        let url = format!("http://127.0.0.1:1/bucket/{}", upload.key);
        store.mark_uploading(upload.id, None, Some(upload.key), &url).unwrap();
        store.enqueue_reports(&[(upload.id, None, "{}".to_owned())]).unwrap();
        store.reports_delivered(&[upload.id]).unwrap();
    }
}

/// Presses `key` where the keyboard focus is, as a keyboard would. (WebDriver's "send keys to
/// an element" would focus the element first, which puts a date field back on its first part.)
pub async fn press(client: &Client, key: fantoccini::key::Key) -> anyhow::Result<()> {
    use fantoccini::actions::{InputSource, KeyAction, KeyActions};
    let key = char::from(key);
    let actions =
        KeyActions::new("keyboard".into()).then(KeyAction::Down { value: key }).then(KeyAction::Up { value: key });
    client.perform_actions(actions).await?;
    Ok(())
}

/// Presses Tab (Shift+Tab with `backwards`) until the focus is on `css`, as someone without a
/// mouse reaches a control; fails when it is not reached within `at_most` presses.
pub async fn tab_to(client: &Client, css: &str, at_most: usize) -> anyhow::Result<()> {
    use fantoccini::key::Key;
    for _ in 0..=at_most {
        let focused = client.execute("return document.activeElement.matches(arguments[0])", vec![css.into()]).await?;
        if focused == serde_json::Value::Bool(true) {
            return Ok(());
        }
        press(client, Key::Tab).await?;
        // Let the page move the focus (and scroll it into view) before asking again.
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let at = client
        .execute("const e = document.activeElement; return e ? e.outerHTML.slice(0, 160) : 'nothing'", vec![])
        .await?;
    bail!("{css} was not reached with {at_most} presses of Tab; the focus is on {at}")
}
