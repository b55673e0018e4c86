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
        TauriDriver { url: format!("http://127.0.0.1:{port}"), process }
    }

    /// Stops tauri-driver, WebKitWebDriver and the app, if the session did not already.
    pub fn stop(&mut self) {
        self.process.stop();
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
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/drag_source.py");
        let mut process = ProcessGuard::spawn(
            "drag source",
            Command::new(system_python())
                .arg(&script)
                .arg(file)
                .args([at.0.to_string(), at.1.to_string(), Self::SIZE.to_string()])
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
