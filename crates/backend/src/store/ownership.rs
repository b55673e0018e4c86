//! What was issued to whom: which principal a record, a presigned key or a multipart upload
//! belongs to. Each query filters by the principal in SQL; where a route must also know that a
//! row exists for someone else (to audit the denial), it gets [`Scoped::Others`] or
//! [`Ownership::Others`], never the row.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::audit::{self, AuditEntry};
use super::{now_rfc3339, row_to_record, Db, DbError, Record, COLUMNS};

/// A row looked up on behalf of a principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scoped<T> {
    Mine(T),
    /// It exists, for another principal (or for nobody, made before principals existed).
    Others,
    Missing,
}

/// Whom a key or an upload was issued to, seen from one principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    Mine,
    Others,
    /// Not issued by this backend, or forgotten (a presign older than the retention).
    Nobody,
}

impl Ownership {
    /// The audit outcome of a denial, for the admin who reads it (the client only sees 404).
    pub fn denial(self) -> &'static str {
        match self {
            Ownership::Mine => "allowed",
            Ownership::Others => "not_found: belongs to another principal",
            Ownership::Nobody => "not_found: not issued to anyone",
        }
    }
}

/// A multipart upload as created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartUpload {
    pub upload_id: String,
    pub key: String,
    pub uploaded_by: String,
    pub client_upload_id: Option<String>,
}

/// `column` is one of our own column names, never request data.
pub(super) fn scoped_record(
    conn: &Connection,
    principal: &str,
    column: &str,
    value: &str,
) -> Result<Scoped<Record>, DbError> {
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

/// Whom `key` was issued to: a record, a presigned PUT or a multipart upload of it.
fn key_owner(conn: &Connection, principal: &str, key: &str) -> Result<Ownership, DbError> {
    let mut owners: Vec<Option<String>> = Vec::new();
    for sql in [
        "SELECT uploaded_by FROM records WHERE key = ?1",
        "SELECT uploaded_by FROM presigned_puts WHERE key = ?1",
        "SELECT uploaded_by FROM multipart_uploads WHERE key = ?1",
    ] {
        let mut statement = conn.prepare_cached(sql)?;
        let rows = statement.query_map(params![key], |row| row.get::<_, Option<String>>(0))?;
        for owner in rows {
            owners.push(owner?);
        }
    }
    Ok(if owners.is_empty() {
        Ownership::Nobody
    } else if owners.iter().all(|owner| owner.as_deref() == Some(principal)) {
        Ownership::Mine
    } else {
        Ownership::Others
    })
}

impl Db {
    /// Whom each of `keys` was issued to, seen from `principal`.
    pub async fn key_owners(&self, principal: String, keys: Vec<String>) -> Result<Vec<Ownership>, DbError> {
        self.with_conn(move |conn| keys.iter().map(|key| key_owner(conn, &principal, key)).collect()).await
    }

    pub async fn key_owner(&self, principal: String, key: String) -> Result<Ownership, DbError> {
        self.with_conn(move |conn| key_owner(conn, &principal, &key)).await
    }

    /// Remembers a multipart upload that S3 just created, with its audit row.
    pub async fn remember_multipart(&self, upload: MultipartUpload, audit: AuditEntry) -> Result<(), DbError> {
        self.with_conn(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
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
            audit::append_in(&tx, std::slice::from_ref(&audit))?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Whether the multipart upload `(upload_id, key)` was created by `principal`.
    pub async fn multipart_owner(
        &self,
        principal: String,
        upload_id: String,
        key: String,
    ) -> Result<Ownership, DbError> {
        self.with_conn(move |conn| {
            let mine = conn
                .prepare_cached(
                    "SELECT 1 FROM multipart_uploads WHERE upload_id = ?1 AND key = ?2 AND uploaded_by = ?3",
                )?
                .query_row(params![upload_id, key, principal], |_| Ok(()))
                .optional()?;
            if mine.is_some() {
                return Ok(Ownership::Mine);
            }
            let others = conn
                .prepare_cached("SELECT 1 FROM multipart_uploads WHERE upload_id = ?1 AND key = ?2")?
                .query_row(params![upload_id, key], |_| Ok(()))
                .optional()?;
            Ok(if others.is_some() { Ownership::Others } else { Ownership::Nobody })
        })
        .await
    }
}
