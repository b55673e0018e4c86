//! The watcher's blocking work, run on the blocking pool: the catch-up walk that also sets up
//! the OS watches, vetting settled files (nothing writing them, not already uploaded in this
//! version), and tidying files away after upload.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use notify::Watcher as _;
use tokio::sync::mpsc;

use super::{CatchUp, FsSource, ReadyFile, Work};
use crate::checksum;
use crate::store::{FileVersion, IndexedFile, Store};
use crate::watch::open_files::open_for_writing;
use crate::watch::pending::Settled;
use crate::watch::rules::IgnoreRules;
use crate::watch::settings::{AfterUpload, WatchedFolder, DEFAULT_POLL_INTERVAL_MS};
use crate::watch::walk::{self, Stat};

pub(super) fn inotify_limit_reason() -> String {
    // The global sysctl, and the one of our user namespace (containers and sandboxes set it).
    let read = |path: &str| std::fs::read_to_string(path).ok().and_then(|v| v.trim().parse::<u64>().ok());
    let limit = [read("/proc/sys/fs/inotify/max_user_watches"), read("/proc/sys/user/max_inotify_watches")]
        .into_iter()
        .flatten()
        .min()
        .map(|n| n.to_string())
        .unwrap_or_else(|| "unknown".into());
    format!(
        "the system's limit on inotify watches ({limit}, fs.inotify.max_user_watches) is used up, so this folder \
         is checked every {} s instead; raise the limit to watch it instantly",
        DEFAULT_POLL_INTERVAL_MS / 1000
    )
}

/// Adds an inotify watch on one folder. False when it could not (the folder is then only seen
/// by scans); `limit_hit` when the system is out of watches.
pub(super) fn watch_one(source: &mut Option<FsSource>, dir: &Path, limit_hit: &mut bool) -> bool {
    let Some(source) = source.as_mut() else { return false };
    match source.watch(dir, notify::RecursiveMode::NonRecursive) {
        Ok(()) => true,
        Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
            *limit_hit = true;
            false
        }
        Err(e) => {
            tracing::warn!(folder = %dir.display(), "cannot watch this folder, skipping it: {e}");
            false
        }
    }
}

pub(super) fn start_polling(
    id: u64,
    root: &Path,
    sender: mpsc::UnboundedSender<(u64, notify::Result<notify::Event>)>,
) -> notify::Result<FsSource> {
    let config = notify::Config::default()
        .with_poll_interval(Duration::from_millis(DEFAULT_POLL_INTERVAL_MS))
        .with_follow_symlinks(false);
    let mut watcher = notify::PollWatcher::new(move |event| drop(sender.send((id, event))), config)?;
    watcher.watch(root, notify::RecursiveMode::Recursive)?;
    Ok(Box::new(watcher))
}

/// Watches a folder (every sub-folder before its entries are read, so nothing landing during
/// the scan is missed) and finds what is new or changed since the index last saw it.
pub(super) fn catch_up(
    id: u64,
    folder: &WatchedFolder,
    rules: &IgnoreRules,
    store: &Store,
    sender: mpsc::UnboundedSender<(u64, notify::Result<notify::Event>)>,
) -> CatchUp {
    let root = &folder.path;
    let mut polling_reason = None;
    let mut source: Option<FsSource> = None;
    if folder.options.polling {
        polling_reason = Some(format!(
            "set to polling: checked every {} s (for network shares, whose changes inotify does not see)",
            DEFAULT_POLL_INTERVAL_MS / 1000
        ));
    } else {
        let events = sender.clone();
        match notify::RecommendedWatcher::new(move |event| drop(events.send((id, event))), notify::Config::default()) {
            Ok(watcher) => source = Some(Box::new(watcher)),
            Err(e) => {
                polling_reason = Some(format!("the OS would not watch it ({e}), so it is checked every few seconds"))
            }
        }
    }
    let mut limit_hit = false;
    let walked = walk::walk(root, root, rules, &mut |dir| {
        if limit_hit {
            return false;
        }
        watch_one(&mut source, dir, &mut limit_hit)
    });
    if limit_hit {
        source = None; // frees the watches it holds for others
        polling_reason = Some(inotify_limit_reason());
    }
    if polling_reason.is_some() {
        source = match start_polling(id, root, sender) {
            Ok(source) => Some(source),
            Err(e) => {
                polling_reason = Some(format!("it cannot be watched or polled ({e})"));
                None
            }
        };
    }
    let index = match store.watch_index_of_folder(root) {
        Ok(index) => index,
        Err(e) => {
            tracing::error!("could not read the watched-folder index, treating every file as new: {e}");
            HashMap::new()
        }
    };
    let now = SystemTime::now();
    let mut changed = Vec::new();
    let mut settle = Vec::new();
    for file in walked.files {
        match decide(&file.path, file.stat, index.get(&file.path), store) {
            Decision::Unchanged => {}
            Decision::Settle { checksum, upload_id } => settle.push((file, checksum, upload_id)),
            Decision::Upload => {
                let modified = UNIX_EPOCH + Duration::from_nanos(file.stat.mtime_ns.max(0) as u64);
                let ago = now.duration_since(modified).unwrap_or(Duration::ZERO);
                changed.push((file.path, file.stat, ago));
            }
        }
    }
    settle_versions(store, root, &settle);
    CatchUp { folder: id, source, polling_reason, changed, warnings: walked.warnings }
}

enum Decision {
    Unchanged,
    /// Already uploaded in this version (a crash hid it, or only its time changed): record it.
    Settle {
        checksum: Option<String>,
        upload_id: Option<String>,
    },
    Upload,
}

fn decide(path: &Path, stat: Stat, indexed: Option<&IndexedFile>, store: &Store) -> Decision {
    let Some(row) = indexed else { return Decision::Upload };
    let same_version = row.size == stat.size && row.mtime_ns == stat.mtime_ns;
    if same_version && row.done {
        return Decision::Unchanged;
    }
    if same_version {
        // An upload of this version started and was never confirmed: the history knows whether
        // it landed before Dropship stopped.
        return match store.uploaded_from_watch_since(path, &row.updated_at) {
            Ok(Some((upload_id, checksum))) => Decision::Settle { checksum, upload_id: Some(upload_id) },
            _ => Decision::Upload,
        };
    }
    // Same size, new time (touched, or copied over with the same bytes): compare contents.
    let plain_hash = row.content_sha256.as_deref().filter(|h| !h.contains('-'));
    if let (true, true, Some(previous)) = (row.done, row.size == stat.size, plain_hash) {
        if let Ok((now, _)) = checksum::sha256_file(path) {
            if now == previous {
                return Decision::Settle { checksum: Some(now), upload_id: row.upload_id.clone() };
            }
        }
    }
    Decision::Upload
}

fn settle_versions(store: &Store, root: &Path, settle: &[(walk::SeenFile, Option<String>, Option<String>)]) {
    if settle.is_empty() {
        return;
    }
    let marks: Vec<(FileVersion<'_>, Option<&str>, Option<&str>)> = settle
        .iter()
        .map(|(file, checksum, upload_id)| {
            let version =
                FileVersion { path: &file.path, folder: root, size: file.stat.size, mtime_ns: file.stat.mtime_ns };
            (version, checksum.as_deref(), upload_id.as_deref())
        })
        .collect();
    if let Err(e) = store.watch_index_mark_done(&marks) {
        tracing::error!("could not update the watched-folder index: {e}");
    }
}

/// Of the settled files, the ones to upload now; the others are unchanged since their last
/// upload, or some program still has them open for writing.
pub(super) fn vet(settled: Vec<Settled>, store: &Store, folders: &HashMap<u64, (PathBuf, AfterUpload)>) -> Work {
    let candidates: HashSet<PathBuf> = settled.iter().map(|s| s.path.clone()).collect();
    let writing = open_for_writing(&candidates);
    let (mut ready, mut still_open, mut settle) = (Vec::new(), Vec::new(), Vec::new());
    for file in settled {
        if writing.contains(&file.path) {
            still_open.push(file);
            continue;
        }
        let Some((root, after_upload)) = folders.get(&file.folder) else { continue };
        // Checked when the file was found, and again now: a link may have been pointed
        // elsewhere meanwhile.
        if let Some(reason) = walk::link_out_of(root, &file.path) {
            tracing::warn!(folder = %root.display(), "skipped {reason}");
            continue;
        }
        let indexed = store.watch_index_get(&file.path).ok().flatten();
        match decide(&file.path, file.stat, indexed.as_ref(), store) {
            Decision::Unchanged => {}
            Decision::Settle { checksum, upload_id } => {
                settle.push((walk::SeenFile { path: file.path, stat: file.stat }, checksum, upload_id))
            }
            Decision::Upload => ready.push(ReadyFile {
                folder: file.folder,
                root: root.clone(),
                path: file.path,
                stat: file.stat,
                after_upload: after_upload.clone(),
            }),
        }
    }
    for (root, _) in folders.values() {
        let here: Vec<_> = settle.iter().filter(|(f, _, _)| f.path.starts_with(root)).cloned().collect();
        settle_versions(store, root, &here);
    }
    Work::Vetted(ready, still_open)
}

/// Moves or deletes uploaded files as their folder asks, but only a file that is still the
/// version that went up: one changed meanwhile stays, to be uploaded again.
pub(super) fn after_upload(files: &[ReadyFile], store: &Store) {
    let mut forget = Vec::new();
    for file in files {
        if walk::stat_file(&file.path) != Some(file.stat) {
            continue;
        }
        let result = match &file.after_upload {
            AfterUpload::Keep => continue,
            AfterUpload::Delete => std::fs::remove_file(&file.path),
            AfterUpload::MoveTo { subfolder } => {
                let relative = file.path.strip_prefix(&file.root).unwrap_or(&file.path);
                let target = free_name(&file.root.join(subfolder).join(relative));
                target
                    .parent()
                    .map(std::fs::create_dir_all)
                    .unwrap_or(Ok(()))
                    .and_then(|()| std::fs::rename(&file.path, &target))
            }
        };
        match result {
            Ok(()) => forget.push(file.path.as_path()),
            Err(e) => tracing::warn!(path = %file.path.display(), "uploaded, but could not tidy the file away: {e}"),
        }
    }
    if let Err(e) = store.watch_index_forget(&forget) {
        tracing::error!("could not update the watched-folder index: {e}");
    }
}

/// `path`, or `name (2).ext`, `name (3).ext`... when it is taken.
fn free_name(path: &Path) -> PathBuf {
    if !path.exists() {
        return path.to_owned();
    }
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    (2..).map(|n| path.with_file_name(format!("{stem} ({n}){ext}"))).find(|p| !p.exists()).expect("some name is free")
}
