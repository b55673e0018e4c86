//! How the engine follows the machine's conditions (see [`crate::conditions`]): a metered
//! network or the battery holds uploads per the settings, and a wake or a returning internet
//! ends backoffs at once, after sleep on a fresh HTTP client. Kept apart from the batch
//! pipeline, which only asks whether the conditions are known yet.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::Engine;
use crate::conditions::{ConditionsMonitor, MachineState, Wake};
use crate::holds::{HoldReason, Holds};
use crate::Event;

/// The longest a batch waits for the machine's state to be read at start.
const CONDITIONS_WAIT: Duration = Duration::from_secs(5);

/// The machine's conditions as the engine follows them, and what they hold.
#[derive(Default)]
pub(super) struct Conditions {
    /// Dropping it stops the follower (a new monitor replaces the old one).
    monitor: Option<(Arc<ConditionsMonitor>, tokio_util::sync::DropGuard)>,
    /// The condition the person chose "Upload anyway" for; forgotten when it ends.
    anyway: Option<HoldReason>,
    holds: Holds,
}

impl Engine {
    /// Follows `monitor` from now on, in place of the machine's own services (tests give one on
    /// a private bus): its metered network and battery hold uploads per the settings, and its
    /// wakes end backoffs at once.
    pub fn follow_conditions(&self, monitor: ConditionsMonitor) {
        let monitor = Arc::new(monitor);
        let stop = CancellationToken::new();
        let (mut state, mut wakes) = (monitor.state(), monitor.wakes());
        self.conditions().monitor = Some((Arc::clone(&monitor), stop.clone().drop_guard()));
        self.reconsider_holds();
        let weak = Arc::downgrade(&self.inner);
        let follower = async move {
            loop {
                let wake = tokio::select! {
                    changed = state.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        None
                    }
                    wake = wakes.recv() => match wake {
                        Ok(wake) => Some(wake),
                        // Several at once: the strongest thing any of them asks for.
                        Err(broadcast::error::RecvError::Lagged(_)) => Some(Wake::ResumedFromSleep),
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                };
                let Some(inner) = weak.upgrade() else { break };
                let engine = Engine { inner };
                match wake {
                    None => engine.reconsider_holds(),
                    Some(wake) => engine.on_wake(wake),
                }
            }
        };
        let shutdown = self.inner.shutdown.clone();
        self.inner.runtime.spawn(async move {
            tokio::select! {
                () = follower => {}
                () = stop.cancelled() => {}
                () = shutdown.cancelled() => {}
            }
        });
    }

    fn conditions(&self) -> std::sync::MutexGuard<'_, Conditions> {
        self.inner.conditions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns once the monitor has read the machine's state (a few seconds at most, and at
    /// once after the first time), with the holds set from it: a batch started right after
    /// launch on a metered connection is held, not sent before the state arrives.
    pub(super) async fn conditions_known(&self) {
        let monitor = self.conditions().monitor.as_ref().map(|(monitor, _)| Arc::clone(monitor));
        if let Some(monitor) = monitor {
            // A bus that never answers must not stop uploads: then they go on the defaults.
            let _ = tokio::time::timeout(CONDITIONS_WAIT, monitor.following()).await;
            self.reconsider_holds();
        }
    }

    /// The machine's state as last reported (unmetered, on mains where it cannot tell).
    pub fn machine_state(&self) -> MachineState {
        self.conditions().monitor.as_ref().map(|(m, _)| *m.state().borrow()).unwrap_or_default()
    }

    /// What the machine's conditions hold now, and why.
    pub fn holds(&self) -> Holds {
        self.conditions().holds.clone()
    }

    /// Lets held uploads go for as long as the condition that holds them lasts.
    pub fn upload_anyway(&self) {
        let reason = self.conditions().holds.reason;
        tracing::info!(?reason, "uploading anyway");
        self.conditions().anyway = reason;
        self.reconsider_holds();
    }

    /// Works out the holds afresh from the machine's state and the settings, and tells the
    /// shells when they changed.
    pub(super) fn reconsider_holds(&self) {
        let state = self.machine_state();
        let network = self.settings().map(|s| s.network).unwrap_or_default();
        let holds = {
            let mut conditions = self.conditions();
            let unheld = Holds::for_conditions(state, &network, None);
            if unheld.reason.is_none() || unheld.reason != conditions.anyway {
                // The condition the person uploaded through has ended: the next one holds again.
                conditions.anyway = None;
            }
            let holds = Holds::for_conditions(state, &network, conditions.anyway);
            if holds == conditions.holds {
                return;
            }
            conditions.holds = holds.clone();
            self.inner.controls.set_held(holds.watched, holds.by_hand);
            holds
        };
        tracing::info!(?state, ?holds, "the machine's conditions changed what uploads wait");
        self.emit(Event::HoldsChanged { holds });
    }

    /// Whatever waits to be retried goes now; after sleep, what is in flight is sent again on
    /// fresh connections rather than waited on until its read timeout.
    fn on_wake(&self, wake: Wake) {
        tracing::info!(?wake, "retrying what waits at once");
        if wake == Wake::ResumedFromSleep {
            self.renew_http();
            self.inner.controls.restart_in_flight();
        }
        self.inner.retry_now.ring();
        if let Err(e) = self.inner.store.reports_due_now() {
            tracing::warn!("could not make the queued reports due now: {e}");
        }
        self.inner.outbox.wake();
    }
}
