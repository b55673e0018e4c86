//! A real Postgres 15 (`initdb` + `pg_ctl`) in a temp dir on a free loopback port, trust auth,
//! for the backend's tests on Postgres. Postgres refuses to run as root, so as root it runs as
//! `nobody` (via `su`), with the data directory owned by nobody; as anyone else, as themselves.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::ports::{reserve, PortReservation};

/// Where Debian's postgresql-15 puts its server binaries (not on PATH).
const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// Overrides [`DEFAULT_BIN_DIR`] (another version, another distribution).
const BIN_DIR_ENV: &str = "DROPSHIP_TEST_PG_BIN";
/// `DROPSHIP_TEST_DATABASE=postgres` runs the backend's tests on Postgres instead of SQLite.
const DATABASE_ENV: &str = "DROPSHIP_TEST_DATABASE";
/// The superuser initdb creates; trust auth, so no password is checked.
const SUPERUSER: &str = "postgres";

/// Whether this test run asks for Postgres (`DROPSHIP_TEST_DATABASE=postgres`).
pub fn test_database_is_postgres() -> bool {
    std::env::var(DATABASE_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("postgres"))
}

/// A running Postgres. Dropping it stops the server (`pg_ctl stop -m immediate`, then SIGKILL
/// by the postmaster's pid if that fails) and removes its data.
pub struct PostgresServer {
    pub port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    bin_dir: PathBuf,
    as_nobody: bool,
    _ports: PortReservation,
    dir: tempfile::TempDir,
}

impl PostgresServer {
    /// Initialises a cluster and starts it; panics with the log when it cannot.
    pub fn start() -> PostgresServer {
        let bin_dir = std::env::var_os(BIN_DIR_ENV).map_or_else(|| PathBuf::from(DEFAULT_BIN_DIR), PathBuf::from);
        assert!(
            bin_dir.join("initdb").is_file(),
            "{} has no initdb: install postgresql-15 (scripts/install-deps.sh) or set {BIN_DIR_ENV}",
            bin_dir.display()
        );
        let dir = tempfile::Builder::new().prefix("dropship-postgres-").tempdir().expect("a temp dir");
        // SAFETY: geteuid(2) has no preconditions.
        let as_nobody = unsafe { libc::geteuid() } == 0;
        let data_dir = dir.path().join("data");
        let socket_dir = dir.path().join("socket");
        let log_path = dir.path().join("postgres.log");
        for path in [&data_dir, &socket_dir] {
            std::fs::create_dir(path).expect("a Postgres directory can be created");
        }
        std::fs::write(&log_path, b"").expect("the Postgres log can be created");
        if as_nobody {
            // nobody must reach its directories through the temp dir (0700, root's).
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod the temp dir");
            let status = Command::new("chown")
                .arg("-R")
                .arg("nobody")
                .args([&data_dir, &socket_dir, &log_path])
                .status()
                .expect("chown runs");
            assert!(status.success(), "cannot hand the Postgres directories to nobody");
        }
        let ports = reserve(1);
        let port = ports.ports[0];
        let server = PostgresServer { port, data_dir, log_path, bin_dir, as_nobody, _ports: ports, dir };
        server.run_checked(
            "initdb",
            &[
                "-D",
                &server.data_dir.to_string_lossy(),
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        // fsync off: a test database that survives a power cut is not worth the seconds.
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200",
            socket_dir.display()
        );
        server.run_checked(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                &server.data_dir.to_string_lossy(),
                "-l",
                &server.log_path.to_string_lossy(),
                "-o",
                &options,
            ],
        );
        server
    }

    /// One server per test process, started on first use and stopped when the process exits.
    pub fn shared() -> &'static PostgresServer {
        static SHARED: OnceLock<PostgresServer> = OnceLock::new();
        extern "C" fn stop_shared_at_exit() {
            // A panic must not unwind into libc's exit path.
            let _ = std::panic::catch_unwind(|| {
                if let Some(server) = SHARED.get() {
                    server.stop();
                    // A static is never dropped: its TempDir would stay behind.
                    let _ = std::fs::remove_dir_all(server.dir.path());
                }
            });
        }
        SHARED.get_or_init(|| {
            let server = PostgresServer::start();
            // SAFETY: registers a plain function with no captured state.
            unsafe {
                libc::atexit(stop_shared_at_exit);
            }
            server
        })
    }

    /// A new, empty database; returns its URL (`postgres://postgres:postgres@127.0.0.1:PORT/NAME`).
    pub fn create_database(&self) -> String {
        let name = format!("dropship_{}", uuid::Uuid::new_v4().simple());
        let port = self.port.to_string();
        self.run_checked("createdb", &["-h", "127.0.0.1", "-p", &port, "-U", SUPERUSER, &name]);
        self.url(&name)
    }

    /// The URL of database `name` (trust auth: the password is not checked).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{SUPERUSER}:{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs SQL with `psql` against the database at `url` and returns its unaligned output.
    pub fn psql(&self, url: &str, sql: &str) -> String {
        let output = self.run("psql", &["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql]);
        assert!(output.status.success(), "psql failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Everything the server has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let program = self.bin_dir.join(tool);
        let mut command = if self.as_nobody {
            let mut line = shell_quote(&program.to_string_lossy());
            for arg in args {
                line.push(' ');
                line.push_str(&shell_quote(arg));
            }
            let mut su = Command::new("su");
            su.args(["-s", "/bin/sh", "nobody", "-c", &line]);
            su
        } else {
            let mut direct = Command::new(&program);
            direct.args(args);
            direct
        };
        // Postgres tools read these; the caller's shell must not redirect them elsewhere.
        for name in ["PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGDATA"] {
            command.env_remove(name);
        }
        // nobody cannot read root's working directory; some tools complain about it.
        command.current_dir(self.dir.path());
        command.output().unwrap_or_else(|e| panic!("cannot run {tool}: {e}"))
    }

    fn run_checked(&self, tool: &str, args: &[&str]) {
        let output = self.run(tool, args);
        assert!(
            output.status.success(),
            "{tool} failed: {}{}\nlog:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            crate::log_tail(&self.log_path, 40)
        );
    }

    /// `pg_ctl stop -m immediate`; if the server outlives it, SIGKILL to the postmaster's pid
    /// (the first line of `postmaster.pid`). Idempotent.
    pub fn stop(&self) {
        let pid_file = self.data_dir.join("postmaster.pid");
        if !pid_file.exists() {
            return;
        }
        let pid = postmaster_pid(&pid_file);
        let stopped =
            self.run("pg_ctl", &["stop", "-m", "immediate", "-w", "-t", "10", "-D", &self.data_dir.to_string_lossy()]);
        if !stopped.status.success() {
            if let Some(pid) = pid {
                // SAFETY: kill(2) with the pid Postgres wrote for itself.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

fn postmaster_pid(path: &Path) -> Option<libc::pid_t> {
    std::fs::read_to_string(path).ok()?.lines().next()?.trim().parse().ok()
}

fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}
