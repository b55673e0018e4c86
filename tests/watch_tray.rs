//! The tray's Pause all / Resume all driving the engine while a watched folder fills up, and
//! the tray state that follows. Driven through the tray's own code path in the core
//! ([`TrayCommand::from_menu_id`] → [`TrayCommand::apply`], what the desktop's tray menu
//! handler calls with the clicked item's id) against a real engine, watcher, backend and
//! SeaweedFS; only Tauri's menu plumbing is left out.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dropship_core::activity::{ActivityState, ActivityTracker, TrayCommand};
use dropship_core::{ApiFlavour, Engine, HistoryQuery, Settings, UploadStatus, WatchSettings, WatchedFolder, Watcher};
use dropship_system_tests::wait_for;
use dropship_testkit::{block_on, runtime, Backend, S3Server};

fn engine(backend: &Backend, data_dir: &Path) -> Engine {
    let engine = Engine::open(data_dir, runtime().handle().clone()).expect("open the engine");
    engine
        .apply_settings(Settings {
            backend_url: backend.url.clone(),
            api: ApiFlavour::Native,
            token: backend.token.clone(),
            upload_hosts: Vec::new(),
            log_level: Default::default(),
            network: Default::default(),
            transfer: Default::default(),
        })
        .expect("valid settings");
    engine
}

#[test]
fn pause_all_from_the_tray_holds_watched_uploads_and_resume_all_lets_each_land_once() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let dir = tempfile::tempdir().unwrap();
    let (watched, data) = (dir.path().join("watched"), dir.path().join("data"));
    std::fs::create_dir_all(&watched).unwrap();
    let engine = engine(&backend, &data);

    // The tray's state, fed from the engine's events as the desktop shell feeds it.
    let tracker = Arc::new(Mutex::new(ActivityTracker::new(engine.is_paused())));
    let seen_states = Arc::new(Mutex::new(Vec::new()));
    let mut events = engine.subscribe();
    let (fold, seen) = (tracker.clone(), seen_states.clone());
    runtime().spawn(async move {
        while let Ok(event) = events.recv().await {
            let mut tracker = fold.lock().unwrap();
            tracker.apply(&event);
            seen.lock().unwrap().push(tracker.activity(None).label());
        }
    });

    let settings = WatchSettings { folders: vec![WatchedFolder::new(&watched)], stable_for_ms: 300 };
    let watcher = Watcher::start(engine.clone(), settings, runtime().handle()).expect("start watching");
    wait_for("the folder to be watched", Duration::from_secs(10), || {
        (watcher.status().folders[0].state == dropship_core::watch::FolderState::Watching).then_some(())
    })
    .unwrap();

    TrayCommand::from_menu_id(TrayCommand::PAUSE_ALL).expect("a tray item").apply(&engine);
    wait_for("the tray to say paused", Duration::from_secs(5), || {
        (tracker.lock().unwrap().activity(None).state == ActivityState::Paused).then_some(())
    })
    .unwrap();
    for i in 0..3 {
        std::fs::write(watched.join(format!("scan-{i}.pdf")), format!("page {i}")).unwrap();
    }
    // Well past the stability window: the files are handed over, and held.
    wait_for("three watched files handed to the engine", Duration::from_secs(10), || {
        (watcher.status().folders[0].uploading == 3).then_some(())
    })
    .unwrap();
    let uploaded = |engine: &Engine| {
        let query = HistoryQuery { status: Some(UploadStatus::Uploaded), ..Default::default() };
        engine.history(&query).unwrap().len()
    };
    // The furthest a held upload gets: signed and marked uploading in the history, waiting at the
    // pause. Once all three are there, only the pause stands between them and S3; a moment more
    // would let a pause that does not hold show itself.
    wait_for("three uploads signed and held at the pause", Duration::from_secs(30), || {
        let query = HistoryQuery { status: Some(UploadStatus::Uploading), ..Default::default() };
        (engine.history(&query).unwrap().len() == 3).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}; uploaded meanwhile: {}", uploaded(&engine)));
    std::thread::sleep(Duration::from_millis(500));
    assert!(backend.records().is_empty(), "nothing is recorded while paused");
    assert_eq!(uploaded(&engine), 0, "nothing uploaded while paused");
    assert_eq!(tracker.lock().unwrap().activity(None).state, ActivityState::Paused);

    TrayCommand::from_menu_id(TrayCommand::RESUME_ALL).expect("a tray item").apply(&engine);
    wait_for("three uploads after resuming", Duration::from_secs(30), || (uploaded(&engine) == 3).then_some(()))
        .unwrap();
    wait_for("the tray to go idle", Duration::from_secs(10), || {
        (tracker.lock().unwrap().activity(Some(&watcher.status())).state == ActivityState::Idle).then_some(())
    })
    .unwrap();
    assert!(
        seen_states.lock().unwrap().iter().any(|label| label.starts_with("Uploading ") && label.ends_with(" of 3")),
        "the tray showed 'Uploading n of 3': {:?}",
        seen_states.lock().unwrap()
    );
    assert_eq!(backend.records().len(), 3, "each file recorded exactly once");
    block_on(watcher.stop(Duration::from_secs(5)));
    block_on(engine.shutdown());
}
