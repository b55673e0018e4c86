//! A real SeaweedFS S3 server (`weed mini`) on free loopback ports, with one bucket and one
//! identity, ready when `/healthz` answers 200 and a SigV4-signed HEAD of the bucket does too.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use crate::ports::{reserve_with_grpc_twins, PortReservation};
use crate::process::{spawn_tied_to_process, stop_child};
use crate::{block_on, log_tail, repo_root};

/// How long SeaweedFS gets to become ready (it usually takes about 2 s).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Fresh ports are tried this many times when another process grabs one first.
const START_ATTEMPTS: usize = 4;

/// A running SeaweedFS. Dropping it stops the process and removes its data.
pub struct S3Server {
    /// `http://127.0.0.1:PORT`, the host clients must use (the Host header is signed).
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    client: Client,
    log_path: PathBuf,
    running: Mutex<Option<Running>>,
}

struct Running {
    child: Child,
    _ports: PortReservation,
    dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts a private server for one test. Prefer [`S3Server::shared`] unless the test
    /// needs a server of its own (stopping one takes up to 3 s).
    pub fn start() -> S3Server {
        let weed = weed_path();
        let access_key = format!("dropship{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let secret_key = uuid::Uuid::new_v4().simple().to_string();
        let bucket = "dropship-test".to_owned();
        let region = "us-east-1".to_owned();
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            match try_start(&weed, &bucket, &region, &access_key, &secret_key) {
                Ok(server) => return server,
                Err(StartFailure::PortTaken(log)) => last_failure = log,
                Err(StartFailure::Fatal(message)) => panic!("{message}"),
            }
        }
        panic!("SeaweedFS could not get free ports in {START_ATTEMPTS} attempts; last log:\n{last_failure}");
    }

    /// One server per test process, started on first use and stopped when the process exits.
    pub fn shared() -> &'static S3Server {
        static SHARED: OnceLock<S3Server> = OnceLock::new();
        extern "C" fn stop_shared_at_exit() {
            // A panic must not unwind into libc's exit path.
            let _ = std::panic::catch_unwind(|| {
                if let Some(server) = SHARED.get() {
                    server.stop();
                }
            });
        }
        SHARED.get_or_init(|| {
            let server = S3Server::start();
            // SAFETY: registers a plain function with no captured state.
            unsafe {
                libc::atexit(stop_shared_at_exit);
            }
            server
        })
    }

    /// An S3 client signed with this server's identity (path-style, no retries).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The object's bytes, or `None` when it does not exist.
    pub fn get_object(&self, key: &str) -> Option<Vec<u8>> {
        block_on(async {
            match self.client.get_object().bucket(&self.bucket).key(key).send().await {
                Ok(output) => {
                    Some(output.body.collect().await.expect("the object body can be read").into_bytes().to_vec())
                }
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => None,
                Err(e) => panic!("GET {key} failed: {}", aws_sdk_s3::error::DisplayErrorContext(&e)),
            }
        })
    }

    /// Every key under `prefix`, sorted.
    pub fn list_keys(&self, prefix: &str) -> Vec<String> {
        block_on(async {
            let mut keys = Vec::new();
            let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.unwrap_or_else(|e| {
                    panic!("listing {prefix} failed: {}", aws_sdk_s3::error::DisplayErrorContext(&e))
                });
                keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
            }
            keys.sort();
            keys
        })
    }

    /// Writes an object directly (not through a presigned URL).
    pub fn put_object(&self, key: &str, bytes: &[u8]) {
        let body = ByteStream::from(bytes.to_vec());
        block_on(async {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("PUT {key} failed: {}", aws_sdk_s3::error::DisplayErrorContext(&e)));
        });
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path, 40)
    }

    /// Stops the process (SIGTERM, SIGKILL after 3 s) and removes its data. Idempotent.
    pub fn stop(&self) {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut running) = running {
            stop_child(&mut running.child);
            let _ = running.dir.close();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

enum StartFailure {
    /// Another process took one of the ports between the check and weed's bind.
    PortTaken(String),
    Fatal(String),
}

fn weed_path() -> PathBuf {
    let path = std::env::var_os("DROPSHIP_WEED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".stack/venv/bin/weed"));
    assert!(
        path.is_file(),
        "SeaweedFS not found at {}: run scripts/install-deps.sh (or point DROPSHIP_WEED at a weed binary)",
        path.display()
    );
    path
}

fn try_start(
    weed: &Path,
    bucket: &str,
    region: &str,
    access_key: &str,
    secret_key: &str,
) -> Result<S3Server, StartFailure> {
    let dir = tempfile::Builder::new()
        .prefix("dropship-weed-")
        .tempdir()
        .map_err(|e| StartFailure::Fatal(format!("cannot create a temp dir for SeaweedFS: {e}")))?;
    let data = dir.path().join("data");
    let config_path = dir.path().join("s3.json");
    let log_path = dir.path().join("weed.log");
    let identity = serde_json::json!({
        "identities": [{
            "name": "dropship-test",
            "credentials": [{ "accessKey": access_key, "secretKey": secret_key }],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]
    });
    let written = std::fs::create_dir_all(&data).and_then(|()| std::fs::write(&config_path, identity.to_string()));
    written.map_err(|e| StartFailure::Fatal(format!("cannot prepare SeaweedFS's directory: {e}")))?;
    let log = std::fs::File::create(&log_path)
        .map_err(|e| StartFailure::Fatal(format!("cannot create {}: {e}", log_path.display())))?;
    let log_err = log.try_clone().map_err(|e| StartFailure::Fatal(e.to_string()))?;

    let reservation = reserve_with_grpc_twins(5);
    let [s3, master, volume, filer, admin] = reservation.ports[..] else {
        return Err(StartFailure::Fatal("port reservation returned the wrong count".to_owned()));
    };
    let mut command = Command::new(weed);
    command
        .arg("mini")
        .arg(format!("-dir={}", data.display()))
        .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
        .arg(format!("-s3.port={s3}"))
        .arg(format!("-s3.config={}", config_path.display()))
        .arg(format!("-bucket={bucket}"))
        .args(["-master.telemetry=false", "-admin.ui=false", "-webdav=false"])
        .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
        .arg(format!("-master.port={master}"))
        .arg(format!("-volume.port={volume}"))
        .arg(format!("-filer.port={filer}"))
        .arg(format!("-admin.port={admin}"))
        // Its unix sockets default to /tmp/seaweedfs-*-<port>.sock; keep them with the data.
        .arg(format!("-filer.localSocket={}", dir.path().join("filer.sock").display()))
        .arg(format!("-s3.localSocket={}", dir.path().join("s3.sock").display()))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let started = Instant::now();
    let child = spawn_tied_to_process(command)
        .map_err(|e| StartFailure::Fatal(format!("cannot start {}: {e}", weed.display())))?;

    let endpoint = format!("http://127.0.0.1:{s3}");
    let server = S3Server {
        client: s3_client(&endpoint, region, access_key, secret_key),
        endpoint,
        bucket: bucket.to_owned(),
        region: region.to_owned(),
        access_key: access_key.to_owned(),
        secret_key: secret_key.to_owned(),
        log_path: log_path.clone(),
        running: Mutex::new(Some(Running { child, _ports: reservation, dir })),
    };
    match wait_until_ready(&server) {
        Ok(()) => {
            eprintln!("dropship-testkit: SeaweedFS ready at {} after {:.1?}", server.endpoint, started.elapsed());
            Ok(server)
        }
        Err(exited) => {
            let tail = log_tail(&log_path, 40);
            server.stop();
            if exited && (tail.contains("Port allocation failed") || tail.contains("address already in use")) {
                Err(StartFailure::PortTaken(tail))
            } else if exited {
                Err(StartFailure::Fatal(format!("SeaweedFS exited during startup; last lines of its log:\n{tail}")))
            } else {
                Err(StartFailure::Fatal(format!(
                    "SeaweedFS did not become ready within {READY_TIMEOUT:?} (healthz 200 and a signed HEAD of the bucket); last lines of its log:\n{tail}"
                )))
            }
        }
    }
}

/// `Ok` once ready; `Err(true)` when the process exited, `Err(false)` on timeout.
fn wait_until_ready(server: &S3Server) -> Result<(), bool> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let health_url = format!("{}/healthz", server.endpoint);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("an HTTP client");
    while Instant::now() < deadline {
        let exited = {
            let mut running = server.running.lock().unwrap_or_else(|p| p.into_inner());
            running.as_mut().is_none_or(|r| !matches!(r.child.try_wait(), Ok(None)))
        };
        if exited {
            return Err(true);
        }
        let ready = block_on(async {
            let healthy = http.get(&health_url).send().await.is_ok_and(|r| r.status() == reqwest::StatusCode::OK);
            healthy && server.client.head_bucket().bucket(&server.bucket).send().await.is_ok()
        });
        if ready {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(false)
}

fn s3_client(endpoint: &str, region: &str, access_key: &str, secret_key: &str) -> Client {
    let http_client =
        aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).build_https();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http_client)
        .region(Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(access_key, secret_key, None, None, "dropship-testkit"))
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        // Tests see the server's behaviour as it is: no retries hiding a failure.
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(60))
                .build(),
        )
        .build();
    Client::from_conf(config)
}
