//! What a person sets per watched folder. Kept in its own file in the data directory
//! (`watched-folders.json`) rather than in `settings.json`, so a settings form that does not
//! know about watched folders can never wipe them by saving.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;

pub const WATCH_FILE: &str = "watched-folders.json";

/// Names that are never a finished file someone means to upload: OS litter, Office lock files,
/// and the temporary names browsers and editors write under before renaming.
pub const DEFAULT_IGNORE: &[&str] = &[
    ".DS_Store",
    "Thumbs.db",
    "desktop.ini",
    "~$*",
    ".~lock.*#",
    "*.tmp",
    "*.temp",
    "*.part",
    "*.partial",
    "*.crdownload",
    "*.download",
    "*.swp",
    "*.swx",
    "*~",
];

/// How long a file's size and modification time must stay put before it counts as complete.
pub const DEFAULT_STABLE_FOR_MS: u64 = 1000;
/// How often a folder that cannot use inotify is walked for changes.
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 2000;

/// The watched folders as saved. The window never sees this: it gets [`super::FolderView`]s
/// and names folders by their id (see `watch/edit.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchSettings {
    #[serde(default)]
    pub folders: Vec<WatchedFolder>,
    /// Quiet time before a file counts as complete, in milliseconds.
    #[serde(default = "default_stable_for_ms")]
    pub stable_for_ms: u64,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings { folders: Vec::new(), stable_for_ms: DEFAULT_STABLE_FOR_MS }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchedFolder {
    /// Opaque and kept in the file, so the window can name the folder without naming a path.
    /// Files saved before ids existed get fresh ones when read (saved with the next change).
    #[serde(default = "new_folder_id")]
    pub id: String,
    pub path: PathBuf,
    /// Saved beside `id` and `path` (the file keeps its flat shape).
    #[serde(flatten)]
    pub options: FolderOptions,
}

/// What a person may change about a watched folder: everything but where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct FolderOptions {
    /// A folder in the bucket for this folder's files (`scans/2026`): the native backend puts
    /// their keys under it, below its own prefix. The rails and companion APIs have no such
    /// field, so there it is not used.
    #[serde(default)]
    pub key_prefix: String,
    /// Gitignore-style patterns: `*.tmp` matches a name anywhere, `raw/` a folder anywhere,
    /// `/exports/*.csv` is anchored to the watched folder.
    #[serde(default = "default_ignore")]
    pub ignore: Vec<String>,
    /// Upload names starting with a dot (and what is inside such folders).
    #[serde(default)]
    pub include_hidden: bool,
    /// Stop uploading from this folder until resumed; what arrives meanwhile goes up then.
    #[serde(default)]
    pub paused: bool,
    /// Walk the folder every few seconds instead of asking the OS for changes: for network
    /// shares, whose changes made on other machines inotify never hears about.
    #[serde(default)]
    pub polling: bool,
    #[serde(default)]
    pub after_upload: AfterUpload,
}

/// What happens to a local file once its upload is verified. Nothing is ever deleted in S3.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ts_rs::TS)]
#[serde(tag = "action", rename_all = "snake_case")]
#[ts(export)]
pub enum AfterUpload {
    #[default]
    Keep,
    /// Move it into this sub-folder of the watched folder (which is then never watched).
    MoveTo {
        subfolder: String,
    },
    Delete,
}

impl Default for FolderOptions {
    /// The default rules a new folder starts with.
    fn default() -> Self {
        FolderOptions {
            key_prefix: String::new(),
            ignore: default_ignore(),
            include_hidden: false,
            paused: false,
            polling: false,
            after_upload: AfterUpload::Keep,
        }
    }
}

fn new_folder_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn default_ignore() -> Vec<String> {
    DEFAULT_IGNORE.iter().map(|p| (*p).to_owned()).collect()
}

fn default_stable_for_ms() -> u64 {
    DEFAULT_STABLE_FOR_MS
}

impl WatchedFolder {
    /// A folder with the default rules.
    pub fn new(path: impl Into<PathBuf>) -> WatchedFolder {
        WatchedFolder { id: new_folder_id(), path: path.into(), options: FolderOptions::default() }
    }
}

impl WatchSettings {
    pub fn stable_for(&self) -> Duration {
        Duration::from_millis(self.stable_for_ms)
    }

    /// Checks what a person can get wrong, with a message that says what to fix.
    pub fn validate(&self) -> Result<(), Error> {
        for (i, folder) in self.folders.iter().enumerate() {
            let shown = folder.path.display();
            if !folder.path.is_absolute() {
                return Err(Error::InvalidSettings(format!(
                    "the watched folder {shown:?} must be a full path, such as /home/me/Scans"
                )));
            }
            if self.folders[..i].iter().any(|f| f.id == folder.id) {
                return Err(Error::InvalidSettings(format!(
                    "two watched folders have the id {:?}; remove one of them from {WATCH_FILE}",
                    folder.id
                )));
            }
            if self.folders[..i].iter().any(|f| folder.path.starts_with(&f.path) || f.path.starts_with(&folder.path)) {
                return Err(Error::InvalidSettings(format!(
                    "the watched folder {shown:?} is inside another watched folder, or holds one; watch only the outer one"
                )));
            }
            super::rules::IgnoreRules::new(folder)?;
            if let AfterUpload::MoveTo { subfolder } = &folder.options.after_upload {
                let plain = !subfolder.is_empty()
                    && Path::new(subfolder).components().all(|c| matches!(c, std::path::Component::Normal(_)));
                if !plain {
                    return Err(Error::InvalidSettings(format!(
                        "the folder to move uploaded files into ({subfolder:?}) must be a plain sub-folder name, such as Uploaded"
                    )));
                }
            }
        }
        if !(100..=60_000).contains(&self.stable_for_ms) {
            return Err(Error::InvalidSettings(format!(
                "the quiet time before upload must be between 100 and 60,000 ms, not {}",
                self.stable_for_ms
            )));
        }
        Ok(())
    }

    /// Reads `watched-folders.json`; the defaults (no folders) when there is none yet.
    pub fn load(data_dir: &Path) -> Result<WatchSettings, Error> {
        let path = data_dir.join(WATCH_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::InvalidSettings(format!(
                    "{} is not valid watched-folder settings ({e}); fix or delete it",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(WatchSettings::default()),
            Err(e) => Err(Error::Unreadable { path: path.display().to_string(), detail: e.to_string() }),
        }
    }

    /// Validates, then writes atomically (temp file and rename).
    pub fn save(&self, data_dir: &Path) -> Result<(), Error> {
        self.validate()?;
        crate::config::write_json_file(data_dir, WATCH_FILE, self, "watched-folder settings")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_saved_with_only_its_path_gets_the_default_rules() {
        let s: WatchSettings = serde_json::from_str(r#"{"folders":[{"path":"/scans"}]}"#).unwrap();
        assert_eq!(s.folders[0].options, FolderOptions::default());
        assert!(!s.folders[0].id.is_empty(), "a folder saved before ids existed gets one");
        assert_eq!(s.stable_for_ms, DEFAULT_STABLE_FOR_MS);
    }

    #[test]
    fn nested_watched_folders_are_refused_with_a_reason() {
        let s = WatchSettings {
            folders: vec![WatchedFolder::new("/scans"), WatchedFolder::new("/scans/2024")],
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().to_string().contains("inside another watched folder"));
    }

    #[test]
    fn settings_round_trip_through_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(WatchSettings::load(dir.path()).unwrap(), WatchSettings::default());
        let mut folder = WatchedFolder::new("/scans");
        folder.options.after_upload = AfterUpload::MoveTo { subfolder: "Uploaded".into() };
        let s = WatchSettings { folders: vec![folder], stable_for_ms: 500 };
        s.save(dir.path()).unwrap();
        assert_eq!(WatchSettings::load(dir.path()).unwrap(), s);
    }
}
