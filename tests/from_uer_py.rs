//! docs/from-uer-py.md is a test: every `uerzoo …` command of its fenced `sh` blocks runs
//! (the built binary first on `PATH`, `sh -c` so the doc's quoting holds) and exits 0, and a
//! `text` block right after an `sh` block is that block's stdout. Each block runs in a fresh
//! working folder holding the doc's placeholder files that its commands name ([`PLACED`],
//! from the fixtures), with a private HF cache, no network, and the zoo name the doc uses
//! (`chinese_roberta_L-2_H-128`) imported there as a stand-in of its shape and vocabulary.
//! What cannot run here is listed in [`NOT_RUN`] by its first line with the reason, so a new
//! command fails this test until it runs or is listed; [`SHRUNK`] cuts the doc's step and epoch
//! counts to a CPU test's size (and nothing else).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The zoo name the doc's commands use for a pretrained model.
const MODEL_NAME: &str = "chinese_roberta_L-2_H-128";

/// The doc's placeholder paths (relative to the working folder) and what stands for them:
/// a file under the repository root, or a file the test makes (`@…`).
const PLACED: &[(&str, &str)] = &[
    ("models/google_zh_vocab.txt", "vocab/google_zh_vocab.txt"),
    (
        "models/cluecorpussmall_spm.model",
        "vocab/cluecorpussmall_spm.model",
    ),
    (
        "corpora/book_review.txt",
        "tests/fixtures/data/corpora/CLUECorpusSmall_bert_sampled.txt",
    ),
    (
        "datasets/douban_book_review/train.tsv",
        "tests/fixtures/data/datasets/book_review_small/train.tsv",
    ),
    (
        "datasets/douban_book_review/dev.tsv",
        "tests/fixtures/data/datasets/book_review_small/dev.tsv",
    ),
    (
        "datasets/douban_book_review/test.tsv",
        "tests/fixtures/data/datasets/book_review_small/test.tsv",
    ),
    (
        "datasets/douban_book_review/test_nolabel.tsv",
        "@test.tsv without its label column",
    ),
    (
        "train.tsv",
        "tests/fixtures/data/datasets/book_review_small/train.tsv",
    ),
    (
        "dev.tsv",
        "tests/fixtures/data/datasets/book_review_small/dev.tsv",
    ),
    (
        "gpt2/uer_model.bin",
        "tests/fixtures/fixtures/uer/gpt2_v1/uer_model.bin",
    ),
    (
        "uer_model.bin",
        "tests/fixtures/fixtures/uer/gpt2_v1/uer_model.bin",
    ),
    (
        "uer_config.json",
        "tests/fixtures/fixtures/uer/gpt2_v1/uer_config.json",
    ),
    ("vocab.txt", "tests/fixtures/fixtures/uer/gpt2_v1/vocab.txt"),
    ("beginning.txt", "@a prompt line"),
    ("texts.txt", "@two lines of text"),
    (
        "dataset.pt",
        "tests/fixtures/fixtures/uer_dataset/mlm_dataset.pt",
    ),
];

/// Files that go beside a placed one (a UER file's config and vocabulary), unnamed by the
/// commands: the placed file's doc path, the companion's doc path, its source.
const BESIDE: &[(&str, &str, &str)] = &[
    (
        "gpt2/uer_model.bin",
        "gpt2/uer_config.json",
        "tests/fixtures/fixtures/uer/gpt2_v1/uer_config.json",
    ),
    (
        "gpt2/uer_model.bin",
        "gpt2/vocab.txt",
        "tests/fixtures/fixtures/uer/gpt2_v1/vocab.txt",
    ),
];

/// The doc's budgets and what the test runs instead (whole flags with their values).
const SHRUNK: &[(&str, &str)] = &[
    ("--total-steps 5000", "--total-steps 2"),
    ("--save-checkpoint-steps 2500", "--save-checkpoint-steps 1"),
    ("--batch-size 64", "--batch-size 8"),
    ("--epochs 8", "--epochs 1"),
    ("--max-length 128", "--max-length 24"),
];

/// Commands not run here, by their first line, with the reason.
const NOT_RUN: &[(&str, &str)] = &[];

/// One command block: its `uerzoo` commands (continuation lines joined) and the output shown
/// after it.
struct Block {
    first_line: String,
    commands: Vec<String>,
    shown: Option<String>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn blocks(doc: &str) -> Vec<Block> {
    let mut fenced: Vec<(String, Vec<String>)> = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(lang) = line.trim_start().strip_prefix("```") else {
            continue;
        };
        let body: Vec<String> = lines
            .by_ref()
            .take_while(|l| !l.trim_start().starts_with("```"))
            .map(String::from)
            .collect();
        fenced.push((lang.trim().to_string(), body));
    }
    let mut blocks: Vec<Block> = Vec::new();
    for (lang, body) in fenced {
        match lang.as_str() {
            "sh" => {
                let mut commands = Vec::new();
                let mut current = String::new();
                for line in &body {
                    let (text, more) = match line.trim_end().strip_suffix('\\') {
                        Some(t) => (t, true),
                        None => (line.as_str(), false),
                    };
                    current.push_str(text.trim());
                    current.push(' ');
                    if !more {
                        let command = current.split_whitespace().collect::<Vec<_>>().join(" ");
                        if command.starts_with("uerzoo ") {
                            commands.push(command);
                        }
                        current.clear();
                    }
                }
                blocks.push(Block {
                    first_line: body.first().cloned().unwrap_or_default(),
                    commands,
                    shown: None,
                });
            }
            "text" => {
                let last = blocks
                    .last_mut()
                    .expect("a `text` block follows an `sh` block");
                assert!(
                    last.shown.is_none(),
                    "two `text` blocks after one `sh` block"
                );
                last.shown = Some(body.join("\n") + "\n");
            }
            other => panic!("docs/from-uer-py.md: a block of unexpected kind `{other}`"),
        }
    }
    blocks
}

/// `command` with the [`SHRUNK`] budgets (whole words only).
fn shrink(command: &str) -> String {
    let mut padded = format!(" {command} ");
    for (from, to) in SHRUNK {
        padded = padded.replace(&format!(" {from} "), &format!(" {to} "));
    }
    padded.trim().to_string()
}

/// A UER-format (naming v1) RoBERTa of the Tiny miniature's shape: L=2, H=128, F=512, the
/// 21128 tokens of google_zh_vocab.txt, the MLM head; small deterministic values.
fn write_tiny(path: &Path) {
    use uerzoo::checkpoint::{Checkpoint, Tensor};
    let (layers, h, f, v) = (2, 128, 512, 21128);
    let mut state = 7u32;
    let mut random = |shape: Vec<usize>| {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                ((state >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.05
            })
            .collect();
        Tensor::from_f32(shape, &values)
    };
    let ones = |n: usize| Tensor::from_f32(vec![n], &vec![1.0; n]);
    let mut tensors: Vec<(String, Tensor)> = vec![
        ("embedding.word_embedding.weight".into(), random(vec![v, h])),
        (
            "embedding.position_embedding.weight".into(),
            random(vec![512, h]),
        ),
        (
            "embedding.segment_embedding.weight".into(),
            random(vec![3, h]),
        ),
        ("embedding.layer_norm.gamma".into(), ones(h)),
        ("embedding.layer_norm.beta".into(), random(vec![h])),
    ];
    for i in 0..layers {
        let p = format!("encoder.transformer.{i}.");
        for j in 0..3 {
            let l = format!("{p}self_attn.linear_layers.{j}");
            tensors.push((format!("{l}.weight"), random(vec![h, h])));
            tensors.push((format!("{l}.bias"), random(vec![h])));
        }
        tensors.push((
            format!("{p}self_attn.final_linear.weight"),
            random(vec![h, h]),
        ));
        tensors.push((format!("{p}self_attn.final_linear.bias"), random(vec![h])));
        tensors.push((
            format!("{p}feed_forward.linear_1.weight"),
            random(vec![f, h]),
        ));
        tensors.push((format!("{p}feed_forward.linear_1.bias"), random(vec![f])));
        tensors.push((
            format!("{p}feed_forward.linear_2.weight"),
            random(vec![h, f]),
        ));
        tensors.push((format!("{p}feed_forward.linear_2.bias"), random(vec![h])));
        for ln in ["layer_norm_1", "layer_norm_2"] {
            tensors.push((format!("{p}{ln}.gamma"), ones(h)));
            tensors.push((format!("{p}{ln}.beta"), random(vec![h])));
        }
    }
    tensors.push(("target.mlm_linear_1.weight".into(), random(vec![h, h])));
    tensors.push(("target.mlm_linear_1.bias".into(), random(vec![h])));
    tensors.push(("target.layer_norm.gamma".into(), ones(h)));
    tensors.push(("target.layer_norm.beta".into(), random(vec![h])));
    tensors.push(("target.mlm_linear_2.weight".into(), random(vec![v, h])));
    tensors.push(("target.mlm_linear_2.bias".into(), random(vec![v])));
    let ckpt = Checkpoint {
        tensors,
        ..Checkpoint::default()
    };
    ckpt.write_torch(path, true).unwrap();
}

/// Puts the [`PLACED`] files that `commands` name into `work` (only those, so that no
/// file a block does not name is found beside its outputs).
fn place(work: &Path, commands: &[String]) {
    let named = |path: &str| {
        commands
            .iter()
            .any(|c| c.split_whitespace().any(|word| word == path))
    };
    let placed = PLACED.iter().filter(|(p, _)| named(p)).copied();
    let beside = BESIDE
        .iter()
        .filter(|(p, _, _)| named(p))
        .map(|&(_, path, source)| (path, source));
    for (doc_path, source) in placed.chain(beside) {
        let target = work.join(doc_path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        let bytes = match source.strip_prefix('@') {
            None => std::fs::read(root().join(source)).unwrap_or_else(|e| panic!("{source}: {e}")),
            Some("test.tsv without its label column") => {
                let test = std::fs::read_to_string(
                    root().join("tests/fixtures/data/datasets/book_review_small/test.tsv"),
                )
                .unwrap();
                test.lines()
                    .map(|l| l.split_once('\t').map_or(l, |(_, text)| text).to_string() + "\n")
                    .collect::<String>()
                    .into_bytes()
            }
            Some("a prompt line") => "中国的首都是\n".as_bytes().to_vec(),
            Some("two lines of text") => "北京是中国的首都。\n我喜欢读书。\n".as_bytes().to_vec(),
            Some(other) => panic!("no maker for `{other}`"),
        };
        std::fs::write(&target, bytes).unwrap();
    }
}

/// `sh -c script` in `work`, the built binary first on `PATH`, the HF cache in `home`, no
/// network.
fn sh(script: &str, work: &Path, home: &Path) -> Command {
    let bin = common::uerzoo_bin();
    let path = std::env::join_paths(
        std::iter::once(bin.parent().unwrap().to_path_buf()).chain(
            std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                .unwrap_or_default(),
        ),
    )
    .unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .current_dir(work)
        .env("PATH", path)
        .env("HF_HOME", home)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_TOKEN")
        .env_remove("UERZOO_SHARED")
        .stdin(Stdio::null());
    cmd
}

fn trimmed(text: &str) -> String {
    text.lines()
        .map(|l| format!("{}\n", l.trim_end()))
        .collect()
}

#[test]
fn commands_are_joined_shrunk_and_classified() {
    let doc = "```sh\n# UER-py\npython3 x.py --a \\\n  --b\nuerzoo pretrain --dataset d \\\n    --total-steps 5000 --batch-size 64\n```\n```text\nout\n```\n";
    let blocks = blocks(doc);
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].first_line, "# UER-py");
    assert_eq!(
        blocks[0].commands,
        ["uerzoo pretrain --dataset d --total-steps 5000 --batch-size 64"]
    );
    assert_eq!(blocks[0].shown.as_deref(), Some("out\n"));
    assert_eq!(
        shrink(&blocks[0].commands[0]),
        "uerzoo pretrain --dataset d --total-steps 2 --batch-size 8"
    );
    // Whole flags only: `--total-steps 50000` is not `--total-steps 5000`.
    assert_eq!(shrink("x --total-steps 50000"), "x --total-steps 50000");
}

#[test]
fn every_command_of_docs_from_uer_py_runs_and_prints_what_it_shows() {
    let doc = std::fs::read_to_string(root().join("docs/from-uer-py.md")).unwrap();
    let blocks = blocks(&doc);
    let commands: Vec<String> = blocks
        .iter()
        .flat_map(|b| b.commands.iter().cloned())
        .collect();
    for (line, _) in NOT_RUN {
        assert!(
            commands.iter().any(|c| c.starts_with(line)),
            "NOT_RUN lists `{line}`, which the doc no longer has"
        );
    }
    for (path, _) in PLACED {
        assert!(
            commands
                .iter()
                .any(|c| c.split_whitespace().any(|word| word == *path)),
            "PLACED has `{path}`, which no command of the doc names"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("huggingface");
    // The zoo name the doc uses, imported as a stand-in of its shape (the registry's
    // vocabulary comes with it from the binary).
    let tiny = dir.path().join("tiny.bin");
    write_tiny(&tiny);
    let out = sh(
        &format!("uerzoo import {MODEL_NAME} '{}'", tiny.display()),
        dir.path(),
        &home,
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ran = 0;
    let mut failures = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let work = dir.path().join(format!("block{i}"));
        std::fs::create_dir_all(&work).unwrap();
        place(&work, &block.commands);
        let mut stdout = String::new();
        for command in &block.commands {
            if NOT_RUN.iter().any(|(line, _)| command.starts_with(line)) {
                continue;
            }
            let run = shrink(command);
            let out = sh(&run, &work, &home).output().unwrap();
            ran += 1;
            if !out.status.success() {
                failures.push(format!(
                    "block `{}`: `{run}` failed ({}):\n{}",
                    block.first_line,
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            stdout.push_str(&String::from_utf8_lossy(&out.stdout));
        }
        if let Some(shown) = &block.shown
            && trimmed(shown) != trimmed(&stdout)
        {
            failures.push(format!(
                "block `{}`: the doc shows\n{shown}--- it prints\n{stdout}",
                block.first_line
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(ran >= 8, "only {ran} commands ran");
}
