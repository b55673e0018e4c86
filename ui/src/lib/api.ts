// The window's only door to the app: typed wrappers over the shell's commands and events.
import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";
import type {
  DamagedFile,
  DragState,
  EngineEvent,
  ErrorInfo,
  HistoryEntry,
  HistoryFilter,
  Holds,
  Settings,
  SignInState,
  TokenEdit,
  TokenStorage,
  WindowPrefs,
} from "./types";
import { t } from "./i18n";

export const getSettings = () => invoke<Settings | null>("get_settings");
/** Rejects with `keyring_unavailable` when there is no keyring: ask, then `saveSettingsTokenInFile`. */
/** Saves the settings; the page never holds the saved token, so it says what to do with it. */
export const saveSettings = (settings: Settings, token: TokenEdit) => invoke<void>("save_settings", { settings, token });
export const saveSettingsTokenInFile = (settings: Settings, token: TokenEdit) =>
  invoke<void>("save_settings_token_in_file", { settings, token });
/** Whether a token is saved (the token itself stays in Rust and the keyring). */
export const tokenIsSet = () => invoke<boolean>("token_is_set");
export const getTokenStorage = () => invoke<TokenStorage | null>("get_token_storage");
/** Whether the backend offers signing in, and who is signed in; tokens never reach the page. */
export const signInState = () => invoke<SignInState>("sign_in_state");
/** Signs in in the system browser; resolves to who signed in. */
export const signIn = () => invoke<string>("sign_in");
export const signOut = () => invoke<void>("sign_out");
export const getPrefs = () => invoke<WindowPrefs>("get_prefs");
export const savePrefs = (next: WindowPrefs) => invoke<void>("save_prefs", { next });
export const testConnection = () => invoke<void>("test_connection");
export const listHistory = (filter: HistoryFilter) => invoke<HistoryEntry[]>("list_history", { filter });
/** Asks where to save; resolves to the number of rows written, or null when cancelled. */
/** Where a diagnostics bundle went, and the connection tests that failed. */
export type BundleWritten = { path: string; problems: string[] };
/** Asks where to save in a native dialog (Rust side), then writes the bundle; `null` when cancelled. */
export const createDiagnosticsBundle = () => invoke<BundleWritten | null>("create_diagnostics_bundle");
export const exportHistoryCsv = (filter: HistoryFilter) => invoke<number | null>("export_history_csv", { filter });
/** Uploads failed ones again as a new batch; resolves to its id, or null when none had failed. */
export const retryUploads = (uploadIds: string[]) => invoke<string | null>("retry_uploads", { uploadIds });
export const revealUpload = (uploadId: string) => invoke<void>("reveal_upload", { uploadId });
/** Opens the native picker; resolves to the batch id, or null when the picker was cancelled. */
export const pickFiles = () => invoke<string | null>("pick_files");
export const pickFolder = () => invoke<string | null>("pick_folder");
export const pauseUpload = (uploadId: string) => invoke<boolean>("pause_upload", { uploadId });
export const resumeUpload = (uploadId: string) => invoke<boolean>("resume_upload", { uploadId });
export const cancelUpload = (uploadId: string) => invoke<boolean>("cancel_upload", { uploadId });
export const pauseAll = () => invoke<void>("pause_all");
export const resumeAll = () => invoke<void>("resume_all");
export const cancelAll = () => invoke<void>("cancel_all");
/** What a metered connection or battery holds now, and why. */
export const getHolds = () => invoke<Holds>("get_holds");
/** Lets held uploads go until the condition that holds them ends. */
export const uploadAnyway = () => invoke<void>("upload_anyway");
/** The app's session, which a window opened from the tray joins: since when, and whether all is paused. */
export type WindowSession = { started_at: string; all_paused: boolean };
export const windowSession = () => invoke<WindowSession>("window_session");

/** The damaged file the app stopped at on start (the recovery screen), or null. */
export const getDamagedFile = () => invoke<DamagedFile | null>("get_damaged_file");
/** Moves it aside and starts the app; resolves to the next damaged file, or null once running. */
export const moveDamagedAside = () => invoke<DamagedFile | null>("move_damaged_aside");
export const openDataFolder = () => invoke<void>("open_data_folder");

/** Engine events arrive in lists, at most ten a second, each file's progress at its latest. */
export const onEngineEvents = (handler: (events: EngineEvent[]) => void): Promise<UnlistenFn> =>
  listen<EngineEvent[]>("dropship://events", (e) => handler(e.payload));
export const onDrag = (handler: (state: DragState) => void): Promise<UnlistenFn> =>
  listen<DragState>("dropship://drag", (e) => handler(e.payload));
/** Fired when the window fell behind the engine's events: reload what it shows. */
export const onResync = (handler: () => void): Promise<UnlistenFn> =>
  listen("dropship://resync", () => handler());

/** Something committed to the history, possibly another process (the CLI, `dropship watch`). */
export const onHistoryChanged = (handler: () => void): Promise<UnlistenFn> =>
  listen("dropship://history-changed", () => handler());

/** Commands reject with `{code, message}`; anything else (a bug) becomes an `internal` error. */
/** How the shell refuses arguments it cannot read, before any command runs (a bandwidth rule
 * with a typo): the prefix is for developers, the rest is the core's sentence. */
const INVALID_ARGS = /^invalid args `[^`]*` for command `[^`]*`: /;

export function asErrorInfo(err: unknown): ErrorInfo {
  if (err && typeof err === "object" && "code" in err && "message" in err) {
    return err as ErrorInfo;
  }
  const text = String(err);
  if (INVALID_ARGS.test(text)) {
    return { code: "invalid_settings", message: text.replace(INVALID_ARGS, "").replace(/ at line \d+ column \d+$/, "") };
  }
  return { code: "internal", message: text };
}

/** Copies text to the clipboard; falls back on a selection copy where the async API is denied. */
export async function copyText(text: string): Promise<void> {
  try {
    await navigator.clipboard.writeText(text);
    return;
  } catch {
    // WebKitGTK may refuse the async clipboard outside a secure context; execCommand still works.
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.appendChild(area);
  area.select();
  const ok = document.execCommand("copy");
  area.remove();
  if (!ok) throw new Error(t.clipboardUnavailable);
}
