//! `dropship diagnose`: writes the diagnostics bundle (see dropship_core::diagnose) and says
//! what the connection tests found.

use std::path::PathBuf;
use std::process::ExitCode;

use dropship_core::diagnose::{create_bundle, BundleOptions};

use crate::upload::resolve_settings;
use crate::{setup_error, BackendArgs};

#[derive(clap::Args)]
pub struct DiagnoseArgs {
    #[command(flatten)]
    pub(crate) backend: BackendArgs,
    /// Replace every file name and path in the bundle by a short stable hash.
    #[arg(long)]
    hash_names: bool,
    /// Where to write the zip.
    #[arg(long, short, value_name = "FILE.zip")]
    output: PathBuf,
}

pub async fn run(args: DiagnoseArgs) -> ExitCode {
    let engine = match dropship_core::Engine::open(&args.backend.data.dir(), tokio::runtime::Handle::current()) {
        Ok(engine) => engine,
        Err(e) => return setup_error(&e),
    };
    // Tested with the backend and token an upload would use; settings that do not validate
    // are left as saved, and the backend test says what is wrong.
    let _ = engine.apply_settings(resolve_settings(&engine, &args.backend));
    let options = BundleOptions {
        hash_names: args.hash_names,
        program: "cli".into(),
        watch_status: None,
        extra_secrets: args.backend.token.iter().cloned().collect(),
    };
    match create_bundle(&engine, &args.output, options).await {
        Ok(bundle) => {
            for probe in &bundle.probes {
                let verdict = if probe.ok { "ok" } else { "FAILED" };
                eprintln!("{} {verdict}: {} {}", probe.what, probe.target, probe.result);
            }
            println!("{}", bundle.path.display());
            ExitCode::SUCCESS
        }
        Err(e) => setup_error(&e),
    }
}
