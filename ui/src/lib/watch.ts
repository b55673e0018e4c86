// The watched-folder commands (see src-tauri/src/watch_commands.rs), typed from the core.
import { invoke } from "@tauri-apps/api/core";
import type { WatchSettings } from "../bindings/WatchSettings";
import type { WatchStatus } from "../bindings/WatchStatus";

export type { AfterUpload } from "../bindings/AfterUpload";
export type { FolderState } from "../bindings/FolderState";
export type { FolderStatus } from "../bindings/FolderStatus";
export type { WatchedFolder } from "../bindings/WatchedFolder";
export type { WatchSettings, WatchStatus };

export const getWatchSettings = () => invoke<WatchSettings>("get_watch_settings");
export const saveWatchSettings = (settings: WatchSettings) => invoke<void>("save_watch_settings", { settings });
export const watchStatus = () => invoke<WatchStatus>("watch_status");
/** Opens the native folder picker; the chosen folder's path, or null when cancelled. */
export const pickWatchFolder = () => invoke<string | null>("pick_watch_folder");
export const getStartAtLogin = () => invoke<boolean>("get_start_at_login");
export const setStartAtLogin = (enabled: boolean) => invoke<void>("set_start_at_login", { enabled });

/** The rules a new folder starts with; the core fills the same when a folder has none saved. */
export const DEFAULT_IGNORE = [
  ".DS_Store", "Thumbs.db", "desktop.ini", "~$*", ".~lock.*#", "*.tmp", "*.temp", "*.part",
  "*.partial", "*.crdownload", "*.download", "*.swp", "*.swx", "*~",
];
