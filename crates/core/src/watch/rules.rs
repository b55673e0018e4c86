//! Which paths of a watched folder are never uploaded: gitignore-style patterns, hidden names
//! unless asked for, and the folder that uploaded files are moved into.

use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::settings::{AfterUpload, WatchedFolder};
use crate::Error;

#[derive(Debug, Clone)]
pub struct IgnoreRules {
    /// Patterns without a slash: tried against every name along the path.
    names: GlobSet,
    /// Patterns with a slash: tried against the path relative to the folder, and its parents.
    anchored: GlobSet,
    /// Patterns ending in `/`: only folders match (tried against the parents' names).
    folder_names: GlobSet,
    include_hidden: bool,
    moved_into: Option<String>,
}

impl IgnoreRules {
    pub fn new(folder: &WatchedFolder) -> Result<IgnoreRules, Error> {
        let (mut names, mut anchored, mut folder_names) =
            (GlobSetBuilder::new(), GlobSetBuilder::new(), GlobSetBuilder::new());
        for raw in &folder.options.ignore {
            let pattern = raw.trim();
            if pattern.is_empty() || pattern.starts_with('#') {
                continue;
            }
            let (pattern, folders_only) = match pattern.strip_suffix('/') {
                Some(p) => (p, true),
                None => (pattern, false),
            };
            let glob = |p: &str| {
                GlobBuilder::new(p).literal_separator(true).backslash_escape(true).build().map_err(|e| {
                    Error::InvalidSettings(format!("the ignore pattern {raw:?} is not a valid pattern ({e})"))
                })
            };
            if pattern.contains('/') {
                anchored.add(glob(pattern.trim_start_matches('/'))?);
            } else if folders_only {
                folder_names.add(glob(pattern)?);
            } else {
                names.add(glob(pattern)?);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build().map_err(|e| Error::InvalidSettings(format!("the ignore patterns are not valid ({e})")))
        };
        let moved_into = match &folder.options.after_upload {
            AfterUpload::MoveTo { subfolder } => Some(subfolder.trim_matches('/').to_owned()),
            _ => None,
        };
        Ok(IgnoreRules {
            names: build(names)?,
            anchored: build(anchored)?,
            folder_names: build(folder_names)?,
            include_hidden: folder.options.include_hidden,
            moved_into,
        })
    }

    /// Whether `relative` (a path inside the watched folder) is left alone. `is_dir` says
    /// whether the path itself is a folder, for patterns that end in `/`.
    pub fn ignores(&self, relative: &Path, is_dir: bool) -> bool {
        if let Some(moved) = &self.moved_into {
            if relative.starts_with(moved) {
                return true;
            }
        }
        let count = relative.components().count();
        let mut prefix = std::path::PathBuf::new();
        for (i, component) in relative.components().enumerate() {
            let name = component.as_os_str();
            prefix.push(name);
            let folder = i + 1 < count || is_dir;
            if !self.include_hidden && name.to_string_lossy().starts_with('.') {
                return true;
            }
            if self.names.is_match(name) || (folder && self.folder_names.is_match(name)) {
                return true;
            }
            if self.anchored.is_match(&prefix) {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(patterns: &[&str]) -> IgnoreRules {
        let mut folder = WatchedFolder::new("/w");
        folder.options.ignore.extend(patterns.iter().map(|p| (*p).to_owned()));
        IgnoreRules::new(&folder).unwrap()
    }

    #[test]
    fn the_defaults_skip_os_litter_and_temporary_names_but_not_real_files() {
        let r = rules(&[]);
        for name in ["Thumbs.db", ".DS_Store", "~$report.docx", "a.tmp", "movie.mkv.part", "x.crdownload", ".a.swp"] {
            assert!(r.ignores(Path::new(name), false), "{name} should be ignored");
        }
        for name in ["report.pdf", "scan 001.tiff", "part.txt", "tmp/a.pdf"] {
            assert!(!r.ignores(Path::new(name), false), "{name} should be uploaded");
        }
    }

    #[test]
    fn hidden_names_are_skipped_unless_the_folder_asks_for_them() {
        let mut folder = WatchedFolder::new("/w");
        assert!(IgnoreRules::new(&folder).unwrap().ignores(Path::new(".git/config"), false));
        folder.options.include_hidden = true;
        assert!(!IgnoreRules::new(&folder).unwrap().ignores(Path::new(".env"), false));
    }

    #[test]
    fn slash_patterns_are_anchored_and_trailing_slashes_match_folders_only() {
        let r = rules(&["/exports/*.csv", "raw/"]);
        assert!(r.ignores(Path::new("exports/a.csv"), false));
        assert!(!r.ignores(Path::new("deep/exports/a.csv"), false), "anchored to the watched folder");
        assert!(r.ignores(Path::new("2024/raw/img.cr2"), false), "everything inside a raw folder");
        assert!(!r.ignores(Path::new("raw"), false), "a file named raw is not a folder");
    }

    #[test]
    fn the_folder_uploaded_files_move_into_is_never_watched() {
        let mut folder = WatchedFolder::new("/w");
        folder.options.after_upload = AfterUpload::MoveTo { subfolder: "Uploaded".into() };
        let r = IgnoreRules::new(&folder).unwrap();
        assert!(r.ignores(Path::new("Uploaded/a.pdf"), false));
        assert!(!r.ignores(Path::new("a.pdf"), false));
    }

    #[test]
    fn a_broken_pattern_is_explained() {
        let mut folder = WatchedFolder::new("/w");
        folder.options.ignore.push("[unclosed".into());
        assert!(IgnoreRules::new(&folder).unwrap_err().to_string().contains("[unclosed"));
    }

    proptest::proptest! {
        #[test]
        fn any_ignore_pattern_is_taken_or_refused_and_any_path_is_judged_without_panicking(
            patterns in proptest::collection::vec(".{0,16}", 0..5),
            path in "[a-zA-Z0-9 ._~$#/-]{0,40}",
            is_dir in proptest::prelude::any::<bool>(),
        ) {
            let mut folder = WatchedFolder::new("/w");
            folder.options.ignore = patterns;
            if let Ok(rules) = IgnoreRules::new(&folder) {
                let _ = rules.ignores(std::path::Path::new(&path), is_dir);
            }
        }
    }
}
