//! How Dropship reaches the network: through which proxy, trusting which certificates, and what
//! it says when a proxy or a certificate is the reason a request failed. The engine builds its one
//! HTTP client here, for backend calls and uploads alike, and builds it again when these
//! settings change.

mod desktop_proxy;
mod failure;

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;

pub use desktop_proxy::{desktop_proxy, DesktopProxy};
pub use failure::{classify_failure, NetworkFailure, PROXY_AUTH};

use crate::schedule::BandwidthSchedule;

/// The network part of the settings, shared by the app and the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(default)]
#[ts(export)]
pub struct NetworkSettings {
    pub proxy: ProxySetting,
    /// A PEM file of certificate authorities to trust besides the system's, for an
    /// organisation's own CA on a machine whose trust store does not hold it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub ca_file: Option<String>,
    /// Hold uploads from watched folders while the connection is metered (a phone's hotspot).
    pub pause_on_metered_watched: bool,
    /// Hold uploads started by hand while the connection is metered; off by default, since the
    /// person chose to send them now.
    pub pause_on_metered_manual: bool,
    /// Hold every upload while the machine runs on battery.
    pub pause_on_battery: bool,
    /// Bandwidth limits by day and time, in local time; outside them the transfer settings'
    /// limit applies.
    pub bandwidth_schedule: BandwidthSchedule,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        NetworkSettings {
            proxy: ProxySetting::System,
            ca_file: None,
            pause_on_metered_watched: true,
            pause_on_metered_manual: false,
            pause_on_battery: false,
            bandwidth_schedule: BandwidthSchedule::default(),
        }
    }
}

impl NetworkSettings {
    pub fn is_default(&self) -> bool {
        *self == NetworkSettings::default()
    }

    pub fn validate(&self) -> Result<(), Error> {
        if let ProxySetting::Manual { url, .. } = &self.proxy {
            proxy_url(url)?;
        }
        Ok(())
    }

    /// The proxy and the trusted certificates: what the HTTP client is built from. Settings that
    /// differ only in what to pause on share one client.
    fn client_shape(&self) -> (&ProxySetting, &Option<String>) {
        (&self.proxy, &self.ca_file)
    }

    pub fn needs_new_client(&self, other: &NetworkSettings) -> bool {
        self.client_shape() != other.client_shape()
    }
}

/// Which proxy requests go through.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize, ts_rs::TS)]
#[serde(tag = "mode", rename_all = "lowercase")]
#[ts(export)]
pub enum ProxySetting {
    /// The desktop's proxy settings (GNOME, KDE; the system settings on macOS and Windows),
    /// then `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`.
    #[default]
    System,
    /// Straight to the servers, whatever the system says.
    None,
    /// This proxy for everything. The password lives in the OS keyring beside the token.
    Manual {
        url: String,
        #[serde(default)]
        username: String,
        #[serde(default)]
        password: String,
    },
}

// The proxy password is a secret: keep it out of debug output and therefore out of logs.
impl fmt::Debug for ProxySetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxySetting::System => f.write_str("System"),
            ProxySetting::None => f.write_str("None"),
            ProxySetting::Manual { url, username, password } => f
                .debug_struct("Manual")
                .field("url", &redact_userinfo(url))
                .field("username", username)
                .field("password", &if password.is_empty() { "<none>" } else { "<redacted>" })
                .finish(),
        }
    }
}

impl ProxySetting {
    /// The password, which is kept in the keyring rather than in `settings.json`.
    pub fn password(&self) -> &str {
        match self {
            ProxySetting::Manual { password, .. } => password,
            _ => "",
        }
    }

    pub fn with_password(self, secret: String) -> ProxySetting {
        match self {
            ProxySetting::Manual { url, username, .. } => ProxySetting::Manual { url, username, password: secret },
            other => other,
        }
    }
}

/// `--proxy system`, `--proxy none`, or `--proxy http://user:password@proxy.example.com:3128`.
impl FromStr for ProxySetting {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim() {
            "system" => Ok(ProxySetting::System),
            "none" | "direct" => Ok(ProxySetting::None),
            raw => {
                let mut url = proxy_url(raw)?;
                let username = percent_decode(url.username());
                let password = percent_decode(url.password().unwrap_or(""));
                let _ = url.set_username("");
                let _ = url.set_password(None);
                Ok(ProxySetting::Manual { url: url.to_string().trim_end_matches('/').to_owned(), username, password })
            }
        }
    }
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// A proxy URL as the person typed it, checked: `http://` or `https://` and a host. A bare
/// `host:port` is taken as `http://host:port`, as browsers and curl do.
fn proxy_url(raw: &str) -> Result<url::Url, Error> {
    let raw = raw.trim();
    let with_scheme = if raw.contains("://") { raw.to_owned() } else { format!("http://{raw}") };
    let shown = redact_userinfo(raw);
    let url = url::Url::parse(&with_scheme).map_err(|e| {
        Error::InvalidSettings(format!(
            "the proxy {shown:?} is not a URL ({e}); it should look like http://proxy.example.com:3128, or be \
             `system` or `none`"
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(Error::InvalidSettings(format!(
            "the proxy {shown:?} must be an http:// or https:// URL with a host (SOCKS proxies are not supported)"
        )));
    }
    Ok(url)
}

/// `http://user:secret@proxy:3128` → `http://user:***@proxy:3128`, for messages and logs.
fn redact_userinfo(raw: &str) -> String {
    match (raw.find("://"), raw.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => match raw[scheme_end + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &raw[..scheme_end + 3], &raw[at..]),
            None => raw.to_owned(),
        },
        _ => raw.to_owned(),
    }
}

/// The one HTTP client of an engine, for backend calls and uploads alike, going through the
/// configured proxy and trusting the system's certificate authorities (and `ca_file`'s).
pub fn http_client(network: &NetworkSettings) -> Result<reqwest::Client, Error> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("dropship/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        // No redirects, for uploads or backend calls. An upload URL is checked (scheme,
        // allowed hosts) before a byte is sent; a redirect would carry the file past those
        // checks to wherever the server points. A backend call carries the bearer token,
        // which must reach only the backend URL in Settings. A 3xx is an error instead.
        .redirect(reqwest::redirect::Policy::none())
        // The system's roots (where an organisation installs its own CA, and where a
        // TLS-inspecting proxy's CA goes) besides the web's; verification is never off.
        .tls_built_in_native_certs(true)
        .tls_built_in_webpki_certs(true);
    if let Some(path) = network.ca_file.as_deref().filter(|p| !p.trim().is_empty()) {
        for certificate in read_ca_file(Path::new(path.trim()))? {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder = match &network.proxy {
        ProxySetting::None => builder.no_proxy(),
        ProxySetting::Manual { url, username, password } => {
            builder.proxy(manual_proxy(url, username, password)?.no_proxy(reqwest::NoProxy::from_env()))
        }
        ProxySetting::System => match desktop_proxy() {
            DesktopProxy::Manual { http, https, no_proxy } => {
                let no_proxy = || reqwest::NoProxy::from_string(&no_proxy.join(","));
                if let Some(proxy) = &http {
                    builder = builder.proxy(system_proxy(|u| reqwest::Proxy::http(u), proxy)?.no_proxy(no_proxy()));
                }
                if let Some(proxy) = &https {
                    builder = builder.proxy(system_proxy(|u| reqwest::Proxy::https(u), proxy)?.no_proxy(no_proxy()));
                }
                builder
            }
            DesktopProxy::Automatic { pac_url } => {
                tracing::warn!(
                    pac_url = %pac_url,
                    "the desktop chooses proxies with a PAC script, which Dropship cannot run; it uses \
                     HTTPS_PROXY and the other variables instead. Set the proxy by hand in Settings if uploads fail"
                );
                builder
            }
            // reqwest reads the environment (and on macOS and Windows the system's settings).
            DesktopProxy::NotSet => builder,
        },
    };
    builder.build().map_err(|e| Error::InvalidSettings(format!("could not set up HTTP: {}", failure::innermost(&e))))
}

fn manual_proxy(url: &str, username: &str, password: &str) -> Result<reqwest::Proxy, Error> {
    let parsed = proxy_url(url)?;
    let proxy = reqwest::Proxy::all(parsed.as_str())
        .map_err(|e| Error::InvalidSettings(format!("the proxy {:?} cannot be used: {e}", redact_userinfo(url))))?;
    Ok(if username.is_empty() { proxy } else { proxy.basic_auth(username, password) })
}

fn system_proxy(make: impl Fn(&str) -> reqwest::Result<reqwest::Proxy>, url: &str) -> Result<reqwest::Proxy, Error> {
    make(url).map_err(|e| {
        Error::InvalidSettings(format!(
            "the desktop's proxy setting {:?} cannot be used ({e}); fix it in the system settings, or choose \
             a proxy in Dropship's Settings",
            redact_userinfo(url)
        ))
    })
}

/// The certificates of a PEM file, with a message that says what is wrong with the file.
fn read_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, Error> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| {
        Error::InvalidSettings(format!(
            "the CA file {shown} cannot be read ({e}); check the path in Settings or --ca-file"
        ))
    })?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| Error::InvalidSettings(format!("the CA file {shown} is not a PEM certificate bundle ({e})")))?;
    if certificates.is_empty() {
        return Err(Error::InvalidSettings(format!(
            "the CA file {shown} holds no certificate; it should contain -----BEGIN CERTIFICATE----- blocks"
        )));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_flag_is_system_none_or_a_url_whose_credentials_are_taken_apart() {
        assert_eq!("system".parse::<ProxySetting>().unwrap(), ProxySetting::System);
        assert_eq!("none".parse::<ProxySetting>().unwrap(), ProxySetting::None);
        assert_eq!(
            "http://ann:p%40ss@proxy.example.com:3128".parse::<ProxySetting>().unwrap(),
            ProxySetting::Manual {
                url: "http://proxy.example.com:3128".into(),
                username: "ann".into(),
                password: "p@ss".into()
            }
        );
        let bare = "proxy.example.com:8080".parse::<ProxySetting>().unwrap();
        assert!(matches!(bare, ProxySetting::Manual { ref url, .. } if url == "http://proxy.example.com:8080"));
    }

    #[test]
    fn a_socks_or_hostless_proxy_is_refused_with_the_expected_form() {
        for bad in ["socks5://proxy:1080", "http://", "http://:3128"] {
            let err = bad.parse::<ProxySetting>().unwrap_err().to_string();
            assert!(err.contains("http://"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_proxy_password_never_appears_in_debug_output_or_messages() {
        let proxy = "http://ann:s3cr3t@proxy:3128".parse::<ProxySetting>().unwrap();
        assert!(!format!("{proxy:?}").contains("s3cr3t"));
        let err = "ftp://ann:s3cr3t@proxy:3128".parse::<ProxySetting>().unwrap_err().to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
        assert!(err.contains("ann:***@proxy"), "{err}");
    }

    #[test]
    fn settings_saved_before_networks_load_with_the_defaults() {
        let network: NetworkSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(network, NetworkSettings::default());
        assert!(network.pause_on_metered_watched && !network.pause_on_metered_manual && !network.pause_on_battery);
    }

    #[test]
    fn a_ca_file_that_is_missing_or_holds_no_certificate_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let missing =
            NetworkSettings { ca_file: Some(dir.path().join("nope.pem").display().to_string()), ..Default::default() };
        assert!(http_client(&missing).unwrap_err().to_string().contains("cannot be read"));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let empty = NetworkSettings { ca_file: Some(empty.display().to_string()), ..Default::default() };
        assert!(http_client(&empty).unwrap_err().to_string().contains("holds no certificate"));
    }

    #[test]
    fn only_the_proxy_and_certificates_call_for_a_new_client() {
        let base = NetworkSettings::default();
        assert!(!base.needs_new_client(&NetworkSettings { pause_on_battery: true, ..base.clone() }));
        assert!(base.needs_new_client(&NetworkSettings { proxy: ProxySetting::None, ..base.clone() }));
    }
}
