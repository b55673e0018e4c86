//! Signing in with the organisation's identity provider (OpenID Connect), as RFC 8252 asks of
//! native apps: the backend URL alone says which provider to use (`GET /api/v1/auth`), the
//! person signs in in the system browser (authorisation code + PKCE, loopback redirect) or on
//! another device (RFC 8628), and the refresh token is kept in the OS keyring.
//!
//! The shells hold a [`LiveSession`]: it hands out an access token that is fresh enough for the
//! next request, refreshing it before it expires and once more after the backend answers 401.

mod browser;
mod device;
mod id_token;
mod provider;
mod session;

use std::time::Duration;

pub use browser::BrowserSignIn;
pub use device::DeviceSignIn;
pub use provider::{sign_in_info, IdentityProvider, SignInInfo};
pub use session::{forget_session, load_session, LiveSession, Session, SESSION_FILE};

/// How long the CLI and the window wait for the person to finish in the browser.
pub const BROWSER_SIGN_IN_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Answers from an identity provider larger than this are not what we asked for.
const MAX_IDP_RESPONSE_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error(
        "The backend at {backend} does not offer signing in with an identity provider. Use an access token \
         instead (Settings, or --token / DROPSHIP_TOKEN)."
    )]
    NoIdentityProvider { backend: String },
    #[error("Could not reach {what} at {url} ({detail}). Check the network and try again.")]
    Unreachable { what: &'static str, url: String, detail: String },
    #[error("{what} at {url} answered with something unexpected ({detail}). Tell whoever runs the backend.")]
    BadAnswer { what: &'static str, url: String, detail: String },
    #[error("The identity provider refused the sign-in: {0}")]
    Refused(String),
    #[error("The sign-in was not finished within {} minutes. Start it again.", .0.as_secs() / 60)]
    TimedOut(Duration),
    #[error("The sign-in answer did not belong to this sign-in ({0}). Start it again from Dropship.")]
    Mismatch(String),
    #[error("Signed in with the identity provider, but the backend refused the token: {0}")]
    BackendRefused(String),
    #[error("Could not open the browser ({0}). Open the sign-in address shown by hand.")]
    Browser(String),
    #[error("Your sign-in has expired or was revoked ({0}). Sign in again: Settings → Sign in, or `dropship login`.")]
    Expired(String),
    #[error("The sign-in could not be kept: {0}")]
    Storage(String),
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::NoIdentityProvider { .. } => "no_identity_provider",
            AuthError::Unreachable { .. } => "identity_provider_unreachable",
            AuthError::BadAnswer { .. } => "identity_provider_bad_response",
            AuthError::Refused(_) => "sign_in_refused",
            AuthError::TimedOut(_) => "sign_in_timed_out",
            AuthError::Mismatch(_) => "sign_in_mismatch",
            AuthError::BackendRefused(_) => "sign_in_backend_refused",
            AuthError::Browser(_) => "browser_unavailable",
            AuthError::Expired(_) => "sign_in_expired",
            AuthError::Storage(_) => "sign_in_storage",
        }
    }
}

/// The standard OAuth error body (`{"error", "error_description"}`), as a sentence.
fn oauth_error_text(body: &[u8]) -> Option<(String, String)> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = value.get("error")?.as_str()?.to_owned();
    let description = value.get("error_description").and_then(|d| d.as_str()).unwrap_or_default().to_owned();
    Some((code, description))
}

/// Reads a JSON answer from the identity provider or the backend, with a size cap, mapping
/// every failure to an [`AuthError`] that names what was being asked.
async fn read_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    response: reqwest::Response,
) -> Result<T, AuthError> {
    let url = crate::backend::redact_url(response.url());
    let status = response.status();
    let body = read_capped(what, response).await?;
    if !status.is_success() {
        let detail = match oauth_error_text(&body) {
            Some((code, description)) if description.is_empty() => code,
            Some((code, description)) => format!("{code}: {description}"),
            None => format!("HTTP {}", status.as_u16()),
        };
        return Err(AuthError::BadAnswer { what, url, detail });
    }
    serde_json::from_slice(&body).map_err(|e| AuthError::BadAnswer { what, url, detail: e.to_string() })
}

async fn read_capped(what: &'static str, mut response: reqwest::Response) -> Result<Vec<u8>, AuthError> {
    let url = crate::backend::redact_url(response.url());
    let mut body = Vec::new();
    while let Some(chunk) =
        response.chunk().await.map_err(|e| AuthError::Unreachable { what, url: url.clone(), detail: e.to_string() })?
    {
        if body.len() + chunk.len() > MAX_IDP_RESPONSE_BYTES {
            return Err(AuthError::BadAnswer { what, url, detail: "the answer is too large".into() });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn unreachable(what: &'static str, url: &url::Url, e: &reqwest::Error) -> AuthError {
    AuthError::Unreachable { what, url: crate::backend::redact_url(url), detail: crate::backend::http_error_detail(e) }
}

/// Random URL-safe text for PKCE verifiers, `state` and `nonce` (32 bytes of entropy).
fn random_token() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    // Same source the OS gives TLS; failing here means the OS has no entropy source at all.
    getrandom::fill(&mut bytes).expect("the OS random number generator works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Opens `url` in the person's browser. `DROPSHIP_BROWSER`, when set, names the program to run
/// instead (with the address as its one argument): for kiosks, and for tests that play the
/// browser.
pub fn open_in_browser(url: &url::Url) -> Result<(), AuthError> {
    if let Some(program) = std::env::var_os("DROPSHIP_BROWSER").filter(|p| !p.is_empty()) {
        return std::process::Command::new(&program)
            .arg(url.as_str())
            .stdin(std::process::Stdio::null())
            .spawn()
            .map(drop)
            .map_err(|e| AuthError::Browser(format!("{}: {e}", program.to_string_lossy())));
    }
    // `open` picks the platform's way: xdg-open and friends on Linux, `open` on macOS,
    // ShellExecute on Windows.
    open::that_detached(url.as_str()).map_err(|e| AuthError::Browser(e.to_string()))
}
