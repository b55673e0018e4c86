//! macOS and Windows, polled: battery power from the platform's power API; on Windows the
//! internet connection's cost (metered) and whether it reaches the internet; resume from sleep
//! from the wall clock jumping past a short sleep (both platforms suspend the timers, so a
//! sleep of seconds that took minutes of wall-clock time spanned a suspend). Metered networks on
//! macOS are not followed yet, so nothing pauses for one there. The APIs that would add them,
//! and push rather than poll:
//! - macOS: Network.framework's `NWPathMonitor` (`NWPath.isExpensive`, and its path updates for
//!   connectivity), `IOPSNotificationCreateRunLoopSource` for power changes, and
//!   `IORegisterForSystemPower` (`kIOMessageSystemHasPoweredOn`) for resume.
//! - Windows: the `NetworkStatusChanged` event, and `RegisterSuspendResumeNotification`.
//!
//! None of this runs in the tests here (Linux); the Windows calls are type-checked against the
//! `windows` crate by hand. See the README's "Not tested here".

use std::time::{Duration, SystemTime};

use super::{slept_through, Following, Reports, Wake};

/// How often the power source and the clock are looked at.
const POLL: Duration = Duration::from_secs(5);

pub(super) async fn follow(reports: Reports) {
    let power = power::on_battery().is_some();
    let network = network::link().is_some();
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

#[cfg(not(windows))]
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
