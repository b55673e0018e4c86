//! The desktop app as a background syncer: started at login (`--hidden`, what the autostart
//! entry runs) it shows no window, only the tray, loads no GL driver and hands back the pages
//! GTK and WebKit touched starting; a second launch does not start another
//! Dropship but brings up the running one's window and exits. Its window closed to the tray, it
//! ends WebKit's helpers, hands the window's library pages back and, with nothing running,
//! starts over as a login start in the same process (≤ 60 MiB); *Open Dropship* builds the
//! window again where it was. The real app under its own Xvfb and its own D-Bus session bus (the
//! single-instance plugin and the tray speak D-Bus).
//!
//!     cargo build -p dropship-desktop
//!     cargo test -p dropship-system-tests --test watch_desktop

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use dropship_system_tests::desktop::{
    close_window, painted_window, window_geometry, xdotool, DesktopSession, Xvfb, SOFTWARE_RENDERING,
};
use dropship_system_tests::process::{descendants, resident_memory, ProcessGuard};
use dropship_system_tests::wait_for;
use dropship_testkit::target_bin;

fn visible_dropship_windows(display: &str) -> usize {
    // xdotool exits 1 when nothing matches.
    xdotool(display, &["search", "--onlyvisible", "--name", "^Dropship$"]).map(|ids| ids.lines().count()).unwrap_or(0)
}

/// One app at a time: the kernel hands back only pages no other process maps, and two apps
/// share their libraries' pages.
static ONE_APP_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn started_hidden_it_shows_no_window_and_a_second_launch_shows_the_running_one_and_exits() {
    let _alone = ONE_APP_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let xvfb = Xvfb::start();
    let data = tempfile::tempdir().unwrap();
    let mut bus = ProcessGuard::spawn(
        "dbus-daemon",
        Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let mut address = String::new();
    BufReader::new(bus.child_mut().stdout.take().unwrap()).read_line(&mut address).unwrap();
    let app = |args: &[&str]| {
        let mut command = Command::new(target_bin("dropship-desktop"));
        command
            .args(args)
            .env("DISPLAY", &xvfb.display)
            .env("DBUS_SESSION_BUS_ADDRESS", address.trim())
            .env("DROPSHIP_DATA_DIR", data.path())
            .env("DROPSHIP_LOG", "info,dropship_desktop::footprint=debug")
            .env("WEBKIT_DISABLE_DMABUF_RENDERER", "1")
            .env("LIBGL_ALWAYS_SOFTWARE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };

    // The first one's log, for the positive sign that it got as far as deciding on its window.
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("first.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut first = ProcessGuard::spawn("dropship-desktop --hidden", app(&["--hidden"]).stderr(log));
    // The app decides whether to show its window in the same setup step that logs "engine
    // opened", a moment after it: wait for that line however slow the machine, then watch for a
    // window for a while longer than the rest of that step could take.
    wait_for("the hidden app to open its engine", Duration::from_secs(60), || {
        std::fs::read_to_string(&log_path).unwrap_or_default().contains("engine opened").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}; its log:\n{}", std::fs::read_to_string(&log_path).unwrap_or_default()));
    // GTK and WebKit have started, though no window is built: their pages go back too, 2 s on.
    let handed_back = || std::fs::read_to_string(&log_path).unwrap_or_default().contains("handed library pages back");
    let before = (!handed_back()).then(|| tree_rss_mib(first.pid() as i32));
    let watched_until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < watched_until {
        assert_eq!(visible_dropship_windows(&xvfb.display), 0, "a login start shows no window");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!first.has_exited(), "started hidden, Dropship keeps running in the tray");
    wait_for("the pages handed back", Duration::from_secs(30), || handed_back().then_some(())).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let after = tree_rss_mib(first.pid() as i32);
    eprintln!("RSS of a login start: {before:.1?} MiB, {after:.1} MiB once its pages were handed back");
    // About 138 → 86 MiB here. On a machine slow enough that the hand-back came before the
    // first measure, there is nothing to compare.
    if let Some(before) = before {
        assert!(
            after < before * 0.85,
            "a login start holds {after:.1} MiB RSS after handing pages back, {before:.1} before"
        );
    }

    // GTK probes GL as it opens an X11 display; nothing in a login start needs it.
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", first.pid())).unwrap();
    let drivers: Vec<&str> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.contains("_dri.so") || p.contains("libGLX_"))
        .collect();
    assert!(drivers.is_empty(), "a login start on X11 loads no GL driver, yet maps {drivers:?}");

    let second = app(&[]).status().expect("run a second Dropship");
    assert!(second.success(), "the second launch hands over and exits cleanly: {second:?}");
    wait_for("the running Dropship's window", Duration::from_secs(15), || {
        (visible_dropship_windows(&xvfb.display) == 1).then_some(())
    })
    .unwrap();
    assert!(!first.has_exited(), "the first Dropship is still the one running");
    first.stop();
}

/// The app's processes (it and everything under it), as (command name, pid).
fn app_tree(app: i32) -> Vec<(String, i32)> {
    std::iter::once(app)
        .chain(descendants(app))
        .filter_map(|pid| Some((std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?.trim().to_owned(), pid)))
        .collect()
}

fn has_helper(tree: &[(String, i32)], prefix: &str) -> bool {
    tree.iter().any(|(name, _)| name.starts_with(prefix))
}

/// RSS of the app and everything under it, in MiB.
fn tree_rss_mib(app: i32) -> f64 {
    app_tree(app).iter().map(|&(_, pid)| resident_memory(pid).0).sum::<u64>() as f64 / 1024.0
}

/// Without WebDriver, because WebKit ends a WebDriver session when its network process ends
/// (so under tauri-driver the app keeps it, and tests/gui_tray.rs cannot see this path), and a
/// WebDriver session cannot follow the app starting over in its own process.
#[test]
fn closed_to_the_tray_it_starts_over_lean_and_the_tray_opens_the_window_where_it_was() {
    let _alone = ONE_APP_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let xvfb = Xvfb::start();
    let home = tempfile::tempdir().unwrap();
    let session = DesktopSession::start(&home.path().join("session")).unwrap();
    let data = tempfile::tempdir().unwrap();
    let log_path = home.path().join("app.log");
    let mut app = ProcessGuard::spawn(
        "dropship-desktop",
        Command::new(target_bin("dropship-desktop"))
            .env("DISPLAY", &xvfb.display)
            .env("DBUS_SESSION_BUS_ADDRESS", &session.bus_address)
            .env("DROPSHIP_DATA_DIR", data.path())
            .env("DROPSHIP_LOG", "warn,dropship_desktop=debug")
            .envs(SOFTWARE_RENDERING)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap()),
    );
    let pid = app.pid() as i32;
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let open_and_painted = |what: &str| {
        wait_for(what, Duration::from_secs(60), || {
            let tree = app_tree(pid);
            let helpers = has_helper(&tree, "WebKitWebProces") && has_helper(&tree, "WebKitNetworkPr");
            (helpers && painted_window(&xvfb.display, "^Dropship$").is_some()).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}; the app's log:\n{}", log()))
    };

    open_and_painted("the window, painted, with WebKit's web and network processes");
    // Somewhere the config would not put it, to see that the new process knows the place.
    let id = xdotool(&xvfb.display, &["search", "--onlyvisible", "--name", "^Dropship$"]).unwrap();
    xdotool(&xvfb.display, &["windowmove", id.lines().next().unwrap().trim(), "37", "41"]).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let placed = window_geometry(&xvfb.display, "^Dropship$").unwrap();
    let open = tree_rss_mib(pid);

    close_window(&xvfb.display, "^Dropship$").unwrap();
    wait_for("WebKit's web and network processes to end", Duration::from_secs(30), || {
        let tree = app_tree(pid);
        (!has_helper(&tree, "WebKitWeb") && !has_helper(&tree, "WebKitNetwork")).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}; the app's log:\n{}", log()));
    // Pages handed back 2 s after the close; the restart within 5 s more, once the app sees
    // nothing would be lost; then the new process, a login start, hands its own back.
    wait_for("the app to start over in the tray and hand its pages back", Duration::from_secs(60), || {
        let log = log();
        let restarted = log.find("starting over in the tray")?;
        log[restarted..].contains("handed library pages back").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}; the app's log:\n{}", log()));
    std::thread::sleep(Duration::from_secs(1));
    assert!(!app.has_exited(), "the app stays in the tray, the same process");
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(name.trim(), "dropship-deskto", "the process keeps its name (the kernel keeps 15 bytes)");
    let in_tray = tree_rss_mib(pid);
    eprintln!("RSS of the app and its helpers: {open:.1} MiB with the window open, {in_tray:.1} MiB in the tray");
    // About 400 → 40 MiB here (debug build): what a login start holds.
    assert!(in_tray <= 60.0, "in the tray the app holds {in_tray:.1} MiB RSS ({open:.1} open); the issue asks ≤ 60");
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert!(!maps.contains("libLLVM"), "after starting over, no GL driver is mapped");

    session.click_tray_item("Open Dropship").unwrap();
    open_and_painted("the window opened again from the tray, painted, with new WebKit processes");
    assert_eq!(window_geometry(&xvfb.display, "^Dropship$").unwrap(), placed, "the window opens where it was");
    assert!(!log().contains("could not open the window"), "the app's log:\n{}", log());
    assert!(!log().contains("could not read what the restart"), "the app's log:\n{}", log());

    // A process that started over starts over again, and holds the single-instance name: a
    // second launch brings up its window and exits.
    close_window(&xvfb.display, "^Dropship$").unwrap();
    // Until the new process has opened its engine, which it does after taking the
    // single-instance name: a launch in between would find no Dropship, become the running one,
    // and the restarted process would hand over to it and exit (one Dropship still runs).
    wait_for("the app to start over a second time", Duration::from_secs(60), || {
        let log = log();
        let (count, last) = (log.matches("starting over in the tray").count(), log.rfind("starting over in the tray")?);
        (count == 2 && log[last..].contains("engine opened")).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}; the app's log:\n{}", log()));
    wait_for("the window to be gone", Duration::from_secs(10), || {
        (visible_dropship_windows(&xvfb.display) == 0).then_some(())
    })
    .unwrap();
    let mut second = ProcessGuard::spawn(
        "a second dropship-desktop",
        Command::new(target_bin("dropship-desktop"))
            .env("DISPLAY", &xvfb.display)
            .env("DBUS_SESSION_BUS_ADDRESS", &session.bus_address)
            .env("DROPSHIP_DATA_DIR", data.path())
            .envs(SOFTWARE_RENDERING)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    // Bounded: a second launch that became the running Dropship would never exit.
    let second = wait_for("the second launch to hand over and exit", Duration::from_secs(30), || {
        second.child_mut().try_wait().ok().flatten()
    })
    .unwrap_or_else(|e| panic!("{e}; the app's log:\n{}", log()));
    assert!(second.success(), "the second launch hands over to the restarted app and exits: {second:?}");
    open_and_painted("the restarted app's window, brought up by a second launch");
    assert!(!app.has_exited(), "the same process runs on");
    app.stop();
}
