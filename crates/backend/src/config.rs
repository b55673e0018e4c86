//! Command-line flags and their environment twins, and the checks that turn them into a
//! configuration the server can trust (a usable key prefix, at least one token, a sane expiry).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

// Boolish: the env twins of the switches take 1/0, yes/no, on/off as well as true/false.
use clap::builder::BoolishValueParser;
use clap::Parser;

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

    /// Comma-separated bearer tokens that clients may present.
    #[arg(long, env = "DROPSHIP_BACKEND_TOKENS", value_delimiter = ',', hide_env_values = true)]
    pub tokens: Vec<String>,

    /// First segment(s) of every key this backend hands out.
    #[arg(long, env = "DROPSHIP_KEY_PREFIX", default_value = "uploads")]
    pub key_prefix: String,

    /// SQLite file that holds the upload records.
    #[arg(long, env = "DROPSHIP_BACKEND_DB", default_value = "./dropship-backend.sqlite")]
    pub db: PathBuf,
}

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

/// The validated configuration the server runs on.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub s3: S3Settings,
    pub tokens: Vec<String>,
    /// Normalised: no leading or trailing `/`; may be empty (keys then start with the UUID).
    pub key_prefix: String,
    pub db: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no bearer token configured: pass --tokens a,b or set DROPSHIP_BACKEND_TOKENS")]
    NoTokens,
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
}

impl Flags {
    pub fn validate(self) -> Result<Config, ConfigError> {
        let tokens: Vec<String> =
            self.tokens.into_iter().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect();
        if tokens.is_empty() {
            return Err(ConfigError::NoTokens);
        }
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
            tokens,
            key_prefix: normalise_key_prefix(&self.key_prefix)?,
            db: self.db,
        })
    }
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
        assert_eq!(config.tokens, vec!["t1", "t2"], "tokens split on commas");
        assert!(!config.s3.path_style && !config.s3.accelerate, "both switches default off");
        assert!(config.s3.static_credentials.is_none(), "no credentials means the AWS chain");
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
            ("key-prefix", "DROPSHIP_KEY_PREFIX"),
            ("db", "DROPSHIP_BACKEND_DB"),
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
    fn a_lone_access_key_is_refused() {
        let err = flags(&["--access-key-id", "AK"]).validate().unwrap_err();
        assert!(matches!(err, ConfigError::HalfCredentials), "half a credential pair is an error");
    }

    #[test]
    fn blank_tokens_do_not_count() {
        let parsed =
            Flags::try_parse_from(["dropship-backend", "--bucket", "b", "--tokens", " , "]).expect("the flags parse");
        assert!(matches!(parsed.validate(), Err(ConfigError::NoTokens)), "blank tokens are ignored");
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
