//! `dropship history`: the local history, as a table or as JSON lines.

use std::io::Write;
use std::process::ExitCode;

use dropship_core::config::HISTORY_FILE;
use dropship_core::store::Store;
use dropship_core::{HistoryQuery, UploadStatus};

use crate::{setup_error, DataArgs};

#[derive(clap::Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub(crate) data: DataArgs,
    /// One JSON object per upload on stdout.
    #[arg(long)]
    json: bool,
    /// Only uploads whose file name, path or key contains TEXT.
    #[arg(long, value_name = "TEXT")]
    search: Option<String>,
    /// Only uploads in this state.
    #[arg(long, value_name = "queued|uploading|reporting|uploaded|failed", value_parser = parse_status)]
    status: Option<UploadStatus>,
    /// At most this many uploads, newest first.
    #[arg(long, default_value_t = 200)]
    limit: usize,
}

fn parse_status(s: &str) -> Result<UploadStatus, String> {
    UploadStatus::parse(s)
        .ok_or_else(|| format!("unknown status {s:?}; use queued, uploading, reporting, uploaded or failed"))
}

pub fn run(args: HistoryArgs) -> ExitCode {
    // Only reads: no engine, so looking at the history never starts deliveries or resumes.
    let entries = Store::open(&args.data.dir().join(HISTORY_FILE)).and_then(|store| {
        store.history(&HistoryQuery {
            search: args.search,
            status: args.status,
            limit: args.limit,
            ..Default::default()
        })
    });
    let entries = match entries {
        Ok(entries) => entries,
        Err(e) => return setup_error(&e.into()),
    };
    let mut out = std::io::stdout().lock();
    for entry in &entries {
        let line = if args.json {
            serde_json::to_string(entry).expect("history entries serialise")
        } else {
            let detail = entry.key.as_deref().or(entry.error.as_deref()).unwrap_or("");
            format!(
                "{}  {:<9}  {:>10}  {}  {}",
                &entry.created_at[..entry.created_at.len().min(19)],
                entry.status.as_str(),
                human_size(entry.size),
                entry.path,
                detail
            )
        };
        if writeln!(out, "{line}").is_err() {
            break; // stdout closed (e.g. piped into head): stop quietly
        }
    }
    ExitCode::SUCCESS
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
