//! The store's contract, run on SQLite and, with `DROPSHIP_TEST_DATABASE=postgres`, on a real
//! Postgres started by the test kit: the same tests, so both sides answer alike.

use std::time::Duration;

use rusqlite::Connection;
use time::OffsetDateTime;

use super::sqlite::MIGRATIONS;
use super::*;

/// A fresh database of the kind the run asks for, removed (SQLite) or left to the shared
/// server's teardown (Postgres) when dropped.
struct TestDb {
    url: DatabaseUrl,
    _dir: tempfile::TempDir,
}

impl TestDb {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = if dropship_testkit::test_database_is_postgres() {
            DatabaseUrl::Postgres(dropship_testkit::PostgresServer::shared().create_database())
        } else {
            DatabaseUrl::Sqlite(dir.path().join("records.sqlite"))
        };
        Self { url, _dir: dir }
    }

    async fn open(&self) -> Db {
        self.open_with(StoreOptions::default()).await
    }

    async fn open_with(&self, options: StoreOptions) -> Db {
        Db::open(&self.url, options).await.expect("the database opens and migrates")
    }

    /// Runs raw SQL as an operator at a console would (sqlite3, psql), bypassing the store.
    async fn execute_raw(&self, sql: &str) -> Result<(), String> {
        match &self.url {
            DatabaseUrl::Sqlite(path) => {
                Connection::open(path).unwrap().execute(sql, []).map(drop).map_err(|e| e.to_string())
            }
            DatabaseUrl::Postgres(url) => {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
                let driver = tokio::spawn(connection);
                let result = client.batch_execute(sql).await.map_err(|e| format!("{e:?}"));
                drop(client);
                let _ = driver.await;
                result
            }
        }
    }
}

fn new_record(id: Option<&str>, key: &str) -> NewRecord {
    NewRecord {
        client_upload_id: id.map(str::to_owned),
        key: key.to_owned(),
        file_name: "a.txt".to_owned(),
        size: 3,
        content_type: "text/plain".to_owned(),
        checksum_sha256: None,
        checksum_crc32c: None,
        object_url: format!("http://s3/b/{key}"),
        flavour: if id.is_some() { Flavour::Native } else { Flavour::Rails },
        uploaded_by: "alice".to_owned(),
    }
}

fn by(principal: &str, new: NewRecord) -> NewRecord {
    NewRecord { uploaded_by: principal.to_owned(), ..new }
}

fn sqlite_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.sqlite");
    (dir, path)
}

fn open_sqlite(path: &std::path::Path) -> Result<Db, DbError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(Db::open(&DatabaseUrl::Sqlite(path.to_owned()), StoreOptions::default()))
}

#[test]
fn sqlite_migrations_apply_to_an_empty_file_and_reopening_applies_nothing_twice() {
    let (_dir, path) = sqlite_file();
    drop(open_sqlite(&path).expect("first open migrates"));
    drop(open_sqlite(&path).expect("second open is a no-op"));
    let conn = Connection::open(&path).unwrap();
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, MIGRATIONS.len() as u32, "user_version is the last migration");
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal", "the file stays in WAL mode");
}

#[test]
fn sqlite_commits_leave_checkpoints_to_a_thread_of_their_own_and_the_file_still_gets_the_rows() {
    let (_dir, path) = sqlite_file();
    let db = open_sqlite(&path).unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    let puts = (0..2_000)
        .map(|n| PresignedPut {
            key: format!("uploads/{n:04}/photo.jpg"),
            checksum_sha256: Some("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=".to_owned()),
            object_url: format!("http://s3/b/uploads/{n:04}/photo.jpg"),
            uploaded_by: "alice".to_owned(),
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(db.remember_presigned(puts, vec![])).unwrap();
    let wal = path.with_extension("sqlite-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0, "the commit went to the WAL");
    // No commit checkpoints (wal_autocheckpoint is off), and the store stays open: only the
    // checkpoint thread can move the rows into the database file.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(&path).unwrap().len() <= before {
        assert!(std::time::Instant::now() < deadline, "no checkpoint within 20 s: the file is still {before} bytes");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(db);
}

#[test]
fn sqlite_migrations_are_numbered_one_up_without_gaps() {
    for (index, (number, _)) in MIGRATIONS.iter().enumerate() {
        assert_eq!(*number as usize, index + 1, "migration numbers count up from 1");
    }
}

#[test]
fn a_sqlite_database_from_a_newer_release_is_refused() {
    let (_dir, path) = sqlite_file();
    Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
    assert!(matches!(open_sqlite(&path), Err(DbError::TooNew { found: 99, .. })), "refused");
}

#[test]
fn the_previous_releases_sqlite_schema_migrates_with_its_rows_owned_by_nobody() {
    let (_dir, path) = sqlite_file();
    {
        // The schema as release 3 left it, with a record and an unreported presign.
        let mut conn = Connection::open(&path).unwrap();
        for (number, sql) in &MIGRATIONS[..3] {
            let tx = conn.transaction().unwrap();
            tx.execute_batch(sql).unwrap();
            tx.pragma_update(None, "user_version", number).unwrap();
            tx.commit().unwrap();
        }
        conn.execute_batch(
            "INSERT INTO records (client_upload_id, key, file_name, size, content_type, object_url, flavour, recorded_at) \
             VALUES ('u1', 'uploads/k1', 'a.txt', 3, 'text/plain', 'http://s3/b/uploads/k1', 'native', '2026-01-01T00:00:00Z'); \
             INSERT INTO presigned_puts (key, checksum_sha256, object_url, signed_at) \
             VALUES ('uploads/k2', 'c2hh', 'http://s3/b/uploads/k2', '2099-01-01T00:00:00Z');",
        )
        .unwrap();
    }
    let db = open_sqlite(&path).expect("release 3's file migrates");
    let conn = Connection::open(&path).unwrap();
    let owner: Option<String> =
        conn.query_row("SELECT uploaded_by FROM records WHERE key = 'uploads/k1'", [], |r| r.get(0)).unwrap();
    assert_eq!(owner, None, "an old record belongs to nobody");
    let kept: (Option<String>, Option<String>) = conn
        .query_row("SELECT checksum_sha256, uploaded_by FROM presigned_puts WHERE key = 'uploads/k2'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(kept, (Some("c2hh".to_owned()), None), "presigns survive the table rebuild, owned by nobody");
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let seen = rt.block_on(db.record_of("alice".to_owned(), "u1".to_owned())).unwrap();
    assert_eq!(seen, Scoped::Others, "nobody's record is not alice's");
    let all = rt.block_on(db.latest_of_everyone(10)).unwrap();
    assert_eq!(all.len(), 1, "an admin still lists it");
    assert_eq!(all[0].uploaded_by, None, "with uploaded_by null");
}

#[tokio::test]
async fn instances_opening_a_fresh_database_together_migrate_it_once() {
    let test_db = TestDb::new();
    let (a, b, c) = tokio::join!(test_db.open(), test_db.open(), test_db.open());
    a.record_native(new_record(Some("u1"), "k1")).await.expect("the schema is there");
    assert_eq!(c.latest_of("alice".to_owned(), 10).await.unwrap().len(), 1, "all three see one schema");
    drop(b);
}

#[tokio::test]
async fn recording_twice_with_the_same_id_and_key_returns_the_first_record() {
    let test_db = TestDb::new();
    let db = test_db.open().await;
    let first = db.record_native(new_record(Some("u1"), "k1")).await.unwrap();
    let RecordOutcome::Recorded(record) = first else { panic!("first time records: {first:?}") };
    let again = db.record_native(new_record(Some("u1"), "k1")).await.unwrap();
    assert_eq!(again, RecordOutcome::AlreadyRecorded(record), "the repeat returns the same record");
    assert_eq!(db.latest_of("alice".to_owned(), 10).await.unwrap().len(), 1, "one record only");
}

#[tokio::test]
async fn the_same_report_sent_to_two_instances_at_once_is_recorded_once() {
    let test_db = TestDb::new();
    let (one, two) = (test_db.open().await, test_db.open().await);
    for round in 0..20 {
        let id = format!("u{round}");
        let key = format!("k{round}");
        let (a, b) = tokio::join!(
            one.record_native(new_record(Some(&id), &key)),
            two.record_native(new_record(Some(&id), &key))
        );
        let outcomes = [a.expect("instance one answers"), b.expect("instance two answers")];
        let recorded: Vec<&Record> = outcomes
            .iter()
            .filter_map(|o| match o {
                RecordOutcome::Recorded(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(recorded.len(), 1, "exactly one instance records it: {outcomes:?}");
        let same: Vec<&Record> = outcomes
            .iter()
            .filter_map(|o| match o {
                RecordOutcome::Recorded(r) | RecordOutcome::AlreadyRecorded(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(same.len(), 2, "the other sees it as already recorded: {outcomes:?}");
        assert_eq!(same[0], same[1], "both answer with the same record");
    }
    assert_eq!(one.latest_of("alice".to_owned(), 100).await.unwrap().len(), 20, "one row per report");
}

#[tokio::test]
async fn the_same_id_with_another_key_is_a_conflict() {
    let test_db = TestDb::new();
    let db = test_db.open().await;
    db.record_native(new_record(Some("u1"), "k1")).await.unwrap();
    let outcome = db.record_native(new_record(Some("u1"), "k2")).await.unwrap();
    assert!(matches!(outcome, RecordOutcome::UploadIdConflict(_)), "{outcome:?}");
}

#[tokio::test]
async fn a_key_recorded_under_another_id_is_a_conflict() {
    let test_db = TestDb::new();
    let db = test_db.open().await;
    db.record_native(new_record(Some("u1"), "k1")).await.unwrap();
    let outcome = db.record_native(new_record(Some("u2"), "k1")).await.unwrap();
    assert!(matches!(outcome, RecordOutcome::KeyConflict(_)), "{outcome:?}");
}

#[tokio::test]
async fn a_batch_keeps_the_order_of_its_uploads_in_its_outcomes() {
    let test_db = TestDb::new();
    let db = test_db.open().await;
    db.record_native(new_record(Some("u2"), "a-first-by-key")).await.unwrap();
    let outcomes = db
        .record_native_all(vec![new_record(Some("u3"), "z-last"), new_record(Some("u2"), "a-first-by-key")])
        .await
        .unwrap();
    assert!(matches!(&outcomes[0], RecordOutcome::Recorded(r) if r.key == "z-last"), "{outcomes:?}");
    assert!(matches!(&outcomes[1], RecordOutcome::AlreadyRecorded(r) if r.key == "a-first-by-key"), "{outcomes:?}");
}

#[tokio::test]
async fn rails_records_are_idempotent_on_key_and_listed_newest_first() {
    let test_db = TestDb::new();
    let db = test_db.open().await;
    db.record_by_key(new_record(None, "k1")).await.unwrap();
    db.record_by_key(new_record(None, "k2")).await.unwrap();
    let again = db.record_by_key(new_record(None, "k1")).await.unwrap();
    assert!(matches!(again, RecordOutcome::AlreadyRecorded(ref r) if r.key == "k1"), "{again:?}");
    let bob = db.record_by_key(by("bob", new_record(None, "k1"))).await.unwrap();
    assert_eq!(bob, RecordOutcome::OthersRecord, "another principal's key is not shown");
    let keys: Vec<String> = db.latest_of("alice".to_owned(), 10).await.unwrap().into_iter().map(|r| r.key).collect();
    assert_eq!(keys, vec!["k2", "k1"], "newest first");
    assert_eq!(db.latest_of("alice".to_owned(), 1).await.unwrap().len(), 1, "the limit applies");
}

#[tokio::test]
async fn the_audit_log_refuses_update_and_delete() {
    let test_db = TestDb::new();
    let db = test_db.open().await;
    db.audit(vec![AuditEntry::new("alice", AuditAction::Presign, "signed").key("uploads/k")]).await.unwrap();
    let update = test_db.execute_raw("UPDATE audit_log SET principal = 'mallory'").await;
    assert!(update.is_err_and(|e| e.contains("append-only")), "an UPDATE of an audit row raises");
    let delete = test_db.execute_raw("DELETE FROM audit_log").await;
    assert!(delete.is_err_and(|e| e.contains("append-only")), "a DELETE of an audit row raises");
    let rows = db.audit_rows(AuditFilter { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(rows.len(), 1, "the row is still there");
    assert_eq!(rows[0].principal, "alice", "unchanged");
}

#[tokio::test]
async fn audit_rows_are_read_oldest_first_and_filtered_by_principal() {
    let test_db = TestDb::new();
    let db = test_db.open().await;
    for (who, key) in [("alice", "k1"), ("bob", "k2"), ("alice", "k3")] {
        db.audit(vec![AuditEntry::new(who, AuditAction::Report, "recorded").key(key)]).await.unwrap();
    }
    let alice = db
        .audit_rows(AuditFilter { principal: Some("alice".to_owned()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    let keys: Vec<_> = alice.iter().map(|r| r.key.clone().unwrap()).collect();
    assert_eq!(keys, ["k1", "k3"], "alice's rows, oldest first");
    let future = db
        .audit_rows(AuditFilter { since: Some("2999-01-01T00:00:00Z".to_owned()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert!(future.is_empty(), "since bounds the rows");
}

#[tokio::test]
async fn a_principal_sees_only_its_own_records() {
    let test_db = TestDb::new();
    let db = test_db.open().await;
    db.record_native(new_record(Some("u1"), "k1")).await.unwrap();
    db.record_native(by("bob", new_record(Some("u2"), "k2"))).await.unwrap();
    let mine = db.latest_of("alice".to_owned(), 10).await.unwrap();
    assert_eq!(mine.len(), 1, "alice lists only hers");
    assert_eq!(mine[0].uploaded_by.as_deref(), Some("alice"), "records carry their principal");
    assert_eq!(db.record_of("alice".to_owned(), "u2".to_owned()).await.unwrap(), Scoped::Others, "bob's is not hers");
    assert_eq!(db.record_of("alice".to_owned(), "u3".to_owned()).await.unwrap(), Scoped::Missing);
    assert_eq!(db.record_by_key_of("alice".to_owned(), "k2".to_owned()).await.unwrap(), Scoped::Others);
    assert!(matches!(db.record_by_key_of("alice".to_owned(), "k1".to_owned()).await.unwrap(), Scoped::Mine(_)));
    let stolen = db.record_native(by("bob", new_record(Some("u1"), "k1"))).await.unwrap();
    assert_eq!(stolen, RecordOutcome::OthersRecord, "bob cannot re-record alice's upload, nor see it");
    assert_eq!(db.latest_of_everyone(10).await.unwrap().len(), 2, "everyone's, for admins");
}

#[tokio::test]
async fn a_key_named_twice_in_one_presign_batch_keeps_its_last_signing() {
    let test_db = TestDb::new();
    let db = test_db.open().await;
    let put = |owner: &str, n: usize| PresignedPut {
        key: format!("k{n}"),
        checksum_sha256: Some(format!("sum-{owner}")),
        object_url: format!("http://s3/b/k{n}"),
        uploaded_by: owner.to_owned(),
    };
    let batch = vec![put("alice", 1), put("alice", 2), put("bob", 1)];
    db.remember_presigned(batch, vec![]).await.expect("a batch naming a key twice is stored");
    assert_eq!(
        db.key_owner("bob".to_owned(), "k1".to_owned()).await.unwrap(),
        Ownership::Mine,
        "the later signing wins"
    );
    assert_eq!(db.key_owner("alice".to_owned(), "k2".to_owned()).await.unwrap(), Ownership::Mine, "the rest are kept");
}

#[tokio::test]
async fn keys_and_multipart_uploads_belong_to_whoever_they_were_issued_to() {
    let test_db = TestDb::new();
    let db = test_db.open().await;
    let put = PresignedPut {
        key: "k1".to_owned(),
        checksum_sha256: None,
        object_url: "http://s3/b/k1".to_owned(),
        uploaded_by: "alice".to_owned(),
    };
    db.remember_presigned(vec![put.clone()], vec![]).await.unwrap();
    db.remember_presigned(vec![put], vec![]).await.expect("signing the same key again is fine");
    assert_eq!(db.key_owner("alice".to_owned(), "k1".to_owned()).await.unwrap(), Ownership::Mine);
    assert_eq!(db.key_owner("bob".to_owned(), "k1".to_owned()).await.unwrap(), Ownership::Others);
    assert_eq!(db.key_owner("bob".to_owned(), "k9".to_owned()).await.unwrap(), Ownership::Nobody);
    assert!(db.presigned_for("bob".to_owned(), vec!["k1".to_owned()]).await.unwrap().is_empty(), "scoped");
    assert_eq!(db.presigned_for("alice".to_owned(), vec!["k1".to_owned()]).await.unwrap().len(), 1);
    let upload = MultipartUpload {
        upload_id: "up1".to_owned(),
        key: "k2".to_owned(),
        uploaded_by: "alice".to_owned(),
        client_upload_id: None,
    };
    db.remember_multipart(upload, AuditEntry::new("alice", AuditAction::Create, "created")).await.unwrap();
    let owner = |who: &str, id: &str| db.multipart_owner(who.to_owned(), id.to_owned(), "k2".to_owned());
    assert_eq!(owner("alice", "up1").await.unwrap(), Ownership::Mine);
    assert_eq!(owner("bob", "up1").await.unwrap(), Ownership::Others, "bob cannot reach alice's upload");
    assert_eq!(owner("alice", "up2").await.unwrap(), Ownership::Nobody, "the upload id must match too");
    assert_eq!(
        db.key_owners("bob".to_owned(), vec!["k2".to_owned(), "k9".to_owned()]).await.unwrap(),
        vec![Ownership::Others, Ownership::Nobody],
        "one answer per key, in order"
    );
}

#[tokio::test]
async fn a_new_record_joins_the_outbox_once_and_only_when_webhooks_are_on() {
    let test_db = TestDb::new();
    let quiet = test_db.open().await;
    quiet.record_native(new_record(Some("u0"), "k0")).await.unwrap();
    assert_eq!(quiet.webhook_backlog().await.unwrap(), 0, "no receiver, no outbox rows");
    let db = test_db.open_with(StoreOptions { webhooks: true }).await;
    db.record_native(new_record(Some("u1"), "k1")).await.unwrap();
    db.record_native(new_record(Some("u1"), "k1")).await.unwrap();
    db.record_by_key(new_record(None, "k2")).await.unwrap();
    assert_eq!(db.webhook_backlog().await.unwrap(), 2, "one row per new record, none for a repeat");
    let claimed = db.claim_webhooks(10, Duration::from_secs(60)).await.unwrap();
    let keys: Vec<&str> = claimed.iter().map(|w| w.idempotency_key.as_str()).collect();
    assert_eq!(keys.len(), 2, "both are due: {keys:?}");
    assert_eq!(keys[0], "u1", "oldest first, keyed by the client upload id");
    assert!(keys[1].starts_with("rails-"), "a rails record is keyed by its key's hash: {keys:?}");
    let body: serde_json::Value = serde_json::from_str(&claimed[0].body).unwrap();
    assert_eq!(body["record"]["uploaded_by"], "alice", "the body is the record with its principal");
}

#[tokio::test]
async fn a_claimed_webhook_is_hidden_until_its_lease_or_retry_time_passes() {
    let test_db = TestDb::new();
    let db = test_db.open_with(StoreOptions { webhooks: true }).await;
    let other_instance = test_db.open_with(StoreOptions { webhooks: true }).await;
    db.record_native(new_record(Some("u1"), "k1")).await.unwrap();
    let claimed = db.claim_webhooks(10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(
        other_instance.claim_webhooks(10, Duration::from_secs(60)).await.unwrap().is_empty(),
        "another instance does not take a leased row"
    );
    db.webhook_failed(claimed[0].id, Duration::from_millis(300), "HTTP 500".to_owned()).await.unwrap();
    assert!(db.claim_webhooks(10, Duration::from_secs(60)).await.unwrap().is_empty(), "not before its retry time");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let again = other_instance.claim_webhooks(10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(again.len(), 1, "due again after the backoff, on any instance");
    assert_eq!(again[0].attempts, 1, "the failed attempt is counted");
    assert_eq!(again[0].body, claimed[0].body, "the same bytes every time");
    other_instance.webhook_delivered(again[0].id).await.unwrap();
    assert_eq!(db.webhook_backlog().await.unwrap(), 0, "delivered rows leave the backlog");
    let lease = db.claim_webhooks(10, Duration::from_millis(1)).await.unwrap();
    assert!(lease.is_empty(), "a delivered webhook is never claimed again");
}

#[test]
fn timestamps_are_rfc3339_in_whole_seconds() {
    let stamp = now_rfc3339();
    assert!(OffsetDateTime::parse(&stamp, &time::format_description::well_known::Rfc3339).is_ok(), "parses: {stamp}");
    assert!(stamp.ends_with('Z') && !stamp.contains('.'), "UTC, no fraction: {stamp}");
}

#[test]
fn database_urls_name_sqlite_files_and_postgres_servers() {
    assert_eq!(DatabaseUrl::parse("sqlite://./x.sqlite"), Ok(DatabaseUrl::Sqlite("./x.sqlite".into())));
    assert_eq!(DatabaseUrl::parse("sqlite:///var/lib/x.sqlite"), Ok(DatabaseUrl::Sqlite("/var/lib/x.sqlite".into())));
    let pg = DatabaseUrl::parse("postgres://u:secret@db.internal:5432/dropship").expect("a Postgres URL");
    assert!(matches!(pg, DatabaseUrl::Postgres(_)));
    assert!(!pg.redacted().contains("secret"), "logs never show the password: {}", pg.redacted());
    assert!(DatabaseUrl::parse("mysql://x").is_err(), "other databases are refused");
    assert!(DatabaseUrl::parse("sqlite://").is_err(), "a file is needed");
}
