//! Which identity provider a backend trusts (`GET {backend}/api/v1/auth`), and where that
//! provider's endpoints are (OpenID discovery).

use serde::{Deserialize, Serialize};

use super::{read_json, unreachable, AuthError};

/// What the backend says about signing in: `issuer` is `None` when it takes only tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct SignInInfo {
    pub issuer: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub audience: Option<String>,
}

/// Asks the backend how to sign in. A backend that does not know the route (an older
/// `dropship-backend`, a Rails or Companion backend) answers 404: no identity provider.
pub async fn sign_in_info(http: &reqwest::Client, backend_url: &url::Url) -> Result<SignInInfo, AuthError> {
    let url = route(backend_url, "api/v1/auth");
    let response = http.get(url.clone()).send().await.map_err(|e| unreachable("The backend", &url, &e))?;
    if matches!(response.status().as_u16(), 404 | 405) {
        return Ok(SignInInfo { issuer: None, client_id: None, scopes: Vec::new(), audience: None });
    }
    read_json("The backend", response).await
}

/// `route` joined under the backend URL as a directory, so `https://h/prefix` keeps `/prefix`.
pub(crate) fn route(base: &url::Url, route: &str) -> url::Url {
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    base.join(route).expect("routes are valid relative URLs")
}

/// An identity provider's endpoints and the client this organisation registered there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityProvider {
    pub issuer: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    device_authorization_endpoint: Option<String>,
    #[serde(default)]
    revocation_endpoint: Option<String>,
}

impl IdentityProvider {
    /// The backend's identity provider, discovered; `NoIdentityProvider` when it has none.
    pub async fn for_backend(http: &reqwest::Client, backend_url: &url::Url) -> Result<IdentityProvider, AuthError> {
        let info = sign_in_info(http, backend_url).await?;
        let no_provider =
            || AuthError::NoIdentityProvider { backend: backend_url.as_str().trim_end_matches('/').into() };
        let issuer = info.issuer.ok_or_else(no_provider)?;
        let client_id = info.client_id.filter(|c| !c.is_empty()).ok_or_else(no_provider)?;
        Self::discover(http, &issuer, client_id, info.scopes).await
    }

    /// Reads `{issuer}/.well-known/openid-configuration` and checks that it speaks for `issuer`.
    pub async fn discover(
        http: &reqwest::Client,
        issuer: &str,
        client_id: String,
        scopes: Vec<String>,
    ) -> Result<IdentityProvider, AuthError> {
        let issuer_url = url::Url::parse(issuer).map_err(|e| AuthError::BadAnswer {
            what: "The backend",
            url: issuer.to_owned(),
            detail: format!("the issuer is not a URL: {e}"),
        })?;
        check_transport(&issuer_url)?;
        let discovery_url = route(&issuer_url, ".well-known/openid-configuration");
        let response = http
            .get(discovery_url.clone())
            .send()
            .await
            .map_err(|e| unreachable("The identity provider", &discovery_url, &e))?;
        let discovery: Discovery = read_json("The identity provider", response).await?;
        if discovery.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Err(AuthError::BadAnswer {
                what: "The identity provider",
                url: discovery_url.to_string(),
                detail: format!("it says it is {:?}, not {issuer:?}", discovery.issuer),
            });
        }
        for endpoint in [&discovery.authorization_endpoint, &discovery.token_endpoint, &discovery.jwks_uri] {
            let parsed = url::Url::parse(endpoint).map_err(|e| AuthError::BadAnswer {
                what: "The identity provider",
                url: discovery_url.to_string(),
                detail: format!("{endpoint:?} is not a URL: {e}"),
            })?;
            check_transport(&parsed)?;
        }
        let scopes = if scopes.is_empty() {
            ["openid", "profile", "email", "offline_access"].map(String::from).to_vec()
        } else {
            scopes
        };
        Ok(IdentityProvider {
            issuer: discovery.issuer,
            client_id,
            scopes,
            authorization_endpoint: discovery.authorization_endpoint,
            token_endpoint: discovery.token_endpoint,
            jwks_uri: discovery.jwks_uri,
            device_authorization_endpoint: discovery.device_authorization_endpoint,
            revocation_endpoint: discovery.revocation_endpoint,
        })
    }
}

/// Tokens and codes travel only over HTTPS, except to this machine (a provider for tests or
/// development on loopback).
fn check_transport(url: &url::Url) -> Result<(), AuthError> {
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    if url.scheme() == "https" || (url.scheme() == "http" && loopback) {
        Ok(())
    } else {
        Err(AuthError::BadAnswer {
            what: "The identity provider",
            url: url.to_string(),
            detail: "an identity provider must be reached over https:// (plain http only on this machine)".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_provider_addresses_must_be_https_unless_on_this_machine() {
        let ok = |u: &str| check_transport(&url::Url::parse(u).unwrap()).is_ok();
        assert!(ok("https://id.example.com/realms/staff"), "https anywhere");
        assert!(ok("http://127.0.0.1:4000"), "plain http on loopback");
        assert!(ok("http://localhost:4000"), "plain http on localhost");
        assert!(ok("http://[::1]:4000"), "plain http on IPv6 loopback");
        assert!(!ok("http://id.example.com"), "plain http elsewhere is refused");
        assert!(!ok("ftp://127.0.0.1"), "other schemes are refused");
    }

    #[test]
    fn routes_stay_under_a_backend_url_with_a_path() {
        let base = url::Url::parse("https://h.example/prefix").unwrap();
        assert_eq!(route(&base, "api/v1/auth").as_str(), "https://h.example/prefix/api/v1/auth");
    }
}
