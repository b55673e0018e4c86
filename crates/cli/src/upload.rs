//! `dropship upload`: one batch through the engine, reported as a progress bar on a terminal,
//! as plain lines otherwise, or as one JSON object per file with `--json`.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use dropship_core::{ApiFlavour, BatchSummary, Engine, Event, FileStatus, Settings, Source};
use indicatif::{ProgressBar, ProgressStyle};

use crate::{setup_error, BackendArgs};

#[derive(clap::Args)]
pub struct UploadArgs {
    #[command(flatten)]
    pub(crate) run: RunArgs,
    /// Put the keys in this folder under the backend's own prefix, e.g. `scans/2026` (native
    /// API only).
    #[arg(long, env = "DROPSHIP_KEY_PREFIX", value_name = "FOLDER")]
    key_prefix: Option<String>,
    /// Files and folders to upload.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

/// How a batch runs: the backend, the transfer settings and the output; shared by `upload`
/// and `resume`.
#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    backend: BackendArgs,
    /// One JSON object per file on stdout, instead of a progress bar.
    #[arg(long)]
    json: bool,
    /// Uploads in flight at once, across files and parts; files of 256 KiB or less count as
    /// a quarter each [default: 8, or the saved setting].
    #[arg(long, env = "DROPSHIP_CONCURRENCY", value_name = "N")]
    concurrency: Option<u32>,
    /// Files at least this many bytes go up in parts [default: 64 MiB].
    #[arg(long, env = "DROPSHIP_MULTIPART_THRESHOLD", value_name = "BYTES")]
    multipart_threshold: Option<u64>,
    /// Preferred part size in bytes, at least 5 MiB [default: 8 MiB].
    #[arg(long, env = "DROPSHIP_PART_SIZE", value_name = "BYTES")]
    part_size: Option<u64>,
    /// Upload at most this many bytes per second, all files together; 0 for no limit.
    #[arg(long, env = "DROPSHIP_BANDWIDTH_LIMIT", value_name = "BYTES_PER_SECOND")]
    bandwidth_limit: Option<u64>,
    /// How long to wait out a backend that is down or failing: files that still need a URL
    /// fail after it, and completion reports stay queued (sent on the next run, or by
    /// `dropship resume`).
    #[arg(long, env = "DROPSHIP_BACKEND_WAIT", value_name = "SECONDS", default_value_t = 600)]
    backend_wait: u64,
}

pub async fn run(args: UploadArgs) -> ExitCode {
    let engine = match open_engine(&args.run) {
        Ok(engine) => engine,
        Err(code) => return code,
    };
    let (paths, key_prefix) = (args.paths, args.key_prefix);
    drive(&engine, args.run.json, async { Ok(vec![engine.upload_into(paths, Source::Cli, key_prefix).await]) }).await
}

/// `dropship resume`: carries on with every upload an earlier run left unfinished (killed,
/// crashed, power lost), from the parts S3 already holds, and delivers queued reports.
pub async fn resume(args: RunArgs) -> ExitCode {
    let engine = match open_engine(&args) {
        Ok(engine) => engine,
        Err(code) => return code,
    };
    match engine.interrupted() {
        Ok(interrupted) if interrupted.is_empty() => {
            if !args.json {
                eprintln!("dropship: nothing to resume: every upload in the history finished.");
            }
            return ExitCode::SUCCESS;
        }
        Ok(_) => {}
        Err(e) => return setup_error(&e),
    }
    drive(&engine, args.json, engine.resume_interrupted()).await
}

impl RunArgs {
    pub fn backend_wait(&self) -> u64 {
        self.backend_wait
    }

    pub fn json(&self) -> bool {
        self.json
    }

    pub fn data_dir(&self) -> PathBuf {
        self.backend.data.dir()
    }
}

pub fn open_engine(args: &RunArgs) -> Result<Engine, ExitCode> {
    let engine =
        Engine::open(&args.backend.data.dir(), tokio::runtime::Handle::current()).map_err(|e| setup_error(&e))?;
    engine.apply_settings(resolve_run_settings(&engine, args)).map_err(|e| setup_error(&e))?;
    engine.set_backend_wait(std::time::Duration::from_secs(args.backend_wait));
    Ok(engine)
}

/// Runs the batches with a progress bar (or not), cancels them cleanly on Ctrl-C or SIGTERM,
/// prints what happened to each file and picks the exit status.
async fn drive(
    engine: &Engine,
    json: bool,
    batches: impl std::future::Future<Output = Result<Vec<BatchSummary>, dropship_core::Error>>,
) -> ExitCode {
    let progress = (!json && std::io::stderr().is_terminal()).then(|| show_progress(engine));
    let holds = tell_holds(engine);
    tokio::pin!(batches);
    let mut interrupted = false;
    let summaries = tokio::select! {
        summaries = &mut batches => summaries,
        _ = interrupted_or_terminated() => {
            // Let the engine abort what is in flight, so nothing is left half-done in the bucket.
            eprintln!("dropship: interrupted; cancelling the uploads in progress…");
            interrupted = true;
            engine.cancel_all();
            batches.await
        }
    };
    if let Some(progress) = progress {
        progress.abort();
        let _ = progress.await;
    }
    holds.abort();
    let summaries = match summaries {
        Ok(summaries) => summaries,
        Err(e) => return setup_error(&e),
    };
    for summary in &summaries {
        print_outcomes(summary, json);
    }
    if let Some(error) = summaries.iter().find_map(|s| s.error.as_ref()) {
        return setup_error(error);
    }
    if interrupted {
        return ExitCode::from(130);
    }
    // A skipped file (a link leading out of the folder) was left out on purpose, with a warning.
    if summaries.iter().all(|s| s.count(FileStatus::Uploaded) + s.count(FileStatus::Skipped) == s.files.len()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Ctrl-C, or SIGTERM from a service manager or `kill`.
pub(crate) async fn interrupted_or_terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Flags and environment win over the data directory's settings file, field by field.
fn resolve_run_settings(engine: &Engine, run: &RunArgs) -> Settings {
    let mut settings = resolve_settings(engine, &run.backend);
    let transfer = &mut settings.transfer;
    transfer.concurrency = run.concurrency.unwrap_or(transfer.concurrency);
    transfer.multipart_threshold = run.multipart_threshold.unwrap_or(transfer.multipart_threshold);
    transfer.part_size = run.part_size.unwrap_or(transfer.part_size);
    transfer.bandwidth_limit = run.bandwidth_limit.unwrap_or(transfer.bandwidth_limit);
    settings
}

/// Flags and environment win over the data directory's settings file, field by field.
pub fn resolve_settings(engine: &Engine, args: &BackendArgs) -> Settings {
    let saved = engine.settings();
    let mut network = saved.as_ref().map(|s| s.network.clone()).unwrap_or_default();
    args.network.apply(&mut network);
    args.sending.apply(&mut network);
    Settings {
        transfer: saved.as_ref().map(|s| s.transfer).unwrap_or_default(),
        backend_url: args
            .backend_url
            .clone()
            .or_else(|| saved.as_ref().map(|s| s.backend_url.clone()))
            // After `dropship login --backend URL` on a machine with no keyring for settings.
            .or_else(|| engine.session().map(|s| s.backend_url().to_owned()))
            .unwrap_or_default(),
        api: args.api.or_else(|| saved.as_ref().map(|s| s.api)).unwrap_or(ApiFlavour::Native),
        token: args.token.clone().or_else(|| saved.as_ref().map(|s| s.token.clone())).unwrap_or_default(),
        upload_hosts: saved.as_ref().map(|s| s.upload_hosts.clone()).unwrap_or_default(),
        log_level: saved.as_ref().map(|s| s.log_level).unwrap_or_default(),
        network,
    }
}

fn print_outcomes(summary: &BatchSummary, json: bool) {
    let mut out = std::io::stdout().lock();
    for file in &summary.files {
        if json {
            let line = serde_json::to_string(file).expect("outcomes serialise");
            let _ = writeln!(out, "{line}");
            continue;
        }
        // The batch error is printed once on its own; don't repeat it for every file.
        let same_as_batch = summary.error.as_ref().zip(file.error.as_ref()).is_some_and(|(b, f)| b.code() == f.code);
        match (&file.status, &file.error) {
            (FileStatus::Uploaded, _) => {
                let _ = writeln!(out, "uploaded  {}  →  {}", file.path.display(), file.key.as_deref().unwrap_or("?"));
            }
            (FileStatus::Skipped, Some(why)) => eprintln!("dropship: warning: skipped {}", why.message),
            (_, Some(error)) if !same_as_batch => {
                let _ = writeln!(out, "failed    {}: {}", file.path.display(), error.message);
            }
            _ => {}
        }
    }
}

/// Says on stderr when the machine's conditions hold the uploads, and when they go on: a
/// script's log then explains a long wait.
pub fn tell_holds(engine: &Engine) -> tokio::task::JoinHandle<()> {
    let mut events = engine.subscribe();
    let held_at_start = engine.holds();
    tokio::spawn(async move {
        let tell = |holds: &dropship_core::holds::Holds| {
            match &holds.message {
            Some(message) => eprintln!(
                "dropship: {message}; uploads go on when it ends (or run with --pause-on-metered no / --pause-on-battery no)"
            ),
            None => eprintln!("dropship: uploads go on"),
        }
        };
        if held_at_start.holds_anything() {
            tell(&held_at_start);
        }
        loop {
            match events.recv().await {
                Ok(Event::HoldsChanged { holds }) => tell(&holds),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
    })
}

/// A byte-level bar over the whole batch on stderr, fed by the engine's events.
fn show_progress(engine: &Engine) -> tokio::task::JoinHandle<()> {
    let mut events = engine.subscribe();
    tokio::spawn(async move {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        let mut done_per_file: HashMap<String, u64> = HashMap::new();
        let (mut files, mut finished) = (0usize, 0usize);
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => break,
            };
            match event {
                Event::FilesQueued { files: queued, .. } => {
                    for file in queued {
                        files += 1;
                        bar.inc_length(file.size);
                        done_per_file.insert(file.upload_id, 0);
                    }
                }
                Event::FileProgress { upload_id, bytes_done, .. } => {
                    let before = done_per_file.insert(upload_id, bytes_done).unwrap_or(0);
                    bar.inc(bytes_done.saturating_sub(before));
                }
                Event::FileUploaded { .. } | Event::FileFailed { .. } => finished += 1,
                Event::BatchFinished { .. } | Event::BatchFailed { .. } => break,
                Event::BackendRetrying { retry_in_ms, .. } => {
                    let wait = retry_in_ms.div_ceil(1000);
                    bar.set_message(format!(
                        "{finished}/{files} files — backend unavailable; asking again in {wait} s"
                    ));
                    continue;
                }
                Event::ReportsQueued { count, retry_in_ms, .. } => {
                    let wait = retry_in_ms.div_ceil(1000);
                    bar.set_message(format!("{finished}/{files} files — {count} reports queued; retrying in {wait} s"));
                    continue;
                }
                Event::FileRetrying { offline, retry_in_ms, reason, .. } => {
                    let wait = retry_in_ms.div_ceil(1000);
                    let what = if offline { "offline".to_owned() } else { reason.message };
                    bar.set_message(format!("{finished}/{files} files — {what}; retrying in {wait} s"));
                    continue;
                }
                _ => {}
            }
            bar.set_message(format!("{finished}/{files} files"));
        }
        bar.finish_and_clear();
    })
}
