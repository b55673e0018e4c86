//! Pause, resume and cancel, for one upload and for everything. Each upload gets a [`Gate`]
//! that its requests pass through: a paused gate holds new requests back and interrupts the
//! ones in flight (they are sent again on resume), a cancelled one ends the upload.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub struct Controls {
    all_paused: watch::Sender<bool>,
    uploads: Mutex<HashMap<String, UploadControl>>,
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
    cancel: CancellationToken,
}

impl Default for Controls {
    fn default() -> Self {
        Controls { all_paused: watch::channel(false).0, uploads: Mutex::new(HashMap::new()) }
    }
}

impl Controls {
    fn uploads(&self) -> std::sync::MutexGuard<'_, HashMap<String, UploadControl>> {
        self.uploads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts controlling an upload; its gate opens and closes with pause and resume.
    pub fn register(&self, upload_id: &str) -> Gate {
        let control = UploadControl { paused: watch::channel(false).0, cancel: CancellationToken::new() };
        let gate = Gate {
            paused: control.paused.subscribe(),
            all_paused: self.all_paused.subscribe(),
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
        Gate { paused: watch::channel(false).1, all_paused: watch::channel(false).1, cancel: CancellationToken::new() }
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    fn is_open(&self) -> bool {
        !*self.paused.borrow() && !*self.all_paused.borrow()
    }

    /// Returns once the upload may send, or `Err` when it was cancelled meanwhile.
    pub async fn wait_open(&mut self) -> Result<(), Cancelled> {
        loop {
            if self.cancel.is_cancelled() {
                return Err(Cancelled);
            }
            if self.is_open() {
                return Ok(());
            }
            tokio::select! {
                _ = changed(&mut self.paused) => {}
                _ = changed(&mut self.all_paused) => {}
                _ = self.cancel.cancelled() => {}
            }
        }
    }

    /// Resolves when the upload is paused or cancelled: what is in flight should stop.
    pub async fn closed(&mut self) {
        loop {
            if self.cancel.is_cancelled() || !self.is_open() {
                return;
            }
            tokio::select! {
                _ = changed(&mut self.paused) => {}
                _ = changed(&mut self.all_paused) => {}
                _ = self.cancel.cancelled() => {}
            }
        }
    }

    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }
}

/// Waits for a change; a control that is gone (its upload finished) never changes again.
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
        let mut gate = controls.register("u");
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
    async fn a_gate_whose_control_is_gone_waits_quietly_instead_of_spinning() {
        let controls = Controls::default();
        let mut gate = controls.register("u");
        controls.forget("u");
        let closed = tokio::time::timeout(std::time::Duration::from_millis(50), gate.closed()).await;
        assert!(closed.is_err(), "an open gate stays open once nobody can close it");
    }
}
