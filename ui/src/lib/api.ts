// The window's only door to the app: typed wrappers over the shell's commands and events.
import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";
import type { DragState, EngineEvent, ErrorInfo, HistoryEntry, Settings } from "./types";

export const getSettings = () => invoke<Settings | null>("get_settings");
export const saveSettings = (settings: Settings) => invoke<void>("save_settings", { settings });
export const testConnection = () => invoke<void>("test_connection");
export const listHistory = (search: string | null, status: string | null, limit = 200) =>
  invoke<HistoryEntry[]>("list_history", { search, status, limit });
/** Opens the native picker; resolves to the batch id, or null when the picker was cancelled. */
export const pickFiles = () => invoke<string | null>("pick_files");
export const pickFolder = () => invoke<string | null>("pick_folder");
export const pauseUpload = (uploadId: string) => invoke<boolean>("pause_upload", { uploadId });
export const resumeUpload = (uploadId: string) => invoke<boolean>("resume_upload", { uploadId });
export const cancelUpload = (uploadId: string) => invoke<boolean>("cancel_upload", { uploadId });
export const pauseAll = () => invoke<void>("pause_all");
export const resumeAll = () => invoke<void>("resume_all");
export const cancelAll = () => invoke<void>("cancel_all");

export const onEngineEvent = (handler: (event: EngineEvent) => void): Promise<UnlistenFn> =>
  listen<EngineEvent>("dropship://event", (e) => handler(e.payload));
export const onDrag = (handler: (state: DragState) => void): Promise<UnlistenFn> =>
  listen<DragState>("dropship://drag", (e) => handler(e.payload));
/** Fired when the window fell behind the engine's events: reload what it shows. */
export const onResync = (handler: () => void): Promise<UnlistenFn> =>
  listen("dropship://resync", () => handler());

/** Commands reject with `{code, message}`; anything else (a bug) becomes an `internal` error. */
export function asErrorInfo(err: unknown): ErrorInfo {
  if (err && typeof err === "object" && "code" in err && "message" in err) {
    return err as ErrorInfo;
  }
  return { code: "internal", message: String(err) };
}
