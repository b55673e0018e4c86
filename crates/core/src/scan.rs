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

/// What a walk of the named paths found.
#[derive(Debug, Default)]
pub struct Expanded {
    /// The files to upload, in a stable order.
    pub files: Vec<FoundFile>,
    /// Paths that could not be read, each with its error.
    pub failures: Vec<(PathBuf, Error)>,
    /// Symbolic links inside a folder that lead out of it, each with a sentence saying so.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Everything found under `paths`, in a stable order, plus the paths that could not be read
/// and the links that were left out.
pub fn expand(paths: &[PathBuf]) -> Expanded {
    let mut found = Expanded::default();
    for path in paths {
        // A link named explicitly is what the person chose; the folder it names (or that a
        // named folder is) bounds what links inside it may reach.
        let root = std::fs::canonicalize(path).ok();
        visit(path, root.as_deref(), &mut found, true);
    }
    found
}

fn visit(path: &Path, root: Option<&Path>, found: &mut Expanded, named: bool) {
    // A symlink named explicitly is followed; inside folders, symlinked folders are not, which
    // keeps a walk finite when a link points back up the tree.
    let meta = if named { std::fs::metadata(path) } else { std::fs::symlink_metadata(path) };
    let meta = match meta {
        Ok(m) => m,
        Err(e) => {
            found.failures.push((path.to_owned(), io_error(path, e)));
            return;
        }
    };
    let meta = if meta.file_type().is_symlink() {
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => {
                // `report.pdf -> ~/.ssh/id_ed25519` must not send the key: a link inside a
                // folder is uploaded only when it leads to a file inside that folder.
                if let Some(reason) = root.and_then(|root| link_leaves(root, path)) {
                    tracing::warn!(path = %path.display(), "skipped: {reason}");
                    found.skipped.push((path.to_owned(), reason));
                    return;
                }
                m
            }
            Ok(_) => return,
            Err(e) => {
                found.failures.push((path.to_owned(), io_error(path, e)));
                return;
            }
        }
    } else {
        meta
    };
    if meta.is_file() {
        found.files.push(FoundFile { path: path.to_owned(), size: meta.len() });
    } else if meta.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) => {
                found.failures.push((path.to_owned(), io_error(path, e)));
                return;
            }
        };
        let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        children.sort();
        for child in children {
            visit(&child, root, found, false);
        }
    }
    // Sockets, FIFOs and devices are not files anyone means to upload: skip them silently.
}

/// Why the symbolic link at `path` may not be uploaded as part of the folder `root`
/// (canonical): its target lies outside it, or cannot be resolved. `None` when `path` is not a
/// link, or its target is inside `root`.
pub fn link_leaves(root: &Path, path: &Path) -> Option<String> {
    let is_link = std::fs::symlink_metadata(path).map(|m| m.file_type().is_symlink()).unwrap_or(false);
    if !is_link {
        return None;
    }
    match std::fs::canonicalize(path) {
        Ok(target) if target.starts_with(root) => None,
        Ok(target) => Some(format!(
            "{} is a link to {}, outside {}; Dropship uploads only links that stay inside the folder. \
             Copy the file into the folder if it should go up",
            path.display(),
            target.display(),
            root.display()
        )),
        Err(e) => Some(format!("{} is a link that cannot be followed ({e})", path.display())),
    }
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
        let Expanded { files, failures, .. } = expand(&[dir.path().to_owned()]);
        assert!(failures.is_empty());
        let names: Vec<_> = files.iter().map(|f| f.path.strip_prefix(dir.path()).unwrap().to_owned()).collect();
        assert_eq!(names, [PathBuf::from("a/b/two.txt"), PathBuf::from("a/one.txt")]);
        assert_eq!(files[0].size, 2);
    }

    #[test]
    fn a_missing_path_is_a_failure_of_its_own_and_the_rest_is_still_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("here.txt"), b"x").unwrap();
        let Expanded { files, failures, .. } = expand(&[dir.path().join("gone.txt"), dir.path().join("here.txt")]);
        assert_eq!(files.len(), 1);
        assert!(matches!(failures[0].1, Error::NotFound { .. }));
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_loop_inside_a_folder_does_not_recurse_forever() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).unwrap();
        let files = expand(&[dir.path().to_owned()]).files;
        assert_eq!(files.len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn a_link_inside_a_folder_goes_up_only_when_it_leads_to_a_file_inside_the_folder() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("id_ed25519"), b"secret").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/real.txt"), b"real").unwrap();
        std::os::unix::fs::symlink(dir.path().join("sub/real.txt"), dir.path().join("inside.txt")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("id_ed25519"), dir.path().join("report.pdf")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("sub"), dir.path().join("sub-link")).unwrap();
        let found = expand(&[dir.path().to_owned()]);
        let names: Vec<_> = found.files.iter().map(|f| f.path.strip_prefix(dir.path()).unwrap().to_owned()).collect();
        assert_eq!(
            names,
            [PathBuf::from("inside.txt"), PathBuf::from("sub/real.txt")],
            "the inside link goes up, once"
        );
        assert_eq!(found.skipped.len(), 1, "the outside link is skipped: {:?}", found.skipped);
        assert!(found.skipped[0].0.ends_with("report.pdf"));
        assert!(
            found.skipped[0].1.contains("id_ed25519") && found.skipped[0].1.contains("outside"),
            "{:?}",
            found.skipped
        );
        assert!(found.failures.is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn a_link_named_on_its_own_is_what_the_person_chose_and_goes_up() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("notes.txt"), b"n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("notes.txt"), dir.path().join("notes.txt")).unwrap();
        let found = expand(&[dir.path().join("notes.txt")]);
        assert_eq!(found.files.len(), 1, "{found:?}");
        assert!(found.skipped.is_empty());
    }
}
