//! `uerzoo pretrain --nnodes`: two processes on loopback as two nodes (127.0.0.1 and
//! 127.0.0.2), one CPU device each, against one process with `--devices cpu,cpu`; mismatched
//! options and a node that never joins.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uerzoo::checkpoint::Checkpoint;

/// The runs share two cores: one test at a time keeps the time bounds meaningful.
static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A child process killed when dropped (a failing test leaves none behind).
struct Guard(Option<Child>);

impl Guard {
    /// Waits at most `limit` for the process and returns its output; kills it and fails
    /// past the limit.
    fn wait(mut self, limit: Duration, what: &str) -> (Output, Duration) {
        let start = Instant::now();
        let mut child = self.0.take().unwrap();
        loop {
            if child.try_wait().unwrap().is_some() {
                return (child.wait_with_output().unwrap(), start.elapsed());
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "{what} still ran after {limit:?}; killed. stderr:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A port P with P+1..P+3 free too (rendezvous, orchestrator, the two nodes' services).
fn free_ports() -> u16 {
    for _ in 0..50 {
        let p = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if p > 65000 {
            continue;
        }
        if (p..p + 4).all(|q| std::net::TcpListener::bind(("0.0.0.0", q)).is_ok()) {
            return p;
        }
    }
    panic!("no four free consecutive ports");
}

fn dataset(dir: &Path) -> PathBuf {
    let fixture = common::uer_fixture("roberta_v1");
    let corpus = common::shared()
        .join("data")
        .join("corpora")
        .join("CLUECorpusSmall_sampled.txt");
    let text = std::fs::read_to_string(corpus).unwrap();
    let head: Vec<&str> = text.lines().take(20).collect();
    let c = dir.join("corpus.txt");
    std::fs::write(&c, head.join("\n") + "\n").unwrap();
    let ds = dir.join("mlm.uzds");
    common::run_ok(
        Command::new(common::uerzoo_bin())
            .args(["preprocess", "--target", "mlm", "--seq-length", "64"])
            .args(["--dup-factor", "1", "--corpus"])
            .arg(&c)
            .arg("--vocab")
            .arg(fixture.join("vocab.txt"))
            .arg("--output")
            .arg(&ds),
    );
    ds
}

/// `uerzoo pretrain` from roberta_v1 on `ds`, batch 8, dropout 0, `steps` steps, and `extra`.
fn pretrain(ds: &Path, steps: usize, out: &Path, extra: &[&str]) -> Command {
    let fixture = common::uer_fixture("roberta_v1");
    let mut c = Command::new(common::uerzoo_bin());
    c.arg("pretrain")
        .arg("--model")
        .arg(fixture.join("uer_model.bin"))
        .arg("--dataset")
        .arg(ds)
        .args(["--target", "mlm", "--total-steps", &steps.to_string()])
        .args([
            "--batch-size",
            "8",
            "--learning-rate",
            "1e-3",
            "--dropout",
            "0",
        ])
        .args(["--report-steps", "10", "--save-checkpoint-steps", "25"])
        .args(extra)
        .arg("--output")
        .arg(out);
    for k in ["WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"] {
        c.env_remove(k);
    }
    c
}

fn spawn(mut c: Command) -> Guard {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    Guard(Some(c.spawn().unwrap()))
}

fn node(ds: &Path, steps: usize, out: &Path, rank: usize, port: u16, extra: &[&str]) -> Guard {
    let master = format!("127.0.0.1:{port}");
    let host = format!("127.0.0.{}", rank + 1);
    let rank = rank.to_string();
    let mut args = vec![
        "--device",
        "cpu",
        "--nnodes",
        "2",
        "--node-rank",
        &rank,
        "--master-addr",
        &master,
        "--node-addr",
        &host,
    ];
    args.extend_from_slice(extra);
    spawn(pretrain(ds, steps, out, &args))
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// 50 MLM steps as two nodes equal 50 steps of one process with two CPU devices: the same
/// global batch split the same way (node 0's device is global rank 0, node 1's rank 1),
/// each replica's loss weighed by its share of the batch's masked tokens, gradients
/// averaged by burn-collective (within each node, then across the nodes through its
/// global ring). With two replicas every gradient element is `(a + b) / 2` either way
/// (f32 addition of two terms commutes), so the weights come out bit for bit equal,
/// which this test measured; the tolerance stays the 1e-5.
#[test]
fn two_nodes_on_loopback_equal_one_process_with_two_devices() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let steps = 50;
    let one = dir.path().join("one.bin");
    let t = Instant::now();
    let (o, _) = spawn(pretrain(&ds, steps, &one, &["--devices", "cpu,cpu"]))
        .wait(Duration::from_secs(300), "the --devices cpu,cpu run");
    assert!(o.status.success(), "{}", text(&o));
    let one_s = t.elapsed().as_secs_f64();

    let port = free_ports();
    let (out0, out1) = (dir.path().join("n0.bin"), dir.path().join("n1.bin"));
    let t = Instant::now();
    let n0 = node(&ds, steps, &out0, 0, port, &[]);
    let n1 = node(&ds, steps, &out1, 1, port, &[]);
    let (o1, _) = n1.wait(Duration::from_secs(300), "node 1");
    let (o0, _) = n0.wait(Duration::from_secs(60), "node 0");
    let two_s = t.elapsed().as_secs_f64();
    assert!(o0.status.success(), "node 0: {}", text(&o0));
    assert!(o1.status.success(), "node 1: {}", text(&o1));
    eprintln!("--devices cpu,cpu: {one_s:.1} s; two nodes: {two_s:.1} s (wall, with loading)");

    // Node 0 reports (every 10 steps) and writes; node 1 writes nothing.
    let stdout0 = String::from_utf8_lossy(&o0.stdout);
    assert_eq!(
        stdout0.lines().filter(|l| l.contains(" steps|")).count(),
        5,
        "{stdout0}"
    );
    let stdout1 = String::from_utf8_lossy(&o1.stdout);
    assert!(!stdout1.contains(" steps|"), "{stdout1}");
    assert!(out0.is_file() && dir.path().join("n0.bin-25").is_file());
    assert!(dir.path().join("n0.bin-25.optim.safetensors").is_file());
    assert!(!out1.exists() && !dir.path().join("n1.bin-25").exists());

    let (a, b) = (
        Checkpoint::open(&one).unwrap(),
        Checkpoint::open(&out0).unwrap(),
    );
    let start = Checkpoint::open(common::uer_fixture("roberta_v1").join("uer_model.bin")).unwrap();
    let names: Vec<&str> = a.names().collect();
    assert_eq!(names, b.names().collect::<Vec<_>>());
    let (mut worst, mut moved) = (0f32, 0f32);
    for name in names {
        let x = a.get(name).unwrap().to_f32_vec();
        let y = b.get(name).unwrap().to_f32_vec();
        assert_eq!(x.len(), y.len(), "{name}");
        let s = start.get(name).map(|t| t.to_f32_vec());
        for (i, (p, q)) in x.iter().zip(&y).enumerate() {
            worst = worst.max((p - q).abs());
            if let Some(s) = &s {
                moved = moved.max((p - s[i]).abs());
            }
        }
    }
    eprintln!("two nodes vs one process: max weight diff {worst:e} (moved up to {moved:e})");
    assert!(
        moved > 1e-3,
        "training did not move the weights ({moved:e})"
    );
    assert!(
        worst <= 1e-5,
        "two nodes differ by {worst:e} (tolerance 1e-5)"
    );
}

/// A node started with another seed (and its place from `WORLD_SIZE`, `RANK`,
/// `MASTER_ADDR`, `MASTER_PORT`) is refused by node 0 before training: both stop non-zero,
/// naming the option and the node.
#[test]
fn mismatched_options_are_refused_at_start() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let port = free_ports();
    let (out0, out1) = (dir.path().join("n0.bin"), dir.path().join("n1.bin"));
    let n0 = node(&ds, 5, &out0, 0, port, &["--seed", "7"]);
    // Node 1 from torchrun's environment variables instead of the flags.
    let mut c = pretrain(
        &ds,
        5,
        &out1,
        &["--device", "cpu", "--node-addr", "127.0.0.2"],
    );
    c.args(["--seed", "8"])
        .env("WORLD_SIZE", "2")
        .env("RANK", "1")
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string());
    let n1 = spawn(c);
    let (o0, t0) = n0.wait(Duration::from_secs(90), "node 0");
    let (o1, _) = n1.wait(Duration::from_secs(30), "node 1");
    assert!(!o0.status.success() && !o1.status.success());
    for o in [&o0, &o1] {
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            e.contains("seed: node 0 has 7, node 1 has 8"),
            "{}",
            text(o)
        );
    }
    assert!(t0 < Duration::from_secs(60), "refused after {t0:?}");
    assert!(!out0.exists() && !out1.exists());
}

/// A node that never joins: node 0 stops within its --join-timeout (plus loading) naming
/// node 1; a lone node 1 names node 0 and the master address.
#[test]
fn a_node_that_never_joins_stops_the_other() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let port = free_ports();
    let out = dir.path().join("n.bin");
    let (o, t) = node(&ds, 5, &out, 0, port, &["--join-timeout", "3s"])
        .wait(Duration::from_secs(60), "a lone node 0");
    assert!(!o.status.success(), "{}", text(&o));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("node(s) 1 did not join within 3 s"),
        "{}",
        text(&o)
    );
    eprintln!("lone node 0 stopped after {t:?}");
    assert!(t < Duration::from_secs(30), "{t:?}");

    let (o, t) = node(&ds, 5, &out, 1, port, &["--join-timeout", "3s"])
        .wait(Duration::from_secs(60), "a lone node 1");
    assert!(!o.status.success(), "{}", text(&o));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains(&format!(
            "node 1: node 0 did not answer at 127.0.0.1:{port} within 3 s"
        )),
        "{}",
        text(&o)
    );
    assert!(t < Duration::from_secs(30), "{t:?}");
    assert!(!out.exists());
}

/// Killing node 1 mid-run (SIGKILL, after node 0's checkpoint at step 25): node 0 stops
/// non-zero within 60 s, naming node 1; the checkpoint pair written before stays whole and
/// no half-written file is left.
#[test]
fn killing_a_node_mid_run_stops_the_other() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let port = free_ports();
    let (out0, out1) = (dir.path().join("n0.bin"), dir.path().join("n1.bin"));
    let n0 = node(&ds, 10_000, &out0, 0, port, &[]);
    let mut n1 = node(&ds, 10_000, &out1, 1, port, &[]);
    let state = dir.path().join("n0.bin-25.optim.safetensors");
    let start = Instant::now();
    while !state.is_file() {
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "no checkpoint at step 25 after 240 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    n1.0.as_mut().unwrap().kill().unwrap();
    let killed = Instant::now();
    let (o0, _) = n0.wait(Duration::from_secs(90), "node 0 after node 1 was killed");
    let took = killed.elapsed();
    eprintln!("node 0 stopped {took:?} after node 1 was killed");
    assert!(!o0.status.success(), "{}", text(&o0));
    let e = String::from_utf8_lossy(&o0.stderr);
    assert!(e.contains("node 0: lost node 1"), "{}", text(&o0));
    assert!(took < Duration::from_secs(60), "{took:?}");
    // The step-25 checkpoint opens; nothing half-written is left beside it.
    Checkpoint::open(dir.path().join("n0.bin-25")).unwrap();
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!out0.exists());
}

/// Both nodes resumed from node 0's step-25 checkpoint (on loopback they share the disk;
/// on a cluster it is a shared or copied file) finish exactly as the straight run.
#[test]
fn a_multi_node_run_resumes_exactly() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let port = free_ports();
    let (out0, out1) = (dir.path().join("n0.bin"), dir.path().join("n1.bin"));
    let n0 = node(&ds, 40, &out0, 0, port, &[]);
    let n1 = node(&ds, 40, &out1, 1, port, &[]);
    let (o1, _) = n1.wait(Duration::from_secs(300), "node 1");
    let (o0, _) = n0.wait(Duration::from_secs(60), "node 0");
    assert!(o0.status.success() && o1.status.success(), "{}", text(&o0));

    let ckpt = dir.path().join("n0.bin-25");
    let ckpt = ckpt.to_str().unwrap();
    let port = free_ports();
    let (r0, r1) = (dir.path().join("r0.bin"), dir.path().join("r1.bin"));
    let n0 = node(&ds, 40, &r0, 0, port, &["--resume", ckpt]);
    let n1 = node(&ds, 40, &r1, 1, port, &["--resume", ckpt]);
    let (o1, _) = n1.wait(Duration::from_secs(300), "resumed node 1");
    let (o0, _) = n0.wait(Duration::from_secs(60), "resumed node 0");
    assert!(o0.status.success(), "{}", text(&o0));
    assert!(o1.status.success(), "{}", text(&o1));
    assert!(String::from_utf8_lossy(&o0.stdout).contains("15 steps in"));
    assert_eq!(
        std::fs::read(&out0).unwrap(),
        std::fs::read(&r0).unwrap(),
        "the resumed run's weights differ from the straight run's"
    );
    assert!(!r1.exists());
}

/// Three nodes, target bert (MLM + next-sentence prediction) from bert_v1: the NSP bias has
/// 2 values, fewer than the nodes, so burn-collective's global ring cannot slice it and the
/// nodes use its tree. The weights equal one process with `--devices cpu,cpu,cpu` within
/// 1e-5: with three replicas the sums have three terms, and the tree adds the children's
/// tensors in the order they arrive, so the rounding may differ from the in-process tree.
#[test]
fn three_nodes_with_a_tiny_parameter_use_the_tree_and_equal_one_process() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let fixture = common::uer_fixture("bert_v1");
    let ds = dir.path().join("bert.uzds");
    common::run_ok(
        Command::new(common::uerzoo_bin())
            .args(["preprocess", "--target", "bert", "--seq-length", "32"])
            .args(["--dup-factor", "1", "--corpus"])
            .arg(
                common::shared()
                    .join("data")
                    .join("corpora")
                    .join("CLUECorpusSmall_bert_sampled.txt"),
            )
            .arg("--vocab")
            .arg(fixture.join("vocab.txt"))
            .arg("--output")
            .arg(&ds),
    );
    let run = |out: &Path, extra: &[&str]| {
        let mut c = Command::new(common::uerzoo_bin());
        c.arg("pretrain")
            .arg("--model")
            .arg(fixture.join("uer_model.bin"))
            .arg("--dataset")
            .arg(&ds)
            .args([
                "--target",
                "bert",
                "--total-steps",
                "6",
                "--batch-size",
                "6",
            ])
            .args([
                "--learning-rate",
                "1e-3",
                "--dropout",
                "0",
                "--report-steps",
                "3",
            ])
            .args(extra)
            .arg("--output")
            .arg(out);
        for k in ["WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"] {
            c.env_remove(k);
        }
        spawn(c)
    };
    let one = dir.path().join("one.bin");
    let (o, _) = run(&one, &["--devices", "cpu,cpu,cpu"])
        .wait(Duration::from_secs(300), "--devices cpu,cpu,cpu");
    assert!(o.status.success(), "{}", text(&o));
    let port = loop {
        let p = free_ports();
        if std::net::TcpListener::bind(("0.0.0.0", p + 4)).is_ok() {
            break p;
        }
    };
    let master = format!("127.0.0.1:{port}");
    let outs: Vec<PathBuf> = (0..3)
        .map(|r| dir.path().join(format!("n{r}.bin")))
        .collect();
    let nodes: Vec<Guard> = (0..3)
        .map(|r| {
            let (rank, host) = (r.to_string(), format!("127.0.0.{}", r + 1));
            run(
                &outs[r],
                &[
                    "--device",
                    "cpu",
                    "--nnodes",
                    "3",
                    "--node-rank",
                    &rank,
                    "--master-addr",
                    &master,
                    "--node-addr",
                    &host,
                ],
            )
        })
        .collect();
    for (r, n) in nodes.into_iter().enumerate().rev() {
        let (o, _) = n.wait(Duration::from_secs(300), &format!("node {r}"));
        assert!(o.status.success(), "node {r}: {}", text(&o));
    }
    let (a, b) = (
        Checkpoint::open(&one).unwrap(),
        Checkpoint::open(&outs[0]).unwrap(),
    );
    let mut worst = 0f32;
    for name in a.names() {
        let (x, y) = (
            a.get(name).unwrap().to_f32_vec(),
            b.get(name).unwrap().to_f32_vec(),
        );
        for (p, q) in x.iter().zip(&y) {
            worst = worst.max((p - q).abs());
        }
    }
    eprintln!("three nodes vs one process: max weight diff {worst:e}");
    assert!(worst <= 1e-5, "three nodes differ by {worst:e}");
    assert!(!outs[1].exists() && !outs[2].exists());
}
