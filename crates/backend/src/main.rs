//! dropship-backend: the reference signing backend. Hands out presigned S3 PUT URLs (native
//! batch API and the Rails guide's two routes) and records finished uploads after a HEAD,
//! each bound to the principal that asked for it, and announces them by webhook.
//! This file parses the configuration, opens the parts and serves until SIGTERM or Ctrl-C.

mod auth;
mod config;
mod error;
mod keys;
mod limits;
mod ops;
mod routes;
mod signer;
mod store;
mod updates;
mod validate;
mod webhook;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use crate::auth::Authenticator;
use crate::config::{Config, Flags};
use crate::keys::KeyScheme;
use crate::ops::guard::Guards;
use crate::routes::App;
use crate::signer::Signer;
use crate::store::{Db, StoreOptions};
use crate::updates::UpdateChannels;
use crate::webhook::{DeliveryPolicy, WebhookWorker};

#[tokio::main]
async fn main() -> ExitCode {
    let flags = Flags::parse();
    ops::logs::init(flags.log_format);
    match run(flags).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dropship-backend: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(flags: Flags) -> anyhow::Result<()> {
    let config: Config = flags.validate()?;
    let store_options = StoreOptions { webhooks: config.webhook.is_some() };
    let db = Db::open(&config.database, store_options)
        .await
        .with_context(|| format!("cannot open the records database {}", config.database.redacted()))?;
    let signer = Signer::new(&config.s3).await;
    // Presigning resolves the endpoint and the credentials: fail now, not on the first client.
    // (A GET's address, so the check is not counted as a URL handed out.)
    signer.object_url("dropship-backend-startup-check").await.context("the S3 settings cannot sign a URL")?;

    let auth = Authenticator::new(config.auth.clone());
    if let Some(oidc) = auth.oidc() {
        // Only a warning when the provider is down: it may come up later, tokens are checked lazily.
        oidc.warm_up().await;
    }
    let keys = KeyScheme::new(config.key_prefix.clone(), config.key_template.clone());
    let guards = Arc::new(Guards::new(&config.serve));
    let updates = config.updates.as_ref().map(|settings| {
        let channels = UpdateChannels::new(settings.dir.clone(), settings.public_key.clone());
        // Each broken channel gets a log line now, not only when the first app asks.
        let names = channels.report_at_start();
        tracing::info!(dir = %settings.dir.display(), channels = ?names, "serving updates");
        Arc::new(channels)
    });
    let app = Arc::new(App { signer, db: db.clone(), keys, auth, guards, updates });
    // Every instance delivers: rows are claimed in the database, so they share the outbox.
    let webhooks = match &config.webhook {
        Some(settings) => {
            // Left over from before a restart (or from instances that are gone): delivered first.
            let backlog = db.webhook_backlog().await.context("cannot read the webhook outbox")?;
            tracing::info!(backlog, url = %settings.url, "webhooks on");
            Some(
                WebhookWorker::start(db.clone(), settings.clone(), DeliveryPolicy::DEFAULT)
                    .context("cannot build the webhook client")?,
            )
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr().context("cannot read the bound address")?;
    tracing::info!(
        %address,
        bucket = %config.s3.bucket,
        endpoint = config.s3.endpoint.as_deref().unwrap_or("AWS"),
        prefix = %config.key_prefix,
        key_template = %config.key_template.source(),
        database = %config.database.redacted(),
        webhook = config.webhook.as_ref().map_or("none", |w| w.url.as_str()),
        static_tokens = config.auth.tokens.len(),
        oidc_issuer = config.auth.oidc.as_ref().map_or("none", |oidc| oidc.issuer.as_str()),
        header_read_timeout_secs = config.serve.header_read_timeout.as_secs(),
        request_timeout_secs = config.serve.request_timeout.as_secs(),
        max_concurrent_requests = config.serve.max_concurrent_requests,
        rate_limit = ?config.serve.rate_limit,
        "dropship-backend ready"
    );
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on http://{address}").context("cannot write to stdout")?;
    stdout.flush().context("cannot flush stdout")?;

    ops::serve::serve(
        listener,
        routes::router(app),
        config.serve.header_read_timeout,
        config.serve.drain_timeout,
        shutdown_signal(),
    )
    .await;
    // After the last request: a report answered during shutdown has its row in the outbox,
    // which this or another instance delivers later.
    if let Some(worker) = webhooks {
        worker.shut_down().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C; the server then drains in-flight requests before exiting.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
