//! macOS and Windows, polled: battery power from the platform's power API; whether the
//! connection is metered and reaches the internet (Windows: the internet profile's
//! `ConnectionCost`; macOS: Network.framework's path monitor, `isExpensive` or Low Data Mode's
//! `isConstrained`, read as it last reported); resume from sleep
//! from the wall clock jumping past a short sleep (both platforms suspend the timers, so a
//! sleep of seconds that took minutes of wall-clock time spanned a suspend). The APIs that would
//! push rather than be polled:
//! - macOS: `IOPSNotificationCreateRunLoopSource` for power changes, and
//!   `IORegisterForSystemPower` (`kIOMessageSystemHasPoweredOn`) for resume.
//! - Windows: the `NetworkStatusChanged` event, and `RegisterSuspendResumeNotification`.
//!
//! None of this runs in the tests here (Linux); it is type-checked by hand for
//! x86_64-pc-windows-gnu and aarch64-apple-darwin. See the README's "Not tested here".

use std::time::{Duration, SystemTime};

use super::{slept_through, Following, Reports, Wake};

/// How often the power source and the clock are looked at.
const POLL: Duration = Duration::from_secs(5);

pub(super) async fn follow(reports: Reports) {
    let power = power::on_battery().is_some();
    // macOS's path monitor answers on its own queue shortly after it is first asked.
    let network = network::link().is_some() || cfg!(target_os = "macos");
    reports.started(Following { network, power, sleep: true });
    let mut last_look = SystemTime::now();
    let mut was_online = true;
    loop {
        if let Some(on_battery) = power::on_battery() {
            reports.on_battery(on_battery);
        }
        if let Some(link) = network::link() {
            reports.metered(link.metered);
            if link.online && !was_online {
                reports.wake(Wake::ConnectivityReturned);
            }
            was_online = link.online;
        }
        tokio::time::sleep(POLL).await;
        let now = SystemTime::now();
        let passed = now.duration_since(last_look).unwrap_or_default();
        last_look = now;
        if slept_through(POLL, passed) {
            reports.wake(Wake::ResumedFromSleep);
        }
    }
}

/// What the connection the machine uses for the internet says of itself.
struct Link {
    metered: bool,
    online: bool,
}

#[cfg(windows)]
mod network {
    use windows::Networking::Connectivity::{NetworkConnectivityLevel, NetworkCostType, NetworkInformation};

    use super::Link;

    pub fn link() -> Option<Link> {
        // No internet profile at all: offline, and nothing to be metered.
        let Ok(profile) = NetworkInformation::GetInternetConnectionProfile() else {
            return Some(Link { metered: false, online: false });
        };
        let online = profile.GetNetworkConnectivityLevel().ok()? == NetworkConnectivityLevel::InternetAccess;
        let cost = profile.GetConnectionCost().ok()?;
        let kind = cost.NetworkCostType().ok()?;
        // A plan near or over its cap, or roaming, costs as much as a metered one.
        let capped = [cost.ApproachingDataLimit(), cost.OverDataLimit(), cost.Roaming()]
            .into_iter()
            .any(|flag| flag.unwrap_or(false));
        Some(Link { metered: capped || matches!(kind, NetworkCostType::Fixed | NetworkCostType::Variable), online })
    }
}

#[cfg(target_os = "macos")]
mod network {
    //! Network.framework's path monitor: it calls back on a dispatch queue with every new path,
    //! and the poll reads what it last said.
    use std::ffi::c_void;
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::{Arc, OnceLock};

    use super::Link;

    #[link(name = "Network", kind = "framework")]
    extern "C" {
        fn nw_path_monitor_create() -> *mut c_void;
        fn nw_path_monitor_set_queue(monitor: *mut c_void, queue: *mut c_void);
        fn nw_path_monitor_set_update_handler(monitor: *mut c_void, handler: &block2::Block<dyn Fn(*mut c_void)>);
        fn nw_path_monitor_start(monitor: *mut c_void);
        fn nw_path_is_expensive(path: *mut c_void) -> bool;
        fn nw_path_is_constrained(path: *mut c_void) -> bool;
        fn nw_path_get_status(path: *mut c_void) -> i32;
    }

    extern "C" {
        fn dispatch_get_global_queue(identifier: isize, flags: usize) -> *mut c_void;
    }

    const NW_PATH_STATUS_SATISFIED: i32 = 1;
    const UNKNOWN: u8 = 0;
    const ONLINE: u8 = 1;
    const METERED: u8 = 2;

    /// What the monitor last reported: `UNKNOWN` until its first call, else `KNOWN | ONLINE? | METERED?`.
    const KNOWN: u8 = 4;

    fn last_path() -> &'static Arc<AtomicU8> {
        static LAST: OnceLock<Arc<AtomicU8>> = OnceLock::new();
        LAST.get_or_init(|| {
            let last = Arc::new(AtomicU8::new(UNKNOWN));
            let seen = Arc::clone(&last);
            let handler = block2::RcBlock::new(move |path: *mut c_void| {
                // SAFETY: the monitor hands a valid path object for the length of the call.
                let (expensive, constrained, status) =
                    unsafe { (nw_path_is_expensive(path), nw_path_is_constrained(path), nw_path_get_status(path)) };
                let mut value = KNOWN;
                if status == NW_PATH_STATUS_SATISFIED {
                    value |= ONLINE;
                }
                // Low Data Mode (constrained) is the person saying this link costs, too.
                if expensive || constrained {
                    value |= METERED;
                }
                seen.store(value, Ordering::Relaxed);
            });
            // SAFETY: the monitor is created, given a queue and a handler (which it copies), and
            // started once; it lives as long as the process, like the monitor it feeds.
            unsafe {
                let monitor = nw_path_monitor_create();
                if !monitor.is_null() {
                    nw_path_monitor_set_queue(monitor, dispatch_get_global_queue(0, 0));
                    nw_path_monitor_set_update_handler(monitor, &handler);
                    nw_path_monitor_start(monitor);
                }
            }
            last
        })
    }

    pub fn link() -> Option<Link> {
        let value = last_path().load(Ordering::Relaxed);
        (value & KNOWN != 0).then(|| Link { metered: value & METERED != 0, online: value & ONLINE != 0 })
    }
}

#[cfg(not(any(windows, target_os = "macos")))]
mod network {
    pub fn link() -> Option<super::Link> {
        None
    }
}

#[cfg(target_os = "macos")]
mod power {
    #[link(name = "IOKit", kind = "framework")]
    extern "C" {
        /// Seconds of battery left; -1 (unknown, still estimating) also means on battery, and
        /// -2 (`kIOPSTimeRemainingUnlimited`) means on external power.
        fn IOPSGetTimeRemainingEstimate() -> f64;
    }

    const ON_EXTERNAL_POWER: f64 = -2.0;

    pub fn on_battery() -> Option<bool> {
        // SAFETY: takes no arguments and returns a plain number.
        let remaining = unsafe { IOPSGetTimeRemainingEstimate() };
        Some(remaining != ON_EXTERNAL_POWER)
    }
}

#[cfg(windows)]
mod power {
    /// `SYSTEM_POWER_STATUS` from winbase.h.
    #[repr(C)]
    #[derive(Default)]
    struct SystemPowerStatus {
        ac_line_status: u8,
        battery_flag: u8,
        battery_life_percent: u8,
        system_status_flag: u8,
        battery_life_time: u32,
        battery_full_life_time: u32,
    }

    #[link(name = "kernel32")]
    extern "system" {
        fn GetSystemPowerStatus(status: *mut SystemPowerStatus) -> i32;
    }

    pub fn on_battery() -> Option<bool> {
        let mut status = SystemPowerStatus::default();
        // SAFETY: the pointer is to a live struct of the layout the call fills in.
        if unsafe { GetSystemPowerStatus(&mut status) } == 0 {
            return None;
        }
        // 0 offline (on battery), 1 online, 255 unknown.
        match status.ac_line_status {
            0 => Some(true),
            1 => Some(false),
            _ => None,
        }
    }
}

#[cfg(not(any(target_os = "macos", windows)))]
mod power {
    pub fn on_battery() -> Option<bool> {
        None
    }
}
