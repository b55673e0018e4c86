//! The machine's conditions that decide when uploads run: whether the network is metered and
//! whether the machine runs on battery (uploads may pause for either, per settings), and the
//! moments worth retrying at once instead of waiting out a backoff: resume from sleep and the
//! internet coming back. Linux follows NetworkManager, UPower and logind on the system D-Bus;
//! macOS and Windows poll their platform APIs (see `elsewhere.rs`).

#[cfg(not(target_os = "linux"))]
mod elsewhere;
#[cfg(target_os = "linux")]
mod linux;

use std::future::Future;

use serde::Serialize;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

/// What the machine is on, as far as uploads care. The default (unmetered, on mains) is also
/// what is reported wherever the machine cannot tell, so nothing pauses for want of knowledge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct MachineState {
    /// The network is metered (a phone's hotspot, a mobile link with a data cap).
    pub metered: bool,
    /// The machine runs on its battery.
    pub on_battery: bool,
}

/// A moment when work waiting to be retried should be retried at once: whatever made it fail
/// has likely just gone away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The machine has resumed from sleep.
    ResumedFromSleep,
    /// The internet is reachable again after it was not.
    ConnectivityReturned,
}

/// Which of the machine's services the monitor follows; whatever is not followed is reported
/// at its default (unmetered, on mains, no wakes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Following {
    /// Metered networks and connectivity (NetworkManager on Linux).
    pub network: bool,
    /// Battery (UPower on Linux).
    pub power: bool,
    /// Sleep and resume (logind on Linux).
    pub sleep: bool,
}

/// Wakes kept for a receiver that has not caught up. One that falls further behind gets
/// `RecvError::Lagged`, which means the same to a waiting retry: try now.
const WAKES_KEPT: usize = 16;

/// Follows the machine's network and power state in a background task, which stops when the
/// monitor is dropped. Never fails: what cannot be followed is reported at its default, and
/// [`ConditionsMonitor::following`] says what is followed.
pub struct ConditionsMonitor {
    // The monitor keeps a sender of each channel, so that receivers never see them close (a
    // closed channel is always ready, and would spin a `select!`) while the monitor lives,
    // even when the follower has given up.
    state: watch::Sender<MachineState>,
    wakes: broadcast::Sender<Wake>,
    following: watch::Receiver<Option<Following>>,
    _stop: DropGuard,
}

impl ConditionsMonitor {
    /// Follows the machine's own services: on Linux, those on the system D-Bus (the bus at
    /// `DBUS_SYSTEM_BUS_ADDRESS` when that is set).
    pub fn start(runtime: &tokio::runtime::Handle) -> ConditionsMonitor {
        #[cfg(target_os = "linux")]
        return Self::spawn(runtime, |reports| linux::follow(linux::Bus::System, reports));
        #[cfg(not(target_os = "linux"))]
        return Self::spawn(runtime, elsewhere::follow);
    }

    /// Follows the services on the D-Bus at `address` instead of the system bus: tests run
    /// their own bus with stand-ins for NetworkManager, UPower and logind.
    #[cfg(target_os = "linux")]
    pub fn start_on_bus(runtime: &tokio::runtime::Handle, address: &str) -> ConditionsMonitor {
        let bus = linux::Bus::Address(address.to_owned());
        Self::spawn(runtime, move |reports| linux::follow(bus, reports))
    }

    fn spawn<F, Task>(runtime: &tokio::runtime::Handle, follow: F) -> ConditionsMonitor
    where
        F: FnOnce(Reports) -> Task,
        Task: Future<Output = ()> + Send + 'static,
    {
        let reports = Reports {
            state: watch::channel(MachineState::default()).0,
            wakes: broadcast::channel(WAKES_KEPT).0,
            following: watch::channel(None).0,
        };
        let stop = CancellationToken::new();
        let monitor = ConditionsMonitor {
            state: reports.state.clone(),
            wakes: reports.wakes.clone(),
            following: reports.following.subscribe(),
            _stop: stop.clone().drop_guard(),
        };
        let task = follow(reports);
        runtime.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = task => {}
            }
        });
        monitor
    }

    /// The machine's state now (`borrow()`) and on every change (`changed()`).
    pub fn state(&self) -> watch::Receiver<MachineState> {
        self.state.subscribe()
    }

    /// Every [`Wake`] from now on. A retry that waits out a backoff takes a receiver before it
    /// starts waiting and stops waiting at whichever comes first:
    ///
    /// ```no_run
    /// # async fn wait_to_retry(monitor: &dropship_core::conditions::ConditionsMonitor, backoff: std::time::Duration) {
    /// let mut wakes = monitor.wakes();
    /// tokio::select! {
    ///     () = tokio::time::sleep(backoff) => {}
    ///     // A wake, or `Lagged` (several of them): either way, retry now.
    ///     _ = wakes.recv() => {}
    /// }
    /// # }
    /// ```
    pub fn wakes(&self) -> broadcast::Receiver<Wake> {
        self.wakes.subscribe()
    }

    /// Which services are followed, once the monitor has reached them or found them missing
    /// (at most a few seconds after start, even on a bus that does not answer).
    pub async fn following(&self) -> Following {
        let mut following = self.following.clone();
        // An error says the follower ended without a word, so it follows nothing.
        let known = following.wait_for(Option::is_some).await.map(|known| *known);
        known.ok().flatten().unwrap_or_default()
    }
}

/// Whether a sleep of `asked` that took `passed` of wall-clock time spanned a suspend: the
/// timers stop while the machine sleeps and the wall clock does not. A minute of slack keeps a
/// busy machine or a small clock correction from counting; a clock set forward by hand counts,
/// which costs one early retry.
#[cfg_attr(target_os = "linux", allow(dead_code))]
fn slept_through(asked: std::time::Duration, passed: std::time::Duration) -> bool {
    passed > asked + std::time::Duration::from_secs(60)
}

/// Where a platform's follower reports what it sees; clones of the monitor's senders.
struct Reports {
    state: watch::Sender<MachineState>,
    wakes: broadcast::Sender<Wake>,
    following: watch::Sender<Option<Following>>,
}

impl Reports {
    fn metered(&self, metered: bool) {
        let changed = self.state.send_if_modified(|state| std::mem::replace(&mut state.metered, metered) != metered);
        if changed {
            tracing::debug!(metered, "the network's metering changed");
        }
    }

    fn on_battery(&self, on_battery: bool) {
        let changed =
            self.state.send_if_modified(|state| std::mem::replace(&mut state.on_battery, on_battery) != on_battery);
        if changed {
            tracing::debug!(on_battery, "the machine's power source changed");
        }
    }

    /// Back to the defaults, when the source of the state is gone: an upload must not stay
    /// paused on knowledge that can no longer change.
    fn forget_state(&self) {
        self.state.send_replace(MachineState::default());
    }

    fn wake(&self, wake: Wake) {
        tracing::debug!(?wake, "waking waiting retries");
        // An error only says that nothing is waiting right now.
        let _ = self.wakes.send(wake);
    }

    fn started(&self, following: Following) {
        self.following.send_replace(Some(following));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reports() -> Reports {
        Reports {
            state: watch::channel(MachineState::default()).0,
            wakes: broadcast::channel(WAKES_KEPT).0,
            following: watch::channel(None).0,
        }
    }

    #[test]
    fn only_a_wall_clock_far_ahead_of_the_timer_counts_as_a_sleep() {
        let asked = std::time::Duration::from_secs(5);
        assert!(!slept_through(asked, std::time::Duration::from_secs(5)));
        assert!(!slept_through(asked, std::time::Duration::from_secs(40)), "a busy machine is late, not asleep");
        assert!(slept_through(asked, std::time::Duration::from_secs(20 * 60)));
    }

    #[test]
    fn reporting_a_value_the_state_already_has_does_not_wake_its_receivers() {
        let reports = reports();
        let mut state = reports.state.subscribe();
        reports.metered(false);
        reports.on_battery(false);
        assert!(!state.has_changed().unwrap(), "unmetered and on mains is the default: nothing changed");
        reports.on_battery(true);
        assert!(state.has_changed().unwrap(), "going on battery is a change");
        assert_eq!(*state.borrow_and_update(), MachineState { metered: false, on_battery: true });
        reports.on_battery(true);
        assert!(!state.has_changed().unwrap(), "on battery again is no change");
    }

    #[test]
    fn forgetting_the_state_reports_the_defaults() {
        let reports = reports();
        reports.metered(true);
        reports.on_battery(true);
        reports.forget_state();
        assert_eq!(*reports.state.borrow(), MachineState::default());
    }
}
