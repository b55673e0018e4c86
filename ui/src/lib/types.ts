// Mirrors of the Rust types that cross the IPC boundary (dropship-core's `Settings`,
// `HistoryEntry`, `Event`, `ErrorInfo`). Keep in step with crates/core.

export type ApiFlavour = "native" | "rails" | "companion";

export interface Settings {
  backend_url: string;
  api: ApiFlavour;
  token: string;
}

/** Every error the shell returns: the UI switches on `code`, shows `message`. */
export interface ErrorInfo {
  code: string;
  message: string;
}

export type HistoryStatus = "queued" | "uploading" | "reporting" | "uploaded" | "failed";

export interface HistoryEntry {
  upload_id: string;
  batch_id: string;
  path: string;
  file_name: string;
  size: number;
  content_type: string;
  checksum_sha256: string | null;
  key: string | null;
  object_url: string | null;
  source: "window" | "cli" | "watch";
  status: HistoryStatus;
  error_code: string | null;
  error: string | null;
  created_at: string;
  updated_at: string;
  reported_at: string | null;
}

/** The engine's events, forwarded as-is on `dropship://event`. */
export type EngineEvent =
  | { type: "file_queued"; upload_id: string; batch_id: string; path: string; file_name: string; size: number }
  | { type: "file_progress"; upload_id: string; bytes_done: number; total: number }
  | { type: "file_uploaded"; upload_id: string; key: string; object_url: string; size: number }
  | { type: "file_failed"; upload_id: string; path: string; error: ErrorInfo }
  | { type: "batch_finished"; batch_id: string; uploaded: number; failed: number }
  | { type: "batch_failed"; batch_id: string; error: ErrorInfo };

/** Native drag state, on `dropship://drag`: the webview never sees the dropped paths. */
export type DragState = "enter" | "leave" | "drop";
