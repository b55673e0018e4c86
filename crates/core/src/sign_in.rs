//! Signing in and out through the engine, for the window and the CLI alike: find the backend's
//! identity provider, run the browser or device flow, keep the session and start using it.

use crate::auth::{self, BrowserSignIn, DeviceSignIn, IdentityProvider, SignInInfo};
use crate::{Engine, Error};

/// Who is signed in, as the window shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, ts_rs::TS)]
#[ts(export)]
pub struct SignInState {
    /// What the configured backend offers; `None` when it could not be asked.
    pub provider: Option<SignInInfo>,
    /// The signed-in person, when the session is for the configured backend.
    pub user: Option<String>,
}

impl Engine {
    fn backend_url(&self) -> Result<url::Url, Error> {
        self.settings().ok_or(Error::NotConfigured)?.validate()
    }

    /// The signed-in person for the configured backend.
    pub fn signed_in_user(&self) -> Option<String> {
        let backend = self.settings()?.backend_url;
        self.session().filter(|s| s.is_for(&backend)).map(|s| s.user().to_owned())
    }

    /// Who is signed in and whether the configured backend offers signing in; a backend that
    /// cannot be asked leaves `provider` empty rather than failing.
    pub async fn sign_in_state(&self) -> SignInState {
        let provider = match self.sign_in_info().await {
            Ok(info) => Some(info),
            Err(e) => {
                tracing::info!("could not ask the backend how to sign in: {e}");
                None
            }
        };
        SignInState { provider, user: self.signed_in_user() }
    }

    /// Runs a whole browser sign-in: opens the system browser at the provider and waits for it
    /// to come back. Returns who signed in.
    pub async fn sign_in_with_browser(&self) -> Result<String, Error> {
        let sign_in = self.start_browser_sign_in().await?;
        auth::open_in_browser(&sign_in.authorization_url)?;
        self.finish_browser_sign_in(sign_in).await
    }

    /// What the configured backend says about signing in (`GET /api/v1/auth`).
    pub async fn sign_in_info(&self) -> Result<SignInInfo, Error> {
        let backend = self.backend_url()?;
        Ok(auth::sign_in_info(&self.http(), &backend).await?)
    }

    async fn identity_provider(&self) -> Result<(url::Url, IdentityProvider), Error> {
        let backend = self.backend_url()?;
        let provider = IdentityProvider::for_backend(&self.http(), &backend).await?;
        Ok((backend, provider))
    }

    /// Starts a browser sign-in: open its `authorization_url`, then [`Engine::finish_browser_sign_in`].
    pub async fn start_browser_sign_in(&self) -> Result<BrowserSignIn, Error> {
        let (_, provider) = self.identity_provider().await?;
        Ok(BrowserSignIn::start(provider).await?)
    }

    /// Waits for the browser, keeps the session and uses it from now on; returns who signed in.
    pub async fn finish_browser_sign_in(&self, sign_in: BrowserSignIn) -> Result<String, Error> {
        let backend = self.backend_url()?;
        let session = sign_in.finish(&self.http(), &backend, auth::BROWSER_SIGN_IN_TIMEOUT).await?;
        self.keep_session(session).await
    }

    /// Starts a sign-in on another device: show its code and address, then
    /// [`Engine::finish_device_sign_in`].
    pub async fn start_device_sign_in(&self) -> Result<DeviceSignIn, Error> {
        let (_, provider) = self.identity_provider().await?;
        Ok(DeviceSignIn::start(&self.http(), provider).await?)
    }

    pub async fn finish_device_sign_in(&self, sign_in: DeviceSignIn) -> Result<String, Error> {
        let backend = self.backend_url()?;
        let session = sign_in.finish(&self.http(), &backend).await?;
        self.keep_session(session).await
    }

    async fn keep_session(&self, session: auth::Session) -> Result<String, Error> {
        let user = session.user.clone();
        let (data_dir, kept) = (self.data_dir().to_owned(), session.clone());
        tokio::task::spawn_blocking(move || kept.save(&data_dir))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        self.set_session(Some(session));
        tracing::info!(%user, "signed in");
        Ok(user)
    }

    /// Revokes the refresh token where the provider allows it and forgets the session.
    /// Returns who was signed in.
    pub async fn sign_out(&self) -> Result<Option<String>, Error> {
        let Some(session) = self.session() else {
            let data_dir = self.data_dir().to_owned();
            tokio::task::spawn_blocking(move || auth::forget_session(&data_dir))
                .await
                .map_err(|e| Error::Internal(e.to_string()))??;
            return Ok(None);
        };
        session.sign_out().await?;
        self.set_session(None);
        Ok(Some(session.user().to_owned()))
    }

    /// Asks the backend who the current credential belongs to (`GET /api/v1/me`).
    pub async fn whoami(&self) -> Result<Me, Error> {
        let settings = self.settings().ok_or(Error::NotConfigured)?;
        let http = crate::backend::http_for(&settings, self.http(), self.credential_for(&settings))?;
        Ok(http.get("api/v1/me").await?)
    }
}

/// `GET /api/v1/me`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Me {
    pub user: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub admin: bool,
}
