//! The system's language for the window. WebKitGTK derives `navigator.language` from the C
//! locale it could set, so a `LANG` naming a locale that is not installed reads as `en-US`;
//! `sys-locale` reads what the person asked for (the environment on Linux, the OS elsewhere).

/// A BCP 47 tag such as `de-DE`, or `None` when the system names none; the UI falls back to
/// English.
#[tauri::command]
pub fn system_locale() -> Option<String> {
    sys_locale::get_locale()
}
