// Declaring the app's commands here makes Tauri generate one `allow-<command>` permission per
// command and deny every command a capability does not grant.
fn main() {
    // The organisation's update key is built in (see src/updates.rs).
    println!("cargo:rerun-if-env-changed=DROPSHIP_UPDATER_PUBKEY");
    let commands = tauri_build::AppManifest::new().commands(&[
        "get_settings",
        "save_settings",
        "test_connection",
        "list_history",
        "pick_files",
        "pick_folder",
        "pause_upload",
        "resume_upload",
        "cancel_upload",
        "pause_all",
        "resume_all",
        "cancel_all",
        "get_holds",
        "upload_anyway",
        "list_watched_folders",
        "add_watched_folder",
        "update_watched_folder",
        "remove_watched_folder",
        "watch_status",
        "get_start_at_login",
        "set_start_at_login",
        "save_settings_token_in_file",
        "get_token_storage",
        "get_prefs",
        "save_prefs",
        "export_history_csv",
        "retry_uploads",
        "reveal_upload",
        "create_diagnostics_bundle",
        "sign_in_state",
        "sign_in",
        "sign_out",
        "token_is_set",
        "get_damaged_file",
        "move_damaged_aside",
        "open_data_folder",
        "get_update_state",
        "check_for_updates",
        "install_update_and_restart",
        "save_update_source",
    ]);
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(commands)).expect("failed to run tauri-build");
}
