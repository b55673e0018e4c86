//! Settings shared by the desktop app and the CLI: where the signing backend is, which API
//! flavour it speaks, and the token. Stored as `settings.json` in the data directory so both
//! shells see the same configuration and the same history; the token itself lives in the OS
//! keyring (see [`crate::secrets`]) unless the person chose the file when there was none.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::logging::LogLevel;
use crate::network::{NetworkSettings, ProxySetting};
use crate::secrets::{self, SecretsError};
use crate::Error;

pub const SETTINGS_FILE: &str = "settings.json";
pub const HISTORY_FILE: &str = "history.sqlite";
/// The keyring slot of the manual proxy's password, beside the token's entry.
/// The keyring slot of a manual proxy's password.
pub(crate) const PROXY_PASSWORD_SLOT: &str = "proxy";

/// The API a signing backend speaks (see DESIGN.md, "The backend API").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "lowercase")]
#[ts(export)]
pub enum ApiFlavour {
    /// Dropship's own API, served by `dropship-backend`.
    #[default]
    Native,
    /// The two routes of the Rails "secure direct uploads" guide.
    Rails,
    /// Uppy Companion's S3 routes.
    Companion,
}

impl FromStr for ApiFlavour {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "native" => Ok(ApiFlavour::Native),
            "rails" => Ok(ApiFlavour::Rails),
            "companion" => Ok(ApiFlavour::Companion),
            other => {
                Err(Error::InvalidSettings(format!("unknown API flavour {other:?}; use native, rails or companion")))
            }
        }
    }
}

impl fmt::Display for ApiFlavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApiFlavour::Native => "native",
            ApiFlavour::Rails => "rails",
            ApiFlavour::Companion => "companion",
        })
    }
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct Settings {
    pub backend_url: String,
    #[serde(default)]
    pub api: ApiFlavour,
    #[serde(default)]
    pub token: String,
    /// Optional on the wire: a client that omits it keeps the defaults.
    #[serde(default)]
    #[ts(optional, as = "Option<TransferSettings>")]
    pub transfer: TransferSettings,
    /// Hosts that upload URLs may point at (`s3.example.com`, or `.example.com` for a whole
    /// domain); empty allows any. Guards against a backend that hands out URLs elsewhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[ts(optional, as = "Option<Vec<String>>")]
    pub upload_hosts: Vec<String>,
    /// How much the log file keeps; `RUST_LOG` wins when set.
    #[serde(default, skip_serializing_if = "LogLevel::is_default")]
    #[ts(optional, as = "Option<LogLevel>")]
    pub log_level: LogLevel,
    /// Proxy, trusted certificates, and when to hold uploads (metered connection, battery).
    #[serde(default, skip_serializing_if = "NetworkSettings::is_default")]
    #[ts(optional, as = "Option<NetworkSettings>")]
    pub network: NetworkSettings,
}

/// How uploads use the network. The defaults suit a desktop on an office link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(default)]
#[ts(export)]
pub struct TransferSettings {
    /// Uploads in flight at once, across all files and parts; files of 256 KiB or less count as
    /// a quarter each (they wait on round trips, not bandwidth).
    pub concurrency: u32,
    /// Files at least this large go up in parts, in parallel.
    #[ts(type = "number")]
    pub multipart_threshold: u64,
    /// Preferred part size; grown for files that would need more than 10,000 parts. Each part
    /// in flight is held in memory (read once, hashed, sent): 8 MiB parts, half the concurrency
    /// at a time, sent a GiB to SeaweedFS on two cores ahead of one PUT with 50 MiB peak RSS,
    /// where 32 MiB parts, eight at a time, held 274 MiB.
    #[ts(type = "number")]
    pub part_size: u64,
    /// Bytes per second for all uploads together; 0 for no limit.
    #[ts(type = "number")]
    pub bandwidth_limit: u64,
}

impl Default for TransferSettings {
    fn default() -> Self {
        TransferSettings {
            concurrency: 8,
            multipart_threshold: 64 * 1024 * 1024,
            part_size: 8 * 1024 * 1024,
            bandwidth_limit: 0,
        }
    }
}

// The token is a secret: keep it out of debug output and therefore out of logs.
impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("backend_url", &self.backend_url)
            .field("api", &self.api)
            .field("token", &if self.token.is_empty() { "<none>" } else { "<redacted>" })
            .field("upload_hosts", &self.upload_hosts)
            .field("log_level", &self.log_level)
            .field("network", &self.network)
            .finish()
    }
}

impl Settings {
    /// Checks the settings and returns the backend URL parsed, with a message that says what
    /// to fix when it is not usable.
    pub fn validate(&self) -> Result<url::Url, Error> {
        let raw = self.backend_url.trim();
        if raw.is_empty() {
            return Err(Error::NotConfigured);
        }
        let url = url::Url::parse(raw).map_err(|e| {
            Error::InvalidSettings(format!(
                "the backend URL {raw:?} is not a URL ({e}); it should look like https://uploads.example.com"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Error::InvalidSettings(format!(
                "the backend URL {raw:?} must start with http:// or https:// and name a host"
            )));
        }
        if !(1..=64).contains(&self.transfer.concurrency) {
            return Err(Error::InvalidSettings(format!(
                "concurrency must be between 1 and 64, not {}",
                self.transfer.concurrency
            )));
        }
        if self.transfer.part_size < crate::transfer::MIN_PART_SIZE {
            return Err(Error::InvalidSettings("the part size must be at least 5 MiB, S3's minimum".into()));
        }
        if self.token.chars().any(|c| c.is_control()) {
            return Err(Error::InvalidSettings("the token contains control characters".into()));
        }
        self.network.validate()?;
        Ok(url)
    }

    /// Reads `settings.json` from the data directory, with the token from the OS keyring;
    /// `None` when there are no settings yet. A token still in the file from before the keyring
    /// (and not left there on purpose) is moved into the keyring on the way.
    pub fn load(data_dir: &Path) -> Result<Option<Settings>, Error> {
        let Some(OnDisk { mut settings, token_storage }) = read_on_disk(data_dir)? else { return Ok(None) };
        if token_storage == Some(TokenStorage::File) {
            return Ok(Some(settings));
        }
        if !settings.token.is_empty() {
            match secrets::store_token(data_dir, &settings.token) {
                Ok(()) => {
                    let on_disk = OnDisk::new(&settings, TokenStorage::Keyring);
                    write_on_disk(data_dir, &on_disk)?;
                    tracing::info!("moved the access token from settings.json into the system keyring");
                }
                // Nothing is lost: it stays where it was, and Settings says where it is.
                Err(e) => tracing::warn!("the access token stays in settings.json: {e}"),
            }
            return Ok(Some(settings));
        }
        match secrets::load_token(data_dir) {
            Ok(token) => settings.token = token.unwrap_or_default(),
            Err(e) => tracing::warn!("could not read the access token from the system keyring: {e}"),
        }
        if matches!(settings.network.proxy, ProxySetting::Manual { .. }) {
            match secrets::load_secret(data_dir, PROXY_PASSWORD_SLOT) {
                Ok(password) => {
                    settings.network.proxy = settings.network.proxy.with_password(password.unwrap_or_default())
                }
                Err(e) => tracing::warn!("could not read the proxy password from the system keyring: {e}"),
            }
        }
        Ok(Some(settings))
    }

    /// Writes `settings.json` atomically, with the token in the OS keyring. When there is no
    /// keyring, fails with [`Error::KeyringUnavailable`] rather than fall back on its own: the
    /// person decides ([`Settings::save_with_token_in_file`]). Once they agreed, later saves
    /// keep the token in the file.
    pub fn save(&self, data_dir: &Path) -> Result<(), Error> {
        let agreed_to_file =
            read_on_disk(data_dir).ok().flatten().is_some_and(|d| d.token_storage == Some(TokenStorage::File));
        if agreed_to_file {
            return self.save_with_token_in_file(data_dir);
        }
        let keyring_error = |e| match e {
            SecretsError::Unavailable(detail) => Error::KeyringUnavailable(detail),
            SecretsError::Failed(detail) => Error::KeyringFailed(detail),
        };
        secrets::store_token(data_dir, self.token.trim()).map_err(keyring_error)?;
        secrets::store_secret(data_dir, PROXY_PASSWORD_SLOT, self.network.proxy.password()).map_err(keyring_error)?;
        write_on_disk(data_dir, &OnDisk::new(self, TokenStorage::Keyring))
    }

    /// Writes `settings.json` with the token in it, readable by the owner only: what the person
    /// chose when no keyring was available.
    pub fn save_with_token_in_file(&self, data_dir: &Path) -> Result<(), Error> {
        let mut on_disk = OnDisk::new(self, TokenStorage::File);
        on_disk.settings.token = self.token.clone();
        on_disk.settings.network.proxy = self.network.proxy.clone();
        write_on_disk(data_dir, &on_disk)
    }
}

/// Where the access token of a data directory is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum TokenStorage {
    /// In the OS keyring (the normal case).
    Keyring,
    /// In `settings.json`, readable by the owner only: no keyring was available and the person
    /// agreed, or a token from before the keyring that could not be moved yet.
    File,
}

/// Where the token of `data_dir` is kept now; `None` without settings.
pub fn token_storage(data_dir: &Path) -> Result<Option<TokenStorage>, Error> {
    Ok(read_on_disk(data_dir)?.map(|d| {
        if d.token_storage == Some(TokenStorage::File) || !d.settings.token.is_empty() {
            TokenStorage::File
        } else {
            TokenStorage::Keyring
        }
    }))
}

/// `settings.json`: the settings, without the token unless the person chose the file, and
/// where the token is.
#[derive(Serialize, Deserialize)]
struct OnDisk {
    #[serde(flatten)]
    settings: Settings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_storage: Option<TokenStorage>,
}

impl OnDisk {
    /// Without the token and the proxy password; the caller puts them back when they go in the
    /// file.
    fn new(settings: &Settings, token_storage: TokenStorage) -> OnDisk {
        let mut settings = Settings { token: String::new(), ..settings.clone() };
        settings.network.proxy = settings.network.proxy.with_password(String::new());
        OnDisk { settings, token_storage: Some(token_storage) }
    }
}

fn read_on_disk(data_dir: &Path) -> Result<Option<OnDisk>, Error> {
    let path = data_dir.join(SETTINGS_FILE);
    match std::fs::read(&path) {
        // Cut short or overwritten: the person must be able to move it aside, not be stuck.
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::Damaged {
            path: path.display().to_string(),
            detail: format!("not valid settings JSON: {e}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Unreadable { path: path.display().to_string(), detail: e.to_string() }),
    }
}

/// Writes `value` as `data_dir/file` atomically (temp file + rename), so a crash leaves the old
/// file or the new one, never half of one. `what` names it in the error.
pub(crate) fn write_json_file(data_dir: &Path, file: &str, value: &impl Serialize, what: &str) -> Result<(), Error> {
    let unwritable =
        |e: std::io::Error| Error::InvalidSettings(format!("cannot write {what} to {}: {e}", data_dir.display()));
    std::fs::create_dir_all(data_dir).map_err(unwritable)?;
    let tmp = data_dir.join(format!("{file}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(value).expect("settings serialise")).map_err(unwritable)?;
    std::fs::rename(&tmp, data_dir.join(file)).map_err(unwritable)
}

/// Atomically (temp file + rename), readable by the owner only.
fn write_on_disk(data_dir: &Path, on_disk: &OnDisk) -> Result<(), Error> {
    let unwritable =
        |e: std::io::Error| Error::InvalidSettings(format!("cannot write settings to {}: {e}", data_dir.display()));
    create_private_dir(data_dir).map_err(unwritable)?;
    let path = data_dir.join(SETTINGS_FILE);
    let tmp = data_dir.join(format!("{SETTINGS_FILE}.tmp"));
    let json = serde_json::to_vec_pretty(on_disk).expect("settings serialise");
    write_private(&tmp, &json).map_err(unwritable)?;
    std::fs::rename(&tmp, &path).map_err(unwritable)
}

/// The data folder holds the history and maybe the token: readable by its owner only when
/// Dropship creates it (an existing folder keeps the mode someone gave it).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    // `mode` applies only to a file it creates: a temp file left by a crash keeps its own.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// The data directory shared by the desktop app and the CLI: `DROPSHIP_DATA_DIR` when set,
/// else the platform's data directory (`~/.local/share/dropship` on Linux).
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DROPSHIP_DATA_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    dirs::data_dir().unwrap_or_else(|| PathBuf::from(".")).join("dropship")
}

/// Writes `path` atomically (temp file + rename), readable by the owner only: for files that
/// hold a secret when the machine has no keyring.
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    write_private(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_data_folder_is_created_0700_and_settings_are_always_written_0600() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("new/dropship");
        let engine_runtime = tokio::runtime::Runtime::new().unwrap();
        drop(crate::Engine::open(&data, engine_runtime.handle().clone()).unwrap());
        assert_eq!(mode(&data), 0o700, "only its owner may look into the data folder");
        // A temp file left behind by a crash, readable by all, must not make a readable settings file.
        std::fs::write(data.join("settings.json.tmp"), b"").unwrap();
        std::fs::set_permissions(data.join("settings.json.tmp"), std::fs::Permissions::from_mode(0o644)).unwrap();
        settings("https://up.example.com").save_with_token_in_file(&data).unwrap();
        assert_eq!(mode(&data.join("settings.json")), 0o600, "the token may be in it");
    }

    fn settings(url: &str) -> Settings {
        Settings {
            backend_url: url.into(),
            api: ApiFlavour::Native,
            token: "t".into(),
            transfer: Default::default(),
            upload_hosts: Vec::new(),
            log_level: Default::default(),
            network: Default::default(),
        }
    }

    #[test]
    fn an_empty_backend_url_means_not_configured() {
        assert!(matches!(settings("  ").validate(), Err(Error::NotConfigured)));
    }

    #[test]
    fn a_backend_url_without_scheme_is_explained() {
        let err = settings("uploads.example.com").validate().unwrap_err();
        assert!(err.to_string().contains("https://"), "message should show the expected form: {err}");
    }

    #[test]
    fn settings_round_trip_through_the_data_dir_with_the_token_in_the_file_when_chosen() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Settings::load(dir.path()).unwrap().is_none(), "no file yet means no settings");
        let s = Settings { api: ApiFlavour::Rails, ..settings("http://127.0.0.1:8080") };
        s.save_with_token_in_file(dir.path()).unwrap();
        assert_eq!(Settings::load(dir.path()).unwrap(), Some(s.clone()));
        assert_eq!(token_storage(dir.path()).unwrap(), Some(TokenStorage::File));
        // Once chosen, a later save keeps it there instead of asking again.
        let changed = Settings { token: "t2".into(), ..s };
        changed.save(dir.path()).unwrap();
        assert_eq!(Settings::load(dir.path()).unwrap(), Some(changed));
    }

    #[test]
    fn without_a_keyring_saving_asks_instead_of_writing_the_token_to_a_file() {
        if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some() {
            return; // a keyring may well be there; the GUI tests cover that case
        }
        let dir = tempfile::tempdir().unwrap();
        let err = settings("http://x").save(dir.path()).unwrap_err();
        assert_eq!(err.code(), "keyring_unavailable", "{err}");
        assert!(!dir.path().join(SETTINGS_FILE).exists(), "nothing may be written before the person agrees");
    }

    #[test]
    fn a_token_left_in_the_file_from_before_the_keyring_is_still_used() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SETTINGS_FILE), r#"{"backend_url":"http://x","api":"native","token":"old"}"#)
            .unwrap();
        let loaded = Settings::load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.token, "old", "the token must keep working whether or not it could be moved");
    }

    #[test]
    fn settings_saved_before_transfer_settings_existed_still_load() {
        let s: Settings = serde_json::from_str(r#"{"backend_url":"http://x","api":"native","token":"t"}"#).unwrap();
        assert_eq!(s.transfer, TransferSettings::default());
    }

    #[test]
    fn the_token_never_appears_in_debug_output() {
        let s = Settings { token: "s3cr3t".into(), ..settings("http://x") };
        assert!(!format!("{s:?}").contains("s3cr3t"));
    }

    #[test]
    fn flavours_parse_case_insensitively_and_reject_unknown_names() {
        assert_eq!("Rails".parse::<ApiFlavour>().unwrap(), ApiFlavour::Rails);
        assert!("graphql".parse::<ApiFlavour>().is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_as_settings_json_are_read_or_refused_and_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(SETTINGS_FILE), &bytes).unwrap();
            match read_on_disk(dir.path()) {
                Ok(Some(on_disk)) => drop(on_disk.settings.validate()),
                Ok(None) => proptest::prop_assert!(false, "the file is there"),
                Err(e) => proptest::prop_assert_eq!(e.code(), "damaged_file"),
            }
        }

        #[test]
        fn settings_shaped_json_with_any_values_never_panics(url in ".{0,40}", token in ".{0,20}", concurrency in proptest::prelude::any::<u32>()) {
            let dir = tempfile::tempdir().unwrap();
            let json = serde_json::json!({"backend_url": url, "token": token, "token_storage": "file", "transfer": {"concurrency": concurrency}});
            std::fs::write(dir.path().join(SETTINGS_FILE), json.to_string()).unwrap();
            if let Ok(Some(on_disk)) = read_on_disk(dir.path()) {
                let _ = on_disk.settings.validate();
            }
        }
    }
}
