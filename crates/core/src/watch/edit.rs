//! Watched folders as the window edits them. The page never names a path: a folder is added
//! only from a path the shell got from the native folder picker, and the page changes or
//! removes it by its opaque id. The page is shown the path, as text, and nothing it sends back
//! is one.

use std::path::PathBuf;

use serde::Serialize;

use super::settings::{FolderOptions, WatchSettings, WatchedFolder};
use crate::Error;

/// One watched folder as the window shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ts_rs::TS)]
#[ts(export)]
pub struct FolderView {
    /// What the page names the folder by in `update_watched_folder` and `remove_watched_folder`.
    pub id: String,
    /// For showing only (a name that is not UTF-8 has U+FFFD in it): the page cannot send it back.
    pub path: String,
    pub options: FolderOptions,
}

impl From<&WatchedFolder> for FolderView {
    fn from(folder: &WatchedFolder) -> Self {
        FolderView { id: folder.id.clone(), path: folder.path.display().to_string(), options: folder.options.clone() }
    }
}

impl WatchSettings {
    pub fn folder_views(&self) -> Vec<FolderView> {
        self.folders.iter().map(FolderView::from).collect()
    }

    /// Adds `path` with the default rules; a folder already watched is returned as it is.
    /// `path` must come from the person (the native picker, the command line), never the page.
    pub fn add_folder(&mut self, path: PathBuf) -> FolderView {
        if let Some(known) = self.folders.iter().find(|f| f.path == path) {
            return known.into();
        }
        let folder = WatchedFolder::new(path);
        let view = FolderView::from(&folder);
        self.folders.push(folder);
        view
    }

    /// Replaces the options of the folder with this id; where it is stays as it was.
    pub fn update_folder(&mut self, id: &str, options: FolderOptions) -> Result<FolderView, Error> {
        let folder = self.folders.iter_mut().find(|f| f.id == id).ok_or_else(|| unknown(id))?;
        folder.options = options;
        Ok(FolderView::from(&*folder))
    }

    /// Stops watching the folder with this id (nothing local or in the bucket is touched).
    pub fn remove_folder(&mut self, id: &str) -> Result<(), Error> {
        let index = self.folders.iter().position(|f| f.id == id).ok_or_else(|| unknown(id))?;
        self.folders.remove(index);
        Ok(())
    }
}

fn unknown(id: &str) -> Error {
    Error::UnknownFolder { id: id.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::AfterUpload;

    fn with_scans() -> (WatchSettings, FolderView) {
        let mut settings = WatchSettings::default();
        let view = settings.add_folder(PathBuf::from("/home/me/Scans"));
        (settings, view)
    }

    #[test]
    fn an_added_folder_gets_an_opaque_id_and_the_default_rules() {
        let (settings, view) = with_scans();
        assert_eq!(view.path, "/home/me/Scans", "the page is shown where the folder is");
        assert!(!view.id.contains("Scans"), "the id does not spell the path: {}", view.id);
        assert_eq!(view.options, FolderOptions::default());
        assert_eq!(settings.folder_views(), vec![view]);
    }

    #[test]
    fn adding_a_folder_already_watched_keeps_the_one_there() {
        let (mut settings, view) = with_scans();
        assert_eq!(settings.add_folder(PathBuf::from("/home/me/Scans")), view);
        assert_eq!(settings.folders.len(), 1, "no second entry for the same folder");
    }

    #[test]
    fn options_change_by_id_and_the_path_stays_where_the_picker_put_it() {
        let (mut settings, view) = with_scans();
        let options = FolderOptions {
            include_hidden: true,
            after_upload: AfterUpload::MoveTo { subfolder: "Uploaded".into() },
            ..FolderOptions::default()
        };
        let changed = settings.update_folder(&view.id, options.clone()).unwrap();
        assert_eq!(changed.options, options);
        assert_eq!(settings.folders[0].path, PathBuf::from("/home/me/Scans"), "options never move a folder");
        assert_eq!(settings.folders[0].id, view.id, "the id stays");
    }

    #[test]
    fn an_unknown_id_is_refused_with_its_own_code_and_changes_nothing() {
        let (mut settings, _) = with_scans();
        let before = settings.clone();
        let refused = settings.update_folder("/home/me/.ssh", FolderOptions::default()).unwrap_err();
        assert_eq!(refused.code(), "unknown_folder", "{refused}");
        assert_eq!(settings.remove_folder("no-such-id").unwrap_err().code(), "unknown_folder");
        assert_eq!(settings, before, "a refused edit leaves the folders as they were");
    }

    #[test]
    fn a_folder_is_removed_by_its_id() {
        let (mut settings, view) = with_scans();
        let other = settings.add_folder(PathBuf::from("/home/me/Invoices"));
        settings.remove_folder(&view.id).unwrap();
        assert_eq!(settings.folder_views(), vec![other]);
    }
}
