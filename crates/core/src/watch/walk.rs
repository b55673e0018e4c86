//! The catch-up walk of one watched folder: every file with its size and modification time,
//! every folder (so inotify can watch each one before its entries are read, and a file that
//! lands mid-walk is still heard about), and a warning per folder that could not be read.
//! Symlinked folders are not followed, which keeps a symlink loop from recursing forever.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::rules::IgnoreRules;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub size: u64,
    pub mtime_ns: i64,
}

#[derive(Debug, Clone)]
pub struct SeenFile {
    pub path: PathBuf,
    pub stat: Stat,
}

#[derive(Debug, Default)]
pub struct Walked {
    pub files: Vec<SeenFile>,
    pub warnings: Vec<String>,
}

/// Size and modification time of a regular file (following a symlink to one); `None` for
/// anything else or when it is gone.
pub fn stat_file(path: &Path) -> Option<Stat> {
    let meta = std::fs::metadata(path).ok()?;
    meta.is_file().then(|| stat_of(&meta))
}

pub fn stat_of(meta: &std::fs::Metadata) -> Stat {
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
        .unwrap_or(0);
    Stat { size: meta.len(), mtime_ns }
}

/// Why the file at `path` in the watched folder `root` may not go up: it is a link to
/// something outside the folder (see [`crate::scan::link_leaves`]). `None` for the rest.
pub fn link_out_of(root: &Path, path: &Path) -> Option<String> {
    if !std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return None;
    }
    let real_root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_owned());
    crate::scan::link_leaves(&real_root, path)
}

/// Walks `start` (the watched folder `root` or a folder inside it), calling `on_folder` for
/// each folder before its entries are read. `on_folder` returns false to say it could not
/// watch that folder; the walk goes on.
pub fn walk(root: &Path, start: &Path, rules: &IgnoreRules, on_folder: &mut dyn FnMut(&Path) -> bool) -> Walked {
    let mut walked = Walked::default();
    // Links are judged against where the folder really is (it may itself be reached by a link).
    let real_root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_owned());
    let mut folders = vec![start.to_owned()];
    while let Some(folder) = folders.pop() {
        on_folder(&folder);
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) => {
                walked.warnings.push(format!("skipped {}: {e}", folder.display()));
                continue;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else { continue };
            let relative = path.strip_prefix(root).unwrap_or(&path);
            if kind.is_dir() {
                if !rules.ignores(relative, true) {
                    folders.push(path);
                }
                continue;
            }
            if rules.ignores(relative, false) {
                continue;
            }
            if kind.is_file() {
                if let Ok(meta) = entry.metadata() {
                    walked.files.push(SeenFile { stat: stat_of(&meta), path });
                }
            } else if kind.is_symlink() {
                // A link to a file is uploaded as that file, but only when the file is inside
                // the watched folder (`report.pdf -> ~/.ssh/id_ed25519` must not go up); a
                // link to a folder is not walked.
                if let Some(stat) = stat_file(&path) {
                    match crate::scan::link_leaves(&real_root, &path) {
                        None => walked.files.push(SeenFile { path, stat }),
                        Some(reason) => walked.warnings.push(format!("skipped {reason}")),
                    }
                }
            }
        }
    }
    walked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::WatchedFolder;

    #[cfg(unix)]
    #[test]
    fn a_symlink_loop_is_walked_once_and_ignored_names_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/scan.pdf"), b"pdf").unwrap();
        std::fs::write(dir.path().join("a/Thumbs.db"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("a/b/loop")).unwrap();
        let rules = IgnoreRules::new(&WatchedFolder::new(dir.path())).unwrap();
        let mut folders = 0;
        let walked = walk(dir.path(), dir.path(), &rules, &mut |_| {
            folders += 1;
            true
        });
        assert_eq!(walked.files.len(), 1, "{:?}", walked.files);
        assert_eq!(walked.files[0].stat.size, 3);
        assert_eq!(folders, 3, "the root, a and a/b; never the loop");
    }

    #[cfg(unix)]
    #[test]
    fn a_link_out_of_the_watched_folder_is_skipped_with_a_warning_and_one_inside_is_kept() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("id_ed25519"), b"secret").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/real.txt"), b"real").unwrap();
        std::os::unix::fs::symlink(dir.path().join("sub/real.txt"), dir.path().join("inside.txt")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("id_ed25519"), dir.path().join("report.pdf")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("sub"), dir.path().join("sub-link")).unwrap();
        let rules = IgnoreRules::new(&WatchedFolder::new(dir.path())).unwrap();
        let walked = walk(dir.path(), dir.path(), &rules, &mut |_| true);
        let mut names: Vec<_> =
            walked.files.iter().map(|f| f.path.strip_prefix(dir.path()).unwrap().to_owned()).collect();
        names.sort();
        assert_eq!(names, [PathBuf::from("inside.txt"), PathBuf::from("sub/real.txt")], "the outside link is left out");
        assert_eq!(walked.warnings.len(), 1, "{:?}", walked.warnings);
        assert!(
            walked.warnings[0].contains("report.pdf") && walked.warnings[0].contains("outside"),
            "{:?}",
            walked.warnings
        );
    }
}
