//! Notices when any process commits to the history: the CLI, `dropship watch`, or this app's own
//! engine. The window's history follows uploads it did not start, without a message bus between
//! processes: SQLite's `data_version` already counts other connections' commits, and reading it
//! is a few microseconds against the shared WAL index.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;

/// Often enough that an upload shows within a second of its commit.
pub const CHANGE_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Polls the history for commits until dropped.
pub struct HistoryChanges {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HistoryChanges {
    /// Calls `on_change` (on its own thread) after each poll that saw one or more commits made
    /// since the last poll by any other connection, in this process or another.
    pub fn watch(
        path: &Path,
        interval: Duration,
        on_change: impl Fn() + Send + 'static,
    ) -> Result<HistoryChanges, StoreError> {
        let fail = |e| StoreError::new(path, "could not be opened", e);
        // Read-only and its own connection: `data_version` only moves for commits made by
        // connections other than the one asking.
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(fail)?;
        let mut seen = data_version(&conn).map_err(fail)?;
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("history-changes".into())
            .spawn(move || loop {
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
                match data_version(&conn) {
                    Ok(now) if now != seen => {
                        seen = now;
                        on_change();
                    }
                    Ok(_) => {}
                    // A busy or briefly locked file: the next poll reads it.
                    Err(e) => tracing::debug!("could not read the history's change counter: {e}"),
                }
            })
            .map_err(|e| StoreError {
                path: path.display().to_string(),
                action: "could not be watched",
                detail: e.to_string(),
                hint: "The system is out of threads; restart Dropship.",
            })?;
        Ok(HistoryChanges { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for HistoryChanges {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA data_version", [], |row| row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewUpload, Source, Store};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn wait_for(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_commit_by_another_connection_is_seen_and_quiet_polls_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        let writer = Store::open(&path).unwrap();
        let changes = Arc::new(AtomicUsize::new(0));
        let counted = changes.clone();
        let _watch = HistoryChanges::watch(&path, Duration::from_millis(20), move || {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();

        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(changes.load(Ordering::SeqCst), 0, "nothing was committed");

        let file = dir.path().join("a.txt");
        std::fs::write(&file, b"a").unwrap();
        writer
            .insert(&NewUpload {
                upload_id: "u1",
                batch_id: "b1",
                path: &file,
                file_name: "a.txt",
                size: 1,
                content_type: "text/plain",
                source: Source::Cli,
                uploaded_by: None,
            })
            .unwrap();
        wait_for("the commit to be noticed", || changes.load(Ordering::SeqCst) == 1);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(changes.load(Ordering::SeqCst), 1, "one commit, one notice");
    }

    #[test]
    fn dropping_the_watch_stops_its_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        let _store = Store::open(&path).unwrap();
        let watch = HistoryChanges::watch(&path, Duration::from_secs(3600), || {}).unwrap();
        let started = std::time::Instant::now();
        drop(watch);
        assert!(started.elapsed() < Duration::from_secs(1), "the hour-long wait ends on drop");
    }
}
