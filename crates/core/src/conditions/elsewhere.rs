//! macOS and Windows: battery power from the platform's power API, polled; resume from sleep
//! from the wall clock jumping past a short sleep (both platforms suspend the timers, so a
//! sleep of seconds that took minutes of wall-clock time spanned a suspend). Metered networks
//! are not followed here yet, so nothing pauses for one. The platform APIs that would add them,
//! and push rather than poll:
//! - macOS: Network.framework's `NWPathMonitor` (`NWPath.isExpensive`, and its path updates for
//!   connectivity), `IOPSNotificationCreateRunLoopSource` for power changes, and
//!   `IORegisterForSystemPower` (`kIOMessageSystemHasPoweredOn`) for resume.
//! - Windows: `NetworkInformation.GetInternetConnectionProfile().GetConnectionCost()` with the
//!   `NetworkStatusChanged` event, and `RegisterSuspendResumeNotification` for resume.
//!
//! None of this is compiled or run by the tests here (Linux); see the README's "Not tested here".

use std::time::{Duration, SystemTime};

use super::{slept_through, Following, Reports, Wake};

/// How often the power source and the clock are looked at.
const POLL: Duration = Duration::from_secs(5);

pub(super) async fn follow(reports: Reports) {
    let power = power::on_battery().is_some();
    reports.started(Following { network: false, power, sleep: true });
    let mut last_look = SystemTime::now();
    loop {
        if let Some(on_battery) = power::on_battery() {
            reports.on_battery(on_battery);
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
