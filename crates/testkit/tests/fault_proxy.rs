//! The fault proxy's own promises, against a tiny loopback server that reports what reached
//! it: each fault does what it says, counters add up, the random rate is repeatable, and a
//! dropped proxy stops listening.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dropship_testkit::{block_on, Fault, FaultProxy, RandomFaults, Rule};

/// A server that answers each request `200` with the number of body bytes it received (by
/// reading until the client stops sending), and sends that number down `received`.
fn counting_server() -> (String, mpsc::Receiver<(String, usize)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut data = Vec::new();
                let mut buf = [0u8; 65536];
                let (head, body_len) = loop {
                    let n = stream.read(&mut buf).unwrap_or(0);
                    data.extend_from_slice(&buf[..n]);
                    if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&data[..at]).to_string();
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        let mut got = data.len() - at - 4;
                        while got < len {
                            match stream.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => got += n,
                            }
                        }
                        break (head, got);
                    }
                    if n == 0 {
                        return;
                    }
                };
                let _ = tx.send((head, body_len));
                let body = body_len.to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    (url, rx)
}

fn client_through(proxy: &FaultProxy) -> reqwest::Client {
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(&proxy.url).unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn put(client: &reqwest::Client, url: &str, len: usize) -> Result<(u16, String), String> {
    block_on(async {
        let response = client.put(url).body(vec![7u8; len]).send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        Ok((status, response.text().await.map_err(|e| e.to_string())?))
    })
}

#[test]
fn a_cut_passes_exactly_the_first_bytes_on_and_resets_the_client() {
    let (server, received) = counting_server();
    let proxy = FaultProxy::start(vec![Rule {
        method: "PUT",
        target_contains: "partNumber=2",
        fault: Fault::CutAfter(1000),
        times: 1,
    }]);
    let client = client_through(&proxy);
    assert!(put(&client, &format!("{server}/b/k?partNumber=2&uploadId=u"), 5000).is_err(), "the client sees a failure");
    let (_, got) = received.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(got, 1000, "the server got the first 1000 bytes only");
    assert_eq!(put(&client, &format!("{server}/b/k?partNumber=2&uploadId=u"), 5000).unwrap(), (200, "5000".into()));
    let traffic = proxy.traffic("PUT", "/b/k");
    let part = traffic.values().next().unwrap();
    assert_eq!((part.requests, part.faults, part.bytes_forwarded, part.succeeded), (2, 1, 6000, 1));
    assert_eq!(proxy.exchanges()[0].part_number, Some(2));
}

#[test]
fn error_answers_come_from_the_proxy_and_never_reach_the_server() {
    let (server, received) = counting_server();
    let rule = |fault| Rule { method: "", target_contains: "/x", fault, times: 1 };
    let proxy = FaultProxy::start(vec![rule(Fault::Status(500)), rule(Fault::SlowDown), rule(Fault::Status(429))]);
    let client = client_through(&proxy);
    let url = format!("{server}/x");
    let (status, body) = put(&client, &url, 10).unwrap();
    assert_eq!(status, 500);
    assert!(body.contains("<Code>InternalError</Code>"), "{body}");
    assert!(put(&client, &url, 10).unwrap().1.contains("<Code>SlowDown</Code>"));
    assert_eq!(put(&client, &url, 10).unwrap().0, 429);
    assert_eq!(put(&client, &url, 10).unwrap(), (200, "10".into()), "rules run out after `times`");
    assert_eq!(received.try_iter().count(), 1, "only the last request reached the server");
    assert_eq!((proxy.injected(), proxy.forwarded()), (3, 1));
}

#[test]
fn a_dropped_response_reaches_the_server_but_never_the_client() {
    let (server, received) = counting_server();
    let proxy = FaultProxy::start(vec![Rule {
        method: "POST",
        target_contains: "/reports",
        fault: Fault::DropResponse,
        times: 1,
    }]);
    let client = client_through(&proxy);
    let sent = block_on(async { client.post(format!("{server}/reports")).body("x".repeat(50)).send().await });
    assert!(sent.is_err(), "the client got no answer");
    let (_, got) = received.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(got, 50, "the server took the whole request");
    let exchange = &proxy.exchanges()[0];
    assert_eq!((exchange.bytes_forwarded, exchange.status), (50, None));
}

#[test]
fn a_stall_outlasts_the_client_timeout_and_a_delay_only_slows() {
    let (server, _received) = counting_server();
    let proxy = FaultProxy::start(vec![
        Rule { method: "GET", target_contains: "/stall", fault: Fault::Stall(Duration::from_secs(30)), times: 1 },
        Rule { method: "GET", target_contains: "/slow", fault: Fault::Delay(Duration::from_millis(700)), times: 1 },
    ]);
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(&proxy.url).unwrap())
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let started = Instant::now();
    let stalled = block_on(async { client.get(format!("{server}/stall")).send().await });
    assert!(stalled.is_err_and(|e| e.is_timeout()), "the client timed out");
    // Well before the stall's 30 s end, however loaded the machine: the client's timeout fired.
    assert!(started.elapsed() < Duration::from_secs(20), "the client gave up long before the stall ended");
    // A client patient enough for a loaded machine: the delay must only slow the answer.
    let patient = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(&proxy.url).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let started = Instant::now();
    let slow =
        block_on(async { patient.get(format!("{server}/slow")).send().await }).expect("a delayed request is answered");
    assert_eq!(slow.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(700));
}

#[test]
fn the_random_rate_is_repeatable_for_a_seed_and_near_the_rate() {
    let (server, _received) = counting_server();
    let run = |seed| {
        let random =
            RandomFaults { rate: 0.05, seed, method: "GET", target_contains: "/r", faults: vec![Fault::Status(503)] };
        let proxy = FaultProxy::start_random(Vec::new(), random);
        let client = client_through(&proxy);
        (0..400)
            .map(|_| block_on(async { client.get(format!("{server}/r")).send().await }).unwrap().status().as_u16())
            .collect::<Vec<_>>()
    };
    let first = run(7);
    assert_eq!(first, run(7), "the same seed fails the same requests");
    let failed = first.iter().filter(|s| **s == 503).count();
    assert!((8..=35).contains(&failed), "about 5% of 400 failed: {failed}");
}

#[test]
fn in_reverse_mode_it_stands_in_for_the_server_and_can_change_its_rules() {
    let (server, received) = counting_server();
    let proxy = FaultProxy::reverse(&server, Vec::new());
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/ping", proxy.url);
    assert_eq!(put(&client, &url, 3).unwrap(), (200, "3".into()));
    let (head, _) = received.recv_timeout(Duration::from_secs(5)).unwrap();
    let host = server.trim_start_matches("http://");
    assert!(head.to_ascii_lowercase().contains(&format!("host: {host}")), "the Host names the server: {head}");

    proxy.set_rules(vec![Rule { method: "", target_contains: "/api/", fault: Fault::Status(503), times: usize::MAX }]);
    assert_eq!(put(&client, &url, 3).unwrap().0, 503);
    assert_eq!(put(&client, &url, 3).unwrap().0, 503);
    proxy.set_rules(Vec::new());
    assert_eq!(put(&client, &url, 3).unwrap().0, 200, "and recovers when the rules are cleared");
}

#[test]
fn a_dropped_proxy_stops_listening_and_lets_go_of_stalled_connections() {
    let (server, _received) = counting_server();
    let proxy = FaultProxy::reverse(
        &server,
        vec![Rule { method: "", target_contains: "/", fault: Fault::Stall(Duration::from_secs(600)), times: 1 }],
    );
    let address = proxy.url.trim_start_matches("http://").to_owned();
    let mut stalled = std::net::TcpStream::connect(&address).unwrap();
    stalled.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(proxy);
    // The listener closes once the aborted task is dropped on the runtime: soon, and later on a
    // loaded machine, so this waits for it rather than sleeping a fixed time.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&address).is_ok() {
        assert!(Instant::now() < deadline, "nothing listens any more, 10 s after the proxy was dropped");
        std::thread::sleep(Duration::from_millis(50));
    }
    stalled.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    let read = stalled.read_to_end(&mut rest);
    assert!(
        read.is_ok() || read.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the stalled connection was closed"
    );
}
