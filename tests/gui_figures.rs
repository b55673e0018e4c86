//! The window's figures for the README, measured in the real window under Xvfb (software
//! rendering): launch to a usable window (cold and warm), idle CPU and memory, history search
//! over 100,000 rows, a queue of 10,000 files, and the app in the tray with its window closed
//! (memory, idle CPU, and the time *Open Dropship* takes to bring the window back), under
//! WebDriver and started directly as a person runs it. It prints figures and asserts nothing about
//! time; run it through `bench/window.sh` (it is `#[ignore]`d in the normal test run).

mod gui;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use dropship_core::store::{NewUpload, Store};
use dropship_core::Source;
use dropship_system_tests::desktop::{
    close_window, painted_window, DesktopSession, TauriDriver, Xvfb, SOFTWARE_RENDERING,
};
use dropship_system_tests::process::{descendants, resident_memory, ProcessGuard};
use dropship_system_tests::wait_for;
use dropship_testkit::{Backend, S3Server};
use fantoccini::{Client, Locator};
use gui::*;

const HISTORY_ROWS: usize = 100_000;
const QUEUE_FILES: usize = 10_000;
/// The history list's page (ui/src/components/HistoryList.svelte's PAGE).
const HISTORY_PAGE: usize = 40;

#[test]
#[ignore = "a benchmark: run bench/window.sh"]
fn window_figures() {
    let backend = Backend::start(S3Server::shared());
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    write_settings(
        &data_dir,
        serde_json::json!({ "backend_url": backend.url, "token": backend.token, "token_storage": "file" }),
    );
    let xvfb = Xvfb::start();
    // WINDOW_BENCH=queue (or launch, idle, history, tray) runs one part only.
    let only = std::env::var("WINDOW_BENCH").unwrap_or_default();
    let part = |name: &str| only.is_empty() || only == name;

    if part("launch") {
        println!("## Launch to a usable window (process start → upload view on screen)");
        let mut warm = Vec::new();
        let mut cold = Vec::new();
        for run in 0..6 {
            let evicted = run % 2 == 0 && evict_app_binary();
            let (ms, _) = launch(&xvfb, &data_dir, async |_, _| Ok(())).unwrap();
            if evicted {
                cold.push(ms)
            } else {
                warm.push(ms)
            }
        }
        cold.sort();
        println!(
            "cold (the app's binary evicted from the page cache first): median {} ms of {:?}",
            cold[cold.len() / 2],
            cold
        );
        warm.sort();
        println!("warm: median {} ms of {:?}", warm[warm.len() / 2], warm);
    }

    if part("idle") {
        println!("\n## Idle (10 s, 5 s after launch, nothing to do)");
        launch(&xvfb, &data_dir, async |_, driver_pid| {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let before = cpu_ticks(driver_pid);
            let started = Instant::now();
            tokio::time::sleep(Duration::from_secs(10)).await;
            let after = cpu_ticks(driver_pid);
            let seconds = started.elapsed().as_secs_f64();
            for (name, pid, rss_kib, pss_kib) in memory(driver_pid) {
                let ticks = after.get(&pid).copied().unwrap_or(0) - before.get(&pid).copied().unwrap_or(0);
                let cpu = ticks as f64 / clock_ticks() as f64 / seconds * 100.0;
                println!(
                    "{name} (pid {pid}): CPU {cpu:.2}% · RSS {:.1} MiB · PSS {:.1} MiB",
                    rss_kib as f64 / 1024.0,
                    pss_kib as f64 / 1024.0
                );
            }
            Ok(())
        })
        .unwrap();
    }

    if part("history") {
        println!("\n## History search over {HISTORY_ROWS} rows (query in SQLite + list rendered, in the page)");
        let started = Instant::now();
        seed_history(&data_dir, HISTORY_ROWS);
        println!("(seeded in {:.1?})", started.elapsed());
        let store = Store::open(&data_dir.join("history.sqlite")).unwrap();
        launch(&xvfb, &data_dir, async |client, _| {
            // The first page of the virtualised list is loaded (only the rows in view are drawn).
            poll(Duration::from_secs(60), "the history's first page", || async {
                let loaded = attr(client, "[data-testid=history-list]", "data-count").await?;
                (loaded.parse::<usize>().ok()? >= HISTORY_PAGE).then_some(())
            })
            .await?;
            for (label, search, status, source) in [
                ("newest, no filter", "", "", ""),
                ("search a common word (\"report\")", "report", "", ""),
                ("search one file (\"report-077777\")", "report-077777", "", ""),
                ("search nothing matches (\"zzz-none\")", "zzz-none", "", ""),
                ("status = failed", "", "failed", ""),
                ("source = watched folders", "", "", "watch"),
            ] {
                let mut in_page = Vec::new();
                for _ in 0..3 {
                    reset_history_filters(client).await?;
                    let before = shown_queries(client).await?;
                    set_value(client, "[data-testid=history-search]", search).await?;
                    select(client, "[data-testid=history-status]", status).await?;
                    select(client, "[data-testid=history-source]", source).await?;
                    let ms = poll(Duration::from_secs(30), "the query to render", || async {
                        let n = shown_queries(client).await.ok()?;
                        if n <= before {
                            return None;
                        }
                        // Filters fire one query each; the last one shown is the combined one.
                        tokio::time::sleep(Duration::from_millis(400)).await;
                        query_ms(client).await.ok()
                    })
                    .await?;
                    in_page.push(ms);
                }
                in_page.sort();
                let query = dropship_core::HistoryQuery {
                    search: Some(search.into()).filter(|s: &String| !s.is_empty()),
                    status: dropship_core::UploadStatus::parse(status),
                    source: (!source.is_empty()).then_some(Source::Watch),
                    limit: HISTORY_PAGE,
                    ..Default::default()
                };
                let t = Instant::now();
                let rows = store.history(&query).unwrap().len();
                let core_ms = t.elapsed().as_secs_f64() * 1000.0;
                let drawn = count(client, "[data-testid=history-item]").await;
                println!(
                    "{label}: {rows} rows · in the window median {} ms (of {:?}), {drawn} rows drawn · SQLite alone {core_ms:.1} ms",
                    in_page[1], in_page
                );
            }
            reset_history_filters(client).await?;
            select(client, "[data-testid=history-status]", "").await?;
            set_value(client, "[data-testid=history-search]", "").await?;
            tokio::time::sleep(Duration::from_millis(800)).await;
            let scroll = client.execute(SCROLL_HISTORY, vec![]).await?;
            println!("scrolling down the history, 120 frames, further pages fetched on the way: {scroll}");
            Ok(())
        })
        .unwrap();
    }

    if part("tray") {
        tray_figures(&xvfb, work.path(), &backend);
        tray_figures_as_a_person_runs_it(&xvfb, work.path(), &backend);
    }

    if !part("queue") {
        return;
    }
    println!("\n## A queue of {QUEUE_FILES} files (one folder dropped)");
    let folder = work.path().join("ten-thousand");
    std::fs::create_dir_all(&folder).unwrap();
    for i in 0..QUEUE_FILES {
        std::fs::write(folder.join(format!("file-{i:05}.txt")), format!("file {i}\n")).unwrap();
    }
    launch(&xvfb, &data_dir, async |client, _| {
        client.execute(FRAME_MONITOR, vec![]).await?;
        let display = xvfb.display.clone();
        let dropped = Instant::now();
        drag_onto(client, &display, &[&folder], "[data-testid=drop-zone]").await?;
        let all_queued = poll(Duration::from_secs(300), "all files in the queue", || async {
            let total = attr(client, "[data-testid=upload-list]", "data-total").await?;
            (total == QUEUE_FILES.to_string()).then(|| dropped.elapsed())
        })
        .await?;
        let rows_in_page = count(client, "[data-testid=upload-item]").await;
        // Scroll through the list while it uploads, as someone looking for one file would.
        let scroll = client.execute(SCROLL_THROUGH, vec![]).await?;
        let all_done = poll(Duration::from_secs(900), "every upload to finish", || async {
            let active = attr(client, "[data-testid=upload-list]", "data-active").await?;
            (active == "0").then(|| dropped.elapsed())
        })
        .await?;
        let frames = client.execute("return window.__frameStats()", vec![]).await?;
        let stats = client.execute("return window.__dropshipEventStats", vec![]).await?;
        let failed = count(client, "[data-testid=upload-item][data-status=failed]").await;
        println!(
            "all {QUEUE_FILES} listed {:.1?} after the drop; all finished after {:.1?} ({failed} failed in view)",
            all_queued, all_done
        );
        println!("rows in the page while listed: {rows_in_page} (the list is virtualised)");
        println!("scrolling the whole list in 20 steps: {scroll}");
        println!("frames while queueing and uploading: {frames}");
        println!(
            "slowest event list applied in the page: {:.0} ms ({} events; the JSON is parsed before)",
            stats["slowestApplyMs"].as_f64().unwrap_or(0.0),
            stats["slowestApplyEvents"]
        );
        let start = client.execute("return window.__frameStart", vec![]).await?.as_f64().unwrap_or(0.0);
        let first = stats["firstFilesAt"].as_f64().unwrap_or(0.0);
        println!("the first files reached the page at {:.1} s (on the frames' clock)", (first - start) / 1000.0);
        let lists = stats["lists"].as_f64().unwrap_or(0.0);
        println!(
            "event lists received: {lists} in {:.1} s = {:.1} a second ({} events)",
            all_done.as_secs_f64(),
            lists / all_done.as_secs_f64(),
            stats["events"]
        );
        Ok(())
    })
    .unwrap();
}

/// How many times the tray part reopens the window.
const REOPENS: usize = 5;

/// The window open, then closed to the tray (memory of the app and everything under it, idle
/// CPU), then *Open Dropship* clicked in the tray menu until the upload view is back on screen
/// with the history it had: [`REOPENS`] times.
fn tray_figures(xvfb: &Xvfb, work: &Path, backend: &Backend) {
    println!("\n## In the tray (the window closed; Open Dropship from the tray menu)");
    let (data_dir, _home, session) = tray_scene(&work.join("tray-data"), backend);
    launch_on_bus(xvfb, &data_dir, &session.bus_address, async |client, driver_pid| {
        let history = async || attr(client, "[data-testid=history-list]", "data-count").await;
        let listed =
            poll(Duration::from_secs(30), "the history", || async { history().await.filter(|n| n != "0") }).await?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let app = app_pid(driver_pid).context("no app process")?;
        print_tree("window open, 5 s after launch", app, Duration::from_secs(10)).await;

        close_window(&xvfb.display, "^Dropship$")?;
        poll(Duration::from_secs(30), "WebKit's web process to end", || async {
            (!tree(app).iter().any(|(name, _)| name.starts_with("WebKitWeb"))).then_some(())
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        print_tree("window closed, in the tray, 5 s after closing", app, Duration::from_secs(10)).await;

        let mut reopens = Vec::new();
        for run in 0..REOPENS {
            let clicked = Instant::now();
            session.click_tray_item("Open Dropship")?;
            let window = poll(Duration::from_secs(30), "the reopened window", || async {
                client.windows().await.ok()?.into_iter().next()
            })
            .await?;
            client.switch_to_window(window).await?;
            poll(Duration::from_secs(30), "the upload view", || async {
                client.find(Locator::Css("[data-testid=uploads-view] [data-testid=drop-zone]")).await.ok()
            })
            .await?;
            reopens.push(clicked.elapsed().as_millis() as u64);
            let shown =
                poll(Duration::from_secs(30), "the history", || async { history().await.filter(|n| n != "0") }).await?;
            anyhow::ensure!(shown == listed, "the reopened window lists {shown} uploads in its history, not {listed}");
            if run + 1 < REOPENS {
                close_window(&xvfb.display, "^Dropship$")?;
                poll(Duration::from_secs(30), "the window to go", || async {
                    (!tree(app).iter().any(|(name, _)| name.starts_with("WebKitWeb"))).then_some(())
                })
                .await?;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
        let samples = reopens.clone();
        reopens.sort();
        println!(
            "Open Dropship to the upload view on screen (with its {listed} history rows): median {} ms of {samples:?}",
            reopens[reopens.len() / 2]
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        print_tree("window reopened, 5 s after", app, Duration::from_secs(10)).await;
        Ok(())
    })
    .unwrap();
}

/// The tray as it is for a person: the app started directly, not under tauri-driver, so once the
/// window has closed it ends WebKit's network process and, with nothing running, starts over
/// as a login start (under WebDriver it does neither: WebKit ends the WebDriver session with the
/// network process, and the session is the process). Without WebDriver the reopened window is timed to
/// its first painted grab ([`painted_window`]), polled as fast as xdotool and ImageMagick go
/// (a grab takes tens of milliseconds, which the figure includes).
fn tray_figures_as_a_person_runs_it(xvfb: &Xvfb, work: &Path, backend: &Backend) {
    println!("\n## In the tray, the app started directly (no WebDriver)");
    let (data_dir, home, session) = tray_scene(&work.join("tray-direct-data"), backend);
    let start = |args: &[&str], log_path: &Path| {
        ProcessGuard::spawn(
            "dropship-desktop",
            std::process::Command::new(dropship_testkit::target_bin("dropship-desktop"))
                .args(args)
                .env("DISPLAY", &xvfb.display)
                .env("DBUS_SESSION_BUS_ADDRESS", &session.bus_address)
                .env("DROPSHIP_DATA_DIR", &data_dir)
                .env("DROPSHIP_LOG", "warn,dropship_desktop::footprint=debug,dropship_desktop::tray_restart=info")
                .envs(SOFTWARE_RENDERING)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(log_path).unwrap()),
        )
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    // A login start (what "Start at login" runs) builds no window at all.
    let login_log = home.path().join("login.log");
    let mut login_start = start(&["--hidden"], &login_log);
    wait_for("the login start to hand its pages back", Duration::from_secs(60), || {
        std::fs::read_to_string(&login_log).unwrap_or_default().contains("handed library pages back").then_some(())
    })
    .unwrap();
    runtime.block_on(async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let pid = login_start.pid() as i32;
        print_tree(
            "login start (--hidden, no window), 5 s after the pages were handed back",
            pid,
            Duration::from_secs(10),
        )
        .await;
    });
    login_start.stop();

    let log_path = home.path().join("app.log");
    let mut app = start(&[], &log_path);
    let pid = app.pid() as i32;
    // Each close: the pages handed back, the app starting over in the tray (see
    // src-tauri/src/tray_restart.rs), and the new process handing its own pages back.
    let started_over_and_handed_back = || {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let last = log.rfind("starting over in the tray");
        let handed_after = last.is_some_and(|at| log[at..].contains("handed library pages back"));
        log.matches("starting over in the tray").count() - usize::from(!handed_after)
    };
    // Polled without a pause: each grab takes tens of milliseconds on its own.
    let painted = || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while painted_window(&xvfb.display, "^Dropship$").is_none() {
            assert!(Instant::now() < deadline, "the window was not painted within 60 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let close_to_tray = |times: usize| {
        close_window(&xvfb.display, "^Dropship$").unwrap();
        wait_for("WebKit's processes to end and the app to start over lean", Duration::from_secs(60), || {
            let helpers = tree(pid).iter().any(|(name, _)| name.starts_with("WebKit"));
            (!helpers && started_over_and_handed_back() == times).then_some(())
        })
        .unwrap();
    };

    painted();
    runtime.block_on(async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        print_tree("window open, 5 s after launch", pid, Duration::from_secs(10)).await;
    });
    close_to_tray(1);
    runtime.block_on(async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        print_tree("window closed, in the tray, 5 s after the app started over", pid, Duration::from_secs(10)).await;
    });
    // Reopens alternate between a process that started over and one kept by Pause all (a
    // paused engine holds state only that process knows, so it does not start over), so that
    // both are measured under the same load.
    let handed_back =
        || std::fs::read_to_string(&log_path).unwrap_or_default().matches("handed library pages back").count();
    let (mut started_over, mut kept) = (Vec::new(), Vec::new());
    let open = |samples: &mut Vec<u64>| {
        let clicked = Instant::now();
        session.click_tray_item("Open Dropship").unwrap();
        painted();
        samples.push(clicked.elapsed().as_millis() as u64);
    };
    for run in 0..REOPENS {
        open(&mut started_over);
        session.click_tray_item("Pause all").unwrap();
        let before = handed_back();
        close_window(&xvfb.display, "^Dropship$").unwrap();
        wait_for("WebKit's processes to end and the pages handed back", Duration::from_secs(60), || {
            let helpers = tree(pid).iter().any(|(name, _)| name.starts_with("WebKit"));
            (!helpers && handed_back() > before).then_some(())
        })
        .unwrap();
        std::thread::sleep(Duration::from_secs(2));
        open(&mut kept);
        session.click_tray_item("Resume all").unwrap();
        close_to_tray(run + 2);
        std::thread::sleep(Duration::from_secs(2));
    }
    let median = |samples: &[u64]| {
        let mut sorted = samples.to_vec();
        sorted.sort();
        sorted[sorted.len() / 2]
    };
    println!(
        "Open Dropship to the window painted, in a process that started over (WebKit and the GL driver load afresh): median {} ms of {started_over:?}",
        median(&started_over)
    );
    println!(
        "Open Dropship to the window painted, in a process kept (Pause all on; pages handed back): median {} ms of {kept:?}",
        median(&kept)
    );
    runtime.block_on(async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        print_tree("in the tray again, after the reopens", pid, Duration::from_secs(10)).await;
    });
    app.stop();
}

/// A data folder at `data_dir` set up for `backend` with a seeded history, and a session bus
/// (in a scratch home, returned to be kept) with a tray that registers the app's icon and
/// clicks its menu items.
fn tray_scene(data_dir: &Path, backend: &Backend) -> (std::path::PathBuf, tempfile::TempDir, DesktopSession) {
    write_settings(
        data_dir,
        serde_json::json!({ "backend_url": backend.url, "token": backend.token, "token_storage": "file" }),
    );
    gui::seed_history(data_dir);
    let home = tempfile::tempdir().unwrap();
    let session = DesktopSession::start(&home.path().join("session")).unwrap();
    (data_dir.to_owned(), home, session)
}

/// The app's pid under tauri-driver.
fn app_pid(driver_pid: u32) -> Option<i32> {
    processes(driver_pid).into_iter().find(|(name, _)| name == "dropship-deskto").map(|(_, pid)| pid)
}

/// The app and every process under it, whatever its name: (command name, pid).
fn tree(app: i32) -> Vec<(String, i32)> {
    std::iter::once(app)
        .chain(descendants(app))
        .filter_map(|pid| Some((std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?.trim().to_owned(), pid)))
        .collect()
}

/// CPU over `over`, then RSS and PSS, of each process in the app's tree and all of them together.
async fn print_tree(when: &str, app: i32, over: Duration) {
    let before =
        tree(app).into_iter().map(|(_, pid)| (pid, ticks_of(pid))).collect::<std::collections::HashMap<_, _>>();
    let started = Instant::now();
    tokio::time::sleep(over).await;
    let seconds = started.elapsed().as_secs_f64();
    println!("{when}:");
    let (mut rss_total, mut pss_total, mut cpu_total) = (0, 0, 0.0);
    for (name, pid) in tree(app) {
        let ticks = ticks_of(pid).saturating_sub(before.get(&pid).copied().unwrap_or(0));
        let cpu = ticks as f64 / clock_ticks() as f64 / seconds * 100.0;
        let (rss, pss) = resident_memory(pid);
        println!(
            "  {name} (pid {pid}): CPU {cpu:.2}% · RSS {:.1} MiB · PSS {:.1} MiB",
            rss as f64 / 1024.0,
            pss as f64 / 1024.0
        );
        (rss_total, pss_total, cpu_total) = (rss_total + rss, pss_total + pss, cpu_total + cpu);
    }
    println!(
        "  all together: CPU {cpu_total:.2}% · RSS {:.1} MiB · PSS {:.1} MiB",
        rss_total as f64 / 1024.0,
        pss_total as f64 / 1024.0
    );
}

/// Launches the app, waits for the upload view, runs `then`, and returns the launch time:
/// from the app process's start (from /proc) to the view found on screen.
fn launch(
    xvfb: &Xvfb,
    data_dir: &Path,
    then: impl AsyncFnOnce(&Client, u32) -> anyhow::Result<()>,
) -> anyhow::Result<(u64, ())> {
    // No session bus: no keyring, tray or single-instance hand-over to wait for.
    launch_on_bus(xvfb, data_dir, "", then)
}

/// [`launch`] on the session bus at `bus_address`.
fn launch_on_bus(
    xvfb: &Xvfb,
    data_dir: &Path,
    bus_address: &str,
    then: impl AsyncFnOnce(&Client, u32) -> anyhow::Result<()>,
) -> anyhow::Result<(u64, ())> {
    let env = [
        ("DROPSHIP_DATA_DIR", data_dir.as_os_str()),
        ("DROPSHIP_LOG", "warn".as_ref()),
        ("DBUS_SESSION_BUS_ADDRESS", bus_address.as_ref()),
    ];
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // On a busy machine WebKitWebDriver sometimes misses tauri-driver's start-up window: try
    // again rather than lose the run (a failed attempt is not counted).
    let mut attempts = 0;
    let (mut driver, client) = loop {
        let mut driver = TauriDriver::start(&xvfb.display, &env);
        match runtime.block_on(open_session(&driver.url)) {
            Ok(client) => break (driver, client),
            Err(e) if attempts < 3 => {
                attempts += 1;
                eprintln!("(launch attempt failed, trying again: {e:#})");
                driver.stop();
            }
            Err(e) => return Err(e),
        }
    };
    let driver_pid = driver.pid();
    let outcome = runtime.block_on(async {
        let result = async {
            poll(Duration::from_secs(60), "the upload view", || async {
                client.find(Locator::Css("[data-testid=uploads-view] [data-testid=drop-zone]")).await.ok()
            })
            .await?;
            let ms = app_age_ms(driver_pid).context("no app process")?;
            then(&client, driver_pid).await?;
            Ok(ms)
        }
        .await;
        if result.is_err() {
            dump_page(&client).await;
        }
        let _ = client.close().await;
        result
    });
    driver.stop();
    outcome.map(|ms| (ms, ()))
}

/// How long ago the app process started, in ms (10 ms resolution).
fn app_age_ms(driver_pid: u32) -> Option<u64> {
    let pid = processes(driver_pid).into_iter().find(|(name, _)| name == "dropship-deskto")?.1;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let start_ticks: f64 = fields[19].parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime").ok()?.split(' ').next()?.parse().ok()?;
    Some(((uptime - start_ticks / clock_ticks() as f64) * 1000.0) as u64)
}

/// The app and WebKit's helpers under tauri-driver: (command name, pid).
fn processes(driver_pid: u32) -> Vec<(String, i32)> {
    descendants(driver_pid as i32)
        .into_iter()
        .filter_map(|pid| {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?.trim().to_owned();
            (name.starts_with("dropship") || name.starts_with("WebKitWeb") || name.starts_with("WebKitNetwork"))
                .then_some((name, pid))
        })
        .collect()
}

fn cpu_ticks(driver_pid: u32) -> std::collections::HashMap<i32, u64> {
    processes(driver_pid).into_iter().map(|(_, pid)| (pid, ticks_of(pid))).collect()
}

/// User and system CPU ticks `pid` has used (0 once it is gone).
fn ticks_of(pid: i32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    let Some(end) = stat.rfind(')') else { return 0 };
    let fields: Vec<&str> = stat[end + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0)
}

/// (name, pid, RSS KiB, PSS KiB) for the app and each WebKit helper.
fn memory(driver_pid: u32) -> Vec<(String, i32, u64, u64)> {
    processes(driver_pid)
        .into_iter()
        .map(|(name, pid)| {
            let (rss, pss) = resident_memory(pid);
            (name, pid, rss, pss)
        })
        .collect()
}

fn clock_ticks() -> i64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }
}

/// Evicts the app's binary from the page cache (`posix_fadvise(DONTNEED)`), so the next launch
/// reads it from disk. Only the app's own file: the shared WebKit libraries stay cached, and
/// the machine's cache as a whole is left alone for everyone else on it.
fn evict_app_binary() -> bool {
    use std::os::fd::AsRawFd;
    let Ok(file) = std::fs::File::open(dropship_testkit::target_bin("dropship-desktop")) else { return false };
    // SAFETY: a valid open descriptor; fadvise only drops clean cached pages.
    unsafe {
        libc::fdatasync(file.as_raw_fd()) == 0
            && libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) == 0
    }
}

fn seed_history(data_dir: &Path, rows: usize) {
    let store = Store::open(&data_dir.join("history.sqlite")).unwrap();
    let sources = [Source::Window, Source::Cli, Source::Watch];
    let names: Vec<(String, String, String)> = (0..rows)
        .map(|i| {
            let id = format!("seed-{i:06}");
            let name = format!("report-{i:06}.pdf");
            let path = format!("/home/staff/reports/{}/{name}", 2000 + i % 25);
            (id, name, path)
        })
        .collect();
    for chunk in names.chunks(10_000).enumerate() {
        let (c, chunk) = chunk;
        let uploads: Vec<NewUpload<'_>> = chunk
            .iter()
            .enumerate()
            .map(|(j, (id, name, path))| NewUpload {
                upload_id: id,
                batch_id: "seed",
                path: Path::new(path),
                file_name: name,
                size: 1_000 + (c * 10_000 + j) as u64,
                content_type: "application/pdf",
                source: sources[(c * 10_000 + j) % 3],
                uploaded_by: None,
            })
            .collect();
        store.insert_all(&uploads).unwrap();
    }
    // Finished, as a real history is (queued rows would be resumed at launch as interrupted
    // uploads of files that do not exist): one statement rather than 100,000 reports.
    drop(store);
    let conn = rusqlite::Connection::open(data_dir.join("history.sqlite")).unwrap();
    conn.execute(
        "UPDATE uploads SET status = 'uploaded', key = 'uploads/2026/' || file_name,
           object_url = 'http://127.0.0.1:1/bucket/uploads/2026/' || file_name, reported_at = updated_at",
        [],
    )
    .unwrap();
    drop(conn);
    let store = Store::open(&data_dir.join("history.sqlite")).unwrap();
    // Some failures among them, as a real history has.
    for i in (0..rows).step_by(50) {
        store.mark_failed(&format!("seed-{i:06}"), "backend_unreachable", "The backend did not answer.").unwrap();
    }
}

async fn attr(client: &Client, css: &str, name: &str) -> Option<String> {
    client.find(Locator::Css(css)).await.ok()?.attr(name).await.ok()?
}

async fn shown_queries(client: &Client) -> anyhow::Result<u64> {
    Ok(attr(client, "[data-testid=history-scroller]", "data-queries-shown")
        .await
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

async fn query_ms(client: &Client) -> anyhow::Result<u64> {
    attr(client, "[data-testid=history-scroller]", "data-query-ms")
        .await
        .and_then(|v| v.parse().ok())
        .context("no figure")
}

async fn reset_history_filters(client: &Client) -> anyhow::Result<()> {
    set_value(client, "[data-testid=history-search]", "zzz-reset").await?;
    select(client, "[data-testid=history-status]", "").await?;
    select(client, "[data-testid=history-source]", "").await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    Ok(())
}

async fn select(client: &Client, css: &str, value: &str) -> anyhow::Result<()> {
    let element = serde_json::to_value(wait_for_element(client, css).await?)?;
    client
        .execute(
            "if (arguments[0].value !== arguments[1]) { arguments[0].value = arguments[1];
             arguments[0].dispatchEvent(new Event('change', { bubbles: true })); }",
            vec![element, value.into()],
        )
        .await?;
    Ok(())
}

async fn set_value(client: &Client, css: &str, value: &str) -> anyhow::Result<()> {
    let element = serde_json::to_value(wait_for_element(client, css).await?)?;
    client
        .execute(
            "arguments[0].value = arguments[1];
             arguments[0].dispatchEvent(new Event('input', { bubbles: true }));",
            vec![element, value.into()],
        )
        .await?;
    Ok(())
}

/// Records every frame's interval from now on; `__frameStats()` summarises them.
const FRAME_MONITOR: &str = r#"
  const gaps = [];
  let last = performance.now();
  const start = performance.now();
  window.__frameStart = start;
  const long = [];
  const tick = (t) => {
    if (t - last > 150) long.push(`${(t - last).toFixed(0)} ms at ${((last - start) / 1000).toFixed(1)} s`);
    gaps.push(t - last); last = t; requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  window.__frameStats = () => {
    const sorted = [...gaps].sort((a, b) => a - b);
    const pick = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))].toFixed(1);
    return `${gaps.length} frames, median ${pick(0.5)} ms, p95 ${pick(0.95)} ms, p99 ${pick(0.99)} ms, ` +
      `max ${sorted[sorted.length - 1].toFixed(1)} ms, ${gaps.filter((g) => g > 50).length} over 50 ms; ` +
      `over 150 ms: ${long.join(', ') || 'none'}`;
  };
"#;

/// Scrolls the queue from top to bottom in 20 steps, one per frame, and reports the slowest.
const SCROLL_THROUGH: &str = r#"
  const scroller = document.querySelector('[data-testid=upload-scroller]');
  return new Promise((resolve) => {
    const times = [];
    let step = 0;
    let last = performance.now();
    const next = (t) => {
      if (step > 0) times.push(t - last);
      last = t;
      if (step === 20) {
        const rows = document.querySelectorAll('[data-testid=upload-item]').length;
        resolve(`slowest frame ${Math.max(...times).toFixed(1)} ms, median ${times.sort((a, b) => a - b)[10].toFixed(1)} ms, ${rows} rows in the page at the end`);
        return;
      }
      scroller.scrollTop = (scroller.scrollHeight - scroller.clientHeight) * (step / 19);
      scroller.dispatchEvent(new Event('scroll'));
      step += 1;
      requestAnimationFrame(next);
    };
    requestAnimationFrame(next);
  });
"#;

/// Scrolls the history towards its end for 120 frames (a page further each time it nears the
/// end of what is loaded) and reports the frames and how far it got.
const SCROLL_HISTORY: &str = r#"
  const scroller = document.querySelector('[data-testid=history-scroller]');
  return new Promise((resolve) => {
    const times = [];
    let step = 0;
    let last = performance.now();
    const next = (t) => {
      if (step > 0) times.push(t - last);
      last = t;
      if (step === 120) {
        const list = document.querySelector('[data-testid=history-list]');
        const rows = document.querySelectorAll('[data-testid=history-item]').length;
        times.sort((a, b) => a - b);
        resolve(`median frame ${times[60].toFixed(1)} ms, p95 ${times[113].toFixed(1)} ms, slowest ${times[times.length - 1].toFixed(1)} ms; ${list.dataset.count} rows loaded, ${rows} in the page`);
        return;
      }
      scroller.scrollTop += 400;
      step += 1;
      requestAnimationFrame(next);
    };
    requestAnimationFrame(next);
  });
"#;
