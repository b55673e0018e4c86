//! A private D-Bus standing in for the system bus, with python-dbusmock's NetworkManager, UPower
//! and logind on it, for following metered networks, battery and sleep without touching the
//! machine's own bus. The bus is a `dbus-daemon` on a socket in a temp dir; each service is
//! `python3 -m dbusmock --template …`; both are children of the test process.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zbus::blocking::fdo::DBusProxy;
use zbus::blocking::Connection;
use zbus::names::BusName;
use zbus::zvariant::Value;

use crate::log_tail;
use crate::process::{spawn_tied_to_process, stop_child};

/// How long the bus, and then each service, gets to come up.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Where python-dbusmock's templates put their methods: `SetProperty`, `EmitSignal`, and
/// template-specific ones such as NetworkManager's `SetGlobalConnectionState`.
const MOCK_INTERFACE: &str = "org.freedesktop.DBus.Mock";
const PROPERTIES_INTERFACE: &str = "org.freedesktop.DBus.Properties";

const NM_NAME: &str = "org.freedesktop.NetworkManager";
/// The NetworkManager template's main object, which carries its mock methods; the manager's
/// own object is below it.
const NM_MOCK_PATH: &str = "/org/freedesktop";
const NM_PATH: &str = "/org/freedesktop/NetworkManager";
const NM_INTERFACE: &str = "org.freedesktop.NetworkManager";
const UPOWER_NAME: &str = "org.freedesktop.UPower";
const UPOWER_PATH: &str = "/org/freedesktop/UPower";
const UPOWER_INTERFACE: &str = "org.freedesktop.UPower";
const LOGIND_NAME: &str = "org.freedesktop.login1";
const LOGIND_PATH: &str = "/org/freedesktop/login1";
const LOGIND_INTERFACE: &str = "org.freedesktop.login1.Manager";

/// `NMMetered` values: `YES` and `NO` (the guesses and `UNKNOWN` are left to unit tests).
const NM_METERED_YES: u32 = 1;
const NM_METERED_NO: u32 = 2;

/// A running bus with NetworkManager (connected, unmetered), UPower (on mains) and logind (awake)
/// on it. Dropping it stops them all.
pub struct SystemBusMock {
    /// The bus's address, for `DBUS_SYSTEM_BUS_ADDRESS` or `ConditionsMonitor::start_on_bus`.
    pub address: String,
    control: Connection,
    services: Vec<Child>,
    bus: Child,
    dir: tempfile::TempDir,
}

impl SystemBusMock {
    /// The bus and the three services, each answering before this returns.
    pub fn start() -> SystemBusMock {
        let mut mock = SystemBusMock::without_services();
        mock.start_service("networkmanager", NM_NAME, NM_MOCK_PATH, None);
        // The template leaves out `Metered`, which the real manager object has.
        mock.call(
            NM_NAME,
            NM_PATH,
            MOCK_INTERFACE,
            "AddProperty",
            &(NM_INTERFACE, "Metered", Value::U32(NM_METERED_NO)),
        );
        mock.start_service("upower", UPOWER_NAME, UPOWER_PATH, Some(r#"{"OnBattery": false}"#));
        mock.start_service("logind", LOGIND_NAME, LOGIND_PATH, None);
        mock
    }

    /// The bus alone: what a machine without NetworkManager, UPower and logind looks like.
    pub fn without_services() -> SystemBusMock {
        let dir = tempfile::Builder::new().prefix("dropship-dbusmock-").tempdir().expect("a temp dir");
        let address = format!("unix:path={}", dir.path().join("system_bus_socket").display());
        // The session configuration allows everything to the bus's own user, which is all a
        // test needs; the system one would want root and policy files for every name.
        let mut command = Command::new("dbus-daemon");
        command
            .args(["--session", "--nofork", "--nopidfile", "--address"])
            .arg(&address)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(dir.path().join("dbus-daemon.log")));
        let mut bus = spawn_tied_to_process(command)
            .unwrap_or_else(|e| panic!("cannot start dbus-daemon (scripts/install-deps.sh installs dbus): {e}"));
        let started = Instant::now();
        let control = loop {
            match zbus::blocking::connection::Builder::address(address.as_str()).and_then(|builder| builder.build()) {
                Ok(connection) => break connection,
                Err(error) if started.elapsed() > START_TIMEOUT || !matches!(bus.try_wait(), Ok(None)) => {
                    stop_child(&mut bus);
                    panic!(
                        "dbus-daemon did not take connections at {address} within {START_TIMEOUT:?} ({error}); its log:\n{}",
                        log_tail(&dir.path().join("dbus-daemon.log"), 20)
                    );
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        SystemBusMock { address, control, services: Vec::new(), bus, dir }
    }

    /// NetworkManager's `Metered` as `YES` or `NO`, sent as `PropertiesChanged` as the real one does.
    pub fn set_metered(&self, metered: bool) {
        let value = if metered { NM_METERED_YES } else { NM_METERED_NO };
        self.call(
            NM_NAME,
            NM_MOCK_PATH,
            MOCK_INTERFACE,
            "SetProperty",
            &(NM_PATH, NM_INTERFACE, "Metered", Value::U32(value)),
        );
    }

    /// NetworkManager's overall state (NMState: 20 disconnected, 70 connected to the internet…).
    pub fn set_nm_state(&self, state: u32) {
        self.call(NM_NAME, NM_MOCK_PATH, MOCK_INTERFACE, "SetGlobalConnectionState", &(state,));
    }

    /// UPower's `OnBattery`, sent as `PropertiesChanged`.
    pub fn set_on_battery(&self, on_battery: bool) {
        let body = (UPOWER_INTERFACE, "OnBattery", Value::Bool(on_battery));
        self.call(UPOWER_NAME, UPOWER_PATH, PROPERTIES_INTERFACE, "Set", &body);
    }

    /// logind's `PrepareForSleep(start)`: `true` as the machine goes to sleep, `false` on resume.
    pub fn emit_prepare_for_sleep(&self, start: bool) {
        let body = (LOGIND_INTERFACE, "PrepareForSleep", "b", vec![Value::Bool(start)]);
        self.call(LOGIND_NAME, LOGIND_PATH, MOCK_INTERFACE, "EmitSignal", &body);
    }

    /// Starts `python3 -m dbusmock --template template` and waits until it answers at `path`.
    fn start_service(&mut self, template: &str, name: &'static str, path: &str, parameters: Option<&str>) {
        let log = self.dir.path().join(format!("{template}.log"));
        let mut command = Command::new(python());
        command.args(["-m", "dbusmock", "--system", "--template", template]);
        if let Some(parameters) = parameters {
            command.args(["--parameters", parameters]);
        }
        command
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
            .stdin(Stdio::null())
            .stdout(log_file(&log))
            .stderr(log_file(&log));
        let mut service =
            spawn_tied_to_process(command).unwrap_or_else(|e| panic!("cannot start {}: {e}", python().display()));
        // The mock claims its name before it loads its template, and answers calls only once
        // its main loop runs, after the template: the name first, then a ping.
        let bus = DBusProxy::new(&self.control).expect("a proxy for the bus itself");
        let started = Instant::now();
        let bus_name = BusName::from_static_str(name).expect("a well-formed bus name");
        while !bus.name_has_owner(bus_name.clone()).unwrap_or(false) {
            if started.elapsed() > START_TIMEOUT || !matches!(service.try_wait(), Ok(None)) {
                stop_child(&mut service);
                panic!(
                    "python-dbusmock's {template} did not take {name} within {START_TIMEOUT:?} \
                     (scripts/install-deps.sh installs python3-dbusmock); its log:\n{}",
                    log_tail(&log, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.services.push(service);
        self.call(name, path, "org.freedesktop.DBus.Peer", "Ping", &());
    }

    fn call<B>(&self, name: &str, path: &str, interface: &str, method: &str, body: &B)
    where
        B: zbus::export::serde::Serialize + zbus::zvariant::DynamicType,
    {
        if let Err(error) = self.control.call_method(Some(name), path, Some(interface), method, body) {
            panic!("{name} {path} {interface}.{method} failed: {error}; logs:\n{}", self.logs());
        }
    }

    /// The tail of every log: the bus's and each service's.
    fn logs(&self) -> String {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| entry.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "log"))
                    .collect()
            })
            .unwrap_or_default();
        logs.sort();
        logs.iter().map(|log| format!("== {}\n{}", log.display(), log_tail(log, 20))).collect::<Vec<_>>().join("\n")
    }
}

impl Drop for SystemBusMock {
    fn drop(&mut self) {
        for service in &mut self.services {
            stop_child(service);
        }
        stop_child(&mut self.bus);
    }
}

/// Debian's python3 (python3-dbusmock lives in its dist-packages, not in a pyenv or venv that
/// may come first on the PATH); `DROPSHIP_TEST_PYTHON` overrides it.
fn python() -> PathBuf {
    std::env::var_os("DROPSHIP_TEST_PYTHON").map_or_else(|| PathBuf::from("/usr/bin/python3"), PathBuf::from)
}

/// Appends, so that a service's stdout and stderr can share one file.
fn log_file(path: impl AsRef<std::path::Path>) -> std::fs::File {
    std::fs::OpenOptions::new().create(true).append(true).open(path).expect("a dbusmock log file can be created")
}
