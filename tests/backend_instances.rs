//! Several backend instances as an organisation runs them: three dropship-backend processes on
//! one Postgres, behind nginx balancing round-robin, and the `dropship` CLI uploading through
//! the balancer. Reports are idempotent across instances (the database's constraints, not any
//! one instance's memory), a killed instance loses nothing, and the client's retries land on
//! whichever instance nginx picks. Needs the binaries built first:
//! `cargo build -p dropship-backend -p dropship-cli`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dropship_system_tests::cli::{pattern, Workspace};
use dropship_system_tests::invariants::{assert_nothing_lost, Expected};
use dropship_system_tests::wait_for;
use dropship_testkit::{block_on, Backend, BackendOptions, Fault, FaultProxy, Nginx, Rule, S3Server};
use serde_json::{json, Value};

const BUCKET_PATH: &str = "/dropship-test/";
const MIB: usize = 1024 * 1024;

/// Three instances on one fresh Postgres database, and nginx in front of them.
struct Deployment {
    instances: Vec<Backend>,
    nginx: Nginx,
}

impl Deployment {
    fn start() -> Deployment {
        Self::start_with(BackendOptions::default())
    }

    fn start_with(options: BackendOptions) -> Deployment {
        let instances = Backend::start_instances(S3Server::shared(), 3, options);
        let upstreams: Vec<String> = instances.iter().map(|b| b.url.clone()).collect();
        let nginx = Nginx::balance(&upstreams);
        Deployment { instances, nginx }
    }

    /// `dropship upload --json` of the workspace's files through the balancer.
    fn upload(&self, workspace: &Workspace, s3_proxy: Option<&FaultProxy>) -> Command {
        let mut command = workspace.dropship(&self.instances[0], "native");
        command.env("DROPSHIP_BACKEND_URL", &self.nginx.url).env("DROPSHIP_LOG", "info");
        if let Some(proxy) = s3_proxy {
            command.env("HTTP_PROXY", &proxy.url);
        }
        command.args(["upload", "--json"]).arg(workspace.dir.path().join("files"));
        command
    }
}

fn small_files(workspace: &Workspace, count: usize) -> Vec<(PathBuf, Vec<u8>)> {
    (0..count)
        .map(|i| {
            let bytes = pattern(500 + i, i as u8);
            (workspace.file(&format!("small/f-{i:03}.bin"), &bytes), bytes)
        })
        .collect()
}

fn texts(output: &Output) -> Vec<String> {
    vec![String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned()]
}

/// POSTs JSON to `base + path` with the deployment's token: (status, body).
async fn post(base: &str, token: &str, path: &str, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path} to {base}: {e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn sha256_base64(bytes: &[u8]) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(bytes))
}

#[test]
fn the_same_report_sent_to_two_instances_at_once_is_recorded_once() {
    let deployment = Deployment::start();
    let (one, two) = (&deployment.instances[1], &deployment.instances[2]);
    let token = one.token.clone();
    for round in 0..10 {
        let id = uuid::Uuid::new_v4().to_string();
        let bytes = format!("raced report {round}").into_bytes();
        let entry = json!({
            "client_upload_id": id, "file_name": format!("race-{round}.txt"), "size": bytes.len(),
            "content_type": "text/plain", "checksum_sha256": sha256_base64(&bytes),
        });
        let (status, presigned) =
            block_on(post(&deployment.nginx.url, &token, "/api/v1/uploads/presign", &json!({ "files": [entry] })));
        assert_eq!(status, 200, "presigned through the balancer: {presigned}");
        let upload = &presigned["uploads"][0];
        let mut put = reqwest::Client::new().put(upload["url"].as_str().expect("a URL")).body(bytes.clone());
        for (name, value) in upload["headers"].as_object().expect("headers") {
            put = put.header(name, value.as_str().unwrap_or_default());
        }
        let stored = block_on(async { put.send().await.map(|r| r.status().as_u16()) });
        assert_eq!(stored.ok(), Some(200), "the object is in S3");

        let report = json!({
            "key": upload["key"], "file_name": format!("race-{round}.txt"), "size": bytes.len(),
            "content_type": "text/plain", "checksum_sha256": sha256_base64(&bytes),
        });
        let path = format!("/api/v1/uploads/{id}/report");
        let ((first_status, first), (second_status, second)) = block_on(async {
            tokio::join!(post(&one.url, &token, &path, &report), post(&two.url, &token, &path, &report))
        });
        assert!(
            (200..300).contains(&first_status) && (200..300).contains(&second_status),
            "both instances answer 2xx: {first_status} {first} / {second_status} {second}"
        );
        let mut statuses = [first_status, second_status];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 201], "one instance recorded it (201), the other found it recorded (200)");
        assert_eq!(first, second, "both answer with the same record");
    }
    let records = deployment.instances[0].all_records();
    assert_eq!(records.len(), 10, "one record per upload in the shared database: {records:?}");
}

#[test]
fn an_instance_killed_with_sigkill_mid_run_loses_nothing() {
    let mut deployment = Deployment::start();
    let workspace = Workspace::new();
    let mut files = small_files(&workspace, 200);
    let big = pattern(12 * MIB, 7);
    files.push((workspace.file("big/multipart.bin", &big), big));
    // Slow PUTs keep the run going long enough to kill an instance in the middle of it.
    let s3 = FaultProxy::start(vec![Rule {
        method: "PUT",
        target_contains: BUCKET_PATH,
        fault: Fault::Delay(Duration::from_millis(100)),
        times: usize::MAX,
    }]);
    let five_mib = (5 * MIB).to_string();
    let mut command = deployment.upload(&workspace, Some(&s3));
    command.args(["--multipart-threshold", &five_mib, "--part-size", &five_mib, "--concurrency", "4"]);
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the CLI starts");
    wait_for("40 PUTs to S3", Duration::from_secs(60), || (s3.exchanges().len() >= 40).then_some(())).unwrap();
    assert!(matches!(child.try_wait(), Ok(None)), "the run is still going when the instance dies");
    deployment.instances[1].kill();
    assert!(!deployment.instances[1].is_running(), "the instance is gone (kill -9)");
    let output = child.wait_with_output().expect("the CLI finishes");
    assert!(output.status.success(), "the run finished on the other instances: {}", texts(&output).join("\n"));
    assert_nothing_lost(
        S3Server::shared(),
        &deployment.instances[0],
        &workspace,
        Expected::files(&files).output(&texts(&output)),
    );
    let upstreams_used: std::collections::HashSet<String> = deployment
        .nginx
        .access_log()
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect();
    assert!(upstreams_used.len() >= 3, "nginx spread the run over all three instances: {upstreams_used:?}");
}

#[test]
fn a_report_whose_answer_was_lost_is_retried_by_the_client_on_another_instance_and_recorded_once() {
    let instances = Backend::start_instances(S3Server::shared(), 3, BackendOptions::default());
    // Each instance records the first batch report it gets, but its answer never reaches nginx
    // (which answers the client 502), so the client's retry goes to the next instance.
    let fronts: Vec<FaultProxy> = instances
        .iter()
        .map(|instance| {
            let lost =
                Rule { method: "POST", target_contains: "/api/v1/reports", fault: Fault::DropResponse, times: 1 };
            FaultProxy::reverse(&instance.url, vec![lost])
        })
        .collect();
    let upstreams: Vec<String> = fronts.iter().map(|front| front.url.clone()).collect();
    let nginx = Nginx::balance(&upstreams);
    let deployment = Deployment { instances, nginx };

    let workspace = Workspace::new();
    let files = small_files(&workspace, 30);
    let output = deployment.upload(&workspace, None).output().expect("the CLI runs");
    assert!(output.status.success(), "{}", texts(&output).join("\n"));
    let log = deployment.nginx.access_log();
    let reports: Vec<(String, String)> = log
        .lines()
        .filter(|line| line.contains("POST /api/v1/reports"))
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
        })
        .collect();
    let (lost_at, _) = reports.first().unwrap_or_else(|| panic!("the client reported through nginx:\n{log}"));
    assert_eq!(reports[0].1, "502", "the first report's answer was lost, after it was recorded: {reports:?}");
    assert!(
        reports[1..].iter().any(|(upstream, _)| upstream != lost_at),
        "the client's retry went to another instance: {reports:?}"
    );
    assert_eq!(reports.last().map(|(_, status)| status.as_str()), Some("200"), "and was answered: {reports:?}");
    assert!(fronts.iter().map(FaultProxy::injected).sum::<usize>() >= 1, "answers were dropped");
    assert_nothing_lost(
        S3Server::shared(),
        &deployment.instances[1],
        &workspace,
        Expected::files(&files).output(&texts(&output)),
    );
}

const WEBHOOK_SECRET: &str = "shared-by-the-deployment-and-the-app";

/// What the webhook receiver saw: per idempotency key, how many deliveries it accepted; and
/// how many it refused on purpose.
#[derive(Default)]
struct Deliveries {
    accepted: HashMap<String, usize>,
    refused: usize,
    bad_signatures: usize,
}

/// A loopback receiver, as the organisation's app: checks `X-Dropship-Signature`, answers 500
/// to the first `fail_first` deliveries and 204 to the rest.
fn webhook_receiver(fail_first: usize) -> (String, Arc<Mutex<Deliveries>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let url = format!("http://{}/hooks/dropship", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Deliveries::default()));
    let shared = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let seen = Arc::clone(&shared);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut headers = HashMap::new();
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    if let Some((name, value)) = line.split_once(':') {
                        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
                    }
                    line.clear();
                }
                let length = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                use hmac::Mac;
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
                mac.update(&body);
                let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                let status = {
                    let mut seen = seen.lock().unwrap();
                    if headers.get("x-dropship-signature") != Some(&expected) {
                        seen.bad_signatures += 1;
                        "401 Unauthorized"
                    } else if seen.refused < fail_first {
                        seen.refused += 1;
                        "500 Internal Server Error"
                    } else {
                        let key = headers.get("idempotency-key").cloned().unwrap_or_default();
                        *seen.accepted.entry(key).or_default() += 1;
                        "204 No Content"
                    }
                };
                let mut stream = reader.into_inner();
                let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            });
        }
    });
    (url, seen)
}

#[test]
fn three_instances_share_one_webhook_outbox_and_each_upload_is_announced_once() {
    let (url, deliveries) = webhook_receiver(5);
    let options = BackendOptions {
        extra_args: vec!["--webhook-url".into(), url, "--webhook-secret".into(), WEBHOOK_SECRET.into()],
        ..Default::default()
    };
    let deployment = Deployment::start_with(options);
    let workspace = Workspace::new();
    let files = small_files(&workspace, 40);
    let output = deployment.upload(&workspace, None).output().expect("the CLI runs");
    assert!(output.status.success(), "{}", texts(&output).join("\n"));
    assert_nothing_lost(S3Server::shared(), &deployment.instances[0], &workspace, Expected::files(&files));
    let ids: Vec<String> = deployment.instances[0]
        .all_records()
        .iter()
        .map(|record| record["client_upload_id"].as_str().expect("native records have a client id").to_owned())
        .collect();
    wait_for("every upload announced", Duration::from_secs(60), || {
        let seen = deliveries.lock().unwrap();
        ids.iter().all(|id| seen.accepted.contains_key(id)).then_some(())
    })
    .unwrap();
    // Three workers poll every second: a duplicate would arrive within a few polls.
    std::thread::sleep(Duration::from_secs(3));
    let seen = deliveries.lock().unwrap();
    assert_eq!(seen.bad_signatures, 0, "every delivery is signed with the deployment's secret");
    assert_eq!(seen.refused, 5, "the receiver's first five failures were retried");
    for id in &ids {
        assert_eq!(seen.accepted.get(id), Some(&1), "{id} is accepted exactly once across three instances");
    }
    assert_eq!(seen.accepted.len(), ids.len(), "nothing but the recorded uploads is announced");
}
