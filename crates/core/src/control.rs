//! Pause, resume and cancel, for one upload and for everything. Each upload gets a [`Gate`]
//! that its requests pass through: a paused gate holds new requests back and interrupts the
//! ones in flight (they are sent again on resume), a cancelled one ends the upload. The
//! machine's conditions (a metered connection, battery power) hold uploads the same way, per
//! kind: those from watched folders and those started by hand are held separately.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub struct Controls {
    all_paused: watch::Sender<bool>,
    held_watched: watch::Sender<bool>,
    held_by_hand: watch::Sender<bool>,
    /// Bumped to make every request in flight stop and go again (a connection that may have
    /// gone stale during sleep is not waited on).
    restarts: watch::Sender<u64>,
    uploads: Mutex<HashMap<String, UploadControl>>,
}

/// How an upload started, which decides what the machine's conditions hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    ByHand,
    FromWatchedFolder,
}

impl From<crate::store::Source> for Started {
    fn from(source: crate::store::Source) -> Self {
        match source {
            crate::store::Source::Watch => Started::FromWatchedFolder,
            crate::store::Source::Window | crate::store::Source::Cli => Started::ByHand,
        }
    }
}

#[derive(Clone)]
struct UploadControl {
    paused: watch::Sender<bool>,
    cancel: CancellationToken,
}

/// The upload was cancelled.
#[derive(Debug)]
pub struct Cancelled;

#[derive(Clone)]
pub struct Gate {
    paused: watch::Receiver<bool>,
    all_paused: watch::Receiver<bool>,
    held: watch::Receiver<bool>,
    restarts: watch::Receiver<u64>,
    cancel: CancellationToken,
}

impl Default for Controls {
    fn default() -> Self {
        Controls {
            all_paused: watch::channel(false).0,
            held_watched: watch::channel(false).0,
            held_by_hand: watch::channel(false).0,
            restarts: watch::channel(0).0,
            uploads: Mutex::new(HashMap::new()),
        }
    }
}

impl Controls {
    fn uploads(&self) -> std::sync::MutexGuard<'_, HashMap<String, UploadControl>> {
        self.uploads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts controlling an upload; its gate opens and closes with pause and resume, and with
    /// the holds for uploads started the way this one was.
    pub fn register(&self, upload_id: &str, started: Started) -> Gate {
        let control = UploadControl { paused: watch::channel(false).0, cancel: CancellationToken::new() };
        let held = match started {
            Started::ByHand => &self.held_by_hand,
            Started::FromWatchedFolder => &self.held_watched,
        };
        let gate = Gate {
            paused: control.paused.subscribe(),
            all_paused: self.all_paused.subscribe(),
            held: held.subscribe(),
            restarts: self.restarts.subscribe(),
            cancel: control.cancel.clone(),
        };
        self.uploads().insert(upload_id.to_owned(), control);
        gate
    }

    pub fn forget(&self, upload_id: &str) {
        self.uploads().remove(upload_id);
    }

    /// Pauses or resumes one upload; false when no such upload is running.
    pub fn set_paused(&self, upload_id: &str, paused: bool) -> bool {
        self.uploads().get(upload_id).map(|c| c.paused.send_replace(paused)).is_some()
    }

    pub fn set_all_paused(&self, paused: bool) {
        self.all_paused.send_replace(paused);
    }

    pub fn all_paused(&self) -> bool {
        *self.all_paused.borrow()
    }

    /// Holds (or lets go) the uploads started each way, for the machine's conditions.
    pub fn set_held(&self, watched: bool, by_hand: bool) {
        self.held_watched.send_replace(watched);
        self.held_by_hand.send_replace(by_hand);
    }

    /// Changes whenever [`Controls::restart_in_flight`] is called.
    pub fn restarts(&self) -> watch::Receiver<u64> {
        self.restarts.subscribe()
    }

    /// Makes every request in flight stop and go again at once: parts from their start, the
    /// bytes already acknowledged kept.
    pub fn restart_in_flight(&self) {
        self.restarts.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Cancels one upload; false when no such upload is running.
    pub fn cancel(&self, upload_id: &str) -> bool {
        self.uploads().get(upload_id).map(|c| c.cancel.cancel()).is_some()
    }

    pub fn cancel_all(&self) {
        for control in self.uploads().values() {
            control.cancel.cancel();
        }
    }
}

impl Gate {
    /// A gate no control reaches: for work that cannot be paused or cancelled.
    pub fn inert() -> Gate {
        Gate {
            paused: watch::channel(false).1,
            all_paused: watch::channel(false).1,
            held: watch::channel(false).1,
            restarts: watch::channel(0).1,
            cancel: CancellationToken::new(),
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    fn is_open(&self) -> bool {
        !*self.paused.borrow() && !*self.all_paused.borrow() && !*self.held.borrow()
    }

    /// Returns once the upload may send, or `Err` when it was cancelled meanwhile.
    pub async fn wait_open(&mut self) -> Result<(), Cancelled> {
        loop {
            if self.cancel.is_cancelled() {
                return Err(Cancelled);
            }
            if self.is_open() {
                // A restart asked for before this request starts is not meant for it.
                self.restarts.mark_unchanged();
                return Ok(());
            }
            tokio::select! {
                _ = changed(&mut self.paused) => {}
                _ = changed(&mut self.all_paused) => {}
                _ = changed(&mut self.held) => {}
                _ = self.cancel.cancelled() => {}
            }
        }
    }

    /// Resolves when the upload is paused, held, cancelled or told to restart: what is in
    /// flight should stop.
    pub async fn closed(&mut self) {
        loop {
            if self.cancel.is_cancelled() || !self.is_open() {
                return;
            }
            tokio::select! {
                _ = changed(&mut self.paused) => {}
                _ = changed(&mut self.all_paused) => {}
                _ = changed(&mut self.held) => {}
                _ = self.cancel.cancelled() => {}
                _ = changed_count(&mut self.restarts) => return,
            }
        }
    }

    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }
}

/// Waits for a change; a control that is gone (its upload finished) never changes again.
async fn changed_count(receiver: &mut watch::Receiver<u64>) {
    if receiver.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn changed(receiver: &mut watch::Receiver<bool>) {
    if receiver.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_paused_gate_opens_on_resume_and_a_cancelled_one_never_does() {
        let controls = Controls::default();
        let mut gate = controls.register("u", Started::ByHand);
        assert!(gate.wait_open().await.is_ok());
        controls.set_all_paused(true);
        let mut waiting = gate.clone();
        let opened = tokio::spawn(async move { waiting.wait_open().await.is_ok() });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!opened.is_finished(), "a pause holds the upload back");
        controls.set_all_paused(false);
        assert!(opened.await.unwrap(), "resume lets it go on");

        assert!(controls.cancel("u"));
        assert!(gate.wait_open().await.is_err(), "a cancelled upload never opens again");
        assert!(!controls.cancel("unknown"));
    }

    #[tokio::test]
    async fn a_hold_stops_only_the_uploads_started_that_way_and_a_restart_only_what_is_in_flight() {
        let controls = Controls::default();
        let mut by_hand = controls.register("hand", Started::ByHand);
        let mut watched = controls.register("watched", Started::FromWatchedFolder);
        controls.set_held(true, false);
        assert!(by_hand.wait_open().await.is_ok(), "uploads started by hand go on");
        let quick = std::time::Duration::from_millis(30);
        assert!(tokio::time::timeout(quick, watched.wait_open()).await.is_err(), "watched uploads wait");
        assert!(tokio::time::timeout(quick, watched.closed()).await.is_ok(), "what is in flight stops");
        controls.set_held(false, false);
        assert!(watched.wait_open().await.is_ok(), "letting go opens the gate");

        controls.restart_in_flight();
        assert!(by_hand.wait_open().await.is_ok());
        assert!(
            tokio::time::timeout(quick, by_hand.closed()).await.is_err(),
            "a restart from before the request started is not for it"
        );
        let mut in_flight = by_hand.clone();
        let stopped = tokio::spawn(async move { in_flight.closed().await });
        tokio::time::sleep(quick).await;
        controls.restart_in_flight();
        assert!(tokio::time::timeout(std::time::Duration::from_secs(5), stopped).await.is_ok(), "a restart stops it");
        assert!(by_hand.wait_open().await.is_ok(), "and it may go again at once");
    }

    #[tokio::test]
    async fn a_gate_whose_control_is_gone_waits_quietly_instead_of_spinning() {
        let controls = Controls::default();
        let mut gate = controls.register("u", Started::ByHand);
        controls.forget("u");
        let closed = tokio::time::timeout(std::time::Duration::from_millis(50), gate.closed()).await;
        assert!(closed.is_err(), "an open gate stays open once nobody can close it");
    }
}
