//! The Postgres side of the store, for several instances on one database: a deadpool of
//! tokio-postgres connections, migrations under `pg_advisory_xact_lock` (instances starting
//! together migrate once, the others wait and find nothing to do), reports as
//! `INSERT … ON CONFLICT DO NOTHING`, webhooks claimed with `FOR UPDATE SKIP LOCKED`.
//! Plain TCP only: the URL's `sslmode=require` is refused at connect time (no TLS connector).

use std::collections::HashMap;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::{NoTls, Row};

use super::audit::{AuditEntry, AuditFilter, AuditRow};
use super::outbox::{self, PendingWebhook};
use super::ownership::{ownership_of, MultipartUpload, Ownership, Scoped};
use super::{
    classify_conflict, now_rfc3339, presigned_cutoff, DbError, Flavour, NewRecord, PresignedPut, Record, RecordOutcome,
};

/// Migrations in order; `schema_migrations` holds the numbers applied. Append only.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_schema.sql")),
    (2, include_str!("../../migrations/postgres/0002_webhook_outbox.sql")),
];

/// The advisory lock every instance takes to migrate: an arbitrary constant of our own
/// ("dropship" in ASCII), so it cannot meet another application's lock on a shared server.
const MIGRATION_LOCK: i64 = 0x6472_6f70_7368_6970;

/// Connections per instance: requests hold one for a query or a short transaction.
const POOL_SIZE: usize = 16;

const COLUMNS: &str = "id, client_upload_id, key, file_name, size, content_type, checksum_sha256, \
                       object_url, flavour, recorded_at, checksum_crc32c, uploaded_by";

#[derive(Clone)]
pub(super) struct PgStore {
    pool: Pool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pool's config holds the password.
        f.debug_struct("PgStore").field("status", &self.pool.status()).finish()
    }
}

impl PgStore {
    pub(super) async fn open(url: &str) -> Result<Self, DbError> {
        let config: tokio_postgres::Config = url.parse()?;
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            // A database that is down fails a request in seconds instead of hanging it.
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations in one transaction that first takes the advisory lock: a
    /// second instance blocks on the lock, then reads the new version and applies nothing.
    /// Postgres DDL is transactional, so a failed migration leaves the schema as it was.
    async fn migrate(&self) -> Result<(), DbError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (\
                 version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await?;
        let found: i32 =
            tx.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[]).await?.try_get(0)?;
        let known = MIGRATIONS.last().map_or(0, |(n, _)| *n);
        if found > known {
            return Err(DbError::TooNew {
                found: u32::try_from(found).unwrap_or(u32::MAX),
                known: u32::try_from(known).unwrap_or(0),
            });
        }
        for (number, sql) in MIGRATIONS.iter().filter(|(n, _)| *n > found) {
            tx.batch_execute(sql).await?;
            tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[number]).await?;
            tracing::info!(migration = number, "applied a Postgres migration");
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn record_all(&self, news: Vec<NewRecord>, webhooks: bool) -> Result<Vec<RecordOutcome>, DbError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Rows are inserted in key order, so two batches that share uploads (a report retried
        // on another instance) take their row locks in the same order and cannot deadlock.
        let mut order: Vec<usize> = (0..news.len()).collect();
        order.sort_by(|a, b| news[*a].key.cmp(&news[*b].key));
        let mut outcomes: Vec<Option<RecordOutcome>> = vec![None; news.len()];
        for index in order {
            outcomes[index] = Some(record_in(&tx, news[index].clone(), webhooks).await?);
        }
        tx.commit().await?;
        outcomes.into_iter().map(|o| o.ok_or(DbError::WorkerGone)).collect()
    }

    pub(super) async fn remember_presigned(
        &self,
        puts: Vec<PresignedPut>,
        audit: Vec<AuditEntry>,
    ) -> Result<(), DbError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let now = now_rfc3339();
        // One statement for the whole batch (a hundred single-row INSERTs were a hundred round
        // trips: most of a presign's time on Postgres). ON CONFLICT may touch a row only once
        // per statement, so a key named twice keeps its last signing, as row by row would.
        let mut latest: HashMap<&str, &PresignedPut> = HashMap::with_capacity(puts.len());
        for put in &puts {
            latest.insert(put.key.as_str(), put);
        }
        let keys: Vec<&str> = latest.keys().copied().collect();
        let checksums: Vec<Option<&str>> = keys.iter().map(|k| latest[k].checksum_sha256.as_deref()).collect();
        let urls: Vec<&str> = keys.iter().map(|k| latest[k].object_url.as_str()).collect();
        let owners: Vec<&str> = keys.iter().map(|k| latest[k].uploaded_by.as_str()).collect();
        tx.execute(
            "INSERT INTO presigned_puts (key, checksum_sha256, object_url, signed_at, uploaded_by) \
             SELECT key, checksum, url, $4, owner FROM UNNEST($1::text[], $2::text[], $3::text[], $5::text[]) \
             AS batch (key, checksum, url, owner) \
             ON CONFLICT (key) DO UPDATE SET checksum_sha256 = excluded.checksum_sha256, \
             object_url = excluded.object_url, signed_at = excluded.signed_at, uploaded_by = excluded.uploaded_by",
            &[&keys, &checksums, &urls, &now, &owners],
        )
        .await?;
        append_audit(&tx, &audit).await?;
        if let Some(cutoff) = presigned_cutoff() {
            tx.execute("DELETE FROM presigned_puts WHERE signed_at < $1", &[&cutoff]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn presigned_for(
        &self,
        principal: String,
        keys: Vec<String>,
    ) -> Result<Vec<PresignedPut>, DbError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT key, checksum_sha256, object_url, uploaded_by FROM presigned_puts \
                 WHERE key = ANY($1) AND uploaded_by = $2",
                &[&keys, &principal],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(PresignedPut {
                    key: row.try_get(0)?,
                    checksum_sha256: row.try_get(1)?,
                    object_url: row.try_get(2)?,
                    uploaded_by: row.try_get(3)?,
                })
            })
            .collect()
    }

    pub(super) async fn records_of(
        &self,
        principal: String,
        ids: Vec<String>,
    ) -> Result<HashMap<String, Scoped<Record>>, DbError> {
        let client = self.pool.get().await?;
        let mine = client
            .query(
                &format!("SELECT {COLUMNS} FROM records WHERE client_upload_id = ANY($1) AND uploaded_by = $2"),
                &[&ids, &principal],
            )
            .await?;
        let others = client
            .query(
                "SELECT client_upload_id FROM records \
                 WHERE client_upload_id = ANY($1) AND uploaded_by IS DISTINCT FROM $2",
                &[&ids, &principal],
            )
            .await?;
        let mut found = HashMap::new();
        for row in &others {
            let id: String = row.try_get(0)?;
            found.insert(id, Scoped::Others);
        }
        for row in &mine {
            let record = row_to_record(row)?;
            if let Some(id) = record.client_upload_id.clone() {
                found.insert(id, Scoped::Mine(record));
            }
        }
        Ok(found)
    }

    pub(super) async fn record_by_key_of(&self, principal: String, key: String) -> Result<Scoped<Record>, DbError> {
        let client = self.pool.get().await?;
        let row = client.query_opt(&format!("SELECT {COLUMNS} FROM records WHERE key = $1"), &[&key]).await?;
        Ok(match row.map(|row| row_to_record(&row)).transpose()? {
            Some(record) if record.uploaded_by.as_deref() == Some(principal.as_str()) => Scoped::Mine(record),
            Some(_) => Scoped::Others,
            None => Scoped::Missing,
        })
    }

    pub(super) async fn latest(&self, principal: Option<String>, limit: u32) -> Result<Vec<Record>, DbError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM records WHERE ($1::TEXT IS NULL OR uploaded_by = $1) \
                     ORDER BY id DESC LIMIT $2"
                ),
                &[&principal, &i64::from(limit)],
            )
            .await?;
        rows.iter().map(row_to_record).collect()
    }

    pub(super) async fn key_owners(&self, principal: String, keys: Vec<String>) -> Result<Vec<Ownership>, DbError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT key, uploaded_by FROM records WHERE key = ANY($1) \
                 UNION ALL SELECT key, uploaded_by FROM presigned_puts WHERE key = ANY($1) \
                 UNION ALL SELECT key, uploaded_by FROM multipart_uploads WHERE key = ANY($1)",
                &[&keys],
            )
            .await?;
        let mut owners: HashMap<String, Vec<Option<String>>> = HashMap::new();
        for row in &rows {
            owners.entry(row.try_get(0)?).or_default().push(row.try_get(1)?);
        }
        Ok(keys.iter().map(|key| ownership_of(owners.get(key).map_or(&[], Vec::as_slice), &principal)).collect())
    }

    pub(super) async fn remember_multipart(&self, upload: MultipartUpload, audit: AuditEntry) -> Result<(), DbError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO multipart_uploads (upload_id, key, uploaded_by, client_upload_id, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
            &[&upload.upload_id, &upload.key, &upload.uploaded_by, &upload.client_upload_id, &now_rfc3339()],
        )
        .await?;
        append_audit(&tx, std::slice::from_ref(&audit)).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn multipart_owner(
        &self,
        principal: String,
        upload_id: String,
        key: String,
    ) -> Result<Ownership, DbError> {
        let client = self.pool.get().await?;
        let owner = client
            .query_opt(
                "SELECT uploaded_by FROM multipart_uploads WHERE upload_id = $1 AND key = $2",
                &[&upload_id, &key],
            )
            .await?
            .map(|row| row.get::<_, Option<String>>(0));
        Ok(ownership_of(&owner.into_iter().collect::<Vec<_>>(), &principal))
    }

    pub(super) async fn audit(&self, entries: Vec<AuditEntry>) -> Result<(), DbError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        append_audit(&tx, &entries).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn audit_rows(&self, filter: AuditFilter) -> Result<Vec<AuditRow>, DbError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, at, principal, action, key, client_upload_id, outcome FROM audit_log \
                 WHERE ($1::TEXT IS NULL OR at >= $1) AND ($2::TEXT IS NULL OR at <= $2) \
                 AND ($3::TEXT IS NULL OR principal = $3) ORDER BY id LIMIT $4",
                &[&filter.since, &filter.until, &filter.principal, &i64::from(filter.limit)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditRow {
                    id: row.try_get(0)?,
                    at: row.try_get(1)?,
                    principal: row.try_get(2)?,
                    action: row.try_get(3)?,
                    key: row.try_get(4)?,
                    client_upload_id: row.try_get(5)?,
                    outcome: row.try_get(6)?,
                })
            })
            .collect()
    }

    /// Due rows are locked with SKIP LOCKED (another instance claiming at the same moment takes
    /// other rows) and pushed `lease` into the future in the same statement, so once committed
    /// they stay hidden while this instance delivers them, and come due again if it dies.
    pub(super) async fn claim_webhooks(&self, limit: u32, lease: Duration) -> Result<Vec<PendingWebhook>, DbError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "UPDATE webhook_outbox AS o SET next_attempt_at = now() + make_interval(secs => $2) \
                 FROM (SELECT id FROM webhook_outbox WHERE delivered_at IS NULL AND next_attempt_at <= now() \
                       ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) AS due \
                 WHERE o.id = due.id RETURNING o.id, o.idempotency_key, o.body, o.attempts",
                &[&i64::from(limit), &lease.as_secs_f64()],
            )
            .await?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                Ok(PendingWebhook {
                    id: row.try_get(0)?,
                    idempotency_key: row.try_get(1)?,
                    body: row.try_get(2)?,
                    attempts: u32::try_from(row.try_get::<_, i32>(3)?).unwrap_or(0),
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        claimed.sort_by_key(|webhook| webhook.id);
        Ok(claimed)
    }

    pub(super) async fn webhook_delivered(&self, id: i64) -> Result<(), DbError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE webhook_outbox SET delivered_at = now(), attempts = attempts + 1, last_error = NULL \
                 WHERE id = $1 AND delivered_at IS NULL",
                &[&id],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn webhook_failed(&self, id: i64, retry_in: Duration, error: String) -> Result<(), DbError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE webhook_outbox SET attempts = attempts + 1, \
                 next_attempt_at = now() + make_interval(secs => $2), last_error = $3 \
                 WHERE id = $1 AND delivered_at IS NULL",
                &[&id, &retry_in.as_secs_f64(), &error],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn webhook_backlog(&self) -> Result<u64, DbError> {
        let client = self.pool.get().await?;
        let count: i64 = client
            .query_one("SELECT COUNT(*) FROM webhook_outbox WHERE delivered_at IS NULL", &[])
            .await?
            .try_get(0)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

/// Inserts `new` unless a constraint (client id or key) refuses it; only then reads the rows in
/// the way to say why. A concurrent insert of the same upload on another instance makes this
/// one wait for it to commit, then do nothing: the second report sees the first's record.
async fn record_in(
    tx: &deadpool_postgres::Transaction<'_>,
    new: NewRecord,
    webhooks: bool,
) -> Result<RecordOutcome, DbError> {
    let recorded_at = now_rfc3339();
    let insert = tx
        .prepare_cached(
            "INSERT INTO records (client_upload_id, key, file_name, size, content_type, \
             checksum_sha256, object_url, flavour, recorded_at, checksum_crc32c, uploaded_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .await?;
    let inserted = tx
        .query_opt(
            &insert,
            &[
                &new.client_upload_id,
                &new.key,
                &new.file_name,
                &new.stored_size(),
                &new.content_type,
                &new.checksum_sha256,
                &new.object_url,
                &new.flavour.as_str(),
                &recorded_at,
                &new.checksum_crc32c,
                &new.uploaded_by,
            ],
        )
        .await?;
    let Some(row) = inserted else {
        let by_client_id = match &new.client_upload_id {
            Some(client_id) => select_by(tx, "client_upload_id", client_id).await?,
            None => None,
        };
        let by_key = select_by(tx, "key", &new.key).await?;
        return classify_conflict(&new, by_client_id, by_key);
    };
    let record = new.into_record(row.try_get(0)?, recorded_at);
    tx.execute("DELETE FROM presigned_puts WHERE key = $1", &[&record.key]).await?;
    if webhooks {
        let (idempotency_key, body) = outbox::render(&record);
        tx.execute(
            "INSERT INTO webhook_outbox (record_id, idempotency_key, body) VALUES ($1, $2, $3)",
            &[&record.id, &idempotency_key, &body],
        )
        .await?;
    }
    Ok(RecordOutcome::Recorded(record))
}

/// `column` is one of our own column names, never request data. Unscoped: only for checks
/// inside the store that never hand the row to a principal who does not own it.
async fn select_by(client: &impl GenericClient, column: &str, value: &str) -> Result<Option<Record>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM records WHERE {column} = $1");
    client.query_opt(&sql, &[&value]).await?.map(|row| row_to_record(&row)).transpose()
}

async fn append_audit(client: &impl GenericClient, entries: &[AuditEntry]) -> Result<(), DbError> {
    if entries.is_empty() {
        return Ok(());
    }
    let at = now_rfc3339();
    let insert = client
        .prepare_cached(
            "INSERT INTO audit_log (at, principal, action, key, client_upload_id, outcome) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
    for entry in entries {
        client
            .execute(
                &insert,
                &[&at, &entry.principal, &entry.action.as_str(), &entry.key, &entry.client_upload_id, &entry.outcome],
            )
            .await?;
    }
    Ok(())
}

/// Typed reads (`try_get`): a column of an unexpected type is an error, not a panic.
fn row_to_record(row: &Row) -> Result<Record, DbError> {
    let flavour: String = row.try_get(8)?;
    let size: i64 = row.try_get(4)?;
    Ok(Record {
        id: row.try_get(0)?,
        client_upload_id: row.try_get(1)?,
        key: row.try_get(2)?,
        file_name: row.try_get(3)?,
        size: u64::try_from(size).unwrap_or(0),
        content_type: row.try_get(5)?,
        checksum_sha256: row.try_get(6)?,
        checksum_crc32c: row.try_get(10)?,
        object_url: row.try_get(7)?,
        flavour: Flavour::parse(&flavour),
        recorded_at: row.try_get(9)?,
        uploaded_by: row.try_get(11)?,
    })
}
