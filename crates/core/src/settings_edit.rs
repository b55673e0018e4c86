//! Settings as the window edits them. The page never holds the token: it says whether to keep,
//! replace or remove it. Changes that would send uploads (or the token) somewhere else are
//! named here, so the shell asks the person in a native dialog the page cannot answer for it.

use serde::Deserialize;

use crate::network::ProxySetting;
use crate::Settings;

/// What the window wants done with the token it was never shown.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ts_rs::TS)]
#[serde(tag = "action", content = "token", rename_all = "snake_case")]
#[ts(export)]
pub enum TokenEdit {
    Keep,
    Replace(String),
    Remove,
}

/// The settings the page may see: everything but the token and the proxy password.
pub fn for_page(settings: &Settings) -> Settings {
    let mut page = Settings { token: String::new(), ..settings.clone() };
    page.network.proxy = page.network.proxy.with_password(String::new());
    page
}

/// `next` from the page, with the token resolved against what is saved.
pub fn resolve(current: Option<&Settings>, next: Settings, token: TokenEdit) -> Settings {
    let token = match token {
        TokenEdit::Keep => current.map(|c| c.token.clone()).unwrap_or_default(),
        TokenEdit::Replace(token) => token,
        TokenEdit::Remove => String::new(),
    };
    let mut next = Settings { token, ..next };
    // The page never holds the proxy password either: an empty one keeps the saved password
    // of the same proxy and user; a new one replaces it.
    if let (
        ProxySetting::Manual { url, username, password },
        Some(ProxySetting::Manual { url: saved_url, username: saved_user, password: saved }),
    ) = (&next.network.proxy, current.map(|c| &c.network.proxy))
    {
        if password.is_empty() && url == saved_url && username == saved_user {
            next.network.proxy = next.network.proxy.clone().with_password(saved.clone());
        }
    }
    next
}

/// A sentence naming what would send uploads or the saved token elsewhere, when `next`
/// changes the backend or the allowed upload hosts of settings already in use. The first
/// settings of a fresh install need no confirmation: nothing is at stake yet.
pub fn redirecting_change(current: Option<&Settings>, next: &Settings) -> Option<String> {
    let current = current.filter(|c| !c.backend_url.trim().is_empty())?;
    let same_backend =
        current.backend_url.trim().trim_end_matches('/') == next.backend_url.trim().trim_end_matches('/');
    let keeps_token = !current.token.is_empty() && current.token == next.token;
    let mut changes = Vec::new();
    if !same_backend {
        changes.push(format!(
            "Uploads will go through {} instead of {}{}.",
            next.backend_url.trim(),
            current.backend_url.trim(),
            if keeps_token { ", and the saved token will be sent there" } else { "" }
        ));
    }
    if current.upload_hosts != next.upload_hosts {
        let describe = |hosts: &[String]| if hosts.is_empty() { "any host".to_owned() } else { hosts.join(", ") };
        changes.push(format!(
            "Files may be sent to {} (was {}).",
            describe(&next.upload_hosts),
            describe(&current.upload_hosts)
        ));
    }
    if let ProxySetting::Manual { url, .. } = &next.network.proxy {
        if current.network.proxy != next.network.proxy
            && !matches!(&current.network.proxy, ProxySetting::Manual { url: old, .. } if old == url)
        {
            changes.push(format!("Every request, uploads and the backend's, will go through the proxy {url}."));
        }
    }
    (!changes.is_empty()).then(|| changes.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str, token: &str, hosts: &[&str]) -> Settings {
        Settings {
            backend_url: url.into(),
            api: Default::default(),
            token: token.into(),
            transfer: Default::default(),
            upload_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            log_level: Default::default(),
            network: Default::default(),
        }
    }

    #[test]
    fn the_page_never_sees_the_token_and_keeping_it_needs_no_copy_from_the_page() {
        let saved = settings("https://b.example", "secret", &[]);
        assert_eq!(for_page(&saved).token, "", "the page gets no token");
        let next = resolve(Some(&saved), for_page(&saved), TokenEdit::Keep);
        assert_eq!(next.token, "secret", "keeping fills the saved token back in");
        assert_eq!(resolve(Some(&saved), for_page(&saved), TokenEdit::Remove).token, "");
        assert_eq!(resolve(Some(&saved), for_page(&saved), TokenEdit::Replace("new".into())).token, "new");
    }

    #[test]
    fn pointing_saved_settings_elsewhere_or_widening_the_hosts_needs_a_confirmation() {
        let saved = settings("https://b.example", "secret", &["s3.example.com"]);
        assert_eq!(redirecting_change(None, &saved), None, "a fresh install asks nothing");
        assert_eq!(redirecting_change(Some(&saved), &saved), None, "no change, no question");
        let elsewhere = settings("https://evil.example", "secret", &["s3.example.com"]);
        let question = redirecting_change(Some(&saved), &elsewhere).expect("another backend is asked about");
        assert!(question.contains("evil.example") && question.contains("saved token"), "{question}");
        let open = settings("https://b.example", "secret", &[]);
        let question = redirecting_change(Some(&saved), &open).expect("clearing the hosts is asked about");
        assert!(question.contains("any host"), "{question}");
    }

    #[test]
    fn the_page_never_sees_the_proxy_password_and_an_empty_one_keeps_the_saved() {
        let mut saved = settings("https://b.example", "secret", &[]);
        saved.network.proxy = "http://ann:pw@proxy:3128".parse().unwrap();
        let page = for_page(&saved);
        assert_eq!(page.network.proxy.password(), "", "the page gets no proxy password");
        assert_eq!(resolve(Some(&saved), page.clone(), TokenEdit::Keep).network.proxy.password(), "pw");
        let mut other_user = page;
        other_user.network.proxy = "http://bob@proxy:3128".parse().unwrap();
        assert_eq!(resolve(Some(&saved), other_user, TokenEdit::Keep).network.proxy.password(), "", "not bob's");
    }

    #[test]
    fn sending_everything_through_another_proxy_needs_a_confirmation() {
        let saved = settings("https://b.example", "secret", &[]);
        let mut proxied = saved.clone();
        proxied.network.proxy = "http://proxy.corp:3128".parse().unwrap();
        let question = redirecting_change(Some(&saved), &proxied).expect("a new proxy is asked about");
        assert!(question.contains("proxy.corp:3128"), "{question}");
        assert_eq!(redirecting_change(Some(&proxied), &proxied), None);
    }

    #[test]
    fn token_edits_arrive_from_the_page_as_tagged_json() {
        let keep: TokenEdit = serde_json::from_str(r#"{"action":"keep"}"#).unwrap();
        assert_eq!(keep, TokenEdit::Keep);
        let replace: TokenEdit = serde_json::from_str(r#"{"action":"replace","token":"t"}"#).unwrap();
        assert_eq!(replace, TokenEdit::Replace("t".into()));
    }
}
