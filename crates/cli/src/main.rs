//! `dropship`: the headless uploader over dropship-core, for servers, scripts and tests.

mod diagnose;
mod history;
mod login;
mod reports;
mod upload;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dropship_core::ApiFlavour;

#[derive(Parser)]
#[command(
    name = "dropship",
    version,
    about = "Upload files straight to S3 through your organisation's signing backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log what happens to stderr too (RUST_LOG or DROPSHIP_LOG=info|debug set the level of
    /// both; the log file in the data folder's `logs/` is always written).
    #[arg(long, short, global = true)]
    verbose: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Upload files and folders (folders recursively).
    Upload(upload::UploadArgs),
    /// Carry on with uploads an earlier run left unfinished (killed, crashed, power lost),
    /// sending only the parts S3 does not hold yet.
    Resume(upload::RunArgs),
    /// Watch folders and upload every complete file that lands in them, until stopped.
    Watch(watch::WatchArgs),
    /// Show the local upload history, newest first.
    History(history::HistoryArgs),
    /// Show completion reports the backend has not acknowledged; retry rejected ones.
    Reports(reports::ReportsArgs),
    /// Sign in with your organisation's identity provider (in the browser, or with --device on
    /// another device); the desktop app shares the sign-in.
    Login(login::LoginArgs),
    /// Sign out: revoke the sign-in where the provider allows it and forget it on this machine.
    Logout(DataArgs),
    /// Show who the backend takes you for.
    Whoami(login::WhoamiArgs),
    /// Write a diagnostics bundle (a zip for your support: version, settings without the
    /// token, logs, recent failures, queued reports, connection tests); no secret ever goes in.
    Diagnose(diagnose::DiagnoseArgs),
}

impl Command {
    /// The data folder the command works in, where its log goes too.
    fn data_dir(&self) -> PathBuf {
        match self {
            Command::Upload(args) => args.run.data_dir(),
            Command::Resume(args) => args.data_dir(),
            Command::Watch(args) => args.backend.data.dir(),
            Command::History(args) => args.data.dir(),
            Command::Reports(args) => args.run.data_dir(),
            Command::Login(args) => args.data.dir(),
            Command::Logout(args) => args.dir(),
            Command::Whoami(args) => args.data.dir(),
            Command::Diagnose(args) => args.backend.data.dir(),
        }
    }
}

/// Options shared by the commands that talk to a backend.
#[derive(clap::Args)]
pub struct BackendArgs {
    /// The signing backend's base URL, e.g. https://uploads.example.com.
    #[arg(long = "backend", env = "DROPSHIP_BACKEND_URL", value_name = "URL")]
    pub backend_url: Option<String>,
    /// The bearer token the backend expects.
    #[arg(long, env = "DROPSHIP_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The API the backend speaks.
    #[arg(long, env = "DROPSHIP_API", value_name = "native|rails|companion")]
    pub api: Option<ApiFlavour>,
    #[command(flatten)]
    pub network: NetworkArgs,
    #[command(flatten)]
    pub sending: SendingArgs,
    #[command(flatten)]
    pub data: DataArgs,
}

/// When uploads go and how fast; each wins over the saved settings.
#[derive(clap::Args)]
pub struct SendingArgs {
    /// Bandwidth limits by day and local time, rules separated by `;`, e.g.
    /// "Mon-Fri 08:00-18:00 2MB/s; Sat,Sun 10:00-12:00 500KB/s". Outside the rules
    /// --bandwidth-limit (or the saved limit) applies; "" for no schedule.
    #[arg(long, env = "DROPSHIP_BANDWIDTH_SCHEDULE", value_name = "RULES")]
    pub bandwidth_schedule: Option<dropship_core::schedule::BandwidthSchedule>,
    /// Hold this run's uploads while the network is metered (a phone's hotspot) [default: the
    /// saved setting: yes for watched folders, no for uploads started by hand].
    #[arg(long, env = "DROPSHIP_PAUSE_ON_METERED", value_name = "yes|no",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub pause_on_metered: Option<bool>,
    /// Hold this run's uploads while the machine runs on battery [default: the saved setting, no].
    #[arg(long, env = "DROPSHIP_PAUSE_ON_BATTERY", value_name = "yes|no",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub pause_on_battery: Option<bool>,
}

impl SendingArgs {
    pub fn apply(&self, network: &mut dropship_core::network::NetworkSettings) {
        if let Some(schedule) = &self.bandwidth_schedule {
            network.bandwidth_schedule = schedule.clone();
        }
        if let Some(pause) = self.pause_on_metered {
            network.pause_on_metered_watched = pause;
            network.pause_on_metered_manual = pause;
        }
        if let Some(pause) = self.pause_on_battery {
            network.pause_on_battery = pause;
        }
    }
}

/// How requests reach the network; both win over the saved settings.
#[derive(clap::Args)]
pub struct NetworkArgs {
    /// `system` (the desktop's proxy settings, then HTTPS_PROXY and the like), `none`, or a
    /// proxy URL such as http://user:password@proxy.example.com:3128 [default: the saved
    /// setting, else system].
    #[arg(long, env = "DROPSHIP_PROXY", value_name = "URL|system|none", hide_env_values = true)]
    pub proxy: Option<dropship_core::network::ProxySetting>,
    /// A PEM file of certificate authorities to trust besides the system's (an organisation's
    /// own CA, a TLS-inspecting proxy's).
    #[arg(long, env = "DROPSHIP_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

impl NetworkArgs {
    /// The saved network settings with these flags on top.
    pub fn apply(&self, network: &mut dropship_core::network::NetworkSettings) {
        if let Some(proxy) = &self.proxy {
            network.proxy = proxy.clone();
        }
        if let Some(ca_file) = &self.ca_file {
            network.ca_file = Some(ca_file.display().to_string());
        }
    }
}

#[derive(clap::Args)]
pub struct DataArgs {
    /// Where settings and history live (shared with the desktop app).
    #[arg(long, env = "DROPSHIP_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataArgs {
    pub fn dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(dropship_core::default_data_dir)
    }
}

/// Exit status when something about the setup (settings, backend, token, history) must be fixed
/// before any file can go; 1 means some files failed.
pub const EXIT_SETUP: u8 = 2;

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    let program = if matches!(cli.command, Command::Watch(_)) { "watch" } else { "cli" };
    let stderr = cli.verbose.then_some("info");
    if let Err(problem) = dropship_core::logging::init(&cli.command.data_dir(), program, stderr) {
        eprintln!("dropship: {problem}");
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("dropship: could not start: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    match cli.command {
        Command::Upload(args) => runtime.block_on(upload::run(args)),
        Command::Resume(args) => runtime.block_on(upload::resume(args)),
        Command::History(args) => history::run(args),
        Command::Reports(args) => runtime.block_on(reports::run(args)),
        Command::Watch(args) => runtime.block_on(watch::run(args)),
        Command::Login(args) => runtime.block_on(login::login(args)),
        Command::Logout(args) => runtime.block_on(login::logout(args)),
        Command::Whoami(args) => runtime.block_on(login::whoami(args)),
        Command::Diagnose(args) => runtime.block_on(diagnose::run(args)),
    }
}

/// glibc gives each thread that allocates its own arena; with a multi-threaded runtime moving
/// many small allocations between threads, that fragmentation alone nearly doubled the peak
/// memory of a 20,000-file upload (81 MiB against 45 MiB with two arenas).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Prints a setup error as the one line a person needs, and gives the setup exit status.
pub fn setup_error(error: &dropship_core::Error) -> ExitCode {
    eprintln!("dropship: {error}");
    ExitCode::from(EXIT_SETUP)
}
