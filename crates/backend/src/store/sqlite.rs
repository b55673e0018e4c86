//! The SQLite side of the store: one file, one connection behind a mutex as the single writer
//! (so claiming webhooks needs no row locks); WAL lets readers of the file (tests, `sqlite3`)
//! look in while the server runs. Migrations are numbered files, each applied in its own
//! IMMEDIATE transaction, which also serialises two processes opening the file at once.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::audit::{AuditEntry, AuditFilter, AuditRow};
use super::outbox::{self, PendingWebhook};
use super::ownership::{ownership_of, MultipartUpload, Ownership, Scoped};
use super::{
    classify_conflict, now_rfc3339, presigned_cutoff, DbError, Flavour, NewRecord, PresignedPut, Record, RecordOutcome,
};

/// How often the WAL is copied into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Checkpoints the WAL every [`CHECKPOINT_INTERVAL`] from a thread with its own connection,
/// until the store's connection is dropped. PASSIVE never waits for the writer, so requests
/// never wait for it either; the writer starts the WAL over once a checkpoint has caught up,
/// so it stays about one interval's writes long.
fn start_checkpointer(path: &Path, store: std::sync::Weak<Mutex<Connection>>) -> Result<(), String> {
    let conn = Connection::open(path).map_err(|e| e.to_string())?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("sqlite-checkpoint".to_owned())
        .spawn(move || {
            while store.strong_count() > 0 {
                std::thread::sleep(CHECKPOINT_INTERVAL);
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "could not checkpoint the SQLite WAL; it grows until the next try");
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Migrations in order; the database's `user_version` is the number of the last one applied.
/// Append only: a released migration never changes.
pub(super) const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_records.sql")),
    (2, include_str!("../../migrations/sqlite/0002_records_crc32c.sql")),
    (3, include_str!("../../migrations/sqlite/0003_presigned_puts.sql")),
    (4, include_str!("../../migrations/sqlite/0004_principals.sql")),
    (5, include_str!("../../migrations/sqlite/0005_webhook_outbox.sql")),
];

const COLUMNS: &str = "id, client_upload_id, key, file_name, size, content_type, checksum_sha256, \
                       object_url, flavour, recorded_at, checksum_crc32c, uploaded_by";

#[derive(Debug, Clone)]
pub(super) struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (or creates) the file, switches it to WAL and applies pending migrations.
    pub(super) fn open(path: &Path) -> Result<Self, DbError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Checkpoints (copying the WAL into the file, with an fsync) run on a connection of
        // their own, not in whichever request's commit crosses the WAL's size mark: there they
        // put 50-100 ms on one presign in fifty (p99 107 ms at 5,000 URLs/s; 23 ms without).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        migrate(&mut conn)?;
        let conn = Arc::new(Mutex::new(conn));
        if let Err(e) = start_checkpointer(path, Arc::downgrade(&conn)) {
            tracing::warn!(error = %e, "no checkpoint thread; commits checkpoint the SQLite WAL themselves");
            let guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            guard.pragma_update(None, "wal_autocheckpoint", 1000)?;
        }
        Ok(Self { conn })
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

    /// Runs `work` in an IMMEDIATE transaction: the write lock is taken up front, so two
    /// processes on one file queue instead of failing half-way with SQLITE_BUSY.
    async fn in_transaction<T, F>(&self, work: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    {
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = work(&tx)?;
            tx.commit()?;
            Ok(value)
        })
        .await
    }

    pub(super) async fn record_all(&self, news: Vec<NewRecord>, webhooks: bool) -> Result<Vec<RecordOutcome>, DbError> {
        self.in_transaction(move |tx| news.into_iter().map(|new| record_in(tx, new, webhooks)).collect()).await
    }

    pub(super) async fn remember_presigned(
        &self,
        puts: Vec<PresignedPut>,
        audit: Vec<AuditEntry>,
    ) -> Result<(), DbError> {
        self.in_transaction(move |tx| {
            let now = now_rfc3339();
            {
                // A key signed again (a retried presign) is bound anew: the later signing wins.
                let mut insert = tx.prepare_cached(
                    "INSERT INTO presigned_puts (key, checksum_sha256, object_url, signed_at, uploaded_by) \
                     VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (key) DO UPDATE SET checksum_sha256 = excluded.checksum_sha256, \
                     object_url = excluded.object_url, signed_at = excluded.signed_at, uploaded_by = excluded.uploaded_by",
                )?;
                for put in &puts {
                    insert.execute(params![put.key, put.checksum_sha256, put.object_url, now, put.uploaded_by])?;
                }
            }
            append_audit(tx, &audit)?;
            if let Some(cutoff) = presigned_cutoff() {
                tx.execute("DELETE FROM presigned_puts WHERE signed_at < ?1", params![cutoff])?;
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn presigned_for(
        &self,
        principal: String,
        keys: Vec<String>,
    ) -> Result<Vec<PresignedPut>, DbError> {
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

    pub(super) async fn records_of(
        &self,
        principal: String,
        ids: Vec<String>,
    ) -> Result<HashMap<String, Scoped<Record>>, DbError> {
        self.with_conn(move |conn| {
            let mut found = HashMap::new();
            for id in ids {
                match scoped_record(conn, &principal, "client_upload_id", &id)? {
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

    pub(super) async fn record_by_key_of(&self, principal: String, key: String) -> Result<Scoped<Record>, DbError> {
        self.with_conn(move |conn| scoped_record(conn, &principal, "key", &key)).await
    }

    pub(super) async fn latest(&self, principal: Option<String>, limit: u32) -> Result<Vec<Record>, DbError> {
        self.with_conn(move |conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM records WHERE (?1 IS NULL OR uploaded_by = ?1) ORDER BY id DESC LIMIT ?2"
            ))?;
            let rows = statement.query_map(params![principal, limit], row_to_record)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    pub(super) async fn key_owners(&self, principal: String, keys: Vec<String>) -> Result<Vec<Ownership>, DbError> {
        self.with_conn(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT uploaded_by FROM records WHERE key = ?1 \
                 UNION ALL SELECT uploaded_by FROM presigned_puts WHERE key = ?1 \
                 UNION ALL SELECT uploaded_by FROM multipart_uploads WHERE key = ?1",
            )?;
            let mut owners = Vec::with_capacity(keys.len());
            for key in &keys {
                let rows = statement.query_map(params![key], |row| row.get::<_, Option<String>>(0))?;
                let found = rows.collect::<Result<Vec<_>, _>>()?;
                owners.push(ownership_of(&found, &principal));
            }
            Ok(owners)
        })
        .await
    }

    pub(super) async fn remember_multipart(&self, upload: MultipartUpload, audit: AuditEntry) -> Result<(), DbError> {
        self.in_transaction(move |tx| {
            tx.prepare_cached(
                "INSERT INTO multipart_uploads (upload_id, key, uploaded_by, client_upload_id, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                upload.upload_id,
                upload.key,
                upload.uploaded_by,
                upload.client_upload_id,
                now_rfc3339()
            ])?;
            append_audit(tx, std::slice::from_ref(&audit))
        })
        .await
    }

    pub(super) async fn multipart_owner(
        &self,
        principal: String,
        upload_id: String,
        key: String,
    ) -> Result<Ownership, DbError> {
        self.with_conn(move |conn| {
            let owner = conn
                .prepare_cached("SELECT uploaded_by FROM multipart_uploads WHERE upload_id = ?1 AND key = ?2")?
                .query_row(params![upload_id, key], |row| row.get::<_, Option<String>>(0))
                .optional()?;
            Ok(ownership_of(&owner.into_iter().collect::<Vec<_>>(), &principal))
        })
        .await
    }

    pub(super) async fn audit(&self, entries: Vec<AuditEntry>) -> Result<(), DbError> {
        self.in_transaction(move |tx| append_audit(tx, &entries)).await
    }

    pub(super) async fn audit_rows(&self, filter: AuditFilter) -> Result<Vec<AuditRow>, DbError> {
        self.with_conn(move |conn| {
            // Timestamps are fixed-width RFC 3339 UTC strings, so text order is time order.
            let mut statement = conn.prepare_cached(
                "SELECT id, at, principal, action, key, client_upload_id, outcome FROM audit_log \
                 WHERE (?1 IS NULL OR at >= ?1) AND (?2 IS NULL OR at <= ?2) AND (?3 IS NULL OR principal = ?3) \
                 ORDER BY id LIMIT ?4",
            )?;
            let rows =
                statement.query_map(params![filter.since, filter.until, filter.principal, filter.limit], |row| {
                    Ok(AuditRow {
                        id: row.get(0)?,
                        at: row.get(1)?,
                        principal: row.get(2)?,
                        action: row.get(3)?,
                        key: row.get(4)?,
                        client_upload_id: row.get(5)?,
                        outcome: row.get(6)?,
                    })
                })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    pub(super) async fn claim_webhooks(&self, limit: u32, lease: Duration) -> Result<Vec<PendingWebhook>, DbError> {
        self.in_transaction(move |tx| {
            let now = unix_millis();
            let due = {
                let mut select = tx.prepare_cached(
                    "SELECT id, idempotency_key, body, attempts FROM webhook_outbox \
                     WHERE delivered_at IS NULL AND next_attempt_at <= ?1 ORDER BY id LIMIT ?2",
                )?;
                let rows = select.query_map(params![now, limit], |row| {
                    Ok(PendingWebhook {
                        id: row.get(0)?,
                        idempotency_key: row.get(1)?,
                        body: row.get(2)?,
                        attempts: row.get(3)?,
                    })
                })?;
                rows.collect::<Result<Vec<_>, _>>()?
            };
            let mut lease_row = tx.prepare_cached("UPDATE webhook_outbox SET next_attempt_at = ?2 WHERE id = ?1")?;
            for webhook in &due {
                lease_row.execute(params![webhook.id, now + millis(lease)])?;
            }
            Ok(due)
        })
        .await
    }

    pub(super) async fn webhook_delivered(&self, id: i64) -> Result<(), DbError> {
        self.in_transaction(move |tx| {
            tx.prepare_cached(
                "UPDATE webhook_outbox SET delivered_at = ?2, attempts = attempts + 1, last_error = NULL \
                 WHERE id = ?1 AND delivered_at IS NULL",
            )?
            .execute(params![id, unix_millis()])?;
            Ok(())
        })
        .await
    }

    pub(super) async fn webhook_failed(&self, id: i64, retry_in: Duration, error: String) -> Result<(), DbError> {
        self.in_transaction(move |tx| {
            tx.prepare_cached(
                "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3 \
                 WHERE id = ?1 AND delivered_at IS NULL",
            )?
            .execute(params![id, unix_millis() + millis(retry_in), error])?;
            Ok(())
        })
        .await
    }

    pub(super) async fn webhook_backlog(&self) -> Result<u64, DbError> {
        self.with_conn(|conn| {
            let count: i64 =
                conn.query_row("SELECT COUNT(*) FROM webhook_outbox WHERE delivered_at IS NULL", [], |row| row.get(0))?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
        .await
    }
}

/// Applies every migration newer than the file's `user_version`, each in its own IMMEDIATE
/// transaction together with the version bump, so a crash leaves either all of it or none, and
/// a second process opening the file at the same moment waits, then finds nothing to do.
fn migrate(conn: &mut Connection) -> Result<(), DbError> {
    let known = MIGRATIONS.last().map_or(0, |(n, _)| *n);
    for (number, sql) in MIGRATIONS {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Read under the write lock: whoever held it before may have just applied this one.
        let found: u32 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if found > known {
            return Err(DbError::TooNew { found, known });
        }
        if *number > found {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", number)?;
        }
        tx.commit()?;
    }
    Ok(())
}

/// Inserts `new` unless a constraint (client id or key) refuses it; only then reads the rows
/// in the way to say why.
fn record_in(tx: &Connection, new: NewRecord, webhooks: bool) -> Result<RecordOutcome, DbError> {
    let recorded_at = now_rfc3339();
    let inserted = tx
        .prepare_cached(
            "INSERT INTO records (client_upload_id, key, file_name, size, content_type, \
             checksum_sha256, object_url, flavour, recorded_at, checksum_crc32c, uploaded_by) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
             ON CONFLICT DO NOTHING RETURNING id",
        )?
        .query_row(
            params![
                new.client_upload_id,
                new.key,
                new.file_name,
                new.stored_size(),
                new.content_type,
                new.checksum_sha256,
                new.object_url,
                new.flavour.as_str(),
                recorded_at,
                new.checksum_crc32c,
                new.uploaded_by,
            ],
            |row| row.get::<_, i64>(0),
        )
        .optional()?;
    let Some(id) = inserted else {
        let by_client_id = match &new.client_upload_id {
            Some(client_id) => select_by(tx, "client_upload_id", client_id)?,
            None => None,
        };
        let by_key = select_by(tx, "key", &new.key)?;
        return classify_conflict(&new, by_client_id, by_key);
    };
    let record = new.into_record(id, recorded_at);
    tx.prepare_cached("DELETE FROM presigned_puts WHERE key = ?1")?.execute(params![record.key])?;
    if webhooks {
        let (idempotency_key, body) = outbox::render(&record);
        tx.prepare_cached(
            "INSERT INTO webhook_outbox (record_id, idempotency_key, body, next_attempt_at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![record.id, idempotency_key, body, unix_millis()])?;
    }
    Ok(RecordOutcome::Recorded(record))
}

/// `column` is one of our own column names, never request data. Unscoped: only for checks
/// inside the store that never hand the row to a principal who does not own it.
fn select_by(conn: &Connection, column: &str, value: &str) -> Result<Option<Record>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM records WHERE {column} = ?1");
    Ok(conn.prepare_cached(&sql)?.query_row(params![value], row_to_record).optional()?)
}

/// `column` is one of our own column names, never request data.
fn scoped_record(conn: &Connection, principal: &str, column: &str, value: &str) -> Result<Scoped<Record>, DbError> {
    let mine = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM records WHERE {column} = ?1 AND uploaded_by = ?2"))?
        .query_row(params![value, principal], row_to_record)
        .optional()?;
    if let Some(record) = mine {
        return Ok(Scoped::Mine(record));
    }
    let others = conn
        .prepare_cached(&format!("SELECT 1 FROM records WHERE {column} = ?1 AND uploaded_by IS NOT ?2"))?
        .query_row(params![value, principal], |_| Ok(()))
        .optional()?;
    Ok(if others.is_some() { Scoped::Others } else { Scoped::Missing })
}

/// Appends `entries` inside the caller's transaction, so an action and its audit row commit
/// together.
fn append_audit(conn: &Connection, entries: &[AuditEntry]) -> Result<(), DbError> {
    if entries.is_empty() {
        return Ok(());
    }
    let at = now_rfc3339();
    let mut insert = conn.prepare_cached(
        "INSERT INTO audit_log (at, principal, action, key, client_upload_id, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for entry in entries {
        insert.execute(params![
            at,
            entry.principal,
            entry.action.as_str(),
            entry.key,
            entry.client_upload_id,
            entry.outcome
        ])?;
    }
    Ok(())
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
        flavour: Flavour::parse(&flavour),
        recorded_at: row.get(9)?,
        uploaded_by: row.get(11)?,
    })
}

fn unix_millis() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
