//! The desktop's own proxy settings on Linux, where no single system API holds them: GNOME's
//! (read with `gsettings`, so whichever backend GNOME uses is honoured) and KDE's
//! (`kioslaverc`). On macOS and Windows reqwest reads the system's settings itself (the
//! SystemConfiguration framework; the WinINet registry keys), so there is nothing to do here.
//!
//! PAC scripts are not run: that needs a JavaScript engine inside the uploader for one setting,
//! and a wrong guess sends files the wrong way silently. When the desktop is set to a PAC URL
//! Dropship says so in its log and falls back on the environment variables.

/// What the desktop says about proxies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DesktopProxy {
    /// Nothing set (or no desktop we know): the environment variables decide.
    NotSet,
    /// Proxies typed into the desktop's settings, as URLs with any credentials in them.
    Manual { http: Option<String>, https: Option<String>, no_proxy: Vec<String> },
    /// The desktop picks proxies with a PAC script.
    Automatic { pac_url: String },
}

/// The desktop's proxy settings for this session.
pub fn desktop_proxy() -> DesktopProxy {
    #[cfg(all(unix, not(target_os = "macos")))]
    {
        linux::read()
    }
    #[cfg(not(all(unix, not(target_os = "macos"))))]
    {
        DesktopProxy::NotSet
    }
}

#[cfg(all(unix, not(target_os = "macos")))]
mod linux {
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::process::{Command, Stdio};

    use super::DesktopProxy;

    pub fn read() -> DesktopProxy {
        let desktop = std::env::var("XDG_CURRENT_DESKTOP").unwrap_or_default().to_ascii_lowercase();
        if desktop.split(':').any(|d| d == "kde") {
            return kde_config().map_or(DesktopProxy::NotSet, |text| parse_kioslaverc(&text));
        }
        // GNOME and the desktops built on its settings (Unity, Cinnamon, Budgie, Pantheon…)
        // keep them in org.gnome.system.proxy; without gsettings there is nothing to read.
        gnome_settings().map_or(DesktopProxy::NotSet, |text| parse_gsettings(&text))
    }

    fn gnome_settings() -> Option<String> {
        let output = Command::new("gsettings")
            .args(["list-recursively", "org.gnome.system.proxy"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn kde_config() -> Option<String> {
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| dirs::home_dir().map(|home| home.join(".config")))?;
        std::fs::read_to_string(config.join("kioslaverc")).ok()
    }

    /// `gsettings list-recursively org.gnome.system.proxy`: one `schema key value` per line,
    /// values in GVariant text form (`'text'`, `3128`, `true`, `['a', 'b']`).
    pub(super) fn parse_gsettings(text: &str) -> DesktopProxy {
        let values: HashMap<(&str, &str), &str> = text
            .lines()
            .filter_map(|line| {
                let (schema, rest) = line.split_once(' ')?;
                let (key, value) = rest.split_once(' ')?;
                Some(((schema.trim_start_matches("org.gnome.system.proxy").trim_start_matches('.'), key), value.trim()))
            })
            .collect();
        let get = |schema: &str, key: &str| values.get(&(schema, key)).copied().unwrap_or("");
        match unquote(get("", "mode")).as_str() {
            "manual" => {}
            "auto" => return DesktopProxy::Automatic { pac_url: unquote(get("", "autoconfig-url")) },
            _ => return DesktopProxy::NotSet,
        }
        let server = |schema: &str| {
            let host = unquote(get(schema, "host"));
            let port = get(schema, "port").trim_start_matches("uint32 ").trim_start_matches("int32 ");
            (!host.is_empty() && port != "0").then(|| (host, port.to_owned()))
        };
        let http = server("http").map(|(host, port)| {
            let credentials = if get("http", "use-authentication") == "true" {
                let user = unquote(get("http", "authentication-user"));
                let password = unquote(get("http", "authentication-password"));
                format!("{}:{}@", encode(&user), encode(&password))
            } else {
                String::new()
            };
            format!("http://{credentials}{}:{port}", bracket(&host))
        });
        let https = match server("https") {
            Some((host, port)) => Some(format!("http://{}:{port}", bracket(&host))),
            // GNOME sends every protocol through the HTTP proxy when told to use the same one.
            None if get("", "use-same-proxy") != "false" => http.clone(),
            None => None,
        };
        if http.is_none() && https.is_none() {
            if server("socks").is_some() {
                tracing::warn!("the desktop's proxy is a SOCKS proxy, which Dropship does not support; going direct");
            }
            return DesktopProxy::NotSet;
        }
        DesktopProxy::Manual { http, https, no_proxy: list(get("", "ignore-hosts")) }
    }

    /// KDE's `kioslaverc`, section `[Proxy Settings]`: `ProxyType` 1 is manual, 2 a PAC URL, 4
    /// the environment; proxies are `http://host:port` or the older `http://host port`.
    pub(super) fn parse_kioslaverc(text: &str) -> DesktopProxy {
        let mut in_section = false;
        let mut values = HashMap::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_section = line == "[Proxy Settings]";
            } else if let Some((key, value)) = line.split_once('=').filter(|_| in_section) {
                values.insert(key.trim(), value.trim());
            }
        }
        let get = |key: &str| values.get(key).copied().unwrap_or("");
        let server = |key: &str| {
            let value = get(key).trim();
            (!value.is_empty()).then(|| value.replacen(' ', ":", 1))
        };
        match get("ProxyType") {
            "1" => {
                // KDE can invert the list (`ReversedException`); that is too rare to guess at.
                let no_proxy = get("NoProxyFor").split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
                DesktopProxy::Manual {
                    http: server("httpProxy"),
                    https: server("httpsProxy"),
                    no_proxy: no_proxy.collect(),
                }
            }
            "2" => DesktopProxy::Automatic { pac_url: get("Proxy Config Script").to_owned() },
            _ => DesktopProxy::NotSet,
        }
    }

    fn unquote(value: &str) -> String {
        value.trim().trim_start_matches('\'').trim_end_matches('\'').replace("\\'", "'")
    }

    /// `['localhost', '127.0.0.0/8']` (or `@as []`) → the entries.
    fn list(value: &str) -> Vec<String> {
        let inner = value.trim().trim_start_matches("@as").trim().trim_start_matches('[').trim_end_matches(']');
        inner.split(',').map(unquote).filter(|s| !s.is_empty()).collect()
    }

    fn encode(text: &str) -> String {
        percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
    }

    fn bracket(host: &str) -> String {
        if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        }
    }
}

#[cfg(all(test, unix, not(target_os = "macos")))]
mod tests {
    use super::linux::{parse_gsettings, parse_kioslaverc};
    use super::DesktopProxy;

    const GNOME_MANUAL: &str = "org.gnome.system.proxy autoconfig-url ''
org.gnome.system.proxy ignore-hosts ['localhost', '127.0.0.0/8', '::1']
org.gnome.system.proxy mode 'manual'
org.gnome.system.proxy use-same-proxy true
org.gnome.system.proxy.http authentication-password 'p@ss'
org.gnome.system.proxy.http authentication-user 'ann'
org.gnome.system.proxy.http host 'proxy.corp'
org.gnome.system.proxy.http port 3128
org.gnome.system.proxy.http use-authentication true
org.gnome.system.proxy.https host ''
org.gnome.system.proxy.https port 0
";

    #[test]
    fn gnome_manual_proxies_carry_their_credentials_and_cover_https_when_shared() {
        let expected = Some("http://ann:p%40ss@proxy.corp:3128".to_owned());
        assert_eq!(
            parse_gsettings(GNOME_MANUAL),
            DesktopProxy::Manual {
                http: expected.clone(),
                https: expected,
                no_proxy: vec!["localhost".into(), "127.0.0.0/8".into(), "::1".into()]
            }
        );
    }

    #[test]
    fn gnome_without_a_manual_proxy_leaves_it_to_the_environment_and_names_a_pac_url() {
        assert_eq!(parse_gsettings(&GNOME_MANUAL.replace("'manual'", "'none'")), DesktopProxy::NotSet);
        let auto = GNOME_MANUAL
            .replace("'manual'", "'auto'")
            .replace("autoconfig-url ''", "autoconfig-url 'http://wpad/proxy.pac'");
        assert_eq!(parse_gsettings(&auto), DesktopProxy::Automatic { pac_url: "http://wpad/proxy.pac".into() });
        assert_eq!(parse_gsettings(""), DesktopProxy::NotSet, "no schema installed");
    }

    #[test]
    fn kde_manual_proxies_in_both_spellings() {
        let text = "[General]\nx=1\n[Proxy Settings]\nProxyType=1\nhttpProxy=http://proxy.corp 3128\nhttpsProxy=http://proxy.corp:3129\nNoProxyFor=localhost, .corp.example\n";
        assert_eq!(
            parse_kioslaverc(text),
            DesktopProxy::Manual {
                http: Some("http://proxy.corp:3128".into()),
                https: Some("http://proxy.corp:3129".into()),
                no_proxy: vec!["localhost".into(), ".corp.example".into()]
            }
        );
        assert_eq!(parse_kioslaverc("[Proxy Settings]\nProxyType=0\n"), DesktopProxy::NotSet);
    }
}
