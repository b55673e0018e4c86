//! A real OpenID provider — oidc-provider on Node, started from `oidc-provider.mjs` — with one
//! native client, two users, JWT access tokens for the backend's audience, refresh tokens, the
//! device flow and the provider's own login and consent pages, which [`OidcProvider`] walks
//! through as a person's browser would.

mod browser;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::Url;
use serde_json::Value;
use sha2::{Digest, Sha256};

use self::browser::{Browser, Typing, WalkEnd};
use crate::process::{spawn_tied_to_process, stop_child};
use crate::{block_on, log_tail, repo_root};

/// How long Node gets to print its `listening on` line and answer discovery: a few seconds
/// alone, but up to a minute on two cores busy compiling (the suite timed out at 30 s once).
const START_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(45);
/// The client's registered redirect URI; a loopback redirect on any port matches it.
const REGISTERED_REDIRECT: &str = "http://127.0.0.1/callback";
/// What [`OidcProvider::tokens_for`] and the device flow ask for: an ID token with the user's
/// email, name and groups, and a refresh token.
pub const SCOPE: &str = "openid email profile groups offline_access";
/// The device code grant's type.
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// A person the provider knows. The login page takes `email` and `password`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcUser {
    /// The stable subject id (`sub`), never the email.
    pub sub: String,
    pub email: String,
    pub name: String,
    pub groups: Vec<String>,
    pub password: String,
}

impl OidcUser {
    pub fn new(sub: &str, email: &str, name: &str, groups: &[&str]) -> OidcUser {
        OidcUser {
            sub: sub.to_owned(),
            email: email.to_owned(),
            name: name.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            password: format!("{sub}-password"),
        }
    }
}

/// Settings for [`OidcProvider::start_with`].
#[derive(Debug, Clone)]
pub struct OidcOptions {
    /// Lifetime of access tokens issued from now on (changeable later with
    /// [`OidcProvider::set_access_token_ttl`]).
    pub access_token_ttl_secs: u64,
    /// The backend's resource indicator: the `aud` of every access token. An absolute URI.
    pub audience: String,
    /// The one registered client: public (`none` auth), native, PKCE with S256.
    pub client_id: String,
    /// `alice@example.test` (groups `staff`, `dropship-admins`) and `bob@example.test`
    /// (group `staff`) unless changed.
    pub users: Vec<OidcUser>,
}

impl Default for OidcOptions {
    fn default() -> Self {
        OidcOptions {
            access_token_ttl_secs: 300,
            audience: "urn:dropship:backend".to_owned(),
            client_id: "dropship".to_owned(),
            users: vec![
                OidcUser::new("user-alice", "alice@example.test", "Alice Example", &["staff", "dropship-admins"]),
                OidcUser::new("user-bob", "bob@example.test", "Bob Example", &["staff"]),
            ],
        }
    }
}

/// A token endpoint's answer. `refresh_token` comes with `offline_access`; oidc-provider
/// rotates it on every refresh for this public client.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// A JWT (RS256) for the audience, with `email` and `groups` claims.
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    pub expires_in: u64,
}

/// A refused token request: the OAuth `error` code and its description.
#[derive(Debug, Clone)]
pub struct TokenError {
    pub status: u16,
    pub error: String,
    pub description: String,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.error, self.status, self.description)
    }
}

impl std::error::Error for TokenError {}

/// The device authorization endpoint's answer.
#[derive(Debug, Clone)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub interval: u64,
}

/// A running provider. Dropping it stops the Node process.
pub struct OidcProvider {
    issuer: String,
    options: OidcOptions,
    /// The discovery document, read once it answered.
    discovery: Value,
    /// Never follows redirects: the browser walks them itself, and the token calls get none.
    http: reqwest::Client,
    /// One browser per user, so a second login of the same person finds their session, as a
    /// real browser would, and another person's login never does.
    browsers: Mutex<HashMap<String, Browser>>,
    log_path: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl OidcProvider {
    pub fn start() -> OidcProvider {
        Self::start_with(OidcOptions::default())
    }

    pub fn start_with(options: OidcOptions) -> OidcProvider {
        let modules = repo_root().join(".stack/oidc/node_modules");
        assert!(
            modules.join("oidc-provider/package.json").is_file(),
            "oidc-provider is not installed in {}: run scripts/install-deps.sh",
            modules.display()
        );
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/oidc-provider.mjs");
        let dir = tempfile::Builder::new().prefix("dropship-oidc-").tempdir().expect("a temp dir");
        let log_path = dir.path().join("oidc-provider.log");
        let log = std::fs::File::create(&log_path).expect("the provider's log file can be created");
        let users: Vec<Value> = options
            .users
            .iter()
            .map(|u| {
                serde_json::json!({
                    "sub": u.sub, "email": u.email, "name": u.name, "groups": u.groups, "password": u.password,
                })
            })
            .collect();

        // Twice at most: on a loaded two-core machine Node has twice stalled before listening
        // (its log held only the startup warning). A stalled start leaves Node's own report of
        // where it was, so the next failure says why instead of only that it happened.
        let started = Instant::now();
        let mut stalls = Vec::new();
        let (child, issuer) = loop {
            let (mut child, issuer) = spawn_provider(&script, &modules, &options, &users, dir.path(), &log);
            match issuer.recv_timeout(START_ATTEMPT_TIMEOUT) {
                Ok(issuer) => break (child, issuer),
                Err(_) => {
                    stalls.push(stall_report(&mut child, dir.path()));
                    stop_child(&mut child);
                    if stalls.len() == 2 {
                        panic!(
                            "the OpenID provider did not print `listening on …` within {START_ATTEMPT_TIMEOUT:?}, twice; \
                             where Node was:\n{}\nlast lines of its log:\n{}",
                            stalls.join("\n"),
                            log_tail(&log_path, 40)
                        );
                    }
                    eprintln!(
                        "dropship-testkit: the OpenID provider stalled before listening; starting it again\n{}",
                        stalls[0]
                    );
                }
            }
        };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        let mut provider = OidcProvider {
            issuer,
            options,
            discovery: Value::Null,
            http,
            browsers: Mutex::new(HashMap::new()),
            log_path,
            child: Some(child),
            _dir: dir,
        };
        provider.discovery = provider.wait_for_discovery(Instant::now() + START_ATTEMPT_TIMEOUT);
        eprintln!("dropship-testkit: OpenID provider ready at {} after {:.1?}", provider.issuer, started.elapsed());
        provider
    }

    fn wait_for_discovery(&mut self, deadline: Instant) -> Value {
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        loop {
            let answer = block_on(async {
                let response = self.http.get(&url).send().await.ok()?;
                if response.status() != reqwest::StatusCode::OK {
                    return None;
                }
                response.json::<Value>().await.ok()
            });
            if let Some(document) = answer {
                return document;
            }
            let exited = self.child.as_mut().is_none_or(|c| !matches!(c.try_wait(), Ok(None)));
            if exited || Instant::now() > deadline {
                self.stop();
                panic!(
                    "the OpenID provider's discovery document did not answer; last lines of its log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn client_id(&self) -> &str {
        &self.options.client_id
    }

    /// The `aud` of access tokens and the `resource` to ask for.
    pub fn audience(&self) -> &str {
        &self.options.audience
    }

    /// The `dropship-backend` flags that make it trust this provider.
    pub fn backend_args(&self) -> Vec<String> {
        vec![
            "--oidc-issuer".into(),
            self.issuer().into(),
            "--oidc-audience".into(),
            self.audience().into(),
            "--oidc-client-id".into(),
            self.client_id().into(),
        ]
    }

    pub fn users(&self) -> &[OidcUser] {
        &self.options.users
    }

    /// The discovery document (`/.well-known/openid-configuration`).
    pub fn discovery(&self) -> &Value {
        &self.discovery
    }

    /// An endpoint from the discovery document, such as `token_endpoint`.
    pub fn endpoint(&self, name: &str) -> String {
        self.discovery[name].as_str().unwrap_or_else(|| panic!("the discovery document has no {name}")).to_owned()
    }

    /// The provider's public keys (its `jwks_uri`).
    pub fn jwks(&self) -> Value {
        let url = self.endpoint("jwks_uri");
        block_on(async {
            let response = self.http.get(&url).send().await.unwrap_or_else(|e| panic!("GET {url} failed: {e}"));
            response.json().await.expect("the JWKS is JSON")
        })
    }

    /// Makes a new RSA key the signing key; the old ones stay in the JWKS. Sessions, grants and
    /// refresh tokens survive. Returns the new key's `kid`.
    pub fn rotate_signing_key(&self) -> String {
        let answer = self.control("/__testkit/rotate-keys", serde_json::json!({}));
        answer["signing_kid"].as_str().expect("the rotation names the new kid").to_owned()
    }

    /// Access tokens issued from now on live `secs` seconds.
    pub fn set_access_token_ttl(&self, secs: u64) {
        self.control("/__testkit/access-token-ttl", serde_json::json!({ "seconds": secs }));
    }

    fn control(&self, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.issuer);
        block_on(async {
            let response =
                self.http.post(&url).json(&body).send().await.unwrap_or_else(|e| panic!("POST {path} failed: {e}"));
            let status = response.status();
            let answer: Value = response.json().await.unwrap_or_default();
            assert!(status.is_success(), "POST {path} answered {status}: {answer}");
            answer
        })
    }

    /// Plays the system browser for an app that opened `authorization_url`: signs `user` in on
    /// the provider's pages (skipped when their session is still there), consents (skipped when
    /// already granted), and when the provider redirects to the app's loopback redirect URI,
    /// visits it as a browser would. Returns that callback URL (`…/callback?code=…&state=…`).
    pub fn login_in_browser(&self, authorization_url: &str, user: &str) -> String {
        let callback = self.walk_to_redirect(authorization_url, user);
        block_on(async {
            // A fresh client: the app is another site, the provider's cookies are not its own.
            let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("an HTTP client");
            http.get(callback.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("the app did not answer at its redirect URI {callback}: {e}"));
        });
        callback.to_string()
    }

    /// Approves a device's sign-in: opens the verification page, enters `user_code`, confirms,
    /// signs `user` in and consents, as the person holding the device would in a browser.
    pub fn approve_device_code(&self, user_code: &str, user: &str) {
        // The page a device shows as its `verification_uri`: oidc-provider's `/device`.
        let start = format!("{}/device", self.issuer);
        match self.walk(&start, user, Some(user_code)) {
            WalkEnd::Page(html) => assert!(
                html.contains("Sign-in Success"),
                "approving device code {user_code} as {user} did not end on the success page:\n{html}"
            ),
            WalkEnd::LeftProvider(url) => panic!("approving a device code left the provider for {url}"),
        }
    }

    /// Access, refresh and ID tokens for `user`, through a whole authorization-code flow with
    /// PKCE and the audience as `resource` — for tests of the backend that need a real token.
    pub fn tokens_for(&self, user: &str) -> Tokens {
        let random = [uuid::Uuid::new_v4().into_bytes(), uuid::Uuid::new_v4().into_bytes()].concat();
        let verifier = URL_SAFE_NO_PAD.encode(random);
        let state = uuid::Uuid::new_v4().simple().to_string();
        let url = self.authorization_url(REGISTERED_REDIRECT, &state, &code_challenge(&verifier));
        // No one listens at the redirect URI: the code is read from the Location.
        let callback = self.walk_to_redirect(url.as_str(), user);
        let query: HashMap<String, String> = callback.query_pairs().into_owned().collect();
        assert_eq!(query.get("state"), Some(&state), "the provider returns the state: {callback}");
        let code = query.get("code").unwrap_or_else(|| panic!("the provider returned no code: {callback}"));
        self.exchange_code(code, REGISTERED_REDIRECT, &verifier)
            .unwrap_or_else(|e| panic!("the code exchange failed: {e}"))
    }

    /// The authorization URL an app would open: the registered client, [`SCOPE`], PKCE with
    /// S256, and `prompt=consent`, without which oidc-provider drops `offline_access` (as OpenID
    /// Connect Core 11 allows) and issues no refresh token. No `resource` parameter: the
    /// provider defaults to the audience.
    pub fn authorization_url(&self, redirect_uri: &str, state: &str, code_challenge: &str) -> Url {
        let mut url = Url::parse(&self.endpoint("authorization_endpoint")).expect("an authorization URL");
        url.query_pairs_mut()
            .append_pair("client_id", &self.options.client_id)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", SCOPE)
            .append_pair("state", state)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("prompt", "consent");
        url
    }

    /// Exchanges an authorization code at the token endpoint, with the audience as `resource`.
    pub fn exchange_code(&self, code: &str, redirect_uri: &str, code_verifier: &str) -> Result<Tokens, TokenError> {
        self.token_request(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier),
            ("resource", &self.options.audience),
        ])
    }

    /// A refresh at the token endpoint, with the audience as `resource`.
    pub fn refresh(&self, refresh_token: &str) -> Result<Tokens, TokenError> {
        self.token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("resource", &self.options.audience),
        ])
    }

    /// Asks for a device code, as a device without a browser would.
    pub fn start_device_flow(&self) -> DeviceAuthorization {
        let url = self.endpoint("device_authorization_endpoint");
        let form = [("client_id", self.options.client_id.as_str()), ("scope", SCOPE)];
        let answer: Value = block_on(async {
            let response =
                self.http.post(&url).form(&form).send().await.unwrap_or_else(|e| panic!("POST {url} failed: {e}"));
            let status = response.status();
            let answer: Value = response.json().await.unwrap_or_default();
            assert!(status.is_success(), "the device authorization endpoint answered {status}: {answer}");
            answer
        });
        let text = |name: &str| answer[name].as_str().unwrap_or_else(|| panic!("no {name} in {answer}")).to_owned();
        DeviceAuthorization {
            device_code: text("device_code"),
            user_code: text("user_code"),
            verification_uri: text("verification_uri"),
            verification_uri_complete: text("verification_uri_complete"),
            interval: answer["interval"].as_u64().unwrap_or(5),
        }
    }

    /// One poll of the token endpoint for a device code: `authorization_pending` until
    /// [`OidcProvider::approve_device_code`], then the tokens.
    pub fn device_tokens(&self, device: &DeviceAuthorization) -> Result<Tokens, TokenError> {
        self.token_request(&[
            ("grant_type", DEVICE_CODE_GRANT),
            ("device_code", &device.device_code),
            ("resource", &self.options.audience),
        ])
    }

    /// Revokes an access or refresh token at the revocation endpoint.
    pub fn revoke(&self, token: &str) {
        let url = self.endpoint("revocation_endpoint");
        let form = [("client_id", self.options.client_id.as_str()), ("token", token)];
        block_on(async {
            let response =
                self.http.post(&url).form(&form).send().await.unwrap_or_else(|e| panic!("POST {url} failed: {e}"));
            let status = response.status();
            assert!(status.is_success(), "revocation answered {status}: {}", response.text().await.unwrap_or_default());
        });
    }

    fn token_request(&self, fields: &[(&str, &str)]) -> Result<Tokens, TokenError> {
        let url = self.endpoint("token_endpoint");
        let mut form = vec![("client_id", self.options.client_id.as_str())];
        form.extend_from_slice(fields);
        let (status, answer) = block_on(async {
            let response =
                self.http.post(&url).form(&form).send().await.unwrap_or_else(|e| panic!("POST {url} failed: {e}"));
            let status = response.status();
            (status, response.json::<Value>().await.unwrap_or_default())
        });
        let text = |name: &str| answer[name].as_str().map(str::to_owned);
        if !status.is_success() {
            return Err(TokenError {
                status: status.as_u16(),
                error: text("error").unwrap_or_default(),
                description: text("error_description").unwrap_or_default(),
            });
        }
        Ok(Tokens {
            access_token: text("access_token").unwrap_or_else(|| panic!("no access_token in {answer}")),
            refresh_token: text("refresh_token"),
            id_token: text("id_token"),
            expires_in: answer["expires_in"].as_u64().unwrap_or_else(|| panic!("no expires_in in {answer}")),
        })
    }

    /// Walks the provider's pages until it redirects to the client.
    fn walk_to_redirect(&self, authorization_url: &str, user: &str) -> Url {
        match self.walk(authorization_url, user, None) {
            WalkEnd::LeftProvider(url) => url,
            WalkEnd::Page(html) => panic!("the sign-in of {user} ended on a page instead of a redirect:\n{html}"),
        }
    }

    fn walk(&self, start: &str, user: &str, user_code: Option<&str>) -> WalkEnd {
        let person = self
            .options
            .users
            .iter()
            .find(|u| u.email == user)
            .unwrap_or_else(|| panic!("{user} is not one of the provider's users"));
        let typing = Typing { login: &person.email, password: &person.password, user_code };
        let mut browsers = self.browsers.lock().unwrap_or_else(|p| p.into_inner());
        let browser = browsers.entry(person.email.clone()).or_default();
        block_on(browser.walk(&self.http, start, &typing))
    }

    /// The last lines of the provider's log (Node's stdout and stderr).
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path, 40)
    }

    /// Stops the process (SIGTERM, SIGKILL after 3 s). Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.stop();
    }
}

/// PKCE's S256 challenge for `verifier`.
pub fn code_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Starts `node oidc-provider.mjs` on a free port; the receiver gets the issuer URL once the
/// script prints it. Stdout and stderr go to `log`.
fn spawn_provider(
    script: &Path,
    modules: &Path,
    options: &OidcOptions,
    users: &[Value],
    dir: &Path,
    log: &std::fs::File,
) -> (Child, mpsc::Receiver<String>) {
    let mut command = Command::new("node");
    command
        // A report of where Node is, on demand: see `stall_report`.
        .arg("--report-on-signal")
        .arg("--report-signal=SIGUSR2")
        .arg(format!("--report-directory={}", dir.display()))
        .arg(script)
        // Port 0: the OS picks a free one and the script prints it.
        .arg("0")
        .env("OIDC_PROVIDER_MODULES", modules)
        .env("OIDC_CLIENT_ID", &options.client_id)
        .env("OIDC_AUDIENCE", &options.audience)
        .env("OIDC_ACCESS_TOKEN_TTL", options.access_token_ttl_secs.to_string())
        .env("OIDC_USERS", Value::from(users.to_vec()).to_string())
        .env_remove("DEBUG")
        .env_remove("NODE_OPTIONS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.try_clone().expect("the log file handle can be cloned"));
    let mut child = spawn_tied_to_process(command)
        .unwrap_or_else(|e| panic!("cannot start node {}: {e} (is Node installed?)", script.display()));

    let stdout = child.stdout.take().expect("stdout is piped");
    let mut log = log.try_clone().expect("the log file handle can be cloned");
    let (found, issuer) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("listening on ") {
                let _ = found.send(url.trim().to_owned());
            }
            // Everything goes to the log too; ends when the process exits.
            let _ = writeln!(log, "{line}");
        }
    });
    (child, issuer)
}

/// Asks a stalled Node for its diagnostic report and returns the JavaScript and native stacks
/// from it, or why there is none.
fn stall_report(child: &mut Child, dir: &Path) -> String {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else { return "no pid".to_owned() };
    // Busy (R, CPU time climbing) or waiting (S, and on what in the kernel)?
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    let process = format!(
        "state {}, user+system CPU ticks {}+{}, waiting in {wchan:?}",
        fields.first().unwrap_or(&"?"),
        fields.get(11).unwrap_or(&"?"),
        fields.get(12).unwrap_or(&"?")
    );
    // SAFETY: kill(2) with a pid we spawned and have not reaped.
    unsafe {
        libc::kill(pid, libc::SIGUSR2);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let report = std::fs::read_dir(dir).into_iter().flatten().flatten().find(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("report.") && name.contains(&pid.to_string()) && name.ends_with(".json")
        });
        if let Some(report) = report {
            std::thread::sleep(Duration::from_millis(200));
            let text = std::fs::read_to_string(report.path()).unwrap_or_default();
            let Ok(report) = serde_json::from_str::<Value>(&text) else { continue };
            return format!(
                "{process}\njavascript stack: {}\nnative stack: {}",
                report["javascriptStack"],
                report["nativeStack"]
                    .as_array()
                    .map(|f| f.iter().take(25).map(|f| f["symbol"].to_string()).collect::<Vec<_>>().join(" < "))
                    .unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    format!("{process}; Node (pid {pid}) wrote no diagnostic report within 5 s of SIGUSR2 (its JavaScript is busy)")
}
