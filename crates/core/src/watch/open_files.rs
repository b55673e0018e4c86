//! "Is some program still writing this file?", where the OS can tell: on Linux, any of our
//! user's processes holding it open with write access (from /proc/<pid>/fd and fdinfo).
//! Elsewhere, and for other users' processes, the stability window and inotify's close-write
//! events have to do.

use std::collections::HashSet;
use std::path::PathBuf;

/// Those of `candidates` that some process has open for writing.
#[cfg(target_os = "linux")]
pub fn open_for_writing(candidates: &HashSet<PathBuf>) -> HashSet<PathBuf> {
    let mut writing = HashSet::new();
    if candidates.is_empty() {
        return writing;
    }
    let own = std::process::id().to_string();
    let Ok(processes) = std::fs::read_dir("/proc") else { return writing };
    for process in processes.flatten() {
        let pid = process.file_name();
        let pid = pid.to_string_lossy();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == own {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else { continue };
            if !candidates.contains(&target) {
                continue;
            }
            let info = process.path().join("fdinfo").join(fd.file_name());
            if std::fs::read_to_string(info).ok().and_then(|text| access_mode(&text)).is_some_and(|mode| mode != 0) {
                writing.insert(target);
            }
        }
    }
    writing
}

#[cfg(not(target_os = "linux"))]
pub fn open_for_writing(_candidates: &HashSet<PathBuf>) -> HashSet<PathBuf> {
    HashSet::new()
}

/// O_ACCMODE of an fdinfo's `flags:` line (octal): 0 read-only, 1 write-only, 2 read-write.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn access_mode(fdinfo: &str) -> Option<u32> {
    let flags = fdinfo.lines().find_map(|l| l.strip_prefix("flags:"))?.trim();
    u32::from_str_radix(flags, 8).ok().map(|f| f & 0o3)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_file_held_open_for_writing_by_another_process_is_seen_and_a_closed_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (held, closed) = (dir.path().join("held.bin"), dir.path().join("closed.bin"));
        std::fs::write(&closed, b"done").unwrap();
        // A child process, since our own process is left out of the check.
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec 3>'{}'; sleep 30", held.display()))
            .spawn()
            .unwrap();
        let wanted: HashSet<PathBuf> = [held.clone(), closed.clone()].into();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut seen = HashSet::new();
        while std::time::Instant::now() < deadline {
            seen = open_for_writing(&wanted);
            if !seen.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(seen, [held].into(), "only the file still being written counts");
    }

    #[test]
    fn access_modes_come_from_the_octal_flags_line() {
        assert_eq!(access_mode("pos:\t0\nflags:\t0100001\nmnt_id:\t1\n"), Some(1));
        assert_eq!(access_mode("pos:\t0\nflags:\t0100000\n"), Some(0));
    }
}
