//! How the engine reaches out: its HTTP client (rebuilt when the proxy or the trusted
//! certificates change, renewed after sleep), the sign-in session, and the backend a batch
//! signs with. Kept apart so the handle reads as what it offers, not how it connects.

use std::sync::Arc;

use super::Engine;
use crate::auth::{LiveSession, Session};
use crate::backend::{self, Credential, PatientBackend, SigningBackend};
use crate::network::NetworkSettings;
use crate::{Error, Event, Settings};

/// The engine's HTTP client and the network settings it was built for.
pub(super) struct HttpClient {
    pub(super) client: reqwest::Client,
    pub(super) network: NetworkSettings,
}

impl Engine {
    pub(super) fn backend(&self) -> Result<Arc<dyn SigningBackend>, Error> {
        self.connect(&self.settings().ok_or(Error::NotConfigured)?)
    }

    fn connect(&self, settings: &Settings) -> Result<Arc<dyn SigningBackend>, Error> {
        // Each request asks the engine for its client then, so a backend made before the
        // machine slept uses the one made after it.
        let engine = Arc::downgrade(&self.inner);
        let client: backend::http::ClientSource =
            Arc::new(move || engine.upgrade().map(|inner| Engine { inner }.http()).unwrap_or_default());
        backend::connect(settings, client, self.credential_for(settings))
    }

    /// A pasted token wins; else the session, when it was made for this backend.
    pub(crate) fn credential_for(&self, settings: &Settings) -> Credential {
        let session = self.session().filter(|s| s.is_for(&settings.backend_url));
        Credential::choose(&settings.token, session)
    }

    /// The signed-in session, if any (whichever backend it is for).
    pub fn session(&self) -> Option<Arc<LiveSession>> {
        self.inner.session.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Uses `session` from now on (`None` after signing out); running batches keep theirs.
    pub fn set_session(&self, session: Option<Session>) {
        let live = session.map(|s| LiveSession::new(&self.inner.data_dir, self.http(), s));
        *self.inner.session.write().unwrap_or_else(|p| p.into_inner()) = live;
    }

    /// The HTTP client every request of this engine goes through (cheap to clone).
    pub fn http(&self) -> reqwest::Client {
        self.inner.http.read().unwrap_or_else(|p| p.into_inner()).client.clone()
    }

    /// Builds the HTTP client anew when the proxy or the trusted certificates changed, for the
    /// backend, the uploads and the sign-in's refreshes alike.
    pub(super) fn use_network(&self, network: &NetworkSettings) -> Result<(), Error> {
        if !self.inner.http.read().unwrap_or_else(|p| p.into_inner()).network.needs_new_client(network) {
            return Ok(());
        }
        let client = crate::network::http_client(network)?;
        if let Some(session) = self.session() {
            session.use_http(client.clone());
        }
        *self.inner.http.write().unwrap_or_else(|p| p.into_inner()) = HttpClient { client, network: network.clone() };
        Ok(())
    }

    /// A new HTTP client with the same settings: none of the old one's pooled connections,
    /// which may have died while the machine slept without either end noticing.
    pub(super) fn renew_http(&self) {
        let network = self.inner.http.read().unwrap_or_else(|p| p.into_inner()).network.clone();
        match crate::network::http_client(&network) {
            Ok(client) => {
                if let Some(session) = self.session() {
                    session.use_http(client.clone());
                }
                self.inner.http.write().unwrap_or_else(|p| p.into_inner()).client = client;
            }
            Err(e) => tracing::warn!("could not renew the HTTP client after sleep: {e}"),
        }
    }

    /// The backend a batch signs with: it waits out outages, telling the shells while it does.
    pub(super) fn connect_patiently(&self, settings: &Settings) -> Result<Arc<dyn SigningBackend>, Error> {
        let engine = self.clone();
        let on_outage: backend::OnOutage = Arc::new(move |attempt, pause, error| {
            let reason = Error::from(error.clone()).info();
            engine.emit(Event::BackendRetrying { attempt, retry_in_ms: pause.as_millis() as u64, reason });
        });
        let patient = PatientBackend::new(self.connect(settings)?, self.backend_wait(), on_outage)
            .retrying_now_with(self.inner.retry_now.clone())
            .restarting_with(self.inner.controls.restarts());
        Ok(Arc::new(patient))
    }
}
