//! Shared helpers for the system tests: processes that are always stopped, and the pieces of a
//! desktop session (Xvfb, tauri-driver, a GTK drag source, xdotool) for the GUI test.

pub mod cli;
pub mod companion;
pub mod desktop;
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
