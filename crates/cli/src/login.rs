//! `dropship login`, `logout` and `whoami`: sign in with the organisation's identity provider
//! (browser or device), sharing the session with the desktop app through the OS keyring.

use std::io::Write;
use std::process::ExitCode;

use dropship_core::{auth, Engine, Error, Settings};

use crate::{setup_error, DataArgs, NetworkArgs};

#[derive(clap::Args)]
pub struct LoginArgs {
    /// The signing backend's base URL [default: the saved one].
    #[arg(long = "backend", env = "DROPSHIP_BACKEND_URL", value_name = "URL")]
    backend_url: Option<String>,
    /// Do not open a browser: print the sign-in address (alone on a line, on stderr) and wait
    /// up to 5 minutes for the browser to come back to this machine.
    #[arg(long)]
    no_browser: bool,
    /// Sign in on another device (phone, laptop) with a short code, for machines without a
    /// browser.
    #[arg(long, conflicts_with = "no_browser")]
    device: bool,
    #[command(flatten)]
    network: NetworkArgs,
    #[command(flatten)]
    pub(crate) data: DataArgs,
}

#[derive(clap::Args)]
pub struct WhoamiArgs {
    /// The signing backend's base URL [default: the saved one].
    #[arg(long = "backend", env = "DROPSHIP_BACKEND_URL", value_name = "URL")]
    backend_url: Option<String>,
    /// The bearer token to ask about [default: the sign-in, or the saved token].
    #[arg(long, env = "DROPSHIP_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print `{"user", "groups", "admin"}` as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    network: NetworkArgs,
    #[command(flatten)]
    pub(crate) data: DataArgs,
}

pub async fn login(args: LoginArgs) -> ExitCode {
    let engine = match open_for(&args.data, args.backend_url.as_deref(), None, Some(&args.network)) {
        Ok(engine) => engine,
        Err(e) => return setup_error(&e),
    };
    let signed_in = if args.device { device(&engine).await } else { browser(&engine, args.no_browser).await };
    match signed_in {
        Ok(user) => {
            remember_backend(&engine, args.backend_url.is_some());
            println!("Signed in as {user}");
            ExitCode::SUCCESS
        }
        Err(e) => setup_error(&e),
    }
}

async fn browser(engine: &Engine, no_browser: bool) -> Result<String, Error> {
    let sign_in = engine.start_browser_sign_in().await?;
    let url = sign_in.authorization_url.clone();
    if no_browser {
        eprintln!("Open this address in a browser on this machine to sign in:");
        eprintln!("{url}");
    } else {
        eprintln!("Signing in in your browser… If it does not open, open this address:");
        eprintln!("{url}");
        if let Err(e) = auth::open_in_browser(&url) {
            eprintln!("dropship: {e}");
        }
    }
    let _ = std::io::stderr().flush();
    engine.finish_browser_sign_in(sign_in).await
}

async fn device(engine: &Engine) -> Result<String, Error> {
    let sign_in = engine.start_device_sign_in().await?;
    eprintln!("To sign in, open {} on any device and enter the code {}", sign_in.verification_uri, sign_in.user_code);
    if let Some(complete) = &sign_in.verification_uri_complete {
        eprintln!("(or open {complete})");
    }
    eprintln!("Waiting for you to approve…");
    engine.finish_device_sign_in(sign_in).await
}

/// A backend named on the command line becomes the saved one when none is saved yet, so
/// `dropship upload` after `dropship login --backend URL` needs no flags.
fn remember_backend(engine: &Engine, named: bool) {
    let saved = Settings::load(engine.data_dir()).ok().flatten();
    if !named || saved.is_some() {
        return;
    }
    let Some(settings) = engine.settings() else { return };
    if let Err(e) = settings.save(engine.data_dir()) {
        tracing::info!("the backend URL was not saved ({e}); the sign-in remembers it");
    }
}

pub async fn logout(args: DataArgs) -> ExitCode {
    let engine = match open_for(&args, None, None, None) {
        Ok(engine) => engine,
        Err(e) => return setup_error(&e),
    };
    match engine.sign_out().await {
        Ok(Some(user)) => {
            println!("Signed out {user}");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            println!("Not signed in.");
            ExitCode::SUCCESS
        }
        Err(e) => setup_error(&e),
    }
}

pub async fn whoami(args: WhoamiArgs) -> ExitCode {
    let not_signed_in = || {
        eprintln!("dropship: not signed in. Run `dropship login --backend URL`, or pass a token with --token.");
        ExitCode::from(crate::EXIT_SETUP)
    };
    let engine = match open_for(&args.data, args.backend_url.as_deref(), args.token.as_deref(), Some(&args.network)) {
        Ok(engine) => engine,
        Err(Error::NotConfigured) => return not_signed_in(),
        Err(e) => return setup_error(&e),
    };
    if engine.settings().is_some_and(|s| s.token.is_empty()) && engine.signed_in_user().is_none() {
        return not_signed_in();
    }
    match engine.whoami().await {
        Ok(me) if args.json => {
            println!("{}", serde_json::to_string(&me).expect("`me` serialises"));
            ExitCode::SUCCESS
        }
        Ok(me) => {
            let admin = if me.admin { " (admin)" } else { "" };
            let groups =
                if me.groups.is_empty() { String::new() } else { format!(", groups: {}", me.groups.join(", ")) };
            println!("{}{admin}{groups}", me.user);
            ExitCode::SUCCESS
        }
        Err(e) => setup_error(&e),
    }
}

/// The engine for the data folder, pointed at `backend` (else the saved backend, else the one
/// the sign-in was made for).
fn open_for(
    data: &DataArgs,
    backend: Option<&str>,
    token: Option<&str>,
    network: Option<&NetworkArgs>,
) -> Result<Engine, Error> {
    let engine = Engine::open(&data.dir(), tokio::runtime::Handle::current())?;
    let mut settings = engine.settings().unwrap_or_else(|| Settings {
        backend_url: String::new(),
        api: Default::default(),
        token: String::new(),
        transfer: Default::default(),
        upload_hosts: Vec::new(),
        log_level: Default::default(),
        network: Default::default(),
    });
    if let Some(backend) = backend {
        if settings.backend_url.trim_end_matches('/') != backend.trim_end_matches('/') {
            // Another backend: the saved token was for the old one.
            settings.token = String::new();
        }
        settings.backend_url = backend.to_owned();
    } else if settings.backend_url.is_empty() {
        if let Some(session) = engine.session() {
            settings.backend_url = session.backend_url().to_owned();
        }
    }
    if let Some(token) = token {
        settings.token = token.to_owned();
    }
    if let Some(network) = network {
        network.apply(&mut settings.network);
    }
    engine.apply_settings(settings)?;
    Ok(engine)
}
