//! The lean tray, on Linux: once the window has closed and nothing runs, the app starts over in
//! its own process, as a login start. Handing pages back (see `footprint`) leaves about 90 MiB
//! that nothing in the process can give back: the GL driver WebKit's EGL display loaded (Mesa's
//! libLLVM), its relocations, the heaps GTK and WebKit grew. A login start never loads them
//! (35 MiB), so the app becomes one: `execve` of its own binary, same pid, with `--hidden` and
//! what the next process needs to go on as this one would ([`Carried`]: the session the window
//! lists, where the window was, the update check's state and schedule).
//!
//! Only when nothing is lost by it: the engine idle (no batch, nothing paused, no *Upload
//! anyway*), the watched folders with nothing waiting, the tray icon showing idle or held (not
//! an error the person has not seen), no update check, download or restart pending, and nothing
//! from the tray still on screen or in hand (a diagnostics bundle, a sign-in: see [`busy`]).
//! Checked every few seconds while the window stays closed; everything the history and the
//! settings hold, the new process reads back, as it does after any restart.
//!
//! Not on Windows and macOS: WebView2 and WKWebView run the page in processes of their own that
//! end with the window, and `footprint` empties the working set on Windows. Not under WebDriver
//! either, whose session is the process.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::updates::CarriedUpdates;

/// Marks a process that a restart in the tray started; its value is the [`Carried`] state.
const RESTARTED_ARG: &str = "--restarted-in-tray";

/// What the process before the restart knew and the history does not.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Carried {
    /// When the app started (RFC 3339): the window lists the uploads since.
    pub session_start: Option<String>,
    /// The window's outer position and inner size when it was closed.
    pub window_place: Option<(i32, i32, u32, u32)>,
    pub updates: Option<CarriedUpdates>,
}

/// What the process before carried over, when a restart in the tray started this one.
pub fn carried() -> Option<&'static Carried> {
    static CARRIED: OnceLock<Option<Carried>> = OnceLock::new();
    CARRIED
        .get_or_init(|| {
            // args_os: an argument that is not UTF-8 (a file handed to a second launch) must not
            // panic here; ours always is.
            let value = std::env::args_os()
                .find_map(|a| a.to_str()?.strip_prefix(RESTARTED_ARG)?.strip_prefix('=').map(str::to_owned))?;
            serde_json::from_str(&value)
                .map_err(|e| tracing::warn!("could not read what the restart in the tray carried over: {e}"))
                .ok()
        })
        .as_ref()
}

/// Work from the tray that must not be cut short by a restart, counted while a [`Busy`] lives.
static BUSY: AtomicUsize = AtomicUsize::new(0);

/// Holds off restarts in the tray until dropped.
pub struct Busy(());

pub fn busy() -> Busy {
    BUSY.fetch_add(1, Ordering::SeqCst);
    Busy(())
}

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(target_os = "linux")]
pub use linux::{after_restart, restart_when_idle};

/// Nothing to restart for: the web processes end with the window (see the module's comment).
#[cfg(not(target_os = "linux"))]
pub fn restart_when_idle(_app: &tauri::AppHandle, _still_closed: impl Fn() -> bool + Clone + Send + 'static) {}

#[cfg(not(target_os = "linux"))]
pub fn after_restart() {}

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::{CString, OsString};
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use dropship_core::activity::ActivityState;
    use dropship_core::{Engine, Watcher};
    use tauri::{AppHandle, Manager};

    use super::{Carried, BUSY, RESTARTED_ARG};

    /// How often a closed window's app looks whether it can start over.
    const LOOK_EVERY: Duration = Duration::from_secs(5);

    /// Call first thing in a process, before any thread starts. WebKit's helpers that the
    /// process before had ended became this one's children; they are reaped here, where nothing
    /// else waits for them. And the kernel named the process after the file it ran, `exe`:
    /// it gets its own name back, for `ps`, `pgrep` and `killall`.
    pub fn after_restart() {
        if super::carried().is_none() {
            return;
        }
        // SAFETY: waitpid(2) with WNOHANG on any child; no thread runs yet that could own one.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        let program = std::env::args_os().next().unwrap_or_default();
        let name = std::path::Path::new(&program).file_name().unwrap_or(program.as_os_str()).as_bytes();
        // The kernel keeps 15 bytes and a NUL.
        if let Ok(name) = CString::new(&name[..name.len().min(15)]) {
            // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
            unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
        }
    }

    /// Looks every [`LOOK_EVERY`] while `still_closed` holds, and starts the app over as a login
    /// start once nothing would be lost by it. Returns at once.
    pub fn restart_when_idle(app: &AppHandle, still_closed: impl Fn() -> bool + Clone + Send + 'static) {
        if std::env::var("TAURI_WEBVIEW_AUTOMATION").as_deref() == Ok("true") {
            return;
        }
        let app = app.clone();
        let spawned = std::thread::Builder::new().name("restart-in-tray".into()).spawn(move || loop {
            std::thread::sleep(LOOK_EVERY);
            // On the event loop's thread, where windows open and the tray's menu runs: nothing
            // can start between the look and the restart.
            let (sender, receiver) = std::sync::mpsc::channel();
            let looked = app.run_on_main_thread({
                let app = app.clone();
                let still_closed = still_closed.clone();
                move || {
                    let closed = still_closed();
                    if closed && nothing_would_be_lost(&app) {
                        restart(&app);
                    }
                    let _ = sender.send(closed);
                }
            });
            if looked.is_err() || receiver.recv() != Ok(true) {
                return;
            }
        });
        if let Err(e) = spawned {
            tracing::warn!("the app will not start over in the tray: {e}");
        }
    }

    fn nothing_would_be_lost(app: &AppHandle) -> bool {
        let Some(engine) = app.try_state::<Engine>() else { return false };
        // Paused while the engine is idle is a hold (a metered network, the battery), which the
        // new process reads from the machine again; an error stays until the person sees it.
        let tray_idle = app
            .try_state::<crate::tray::Tray>()
            .is_some_and(|t| matches!(t.showing(), Some(ActivityState::Idle | ActivityState::Paused)));
        let folders_quiet = app.try_state::<Watcher>().is_some_and(|w| w.status().is_quiet());
        let updates_settled = app.state::<crate::updates::Updates>().to_carry().is_some();
        engine.is_idle() && tray_idle && folders_quiet && updates_settled && BUSY.load(Ordering::SeqCst) == 0
    }

    /// Stops what runs as the app's exit does and replaces the process with a login start.
    /// Returns only when the arguments could not be written, before anything has stopped.
    fn restart(app: &AppHandle) {
        let carried = Carried {
            session_start: Some(app.state::<crate::commands::SessionStart>().started_at().to_owned()),
            window_place: crate::main_window::last_place(app),
            updates: app.state::<crate::updates::Updates>().to_carry(),
        };
        let Some(argv) = arguments(&carried) else { return };
        tracing::info!("the window is closed and nothing runs: starting over in the tray to give its memory back");
        crate::stop_background_work(app);
        // Removes the tray icon and releases the single-instance name (its D-Bus connection
        // answers for it), so the new process takes both over.
        app.cleanup_before_exit();
        mark_descriptors_close_on_exec();
        let argv_pointers: Vec<*const libc::c_char> =
            argv.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        // SAFETY: NUL-terminated strings and a NULL-terminated array that outlive the call;
        // execv returns only on failure. /proc/self/exe is this very binary, also when the
        // package was upgraded meanwhile.
        unsafe { libc::execv(c"/proc/self/exe".as_ptr(), argv_pointers.as_ptr()) };
        let error = std::io::Error::last_os_error();
        // The app's work is stopped and its tray gone: a new process is the way back.
        tracing::error!("could not start over in the tray ({error}); starting a new Dropship");
        let args = argv.iter().skip(1).map(|a| OsString::from_vec(a.as_bytes().to_vec()));
        match std::process::Command::new("/proc/self/exe").args(args).spawn() {
            Ok(_) => std::process::exit(0),
            Err(e) => {
                tracing::error!("could not start a new Dropship either ({e}); quitting");
                std::process::exit(1);
            }
        }
    }

    /// This process's arguments as a login start with `carried`: `--hidden`, the rest as they
    /// were.
    fn arguments(carried: &Carried) -> Option<Vec<CString>> {
        let carried = match serde_json::to_string(carried) {
            Ok(json) => format!("{RESTARTED_ARG}={json}"),
            Err(e) => {
                tracing::warn!("could not write down what to carry over a restart: {e}");
                return None;
            }
        };
        let mut args = std::env::args_os();
        let program = args.next().unwrap_or_else(|| "dropship-desktop".into());
        let kept = args.filter(|a| a != crate::tray::HIDDEN_ARG && !a.as_bytes().starts_with(RESTARTED_ARG.as_bytes()));
        std::iter::once(program)
            .chain(kept)
            .chain([crate::tray::HIDDEN_ARG.into(), carried.into()])
            .map(|a| CString::new(a.into_vec()).ok())
            .collect()
    }

    /// Everything this process opened past stdin, stdout and stderr ends with the `execv`: the
    /// history, the X and D-Bus connections, sockets. Most are opened close-on-exec already;
    /// this makes sure of the rest (a library that forgot would leave them open forever).
    fn mark_descriptors_close_on_exec() {
        let Ok(entries) = std::fs::read_dir("/proc/self/fd") else { return };
        let descriptors: Vec<i32> =
            entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).filter(|&fd| fd > 2).collect();
        for fd in descriptors {
            // SAFETY: fcntl(2) on a descriptor number; one that closed meanwhile fails with EBADF.
            unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags >= 0 {
                    libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_restart_keeps_the_arguments_and_starts_hidden_with_what_it_carries() {
            let carried = Carried { session_start: Some("2026-12-07T10:00:00Z".into()), ..Default::default() };
            let argv = arguments(&carried).unwrap();
            let argv: Vec<String> = argv.iter().map(|a| a.to_str().unwrap().to_owned()).collect();
            assert_eq!(argv.iter().filter(|a| *a == "--hidden").count(), 1);
            let last = argv.last().unwrap();
            let json = last.strip_prefix("--restarted-in-tray=").unwrap();
            let back: Carried = serde_json::from_str(json).unwrap();
            assert_eq!(back.session_start.as_deref(), Some("2026-12-07T10:00:00Z"));
        }
    }
}
