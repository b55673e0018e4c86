//! Read-only summaries for a diagnostics bundle: how many uploads are in each state, and where
//! each resumable multipart upload stands (ids, sizes and part counts; never a URL).

use rusqlite::params;

use super::{Store, StoreError};

/// A multipart upload that a restart would carry on with.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MultipartProgress {
    pub upload_id: String,
    /// S3's id of the multipart upload (useless without the bucket's credentials).
    pub s3_upload_id: String,
    pub key: String,
    pub file_size: u64,
    pub part_size: u64,
    pub parts_done: u64,
    pub bytes_done: u64,
    pub started_at: String,
}

impl Store {
    /// `(status, count)` for every status present.
    pub fn count_by_status(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let read = |e| StoreError::new(&self.path, "could not be read", e);
        let mut statement =
            conn.prepare("SELECT status, COUNT(*) FROM uploads GROUP BY status ORDER BY status").map_err(read)?;
        let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))).map_err(read)?;
        rows.collect::<Result<_, _>>().map_err(read)
    }

    /// Every multipart upload with saved state, oldest first, at most `limit`.
    pub fn multipart_progress(&self, limit: usize) -> Result<Vec<MultipartProgress>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let read = |e| StoreError::new(&self.path, "could not be read", e);
        let mut statement = conn
            .prepare(
                "SELECT s.upload_id, s.s3_upload_id, s.key, s.file_size, s.part_size, s.created_at,
                        COUNT(p.part_number), COALESCE(SUM(p.size), 0)
                 FROM multipart_state s LEFT JOIN multipart_parts p ON p.upload_id = s.upload_id
                 GROUP BY s.upload_id ORDER BY s.created_at LIMIT ?1",
            )
            .map_err(read)?;
        let rows = statement
            .query_map(params![limit as i64], |r| {
                Ok(MultipartProgress {
                    upload_id: r.get(0)?,
                    s3_upload_id: r.get(1)?,
                    key: r.get(2)?,
                    file_size: r.get::<_, i64>(3)? as u64,
                    part_size: r.get::<_, i64>(4)? as u64,
                    started_at: r.get(5)?,
                    parts_done: r.get::<_, i64>(6)? as u64,
                    bytes_done: r.get::<_, i64>(7)? as u64,
                })
            })
            .map_err(read)?;
        rows.collect::<Result<_, _>>().map_err(read)
    }
}
