//! The append-only audit log: who did what to which key, denials included. Rows are only ever
//! inserted (the migration's triggers refuse UPDATE and DELETE); reads are for admins.

use rusqlite::{params, Connection};
use serde::Serialize;

use super::{now_rfc3339, Db, DbError};

/// What a principal did (or tried to do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditAction {
    Presign,
    Create,
    Sign,
    Complete,
    Abort,
    Report,
    Denied,
}

impl AuditAction {
    fn as_str(self) -> &'static str {
        match self {
            AuditAction::Presign => "presign",
            AuditAction::Create => "create",
            AuditAction::Sign => "sign",
            AuditAction::Complete => "complete",
            AuditAction::Abort => "abort",
            AuditAction::Report => "report",
            AuditAction::Denied => "denied",
        }
    }
}

/// A row to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub principal: String,
    pub action: AuditAction,
    pub key: Option<String>,
    pub client_upload_id: Option<String>,
    /// What came of it, e.g. `recorded`, `rejected: size_mismatch`, or for a denial the route
    /// and why (`POST /api/v1/multipart/sign: not_found: belongs to another principal`).
    pub outcome: String,
}

impl AuditEntry {
    pub fn new(principal: &str, action: AuditAction, outcome: impl Into<String>) -> Self {
        Self { principal: principal.to_owned(), action, key: None, client_upload_id: None, outcome: outcome.into() }
    }

    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn client_upload_id(mut self, id: impl Into<String>) -> Self {
        self.client_upload_id = Some(id.into());
        self
    }
}

/// A stored row, as `GET /api/v1/audit` answers it (one JSON object per line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: String,
    pub principal: String,
    pub action: String,
    pub key: Option<String>,
    pub client_upload_id: Option<String>,
    pub outcome: String,
}

/// Which rows to read: all bounds optional; `since` and `until` are inclusive RFC 3339 times
/// in UTC as the rows store them (`2026-12-05T10:00:00Z`).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub since: Option<String>,
    pub until: Option<String>,
    pub principal: Option<String>,
    pub limit: u32,
}

/// Appends `entries` inside the caller's transaction, so an action and its audit row commit
/// together.
pub(super) fn append_in(conn: &Connection, entries: &[AuditEntry]) -> Result<(), DbError> {
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

impl Db {
    /// Appends audit rows in one transaction.
    pub async fn audit(&self, entries: Vec<AuditEntry>) -> Result<(), DbError> {
        self.with_conn(move |conn| {
            let tx = conn.transaction()?;
            append_in(&tx, &entries)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The rows that match `filter`, oldest first.
    pub async fn audit_rows(&self, filter: AuditFilter) -> Result<Vec<AuditRow>, DbError> {
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
}
