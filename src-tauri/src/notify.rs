//! One desktop notification per batch, when it finishes or fails, never one per file.

use dropship_core::Event;
use tauri::AppHandle;
use tauri_plugin_notification::NotificationExt;

/// Notifies when `event` ends a batch that had files; other events are ignored.
pub fn batch_done(app: &AppHandle, event: &Event) {
    let Some((title, body)) = message(event) else { return };
    // No notification server (a bare X session) is not worth more than a line in the log.
    if let Err(e) = app.notification().builder().title(&title).body(&body).show() {
        tracing::warn!("could not show a notification: {e}");
    }
}

/// The title and body for a batch's end, or `None` for any other event (or an empty batch).
pub fn message(event: &Event) -> Option<(String, String)> {
    let files = |n: usize| if n == 1 { "1 file".to_owned() } else { format!("{n} files") };
    match event {
        Event::BatchFinished { uploaded, failed: 0, .. } if *uploaded > 0 => {
            Some(("Upload finished".into(), format!("{} uploaded.", files(*uploaded))))
        }
        Event::BatchFinished { uploaded, failed, .. } if *failed > 0 => Some((
            "Some uploads failed".into(),
            format!("{} uploaded, {} failed. Open Dropship to see why and retry.", files(*uploaded), files(*failed)),
        )),
        Event::BatchFailed { error, .. } => Some(("Upload failed".into(), error.message.clone())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dropship_core::ErrorInfo;

    #[test]
    fn a_batch_gets_one_message_that_counts_its_files() {
        let done = Event::BatchFinished { batch_id: "b".into(), uploaded: 3, failed: 0 };
        assert_eq!(message(&done).unwrap().1, "3 files uploaded.");
        let mixed = Event::BatchFinished { batch_id: "b".into(), uploaded: 1, failed: 2 };
        assert!(message(&mixed).unwrap().1.starts_with("1 file uploaded, 2 files failed"));
        let failed = Event::BatchFailed {
            batch_id: "b".into(),
            error: ErrorInfo { code: "unauthorized".into(), message: "Sign in again.".into() },
        };
        assert_eq!(message(&failed).unwrap().0, "Upload failed");
        assert!(message(&Event::FilePaused { upload_id: "u".into() }).is_none(), "files never notify");
        let empty = Event::BatchFinished { batch_id: "b".into(), uploaded: 0, failed: 0 };
        assert!(message(&empty).is_none(), "an empty batch says nothing");
    }
}
