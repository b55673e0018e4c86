//! A file in the data folder that Dropship cannot read at start (a `settings.json` cut short, a
//! history database SQLite finds malformed). Instead of refusing to start, the shells say which
//! file and what is wrong, and move it aside on request, keeping it beside the fresh one.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::store::StoreError;
use crate::Error;

/// What the recovery screen shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct DamagedFile {
    /// The damaged file's full path.
    pub path: String,
    /// Its name, as the screen's heading says it.
    pub file_name: String,
    /// What is wrong, as the parser or SQLite said it.
    pub detail: String,
}

impl DamagedFile {
    /// `Some` when `error` is a damaged file in the data folder.
    pub fn from_error(error: &Error) -> Option<DamagedFile> {
        let Error::Damaged { path, detail } = error else { return None };
        let file_name = Path::new(path).file_name().map_or_else(|| path.clone(), |n| n.to_string_lossy().into_owned());
        Some(DamagedFile { path: path.clone(), file_name, detail: detail.clone() })
    }
}

/// A history that cannot be opened because the file is damaged becomes [`Error::Damaged`]; any
/// other failure (a full disk, a lock) stays what it is, since moving the file would not help.
pub fn damaged_or(error: StoreError) -> Error {
    match error.damaged() {
        Some((path, detail)) => Error::Damaged { path: path.to_owned(), detail: detail.to_owned() },
        None => Error::Store(error),
    }
}

/// Renames the damaged file to `<name>.damaged-<UTC timestamp>` (with a database's `-wal` and
/// `-shm` companions, which belong to it), so Dropship starts fresh and nothing is lost.
/// Only a file directly in `data_dir` is moved: the path comes from the app's own error, but a
/// rename is not something to do anywhere else. Returns where it went.
pub fn move_aside(data_dir: &Path, damaged: &DamagedFile) -> Result<PathBuf, Error> {
    let path = PathBuf::from(&damaged.path);
    let in_data_dir = match (path.parent().map(std::fs::canonicalize), std::fs::canonicalize(data_dir)) {
        (Some(Ok(parent)), Ok(dir)) => parent == dir,
        _ => false,
    };
    if !in_data_dir {
        return Err(Error::Internal(format!("{} is not in the data folder {}", path.display(), data_dir.display())));
    }
    let now = time::OffsetDateTime::now_utc();
    let suffix = format!(
        "damaged-{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let aside = PathBuf::from(format!("{}.{suffix}", path.display()));
    std::fs::rename(&path, &aside).map_err(|e| Error::Unreadable {
        path: path.display().to_string(),
        detail: format!("could not rename it to {} ({e})", aside.display()),
    })?;
    for companion in ["-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{companion}", path.display()));
        if from.exists() {
            let to = PathBuf::from(format!("{}{companion}", aside.display()));
            if let Err(e) = std::fs::rename(&from, &to) {
                tracing::warn!("could not move {} aside: {e}", from.display());
            }
        }
    }
    tracing::warn!(from = %path.display(), to = %aside.display(), "moved a damaged file aside");
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HISTORY_FILE, SETTINGS_FILE};

    #[test]
    fn a_settings_file_cut_short_is_named_as_damaged_and_moving_it_aside_lets_dropship_start() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SETTINGS_FILE), br#"{"backend_url": "https://up"#).unwrap();
        let error = crate::Settings::load(dir.path()).unwrap_err();
        assert_eq!(error.code(), "damaged_file", "{error}");
        let damaged = DamagedFile::from_error(&error).expect("a damaged file");
        assert_eq!(damaged.file_name, SETTINGS_FILE);
        assert!(damaged.detail.contains("EOF"), "says what is wrong: {damaged:?}");
        let aside = move_aside(dir.path(), &damaged).unwrap();
        assert!(aside.file_name().unwrap().to_string_lossy().starts_with("settings.json.damaged-"), "{aside:?}");
        assert!(aside.exists(), "the damaged file is kept beside");
        assert!(crate::Settings::load(dir.path()).unwrap().is_none(), "then it starts as on first run");
    }

    #[test]
    fn a_history_cut_short_is_damaged_but_a_locked_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HISTORY_FILE);
        drop(crate::store::Store::open(&path).unwrap());
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len().min(4096) / 2]).unwrap();
        let Err(error) = crate::store::Store::open(&path) else { panic!("a history cut short should not open") };
        let error = damaged_or(error);
        assert_eq!(error.code(), "damaged_file", "{error}");
        let damaged = DamagedFile::from_error(&error).unwrap();
        assert_eq!(damaged.file_name, HISTORY_FILE);
        move_aside(dir.path(), &damaged).unwrap();
        assert!(crate::store::Store::open(&path).is_ok(), "a new history starts");
    }

    #[test]
    fn only_a_file_in_the_data_folder_is_moved() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("x"), b"x").unwrap();
        let damaged = DamagedFile {
            path: elsewhere.path().join("x").display().to_string(),
            file_name: "x".into(),
            detail: String::new(),
        };
        assert!(move_aside(dir.path(), &damaged).is_err());
        assert!(elsewhere.path().join("x").exists(), "left where it is");
    }
}
