//! macOS and Windows: not followed yet, so uploads never pause for a metered network or battery
//! there, and waiting retries wait out their backoff. The platform APIs that would feed the
//! monitor:
//! - macOS: Network.framework's `NWPathMonitor` (`NWPath.isExpensive`, and its path updates for
//!   connectivity), IOKit's `IOPSCopyPowerSourcesInfo` with `IOPSNotificationCreateRunLoopSource`
//!   for battery, and `IORegisterForSystemPower` (`kIOMessageSystemHasPoweredOn`) for resume.
//! - Windows: `NetworkInformation.GetInternetConnectionProfile().GetConnectionCost()` with the
//!   `NetworkStatusChanged` event, `GetSystemPowerStatus` (`ACLineStatus`) for battery, and
//!   `RegisterSuspendResumeNotification` for resume.

use super::{Following, Reports};

pub(super) async fn follow(reports: Reports) {
    tracing::debug!("metered networks, battery and sleep are followed on Linux only");
    reports.started(Following::default());
}
