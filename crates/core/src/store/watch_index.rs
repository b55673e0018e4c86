//! The watched-folder index (migration 0003): which version of each watched file went up, so
//! catch-up after a restart uploads only what is new or changed. A version counts as uploaded
//! only once the engine said so; until then its row is `sending`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, OptionalExtension};

use super::{now, Store, StoreError};

/// One file as the index remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedFile {
    pub size: u64,
    pub mtime_ns: i64,
    pub content_sha256: Option<String>,
    pub upload_id: Option<String>,
    /// False while an upload of this version was started and not confirmed.
    pub done: bool,
    pub updated_at: String,
}

/// A version of a file, as stat'ed just before it is handed to the engine.
#[derive(Debug, Clone)]
pub struct FileVersion<'a> {
    pub path: &'a Path,
    pub folder: &'a Path,
    pub size: u64,
    pub mtime_ns: i64,
}

impl Store {
    /// Everything the index holds for one watched folder, for a catch-up scan to compare with.
    pub fn watch_index_of_folder(&self, folder: &Path) -> Result<HashMap<PathBuf, IndexedFile>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let read = |e| StoreError::new(&self.path, "could not be read", e);
        let mut statement = conn
            .prepare_cached(
                "SELECT path, size, mtime_ns, content_sha256, upload_id, state, updated_at, path_raw FROM watch_index WHERE folder = ?1",
            )
            .map_err(read)?;
        let rows = statement
            .query_map([folder.to_string_lossy()], |row| {
                Ok((super::path_from_row(row.get(0)?, row.get(7)?), row_to_indexed(row)?))
            })
            .map_err(read)?;
        rows.collect::<Result<_, _>>().map_err(read)
    }

    pub fn watch_index_get(&self, path: &Path) -> Result<Option<IndexedFile>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row(
            "SELECT path, size, mtime_ns, content_sha256, upload_id, state, updated_at FROM watch_index WHERE path = ?1",
            [path.to_string_lossy()],
            row_to_indexed,
        )
        .optional()
        .map_err(|e| StoreError::new(&self.path, "could not be read", e))
    }

    /// Records that uploads of these versions are about to start, in one transaction. A row
    /// already `done` for an older version keeps its hash until the new one is confirmed.
    pub fn watch_index_mark_sending(&self, files: &[FileVersion<'_>]) -> Result<(), StoreError> {
        let at = now();
        self.in_transaction(|tx| {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO watch_index (path, folder, size, mtime_ns, state, updated_at, path_raw)
                 VALUES (?1, ?2, ?3, ?4, 'sending', ?5, ?6)
                 ON CONFLICT (path) DO UPDATE SET folder = ?2, size = ?3, mtime_ns = ?4, state = 'sending', updated_at = ?5, path_raw = ?6",
            )?;
            for file in files {
                upsert.execute(params![
                    file.path.to_string_lossy(),
                    file.folder.to_string_lossy(),
                    file.size as i64,
                    file.mtime_ns,
                    at,
                    super::raw_path(file.path)
                ])?;
            }
            Ok(())
        })
    }

    /// Marks versions uploaded, each with the checksum S3 verified and the history row of its
    /// upload. Only called after the engine reported the file uploaded.
    pub fn watch_index_mark_done(
        &self,
        files: &[(FileVersion<'_>, Option<&str>, Option<&str>)],
    ) -> Result<(), StoreError> {
        let at = now();
        self.in_transaction(|tx| {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO watch_index (path, folder, size, mtime_ns, content_sha256, upload_id, state, updated_at, path_raw)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'done', ?7, ?8)
                 ON CONFLICT (path) DO UPDATE SET folder = ?2, size = ?3, mtime_ns = ?4, content_sha256 = ?5,
                     upload_id = ?6, state = 'done', updated_at = ?7, path_raw = ?8",
            )?;
            for (file, checksum, upload_id) in files {
                upsert.execute(params![
                    file.path.to_string_lossy(),
                    file.folder.to_string_lossy(),
                    file.size as i64,
                    file.mtime_ns,
                    checksum,
                    upload_id,
                    at,
                    super::raw_path(file.path)
                ])?;
            }
            Ok(())
        })
    }

    /// Forgets files (moved away or deleted after upload, or gone): nothing in S3 changes.
    pub fn watch_index_forget(&self, paths: &[&Path]) -> Result<(), StoreError> {
        self.in_transaction(|tx| {
            let mut delete = tx.prepare_cached("DELETE FROM watch_index WHERE path = ?1")?;
            for path in paths {
                delete.execute([path.to_string_lossy()])?;
            }
            Ok(())
        })
    }

    /// The newest upload of `path` from a watched folder that the history records as uploaded
    /// and that started at or after `since` (RFC 3339): settles a `sending` row left by a crash.
    /// Returns its upload id and checksum.
    pub fn uploaded_from_watch_since(
        &self,
        path: &Path,
        since: &str,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row(
            "SELECT upload_id, checksum_sha256 FROM uploads
             WHERE path = ?1 AND source = 'watch' AND status = 'uploaded' AND created_at >= ?2
             ORDER BY created_at DESC LIMIT 1",
            params![path.to_string_lossy(), since],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(|e| StoreError::new(&self.path, "could not be read", e))
    }
}

fn row_to_indexed(row: &rusqlite::Row<'_>) -> rusqlite::Result<IndexedFile> {
    Ok(IndexedFile {
        size: row.get::<_, i64>(1)? as u64,
        mtime_ns: row.get(2)?,
        content_sha256: row.get(3)?,
        upload_id: row.get(4)?,
        done: row.get::<_, String>(5)? == "done",
        updated_at: row.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version<'a>(path: &'a Path, folder: &'a Path, size: u64, mtime_ns: i64) -> FileVersion<'a> {
        FileVersion { path, folder, size, mtime_ns }
    }

    #[test]
    fn a_version_is_done_only_after_it_is_marked_uploaded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.sqlite")).unwrap();
        let (folder, file) = (Path::new("/w"), Path::new("/w/a.pdf"));
        store.watch_index_mark_sending(&[version(file, folder, 3, 10)]).unwrap();
        assert!(!store.watch_index_get(file).unwrap().unwrap().done, "sending is not uploaded");
        store.watch_index_mark_done(&[(version(file, folder, 3, 10), Some("c2hh"), Some("u1"))]).unwrap();
        let row = store.watch_index_get(file).unwrap().unwrap();
        assert!(row.done);
        assert_eq!(row.content_sha256.as_deref(), Some("c2hh"));
        assert_eq!(store.watch_index_of_folder(folder).unwrap().len(), 1);
        assert!(store.watch_index_of_folder(Path::new("/other")).unwrap().is_empty(), "folders are kept apart");
    }

    #[test]
    fn starting_a_new_version_keeps_the_previous_checksum_until_it_is_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.sqlite")).unwrap();
        let (folder, file) = (Path::new("/w"), Path::new("/w/a.pdf"));
        store.watch_index_mark_done(&[(version(file, folder, 3, 10), Some("old"), Some("u1"))]).unwrap();
        store.watch_index_mark_sending(&[version(file, folder, 4, 20)]).unwrap();
        let row = store.watch_index_get(file).unwrap().unwrap();
        assert_eq!((row.size, row.done, row.content_sha256.as_deref()), (4, false, Some("old")));
        store.watch_index_forget(&[file]).unwrap();
        assert!(store.watch_index_get(file).unwrap().is_none());
    }
}
