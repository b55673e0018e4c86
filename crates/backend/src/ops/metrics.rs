//! Prometheus metrics, written by hand in the text exposition format (version 0.0.4): a few
//! counters and one histogram family do not need a metrics framework. One process-wide
//! registry, so the S3 client's interceptor and the HTTP middleware count into the same place.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds: presigning is sub-millisecond work, a
/// batch report with HEADs can take seconds.
const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// What `/metrics` shows.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (route template, method, status) → requests.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// route template → latency histogram.
    latency: Mutex<BTreeMap<String, Histogram>>,
    presigned_urls: AtomicU64,
    /// outcome (`recorded`, `already_recorded`, `rejected`) → reports.
    reports: Mutex<BTreeMap<&'static str, u64>>,
    /// S3 operation → failed calls.
    s3_errors: Mutex<BTreeMap<String, u64>>,
    rate_limited: AtomicU64,
    overloaded: AtomicU64,
    timed_out: AtomicU64,
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Not cumulative: one count per bucket, summed when written.
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// Appends one gauge in the text format (for values read at scrape time).
pub fn write_gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name} {value}");
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

/// A counter map stays usable even if a thread panicked while holding it: counts are plain numbers.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Metrics {
    pub fn request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        *lock(&self.requests).entry((route.to_owned(), method.to_owned(), status)).or_default() += 1;
        let seconds = elapsed.as_secs_f64();
        let mut latency = lock(&self.latency);
        let histogram = latency.entry(route.to_owned()).or_default();
        if let Some(bucket) = LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            histogram.buckets[bucket] += 1;
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    pub fn presigned(&self, urls: u64) {
        self.presigned_urls.fetch_add(urls, Ordering::Relaxed);
    }

    pub fn reports(&self, outcome: &'static str, count: u64) {
        *lock(&self.reports).entry(outcome).or_default() += count;
    }

    pub fn s3_error(&self, operation: &str) {
        *lock(&self.s3_errors).entry(operation.to_owned()).or_default() += 1;
    }

    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    pub fn overloaded(&self) {
        self.overloaded.fetch_add(1, Ordering::Relaxed);
    }

    pub fn timed_out(&self) {
        self.timed_out.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail; the results are ignored for that reason.
        let _ = writeln!(
            out,
            "# HELP dropship_http_requests_total HTTP requests answered, by route template, method and status."
        );
        let _ = writeln!(out, "# TYPE dropship_http_requests_total counter");
        for ((route, method, status), count) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "dropship_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {count}",
                escape(route),
                escape(method)
            );
        }
        let _ = writeln!(
            out,
            "# HELP dropship_http_request_duration_seconds Time from request head to response head, by route template."
        );
        let _ = writeln!(out, "# TYPE dropship_http_request_duration_seconds histogram");
        for (route, histogram) in lock(&self.latency).iter() {
            let route = escape(route);
            let mut cumulative = 0;
            for (bound, count) in LATENCY_BUCKETS.iter().zip(histogram.buckets) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "dropship_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "dropship_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(out, "dropship_http_request_duration_seconds_sum{{route=\"{route}\"}} {}", histogram.sum);
            let _ =
                writeln!(out, "dropship_http_request_duration_seconds_count{{route=\"{route}\"}} {}", histogram.count);
        }
        counter(
            &mut out,
            "dropship_presigned_urls_total",
            "Presigned URLs handed out (single PUTs and parts).",
            self.presigned_urls.load(Ordering::Relaxed),
        );
        let _ = writeln!(out, "# HELP dropship_reports_total Completion reports answered, by outcome.");
        let _ = writeln!(out, "# TYPE dropship_reports_total counter");
        for (outcome, count) in lock(&self.reports).iter() {
            let _ = writeln!(out, "dropship_reports_total{{outcome=\"{outcome}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "# HELP dropship_s3_errors_total S3 calls that failed (after the SDK's retries), by operation."
        );
        let _ = writeln!(out, "# TYPE dropship_s3_errors_total counter");
        for (operation, count) in lock(&self.s3_errors).iter() {
            let _ = writeln!(out, "dropship_s3_errors_total{{operation=\"{}\"}} {count}", escape(operation));
        }
        counter(
            &mut out,
            "dropship_rate_limited_total",
            "Requests answered 429 because their principal exceeded --rate-limit.",
            self.rate_limited.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "dropship_overloaded_total",
            "Requests answered 503 because --max-concurrent-requests were in flight.",
            self.overloaded.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "dropship_timed_out_total",
            "Requests answered 503 because they passed --request-timeout-secs.",
            self.timed_out.load(Ordering::Relaxed),
        );
        out
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {value}");
}

/// A label value as the text format needs it: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_route_template_and_latency_buckets_are_cumulative() {
        let metrics = Metrics::default();
        metrics.request("/api/v1/records/{client_upload_id}", "GET", 200, Duration::from_millis(3));
        metrics.request("/api/v1/records/{client_upload_id}", "GET", 200, Duration::from_millis(30));
        metrics.presigned(100);
        metrics.reports("recorded", 2);
        metrics.s3_error("HeadObject");
        let text = metrics.render();
        assert!(
            text.contains(
                "dropship_http_requests_total{route=\"/api/v1/records/{client_upload_id}\",method=\"GET\",status=\"200\"} 2"
            ),
            "the template, not the raw path, labels the count:\n{text}"
        );
        assert!(text.contains("le=\"0.005\"} 1\n"), "3 ms falls in the 5 ms bucket:\n{text}");
        assert!(text.contains("le=\"0.05\"} 2\n"), "buckets are cumulative:\n{text}");
        assert!(text.contains("le=\"+Inf\"} 2\n"), "+Inf holds every request");
        assert!(text.contains("dropship_presigned_urls_total 100\n"));
        assert!(text.contains("dropship_reports_total{outcome=\"recorded\"} 2\n"));
        assert!(text.contains("dropship_s3_errors_total{operation=\"HeadObject\"} 1\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
