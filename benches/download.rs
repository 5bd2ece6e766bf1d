//! Download benchmark: one large LFS file (500 MB by default) from the loopback hub + CDN of
//! `tests/hub_server`, uerzoo (one stream, then `--jobs 4`) against `curl -L` on the same
//! server in the same run, plus the overhead of a resumed download (connection cut at half,
//! a second run continues). Prints a table; nothing is asserted.
//!
//! Run: `cargo bench --bench download` (release). `UERZOO_BENCH_MB` sets the size,
//! `UERZOO_BENCH_ROUNDS` the rounds (best round counts for each client).

#[path = "../tests/hub_server/mod.rs"]
mod hub_server;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hub_server::{Faults, HubServer, Served};
use uerzoo::hub::{Cache, DownloadRequest, Hub, HubOptions};
use uerzoo::progress::NoProgress;

const REPO: &str = "uer/bench-model";
const FILE: &str = "pytorch_model.bin";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Pseudo-random content (xorshift64, 8 bytes per step): incompressible, quick to make.
fn content(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for chunk in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    out
}

fn mbps(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / time.as_secs_f64() / 1e6
}

fn main() {
    let size = env_usize("UERZOO_BENCH_MB", 500) * 1_000_000;
    let rounds = env_usize("UERZOO_BENCH_ROUNDS", 3).max(1);
    let server = HubServer::start(
        REPO,
        vec![(FILE, Served::new(Arc::new(content(size)), true))],
    );
    let tmp = tempfile::tempdir().expect("temp dir");
    let resolve = format!("{}/{REPO}/resolve/main/{FILE}", server.endpoint());
    let options = |jobs: usize| HubOptions {
        endpoint: server.endpoint(),
        jobs,
        ..HubOptions::default()
    };
    let request = DownloadRequest::new(REPO, "main", [FILE]);
    let run_uerzoo = |jobs: usize, round: usize| {
        let cache = tmp.path().join(format!("cache-{jobs}-{round}"));
        let start = Instant::now();
        let snap = Hub::new(Cache::new(&cache), options(jobs))
            .download(&request, &NoProgress)
            .expect("uerzoo download");
        let time = start.elapsed();
        assert_eq!(snap.files[0].size, size as u64);
        let _ = std::fs::remove_dir_all(&cache);
        time
    };
    let run_curl = || {
        let out = tmp.path().join("curl.bin");
        let start = Instant::now();
        let status = Command::new("curl")
            .args(["-s", "-f", "-L", "-H", "Accept-Encoding: identity", "-o"])
            .arg(&out)
            .arg(&resolve)
            .status();
        let time = start.elapsed();
        let ok = status.is_ok_and(|s| s.success())
            && std::fs::metadata(&out).is_ok_and(|m| m.len() == size as u64);
        let _ = std::fs::remove_file(&out);
        ok.then_some(time)
    };

    let (mut curl, mut one, mut four) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        curl.extend(run_curl());
        one.push(run_uerzoo(1, round));
        four.push(run_uerzoo(4, round));
    }
    let best = |v: &[Duration]| v.iter().min().copied();
    println!(
        "download benchmark: {} MB over loopback, best of {rounds}",
        size / 1_000_000
    );
    println!("{:<28} {:>10} {:>10}", "client", "seconds", "MB/s");
    let row = |name: &str, t: Option<Duration>| match t {
        Some(t) => println!(
            "{name:<28} {:>10.3} {:>10.1}",
            t.as_secs_f64(),
            mbps(size as u64, t)
        ),
        None => println!("{name:<28} {:>10} {:>10}", "n/a", "n/a"),
    };
    row("curl -L", best(&curl));
    row("uerzoo (1 stream, sha256)", best(&one));
    row("uerzoo --jobs 4 (sha256)", best(&four));
    if let (Some(c), Some(u)) = (best(&curl), best(&one)) {
        println!(
            "uerzoo / curl throughput, single stream: {:.2}x",
            c.as_secs_f64() / u.as_secs_f64()
        );
    }

    // Resume: the first run is cut at half with retries off, the second continues.
    let cache = tmp.path().join("cache-resume");
    server.clear_log();
    server.set_faults(Faults {
        cut_after: Some(size as u64 / 2),
        cut_times: 1,
        ..Faults::default()
    });
    let no_retry = HubOptions {
        retries: 0,
        ..options(1)
    };
    let first = Hub::new(Cache::new(&cache), no_retry).download(&request, &NoProgress);
    assert!(first.is_err(), "the cut run should fail");
    let snap = Hub::new(Cache::new(&cache), options(1))
        .download(&request, &NoProgress)
        .expect("resumed download");
    assert_eq!(snap.files[0].size, size as u64);
    let served = server.content_bytes();
    let extra = served.saturating_sub(size as u64);
    println!(
        "resume: {} bytes served for a {} byte file, {} extra ({:.4}%)",
        served,
        size,
        extra,
        extra as f64 * 100.0 / size as f64
    );
}
