//! The two connection tests of a bundle: does the signing backend answer and take the token,
//! and can this machine reach the host the files go to. Each ends in a result a person can read
//! without knowing HTTP.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::backend::redact_url;
use crate::Engine;

/// Long enough for a slow VPN, short enough that a person waits for the bundle.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// What was tried (`backend`, `upload host`).
    pub what: String,
    /// Where: the backend URL, or the host and port; never a query string.
    pub target: String,
    pub ok: bool,
    /// The error code when it failed (`unauthorized`, `backend_unreachable`...).
    pub code: Option<String>,
    pub result: String,
    pub elapsed_ms: u64,
}

/// Asks the backend to check the token (`ping` and the auth check the flavour has).
pub async fn backend(engine: &Engine) -> Probe {
    let target = engine
        .settings()
        .and_then(|s| url::Url::parse(s.backend_url.trim()).ok())
        .map(|u| redact_url(&u))
        .unwrap_or_else(|| "(no backend configured)".into());
    let started = Instant::now();
    let outcome = tokio::time::timeout(PROBE_TIMEOUT, engine.check_connection()).await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let (ok, code, result) = match outcome {
        Ok(Ok(())) => (true, None, "The backend answered and accepted the token.".to_owned()),
        Ok(Err(e)) => (false, Some(e.code().to_owned()), e.to_string()),
        Err(_) => {
            (false, Some("timeout".into()), format!("The backend did not answer within {} s.", PROBE_TIMEOUT.as_secs()))
        }
    };
    Probe { what: "backend".into(), target, ok, code, result, elapsed_ms }
}

/// A HEAD of the upload host's root: any HTTP answer (S3 says 403 or 400 to an unsigned
/// request) proves that DNS, the route, any proxy and TLS all work from here.
pub async fn upload_host(http: &reqwest::Client, origin: &url::Url) -> Probe {
    let target = origin.origin().ascii_serialization();
    let started = Instant::now();
    let outcome = http.head(origin.clone()).timeout(PROBE_TIMEOUT).send().await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let (ok, code, result) = match outcome {
        Ok(answer) => {
            (true, None, format!("Reachable: it answered HTTP {} to a HEAD request.", answer.status().as_u16()))
        }
        Err(e) if e.is_timeout() => (
            false,
            Some("timeout".into()),
            format!(
                "No answer within {} s: a firewall or proxy may be dropping the connection.",
                PROBE_TIMEOUT.as_secs()
            ),
        ),
        Err(e) if e.is_connect() => (
            false,
            Some("connect_failed".into()),
            format!("Could not connect ({}): check the network, DNS, proxy and firewall.", error_chain(&e)),
        ),
        Err(e) => (false, Some("request_failed".into()), format!("The request failed: {}", error_chain(&e))),
    };
    Probe { what: "upload host".into(), target, ok, code, result, elapsed_ms }
}

/// reqwest's own message is "error sending request"; the cause (refused, TLS, DNS) is below.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    parts.join(": ")
}
