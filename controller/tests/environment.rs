//! The machine misbehaving under a sweep, each with the real `benchctl` binary:
//!
//! - the result directory's disk fills mid-sweep (a small tmpfs): a clear error naming the path,
//!   a non-zero exit, the finished tests intact, and `--resume` completes once there is space;
//! - the wall clock steps (`CLOCK_REALTIME` a day back, mid-sweep, through libfaketime in the
//!   benchctl process only): no test window moves, because windows are taken on
//!   `CLOCK_MONOTONIC`; the results' dates show the step was seen.
//!
//! Mounting needs root (CAP_SYS_ADMIN) and libfaketime Debian's `faketime`; each test skips
//! clearly without, unless `BENCHCTL_REQUIRE_TMPFS=1` / `BENCHCTL_REQUIRE_FAKETIME=1` (set by
//! `.ci/run`) makes that a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::BIN;
use serde_json::Value;
use sim::{SimConfig, SimServer};

const PROMPTS: u64 = 6;
const GRID: [u64; 6] = [1, 2, 3, 4, 5, 6];

async fn slow_sim() -> SimServer {
    SimServer::start(SimConfig {
        port: 0,
        decode_step_base_ms: 4.0,
        decode_step_per_seq_us: 0.0,
        prefill_us_per_token: 1.0,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// `benchctl sweep` over `GRID` into `root` (`extra`: `["--resume", DIR]` continues DIR).
fn sweep(base_url: &str, root: &Path, log: &Path, extra: &[&str]) -> Command {
    let root = root.display().to_string();
    let mut c = Command::new(BIN);
    c.args(["sweep", "--base-url", base_url, "--result-dir", &root])
        .args(["--quiet", "--dashboard-addr", "off"]);
    if extra.is_empty() {
        c.args(["--io", "64x64", "--concurrency", "1,2,3,4,5,6"])
            .args(["--num-prompts", &PROMPTS.to_string()])
            .args(["--warmup-requests", "0"]);
    }
    c.args(extra)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    c
}

fn result_dir(root: &Path) -> Option<PathBuf> {
    std::fs::read_dir(root)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir() && !p.ends_with("lost+found"))
}

/// The result array; it must parse whenever it is read.
fn array(dir: &Path) -> Vec<Value> {
    match std::fs::read(dir.join("benchctl-sim_vllm_result.json")) {
        Ok(b) => serde_json::from_slice(&b).expect("the result array is always valid JSON"),
        Err(_) => Vec::new(),
    }
}

fn concurrencies(a: &[Value]) -> Vec<u64> {
    a.iter()
        .map(|e| e["concurrency"].as_u64().unwrap())
        .collect()
}

async fn wait_for_tests(root: &Path, n: usize, child: &mut Child) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(d) = result_dir(root)
            && array(&d).len() >= n
        {
            return d;
        }
        assert!(child.try_wait().unwrap().is_none(), "benchctl exited early");
        assert!(Instant::now() < deadline, "no {n} finished tests in 60 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn wait_exit(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("benchctl did not exit in {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A tmpfs of a given size mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` where this process cannot mount (not root, in a container without the right).
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "benchctl-test",
            ])
            .arg(dir.path())
            .output();
        let why = match out {
            Ok(o) if o.status.success() => return Some(Tmpfs { dir }),
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => format!("mount: {e}"),
        };
        assert!(
            std::env::var("BENCHCTL_REQUIRE_TMPFS").as_deref() != Ok("1"),
            "BENCHCTL_REQUIRE_TMPFS=1 but a tmpfs cannot be mounted: {why}"
        );
        eprintln!("SKIPPED: a tmpfs cannot be mounted here: {why}");
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(st.success(), "remount {size}");
    }

    /// Writes a file until the filesystem is full.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.path().join("filler")).unwrap();
        let block = vec![0x5a_u8; 64 << 10];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        // the last partial blocks: byte by byte is too slow, halve until nothing fits
        let mut n = 32 << 10;
        while n > 0 {
            if f.write_all(&block[..n]).is_err() {
                n /= 2;
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_mid_sweep_names_the_path_keeps_the_finished_tests_and_resume_completes() {
    let Some(disk) = Tmpfs::mount("16m") else {
        return;
    };
    let sim = slow_sim().await;
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("first.log");
    let mut child = sweep(&sim.base_url(), disk.path(), &log, &[])
        .spawn()
        .unwrap();
    let dir = wait_for_tests(disk.path(), 2, &mut child).await;
    // the disk fills while the third test runs (another process's writes, a log gone wild)
    disk.fill();
    let filled = array(&dir);
    let status = wait_exit(&mut child, 60);
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(
        !status.success(),
        "a sweep that could not write must fail: {stderr}"
    );
    assert!(
        stderr.contains("No space left on device"),
        "the cause is said: {stderr}"
    );
    assert!(
        stderr.contains(&dir.display().to_string()),
        "the error names the path: {stderr}"
    );
    assert!(stderr.contains("--resume"), "and how to go on: {stderr}");
    // the finished tests are intact: the array parses and holds them, with their records
    let kept = array(&dir);
    assert!(kept.len() >= 2 && kept.len() < GRID.len(), "{}", kept.len());
    assert_eq!(&kept[..filled.len()], &filled[..]);
    assert_eq!(concurrencies(&kept), GRID[..kept.len()].to_vec());
    for c in concurrencies(&kept) {
        let records =
            std::fs::read_to_string(dir.join("requests").join(format!("c{c}_in64_out64.jsonl")))
                .unwrap();
        assert_eq!(records.lines().count() as u64, PROMPTS, "c{c}");
    }

    // space again: the sweep resumes where it stopped
    disk.resize("64m");
    let log2 = logs.path().join("resume.log");
    let dir_arg = dir.display().to_string();
    let st = sweep(&sim.base_url(), disk.path(), &log2, &["--resume", &dir_arg])
        .status()
        .unwrap();
    let stderr2 = std::fs::read_to_string(&log2).unwrap();
    assert!(st.success(), "{stderr2}");
    let after = array(&dir);
    assert_eq!(
        concurrencies(&after),
        GRID.to_vec(),
        "every test exactly once"
    );
    assert_eq!(&after[..kept.len()], &kept[..], "finished tests untouched");
    let summary: Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["status"], "done");
    sim.shutdown().await;
}

const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Unix seconds of a result's `date` ("%Y%m%d-%H%M%S", local time; the test runs in UTC).
fn date_s(e: &Value) -> i64 {
    let d = e["date"].as_str().unwrap();
    let t = chrono::NaiveDateTime::parse_from_str(d, "%Y%m%d-%H%M%S").unwrap();
    t.and_utc().timestamp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_step_mid_sweep_moves_no_window() {
    if !Path::new(FAKETIME).exists() {
        assert!(
            std::env::var("BENCHCTL_REQUIRE_FAKETIME").as_deref() != Ok("1"),
            "BENCHCTL_REQUIRE_FAKETIME=1 but {FAKETIME} is missing (Debian package faketime)"
        );
        eprintln!("SKIPPED: {FAKETIME} is missing (apt-get install faketime)");
        return;
    }
    let sim = slow_sim().await;
    let root = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    // the process's CLOCK_REALTIME is the machine's plus the offset in this file, read at every
    // call; CLOCK_MONOTONIC is left alone, as a real step (NTP, an admin's `date -s`) leaves it
    let offset = logs.path().join("faketime");
    std::fs::write(&offset, "+0\n").unwrap();
    let mut child = sweep(
        &sim.base_url(),
        root.path(),
        &logs.path().join("run.log"),
        &[],
    )
    .args(["--gpu-num", "2", "--telemetry-source", "simulated"])
    .args(["--telemetry-interval", "50ms"])
    .env("TZ", "UTC")
    .env("LD_PRELOAD", FAKETIME)
    .env("FAKETIME_TIMESTAMP_FILE", &offset)
    .env("FAKETIME_NO_CACHE", "1")
    .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
    .spawn()
    .unwrap();
    let dir = wait_for_tests(root.path(), 2, &mut child).await;
    // a day back while the third test runs
    std::fs::write(&offset, "-1d\n").unwrap();
    let status = wait_exit(&mut child, 60);
    let stderr = std::fs::read_to_string(logs.path().join("run.log")).unwrap();
    assert!(status.success(), "{stderr}");
    let a = array(&dir);
    assert_eq!(concurrencies(&a), GRID.to_vec());
    // the step happened, as benchctl saw it: the later tests' dates are a day earlier
    let (first, last) = (date_s(&a[0]), date_s(&a[GRID.len() - 1]));
    assert!(
        (first - last - 86_400).abs() < 120,
        "dates {} then {}: the wall clock stepped a day back in the benchctl process",
        a[0]["date"],
        a[GRID.len() - 1]["date"]
    );
    // and no window moved: every test's duration is its real length (seconds, not a day), its
    // GPU window is covered by the telemetry sampled during it, its raw.log spans the test only
    for e in &a {
        let c = e["concurrency"].as_u64().unwrap();
        let duration = e["duration"].as_f64().unwrap();
        assert!(
            duration > 0.05 && duration < 30.0,
            "c{c}: duration {duration} s"
        );
        let coverage = e["gpu_telemetry_coverage"].as_f64().unwrap();
        assert!(coverage > 0.9, "c{c}: GPU telemetry coverage {coverage}");
        let samples = e["gpu_telemetry"][0]["gpus"][0]["samples"]
            .as_u64()
            .unwrap();
        assert!(
            samples >= 1 && (samples as f64) < duration / 0.05 + 10.0,
            "c{c}: {samples} samples in a {duration} s window"
        );
        let raw =
            std::fs::read_to_string(dir.join(format!("gpu_utilization_c{c}_in64_out64/raw.log")))
                .unwrap();
        for line in raw.lines().filter(|l| !l.starts_with('#')) {
            let t: f64 = line.split('\t').next().unwrap().parse().unwrap();
            assert!(
                (0.0..=duration + 0.2).contains(&t),
                "c{c}: raw.log time {t} s outside the test's {duration} s"
            );
        }
    }
    sim.shutdown().await;
}
