//! The global bandwidth limit: one token bucket shared by every request of the engine, refilled
//! at the configured rate. Requests take tokens for each chunk before it goes out, so the
//! average rate over any window of a second or more stays at the limit.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How much may go out at once after an idle spell: a tenth of a second's worth of bytes,
/// so a burst never shows up as a spike in a 10-second average.
const BURST: Duration = Duration::from_millis(100);

#[derive(Default)]
pub struct Throttle {
    state: Mutex<Bucket>,
}

#[derive(Default)]
struct Bucket {
    /// Bytes per second; 0 means no limit.
    rate: u64,
    /// Bytes that may be sent now; negative when chunks were sent ahead of time (debt).
    tokens: f64,
    refilled: Option<Instant>,
}

impl Throttle {
    /// Sets the limit in bytes per second (0: none). Takes effect for the next chunk.
    pub fn set_rate(&self, bytes_per_second: u64) {
        let mut bucket = self.state.lock().unwrap_or_else(|p| p.into_inner());
        bucket.rate = bytes_per_second;
        bucket.tokens = bucket.tokens.min(burst(bytes_per_second));
    }

    pub fn rate(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).rate
    }

    /// Waits until `bytes` may be sent. A chunk larger than the burst is let through once the
    /// bucket is full and leaves a debt that later chunks wait off, so any chunk size works.
    pub async fn take(&self, bytes: usize) {
        let wait = {
            let mut bucket = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if bucket.rate == 0 {
                return;
            }
            let now = Instant::now();
            let rate = bucket.rate as f64;
            let elapsed = bucket.refilled.map_or(BURST.as_secs_f64(), |at| now.duration_since(at).as_secs_f64());
            bucket.tokens = (bucket.tokens + elapsed * rate).min(burst(bucket.rate));
            bucket.refilled = Some(now);
            bucket.tokens -= bytes as f64;
            if bucket.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-bucket.tokens / rate)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

fn burst(rate: u64) -> f64 {
    rate as f64 * BURST.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunks_go_out_at_the_limit_and_never_faster() {
        let throttle = Throttle::default();
        throttle.set_rate(4_000_000);
        let start = Instant::now();
        let mut sent = 0usize;
        while start.elapsed() < Duration::from_millis(1500) {
            throttle.take(256 * 1024).await;
            sent += 256 * 1024;
        }
        // The first burst is free; beyond it the bucket allows exactly `rate` per second.
        let allowed = 4_000_000.0 * (start.elapsed().as_secs_f64() + BURST.as_secs_f64());
        let sent = sent as f64;
        assert!(sent <= allowed * 1.05, "sent {sent} bytes, the limit allows {allowed}");
        assert!(sent >= allowed * 0.85, "sent only {sent} bytes of the {allowed} allowed");
    }

    #[tokio::test]
    async fn no_limit_means_no_wait() {
        let throttle = Throttle::default();
        let start = Instant::now();
        for _ in 0..1000 {
            throttle.take(1 << 20).await;
        }
        assert!(start.elapsed() < Duration::from_millis(50));
    }
}
