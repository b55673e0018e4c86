// The uploads of this session, folded from the engine's events. History (from the core's
// SQLite) is the durable record; this list is what is moving right now.
import { t } from "./i18n";
import type { EngineEvent, ErrorInfo, HistoryEntry, Holds } from "./types";

export type UploadState = "queued" | "uploading" | "paused" | "uploaded" | "failed";

export interface Upload {
  upload_id: string;
  path: string;
  file_name: string;
  size: number;
  bytes_done: number;
  state: UploadState;
  key: string | null;
  object_url: string | null;
  error: ErrorInfo | null;
  /** Smoothed, from the engine. */
  bytes_per_second: number;
  /** Set while a failed request waits to be tried again. */
  retry: { offline: boolean; message: string; until: number } | null;
}

function baseName(path: string): string {
  const parts = path.split(/[\\/]/).filter(Boolean);
  return parts[parts.length - 1] ?? path;
}

export class Uploads {
  /** In arrival order; the view shows the newest first. */
  items = $state<Upload[]>([]);
  /** A whole batch that could not start (no settings, backend unreachable…). */
  batchError = $state<ErrorInfo | null>(null);
  /** Everything is paused (Pause all). */
  allPaused = $state(false);
  /** What a metered connection or battery holds, and why ("Paused: metered connection"). */
  holds = $state<Holds | null>(null);
  /** The backend is away: uploads that need it wait, reports queue. Cleared once it answers. */
  backendNotice = $state<string | null>(null);
  // Points at the reactive proxies in `items`, so progress updates are O(1).
  #byId = new Map<string, Upload>();

  // Counts and bytes over every item, kept up to date as each item changes (see #change), so
  // an update costs O(the items it touches), not O(the queue): 10,000 items, ten updates a
  // second, and no loop over all of them.
  #active = $state(0);
  #failed = $state(0);
  #bytes = $state(0);
  #done = $state(0);
  totals = $derived({ active: this.#active, failed: this.#failed, bytes: this.#bytes, done: this.#done });
  active = $derived(this.#active);
  failed = $derived(this.#failed);
  finished = $derived(this.items.length - this.#active);
  /** Something to clear: finished uploads or a batch error. */
  clearable = $derived(this.finished > 0 || this.batchError !== null);

  /** The ids of every failed upload in the list, for "Retry all failed". */
  failedIds(): string[] {
    return this.items.filter((u) => u.state === "failed").map((u) => u.upload_id);
  }

  /** A list of events as the shell sends them (at most ten lists a second). */
  applyAll(events: EngineEvent[]): void {
    for (const event of events) this.apply(event);
  }

  /**
   * After the window fell behind the engine's events: adds what the history knows about this
   * session's uploads and the list is missing (a drop of many thousand files can outrun the
   * event channel), and brings the states of the others up to date.
   */
  mergeFromHistory(entries: HistoryEntry[]): void {
    const oldestFirst = [...entries].reverse();
    for (const entry of oldestFirst) {
      const state: UploadState =
        entry.status === "queued"
          ? "queued"
          : entry.status === "uploaded"
            ? "uploaded"
            : entry.status === "failed"
              ? "failed"
              : "uploading";
      const known = this.#byId.get(entry.upload_id);
      if (known) {
        if (known.state !== "paused" && (state === "uploaded" || state === "failed")) {
          this.#change(known, (u) => (u.state = state));
        }
        continue;
      }
      this.#add({
        upload_id: entry.upload_id,
        path: entry.path,
        file_name: entry.file_name,
        size: entry.size,
        bytes_done: state === "uploaded" ? entry.size : 0,
        state,
        key: entry.key,
        object_url: entry.object_url,
        error: entry.error ? { code: entry.error_code ?? "failed", message: entry.error } : null,
        bytes_per_second: 0,
        retry: null,
      });
    }
  }

  /** A failed upload was sent again as a new upload: the old line gives way to the new one. */
  forget(uploadIds: string[]): void {
    const gone = new Set(uploadIds);
    this.items = this.items.filter((u) => !gone.has(u.upload_id));
    this.#byId = new Map(this.items.map((u) => [u.upload_id, u]));
    this.#recount();
  }

  apply(event: EngineEvent): void {
    switch (event.type) {
      case "files_queued": {
        this.batchError = null;
        for (const file of event.files) {
          if (this.#byId.has(file.upload_id)) continue;
          this.#add({
            upload_id: file.upload_id,
            path: file.path,
            file_name: file.file_name,
            size: file.size,
            bytes_done: 0,
            state: "queued",
            key: null,
            object_url: null,
            error: null,
            bytes_per_second: 0,
            retry: null,
          });
        }
        break;
      }
      case "file_progress": {
        const upload = this.#byId.get(event.upload_id);
        if (upload && (upload.state === "queued" || upload.state === "uploading")) {
          this.#change(upload, (u) => {
            u.bytes_done = event.bytes_done;
            u.size = event.total;
            u.state = "uploading";
          });
          upload.bytes_per_second = event.bytes_per_second;
          if (upload.retry) upload.retry = null;
        }
        break;
      }
      case "file_retrying": {
        const upload = this.#byId.get(event.upload_id);
        if (upload) {
          upload.retry = { offline: event.offline, message: event.reason.message, until: Date.now() + event.retry_in_ms };
        }
        break;
      }
      case "file_paused": {
        const upload = this.#byId.get(event.upload_id);
        if (upload && (upload.state === "queued" || upload.state === "uploading")) upload.state = "paused"; // still counted as moving
        break;
      }
      case "file_resumed": {
        const upload = this.#byId.get(event.upload_id);
        if (upload && upload.state === "paused") upload.state = "uploading";
        break;
      }
      case "queue_paused":
        this.allPaused = event.paused;
        break;
      case "holds_changed":
        this.holds = event.holds;
        break;
      case "file_uploaded": {
        this.backendNotice = null;
        const upload = this.#byId.get(event.upload_id);
        if (upload) {
          this.#change(upload, (u) => {
            u.state = "uploaded";
            u.bytes_done = event.size;
            u.size = event.size;
          });
          upload.key = event.key;
          upload.object_url = event.object_url;
        }
        break;
      }
      case "file_failed": {
        const upload =
          this.#byId.get(event.upload_id) ??
          this.#add({
            upload_id: event.upload_id,
            path: event.path,
            file_name: baseName(event.path),
            size: 0,
            bytes_done: 0,
            state: "failed",
            key: null,
            object_url: null,
            error: null,
            bytes_per_second: 0,
            retry: null,
          });
        this.#change(upload, (u) => (u.state = "failed"));
        upload.retry = null;
        upload.error = event.error;
        break;
      }
      case "batch_failed": {
        // When every file already shows this reason, a banner would only repeat it.
        const { code, message } = event.error;
        const shown = this.items.some((u) => u.error?.code === code && u.error.message === message);
        if (!shown) this.batchError = event.error;
        break;
      }
      case "backend_retrying":
        this.backendNotice = t.uploads.backendUnavailable(event.reason.message, Math.ceil(event.retry_in_ms / 1000));
        break;
      case "reports_queued":
        this.backendNotice = t.uploads.reportsQueued(event.count, Math.ceil(event.retry_in_ms / 1000));
        break;
      case "batch_finished":
        break;
    }
  }

  clearFinished(): void {
    this.batchError = null;
    this.items = this.items.filter((u) => u.state === "queued" || u.state === "uploading" || u.state === "paused");
    this.#byId = new Map(this.items.map((u) => [u.upload_id, u]));
    this.#recount();
  }

  /** Applies `edit` to one item, keeping the totals in step: its old share out, its new share in. */
  #change(upload: Upload, edit: (u: Upload) => void): void {
    this.#count(upload, -1);
    edit(upload);
    this.#count(upload, 1);
  }

  #count(u: Upload, sign: 1 | -1): void {
    if (u.state === "queued" || u.state === "uploading" || u.state === "paused") {
      this.#active += sign;
      this.#bytes += sign * u.size;
      this.#done += sign * u.bytes_done;
    } else if (u.state === "failed") {
      this.#failed += sign;
    }
  }

  /** After items are removed (a user's action, not per update): the totals from scratch. */
  #recount(): void {
    this.#active = this.#failed = this.#bytes = this.#done = 0;
    for (const u of this.items) this.#count(u, 1);
  }

  #add(upload: Upload): Upload {
    this.#count(upload, 1);
    this.items.push(upload);
    const proxied = this.items[this.items.length - 1];
    this.#byId.set(upload.upload_id, proxied);
    return proxied;
  }
}
