//! A loopback HTTP proxy that injects the faults real servers cannot be made to produce on
//! demand: connections cut mid-body, 500/503/SlowDown/429 answers, stalls, delays, flipped
//! bytes, and a seeded random failure rate. It runs in one of two modes:
//!
//! - **forward** ([`FaultProxy::start`]): clients reach it through the standard `HTTP_PROXY`
//!   variable (reqwest honours it for plain-http targets, loopback included), so presigned URLs
//!   and their signed Host header stay untouched — the way to sit in front of S3;
//! - **reverse** ([`FaultProxy::reverse`]): it listens on its own port and passes every request
//!   to one upstream, so a client pointed at it (`--backend <proxy url>`) talks to the real
//!   server behind it — the way to sit in front of the backend.
//!
//! Each connection carries one request (`Connection: close` both ways), which keeps the proxy
//! small; that costs a TCP handshake per request, which only tests pay. Bodies must carry a
//! `Content-Length` (Dropship's requests all do). Everything it saw is kept as [`Exchange`]s so
//! tests can count requests and bytes per URL. Dropping the proxy stops it, stalled
//! connections included.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::runtime;

/// What to do to a request that matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward it with one byte of its body changed, as a bad link would.
    FlipBodyByte,
    /// Answer `503 SlowDown` without forwarding, as S3 does under load.
    SlowDown,
    /// Answer with this HTTP status and an S3-style XML error, without forwarding
    /// (500 InternalError, 503 ServiceUnavailable, 429 TooManyRequests, …).
    Status(u16),
    /// Pass the head and the first `n` bytes of the body on to the server, then reset both
    /// connections: a link that drops in the middle of a part.
    CutAfter(u64),
    /// Take the whole request and then say nothing for this long before closing the connection;
    /// long enough, the client's read timeout fires first.
    Stall(Duration),
    /// Wait this long, then forward as usual: a slow link or a slow server.
    Delay(Duration),
    /// Forward the whole request and let the server act on it, then reset the client's
    /// connection instead of passing the answer on: the request took effect, but the client
    /// cannot know. The case idempotency keys exist for.
    DropResponse,
    /// Hold a presigned request until its URL has expired (its `X-Amz-Date` plus
    /// `X-Amz-Expires`, and a second more for S3's whole-second clock), then forward it: a URL
    /// that went stale before it was used, however fast or slow the machine. A request without
    /// those query parameters is forwarded at once.
    HoldUntilExpired,
}

/// Injects `fault` into the first `times` requests whose method equals `method` (any method
/// when empty) and whose request target contains `target_contains` (the full URL in forward
/// mode, the path and query in reverse mode). `times: usize::MAX` means every time.
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: &'static str,
    pub target_contains: &'static str,
    pub fault: Fault,
    pub times: usize,
}

impl Rule {
    fn matches(&self, method: &str, target: &str) -> bool {
        (self.method.is_empty() || self.method == method) && target.contains(self.target_contains)
    }
}

/// Faults at a fixed rate among the requests that match, drawn from a seeded generator so a
/// failing run can be repeated: each matching request fails with probability `rate`, with a
/// fault picked from `faults` in turn by the same generator. Rules are applied first.
#[derive(Debug, Clone)]
pub struct RandomFaults {
    pub rate: f64,
    pub seed: u64,
    pub method: &'static str,
    pub target_contains: &'static str,
    pub faults: Vec<Fault>,
}

/// One request the proxy saw, and what became of it. Query strings are dropped (they hold
/// signatures); the part number is kept, since per-part accounting is what tests need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// `partNumber` from the query string, for multipart part uploads.
    pub part_number: Option<u32>,
    /// The body length the client declared.
    pub declared_len: u64,
    /// Body bytes passed on to the server (fewer than declared when cut, 0 when answered by
    /// the proxy itself).
    pub bytes_forwarded: u64,
    pub fault: Option<Fault>,
    /// The status the client was given; `None` when it got no answer (cut or stalled).
    pub status: Option<u16>,
}

/// Counts over the proxy's [`Exchange`]s for one path (and part).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub requests: usize,
    pub faults: usize,
    pub bytes_forwarded: u64,
    /// Requests the server answered with a 2xx.
    pub succeeded: usize,
}

struct State {
    rules: Mutex<Vec<(Rule, usize)>>,
    random: Mutex<Option<(RandomFaults, SplitMix64)>>,
    upstream: Option<String>,
    injected: AtomicUsize,
    forwarded: AtomicUsize,
    exchanges: Mutex<Vec<Exchange>>,
}

pub struct FaultProxy {
    /// Forward mode: the value for `HTTP_PROXY`. Reverse mode: the URL to use instead of the
    /// upstream's (`http://127.0.0.1:PORT`, no trailing slash).
    pub url: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// A forward proxy (for `HTTP_PROXY`) applying `rules`.
    pub fn start(rules: Vec<Rule>) -> FaultProxy {
        Self::launch(None, rules, None)
    }

    /// A forward proxy that fails a seeded random share of the matching requests, after `rules`.
    pub fn start_random(rules: Vec<Rule>, random: RandomFaults) -> FaultProxy {
        Self::launch(None, rules, Some(random))
    }

    /// A reverse proxy in front of `upstream` (`http://host:port`), applying `rules`.
    pub fn reverse(upstream: &str, rules: Vec<Rule>) -> FaultProxy {
        let authority = upstream.trim_start_matches("http://").trim_end_matches('/').to_owned();
        assert!(!authority.contains('/'), "the upstream is a base URL with no path: {upstream}");
        Self::launch(Some(authority), rules, None)
    }

    fn launch(upstream: Option<String>, rules: Vec<Rule>, random: Option<RandomFaults>) -> FaultProxy {
        let listener = crate::block_on(TcpListener::bind("127.0.0.1:0")).expect("bind the fault proxy");
        let url = format!("http://{}", listener.local_addr().expect("a bound address"));
        let state = Arc::new(State {
            rules: Mutex::new(rules.into_iter().map(|r| (r.clone(), r.times)).collect()),
            random: Mutex::new(random.map(|r| {
                let rng = SplitMix64(r.seed);
                (r, rng)
            })),
            upstream,
            injected: AtomicUsize::new(0),
            forwarded: AtomicUsize::new(0),
            exchanges: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        let task = runtime().spawn(async move {
            // Connection tasks live in this set, so aborting the accept loop ends them too.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { break };
                        let state = shared.clone();
                        connections.spawn(async move {
                            let _ = serve(client, &state).await;
                        });
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        FaultProxy { url, state, task }
    }

    /// Replaces the rules from now on (an empty list lets everything through): a backend that
    /// fails for a while, then recovers.
    pub fn set_rules(&self, rules: Vec<Rule>) {
        *self.state.rules.lock().unwrap_or_else(|p| p.into_inner()) =
            rules.into_iter().map(|r| (r.clone(), r.times)).collect();
    }

    /// Turns the random failures off (or on again with new settings).
    pub fn set_random(&self, random: Option<RandomFaults>) {
        *self.state.random.lock().unwrap_or_else(|p| p.into_inner()) = random.map(|r| {
            let rng = SplitMix64(r.seed);
            (r, rng)
        });
    }

    /// Faults injected so far.
    pub fn injected(&self) -> usize {
        self.state.injected.load(Ordering::SeqCst)
    }

    /// Requests passed on to their server so far (corrupted and cut ones included).
    pub fn forwarded(&self) -> usize {
        self.state.forwarded.load(Ordering::SeqCst)
    }

    /// Every request seen so far, in the order they arrived.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.state.exchanges.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Totals per (method, path, part number) over the requests whose method is `method` (any
    /// when empty) and whose path contains `path_contains`.
    pub fn traffic(&self, method: &str, path_contains: &str) -> BTreeMap<(String, String, Option<u32>), Traffic> {
        let mut totals: BTreeMap<(String, String, Option<u32>), Traffic> = BTreeMap::new();
        for exchange in self.exchanges() {
            if !(method.is_empty() || exchange.method == method) || !exchange.path.contains(path_contains) {
                continue;
            }
            let entry =
                totals.entry((exchange.method.clone(), exchange.path.clone(), exchange.part_number)).or_default();
            entry.requests += 1;
            entry.faults += usize::from(exchange.fault.is_some());
            entry.bytes_forwarded += exchange.bytes_forwarded;
            entry.succeeded += usize::from(exchange.status.is_some_and(|s| (200..300).contains(&s)));
        }
        totals
    }

    /// Body bytes passed on to servers by requests with this method whose path contains
    /// `path_contains`: compare with the bytes that had to go to see what was sent twice.
    pub fn bytes_forwarded(&self, method: &str, path_contains: &str) -> u64 {
        self.traffic(method, path_contains).values().map(|t| t.bytes_forwarded).sum()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The fault for this request, if any: a rule with budget left first, then the random rate.
fn choose_fault(state: &State, method: &str, target: &str) -> Option<Fault> {
    {
        let mut rules = state.rules.lock().unwrap_or_else(|p| p.into_inner());
        for (rule, left) in rules.iter_mut() {
            if rule.matches(method, target) && *left > 0 {
                *left -= 1;
                return Some(rule.fault);
            }
        }
    }
    let mut random = state.random.lock().unwrap_or_else(|p| p.into_inner());
    let (config, rng) = random.as_mut()?;
    let matches = (config.method.is_empty() || config.method == method) && target.contains(config.target_contains);
    if !matches || config.faults.is_empty() {
        return None;
    }
    // Draw for every matching request, failing or not, so the sequence depends only on the seed
    // and the order of requests.
    let roll = rng.next_f64();
    let pick = rng.next_u64() as usize % config.faults.len();
    (roll < config.rate).then(|| config.faults[pick])
}

async fn serve(mut client: TcpStream, state: &State) -> std::io::Result<()> {
    let (head, early_body) = read_head(&mut client).await?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or_default().to_owned(), parts.next().unwrap_or_default().to_owned());
    let headers: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    let declared_len = headers
        .iter()
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.trim().eq_ignore_ascii_case("content-length")))
        .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        .unwrap_or(0);

    // Absolute-form target (forward proxy) → upstream authority and origin-form path.
    let (authority, origin_target) = match &state.upstream {
        Some(upstream) => (upstream.clone(), target.clone()),
        None => {
            let rest = target.strip_prefix("http://").unwrap_or(&target);
            let (authority, path) = rest
                .split_once('/')
                .map(|(a, p)| (a.to_owned(), format!("/{p}")))
                .unwrap_or((rest.to_owned(), "/".into()));
            (authority, path)
        }
    };
    let (path, query) = origin_target.split_once('?').unwrap_or((&origin_target, ""));
    let part_number = query.split('&').find_map(|kv| kv.strip_prefix("partNumber=")).and_then(|n| n.parse().ok());
    // An empty body has no byte to flip: that request is not counted as faulted.
    let fault = choose_fault(state, &method, &target).filter(|f| *f != Fault::FlipBodyByte || declared_len > 0);
    if fault.is_some() {
        state.injected.fetch_add(1, Ordering::SeqCst);
    }
    let mut exchange = Exchange {
        method: method.clone(),
        path: path.to_owned(),
        part_number,
        declared_len,
        bytes_forwarded: 0,
        fault,
        status: None,
    };
    let outcome = relay(
        &mut client,
        state,
        fault,
        &method,
        &authority,
        &origin_target,
        &headers,
        early_body,
        declared_len,
        &mut exchange,
    )
    .await;
    state.exchanges.lock().unwrap_or_else(|p| p.into_inner()).push(exchange);
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn relay(
    client: &mut TcpStream,
    state: &State,
    fault: Option<Fault>,
    method: &str,
    authority: &str,
    origin_target: &str,
    headers: &[&str],
    early_body: Vec<u8>,
    declared_len: u64,
    exchange: &mut Exchange,
) -> std::io::Result<()> {
    match fault {
        Some(Fault::SlowDown) => {
            read_body(client, early_body, declared_len).await?;
            exchange.status = Some(503);
            return answer_error(client, 503, "Slow Down", "SlowDown", "Please reduce your request rate.").await;
        }
        Some(Fault::Status(status)) => {
            read_body(client, early_body, declared_len).await?;
            exchange.status = Some(status);
            let (reason, code) = match status {
                429 => ("Too Many Requests", "TooManyRequests"),
                500 => ("Internal Server Error", "InternalError"),
                502 => ("Bad Gateway", "BadGateway"),
                503 => ("Service Unavailable", "ServiceUnavailable"),
                504 => ("Gateway Timeout", "GatewayTimeout"),
                _ => ("Injected", "InjectedFault"),
            };
            return answer_error(client, status, reason, code, "Injected by the fault proxy.").await;
        }
        Some(Fault::Stall(hold)) => {
            let _ = read_body(client, early_body, declared_len).await;
            tokio::time::sleep(hold).await;
            return reset(client);
        }
        Some(Fault::Delay(wait)) => tokio::time::sleep(wait).await,
        Some(Fault::HoldUntilExpired) => {
            if let Some(expired) = presigned_expiry(origin_target) {
                let now = std::time::SystemTime::now();
                let stale = expired + Duration::from_secs(1);
                if let Ok(left) = stale.duration_since(now) {
                    tokio::time::sleep(left).await;
                }
            }
        }
        _ => {}
    }

    let mut upstream = TcpStream::connect(authority).await?;
    let mut out = format!("{method} {origin_target} HTTP/1.1\r\n");
    for line in headers {
        let name = line.split(':').next().unwrap_or_default().trim().to_ascii_lowercase();
        if matches!(name.as_str(), "connection" | "proxy-connection" | "keep-alive") {
            continue;
        }
        if name == "host" && state.upstream.is_some() {
            // Reverse mode: the server behind is a different host:port than the one asked.
            out.push_str(&format!("host: {authority}\r\n"));
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("connection: close\r\n\r\n");
    upstream.write_all(out.as_bytes()).await?;
    state.forwarded.fetch_add(1, Ordering::SeqCst);

    if let Some(Fault::CutAfter(limit)) = fault {
        let sent = pipe_body(client, &mut upstream, early_body, declared_len.min(limit), None).await?;
        exchange.bytes_forwarded = sent;
        // A reset rather than a clean close on both sides: the server sees a short body, the
        // client a connection that died mid-request.
        let _ = reset(&mut upstream);
        return reset(client);
    }
    let flip = (fault == Some(Fault::FlipBodyByte) && declared_len > 0).then_some(declared_len / 2);
    exchange.bytes_forwarded = pipe_body(client, &mut upstream, early_body, declared_len, flip).await?;

    let mut response = Vec::new();
    upstream.read_to_end(&mut response).await?;
    if fault == Some(Fault::DropResponse) {
        return reset(client);
    }
    exchange.status = std::str::from_utf8(&response[..response.len().min(16)])
        .ok()
        .and_then(|s| s.split(' ').nth(1))
        .and_then(|code| code.parse().ok());
    client.write_all(&response).await?;
    client.shutdown().await
}

/// When a presigned URL stops being valid: its `X-Amz-Date` (`20261205T083456Z`) plus its
/// `X-Amz-Expires` in seconds.
fn presigned_expiry(target: &str) -> Option<std::time::SystemTime> {
    let query = target.split_once('?')?.1;
    let param = |name: &str| query.split('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='));
    let date = param("X-Amz-Date")?;
    let expires: u64 = param("X-Amz-Expires")?.parse().ok()?;
    let number = |range: std::ops::Range<usize>| date.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(9..11)?, number(11..13)?, number(13..15)?);
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let signed_at = u64::try_from(days * 86_400 + hour * 3600 + minute * 60 + second).ok()?;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(signed_at + expires))
}

async fn answer_error(
    client: &mut TcpStream,
    status: u16,
    reason: &str,
    code: &str,
    message: &str,
) -> std::io::Result<()> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    let reply = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{xml}",
        xml.len()
    );
    client.write_all(reply.as_bytes()).await?;
    client.shutdown().await
}

/// Closes with RST instead of FIN (SO_LINGER 0).
fn reset(stream: &mut TcpStream) -> std::io::Result<()> {
    stream.set_zero_linger()
}

/// Copies `len` body bytes from the client to the server as they arrive (the bytes read with
/// the head first), flipping the byte at `flip` if asked. Returns the bytes written.
async fn pipe_body(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    early: Vec<u8>,
    len: u64,
    flip: Option<u64>,
) -> std::io::Result<u64> {
    let mut written = 0u64;
    let mut chunk = early;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let take = (len - written).min(chunk.len() as u64) as usize;
        let piece = &mut chunk[..take];
        if let Some(at) = flip.filter(|at| (written..written + take as u64).contains(at)) {
            piece[(at - written) as usize] ^= 0x01;
        }
        upstream.write_all(piece).await?;
        written += take as u64;
        if written >= len {
            return Ok(written);
        }
        let n = client.read(&mut buf).await?;
        if n == 0 {
            return Ok(written);
        }
        chunk = buf[..n].to_vec();
    }
}

/// Reads (and drops) the rest of a body, so the client sees the answer rather than a reset.
async fn read_body(client: &mut TcpStream, early: Vec<u8>, len: u64) -> std::io::Result<()> {
    let mut have = early.len() as u64;
    let mut buf = vec![0u8; 64 * 1024];
    while have < len {
        let n = client.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        have += n as u64;
    }
    Ok(())
}

/// The request head (as text) and whatever body bytes arrived with it.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    Ok((head, buf[head_end + 4..].to_vec()))
}

/// A tiny seeded generator (SplitMix64): enough for fault rates, no dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_presigned_url_expires_at_its_signing_time_plus_its_lifetime() {
        let at =
            |target: &str| presigned_expiry(target).map(|t| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs());
        let url = "/bucket/key?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20261205T083456Z&X-Amz-Expires=3&X-Amz-Signature=ab";
        assert_eq!(at(url), Some(1_796_459_696 + 3), "signed 2026-12-05 08:34:56 UTC, valid for 3 s");
        let leap = "/b/k?X-Amz-Expires=900&X-Amz-Date=20240229T235959Z";
        assert_eq!(at(leap), Some(1_709_251_199 + 900), "a leap day, parameters in any order");
        assert_eq!(at("/b/k?partNumber=1"), None, "a URL that is not presigned has no expiry to wait for");
    }
}
