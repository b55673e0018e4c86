//! Turns the paths a person dropped or named into the list of files to upload: folders are
//! walked recursively, and a path that cannot be read becomes a per-path failure rather than
//! stopping the batch.

use std::path::{Path, PathBuf};

use crate::Error;

#[derive(Debug)]
pub struct FoundFile {
    pub path: PathBuf,
    pub size: u64,
}

/// Everything found under `paths`, in a stable order, plus the paths that could not be read.
pub fn expand(paths: &[PathBuf]) -> (Vec<FoundFile>, Vec<(PathBuf, Error)>) {
    let mut files = Vec::new();
    let mut failures = Vec::new();
    for path in paths {
        visit(path, &mut files, &mut failures, true);
    }
    (files, failures)
}

fn visit(path: &Path, files: &mut Vec<FoundFile>, failures: &mut Vec<(PathBuf, Error)>, named: bool) {
    // A symlink named explicitly is followed; inside folders, symlinked folders are not, which
    // keeps a walk finite when a link points back up the tree.
    let meta = if named { std::fs::metadata(path) } else { std::fs::symlink_metadata(path) };
    let meta = match meta {
        Ok(m) => m,
        Err(e) => {
            failures.push((path.to_owned(), io_error(path, e)));
            return;
        }
    };
    let meta = if meta.file_type().is_symlink() {
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return,
            Err(e) => {
                failures.push((path.to_owned(), io_error(path, e)));
                return;
            }
        }
    } else {
        meta
    };
    if meta.is_file() {
        files.push(FoundFile { path: path.to_owned(), size: meta.len() });
    } else if meta.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) => {
                failures.push((path.to_owned(), io_error(path, e)));
                return;
            }
        };
        let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        children.sort();
        for child in children {
            visit(&child, files, failures, false);
        }
    }
    // Sockets, FIFOs and devices are not files anyone means to upload: skip them silently.
}

pub fn io_error(path: &Path, e: std::io::Error) -> Error {
    let shown = path.display().to_string();
    match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound { path: shown },
        std::io::ErrorKind::PermissionDenied => Error::Unreadable { path: shown, detail: "permission denied".into() },
        _ => Error::Unreadable { path: shown, detail: e.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_walked_recursively_in_a_stable_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/two.txt"), b"22").unwrap();
        std::fs::write(dir.path().join("a/one.txt"), b"1").unwrap();
        let (files, failures) = expand(&[dir.path().to_owned()]);
        assert!(failures.is_empty());
        let names: Vec<_> = files.iter().map(|f| f.path.strip_prefix(dir.path()).unwrap().to_owned()).collect();
        assert_eq!(names, [PathBuf::from("a/b/two.txt"), PathBuf::from("a/one.txt")]);
        assert_eq!(files[0].size, 2);
    }

    #[test]
    fn a_missing_path_is_a_failure_of_its_own_and_the_rest_is_still_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("here.txt"), b"x").unwrap();
        let (files, failures) = expand(&[dir.path().join("gone.txt"), dir.path().join("here.txt")]);
        assert_eq!(files.len(), 1);
        assert!(matches!(failures[0].1, Error::NotFound { .. }));
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_loop_inside_a_folder_does_not_recurse_forever() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).unwrap();
        let (files, _) = expand(&[dir.path().to_owned()]);
        assert_eq!(files.len(), 1);
    }
}
