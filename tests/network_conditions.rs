//! The core's `ConditionsMonitor` following metered networks, battery and sleep on a private
//! bus where python-dbusmock's NetworkManager, UPower and logind stand in for the system's
//! (needs python3-dbusmock and dbus-daemon: scripts/install-deps.sh).

use std::time::Duration;

use dropship_core::conditions::{ConditionsMonitor, Following, MachineState, Wake};
use dropship_testkit::dbusmock::SystemBusMock;
use dropship_testkit::{block_on, runtime};
use tokio::sync::{broadcast, watch};

/// How long a change on the bus may take to reach the monitor's receivers.
const REPORTED_WITHIN: Duration = Duration::from_secs(2);
/// How long to listen for a wake that must not come.
const QUIET_FOR: Duration = Duration::from_millis(500);

const FOLLOWING_ALL: Following = Following { network: true, power: true, sleep: true };

/// A monitor on `bus`, once it follows all three services (so no change is sent before it listens).
fn monitor_on(bus: &SystemBusMock) -> ConditionsMonitor {
    let monitor = ConditionsMonitor::start_on_bus(runtime().handle(), &bus.address);
    assert_eq!(block_on(monitor.following()), FOLLOWING_ALL, "NetworkManager, UPower and logind are all on the bus");
    monitor
}

fn expect_state(state: &mut watch::Receiver<MachineState>, expected: MachineState, after: &str) {
    let reached = block_on(async {
        tokio::time::timeout(REPORTED_WITHIN, state.wait_for(|s| *s == expected)).await.map(|r| r.is_ok())
    });
    assert!(
        reached == Ok(true),
        "after {after}, the monitor should report {expected:?} within {REPORTED_WITHIN:?}; it reports {:?}",
        *state.borrow()
    );
}

fn expect_wake(wakes: &mut broadcast::Receiver<Wake>, expected: Wake, after: &str) {
    let wake = block_on(async { tokio::time::timeout(REPORTED_WITHIN, wakes.recv()).await });
    assert_eq!(wake.ok().and_then(Result::ok), Some(expected), "after {after}, waiting retries should be woken");
}

fn expect_no_wake(wakes: &mut broadcast::Receiver<Wake>, after: &str) {
    let wake = block_on(async { tokio::time::timeout(QUIET_FOR, wakes.recv()).await });
    assert!(wake.is_err(), "after {after}, nothing should wake waiting retries, yet {wake:?} came");
}

#[test]
fn a_metered_network_and_battery_power_are_reported_as_they_come_and_go() {
    let bus = SystemBusMock::start();
    let monitor = monitor_on(&bus);
    let mut state = monitor.state();
    assert_eq!(*state.borrow(), MachineState::default(), "the stand-ins start unmetered and on mains");

    bus.set_metered(true);
    expect_state(&mut state, MachineState { metered: true, on_battery: false }, "Metered = YES");
    bus.set_on_battery(true);
    expect_state(&mut state, MachineState { metered: true, on_battery: true }, "OnBattery = true");
    bus.set_metered(false);
    expect_state(&mut state, MachineState { metered: false, on_battery: true }, "Metered = NO");
    bus.set_on_battery(false);
    expect_state(&mut state, MachineState::default(), "OnBattery = false");
}

#[test]
fn the_state_at_start_is_read_not_only_its_changes() {
    let bus = SystemBusMock::start();
    bus.set_metered(true);
    bus.set_on_battery(true);
    let monitor = monitor_on(&bus);
    assert_eq!(
        *monitor.state().borrow(),
        MachineState { metered: true, on_battery: true },
        "a monitor started on a metered network on battery knows it at once"
    );
}

#[test]
fn resuming_from_sleep_and_the_internet_coming_back_wake_waiting_retries() {
    let bus = SystemBusMock::start();
    let monitor = monitor_on(&bus);
    let mut wakes = monitor.wakes();

    bus.emit_prepare_for_sleep(true);
    expect_no_wake(&mut wakes, "PrepareForSleep(true), the machine going to sleep");
    bus.emit_prepare_for_sleep(false);
    expect_wake(&mut wakes, Wake::ResumedFromSleep, "PrepareForSleep(false)");

    // 20 is NM_STATE_DISCONNECTED, 60 connected to the site only, 70 connected to the internet.
    bus.set_nm_state(20);
    expect_no_wake(&mut wakes, "NetworkManager losing the network");
    bus.set_nm_state(70);
    expect_wake(&mut wakes, Wake::ConnectivityReturned, "NetworkManager state 20 → 70");
    bus.set_nm_state(60);
    bus.set_nm_state(70);
    expect_wake(&mut wakes, Wake::ConnectivityReturned, "NetworkManager state 60 → 70");
    bus.set_metered(true);
    bus.set_on_battery(true);
    expect_no_wake(&mut wakes, "a change of metering or power source");
}

#[test]
fn without_a_system_bus_the_machine_counts_as_unmetered_on_mains_and_nothing_wakes() {
    let monitor = ConditionsMonitor::start_on_bus(runtime().handle(), "unix:path=/nonexistent/system_bus_socket");
    assert_eq!(block_on(monitor.following()), Following::default(), "there is nothing to follow");
    assert_eq!(*monitor.state().borrow(), MachineState::default());
    let mut state = monitor.state();
    let changed = block_on(async { tokio::time::timeout(QUIET_FOR, state.changed()).await });
    assert!(
        changed.is_err(),
        "the state neither changes nor closes (a closed channel would spin a select!): {changed:?}"
    );
    expect_no_wake(&mut monitor.wakes(), "starting without a bus");
}

#[test]
fn on_a_bus_without_networkmanager_upower_and_logind_the_defaults_hold() {
    let bus = SystemBusMock::without_services();
    let monitor = ConditionsMonitor::start_on_bus(runtime().handle(), &bus.address);
    assert_eq!(block_on(monitor.following()), Following::default(), "none of the three answers");
    assert_eq!(*monitor.state().borrow(), MachineState::default());
}
