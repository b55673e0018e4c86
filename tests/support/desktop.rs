//! A private X11 desktop for the GUI test: its own Xvfb, tauri-driver (and so WebKitWebDriver
//! and the app) on that display, a GTK window to drag a file from, and xdotool for the mouse.
//! Each part is a [`ProcessGuard`], stopped by PID when dropped.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::process::ProcessGuard;
use crate::wait_for;

/// Environment that keeps WebKitGTK on software rendering, which is all Xvfb offers.
pub const SOFTWARE_RENDERING: [(&str, &str); 2] =
    [("WEBKIT_DISABLE_DMABUF_RENDERER", "1"), ("LIBGL_ALWAYS_SOFTWARE", "1")];

/// An Xvfb server on a display number it picked itself (`-displayfd`), so tests never collide.
pub struct Xvfb {
    /// `:N`, for `DISPLAY`.
    pub display: String,
    _process: ProcessGuard,
}

impl Xvfb {
    pub const WIDTH: u32 = 1600;
    pub const HEIGHT: u32 = 900;

    pub fn start() -> Xvfb {
        let screen = format!("{}x{}x24", Self::WIDTH, Self::HEIGHT);
        let mut process = ProcessGuard::spawn(
            "Xvfb",
            Command::new("Xvfb")
                .args(["-displayfd", "1", "-screen", "0", &screen, "-nolisten", "tcp"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        );
        let stdout = process.child_mut().stdout.take().expect("piped stdout");
        let number = first_line_within(stdout, Duration::from_secs(15))
            .unwrap_or_else(|e| panic!("Xvfb did not report its display: {e:#}"));
        let display = format!(":{}", number.trim());
        Xvfb { display, _process: process }
    }
}

/// tauri-driver on a free loopback port, talking to WebKitWebDriver on another. It launches the
/// app (with this process's environment plus `app_env`) when a session is opened.
pub struct TauriDriver {
    /// `http://127.0.0.1:PORT`, for the WebDriver client.
    pub url: String,
    process: ProcessGuard,
}

impl TauriDriver {
    pub fn start(display: &str, app_env: &[(&str, &OsStr)]) -> TauriDriver {
        let binary = tauri_driver_binary();
        let (port, native_port) = (free_port(), free_port());
        let mut command = Command::new(&binary);
        command
            .args(["--port", &port.to_string(), "--native-port", &native_port.to_string()])
            .env("DISPLAY", display)
            .envs(SOFTWARE_RENDERING)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if let Some(native) = native_driver_binary() {
            command.arg("--native-driver").arg(native);
        }
        for (key, value) in app_env {
            command.env(key, value);
        }
        let mut process = ProcessGuard::spawn("tauri-driver", &mut command);
        wait_for("tauri-driver to listen", Duration::from_secs(20), || {
            if process.has_exited() {
                panic!("tauri-driver ({}) exited at start; see its output above", binary.display());
            }
            TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .expect("tauri-driver did not start");
        // tauri-driver listens before the WebKitWebDriver it spawned does, and drops a new-session
        // request that it cannot forward: on a loaded machine the first session failed that way.
        wait_for("WebKitWebDriver to listen", Duration::from_secs(30), || {
            if process.has_exited() {
                panic!("tauri-driver ({}) exited at start; see its output above", binary.display());
            }
            TcpStream::connect(("127.0.0.1", native_port)).ok()
        })
        .expect("WebKitWebDriver did not start");
        TauriDriver { url: format!("http://127.0.0.1:{port}"), process }
    }

    /// tauri-driver's PID; the app and WebKit's helpers are its descendants.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Stops tauri-driver, WebKitWebDriver and the app, if the session did not already.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Kills tauri-driver and what runs under it without letting WebKitWebDriver close anything.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// A GTK3 window at a fixed place on the screen that offers one file as a `text/uri-list` drag
/// source, as a file manager would (tests/support/drag_source.py).
pub struct DragSource {
    /// Where to press to start dragging (the window's centre), in screen coordinates.
    pub grab_point: (i32, i32),
    _process: ProcessGuard,
}

impl DragSource {
    const SIZE: i32 = 160;

    pub fn start(display: &str, file: &Path, at: (i32, i32)) -> anyhow::Result<DragSource> {
        Self::start_many(display, &[file], at)
    }

    /// A drag source offering all of `files` (files and folders) in one drag.
    pub fn start_many(display: &str, files: &[&Path], at: (i32, i32)) -> anyhow::Result<DragSource> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/drag_source.py");
        let (first, more) = files.split_first().context("nothing to drag")?;
        let mut process = ProcessGuard::spawn(
            "drag source",
            Command::new(system_python())
                .arg(&script)
                .arg(first)
                .args([at.0.to_string(), at.1.to_string(), Self::SIZE.to_string()])
                .args(more.iter())
                .env("DISPLAY", display)
                .env("GDK_BACKEND", "x11")
                .stdin(Stdio::null())
                .stdout(Stdio::piped()),
        );
        let stdout = process.child_mut().stdout.take().expect("piped stdout");
        let line =
            first_line_within(stdout, Duration::from_secs(20)).context("the drag source window did not appear")?;
        if line.trim() != "ready" {
            bail!("the drag source said {line:?} instead of \"ready\"");
        }
        let half = Self::SIZE / 2;
        Ok(DragSource { grab_point: (at.0 + half, at.1 + half), _process: process })
    }
}

/// A private D-Bus session with a real Secret Service (gnome-keyring, its login keyring created
/// and unlocked with a throwaway password) and a notification server that records what it is
/// asked to show (tests/support/notification_server.py). The app, given [`bus_address`], keeps
/// its token in that keyring and sends its notifications there.
///
/// [`bus_address`]: DesktopSession::bus_address
pub struct DesktopSession {
    pub bus_address: String,
    /// One JSON line (`{"summary", "body"}`) per notification shown.
    pub notifications_log: PathBuf,
    home: PathBuf,
    // Dropped in reverse: the keyring and the notification server before the bus.
    _notifications: ProcessGuard,
    _keyring: ProcessGuard,
    _bus: ProcessGuard,
}

impl DesktopSession {
    /// `home` is a scratch folder for the keyring files and runtime sockets.
    pub fn start(home: &Path) -> anyhow::Result<DesktopSession> {
        let runtime_dir = home.join("run");
        std::fs::create_dir_all(&runtime_dir)?;
        std::fs::set_permissions(&runtime_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let private_env = [
            ("HOME", home.as_os_str().to_owned()),
            ("XDG_DATA_HOME", home.join("data").into_os_string()),
            ("XDG_CONFIG_HOME", home.join("config").into_os_string()),
            ("XDG_RUNTIME_DIR", runtime_dir.into_os_string()),
        ];

        let mut bus = ProcessGuard::spawn(
            "dbus-daemon",
            Command::new("dbus-daemon")
                .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
                .envs(private_env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        );
        let stdout = bus.child_mut().stdout.take().expect("piped stdout");
        let bus_address = first_line_within(stdout, Duration::from_secs(10)).context("dbus-daemon gave no address")?;
        let bus_address = bus_address.trim().to_owned();

        // `--unlock` reads the password from stdin and creates the login keyring with it.
        let mut keyring = ProcessGuard::spawn(
            "gnome-keyring-daemon",
            Command::new("gnome-keyring-daemon")
                .args(["--foreground", "--components=secrets", "--unlock"])
                .envs(private_env.iter().map(|(k, v)| (k, v)))
                .env("DBUS_SESSION_BUS_ADDRESS", &bus_address)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        {
            use std::io::Write;
            let mut stdin = keyring.child_mut().stdin.take().expect("piped stdin");
            stdin.write_all(b"dropship-test-keyring")?;
        } // closing stdin ends the password

        let notifications_log = home.join("notifications.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/notification_server.py");
        let mut notifications = ProcessGuard::spawn(
            "notification server",
            Command::new(system_python())
                .arg(&script)
                .arg(&notifications_log)
                .arg(home.join("launcher.jsonl"))
                .env("DBUS_SESSION_BUS_ADDRESS", &bus_address)
                .stdin(Stdio::null())
                .stdout(Stdio::piped()),
        );
        let stdout = notifications.child_mut().stdout.take().expect("piped stdout");
        let line =
            first_line_within(stdout, Duration::from_secs(20)).context("the notification server did not start")?;
        if line.trim() != "ready" {
            bail!("the notification server said {line:?} instead of \"ready\"");
        }

        let session = DesktopSession {
            bus_address,
            notifications_log,
            home: home.to_owned(),
            _notifications: notifications,
            _keyring: keyring,
            _bus: bus,
        };
        wait_for("the Secret Service on the private bus", Duration::from_secs(20), || {
            session.secret_tool(&["search", "--all", "service", "dropship-probe"]).ok()
        })?;
        Ok(session)
    }

    /// Clicks the tray menu item labelled `label` (*Open Dropship*), as the panel does when a
    /// person picks it: the test tray in support/notification_server.py sends the dbusmenu event.
    pub fn click_tray_item(&self, label: &str) -> anyhow::Result<()> {
        let output = Command::new("gdbus")
            .args(["call", "--address", &self.bus_address, "--dest", "org.kde.StatusNotifierWatcher"])
            .args(["--object-path", "/StatusNotifierWatcher", "--method", "dev.dropship.TestTray.Click", label])
            .stdin(Stdio::null())
            .output()
            .context("could not run gdbus")?;
        if !output.status.success() {
            bail!("clicking {label:?} in the tray failed: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(())
    }

    /// The token the keyring holds for `data_dir` (as the app stores it), if any.
    pub fn stored_token(&self, data_dir: &Path) -> Option<String> {
        let account = data_dir.to_string_lossy();
        self.secret_tool(&["lookup", "service", "dropship", "username", &account]).ok().filter(|t| !t.is_empty())
    }

    /// The signed-in session the keyring holds for `data_dir`, if any.
    pub fn stored_session(&self, data_dir: &Path) -> Option<String> {
        let account = format!("{}#session", data_dir.to_string_lossy());
        self.secret_tool(&["lookup", "service", "dropship", "username", &account]).ok().filter(|t| !t.is_empty())
    }

    /// Every notification shown so far, as (summary, body).
    pub fn notifications(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(&self.notifications_log).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| (v["summary"].as_str().unwrap_or("").to_owned(), v["body"].as_str().unwrap_or("").to_owned()))
            .collect()
    }

    /// Every update of the app's launcher entry (the dock icon's progress), in order: the
    /// `progress` (0–1) and `progress-visible` each carries, when it carries them.
    pub fn launcher_updates(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.home.join("launcher.jsonl")).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    fn secret_tool(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new("secret-tool")
            .args(args)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus_address)
            .env("HOME", &self.home)
            .stdin(Stdio::null())
            .output()
            .context("could not run secret-tool (apt-get install libsecret-tools)")?;
        // `lookup` exits 1 with no output when there is no such secret.
        if !output.status.success() && !output.stdout.is_empty() {
            bail!("secret-tool {args:?} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        if !output.status.success() && !output.stderr.is_empty() {
            bail!("secret-tool {args:?} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }
}

/// Closes the first visible window titled `title_regex` as its close button would (see
/// support/close_window.py): the app hears a close request, not a window destroyed under it.
pub fn close_window(display: &str, title_regex: &str) -> anyhow::Result<()> {
    let ids = xdotool(display, &["search", "--onlyvisible", "--name", title_regex])?;
    let id = ids.lines().next().context("no such window")?.trim().to_owned();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/close_window.py");
    let status = Command::new(system_python())
        .arg(&script)
        .arg(&id)
        .env("DISPLAY", display)
        .stdin(Stdio::null())
        .status()
        .context("could not run close_window.py")?;
    if !status.success() {
        bail!("close_window.py {id} failed: {status}");
    }
    Ok(())
}

/// The first visible window titled `title_regex`, once it shows painted content: ImageMagick's
/// count of distinct colours in a grab of it. An empty or unpainted webview is one or two
/// colours; a page with antialiased text is hundreds.
pub fn painted_window(display: &str, title_regex: &str) -> Option<String> {
    let ids = xdotool(display, &["search", "--onlyvisible", "--name", title_regex]).ok()?;
    let id = ids.lines().next()?.trim().to_owned();
    let output = Command::new("import")
        .args(["-window", &id, "-format", "%k", "info:"])
        .env("DISPLAY", display)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let colours: u32 = String::from_utf8_lossy(&output.stdout).trim().parse().ok()?;
    (colours >= 64).then_some(id)
}

/// Runs `xdotool` on `display` and returns its output.
pub fn xdotool(display: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("xdotool")
        .args(args)
        .env("DISPLAY", display)
        .stdin(Stdio::null())
        .output()
        .context("could not run xdotool (apt-get install xdotool)")?;
    if !output.status.success() {
        bail!("xdotool {args:?} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Answers the app's GTK folder picker titled `title` with `folder`, as a person typing its
/// path does. The picker is a native dialog of the app's own: the page cannot answer it.
pub fn choose_in_folder_picker(display: &str, title: &str, folder: &Path) -> anyhow::Result<()> {
    let picker = wait_for(&format!("the folder picker {title:?}"), Duration::from_secs(30), || {
        xdotool(display, &["search", "--onlyvisible", "--name", &format!("^{title}$")]).ok()
    })?;
    let picker = picker.lines().next().context("no picker window id")?.trim().to_owned();
    xdotool(display, &["windowfocus", "--sync", &picker])?;
    // Ctrl+L opens GTK's location bar. A "/" typed into the file list opens it too, but the keys
    // typed right after it can land before the bar has focus (CI once got "/mp/…"); and keys
    // sent the moment the window maps can land before the dialog handles them. Ctrl+A then
    // replaces whatever the bar was pre-filled with; Return chooses the folder typed.
    std::thread::sleep(Duration::from_millis(500));
    xdotool(display, &["key", "ctrl+l"])?;
    std::thread::sleep(Duration::from_millis(500));
    xdotool(display, &["key", "ctrl+a"])?;
    let typed = format!("{}/", folder.display());
    xdotool(display, &["type", "--delay", "20", &typed])?;
    std::thread::sleep(Duration::from_millis(300));
    xdotool(display, &["key", "Return"])?;
    Ok(())
}

/// The on-screen rectangle (x, y, width, height) of the first visible window whose title
/// matches `title_regex`.
pub fn window_geometry(display: &str, title_regex: &str) -> anyhow::Result<(i32, i32, i32, i32)> {
    let ids = xdotool(display, &["search", "--onlyvisible", "--name", title_regex])?;
    let id = ids.lines().next().context("no such window")?.trim().to_owned();
    let shell = xdotool(display, &["getwindowgeometry", "--shell", &id])?;
    let field = |name: &str| -> anyhow::Result<i32> {
        shell
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .with_context(|| format!("xdotool gave no {name} in {shell:?}"))?
            .trim()
            .parse()
            .with_context(|| format!("bad {name} in {shell:?}"))
    };
    Ok((field("X")?, field("Y")?, field("WIDTH")?, field("HEIGHT")?))
}

/// The first half of a real drag with the mouse: press on `from`, leave the drag threshold,
/// travel to `to` in small steps (so both windows see motion and exchange XDND messages) and
/// hover there. The button stays down until [`release_mouse`].
pub fn press_and_drag(display: &str, from: (i32, i32), to: (i32, i32)) -> anyhow::Result<()> {
    const STEPS: i32 = 30;
    let point = |x: i32, y: i32| [x.to_string(), y.to_string()];
    let [x, y] = point(from.0, from.1);
    xdotool(display, &["mousemove", "--sync", &x, &y])?;
    std::thread::sleep(Duration::from_millis(200));
    xdotool(display, &["mousedown", "1"])?;
    for step in 1..=STEPS {
        let [x, y] = point(from.0 + (to.0 - from.0) * step / STEPS, from.1 + (to.1 - from.1) * step / STEPS);
        xdotool(display, &["mousemove", &x, &y])?;
        std::thread::sleep(Duration::from_millis(40));
    }
    // A few small moves over the target, so it answers XdndPosition before the drop.
    for wiggle in [3, -3, 2, 0] {
        let [x, y] = point(to.0 + wiggle, to.1);
        xdotool(display, &["mousemove", &x, &y])?;
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The second half of the drag: let go of the button, which drops.
pub fn release_mouse(display: &str) -> anyhow::Result<()> {
    xdotool(display, &["mouseup", "1"]).map(drop)
}

/// The distribution's Python, which is the one with python3-gi; a pyenv or venv `python3`
/// earlier on the PATH usually lacks it. `DROPSHIP_TEST_PYTHON` overrides.
fn system_python() -> PathBuf {
    std::env::var_os("DROPSHIP_TEST_PYTHON")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/usr/bin/python3")).filter(|p| p.is_file()))
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// `TAURI_DRIVER`, else `tauri-driver` on the PATH, else cargo's bin folder.
fn tauri_driver_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TAURI_DRIVER") {
        return PathBuf::from(path);
    }
    if let Some(found) = on_path("tauri-driver") {
        return found;
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    match cargo_home.map(|c| c.join("bin/tauri-driver")).filter(|p| p.is_file()) {
        Some(path) => path,
        None => panic!("tauri-driver is not installed: run `cargo install tauri-driver --locked`"),
    }
}

/// WebKitWebDriver from webkit2gtk-driver; tauri-driver finds it on the PATH otherwise.
fn native_driver_binary() -> Option<PathBuf> {
    on_path("WebKitWebDriver").or_else(|| Some(PathBuf::from("/usr/bin/WebKitWebDriver")).filter(|p| p.is_file()))
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("no free loopback port").port()
}

/// Reads one line from a child's stdout on a helper thread, so a silent child cannot hang the
/// test. The rest of the stream is drained there too, so the child never blocks on a full pipe.
fn first_line_within(stream: impl std::io::Read + Send + 'static, timeout: Duration) -> anyhow::Result<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stream).lines();
        let _ = tx.send(lines.next());
        for _ in lines {}
    });
    match rx.recv_timeout(timeout) {
        Ok(Some(Ok(line))) => Ok(line),
        Ok(Some(Err(e))) => Err(e).context("reading its output"),
        Ok(None) => bail!("it exited without a word"),
        Err(_) => bail!("nothing within {timeout:?}"),
    }
}
