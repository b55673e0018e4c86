//! Numbered schema migrations, embedded at build time. Each runs in its own IMMEDIATE
//! transaction together with the bump of `user_version`, so a crash leaves the schema at
//! exactly one known version.

use rusqlite::Connection;

pub const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("migrations/0001_history.sql")),
    (2, include_str!("migrations/0002_resume_and_outbox.sql")),
    (3, include_str!("migrations/0003_watch_index.sql")),
    (4, include_str!("migrations/0004_history_search.sql")),
    (5, include_str!("migrations/0005_uploaded_by.sql")),
    (6, include_str!("migrations/0006_raw_paths.sql")),
];

pub fn apply(conn: &mut Connection) -> rusqlite::Result<u32> {
    let mut version = 0;
    for &(number, sql) in MIGRATIONS {
        // The version is read under the write lock: the desktop app and the CLI may open the
        // same fresh data folder at once, and only one of them may run each migration.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        version = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if number > version {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", number)?;
            version = number;
        }
        tx.commit()?;
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_to_an_empty_database_and_are_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        let latest = MIGRATIONS.last().unwrap().0;
        assert_eq!(apply(&mut conn).unwrap(), latest);
        assert_eq!(apply(&mut conn).unwrap(), latest, "a second run changes nothing");
    }

    #[test]
    fn a_history_from_the_first_release_upgrades_and_keeps_its_rows() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0].1).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO uploads (upload_id, batch_id, path, file_name, size, content_type, source, status, created_at, updated_at)
             VALUES ('u1', 'b', '/a', 'a', 1, 'text/plain', 'cli', 'uploaded', 't', 't')",
            [],
        )
        .unwrap();
        assert_eq!(apply(&mut conn).unwrap(), MIGRATIONS.last().unwrap().0);
        let rows: i64 = conn.query_row("SELECT count(*) FROM uploads", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 1, "history survives the upgrade");
        let indexed: i64 = conn.query_row("SELECT count(*) FROM watch_index", [], |r| r.get(0)).unwrap();
        assert_eq!(indexed, 0, "the watched-folder index starts empty");
        let (status, owner): (String, Option<String>) =
            conn.query_row("SELECT status, owner FROM uploads", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert_eq!((status.as_str(), owner), ("uploaded", None), "earlier rows are kept as they were");
        let queued: i64 = conn.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0)).unwrap();
        assert_eq!(queued, 0, "the outbox starts empty");
        let raw: Option<Vec<u8>> = conn.query_row("SELECT path_raw FROM uploads", [], |r| r.get(0)).unwrap();
        assert_eq!(raw, None, "an earlier row's text path stays the exact one");
    }

    #[test]
    fn two_connections_opening_a_fresh_database_at_once_both_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite");
        let openers: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut conn = Connection::open(&path).unwrap();
                    conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
                    apply(&mut conn)
                })
            })
            .collect();
        for opener in openers {
            assert_eq!(opener.join().unwrap().unwrap(), MIGRATIONS.last().unwrap().0, "every opener sees the schema");
        }
    }

    #[test]
    fn migrations_are_numbered_consecutively_from_one() {
        for (i, (number, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*number as usize, i + 1);
        }
    }
}
