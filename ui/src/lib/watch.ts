// The watched-folder commands (see src-tauri/src/watch_commands.rs), typed from the core. The
// page names a watched folder by its id: a folder is added through the native picker in Rust,
// and the path the page is shown is for reading only.
import { invoke } from "@tauri-apps/api/core";
import type { FolderOptions } from "../bindings/FolderOptions";
import type { FolderView } from "../bindings/FolderView";
import type { WatchStatus } from "../bindings/WatchStatus";

export type { AfterUpload } from "../bindings/AfterUpload";
export type { FolderState } from "../bindings/FolderState";
export type { FolderStatus } from "../bindings/FolderStatus";
export type { FolderOptions, FolderView, WatchStatus };

export const listWatchedFolders = () => invoke<FolderView[]>("list_watched_folders");
/** Opens the native folder picker and watches the folder chosen; null when cancelled. */
export const addWatchedFolder = () => invoke<FolderView | null>("add_watched_folder");
/** Rejects with `unknown_folder` when no folder has this id (any more). */
export const updateWatchedFolder = (id: string, options: FolderOptions) =>
  invoke<FolderView>("update_watched_folder", { id, options });
export const removeWatchedFolder = (id: string) => invoke<void>("remove_watched_folder", { id });
export const watchStatus = () => invoke<WatchStatus>("watch_status");
export const getStartAtLogin = () => invoke<boolean>("get_start_at_login");
export const setStartAtLogin = (enabled: boolean) => invoke<void>("set_start_at_login", { enabled });
