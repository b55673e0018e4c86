//! Linux: NetworkManager (metered network, connectivity), UPower (battery) and logind (sleep)
//! on the system D-Bus.
//!
//! Properties are read once, then followed through the standard `PropertiesChanged` signal,
//! which both NetworkManager and UPower send. NetworkManager's own `StateChanged` signal says
//! the same as its `State` property, so only the property is followed (python-dbusmock's
//! template, the tests' stand-in, also sends `StateChanged` from `/org/freedesktop` rather
//! than from the manager's path).
//!
//! A service that starts after Dropship is followed from its first change on (zbus follows the
//! name to its new owner), but what it says at that moment is not read: these three start with
//! the system, long before a desktop session.

use std::time::Duration;

use futures_util::StreamExt;
use zbus::fdo::{PeerProxy, PropertiesChangedStream, PropertiesProxy};
use zbus::names::InterfaceName;
use zbus::proxy::{CacheProperties, SignalStream};
use zbus::zvariant::OwnedValue;
use zbus::{Connection, Proxy};

use super::{Following, Reports, Wake};

/// Which bus the services are on.
pub(super) enum Bus {
    /// The system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else the standard socket).
    System,
    Address(String),
}

/// A service's well-known name, and the object and interface Dropship reads.
struct Service {
    name: &'static str,
    path: &'static str,
    interface: &'static str,
}

impl Service {
    fn interface(&self) -> InterfaceName<'static> {
        InterfaceName::from_static_str_unchecked(self.interface)
    }
}

const NETWORK_MANAGER: Service = Service {
    name: "org.freedesktop.NetworkManager",
    path: "/org/freedesktop/NetworkManager",
    interface: "org.freedesktop.NetworkManager",
};

const UPOWER: Service =
    Service { name: "org.freedesktop.UPower", path: "/org/freedesktop/UPower", interface: "org.freedesktop.UPower" };

const LOGIND: Service = Service {
    name: "org.freedesktop.login1",
    path: "/org/freedesktop/login1",
    interface: "org.freedesktop.login1.Manager",
};

/// `NM_STATE_CONNECTED_GLOBAL`, the highest NMState: the internet is reachable. The states
/// below are unknown (0), asleep, disconnected, disconnecting, connecting, and connected to
/// the local network or site only.
const NM_CONNECTED_GLOBAL: u32 = 70;

/// How long a service may take to answer. One that takes longer counts as missing, so that a
/// hung bus cannot hold up [`super::ConditionsMonitor::following`].
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether an `NMMetered` value means metered: `YES` (1) and `GUESS_YES` (3) do; `UNKNOWN` (0),
/// `NO` (2) and `GUESS_NO` (4) do not.
fn nm_metered(value: u32) -> bool {
    matches!(value, 1 | 3)
}

/// Whether NetworkManager going from state `before` to `now` brought the internet back.
fn connectivity_returned(before: u32, now: u32) -> bool {
    before < NM_CONNECTED_GLOBAL && now >= NM_CONNECTED_GLOBAL
}

pub(super) async fn follow(bus: Bus, reports: Reports) {
    let connection = match connect(bus).await {
        Ok(connection) => connection,
        Err(error) => {
            tracing::info!(%error, "no system D-Bus: metered networks, battery and sleep are not followed");
            reports.started(Following::default());
            return;
        }
    };
    let (network, power, sleep) = tokio::join!(
        present(&NETWORK_MANAGER, NetworkManagerFollower::subscribe(&connection, &reports)),
        present(&UPOWER, UPowerFollower::subscribe(&connection, &reports)),
        present(&LOGIND, LogindFollower::subscribe(&connection)),
    );
    let following = Following { network: network.is_some(), power: power.is_some(), sleep: sleep.is_some() };
    tracing::info!(
        metered_network = following.network,
        battery = following.power,
        sleep = following.sleep,
        "following the machine's network and power state"
    );
    reports.started(following);
    tokio::join!(
        async {
            if let Some(network) = network {
                network.follow(&reports).await;
            }
        },
        async {
            if let Some(power) = power {
                power.follow(&reports).await;
            }
        },
        async {
            if let Some(sleep) = sleep {
                sleep.follow(&reports).await;
            }
        },
    );
    if following != Following::default() {
        tracing::info!("lost the system D-Bus: the machine's network and power state is no longer followed");
        reports.forget_state();
    }
}

async fn connect(bus: Bus) -> zbus::Result<Connection> {
    let builder = match bus {
        Bus::System => zbus::connection::Builder::system()?,
        Bus::Address(address) => zbus::connection::Builder::address(address.as_str())?,
    };
    builder.method_timeout(ANSWER_TIMEOUT).build().await
}

/// The follower `subscribed` gave, or `None` (logged) when the service is not there.
async fn present<T>(service: &Service, subscribed: impl std::future::Future<Output = zbus::Result<T>>) -> Option<T> {
    match subscribed.await {
        Ok(follower) => Some(follower),
        Err(error) => {
            tracing::info!(service = service.name, %error, "not followed: it does not answer on the system D-Bus");
            None
        }
    }
}

/// The service's properties, with their changes subscribed to before anything is read, so that
/// no change can fall between the first read and the first signal.
async fn subscribe_to_properties(
    connection: &Connection,
    service: &Service,
) -> zbus::Result<(PropertiesProxy<'static>, PropertiesChangedStream)> {
    let properties = PropertiesProxy::builder(connection)
        .destination(service.name)?
        .path(service.path)?
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let changes = properties.receive_properties_changed().await?;
    Ok((properties, changes))
}

async fn read<T>(properties: &PropertiesProxy<'_>, service: &Service, name: &str) -> zbus::Result<T>
where
    T: TryFrom<OwnedValue>,
    T::Error: Into<zbus::Error>,
{
    let value = properties.get(service.interface(), name).await?;
    T::try_from(value).map_err(Into::into)
}

struct NetworkManagerFollower {
    changes: PropertiesChangedStream,
    /// The last NMState seen, to tell when the internet comes back.
    state: u32,
}

impl NetworkManagerFollower {
    async fn subscribe(connection: &Connection, reports: &Reports) -> zbus::Result<Self> {
        let (properties, changes) = subscribe_to_properties(connection, &NETWORK_MANAGER).await?;
        let state = read(&properties, &NETWORK_MANAGER, "State").await?;
        match read(&properties, &NETWORK_MANAGER, "Metered").await {
            Ok(metered) => reports.metered(nm_metered(metered)),
            Err(error) => tracing::info!(%error, "NetworkManager does not say whether the network is metered"),
        }
        Ok(Self { changes, state })
    }

    async fn follow(mut self, reports: &Reports) {
        while let Some(change) = self.changes.next().await {
            let Ok(change) = change.args() else { continue };
            if change.interface_name().as_str() != NETWORK_MANAGER.interface {
                continue;
            }
            let changed = change.changed_properties();
            if let Some(metered) = changed.get("Metered").and_then(|value| value.downcast_ref::<u32>().ok()) {
                reports.metered(nm_metered(metered));
            }
            if let Some(state) = changed.get("State").and_then(|value| value.downcast_ref::<u32>().ok()) {
                if connectivity_returned(self.state, state) {
                    reports.wake(Wake::ConnectivityReturned);
                }
                self.state = state;
            }
        }
    }
}

struct UPowerFollower {
    changes: PropertiesChangedStream,
}

impl UPowerFollower {
    async fn subscribe(connection: &Connection, reports: &Reports) -> zbus::Result<Self> {
        let (properties, changes) = subscribe_to_properties(connection, &UPOWER).await?;
        reports.on_battery(read(&properties, &UPOWER, "OnBattery").await?);
        Ok(Self { changes })
    }

    async fn follow(mut self, reports: &Reports) {
        while let Some(change) = self.changes.next().await {
            let Ok(change) = change.args() else { continue };
            if change.interface_name().as_str() != UPOWER.interface {
                continue;
            }
            let on_battery = change.changed_properties().get("OnBattery").and_then(|value| value.downcast_ref().ok());
            if let Some(on_battery) = on_battery {
                reports.on_battery(on_battery);
            }
        }
    }
}

struct LogindFollower {
    /// `PrepareForSleep(start)`: `true` before the machine sleeps, `false` once it has resumed.
    sleeps: SignalStream<'static>,
}

impl LogindFollower {
    async fn subscribe(connection: &Connection) -> zbus::Result<Self> {
        let manager = Proxy::new(connection, LOGIND.name, LOGIND.path, LOGIND.interface).await?;
        let sleeps = manager.receive_signal("PrepareForSleep").await?;
        // A signal subscription succeeds whether or not anyone sends; this asks logind itself.
        PeerProxy::builder(connection).destination(LOGIND.name)?.path(LOGIND.path)?.build().await?.ping().await?;
        Ok(Self { sleeps })
    }

    async fn follow(mut self, reports: &Reports) {
        while let Some(signal) = self.sleeps.next().await {
            match signal.body().deserialize::<bool>() {
                Ok(true) => tracing::debug!("the machine is going to sleep"),
                Ok(false) => reports.wake(Wake::ResumedFromSleep),
                Err(error) => tracing::debug!(%error, "PrepareForSleep without its boolean"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yes_and_guess_yes_count_as_metered() {
        let metered: Vec<u32> = (0..=5).filter(|value| nm_metered(*value)).collect();
        assert_eq!(metered, [1, 3], "NMMetered: 0 unknown, 1 yes, 2 no, 3 guess-yes, 4 guess-no");
    }

    #[test]
    fn connectivity_returns_when_the_state_reaches_connected_global_from_below() {
        for before in [0, 10, 20, 30, 40, 50, 60] {
            assert!(connectivity_returned(before, 70), "{before} → 70 brings the internet back");
        }
    }

    #[test]
    fn staying_connected_or_losing_the_internet_is_no_return() {
        assert!(!connectivity_returned(70, 70), "already connected: a repeated state is no news");
        for now in [0, 10, 20, 30, 40, 50, 60] {
            assert!(!connectivity_returned(70, now), "70 → {now} is a loss, not a return");
            assert!(!connectivity_returned(20, now), "20 → {now} is still without the internet");
        }
    }
}
