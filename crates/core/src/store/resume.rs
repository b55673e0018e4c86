//! What survives a crash of an upload in progress: which engine owns each unfinished upload,
//! and the state of each multipart upload as its parts finish, so a restart sends only the
//! parts S3 does not hold yet.

use std::path::{Path, PathBuf};

use rusqlite::{params, OptionalExtension};

use super::{now, Store, StoreError, UploadStatus};

/// A multipart upload as it began: where it goes and which file it was cut from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartState {
    pub s3_upload_id: String,
    pub key: String,
    pub object_url: String,
    pub part_size: u64,
    pub file: FileIdentity,
}

/// Enough of a file's metadata to tell that it is still the file an upload began with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    pub size: u64,
    pub mtime_ns: i64,
    /// `None` where the platform has no stable file number.
    pub inode: Option<u64>,
}

impl FileIdentity {
    pub fn of(metadata: &std::fs::Metadata) -> FileIdentity {
        let mtime_ns = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i64);
        #[cfg(unix)]
        let inode = Some(std::os::unix::fs::MetadataExt::ino(metadata));
        #[cfg(not(unix))]
        let inode = None;
        FileIdentity { size: metadata.len(), mtime_ns, inode }
    }

    pub fn read(path: &Path) -> std::io::Result<FileIdentity> {
        std::fs::metadata(path).map(|m| FileIdentity::of(&m))
    }
}

/// A part S3 acknowledged, as recorded the moment it finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedPart {
    pub part_number: u32,
    pub etag: String,
    pub checksum: Option<String>,
    pub size: u64,
}

/// An upload that was not finished, with who was working on it.
#[derive(Debug, Clone)]
pub struct Unfinished {
    pub upload_id: String,
    /// The file, exactly as the OS names it (not UTF-8 perhaps).
    pub path: PathBuf,
    pub status: UploadStatus,
    pub owner: Option<String>,
    pub source: super::Source,
}

impl Store {
    /// This store's writes of new and adopted uploads carry `owner`, the running engine's id.
    pub fn with_owner(mut self, owner: String) -> Store {
        self.owner = Some(owner);
        self
    }

    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    /// Every upload not finished (queued, uploading or waiting for its report), oldest first.
    pub fn unfinished(&self) -> Result<Vec<Unfinished>, StoreError> {
        self.unfinished_owned_by_others(None)
    }

    /// Unfinished uploads other than this store's owner's own: the candidates for a resume,
    /// without reading every upload the running engine has queued itself.
    pub fn unfinished_elsewhere(&self) -> Result<Vec<Unfinished>, StoreError> {
        self.unfinished_owned_by_others(self.owner.as_deref())
    }

    fn unfinished_owned_by_others(&self, me: Option<&str>) -> Result<Vec<Unfinished>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let read = |e| StoreError::new(&self.path, "could not be read", e);
        let mut statement = conn
            .prepare_cached(
                "SELECT upload_id, path, status, owner, source, path_raw FROM uploads
                 WHERE status IN ('queued', 'uploading', 'reporting') AND (?1 IS NULL OR owner IS NOT ?1)
                 ORDER BY created_at, rowid",
            )
            .map_err(read)?;
        let rows = statement
            .query_map([me], |row| {
                Ok(Unfinished {
                    upload_id: row.get(0)?,
                    path: super::path_from_row(row.get(1)?, row.get(5)?),
                    status: UploadStatus::parse(&row.get::<_, String>(2)?).unwrap_or(UploadStatus::Queued),
                    owner: row.get(3)?,
                    source: super::Source::parse(&row.get::<_, String>(4)?),
                })
            })
            .map_err(read)?;
        rows.collect::<Result<_, _>>().map_err(read)
    }

    /// Takes over an interrupted upload for a new batch: the same history row goes on, so a
    /// crash and a restart never leave two rows for one upload.
    /// Returns the status it was adopted in, or `None` when it is no longer unfinished (its
    /// report was delivered meanwhile, say): then there is nothing left to carry on with.
    pub fn adopt(&self, upload_id: &str, batch_id: &str, size: u64) -> Result<Option<UploadStatus>, StoreError> {
        let mut found = None;
        self.in_transaction(|tx| {
            let status: Option<String> = tx
                .query_row(
                    "SELECT status FROM uploads WHERE upload_id = ?1 AND status IN ('queued', 'uploading', 'reporting')",
                    [upload_id],
                    |row| row.get(0),
                )
                .optional()?;
            found = status.as_deref().and_then(UploadStatus::parse);
            if found.is_some() {
                tx.execute(
                    "UPDATE uploads SET owner = ?2, batch_id = ?3, size = ?4, updated_at = ?5,
                            status = CASE status WHEN 'reporting' THEN 'reporting' ELSE 'queued' END,
                            error_code = NULL, error = NULL
                     WHERE upload_id = ?1",
                    params![upload_id, self.owner, batch_id, size as i64, now()],
                )?;
            }
            Ok(())
        })?;
        Ok(found)
    }

    /// Says in history why an upload started over (the file changed, S3 forgot the upload…).
    pub fn note(&self, upload_id: &str, note: &str) -> Result<(), StoreError> {
        self.write(
            "UPDATE uploads SET note = ?2, updated_at = ?3 WHERE upload_id = ?1",
            params![upload_id, note, now()],
        )
    }

    /// Remembers a multipart upload that was just created; forgets any earlier one of this upload.
    pub fn save_multipart(&self, upload_id: &str, state: &MultipartState) -> Result<(), StoreError> {
        self.in_transaction(|tx| {
            tx.execute("DELETE FROM multipart_parts WHERE upload_id = ?1", [upload_id])?;
            tx.execute(
                "INSERT OR REPLACE INTO multipart_state
                   (upload_id, s3_upload_id, key, object_url, part_size, file_size, file_mtime_ns, file_inode, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    upload_id,
                    state.s3_upload_id,
                    state.key,
                    crate::backend::object_url_without_query(&state.object_url),
                    state.part_size as i64,
                    state.file.size as i64,
                    state.file.mtime_ns,
                    state.file.inode.map(|i| i as i64),
                    now()
                ],
            )?;
            Ok(())
        })
    }

    /// Records a part the moment S3 acknowledged it.
    pub fn record_part(&self, upload_id: &str, part: &FinishedPart) -> Result<(), StoreError> {
        self.write(
            "INSERT OR REPLACE INTO multipart_parts (upload_id, part_number, etag, checksum, size) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![upload_id, part.part_number, part.etag, part.checksum, part.size as i64],
        )
    }

    /// The multipart upload this upload had begun, with the parts recorded as finished.
    pub fn multipart(&self, upload_id: &str) -> Result<Option<(MultipartState, Vec<FinishedPart>)>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let read = |e| StoreError::new(&self.path, "could not be read", e);
        let state = conn
            .query_row(
                "SELECT s3_upload_id, key, object_url, part_size, file_size, file_mtime_ns, file_inode
                 FROM multipart_state WHERE upload_id = ?1",
                [upload_id],
                |row| {
                    Ok(MultipartState {
                        s3_upload_id: row.get(0)?,
                        key: row.get(1)?,
                        object_url: row.get(2)?,
                        part_size: row.get::<_, i64>(3)? as u64,
                        file: FileIdentity {
                            size: row.get::<_, i64>(4)? as u64,
                            mtime_ns: row.get(5)?,
                            inode: row.get::<_, Option<i64>>(6)?.map(|i| i as u64),
                        },
                    })
                },
            )
            .optional()
            .map_err(read)?;
        let Some(state) = state else { return Ok(None) };
        let mut statement = conn
            .prepare_cached(
                "SELECT part_number, etag, checksum, size FROM multipart_parts WHERE upload_id = ?1 ORDER BY part_number",
            )
            .map_err(read)?;
        let parts = statement
            .query_map([upload_id], |row| {
                Ok(FinishedPart {
                    part_number: row.get(0)?,
                    etag: row.get(1)?,
                    checksum: row.get(2)?,
                    size: row.get::<_, i64>(3)? as u64,
                })
            })
            .map_err(read)?
            .collect::<Result<_, _>>()
            .map_err(read)?;
        Ok(Some((state, parts)))
    }

    /// Drops a multipart upload's state once it is completed or aborted.
    pub fn forget_multipart(&self, upload_id: &str) -> Result<(), StoreError> {
        self.in_transaction(|tx| {
            tx.execute("DELETE FROM multipart_parts WHERE upload_id = ?1", [upload_id])?;
            tx.execute("DELETE FROM multipart_state WHERE upload_id = ?1", [upload_id])?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::add;
    use super::*;

    fn state() -> MultipartState {
        MultipartState {
            s3_upload_id: "s3-1".into(),
            key: "uploads/x/big.bin".into(),
            object_url: "http://s3/b/uploads/x/big.bin".into(),
            part_size: 8 << 20,
            file: FileIdentity { size: 20 << 20, mtime_ns: 42, inode: Some(7) },
        }
    }

    #[test]
    fn finished_parts_survive_reopening_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite");
        {
            let store = Store::open(&path).unwrap();
            add(&store, "u1", "big.bin");
            store.save_multipart("u1", &state()).unwrap();
            for n in [2, 1] {
                let part = FinishedPart { part_number: n, etag: format!("\"e{n}\""), checksum: None, size: 8 << 20 };
                store.record_part("u1", &part).unwrap();
            }
        }
        let (saved, parts) = Store::open(&path).unwrap().multipart("u1").unwrap().expect("the state is kept");
        assert_eq!(saved, state());
        assert_eq!(parts.iter().map(|p| p.part_number).collect::<Vec<_>>(), [1, 2], "parts come back in order");
    }

    #[test]
    fn a_new_multipart_upload_replaces_the_parts_of_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.sqlite")).unwrap();
        add(&store, "u1", "big.bin");
        store.save_multipart("u1", &state()).unwrap();
        store.record_part("u1", &FinishedPart { part_number: 1, etag: "e".into(), checksum: None, size: 1 }).unwrap();
        store.save_multipart("u1", &MultipartState { s3_upload_id: "s3-2".into(), ..state() }).unwrap();
        let (saved, parts) = store.multipart("u1").unwrap().unwrap();
        assert_eq!(saved.s3_upload_id, "s3-2");
        assert!(parts.is_empty(), "parts of the forgotten upload are gone");
        store.forget_multipart("u1").unwrap();
        assert!(store.multipart("u1").unwrap().is_none());
    }

    #[test]
    fn an_adopted_upload_keeps_its_row_and_gets_the_new_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite");
        add(&Store::open(&path).unwrap().with_owner("old".into()), "u1", "a.txt");
        let store = Store::open(&path).unwrap().with_owner("new".into());
        let unfinished = store.unfinished().unwrap();
        assert_eq!(unfinished.len(), 1);
        assert_eq!(unfinished[0].owner.as_deref(), Some("old"));
        assert_eq!(store.adopt("u1", "b2", 3).unwrap(), Some(UploadStatus::Queued));
        assert_eq!(store.unfinished().unwrap()[0].owner.as_deref(), Some("new"));
        assert_eq!(store.history(&Default::default()).unwrap().len(), 1, "still one row");
        store.enqueue_reports(&[("u1", None, "{}".into())]).unwrap();
        store.reports_delivered(&["u1"]).unwrap();
        assert_eq!(store.adopt("u1", "b3", 3).unwrap(), None, "a finished upload is not taken over");
        assert_eq!(store.get("u1").unwrap().unwrap().status, UploadStatus::Uploaded);
    }
}
