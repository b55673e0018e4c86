//! The engine (the handle the desktop app holds) following the machine's conditions on a
//! private D-Bus where python-dbusmock stands in for NetworkManager, UPower and logind: a
//! metered connection and battery power hold uploads as the settings say, "Upload anyway"
//! lets them go, waking from sleep drops a stalled connection, the internet coming back ends a
//! backoff at once; and a bandwidth schedule changes a running upload's pace at its boundary.
//! Real backend and SeaweedFS throughout; the fault proxy only for the stall and the 503s a
//! real server will not produce on demand.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dropship_core::conditions::{ConditionsMonitor, Following};
use dropship_core::holds::{HoldReason, Holds};
use dropship_core::network::{NetworkSettings, ProxySetting};
use dropship_core::{ApiFlavour, Engine, Event, Settings, Source, TransferSettings};
use dropship_system_tests::cli::pattern;
use dropship_system_tests::engine::next_event;
use dropship_testkit::dbusmock::SystemBusMock;
use dropship_testkit::{block_on, runtime, Backend, S3Server};
use dropship_testkit::{Fault, FaultProxy, Rule};
use tokio::sync::broadcast::Receiver;

const MIB: u64 = 1024 * 1024;

fn settings(backend: &Backend, transfer: TransferSettings, network: NetworkSettings) -> Settings {
    Settings {
        backend_url: backend.url.clone(),
        api: ApiFlavour::Native,
        token: backend.token.clone(),
        transfer,
        upload_hosts: Vec::new(),
        log_level: Default::default(),
        network,
    }
}

fn one_at_a_time() -> TransferSettings {
    TransferSettings { concurrency: 1, multipart_threshold: 5 * MIB, part_size: 5 * MIB, bandwidth_limit: 0 }
}

/// An engine following the services on `bus` (once it follows all three).
fn engine_on(bus: &SystemBusMock, data_dir: &Path, settings: Settings) -> Engine {
    let engine = Engine::open(data_dir, runtime().handle().clone()).expect("open the engine");
    engine.apply_settings(settings).expect("valid settings");
    let monitor = ConditionsMonitor::start_on_bus(runtime().handle(), &bus.address);
    assert_eq!(block_on(monitor.following()), Following { network: true, power: true, sleep: true });
    engine.follow_conditions(monitor);
    engine
}

fn holds_become(events: &mut Receiver<Event>, wanted: impl Fn(&Holds) -> bool, after: &str) -> Holds {
    next_event(events, Duration::from_secs(5), |e| match e {
        Event::HoldsChanged { holds } if wanted(holds) => Some(holds.clone()),
        _ => None,
    })
    .unwrap_or_else(|| panic!("after {after}, the engine should say what the conditions hold"))
}

/// The batch's (uploaded, failed) counts, if it finishes within `timeout`.
fn batch_finishes(events: &mut Receiver<Event>, timeout: Duration) -> Option<(usize, usize)> {
    next_event(events, timeout, |e| match e {
        Event::BatchFinished { uploaded, failed, .. } => Some((*uploaded, *failed)),
        _ => None,
    })
}

fn write_file(dir: &Path, name: &str, size: u64) -> (PathBuf, Vec<u8>) {
    let bytes = pattern(size as usize, 11);
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

fn wait_until(what: &str, timeout: Duration, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "{what} did not happen within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_metered_connection_holds_watched_folders_until_upload_anyway_and_uploads_by_hand_go_on() {
    let bus = SystemBusMock::start();
    let backend = Backend::start(S3Server::shared());
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_on(&bus, &dir.path().join("data"), settings(&backend, one_at_a_time(), Default::default()));
    let mut events = engine.subscribe();

    bus.set_metered(true);
    let held = holds_become(&mut events, |h| h.holds_anything(), "the network became metered");
    assert_eq!(held.reason, Some(HoldReason::Metered));
    assert!(held.watched && !held.by_hand, "by default only watched folders wait: {held:?}");
    assert_eq!(held.message.as_deref(), Some("Paused: metered connection"));

    let (by_hand, _) = write_file(dir.path(), "by-hand.bin", 64 * 1024);
    engine.submit(vec![by_hand], Source::Window);
    assert_eq!(batch_finishes(&mut events, Duration::from_secs(30)), Some((1, 0)), "an upload by hand goes on");

    let (watched, bytes) = write_file(dir.path(), "watched.bin", 64 * 1024);
    engine.submit(vec![watched], Source::Watch);
    assert_eq!(batch_finishes(&mut events, Duration::from_secs(2)), None, "a watched folder's upload waits");
    assert_eq!(backend.records().len(), 1, "nothing of it reached the backend");

    engine.upload_anyway();
    assert_eq!(batch_finishes(&mut events, Duration::from_secs(30)), Some((1, 0)), "Upload anyway lets it go");
    let key = backend.records().last().unwrap()["key"].as_str().unwrap().to_owned();
    assert_eq!(S3Server::shared().get_object(&key).as_deref(), Some(&bytes[..]));
    let anyway = engine.holds();
    assert!(anyway.overridden && anyway.reason == Some(HoldReason::Metered) && !anyway.holds_anything());

    bus.set_metered(false);
    holds_become(&mut events, |h| h.reason.is_none(), "the network stopped being metered");
    bus.set_metered(true);
    let again = holds_become(&mut events, |h| h.holds_anything(), "the next metered network");
    assert!(again.watched && !again.overridden, "Upload anyway lasts only as long as its condition");
}

#[test]
fn battery_power_holds_an_upload_in_flight_and_it_finishes_on_mains() {
    let bus = SystemBusMock::start();
    let backend = Backend::start(S3Server::shared());
    let dir = tempfile::tempdir().unwrap();
    let transfer = TransferSettings { bandwidth_limit: 4_000_000, ..one_at_a_time() };
    let network = NetworkSettings { pause_on_battery: true, ..Default::default() };
    let engine = engine_on(&bus, &dir.path().join("data"), settings(&backend, transfer, network));
    let mut events = engine.subscribe();

    let (path, bytes) = write_file(dir.path(), "big.bin", 16 * MIB);
    engine.submit(vec![path], Source::Window);
    next_event(&mut events, Duration::from_secs(30), |e| match e {
        Event::FileProgress { bytes_done, .. } if *bytes_done > MIB => Some(()),
        _ => None,
    })
    .expect("the upload gets going");

    bus.set_on_battery(true);
    let held = holds_become(&mut events, |h| h.holds_anything(), "the machine went on battery");
    assert_eq!(held.message.as_deref(), Some("Paused: on battery"));
    assert!(held.watched && held.by_hand, "battery holds every upload");
    // What was in flight stops; then nothing more goes out.
    std::thread::sleep(Duration::from_millis(300));
    let moved = next_event(&mut events, Duration::from_millis(1500), |e| match e {
        Event::FileProgress { bytes_done, .. } => Some(*bytes_done),
        _ => None,
    });
    assert_eq!(moved, None, "no byte goes out while on battery");

    bus.set_on_battery(false);
    holds_become(&mut events, |h| !h.holds_anything(), "mains power came back");
    assert_eq!(batch_finishes(&mut events, Duration::from_secs(60)), Some((1, 0)));
    let key = backend.records()[0]["key"].as_str().unwrap().to_owned();
    assert_eq!(S3Server::shared().get_object(&key).as_deref(), Some(&bytes[..]), "byte-identical after the hold");
}

/// Settings whose every request goes through `proxy` (the fault proxy in forward mode).
fn through(proxy: &FaultProxy) -> NetworkSettings {
    NetworkSettings {
        proxy: ProxySetting::Manual { url: proxy.url.clone(), username: String::new(), password: String::new() },
        ..Default::default()
    }
}

#[test]
fn waking_from_sleep_drops_a_stalled_connection_and_sends_again_at_once() {
    let bus = SystemBusMock::start();
    let backend = Backend::start(S3Server::shared());
    // The PUT that was in flight as the machine slept: its connection will never answer.
    let stall = Rule { method: "PUT", target_contains: "", fault: Fault::Stall(Duration::from_secs(600)), times: 1 };
    let proxy = FaultProxy::start(vec![stall]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_on(&bus, &dir.path().join("data"), settings(&backend, one_at_a_time(), through(&proxy)));
    let mut events = engine.subscribe();

    let (path, _) = write_file(dir.path(), "note.bin", 256 * 1024);
    engine.submit(vec![path], Source::Window);
    wait_until("the PUT stalling", Duration::from_secs(30), || proxy.injected() == 1);
    bus.emit_prepare_for_sleep(true);
    bus.emit_prepare_for_sleep(false);
    let woke = Instant::now();
    assert_eq!(
        batch_finishes(&mut events, Duration::from_secs(20)),
        Some((1, 0)),
        "the upload is sent again on resume, not after the 60 s read timeout"
    );
    assert!(woke.elapsed() < Duration::from_secs(20));
    // The stalled exchange is still open at the proxy (it is only logged when it ends).
    let sent_again = proxy.exchanges().into_iter().filter(|e| e.method == "PUT" && e.status == Some(200)).count();
    assert_eq!((proxy.injected(), sent_again), (1, 1), "the stalled PUT, then one more on a fresh connection");
}

#[test]
fn waking_from_sleep_asks_the_backend_again_instead_of_waiting_on_a_stalled_call() {
    let bus = SystemBusMock::start();
    let backend = Backend::start(S3Server::shared());
    // The presign call that was in flight as the machine slept: it will never be answered.
    let stall =
        Rule { method: "POST", target_contains: "presign", fault: Fault::Stall(Duration::from_secs(600)), times: 1 };
    let front = FaultProxy::reverse(&backend.url, vec![stall]);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(&backend, one_at_a_time(), Default::default());
    settings.backend_url = front.url.clone();
    let engine = engine_on(&bus, &dir.path().join("data"), settings);
    let mut events = engine.subscribe();

    let (path, _) = write_file(dir.path(), "note.bin", 64 * 1024);
    engine.submit(vec![path], Source::Window);
    wait_until("the presign call stalling", Duration::from_secs(30), || front.injected() == 1);
    bus.emit_prepare_for_sleep(true);
    bus.emit_prepare_for_sleep(false);
    assert_eq!(
        batch_finishes(&mut events, Duration::from_secs(20)),
        Some((1, 0)),
        "the call is made again on resume, not after the 60 s read timeout"
    );
    assert_eq!(backend.records().len(), 1);
}

#[test]
fn the_internet_coming_back_ends_a_backoff_at_once() {
    let bus = SystemBusMock::start();
    let backend = Backend::start(S3Server::shared());
    let refuse = Rule { method: "PUT", target_contains: "", fault: Fault::Status(503), times: usize::MAX };
    let proxy = FaultProxy::start(vec![refuse]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_on(&bus, &dir.path().join("data"), settings(&backend, one_at_a_time(), through(&proxy)));
    let mut events = engine.subscribe();
    bus.set_nm_state(20);

    let (path, _) = write_file(dir.path(), "note.bin", 64 * 1024);
    engine.submit(vec![path], Source::Window);
    // Backoffs grow; wait for one long enough that ending it early is unmistakable.
    let backoff = next_event(&mut events, Duration::from_secs(60), |e| match e {
        Event::FileRetrying { retry_in_ms, .. } if *retry_in_ms >= 1500 => Some(Duration::from_millis(*retry_in_ms)),
        _ => None,
    })
    .expect("a backoff of 1.5 s or more");
    proxy.set_rules(Vec::new());
    let returned = Instant::now();
    bus.set_nm_state(70);
    assert_eq!(batch_finishes(&mut events, backoff), Some((1, 0)));
    assert!(
        returned.elapsed() < backoff / 2,
        "retried at once ({:?}) rather than after the {backoff:?} backoff",
        returned.elapsed()
    );
}

/// Bytes per second over progress samples between `from` and `to` (seconds since start).
fn rate_between(samples: &[(f64, u64)], from: f64, to: f64) -> f64 {
    let first = samples.iter().find(|(t, _)| *t >= from).expect("a sample at the start of the window");
    let last = samples.iter().rev().find(|(t, _)| *t <= to).expect("a sample at the end of the window");
    (last.1 - first.1) as f64 / (last.0 - first.0)
}

#[test]
fn a_schedule_boundary_during_an_upload_changes_its_rate() {
    let backend = Backend::start(S3Server::shared());
    let dir = tempfile::tempdir().unwrap();
    // 1 MB/s from a little while ago until 5 s from now, then the base limit of 3 MB/s.
    let now = chrono::Local::now();
    // Rules are read to the second: the boundary is the whole second the rule names.
    let boundary = chrono::Timelike::with_nanosecond(&(now + chrono::TimeDelta::seconds(5)), 0).unwrap();
    let rule = format!(
        "daily {}-{} 1MB/s",
        (now - chrono::TimeDelta::seconds(30)).format("%H:%M:%S"),
        boundary.format("%H:%M:%S")
    );
    let transfer =
        TransferSettings { bandwidth_limit: 3_000_000, multipart_threshold: 64 * MIB, ..TransferSettings::default() };
    let network = NetworkSettings { bandwidth_schedule: rule.parse().expect("a valid rule"), ..Default::default() };
    let engine = Engine::open(&dir.path().join("data"), runtime().handle().clone()).unwrap();
    engine.apply_settings(settings(&backend, transfer, network)).unwrap();
    let mut events = engine.subscribe();

    let (path, _) = write_file(dir.path(), "paced.bin", 14_000_000);
    let started = Instant::now();
    let to_boundary = (boundary - chrono::Local::now()).to_std().unwrap().as_secs_f64();
    engine.submit(vec![path], Source::Window);
    let mut samples = Vec::new();
    let finished = next_event(&mut events, Duration::from_secs(60), |e| match e {
        Event::FileProgress { bytes_done, .. } => {
            samples.push((started.elapsed().as_secs_f64(), *bytes_done));
            None
        }
        Event::BatchFinished { uploaded, .. } => Some(*uploaded),
        _ => None,
    });
    assert_eq!(finished, Some(1));
    let before = rate_between(&samples, 1.0, to_boundary - 0.5);
    let after = rate_between(&samples, to_boundary + 0.5, to_boundary + 2.5);
    eprintln!("measured: {before:.0} B/s before the boundary, {after:.0} B/s after");
    assert!((before / 1_000_000.0 - 1.0).abs() <= 0.10, "1 MB/s ±10% before the boundary: {before:.0} B/s");
    assert!((after / 3_000_000.0 - 1.0).abs() <= 0.10, "3 MB/s ±10% after the boundary: {after:.0} B/s");
}
