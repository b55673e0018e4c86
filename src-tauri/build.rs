// Declaring the app's commands here makes Tauri generate one `allow-<command>` permission per
// command and deny every command a capability does not grant.
fn main() {
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
        "get_watch_settings",
        "save_watch_settings",
        "watch_status",
        "pick_watch_folder",
        "get_start_at_login",
        "set_start_at_login",
        "save_settings_token_in_file",
        "get_token_storage",
        "get_prefs",
        "save_prefs",
        "export_history_csv",
        "retry_uploads",
        "reveal_upload",
        "sign_in_state",
        "sign_in",
        "sign_out",
        "token_is_set",
        "get_damaged_file",
        "move_damaged_aside",
        "open_data_folder",
    ]);
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(commands)).expect("failed to run tauri-build");
}
