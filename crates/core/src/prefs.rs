//! What only the desktop window cares about (notifications on or off), kept apart from the
//! shared `settings.json` so the CLI's view of the configuration stays the same. Stored as
//! `window.json` in the data directory.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

pub const PREFS_FILE: &str = "window.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(default)]
#[ts(export)]
pub struct WindowPrefs {
    /// One desktop notification when a batch finishes or fails.
    pub notifications: bool,
}

impl Default for WindowPrefs {
    fn default() -> Self {
        WindowPrefs { notifications: true }
    }
}

impl WindowPrefs {
    /// The saved preferences, or the defaults when there are none (or they cannot be read: a
    /// damaged preferences file is not worth refusing to start over).
    pub fn load(data_dir: &Path) -> WindowPrefs {
        std::fs::read(data_dir.join(PREFS_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, data_dir: &Path) -> Result<(), Error> {
        crate::config::write_json_file(data_dir, PREFS_FILE, self, "preferences")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_are_on_until_turned_off_and_stay_off() {
        let dir = tempfile::tempdir().unwrap();
        assert!(WindowPrefs::load(dir.path()).notifications, "on by default");
        WindowPrefs { notifications: false }.save(dir.path()).unwrap();
        assert!(!WindowPrefs::load(dir.path()).notifications);
    }
}
