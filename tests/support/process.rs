//! Child processes that are stopped by PID when dropped, together with everything they started
//! (tauri-driver starts WebKitWebDriver, which starts the app, which starts WebKit's helpers),
//! so a failing test leaves nothing running.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// How long a process tree gets to exit on SIGTERM before it is killed.
const GRACE: Duration = Duration::from_secs(3);

pub struct ProcessGuard {
    name: String,
    child: Option<Child>,
}

impl ProcessGuard {
    /// Starts `command`. Should the test process die without unwinding (SIGKILL), the kernel
    /// kills the child too (`PR_SET_PDEATHSIG`; tied to the spawning thread, which is the test's
    /// own and outlives the guard).
    pub fn spawn(name: &str, command: &mut Command) -> ProcessGuard {
        // SAFETY: runs in the forked child before exec and only calls prctl(2), which is
        // async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child =
            command.spawn().unwrap_or_else(|e| panic!("could not start {name} ({:?}): {e}", command.get_program()));
        ProcessGuard { name: name.to_owned(), child: Some(child) }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("process already stopped")
    }

    /// Whether the process itself has exited (its children may still run).
    pub fn has_exited(&mut self) -> bool {
        self.child.as_mut().is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// SIGKILL to the process and all its descendants at once: nothing gets to clean up (a
    /// driver does not get to close the windows it would close on SIGTERM).
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let root = child.id() as i32;
        let mut tree = descendants(root);
        tree.push(root);
        signal_all(&tree, libc::SIGKILL);
        let _ = child.wait();
    }

    /// SIGTERM to the process and all its descendants, SIGKILL to whatever is left after the
    /// grace period. The tree is collected first: once a parent dies its children are
    /// re-parented and could no longer be found.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let root = child.id() as i32;
        let mut tree = descendants(root);
        tree.push(root);
        signal_all(&tree, libc::SIGTERM);
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline && tree.iter().any(|&pid| pid != root && is_alive(pid)) {
            let _ = child.try_wait();
            std::thread::sleep(Duration::from_millis(50));
        }
        // Anything the tree started meanwhile is caught too.
        let mut late = descendants(root);
        tree.append(&mut late);
        if matches!(child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let survivors: Vec<i32> = tree.iter().copied().filter(|&pid| is_alive(pid)).collect();
        if !survivors.is_empty() {
            eprintln!("{}: killing {survivors:?} after {GRACE:?}", self.name);
            signal_all(&survivors, libc::SIGKILL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal_all(pids: &[i32], signal: i32) {
    for &pid in pids {
        // SAFETY: kill(2) has no memory-safety preconditions; a stale PID yields ESRCH.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Alive and not a zombie.
fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat_fields(&stat).is_some_and(|(state, _)| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// (RSS, PSS) of `pid` in KiB, from /proc; zero for a process that has gone.
pub fn resident_memory(pid: i32) -> (u64, u64) {
    let field = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    (field(&status, "VmRSS:"), field(&rollup, "Pss:"))
}

/// Every process below `root`, by walking the parent links in /proc.
pub fn descendants(root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            if let Some((_, ppid)) = stat_fields(&stat) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut found = Vec::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or_default() {
            found.push(child);
            stack.push(child);
        }
    }
    found
}

/// (state, ppid) from /proc/<pid>/stat; the command name may hold spaces and parentheses, so
/// fields are counted from the last ')'.
fn stat_fields(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (Web Content (x)) S 17 4242 4242 0 -1";
        assert_eq!(stat_fields(stat), Some(('S', 17)));
    }

    #[test]
    fn stopping_a_guard_also_stops_the_processes_it_started() {
        let mut guard = ProcessGuard::spawn("sh", Command::new("sh").args(["-c", "sleep 300 & sleep 300"]));
        let found = crate::wait_for("the grandchild", Duration::from_secs(5), || {
            let below = descendants(guard.pid() as i32);
            (!below.is_empty()).then_some(below)
        })
        .unwrap();
        guard.stop();
        assert!(found.iter().all(|&pid| !is_alive(pid)), "every descendant should be gone: {found:?}");
    }
}
