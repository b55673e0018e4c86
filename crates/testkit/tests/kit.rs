//! The kit's own promises: servers run side by side, stop for real, and the shared one does
//! not outlive its test process.

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use dropship_testkit::{target_bin, S3Server};

fn answers(endpoint: &str) -> bool {
    let address = endpoint.trim_start_matches("http://");
    TcpStream::connect_timeout(&address.parse().expect("a socket address"), Duration::from_millis(500)).is_ok()
}

#[test]
fn two_servers_run_side_by_side_and_each_stops_for_real() {
    let first = S3Server::start();
    let second = S3Server::start();
    assert_ne!(first.endpoint, second.endpoint, "each server has its own port");
    first.put_object("a/one.txt", b"first");
    second.put_object("a/two.txt", b"second");
    assert_eq!(first.list_keys("a/"), vec!["a/one.txt"], "the servers do not share data");
    assert_eq!(second.get_object("a/two.txt").as_deref(), Some(b"second".as_slice()));
    assert_eq!(second.get_object("a/missing.txt"), None, "a missing object is None");

    first.stop();
    assert!(!answers(&first.endpoint), "a stopped server no longer listens");
    assert!(answers(&second.endpoint), "stopping one leaves the other running");
}

/// Run only as a child of the next test: starts the shared server, prints its endpoint, exits.
#[test]
fn shared_server_child_process() {
    if std::env::var_os("DROPSHIP_TESTKIT_SHARED_CHILD").is_none() {
        return;
    }
    println!("ENDPOINT={}", S3Server::shared().endpoint);
}

#[test]
fn the_shared_server_stops_when_its_test_process_exits() {
    let exe = std::env::current_exe().expect("the test binary path");
    let output = Command::new(exe)
        .args(["--exact", "shared_server_child_process", "--nocapture", "--test-threads=1"])
        .env("DROPSHIP_TESTKIT_SHARED_CHILD", "1")
        .output()
        .expect("the child test process runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the child succeeded: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let endpoint = stdout
        .lines()
        .find_map(|l| l.split_once("ENDPOINT=").map(|(_, e)| e.trim()))
        .unwrap_or_else(|| panic!("the child printed its endpoint: {stdout}"));
    assert!(!answers(endpoint), "the shared server at {endpoint} was stopped at process exit");
}

#[test]
#[should_panic(expected = "build it first: cargo build --workspace --bins")]
fn a_binary_that_was_never_built_is_a_clear_panic() {
    target_bin("no-such-binary");
}

#[test]
fn postgres_starts_as_a_real_server_and_stops_for_real_on_drop() {
    let server = dropship_testkit::PostgresServer::start();
    let url = server.create_database();
    assert_eq!(server.psql(&url, "SELECT 40 + 2").trim(), "42", "psql reaches the new database");
    let other = server.create_database();
    assert_ne!(url, other, "every database is new");
    let endpoint = format!("127.0.0.1:{}", server.port);
    assert!(answers(&endpoint), "Postgres listens on its port");
    drop(server);
    assert!(!answers(&endpoint), "a dropped server no longer listens");
}

/// A loopback HTTP server that answers every request with its own name.
fn named_upstream(name: &'static str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            use std::io::{Read, Write};
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}", name.len());
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    url
}

#[test]
fn nginx_balances_round_robin_across_its_upstreams_and_stops_on_drop() {
    let upstreams = vec![named_upstream("one"), named_upstream("two"), named_upstream("three")];
    let nginx = dropship_testkit::Nginx::balance(&upstreams);
    let answered: Vec<String> = (0..6)
        .map(|_| {
            dropship_testkit::block_on(async {
                reqwest::get(format!("{}/anything", nginx.url)).await.unwrap().text().await.unwrap()
            })
        })
        .collect();
    for name in ["one", "two", "three"] {
        assert_eq!(answered.iter().filter(|a| *a == name).count(), 2, "round-robin reaches {name} twice: {answered:?}");
    }
    assert!(nginx.access_log().lines().count() >= 6, "every request is logged with its upstream");
    let address = nginx.url.clone();
    drop(nginx);
    assert!(!answers(&address), "a dropped nginx no longer listens");
}
