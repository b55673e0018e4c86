//! dropship-core: everything that uploads, remembers and reports. The desktop shell and the
//! headless CLI are thin layers over [`Engine`]; nothing here knows about Tauri.

pub mod activity;
pub mod auth;
pub mod backend;
mod checksum;
pub mod conditions;
pub mod config;
mod control;
pub mod diagnose;
mod engine;
mod error;
mod events;
pub mod holds;
mod instance;
pub mod logging;
pub mod network;
pub mod prefs;
pub mod recovery;
mod report;
mod scan;
pub mod schedule;
pub mod secrets;
pub mod settings_edit;
mod sign_in;
pub mod store;
pub mod transfer;
pub mod updates;
pub mod watch;

pub use config::{default_data_dir, token_storage, ApiFlavour, Settings, TokenStorage, TransferSettings};
pub use engine::{BatchSummary, Engine, FileOutcome, FileStatus};
pub use error::{Error, ErrorInfo};
pub use events::{Event, QueuedFile};
pub use logging::LogLevel;
pub use prefs::WindowPrefs;
pub use recovery::DamagedFile;
pub use report::Delivery;
pub use sign_in::{Me, SignInState};
pub use store::{HistoryEntry, HistoryQuery, QueuedReport, Source, Unfinished, UploadStatus};
pub use watch::{FolderOptions, FolderView, WatchSettings, WatchedFolder, Watcher};
