//! Free loopback ports for the servers the kit starts; SeaweedFS also opens each port + 10000
//! for gRPC.
//!
//! Candidates come from 10000..22767, so both a port and its twin stay below Linux's
//! ephemeral range (32768+) and never collide with outgoing connections or port-0 servers
//! (dropship-backend listens on port 0). Each chosen port is held with an flock(2) on a file in
//! the temp dir for as long as its server lives, so concurrently running test binaries never
//! pick the same one; the OS drops the locks even when a process crashes.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

const LOWEST: u16 = 10_000;
const HIGHEST: u16 = 22_767;
pub const GRPC_OFFSET: u16 = 10_000;

/// Ports reserved for one server; dropping this releases them.
#[derive(Debug)]
pub struct PortReservation {
    pub ports: Vec<u16>,
    _locks: Vec<File>,
}

/// Reserves `count` ports whose gRPC twins (+10000) are free too.
pub fn reserve_with_grpc_twins(count: usize) -> PortReservation {
    let dir = lock_dir();
    let mut ports = Vec::with_capacity(count);
    let mut locks = Vec::new();
    let mut taken = HashSet::new();
    for _attempt in 0..10_000 {
        if ports.len() == count {
            break;
        }
        let port = random_port();
        let twin = port + GRPC_OFFSET;
        if taken.contains(&port) || taken.contains(&twin) {
            continue;
        }
        let (Some(lock), Some(twin_lock)) = (try_lock(&dir, port), try_lock(&dir, twin)) else {
            continue;
        };
        if !bindable(port) || !bindable(twin) {
            continue;
        }
        taken.extend([port, twin]);
        locks.extend([lock, twin_lock]);
        ports.push(port);
    }
    assert_eq!(ports.len(), count, "could not find {count} free loopback port pairs in {LOWEST}..{HIGHEST}");
    PortReservation { ports, _locks: locks }
}

fn lock_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("dropship-testkit-ports");
    std::fs::create_dir_all(&dir).expect("the port lock directory can be created");
    dir
}

fn try_lock(dir: &std::path::Path, port: u16) -> Option<File> {
    let file =
        OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(format!("{port}.lock"))).ok()?;
    // SAFETY: flock(2) on a descriptor we own; the lock lives as long as the File.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    locked.then_some(file)
}

fn bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn random_port() -> u16 {
    let random = uuid::Uuid::new_v4().as_u128();
    LOWEST + (random % u128::from(HIGHEST - LOWEST)) as u16
}

/// Reserves `count` free loopback ports (for servers that need no gRPC twin: Postgres, nginx).
pub fn reserve(count: usize) -> PortReservation {
    let dir = lock_dir();
    let mut ports = Vec::with_capacity(count);
    let mut locks = Vec::new();
    for _attempt in 0..10_000 {
        if ports.len() == count {
            break;
        }
        let port = random_port();
        if ports.contains(&port) {
            continue;
        }
        let Some(lock) = try_lock(&dir, port) else { continue };
        if !bindable(port) {
            continue;
        }
        locks.push(lock);
        ports.push(port);
    }
    assert_eq!(ports.len(), count, "could not find {count} free loopback ports in {LOWEST}..{HIGHEST}");
    PortReservation { ports, _locks: locks }
}
