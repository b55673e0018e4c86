//! Pause, resume and cancel through the core's Engine (the handle the desktop app holds),
//! against the real backend and SeaweedFS.

use std::path::Path;
use std::time::Duration;

use dropship_core::{ApiFlavour, Engine, Event, HistoryQuery, Settings, Source, TransferSettings};
use dropship_system_tests::cli::pattern;
use dropship_system_tests::engine::next_event;
use dropship_system_tests::wait_for;
use dropship_testkit::{block_on, runtime, Backend, S3Server};
use tokio::sync::broadcast::Receiver;

const MIB: u64 = 1024 * 1024;

fn engine(backend: &Backend, data_dir: &Path) -> Engine {
    let engine = Engine::open(data_dir, runtime().handle().clone()).expect("open the engine");
    let transfer =
        TransferSettings { concurrency: 1, multipart_threshold: 5 * MIB, part_size: 5 * MIB, bandwidth_limit: 0 };
    engine
        .apply_settings(Settings {
            backend_url: backend.url.clone(),
            api: ApiFlavour::Native,
            token: backend.token.clone(),
            transfer,
            upload_hosts: Vec::new(),
            log_level: Default::default(),
            network: Default::default(),
        })
        .expect("valid settings");
    engine
}

/// Waits until the upload has sent its first bytes; returns its id.
fn first_bytes_sent(events: &mut Receiver<Event>) -> String {
    next_event(events, Duration::from_secs(30), |e| match e {
        Event::FileProgress { upload_id, bytes_done, .. } if *bytes_done > 0 => Some(upload_id.clone()),
        _ => None,
    })
    .expect("the upload starts")
}

fn write_file(dir: &Path, size: u64) -> (std::path::PathBuf, Vec<u8>) {
    let bytes = pattern(size as usize, 7);
    let path = dir.join("big.bin");
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

#[test]
fn nothing_is_sent_while_everything_is_paused_and_the_upload_completes_on_resume() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&backend, &dir.path().join("data"));
    let (path, bytes) = write_file(dir.path(), 32 * MIB);
    let mut events = engine.subscribe();
    assert!(engine.is_idle(), "a new engine is idle");

    engine.pause_all();
    assert!(!engine.is_idle(), "paused is a state only this engine holds");
    engine.submit(vec![path], Source::Window);
    // First the positive sign that the engine took the file in, then the silence that matters.
    let queued = next_event(&mut events, Duration::from_secs(30), |e| match e {
        Event::FilesQueued { files, .. } => Some(files.len()),
        _ => None,
    });
    assert_eq!(queued, Some(1), "the paused engine still takes the file into its queue");
    let sent = next_event(&mut events, Duration::from_secs(2), |e| match e {
        Event::FileProgress { bytes_done, .. } if *bytes_done > 0 => Some(*bytes_done),
        _ => None,
    });
    assert_eq!(sent, None, "no byte leaves while paused");

    engine.resume_all();
    assert!(!engine.is_idle(), "a batch runs");
    let finished = next_event(&mut events, Duration::from_secs(60), |e| match e {
        Event::BatchFinished { uploaded, failed, .. } => Some((*uploaded, *failed)),
        _ => None,
    });
    assert_eq!(finished, Some((1, 0)), "after resume the file uploads");
    wait_for("the engine to be idle once its batch ended", Duration::from_secs(10), || engine.is_idle().then_some(()))
        .unwrap();
    let entry = engine.history(&HistoryQuery::default()).unwrap().remove(0);
    assert_eq!(s3.get_object(entry.key.as_deref().unwrap()).as_deref(), Some(&bytes[..]), "byte-identical");
    assert_eq!(backend.records().len(), 1, "and recorded once");
}

#[test]
fn a_paused_upload_stops_sending_and_finishes_after_it_is_resumed() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&backend, &dir.path().join("data"));
    let (path, bytes) = write_file(dir.path(), 128 * MIB);
    let mut events = engine.subscribe();

    engine.submit(vec![path], Source::Window);
    let (upload_id, mut before_pause) = next_event(&mut events, Duration::from_secs(30), |e| match e {
        Event::FileProgress { upload_id, bytes_done, .. } if *bytes_done > 0 => Some((upload_id.clone(), *bytes_done)),
        _ => None,
    })
    .expect("the upload starts");
    assert!(engine.pause(&upload_id), "a running upload can be paused");
    // Progress sent before the pause, and what the part in flight reports while the task notices
    // the pause (later on a loaded machine), may still come. It can never go past the end of
    // that part: parts go one at a time, and the next one waits at the closed gate.
    next_event(&mut events, Duration::from_secs(30), |e| match e {
        Event::FileProgress { bytes_done, .. } => {
            before_pause = before_pause.max(*bytes_done);
            None
        }
        Event::FilePaused { .. } => Some(()),
        _ => None,
    })
    .expect("the engine says the upload is paused");
    let part = 5 * MIB;
    let end_of_part_in_flight = (before_pause / part + 1) * part;
    // Then silence: the stream goes quiet (no event for 1.5 s) well within a minute, having
    // sent nothing past that part and finished nothing.
    let quiet_by = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let late = next_event(&mut events, Duration::from_millis(1500), |e| match e {
            Event::FileProgress { bytes_done, .. } => Some(*bytes_done),
            Event::FileUploaded { .. } => panic!("a paused upload finished"),
            _ => None,
        });
        let Some(bytes_done) = late else { break };
        assert!(
            bytes_done <= end_of_part_in_flight,
            "a paused upload sends nothing past the part in flight: {bytes_done} bytes done, the part ends at \
             {end_of_part_in_flight}"
        );
        assert!(std::time::Instant::now() < quiet_by, "a paused upload kept reporting progress for a minute");
    }

    assert!(engine.resume(&upload_id));
    let done = next_event(&mut events, Duration::from_secs(60), |e| match e {
        Event::FileUploaded { key, .. } => Some(key.clone()),
        Event::FileFailed { error, .. } => panic!("the resumed upload failed: {error}"),
        _ => None,
    })
    .expect("the resumed upload finishes");
    assert_eq!(s3.get_object(&done).as_deref(), Some(&bytes[..]), "byte-identical after pause and resume");
}

#[test]
fn a_cancelled_multipart_upload_is_aborted_and_leaves_nothing_in_the_bucket() {
    let s3 = S3Server::shared();
    let backend = Backend::start(s3);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(&backend, &dir.path().join("data"));
    let (path, _) = write_file(dir.path(), 128 * MIB);
    let mut events = engine.subscribe();

    engine.submit(vec![path], Source::Window);
    let upload_id = first_bytes_sent(&mut events);
    assert!(engine.cancel(&upload_id));
    let code = next_event(&mut events, Duration::from_secs(30), |e| match e {
        Event::FileFailed { error, .. } => Some(error.code.clone()),
        Event::FileUploaded { .. } => Some("uploaded".into()),
        _ => None,
    });
    assert_eq!(code.as_deref(), Some("cancelled"));

    let entry = engine.history(&HistoryQuery::default()).unwrap().remove(0);
    assert_eq!(entry.error_code.as_deref(), Some("cancelled"), "the history says it was cancelled");
    let key = entry.key.expect("the multipart upload had a key");
    let open_uploads = block_on(s3.client().list_multipart_uploads().bucket(&s3.bucket).prefix(&key).send())
        .expect("list multipart uploads");
    assert!(open_uploads.uploads().is_empty(), "the multipart upload was aborted: {:?}", open_uploads.uploads());
    assert_eq!(s3.get_object(&key), None, "no object was made");
    assert!(backend.records().is_empty(), "nothing was reported");
}
