//! The diagnostics bundle: one zip that tells an organisation's support why Dropship failed on
//! one machine among hundreds — version and platform, the settings without the token, the last
//! logs, the recent failures with their codes, the report outbox and the resumable uploads, the
//! watched folders, and a connection test to the backend and to the upload host. Every text in
//! it passes through [`Scrubber`] last, so no token or signature gets in, and with
//! `hash_names` no file name or path either. The CLI (`dropship diagnose`) and the app's
//! *Create diagnostics bundle…* both call [`create_bundle`].

mod probe;
mod scrub;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::config::{HISTORY_FILE, SETTINGS_FILE};
use crate::logging::{log_dir, KEEP_DAYS};
use crate::network::{desktop_proxy, DesktopProxy, NetworkSettings, ProxySetting};
use crate::store::{HistoryEntry, HistoryQuery, Store, UploadStatus};
use crate::watch::{WatchSettings, WatchStatus};
use crate::{Engine, Error};

pub use probe::Probe;
pub use scrub::{hash_name, Scrubber};

/// The newest failures listed; older ones are in the history.
const RECENT_FAILURES: usize = 200;
/// History rows whose names are looked for in the logs with `hash_names`.
const NAMES_FROM_HISTORY: usize = 100_000;
/// Log bytes taken, newest first: enough for a week at the default level, small enough to mail.
const LOG_BUDGET: u64 = 16 * 1024 * 1024;
const MULTIPART_LISTED: usize = 1_000;

#[derive(Debug, Clone, Default)]
pub struct BundleOptions {
    /// Replace every file name and path by a short stable hash ([`hash_name`]).
    pub hash_names: bool,
    /// The program making it: `cli` or `desktop`.
    pub program: String,
    /// The running watcher's folders, where there is one (the app); without it the bundle
    /// has the watched-folder settings and whether each folder exists.
    pub watch_status: Option<WatchStatus>,
    /// Secrets the caller knows of beyond the saved ones (a `--token` flag).
    pub extra_secrets: Vec<String>,
}

/// What went into a bundle, for the caller to tell the person.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub path: PathBuf,
    pub entries: Vec<String>,
    pub probes: Vec<Probe>,
}

/// Gathers everything, tests the connections and writes the zip to `out` (whole or not at all).
pub async fn create_bundle(engine: &Engine, out: &Path, options: BundleOptions) -> Result<Bundle, Error> {
    let data_dir = engine.data_dir().to_owned();
    let store = Store::open(&data_dir.join(HISTORY_FILE))?;
    let history = store.history(&HistoryQuery { limit: NAMES_FROM_HISTORY, ..Default::default() })?;
    let watch = WatchSettings::load(&data_dir).unwrap_or_default();
    let names = options.hash_names.then(|| known_names(&data_dir, &history, &watch));
    let scrub = Scrubber::new(&known_secrets(engine, &options.extra_secrets), names);

    let mut probes = vec![probe::backend(engine).await];
    match upload_origins(engine, &history).as_slice() {
        [] => probes.push(Probe {
            what: "upload host".into(),
            target: "(none known)".into(),
            ok: false,
            code: Some("no_upload_host_known".into()),
            result: "Not tested: nothing was uploaded yet and no allowed upload hosts are set.".into(),
            elapsed_ms: 0,
        }),
        origins => {
            for origin in origins {
                probes.push(probe::upload_host(&engine.http(), origin).await);
            }
        }
    }

    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    let failures = failures(&history, &scrub);
    let outbox = outbox(engine, &store, &scrub)?;
    let multipart = multipart(&store, &scrub)?;
    let counts = store.count_by_status()?;
    let watch = watched_folders(&watch, options.watch_status.as_ref(), &scrub);
    let about = about(&data_dir, &options, &counts, &scrub);
    let summary = summary(&about, &probes, &failures, &outbox, &multipart, &watch);
    entries.push(("summary.txt".into(), scrub.text(&summary).into_bytes()));
    for (name, mut value) in [
        ("about.json", about),
        ("settings.json", settings(engine, &scrub)),
        ("failures.json", failures),
        ("outbox.json", outbox),
        ("multipart.json", multipart),
        ("watch.json", watch),
        ("connection.json", json!({ "probes": probes })),
    ] {
        scrub.json(&mut value);
        entries.push((name.into(), serde_json::to_vec_pretty(&value).expect("JSON values serialise")));
    }
    for (name, text) in last_logs(&log_dir(&data_dir)) {
        entries.push((format!("logs/{name}"), scrub.text(&text).into_bytes()));
    }

    let out = out.to_owned();
    let names: Vec<String> = entries.iter().map(|(name, _)| name.clone()).collect();
    let written = out.clone();
    tokio::task::spawn_blocking(move || write_zip(&written, &entries))
        .await
        .map_err(|e| Error::Internal(format!("the bundle writer stopped: {e}")))?
        .map_err(|e| Error::BundleFailed { path: out.display().to_string(), detail: e.to_string() })?;
    tracing::info!(entries = names.len(), hash_names = options.hash_names, "diagnostics bundle written");
    Ok(Bundle { path: out, entries: names, probes })
}

/// Every secret this machine holds for Dropship, wherever it is kept.
fn known_secrets(engine: &Engine, extra: &[String]) -> Vec<String> {
    let data_dir = engine.data_dir();
    let mut secrets: Vec<String> = extra.to_vec();
    secrets.extend(engine.settings().map(|s| s.token));
    secrets.extend(crate::secrets::load_token(data_dir).ok().flatten());
    // A token kept in settings.json (no keyring, or from before it).
    if let Some(Value::String(token)) = read_json(&data_dir.join(SETTINGS_FILE)).and_then(|v| v.get("token").cloned()) {
        secrets.push(token);
    }
    if let Ok(Some(session)) = crate::auth::load_session(data_dir) {
        secrets.extend(session.secrets());
    }
    // A manual proxy's password: in use (perhaps from `--proxy URL`), in the keyring, and in
    // the URL itself when someone wrote it there.
    if let Some(settings) = engine.settings() {
        secrets.push(settings.network.proxy.password().to_owned());
        if let ProxySetting::Manual { url, .. } = &settings.network.proxy {
            secrets.extend(url::Url::parse(url).ok().and_then(|u| u.password().map(str::to_owned)));
        }
    }
    secrets.extend(crate::secrets::load_secret(data_dir, crate::config::PROXY_PASSWORD_SLOT).ok().flatten());
    secrets.retain(|s| !s.trim().is_empty());
    secrets
}

/// Names and paths to hash: every file in the history (its path and the folders above it, its
/// name, its key), the watched folders and the data folder (which names the user's home).
fn known_names(data_dir: &Path, history: &[HistoryEntry], watch: &WatchSettings) -> Vec<String> {
    let mut names = Vec::new();
    let with_parents = |path: &Path, names: &mut Vec<String>| {
        for ancestor in path.ancestors().filter(|a| a.parent().is_some()) {
            names.push(ancestor.display().to_string());
        }
    };
    for entry in history {
        with_parents(Path::new(&entry.path), &mut names);
        names.push(entry.file_name.clone());
        names.extend(entry.key.clone());
    }
    for folder in &watch.folders {
        with_parents(&folder.path, &mut names);
    }
    with_parents(data_dir, &mut names);
    names
}

fn read_json(path: &Path) -> Option<Value> {
    std::fs::read(path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok())
}

/// The origins files went to lately, and the allowed upload hosts: at most three to test.
fn upload_origins(engine: &Engine, history: &[HistoryEntry]) -> Vec<url::Url> {
    let mut origins: Vec<url::Url> = Vec::new();
    let recent = history.iter().filter_map(|e| e.object_url.as_deref()).take(500);
    let allowed = engine.settings().map(|s| s.upload_hosts).unwrap_or_default();
    let allowed = allowed.iter().filter(|h| !h.starts_with('.')).map(|h| format!("https://{h}/"));
    for raw in recent.map(str::to_owned).chain(allowed) {
        let Ok(mut url) = url::Url::parse(&raw) else { continue };
        url.set_path("/");
        url.set_query(None);
        url.set_fragment(None);
        let _ = url.set_username("");
        let _ = url.set_password(None);
        if !origins.contains(&url) {
            origins.push(url);
        }
        if origins.len() == 3 {
            break;
        }
    }
    origins
}

fn about(data_dir: &Path, options: &BundleOptions, counts: &[(String, u64)], scrub: &Scrubber) -> Value {
    json!({
        "dropship_version": env!("CARGO_PKG_VERSION"),
        "program": options.program,
        "os": std::env::consts::OS,
        "os_release": os_release(),
        "arch": std::env::consts::ARCH,
        "created_at": now(),
        "names_hashed": options.hash_names,
        "data_dir": scrub.name(&data_dir.display().to_string()),
        "uploads_by_status": counts.iter().map(|(s, n)| (s.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
    })
}

fn now() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// The distribution's name on Linux (`Debian GNU/Linux 12 (bookworm)`).
fn os_release() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim_matches('"').to_owned())
}

/// `settings.json` as saved, without any token or password, and what this run uses.
fn settings(engine: &Engine, scrub: &Scrubber) -> Value {
    let data_dir = engine.data_dir();
    let mut saved = read_json(&data_dir.join(SETTINGS_FILE)).unwrap_or(Value::Null);
    drop_secret_fields(&mut saved);
    let in_use = engine.settings().map(|s| {
        let backend = url::Url::parse(s.backend_url.trim()).map(|u| crate::backend::redact_url(&u));
        json!({
            "backend_url": backend.unwrap_or_else(|_| s.backend_url.clone()),
            "api": s.api,
            "token_set": !s.token.is_empty(),
            "transfer": s.transfer,
            "upload_hosts": s.upload_hosts,
            "log_level": s.log_level,
            "network": network(&s.network),
        })
    });
    let watch_saved = read_json(&data_dir.join(crate::watch::WATCH_FILE)).map(|mut v| {
        name_fields(&mut v, scrub);
        v
    });
    let level_from_environment = ["RUST_LOG", "DROPSHIP_LOG"].iter().any(|v| std::env::var_os(v).is_some());
    let updates = match crate::updates::UpdateSource::load(data_dir) {
        Ok(source) => json!(source),
        Err(e) => json!({ "error": e.to_string() }),
    };
    json!({
        "saved": saved,
        "in_use": in_use,
        "updates": updates,
        "token_storage": crate::config::token_storage(data_dir).ok().flatten(),
        "signed_in": engine.session().is_some(),
        "watch_settings": watch_saved,
        "log_level_from_environment": level_from_environment,
    })
}

/// How this run reaches the network: the proxy without its password (whether one is set
/// says enough), the extra certificate authorities, and when uploads are held.
fn network(network: &NetworkSettings) -> Value {
    let proxy = match &network.proxy {
        ProxySetting::System => json!({ "mode": "system", "desktop": desktop(desktop_proxy()) }),
        ProxySetting::None => json!({ "mode": "none" }),
        ProxySetting::Manual { url, username, password } => json!({
            "mode": "manual",
            "url": url::Url::parse(url).map(|u| crate::backend::redact_url(&u)).unwrap_or_else(|_| "(not a URL)".into()),
            "username_set": !username.is_empty(),
            "password_set": !password.is_empty(),
        }),
    };
    json!({
        "proxy": proxy,
        "ca_file": network.ca_file,
        "pause_on_metered_watched": network.pause_on_metered_watched,
        "pause_on_metered_manual": network.pause_on_metered_manual,
        "pause_on_battery": network.pause_on_battery,
        "bandwidth_schedule": network.bandwidth_schedule,
    })
}

/// The desktop's proxy settings as the app reads them, without any password in their URLs.
fn desktop(proxy: DesktopProxy) -> Value {
    let shown = |raw: Option<String>| {
        raw.map(|r| {
            url::Url::parse(&r).map(|u| crate::backend::redact_url(&u)).unwrap_or_else(|_| "(not a URL)".into())
        })
    };
    match proxy {
        DesktopProxy::NotSet => json!("not set"),
        DesktopProxy::Manual { http, https, no_proxy } => {
            json!({ "http": shown(http), "https": shown(https), "no_proxy": no_proxy })
        }
        DesktopProxy::Automatic { pac_url } => json!({ "pac_url": shown(Some(pac_url)) }),
    }
}

/// Removes every field whose name says it holds a secret, at any depth.
fn drop_secret_fields(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            fields.retain(|key, _| {
                let key = key.to_ascii_lowercase();
                !["token", "password", "secret"].iter().any(|s| key.contains(s)) || key == "token_storage"
            });
            fields.values_mut().for_each(drop_secret_fields);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_secret_fields),
        _ => {}
    }
}

/// `path` fields (watched folders) hashed whole when names are hashed.
fn name_fields(value: &mut Value, scrub: &Scrubber) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields.iter_mut() {
                match field {
                    Value::String(s) if key == "path" => *s = scrub.name(s),
                    other => name_fields(other, scrub),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| name_fields(v, scrub)),
        _ => {}
    }
}

fn failures(history: &[HistoryEntry], scrub: &Scrubber) -> Value {
    let failed: Vec<Value> = history
        .iter()
        .filter(|e| e.status == UploadStatus::Failed)
        .take(RECENT_FAILURES)
        .map(|e| {
            json!({
                "upload_id": e.upload_id,
                "batch_id": e.batch_id,
                "error_code": e.error_code,
                "error": e.error,
                "file_name": scrub.name(&e.file_name),
                "path": scrub.name(&e.path),
                "key": e.key.as_deref().map(|k| scrub.name(k)),
                "size": e.size,
                "source": e.source,
                "created_at": e.created_at,
                "updated_at": e.updated_at,
                "note": e.note,
            })
        })
        .collect();
    json!({ "count": failed.len(), "failures": failed })
}

/// Reports the backend has not acknowledged: ids, attempts and why (never the report's JSON,
/// which names the file and its URL).
fn outbox(engine: &Engine, store: &Store, scrub: &Scrubber) -> Result<Value, Error> {
    let queued = store.queued_reports()?;
    let rejected = queued.iter().filter(|r| r.rejected).count();
    let items: Vec<Value> = queued
        .iter()
        .map(|r| {
            let entry = engine.history_entry(&r.upload_id).ok().flatten();
            json!({
                "upload_id": r.upload_id,
                "attempts": r.attempts,
                "rejected": r.rejected,
                "error_code": entry.as_ref().and_then(|e| e.error_code.clone()),
                "last_error": r.last_error,
                "size": entry.as_ref().map(|e| e.size),
                "file_name": entry.as_ref().map(|e| scrub.name(&e.file_name)),
            })
        })
        .collect();
    Ok(json!({ "count": queued.len(), "rejected": rejected, "waiting": queued.len() - rejected, "reports": items }))
}

fn multipart(store: &Store, scrub: &Scrubber) -> Result<Value, Error> {
    let mut uploads = store.multipart_progress(MULTIPART_LISTED)?;
    for upload in &mut uploads {
        upload.key = scrub.name(&upload.key);
    }
    Ok(json!({ "count": uploads.len(), "uploads": uploads }))
}

fn watched_folders(settings: &WatchSettings, live: Option<&WatchStatus>, scrub: &Scrubber) -> Value {
    let folders: Vec<Value> = settings
        .folders
        .iter()
        .map(|folder| {
            json!({
                "path": scrub.name(&folder.path.display().to_string()),
                "exists": folder.path.is_dir(),
                "paused": folder.options.paused,
                "polling": folder.options.polling,
            })
        })
        .collect();
    let mut live = live.map(|s| serde_json::to_value(s).unwrap_or(Value::Null));
    if let Some(live) = &mut live {
        name_fields(live, scrub);
    }
    json!({ "configured": folders, "running": live })
}

/// The newest log files, whole or their ends, within [`LOG_BUDGET`].
fn last_logs(dir: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == crate::logging::LOG_SUFFIX))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    let mut budget = LOG_BUDGET;
    let mut logs = Vec::new();
    // Each program keeps KEEP_DAYS files; three programs (desktop, cli, watch) at most.
    for (_, path) in files.into_iter().take(KEEP_DAYS * 3) {
        if budget == 0 {
            break;
        }
        let Ok(text) = tail(&path, budget) else { continue };
        budget = budget.saturating_sub(text.len() as u64);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        logs.push((name, text));
    }
    logs
}

fn tail(path: &Path, at_most: u64) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > at_most {
        file.seek(SeekFrom::Start(len - at_most))?;
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The first thing to read: what was tested and what failed, in words.
fn summary(
    about: &Value,
    probes: &[Probe],
    failures: &Value,
    outbox: &Value,
    multipart: &Value,
    watch: &Value,
) -> String {
    let mut text = String::new();
    let line = |text: &mut String, s: String| {
        text.push_str(&s);
        text.push('\n');
    };
    line(&mut text, format!("Dropship diagnostics — {}", about["created_at"].as_str().unwrap_or("")));
    line(
        &mut text,
        format!(
            "Dropship {} ({}) on {} {} ({})",
            about["dropship_version"].as_str().unwrap_or("?"),
            about["program"].as_str().unwrap_or("?"),
            about["os"].as_str().unwrap_or("?"),
            about["arch"].as_str().unwrap_or("?"),
            about["os_release"].as_str().unwrap_or("release unknown"),
        ),
    );
    line(&mut text, String::new());
    line(&mut text, "Connection tests".into());
    for probe in probes {
        let verdict = if probe.ok { "OK    " } else { "FAILED" };
        line(
            &mut text,
            format!("  {verdict} {} {} ({} ms): {}", probe.what, probe.target, probe.elapsed_ms, probe.result),
        );
    }
    line(&mut text, String::new());
    line(&mut text, format!("Uploads by status: {}", about["uploads_by_status"]));
    line(&mut text, format!("Recent failures: {} (failures.json)", failures["count"]));
    let mut codes: Vec<&str> =
        failures["failures"].as_array().into_iter().flatten().filter_map(|f| f["error_code"].as_str()).collect();
    codes.sort_unstable();
    codes.dedup();
    if !codes.is_empty() {
        line(&mut text, format!("  error codes: {}", codes.join(", ")));
    }
    line(
        &mut text,
        format!(
            "Completion reports not acknowledged: {} ({} rejected) (outbox.json)",
            outbox["count"], outbox["rejected"]
        ),
    );
    line(&mut text, format!("Resumable multipart uploads: {} (multipart.json)", multipart["count"]));
    line(&mut text, format!("Watched folders: {} (watch.json)", watch["configured"].as_array().map_or(0, Vec::len)));
    line(&mut text, String::new());
    line(
        &mut text,
        "Never in this bundle: the access token, sign-in tokens, passwords, presigned URLs or their \
         signatures, the files themselves. With --hash-names, file names and paths appear only as \
         name-<12 hex digits> (the start of their SHA-256)."
            .into(),
    );
    text
}

/// Written beside the destination and renamed into place, readable by the owner only: a
/// failed bundle leaves nothing half-written, and the logs in it stay private.
fn write_zip(out: &Path, entries: &[(String, Vec<u8>)]) -> std::io::Result<()> {
    use zip::write::SimpleFileOptions;
    let mut partial = out.as_os_str().to_owned();
    partial.push(".part");
    let partial = PathBuf::from(partial);
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let result = (|| {
        let mut zip = zip::ZipWriter::new(open.open(&partial)?);
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(zip_time())
            .unix_permissions(0o600);
        for (name, bytes) in entries {
            zip.start_file(name.as_str(), options).map_err(std::io::Error::other)?;
            zip.write_all(bytes)?;
        }
        zip.finish().map_err(std::io::Error::other)?.sync_all()?;
        std::fs::rename(&partial, out)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// Now, in the zip's own format (the `zip` crate's `time` feature is left out to keep it small).
fn zip_time() -> zip::DateTime {
    let now = time::OffsetDateTime::now_utc();
    zip::DateTime::from_date_and_time(
        now.year() as u16,
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
    )
    .unwrap_or_default()
}
