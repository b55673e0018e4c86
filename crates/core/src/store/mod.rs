//! The local history in SQLite (WAL mode, one connection, one writer): every upload with its
//! path, size, checksum, key, object URL, source, status, timestamps and error.

mod changes;
mod migrate;
mod outbox;
mod resume;
mod summary;
mod watch_index;

pub use changes::{HistoryChanges, CHANGE_POLL_INTERVAL};
pub use outbox::{unix_millis, QueuedReport};
pub use resume::{FileIdentity, FinishedPart, MultipartState, Unfinished};
pub use summary::MultipartProgress;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

pub use watch_index::{FileVersion, IndexedFile};

/// The OS's bytes of a path that is not UTF-8, kept beside its display text (`path`), which
/// cannot lead back to the file; `None` for a UTF-8 path, whose text is exact.
pub(crate) fn raw_path(path: &Path) -> Option<Vec<u8>> {
    if path.to_str().is_some() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Some(path.as_os_str().as_bytes().to_vec())
    }
    #[cfg(not(unix))]
    None
}

/// The path a row names: its raw bytes when it has them, else its text.
pub(crate) fn path_from_row(text: String, raw: Option<Vec<u8>>) -> PathBuf {
    #[cfg(unix)]
    if let Some(raw) = raw {
        use std::os::unix::ffi::OsStringExt;
        return PathBuf::from(std::ffi::OsString::from_vec(raw));
    }
    #[cfg(not(unix))]
    drop(raw);
    PathBuf::from(text)
}

const DAMAGED_HINT: &str = "The file is damaged; move it aside to start a new history.";

#[derive(Debug, Clone, thiserror::Error)]
#[error("The upload history at {path} {action} ({detail}). {hint}")]
pub struct StoreError {
    path: String,
    action: &'static str,
    detail: String,
    hint: &'static str,
}

impl StoreError {
    /// The file is not a database, or one SQLite found malformed (cut short, overwritten):
    /// only moving it aside lets Dropship start. The path and what SQLite said, in that case.
    pub fn damaged(&self) -> Option<(&str, &str)> {
        (self.hint == DAMAGED_HINT).then_some((self.path.as_str(), self.detail.as_str()))
    }

    fn new(path: &Path, action: &'static str, e: rusqlite::Error) -> Self {
        let hint = match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => "Free some disk space and try again.",
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                "Another program holds it locked; close it and try again."
            }
            Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => DAMAGED_HINT,
            Some(
                rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::PermissionDenied,
            ) => "Check that the data folder exists and is writable.",
            _ => "Check that the data folder is writable and not full.",
        };
        StoreError { path: path.display().to_string(), action, detail: e.to_string(), hint }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "lowercase")]
#[ts(export)]
pub enum Source {
    Window,
    Cli,
    Watch,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Window => "window",
            Source::Cli => "cli",
            Source::Watch => "watch",
        }
    }

    /// Reads a source as the history stores it; unknown names count as the CLI's.
    pub fn parse(s: &str) -> Source {
        match s {
            "window" => Source::Window,
            "watch" => Source::Watch,
            _ => Source::Cli,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "lowercase")]
#[ts(export, rename = "HistoryStatus")]
pub enum UploadStatus {
    Queued,
    Uploading,
    /// In S3; the backend has not confirmed the record yet.
    Reporting,
    /// In S3 and recorded by the backend (where the flavour has a report step).
    Uploaded,
    Failed,
}

impl UploadStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadStatus::Queued => "queued",
            UploadStatus::Uploading => "uploading",
            UploadStatus::Reporting => "reporting",
            UploadStatus::Uploaded => "uploaded",
            UploadStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<UploadStatus> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "queued" => UploadStatus::Queued,
            "uploading" => UploadStatus::Uploading,
            "reporting" => UploadStatus::Reporting,
            "uploaded" => UploadStatus::Uploaded,
            "failed" => UploadStatus::Failed,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct HistoryEntry {
    pub upload_id: String,
    pub batch_id: String,
    pub path: String,
    pub file_name: String,
    #[ts(type = "number")]
    pub size: u64,
    pub content_type: String,
    pub checksum_sha256: Option<String>,
    pub key: Option<String>,
    pub object_url: Option<String>,
    pub source: Source,
    pub status: UploadStatus,
    pub error_code: Option<String>,
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub reported_at: Option<String>,
    /// Why the upload started over after an interruption, when it did.
    pub note: Option<String>,
    /// The signed-in person it was uploaded as, as the backend named them.
    pub uploaded_by: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HistoryQuery {
    /// Matches the file name, path or key, case-insensitively.
    pub search: Option<String>,
    pub status: Option<UploadStatus>,
    /// At most this many rows, newest first; 0 means the default of 200.
    #[serde(default)]
    pub limit: usize,
    /// Only uploads from this source (window, CLI, watched folder).
    #[serde(default)]
    pub source: Option<Source>,
    /// Only uploads started at or after this instant (RFC 3339, UTC).
    #[serde(default)]
    pub since: Option<String>,
    /// Only uploads started before this instant (RFC 3339, UTC).
    #[serde(default)]
    pub until: Option<String>,
    /// Skips this many of the newest matches: the window fetches its list page by page as
    /// the person scrolls.
    #[serde(default)]
    pub offset: usize,
}

const MARK_UPLOADING: &str = "UPDATE uploads SET status = 'uploading', checksum_sha256 = ?2, key = ?3, object_url = ?4, updated_at = ?5 WHERE upload_id = ?1";

/// Where a file is about to be sent: see [`Store::mark_all_uploading`].
pub struct Uploading<'a> {
    pub upload_id: &'a str,
    pub checksum: Option<&'a str>,
    pub key: Option<&'a str>,
    pub object_url: &'a str,
}

/// A new row, before anything is sent.
pub struct NewUpload<'a> {
    pub upload_id: &'a str,
    pub batch_id: &'a str,
    pub path: &'a Path,
    pub file_name: &'a str,
    pub size: u64,
    pub content_type: &'a str,
    pub source: Source,
    /// The signed-in person, when the batch runs under a sign-in.
    pub uploaded_by: Option<&'a str>,
}

pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// The engine instance that owns the uploads this store inserts and adopts.
    owner: Option<String>,
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("UTC timestamps format")
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let fail = |action, e| StoreError::new(path, action, e);
        if let Some(parent) = path.parent() {
            if let Err(e) = std::fs::create_dir_all(parent) {
                return Err(StoreError {
                    path: path.display().to_string(),
                    action: "could not be created",
                    detail: e.to_string(),
                    hint: "Check that the data folder is writable.",
                });
            }
        }
        let mut conn = Connection::open(path).map_err(|e| fail("could not be opened", e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| fail("could not be opened", e))?;
        use_wal(&conn).map_err(|e| fail("could not be opened", e))?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(|e| fail("could not be opened", e))?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(|e| fail("could not be opened", e))?;
        migrate::apply(&mut conn).map_err(|e| fail("could not be upgraded", e))?;
        Ok(Store { path: path.to_owned(), conn: Mutex::new(conn), owner: None })
    }

    fn write(&self, sql: &str, params: impl rusqlite::Params) -> Result<(), StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.execute(sql, params).map(drop).map_err(|e| StoreError::new(&self.path, "could not be written", e))
    }

    /// Runs `work` in one transaction: many small writes cost one commit.
    fn in_transaction(
        &self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let fail = |e| StoreError::new(&self.path, "could not be written", e);
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(fail)?;
        work(&tx).map_err(fail)?;
        tx.commit().map_err(fail)
    }

    /// Records a batch's files as queued, all in one transaction.
    pub fn insert_all(&self, uploads: &[NewUpload<'_>]) -> Result<(), StoreError> {
        let at = now();
        self.in_transaction(|tx| {
            let mut insert = tx.prepare_cached(
                "INSERT INTO uploads (upload_id, batch_id, path, file_name, size, content_type, source, status, created_at, updated_at, owner, uploaded_by, path_raw)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8, ?8, ?9, ?10, ?11)",
            )?;
            for upload in uploads {
                insert.execute(params![
                    upload.upload_id,
                    upload.batch_id,
                    upload.path.to_string_lossy(),
                    upload.file_name,
                    upload.size as i64,
                    upload.content_type,
                    upload.source.as_str(),
                    at,
                    self.owner,
                    upload.uploaded_by,
                    raw_path(upload.path)
                ])?;
            }
            Ok(())
        })
    }

    pub fn insert(&self, upload: &NewUpload<'_>) -> Result<(), StoreError> {
        self.insert_all(std::slice::from_ref(upload))
    }

    /// [`Store::mark_uploading`] for many files, in one transaction.
    pub fn mark_all_uploading(&self, files: &[Uploading<'_>]) -> Result<(), StoreError> {
        if files.is_empty() {
            return Ok(());
        }
        let at = now();
        self.in_transaction(|tx| {
            let mut update = tx.prepare_cached(MARK_UPLOADING)?;
            for file in files {
                let object_url = crate::backend::object_url_without_query(file.object_url);
                update.execute(params![file.upload_id, file.checksum, file.key, object_url, at])?;
            }
            Ok(())
        })
    }

    pub fn mark_uploading(
        &self,
        upload_id: &str,
        checksum: Option<&str>,
        key: Option<&str>,
        object_url: &str,
    ) -> Result<(), StoreError> {
        // Whatever a flavour hands over, the history keeps no signature.
        let object_url = crate::backend::object_url_without_query(object_url);
        self.write(MARK_UPLOADING, params![upload_id, checksum, key, object_url, now()])
    }

    pub fn mark_failed(&self, upload_id: &str, code: &str, message: &str) -> Result<(), StoreError> {
        self.write(
            "UPDATE uploads SET status = 'failed', error_code = ?2, error = ?3, updated_at = ?4 WHERE upload_id = ?1",
            params![upload_id, code, message, now()],
        )
    }

    pub fn get(&self, upload_id: &str) -> Result<Option<HistoryEntry>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row(&format!("SELECT {COLUMNS} FROM uploads WHERE upload_id = ?1"), [upload_id], row_to_entry)
            .optional()
            .map_err(|e| StoreError::new(&self.path, "could not be read", e))
    }

    /// Where this upload's local file was, exactly as the OS names it (raw bytes for a name
    /// that is not UTF-8); `None` for an unknown id. The window names uploads, never paths.
    pub fn local_path(&self, upload_id: &str) -> Result<Option<PathBuf>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row("SELECT path, path_raw FROM uploads WHERE upload_id = ?1", [upload_id], |row| {
            Ok(path_from_row(row.get(0)?, row.get(1)?))
        })
        .optional()
        .map_err(|e| StoreError::new(&self.path, "could not be read", e))
    }

    /// The local files of these uploads that failed (cancelled ones included), to upload them
    /// again. Ids that are unknown or did not fail are skipped: only files that were dropped,
    /// picked or watched before ever come back this way, never a path the caller names.
    pub fn failed_paths(&self, upload_ids: &[String]) -> Result<Vec<PathBuf>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let read = |e| StoreError::new(&self.path, "could not be read", e);
        let mut statement = conn
            .prepare_cached("SELECT path, path_raw FROM uploads WHERE upload_id = ?1 AND status = 'failed'")
            .map_err(read)?;
        let mut paths = Vec::new();
        for id in upload_ids {
            let row = statement.query_row([id], |row| Ok(path_from_row(row.get(0)?, row.get(1)?))).optional();
            paths.extend(row.map_err(read)?);
        }
        Ok(paths)
    }

    pub fn history(&self, query: &HistoryQuery) -> Result<Vec<HistoryEntry>, StoreError> {
        let limit = if query.limit == 0 { 200 } else { query.limit.min(100_000) };
        let mut entries = Vec::new();
        self.each_matching(query, limit, query.offset, |entry| entries.push(entry))?;
        Ok(entries)
    }

    /// Writes every upload that `query` matches (its limit ignored), newest first, as CSV with
    /// a header row; returns how many rows were written.
    pub fn export_csv(&self, query: &HistoryQuery, out: &mut dyn std::io::Write) -> Result<usize, StoreError> {
        const HEADER: &str = "upload_id,batch_id,file_name,path,size,content_type,checksum_sha256,key,object_url,source,status,error_code,error,created_at,updated_at,reported_at";
        let failed = |e: std::io::Error| StoreError {
            path: self.path.display().to_string(),
            action: "could not be exported",
            detail: e.to_string(),
            hint: "Check that the folder you chose is writable and not full.",
        };
        writeln!(out, "{HEADER}").map_err(failed)?;
        let mut written = 0;
        let mut io_error = None;
        self.each_matching(query, i64::MAX as usize, 0, |e| {
            if io_error.is_some() {
                return;
            }
            let fields = [
                e.upload_id.as_str(),
                &e.batch_id,
                &e.file_name,
                &e.path,
                &e.size.to_string(),
                &e.content_type,
                e.checksum_sha256.as_deref().unwrap_or(""),
                e.key.as_deref().unwrap_or(""),
                e.object_url.as_deref().unwrap_or(""),
                e.source.as_str(),
                e.status.as_str(),
                e.error_code.as_deref().unwrap_or(""),
                e.error.as_deref().unwrap_or(""),
                &e.created_at,
                &e.updated_at,
                e.reported_at.as_deref().unwrap_or(""),
            ];
            let line = fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",");
            match writeln!(out, "{line}") {
                Ok(()) => written += 1,
                Err(e) => io_error = Some(e),
            }
        })?;
        match io_error {
            Some(e) => Err(failed(e)),
            None => out.flush().map(|()| written).map_err(failed),
        }
    }

    fn each_matching(
        &self,
        query: &HistoryQuery,
        limit: usize,
        offset: usize,
        mut each: impl FnMut(HistoryEntry),
    ) -> Result<(), StoreError> {
        let term = query.search.as_deref().map(str::trim).filter(|s| !s.is_empty());
        let pattern = term.map(|s| format!("%{}%", s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let read = |e| StoreError::new(&self.path, "could not be read", e);
        // A term that few uploads hold is looked up in the trigram index (reading newest first
        // would scan every row to find them); a common one is found by reading newest first,
        // which stops after a page. The LIKE stays in both, so both answer exactly the same.
        let phrase = term.filter(|t| t.chars().count() >= 3).map(|t| format!("\"{}\"", t.replace('"', "\"\"")));
        let phrase = phrase.filter(|phrase| few_match(&conn, phrase));
        let mut statement = conn.prepare_cached(&history_sql(phrase.is_some())).map_err(read)?;
        let nonempty = |s: &Option<String>| s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
        let rows = statement
            .query_map(
                params![
                    pattern,
                    query.status.map(UploadStatus::as_str),
                    limit.min(i64::MAX as usize) as i64,
                    query.source.map(Source::as_str),
                    nonempty(&query.since),
                    nonempty(&query.until),
                    offset.min(i64::MAX as usize) as i64,
                    phrase,
                ],
                row_to_entry,
            )
            .map_err(read)?;
        for row in rows {
            each(row.map_err(read)?);
        }
        Ok(())
    }
}

/// One CSV field (RFC 4180): quoted when it holds a comma, quote or line break. A leading
/// `=`, `+`, `-` or `@` gets a `'` so a spreadsheet shows a file name rather than run it.
fn csv_field(value: &str) -> String {
    let guarded = if value.starts_with(['=', '+', '-', '@']) { format!("'{value}") } else { value.to_owned() };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

/// Switches the database to WAL (a setting the file keeps). The switch needs the database to
/// itself, and SQLite answers "locked" at once rather than waiting, so when the desktop app
/// and the CLI open a fresh data folder together, the loser tries again for a few seconds.
fn use_wal(conn: &Connection) -> rusqlite::Result<()> {
    let mut attempts = 0;
    loop {
        let mode: rusqlite::Result<String> = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0));
        let result = match mode {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(_) => conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0)).map(drop),
            Err(e) => Err(e),
        };
        match result {
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// Above this many matches a search term counts as common (see `each_matching`).
const FEW_MATCHES: i64 = 1000;

/// Whether at most [`FEW_MATCHES`] uploads hold this phrase, by the trigram index (which stops
/// counting there). An index that cannot answer sends the search the plain way.
fn few_match(conn: &Connection, phrase: &str) -> bool {
    conn.prepare_cached("SELECT count(*) FROM (SELECT 1 FROM uploads_search WHERE uploads_search MATCH ?1 LIMIT ?2)")
        .and_then(|mut probe| probe.query_row(params![phrase, FEW_MATCHES + 1], |r| r.get::<_, i64>(0)))
        .is_ok_and(|n| n <= FEW_MATCHES)
}

/// The history's one query. Newest first by reading the time index backwards (see migration
/// 0004): no sort, so the first page costs the same with 100 rows or 100,000. With
/// `by_index`, the candidates are the rows the trigram index finds for the phrase ?8.
fn history_sql(by_index: bool) -> String {
    let candidates = if by_index {
        "rowid IN (SELECT rowid FROM uploads_search WHERE uploads_search MATCH ?8)"
    } else {
        "?8 IS NULL"
    };
    format!(
        "SELECT {COLUMNS} FROM uploads
         WHERE {candidates}
           AND (?1 IS NULL OR file_name LIKE ?1 ESCAPE '\\' OR path LIKE ?1 ESCAPE '\\' OR key LIKE ?1 ESCAPE '\\')
           AND (?2 IS NULL OR status = ?2)
           AND (?4 IS NULL OR source = ?4)
           AND (?5 IS NULL OR created_at >= ?5)
           AND (?6 IS NULL OR created_at < ?6)
         ORDER BY created_at DESC, rowid DESC LIMIT ?3 OFFSET ?7"
    )
}

const COLUMNS: &str = "upload_id, batch_id, path, file_name, size, content_type, checksum_sha256, key, object_url, source, status, error_code, error, created_at, updated_at, reported_at, note, uploaded_by";

fn row_to_entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<HistoryEntry> {
    Ok(HistoryEntry {
        upload_id: row.get(0)?,
        batch_id: row.get(1)?,
        path: row.get(2)?,
        file_name: row.get(3)?,
        size: row.get::<_, i64>(4)? as u64,
        content_type: row.get(5)?,
        checksum_sha256: row.get(6)?,
        key: row.get(7)?,
        object_url: row.get(8)?,
        source: Source::parse(&row.get::<_, String>(9)?),
        status: UploadStatus::parse(&row.get::<_, String>(10)?).unwrap_or(UploadStatus::Failed),
        error_code: row.get(11)?,
        error: row.get(12)?,
        created_at: row.get(13)?,
        updated_at: row.get(14)?,
        reported_at: row.get(15)?,
        note: row.get(16)?,
        uploaded_by: row.get(17)?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn add(store: &Store, id: &str, name: &str) {
        store
            .insert(&NewUpload {
                upload_id: id,
                batch_id: "b",
                path: Path::new(name),
                file_name: name,
                size: 3,
                content_type: "text/plain",
                source: Source::Cli,
                uploaded_by: None,
            })
            .unwrap();
    }

    #[test]
    fn a_chunk_is_marked_uploading_at_once_and_found_by_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.sqlite")).unwrap();
        add(&store, "u1", "a.txt");
        add(&store, "u2", "b.txt");
        let marks = [
            Uploading {
                upload_id: "u1",
                checksum: Some("c2hh"),
                key: Some("uploads/k1/a.txt"),
                object_url: "http://s3/1",
            },
            Uploading { upload_id: "u2", checksum: None, key: Some("uploads/k2/b.txt"), object_url: "http://s3/2" },
        ];
        store.mark_all_uploading(&marks).unwrap();
        for (id, key) in [("u1", "uploads/k1/a.txt"), ("u2", "uploads/k2/b.txt")] {
            let entry = store.get(id).unwrap().unwrap();
            assert_eq!((entry.status, entry.key.as_deref()), (UploadStatus::Uploading, Some(key)));
        }
        let found = store.history(&HistoryQuery { search: Some("k2/b".into()), ..Default::default() }).unwrap();
        assert_eq!(found.iter().map(|e| e.upload_id.as_str()).collect::<Vec<_>>(), ["u2"], "the search index follows");
    }

    #[cfg(unix)]
    #[test]
    fn a_file_name_that_is_not_utf8_is_found_again_by_retry_resume_and_the_watch_index() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.sqlite")).unwrap();
        let folder = dir.path().join("watched");
        let path = folder.join(std::ffi::OsStr::from_bytes(b"scan-\xff\xfe.pdf"));
        let upload = |id: &'static str| NewUpload {
            upload_id: id,
            batch_id: "b",
            path: &path,
            file_name: "scan-\u{fffd}\u{fffd}.pdf",
            size: 3,
            content_type: "application/pdf",
            source: Source::Watch,
            uploaded_by: None,
        };
        store.insert(&upload("failed")).unwrap();
        store.insert(&upload("interrupted")).unwrap();
        store.mark_failed("failed", "network", "down").unwrap();
        assert_eq!(
            store.failed_paths(&["failed".into()]).unwrap(),
            std::slice::from_ref(&path),
            "retry finds the very file"
        );
        let unfinished = store.unfinished_elsewhere().unwrap();
        assert_eq!(unfinished.len(), 1);
        assert_eq!(unfinished[0].path, path, "resume finds the very file");
        let shown = store.get("failed").unwrap().unwrap().path;
        assert!(shown.ends_with("scan-\u{fffd}\u{fffd}.pdf"), "the history shows it readably: {shown}");
        assert_eq!(store.local_path("interrupted").unwrap(), Some(path.clone()), "reveal finds the very file");
        assert_eq!(store.local_path("no-such-upload").unwrap(), None);

        let version = FileVersion { path: &path, folder: &folder, size: 3, mtime_ns: 7 };
        store.watch_index_mark_done(&[(version, Some("c2hh"), Some("failed"))]).unwrap();
        let index = store.watch_index_of_folder(&folder).unwrap();
        assert!(index.contains_key(&path), "the watched-folder index knows the file by its real name: {index:?}");
    }

    #[test]
    fn the_history_keeps_object_urls_without_their_query_string() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.sqlite")).unwrap();
        add(&store, "u1", "a.txt");
        add(&store, "u2", "b.txt");
        let signed = "https://b.s3.example.com/k/a.txt?X-Amz-Signature=abc&X-Amz-Credential=AK#x";
        store.mark_uploading("u1", None, Some("k/a.txt"), signed).unwrap();
        store
            .mark_all_uploading(&[Uploading { upload_id: "u2", checksum: None, key: None, object_url: signed }])
            .unwrap();
        for id in ["u1", "u2"] {
            let url = store.get(id).unwrap().unwrap().object_url.unwrap();
            assert_eq!(
                url, "https://b.s3.example.com/k/a.txt",
                "a signature a backend put in the object URL is not kept"
            );
        }
    }

    #[test]
    fn an_upload_moves_through_its_states_and_keeps_its_details() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.sqlite")).unwrap();
        add(&store, "u1", "a.txt");
        store.mark_uploading("u1", Some("c2hh"), Some("uploads/x/a.txt"), "http://s3/b/uploads/x/a.txt").unwrap();
        store.enqueue_reports(&[("u1", None, "{}".into())]).unwrap();
        store.reports_delivered(&["u1"]).unwrap();
        let entry = store.get("u1").unwrap().unwrap();
        assert_eq!(entry.status, UploadStatus::Uploaded);
        assert_eq!(entry.key.as_deref(), Some("uploads/x/a.txt"));
        assert!(entry.reported_at.is_some());
    }

    #[test]
    fn the_app_and_the_cli_can_open_a_fresh_history_at_the_same_moment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite");
        let openers: Vec<_> = (0..6)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || Store::open(&path).map(drop))
            })
            .collect();
        for opener in openers {
            opener.join().unwrap().expect("every opener gets the history");
        }
    }

    #[test]
    fn history_survives_reopening_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite");
        add(&Store::open(&path).unwrap(), "u1", "a.txt");
        assert_eq!(Store::open(&path).unwrap().history(&HistoryQuery::default()).unwrap().len(), 1);
    }

    #[test]
    fn search_matches_names_literally_and_status_filters() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.sqlite")).unwrap();
        add(&store, "u1", "report_2024.pdf");
        add(&store, "u2", "report-2024.pdf");
        store.mark_failed("u2", "network", "down").unwrap();
        let q = |search: &str, status| HistoryQuery { search: Some(search.into()), status, ..Default::default() };
        assert_eq!(store.history(&q("report_", None)).unwrap().len(), 1, "_ is not a wildcard");
        assert_eq!(store.history(&q("REPORT", Some(UploadStatus::Failed))).unwrap()[0].upload_id, "u2");
    }

    #[test]
    fn a_full_disk_gives_an_error_that_says_so_and_loses_no_earlier_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite");
        let store = Store::open(&path).unwrap();
        add(&store, "kept", "kept.txt");
        // SQLite's own page cap stands in for a full disk: the same SQLITE_FULL error.
        let pages: i64 = store.conn.lock().unwrap().query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        store.conn.lock().unwrap().pragma_update(None, "max_page_count", pages).unwrap();
        let long_name = "x".repeat(4000);
        let error = (0..1000)
            .find_map(|i| {
                let id = format!("u{i}");
                let new = NewUpload {
                    upload_id: &id,
                    batch_id: "b",
                    path: Path::new(&long_name),
                    file_name: &long_name,
                    size: 1,
                    content_type: "text/plain",
                    source: Source::Cli,
                    uploaded_by: None,
                };
                store.insert(&new).err()
            })
            .expect("the capped database fills up");
        assert!(error.to_string().contains("Free some disk space"), "{error}");
        drop(store);
        let reopened = Store::open(&path).unwrap();
        assert!(reopened.get("kept").unwrap().is_some(), "earlier history survives");
    }

    #[test]
    fn a_history_locked_by_another_program_gives_an_error_that_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite");
        let store = Store::open(&path).unwrap();
        add(&store, "kept", "kept.txt");
        store.conn.lock().unwrap().busy_timeout(std::time::Duration::from_millis(200)).unwrap();
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let error = store.mark_failed("kept", "x", "y").expect_err("the write waits, then gives up");
        assert!(error.to_string().contains("Another program holds it locked"), "{error}");
        other.execute_batch("ROLLBACK").unwrap();
        assert_eq!(store.get("kept").unwrap().unwrap().status, UploadStatus::Queued, "nothing was lost");
    }

    #[test]
    fn a_file_that_is_not_a_database_gives_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite");
        std::fs::write(&path, vec![7u8; 4096]).unwrap();
        let err = Store::open(&path).err().expect("garbage is not a history");
        assert!(err.to_string().contains("move it aside"), "{err}");
    }

    #[test]
    fn history_filters_by_source_and_date() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.sqlite")).unwrap();
        add(&store, "u1", "a.txt");
        let all = store.history(&HistoryQuery::default()).unwrap();
        let created = all[0].created_at.clone();
        let by = |q: HistoryQuery| store.history(&q).unwrap().len();
        assert_eq!(by(HistoryQuery { source: Some(Source::Cli), ..Default::default() }), 1);
        assert_eq!(by(HistoryQuery { source: Some(Source::Watch), ..Default::default() }), 0, "another source");
        assert_eq!(by(HistoryQuery { since: Some(created.clone()), ..Default::default() }), 1, "since is inclusive");
        assert_eq!(by(HistoryQuery { until: Some(created), ..Default::default() }), 0, "until is exclusive");
        assert_eq!(by(HistoryQuery { since: Some("2999-01-01T00:00:00Z".into()), ..Default::default() }), 0);
    }

    #[test]
    fn history_pages_follow_on_from_each_other_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.sqlite")).unwrap();
        for i in 0..5 {
            add(&store, &format!("u{i}"), &format!("file-{i}.txt"));
        }
        let page = |offset, limit| -> Vec<String> {
            let q = HistoryQuery { offset, limit, ..Default::default() };
            store.history(&q).unwrap().into_iter().map(|e| e.upload_id).collect()
        };
        assert_eq!(page(0, 2), ["u4", "u3"]);
        assert_eq!(page(2, 2), ["u2", "u1"]);
        assert_eq!(page(4, 2), ["u0"], "the last page is short");
        assert!(page(5, 2).is_empty());
    }

    #[test]
    fn the_newest_page_reads_the_time_index_without_sorting_the_newest_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.sqlite")).unwrap();
        let conn = store.conn.lock().unwrap();
        let mut explain = conn.prepare(&format!("EXPLAIN QUERY PLAN {}", history_sql(false))).unwrap();
        let none = None::<String>;
        let plan: Vec<String> = explain
            .query_map(params![none, none, 40, none, none, none, 0, none], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(plan.iter().any(|step| step.contains("uploads_by_created")), "reads the time index: {plan:?}");
        assert!(!plan.iter().any(|step| step.contains("TEMP B-TREE")), "sorts nothing: {plan:?}");
    }

    #[test]
    fn a_search_finds_the_same_uploads_through_the_trigram_index_as_by_reading_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.sqlite")).unwrap();
        // More than FEW_MATCHES hold "report", so it is read newest first; one holds "report-0042".
        let ids: Vec<String> = (0..1_100).map(|i| format!("u{i}")).collect();
        let names: Vec<String> = (0..1_100).map(|i| format!("Report-{i:04}.pdf")).collect();
        let uploads: Vec<NewUpload<'_>> = ids
            .iter()
            .zip(&names)
            .map(|(id, name)| NewUpload {
                upload_id: id,
                batch_id: "b",
                path: Path::new(name),
                file_name: name,
                size: 1,
                content_type: "application/pdf",
                source: Source::Cli,
                uploaded_by: None,
            })
            .collect();
        store.insert_all(&uploads).unwrap();
        store.mark_uploading("u7", None, Some("scans/2026/quarterly_\"summary\".pdf"), "http://s3/b/k").unwrap();
        let conn = store.conn.lock().unwrap();
        assert!(few_match(&conn, "\"report-0042\""), "one file is a few");
        assert!(!few_match(&conn, "\"report\""), "1,100 are many");
        drop(conn);
        let found = |search: &str| -> Vec<String> {
            let q = HistoryQuery { search: Some(search.into()), limit: 2_000, ..Default::default() };
            store.history(&q).unwrap().into_iter().map(|e| e.upload_id).collect()
        };
        assert_eq!(found("REPORT-0042"), ["u42"], "case-insensitive, by name");
        assert_eq!(found("report").len(), 1_100);
        assert_eq!(found("quarterly_\"summary"), ["u7"], "by key, quotes and _ taken literally");
        assert!(found("quarterly%").is_empty(), "% is not a wildcard");
        let hundreds: Vec<String> = (100..200).rev().map(|i| format!("u{i}")).collect();
        assert_eq!(found("t-01"), hundreds, "newest first");
        store.mark_uploading("u7", None, Some("scans/renamed.pdf"), "http://s3/b/k").unwrap();
        assert!(found("quarterly").is_empty(), "the index follows a changed key");
        assert_eq!(found("renamed"), ["u7"]);
    }

    #[test]
    fn csv_export_quotes_what_needs_quoting_and_defuses_formulas() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.sqlite")).unwrap();
        add(&store, "u1", "a, \"quoted\".txt");
        add(&store, "u2", "=cmd.txt");
        store.mark_failed("u2", "network", "line one\nline two").unwrap();
        let mut out = Vec::new();
        assert_eq!(store.export_csv(&HistoryQuery::default(), &mut out).unwrap(), 2);
        let csv = String::from_utf8(out).unwrap();
        assert!(csv.starts_with("upload_id,batch_id,file_name,"), "a header row first: {csv}");
        assert!(csv.contains("\"a, \"\"quoted\"\".txt\""), "commas and quotes are quoted: {csv}");
        assert!(csv.contains("'=cmd.txt"), "a formula-looking name is defused: {csv}");
        assert!(csv.contains("\"line one\nline two\""), "line breaks stay inside one quoted field: {csv}");
    }
}
