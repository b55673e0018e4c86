//! Where the desktop app looks for updates of itself: a URL the organisation controls, kept in
//! `updates.json` in the data folder so IT can deploy it beside `settings.json`. Either a
//! static manifest in any HTTPS folder (`…/latest.json`, the format `tauri signer` and the
//! bundler produce), a dynamic endpoint (with `{{target}}`, `{{arch}}`, `{{current_version}}`),
//! or, by default, the backend's own `/updates/{channel}/…` route (`dropship-backend
//! --updates-dir`). What an update is and whether its signature holds is the shell's updater's
//! business; this only says where to ask.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

pub const UPDATES_FILE: &str = "updates.json";

/// The dynamic route `dropship-backend --updates-dir` serves, under the backend's URL.
/// `bundle_type` tells it how this copy was installed, so a .deb install is offered a .deb.
const BACKEND_ROUTE: &str = "updates/{channel}/{{target}}/{{arch}}/{{current_version}}?bundle_type={{bundle_type}}";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(default)]
#[ts(export)]
pub struct UpdateSource {
    /// A manifest or endpoint URL; empty for the backend's `/updates/{channel}/…` route.
    pub url: String,
    /// Which of the backend's rollouts to follow (`stable`, `beta`, …); used only with the
    /// backend's route.
    pub channel: String,
    /// Check when the app starts and once a day, and download what is found (it is installed
    /// only on *Restart to update*).
    pub check_automatically: bool,
}

impl Default for UpdateSource {
    fn default() -> Self {
        UpdateSource { url: String::new(), channel: "stable".into(), check_automatically: true }
    }
}

impl UpdateSource {
    /// The saved source, or the default when there is none. A damaged file is an error: an
    /// organisation that set a source must not silently fall back to another one.
    pub fn load(data_dir: &Path) -> Result<UpdateSource, Error> {
        let path = data_dir.join(UPDATES_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<UpdateSource>(&bytes).map_err(|e| {
                Error::InvalidSettings(format!("{} cannot be read ({e}); fix or delete it", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UpdateSource::default()),
            Err(e) => Err(Error::InvalidSettings(format!("{} cannot be read: {e}", path.display()))),
        }
    }

    pub fn save(&self, data_dir: &Path) -> Result<(), Error> {
        self.validate()?;
        crate::config::write_json_file(data_dir, UPDATES_FILE, self, UPDATES_FILE)
    }

    pub fn validate(&self) -> Result<(), Error> {
        let channel_ok = !self.channel.is_empty()
            && self.channel.len() <= 32
            && self.channel.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !channel_ok {
            return Err(Error::InvalidSettings(format!(
                "the update channel {:?} is not a channel name: use lower-case letters, digits and -, like stable or beta",
                self.channel
            )));
        }
        let url = self.url.trim();
        if !url.is_empty() {
            let parsed = url::Url::parse(url)
                .map_err(|e| Error::InvalidSettings(format!("the update URL {url:?} is not a URL ({e})")))?;
            if !matches!(parsed.scheme(), "https" | "http") {
                return Err(Error::InvalidSettings(format!(
                    "the update URL {url:?} must start with https:// (an organisation's web server)"
                )));
            }
        }
        Ok(())
    }

    /// The URL the updater asks, its `{{…}}` placeholders left for the updater to fill in.
    pub fn endpoint(&self, backend_url: &str) -> Result<String, Error> {
        self.validate()?;
        let url = self.url.trim();
        if !url.is_empty() {
            return Ok(url.to_owned());
        }
        if backend_url.trim().is_empty() {
            return Err(Error::InvalidSettings(
                "there is no backend to ask for updates: set the backend in Settings, or an update URL".into(),
            ));
        }
        let route = BACKEND_ROUTE.replace("{channel}", &self.channel);
        Ok(format!("{}/{route}", backend_url.trim().trim_end_matches('/')))
    }
}

/// What the window and the tray show about updates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(tag = "state", rename_all = "snake_case")]
#[ts(export)]
pub enum UpdateStatus {
    /// This build cannot update itself (no update key was built in): IT installs new versions.
    Unavailable {
        reason: String,
    },
    /// Not checked since the app started.
    NotChecked,
    Checking,
    /// `checked_at`: RFC 3339.
    UpToDate {
        checked_at: String,
    },
    Downloading {
        version: String,
        percent: Option<u8>,
    },
    /// Downloaded and its signature verified; installed on *Restart to update*.
    Ready {
        version: String,
        notes: Option<String>,
    },
    /// The check, the download or the install failed, or the update was refused.
    Failed {
        code: String,
        message: String,
    },
}

/// The running version beside what is known of the next one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct UpdateState {
    pub current_version: String,
    pub status: UpdateStatus,
    pub source: UpdateSource,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_default_the_backend_serves_the_stable_channel() {
        let source = UpdateSource::default();
        assert!(source.check_automatically);
        assert_eq!(
            source.endpoint("https://uploads.example.com/").unwrap(),
            "https://uploads.example.com/updates/stable/{{target}}/{{arch}}/{{current_version}}?bundle_type={{bundle_type}}"
        );
        let beta = UpdateSource { channel: "beta".into(), ..UpdateSource::default() };
        assert_eq!(
            beta.endpoint("https://uploads.example.com/api").unwrap(),
            "https://uploads.example.com/api/updates/beta/{{target}}/{{arch}}/{{current_version}}?bundle_type={{bundle_type}}"
        );
    }

    #[test]
    fn an_organisations_own_folder_is_asked_as_given() {
        let source = UpdateSource { url: " https://it.example.com/dropship/latest.json ".into(), ..Default::default() };
        assert_eq!(source.endpoint("https://backend").unwrap(), "https://it.example.com/dropship/latest.json");
    }

    #[test]
    fn unusable_sources_are_refused_with_what_to_write() {
        for (url, channel, says) in [
            ("", "Stable", "channel"),
            ("", "../x", "channel"),
            ("", "", "channel"),
            ("it.example.com/latest.json", "stable", "not a URL"),
            ("ftp://it.example.com/latest.json", "stable", "https://"),
        ] {
            let source = UpdateSource { url: url.into(), channel: channel.into(), check_automatically: true };
            let error = source.endpoint("https://backend").unwrap_err().to_string();
            assert!(error.contains(says), "{url:?}/{channel:?}: {error}");
        }
        let error = UpdateSource::default().endpoint("").unwrap_err().to_string();
        assert!(error.contains("no backend"), "{error}");
    }

    #[test]
    fn a_saved_source_is_read_back_and_a_damaged_file_is_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(UpdateSource::load(dir.path()).unwrap(), UpdateSource::default());
        let source = UpdateSource { url: String::new(), channel: "beta".into(), check_automatically: false };
        source.save(dir.path()).unwrap();
        assert_eq!(UpdateSource::load(dir.path()).unwrap(), source);
        // IT may deploy only the field it cares about.
        std::fs::write(dir.path().join(UPDATES_FILE), br#"{"channel":"pilot"}"#).unwrap();
        assert_eq!(UpdateSource::load(dir.path()).unwrap().channel, "pilot");
        std::fs::write(dir.path().join(UPDATES_FILE), b"{ channel").unwrap();
        assert!(UpdateSource::load(dir.path()).unwrap_err().to_string().contains("updates.json"));
    }
}
