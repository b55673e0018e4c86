//! What was issued to whom: which principal a record, a presigned key or a multipart upload
//! belongs to. Each query filters by the principal in SQL; where a route must also know that a
//! row exists for someone else (to audit the denial), it gets [`Scoped::Others`] or
//! [`Ownership::Others`], never the row.

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

/// Whom a key was issued to, from the owners of every row that names it (records, presigned
/// PUTs, multipart uploads; `None` for rows made before principals existed).
pub(super) fn ownership_of(owners: &[Option<String>], principal: &str) -> Ownership {
    if owners.is_empty() {
        Ownership::Nobody
    } else if owners.iter().all(|owner| owner.as_deref() == Some(principal)) {
        Ownership::Mine
    } else {
        Ownership::Others
    }
}
