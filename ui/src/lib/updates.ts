// The app's own updates: the running version, where updates come from, and what is known of
// the next one. Downloads are checked against the organisation's key in Rust before they are kept.
import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";
import type { UpdateSource } from "../bindings/UpdateSource";
import type { UpdateState } from "../bindings/UpdateState";

export type { UpdateSource, UpdateState };

export const getUpdateState = () => invoke<UpdateState>("get_update_state");
/** Checks now and downloads what is newer; resolves when done. */
export const checkForUpdates = () => invoke<UpdateState>("check_for_updates");
/** Installs the downloaded update and restarts into it. */
export const installUpdateAndRestart = () => invoke<void>("install_update_and_restart");
export const saveUpdateSource = (source: UpdateSource) => invoke<UpdateState>("save_update_source", { source });
export const onUpdateState = (handler: (state: UpdateState) => void): Promise<UnlistenFn> =>
  listen<UpdateState>("dropship://update", (e) => handler(e.payload));
