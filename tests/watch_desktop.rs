//! The desktop app as a background syncer: started at login (`--hidden`, what the autostart
//! entry runs) it shows no window, only the tray; a second launch does not start another
//! Dropship but brings up the running one's window and exits. The real app under its own Xvfb
//! and its own D-Bus session bus (the single-instance plugin speaks D-Bus).
//!
//!     cargo build -p dropship-desktop
//!     cargo test -p dropship-system-tests --test watch_desktop

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use dropship_system_tests::desktop::{xdotool, Xvfb};
use dropship_system_tests::process::ProcessGuard;
use dropship_system_tests::wait_for;
use dropship_testkit::target_bin;

fn visible_dropship_windows(display: &str) -> usize {
    // xdotool exits 1 when nothing matches.
    xdotool(display, &["search", "--onlyvisible", "--name", "^Dropship$"]).map(|ids| ids.lines().count()).unwrap_or(0)
}

#[test]
fn started_hidden_it_shows_no_window_and_a_second_launch_shows_the_running_one_and_exits() {
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
    let watched_until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < watched_until {
        assert_eq!(visible_dropship_windows(&xvfb.display), 0, "a login start shows no window");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!first.has_exited(), "started hidden, Dropship keeps running in the tray");

    let second = app(&[]).status().expect("run a second Dropship");
    assert!(second.success(), "the second launch hands over and exits cleanly: {second:?}");
    wait_for("the running Dropship's window", Duration::from_secs(15), || {
        (visible_dropship_windows(&xvfb.display) == 1).then_some(())
    })
    .unwrap();
    assert!(!first.has_exited(), "the first Dropship is still the one running");
    first.stop();
}
