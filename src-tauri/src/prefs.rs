//! The window's own preferences, held in memory so the event forwarder reads them without
//! touching the disk, and saved to the data directory on change (applied at once).

use std::path::Path;
use std::sync::RwLock;

use dropship_core::{Error, WindowPrefs};

pub struct Prefs(RwLock<WindowPrefs>);

impl Prefs {
    pub fn load(data_dir: &Path) -> Prefs {
        Prefs(RwLock::new(WindowPrefs::load(data_dir)))
    }

    pub fn get(&self) -> WindowPrefs {
        *self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set(&self, data_dir: &Path, next: WindowPrefs) -> Result<(), Error> {
        next.save(data_dir)?;
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }
}
