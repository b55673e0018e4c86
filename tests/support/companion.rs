//! The real Uppy Companion (`@uppy/companion`, installed into `.stack/companion` by
//! scripts/install-deps.sh) on Node, bound to 127.0.0.1 on a port the OS picks, with a
//! SeaweedFS as its S3. Stopped by PID when dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dropship_testkit::{repo_root, S3Server};

use crate::process::ProcessGuard;

/// Companion usually answers within two seconds; a cold disk cache on two cores takes longer.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Companion {
    /// `http://127.0.0.1:PORT`, no trailing slash: what `DROPSHIP_BACKEND_URL` is set to.
    pub url: String,
    /// How long it took from spawn to answering `/s3/params`.
    pub started_in: Duration,
    log_path: PathBuf,
    process: ProcessGuard,
    _dir: tempfile::TempDir,
}

impl Companion {
    /// Companion with S3 uploads to `s3`'s bucket.
    pub fn start(s3: &S3Server) -> Companion {
        Self::launch(Some(s3))
    }

    /// Companion with no bucket configured: it runs, but has no `/s3/…` routes.
    pub fn start_without_s3() -> Companion {
        Self::launch(None)
    }

    fn launch(s3: Option<&S3Server>) -> Companion {
        let package = companion_package();
        let launcher = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("support/companion-launcher.mjs");
        let dir = tempfile::Builder::new().prefix("dropship-companion-").tempdir().expect("a temp dir");
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).expect("Companion's data dir can be created");
        let log_path = dir.path().join("companion.log");
        let log = std::fs::File::create(&log_path).expect("the Companion log file can be created");

        let mut command = Command::new("node");
        command
            .arg(&launcher)
            .arg(&package)
            .arg("0")
            // Only what Companion needs: nothing from the caller's shell (AWS_CA_BUNDLE,
            // AWS_PROFILE, …) may change how its SDK behaves.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("COMPANION_SECRET", format!("test-{}", std::process::id()))
            .env("COMPANION_DATADIR", &data_dir)
            .env("COMPANION_CLIENT_ORIGINS", "http://127.0.0.1")
            .env("COMPANION_HIDE_WELCOME", "true")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log can be shared"))
            .stderr(log);
        if let Some(s3) = s3 {
            command
                .env("COMPANION_AWS_KEY", &s3.access_key)
                .env("COMPANION_AWS_SECRET", &s3.secret_key)
                .env("COMPANION_AWS_BUCKET", &s3.bucket)
                .env("COMPANION_AWS_REGION", &s3.region)
                .env("COMPANION_AWS_ENDPOINT", &s3.endpoint)
                .env("COMPANION_AWS_FORCE_PATH_STYLE", "true");
        }
        let started = Instant::now();
        let mut process = ProcessGuard::spawn("companion", &mut command);

        let deadline = started + START_TIMEOUT;
        let url = loop {
            if process.has_exited() {
                panic!("Companion exited during startup; its log:\n{}", log_tail(&log_path));
            }
            if let Some(url) = listening_url(&log_path) {
                break url;
            }
            assert!(
                Instant::now() < deadline,
                "Companion printed no listening line in {START_TIMEOUT:?}:\n{}",
                log_tail(&log_path)
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        // It prints the line once it handles requests; one answered request proves it.
        let answered = loop {
            if let Some(status) = get_status(&url, "/s3/params?filename=ready.txt&type=text%2Fplain") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "Companion at {url} did not answer in {START_TIMEOUT:?}:\n{}",
                log_tail(&log_path)
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let expected = if s3.is_some() { 200 } else { 404 };
        assert_eq!(answered, expected, "Companion's /s3/params answered {answered}; its log:\n{}", log_tail(&log_path));
        let started_in = started.elapsed();
        eprintln!("companion: ready at {url} after {started_in:.1?} (pid {})", process.pid());
        Companion { url, started_in, log_path, process, _dir: dir }
    }

    /// Everything Companion logged so far, one request per line among the rest.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// `.stack/companion/node_modules/@uppy/companion`, or a failure that says how to get it.
fn companion_package() -> PathBuf {
    let package = repo_root().join(".stack/companion/node_modules/@uppy/companion");
    assert!(
        package.join("package.json").is_file(),
        "Uppy Companion is not installed at {}: run scripts/install-deps.sh",
        package.display()
    );
    package
}

fn listening_url(log_path: &std::path::Path) -> Option<String> {
    let log = std::fs::read_to_string(log_path).ok()?;
    let line = log.lines().find_map(|l| l.strip_prefix("companion listening on "))?;
    Some(line.trim().to_owned())
}

/// The status code of a plain HTTP/1.1 GET, or `None` when nothing answered.
fn get_status(base: &str, path: &str) -> Option<u16> {
    let address = base.strip_prefix("http://")?;
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
