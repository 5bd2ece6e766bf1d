//! Bad input and bad outputs, as a user meets them with the built binary: every case is a
//! clear error (exit 1, the file or field named, no panic), found before any long work, and
//! nothing half-written is left behind. Each case is one reproduced on the release build
//! before the fix (issue 21).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn uerzoo() -> Command {
    Command::new(common::uerzoo_bin())
}

fn fixture(name: &str) -> PathBuf {
    common::uer_fixture(name)
}

fn small(name: &str) -> PathBuf {
    common::shared()
        .join("data/datasets/book_review_small")
        .join(name)
}

/// Runs `cmd`, which must fail cleanly (exit 1, no panic) within `within`, with every one
/// of `needles` in its stderr. Returns stderr.
fn fails(cmd: &mut Command, within: Duration, needles: &[&str]) -> String {
    let start = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let took = start.elapsed();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{cmd:?}: expected a clean error (exit 1), got {}:\n{err}",
        out.status
    );
    assert!(!err.contains("panicked"), "{cmd:?} panicked:\n{err}");
    for n in needles {
        assert!(err.contains(n), "{cmd:?}: stderr lacks `{n}`:\n{err}");
    }
    assert!(took < within, "{cmd:?} took {took:?} (limit {within:?})");
    let peak = children_peak_rss();
    assert!(
        peak < 1 << 30,
        "a child of this test process peaked at {} MiB (limit 1 GiB), at or before {cmd:?}",
        peak >> 20
    );
    err
}

/// The largest peak resident size (bytes) of any finished child of this test process so far
/// (`getrusage(RUSAGE_CHILDREN)`; Linux reports kilobytes).
fn children_peak_rss() -> u64 {
    // SAFETY: `getrusage` only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0, "getrusage failed");
    usage.ru_maxrss as u64 * 1024
}

fn ok(cmd: &mut Command) -> Output {
    common::run_ok(cmd)
}

/// Files in `dir` whose name marks them as temporaries.
fn strays(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".partial") || n.starts_with(".tmp"))
        .collect()
}

const FAST: Duration = Duration::from_secs(10);

#[test]
fn a_huge_label_is_refused_with_a_short_message() {
    let d = tempfile::tempdir().unwrap();
    let train = d.path().join("bad.tsv");
    let good = std::fs::read_to_string(small("train.tsv")).unwrap();
    let mut text: String = good.lines().take(21).map(|l| format!("{l}\n")).collect();
    text.push_str("99999999999\t一本很好的书\n");
    std::fs::write(&train, text).unwrap();
    let err = fails(
        uerzoo()
            .arg("finetune")
            .arg(fixture("roberta_v1").join("uer_model.bin"))
            .arg("--train")
            .arg(&train)
            .arg("--dev")
            .arg(small("dev.tsv"))
            .arg("--output")
            .arg(d.path().join("x.bin")),
        FAST,
        &["bad.tsv", "99999999999", "row 21"],
    );
    assert!(err.len() < 2000, "message of {} bytes:\n{err}", err.len());
}

#[test]
fn a_bom_header_and_an_unused_label_column_are_read() {
    use uerzoo::train::Dataset;
    let p = Path::new("in.tsv");
    let text = "\u{feff}label\ttext_a\nx\t很好\ny\t不好\n";
    // Labels not asked for (predict without --labels): the column is not parsed.
    let d = Dataset::parse(p, text, false).unwrap();
    assert_eq!(d.examples.len(), 2);
    assert_eq!(d.examples[0].text_a, "很好");
    // Asked for: the BOM is not part of the column name; `x` is the error, on line 2.
    let e = Dataset::parse(p, text, true).unwrap_err().to_string();
    assert!(e.contains("in.tsv") && e.contains("`x`"), "{e}");
}

/// A dynamic-masking mlm dataset of 64-token rows from the fixture's vocabulary.
fn dataset(dir: &Path) -> PathBuf {
    let corpus = dir.join("c.txt");
    let text: String =
        std::fs::read_to_string(common::shared().join("data/corpora/CLUECorpusSmall_sampled.txt"))
            .unwrap()
            .lines()
            .take(40)
            .map(|l| format!("{l}\n"))
            .collect();
    std::fs::write(&corpus, text).unwrap();
    let out = dir.join("d.uzds");
    ok(uerzoo()
        .args([
            "preprocess",
            "--target",
            "mlm",
            "--seq-length",
            "64",
            "--dynamic-masking",
        ])
        .arg("--corpus")
        .arg(&corpus)
        .arg("--vocab")
        .arg(fixture("roberta_v1").join("vocab.txt"))
        .arg("--output")
        .arg(&out));
    out
}

fn pretrain(ds: &Path, out: &Path) -> Command {
    pretrain_with(ds, out, "2", "7")
}

fn pretrain_with(ds: &Path, out: &Path, batch: &str, seed: &str) -> Command {
    let mut c = uerzoo();
    c.arg("pretrain")
        .arg("--model")
        .arg(fixture("roberta_v1").join("uer_model.bin"))
        .arg("--dataset")
        .arg(ds)
        .args(["--target", "mlm", "--total-steps", "2"])
        .args(["--batch-size", batch, "--seed", seed])
        .arg("--output")
        .arg(out);
    c
}

#[test]
fn corrupt_dataset_headers_are_errors_naming_the_offset() {
    let d = tempfile::tempdir().unwrap();
    let ds = dataset(d.path());
    let bytes = std::fs::read(&ds).unwrap();
    for seq in [0u32, 1, 63, 65, 512, u32::MAX] {
        let bad = d.path().join(format!("seq{seq}.uzds"));
        let mut b = bytes.clone();
        b[16..20].copy_from_slice(&seq.to_le_bytes());
        std::fs::write(&bad, b).unwrap();
        fails(
            &mut pretrain(&bad, &d.path().join("o.bin")),
            FAST,
            &[&format!("seq{seq}.uzds"), "offset 16"],
        );
    }
    for cut in [40usize, 127] {
        let bad = d.path().join(format!("cut{cut}.uzds"));
        std::fs::write(&bad, &bytes[..cut]).unwrap();
        fails(
            &mut pretrain(&bad, &d.path().join("o.bin")),
            FAST,
            &["truncated", &format!("{cut} bytes")],
        );
    }
    // An id past the vocabulary inside a record.
    let bad = d.path().join("id.uzds");
    let mut b = bytes.clone();
    b[128..130].copy_from_slice(&u16::MAX.to_le_bytes());
    std::fs::write(&bad, b).unwrap();
    fails(
        &mut pretrain(&bad, &d.path().join("o.bin")),
        Duration::from_secs(60),
        &[
            "id.uzds",
            "instance",
            "byte offset",
            "outside the vocabulary",
        ],
    );
    assert!(!d.path().join("o.bin").exists());
}

#[test]
fn resume_refuses_other_options() {
    let d = tempfile::tempdir().unwrap();
    let ds = dataset(d.path());
    let out = d.path().join("p.bin");
    ok(pretrain(&ds, &out).args(["--save-checkpoint-steps", "1"]));
    let step1 = d.path().join("p.bin-1");
    assert!(step1.is_file());
    for (batch, seed, needle) in [("4", "7", "batch-size 4"), ("2", "8", "--seed 8")] {
        let mut c = pretrain_with(&ds, &d.path().join("q.bin"), batch, seed);
        c.arg("--resume").arg(&step1);
        fails(&mut c, Duration::from_secs(60), &[needle, "resume"]);
    }
    // The final output exists now: no overwrite without --force.
    fails(&mut pretrain(&ds, &out), FAST, &["p.bin", "--force"]);
}

#[test]
fn generate_rejects_impossible_requests() {
    let m = fixture("gpt2_v1").join("uer_model.bin");
    for n in ["18446744073709551615", "1000000000", "0"] {
        fails(
            uerzoo()
                .arg("generate")
                .arg(&m)
                .args(["--prompt", "白日", "--num-return", n]),
            FAST,
            &["num-return"],
        );
    }
    fails(
        uerzoo()
            .arg("generate")
            .arg(&m)
            .args(["--prompt", "白日依山尽", "--max-length", "3"]),
        FAST,
        &["--max-length 3", "nothing is left"],
    );
}

#[test]
fn forward_checks_output_and_input_before_loading() {
    let d = tempfile::tempdir().unwrap();
    let m = fixture("roberta_v1").join("uer_model.bin");
    let mut empty = uerzoo::checkpoint::Checkpoint::default();
    empty.insert(
        "input_ids",
        uerzoo::checkpoint::Tensor::from_bytes(uerzoo::checkpoint::DType::I64, vec![0, 8], vec![]),
    );
    let input = d.path().join("in.safetensors");
    empty.write_safetensors(&input, false).unwrap();
    fails(
        uerzoo()
            .arg("forward")
            .arg(&m)
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(d.path().join("o.safetensors")),
        FAST,
        &["in.safetensors", "at least one sequence"],
    );
    // An existing output: refused before the model or the input is read.
    let existing = d.path().join("exists.safetensors");
    std::fs::write(&existing, b"x").unwrap();
    fails(
        uerzoo()
            .arg("forward")
            .arg("/nonexistent/model.bin")
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&existing),
        FAST,
        &["exists.safetensors", "--force"],
    );
}

#[test]
fn fill_mask_needs_a_positive_top_k() {
    let out = uerzoo()
        .arg("fill-mask")
        .arg(fixture("roberta_v1").join("uer_model.bin"))
        .arg("北京是[MASK]国的首都。")
        .args(["--top-k", "0"])
        .output()
        .unwrap();
    // A usage error: clap's exit status 2, the option named.
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--top-k"));
}

#[test]
fn preprocess_protects_its_inputs_and_existing_outputs() {
    let d = tempfile::tempdir().unwrap();
    let corpus = d.path().join("c.txt");
    std::fs::write(&corpus, "一二三四五六七八九十\n").unwrap();
    let vocab = fixture("roberta_v1").join("vocab.txt");
    let run = |out: &Path| {
        let mut c = uerzoo();
        c.args(["preprocess", "--target", "mlm", "--seq-length", "16"])
            .arg("--corpus")
            .arg(&corpus)
            .arg("--vocab")
            .arg(&vocab)
            .arg("--output")
            .arg(out);
        c
    };
    fails(&mut run(&corpus), FAST, &["c.txt", "--corpus"]);
    assert_eq!(
        std::fs::read_to_string(&corpus).unwrap(),
        "一二三四五六七八九十\n"
    );
    // A folder that does not exist yet is created.
    let out = d.path().join("new/dir/c.uzds");
    ok(&mut run(&out));
    fails(&mut run(&out), FAST, &["c.uzds", "--force"]);
    ok(run(&out).arg("--force"));
    assert!(strays(out.parent().unwrap()).is_empty());
}

#[test]
fn a_5mb_line_preprocesses_in_linear_time() {
    let d = tempfile::tempdir().unwrap();
    let corpus = d.path().join("long.txt");
    let line: String = "我们在北京大学读书。".repeat(170_000);
    assert!(line.len() > 5_000_000);
    std::fs::write(&corpus, format!("{line}\n")).unwrap();
    let start = Instant::now();
    ok(uerzoo()
        .args([
            "preprocess",
            "--target",
            "bert",
            "--seq-length",
            "128",
            "--dup-factor",
            "1",
        ])
        .arg("--corpus")
        .arg(&corpus)
        .arg("--vocab")
        .arg(fixture("bert_v1").join("vocab.txt"))
        .arg("--output")
        .arg(d.path().join("long.uzds")));
    let took = start.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn convert_checks_every_shape_and_the_vocabulary() {
    use uerzoo::checkpoint::{Checkpoint, DType, Tensor};
    let d = tempfile::tempdir().unwrap();
    let f = fixture("roberta_v1");
    let good = Checkpoint::open(f.join("uer_model.bin")).unwrap();
    let query = "encoder.transformer.0.self_attn.linear_layers.0.weight";
    let h = good.get(query).unwrap().shape[0];
    let word = "embedding.word_embedding.weight";
    let cases: Vec<(&str, &str, Tensor)> = vec![
        (
            "wide",
            query,
            Tensor::from_f32(vec![h, h + 1], &vec![0.0; h * (h + 1)]),
        ),
        ("empty", query, Tensor::from_f32(vec![0, h], &[])),
        (
            "int",
            query,
            Tensor::from_bytes(DType::I64, vec![h, h], vec![0; h * h * 8]),
        ),
        (
            "vocab",
            word,
            Tensor::from_f32(vec![100, h], &vec![0.0; 100 * h]),
        ),
    ];
    for (tag, key, t) in cases {
        let mut bad = good.clone();
        bad.insert(key, t);
        let input = d.path().join(format!("{tag}.bin"));
        bad.write_torch(&input, false).unwrap();
        let out = d.path().join(format!("{tag}_hf"));
        fails(
            uerzoo()
                .arg("convert")
                .arg(&input)
                .arg(&out)
                .args(["--to", "hf"])
                .arg("--config")
                .arg(f.join("uer_config.json"))
                .arg("--vocab")
                .arg(f.join("vocab.txt")),
            FAST,
            &[&format!("{tag}.bin"), key],
        );
        assert!(
            !out.join("model.safetensors").exists(),
            "{tag}: wrote weights"
        );
    }
    // A vocabulary of another size than the word embedding.
    let short = d.path().join("short_vocab.txt");
    let vocab = std::fs::read_to_string(f.join("vocab.txt")).unwrap();
    let lines: Vec<&str> = vocab.lines().collect();
    std::fs::write(&short, lines[..lines.len() - 6].join("\n") + "\n").unwrap();
    fails(
        uerzoo()
            .arg("convert")
            .arg(f.join("uer_model.bin"))
            .arg(d.path().join("short_hf"))
            .args(["--to", "hf"])
            .arg("--vocab")
            .arg(&short),
        FAST,
        &[word, "vocabulary"],
    );
}

#[test]
fn stale_temporaries_are_swept_and_an_interrupt_leaves_none() {
    let d = tempfile::tempdir().unwrap();
    // What a SIGKILLed run of a process that is gone left behind.
    let stale = d.path().join(".uerzoo-4000000000-abc.partial");
    std::fs::write(&stale, vec![0u8; 1000]).unwrap();
    let out = d.path().join("o.bin");
    ok(uerzoo()
        .arg("convert")
        .arg(fixture("roberta_v1").join("uer_model.bin"))
        .arg(&out)
        .args(["--to", "uer", "--uer-naming", "v2"]));
    assert!(out.is_file());
    assert!(!stale.exists(), "the stale temporary is still there");
    // SIGTERM during a long preprocess: exit 143 and no temporary left.
    let corpus = d.path().join("big.txt");
    let line = "我们在北京大学读书，今天天气很好。".repeat(20);
    let text: String = (0..60_000).map(|_| format!("{line}\n")).collect();
    std::fs::write(&corpus, text).unwrap();
    let mut child = uerzoo()
        .args([
            "preprocess",
            "--target",
            "mlm",
            "--seq-length",
            "128",
            "--dup-factor",
            "5",
        ])
        .arg("--corpus")
        .arg(&corpus)
        .arg("--vocab")
        .arg(fixture("roberta_v1").join("vocab.txt"))
        .arg("--output")
        .arg(d.path().join("big.uzds"))
        .spawn()
        .unwrap();
    // Wait until its temporary exists (bounded), then interrupt.
    let deadline = Instant::now() + Duration::from_secs(20);
    while strays(d.path()).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!strays(d.path()).is_empty(), "no temporary appeared");
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = child.wait().unwrap();
    if status.success() {
        // It finished before the signal arrived: nothing to check but the result.
        assert!(d.path().join("big.uzds").is_file());
    } else {
        assert_eq!(status.code(), Some(143), "{status}");
        assert!(!d.path().join("big.uzds").exists());
    }
    assert!(strays(d.path()).is_empty(), "left: {:?}", strays(d.path()));
}

#[test]
fn finetune_checks_its_output_before_training() {
    let d = tempfile::tempdir().unwrap();
    let existing = d.path().join("exists.bin");
    std::fs::write(&existing, b"x").unwrap();
    let base = |out: &Path| {
        let mut c = uerzoo();
        c.arg("finetune")
            .arg(fixture("roberta_v1").join("uer_model.bin"))
            .arg("--train")
            .arg(small("train.tsv"))
            .arg("--dev")
            .arg(small("dev.tsv"))
            .args(["--epochs", "1"])
            .arg("--output")
            .arg(out);
        c
    };
    fails(
        &mut base(&existing),
        Duration::from_secs(2),
        &["exists.bin", "--force"],
    );
    fails(
        base(d.path()).args(["--format", "uer"]),
        Duration::from_secs(2),
        &["directory"],
    );
    fails(
        base(&d.path().join("g.bin")).arg("--grid"),
        Duration::from_secs(2),
        &["--grid", "--output"],
    );
    // A folder no one may write into, root included (CI runs as root, who ignores a 0o555
    // folder's mode): sysfs refuses new files to every user (EACCES, or EROFS where it is
    // mounted read-only).
    #[cfg(target_os = "linux")]
    {
        let sys = Path::new("/sys");
        assert!(
            std::fs::write(sys.join("uerzoo-probe"), b"").is_err(),
            "/sys took a file: the case below proves nothing"
        );
        fails(
            &mut base(&sys.join("m.bin")),
            Duration::from_secs(2),
            &["/sys", "cannot write", "choose a writable folder"],
        );
    }
    // A read-only folder of one's own: refused by its mode for other users (root writes
    // there, so as root only the case above runs).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = d.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        if std::fs::write(ro.join("probe"), b"").is_err() {
            fails(
                &mut base(&ro.join("m.bin")),
                Duration::from_secs(2),
                &["ro", "cannot write"],
            );
        }
    }
}

#[test]
fn verify_of_a_cache_that_does_not_exist_fails() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-cache");
    let text = fails(
        uerzoo().arg("verify").arg("--cache-dir").arg(&missing),
        Duration::from_secs(2),
        &["does not exist", "no-such-cache"],
    );
    assert!(!text.contains("0 file(s) checked"), "{text}");
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let f = fixture("roberta_v1");
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("hf");
    let mut convert = uerzoo();
    convert
        .arg("convert")
        .arg(f.join("uer_model.bin"))
        .arg(&out)
        .args(["--to", "hf", "--dry-run"]);
    let mut inspect = uerzoo();
    inspect.arg("inspect").arg(f.join("uer_model.bin"));
    let mut list = uerzoo();
    list.arg("list");
    for cmd in [&mut inspect, &mut list, &mut convert] {
        // The reader is gone before the first write: `uerzoo … | head -0`.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let result = cmd
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&result.stderr);
        assert!(
            matches!(result.status.code(), Some(0 | 141)),
            "{cmd:?}: {}:\n{err}",
            result.status
        );
        assert!(err.is_empty(), "{cmd:?} said:\n{err}");
    }
    assert!(!out.exists(), "a dry run wrote {}", out.display());
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_convert_out_of_room_leaves_the_output_folder_as_it_was() {
    use std::os::unix::process::CommandExt;
    let f = fixture("roberta_v1");
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("keep.txt"), "mine\n").unwrap();
    let before = listing(d.path());
    // A file-size limit below the weights' size: the write fails part-way, as on a full disk.
    let limited = |to: &str, out: &Path| {
        let mut cmd = uerzoo();
        cmd.arg("convert")
            .arg(f.join("uer_model.bin"))
            .arg(out)
            .args(["--to", to])
            .arg("--config")
            .arg(f.join("uer_config.json"))
            .arg("--vocab")
            .arg(f.join("vocab.txt"));
        // SAFETY: only `setrlimit`, async-signal-safe, runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: 1 << 20,
                    rlim_max: 1 << 20,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    };
    for (to, name) in [("hf", "hf_out"), ("uer", "out.bin")] {
        let out = d.path().join(name);
        fails(&mut limited(to, &out), FAST, &[name, "ulimit -f"]);
        assert!(!out.exists(), "--to {to}: {} is there", out.display());
        assert_eq!(listing(d.path()), before, "--to {to}");
    }
}

#[test]
fn an_interrupted_convert_leaves_the_output_folder_as_it_was() {
    use uerzoo::checkpoint::{Checkpoint, Tensor};
    let d = tempfile::tempdir().unwrap();
    // Weights large enough (60 MB) that the write is still under way when SIGTERM comes.
    let mut big = Checkpoint::open(fixture("roberta_v1").join("uer_model.bin")).unwrap();
    let word = "embedding.word_embedding.weight";
    let h = big.get(word).unwrap().shape[1];
    let rows = (60 << 20) / (4 * h);
    big.insert(word, Tensor::from_f32(vec![rows, h], &vec![0.5; rows * h]));
    let input = d.path().join("big.bin");
    big.write_torch(&input, false).unwrap();
    let dir = d.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("keep.txt"), "mine\n").unwrap();
    let before = listing(&dir);
    let out = dir.join("o.bin");
    let mut child = uerzoo()
        .arg("convert")
        .arg(&input)
        .arg(&out)
        .args(["--to", "uer", "--uer-naming", "v2"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while strays(&dir).is_empty() && Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    if status.success() {
        // It finished before the signal arrived: the result is whole.
        assert!(Checkpoint::open(&out).is_ok());
    } else {
        assert_eq!(status.code(), Some(143), "{status}");
        assert_eq!(listing(&dir), before);
    }
    assert!(strays(&dir).is_empty(), "left: {:?}", strays(&dir));
}

#[test]
fn messages_name_the_users_files_never_a_temporary() {
    let d = tempfile::tempdir().unwrap();
    let f = fixture("roberta_v1");
    // The config comes from a registry entry (it has no file of its own); the output is a
    // bare name, written into the working folder.
    let out = ok(uerzoo()
        .current_dir(d.path())
        .arg("convert")
        .arg(f.join("uer_model.bin"))
        .arg("o.bin")
        .args(["--to", "uer", "--model", "chinese_roberta_L-2_H-128"]));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        !said.contains(".tmp") && !said.contains(".partial"),
        "a temporary is named:\n{said}"
    );
    assert!(said.contains("uer_config.json\n"), "{said}");
    assert!(
        said.contains("(copy of ") && said.contains("vocab.txt)"),
        "{said}"
    );
    assert_eq!(listing(d.path()), ["o.bin", "uer_config.json", "vocab.txt"]);
    let config = std::fs::read_to_string(d.path().join("uer_config.json")).unwrap();
    assert!(config.contains("\"hidden_size\": 128"), "{config}");
}

#[test]
fn inspect_of_an_unknown_layout_says_what_to_do() {
    let views = common::shared().join("fixtures/torch_formats/views.bin");
    let out = ok(uerzoo().arg("inspect").arg(&views));
    let text = String::from_utf8_lossy(&out.stdout);
    let model = text
        .lines()
        .find(|l| l.starts_with("model:"))
        .unwrap_or_else(|| panic!("no model line:\n{text}"));
    assert!(model.contains("not detected"), "{model}");
    // `inspect` has no `--arch`; the hint names the command that has.
    assert!(!model.contains("pass --arch"), "{model}");
    assert!(
        model.contains("uerzoo convert") && model.contains("--arch"),
        "{model}"
    );
}
