//! Spawning and stopping child processes so that none outlives the test process.
//!
//! Children are spawned from one long-lived thread with `PR_SET_PDEATHSIG`: Linux delivers
//! that signal when the *thread* that forked the child exits, so spawning from a test's own
//! thread would kill a shared server as soon as that test ended.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Waits until something listens on `port` on loopback: true once it does, false when `child`
/// exits first or `timeout` passes (the caller then stops it and shows its logs).
pub fn wait_until_listening(child: &mut Child, port: u16, timeout: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// How long a child gets to exit after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// Spawns `command` so that the child is SIGKILLed if this process dies without stopping it.
pub fn spawn_tied_to_process(mut command: Command) -> io::Result<Child> {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
    // which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (reply_to, reply) = mpsc::channel();
    spawner()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((command, reply_to))
        .map_err(|_| io::Error::other("the testkit spawner thread is gone"))?;
    reply.recv().map_err(|_| io::Error::other("the testkit spawner thread did not answer"))?
}

fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (sender, requests) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("dropship-testkit-spawner".to_owned())
            .spawn(move || {
                for (mut command, reply_to) in requests {
                    let _ = reply_to.send(command.spawn());
                }
            })
            .expect("the testkit spawner thread starts");
        Mutex::new(sender)
    })
}

/// SIGTERM, then SIGKILL after [`STOP_GRACE`], then reap. Returns how long it took.
pub fn stop_child(child: &mut Child) -> Duration {
    let started = Instant::now();
    if let Ok(None) = child.try_wait() {
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill(2) with a pid we spawned and have not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        while started.elapsed() < STOP_GRACE {
            if !matches!(child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
        }
    }
    let _ = child.wait();
    started.elapsed()
}
