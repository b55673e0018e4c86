//! Logs for the person who must find out, afterwards, why Dropship failed on one machine among
//! hundreds: one file per program per day in the data folder's `logs/` (owner-only), the last
//! [`KEEP_DAYS`] kept, each capped at [`MAX_BYTES_PER_DAY`]. Secrets never reach a log in the
//! first place (URLs go through `redact_url`, tokens have Debug impls that hide them), so the
//! file holds nothing that stderr would not.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// The folder inside the data folder.
pub const LOG_DIR: &str = "logs";
/// Days of logs kept per program: a week covers "it failed on Monday" reported on Friday.
pub const KEEP_DAYS: usize = 7;
/// Past this many bytes in one day's file, further lines of that day are dropped (after one line
/// saying so). Rotating on size would keep the *end* of a runaway day and lose its beginning,
/// where the first failure usually is; a loop that logs the same error thousands of times says
/// nothing more after the first megabytes. 7 × 32 MiB bounds the folder per program.
pub const MAX_BYTES_PER_DAY: u64 = 32 * 1024 * 1024;
/// The suffix of every log file (`dropship-cli.2026-12-05.log`).
pub const LOG_SUFFIX: &str = "log";

/// How much the log file keeps, as chosen in Settings; `RUST_LOG` (or `DROPSHIP_LOG`) wins when set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "lowercase")]
#[ts(export)]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn is_default(&self) -> bool {
        *self == LogLevel::Info
    }

    /// Dropship's own crates at this level; libraries (HTTP, TLS, SQLite) stay at `warn`
    /// unless everything is asked for, so a debug log is about Dropship's decisions.
    fn filter(self) -> String {
        let level = match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => return "trace".into(),
        };
        format!("warn,dropship_core={level},dropship={level},dropship_cli={level},dropship_desktop={level}")
    }
}

/// The log folder of a data folder.
pub fn log_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(LOG_DIR)
}

/// The level saved in `settings.json`, read without the keyring: logging starts before anything
/// else, and a damaged settings file must not stop it (the recovery screen reports that).
pub fn saved_level(data_dir: &Path) -> LogLevel {
    #[derive(Deserialize)]
    struct OnlyLevel {
        #[serde(default)]
        log_level: LogLevel,
    }
    std::fs::read(data_dir.join(crate::config::SETTINGS_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<OnlyLevel>(&bytes).ok())
        .map(|s| s.log_level)
        .unwrap_or_default()
}

/// The filter set in the environment, which wins over Settings: `RUST_LOG` as everywhere in
/// Rust, or `DROPSHIP_LOG`, the name Dropship has always read.
fn env_filter_text() -> Option<String> {
    ["RUST_LOG", "DROPSHIP_LOG"].iter().find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
}

/// Changes the file's level while running (after Settings are saved); does nothing when the
/// environment set the level or logging was not started.
static FILE_FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

pub fn apply_level(level: LogLevel) {
    if env_filter_text().is_some() {
        return;
    }
    if let Some(handle) = FILE_FILTER.get() {
        let _ = handle.reload(EnvFilter::new(level.filter()));
    }
}

/// Starts logging for one program (`desktop`, `cli`, `watch`): to its daily file in
/// `data_dir/logs`, and to stderr with `stderr_filter` (`None` for nothing on stderr). When the
/// file cannot be opened (a read-only data folder), logging goes on to stderr alone and the
/// reason is returned for the caller to show.
pub fn init(data_dir: &Path, program: &str, stderr_filter: Option<&str>) -> Result<(), String> {
    let env = env_filter_text();
    let stderr_filter = env.clone().or(stderr_filter.map(str::to_owned)).filter(|f| f.trim() != "off");
    let stderr = stderr_filter.map(|f| {
        // Colours for a person at a terminal; plain text for a pipe or a file a script reads.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr).with_filter(EnvFilter::new(f))
    });
    let (file, problem) = match DailyFile::open(&log_dir(data_dir), program) {
        Ok(daily) => {
            let filter = EnvFilter::new(env.unwrap_or_else(|| saved_level(data_dir).filter()));
            let (filter, handle) = reload::Layer::new(filter);
            let _ = FILE_FILTER.set(handle);
            (Some(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(daily).with_filter(filter)), None)
        }
        Err(e) => (None, Some(format!("no log file in {}: {e}", log_dir(data_dir).display()))),
    };
    // The file layer goes first: reload handles are typed over the bare registry.
    let _ = tracing_subscriber::registry().with(file).with(stderr).try_init();
    problem.map_or(Ok(()), Err)
}

/// A daily rolling file with a size cap. Writes are synchronous (no background thread): at the
/// levels used, lines are few, and a crash or `exit` right after a failure loses none of them.
pub struct DailyFile {
    appender: RollingFileAppender,
    dir: PathBuf,
    prefix: String,
    cap: u64,
    today: Mutex<Today>,
}

struct Today {
    date: Option<time::Date>,
    written: u64,
    capped: bool,
}

impl DailyFile {
    pub fn open(dir: &Path, program: &str) -> std::io::Result<DailyFile> {
        DailyFile::with_cap(dir, program, MAX_BYTES_PER_DAY)
    }

    pub fn with_cap(dir: &Path, program: &str, cap: u64) -> std::io::Result<DailyFile> {
        crate::config::create_private_dir(dir)?;
        let prefix = format!("dropship-{program}");
        // Created owner-only before the appender opens it (it would use the umask's mode).
        let first = DailyFile::path_for(dir, &prefix, today());
        create_private_log(&first)?;
        let appender = RollingFileAppender::builder()
            .rotation(Rotation::DAILY)
            .filename_prefix(&prefix)
            .filename_suffix(LOG_SUFFIX)
            .max_log_files(KEEP_DAYS)
            .build(dir)
            .map_err(std::io::Error::other)?;
        let today = Mutex::new(Today { date: None, written: 0, capped: false });
        Ok(DailyFile { appender, dir: dir.to_owned(), prefix, cap, today })
    }

    /// The name tracing-appender gives a day's file (dates in UTC, as it rolls).
    fn path_for(dir: &Path, prefix: &str, date: time::Date) -> PathBuf {
        let (year, month, day) = (date.year(), u8::from(date.month()), date.day());
        dir.join(format!("{prefix}.{year:04}-{month:02}-{day:02}.{LOG_SUFFIX}"))
    }

    fn write_line(&self, line: &[u8]) {
        let mut today = self.today.lock().unwrap_or_else(|p| p.into_inner());
        let date = self::today();
        if today.date != Some(date) {
            let path = DailyFile::path_for(&self.dir, &self.prefix, date);
            // Another process (the CLI beside the app) may have written today already.
            let _ = create_private_log(&path);
            let written = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            *today = Today { date: Some(date), written, capped: written >= self.cap };
        }
        let mut out = self.appender.make_writer();
        if today.written + line.len() as u64 > self.cap {
            if !today.capped {
                today.capped = true;
                let note = format!(
                    "-- today's log passed {} MiB: further lines are dropped until midnight UTC --\n",
                    self.cap / (1024 * 1024)
                );
                let _ = out.write_all(note.as_bytes());
            }
            return;
        }
        if out.write_all(line).is_ok() {
            today.written += line.len() as u64;
        }
    }
}

fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

fn create_private_log(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop)
}

/// One event's text, written whole when the formatter is done with it.
pub struct Line<'a> {
    file: &'a DailyFile,
    buffer: Vec<u8>,
}

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if !self.buffer.is_empty() {
            self.file.write_line(&self.buffer);
        }
    }
}

impl<'a> MakeWriter<'a> for DailyFile {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line { file: self, buffer: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect()
    }

    #[test]
    fn a_day_past_the_cap_keeps_its_beginning_and_says_once_that_lines_were_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let daily = DailyFile::with_cap(dir.path(), "cli", 100).unwrap();
        for i in 0..50 {
            let mut line = daily.make_writer();
            writeln!(line, "line {i:03} of a runaway loop").unwrap();
        }
        let [file] = files(dir.path()).try_into().unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("line 000"), "the beginning of the day is kept: {text}");
        assert!(!text.contains("line 049"), "lines past the cap are dropped: {text}");
        assert_eq!(text.matches("further lines are dropped").count(), 1, "said once: {text}");
        assert!(text.len() < 200, "the file stays near its cap: {} bytes", text.len());
    }

    #[test]
    fn a_new_process_counts_what_today_already_holds() {
        let dir = tempfile::tempdir().unwrap();
        let first = DailyFile::with_cap(dir.path(), "cli", 60).unwrap();
        writeln!(first.make_writer(), "{}", "x".repeat(50)).unwrap();
        let second = DailyFile::with_cap(dir.path(), "cli", 60).unwrap();
        writeln!(second.make_writer(), "{}", "y".repeat(50)).unwrap();
        let [file] = files(dir.path()).try_into().unwrap();
        assert!(!std::fs::read_to_string(file).unwrap().contains("yyyy"), "the cap is per day, not per process");
    }

    #[cfg(unix)]
    #[test]
    fn the_log_folder_is_owner_only_and_so_are_its_files() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("data/logs");
        let daily = DailyFile::open(&logs, "desktop").unwrap();
        writeln!(daily.make_writer(), "started").unwrap();
        assert_eq!(mode(&logs), 0o700, "the log folder is the owner's alone");
        for file in files(&logs) {
            assert_eq!(mode(&file), 0o600, "{} must be readable by its owner only", file.display());
        }
    }

    #[test]
    fn the_level_is_read_from_settings_json_without_the_keyring_and_defaults_to_info() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(saved_level(dir.path()), LogLevel::Info, "no settings yet");
        std::fs::write(dir.path().join("settings.json"), r#"{"backend_url":"http://x","log_level":"debug"}"#).unwrap();
        assert_eq!(saved_level(dir.path()), LogLevel::Debug);
        std::fs::write(dir.path().join("settings.json"), b"{damaged").unwrap();
        assert_eq!(saved_level(dir.path()), LogLevel::Info, "a damaged file does not stop logging");
    }
}
