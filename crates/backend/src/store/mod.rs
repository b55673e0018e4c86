//! The backend's own SQLite file: numbered migrations, the upload records, what was issued to
//! whom (`ownership`) and the audit log (`audit`). Every query that reads a principal's rows
//! takes the principal and filters by it in SQL, so no handler can leak another's row.
//! One connection behind a mutex is the single writer; WAL lets readers of the file (tests,
//! `sqlite3`) look in while the server runs.

mod audit;
mod ownership;

pub use audit::{AuditAction, AuditEntry, AuditFilter};
pub use ownership::{MultipartUpload, Ownership, Scoped};

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
    (1, include_str!("../../migrations/0001_records.sql")),
    (2, include_str!("../../migrations/0002_records_crc32c.sql")),
    (3, include_str!("../../migrations/0003_presigned_puts.sql")),
    (4, include_str!("../../migrations/0004_principals.sql")),
];

/// How long an unreported presigned PUT is remembered: far beyond any URL's expiry, and long
/// enough for a client that was offline for weeks to report it. Past it, the key is no longer
/// bound to anyone and its report is refused (404).
const PRESIGNED_PUT_RETENTION: time::Duration = time::Duration::days(30);

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
    /// The principal that reported it; `None` for records made before principals existed.
    pub uploaded_by: Option<String>,
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
    pub uploaded_by: String,
}

/// A single PUT as the backend signed it, and for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedPut {
    pub key: String,
    /// The SHA-256 signed into the URL; `None` for rails URLs, which sign only the host.
    pub checksum_sha256: Option<String>,
    pub object_url: String,
    pub uploaded_by: String,
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
    /// The client id or the key is recorded for another principal: the caller answers as if
    /// nothing were recorded (404), and must not show the record.
    OthersRecord,
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

    /// Records a rails upload, idempotent on its key: a repeat by the same principal returns
    /// the record, a key recorded for another principal is [`RecordOutcome::OthersRecord`].
    pub async fn record_by_key(&self, new: NewRecord) -> Result<RecordOutcome, DbError> {
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(existing) = select_by(&tx, "key", &new.key)? {
                return Ok(if existing.uploaded_by.as_deref() == Some(new.uploaded_by.as_str()) {
                    RecordOutcome::AlreadyRecorded(existing)
                } else {
                    RecordOutcome::OthersRecord
                });
            }
            let record = insert(&tx, new)?;
            tx.prepare_cached("DELETE FROM presigned_puts WHERE key = ?1")?.execute(params![record.key])?;
            tx.commit()?;
            Ok(RecordOutcome::Recorded(record))
        })
        .await
    }

    /// Remembers what was signed into a batch of single PUTs and for whom, with their audit
    /// rows (one transaction), and forgets the ones older than [`PRESIGNED_PUT_RETENTION`].
    pub async fn remember_presigned(&self, puts: Vec<PresignedPut>, audit: Vec<AuditEntry>) -> Result<(), DbError> {
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_rfc3339();
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR REPLACE INTO presigned_puts (key, checksum_sha256, object_url, signed_at, uploaded_by) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for put in &puts {
                    insert.execute(params![put.key, put.checksum_sha256, put.object_url, now, put.uploaded_by])?;
                }
            }
            audit::append_in(&tx, &audit)?;
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

    /// The presigned PUTs among `keys` that were signed for `principal`.
    pub async fn presigned_for(&self, principal: String, keys: Vec<String>) -> Result<Vec<PresignedPut>, DbError> {
        self.with_conn(move |conn| {
            let mut select = conn.prepare_cached(
                "SELECT key, checksum_sha256, object_url, uploaded_by FROM presigned_puts \
                 WHERE key = ?1 AND uploaded_by = ?2",
            )?;
            let mut found = Vec::new();
            for key in keys {
                let row = select
                    .query_row(params![key, principal], |row| {
                        Ok(PresignedPut {
                            key: row.get(0)?,
                            checksum_sha256: row.get(1)?,
                            object_url: row.get(2)?,
                            uploaded_by: row.get(3)?,
                        })
                    })
                    .optional()?;
                found.extend(row);
            }
            Ok(found)
        })
        .await
    }

    /// The record of a client upload id, if `principal` recorded it.
    pub async fn record_of(&self, principal: String, id: String) -> Result<Scoped<Record>, DbError> {
        self.with_conn(move |conn| ownership::scoped_record(conn, &principal, "client_upload_id", &id)).await
    }

    /// [`Db::record_of`] for many ids at once, by client id; ids recorded by nobody are absent.
    pub async fn records_of(
        &self,
        principal: String,
        ids: Vec<String>,
    ) -> Result<HashMap<String, Scoped<Record>>, DbError> {
        self.with_conn(move |conn| {
            let mut found = HashMap::new();
            for id in ids {
                match ownership::scoped_record(conn, &principal, "client_upload_id", &id)? {
                    Scoped::Missing => {}
                    scoped => {
                        found.insert(id, scoped);
                    }
                }
            }
            Ok(found)
        })
        .await
    }

    /// The record of a key, if `principal` recorded it.
    pub async fn record_by_key_of(&self, principal: String, key: String) -> Result<Scoped<Record>, DbError> {
        self.with_conn(move |conn| ownership::scoped_record(conn, &principal, "key", &key)).await
    }

    /// The principal's records, newest first.
    pub async fn latest_of(&self, principal: String, limit: u32) -> Result<Vec<Record>, DbError> {
        self.with_conn(move |conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM records WHERE uploaded_by = ?1 ORDER BY id DESC LIMIT ?2"
            ))?;
            let rows = statement.query_map(params![principal, limit], row_to_record)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Everyone's records, newest first: for admins only (the route checks).
    pub async fn latest_of_everyone(&self, limit: u32) -> Result<Vec<Record>, DbError> {
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
                       object_url, flavour, recorded_at, checksum_crc32c, uploaded_by";

fn record_native_in(tx: &Connection, new: NewRecord) -> Result<RecordOutcome, DbError> {
    let mine = |existing: &Record| existing.uploaded_by.as_deref() == Some(new.uploaded_by.as_str());
    if let Some(id) = &new.client_upload_id {
        if let Some(existing) = select_by(tx, "client_upload_id", id)? {
            if !mine(&existing) {
                return Ok(RecordOutcome::OthersRecord);
            }
            return Ok(if existing.key == new.key {
                RecordOutcome::AlreadyRecorded(existing)
            } else {
                RecordOutcome::UploadIdConflict(existing)
            });
        }
    }
    if let Some(existing) = select_by(tx, "key", &new.key)? {
        return Ok(if mine(&existing) { RecordOutcome::KeyConflict(existing) } else { RecordOutcome::OthersRecord });
    }
    let record = insert(tx, new)?;
    tx.prepare_cached("DELETE FROM presigned_puts WHERE key = ?1")?.execute(params![record.key])?;
    Ok(RecordOutcome::Recorded(record))
}

/// `column` is one of our own column names, never request data. Unscoped: only for checks
/// inside the store that never hand the row to a principal who does not own it.
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
         checksum_sha256, object_url, flavour, recorded_at, checksum_crc32c, uploaded_by) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
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
        new.uploaded_by,
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
        uploaded_by: Some(new.uploaded_by),
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
        uploaded_by: row.get(11)?,
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
            uploaded_by: "alice".to_owned(),
        }
    }

    fn by(principal: &str, new: NewRecord) -> NewRecord {
        NewRecord { uploaded_by: principal.to_owned(), ..new }
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
        assert_eq!(db.latest_of("alice".to_owned(), 10).await.unwrap().len(), 1, "one record only");
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
        let keys: Vec<String> =
            db.latest_of("alice".to_owned(), 10).await.unwrap().into_iter().map(|r| r.key).collect();
        assert_eq!(keys, vec!["k2", "k1"], "newest first");
        assert_eq!(db.latest_of("alice".to_owned(), 1).await.unwrap().len(), 1, "the limit applies");
    }

    #[test]
    fn the_previous_releases_schema_migrates_with_its_rows_owned_by_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.sqlite");
        {
            // The schema as release 3 left it, with a record and an unreported presign.
            let mut conn = Connection::open(&path).unwrap();
            for (number, sql) in &MIGRATIONS[..3] {
                let tx = conn.transaction().unwrap();
                tx.execute_batch(sql).unwrap();
                tx.pragma_update(None, "user_version", number).unwrap();
                tx.commit().unwrap();
            }
            conn.execute_batch(
                "INSERT INTO records (client_upload_id, key, file_name, size, content_type, object_url, flavour, recorded_at) \
                 VALUES ('u1', 'uploads/k1', 'a.txt', 3, 'text/plain', 'http://s3/b/uploads/k1', 'native', '2026-01-01T00:00:00Z'); \
                 INSERT INTO presigned_puts (key, checksum_sha256, object_url, signed_at) \
                 VALUES ('uploads/k2', 'c2hh', 'http://s3/b/uploads/k2', '2099-01-01T00:00:00Z');",
            )
            .unwrap();
        }
        let db = Db::open(&path).expect("release 3's file migrates");
        let conn = Connection::open(&path).unwrap();
        let owner: Option<String> =
            conn.query_row("SELECT uploaded_by FROM records WHERE key = 'uploads/k1'", [], |r| r.get(0)).unwrap();
        assert_eq!(owner, None, "an old record belongs to nobody");
        let kept: (Option<String>, Option<String>) = conn
            .query_row("SELECT checksum_sha256, uploaded_by FROM presigned_puts WHERE key = 'uploads/k2'", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(kept, (Some("c2hh".to_owned()), None), "presigns survive the table rebuild, owned by nobody");
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let seen = rt.block_on(db.record_of("alice".to_owned(), "u1".to_owned())).unwrap();
        assert_eq!(seen, Scoped::Others, "nobody's record is not alice's");
        let all = rt.block_on(db.latest_of_everyone(10)).unwrap();
        assert_eq!(all.len(), 1, "an admin still lists it");
        assert_eq!(all[0].uploaded_by, None, "with uploaded_by null");
    }

    #[tokio::test]
    async fn the_audit_log_refuses_update_and_delete() {
        let (dir, db) = temp_db();
        db.audit(vec![AuditEntry::new("alice", AuditAction::Presign, "signed").key("uploads/k")]).await.unwrap();
        let conn = Connection::open(dir.path().join("records.sqlite")).unwrap();
        let update = conn.execute("UPDATE audit_log SET principal = 'mallory'", []);
        assert!(update.is_err_and(|e| e.to_string().contains("append-only")), "an UPDATE of an audit row raises");
        let delete = conn.execute("DELETE FROM audit_log", []);
        assert!(delete.is_err_and(|e| e.to_string().contains("append-only")), "a DELETE of an audit row raises");
        let rows = db.audit_rows(AuditFilter { limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(rows.len(), 1, "the row is still there");
        assert_eq!(rows[0].principal, "alice", "unchanged");
    }

    #[tokio::test]
    async fn audit_rows_are_read_oldest_first_and_filtered_by_principal() {
        let (_dir, db) = temp_db();
        for (who, key) in [("alice", "k1"), ("bob", "k2"), ("alice", "k3")] {
            db.audit(vec![AuditEntry::new(who, AuditAction::Report, "recorded").key(key)]).await.unwrap();
        }
        let alice = db
            .audit_rows(AuditFilter { principal: Some("alice".to_owned()), limit: 10, ..Default::default() })
            .await
            .unwrap();
        let keys: Vec<_> = alice.iter().map(|r| r.key.clone().unwrap()).collect();
        assert_eq!(keys, ["k1", "k3"], "alice's rows, oldest first");
        let future = db
            .audit_rows(AuditFilter { since: Some("2999-01-01T00:00:00Z".to_owned()), limit: 10, ..Default::default() })
            .await
            .unwrap();
        assert!(future.is_empty(), "since bounds the rows");
    }

    #[tokio::test]
    async fn a_principal_sees_only_its_own_records() {
        let (_dir, db) = temp_db();
        db.record_native(new_record(Some("u1"), "k1")).await.unwrap();
        db.record_native(by("bob", new_record(Some("u2"), "k2"))).await.unwrap();
        let mine = db.latest_of("alice".to_owned(), 10).await.unwrap();
        assert_eq!(mine.len(), 1, "alice lists only hers");
        assert_eq!(mine[0].uploaded_by.as_deref(), Some("alice"), "records carry their principal");
        assert_eq!(
            db.record_of("alice".to_owned(), "u2".to_owned()).await.unwrap(),
            Scoped::Others,
            "bob's is not hers"
        );
        assert_eq!(db.record_of("alice".to_owned(), "u3".to_owned()).await.unwrap(), Scoped::Missing);
        let stolen = db.record_native(by("bob", new_record(Some("u1"), "k1"))).await.unwrap();
        assert_eq!(stolen, RecordOutcome::OthersRecord, "bob cannot re-record alice's upload, nor see it");
        assert_eq!(db.latest_of_everyone(10).await.unwrap().len(), 2, "everyone's, for admins");
    }

    #[tokio::test]
    async fn keys_and_multipart_uploads_belong_to_whoever_they_were_issued_to() {
        let (_dir, db) = temp_db();
        let put = PresignedPut {
            key: "k1".to_owned(),
            checksum_sha256: None,
            object_url: "http://s3/b/k1".to_owned(),
            uploaded_by: "alice".to_owned(),
        };
        db.remember_presigned(vec![put], vec![]).await.unwrap();
        assert_eq!(db.key_owner("alice".to_owned(), "k1".to_owned()).await.unwrap(), Ownership::Mine);
        assert_eq!(db.key_owner("bob".to_owned(), "k1".to_owned()).await.unwrap(), Ownership::Others);
        assert_eq!(db.key_owner("bob".to_owned(), "k9".to_owned()).await.unwrap(), Ownership::Nobody);
        assert!(db.presigned_for("bob".to_owned(), vec!["k1".to_owned()]).await.unwrap().is_empty(), "scoped");
        let upload = MultipartUpload {
            upload_id: "up1".to_owned(),
            key: "k2".to_owned(),
            uploaded_by: "alice".to_owned(),
            client_upload_id: None,
        };
        db.remember_multipart(upload, AuditEntry::new("alice", AuditAction::Create, "created")).await.unwrap();
        let owner = |who: &str, id: &str| db.multipart_owner(who.to_owned(), id.to_owned(), "k2".to_owned());
        assert_eq!(owner("alice", "up1").await.unwrap(), Ownership::Mine);
        assert_eq!(owner("bob", "up1").await.unwrap(), Ownership::Others, "bob cannot reach alice's upload");
        assert_eq!(owner("alice", "up2").await.unwrap(), Ownership::Nobody, "the upload id must match too");
    }

    #[test]
    fn timestamps_are_rfc3339_in_whole_seconds() {
        let stamp = now_rfc3339();
        assert!(OffsetDateTime::parse(&stamp, &Rfc3339).is_ok(), "parses back: {stamp}");
        assert!(stamp.ends_with('Z') && !stamp.contains('.'), "UTC, no fraction: {stamp}");
    }
}
