//! Shared helpers for the system tests: processes that are always stopped, and the pieces of a
//! desktop session (Xvfb, tauri-driver, a GTK drag source, xdotool) for the GUI test.

pub mod cli;
pub mod companion;
pub mod desktop;
pub mod engine;
pub mod invariants;
pub mod process;

use std::time::{Duration, Instant};

/// Polls `probe` until it returns `Some`, or fails after `timeout` saying what was awaited.
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// For a test that needs what a developer's machine may lack (unprivileged user namespaces,
/// say): there it is skipped with a line saying why. In CI (`CI` set, as CI services do), which
/// provides the capability on purpose, its absence fails the test instead of hiding it.
pub fn skip_or_fail_in_ci(missing: &str) {
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(!in_ci, "{missing}; CI is meant to provide it, so this test fails there rather than being skipped");
    eprintln!("SKIPPED: {missing}");
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_missing_capability_is_a_failure_in_ci_and_a_skip_elsewhere() {
        // One test owns the variable, so no other test sees it change.
        let before = std::env::var_os("CI");
        std::env::set_var("CI", "true");
        let in_ci = std::panic::catch_unwind(|| super::skip_or_fail_in_ci("no user namespaces here"));
        std::env::remove_var("CI");
        let elsewhere = std::panic::catch_unwind(|| super::skip_or_fail_in_ci("no user namespaces here"));
        if let Some(value) = before {
            std::env::set_var("CI", value);
        }
        assert!(in_ci.is_err(), "with CI=true a missing capability fails the test");
        assert!(elsewhere.is_ok(), "without CI the test is skipped");
    }
}
