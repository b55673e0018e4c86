//! The append-only audit log: who did what to which key, denials included. Rows are only ever
//! inserted (the migrations' triggers refuse UPDATE and DELETE, on both databases); reads are
//! for admins. The SQL is in `sqlite.rs` and `postgres.rs`.

use serde::Serialize;

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
    pub(super) fn as_str(self) -> &'static str {
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
