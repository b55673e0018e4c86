//! The real dropship-backend binary, started against an [`S3Server`] with a temp database and
//! a random token, on a port the OS picks. The URL comes from its `listening on` line.
//! The database is a SQLite file, or with `DROPSHIP_TEST_DATABASE=postgres` a fresh database
//! on the shared [`PostgresServer`]; [`Backend::start_instances`] starts several instances on
//! one Postgres database, as behind a load balancer.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::postgres::{test_database_is_postgres, PostgresServer};
use crate::process::{spawn_tied_to_process, stop_child};
use crate::{block_on, log_tail, target_bin, S3Server};

/// How long the backend gets to print its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Environment twins of the backend's flags: cleared so the caller's shell cannot change a test.
const BACKEND_ENV: &[&str] = &[
    "DROPSHIP_BACKEND_LISTEN",
    "DROPSHIP_S3_ENDPOINT",
    "DROPSHIP_S3_REGION",
    "DROPSHIP_S3_BUCKET",
    "DROPSHIP_S3_ACCESS_KEY_ID",
    "DROPSHIP_S3_SECRET_ACCESS_KEY",
    "DROPSHIP_S3_PATH_STYLE",
    "DROPSHIP_S3_ACCELERATE",
    "DROPSHIP_URL_EXPIRY_SECS",
    "DROPSHIP_BACKEND_TOKENS",
    "DROPSHIP_ADMIN_PRINCIPALS",
    "DROPSHIP_OIDC_ISSUER",
    "DROPSHIP_OIDC_AUDIENCE",
    "DROPSHIP_OIDC_CLIENT_ID",
    "DROPSHIP_OIDC_USER_CLAIM",
    "DROPSHIP_OIDC_GROUPS_CLAIM",
    "DROPSHIP_ADMIN_GROUP",
    "DROPSHIP_OIDC_SCOPES",
    "DROPSHIP_KEY_PREFIX",
    "DROPSHIP_KEY_TEMPLATE",
    "DROPSHIP_BACKEND_DB",
    "DROPSHIP_BACKEND_DATABASE_URL",
    "DROPSHIP_WEBHOOK_URL",
    "DROPSHIP_WEBHOOK_SECRET",
    "DROPSHIP_UPDATES_DIR",
    "DROPSHIP_UPDATES_PUBLIC_KEY",
];

/// Extra settings for [`Backend::start_with`].
#[derive(Debug, Clone, Default)]
pub struct BackendOptions {
    /// `--url-expiry-secs`; the backend's default (900) when `None`.
    pub url_expiry_secs: Option<u64>,
    /// Appended to the command line as they are.
    pub extra_args: Vec<String>,
    /// The binary to run; `target_bin("dropship-backend")` when `None`.
    pub binary: Option<PathBuf>,
    /// `--database-url`; when `None`, a SQLite file in the backend's temp dir, or a fresh
    /// database on the shared Postgres with `DROPSHIP_TEST_DATABASE=postgres`.
    pub database_url: Option<String>,
    /// The bearer token it accepts; a random one when `None` (instances of one deployment
    /// share theirs).
    pub token: Option<String>,
}

/// Where a test backend keeps its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestDatabase {
    Sqlite(PathBuf),
    /// A database on the shared [`PostgresServer`], by URL.
    Postgres(String),
}

/// A running dropship-backend. Dropping it stops the process and removes its database.
pub struct Backend {
    /// `http://127.0.0.1:PORT`, no trailing slash. The same across [`Backend::restart`].
    pub url: String,
    /// The one bearer token it accepts.
    pub token: String,
    /// The SQLite file (also when the records are in Postgres: then it does not exist).
    pub db_path: PathBuf,
    pub database: TestDatabase,
    log_path: PathBuf,
    /// Everything needed to start the same backend again on the same port and database.
    command: Vec<std::ffi::OsString>,
    binary: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Backend {
    pub fn start(s3: &S3Server) -> Backend {
        Self::start_with(s3, BackendOptions::default())
    }

    pub fn start_with(s3: &S3Server, options: BackendOptions) -> Backend {
        let binary = options.binary.clone().unwrap_or_else(|| target_bin("dropship-backend"));
        let dir = tempfile::Builder::new().prefix("dropship-backend-").tempdir().expect("a temp dir");
        let db_path = dir.path().join("backend.sqlite");
        let log_path = dir.path().join("backend.log");
        let token = options.token.clone().unwrap_or_else(|| format!("test-{}", uuid::Uuid::new_v4().simple()));
        let database = match options.database_url.clone() {
            Some(url) if url.starts_with("postgres") => TestDatabase::Postgres(url),
            Some(url) => TestDatabase::Sqlite(PathBuf::from(url.trim_start_matches("sqlite://"))),
            None if test_database_is_postgres() => TestDatabase::Postgres(PostgresServer::shared().create_database()),
            None => TestDatabase::Sqlite(db_path.clone()),
        };

        let mut command: Vec<std::ffi::OsString> = Vec::new();
        let mut arg = |a: &str| command.push(a.into());
        for (flag, value) in [
            ("--s3-endpoint", s3.endpoint.as_str()),
            ("--region", &s3.region),
            ("--bucket", &s3.bucket),
            ("--access-key-id", &s3.access_key),
            ("--secret-access-key", &s3.secret_key),
            ("--tokens", &token),
        ] {
            arg(flag);
            arg(value);
        }
        arg("--path-style");
        if let Some(secs) = options.url_expiry_secs {
            arg("--url-expiry-secs");
            arg(&secs.to_string());
        }
        match &database {
            TestDatabase::Sqlite(path) => {
                command.push("--db".into());
                command.push(path.clone().into());
            }
            TestDatabase::Postgres(url) => {
                command.push("--database-url".into());
                command.push(url.into());
            }
        }
        command.extend(options.extra_args.iter().map(Into::into));

        let mut backend =
            Backend { url: String::new(), token, db_path, database, log_path, command, binary, child: None, _dir: dir };
        backend.spawn("127.0.0.1:0");
        backend
    }

    /// `count` instances of one deployment: one Postgres database (a fresh one on the shared
    /// server unless `options.database_url` names one), one token, each on its own port.
    pub fn start_instances(s3: &S3Server, count: usize, options: BackendOptions) -> Vec<Backend> {
        let database_url = options.database_url.clone().unwrap_or_else(|| PostgresServer::shared().create_database());
        let token = options.token.clone().unwrap_or_else(|| format!("test-{}", uuid::Uuid::new_v4().simple()));
        let options = BackendOptions { database_url: Some(database_url), token: Some(token), ..options };
        (0..count).map(|_| Backend::start_with(s3, options.clone())).collect()
    }

    /// Stops the backend (SIGTERM) and starts it again on the same port with the same database,
    /// so clients keep their URL and records survive.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Starts a stopped backend again on its old port with its old database. No-op if running.
    pub fn start_again(&mut self) {
        if self.child.is_some() {
            return;
        }
        let listen = self.url.trim_start_matches("http://").to_owned();
        let previous = self.url.clone();
        self.spawn(&listen);
        assert_eq!(self.url, previous, "the backend came back on another address");
    }

    /// Kills the process with SIGKILL, as a crash would; [`Backend::start_again`] brings it back.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn spawn(&mut self, listen: &str) {
        // Appending: a restarted backend keeps the earlier log for failure messages.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("the backend log file can be opened");
        let mut command = Command::new(&self.binary);
        for name in BACKEND_ENV {
            command.env_remove(name);
        }
        command
            // Debug level so that tests also see what the backend would log in detail.
            .env("RUST_LOG", "dropship_backend=debug,warn")
            .args(["--listen", listen])
            .args(&self.command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child =
            spawn_tied_to_process(command).unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));

        let stdout = child.stdout.take().expect("stdout is piped");
        let (found, url) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = found.send(url.trim().to_owned());
                    break;
                }
            }
            // Keep draining so the backend never blocks on a full pipe; ends when it exits.
            for _ in lines {}
        });
        match url.recv_timeout(START_TIMEOUT) {
            Ok(url) => {
                self.url = url;
                self.child = Some(child);
            }
            Err(_) => {
                stop_child(&mut child);
                panic!(
                    "dropship-backend did not print `listening on …` within {START_TIMEOUT:?}; last lines of its log:\n{}",
                    log_tail(&self.log_path, 40)
                );
            }
        }
    }

    /// Every record, newest first, through `GET /api/v1/records`.
    pub fn records(&self) -> Vec<Value> {
        let body = self.get_json("/api/v1/records?limit=1000").expect("GET /api/v1/records answers 200");
        body["records"].as_array().cloned().unwrap_or_default()
    }

    /// Every record, read from the database with the `sqlite3` or `psql` tool (installed by
    /// scripts/install-deps.sh): unlike the API, not limited to one page of 1,000. Fields as in
    /// the API: `client_upload_id`, `key`, `size`, `file_name`, `checksum_sha256`.
    pub fn all_records(&self) -> Vec<Value> {
        let text = match &self.database {
            TestDatabase::Sqlite(path) => {
                sqlite3(path, "SELECT client_upload_id, key, size, file_name, checksum_sha256 FROM records ORDER BY id")
            }
            TestDatabase::Postgres(url) => PostgresServer::shared().psql(
                url,
                "SELECT COALESCE(json_agg(r ORDER BY r.id), '[]') FROM \
                 (SELECT id, client_upload_id, key, size, file_name, checksum_sha256 FROM records) r",
            ),
        };
        if text.trim().is_empty() {
            return Vec::new();
        }
        serde_json::from_str(&text).expect("the database tool prints a JSON array")
    }

    /// Runs SQL straight on the backend's database, as an operator at a console would.
    pub fn execute_sql(&self, sql: &str) -> String {
        match &self.database {
            TestDatabase::Sqlite(path) => sqlite3(path, sql),
            TestDatabase::Postgres(url) => PostgresServer::shared().psql(url, sql),
        }
    }

    /// One native record, through `GET /api/v1/records/{id}`; `None` on 404.
    pub fn record(&self, client_upload_id: &str) -> Option<Value> {
        self.get_json(&format!("/api/v1/records/{client_upload_id}"))
    }

    fn get_json(&self, path: &str) -> Option<Value> {
        let url = format!("{}{path}", self.url);
        block_on(async {
            let response = reqwest::Client::new()
                .get(&url)
                .bearer_auth(&self.token)
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {path} failed: {e}"));
            match response.status() {
                reqwest::StatusCode::OK => Some(response.json().await.expect("a JSON body")),
                reqwest::StatusCode::NOT_FOUND => None,
                status => panic!("GET {path} answered {status}: {}", response.text().await.unwrap_or_default()),
            }
        })
    }

    /// Everything the backend has logged so far (its stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Stops the process (SIGTERM, SIGKILL after 3 s). Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
    }
}

/// `sqlite3 -json PATH SQL`, failing the test when it fails.
fn sqlite3(path: &std::path::Path, sql: &str) -> String {
    let output = Command::new("sqlite3")
        .arg("-json")
        .arg(path)
        .arg(sql)
        .output()
        .expect("sqlite3 runs (scripts/install-deps.sh installs it)");
    assert!(output.status.success(), "sqlite3 failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}
