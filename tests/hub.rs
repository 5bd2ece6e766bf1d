//! The hub against a real HTTP server on loopback (hub on 127.0.0.1, CDN on 127.0.0.2):
//! plain download, resume after a cut, 200-to-Range, corruption, cache reuse, offline,
//! concurrency, mirrors with a trailing slash, import + verify. Every test runs under a
//! timeout and every server loop is bounded.

mod common;
mod hub_server;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use hub_server::{COMMIT, Faults, HubServer, Served};
use uerzoo::hub::{
    Cache, CheckStatus, DownloadRequest, Hub, HubError, HubOptions, import_file, local_repo_id,
    sha256_file, verify_repo,
};
use uerzoo::progress::NoProgress;

const REPO: &str = "uer/test-model";
/// Size of the LFS weight file: big enough to cut in the middle, small enough to be quick.
const WEIGHT_SIZE: usize = 3_000_000;
/// Upper bound for any single test.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `f` on a thread and fails the test if it takes longer than [`TEST_TIMEOUT`].
fn with_timeout<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(TEST_TIMEOUT) {
        Ok(v) => v,
        // The closure panicked (its sender is gone): re-raise its panic.
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => unreachable!("the closure sent nothing yet returned"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("test exceeded {TEST_TIMEOUT:?}"),
    }
}

/// Deterministic pseudo-random bytes (xorshift64).
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

struct Fixture {
    server: HubServer,
    weight: Arc<Vec<u8>>,
    config: Arc<Vec<u8>>,
    dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    fixture_sized(WEIGHT_SIZE)
}

fn fixture_sized(size: usize) -> Fixture {
    let weight = Arc::new(bytes(size, 7));
    let config = Arc::new(br#"{"model_type": "bert", "hidden_size": 128}"#.to_vec());
    let server = HubServer::start(
        REPO,
        vec![
            ("pytorch_model.bin", Served::new(weight.clone(), true)),
            ("config.json", Served::new(config.clone(), false)),
        ],
    );
    Fixture {
        server,
        weight,
        config,
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Fixture {
    fn options(&self) -> HubOptions {
        HubOptions {
            endpoint: self.server.endpoint(),
            backoff: Duration::from_millis(10),
            retries: 3,
            lock_timeout: Duration::from_secs(30),
            ..HubOptions::default()
        }
    }
    fn cache(&self) -> Cache {
        Cache::new(self.dir.path())
    }
    fn hub(&self) -> Hub {
        Hub::new(self.cache(), self.options())
    }
    fn request(&self) -> DownloadRequest {
        DownloadRequest::new(REPO, "main", ["config.json", "pytorch_model.bin"])
    }
    /// The weight file alone.
    fn weight_request(&self) -> DownloadRequest {
        DownloadRequest::new(REPO, "main", ["pytorch_model.bin"])
    }
    /// The server cuts the next content response after `bytes` bytes, once.
    fn cut_once(&self, bytes: u64) {
        self.server.set_faults(Faults {
            cut_after: Some(bytes),
            cut_times: 1,
            ..Faults::default()
        });
    }
    /// `dir` (a snapshot) holds the served weight, byte for byte.
    fn assert_weight_in(&self, dir: &Path) {
        assert_eq!(read(&dir.join("pytorch_model.bin")), *self.weight);
    }
    fn weight_sha256(&self) -> String {
        hub_server::Served::new(self.weight.clone(), true).etag()
    }
    fn repo_folder(&self) -> std::path::PathBuf {
        self.dir.path().join("models--uer--test-model")
    }
}

/// `uerzoo download REPO --file config.json --file pytorch_model.bin`, options to add.
fn download_both() -> Command {
    let mut cmd = Command::new(common::uerzoo_bin());
    cmd.args([
        "download",
        REPO,
        "--file",
        "config.json",
        "--file",
        "pytorch_model.bin",
    ]);
    cmd
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn plain_download_fills_the_hf_cache_layout() {
    with_timeout(|| {
        let fx = fixture();
        let snap = fx.hub().download(&fx.request(), &NoProgress).unwrap();
        let folder = fx.repo_folder();
        assert_eq!(snap.commit, COMMIT);
        assert_eq!(snap.dir, folder.join("snapshots").join(COMMIT));
        assert_eq!(
            std::fs::read_to_string(folder.join("refs/main")).unwrap(),
            COMMIT
        );
        let sha = fx.weight_sha256();
        // Relative symlinks into blobs/<etag>.
        let link = std::fs::read_link(snap.dir.join("pytorch_model.bin")).unwrap();
        assert_eq!(link, Path::new("../../blobs").join(&sha));
        fx.assert_weight_in(&snap.dir);
        assert_eq!(read(&snap.dir.join("config.json")), *fx.config);
        assert_eq!(read(&folder.join("blobs").join(&sha)), *fx.weight);
        // The small file's blob is named by its git sha1.
        let config_etag = Served::new(fx.config.clone(), false).etag();
        assert_eq!(config_etag.len(), 40);
        assert!(folder.join("blobs").join(&config_etag).is_file());
        assert!(
            fx.dir
                .path()
                .join(".locks/models--uer--test-model")
                .join(format!("{sha}.lock"))
                .exists()
        );
        let tag = std::fs::read_to_string(fx.dir.path().join("CACHEDIR.TAG")).unwrap();
        assert!(tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55\n"));
        // Nothing partial is left behind.
        let leftovers: Vec<_> = std::fs::read_dir(folder.join("blobs"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("incomplete"))
            .collect();
        assert!(leftovers.is_empty());
        // The protocol: HEAD on /resolve (identity encoding), GET on the CDN.
        let log = fx.server.log();
        assert!(
            log.iter()
                .any(|l| l.host == "hub" && l.method == "HEAD" && l.status == 302)
        );
        let cdn: Vec<_> = log
            .iter()
            .filter(|l| l.host == "cdn" && l.method == "GET")
            .collect();
        assert_eq!(cdn.len(), 1);
        assert_eq!(cdn[0].body_bytes, WEIGHT_SIZE as u64);
        assert_eq!(snap.files[1].fetched, WEIGHT_SIZE as u64);
        // `verify` re-hashes both kinds of blob (sha256 and git sha1) as OK.
        let checks = verify_repo(&fx.cache(), REPO, &["config.json".into()], &NoProgress);
        assert_eq!(checks.len(), 2);
        assert!(
            checks.iter().all(|c| c.status == CheckStatus::Ok),
            "{checks:?}"
        );
        let checks = verify_repo(&fx.cache(), REPO, &["vocab.txt".into()], &NoProgress);
        assert_eq!(checks.last().unwrap().status, CheckStatus::Missing);
    })
}

#[test]
fn cut_connection_resumes_within_the_run_fetching_only_missing_bytes() {
    with_timeout(|| {
        let fx = fixture();
        fx.cut_once(1_000_000);
        let request = fx.weight_request();
        let snap = fx.hub().download(&request, &NoProgress).unwrap();
        fx.assert_weight_in(&snap.dir);
        let gets = fx.server.content_requests();
        assert_eq!(gets.len(), 2, "{gets:?}");
        assert_eq!(gets[0].body_bytes, 1_000_000);
        assert_eq!(gets[1].range.as_deref(), Some("bytes=1000000-"));
        assert_eq!(fx.server.content_bytes(), WEIGHT_SIZE as u64);
    })
}

#[test]
fn interrupted_run_leaves_a_partial_that_the_next_run_continues() {
    with_timeout(|| {
        let fx = fixture();
        fx.cut_once(1_200_000);
        let request = fx.weight_request();
        let hub = Hub::new(
            fx.cache(),
            HubOptions {
                retries: 0,
                ..fx.options()
            },
        );
        let err = hub.download(&request, &NoProgress).unwrap_err();
        assert!(
            matches!(err, HubError::Status { .. } | HubError::Http { .. }),
            "{err}"
        );
        let sha = fx.weight_sha256();
        let partial = fx
            .repo_folder()
            .join("blobs")
            .join(format!("{sha}.incomplete"));
        assert_eq!(std::fs::metadata(&partial).unwrap().len(), 1_200_000);
        assert!(
            !fx.repo_folder()
                .join("snapshots")
                .join(COMMIT)
                .join("pytorch_model.bin")
                .exists()
        );
        // Next run: only the missing bytes.
        fx.server.clear_log();
        let snap = fx.hub().download(&request, &NoProgress).unwrap();
        fx.assert_weight_in(&snap.dir);
        let gets = fx.server.content_requests();
        assert_eq!(gets.len(), 1);
        assert_eq!(gets[0].range.as_deref(), Some("bytes=1200000-"));
        assert_eq!(gets[0].status, 206);
        assert_eq!(fx.server.content_bytes(), (WEIGHT_SIZE - 1_200_000) as u64);
        assert_eq!(snap.files[0].fetched, (WEIGHT_SIZE - 1_200_000) as u64);
        assert!(!partial.exists());
    })
}

#[test]
fn a_200_answer_to_a_range_request_restarts_the_file() {
    with_timeout(|| {
        let fx = fixture();
        let sha = fx.weight_sha256();
        let blobs = fx.repo_folder().join("blobs");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(
            blobs.join(format!("{sha}.incomplete")),
            &fx.weight[..500_000],
        )
        .unwrap();
        fx.server.set_faults(Faults {
            ignore_range: true,
            ..Faults::default()
        });
        let request = fx.weight_request();
        let snap = fx.hub().download(&request, &NoProgress).unwrap();
        // Not appended: exactly the file.
        fx.assert_weight_in(&snap.dir);
        let gets = fx.server.content_requests();
        assert_eq!(gets.len(), 1);
        assert_eq!(gets[0].range.as_deref(), Some("bytes=500000-"));
        assert_eq!(gets[0].status, 200);
    })
}

#[test]
fn corrupted_bytes_fail_and_nothing_reaches_the_snapshot() {
    with_timeout(|| {
        let fx = fixture();
        fx.server.set_faults(Faults {
            corrupt: true,
            ..Faults::default()
        });
        let request = fx.weight_request();
        let err = fx.hub().download(&request, &NoProgress).unwrap_err();
        let HubError::HashMismatch { kind, expected, .. } = &err else {
            panic!("expected a hash mismatch, got {err}")
        };
        assert_eq!(*kind, "sha256");
        assert_eq!(*expected, fx.weight_sha256());
        let folder = fx.repo_folder();
        assert!(
            !folder
                .join("snapshots")
                .join(COMMIT)
                .join("pytorch_model.bin")
                .exists()
        );
        let blobs: Vec<_> = std::fs::read_dir(folder.join("blobs"))
            .unwrap()
            .filter_map(|e| e.ok())
            .collect();
        assert!(blobs.is_empty(), "partial not deleted: {blobs:?}");
        // The CLI exits non-zero with the reason.
        let out = Command::new(common::uerzoo_bin())
            .args(["download", REPO, "--file", "pytorch_model.bin"])
            .args(["--endpoint", &fx.server.endpoint(), "--cache-dir"])
            .arg(fx.dir.path())
            .env_remove("HF_HUB_OFFLINE")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("sha256 mismatch"), "{stderr}");
        assert!(
            !folder
                .join("snapshots")
                .join(COMMIT)
                .join("pytorch_model.bin")
                .exists()
        );
    })
}

#[test]
fn a_cdn_answering_500_is_reported_as_the_status_it_sent() {
    with_timeout(|| {
        let fx = fixture();
        fx.server.set_faults(Faults {
            cdn_status: Some(500),
            ..Faults::default()
        });
        /// Keeps what the download tells the user while it waits.
        #[derive(Default)]
        struct Notes(std::sync::Mutex<Vec<String>>);
        impl uerzoo::progress::Progress for Notes {
            fn note(&self, message: &str) {
                self.0.lock().unwrap().push(message.to_string());
            }
        }
        let notes = Notes::default();
        let err = fx.hub().download(&fx.weight_request(), &notes).unwrap_err();
        let HubError::Status { status, hint, .. } = &err else {
            panic!("expected a status error, got {err}")
        };
        assert_eq!(*status, 500, "{err}");
        // Every retry was told, with the status and the attempt (retries: 3 → 4 attempts).
        let notes = notes.0.into_inner().unwrap();
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(
            notes[0].contains("answered 500") && notes[0].contains("attempt 1 of 4"),
            "{notes:?}"
        );
        assert!(hint.contains("server is failing"), "{err}");
        assert!(!err.to_string().contains("closing early"), "{err}");
    });
}

#[test]
fn corrupted_small_git_file_fails_its_sha1() {
    with_timeout(|| {
        let fx = fixture();
        fx.server.set_faults(Faults {
            corrupt: true,
            ..Faults::default()
        });
        let request = DownloadRequest::new(REPO, "main", ["config.json"]);
        let err = fx.hub().download(&request, &NoProgress).unwrap_err();
        assert!(
            matches!(
                &err,
                HubError::HashMismatch {
                    kind: "git sha1",
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            !fx.repo_folder()
                .join("snapshots")
                .join(COMMIT)
                .join("config.json")
                .exists()
        );
    })
}

#[test]
fn second_run_makes_no_content_request() {
    with_timeout(|| {
        let fx = fixture();
        let first = fx.hub().download(&fx.request(), &NoProgress).unwrap();
        fx.server.clear_log();
        let second = fx.hub().download(&fx.request(), &NoProgress).unwrap();
        assert_eq!(first.dir, second.dir);
        assert!(
            fx.server.content_requests().is_empty(),
            "{:?}",
            fx.server.log()
        );
        assert!(second.files.iter().all(|f| f.cached && f.fetched == 0));
    })
}

#[test]
fn a_corrupt_cached_blob_is_fetched_again() {
    with_timeout(|| {
        let fx = fixture();
        fx.hub()
            .download(&fx.weight_request(), &NoProgress)
            .unwrap();
        let blob = fx.repo_folder().join("blobs").join(fx.weight_sha256());
        let mut content = read(&blob);
        content[1234] ^= 0x40;
        std::fs::write(&blob, content).unwrap();
        fx.server.clear_log();
        let again = fx
            .hub()
            .download(&fx.weight_request(), &NoProgress)
            .unwrap();
        assert!(
            !fx.server.content_requests().is_empty(),
            "the corrupt blob was taken as cached: {:?}",
            fx.server.log()
        );
        assert!(again.files.iter().all(|f| !f.cached), "{:?}", again.files);
        fx.assert_weight_in(&again.dir);
    })
}

#[test]
fn offline_succeeds_from_a_complete_cache() {
    with_timeout(|| {
        let fx = fixture();
        let online = fx.hub().download(&fx.request(), &NoProgress).unwrap();
        fx.server.clear_log();
        let hub = Hub::new(
            fx.cache(),
            HubOptions {
                offline: true,
                ..fx.options()
            },
        );
        let offline = hub.download(&fx.request(), &NoProgress).unwrap();
        assert_eq!(online.dir, offline.dir);
        assert!(fx.server.log().is_empty(), "offline touched the network");
        // Same through the CLI with HF_HUB_OFFLINE=1 and HF_HUB_CACHE: last line = snapshot.
        let out = common::run_ok(
            download_both()
                .env("HF_HUB_OFFLINE", "1")
                .env("HF_HUB_CACHE", fx.dir.path())
                .env("HF_ENDPOINT", "http://127.0.0.1:9"),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout.lines().last().unwrap(),
            online.dir.display().to_string()
        );
        assert!(fx.server.log().is_empty());
    })
}

#[test]
fn offline_names_the_missing_file() {
    with_timeout(|| {
        let fx = fixture();
        let offline = |request: &DownloadRequest| {
            Hub::new(
                fx.cache(),
                HubOptions {
                    offline: true,
                    ..fx.options()
                },
            )
            .download(request, &NoProgress)
            .unwrap_err()
        };
        // Empty cache: no revision.
        let err = offline(&fx.request());
        assert!(matches!(err, HubError::OfflineNoRevision { .. }), "{err}");
        // Cache with config.json only: the weight is named.
        fx.hub()
            .download(
                &DownloadRequest::new(REPO, "main", ["config.json"]),
                &NoProgress,
            )
            .unwrap();
        let err = offline(&fx.request());
        let HubError::OfflineMissing { file, path, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(file, "pytorch_model.bin");
        assert!(path.ends_with(format!("snapshots/{COMMIT}/pytorch_model.bin")));
        assert!(err.to_string().contains("pytorch_model.bin"));
        // The CLI says so too and exits non-zero.
        let out = download_both()
            .args(["--offline", "--cache-dir"])
            .arg(fx.dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("`pytorch_model.bin`") && stderr.contains("not cached"),
            "{stderr}"
        );
        assert!(
            fx.server.content_requests().len() == 1,
            "only the online config fetch"
        );
    })
}

#[test]
fn concurrent_downloads_of_one_file_fetch_it_once() {
    with_timeout(|| {
        let fx = fixture_sized(2_000_000);
        // ~31 chunks × 10 ms: long enough for both runs to overlap.
        fx.server.set_faults(Faults {
            slow: Some(Duration::from_millis(10)),
            ..Faults::default()
        });
        let request = fx.weight_request();
        let hubs = [fx.hub(), fx.hub()];
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = hubs
                .iter()
                .map(|hub| s.spawn(|| hub.download(&request, &NoProgress)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let snaps: Vec<_> = results.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(snaps[0].dir, snaps[1].dir);
        assert_eq!(read(&snaps[0].dir.join("pytorch_model.bin")), *fx.weight);
        let cdn_gets = fx.server.content_requests();
        assert_eq!(cdn_gets.len(), 1, "{cdn_gets:?}");
        let fetched: u64 = snaps.iter().map(|s| s.files[0].fetched).sum();
        assert_eq!(fetched, 2_000_000);
        // Neither found the blob when it started: the second one waited on the lock.
        assert!(snaps.iter().all(|s| !s.files[0].cached));
    })
}

#[test]
fn mirror_endpoint_with_a_trailing_slash() {
    with_timeout(|| {
        let fx = fixture();
        let out = common::run_ok(
            download_both()
                .env("HF_ENDPOINT", format!("{}/", fx.server.endpoint()))
                .env("HF_HUB_CACHE", fx.dir.path())
                .env_remove("HF_HUB_OFFLINE"),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout.lines().last().unwrap();
        assert_eq!(
            Path::new(last),
            fx.repo_folder().join("snapshots").join(COMMIT)
        );
        for l in fx.server.log().iter().filter(|l| l.host == "hub") {
            assert!(l.path.starts_with("/uer/test-model/resolve/"), "{}", l.path);
            assert!(!l.path.contains("//"), "{}", l.path);
        }
        assert_eq!(read(&Path::new(last).join("pytorch_model.bin")), *fx.weight);
    })
}

#[test]
fn import_then_verify_detects_a_flipped_byte() {
    with_timeout(|| {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache"));
        let source = dir.path().join("google_zh_model.bin");
        std::fs::write(&source, bytes(100_000, 3)).unwrap();
        let sha = sha256_file(&source).unwrap();
        let repo = local_repo_id("google_zh_bert");
        let imported = import_file(&cache, &repo, "google_zh_model.bin", &source, None).unwrap();
        assert_eq!(imported.sha256, sha);
        assert_eq!(read(&imported.pointer), read(&source));
        let checks = verify_repo(&cache, &repo, &[], &NoProgress);
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].status, CheckStatus::Ok);
        // A refused import: wrong expected sha256.
        let err = import_file(&cache, &repo, "x.bin", &source, Some(&"0".repeat(64))).unwrap_err();
        assert!(matches!(err, HubError::HashMismatch { .. }));
        // Flip one byte of the blob.
        let mut content = read(&imported.blob);
        content[50_000] ^= 0x80;
        std::fs::write(&imported.blob, content).unwrap();
        let checks = verify_repo(&cache, &repo, &[], &NoProgress);
        let CheckStatus::Corrupt { expected, actual } = &checks[0].status else {
            panic!("{:?}", checks[0])
        };
        assert_eq!(*expected, sha);
        assert_ne!(*actual, sha);
        // The CLI: import + verify exit codes.
        let cache2 = dir.path().join("cache2");
        let run = |args: &[&str]| {
            Command::new(common::uerzoo_bin())
                .args(args)
                .arg("--cache-dir")
                .arg(&cache2)
                .output()
                .unwrap()
        };
        let out = run(&["download", "google_zh_bert_base"]);
        assert!(
            !out.status.success(),
            "a legacy weight cannot be downloaded"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("uerzoo import google_zh_bert_base"),
            "{stderr}"
        );
        let out = run(&[
            "import",
            "google_zh_bert_base",
            source.to_str().unwrap(),
            "--skip-check",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(&sha), "{stdout}");
        let pointer = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .to_string();
        assert_eq!(read(Path::new(&pointer)), read(&source));
        // `download` of the legacy name now finds the import.
        let out = run(&["download", "google_zh_bert_base", "--offline"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = run(&["verify", "google_zh_bert_base"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
        let blob = cache2
            .join("models--uerzoo--google_zh_bert_base/blobs")
            .join(&sha);
        let mut content = read(&blob);
        content[7] ^= 1;
        std::fs::write(&blob, content).unwrap();
        let out = run(&["verify", "google_zh_bert_base"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("CORRUPT"));
        // A deleted blob is MISSING.
        std::fs::remove_file(&blob).unwrap();
        let out = run(&["verify"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("MISSING"));
    })
}

#[test]
fn parallel_ranges_download_and_resume() {
    with_timeout(|| {
        let fx = fixture();
        let options = HubOptions {
            jobs: 4,
            parallel_min_size: 1,
            retries: 0,
            ..fx.options()
        };
        // First run: one of the four ranges is cut and retries are off → the run fails.
        fx.cut_once(100_000);
        let request = fx.weight_request();
        let err = Hub::new(fx.cache(), options.clone())
            .download(&request, &NoProgress)
            .unwrap_err();
        assert!(
            matches!(err, HubError::Status { .. } | HubError::Http { .. }),
            "{err}"
        );
        let first_bytes = fx.server.content_bytes();
        // Second run continues each range where it stopped.
        fx.server.clear_log();
        let snap = Hub::new(fx.cache(), options)
            .download(&request, &NoProgress)
            .unwrap();
        fx.assert_weight_in(&snap.dir);
        let total = first_bytes + fx.server.content_bytes();
        assert_eq!(total, WEIGHT_SIZE as u64, "no byte fetched twice");
        assert!(fx.server.content_requests().iter().all(|l| l.status == 206));
    })
}

#[test]
fn missing_file_is_a_clear_404() {
    with_timeout(|| {
        let fx = fixture();
        let request = DownloadRequest::new(REPO, "main", ["tf_model.h5"]);
        let err = fx.hub().download(&request, &NoProgress).unwrap_err();
        let HubError::Status { status, code, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(*status, 404);
        assert_eq!(code.as_deref(), Some("EntryNotFound"));
        assert!(err.to_string().contains("does not exist at this revision"));
    })
}

#[test]
fn token_goes_to_the_hub_never_to_the_cdn() {
    with_timeout(|| {
        let fx = fixture();
        let hub = Hub::new(
            fx.cache(),
            HubOptions {
                token: Some("hf_secret".into()),
                ..fx.options()
            },
        );
        hub.download(&fx.request(), &NoProgress).unwrap();
        for l in fx.server.log() {
            let expected = (l.host == "hub").then_some("Bearer hf_secret");
            assert_eq!(l.authorization.as_deref(), expected, "{l:?}");
        }
    })
}

#[test]
fn registry_hash_disagreeing_with_the_hub_is_refused() {
    with_timeout(|| {
        let fx = fixture();
        let mut request = DownloadRequest::new(REPO, "main", ["pytorch_model.bin"]);
        request.files[0].sha256 = Some("ab".repeat(32));
        let err = fx.hub().download(&request, &NoProgress).unwrap_err();
        assert!(matches!(err, HubError::RegistryMismatch { .. }), "{err}");
        assert!(fx.server.content_requests().is_empty());
    })
}

#[test]
fn download_name_resolves_through_the_registry() {
    with_timeout(|| {
        use uerzoo::registry::Registry;
        let registry = Registry::builtin();
        let hf_of = |want_sha: bool| {
            registry
                .entries()
                .iter()
                .find(|e| {
                    e.sources
                        .hf
                        .as_ref()
                        .is_some_and(|h| h.sha256.is_some() == want_sha)
                })
                .expect("a registry entry with a Huggingface source")
        };
        let dir = tempfile::tempdir().unwrap();
        for (entry, pinned) in [(hf_of(false), false), (hf_of(true), true)] {
            let hf = entry.sources.hf.as_ref().unwrap();
            let files: Vec<(&str, Served)> = hf
                .files
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let lfs = *f == hf.weights;
                    (
                        f.as_str(),
                        Served::new(Arc::new(bytes(10_000 + i, i as u64 + 1)), lfs),
                    )
                })
                .collect();
            let server = HubServer::start(&hf.repo, files);
            let out = Command::new(common::uerzoo_bin())
                .args(["download", &entry.name, "--endpoint", &server.endpoint()])
                .arg("--cache-dir")
                .arg(dir.path())
                .output()
                .unwrap();
            let folder = dir
                .path()
                .join(format!("models--{}", hf.repo.replace('/', "--")));
            if pinned {
                // The stand-in weights cannot match the registry's confirmed sha256.
                assert!(
                    !out.status.success(),
                    "{}: accepted fake weights",
                    entry.name
                );
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(stderr.contains("registry expects"), "{stderr}");
                assert!(
                    server.content_requests().is_empty(),
                    "refused before downloading"
                );
                continue;
            }
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            let snapshot = folder.join("snapshots").join(COMMIT);
            assert_eq!(Path::new(stdout.lines().last().unwrap()), snapshot);
            for f in &hf.files {
                assert!(snapshot.join(f).is_file(), "{} missing", f);
            }
        }
    })
}

#[test]
fn format_uer_converts_the_snapshot_beside_it() {
    with_timeout(|| {
        use uerzoo::checkpoint::Checkpoint;
        let fixture = common::uer_fixture("roberta_v2");
        let hf = fixture.join("hf_by_uer_script");
        let server = HubServer::start(
            REPO,
            vec![
                (
                    "config.json",
                    Served::new(Arc::new(read(&hf.join("config.json"))), false),
                ),
                (
                    "pytorch_model.bin",
                    Served::new(Arc::new(read(&hf.join("pytorch_model.bin"))), true),
                ),
                (
                    "vocab.txt",
                    Served::new(Arc::new(read(&fixture.join("vocab.txt"))), false),
                ),
            ],
        );
        let dir = tempfile::tempdir().unwrap();
        let out = common::run_ok(
            Command::new(common::uerzoo_bin())
                .args([
                    "download",
                    REPO,
                    "--format",
                    "uer",
                    "--uer-naming",
                    "v2",
                    "--endpoint",
                    &server.endpoint(),
                ])
                .args([
                    "--file",
                    "config.json",
                    "--file",
                    "pytorch_model.bin",
                    "--file",
                    "vocab.txt",
                ])
                .arg("--cache-dir")
                .arg(dir.path()),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let folder = dir.path().join("models--uer--test-model");
        assert_eq!(
            Path::new(stdout.lines().last().unwrap()),
            folder.join("snapshots").join(COMMIT)
        );
        let converted = folder.join("uer").join(COMMIT).join("uer_model.bin");
        assert!(
            stdout.contains(&converted.display().to_string()),
            "{stdout}"
        );
        // Bit for bit UER-py's own UER file (naming v2), except the segment embedding's
        // padding row 0, which HF does not keep and comes back as zeros.
        let ours = Checkpoint::open(&converted).unwrap();
        let reference = Checkpoint::open(fixture.join("uer_model.bin")).unwrap();
        assert_eq!(ours.tensors.len(), reference.tensors.len());
        for (name, tensor) in &reference.tensors {
            let mine = ours.get(name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(mine.shape, tensor.shape, "{name}");
            let skip = if name.contains("seg") {
                let row = tensor.bytes().len() / tensor.shape[0];
                assert!(mine.bytes()[..row].iter().all(|&b| b == 0), "{name} row 0");
                row
            } else {
                0
            };
            assert!(
                mine.bytes()[skip..] == tensor.bytes()[skip..],
                "{name} differs"
            );
        }
    })
}

#[test]
fn format_uer_writes_config_and_vocabulary_so_fill_mask_opens_the_bin_alone() {
    with_timeout(|| {
        // The RoBERTa fixture (L=2, H=128) served as the Tiny miniature.
        let fixture = common::uer_fixture("roberta_v1");
        let hf = fixture.join("hf_by_uer_script");
        let git = |path: &Path| Served::new(Arc::new(read(path)), false);
        let server = HubServer::start(
            "uer/chinese_roberta_L-2_H-128",
            vec![
                (
                    "pytorch_model.bin",
                    Served::new(Arc::new(read(&hf.join("pytorch_model.bin"))), true),
                ),
                ("config.json", git(&hf.join("config.json"))),
                ("vocab.txt", git(&fixture.join("vocab.txt"))),
                (
                    "tokenizer_config.json",
                    Served::new(Arc::new(b"{}".to_vec()), false),
                ),
                (
                    "special_tokens_map.json",
                    Served::new(Arc::new(b"{}".to_vec()), false),
                ),
            ],
        );
        let dir = tempfile::tempdir().unwrap();
        let out = common::run_ok(
            Command::new(common::uerzoo_bin())
                .args(["download", "tiny", "--format", "uer", "--endpoint"])
                .arg(server.endpoint())
                .arg("--cache-dir")
                .arg(dir.path()),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let bin = stdout
            .lines()
            .find_map(|l| l.strip_prefix("uer     "))
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| panic!("no `uer` line in:\n{stdout}"));
        let beside = bin.parent().unwrap();
        assert_eq!(
            read(&beside.join("vocab.txt")),
            read(&fixture.join("vocab.txt"))
        );
        let config: serde_json::Value =
            serde_json::from_slice(&read(&beside.join("uer_config.json"))).unwrap();
        assert_eq!(config["hidden_size"], 128, "{config}");
        assert_eq!(config["layers_num"], 2, "{config}");
        // The `.bin` alone, and the snapshot it came from, fill the mask alike.
        let fill = |model: &Path| {
            let out = common::run_ok(
                Command::new(common::uerzoo_bin())
                    .arg("fill-mask")
                    .arg(model)
                    .args(["北京是[MASK]国的首都。", "--top-k", "3", "--json"]),
            );
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            json
        };
        let snapshot = Path::new(stdout.lines().last().unwrap());
        let (ours, theirs) = (fill(&bin), fill(snapshot));
        let tokens = |v: &serde_json::Value| {
            let text = v.to_string();
            let mut found = Vec::new();
            for part in text.split("\"token\":\"").skip(1) {
                found.push(part.split('"').next().unwrap().to_string());
            }
            found
        };
        assert!(!tokens(&ours).is_empty(), "{ours}");
        assert_eq!(tokens(&ours), tokens(&theirs), "{ours}\n{theirs}");
    })
}

#[test]
fn environment_variables_pick_cache_endpoint_offline_and_token() {
    use std::ffi::OsString;
    use uerzoo::hub::default_root;
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    };
    // HF_HUB_CACHE beats HF_HOME, which beats XDG_CACHE_HOME and HOME.
    let all = env(&[
        ("HF_HUB_CACHE", "/c"),
        ("HF_HOME", "/h"),
        ("XDG_CACHE_HOME", "/x"),
        ("HOME", "/home/u"),
    ]);
    assert_eq!(default_root(&all), Path::new("/c"));
    let home = env(&[("HF_HOME", "/h"), ("HOME", "/home/u")]);
    assert_eq!(default_root(&home), Path::new("/h/hub"));
    let xdg = env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/home/u")]);
    assert_eq!(default_root(&xdg), Path::new("/x/huggingface/hub"));
    let plain = env(&[("HOME", "/home/u")]);
    assert_eq!(
        default_root(&plain),
        Path::new("/home/u/.cache/huggingface/hub")
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "hf_from_file\n").unwrap();
    let hf_home = dir.path().to_string_lossy().into_owned();
    let lookup = |pairs: Vec<(&'static str, String)>| {
        move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    };
    let options = HubOptions::from_lookup(&lookup(vec![
        ("HF_ENDPOINT", "https://hf-mirror.com/".into()),
        ("HF_HUB_OFFLINE", "1".into()),
        ("HF_HOME", hf_home.clone()),
    ]));
    assert_eq!(options.endpoint, "https://hf-mirror.com/");
    assert!(options.offline);
    assert_eq!(options.token.as_deref(), Some("hf_from_file"));
    let options = HubOptions::from_lookup(&lookup(vec![
        ("HF_TOKEN", "hf_env".into()),
        ("HF_HUB_OFFLINE", "0".into()),
        ("HF_HOME", hf_home),
    ]));
    assert_eq!(options.token.as_deref(), Some("hf_env"));
    assert!(!options.offline);
    assert_eq!(options.endpoint, uerzoo::hub::DEFAULT_ENDPOINT);
}

#[test]
fn parallel_ranges_fall_back_to_one_stream_when_range_is_ignored() {
    with_timeout(|| {
        let fx = fixture();
        fx.server.set_faults(Faults {
            ignore_range: true,
            ..Faults::default()
        });
        let options = HubOptions {
            jobs: 4,
            parallel_min_size: 1,
            ..fx.options()
        };
        let request = fx.weight_request();
        let snap = Hub::new(fx.cache(), options)
            .download(&request, &NoProgress)
            .unwrap();
        fx.assert_weight_in(&snap.dir);
        let last = fx.server.content_requests().into_iter().last().unwrap();
        assert_eq!((last.range, last.status), (None, 200));
    })
}

#[test]
fn unreachable_hub_falls_back_to_a_cached_file() {
    with_timeout(|| {
        let fx = fixture();
        let online = fx.hub().download(&fx.request(), &NoProgress).unwrap();
        // Nothing listens on the discard port: connection refused, no retries.
        let hub = Hub::new(
            fx.cache(),
            HubOptions {
                endpoint: "http://127.0.0.1:9".into(),
                retries: 0,
                ..fx.options()
            },
        );
        let again = hub.download(&fx.request(), &NoProgress).unwrap();
        assert_eq!(online.dir, again.dir);
        // A file that is not cached still fails, naming the request.
        let err = hub
            .download(
                &DownloadRequest::new(REPO, "main", ["tf_model.h5"]),
                &NoProgress,
            )
            .unwrap_err();
        assert!(matches!(err, HubError::Http { .. }), "{err}");
    })
}

#[test]
fn two_processes_downloading_one_file_share_it() {
    with_timeout(|| {
        let fx = fixture_sized(2_000_000);
        fx.server.set_faults(Faults {
            slow: Some(Duration::from_millis(10)),
            ..Faults::default()
        });
        let spawn = || {
            Command::new(common::uerzoo_bin())
                .args(["download", REPO, "--file", "pytorch_model.bin"])
                .args(["--endpoint", &fx.server.endpoint(), "--cache-dir"])
                .arg(fx.dir.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let children = [spawn(), spawn()];
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            let dir = Path::new(stdout.lines().last().unwrap());
            assert_eq!(read(&dir.join("pytorch_model.bin")), *fx.weight);
        }
        assert_eq!(
            fx.server.content_requests().len(),
            1,
            "{:?}",
            fx.server.log()
        );
    })
}

/// `uerzoo ARGS --cache-dir DIR` with stdin closed (not a terminal).
fn uerzoo_in(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(common::uerzoo_bin())
        .args(args)
        .arg("--cache-dir")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// Bytes of the regular files under `path` (symlinks not followed): `du --apparent-size`
/// of the files.
fn file_bytes(path: &Path) -> u64 {
    let meta = std::fs::symlink_metadata(path).unwrap();
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    std::fs::read_dir(path)
        .unwrap()
        .map(|e| file_bytes(&e.unwrap().path()))
        .sum()
}

/// A second snapshot `commit` of the test repo, made by hand: the served weight's blob
/// (shared with `main`), a file with a blob of its own, and a link out of the cache.
fn second_revision(fx: &Fixture, commit: &str, own: &[u8], outside: &Path) -> String {
    let repo = fx.cache().repo(REPO);
    repo.link(commit, "pytorch_model.bin", &fx.weight_sha256())
        .unwrap();
    let own_sha = hex_sha256(own);
    std::fs::write(repo.blob_path(&own_sha), own).unwrap();
    repo.link(commit, "extra.bin", &own_sha).unwrap();
    std::os::unix::fs::symlink(outside, repo.pointer_path(commit, "outside.bin")).unwrap();
    own_sha
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn cache_ls_sizes_sum_to_the_bytes_on_disk_and_list_marks_cached_weights() {
    with_timeout(|| {
        let fx = fixture();
        fx.hub().download(&fx.request(), &NoProgress).unwrap();
        // A partial download and an imported legacy weight.
        let repo = fx.cache().repo(REPO);
        std::fs::write(repo.incomplete_path(&"e".repeat(64)), bytes(1234, 9)).unwrap();
        let source_dir = tempfile::tempdir().unwrap();
        let source = source_dir.path().join("google_zh_model.bin");
        std::fs::write(&source, bytes(50_000, 5)).unwrap();
        import_file(
            &fx.cache(),
            &local_repo_id("google_zh_bert_base"),
            "google_zh_model.bin",
            &source,
            None,
        )
        .unwrap();
        let out = uerzoo_in(fx.dir.path(), &["cache", "ls", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let repos = json.as_array().unwrap();
        assert_eq!(repos.len(), 2, "{json}");
        let mut total = 0;
        for r in repos {
            let folder = Path::new(r["folder"].as_str().unwrap());
            let size = r["size_on_disk"].as_u64().unwrap();
            assert_eq!(size, file_bytes(folder), "{}", folder.display());
            total += size;
        }
        let test = repos.iter().find(|r| r["repo_id"] == REPO).unwrap();
        assert_eq!(
            test["size_on_disk"].as_u64().unwrap(),
            (WEIGHT_SIZE + fx.config.len() + 1234 + COMMIT.len()) as u64
        );
        assert_eq!(test["revisions"][0]["commit"], COMMIT);
        assert_eq!(test["revisions"][0]["refs"][0], "main");
        assert_eq!(test["revisions"][0]["files"].as_array().unwrap().len(), 2);
        assert_eq!(test["incomplete"].as_array().unwrap().len(), 1);
        assert!(test["last_accessed"].as_u64().is_some());
        let legacy = repos
            .iter()
            .find(|r| r["repo_id"] == "uerzoo/google_zh_bert_base")
            .unwrap();
        assert_eq!(legacy["name"], "google_zh_bert_base");
        // Every byte under the cache's repo folders is counted (CACHEDIR.TAG and the
        // empty lock files aside).
        let all: u64 = std::fs::read_dir(fx.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("models--"))
            .map(|e| file_bytes(&e.path()))
            .sum();
        assert_eq!(total, all);
        // The table: repo, ref, total.
        let out = uerzoo_in(fx.dir.path(), &["cache", "ls"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(REPO) && text.contains("(main)"), "{text}");
        assert!(text.contains("2 repo(s)"), "{text}");
        assert!(text.contains(&format!("({total} B)")), "{text}");
        // `list --cached` marks the imported legacy weight and nothing else.
        let out = uerzoo_in(
            fx.dir.path(),
            &["list", "--cached", "--family", "legacy", "--json"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let cached: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["cached"] == true)
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(cached, ["google_zh_bert_base"]);
        let out = uerzoo_in(fx.dir.path(), &["list", "--cached", "--family", "legacy"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with("google_zh_bert_base"))
            .unwrap();
        assert!(line.ends_with("yes"), "{text}");
        assert!(text.contains("1 cached in"), "{text}");
    })
}

#[test]
fn cache_rm_of_one_revision_keeps_the_blobs_another_revision_shares() {
    with_timeout(|| {
        let fx = fixture();
        fx.hub().download(&fx.request(), &NoProgress).unwrap();
        let repo = fx.cache().repo(REPO);
        let other = "fedcba9876543210fedcba9876543210fedcba98";
        let outside_dir = tempfile::tempdir().unwrap();
        let outside = outside_dir.path().join("precious.bin");
        std::fs::write(&outside, b"not the cache's").unwrap();
        let own = second_revision(&fx, other, b"only in v2", &outside);
        repo.write_ref("v2", other).unwrap();
        // Without --yes and without a terminal: refused, nothing deleted.
        let out = uerzoo_in(fx.dir.path(), &["cache", "rm", REPO, "--revision", "v2"]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--yes") && stderr.contains("not a terminal"),
            "{stderr}"
        );
        assert!(repo.snapshot_dir(other).is_dir());
        // --dry-run lists and deletes nothing.
        let out = uerzoo_in(
            fx.dir.path(),
            &["cache", "rm", REPO, "--revision", "fedcba98", "--dry-run"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&own) && stdout.contains("dry run"),
            "{stdout}"
        );
        assert!(!stdout.contains(&fx.weight_sha256()), "{stdout}");
        assert!(repo.blob_path(&own).is_file() && repo.ref_path("v2").is_file());
        // An unknown revision names the cached ones.
        let out = uerzoo_in(
            fx.dir.path(),
            &["cache", "rm", REPO, "--revision", "v3", "--yes"],
        );
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("v3") && stderr.contains("main (01234567)"),
            "{stderr}"
        );
        // --yes: the revision, its ref and its own blob go; the shared blob stays.
        let out = uerzoo_in(
            fx.dir.path(),
            &["cache", "rm", REPO, "--revision", "v2", "--yes"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!repo.snapshot_dir(other).exists());
        assert!(!repo.ref_path("v2").exists());
        assert!(!repo.blob_path(&own).exists());
        assert!(repo.blob_path(&fx.weight_sha256()).is_file());
        assert_eq!(
            read(&outside),
            b"not the cache's",
            "a link out of the cache is not followed"
        );
        let checks = verify_repo(&fx.cache(), REPO, &["config.json".into()], &NoProgress);
        assert_eq!(checks.len(), 2);
        assert!(
            checks.iter().all(|c| c.status == CheckStatus::Ok),
            "{checks:?}"
        );
        // The remaining snapshot still serves offline.
        let offline = Hub::new(
            fx.cache(),
            HubOptions {
                offline: true,
                ..fx.options()
            },
        );
        fx.assert_weight_in(&offline.download(&fx.request(), &NoProgress).unwrap().dir);
        // The whole repo.
        let out = uerzoo_in(fx.dir.path(), &["cache", "rm", REPO, "-y"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!fx.repo_folder().exists());
        assert!(
            !fx.dir
                .path()
                .join(".locks/models--uer--test-model")
                .exists()
        );
        let out = uerzoo_in(fx.dir.path(), &["cache", "rm", REPO, "--yes"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("cache ls"));
    })
}

#[test]
fn cache_prune_removes_detached_revisions_orphans_and_leftovers_only() {
    with_timeout(|| {
        let fx = fixture();
        fx.hub().download(&fx.request(), &NoProgress).unwrap();
        let repo = fx.cache().repo(REPO);
        let detached = "fedcba9876543210fedcba9876543210fedcba98";
        let outside_dir = tempfile::tempdir().unwrap();
        let outside = outside_dir.path().join("precious.bin");
        std::fs::write(&outside, b"not the cache's").unwrap();
        let own = second_revision(&fx, detached, b"only in the detached one", &outside);
        let orphan = hex_sha256(b"orphan");
        std::fs::write(repo.blob_path(&orphan), b"orphan").unwrap();
        let stale = "a".repeat(64);
        std::fs::write(repo.incomplete_path(&stale), b"half").unwrap();
        std::fs::write(repo.parts_path(&stale), b"0 3 2\n").unwrap();
        // A download in progress: its lock is held, so its partial stays.
        let running = "b".repeat(64);
        std::fs::write(repo.incomplete_path(&running), b"in progress").unwrap();
        std::fs::create_dir_all(repo.lock_path(&running).parent().unwrap()).unwrap();
        let lock = std::fs::File::create(repo.lock_path(&running)).unwrap();
        fs2::FileExt::lock_exclusive(&lock).unwrap();

        let out = uerzoo_in(fx.dir.path(), &["cache", "prune", "--dry-run"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(repo.snapshot_dir(detached).is_dir() && repo.blob_path(&orphan).is_file());
        let out = uerzoo_in(fx.dir.path(), &["cache", "prune"]);
        assert!(
            !out.status.success(),
            "refused without --yes and a terminal"
        );
        let out = uerzoo_in(fx.dir.path(), &["cache", "prune", "--yes"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!repo.snapshot_dir(detached).exists());
        assert!(!repo.blob_path(&own).exists());
        assert!(!repo.blob_path(&orphan).exists());
        assert!(!repo.incomplete_path(&stale).exists());
        assert!(!repo.parts_path(&stale).exists());
        assert!(repo.incomplete_path(&running).is_file());
        assert_eq!(read(&outside), b"not the cache's");
        // `main` is untouched.
        assert_eq!(repo.resolve_revision("main").as_deref(), Some(COMMIT));
        let checks = verify_repo(&fx.cache(), REPO, &["config.json".into()], &NoProgress);
        assert_eq!(checks.len(), 2);
        assert!(
            checks.iter().all(|c| c.status == CheckStatus::Ok),
            "{checks:?}"
        );
        drop(lock);
        // Nothing else to prune now but the released partial. A child process that another
        // test thread forks at this moment shares the lock's open file until it execs, so the
        // lock may stay held for that instant: ask again for up to 10 s.
        let mut plan = uerzoo::hub::plan_prune(&fx.cache());
        for _ in 0..100 {
            if !plan.items.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            plan = uerzoo::hub::plan_prune(&fx.cache());
        }
        assert_eq!(plan.items.len(), 1, "{plan:?}");
        assert_eq!(plan.items[0].path, repo.incomplete_path(&running));
    })
}

#[test]
fn verify_repair_restores_a_corrupted_and_a_deleted_blob() {
    with_timeout(|| {
        let fx = fixture();
        fx.hub().download(&fx.request(), &NoProgress).unwrap();
        let repo = fx.cache().repo(REPO);
        let sha = fx.weight_sha256();
        let config_etag = Served::new(fx.config.clone(), false).etag();
        let mut content = read(&repo.blob_path(&sha));
        content[1_000_000] ^= 0x40;
        std::fs::write(repo.blob_path(&sha), content).unwrap();
        std::fs::remove_file(repo.blob_path(&config_etag)).unwrap();
        let out = uerzoo_in(fx.dir.path(), &["verify", REPO]);
        assert!(!out.status.success());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("CORRUPT") && stdout.contains("MISSING"),
            "{stdout}"
        );
        fx.server.clear_log();
        let endpoint = fx.server.endpoint();
        let out = uerzoo_in(
            fx.dir.path(),
            &["verify", REPO, "--repair", "--endpoint", &endpoint],
        );
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("0 problem(s)"), "{stdout}");
        assert_eq!(sha256_file(&repo.blob_path(&sha)).unwrap(), sha);
        assert_eq!(read(&repo.blob_path(&config_etag)), *fx.config);
        assert_eq!(fx.server.content_requests().len(), 2);
        fx.assert_weight_in(&repo.snapshot_dir(COMMIT));
        let checks = verify_repo(&fx.cache(), REPO, &[], &NoProgress);
        assert!(
            checks.iter().all(|c| c.status == CheckStatus::Ok),
            "{checks:?}"
        );

        // An imported file cannot be fetched: the command names the file to import again,
        // and importing it again repairs the blob.
        let source_dir = tempfile::tempdir().unwrap();
        let source = source_dir.path().join("google_zh_model.bin");
        std::fs::write(&source, bytes(20_000, 4)).unwrap();
        let out = uerzoo_in(
            fx.dir.path(),
            &[
                "import",
                "google_zh_bert_base",
                source.to_str().unwrap(),
                "--skip-check",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let local = fx.cache().repo(&local_repo_id("google_zh_bert_base"));
        let blob = local.blob_path(&sha256_file(&source).unwrap());
        let mut content = read(&blob);
        content[3] ^= 1;
        std::fs::write(&blob, content).unwrap();
        let out = uerzoo_in(
            fx.dir.path(),
            &["verify", "google_zh_bert_base", "--repair"],
        );
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("uerzoo import google_zh_bert_base"),
            "{stderr}"
        );
        let out = uerzoo_in(
            fx.dir.path(),
            &[
                "import",
                "google_zh_bert_base",
                source.to_str().unwrap(),
                "--skip-check",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = uerzoo_in(fx.dir.path(), &["verify", "google_zh_bert_base"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    })
}

/// A UER-format (naming v1) BERT file with the MLM and NSP heads: `layers` layers, hidden
/// `h`, feed-forward `f`, vocabulary `v`, 512 positions; small deterministic values.
fn uer_bert(path: &Path, layers: usize, h: usize, f: usize, v: usize) {
    use uerzoo::checkpoint::{Checkpoint, Tensor};
    let mut seed = 1u32;
    let mut tensor = |shape: Vec<usize>| {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((seed >> 9) as f32 / (1u32 << 23) as f32 - 0.5) * 0.04
            })
            .collect();
        Tensor::from_f32(shape, &values)
    };
    let mut tensors = vec![
        (
            "embedding.word_embedding.weight".to_string(),
            tensor(vec![v, h]),
        ),
        (
            "embedding.position_embedding.weight".into(),
            tensor(vec![512, h]),
        ),
        (
            "embedding.segment_embedding.weight".into(),
            tensor(vec![3, h]),
        ),
        (
            "embedding.layer_norm.gamma".into(),
            Tensor::from_f32(vec![h], &vec![1.0; h]),
        ),
        ("embedding.layer_norm.beta".into(), tensor(vec![h])),
    ];
    for i in 0..layers {
        let p = format!("encoder.transformer.{i}.");
        for j in 0..3 {
            tensors.push((
                format!("{p}self_attn.linear_layers.{j}.weight"),
                tensor(vec![h, h]),
            ));
            tensors.push((
                format!("{p}self_attn.linear_layers.{j}.bias"),
                tensor(vec![h]),
            ));
        }
        tensors.push((
            format!("{p}self_attn.final_linear.weight"),
            tensor(vec![h, h]),
        ));
        tensors.push((format!("{p}self_attn.final_linear.bias"), tensor(vec![h])));
        tensors.push((
            format!("{p}feed_forward.linear_1.weight"),
            tensor(vec![f, h]),
        ));
        tensors.push((format!("{p}feed_forward.linear_1.bias"), tensor(vec![f])));
        tensors.push((
            format!("{p}feed_forward.linear_2.weight"),
            tensor(vec![h, f]),
        ));
        tensors.push((format!("{p}feed_forward.linear_2.bias"), tensor(vec![h])));
        for ln in ["layer_norm_1", "layer_norm_2"] {
            tensors.push((
                format!("{p}{ln}.gamma"),
                Tensor::from_f32(vec![h], &vec![1.0; h]),
            ));
            tensors.push((format!("{p}{ln}.beta"), tensor(vec![h])));
        }
    }
    tensors.extend([
        ("target.mlm_linear_1.weight".to_string(), tensor(vec![h, h])),
        ("target.mlm_linear_1.bias".into(), tensor(vec![h])),
        (
            "target.layer_norm.gamma".into(),
            Tensor::from_f32(vec![h], &vec![1.0; h]),
        ),
        ("target.layer_norm.beta".into(), tensor(vec![h])),
        ("target.mlm_linear_2.weight".into(), tensor(vec![v, h])),
        ("target.mlm_linear_2.bias".into(), tensor(vec![v])),
        ("target.nsp_linear_1.weight".into(), tensor(vec![h, h])),
        ("target.nsp_linear_1.bias".into(), tensor(vec![h])),
        ("target.nsp_linear_2.weight".into(), tensor(vec![2, h])),
        ("target.nsp_linear_2.bias".into(), tensor(vec![2])),
    ]);
    let ckpt = Checkpoint {
        tensors,
        ..Checkpoint::default()
    };
    ckpt.write_torch(path, true).unwrap();
}

#[test]
fn import_checks_the_file_against_the_registry_then_runs_offline_by_name() {
    with_timeout(|| {
        // mixed_corpus_bert_tiny: L=3 H=384 F=1536, google_zh_vocab.txt (21128 tokens).
        let name = "mixed_corpus_bert_tiny";
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let import = |file: &Path| {
            Command::new(common::uerzoo_bin())
                .args(["import", name])
                .arg(file)
                .arg("--cache-dir")
                .arg(&cache)
                .output()
                .unwrap()
        };
        let refused = |file: &Path, key: &str| {
            let out = import(file);
            assert!(!out.status.success(), "{} was imported", file.display());
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains(&format!("`{key}`")), "{stderr}");
            assert!(
                !cache
                    .join("models--uerzoo--mixed_corpus_bert_tiny")
                    .exists()
            );
        };
        let wrong_ff = dir.path().join("wrong_ff.bin");
        uer_bert(&wrong_ff, 3, 384, 1024, 21128);
        refused(
            &wrong_ff,
            "encoder.transformer.0.feed_forward.linear_1.weight",
        );
        let shallow = dir.path().join("shallow.bin");
        uer_bert(&shallow, 2, 384, 1536, 21128);
        refused(&shallow, "encoder.transformer.2.*");
        let small_vocab = dir.path().join("small_vocab.bin");
        uer_bert(&small_vocab, 3, 384, 1536, 3006);
        refused(&small_vocab, "embedding.word_embedding.weight");
        let not_tensors = dir.path().join("notes.txt");
        std::fs::write(&not_tensors, "not a model").unwrap();
        let out = import(&not_tensors);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("not a tensor file"));

        let good = dir.path().join("mixed_corpus_bert_tiny_model.bin");
        uer_bert(&good, 3, 384, 1536, 21128);
        let import_with_vocab = |vocab: &str| {
            Command::new(common::uerzoo_bin())
                .args(["import", name])
                .arg(&good)
                .arg("--vocab")
                .arg(common::vocab(vocab))
                .arg("--cache-dir")
                .arg(&cache)
                .output()
                .unwrap()
        };
        // A vocabulary other than the registry's is refused.
        let out = import_with_vocab("google_zh_poem_vocab.txt");
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("sha256"));
        // Without a vocabulary: imported, with a note on what is missing.
        let out = import(&good);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("--vocab"));
        let out = import_with_vocab("google_zh_vocab.txt");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Opened by its name with no network at all.
        let out = Command::new(common::uerzoo_bin())
            .args(["fill-mask", name, "北京是[MASK]国的首都。", "--top-k", "2"])
            .env("HF_HUB_CACHE", &cache)
            .env("HF_HUB_OFFLINE", "1")
            .env("HF_ENDPOINT", "http://127.0.0.1:9")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(" 1. ") && stdout.contains(" 2. "),
            "{stdout}"
        );
    })
}

/// The `note:` lines of a command's stderr.
fn notes(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("note:"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `fill-mask MODEL "北京是[MASK]国的首都。" --top-k 3 --json` with the cache at `cache`, no
/// network, and `extra` arguments; the predicted tokens and ids and the command's output.
fn fill_by_name(
    cache: &Path,
    model: &std::ffi::OsStr,
    extra: &[&std::ffi::OsStr],
) -> (Vec<(String, u64)>, std::process::Output) {
    let out = common::run_ok(
        Command::new(common::uerzoo_bin())
            .arg("fill-mask")
            .arg(model)
            .args(["北京是[MASK]国的首都。", "--top-k", "3", "--json"])
            .args(extra)
            .env("HF_HUB_CACHE", cache)
            .env("HF_HUB_OFFLINE", "1")
            .env("HF_ENDPOINT", "http://127.0.0.1:9"),
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let found = json[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["token"].as_str().unwrap().to_string(),
                c["id"].as_u64().unwrap(),
            )
        })
        .collect();
    (found, out)
}

#[test]
fn import_without_vocab_brings_the_built_in_vocabulary_and_fill_mask_runs_by_name() {
    with_timeout(|| {
        // mixed_corpus_bert_tiny: L=3 H=384 F=1536, google_zh_vocab.txt (21128 tokens), a
        // Weiyun-only weight: only the `.bin` is given.
        let name = "mixed_corpus_bert_tiny";
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let file = dir.path().join("mixed_corpus_bert_tiny_model.bin");
        uer_bert(&file, 3, 384, 1536, 21128);
        let out = common::run_ok(
            Command::new(common::uerzoo_bin())
                .args(["import", name])
                .arg(&file)
                .arg("--cache-dir")
                .arg(&cache),
        );
        assert!(
            notes(&out).contains("is the built-in google_zh_vocab.txt, imported beside it"),
            "{}",
            notes(&out)
        );
        // The registry's copy, under the Hub's name, checked by `verify`.
        let vocab = common::vocab("google_zh_vocab.txt");
        let repo = Cache::new(&cache).repo(&local_repo_id(name));
        let imported = repo.get("main", "vocab.txt").expect("vocab.txt imported");
        assert_eq!(read(&imported), read(&vocab));
        common::run_ok(
            Command::new(common::uerzoo_bin())
                .args(["verify", name])
                .env("HF_HUB_CACHE", &cache),
        );
        let (beside, out) = fill_by_name(&cache, name.as_ref(), &[]);
        assert_eq!(notes(&out), "");
        // The same predictions as with the shipped file given by hand.
        let (given, _) = fill_by_name(
            &cache,
            name.as_ref(),
            &["--vocab".as_ref(), vocab.as_os_str()],
        );
        assert_eq!(beside.len(), 3);
        assert_eq!(beside, given);
        let lines: Vec<String> = std::fs::read_to_string(&vocab)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        for (token, id) in &beside {
            assert_eq!(&lines[*id as usize], token);
        }
        // With the imported vocabulary gone, the built-in one still serves the name.
        std::fs::remove_file(&imported).unwrap();
        let (built_in, out) = fill_by_name(&cache, name.as_ref(), &[]);
        assert_eq!(
            notes(&out),
            "note: tokenizing with the built-in google_zh_vocab.txt (the vocabulary of `mixed_corpus_bert_tiny`)"
        );
        assert_eq!(built_in, given);
    })
}

#[test]
fn a_snapshot_without_its_vocab_txt_fills_the_mask_with_the_built_in_vocabulary() {
    with_timeout(|| {
        // A Huggingface BERT of the Tiny miniature's shape (L=2 H=128, 21128 tokens), served
        // as `uer/chinese_roberta_L-2_H-128` with google_zh_vocab.txt as its vocab.txt.
        let dir = tempfile::tempdir().unwrap();
        let uer_dir = dir.path().join("uer");
        std::fs::create_dir_all(&uer_dir).unwrap();
        let uer = uer_dir.join("model.bin");
        uer_bert(&uer, 2, 128, 512, 21128);
        std::fs::write(
            uer_dir.join("uer_config.json"),
            r#"{"emb_size": 128, "feedforward_size": 512, "hidden_size": 128, "hidden_act": "gelu",
                "heads_num": 2, "layers_num": 2, "max_seq_length": 512, "dropout": 0.1,
                "embedding": "word_pos_seg", "encoder": "transformer", "mask": "fully_visible",
                "target": "bert"}"#,
        )
        .unwrap();
        let hf = dir.path().join("hf");
        common::run_ok(
            Command::new(common::uerzoo_bin())
                .arg("convert")
                .arg(&uer)
                .arg(&hf)
                .args(["--to", "hf", "--format", "bin"]),
        );
        let git = |bytes: Vec<u8>| Served::new(Arc::new(bytes), false);
        let server = HubServer::start(
            "uer/chinese_roberta_L-2_H-128",
            vec![
                (
                    "pytorch_model.bin",
                    Served::new(Arc::new(read(&hf.join("pytorch_model.bin"))), true),
                ),
                ("config.json", git(read(&hf.join("config.json")))),
                (
                    "vocab.txt",
                    git(read(&common::vocab("google_zh_vocab.txt"))),
                ),
                ("tokenizer_config.json", git(b"{}".to_vec())),
                ("special_tokens_map.json", git(b"{}".to_vec())),
            ],
        );
        let cache = dir.path().join("cache");
        let out = common::run_ok(
            Command::new(common::uerzoo_bin())
                .args(["download", "tiny", "--endpoint", &server.endpoint()])
                .arg("--cache-dir")
                .arg(&cache),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let snapshot = std::path::PathBuf::from(stdout.lines().last().unwrap());
        let (with_file, out) = fill_by_name(&cache, "tiny".as_ref(), &[]);
        assert_eq!(notes(&out), "");
        std::fs::remove_file(snapshot.join("vocab.txt")).unwrap();
        // By name and by the snapshot's path: the built-in vocabulary, the same predictions.
        for model in [std::ffi::OsStr::new("tiny"), snapshot.as_os_str()] {
            let (built_in, out) = fill_by_name(&cache, model, &[]);
            assert_eq!(
                notes(&out),
                "note: tokenizing with the built-in google_zh_vocab.txt (the vocabulary of `chinese_roberta_L-2_H-128`)"
            );
            assert_eq!(built_in.len(), 3);
            assert_eq!(built_in, with_file);
        }
        // The same folder outside the cache is no registry weight: it asks for --vocab.
        let copy = dir.path().join("copy");
        std::fs::create_dir_all(&copy).unwrap();
        for f in ["pytorch_model.bin", "config.json"] {
            std::fs::copy(snapshot.join(f), copy.join(f)).unwrap();
        }
        let out = Command::new(common::uerzoo_bin())
            .arg("fill-mask")
            .arg(&copy)
            .arg("北京是[MASK]国的首都。")
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("pass --vocab"));
    })
}

#[test]
fn download_format_uer_writes_naming_v1_unless_told_v2_and_fill_mask_opens_it_alone() {
    with_timeout(|| {
        // The RoBERTa fixture (L=2, H=128) served as the Tiny miniature.
        let fixture = common::uer_fixture("roberta_v1");
        let hf = fixture.join("hf_by_uer_script");
        let git = |path: &Path| Served::new(Arc::new(read(path)), false);
        let server = HubServer::start(
            "uer/chinese_roberta_L-2_H-128",
            vec![
                (
                    "pytorch_model.bin",
                    Served::new(Arc::new(read(&hf.join("pytorch_model.bin"))), true),
                ),
                ("config.json", git(&hf.join("config.json"))),
                ("vocab.txt", git(&fixture.join("vocab.txt"))),
                (
                    "tokenizer_config.json",
                    Served::new(Arc::new(b"{}".to_vec()), false),
                ),
                (
                    "special_tokens_map.json",
                    Served::new(Arc::new(b"{}".to_vec()), false),
                ),
            ],
        );
        let dir = tempfile::tempdir().unwrap();
        let download = |extra: &[&str]| {
            let out = common::run_ok(
                Command::new(common::uerzoo_bin())
                    .args(["download", "tiny", "--format", "uer", "--endpoint"])
                    .arg(server.endpoint())
                    .arg("--cache-dir")
                    .arg(dir.path())
                    .args(extra),
            );
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let bin = stdout
                .lines()
                .find_map(|l| l.strip_prefix("uer     "))
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| panic!("no `uer` line in:\n{stdout}"));
            let ckpt = common::read(&bin);
            let names: Vec<String> = ckpt.names().map(String::from).collect();
            let fill = common::run_ok(
                Command::new(common::uerzoo_bin())
                    .arg("fill-mask")
                    .arg(&bin)
                    .args(["北京是[MASK]国的首都。", "--top-k", "3", "--json"]),
            );
            (names, fill.stdout)
        };
        let (v1, v1_fill) = download(&[]);
        assert!(
            v1.iter().any(|n| n == "embedding.word_embedding.weight"),
            "{v1:?}"
        );
        assert!(
            v1.iter().any(|n| n == "target.mlm_linear_1.weight"),
            "{v1:?}"
        );
        assert!(
            !v1.iter().any(|n| n.starts_with("embedding.word.")),
            "{v1:?}"
        );
        let (v2, v2_fill) = download(&["--uer-naming", "v2"]);
        assert!(
            v2.iter().any(|n| n == "embedding.word.embedding.weight"),
            "{v2:?}"
        );
        assert!(
            v2.iter().any(|n| n == "target.mlm.linear_1.weight"),
            "{v2:?}"
        );
        // One model under either naming.
        assert_eq!(v1.len(), v2.len());
        assert_eq!(v1_fill, v2_fill);
        let json: serde_json::Value = serde_json::from_slice(&v1_fill).unwrap();
        assert_eq!(json[0].as_array().map(Vec::len), Some(3), "{json}");
    })
}
