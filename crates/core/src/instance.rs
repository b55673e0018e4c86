//! Which engines are running on a data folder. Each engine holds an OS lock on a file named
//! after its id for as long as it lives; the OS drops the lock when the process dies, however
//! it dies, so an upload whose owner's file is unlocked was interrupted, not merely slow.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

const RUNNING_DIR: &str = "running";

pub struct InstanceLock {
    id: String,
    path: PathBuf,
    // Held, never read: the lock lives as long as the open file.
    _file: File,
}

impl InstanceLock {
    pub fn acquire(data_dir: &Path) -> std::io::Result<InstanceLock> {
        let dir = data_dir.join(RUNNING_DIR);
        std::fs::create_dir_all(&dir)?;
        let id = uuid::Uuid::new_v4().to_string();
        let path = dir.join(format!("{id}.lock"));
        let file = File::create(&path)?;
        file.try_lock().map_err(|e| match e {
            TryLockError::Error(e) => e,
            TryLockError::WouldBlock => std::io::Error::other("a fresh lock file is already locked"),
        })?;
        Ok(InstanceLock { id, path, _file: file })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the engine `id` still runs. An owner that left no lock file, or whose file
    /// nobody holds, is gone; its leftover file is tidied away.
    pub fn is_running(&self, id: &str) -> bool {
        if id == self.id {
            return true;
        }
        if id.contains(['/', '\\', '.']) {
            return false;
        }
        let path = self.path.with_file_name(format!("{id}.lock"));
        let Ok(file) = File::open(&path) else { return false };
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = std::fs::remove_file(&path);
                false
            }
            Err(TryLockError::WouldBlock) => true,
            // Cannot tell: assume it runs rather than take over its uploads.
            Err(TryLockError::Error(_)) => true,
        }
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_sees_another_running_one_and_not_one_that_has_gone() {
        let dir = tempfile::tempdir().unwrap();
        let first = InstanceLock::acquire(dir.path()).unwrap();
        let second = InstanceLock::acquire(dir.path()).unwrap();
        assert!(second.is_running(first.id()));
        let gone = first.id().to_owned();
        drop(first);
        assert!(!second.is_running(&gone));
        assert!(!second.is_running("never-existed"));
        assert!(second.is_running(second.id()));
    }

    #[test]
    fn a_lock_file_left_by_a_killed_process_reads_as_gone() {
        let dir = tempfile::tempdir().unwrap();
        let me = InstanceLock::acquire(dir.path()).unwrap();
        let leftover = dir.path().join(RUNNING_DIR).join("dead-one.lock");
        std::fs::write(&leftover, b"").unwrap();
        assert!(!me.is_running("dead-one"));
        assert!(!leftover.exists(), "the leftover is tidied away");
    }
}
