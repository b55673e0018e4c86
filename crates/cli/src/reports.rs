//! `dropship reports`: the completion reports the backend has not acknowledged yet — waiting
//! for a backend that was away, or rejected by it — and `--retry` to send rejected ones again.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use dropship_core::config::HISTORY_FILE;
use dropship_core::store::Store;
use dropship_core::{HistoryEntry, QueuedReport};
use serde::Serialize;

use crate::setup_error;
use crate::upload::{open_engine, RunArgs};

#[derive(clap::Args)]
pub struct ReportsArgs {
    #[command(flatten)]
    pub(crate) run: RunArgs,
    /// Send every rejected report again (after fixing what the backend objected to), and
    /// wait for the backend's answers.
    #[arg(long)]
    retry: bool,
}

#[derive(Serialize)]
struct ReportLine<'a> {
    upload_id: &'a str,
    path: Option<&'a str>,
    key: Option<&'a str>,
    /// `waiting` (the backend has not answered yet) or `rejected` (it refused; retry by hand).
    state: &'static str,
    attempts: u32,
    error: Option<&'a str>,
}

pub async fn run(args: ReportsArgs) -> ExitCode {
    if !args.retry {
        // Only reads: no engine, so listing never delivers (or races a delivery).
        return match Store::open(&args.run.data_dir().join(HISTORY_FILE)) {
            Ok(store) => list(&args, store.queued_reports(), |id| store.get(id).ok().flatten()),
            Err(e) => setup_error(&e.into()),
        };
    }
    let engine = match open_engine(&args.run) {
        Ok(engine) => engine,
        Err(code) => return code,
    };
    {
        match engine.retry_reports(&[]) {
            Ok(count) if !args.run.json() => eprintln!("dropship: sending {count} rejected report(s) again…"),
            Ok(_) => {}
            Err(e) => return setup_error(&e),
        }
        if let Err(e) = engine.flush_reports(Duration::from_secs(args.run.backend_wait())).await {
            return setup_error(&e);
        }
    }
    list(&args, engine.queued_reports(), |id| engine.history_entry(id).ok().flatten())
}

fn list<E: Into<dropship_core::Error>>(
    args: &ReportsArgs,
    queued: Result<Vec<QueuedReport>, E>,
    history_entry: impl Fn(&str) -> Option<HistoryEntry>,
) -> ExitCode {
    let queued = match queued {
        Ok(queued) => queued,
        Err(e) => return setup_error(&e.into()),
    };
    let mut out = std::io::stdout().lock();
    for report in &queued {
        let entry = history_entry(&report.upload_id);
        let line = ReportLine {
            upload_id: &report.upload_id,
            path: entry.as_ref().map(|e| e.path.as_str()),
            key: entry.as_ref().and_then(|e| e.key.as_deref()),
            state: if report.rejected { "rejected" } else { "waiting" },
            attempts: report.attempts,
            error: report.last_error.as_deref(),
        };
        let text = if args.run.json() {
            serde_json::to_string(&line).expect("report lines serialise")
        } else {
            format!(
                "{:<8}  {}  {}  {}",
                line.state,
                line.path.unwrap_or(&report.upload_id),
                line.key.unwrap_or(""),
                line.error.unwrap_or("")
            )
        };
        if writeln!(out, "{text}").is_err() {
            break;
        }
    }
    if queued.is_empty() && !args.run.json() {
        eprintln!("dropship: every completion report has been recorded by the backend.");
    }
    if queued.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
