//! The outbox of completion reports. A report is written in the same transaction that records
//! the upload as in S3, and leaves only in the transaction that records the backend's answer,
//! so no crash between the two loses it or records it twice.

use rusqlite::{params, OptionalExtension};

use super::{now, Store, StoreError};

/// A report waiting in the outbox.
#[derive(Debug, Clone)]
pub struct QueuedReport {
    pub upload_id: String,
    /// The report as JSON, exactly as it will be sent.
    pub report: String,
    pub attempts: u32,
    pub rejected: bool,
    pub last_error: Option<String>,
}

pub fn unix_millis() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos().div_euclid(1_000_000) as i64
}

impl Store {
    /// Marks these uploads as in S3 and queues their reports, in one transaction; each checksum
    /// is the object's, when it was only known at the end (a multipart upload's composite).
    pub fn enqueue_reports(&self, reports: &[(&str, Option<&str>, String)]) -> Result<(), StoreError> {
        let (at, due) = (now(), unix_millis());
        self.in_transaction(|tx| {
            let mut update = tx.prepare_cached(
                "UPDATE uploads SET status = 'reporting', checksum_sha256 = COALESCE(?2, checksum_sha256),
                        error_code = NULL, error = NULL, updated_at = ?3
                 WHERE upload_id = ?1",
            )?;
            let mut queue = tx.prepare_cached(
                "INSERT OR REPLACE INTO outbox (upload_id, report, attempts, next_attempt_at, rejected, created_at)
                 VALUES (?1, ?2, 0, ?3, 0, ?4)",
            )?;
            for (upload_id, checksum, report) in reports {
                update.execute(params![upload_id, checksum, at])?;
                queue.execute(params![upload_id, report, due, at])?;
            }
            Ok(())
        })
    }

    /// Reports due now, oldest first, leaving out the ones already being delivered.
    pub fn due_reports(&self, limit: usize, skip: &dyn Fn(&str) -> bool) -> Result<Vec<QueuedReport>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let read = |e| StoreError::new(&self.path, "could not be read", e);
        let mut statement = conn
            .prepare_cached(
                "SELECT upload_id, report, attempts, rejected, last_error FROM outbox
                 WHERE rejected = 0 AND next_attempt_at <= ?1 ORDER BY next_attempt_at, created_at",
            )
            .map_err(read)?;
        let mut rows = statement.query([unix_millis()]).map_err(read)?;
        let mut due = Vec::new();
        while let Some(row) = rows.next().map_err(read)? {
            let upload_id: String = row.get(0).map_err(read)?;
            if skip(&upload_id) {
                continue;
            }
            due.push(queued_report(row).map_err(read)?);
            if due.len() == limit {
                break;
            }
        }
        Ok(due)
    }

    /// When the next report waiting for a retry is due (unix milliseconds).
    pub fn next_report_due(&self) -> Result<Option<i64>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row("SELECT MIN(next_attempt_at) FROM outbox WHERE rejected = 0", [], |r| r.get(0))
            .map_err(|e| StoreError::new(&self.path, "could not be read", e))
    }

    /// The report of `upload_id`, while it is in the outbox.
    pub fn queued_report(&self, upload_id: &str) -> Result<Option<QueuedReport>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row(
            "SELECT upload_id, report, attempts, rejected, last_error FROM outbox WHERE upload_id = ?1",
            [upload_id],
            queued_report,
        )
        .optional()
        .map_err(|e| StoreError::new(&self.path, "could not be read", e))
    }

    /// Every report not yet acknowledged, rejected ones included, oldest first.
    pub fn queued_reports(&self) -> Result<Vec<QueuedReport>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let read = |e| StoreError::new(&self.path, "could not be read", e);
        let mut statement = conn
            .prepare_cached(
                "SELECT upload_id, report, attempts, rejected, last_error FROM outbox ORDER BY created_at, upload_id",
            )
            .map_err(read)?;
        let rows = statement.query_map([], queued_report).map_err(read)?;
        rows.collect::<Result<_, _>>().map_err(read)
    }

    /// The backend recorded these: the uploads are done and their reports leave the outbox.
    pub fn reports_delivered(&self, upload_ids: &[&str]) -> Result<(), StoreError> {
        let at = now();
        self.in_transaction(|tx| {
            let mut update = tx.prepare_cached(
                "UPDATE uploads SET status = 'uploaded', error_code = NULL, error = NULL, reported_at = ?2, updated_at = ?2
                 WHERE upload_id = ?1",
            )?;
            let mut remove = tx.prepare_cached("DELETE FROM outbox WHERE upload_id = ?1")?;
            for upload_id in upload_ids {
                update.execute(params![upload_id, at])?;
                remove.execute([upload_id])?;
            }
            Ok(())
        })
    }

    /// The backend could not be asked (down, 5xx): try again at `next_attempt_at`.
    pub fn report_postponed(&self, upload_ids: &[&str], error: &str, next_attempt_at: i64) -> Result<(), StoreError> {
        self.in_transaction(|tx| {
            let mut update = tx.prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3 WHERE upload_id = ?1",
            )?;
            for upload_id in upload_ids {
                update.execute(params![upload_id, error, next_attempt_at])?;
            }
            Ok(())
        })
    }

    /// The backend refused the report: it stays in the outbox, set aside until a person retries
    /// it, and the upload shows the backend's reason.
    pub fn report_rejected(&self, upload_id: &str, code: &str, message: &str) -> Result<(), StoreError> {
        let at = now();
        self.in_transaction(|tx| {
            tx.execute(
                "UPDATE outbox SET attempts = attempts + 1, rejected = 1, last_error = ?2 WHERE upload_id = ?1",
                params![upload_id, message],
            )?;
            tx.execute(
                "UPDATE uploads SET status = 'failed', error_code = ?2, error = ?3, updated_at = ?4 WHERE upload_id = ?1",
                params![upload_id, code, message, at],
            )?;
            Ok(())
        })
    }

    /// Puts rejected reports (these, or all when `upload_ids` is empty) back in line for
    /// delivery now; returns how many.
    pub fn retry_reports(&self, upload_ids: &[&str]) -> Result<usize, StoreError> {
        let (at, due) = (now(), unix_millis());
        let mut count = 0;
        self.in_transaction(|tx| {
            let ids: Vec<String> = if upload_ids.is_empty() {
                let mut all = tx.prepare_cached("SELECT upload_id FROM outbox WHERE rejected = 1")?;
                let ids = all.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
                ids
            } else {
                upload_ids.iter().map(|id| id.to_string()).collect()
            };
            let mut requeue =
                tx.prepare_cached("UPDATE outbox SET rejected = 0, next_attempt_at = ?2 WHERE upload_id = ?1")?;
            let mut update = tx.prepare_cached(
                "UPDATE uploads SET status = 'reporting', error_code = NULL, error = NULL, updated_at = ?2 WHERE upload_id = ?1",
            )?;
            for id in &ids {
                if requeue.execute(params![id, due])? > 0 {
                    update.execute(params![id, at])?;
                    count += 1;
                }
            }
            Ok(())
        })?;
        Ok(count)
    }

    /// A restart is a good moment to try again: every waiting report becomes due at once.
    pub fn reports_due_now(&self) -> Result<(), StoreError> {
        self.write("UPDATE outbox SET next_attempt_at = ?1 WHERE rejected = 0", [unix_millis()])
    }
}

fn queued_report(row: &rusqlite::Row<'_>) -> rusqlite::Result<QueuedReport> {
    Ok(QueuedReport {
        upload_id: row.get(0)?,
        report: row.get(1)?,
        attempts: row.get(2)?,
        rejected: row.get::<_, i64>(3)? != 0,
        last_error: row.get(4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::add;
    use super::super::UploadStatus;
    use super::*;

    fn store_with(ids: &[&str]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.sqlite")).unwrap();
        for id in ids {
            add(&store, id, &format!("{id}.txt"));
        }
        (dir, store)
    }

    #[test]
    fn a_queued_report_survives_a_restart_and_leaves_when_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite");
        {
            let store = Store::open(&path).unwrap();
            add(&store, "u1", "a.txt");
            store.enqueue_reports(&[("u1", Some("c2hh"), "{\"r\":1}".into())]).unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.get("u1").unwrap().unwrap().status, UploadStatus::Reporting);
        let due = store.due_reports(10, &|_| false).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].report, "{\"r\":1}");
        store.reports_delivered(&["u1"]).unwrap();
        assert!(store.queued_reports().unwrap().is_empty());
        assert_eq!(store.get("u1").unwrap().unwrap().status, UploadStatus::Uploaded);
    }

    #[test]
    fn a_postponed_report_waits_until_it_is_due() {
        let (_dir, store) = store_with(&["u1"]);
        store.enqueue_reports(&[("u1", None, "{}".into())]).unwrap();
        store.report_postponed(&["u1"], "backend down", unix_millis() + 60_000).unwrap();
        assert!(store.due_reports(10, &|_| false).unwrap().is_empty());
        assert!(store.next_report_due().unwrap().unwrap() > unix_millis());
        store.reports_due_now().unwrap();
        let due = store.due_reports(10, &|_| false).unwrap();
        assert_eq!((due[0].attempts, due[0].last_error.as_deref()), (1, Some("backend down")));
    }

    #[test]
    fn a_rejected_report_is_kept_with_its_reason_until_retried_by_hand() {
        let (_dir, store) = store_with(&["u1", "u2"]);
        store.enqueue_reports(&[("u1", None, "{}".into()), ("u2", None, "{}".into())]).unwrap();
        store.report_rejected("u1", "backend_rejected", "size_mismatch").unwrap();
        let entry = store.get("u1").unwrap().unwrap();
        assert_eq!((entry.status, entry.error.as_deref()), (UploadStatus::Failed, Some("size_mismatch")));
        let due: Vec<_> = store.due_reports(10, &|_| false).unwrap().into_iter().map(|r| r.upload_id).collect();
        assert_eq!(due, ["u2"], "a rejected report is not retried on its own");
        assert_eq!(store.retry_reports(&[]).unwrap(), 1);
        assert_eq!(store.get("u1").unwrap().unwrap().status, UploadStatus::Reporting);
        assert_eq!(store.due_reports(10, &|id| id == "u2").unwrap()[0].upload_id, "u1", "skipped ids stay out");
    }
}
