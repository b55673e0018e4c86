//! The backend's database: upload records, what was issued to whom (`ownership`), the audit
//! log (`audit`) and the webhook outbox (`outbox`), behind one interface, [`Db`], with a SQLite
//! side (`sqlite`, the embedded default) and a Postgres side (`postgres`, for several instances
//! behind a load balancer). Every query that reads a principal's rows takes the principal and
//! filters by it in SQL, so no handler can leak another's row.
//!
//! The two sides are rusqlite and tokio-postgres (pooled by deadpool-postgres) rather than sqlx
//! for both: sqlx's `sqlite` feature links its own libsqlite3-sys, which cannot sit beside
//! rusqlite's bundled one in a workspace whose core crate keeps rusqlite (Cargo allows one
//! `links = "sqlite3"` per graph; `cargo generate-lockfile` refuses the pair). The SQL differs
//! anyway where it matters (`FOR UPDATE SKIP LOCKED`, advisory locks, `IS DISTINCT FROM`).
//!
//! Uniqueness is the database's job: a report is an `INSERT … ON CONFLICT DO NOTHING`, and only
//! when nothing was inserted is the existing row read to say why. So two instances that receive
//! the same report at once record it once, and both answer with the same record.

mod audit;
pub mod outbox;
mod ownership;
mod postgres;
mod sqlite;

pub use audit::{AuditAction, AuditEntry, AuditFilter, AuditRow};
pub use outbox::PendingWebhook;
pub use ownership::{MultipartUpload, Ownership, Scoped};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::Notify;

/// How long an unreported presigned PUT is remembered: far beyond any URL's expiry, and long
/// enough for a client that was offline for weeks to report it. Past it, the key is no longer
/// bound to anyone and its report is refused (404).
const PRESIGNED_PUT_RETENTION: time::Duration = time::Duration::days(30);

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("Postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("Postgres connection pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("Postgres connection pool cannot be built: {0}")]
    PoolBuild(#[from] deadpool_postgres::BuildError),
    #[error("the database is at schema version {found}, newer than this binary knows ({known}); use a newer dropship-backend")]
    TooNew { found: u32, known: u32 },
    #[error("the database worker stopped unexpectedly")]
    WorkerGone,
    #[error("a record conflicted on insert but could not be read back (key {0})")]
    ConflictVanished(String),
}

/// Where the records live, from `--database-url` (or `--db`, the SQLite shorthand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://PATH`: a file on this machine, one instance.
    Sqlite(PathBuf),
    /// `postgres://USER:PASS@HOST:PORT/DB` (or `postgresql://`), as libpq spells it.
    Postgres(String),
}

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if let Some(path) = raw.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path, e.g. sqlite://./dropship-backend.sqlite".to_owned());
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            raw.parse::<tokio_postgres::Config>().map_err(|e| format!("not a usable Postgres URL ({e})"))?;
            return Ok(DatabaseUrl::Postgres(raw.to_owned()));
        }
        Err("use sqlite://PATH or postgres://USER:PASS@HOST:PORT/DB".to_owned())
    }

    /// For logs: the scheme and where, never the password.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) => match url.parse::<tokio_postgres::Config>() {
                Ok(config) => {
                    let hosts: Vec<String> = config
                        .get_hosts()
                        .iter()
                        .map(|host| match host {
                            tokio_postgres::config::Host::Tcp(name) => name.clone(),
                            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                        })
                        .collect();
                    format!("postgres://{}/{}", hosts.join(","), config.get_dbname().unwrap_or(""))
                }
                Err(_) => "postgres://(unparsable)".to_owned(),
            },
        }
    }
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

    fn parse(stored: &str) -> Self {
        if stored == "rails" {
            Flavour::Rails
        } else {
            Flavour::Native
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

impl NewRecord {
    /// Both databases store sizes as signed 64-bit integers; S3 objects stop at 5 TiB.
    fn stored_size(&self) -> i64 {
        i64::try_from(self.size).unwrap_or(i64::MAX)
    }

    fn into_record(self, id: i64, recorded_at: String) -> Record {
        Record {
            id,
            client_upload_id: self.client_upload_id,
            key: self.key,
            file_name: self.file_name,
            size: self.size,
            content_type: self.content_type,
            checksum_sha256: self.checksum_sha256,
            checksum_crc32c: self.checksum_crc32c,
            object_url: self.object_url,
            flavour: self.flavour,
            recorded_at,
            uploaded_by: Some(self.uploaded_by),
        }
    }
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

/// Why an insert did nothing, from the rows that hold the client id and the key: the same
/// judgement on both databases, made only after the constraint refused the row.
fn classify_conflict(
    new: &NewRecord,
    by_client_id: Option<Record>,
    by_key: Option<Record>,
) -> Result<RecordOutcome, DbError> {
    let mine = |existing: &Record| existing.uploaded_by.as_deref() == Some(new.uploaded_by.as_str());
    if let Some(existing) = by_client_id {
        if !mine(&existing) {
            return Ok(RecordOutcome::OthersRecord);
        }
        return Ok(if existing.key == new.key {
            RecordOutcome::AlreadyRecorded(existing)
        } else {
            RecordOutcome::UploadIdConflict(existing)
        });
    }
    match by_key {
        Some(existing) if new.client_upload_id.is_none() => {
            // Rails: idempotent on the key alone.
            Ok(if mine(&existing) { RecordOutcome::AlreadyRecorded(existing) } else { RecordOutcome::OthersRecord })
        }
        Some(existing) => {
            Ok(if mine(&existing) { RecordOutcome::KeyConflict(existing) } else { RecordOutcome::OthersRecord })
        }
        None => Err(DbError::ConflictVanished(new.key.clone())),
    }
}

/// Settings of the store that are not where it lives.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreOptions {
    /// Whether recording an upload also writes its webhook to the outbox. Off, nothing
    /// accumulates for a receiver that does not exist.
    pub webhooks: bool,
}

#[derive(Debug, Clone)]
enum Side {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// Handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    side: Side,
    options: StoreOptions,
    /// Woken when this instance wrote outbox rows, so its webhook worker need not wait for its
    /// next poll (rows written by other instances are found by polling).
    outbox_written: Arc<Notify>,
}

/// Runs the same call on whichever side this is.
macro_rules! on_side {
    ($db:expr, $store:ident => $call:expr) => {
        match &$db.side {
            Side::Sqlite($store) => $call.await,
            Side::Postgres($store) => $call.await,
        }
    };
}

impl Db {
    /// Opens (or creates) the database and applies pending migrations, under a lock so
    /// instances that start together migrate once.
    pub async fn open(url: &DatabaseUrl, options: StoreOptions) -> Result<Self, DbError> {
        let side = match url {
            DatabaseUrl::Sqlite(path) => Side::Sqlite(sqlite::SqliteStore::open(path)?),
            DatabaseUrl::Postgres(url) => Side::Postgres(postgres::PgStore::open(url).await?),
        };
        Ok(Self { side, options, outbox_written: Arc::new(Notify::new()) })
    }

    fn wake_outbox(&self, outcomes: &[RecordOutcome]) {
        if self.options.webhooks && outcomes.iter().any(|o| matches!(o, RecordOutcome::Recorded(_))) {
            self.outbox_written.notify_one();
        }
    }

    /// Resolves when this instance has written outbox rows since the last call.
    pub async fn outbox_written(&self) {
        self.outbox_written.notified().await;
    }

    /// Records a native upload, idempotent on its client id.
    pub async fn record_native(&self, new: NewRecord) -> Result<RecordOutcome, DbError> {
        let mut outcomes = self.record_native_all(vec![new]).await?;
        outcomes.pop().ok_or(DbError::WorkerGone)
    }

    /// Records native uploads in one transaction (a batch report's worth), each idempotent on
    /// its client id; one outcome per upload, in order. Each new record's webhook joins the
    /// outbox in the same transaction.
    pub async fn record_native_all(&self, news: Vec<NewRecord>) -> Result<Vec<RecordOutcome>, DbError> {
        let webhooks = self.options.webhooks;
        let outcomes = on_side!(self, store => store.record_all(news, webhooks))?;
        self.wake_outbox(&outcomes);
        Ok(outcomes)
    }

    /// Records a rails upload, idempotent on its key: a repeat by the same principal returns
    /// the record, a key recorded for another principal is [`RecordOutcome::OthersRecord`].
    pub async fn record_by_key(&self, new: NewRecord) -> Result<RecordOutcome, DbError> {
        let new = NewRecord { client_upload_id: None, ..new };
        self.record_native(new).await
    }

    /// Remembers what was signed into a batch of single PUTs and for whom, with their audit
    /// rows (one transaction), and forgets the ones older than [`PRESIGNED_PUT_RETENTION`].
    pub async fn remember_presigned(&self, puts: Vec<PresignedPut>, audit: Vec<AuditEntry>) -> Result<(), DbError> {
        on_side!(self, store => store.remember_presigned(puts, audit))
    }

    /// The presigned PUTs among `keys` that were signed for `principal`.
    pub async fn presigned_for(&self, principal: String, keys: Vec<String>) -> Result<Vec<PresignedPut>, DbError> {
        on_side!(self, store => store.presigned_for(principal, keys))
    }

    /// The record of a client upload id, if `principal` recorded it.
    pub async fn record_of(&self, principal: String, id: String) -> Result<Scoped<Record>, DbError> {
        let mut found = self.records_of(principal, vec![id.clone()]).await?;
        Ok(found.remove(&id).unwrap_or(Scoped::Missing))
    }

    /// [`Db::record_of`] for many ids at once, by client id; ids recorded by nobody are absent.
    pub async fn records_of(
        &self,
        principal: String,
        ids: Vec<String>,
    ) -> Result<HashMap<String, Scoped<Record>>, DbError> {
        on_side!(self, store => store.records_of(principal, ids))
    }

    /// The record of a key, if `principal` recorded it.
    pub async fn record_by_key_of(&self, principal: String, key: String) -> Result<Scoped<Record>, DbError> {
        on_side!(self, store => store.record_by_key_of(principal, key))
    }

    /// The principal's records, newest first.
    pub async fn latest_of(&self, principal: String, limit: u32) -> Result<Vec<Record>, DbError> {
        on_side!(self, store => store.latest(Some(principal), limit))
    }

    /// Everyone's records, newest first: for admins only (the route checks).
    pub async fn latest_of_everyone(&self, limit: u32) -> Result<Vec<Record>, DbError> {
        on_side!(self, store => store.latest(None, limit))
    }

    /// Whom each of `keys` was issued to, seen from `principal`.
    pub async fn key_owners(&self, principal: String, keys: Vec<String>) -> Result<Vec<Ownership>, DbError> {
        on_side!(self, store => store.key_owners(principal, keys))
    }

    pub async fn key_owner(&self, principal: String, key: String) -> Result<Ownership, DbError> {
        let mut owners = self.key_owners(principal, vec![key]).await?;
        owners.pop().ok_or(DbError::WorkerGone)
    }

    /// Remembers a multipart upload that S3 just created, with its audit row.
    pub async fn remember_multipart(&self, upload: MultipartUpload, audit: AuditEntry) -> Result<(), DbError> {
        on_side!(self, store => store.remember_multipart(upload, audit))
    }

    /// Whether the multipart upload `(upload_id, key)` was created by `principal`.
    pub async fn multipart_owner(
        &self,
        principal: String,
        upload_id: String,
        key: String,
    ) -> Result<Ownership, DbError> {
        on_side!(self, store => store.multipart_owner(principal, upload_id, key))
    }

    /// Appends audit rows in one transaction.
    pub async fn audit(&self, entries: Vec<AuditEntry>) -> Result<(), DbError> {
        on_side!(self, store => store.audit(entries))
    }

    /// The rows that match `filter`, oldest first.
    pub async fn audit_rows(&self, filter: AuditFilter) -> Result<Vec<AuditRow>, DbError> {
        on_side!(self, store => store.audit_rows(filter))
    }

    /// Takes up to `limit` due webhooks for delivery and hides them from every other worker for
    /// `lease` (a worker that dies mid-delivery leaves them to be taken again after it).
    pub async fn claim_webhooks(&self, limit: u32, lease: Duration) -> Result<Vec<PendingWebhook>, DbError> {
        on_side!(self, store => store.claim_webhooks(limit, lease))
    }

    /// The receiver accepted the webhook: it is never sent again.
    pub async fn webhook_delivered(&self, id: i64) -> Result<(), DbError> {
        on_side!(self, store => store.webhook_delivered(id))
    }

    /// The delivery failed: try again after `retry_in`, keeping why for whoever looks.
    pub async fn webhook_failed(&self, id: i64, retry_in: Duration, error: String) -> Result<(), DbError> {
        on_side!(self, store => store.webhook_failed(id, retry_in, error))
    }

    /// How many webhooks are not delivered yet (for the metrics).
    pub async fn webhook_backlog(&self) -> Result<u64, DbError> {
        on_side!(self, store => store.webhook_backlog())
    }
}

/// RFC 3339 in UTC, whole seconds: records are compared by people, not by nanoseconds.
pub fn now_rfc3339() -> String {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now).format(&Rfc3339).unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// The oldest `signed_at` a presigned PUT may have to be kept.
fn presigned_cutoff() -> Option<String> {
    (OffsetDateTime::now_utc() - PRESIGNED_PUT_RETENTION)
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
}

#[cfg(test)]
mod tests;
