//! Signed self-updates (tauri-plugin-updater): asks the organisation's update source (see
//! `dropship_core::updates`), downloads what is newer, and keeps it until *Restart to update*
//! in Settings or the tray. The plugin verifies the download against the organisation's public
//! key and the version it was signed for before anything is kept; a download that does not
//! verify is refused and said so. Checked at start and once a day when the source allows it.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dropship_core::network::ProxySetting;
use dropship_core::updates::{UpdateSource, UpdateState, UpdateStatus};
use dropship_core::{Engine, ErrorInfo};
use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Emitter, Manager};
use tauri_plugin_updater::{Update, UpdaterExt};

/// Carries an [`UpdateState`] each time it changes.
pub const UPDATE_EVENT: &str = "dropship://update";
/// Long enough after start that the window and the first uploads come first.
const FIRST_CHECK_AFTER: Duration = Duration::from_secs(60);
const CHECK_EVERY: Duration = Duration::from_secs(24 * 3600);

/// The public half of the organisation's `tauri signer` key, built in by `scripts/package`.
/// A build without one cannot update itself.
fn update_key() -> Option<String> {
    if let Some(key) = option_env!("DROPSHIP_UPDATER_PUBKEY").filter(|k| !k.trim().is_empty()) {
        return Some(key.trim().to_owned());
    }
    // Development builds (and the window tests) may bring a key of their own at run time; a
    // release build never takes its trust from the environment.
    #[cfg(debug_assertions)]
    if let Some(key) = std::env::var("DROPSHIP_UPDATER_PUBKEY").ok().filter(|k| !k.trim().is_empty()) {
        return Some(key.trim().to_owned());
    }
    None
}

pub struct Updates {
    status: Mutex<UpdateStatus>,
    /// When the automatic check is due next, once [`check_periodically`] has decided.
    next_check: Mutex<Option<SystemTime>>,
    /// When it was due in the process before a restart in the tray, until taken.
    carried_next_check: Mutex<Option<SystemTime>>,
    /// The verified download, waiting for *Restart to update*.
    ready: Mutex<Option<(Update, Vec<u8>)>>,
    /// One check at a time: a second *Check for updates* while one runs does nothing.
    running: tokio::sync::Mutex<()>,
}

/// What a restart in the tray (see `tray_restart`) carries from one process to the next.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CarriedUpdates {
    status: UpdateStatus,
    /// Seconds since the Unix epoch.
    next_check: Option<u64>,
}

impl Updates {
    pub fn new(carried: Option<&CarriedUpdates>) -> Updates {
        let status = match (update_key(), carried) {
            (Some(_), Some(carried)) => carried.status.clone(),
            (Some(_), None) => UpdateStatus::NotChecked,
            (None, _) => UpdateStatus::Unavailable {
                reason: "This copy of Dropship was built without an update key, so it cannot update itself; \
                         your IT department installs new versions."
                    .into(),
            },
        };
        let next_check = carried.and_then(|c| c.next_check).map(|secs| UNIX_EPOCH + Duration::from_secs(secs));
        Updates {
            status: Mutex::new(status),
            next_check: Mutex::new(None),
            carried_next_check: Mutex::new(next_check),
            ready: Mutex::new(None),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// What the next process must know to go on as this one would; `None` while a check or a
    /// download runs, or a downloaded update waits for its restart: those live in this process.
    pub fn to_carry(&self) -> Option<CarriedUpdates> {
        let status = self.status();
        if matches!(status, UpdateStatus::Checking | UpdateStatus::Downloading { .. } | UpdateStatus::Ready { .. }) {
            return None;
        }
        let next_check = *self.next_check.lock().unwrap_or_else(|p| p.into_inner());
        let next_check = next_check.and_then(|at| at.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs());
        Some(CarriedUpdates { status, next_check })
    }

    /// Waits until the automatic check is due: `first` from now, unless a restart carried an
    /// earlier schedule, which is kept (so closing the window does not put the daily check off).
    async fn wait_for_check(&self, first: Duration) {
        let carried = self.carried_next_check.lock().unwrap_or_else(|p| p.into_inner()).take();
        let due = carried.unwrap_or_else(|| SystemTime::now() + first);
        *self.next_check.lock().unwrap_or_else(|p| p.into_inner()) = Some(due);
        tokio::time::sleep(due.duration_since(SystemTime::now()).unwrap_or_default()).await;
    }

    fn status(&self) -> UpdateStatus {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

pub fn state(app: &AppHandle) -> UpdateState {
    let source =
        app.try_state::<Engine>().and_then(|engine| UpdateSource::load(engine.data_dir()).ok()).unwrap_or_default();
    UpdateState {
        current_version: app.package_info().version.to_string(),
        status: app.state::<Updates>().status(),
        source,
    }
}

fn set(app: &AppHandle, status: UpdateStatus) {
    *app.state::<Updates>().status.lock().unwrap_or_else(|p| p.into_inner()) = status.clone();
    let _ = app.emit(UPDATE_EVENT, state(app));
    crate::tray::show_update(app, &status);
}

/// Checks the source and downloads a newer version, verified; the outcome is in the status.
pub async fn check(app: &AppHandle) {
    let updates = app.state::<Updates>();
    if matches!(updates.status(), UpdateStatus::Unavailable { .. }) {
        return;
    }
    let Ok(_one_at_a_time) = updates.running.try_lock() else { return };
    if matches!(updates.status(), UpdateStatus::Ready { .. }) {
        // Downloaded already: installed on restart; a newer one would be found after it.
        return;
    }
    set(app, UpdateStatus::Checking);
    let status = match check_and_download(app).await {
        Ok(status) => status,
        Err(failure) => {
            tracing::warn!(code = %failure.code, "update check failed: {}", failure.message);
            UpdateStatus::Failed { code: failure.code, message: failure.message }
        }
    };
    set(app, status);
}

async fn check_and_download(app: &AppHandle) -> Result<UpdateStatus, ErrorInfo> {
    let key = update_key().ok_or_else(|| failure("update_unavailable", "this build has no update key"))?;
    let engine = app.state::<Engine>();
    let settings = engine.settings();
    let source = UpdateSource::load(engine.data_dir()).map_err(|e| e.info())?;
    let endpoint = source.endpoint(settings.as_ref().map_or("", |s| s.backend_url.as_str())).map_err(|e| e.info())?;
    let url: url::Url =
        endpoint.parse().map_err(|e| failure("invalid_settings", &format!("the update URL {endpoint}: {e}")))?;
    let mut builder = app.updater_builder().pubkey(key).timeout(Duration::from_secs(120));
    builder = match settings.as_ref().map(|s| &s.network.proxy) {
        Some(ProxySetting::None) => builder.no_proxy(),
        Some(manual @ ProxySetting::Manual { .. }) => match manual_proxy_url(manual) {
            Some(proxy) => builder.proxy(proxy),
            None => builder,
        },
        // The desktop's proxy is read from the environment by the updater's client.
        _ => builder,
    };
    let updater = builder.endpoints(vec![url.clone()]).and_then(|b| b.build()).map_err(|e| explain(&e, None))?;
    // Without any password or query an organisation may have put in the URL.
    tracing::info!(endpoint = %dropship_core::backend::redact_url(&url), "checking for updates");
    let Some(update) = updater.check().await.map_err(|e| explain(&e, None))? else {
        let checked_at =
            time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        return Ok(UpdateStatus::UpToDate { checked_at });
    };
    let version = update.version.clone();
    let notes = update.body.clone();
    tracing::info!(version = %version, "downloading an update");
    set(app, UpdateStatus::Downloading { version: version.clone(), percent: None });
    let progress_app = app.clone();
    let (mut received, mut shown) = (0u64, None);
    let progress_version = version.clone();
    // `download` checks the signature (and the version it was signed for) before returning.
    let bytes = update
        .download(
            move |chunk, total| {
                received += chunk as u64;
                let percent = total.filter(|t| *t > 0).map(|t| (received.min(t) * 100 / t) as u8);
                if percent != shown {
                    shown = percent;
                    set(&progress_app, UpdateStatus::Downloading { version: progress_version.clone(), percent });
                }
            },
            || {},
        )
        .await
        .map_err(|e| explain(&e, Some(&version)))?;
    tracing::info!(version = %version, bytes = bytes.len(), "update downloaded and its signature verified");
    *app.state::<Updates>().ready.lock().unwrap_or_else(|p| p.into_inner()) = Some((update, bytes));
    Ok(UpdateStatus::Ready { version, notes })
}

/// Installs the verified download and starts the new version; uploads that were running carry
/// on after the restart from where they stopped.
pub fn restart_to_update(app: &AppHandle) -> Result<(), ErrorInfo> {
    let ready = app.state::<Updates>().ready.lock().unwrap_or_else(|p| p.into_inner()).take();
    let Some((update, bytes)) = ready else {
        return Err(failure("update_not_ready", "There is no downloaded update to install; check for updates first."));
    };
    if !installed_as_a_self_updating_package() {
        let error = explain(&tauri_plugin_updater::Error::InvalidUpdaterFormat, Some(&update.version));
        set(app, UpdateStatus::Failed { code: error.code.clone(), message: error.message.clone() });
        return Err(error);
    }
    tracing::info!(version = %update.version, "installing the update and restarting");
    if let Err(e) = update.install(&bytes) {
        let error = explain(&e, Some(&update.version));
        tracing::warn!(code = %error.code, "the update could not be installed: {}", error.message);
        set(app, UpdateStatus::Failed { code: error.code.clone(), message: error.message.clone() });
        return Err(error);
    }
    app.restart()
}

/// On Linux the updater replaces the running file with the download unless the build says it
/// came from a .deb or .rpm; a copy run from elsewhere (a developer's build, a package whose
/// bundle type was not recorded) must not have its binary overwritten.
#[cfg(target_os = "linux")]
fn installed_as_a_self_updating_package() -> bool {
    use tauri::utils::{config::BundleType, platform::bundle_type};
    std::env::var_os("APPIMAGE").is_some() || matches!(bundle_type(), Some(BundleType::Deb | BundleType::Rpm))
}

/// macOS .app bundles and Windows installers update in place through the updater.
#[cfg(not(target_os = "linux"))]
fn installed_as_a_self_updating_package() -> bool {
    true
}

/// At start (after a minute) and once a day, when the organisation's source allows it.
pub fn check_periodically(app: &AppHandle) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        app.state::<Updates>().wait_for_check(FIRST_CHECK_AFTER).await;
        loop {
            let automatic = app
                .try_state::<Engine>()
                .and_then(|engine| UpdateSource::load(engine.data_dir()).ok())
                .is_some_and(|source| source.check_automatically);
            if automatic {
                check(&app).await;
            }
            app.state::<Updates>().wait_for_check(CHECK_EVERY).await;
        }
    });
}

fn manual_proxy_url(proxy: &ProxySetting) -> Option<url::Url> {
    let ProxySetting::Manual { url, username, password } = proxy else { return None };
    let mut parsed = url::Url::parse(url).ok()?;
    if !username.is_empty() {
        parsed.set_username(username).ok()?;
        parsed.set_password(Some(password).filter(|p| !p.is_empty()).map(|p| p.as_str())).ok()?;
    }
    Some(parsed)
}

fn failure(code: &str, message: &str) -> ErrorInfo {
    ErrorInfo { code: code.into(), message: message.into() }
}

/// The updater's errors in a person's words: what happened and what to do.
fn explain(error: &tauri_plugin_updater::Error, version: Option<&str>) -> ErrorInfo {
    use tauri_plugin_updater::Error as E;
    let version = version.map_or_else(|| "The update".to_owned(), |v| format!("Dropship {v}"));
    match error {
        E::Minisign(_) | E::Base64(_) | E::SignatureUtf8(_) => failure(
            "update_signature",
            &format!(
                "{version} was refused: its signature does not match your organisation's update key, so it \
                 may not come from your organisation. Nothing was installed. Tell your IT department."
            ),
        ),
        E::SignedVersionMismatch { signed, announced } => failure(
            "update_signature",
            &format!(
                "The update server announced Dropship {announced} but offered a file signed for {signed}. \
                 Nothing was installed. Tell your IT department."
            ),
        ),
        E::ReleaseNotFound => failure(
            "update_source",
            "The update server did not answer with an update manifest (is the URL right, and does the backend \
             serve --updates-dir?).",
        ),
        E::TargetNotFound(_) | E::TargetsNotFound(_) => {
            failure("update_source", &format!("The update manifest has no download for this system: {error}."))
        }
        E::Reqwest(_) | E::Network(_) => failure(
            "update_unreachable",
            &format!("Could not reach the update server: {error}. Check the network; Dropship tries again tomorrow."),
        ),
        E::InsecureTransportProtocol => failure(
            "invalid_settings",
            "The update URL must start with https:// so the update cannot be swapped on the way.",
        ),
        E::AuthenticationFailed => failure(
            "update_install",
            "Installing the update needs an administrator's password, which was not given. Nothing was changed.",
        ),
        E::InvalidUpdaterFormat | E::UnsupportedOs | E::UnsupportedArch => failure(
            "update_install",
            &format!(
                "{version} cannot be installed into this copy of Dropship: only the AppImage, .deb and .rpm \
                 packages update themselves. Install the new version from your IT department's download."
            ),
        ),
        other => failure("update_install", &format!("{version} could not be installed: {other}. Nothing was changed.")),
    }
}

#[tauri::command]
pub fn get_update_state(app: AppHandle) -> UpdateState {
    state(&app)
}

/// Checks now (and downloads what is newer); resolves once done, with the outcome.
#[tauri::command]
pub async fn check_for_updates(app: AppHandle) -> UpdateState {
    check(&app).await;
    state(&app)
}

#[tauri::command]
pub fn install_update_and_restart(app: AppHandle) -> Result<(), ErrorInfo> {
    restart_to_update(&app)
}

#[tauri::command]
pub fn save_update_source(
    app: AppHandle,
    engine: tauri::State<'_, Engine>,
    source: UpdateSource,
) -> Result<UpdateState, ErrorInfo> {
    source.save(engine.data_dir()).map_err(|e| e.info())?;
    Ok(state(&app))
}
