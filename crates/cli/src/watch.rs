//! `dropship watch DIR...`: the desktop app's watched-folder sync, headless. Runs until SIGINT
//! or SIGTERM, then lets uploads in flight finish (or cancels them after a grace period; the
//! index sends those again at the next start) and exits 0.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use dropship_core::watch::{AfterUpload, FolderState, WatchEvent};
use dropship_core::{Engine, Error, FileStatus, WatchSettings, WatchedFolder, Watcher};
use tokio::sync::broadcast::error::RecvError;

use crate::upload::{interrupted_or_terminated, resolve_settings, tell_holds};
use crate::{setup_error, BackendArgs};

/// How long uploads in flight may take to finish after SIGINT/SIGTERM: well inside the 90 s a
/// service manager waits before it kills.
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub(crate) backend: BackendArgs,
    /// One JSON object per file on stdout, as `dropship upload --json` prints them.
    #[arg(long)]
    json: bool,
    /// Also skip names matching this gitignore-style pattern (repeatable); the defaults
    /// (.DS_Store, Thumbs.db, *.tmp, *.part, *.crdownload, ~$*, ...) always apply.
    #[arg(long = "ignore", value_name = "PATTERN")]
    ignore: Vec<String>,
    /// Put the keys of these folders' files in this folder under the backend's own prefix,
    /// e.g. `scans/2026` (native API only).
    #[arg(long, value_name = "FOLDER")]
    key_prefix: Option<String>,
    /// Upload names starting with a dot too.
    #[arg(long)]
    include_hidden: bool,
    /// Walk the folders every few seconds instead of asking the OS (for network shares).
    #[arg(long)]
    poll: bool,
    /// How long a file must stay unchanged before it counts as complete [default: 1000].
    #[arg(long, env = "DROPSHIP_STABLE_MS", value_name = "MS")]
    stable_ms: Option<u64>,
    /// After a verified upload, move the file into this sub-folder of its watched folder.
    #[arg(long, value_name = "SUBFOLDER", conflicts_with = "delete_after_upload")]
    move_uploaded_to: Option<String>,
    /// After a verified upload, delete the local file (never anything in S3).
    #[arg(long)]
    delete_after_upload: bool,
    /// Folders to watch, recursively.
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
}

pub async fn run(args: WatchArgs) -> ExitCode {
    let engine = match Engine::open(&args.backend.data.dir(), tokio::runtime::Handle::current()) {
        Ok(engine) => engine,
        Err(e) => return setup_error(&e),
    };
    if let Err(e) = engine.apply_settings(resolve_settings(&engine, &args.backend)) {
        return setup_error(&e);
    }
    let settings = match watch_settings(&args) {
        Ok(settings) => settings,
        Err(e) => return setup_error(&e),
    };
    let watcher = match Watcher::start(engine.clone(), settings, &tokio::runtime::Handle::current()) {
        Ok(watcher) => watcher,
        Err(e) => return setup_error(&e),
    };
    let mut events = watcher.subscribe();
    eprintln!("dropship: watching {} folder(s); press Ctrl-C to stop", args.dirs.len());
    let holds = tell_holds(&engine);

    let stop = interrupted_or_terminated();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            event = events.recv() => match event {
                Ok(event) => print_event(&event, args.json),
                Err(RecvError::Lagged(missed)) => eprintln!("dropship: {missed} messages were dropped; see `dropship history`"),
                Err(RecvError::Closed) => break,
            },
        }
    }
    eprintln!("dropship: stopping; letting uploads in progress finish (up to {} s)…", STOP_GRACE.as_secs());
    watcher.stop(STOP_GRACE).await;
    while let Ok(event) = events.try_recv() {
        print_event(&event, args.json);
    }
    holds.abort();
    engine.shutdown().await;
    ExitCode::SUCCESS
}

fn watch_settings(args: &WatchArgs) -> Result<WatchSettings, Error> {
    let mut folders = Vec::with_capacity(args.dirs.len());
    for dir in &args.dirs {
        let path = std::fs::canonicalize(dir)
            .ok()
            .filter(|p| p.is_dir())
            .ok_or_else(|| Error::NotFound { path: dir.display().to_string() })?;
        let mut folder = WatchedFolder::new(path);
        folder.options.ignore.extend(args.ignore.iter().cloned());
        folder.options.include_hidden = args.include_hidden;
        folder.options.key_prefix = args.key_prefix.clone().unwrap_or_default();
        folder.options.polling = args.poll;
        folder.options.after_upload = match (&args.move_uploaded_to, args.delete_after_upload) {
            (Some(subfolder), _) => AfterUpload::MoveTo { subfolder: subfolder.clone() },
            (None, true) => AfterUpload::Delete,
            (None, false) => AfterUpload::Keep,
        };
        folders.push(folder);
    }
    let mut settings = WatchSettings { folders, ..Default::default() };
    if let Some(ms) = args.stable_ms {
        settings.stable_for_ms = ms;
    }
    settings.validate()?;
    Ok(settings)
}

fn print_event(event: &WatchEvent, json: bool) {
    match event {
        WatchEvent::File(file) => {
            let mut out = std::io::stdout().lock();
            if json {
                let _ = writeln!(out, "{}", serde_json::to_string(file).expect("outcomes serialise"));
            } else if file.status == FileStatus::Uploaded {
                let _ = writeln!(out, "uploaded  {}  →  {}", file.path.display(), file.key.as_deref().unwrap_or("?"));
            } else if let Some(error) = &file.error {
                let _ = writeln!(out, "failed    {}: {}", file.path.display(), error.message);
            }
            let _ = out.flush();
        }
        WatchEvent::Folder(folder) => {
            let what = match folder.state {
                FolderState::Starting => return,
                FolderState::Watching => "watching",
                FolderState::Polling => "polling",
                FolderState::Paused => "paused",
                FolderState::Missing => "missing",
                FolderState::Error => "error",
            };
            match &folder.detail {
                Some(detail) => eprintln!("dropship: {what} {}: {detail}", folder.path.display()),
                None => eprintln!("dropship: {what} {}", folder.path.display()),
            }
        }
        WatchEvent::Warning(warning) => eprintln!("dropship: warning: {warning}"),
    }
}
