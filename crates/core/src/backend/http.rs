//! The HTTP conversation with a signing backend, shared by every flavour: bearer auth, JSON in
//! and out, and one mapping from what went wrong to a [`BackendError`] a person can act on.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::BackendError;
use crate::auth::{AuthError, LiveSession};
use crate::network::{classify_failure, NetworkFailure};

/// Bodies larger than this are not a signing backend's answer; refuse to buffer them.
const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// What proves who is asking: nothing (Companion may need none), a pasted token (service
/// accounts, small teams), or a signed-in session whose access token is kept fresh.
#[derive(Clone, Default)]
pub enum Credential {
    #[default]
    None,
    Token(String),
    Session(Arc<LiveSession>),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::None => f.write_str("None"),
            Credential::Token(_) => f.write_str("Token(<redacted>)"),
            Credential::Session(session) => write!(f, "Session({})", session.user()),
        }
    }
}

impl Credential {
    /// A pasted token when there is one (`--token` wins over a sign-in), else `session`.
    pub fn choose(token: &str, session: Option<Arc<LiveSession>>) -> Credential {
        let token = token.trim();
        match session {
            _ if !token.is_empty() => Credential::Token(token.to_owned()),
            Some(session) => Credential::Session(session),
            None => Credential::None,
        }
    }

    async fn bearer(&self) -> Result<Option<String>, BackendError> {
        match self {
            Credential::None => Ok(None),
            Credential::Token(token) => Ok(Some(token.clone())),
            Credential::Session(session) => session.access_token().await.map(Some).map_err(BackendError::from),
        }
    }
}

impl From<AuthError> for BackendError {
    fn from(error: AuthError) -> BackendError {
        match error {
            // The provider being down is an outage like the backend's: waited out, not fatal.
            AuthError::Unreachable { url, detail, .. } => BackendError::Unreachable { url, detail },
            other => BackendError::SignInExpired { detail: other.to_string() },
        }
    }
}

/// Where each request gets its HTTP client: the engine hands out its current one, so a backend
/// made before the machine slept uses the client made after it (with no stale connections).
pub type ClientSource = std::sync::Arc<dyn Fn() -> reqwest::Client + Send + Sync>;

#[derive(Clone)]
pub struct BackendHttp {
    client: ClientSource,
    base: url::Url,
    credential: Credential,
}

impl BackendHttp {
    pub fn new(client: reqwest::Client, base: url::Url, token: String) -> Self {
        let credential = if token.is_empty() { Credential::None } else { Credential::Token(token) };
        Self::with_credential(client, base, credential)
    }

    pub fn with_credential(client: reqwest::Client, base: url::Url, credential: Credential) -> Self {
        Self::from_source(std::sync::Arc::new(move || client.clone()), base, credential)
    }

    pub fn from_source(client: ClientSource, mut base: url::Url, credential: Credential) -> Self {
        // Join relative routes onto the base as a directory, so /prefix stays in the path.
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        BackendHttp { client, base, credential }
    }

    pub fn url(&self, route: &str) -> url::Url {
        self.base.join(route.trim_start_matches('/')).expect("routes are valid relative URLs")
    }

    pub fn base_shown(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_owned()
    }

    pub async fn get<T: DeserializeOwned>(&self, route: &str) -> Result<T, BackendError> {
        let request = (self.client)().get(self.url(route));
        self.send(request).await
    }

    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        route: &str,
        body: &B,
    ) -> Result<T, BackendError> {
        let request = (self.client)().post(self.url(route)).json(body);
        self.send(request).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, route: &str) -> Result<T, BackendError> {
        let request = (self.client)().delete(self.url(route));
        self.send(request).await
    }

    /// Sends with the current access token; a signed-in session that the backend refuses gets
    /// one refresh and one more try (the token may have been revoked early, or clocks differ).
    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, BackendError> {
        let request = request.header(reqwest::header::ACCEPT, "application/json");
        let again = request.try_clone();
        let bearer = self.credential.bearer().await?;
        match (self.send_once(request, bearer.as_deref()).await, &self.credential, again, bearer) {
            (Err(BackendError::Unauthorized { .. }), Credential::Session(session), Some(again), Some(used)) => {
                let fresh = session.refresh_after_rejection(&used).await?;
                self.send_once(again, Some(&fresh)).await
            }
            (outcome, ..) => outcome,
        }
    }

    async fn send_once<T: DeserializeOwned>(
        &self,
        mut request: reqwest::RequestBuilder,
        bearer: Option<&str>,
    ) -> Result<T, BackendError> {
        if let Some(token) = bearer {
            super::check_token_destination(&self.base)?;
            request = request.bearer_auth(token);
        }
        let url = self.base_shown();
        let response = request.send().await.map_err(|e| unreachable(&url, &self.base, &e))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let body = read_limited(response).await.map_err(|e| match e {
            // An answer too large to be a signing backend's is a bad answer, not a network fault.
            ReadError::TooLarge(detail) => BackendError::BadResponse { url: url.clone(), detail },
            ReadError::Network(detail) => BackendError::Unreachable { url: url.clone(), detail },
        })?;
        match status.as_u16() {
            // 204 and other empty answers read as JSON null.
            200..=299 if body.iter().all(u8::is_ascii_whitespace) => serde_json::from_slice(b"null")
                .map_err(|e| BackendError::BadResponse { url, detail: format!("{e}; the body was empty") }),
            200..=299 => serde_json::from_slice(&body).map_err(|e| BackendError::BadResponse {
                url,
                detail: format!("{e}; the body began with {:?}", preview(&body)),
            }),
            // The client follows no redirects (see the engine), so the token only ever goes to
            // the URL in Settings: a redirect elsewhere is the user's to accept, by changing it.
            300..=399 => Err(BackendError::BadResponse {
                url,
                detail: format!(
                    "it redirected to {}; Dropship does not follow a backend's redirects, so that the token only goes \
                     to the URL in Settings: set the backend URL to the address it redirects to",
                    location
                        .and_then(|l| self.base.join(&l).ok())
                        .map_or_else(|| "nowhere given".to_owned(), |l| super::redact_url(&l))
                ),
            }),
            401 | 403 => Err(BackendError::Unauthorized { url, status: status.as_u16() }),
            // A proxy forwarding plain http answers for itself when it wants credentials.
            407 => Err(BackendError::ProxyAuth { url }),
            429 => Err(BackendError::RateLimited { url, retry_after: retry_after.unwrap_or(DEFAULT_RATE_LIMIT_WAIT) }),
            400 | 404 | 409 | 413 | 422 => {
                Err(BackendError::Rejected { status: status.as_u16(), message: error_message(&body, status) })
            }
            _ => Err(BackendError::ServerError { url, status: status.as_u16(), message: error_message(&body, status) }),
        }
    }
}

/// The wait after a 429 that names none.
const DEFAULT_RATE_LIMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// `Retry-After` in its delay-seconds form; the HTTP-date form is not sent by Dropship's
/// backend and reads as absent.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<std::time::Duration> {
    let secs = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok()?;
    Some(std::time::Duration::from_secs(secs))
}

enum ReadError {
    TooLarge(String),
    Network(String),
}

/// The body, refused as soon as it (or its declared length) passes [`MAX_RESPONSE_BYTES`], so a
/// hostile backend cannot make the client buffer without bound.
async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, ReadError> {
    let too_large = || ReadError::TooLarge(format!("the answer was larger than {} MiB", MAX_RESPONSE_BYTES >> 20));
    if response.content_length().is_some_and(|len| len > MAX_RESPONSE_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| ReadError::Network(describe_reqwest_error(&e)))? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Pulls a readable message out of the error bodies the known flavours send:
/// `{"error":{"message"}}` (native), `{"error":"…"}` (Companion), `{"errors":{field:[…]}}` (Rails).
fn error_message(body: &[u8], status: reqwest::StatusCode) -> String {
    let fallback = || {
        let text = preview(body);
        if text.is_empty() {
            status.canonical_reason().unwrap_or("error").to_owned()
        } else {
            text
        }
    };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else { return fallback() };
    if let Some(message) = json.pointer("/error/message").and_then(|m| m.as_str()) {
        return message.to_owned();
    }
    if let Some(message) = json.get("error").and_then(|m| m.as_str()) {
        return message.to_owned();
    }
    if let Some(errors) = json.get("errors") {
        return rails_errors(errors);
    }
    // Express apps (Companion's 404 and 500 pages) answer `{"message": …}`.
    if let Some(message) = json.get("message").and_then(|m| m.as_str()) {
        return message.to_owned();
    }
    fallback()
}

fn rails_errors(errors: &serde_json::Value) -> String {
    match errors {
        serde_json::Value::Object(fields) => fields
            .iter()
            .map(|(field, messages)| match messages {
                serde_json::Value::Array(list) => {
                    let joined: Vec<_> = list.iter().map(|m| m.as_str().map_or(m.to_string(), str::to_owned)).collect();
                    format!("{field} {}", joined.join(", "))
                }
                other => format!("{field} {}", other.as_str().map_or(other.to_string(), str::to_owned)),
            })
            .collect::<Vec<_>>()
            .join("; "),
        serde_json::Value::Array(list) => {
            list.iter().map(|m| m.as_str().map_or(m.to_string(), str::to_owned)).collect::<Vec<_>>().join("; ")
        }
        other => other.to_string(),
    }
}

fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(120)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A request that got no answer: a certificate or proxy problem has its own error (waiting does
/// not fix it); anything else is the backend being out of reach.
fn unreachable(shown: &str, base: &url::Url, e: &reqwest::Error) -> BackendError {
    let url = shown.to_owned();
    match classify_failure(e) {
        failure @ NetworkFailure::Certificate(_) => {
            BackendError::Certificate { url, detail: failure.describe(base.host_str().unwrap_or("the backend")) }
        }
        NetworkFailure::ProxyAuth => BackendError::ProxyAuth { url },
        NetworkFailure::Other(detail) => BackendError::Unreachable { url, detail },
    }
}

/// What went wrong with a request, for a person (never with a URL's query string).
pub fn describe_reqwest_error(e: &reqwest::Error) -> String {
    let host = e.url().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_else(|| "the server".into());
    classify_failure(e).describe(&host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rails_error_hashes_read_as_sentences() {
        let body = br#"{"errors":{"key":["object not found in bucket"],"byte_size":["must be positive"]}}"#;
        assert_eq!(
            error_message(body, reqwest::StatusCode::UNPROCESSABLE_ENTITY),
            "byte_size must be positive; key object not found in bucket"
        );
    }

    #[test]
    fn native_and_companion_error_shapes_are_both_understood() {
        let native = br#"{"error":{"code":"object_missing","message":"The object is not in the bucket."}}"#;
        assert_eq!(
            error_message(native, reqwest::StatusCode::UNPROCESSABLE_ENTITY),
            "The object is not in the bucket."
        );
        assert_eq!(error_message(br#"{"error":"bad key"}"#, reqwest::StatusCode::BAD_REQUEST), "bad key");
        let express = br#"{"message":"connect ECONNREFUSED 127.0.0.1:1","error":{"errno":-111}}"#;
        assert_eq!(
            error_message(express, reqwest::StatusCode::INTERNAL_SERVER_ERROR),
            "connect ECONNREFUSED 127.0.0.1:1"
        );
    }

    /// A loopback server that answers every request with `head` and counts the requests.
    fn answering(head: String) -> (url::Url, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap()).parse().unwrap();
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = write!(stream, "{head}content-length: 2\r\nconnection: close\r\n\r\n{{}}");
            }
        });
        (url, count)
    }

    #[tokio::test]
    async fn a_backend_redirect_is_not_followed_so_the_token_stays_with_the_backend() {
        let (elsewhere, reached) = answering("HTTP/1.1 200 OK\r\n".into());
        let (backend, _) = answering(format!("HTTP/1.1 307 Temporary Redirect\r\nlocation: {elsewhere}steal\r\n"));
        let client = crate::network::http_client(&Default::default()).unwrap();
        let http = BackendHttp::new(client, backend, "secret-token".into());
        let error = http.get::<serde_json::Value>("/api/v1/ping").await.unwrap_err();
        assert_eq!(error.code(), "backend_bad_response", "a redirect is a bad answer: {error}");
        assert!(
            error.to_string().contains(elsewhere.as_str()) && error.to_string().contains("set the backend URL"),
            "says where it redirected and what to do: {error}"
        );
        assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 0, "the other origin never saw the token");
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_other_forms_read_as_absent() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None, "no header");
        headers.insert(reqwest::header::RETRY_AFTER, " 7 ".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(std::time::Duration::from_secs(7)));
        headers.insert(reqwest::header::RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&headers), None, "the date form is not used by the backend");
    }

    #[test]
    fn routes_keep_a_base_path_prefix() {
        let http = BackendHttp::new(reqwest::Client::new(), "http://h/base".parse().unwrap(), String::new());
        assert_eq!(http.url("/api/v1/ping").as_str(), "http://h/base/api/v1/ping");
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_as_an_error_body_give_a_message_and_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), json in ".{0,80}") {
            let _ = error_message(&body, reqwest::StatusCode::BAD_REQUEST);
            let _ = error_message(json.as_bytes(), reqwest::StatusCode::INTERNAL_SERVER_ERROR);
            let nested = format!("{{\"errors\": {json}}}");
            let _ = error_message(nested.as_bytes(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);
        }
    }
}
