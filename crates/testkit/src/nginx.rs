//! A real nginx balancing round-robin across several backend instances on loopback, as an
//! organisation would put in front of them. Its config, pid, logs and temp files live in its
//! own prefix (a temp dir); it runs in the foreground (`-g 'daemon off;'`) as a child of the
//! test process, so it dies with it.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::log_tail;
use crate::ports::{reserve, PortReservation};
use crate::process::{spawn_tied_to_process, stop_child, wait_until_listening};

/// How long nginx gets to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running nginx. Dropping it stops it.
pub struct Nginx {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    child: Option<Child>,
    error_log: PathBuf,
    access_log: PathBuf,
    _ports: PortReservation,
    _prefix: tempfile::TempDir,
}

impl Nginx {
    /// Balances across `upstreams` (`http://127.0.0.1:PORT` each), round-robin.
    pub fn balance(upstreams: &[String]) -> Nginx {
        Nginx::start(upstreams, None)
    }

    /// An HTTPS front for `upstream` with `certificate` (a TLS-terminating load balancer, as an
    /// organisation puts before its backend); `url` is then `https://127.0.0.1:PORT`.
    pub fn tls_front(upstream: &str, certificate: &crate::tls::ServerCertificate) -> Nginx {
        Nginx::start(&[upstream.to_owned()], Some(certificate))
    }

    fn start(upstreams: &[String], tls: Option<&crate::tls::ServerCertificate>) -> Nginx {
        assert!(!upstreams.is_empty(), "nginx needs at least one upstream");
        let prefix = tempfile::Builder::new().prefix("dropship-nginx-").tempdir().expect("a temp dir");
        let root = prefix.path();
        for sub in ["logs", "temp"] {
            std::fs::create_dir(root.join(sub)).expect("an nginx directory can be created");
        }
        let ports = reserve(1);
        let port = ports.ports[0];
        let config_path = root.join("nginx.conf");
        std::fs::write(&config_path, config(root, port, upstreams, tls)).expect("the nginx config can be written");
        let error_log = root.join("logs/error.log");
        let access_log = root.join("logs/access.log");

        let mut command = Command::new("nginx");
        command
            .arg("-c")
            .arg(&config_path)
            .arg("-p")
            .arg(root)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawn_tied_to_process(command)
            .unwrap_or_else(|e| panic!("cannot start nginx (scripts/install-deps.sh installs nginx-light): {e}"));
        let mut nginx = Nginx {
            url: format!("{}://127.0.0.1:{port}", if tls.is_some() { "https" } else { "http" }),
            child: Some(child),
            error_log,
            access_log,
            _ports: ports,
            _prefix: prefix,
        };
        nginx.listening_or_panic(port);
        nginx
    }

    fn listening_or_panic(&mut self, port: u16) {
        let listening = self.child.as_mut().is_some_and(|child| wait_until_listening(child, port, START_TIMEOUT));
        if listening {
            return;
        }
        self.stop();
        panic!(
            "nginx did not listen on {port} within {START_TIMEOUT:?}; its error log:\n{}",
            log_tail(&self.error_log, 40)
        );
    }

    /// What nginx logged as errors (upstreams refusing connections, say).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(&self.error_log).unwrap_or_default()
    }

    /// One line per request: `upstream_addr status request`. nginx writes a request's line
    /// after the client has its answer, so the log is read once it has stopped growing.
    pub fn access_log(&self) -> String {
        let read = || std::fs::read_to_string(&self.access_log).unwrap_or_default();
        let mut last = read();
        for _ in 0..20 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let now = read();
            if now == last {
                break;
            }
            last = now;
        }
        last
    }

    /// Stops nginx (SIGTERM: a fast shutdown, SIGKILL after 3 s). Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config(
    root: &std::path::Path,
    port: u16,
    upstreams: &[String],
    tls: Option<&crate::tls::ServerCertificate>,
) -> String {
    let root = root.display();
    let listen = match tls {
        Some(tls) => format!(
            "listen 127.0.0.1:{port} ssl;\n        ssl_certificate {};\n        ssl_certificate_key {};",
            tls.certificate.display(),
            tls.key.display()
        ),
        None => format!("listen 127.0.0.1:{port};"),
    };
    let mut servers = String::new();
    for upstream in upstreams {
        let address = upstream.trim_start_matches("http://").trim_end_matches('/');
        // max_fails/fail_timeout: a killed instance is skipped for a second, then tried again.
        let _ = writeln!(servers, "        server {address} max_fails=1 fail_timeout=1s;");
    }
    // SAFETY: geteuid(2) has no preconditions.
    let as_root = unsafe { libc::geteuid() } == 0;
    // As root, workers would switch to `nobody`, who cannot write in a 0700 temp dir.
    let user = if as_root { "user root;\n" } else { "" };
    format!(
        r#"{user}worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/logs/error.log info;
events {{
    worker_connections 1024;
}}
http {{
    log_format upstreams '$upstream_addr $status "$request"';
    access_log {root}/logs/access.log upstreams;
    client_body_temp_path {root}/temp/body;
    proxy_temp_path {root}/temp/proxy;
    fastcgi_temp_path {root}/temp/fastcgi;
    uwsgi_temp_path {root}/temp/uwsgi;
    scgi_temp_path {root}/temp/scgi;
    client_max_body_size 0;
    upstream backends {{
{servers}    }}
    server {{
        {listen}
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            # A refused connection (a killed instance) goes to the next one; a request already
            # sent is not replayed (POSTs are not idempotent to nginx): the client retries it.
            proxy_next_upstream error timeout;
            proxy_connect_timeout 2s;
        }}
    }}
}}
"#
    )
}
