//! Command-line flags and their environment twins, and the checks that turn them into a
//! configuration the server can trust (a usable key prefix and template, principals from
//! tokens or an OpenID provider, a sane expiry).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

// Boolish: the env twins of the switches take 1/0, yes/no, on/off as well as true/false.
use clap::builder::BoolishValueParser;
use clap::Parser;

use crate::auth::{OidcSettings, StaticToken};
use crate::keys::{KeyTemplate, DEFAULT_KEY_TEMPLATE, MAX_KEY_BYTES};
use crate::store::DatabaseUrl;
use crate::webhook::WebhookSettings;

/// SigV4 refuses presigned URLs that live longer than seven days.
const MAX_URL_EXPIRY_SECS: u64 = 7 * 24 * 3600;

/// The flags exactly as docs/CONTRACTS.md lists them; each reads its environment twin when absent.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "dropship-backend",
    version,
    about = "Reference signing backend for Dropship: hands out presigned S3 PUT URLs and records finished uploads."
)]
pub struct Flags {
    /// Address to listen on (use port 0 to let the OS pick one).
    #[arg(long, env = "DROPSHIP_BACKEND_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// S3 endpoint URL, e.g. http://127.0.0.1:8333. AWS itself when absent.
    #[arg(long, env = "DROPSHIP_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// S3 region the URLs are signed for.
    #[arg(long, env = "DROPSHIP_S3_REGION", default_value = "us-east-1")]
    pub region: String,

    /// Bucket that receives the uploads.
    #[arg(long, env = "DROPSHIP_S3_BUCKET")]
    pub bucket: String,

    /// Access key id; the standard AWS credential chain is used when absent.
    #[arg(long, env = "DROPSHIP_S3_ACCESS_KEY_ID", hide_env_values = true)]
    pub access_key_id: Option<String>,

    /// Secret access key; the standard AWS credential chain is used when absent.
    #[arg(long, env = "DROPSHIP_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_access_key: Option<String>,

    /// Address objects as ENDPOINT/BUCKET/KEY instead of BUCKET.ENDPOINT/KEY.
    #[arg(long, env = "DROPSHIP_S3_PATH_STYLE", value_parser = BoolishValueParser::new())]
    pub path_style: bool,

    /// Sign for the S3 Transfer Acceleration endpoint (AWS only).
    #[arg(long, env = "DROPSHIP_S3_ACCELERATE", value_parser = BoolishValueParser::new())]
    pub accelerate: bool,

    /// How long a presigned URL stays valid, in seconds.
    #[arg(long, env = "DROPSHIP_URL_EXPIRY_SECS", default_value_t = 900)]
    pub url_expiry_secs: u64,

    /// Comma-separated bearer tokens that clients may present, each `NAME:TOKEN` (NAME is the
    /// principal) or a bare `TOKEN` (principal `token-<first 8 hex digits of its SHA-256>`).
    #[arg(long, env = "DROPSHIP_BACKEND_TOKENS", value_delimiter = ',', hide_env_values = true)]
    pub tokens: Vec<String>,

    /// Comma-separated names of static-token principals that are admins (may read everyone's
    /// records and the audit log).
    #[arg(long, env = "DROPSHIP_ADMIN_PRINCIPALS", value_delimiter = ',')]
    pub admin_principals: Vec<String>,

    /// OpenID Connect issuer whose JWT access tokens are accepted, e.g. https://id.example.com.
    #[arg(long, env = "DROPSHIP_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,

    /// The `aud` an access token must carry (required with --oidc-issuer).
    #[arg(long, env = "DROPSHIP_OIDC_AUDIENCE")]
    pub oidc_audience: Option<String>,

    /// The public client id the apps sign in with (required with --oidc-issuer).
    #[arg(long, env = "DROPSHIP_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,

    /// The claim that names the user; `sub` when a token lacks it.
    #[arg(long, env = "DROPSHIP_OIDC_USER_CLAIM", default_value = "email")]
    pub oidc_user_claim: String,

    /// The claim that lists the user's groups.
    #[arg(long, env = "DROPSHIP_OIDC_GROUPS_CLAIM", default_value = "groups")]
    pub oidc_groups_claim: String,

    /// Members of this OpenID group are admins.
    #[arg(long, env = "DROPSHIP_ADMIN_GROUP")]
    pub admin_group: Option<String>,

    /// Space-separated scopes the apps should request when they sign in.
    #[arg(long, env = "DROPSHIP_OIDC_SCOPES", default_value = "openid profile email offline_access")]
    pub oidc_scopes: String,

    /// First segment(s) of every key this backend hands out.
    #[arg(long, env = "DROPSHIP_KEY_PREFIX", default_value = "uploads")]
    pub key_prefix: String,

    /// How keys are built from {prefix}, {user}, {date}, {uuid}, {name} and {folder}.
    #[arg(long, env = "DROPSHIP_KEY_TEMPLATE", default_value = DEFAULT_KEY_TEMPLATE)]
    pub key_template: String,

    /// SQLite file that holds the upload records (shorthand for --database-url sqlite://PATH);
    /// ./dropship-backend.sqlite when neither is given.
    #[arg(long, env = "DROPSHIP_BACKEND_DB", conflicts_with = "database_url")]
    pub db: Option<PathBuf>,

    /// Where the records live: sqlite://PATH (one instance) or
    /// postgres://USER:PASS@HOST:PORT/DB (any number of instances behind a load balancer).
    #[arg(long, env = "DROPSHIP_BACKEND_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// POST every newly recorded upload to this URL as signed JSON (needs --webhook-secret).
    #[arg(long, env = "DROPSHIP_WEBHOOK_URL")]
    pub webhook_url: Option<String>,

    /// The shared secret webhook bodies are signed with (HMAC-SHA256, `X-Dropship-Signature`).
    #[arg(long, env = "DROPSHIP_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,

    /// Seconds a connection gets to send a whole request head; slower ones are closed.
    #[arg(long, env = "DROPSHIP_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,

    /// Seconds a request may take from its head to its answer; slower ones get 503.
    #[arg(long, env = "DROPSHIP_REQUEST_TIMEOUT_SECS", default_value_t = 60)]
    pub request_timeout_secs: u64,

    /// Requests handled at once; more are answered 503 with Retry-After instead of queued.
    #[arg(long, env = "DROPSHIP_MAX_CONCURRENT_REQUESTS", default_value_t = 512)]
    pub max_concurrent_requests: usize,

    /// Requests per second each principal may make, `RPS` or `RPS:BURST` (e.g. `20:40`);
    /// more are answered 429 with Retry-After. Unlimited when absent. Counted per instance.
    #[arg(long, env = "DROPSHIP_RATE_LIMIT")]
    pub rate_limit: Option<String>,

    /// Seconds in-flight requests get to finish after SIGTERM before the process exits anyway.
    #[arg(long, env = "DROPSHIP_DRAIN_TIMEOUT_SECS", default_value_t = 30)]
    pub drain_timeout_secs: u64,

    /// Serve desktop app updates from DIR/<channel>/latest.json and the files beside it
    /// (tauri-plugin-updater's static manifest), without a token, at /updates/<channel>/….
    #[arg(long, env = "DROPSHIP_UPDATES_DIR")]
    pub updates_dir: Option<PathBuf>,

    /// The updater public key (the base64 text `tauri signer generate` prints): each channel's
    /// artifacts must carry signatures by it, or the channel is not served (needs --updates-dir).
    #[arg(long, env = "DROPSHIP_UPDATES_PUBLIC_KEY")]
    pub updates_public_key: Option<String>,

    /// `text` for people, `json` for one JSON object per line (log collectors).
    #[arg(long, env = "DROPSHIP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A request rate each principal may keep up, and how many requests it may send at once
/// after being quiet (a token bucket of `burst` tokens refilled at `per_second`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

impl RateLimit {
    /// `RPS` or `RPS:BURST`; the burst defaults to one second's worth (at least 1).
    pub fn parse(raw: &str) -> Result<RateLimit, String> {
        let (rate, burst) = match raw.trim().split_once(':') {
            Some((rate, burst)) => (rate, Some(burst)),
            None => (raw.trim(), None),
        };
        let per_second: f64 =
            rate.trim().parse().map_err(|_| format!("{rate:?} is not a number of requests per second"))?;
        if !(per_second.is_finite() && per_second > 0.0 && per_second <= 1_000_000.0) {
            return Err(format!("the rate must be above 0 and at most 1000000 per second, got {rate}"));
        }
        let burst = match burst {
            Some(burst) => burst
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|b| (1..=1_000_000).contains(b))
                .ok_or_else(|| format!("the burst must be a whole number from 1 to 1000000, got {burst:?}"))?,
            None => (per_second.ceil() as u32).max(1),
        };
        Ok(RateLimit { per_second, burst })
    }
}

/// Limits that protect the server from slow, many or greedy clients.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub max_concurrent_requests: usize,
    pub rate_limit: Option<RateLimit>,
    pub drain_timeout: Duration,
}

/// The SQLite file used when neither --db nor --database-url is given.
const DEFAULT_SQLITE_PATH: &str = "./dropship-backend.sqlite";

/// How the backend reaches S3 and signs for it.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    /// `(access key id, secret)` when both were given; `None` means the AWS credential chain.
    pub static_credentials: Option<(String, String)>,
    pub path_style: bool,
    pub accelerate: bool,
    pub url_expiry: Duration,
}

/// Who may call the backend, and who of them are admins.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub tokens: Vec<StaticToken>,
    pub admin_principals: Vec<String>,
    pub oidc: Option<OidcSettings>,
}

/// The validated configuration the server runs on.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub s3: S3Settings,
    pub auth: AuthSettings,
    /// Normalised: no leading or trailing `/`; may be empty (keys then start with the UUID).
    pub key_prefix: String,
    pub key_template: KeyTemplate,
    pub database: DatabaseUrl,
    /// Where recorded uploads are announced, if anywhere.
    pub webhook: Option<WebhookSettings>,
    pub serve: ServeSettings,
    /// Where desktop app updates are served from, if anywhere.
    pub updates: Option<UpdatesSettings>,
}

/// The update folder and the key every artifact in it must be signed with, when one is given.
#[derive(Debug, Clone)]
pub struct UpdatesSettings {
    pub dir: PathBuf,
    pub public_key: Option<minisign_verify::PublicKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "nobody could sign in: pass --tokens NAME:TOKEN,… (DROPSHIP_BACKEND_TOKENS), or --oidc-issuer URL with \
         --oidc-audience and --oidc-client-id, or both"
    )]
    NoPrincipals,
    #[error("--tokens: {0}")]
    Token(String),
    #[error("--oidc-issuer needs {0} too: the audience access tokens are issued for, and the client id the apps sign in with")]
    OidcIncomplete(&'static str),
    #[error("{0} only means something with --oidc-issuer")]
    OidcWithoutIssuer(&'static str),
    #[error("--oidc-issuer {url:?}: {reason}")]
    OidcIssuer { url: String, reason: String },
    #[error("--key-template {template:?} is not usable: {reason}")]
    KeyTemplate { template: String, reason: String },
    #[error(
        "--access-key-id and --secret-access-key go together: give both, or neither to use the AWS credential chain"
    )]
    HalfCredentials,
    #[error("--url-expiry-secs must be between 1 and {MAX_URL_EXPIRY_SECS} (SigV4's seven-day limit), got {0}")]
    UrlExpiry(u64),
    #[error("--key-prefix {0:?} is not usable: segments must be non-empty, not `.` or `..`, with no control characters or backslashes")]
    KeyPrefix(String),
    #[error("--bucket must not be empty")]
    EmptyBucket,
    #[error("--accelerate signs for the AWS Transfer Acceleration endpoint, which uses virtual-hosted addressing: drop --s3-endpoint and --path-style")]
    AccelerateConflict,
    #[error("--database-url: {0}")]
    DatabaseUrl(String),
    #[error(
        "--webhook-url and --webhook-secret go together: the receiver checks every body's signature against the secret"
    )]
    HalfWebhook,
    #[error("--webhook-url {url:?}: {reason}")]
    WebhookUrl { url: String, reason: String },
    #[error("--header-read-timeout-secs must be from 1 to {MAX_HEADER_READ_TIMEOUT_SECS}, got {0}: a slow client holds a connection that long")]
    HeaderReadTimeout(u64),
    #[error("{flag} must be from 1 to {max}, got {value}")]
    OutOfRange { flag: &'static str, value: u64, max: u64 },
    #[error("--rate-limit {raw:?}: {reason} (write RPS or RPS:BURST, e.g. 20:40)")]
    RateLimit { raw: String, reason: String },
    #[error("--updates-dir {0}: not a folder (it holds one folder per channel, e.g. stable/latest.json)")]
    UpdatesDir(PathBuf),
    #[error("--updates-public-key: {0}")]
    UpdatesPublicKey(String),
    #[error("--updates-public-key only means something with --updates-dir")]
    UpdatesKeyWithoutDir,
}

/// Longest header-read timeout accepted: past it, a few hundred idle sockets hold the server.
const MAX_HEADER_READ_TIMEOUT_SECS: u64 = 30;
/// Longest request and drain timeouts accepted (an hour), so a typo cannot mean "forever".
const MAX_TIMEOUT_SECS: u64 = 3600;
/// Most concurrent requests accepted as a setting.
const MAX_CONCURRENCY: u64 = 100_000;

impl Flags {
    pub fn validate(self) -> Result<Config, ConfigError> {
        let tokens = self
            .tokens
            .iter()
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
            .map(StaticToken::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(ConfigError::Token)?;
        let oidc = self.oidc_settings()?;
        if tokens.is_empty() && oidc.is_none() {
            return Err(ConfigError::NoPrincipals);
        }
        let admin_principals =
            self.admin_principals.iter().map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()).collect();
        let key_prefix = normalise_key_prefix(&self.key_prefix)?;
        let key_template = KeyTemplate::parse(&self.key_template)
            .map_err(|reason| ConfigError::KeyTemplate { template: self.key_template.clone(), reason })?;
        let longest = key_template.max_key_bytes(&key_prefix);
        if longest > MAX_KEY_BYTES {
            return Err(ConfigError::KeyTemplate {
                template: self.key_template.clone(),
                reason: format!(
                    "with the prefix {key_prefix:?} its keys can reach {longest} bytes; S3 allows {MAX_KEY_BYTES}"
                ),
            });
        }
        let serve = self.serve_settings()?;
        let webhook = self.webhook_settings()?;
        let updates = self.updates_settings()?;
        let static_credentials = match (self.access_key_id, self.secret_access_key) {
            (Some(id), Some(secret)) => Some((id, secret)),
            (None, None) => None,
            _ => return Err(ConfigError::HalfCredentials),
        };
        if !(1..=MAX_URL_EXPIRY_SECS).contains(&self.url_expiry_secs) {
            return Err(ConfigError::UrlExpiry(self.url_expiry_secs));
        }
        if self.bucket.trim().is_empty() {
            return Err(ConfigError::EmptyBucket);
        }
        if self.accelerate && (self.s3_endpoint.is_some() || self.path_style) {
            return Err(ConfigError::AccelerateConflict);
        }
        let database = match (&self.database_url, &self.db) {
            (Some(url), _) => DatabaseUrl::parse(url).map_err(ConfigError::DatabaseUrl)?,
            (None, Some(path)) => DatabaseUrl::Sqlite(path.clone()),
            (None, None) => DatabaseUrl::Sqlite(PathBuf::from(DEFAULT_SQLITE_PATH)),
        };
        Ok(Config {
            listen: self.listen,
            s3: S3Settings {
                endpoint: self.s3_endpoint,
                region: self.region,
                bucket: self.bucket,
                static_credentials,
                path_style: self.path_style,
                accelerate: self.accelerate,
                url_expiry: Duration::from_secs(self.url_expiry_secs),
            },
            auth: AuthSettings { tokens, admin_principals, oidc },
            key_prefix,
            key_template,
            database,
            webhook,
            serve,
            updates,
        })
    }

    /// The update folder must exist at start; the channels in it are checked by the server
    /// (a broken one is logged and answers 503, the others are served).
    fn updates_settings(&self) -> Result<Option<UpdatesSettings>, ConfigError> {
        let key = self.updates_public_key.as_deref().map(str::trim).filter(|k| !k.is_empty());
        let Some(dir) = self.updates_dir.as_ref().filter(|d| !d.as_os_str().is_empty()) else {
            return match key {
                Some(_) => Err(ConfigError::UpdatesKeyWithoutDir),
                None => Ok(None),
            };
        };
        if !dir.is_dir() {
            return Err(ConfigError::UpdatesDir(dir.clone()));
        }
        let public_key =
            key.map(crate::updates::parse_public_key).transpose().map_err(ConfigError::UpdatesPublicKey)?;
        Ok(Some(UpdatesSettings { dir: dir.clone(), public_key }))
    }

    fn serve_settings(&self) -> Result<ServeSettings, ConfigError> {
        if !(1..=MAX_HEADER_READ_TIMEOUT_SECS).contains(&self.header_read_timeout_secs) {
            return Err(ConfigError::HeaderReadTimeout(self.header_read_timeout_secs));
        }
        let in_range = |flag, value: u64, max| {
            if (1..=max).contains(&value) {
                Ok(value)
            } else {
                Err(ConfigError::OutOfRange { flag, value, max })
            }
        };
        let request_timeout = in_range("--request-timeout-secs", self.request_timeout_secs, MAX_TIMEOUT_SECS)?;
        let drain_timeout = in_range("--drain-timeout-secs", self.drain_timeout_secs, MAX_TIMEOUT_SECS)?;
        let concurrency = in_range("--max-concurrent-requests", self.max_concurrent_requests as u64, MAX_CONCURRENCY)?;
        let rate_limit = match self.rate_limit.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
            Some(raw) => {
                Some(RateLimit::parse(raw).map_err(|reason| ConfigError::RateLimit { raw: raw.to_owned(), reason })?)
            }
            None => None,
        };
        Ok(ServeSettings {
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            request_timeout: Duration::from_secs(request_timeout),
            max_concurrent_requests: concurrency as usize,
            rate_limit,
            drain_timeout: Duration::from_secs(drain_timeout),
        })
    }

    /// The webhook receiver, when one is given: URL and secret both, or neither.
    fn webhook_settings(&self) -> Result<Option<WebhookSettings>, ConfigError> {
        let url = self.webhook_url.as_deref().map(str::trim).filter(|u| !u.is_empty());
        let secret = self.webhook_secret.as_deref().filter(|s| !s.is_empty());
        let (url, secret) = match (url, secret) {
            (None, None) => return Ok(None),
            (Some(url), Some(secret)) => (url, secret),
            _ => return Err(ConfigError::HalfWebhook),
        };
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| ConfigError::WebhookUrl { url: url.to_owned(), reason: format!("not a URL ({e})") })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ConfigError::WebhookUrl { url: url.to_owned(), reason: "use http:// or https://".to_owned() });
        }
        Ok(Some(WebhookSettings { url: parsed, secret: secret.to_owned() }))
    }

    /// The OpenID settings, when an issuer is given; the flags that need one refused without it.
    fn oidc_settings(&self) -> Result<Option<OidcSettings>, ConfigError> {
        let Some(issuer) = self.oidc_issuer.as_deref().map(str::trim).filter(|i| !i.is_empty()) else {
            if self.oidc_audience.is_some() {
                return Err(ConfigError::OidcWithoutIssuer("--oidc-audience"));
            }
            if self.oidc_client_id.is_some() {
                return Err(ConfigError::OidcWithoutIssuer("--oidc-client-id"));
            }
            if self.admin_group.is_some() {
                return Err(ConfigError::OidcWithoutIssuer("--admin-group"));
            }
            return Ok(None);
        };
        check_issuer_url(issuer).map_err(|reason| ConfigError::OidcIssuer { url: issuer.to_owned(), reason })?;
        let required = |value: &Option<String>, flag| {
            value
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .ok_or(ConfigError::OidcIncomplete(flag))
        };
        Ok(Some(OidcSettings {
            issuer: issuer.to_owned(),
            audience: required(&self.oidc_audience, "--oidc-audience")?,
            client_id: required(&self.oidc_client_id, "--oidc-client-id")?,
            user_claim: self.oidc_user_claim.trim().to_owned(),
            groups_claim: self.oidc_groups_claim.trim().to_owned(),
            admin_group: self.admin_group.as_deref().map(str::trim).filter(|g| !g.is_empty()).map(str::to_owned),
            scopes: self.oidc_scopes.split_whitespace().map(str::to_owned).collect(),
        }))
    }
}

/// An issuer must be `https://`, or `http://` on a loopback host (a provider on this machine,
/// as in development and tests): tokens are checked against keys fetched from it, and keys
/// fetched over plain HTTP from elsewhere could be anyone's.
pub fn check_issuer_url(raw: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(raw).map_err(|e| format!("not a URL ({e})"))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => {
            Err("plain http:// is accepted only for a loopback host (127.0.0.0/8, ::1, localhost); use https://"
                .to_owned())
        }
        other => Err(format!("the scheme {other}:// is not http(s)")),
    }
}

pub fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else { return false };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Trims surrounding slashes and refuses segments that would make keys ambiguous or unsafe.
fn normalise_key_prefix(raw: &str) -> Result<String, ConfigError> {
    let trimmed = raw.trim().trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    let usable = trimmed.split('/').all(|segment| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && !segment.contains('\\')
            && !segment.chars().any(char::is_control)
    });
    if usable {
        Ok(trimmed.to_owned())
    } else {
        Err(ConfigError::KeyPrefix(raw.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        let mut argv = vec!["dropship-backend", "--bucket", "b", "--tokens", "t1,t2"];
        argv.extend_from_slice(args);
        Flags::try_parse_from(argv).expect("the flags parse")
    }

    #[test]
    fn defaults_match_the_contract() {
        let config = flags(&[]).validate().expect("defaults are valid");
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080", "default listen address");
        assert_eq!(config.s3.region, "us-east-1", "default region");
        assert_eq!(config.s3.url_expiry, Duration::from_secs(900), "default URL expiry");
        assert_eq!(config.key_prefix, "uploads", "default key prefix");
        let names: Vec<&str> = config.auth.tokens.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            vec![crate::auth::default_token_name("t1"), crate::auth::default_token_name("t2")],
            "tokens split on commas"
        );
        assert!(config.auth.oidc.is_none(), "no OpenID provider unless an issuer is given");
        assert_eq!(config.key_template.source(), DEFAULT_KEY_TEMPLATE, "today's keys by default");
        assert!(!config.s3.path_style && !config.s3.accelerate, "both switches default off");
        assert!(config.s3.static_credentials.is_none(), "no credentials means the AWS chain");
        assert_eq!(
            config.database,
            DatabaseUrl::Sqlite(PathBuf::from("./dropship-backend.sqlite")),
            "an embedded SQLite file by default"
        );
        assert!(config.webhook.is_none(), "no webhooks unless a receiver is given");
        assert!(config.updates.is_none(), "no update channels unless a folder is given");
    }

    #[test]
    fn an_updates_key_needs_a_folder_and_must_be_a_minisign_key() {
        let key = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3";
        let alone = flags(&["--updates-public-key", key]).validate();
        assert!(matches!(alone, Err(ConfigError::UpdatesKeyWithoutDir)), "a key without a folder is a mistake");
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().to_str().unwrap();
        let bad = flags(&["--updates-dir", folder, "--updates-public-key", "nonsense"]).validate();
        assert!(matches!(bad, Err(ConfigError::UpdatesPublicKey(_))), "a key that is not one is refused");
        let missing = flags(&["--updates-dir", "/nonexistent/dropship-updates"]).validate();
        assert!(matches!(missing, Err(ConfigError::UpdatesDir(_))), "the folder must exist");
        let ok = flags(&["--updates-dir", folder, "--updates-public-key", key]).validate().unwrap();
        assert!(ok.updates.is_some_and(|u| u.public_key.is_some()), "folder and key together configure it");
    }

    #[test]
    fn the_database_is_named_by_url_or_by_the_sqlite_shorthand() {
        let by_path = flags(&["--db", "/tmp/r.sqlite"]).validate().unwrap();
        assert_eq!(by_path.database, DatabaseUrl::Sqlite(PathBuf::from("/tmp/r.sqlite")), "--db is sqlite://");
        let pg = flags(&["--database-url", "postgres://u:p@127.0.0.1:5432/d"]).validate().unwrap();
        assert!(matches!(pg.database, DatabaseUrl::Postgres(_)), "Postgres by URL");
        let bad = flags(&["--database-url", "mysql://x"]).validate();
        assert!(matches!(bad, Err(ConfigError::DatabaseUrl(_))), "other schemes are refused");
        let both = Flags::try_parse_from([
            "dropship-backend",
            "--bucket",
            "b",
            "--tokens",
            "t",
            "--db",
            "x",
            "--database-url",
            "sqlite://y",
        ]);
        assert!(both.is_err(), "--db and --database-url together are ambiguous");
    }

    #[test]
    fn a_webhook_needs_both_its_url_and_its_secret() {
        let half = flags(&["--webhook-url", "https://app.example.com/hooks/dropship"]).validate();
        assert!(matches!(half, Err(ConfigError::HalfWebhook)), "a URL without a secret is refused");
        let half = flags(&["--webhook-secret", "s"]).validate();
        assert!(matches!(half, Err(ConfigError::HalfWebhook)), "a secret without a URL is refused");
        let bad = flags(&["--webhook-url", "ftp://x", "--webhook-secret", "s"]).validate();
        assert!(matches!(bad, Err(ConfigError::WebhookUrl { .. })), "only http(s)");
        let ok = flags(&["--webhook-url", "https://app.example.com/hooks/dropship", "--webhook-secret", "s"]);
        assert!(ok.validate().unwrap().webhook.is_some(), "both together configure it");
    }

    #[test]
    fn every_flag_has_the_environment_twin_the_contract_names() {
        use clap::CommandFactory;
        let expected = [
            ("listen", "DROPSHIP_BACKEND_LISTEN"),
            ("s3-endpoint", "DROPSHIP_S3_ENDPOINT"),
            ("region", "DROPSHIP_S3_REGION"),
            ("bucket", "DROPSHIP_S3_BUCKET"),
            ("access-key-id", "DROPSHIP_S3_ACCESS_KEY_ID"),
            ("secret-access-key", "DROPSHIP_S3_SECRET_ACCESS_KEY"),
            ("path-style", "DROPSHIP_S3_PATH_STYLE"),
            ("accelerate", "DROPSHIP_S3_ACCELERATE"),
            ("url-expiry-secs", "DROPSHIP_URL_EXPIRY_SECS"),
            ("tokens", "DROPSHIP_BACKEND_TOKENS"),
            ("admin-principals", "DROPSHIP_ADMIN_PRINCIPALS"),
            ("oidc-issuer", "DROPSHIP_OIDC_ISSUER"),
            ("oidc-audience", "DROPSHIP_OIDC_AUDIENCE"),
            ("oidc-client-id", "DROPSHIP_OIDC_CLIENT_ID"),
            ("oidc-user-claim", "DROPSHIP_OIDC_USER_CLAIM"),
            ("oidc-groups-claim", "DROPSHIP_OIDC_GROUPS_CLAIM"),
            ("admin-group", "DROPSHIP_ADMIN_GROUP"),
            ("oidc-scopes", "DROPSHIP_OIDC_SCOPES"),
            ("key-prefix", "DROPSHIP_KEY_PREFIX"),
            ("key-template", "DROPSHIP_KEY_TEMPLATE"),
            ("db", "DROPSHIP_BACKEND_DB"),
            ("database-url", "DROPSHIP_BACKEND_DATABASE_URL"),
            ("webhook-url", "DROPSHIP_WEBHOOK_URL"),
            ("webhook-secret", "DROPSHIP_WEBHOOK_SECRET"),
            ("header-read-timeout-secs", "DROPSHIP_HEADER_READ_TIMEOUT_SECS"),
            ("request-timeout-secs", "DROPSHIP_REQUEST_TIMEOUT_SECS"),
            ("max-concurrent-requests", "DROPSHIP_MAX_CONCURRENT_REQUESTS"),
            ("rate-limit", "DROPSHIP_RATE_LIMIT"),
            ("drain-timeout-secs", "DROPSHIP_DRAIN_TIMEOUT_SECS"),
            ("updates-dir", "DROPSHIP_UPDATES_DIR"),
            ("updates-public-key", "DROPSHIP_UPDATES_PUBLIC_KEY"),
            ("log-format", "DROPSHIP_LOG_FORMAT"),
        ];
        let command = Flags::command();
        let actual: Vec<(String, String)> = command
            .get_arguments()
            .filter_map(|arg| {
                let env = arg.get_env()?.to_string_lossy().into_owned();
                Some((arg.get_long()?.to_owned(), env))
            })
            .collect();
        let expected: Vec<(String, String)> = expected.iter().map(|(l, e)| (l.to_string(), e.to_string())).collect();
        assert_eq!(actual, expected, "flags and env twins exactly as docs/CONTRACTS.md lists them");
    }

    #[test]
    fn switches_take_boolish_values() {
        let parsed =
            Flags::try_parse_from(["dropship-backend", "--bucket", "b", "--tokens", "t"]).expect("the flags parse");
        assert!(!parsed.path_style, "off unless given");
        assert!(flags(&["--path-style"]).path_style, "a bare switch turns it on");
    }

    #[test]
    fn key_prefix_loses_surrounding_slashes_and_refuses_dot_segments() {
        assert_eq!(normalise_key_prefix("/a/b/").unwrap(), "a/b");
        assert_eq!(normalise_key_prefix("").unwrap(), "", "an empty prefix is allowed");
        assert!(normalise_key_prefix("a/../b").is_err(), "`..` segments are refused");
        assert!(normalise_key_prefix("a//b").is_err(), "empty segments are refused");
        assert!(normalise_key_prefix("a\\b").is_err(), "backslashes are refused");
    }

    #[test]
    fn rate_limits_read_as_rps_with_an_optional_burst() {
        assert_eq!(RateLimit::parse("2:5"), Ok(RateLimit { per_second: 2.0, burst: 5 }));
        assert_eq!(RateLimit::parse("0.5"), Ok(RateLimit { per_second: 0.5, burst: 1 }), "burst at least 1");
        assert_eq!(RateLimit::parse("20"), Ok(RateLimit { per_second: 20.0, burst: 20 }), "a second's worth");
        for bad in ["0", "-1", "x", "2:0", "2:x", "inf", "NaN"] {
            assert!(RateLimit::parse(bad).is_err(), "{bad:?} is refused");
        }
        let config = flags(&["--rate-limit", "3:6"]).validate().expect("valid");
        assert_eq!(config.serve.rate_limit, Some(RateLimit { per_second: 3.0, burst: 6 }));
        assert!(flags(&[]).validate().expect("valid").serve.rate_limit.is_none(), "unlimited by default");
    }

    #[test]
    fn the_header_read_timeout_is_at_most_thirty_seconds() {
        assert!(matches!(
            flags(&["--header-read-timeout-secs", "31"]).validate(),
            Err(ConfigError::HeaderReadTimeout(31))
        ));
        assert!(flags(&["--header-read-timeout-secs", "0"]).validate().is_err(), "zero would close every connection");
        let config = flags(&[]).validate().expect("valid");
        assert!(config.serve.header_read_timeout <= Duration::from_secs(30), "the default is within the bound");
        assert!(flags(&["--max-concurrent-requests", "0"]).validate().is_err(), "zero would refuse everything");
    }

    #[test]
    fn a_lone_access_key_is_refused() {
        let err = flags(&["--access-key-id", "AK"]).validate().unwrap_err();
        assert!(matches!(err, ConfigError::HalfCredentials), "half a credential pair is an error");
    }

    #[test]
    fn blank_tokens_do_not_count() {
        let parsed =
            Flags::try_parse_from(["dropship-backend", "--bucket", "b", "--tokens", " , "]).expect("the flags parse");
        assert!(matches!(parsed.validate(), Err(ConfigError::NoPrincipals)), "blank tokens are ignored");
    }

    fn bare(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["dropship-backend", "--bucket", "b"];
        argv.extend_from_slice(args);
        Flags::try_parse_from(argv).expect("the flags parse").validate()
    }

    const OIDC: [&str; 6] = [
        "--oidc-issuer",
        "https://id.example.com",
        "--oidc-audience",
        "urn:dropship:backend",
        "--oidc-client-id",
        "dropship-app",
    ];

    #[test]
    fn an_openid_issuer_alone_is_enough_and_its_defaults_match_the_contract() {
        let config = bare(&OIDC).expect("OIDC without static tokens is a valid setup");
        assert!(config.auth.tokens.is_empty(), "no static tokens needed");
        let oidc = config.auth.oidc.expect("OIDC is configured");
        assert_eq!(oidc.user_claim, "email", "users are named by their email by default");
        assert_eq!(oidc.groups_claim, "groups");
        assert_eq!(oidc.scopes, ["openid", "profile", "email", "offline_access"], "scopes split on spaces");
    }

    #[test]
    fn an_issuer_without_audience_or_client_id_is_refused() {
        assert!(matches!(bare(&OIDC[..4]), Err(ConfigError::OidcIncomplete("--oidc-client-id"))), "client id required");
        let no_audience = [OIDC[0], OIDC[1], OIDC[4], OIDC[5]];
        assert!(matches!(bare(&no_audience), Err(ConfigError::OidcIncomplete("--oidc-audience"))), "audience required");
        assert!(
            matches!(bare(&["--tokens", "t", "--oidc-audience", "a"]), Err(ConfigError::OidcWithoutIssuer(_))),
            "an audience without an issuer is a mistake worth naming"
        );
    }

    #[test]
    fn plain_http_issuers_are_accepted_only_on_loopback() {
        for ok in [
            "http://127.0.0.1:9000",
            "http://127.8.0.1",
            "http://[::1]:8080/realms/x",
            "http://localhost:3000",
            "https://id.example.com",
        ] {
            assert!(check_issuer_url(ok).is_ok(), "{ok} is accepted");
        }
        for bad in ["http://id.example.com", "http://10.0.0.1", "http://[::2]", "ftp://127.0.0.1", "not a url"] {
            assert!(check_issuer_url(bad).is_err(), "{bad} is refused");
        }
        let err = bare(&["--oidc-issuer", "http://id.example.com", "--oidc-audience", "a", "--oidc-client-id", "c"]);
        let message = err.unwrap_err().to_string();
        assert!(message.contains("loopback"), "the error says why: {message}");
    }

    #[test]
    fn named_tokens_and_admin_principals_are_read() {
        let config = bare(&["--tokens", "alice:t1, bob:t2", "--admin-principals", "bob"]).unwrap();
        let names: Vec<&str> = config.auth.tokens.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["alice", "bob"], "NAME:TOKEN names the principal");
        assert_eq!(config.auth.admin_principals, ["bob"]);
        assert!(matches!(bare(&["--tokens", ":t1"]), Err(ConfigError::Token(_))), "a nameless entry is refused");
    }

    #[test]
    fn neither_tokens_nor_an_issuer_is_refused() {
        assert!(matches!(bare(&[]), Err(ConfigError::NoPrincipals)), "somebody must be able to sign in");
    }

    #[test]
    fn key_templates_are_checked_at_startup() {
        assert!(bare(&["--tokens", "t", "--key-template", "{prefix}/{user}/{date}/{uuid}/{name}"]).is_ok());
        assert!(bare(&["--tokens", "t", "--key-template", "{prefix}/{uuid}-{name}"]).is_ok(), "flat keys are fine");
        let unknown = bare(&["--tokens", "t", "--key-template", "{prefix}/{team}/{uuid}/{name}"]);
        assert!(matches!(unknown, Err(ConfigError::KeyTemplate { .. })), "unknown placeholders are refused");
        let long_prefix = "p".repeat(900);
        let too_long = bare(&["--tokens", "t", "--key-prefix", &long_prefix]);
        assert!(
            matches!(too_long, Err(ConfigError::KeyTemplate { .. })),
            "keys that could pass 1,024 bytes are refused"
        );
    }

    #[test]
    fn expiry_outside_sigv4_limits_is_refused() {
        assert!(flags(&["--url-expiry-secs", "0"]).validate().is_err(), "zero seconds is refused");
        assert!(flags(&["--url-expiry-secs", "604801"]).validate().is_err(), "over 7 days is refused");
        assert!(flags(&["--url-expiry-secs", "1"]).validate().is_ok(), "one second is allowed");
    }

    #[test]
    fn accelerate_with_a_custom_endpoint_is_refused() {
        let err = flags(&["--accelerate", "--s3-endpoint", "http://127.0.0.1:1"]).validate();
        assert!(matches!(err, Err(ConfigError::AccelerateConflict)), "accelerate is AWS-only");
    }
}
