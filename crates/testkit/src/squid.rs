//! A real forward proxy, Debian's squid, on loopback: what a corporate network puts between a
//! desktop and the internet. Optionally with Basic authentication (`basic_ncsa_auth` over an
//! htpasswd file). Its config, logs and pid live in a temp dir; it runs in the foreground as a
//! child of the test process. Nothing is cached, so every request reaches the server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::log_tail;
use crate::ports::{reserve, PortReservation};
use crate::process::{spawn_tied_to_process, stop_child, wait_until_listening};

/// Squid starts in about a second; a cold start on a loaded machine takes longer.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running squid. Dropping it stops it.
pub struct Squid {
    /// `http://127.0.0.1:PORT`, no credentials.
    pub url: String,
    child: Option<Child>,
    root: PathBuf,
    _ports: PortReservation,
    _dir: tempfile::TempDir,
}

impl Squid {
    /// A proxy that passes on every request from loopback.
    pub fn open() -> Squid {
        Squid::start(None)
    }

    /// A proxy that answers 407 unless the request carries `user`:`password` (Basic).
    pub fn with_basic_auth(user: &str, password: &str) -> Squid {
        Squid::start(Some((user, password)))
    }

    fn start(credentials: Option<(&str, &str)>) -> Squid {
        let dir = tempfile::Builder::new().prefix("dropship-squid-").tempdir().expect("a temp dir");
        let root = dir.path().to_owned();
        std::fs::create_dir(root.join("logs")).expect("squid's log folder can be created");
        let ports = reserve(1);
        let port = ports.ports[0];
        let passwords = root.join("passwd");
        if let Some((user, password)) = credentials {
            std::fs::write(&passwords, format!("{user}:{}\n", apr1_hash(password))).expect("the password file");
        }
        std::fs::write(root.join("squid.conf"), config(&root, port, credentials.is_some()))
            .expect("the squid config can be written");
        hand_to_squids_user(&root);

        let mut command = Command::new("squid");
        command
            .arg("-N") // foreground, no daemon
            .arg("-f")
            .arg(root.join("squid.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(root.join("logs/stderr.log")).expect("a log file")));
        let child = spawn_tied_to_process(command)
            .unwrap_or_else(|e| panic!("cannot start squid (scripts/install-deps.sh installs it): {e}"));
        let mut squid =
            Squid { url: format!("http://127.0.0.1:{port}"), child: Some(child), root, _ports: ports, _dir: dir };
        squid.listening_or_panic(port);
        squid
    }

    /// The proxy URL with credentials in it, as `--proxy` takes it.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        self.url.replacen("http://", &format!("http://{user}:{password}@"), 1)
    }

    fn listening_or_panic(&mut self, port: u16) {
        let listening = self.child.as_mut().is_some_and(|child| wait_until_listening(child, port, START_TIMEOUT));
        if listening {
            return;
        }
        self.stop();
        panic!(
            "squid did not listen on {port} within {START_TIMEOUT:?}; its logs:\n{}\n{}",
            log_tail(&self.root.join("logs/stderr.log"), 20),
            log_tail(&self.root.join("logs/cache.log"), 40)
        );
    }

    /// One line per request squid handled: `status method URL user` (`-` without a user).
    /// Squid writes a line when a request ends, so a test reads it after the upload.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.root.join("logs/access.log")).unwrap_or_default()
    }

    /// Stops squid (SIGTERM, SIGKILL after 3 s). Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config(root: &Path, port: u16, authenticated: bool) -> String {
    let root = root.display();
    let access = if authenticated {
        format!(
            "auth_param basic program /usr/lib/squid/basic_ncsa_auth {root}/passwd\n\
             auth_param basic realm dropship-test\n\
             acl signed_in proxy_auth REQUIRED\n\
             http_access allow signed_in\n\
             http_access deny all\n"
        )
    } else {
        "http_access allow all\n".to_owned()
    };
    format!(
        "http_port 127.0.0.1:{port}\n\
         pid_filename {root}/squid.pid\n\
         cache_log {root}/logs/cache.log\n\
         logformat dropship %>Hs %rm %ru %un\n\
         access_log stdio:{root}/logs/access.log dropship\n\
         cache deny all\n\
         cache_mem 8 MB\n\
         coredump_dir {root}\n\
         shutdown_lifetime 1 seconds\n\
         logfile_rotate 0\n\
         {access}"
    )
}

/// Squid refuses to run as root and switches to its own user (`proxy` on Debian), which must
/// then read the config and write the logs.
fn hand_to_squids_user(root: &Path) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let status = Command::new("chown").args(["-R", "proxy:proxy"]).arg(root).status().expect("chown runs");
    assert!(status.success(), "squid's temp dir could not be given to the proxy user");
}

/// An htpasswd line's hash as `basic_ncsa_auth` reads it (Apache's MD5 crypt).
fn apr1_hash(password: &str) -> String {
    let output = Command::new("openssl").args(["passwd", "-apr1", password]).output().expect("openssl runs");
    assert!(output.status.success(), "openssl passwd failed");
    String::from_utf8(output.stdout).expect("a hash is ASCII").trim().to_owned()
}
