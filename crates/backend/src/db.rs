//! The backend's own SQLite file: numbered migrations and the upload records.
//! One connection behind a mutex is the single writer; WAL lets readers of the file (tests,
//! `sqlite3`) look in while the server runs.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Migrations in order; the database's `user_version` is the number of the last one applied.
/// Append only: a released migration never changes.
const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("../migrations/0001_records.sql")),
    (2, include_str!("../migrations/0002_records_crc32c.sql")),
    (3, include_str!("../migrations/0003_presigned_puts.sql")),
];

/// How long an unreported presigned PUT is remembered; far beyond any URL's expiry.
const PRESIGNED_PUT_RETENTION: time::Duration = time::Duration::days(7);

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database is at schema version {found}, newer than this binary knows ({known}); use a newer dropship-backend")]
    TooNew { found: u32, known: u32 },
    #[error("the database worker stopped unexpectedly")]
    WorkerGone,
}

/// Which API flavour a record came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavour {
    Native,
    Rails,
}

impl Flavour {
    fn as_str(self) -> &'static str {
        match self {
            Flavour::Native => "native",
            Flavour::Rails => "rails",
        }
    }
}

/// One recorded upload, as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// Row id: the rails flavour answers it as `id`; the native API does not show it.
    #[serde(skip)]
    pub id: i64,
    pub client_upload_id: Option<String>,
    pub key: String,
    pub file_name: String,
    pub size: u64,
    pub content_type: String,
    pub checksum_sha256: Option<String>,
    /// Set instead of `checksum_sha256` for a multipart upload made with CRC32C part checksums
    /// (and only shown then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum_crc32c: Option<String>,
    pub object_url: String,
    pub flavour: Flavour,
    pub recorded_at: String,
}

/// The fields of a record before it is stored.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub client_upload_id: Option<String>,
    pub key: String,
    pub file_name: String,
    pub size: u64,
    pub content_type: String,
    pub checksum_sha256: Option<String>,
    pub checksum_crc32c: Option<String>,
    pub object_url: String,
    pub flavour: Flavour,
}

/// A single PUT as the backend signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedPut {
    pub key: String,
    pub checksum_sha256: String,
    pub object_url: String,
}

/// What recording did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    Recorded(Record),
    /// The same upload (same client id and key, or the same key for rails) was recorded before.
    AlreadyRecorded(Record),
    /// The client id is already recorded for another key.
    UploadIdConflict(Record),
    /// The key is already recorded under another client id.
    KeyConflict(Record),
}

/// Handle to the records database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
}

impl Db {
    /// Opens (or creates) the file, switches it to WAL and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        migrate(&mut conn)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Runs `work` on the connection off the async runtime.
    async fn with_conn<T, F>(&self, work: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave SQLite half-written (transactions
            // roll back on drop), so a poisoned lock is still safe to use.
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut guard)
        })
        .await
        .map_err(|_| DbError::WorkerGone)?
    }

    /// Records a native upload, idempotent on its client id.
    pub async fn record_native(&self, new: NewRecord) -> Result<RecordOutcome, DbError> {
        let mut outcomes = self.record_native_all(vec![new]).await?;
        outcomes.pop().ok_or(DbError::WorkerGone)
    }

    /// Records native uploads in one transaction (a batch report's worth), each idempotent on
    /// its client id; one outcome per upload, in order.
    pub async fn record_native_all(&self, news: Vec<NewRecord>) -> Result<Vec<RecordOutcome>, DbError> {
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let outcomes = news.into_iter().map(|new| record_native_in(&tx, new)).collect::<Result<Vec<_>, _>>()?;
            tx.commit()?;
            Ok(outcomes)
        })
        .await
    }

    /// Records a rails upload, idempotent on its key.
    pub async fn record_by_key(&self, new: NewRecord) -> Result<RecordOutcome, DbError> {
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(existing) = select_by(&tx, "key", &new.key)? {
                return Ok(RecordOutcome::AlreadyRecorded(existing));
            }
            let record = insert(&tx, new)?;
            tx.commit()?;
            Ok(RecordOutcome::Recorded(record))
        })
        .await
    }

    /// Remembers what was signed into a batch of single PUTs (one transaction), and forgets
    /// the ones older than [`PRESIGNED_PUT_RETENTION`].
    pub async fn remember_presigned(&self, puts: Vec<PresignedPut>) -> Result<(), DbError> {
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_rfc3339();
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR REPLACE INTO presigned_puts (key, checksum_sha256, object_url, signed_at) \
                     VALUES (?1, ?2, ?3, ?4)",
                )?;
                for put in &puts {
                    insert.execute(params![put.key, put.checksum_sha256, put.object_url, now])?;
                }
            }
            let cutoff = (OffsetDateTime::now_utc() - PRESIGNED_PUT_RETENTION)
                .replace_nanosecond(0)
                .ok()
                .and_then(|t| t.format(&Rfc3339).ok());
            if let Some(cutoff) = cutoff {
                tx.execute("DELETE FROM presigned_puts WHERE signed_at < ?1", params![cutoff])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The remembered presigned PUTs among `keys`.
    pub async fn presigned(&self, keys: Vec<String>) -> Result<Vec<PresignedPut>, DbError> {
        self.with_conn(move |conn| {
            let mut select =
                conn.prepare_cached("SELECT key, checksum_sha256, object_url FROM presigned_puts WHERE key = ?1")?;
            let mut found = Vec::new();
            for key in keys {
                let row = select
                    .query_row(params![key], |row| {
                        Ok(PresignedPut { key: row.get(0)?, checksum_sha256: row.get(1)?, object_url: row.get(2)? })
                    })
                    .optional()?;
                found.extend(row);
            }
            Ok(found)
        })
        .await
    }

    pub async fn by_client_upload_id(&self, id: String) -> Result<Option<Record>, DbError> {
        self.with_conn(move |conn| select_by(conn, "client_upload_id", &id)).await
    }

    /// The records of those of `ids` that are recorded, by client id.
    pub async fn by_client_upload_ids(&self, ids: Vec<String>) -> Result<HashMap<String, Record>, DbError> {
        self.with_conn(move |conn| {
            let mut found = HashMap::new();
            for id in ids {
                if let Some(record) = select_by(conn, "client_upload_id", &id)? {
                    found.insert(id, record);
                }
            }
            Ok(found)
        })
        .await
    }

    pub async fn by_key(&self, key: String) -> Result<Option<Record>, DbError> {
        self.with_conn(move |conn| select_by(conn, "key", &key)).await
    }

    /// Newest first.
    pub async fn latest(&self, limit: u32) -> Result<Vec<Record>, DbError> {
        self.with_conn(move |conn| {
            let mut statement = conn.prepare(&format!("SELECT {COLUMNS} FROM records ORDER BY id DESC LIMIT ?1"))?;
            let rows = statement.query_map(params![limit], row_to_record)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}

/// Applies every migration newer than the file's `user_version`, each in its own IMMEDIATE
/// transaction together with the version bump, so a crash leaves either all of it or none.
fn migrate(conn: &mut Connection) -> Result<(), DbError> {
    let known = MIGRATIONS.last().map_or(0, |(n, _)| *n);
    let found: u32 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found > known {
        return Err(DbError::TooNew { found, known });
    }
    for (number, sql) in MIGRATIONS.iter().filter(|(n, _)| *n > found) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", number)?;
        tx.commit()?;
    }
    Ok(())
}

const COLUMNS: &str = "id, client_upload_id, key, file_name, size, content_type, checksum_sha256, \
                       object_url, flavour, recorded_at, checksum_crc32c";

fn record_native_in(tx: &Connection, new: NewRecord) -> Result<RecordOutcome, DbError> {
    if let Some(id) = &new.client_upload_id {
        if let Some(existing) = select_by(tx, "client_upload_id", id)? {
            return Ok(if existing.key == new.key {
                RecordOutcome::AlreadyRecorded(existing)
            } else {
                RecordOutcome::UploadIdConflict(existing)
            });
        }
    }
    if let Some(existing) = select_by(tx, "key", &new.key)? {
        return Ok(RecordOutcome::KeyConflict(existing));
    }
    let record = insert(tx, new)?;
    tx.prepare_cached("DELETE FROM presigned_puts WHERE key = ?1")?.execute(params![record.key])?;
    Ok(RecordOutcome::Recorded(record))
}

/// `column` is one of our own column names, never request data.
fn select_by(conn: &Connection, column: &str, value: &str) -> Result<Option<Record>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM records WHERE {column} = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row(params![value], row_to_record).optional()?)
}

fn insert(conn: &Connection, new: NewRecord) -> Result<Record, DbError> {
    let recorded_at = now_rfc3339();
    // SQLite integers are signed: sizes above i64::MAX cannot exist in S3 (5 TiB limit).
    let size = i64::try_from(new.size).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "INSERT INTO records (client_upload_id, key, file_name, size, content_type, \
         checksum_sha256, object_url, flavour, recorded_at, checksum_crc32c) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        new.client_upload_id,
        new.key,
        new.file_name,
        size,
        new.content_type,
        new.checksum_sha256,
        new.object_url,
        new.flavour.as_str(),
        recorded_at,
        new.checksum_crc32c,
    ])?;
    Ok(Record {
        id: conn.last_insert_rowid(),
        client_upload_id: new.client_upload_id,
        key: new.key,
        file_name: new.file_name,
        size: new.size,
        content_type: new.content_type,
        checksum_sha256: new.checksum_sha256,
        checksum_crc32c: new.checksum_crc32c,
        object_url: new.object_url,
        flavour: new.flavour,
        recorded_at,
    })
}

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    let flavour: String = row.get(8)?;
    let size: i64 = row.get(4)?;
    Ok(Record {
        id: row.get(0)?,
        client_upload_id: row.get(1)?,
        key: row.get(2)?,
        file_name: row.get(3)?,
        size: u64::try_from(size).unwrap_or(0),
        content_type: row.get(5)?,
        checksum_sha256: row.get(6)?,
        checksum_crc32c: row.get(10)?,
        object_url: row.get(7)?,
        flavour: if flavour == "rails" { Flavour::Rails } else { Flavour::Native },
        recorded_at: row.get(9)?,
    })
}

/// RFC 3339 in UTC, whole seconds: records are compared by people, not by nanoseconds.
pub fn now_rfc3339() -> String {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now).format(&Rfc3339).unwrap_or_else(|_| now.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_record(id: Option<&str>, key: &str) -> NewRecord {
        NewRecord {
            client_upload_id: id.map(str::to_owned),
            key: key.to_owned(),
            file_name: "a.txt".to_owned(),
            size: 3,
            content_type: "text/plain".to_owned(),
            checksum_sha256: None,
            checksum_crc32c: None,
            object_url: format!("http://s3/b/{key}"),
            flavour: if id.is_some() { Flavour::Native } else { Flavour::Rails },
        }
    }

    fn temp_db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(&dir.path().join("records.sqlite")).expect("opens");
        (dir, db)
    }

    #[test]
    fn migrations_apply_to_an_empty_file_and_reopening_applies_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.sqlite");
        drop(Db::open(&path).expect("first open migrates"));
        drop(Db::open(&path).expect("second open is a no-op"));
        let conn = Connection::open(&path).unwrap();
        let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.len() as u32, "user_version is the last migration");
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal", "the file stays in WAL mode");
    }

    #[test]
    fn migrations_are_numbered_one_up_without_gaps() {
        for (index, (number, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*number as usize, index + 1, "migration numbers count up from 1");
        }
    }

    #[test]
    fn a_database_from_a_newer_release_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.sqlite");
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(Db::open(&path), Err(DbError::TooNew { found: 99, .. })), "refused");
    }

    #[tokio::test]
    async fn recording_twice_with_the_same_id_and_key_returns_the_first_record() {
        let (_dir, db) = temp_db();
        let first = db.record_native(new_record(Some("u1"), "k1")).await.unwrap();
        let RecordOutcome::Recorded(record) = first else { panic!("first time records: {first:?}") };
        let again = db.record_native(new_record(Some("u1"), "k1")).await.unwrap();
        assert_eq!(again, RecordOutcome::AlreadyRecorded(record), "the repeat returns the same record");
        assert_eq!(db.latest(10).await.unwrap().len(), 1, "one record only");
    }

    #[tokio::test]
    async fn the_same_id_with_another_key_is_a_conflict() {
        let (_dir, db) = temp_db();
        db.record_native(new_record(Some("u1"), "k1")).await.unwrap();
        let outcome = db.record_native(new_record(Some("u1"), "k2")).await.unwrap();
        assert!(matches!(outcome, RecordOutcome::UploadIdConflict(_)), "{outcome:?}");
    }

    #[tokio::test]
    async fn a_key_recorded_under_another_id_is_a_conflict() {
        let (_dir, db) = temp_db();
        db.record_native(new_record(Some("u1"), "k1")).await.unwrap();
        let outcome = db.record_native(new_record(Some("u2"), "k1")).await.unwrap();
        assert!(matches!(outcome, RecordOutcome::KeyConflict(_)), "{outcome:?}");
    }

    #[tokio::test]
    async fn rails_records_are_idempotent_on_key_and_listed_newest_first() {
        let (_dir, db) = temp_db();
        db.record_by_key(new_record(None, "k1")).await.unwrap();
        db.record_by_key(new_record(None, "k2")).await.unwrap();
        let again = db.record_by_key(new_record(None, "k1")).await.unwrap();
        assert!(matches!(again, RecordOutcome::AlreadyRecorded(ref r) if r.key == "k1"), "{again:?}");
        let keys: Vec<String> = db.latest(10).await.unwrap().into_iter().map(|r| r.key).collect();
        assert_eq!(keys, vec!["k2", "k1"], "newest first");
        assert_eq!(db.latest(1).await.unwrap().len(), 1, "the limit applies");
    }

    #[test]
    fn timestamps_are_rfc3339_in_whole_seconds() {
        let stamp = now_rfc3339();
        assert!(OffsetDateTime::parse(&stamp, &Rfc3339).is_ok(), "parses back: {stamp}");
        assert!(stamp.ends_with('Z') && !stamp.contains('.'), "UTC, no fraction: {stamp}");
    }
}
