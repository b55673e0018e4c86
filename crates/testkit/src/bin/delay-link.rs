//! A TCP delay line for bench/run.sh's emulated WAN (`BENCH_NET=wan`): the kernel here has no
//! `netem`, so latency is added in user space. It listens on each LISTEN address and relays
//! every connection to the matching CONNECT address, holding the bytes of each direction for a
//! fixed one-way delay while keeping their throughput: every chunk is stamped when it is read
//! and written out at `read time + delay`, so many chunks are in flight at once, as on a long
//! link (a sleep per chunk would cap a connection at chunk size / delay). A new connection's
//! first bytes also wait one round trip, the time TCP's handshake takes on a real link.
//!
//! With a delay of 0 it is a plain relay (bench/run.sh uses that on the server side of the veth).
//!
//! Usage: delay-link --one-way-ms MS LISTEN=CONNECT...
//!        (e.g. `delay-link --one-way-ms 20 127.0.0.1:8333=10.203.0.1:8333`)
//! Prints `delay-link ready` once every address listens; runs until killed.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The most one read takes off a socket.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks held in one direction of one connection at most: up to 16 MiB, far more than the
/// bandwidth-delay product of the links the bench emulates (200 Mbit/s × 20 ms = 500 KB), so
/// the line never throttles a connection; it stands in for a well-tuned TCP window.
const CHUNKS_IN_FLIGHT: usize = 256;

struct Route {
    listen: SocketAddr,
    connect: SocketAddr,
}

fn parse_args() -> Result<(Duration, Vec<Route>), String> {
    let mut args = std::env::args().skip(1);
    let mut delay = None;
    let mut routes = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--one-way-ms" {
            let ms = args.next().ok_or("--one-way-ms needs a value")?;
            let parsed: f64 = ms.parse().map_err(|_| format!("--one-way-ms takes milliseconds, not {ms:?}"))?;
            if !(0.0..=60_000.0).contains(&parsed) {
                return Err(format!("--one-way-ms must be from 0 to 60000, not {ms}"));
            }
            delay = Some(Duration::from_secs_f64(parsed / 1000.0));
        } else {
            let (listen, connect) = arg.split_once('=').ok_or(format!("{arg:?} is not LISTEN=CONNECT"))?;
            let listen = listen.parse().map_err(|_| format!("{listen:?} is not an IP:port"))?;
            let connect = connect.parse().map_err(|_| format!("{connect:?} is not an IP:port"))?;
            routes.push(Route { listen, connect });
        }
    }
    let delay = delay.ok_or("--one-way-ms is required")?;
    if routes.is_empty() {
        return Err("no LISTEN=CONNECT given".to_owned());
    }
    Ok((delay, routes))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (delay, routes) = match parse_args() {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("delay-link: {message}\nusage: delay-link --one-way-ms MS LISTEN=CONNECT...");
            return ExitCode::from(64);
        }
    };
    let mut listeners = JoinSet::new();
    for route in routes {
        let listener = match TcpListener::bind(route.listen).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("delay-link: cannot listen on {}: {e}", route.listen);
                return ExitCode::from(1);
            }
        };
        listeners.spawn(accept_loop(listener, route.connect, delay));
    }
    println!("delay-link ready");
    // The accept loops end only when a listener fails.
    while let Some(ended) = listeners.join_next().await {
        if let Ok(Err(e)) = ended {
            eprintln!("delay-link: accepting failed: {e}");
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, delay: Duration) -> std::io::Result<()> {
    // Connection tasks live in this set, so they end with the loop.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (client, _) = accepted?;
                connections.spawn(async move {
                    if let Err(e) = relay(client, upstream, delay).await {
                        // Resets are part of HTTP life (a client giving up on a keep-alive
                        // connection); only say something about what is not.
                        if e.kind() != std::io::ErrorKind::ConnectionReset && e.kind() != std::io::ErrorKind::BrokenPipe {
                            eprintln!("delay-link: connection to {upstream}: {e}");
                        }
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn relay(mut client: TcpStream, upstream: SocketAddr, delay: Duration) -> std::io::Result<()> {
    let accepted = Instant::now();
    let mut server = TcpStream::connect(upstream).await?;
    // Small requests must not wait for Nagle on either hop.
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    if delay.is_zero() {
        tokio::io::copy_bidirectional(&mut client, &mut server).await?;
        return Ok(());
    }
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // The client's SYN/SYN-ACK would have taken one round trip before its first byte left.
    let handshake_done = accepted + 2 * delay;
    // One direction failing (a reset) ends both: dropping the halves closes the sockets.
    tokio::try_join!(
        delay_line(client_read, server_write, delay, handshake_done),
        delay_line(server_read, client_write, delay, accepted),
    )?;
    Ok(())
}

/// Copies `from` to `to`, each chunk written `delay` after it was read (and not before
/// `not_before + delay`); passes the end of the stream on as a half-close once everything
/// before it is delivered.
async fn delay_line(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    delay: Duration,
    not_before: Instant,
) -> std::io::Result<()> {
    let (in_flight, mut arriving) = mpsc::channel::<(Instant, Vec<u8>)>(CHUNKS_IN_FLIGHT);
    let read = async move {
        loop {
            let mut chunk = vec![0u8; CHUNK_BYTES];
            let n = from.read(&mut chunk).await?;
            if n == 0 {
                return Ok(()); // dropping the sender tells the writer the stream ended
            }
            chunk.truncate(n);
            let due = Instant::now().max(not_before) + delay;
            if in_flight.send((due, chunk)).await.is_err() {
                return Ok(()); // the writer failed; its error is the one to report
            }
        }
    };
    let write = async move {
        while let Some((due, chunk)) = arriving.recv().await {
            tokio::time::sleep_until(due).await;
            to.write_all(&chunk).await?;
        }
        to.shutdown().await
    };
    tokio::try_join!(read, write)?;
    Ok(())
}
