//! A signed-in session: the tokens, where they came from, and who they belong to. Kept in the
//! OS keyring next to the access token's entry (a 0600 file where there is no keyring), read by
//! the window and the CLI alike, so one sign-in serves both.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::provider::{route, IdentityProvider};
use super::{now_unix, oauth_error_text, read_capped, read_json, unreachable, AuthError};
use crate::secrets::{self, SecretsError};

/// Where the session is kept when the machine has no keyring, readable by its owner only.
pub const SESSION_FILE: &str = "session.json";
/// The keyring slot, beside the access token's.
const KEYRING_SLOT: &str = "session";
/// A token is refreshed when less than this share of its lifetime is left (and at most a
/// minute before it expires), so a request never leaves with a token that dies on the way.
const REFRESH_WHEN_LEFT: f64 = 0.25;
const REFRESH_AT_MOST_EARLY_SECS: u64 = 60;

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The backend the tokens are for: never sent anywhere else.
    pub backend_url: String,
    /// The person, as the backend named them (`GET /api/v1/me`).
    pub user: String,
    pub provider: IdentityProvider,
    access_token: String,
    /// Unix seconds.
    expires_at: u64,
    lifetime_secs: u64,
    refresh_token: Option<String>,
}

// Tokens are secrets: keep them out of debug output and therefore out of logs.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("backend_url", &self.backend_url)
            .field("user", &self.user)
            .field("issuer", &self.provider.issuer)
            .field("expires_at", &self.expires_at)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A token endpoint's answer.
#[derive(Deserialize)]
pub(super) struct TokenAnswer {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
}

#[derive(Deserialize)]
struct Me {
    user: String,
}

impl Session {
    /// The tokens it holds, for a diagnostics bundle to make sure none of them gets in.
    pub(crate) fn secrets(&self) -> Vec<String> {
        std::iter::once(self.access_token.clone()).chain(self.refresh_token.clone()).collect()
    }

    /// Builds the session from a token answer once the backend has accepted the access token
    /// and said whose it is.
    pub(super) async fn establish(
        http: &reqwest::Client,
        backend_url: &url::Url,
        provider: IdentityProvider,
        answer: TokenAnswer,
    ) -> Result<Session, AuthError> {
        let user = whoami(http, backend_url, &answer.access_token).await?;
        let lifetime_secs = answer.expires_in.unwrap_or(300).max(1);
        Ok(Session {
            backend_url: backend_url.as_str().trim_end_matches('/').to_owned(),
            user,
            provider,
            access_token: answer.access_token,
            expires_at: now_unix() + lifetime_secs,
            lifetime_secs,
            refresh_token: answer.refresh_token,
        })
    }

    /// Whether these tokens are for `backend_url` (they go nowhere else).
    pub fn is_for(&self, backend_url: &str) -> bool {
        self.backend_url == backend_url.trim().trim_end_matches('/')
    }

    fn needs_refresh(&self, now: u64) -> bool {
        let early = ((self.lifetime_secs as f64 * REFRESH_WHEN_LEFT) as u64).min(REFRESH_AT_MOST_EARLY_SECS);
        now + early >= self.expires_at
    }

    /// Keeps the session for `data_dir`: in the keyring, or in a 0600 file where there is none.
    /// Returns where it went.
    pub fn save(&self, data_dir: &Path) -> Result<SessionStorage, AuthError> {
        let json = serde_json::to_string(self).map_err(|e| AuthError::Storage(e.to_string()))?;
        match secrets::store_secret(data_dir, KEYRING_SLOT, &json) {
            Ok(()) => {
                remove_file_if_present(&data_dir.join(SESSION_FILE))?;
                Ok(SessionStorage::Keyring)
            }
            Err(SecretsError::Unavailable(reason)) => {
                tracing::warn!(
                    "no system keyring ({reason}); keeping the sign-in in {SESSION_FILE}, readable only by you"
                );
                crate::config::write_private_file(&data_dir.join(SESSION_FILE), json.as_bytes())
                    .map_err(|e| AuthError::Storage(e.to_string()))?;
                Ok(SessionStorage::File)
            }
            Err(e) => Err(AuthError::Storage(e.to_string())),
        }
    }
}

/// Where a session was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStorage {
    Keyring,
    File,
}

/// The session kept for `data_dir`, if any.
pub fn load_session(data_dir: &Path) -> Result<Option<Session>, AuthError> {
    let stored = match secrets::load_secret(data_dir, KEYRING_SLOT) {
        Ok(Some(json)) => Some(json),
        Ok(None) | Err(SecretsError::Unavailable(_)) => None,
        Err(e) => return Err(AuthError::Storage(e.to_string())),
    };
    let stored = match stored {
        Some(json) => Some(json),
        None => match std::fs::read_to_string(data_dir.join(SESSION_FILE)) {
            Ok(json) => Some(json),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(AuthError::Storage(format!("cannot read {SESSION_FILE}: {e}"))),
        },
    };
    match stored {
        None => Ok(None),
        Some(json) => serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| AuthError::Storage(format!("the kept sign-in is damaged ({e}); sign in again"))),
    }
}

/// Forgets the session kept for `data_dir` (keyring entry and file).
pub fn forget_session(data_dir: &Path) -> Result<(), AuthError> {
    match secrets::store_secret(data_dir, KEYRING_SLOT, "") {
        Ok(()) | Err(SecretsError::Unavailable(_)) => {}
        Err(e) => return Err(AuthError::Storage(e.to_string())),
    }
    remove_file_if_present(&data_dir.join(SESSION_FILE))
}

fn remove_file_if_present(path: &Path) -> Result<(), AuthError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(AuthError::Storage(format!("cannot remove {}: {e}", path.display()))),
    }
}

/// Asks the backend whose token this is; its refusal is the sign-in's failure.
pub(super) async fn whoami(
    http: &reqwest::Client,
    backend_url: &url::Url,
    access_token: &str,
) -> Result<String, AuthError> {
    let url = route(backend_url, "api/v1/me");
    let response = http
        .get(url.clone())
        .bearer_auth(access_token)
        .send()
        .await
        .map_err(|e| unreachable("The backend", &url, &e))?;
    if matches!(response.status().as_u16(), 401 | 403) {
        let body = read_capped("The backend", response).await.unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "HTTP 401".into());
        return Err(AuthError::BackendRefused(message));
    }
    let me: Me = read_json("The backend", response).await?;
    Ok(me.user)
}

/// Posts a form to the token endpoint; OAuth errors come back as `(code, description)`.
pub(super) async fn token_request(
    http: &reqwest::Client,
    provider: &IdentityProvider,
    form: &[(&str, &str)],
) -> Result<Result<TokenAnswer, (String, String)>, AuthError> {
    let url = url::Url::parse(&provider.token_endpoint).map_err(|e| AuthError::BadAnswer {
        what: "The identity provider",
        url: provider.token_endpoint.clone(),
        detail: e.to_string(),
    })?;
    let response = http
        .post(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .form(form)
        .send()
        .await
        .map_err(|e| unreachable("The identity provider", &url, &e))?;
    if response.status().is_client_error() {
        let status = response.status().as_u16();
        let body = read_capped("The identity provider", response).await?;
        return Ok(Err(oauth_error_text(&body).unwrap_or_else(|| (format!("HTTP {status}"), String::new()))));
    }
    read_json("The identity provider", response).await.map(Ok)
}

/// The session a shell holds while running: hands out access tokens, refreshing them before
/// they expire and once after the backend refuses one, and keeps each refresh in the keyring.
pub struct LiveSession {
    data_dir: PathBuf,
    /// Replaced when the proxy or the trusted certificates change.
    http: std::sync::RwLock<reqwest::Client>,
    user: String,
    backend_url: String,
    state: tokio::sync::Mutex<Session>,
}

impl std::fmt::Debug for LiveSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSession").field("user", &self.user).field("backend_url", &self.backend_url).finish()
    }
}

impl LiveSession {
    pub fn new(data_dir: &Path, http: reqwest::Client, session: Session) -> Arc<LiveSession> {
        Arc::new(LiveSession {
            data_dir: data_dir.to_owned(),
            http: std::sync::RwLock::new(http),
            user: session.user.clone(),
            backend_url: session.backend_url.clone(),
            state: tokio::sync::Mutex::new(session),
        })
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// Refreshes and sign-outs go through `http` from now on.
    pub fn use_http(&self, http: reqwest::Client) {
        *self.http.write().unwrap_or_else(|p| p.into_inner()) = http;
    }

    fn http(&self) -> reqwest::Client {
        self.http.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn is_for(&self, backend_url: &str) -> bool {
        self.backend_url == backend_url.trim().trim_end_matches('/')
    }

    /// The backend the session was made for.
    pub fn backend_url(&self) -> &str {
        &self.backend_url
    }

    /// An access token good for the next request.
    pub async fn access_token(&self) -> Result<String, AuthError> {
        let mut session = self.state.lock().await;
        if session.needs_refresh(now_unix()) {
            self.refresh(&mut session).await?;
        }
        Ok(session.access_token.clone())
    }

    /// The backend refused `rejected` (revoked, or the clocks disagree): refresh once, unless
    /// another request already did.
    pub async fn refresh_after_rejection(&self, rejected: &str) -> Result<String, AuthError> {
        let mut session = self.state.lock().await;
        if session.access_token == rejected {
            self.refresh(&mut session).await?;
        }
        Ok(session.access_token.clone())
    }

    async fn refresh(&self, session: &mut Session) -> Result<(), AuthError> {
        let Some(refresh_token) = session.refresh_token.clone() else {
            return Err(AuthError::Expired("the identity provider gave no refresh token".into()));
        };
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
            ("client_id", session.provider.client_id.as_str()),
        ];
        let answer = match token_request(&self.http(), &session.provider, &form).await? {
            Ok(answer) => answer,
            Err((code, description)) if code == "invalid_grant" => {
                // The window and the CLI share one sign-in: when the provider rotates refresh
                // tokens, the other one may have refreshed first and kept the new token.
                if let Ok(Some(kept)) = load_kept(&self.data_dir).await {
                    if kept.refresh_token != session.refresh_token && kept.is_for(&session.backend_url) {
                        *session = kept;
                        if !session.needs_refresh(now_unix()) {
                            return Ok(());
                        }
                        return Box::pin(self.refresh(session)).await;
                    }
                }
                return Err(AuthError::Expired(if description.is_empty() { code } else { description }));
            }
            Err((code, description)) => return Err(AuthError::Refused(format!("{code} {description}").trim().into())),
        };
        let lifetime_secs = answer.expires_in.unwrap_or(300).max(1);
        session.access_token = answer.access_token;
        session.expires_at = now_unix() + lifetime_secs;
        session.lifetime_secs = lifetime_secs;
        if answer.refresh_token.is_some() {
            session.refresh_token = answer.refresh_token;
        }
        tracing::info!(user = %session.user, lifetime_secs, "refreshed the access token");
        let (data_dir, kept) = (self.data_dir.clone(), session.clone());
        match tokio::task::spawn_blocking(move || kept.save(&data_dir)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("the refreshed sign-in could not be kept: {e}"),
            Err(e) => tracing::warn!("the refreshed sign-in could not be kept: {e}"),
        }
        Ok(())
    }

    /// Revokes the refresh token where the provider offers revocation, and forgets the session.
    pub async fn sign_out(&self) -> Result<(), AuthError> {
        let session = self.state.lock().await.clone();
        revoke(&self.http(), &session).await;
        let data_dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || forget_session(&data_dir))
            .await
            .map_err(|e| AuthError::Storage(e.to_string()))?
    }
}

async fn load_kept(data_dir: &Path) -> Result<Option<Session>, AuthError> {
    let data_dir = data_dir.to_owned();
    tokio::task::spawn_blocking(move || load_session(&data_dir)).await.map_err(|e| AuthError::Storage(e.to_string()))?
}

/// Best effort (RFC 7009): a provider that cannot be reached or has no revocation endpoint
/// leaves the token to expire; signing out on this machine goes on regardless.
pub async fn revoke(http: &reqwest::Client, session: &Session) {
    let (Some(endpoint), Some(token)) = (&session.provider.revocation_endpoint, &session.refresh_token) else {
        return;
    };
    let form = [
        ("token", token.as_str()),
        ("token_type_hint", "refresh_token"),
        ("client_id", session.provider.client_id.as_str()),
    ];
    match http.post(endpoint).form(&form).send().await {
        Ok(response) if response.status().is_success() => tracing::info!("revoked the refresh token"),
        Ok(response) => {
            tracing::warn!(status = response.status().as_u16(), "the identity provider did not revoke the token")
        }
        Err(e) => tracing::warn!("could not reach the identity provider to revoke the token: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(lifetime: u64, expires_at: u64) -> Session {
        Session {
            backend_url: "https://b.example".into(),
            user: "alice@example.test".into(),
            provider: IdentityProvider {
                issuer: "https://id.example".into(),
                client_id: "dropship".into(),
                scopes: vec!["openid".into()],
                authorization_endpoint: "https://id.example/auth".into(),
                token_endpoint: "https://id.example/token".into(),
                jwks_uri: "https://id.example/jwks".into(),
                device_authorization_endpoint: None,
                revocation_endpoint: None,
            },
            access_token: "access-secret".into(),
            expires_at,
            lifetime_secs: lifetime,
            refresh_token: Some("refresh-secret".into()),
        }
    }

    /// A loopback server playing both the provider's token endpoint and a backend that
    /// refuses `stale`, for the refresh-after-401 path (a real provider never revokes a JWT
    /// access token early, so it cannot produce this case on demand).
    async fn provider_and_backend() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let refreshes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = refreshes.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = vec![0u8; 16 * 1024];
                let n = stream.read(&mut request).await.unwrap();
                let text = String::from_utf8_lossy(&request[..n]).to_string();
                let (status, body) = if text.starts_with("POST /token") {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    assert!(text.contains("refresh_token=refresh-secret"), "the kept refresh token is used");
                    ("200 OK", r#"{"access_token":"fresh","expires_in":300,"refresh_token":"refresh-2"}"#)
                } else if text.to_ascii_lowercase().contains("authorization: bearer fresh") {
                    ("200 OK", r#"{"ok":true}"#)
                } else {
                    ("401 Unauthorized", r#"{"error":{"code":"unauthorized","message":"expired"}}"#)
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(response.as_bytes()).await.unwrap();
            }
        });
        (base, refreshes)
    }

    #[tokio::test]
    async fn a_token_the_backend_refuses_is_refreshed_once_and_the_request_sent_again() {
        let (base, refreshes) = provider_and_backend().await;
        let data_dir = tempfile::tempdir().unwrap();
        let mut kept = session(300, now_unix() + 300);
        kept.access_token = "stale".into();
        kept.backend_url = base.clone();
        kept.provider.token_endpoint = format!("{base}/token");
        let live = LiveSession::new(data_dir.path(), reqwest::Client::new(), kept);
        let http = crate::backend::http::BackendHttp::with_credential(
            reqwest::Client::new(),
            base.parse().unwrap(),
            crate::backend::Credential::Session(live.clone()),
        );
        let answer: serde_json::Value = http.get("api/v1/ping").await.expect("the retry with a fresh token succeeds");
        assert_eq!(answer["ok"], true);
        assert_eq!(refreshes.load(std::sync::atomic::Ordering::SeqCst), 1, "exactly one refresh");
        assert_eq!(live.access_token().await.unwrap(), "fresh", "the fresh token is used from now on");
        let stored = load_session(data_dir.path()).unwrap().expect("the refresh was kept");
        assert_eq!(stored.refresh_token.as_deref(), Some("refresh-2"), "the rotated refresh token was kept");
    }

    #[tokio::test]
    async fn a_token_near_its_end_is_refreshed_before_the_request() {
        let (base, refreshes) = provider_and_backend().await;
        let data_dir = tempfile::tempdir().unwrap();
        let mut kept = session(300, now_unix() + 30);
        kept.provider.token_endpoint = format!("{base}/token");
        let live = LiveSession::new(data_dir.path(), reqwest::Client::new(), kept);
        assert_eq!(live.access_token().await.unwrap(), "fresh", "30 s of 300 left: refreshed first");
        assert_eq!(refreshes.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn a_token_is_refreshed_when_a_quarter_of_its_life_or_a_minute_is_left() {
        let short = session(20, 1_000);
        assert!(!short.needs_refresh(994), "6 s left of 20 is more than a quarter");
        assert!(short.needs_refresh(995), "5 s left of 20 is a quarter");
        let long = session(3_600, 10_000);
        assert!(!long.needs_refresh(9_939), "61 s left of an hour");
        assert!(long.needs_refresh(9_940), "a minute left of an hour");
    }

    #[test]
    fn debug_output_never_shows_a_token() {
        let text = format!("{:?}", session(60, 0));
        assert!(!text.contains("secret"), "tokens are redacted: {text}");
    }

    #[test]
    fn a_session_is_only_for_its_own_backend() {
        let s = session(60, 0);
        assert!(s.is_for("https://b.example/"), "trailing slash is the same backend");
        assert!(!s.is_for("https://other.example"), "another backend never gets these tokens");
    }
}
