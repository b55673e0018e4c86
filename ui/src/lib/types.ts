// The types that cross the IPC boundary are generated from dropship-core by ts-rs
// (`cargo test -p dropship-core` rewrites ui/src/bindings; CI fails if they are stale).
export type { ApiFlavour } from "../bindings/ApiFlavour";
export type { DamagedFile } from "../bindings/DamagedFile";
export type { EngineEvent } from "../bindings/EngineEvent";
export type { ErrorInfo } from "../bindings/ErrorInfo";
export type { HistoryEntry } from "../bindings/HistoryEntry";
export type { HistoryStatus } from "../bindings/HistoryStatus";
export type { Holds } from "../bindings/Holds";
export type { NetworkSettings } from "../bindings/NetworkSettings";
export type { ProxySetting } from "../bindings/ProxySetting";
export type { Settings } from "../bindings/Settings";
export type { LogLevel } from "../bindings/LogLevel";
export type { SignInInfo } from "../bindings/SignInInfo";
export type { SignInState } from "../bindings/SignInState";
export type { Source } from "../bindings/Source";
export type { TokenEdit } from "../bindings/TokenEdit";
export type { TokenStorage } from "../bindings/TokenStorage";
export type { TransferSettings } from "../bindings/TransferSettings";
export type { WindowPrefs } from "../bindings/WindowPrefs";

/** Native drag state, on `dropship://drag`: the webview never sees the dropped paths. */
export type DragState = "enter" | "leave" | "drop";

/** What the history view asks for (the shell's `HistoryFilter`); empty strings mean "any". */
export interface HistoryFilter {
  search: string | null;
  status: string | null;
  source: string | null;
  /** RFC 3339 instants. */
  since: string | null;
  until: string | null;
  limit: number;
  /** Skips this many of the newest matches (the history list fetches page by page). */
  offset?: number;
}
