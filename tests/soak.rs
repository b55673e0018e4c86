//! The soak run (issue #4, point 4), run by hand through `bench/soak.sh`: thousands of files of
//! mixed sizes — mostly small, some in parts — through the fault proxy failing a seeded share of
//! the requests to S3. Everything must land byte-identical, once in the history, recorded once
//! by the backend; the run prints its wall time, client CPU and retry counts.
//!
//! Ignored in the normal suite (it takes minutes). Tuned by environment variables:
//! `SOAK_FILES` (10000), `SOAK_RATE` (0.05), `SOAK_SEED` (1), `SOAK_BACKEND_RATE` (0: the share
//! of backend requests to fail too, through a reverse proxy in front of it — meaningful once
//! backend calls are retried and reports go through the outbox).

use std::time::Instant;

use dropship_system_tests::cli::{json_lines, pattern, Workspace};
use dropship_system_tests::invariants::{assert_nothing_lost, Expected};
use dropship_testkit::{Backend, Fault, FaultProxy, RandomFaults, S3Server};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const PART: usize = 5 * MIB;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Mostly small files, a few of a few hundred KiB, and one in a thousand large enough to go up
/// in 5 MiB parts.
fn size_of(i: usize) -> usize {
    match i % 1000 {
        999 => PART + (i % 3) * PART + 12_345,
        n if n % 50 == 7 => 256 * KIB + n,
        n => [0, 1, 100, 2 * KIB, 16 * KIB, 64 * KIB][n % 6] + n % 13,
    }
}

#[test]
#[ignore = "the soak run takes minutes: bench/soak.sh runs it"]
fn thousands_of_files_through_a_failure_rate_all_land_once() {
    let count: usize = env_or("SOAK_FILES", 10_000);
    let rate: f64 = env_or("SOAK_RATE", 0.05);
    let seed: u64 = env_or("SOAK_SEED", 1);
    let backend_rate: f64 = env_or("SOAK_BACKEND_RATE", 0.0);

    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let workspace = Workspace::new();
    let prepared = Instant::now();
    let files: Vec<_> = (0..count)
        .map(|i| {
            let bytes = pattern(size_of(i), i as u8);
            (workspace.file(&format!("d{:02}/f-{i:05}.bin", i % 100), &bytes), bytes)
        })
        .collect();
    let total: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    let multipart = files.iter().filter(|(_, b)| b.len() >= PART).count();
    eprintln!(
        "soak: {count} files, {:.1} MiB, {multipart} in parts, written in {:.1?}",
        total as f64 / MIB as f64,
        prepared.elapsed()
    );

    let faults = vec![
        Fault::CutAfter(1000),
        Fault::Status(500),
        Fault::Status(503),
        Fault::SlowDown,
        Fault::Status(429),
        Fault::FlipBodyByte,
    ];
    let bucket_path: &'static str = Box::leak(format!("/{}/", s3.bucket).into_boxed_str());
    let s3_proxy = FaultProxy::start_random(
        Vec::new(),
        RandomFaults { rate, seed, method: "", target_contains: bucket_path, faults },
    );
    // In front of the backend, a reverse proxy the CLI talks to instead, when asked to fail too.
    let backend_front = (backend_rate > 0.0).then(|| {
        let front = FaultProxy::reverse(&backend.url, Vec::new());
        front.set_random(Some(RandomFaults {
            rate: backend_rate,
            seed: seed + 1,
            method: "",
            target_contains: "/api/",
            faults: vec![Fault::Status(500), Fault::Status(503), Fault::CutAfter(10)],
        }));
        front
    });
    let backend_url = backend_front.as_ref().map_or(backend.url.clone(), |front| front.url.clone());

    let part = PART.to_string();
    let mut command = workspace.dropship(&backend, "native");
    command
        .env("DROPSHIP_BACKEND_URL", &backend_url)
        .env("HTTP_PROXY", &s3_proxy.url)
        .env("DROPSHIP_LOG", "info")
        .args(["upload", "--json", "--multipart-threshold", &part, "--part-size", &part])
        .arg(workspace.dir.path().join("files"));
    let cpu_before = children_cpu_seconds();
    let started = Instant::now();
    let output = command.output().expect("run dropship");
    let wall = started.elapsed();
    let cpu = children_cpu_seconds() - cpu_before;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let lines = json_lines(&output);
    let failed: Vec<_> = lines.iter().filter(|l| l["status"] != "uploaded").take(5).collect();
    let retries = stderr.matches("retrying").count();
    let resigns = stderr.matches("signing it again").count();
    let injected = s3_proxy.injected();
    let requests = s3_proxy.exchanges().len();

    eprintln!("soak: wall {:.1} s, client CPU {cpu:.1} s, exit {:?}", wall.as_secs_f64(), output.status.code());
    if let Some(front) = &backend_front {
        eprintln!("soak: {} requests to the backend, {} failed on purpose", front.exchanges().len(), front.injected());
        for faulted in front.exchanges().iter().filter(|e| e.fault.is_some()) {
            eprintln!("soak:   {} {} → {:?}", faulted.method, faulted.path, faulted.fault);
        }
    }
    eprintln!(
        "soak: {requests} requests to S3, {injected} failed on purpose ({:.2}%), {retries} retries, {resigns} re-signs",
        100.0 * injected as f64 / requests.max(1) as f64
    );
    assert!(output.status.success(), "every file lands despite the faults; first failures: {failed:?}");
    assert_eq!(lines.len(), count, "one line per file");

    let checked = Instant::now();
    let output_text = [String::from_utf8_lossy(&output.stdout).into_owned(), stderr];
    // Each fault costs at most the one request it hit: a part or a file, sent again.
    let bound = injected as u64 * PART as u64;
    let landed = assert_nothing_lost(
        s3,
        &backend,
        &workspace,
        Expected::files(&files).through(&s3_proxy, bound).output(&output_text),
    );
    eprintln!(
        "soak: all {count} files byte-identical in S3, once in the history, recorded once; {:.1} MiB sent again of {:.1} MiB (checked in {:.1?})",
        landed.bytes_resent as f64 / MIB as f64,
        total as f64 / MIB as f64,
        checked.elapsed()
    );
    println!(
        "SOAK files={count} mib={:.1} multipart={multipart} rate={rate} seed={seed} wall_s={:.1} client_cpu_s={cpu:.1} s3_requests={requests} faults={injected} retries={retries} resigns={resigns} resent_mib={:.1}",
        total as f64 / MIB as f64,
        wall.as_secs_f64(),
        landed.bytes_resent as f64 / MIB as f64
    );
}

/// User + system CPU seconds of this process's waited-for children.
fn children_cpu_seconds() -> f64 {
    // SAFETY: getrusage(2) only writes into the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
