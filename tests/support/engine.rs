//! Waiting on the core's Engine events, for the tests that drive the engine in-process.

use std::time::Duration;

use dropship_core::Event;
use tokio::sync::broadcast::Receiver;

/// The next event that `pick` accepts, within `timeout`.
pub fn next_event<T>(
    events: &mut Receiver<Event>,
    timeout: Duration,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> Option<T> {
    let waiter = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a runtime to wait on");
    waiter.block_on(async {
        tokio::time::timeout(timeout, async {
            loop {
                match events.recv().await {
                    Ok(event) => {
                        if let Some(found) = pick(&event) {
                            return found;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(e) => panic!("the engine's events ended: {e}"),
                }
            }
        })
        .await
        .ok()
    })
}
