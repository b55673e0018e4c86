//! Test harness for Dropship: starts the real parts — a SeaweedFS S3 server, the
//! dropship-backend binary, an OpenID provider, Postgres and nginx — for system tests, and
//! stops them again, even when a test fails.
//!
//! Everything here is blocking, for plain `#[test]` functions; async work runs on the kit's
//! own runtime ([`block_on`]), which also works when called from inside another runtime.

mod backend;
pub mod dbusmock;
mod fault_proxy;
mod nginx;
mod oidc;
mod ports;
mod postgres;
mod process;
mod s3;
mod squid;
mod tls;

use std::future::Future;
use std::path::PathBuf;
use std::sync::OnceLock;

pub use backend::{Backend, BackendOptions, TestDatabase};
pub use fault_proxy::{Exchange, Fault, FaultProxy, RandomFaults, Rule, Traffic};
pub use nginx::Nginx;
pub use oidc::{
    code_challenge, DeviceAuthorization, OidcOptions, OidcProvider, OidcUser, TokenError, Tokens, SCOPE as OIDC_SCOPE,
};
pub use postgres::{test_database_is_postgres, PostgresServer};
pub use s3::S3Server;
pub use squid::Squid;
pub use tls::ServerCertificate;

/// The workspace root, fixed at compile time (this crate lives in `crates/testkit`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

/// `<target dir>/debug/<name>`: a binary of the workspace, found next to the running test
/// (`target/debug/deps/<test>` → `target/debug`). Panics when it has not been built.
pub fn target_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    let mut dir = exe.parent().expect("the test binary lives in a directory").to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(path.is_file(), "{} does not exist: build it first: cargo build --workspace --bins", path.display());
    path
}

/// The kit's tokio runtime, created on first use and kept for the life of the process.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("dropship-testkit")
            .enable_all()
            .build()
            .expect("the testkit runtime starts")
    })
}

/// Runs `future` to completion on the kit's runtime. Safe to call from a `#[tokio::test]` too:
/// there it runs on a helper thread instead of nesting runtimes (which tokio forbids).
pub fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|scope| {
            scope.spawn(|| runtime().block_on(future)).join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    } else {
        runtime().block_on(future)
    }
}

/// A temporary directory removed when dropped (a thin name over `tempfile`).
pub struct TestDir(tempfile::TempDir);

impl TestDir {
    pub fn new() -> Self {
        Self(tempfile::Builder::new().prefix("dropship-test-").tempdir().expect("a temp dir"))
    }

    pub fn path(&self) -> &std::path::Path {
        self.0.path()
    }
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

/// The last `lines` lines of a log file, for panic messages.
pub(crate) fn log_tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
