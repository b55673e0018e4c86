//! Files seen changing, waiting to be complete: a file is complete once its size and
//! modification time have not moved for the stability window and nothing is writing to it.
//! Every new event for a file starts its window again, which is also what debounces the
//! bursts of events a single copy makes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::walk::{stat_file, Stat};

/// A file written to and never closed may still be growing (a download that stalls, a
/// program that keeps it open): wait this long without change before trusting it anyway,
/// because a close can go unseen (opened before the watch began, written through mmap).
pub const UNCLOSED_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touch {
    /// Written to (or created empty): a close is expected.
    Written,
    /// Closed after writing.
    Closed,
    /// Renamed into place, found by a scan, its metadata changed: nothing is writing.
    Appeared,
}

#[derive(Debug)]
struct Entry {
    folder: u64,
    stat: Stat,
    due: Instant,
    /// Written to with no close seen since, and since when nothing changed.
    unclosed: bool,
    quiet_since: Instant,
}

/// A file whose window passed with nothing changing.
#[derive(Debug, Clone)]
pub struct Settled {
    pub folder: u64,
    pub path: PathBuf,
    pub stat: Stat,
}

#[derive(Debug)]
pub struct Pending {
    window: Duration,
    entries: HashMap<PathBuf, Entry>,
}

impl Pending {
    pub fn new(window: Duration) -> Pending {
        Pending { window, entries: HashMap::new() }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    pub fn set_window(&mut self, window: Duration) {
        self.window = window;
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn count_in(&self, folder: u64) -> usize {
        self.entries.values().filter(|e| e.folder == folder).count()
    }

    pub fn contains(&self, path: &Path) -> bool {
        self.entries.contains_key(path)
    }

    /// Something happened to `path`: (re)start its window. Returns false when it is not a
    /// regular file (gone, or a folder).
    pub fn touch(&mut self, folder: u64, path: &Path, touch: Touch, now: Instant) -> bool {
        let Some(stat) = stat_file(path) else {
            self.entries.remove(path);
            return false;
        };
        self.insert(folder, path, stat, touch, now + self.window, now);
        true
    }

    /// A file found by a catch-up scan: if it has not changed for a whole window already, it
    /// is due at once.
    pub fn found(&mut self, folder: u64, path: PathBuf, stat: Stat, modified_ago: Duration, now: Instant) {
        let due = if modified_ago >= self.window { now } else { now + self.window - modified_ago };
        self.insert(folder, &path, stat, Touch::Appeared, due, now);
    }

    /// Try again later (a failed upload, or one still running for an older version).
    pub fn retry_after(&mut self, folder: u64, path: &Path, stat: Stat, delay: Duration, now: Instant) {
        self.insert(folder, path, stat, Touch::Appeared, now + delay, now);
    }

    fn insert(&mut self, folder: u64, path: &Path, stat: Stat, touch: Touch, due: Instant, now: Instant) {
        let entry = self.entries.entry(path.to_owned()).or_insert(Entry {
            folder,
            stat,
            due,
            unclosed: false,
            quiet_since: now,
        });
        entry.folder = folder;
        if entry.stat != stat {
            entry.quiet_since = now;
        }
        entry.stat = stat;
        entry.due = entry.due.max(due);
        match touch {
            Touch::Written => {
                entry.unclosed = true;
                entry.quiet_since = now;
            }
            Touch::Closed => entry.unclosed = false,
            Touch::Appeared => {}
        }
    }

    pub fn remove(&mut self, path: &Path) {
        self.entries.remove(path);
    }

    /// Forgets everything under a folder (it went away or stopped being watched).
    pub fn remove_folder(&mut self, folder: u64) {
        self.entries.retain(|_, e| e.folder != folder);
    }

    /// When the next file is due, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.entries.values().map(|e| e.due).min()
    }

    /// Re-checks every file whose window has passed: the ones unchanged come out, the others
    /// start a new window.
    pub fn take_settled(&mut self, now: Instant) -> Vec<Settled> {
        let due: Vec<PathBuf> = self.entries.iter().filter(|(_, e)| e.due <= now).map(|(p, _)| p.clone()).collect();
        let mut settled = Vec::new();
        for path in due {
            let entry = self.entries.get_mut(&path).expect("listed above");
            match stat_file(&path) {
                None => {
                    self.entries.remove(&path);
                }
                Some(stat) if stat != entry.stat => {
                    entry.stat = stat;
                    entry.quiet_since = now;
                    entry.due = now + self.window;
                }
                Some(_) if entry.unclosed && now.duration_since(entry.quiet_since) < UNCLOSED_GRACE => {
                    entry.due = now + self.window;
                }
                Some(stat) => {
                    let entry = self.entries.remove(&path).expect("listed above");
                    settled.push(Settled { folder: entry.folder, path, stat });
                }
            }
        }
        settled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_millis(500);

    #[test]
    fn a_file_settles_only_after_a_quiet_window_and_a_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        std::fs::write(&path, b"12").unwrap();
        let mut pending = Pending::new(WINDOW);
        let t0 = Instant::now();
        pending.touch(1, &path, Touch::Written, t0);
        assert!(pending.take_settled(t0 + WINDOW / 2).is_empty(), "not before the window");
        assert!(pending.take_settled(t0 + WINDOW).is_empty(), "written and not closed yet");
        pending.touch(1, &path, Touch::Closed, t0 + WINDOW);
        let settled = pending.take_settled(t0 + WINDOW * 2);
        assert_eq!(settled.len(), 1);
        assert_eq!(settled[0].stat.size, 2);
        assert!(pending.is_empty());
    }

    #[test]
    fn a_file_that_grows_between_checks_starts_a_new_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        std::fs::write(&path, b"12").unwrap();
        let mut pending = Pending::new(WINDOW);
        let t0 = Instant::now();
        pending.touch(1, &path, Touch::Appeared, t0);
        std::fs::write(&path, b"1234").unwrap();
        assert!(pending.take_settled(t0 + WINDOW).is_empty(), "it changed without an event we saw");
        assert_eq!(pending.take_settled(t0 + WINDOW * 2).len(), 1);
    }

    #[test]
    fn an_unclosed_file_is_trusted_after_a_long_quiet_spell() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        std::fs::write(&path, b"12").unwrap();
        let mut pending = Pending::new(WINDOW);
        let t0 = Instant::now();
        pending.touch(1, &path, Touch::Written, t0);
        assert!(pending.take_settled(t0 + WINDOW).is_empty());
        assert_eq!(pending.take_settled(t0 + UNCLOSED_GRACE + WINDOW).len(), 1);
    }

    #[test]
    fn a_file_found_long_after_its_last_change_is_due_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.bin");
        std::fs::write(&path, b"x").unwrap();
        let mut pending = Pending::new(WINDOW);
        let now = Instant::now();
        pending.found(1, path.clone(), stat_file(&path).unwrap(), Duration::from_secs(60), now);
        assert_eq!(pending.take_settled(now).len(), 1);
    }
}
