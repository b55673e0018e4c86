//! The watched-folder figures in the README, measured against the real engine, watcher,
//! backend and SeaweedFS. Ignored in the normal test run; `bench/watch.sh` runs them in release
//! mode and prints Markdown lines starting with `| `.
//!
//! - latency: a small file's last write (the close after it) to its upload starting (the
//!   engine's `files_queued` event), with the default 1 s stability window;
//! - catch-up: from starting the watcher to the folder being watched with every file compared
//!   against the index (100,000 files in 1,000 folders), first with an empty index, then with
//!   every file already indexed as uploaded;
//! - idle CPU: this process's CPU time over 30 s of watching those 100,000 files unchanged.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dropship_core::store::{FileVersion, Store};
use dropship_core::watch::FolderState;
use dropship_core::{ApiFlavour, Engine, Event, Settings, WatchSettings, WatchedFolder, Watcher};
use dropship_testkit::{block_on, runtime, Backend, S3Server};

fn count() -> usize {
    std::env::var("BENCH_WATCH_FILES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
}

fn engine(backend_url: &str, token: &str, data_dir: &Path) -> Engine {
    let engine = Engine::open(data_dir, runtime().handle().clone()).expect("open the engine");
    engine
        .apply_settings(Settings {
            backend_url: backend_url.into(),
            api: ApiFlavour::Native,
            token: token.into(),
            upload_hosts: Vec::new(),
            log_level: Default::default(),
            network: Default::default(),
            transfer: Default::default(),
        })
        .expect("valid settings");
    engine
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn bench_dir() -> tempfile::TempDir {
    let base = std::env::var_os("BENCH_TMP").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    tempfile::Builder::new().prefix("dropship-watch-bench-").tempdir_in(base).unwrap()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
#[ignore = "a benchmark: run by bench/watch.sh"]
fn latency_from_last_write_to_upload_start() {
    let files = std::env::var("BENCH_WATCH_LATENCY_FILES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let dir = bench_dir();
    let (watched, data) = (dir.path().join("watched"), dir.path().join("data"));
    std::fs::create_dir_all(&watched).unwrap();
    let watched = watched.canonicalize().unwrap();
    let engine = engine(&backend.url, &backend.token, &data);

    let started: Arc<Mutex<HashMap<PathBuf, Instant>>> = Arc::default();
    let mut events = engine.subscribe();
    let seen = started.clone();
    runtime().spawn(async move {
        while let Ok(event) = events.recv().await {
            if let Event::FilesQueued { files, .. } = event {
                let mut seen = seen.lock().unwrap();
                for file in files {
                    seen.entry(file.path).or_insert_with(Instant::now);
                }
            }
        }
    });
    let settings = WatchSettings { folders: vec![WatchedFolder::new(&watched)], ..Default::default() };
    let watcher = Watcher::start(engine.clone(), settings, runtime().handle()).unwrap();
    wait_until("watching", Duration::from_secs(10), || watcher.status().folders[0].state == FolderState::Watching);

    // One file every 150 ms, each written in two steps: the clock starts at the close after
    // the last write.
    let mut closed = Vec::with_capacity(files);
    for i in 0..files {
        let path = watched.join(format!("scan-{i:04}.pdf"));
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(&[b'x'; 2048]).unwrap();
        file.write_all(&[b'y'; 2048]).unwrap();
        drop(file);
        closed.push((path, Instant::now()));
        std::thread::sleep(Duration::from_millis(150));
    }
    wait_until("every upload to start", Duration::from_secs(60), || started.lock().unwrap().len() >= files);
    let started = started.lock().unwrap();
    let mut latencies: Vec<Duration> =
        closed.iter().map(|(path, at)| started[path].saturating_duration_since(*at)).collect();
    latencies.sort();
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    println!(
        "| last write → upload start, {files} files of 4 KiB, one every 150 ms, 1 s window | p50 {:.2} s | p99 {:.2} s | max {:.2} s |",
        p50.as_secs_f64(),
        p99.as_secs_f64(),
        latencies.last().unwrap().as_secs_f64()
    );
    block_on(watcher.stop(Duration::from_secs(30)));
    block_on(engine.shutdown());
}

/// CPU seconds (user + system) this process has used.
fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we pass; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

#[test]
#[ignore = "a benchmark: run by bench/watch.sh"]
fn catch_up_and_idle_cpu_with_a_hundred_thousand_files() {
    let total = count();
    let dir = bench_dir();
    let (watched, data) = (dir.path().join("watched"), dir.path().join("data"));
    let per_folder = 100;
    let mut paths = Vec::with_capacity(total);
    for i in 0..total {
        let folder = watched.join(format!("batch-{:04}", i / per_folder));
        if i % per_folder == 0 {
            std::fs::create_dir_all(&folder).unwrap();
        }
        let path = folder.join(format!("file-{i:06}.txt"));
        std::fs::write(&path, format!("file {i}\n")).unwrap();
        paths.push(path);
    }
    let watched = watched.canonicalize().unwrap();
    // A backend nobody answers at: catch-up never talks to it, and the uploads the first scan
    // starts fail without touching the folder.
    let engine = engine("http://127.0.0.1:9", "bench", &data);
    let settings = WatchSettings { folders: vec![WatchedFolder::new(&watched)], ..Default::default() };

    let started = Instant::now();
    let watcher = Watcher::start(engine.clone(), settings.clone(), runtime().handle()).unwrap();
    wait_until("the first catch-up", Duration::from_secs(120), || {
        watcher.status().folders[0].state == FolderState::Watching
    });
    let first = started.elapsed();
    // Then every new file is settled, vetted (no writer, not in the index) and handed over; the
    // dead backend fails the first batch at once, which marks the moment.
    wait_until("the first hand-over to the engine", Duration::from_secs(120), || watcher.status().error.is_some());
    let handed_over = started.elapsed();
    block_on(watcher.stop(Duration::ZERO));

    // Every file indexed as uploaded, as if that first run had sent them all.
    let store = Store::open(&data.join("history.sqlite")).unwrap();
    for chunk in paths.chunks(10_000) {
        let stats: Vec<(PathBuf, u64, i64)> = chunk
            .iter()
            .map(|p| {
                let meta = std::fs::metadata(p).unwrap();
                let mtime = meta.modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
                (p.canonicalize().unwrap(), meta.len(), mtime)
            })
            .collect();
        let marks: Vec<(FileVersion<'_>, Option<&str>, Option<&str>)> = stats
            .iter()
            .map(|(path, size, mtime_ns)| {
                (FileVersion { path, folder: &watched, size: *size, mtime_ns: *mtime_ns }, None, Some("bench"))
            })
            .collect();
        store.watch_index_mark_done(&marks).unwrap();
    }
    drop(store);

    let started = Instant::now();
    let watcher = Watcher::start(engine.clone(), settings, runtime().handle()).unwrap();
    wait_until("the second catch-up", Duration::from_secs(120), || {
        watcher.status().folders[0].state == FolderState::Watching
    });
    let unchanged = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let status = watcher.status().folders[0].clone();
    assert_eq!((status.waiting, status.uploading), (0, 0), "nothing to upload when nothing changed: {status:?}");

    let idle_for =
        Duration::from_secs(std::env::var("BENCH_WATCH_IDLE_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(30));
    let before = cpu_seconds();
    std::thread::sleep(idle_for);
    let idle = cpu_seconds() - before;

    println!(
        "| catch-up scan, {total} files in {} folders, empty index | {:.2} s |",
        total / per_folder,
        first.as_secs_f64()
    );
    println!(
        "| … and until the new files are vetted and the first batch is handed to the engine | {:.2} s |",
        handed_over.as_secs_f64()
    );
    println!("| catch-up scan, same files, all already uploaded | {:.2} s |", unchanged.as_secs_f64());
    println!(
        "| CPU while idle, watching {total} files, over {} s | {:.3} CPU-s ({:.2}% of one core) |",
        idle_for.as_secs(),
        idle,
        idle / idle_for.as_secs_f64() * 100.0
    );
    block_on(watcher.stop(Duration::ZERO));
    block_on(engine.shutdown());
}
