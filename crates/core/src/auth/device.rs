//! Sign-in on another device (the device authorisation grant, RFC 8628), for machines without
//! a browser: the person opens an address on their phone or laptop and types a short code.

use std::time::Duration;

use serde::Deserialize;

use super::provider::IdentityProvider;
use super::session::{token_request, Session};
use super::{read_json, unreachable, AuthError};

/// RFC 8628's default polling interval, and what `slow_down` adds to it.
const DEFAULT_INTERVAL_SECS: u64 = 5;
const SLOW_DOWN_SECS: u64 = 5;

/// A device sign-in waiting for the person to approve it elsewhere.
pub struct DeviceSignIn {
    provider: IdentityProvider,
    device_code: String,
    interval: Duration,
    expires_in: Duration,
    /// The code to type.
    pub user_code: String,
    /// Where to type it.
    pub verification_uri: String,
    /// The same address with the code filled in, where the provider offers one.
    pub verification_uri_complete: Option<String>,
}

#[derive(Deserialize)]
struct DeviceAnswer {
    device_code: String,
    user_code: String,
    verification_uri: String,
    #[serde(default)]
    verification_uri_complete: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    interval: Option<u64>,
}

impl DeviceSignIn {
    pub async fn start(http: &reqwest::Client, provider: IdentityProvider) -> Result<DeviceSignIn, AuthError> {
        let endpoint = provider.device_authorization_endpoint.clone().ok_or_else(|| {
            AuthError::Refused(
                "this identity provider does not offer sign-in on another device; sign in in a browser instead".into(),
            )
        })?;
        let url = url::Url::parse(&endpoint).map_err(|e| AuthError::BadAnswer {
            what: "The identity provider",
            url: endpoint.clone(),
            detail: e.to_string(),
        })?;
        let scope = provider.scopes.join(" ");
        let form = [("client_id", provider.client_id.as_str()), ("scope", scope.as_str())];
        let response = http
            .post(url.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| unreachable("The identity provider", &url, &e))?;
        let answer: DeviceAnswer = read_json("The identity provider", response).await?;
        Ok(DeviceSignIn {
            provider,
            device_code: answer.device_code,
            interval: Duration::from_secs(answer.interval.unwrap_or(DEFAULT_INTERVAL_SECS).max(1)),
            expires_in: Duration::from_secs(answer.expires_in.unwrap_or(600)),
            user_code: answer.user_code,
            verification_uri: answer.verification_uri,
            verification_uri_complete: answer.verification_uri_complete,
        })
    }

    /// Polls the provider, as often as it allows, until the person approves, refuses, or the
    /// code expires.
    pub async fn finish(self, http: &reqwest::Client, backend_url: &url::Url) -> Result<Session, AuthError> {
        let deadline = tokio::time::Instant::now() + self.expires_in;
        let mut interval = self.interval;
        loop {
            tokio::time::sleep(interval).await;
            if tokio::time::Instant::now() >= deadline {
                return Err(AuthError::TimedOut(self.expires_in));
            }
            let form = [
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", self.device_code.as_str()),
                ("client_id", self.provider.client_id.as_str()),
            ];
            match token_request(http, &self.provider, &form).await? {
                Ok(answer) => return Session::establish(http, backend_url, self.provider, answer).await,
                Err((code, _)) if code == "authorization_pending" => {}
                Err((code, _)) if code == "slow_down" => interval += Duration::from_secs(SLOW_DOWN_SECS),
                Err((code, _)) if code == "expired_token" => return Err(AuthError::TimedOut(self.expires_in)),
                Err((code, description)) => {
                    return Err(AuthError::Refused(format!("{code} {description}").trim().to_owned()))
                }
            }
        }
    }
}
