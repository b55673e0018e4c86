//! A loopback HTTP forward proxy that injects the faults real servers cannot be made to produce
//! on demand: a flipped byte in a request body, a 503 SlowDown. Clients reach it through the
//! standard `HTTP_PROXY` variable, so the presigned URLs and their signed Host stay untouched.
//!
//! Each connection carries one request (`Connection: close` both ways), which keeps the proxy
//! a few dozen lines; that costs a TCP handshake per request, which only tests pay.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::runtime;

/// What to do to a request that matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward it with one byte of its body changed, as a bad link would.
    FlipBodyByte,
    /// Answer `503 SlowDown` without forwarding, as S3 does under load.
    SlowDown,
}

/// Injects `fault` into the first `times` requests whose method and target contain `method`
/// and `target_contains`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: &'static str,
    pub target_contains: &'static str,
    pub fault: Fault,
    pub times: usize,
}

pub struct FaultProxy {
    /// The value for `HTTP_PROXY`.
    pub url: String,
    injected: Arc<AtomicUsize>,
    forwarded: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub fn start(rules: Vec<Rule>) -> FaultProxy {
        let listener = crate::block_on(TcpListener::bind("127.0.0.1:0")).expect("bind the fault proxy");
        let url = format!("http://{}", listener.local_addr().expect("a bound address"));
        let injected = Arc::new(AtomicUsize::new(0));
        let forwarded = Arc::new(AtomicUsize::new(0));
        let budget: Arc<Vec<AtomicUsize>> = Arc::new(rules.iter().map(|r| AtomicUsize::new(r.times)).collect());
        let rules = Arc::new(rules);
        let (inj, fwd) = (injected.clone(), forwarded.clone());
        let task = runtime().spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (rules, budget, inj, fwd) = (rules.clone(), budget.clone(), inj.clone(), fwd.clone());
                tokio::spawn(async move {
                    let _ = serve(client, &rules, &budget, &inj, &fwd).await;
                });
            }
        });
        FaultProxy { url, injected, forwarded, task }
    }

    /// Faults injected so far.
    pub fn injected(&self) -> usize {
        self.injected.load(Ordering::SeqCst)
    }

    /// Requests passed on to their server so far (corrupted ones included).
    pub fn forwarded(&self) -> usize {
        self.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut client: TcpStream,
    rules: &[Rule],
    budget: &[AtomicUsize],
    injected: &AtomicUsize,
    forwarded: &AtomicUsize,
) -> std::io::Result<()> {
    let (head, mut body) = read_request(&mut client).await?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());

    let fault = rules.iter().zip(budget).find_map(|(rule, left)| {
        let matches = method == rule.method && target.contains(rule.target_contains);
        (matches && left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok())
            .then_some(rule.fault)
    });
    if fault.is_some() {
        injected.fetch_add(1, Ordering::SeqCst);
    }
    if fault == Some(Fault::SlowDown) {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
        let reply = format!(
            "HTTP/1.1 503 Slow Down\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{xml}",
            xml.len()
        );
        return client.write_all(reply.as_bytes()).await;
    }
    if fault == Some(Fault::FlipBodyByte) && !body.is_empty() {
        let middle = body.len() / 2;
        body[middle] ^= 0x01;
    }

    // Absolute-form target (proxy request) → the upstream address and an origin-form target.
    let rest = target.strip_prefix("http://").unwrap_or(target);
    let (authority, path) = rest.split_once('/').map(|(a, p)| (a, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut upstream = TcpStream::connect(authority).await?;
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or_default().to_ascii_lowercase();
        if !matches!(name.as_str(), "connection" | "proxy-connection" | "keep-alive") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("connection: close\r\n\r\n");
    upstream.write_all(out.as_bytes()).await?;
    upstream.write_all(&body).await?;
    forwarded.fetch_add(1, Ordering::SeqCst);
    let mut response = Vec::new();
    upstream.read_to_end(&mut response).await?;
    client.write_all(&response).await?;
    client.shutdown().await
}

/// The request head (as text) and its body (by Content-Length).
async fn read_request(stream: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
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
    let length = head
        .split("\r\n")
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("content-length")))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((head, body))
}
