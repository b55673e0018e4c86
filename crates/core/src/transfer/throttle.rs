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
        let wait = self.reserve(bytes, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes `bytes` from the bucket as of `now` and says how long the caller must wait before
    /// sending them. Kept apart from the sleep so the accounting can be tested on a clock the
    /// test drives.
    fn reserve(&self, bytes: usize, now: Instant) -> Duration {
        let mut bucket = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if bucket.rate == 0 {
            return Duration::ZERO;
        }
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
    }
}

fn burst(rate: u64) -> f64 {
    rate as f64 * BURST.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sender that waits exactly as long as the throttle says, on a clock the test moves:
    /// the bytes it may send over `seconds`, with no scheduler or machine load in the figure.
    fn bytes_sent_on_a_driven_clock(throttle: &Throttle, chunk: usize, seconds: f64) -> (f64, f64) {
        let start = Instant::now();
        let mut now = start;
        let mut sent = 0usize;
        while now.duration_since(start).as_secs_f64() < seconds {
            now += throttle.reserve(chunk, now);
            sent += chunk;
        }
        (sent as f64, now.duration_since(start).as_secs_f64())
    }

    #[test]
    fn over_any_stretch_the_throttle_grants_the_limit_and_not_a_byte_more() {
        let throttle = Throttle::default();
        throttle.set_rate(4_000_000);
        let (sent, seconds) = bytes_sent_on_a_driven_clock(&throttle, 256 * 1024, 10.0);
        // The first burst is free; beyond it the bucket allows exactly `rate` per second. The
        // last chunk is granted at `seconds` and may be sent then, so it counts in full.
        let allowed = 4_000_000.0 * (seconds + BURST.as_secs_f64());
        assert!(sent <= allowed + 256.0 * 1024.0, "granted {sent} bytes where the limit allows {allowed}");
        assert!(
            sent >= allowed * 0.99,
            "granted only {sent} bytes of the {allowed} the limit allows: it waits too long"
        );
    }

    #[test]
    fn a_chunk_larger_than_the_burst_is_let_through_and_its_debt_waited_off() {
        let throttle = Throttle::default();
        throttle.set_rate(1_000_000);
        let start = Instant::now();
        let wait = throttle.reserve(5_000_000, start);
        assert!(
            wait.abs_diff(Duration::from_millis(4900)) < Duration::from_millis(1),
            "5 MB at 1 MB/s, less the 0.1 s burst, is a 4.9 s debt: {wait:?}"
        );
        let early = throttle.reserve(1, start + Duration::from_secs(4));
        assert!(early >= Duration::from_millis(899), "a chunk during the debt waits for the rest of it: {early:?}");
    }

    #[tokio::test]
    async fn chunks_go_out_no_faster_than_the_limit_on_the_real_clock() {
        // `take` sleeps for what `reserve` says. On the wall clock only the upper bound is
        // asserted: a loaded machine can make the sender slower, never faster.
        let throttle = Throttle::default();
        throttle.set_rate(4_000_000);
        let start = Instant::now();
        let mut sent = 0usize;
        while start.elapsed() < Duration::from_millis(1500) {
            throttle.take(256 * 1024).await;
            sent += 256 * 1024;
        }
        let allowed = 4_000_000.0 * (start.elapsed().as_secs_f64() + BURST.as_secs_f64());
        let sent = sent as f64;
        assert!(sent <= allowed * 1.05, "sent {sent} bytes, the limit allows {allowed}");
    }

    #[tokio::test]
    async fn no_limit_means_no_wait() {
        let throttle = Throttle::default();
        let now = Instant::now();
        for _ in 0..1000 {
            assert_eq!(throttle.reserve(1 << 20, now), Duration::ZERO, "without a limit nothing waits");
        }
        // And `take` itself never sleeps then: it finishes without the clock moving on.
        let waiting = tokio::time::timeout(Duration::from_secs(30), async {
            for _ in 0..1000 {
                throttle.take(1 << 20).await;
            }
        });
        assert!(waiting.await.is_ok(), "1,000 chunks without a limit should not wait");
    }
}
