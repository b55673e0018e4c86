//! What the app gives back while it sits in the tray. The process stays: it holds the tray and
//! the engine. Destroying the webview already ends WebKit's web process; what it leaves is the
//! pages of the libraries the window touched (WebKitGTK, JavaScriptCore, GTK, Mesa's LLVM for
//! GL), still resident and counted against the app, and on Linux WebKit's network process,
//! which Tauri's web context keeps for the app's life (tauri#14626).
//!
//! On Linux those library pages are handed back to the kernel (`MADV_PAGEOUT`) and the idle
//! network process is ended; *Open Dropship* reads the pages in again and WebKit starts a new
//! network process for the new webview (225 → 92 MiB RSS in the tray, release build, measured
//! by `bench/window.sh`). What the process cannot hand back (the GL driver WebKit loaded, the
//! heaps) goes when, with nothing running, the app starts over as a login start
//! (`tray_restart`). A login start, which never builds the window, hands its pages back
//! the same way, and on X11 never loads a GL driver ([`before_gtk_starts`]). On Windows the
//! working set is emptied, which is the same hand-back there. On macOS nothing is done: the
//! system compresses idle pages itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tauri::{AppHandle, Manager};

/// Call first thing, before GTK starts and before any other thread does.
///
/// GTK 3 on X11 probes GLX as it opens the display, which loads the GL driver into the app: on
/// this machine's software renderer, Mesa's libLLVM, about 50 MiB that stays for the app's
/// life. Nothing needs it. WebKitGTK draws the page without GTK's GL on X11 (it makes an EGL
/// display of its own), the window is nothing but the page, and the tray menu and the file
/// pickers draw with cairo. So unless the person set `GDK_GL` themselves, an X11 session gets
/// `GDK_GL=disable`, and a login start that never opens the window never loads a driver (85 →
/// 35 MiB RSS in a release build). On Wayland, GTK 3's EGL is shared with WebKit's, which
/// draws through it, so nothing changes there. Programs Dropship starts inherit the variable:
/// on X11 it only stops GTK 3 programs from using `GtkGLArea`, which browsers and file managers
/// do not.
pub fn before_gtk_starts() {
    #[cfg(target_os = "linux")]
    if gtk_gl_is_unused() {
        // Edition 2021: set_var is safe, and nothing else runs yet to read the environment.
        std::env::set_var("GDK_GL", "disable");
    }
}

/// X11, by GDK's own choice of backend: `GDK_BACKEND`'s first entry, else Wayland whenever
/// `WAYLAND_DISPLAY` is set, else X11.
#[cfg(target_os = "linux")]
fn gtk_gl_is_unused() -> bool {
    if std::env::var_os("GDK_GL").is_some() {
        return false;
    }
    let wayland_display = std::env::var_os("WAYLAND_DISPLAY").is_some_and(|v| !v.is_empty());
    match std::env::var("GDK_BACKEND").ok().as_deref().and_then(|b| b.split(',').next()) {
        Some("x11") => true,
        Some("") | None => !wayland_display,
        Some(_) => false,
    }
}

/// Long enough for WebKit to finish tearing the webview down and its web process to exit, so
/// the pages handed back are not touched again straight away.
const SETTLE: Duration = Duration::from_secs(2);

/// How many times the window has been asked to open. A close gives memory back only if no
/// open was asked for since: a webview being built is not yet among the app's windows.
static OPENS: AtomicU64 = AtomicU64::new(0);

/// Call before building or showing the window.
pub fn window_opening() {
    OPENS.fetch_add(1, Ordering::SeqCst);
}

/// Why the app has no window.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum NoWindow {
    /// It was destroyed: after the pages, the app starts over in the tray once idle (on Linux,
    /// see `tray_restart`), to shed what it cannot hand back.
    Closed,
    /// A login start (`--hidden`) never built one, though GTK and WebKit have started.
    NeverBuilt,
}

/// Call when the app has no window. Returns at once; the work happens after [`SETTLE`], and
/// only if no window has been opened or asked for meanwhile.
pub fn no_window_now(app: &AppHandle, why: NoWindow) {
    let opens_at_close = OPENS.load(Ordering::SeqCst);
    let still_closed = {
        let app = app.clone();
        move || OPENS.load(Ordering::SeqCst) == opens_at_close && app.webview_windows().is_empty()
    };
    let app = app.clone();
    let spawned = std::thread::Builder::new().name("give-back-memory".into()).spawn(move || {
        std::thread::sleep(SETTLE);
        // *Open Dropship* asks on the event loop's thread and webviews are built there, so
        // deciding there cannot race a window being opened: either the open comes after, and
        // its webview starts a new network process, or it came before and nothing is ended.
        let (sender, receiver) = std::sync::mpsc::channel();
        let checked = app.run_on_main_thread({
            let still_closed = still_closed.clone();
            move || {
                let closed = still_closed();
                if closed {
                    platform::end_idle_web_helpers();
                }
                let _ = sender.send(closed);
            }
        });
        if checked.is_ok() && receiver.recv() == Ok(true) {
            platform::give_back_pages();
            if why == NoWindow::Closed {
                crate::tray_restart::restart_when_idle(&app, still_closed);
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("could not give memory back after the window closed: {e}");
    }
}

#[cfg(target_os = "linux")]
mod platform {
    use std::os::unix::ffi::OsStrExt;

    /// The command name WebKitGTK gives its network process (`/proc/<pid>/comm` keeps 15 bytes).
    const NETWORK_PROCESS: &[u8] = b"WebKitNetworkPr";

    /// Ends WebKit's network process, a child of this process, which nothing uses while no
    /// webview exists. WebKit starts a new one with the next webview.
    pub fn end_idle_web_helpers() {
        // WebKit ends a WebDriver session with the network process, so under tauri-driver it
        // stays; tests/watch_desktop.rs follows this path without WebDriver.
        if std::env::var("TAURI_WEBVIEW_AUTOMATION").as_deref() == Ok("true") {
            return;
        }
        let me = std::process::id();
        let Ok(entries) = std::fs::read_dir("/proc") else { return };
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
            let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) else { continue };
            if parent_of(&stat) == Some(me) && command_of(&stat) == Some(NETWORK_PROCESS) {
                // SAFETY: kill(2) on a pid read from /proc; it is our own child, and a child
                // that has exited stays a zombie (same pid) until WebKit reaps it.
                if unsafe { libc::kill(pid, libc::SIGTERM) } == 0 {
                    tracing::debug!(pid, "ended WebKit's idle network process");
                }
            }
        }
    }

    /// `/proc/<pid>/stat` is `pid (comm) state ppid …`, and comm may hold spaces and brackets,
    /// so both are found from the last ')'.
    fn command_of(stat: &[u8]) -> Option<&[u8]> {
        let open = stat.iter().position(|&b| b == b'(')?;
        let close = stat.iter().rposition(|&b| b == b')')?;
        stat.get(open + 1..close)
    }

    fn parent_of(stat: &[u8]) -> Option<u32> {
        let close = stat.iter().rposition(|&b| b == b')')?;
        let rest = std::str::from_utf8(stat.get(close + 1..)?).ok()?;
        rest.split_whitespace().nth(1)?.parse().ok()
    }

    /// Asks the kernel to reclaim the clean pages of the files this process maps privately
    /// (the binary, libraries, locale data). Pages other processes map too are left alone by the
    /// kernel; anonymous memory stays (it would need swap).
    ///
    /// Reclaiming a page only this process maps also drops it from the kernel's page cache, so
    /// *Open Dropship* would read WebKit and the GL driver back from disk: 630 ms to the window
    /// painted, against 480 ms with the files cached (release build, `bench/window.sh`). So the
    /// pages that were in memory are read back into the page cache at once, unmapped: they no
    /// longer count against the app, the kernel drops them when it needs the memory, and a
    /// reopen maps them from the cache.
    pub fn give_back_pages() {
        let Ok(maps) = std::fs::read("/proc/self/maps") else { return };
        let mappings: Vec<FileMapping> = maps.split(|&b| b == b'\n').filter_map(FileMapping::parse).collect();
        let in_memory: Vec<Vec<(u64, u64)>> = mappings.iter().map(FileMapping::in_memory).collect();
        let (mut regions, mut bytes) = (0usize, 0usize);
        for mapping in &mappings {
            // SAFETY: the range is one of this process's own mappings, as the kernel listed
            // it; MADV_PAGEOUT only drops pages, which fault back in unchanged when read.
            if unsafe { libc::madvise(mapping.start as *mut libc::c_void, mapping.len, libc::MADV_PAGEOUT) } == 0 {
                regions += 1;
                bytes += mapping.len;
            }
        }
        let cached = keep_in_page_cache(&mappings, &in_memory);
        tracing::debug!(
            regions,
            mapped_mib = bytes >> 20,
            cached_mib = cached >> 20,
            "handed library pages back after the window closed"
        );
    }

    /// Asks the kernel to read `ranges` (file offset, length) of each mapping's file into its
    /// page cache, in the background. Returns how many bytes it asked for.
    fn keep_in_page_cache(mappings: &[FileMapping], ranges: &[Vec<(u64, u64)>]) -> u64 {
        use std::os::fd::AsRawFd;
        let mut by_file: std::collections::BTreeMap<&std::path::Path, Vec<(u64, u64)>> = Default::default();
        for (mapping, ranges) in mappings.iter().zip(ranges) {
            by_file.entry(&mapping.path).or_default().extend(ranges);
        }
        let mut asked = 0;
        for (path, ranges) in by_file {
            // A file replaced since it was mapped (" (deleted)") is not there to read.
            let Ok(file) = std::fs::File::open(path) else { continue };
            for (offset, len) in ranges {
                // SAFETY: posix_fadvise(2) on an open descriptor; WILLNEED only starts reads.
                let advised = unsafe {
                    libc::posix_fadvise(
                        file.as_raw_fd(),
                        offset as libc::off_t,
                        len as libc::off_t,
                        libc::POSIX_FADV_WILLNEED,
                    )
                };
                if advised == 0 {
                    asked += len;
                }
            }
        }
        asked
    }

    struct FileMapping {
        start: usize,
        len: usize,
        /// Where in the file the mapping starts.
        offset: u64,
        path: std::path::PathBuf,
    }

    impl FileMapping {
        /// A line of /proc/self/maps, `start-end perms offset dev inode path`, when it is a
        /// private mapping of a file: the binary, libraries, locale data. Not anonymous memory,
        /// the stack or the vDSO (inode 0), and no shared mapping: SQLite's `-shm`, X's shared
        /// memory, a GPU driver's buffers under /dev/dri are for their owners to manage.
        fn parse(line: &[u8]) -> Option<FileMapping> {
            let mut rest = line;
            let range = std::str::from_utf8(next_field(&mut rest)).ok()?;
            let perms = next_field(&mut rest);
            let offset = std::str::from_utf8(next_field(&mut rest)).ok()?;
            let _device = next_field(&mut rest);
            let inode = next_field(&mut rest);
            // The rest of the line: a path may hold spaces.
            let path = trim_spaces(rest);
            let private = perms.get(3) == Some(&b'p');
            if inode == b"0" || !path.starts_with(b"/") || path.starts_with(b"/dev/") || !private {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            Some(FileMapping {
                start,
                len: end.checked_sub(start)?,
                offset: u64::from_str_radix(offset, 16).ok()?,
                path: std::path::PathBuf::from(std::ffi::OsStr::from_bytes(path)),
            })
        }

        /// The file ranges (offset, length) of the pages of this mapping that are in memory.
        fn in_memory(&self) -> Vec<(u64, u64)> {
            // SAFETY: sysconf(3) reads a constant.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
            let mut resident = vec![0u8; self.len.div_ceil(page)];
            // SAFETY: one of this process's mappings, page-aligned as the kernel listed it, and
            // one byte per page to write to.
            if unsafe { libc::mincore(self.start as *mut libc::c_void, self.len, resident.as_mut_ptr()) } != 0 {
                return Vec::new();
            }
            runs(&resident)
                .into_iter()
                .map(|(first, count)| (self.offset + (first * page) as u64, (count * page) as u64))
                .collect()
        }
    }

    /// The runs (first page, page count) of pages that `mincore` says are in memory.
    fn runs(resident: &[u8]) -> Vec<(usize, usize)> {
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (page, state) in resident.iter().enumerate() {
            if state & 1 == 0 {
                continue;
            }
            match runs.last_mut() {
                Some((first, count)) if *first + *count == page => *count += 1,
                _ => runs.push((page, 1)),
            }
        }
        runs
    }

    fn trim_spaces(bytes: &[u8]) -> &[u8] {
        let start = bytes.iter().position(|&b| b != b' ').unwrap_or(bytes.len());
        &bytes[start..]
    }

    /// The next space-separated field of `rest`, which moves past it.
    fn next_field<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
        let trimmed = trim_spaces(rest);
        let end = trimmed.iter().position(|&b| b == b' ').unwrap_or(trimmed.len());
        let (field, after) = trimmed.split_at(end);
        *rest = after;
        field
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn file_mappings_are_read_from_proc_maps_lines() {
            let library = FileMapping::parse(
                b"7f1c2a000000-7f1c2a400000 r-xp 00000000 fd:01 1234   /usr/lib/x86_64-linux-gnu/libLLVM-15.so.1",
            )
            .unwrap();
            assert_eq!((library.start, library.len), (0x7f1c2a000000, 0x400000));
            assert!(FileMapping::parse(b"7f1c2a000000-7f1c2a400000 rw-p 00000000 00:00 0 ").is_none());
            assert!(FileMapping::parse(b"7ffd1000-7ffd2000 rw-p 00000000 00:00 0      [stack]").is_none());
            assert!(FileMapping::parse(b"7f00-7f10 rw-s 00000000 fd:01 99 /data/history.db-shm").is_none());
            assert!(FileMapping::parse(b"7f00-7f10 r--s 00000000 00:01 7 /SYSV00000000 (deleted)").is_none());
            assert!(FileMapping::parse(b"7f00-7f10 rw-p 00000000 00:05 42 /dev/dri/renderD128").is_none());
            let data = FileMapping::parse(b"7f00-7f10 rw-p 00001000 fd:01 1234 /usr/lib/libgtk-3.so.0").unwrap();
            assert_eq!((data.len, data.offset), (0x10, 0x1000));
            let spaced =
                FileMapping::parse(b"7f00-7f10 r--p 00000000 fd:01 5 /opt/My Apps/lib x.so (deleted)").unwrap();
            assert_eq!(spaced.path, std::path::Path::new("/opt/My Apps/lib x.so (deleted)"));
        }

        #[test]
        fn pages_in_memory_are_read_as_runs() {
            assert_eq!(runs(&[1, 1, 0, 1, 0, 0, 1, 1, 1]), vec![(0, 2), (3, 1), (6, 3)]);
            assert_eq!(runs(&[0, 0]), vec![]);
            // mincore sets only the lowest bit; the others are reserved.
            assert_eq!(runs(&[0b11, 0b10]), vec![(0, 1)]);
        }

        #[test]
        fn a_command_name_with_brackets_and_spaces_is_read_whole() {
            let stat = b"4242 (WebKitNetworkPr) S 17 4242 17 0 -1";
            assert_eq!(command_of(stat), Some(&b"WebKitNetworkPr"[..]));
            assert_eq!(parent_of(stat), Some(17));
            let odd = b"7 (a) b (c)) R 3 7 3";
            assert_eq!(command_of(odd), Some(&b"a) b (c)"[..]));
            assert_eq!(parent_of(odd), Some(3));
        }
    }
}

#[cfg(windows)]
mod platform {
    /// WebView2's processes end with the last webview; nothing else to end.
    pub fn end_idle_web_helpers() {}

    /// Empties the working set: Windows takes back the pages and faults them in again when
    /// they are next used, as it does for any program that goes idle under memory pressure.
    pub fn give_back_pages() {
        use windows_sys::Win32::System::Threading::{GetCurrentProcess, SetProcessWorkingSetSize};
        // SAFETY: the pseudo-handle of this process; (-1, -1) is the documented "empty it".
        if unsafe { SetProcessWorkingSetSize(GetCurrentProcess(), usize::MAX, usize::MAX) } == 0 {
            tracing::debug!("could not empty the working set after the window closed");
        }
    }
}

#[cfg(not(any(target_os = "linux", windows)))]
mod platform {
    /// WKWebView's processes end with the last web view.
    pub fn end_idle_web_helpers() {}

    /// macOS compresses and pages out idle memory itself; there is no call that does more.
    pub fn give_back_pages() {}
}
