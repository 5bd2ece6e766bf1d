//! Every family of the zoo (RoBERTa, BERT, ALBERT, GPT-2) × every output format a command
//! offers: fine-tuned for one epoch on book_review_small, saved, and read back by
//! `predict` with the accuracy the run itself reported; pretrained for 5 steps (ALBERT
//! with its MLM + sentence-order target), saved in UER naming v1 and v2, and read back
//! (`fill-mask` for the encoders, `generate` for GPT-2).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    common::shared().join("fixtures/uer").join(name)
}

fn small(name: &str) -> PathBuf {
    common::shared()
        .join("data/datasets/book_review_small")
        .join(name)
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The number after `prefix` on the first line of `text` that starts with it.
fn number_after(text: &str, prefix: &str) -> f64 {
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line `{prefix}…` in:\n{text}"));
    line.split_whitespace().next().unwrap().parse().unwrap()
}

/// Fine-tunes `fixture` one epoch into `out` with `extra` options; returns the test
/// accuracy it reported.
fn finetune(fixture_name: &str, out: &Path, extra: &[&str]) -> f64 {
    let (ok, stdout, stderr) = run(Command::new(common::uerzoo_bin())
        .arg("finetune")
        .arg(fixture(fixture_name).join("uer_model.bin"))
        .arg("--train")
        .arg(small("train.tsv"))
        .arg("--dev")
        .arg(small("dev.tsv"))
        .arg("--test")
        .arg(small("test.tsv"))
        .args([
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--learning-rate",
            "3e-4",
        ])
        .args(["--seq-length", "32", "--seed", "7"])
        .args(extra)
        .arg("--output")
        .arg(out));
    assert!(ok, "finetune {fixture_name} {extra:?}:\n{stdout}\n{stderr}");
    number_after(&stdout, "test accuracy: ")
}

fn predict_accuracy(model: &Path) -> f64 {
    predict_accuracy_with(model, &["--seq-length", "32"])
}

fn predict_accuracy_with(model: &Path, extra: &[&str]) -> f64 {
    let (ok, stdout, stderr) = run(Command::new(common::uerzoo_bin())
        .arg("predict")
        .arg(model)
        .arg("--input")
        .arg(small("test.tsv"))
        .arg("--output")
        .arg(model.with_extension("predictions.tsv"))
        .arg("--labels")
        .args(extra));
    assert!(ok, "predict {}:\n{stdout}\n{stderr}", model.display());
    number_after(&stdout, "accuracy: ")
}

#[test]
fn every_family_fine_tunes_to_every_format_and_predict_reads_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &[&str])] = &[
        ("roberta_v1", "uer-v1", &["--uer-naming", "v1"]),
        ("roberta_v1", "uer-v2", &["--uer-naming", "v2"]),
        ("roberta_v1", "hf", &["--format", "hf"]),
        ("bert_v1", "uer-v1", &["--uer-naming", "v1"]),
        ("bert_v1", "uer-v2", &["--uer-naming", "v2"]),
        ("bert_v1", "hf", &["--format", "hf"]),
        ("albert_v1", "uer-v1", &["--uer-naming", "v1"]),
        ("albert_v1", "uer-v2", &["--uer-naming", "v2"]),
        ("albert_v1", "hf", &["--format", "hf"]),
        // The zoo page's run_classifier on GPT-2 weights (causal mask, last-token pooling).
        ("gpt2_v1", "uer-v1", &["--uer-naming", "v1"]),
        ("gpt2_v1", "uer-v2", &["--uer-naming", "v2"]),
    ];
    for &(name, format, extra) in cases {
        // One folder per model: the config and vocabulary are written beside the weights.
        let folder = dir.path().join(format!("{name}-{format}"));
        std::fs::create_dir(&folder).unwrap();
        let out = if format == "hf" {
            folder.join("model")
        } else {
            folder.join("classifier.bin")
        };
        let acc = finetune(name, &out, extra);
        assert!((0.0..=1.0).contains(&acc), "{name} {format}: {acc}");
        assert_eq!(
            predict_accuracy(&out),
            acc,
            "{name} {format}: predict on the saved model reproduces the run's test accuracy"
        );
    }
    // GPT-2 has no HF classifier form in uerzoo: refused before any training.
    let started = std::time::Instant::now();
    let (ok, stdout, stderr) = run(Command::new(common::uerzoo_bin())
        .arg("finetune")
        .arg(fixture("gpt2_v1").join("uer_model.bin"))
        .arg("--train")
        .arg(small("train.tsv"))
        .arg("--dev")
        .arg(small("dev.tsv"))
        .args(["--format", "hf", "--output"])
        .arg(dir.path().join("gpt2-hf")));
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("--format uer"), "{stderr}");
    assert!(
        !stdout.contains("epoch 1/1"),
        "refused before training: {stdout}"
    );
    assert!(
        started.elapsed().as_secs_f64() < 2.0 + 8.0,
        "refused at once"
    );
}

/// A dataset of `target` (mlm, lm, bert or albert) for `fixture`'s vocabulary, 32-token
/// rows.
fn dataset(dir: &Path, fixture_name: &str, target: &str) -> PathBuf {
    let corpus_file = if target == "bert" || target == "albert" {
        "data/corpora/CLUECorpusSmall_bert_sampled.txt"
    } else {
        "data/corpora/CLUECorpusSmall_sampled.txt"
    };
    let corpus = common::shared().join(corpus_file);
    let out = dir.join(format!("{fixture_name}-{target}.uzds"));
    let (ok, stdout, stderr) = run(Command::new(common::uerzoo_bin())
        .args(["preprocess", "--target", target, "--seq-length", "32"])
        .args(["--dup-factor", "1"])
        .arg("--corpus")
        .arg(&corpus)
        .arg("--vocab")
        .arg(fixture(fixture_name).join("vocab.txt"))
        .arg("--output")
        .arg(&out));
    assert!(
        ok,
        "preprocess {fixture_name} {target}:\n{stdout}\n{stderr}"
    );
    out
}

#[test]
fn every_family_pretrains_5_steps_to_both_namings_and_the_result_runs() {
    let dir = tempfile::tempdir().unwrap();
    for (name, target) in [
        ("roberta_v1", "mlm"),
        ("bert_v1", "bert"),
        // ALBERT's own objective: MLM + sentence-order prediction.
        ("albert_v1", "albert"),
        ("gpt2_v1", "lm"),
    ] {
        let ds = dataset(dir.path(), name, target);
        for naming in ["v1", "v2"] {
            let folder = dir.path().join(format!("{name}-{naming}"));
            std::fs::create_dir(&folder).unwrap();
            let out = folder.join("pretrained.bin");
            let (ok, stdout, stderr) = run(Command::new(common::uerzoo_bin())
                .arg("pretrain")
                .arg("--model")
                .arg(fixture(name).join("uer_model.bin"))
                .arg("--dataset")
                .arg(&ds)
                .args([
                    "--target",
                    target,
                    "--total-steps",
                    "5",
                    "--batch-size",
                    "4",
                ])
                .args(["--uer-naming", naming, "--seed", "7"])
                .arg("--output")
                .arg(&out));
            assert!(ok, "pretrain {name} {target} {naming}:\n{stdout}\n{stderr}");
            let text = format!("{stdout}{stderr}");
            assert!(text.contains("5 steps"), "{name}: {text}");
            if target == "bert" || target == "albert" {
                assert!(text.contains("loss_sp"), "{name}: {text}");
            }
            // The loss is a number (not NaN) on the last report.
            assert!(!text.contains("NaN"), "{name}: {text}");
            let body = |path: &Path| -> std::collections::BTreeSet<String> {
                let ckpt = uerzoo::checkpoint::Checkpoint::open(path).unwrap();
                ckpt.tensors
                    .iter()
                    .map(|(k, _)| k.clone())
                    .filter(|k| k.starts_with("embedding.") || k.starts_with("encoder."))
                    .collect()
            };
            let (got, input) = (body(&out), body(&fixture(name).join("uer_model.bin")));
            if naming == "v1" {
                assert_eq!(got, input, "{name}: naming v1 is the fixture's own");
            } else {
                // ALBERT's shared layer and projection keep their names in v2; its embedding
                // is renamed as every family's is.
                assert_ne!(got, input, "{name}: naming v2 renames the embedding");
                assert_eq!(
                    got.len(),
                    input.len(),
                    "{name}: same tensors under v2 names"
                );
            }
            // The sentence-prediction head under the naming's key: NSP for BERT, SOP for
            // ALBERT in v1 (the zoo's files), `target.sp` in v2.
            let head = match (target, naming) {
                ("bert", "v1") => Some("target.nsp_linear_1.weight"),
                ("albert", "v1") => Some("target.sop_linear_1.weight"),
                ("bert" | "albert", _) => Some("target.sp.linear_1.weight"),
                _ => None,
            };
            if let Some(head) = head {
                let ckpt = uerzoo::checkpoint::Checkpoint::open(&out).unwrap();
                assert!(ckpt.get(head).is_some(), "{name} {naming}: no {head}");
            }
            let reload = if target == "lm" {
                run(Command::new(common::uerzoo_bin())
                    .arg("generate")
                    .arg(&out)
                    .args([
                        "--prompt",
                        "白日依山尽",
                        "--max-length",
                        "12",
                        "--seed",
                        "1",
                    ]))
            } else {
                run(Command::new(common::uerzoo_bin())
                    .arg("fill-mask")
                    .arg(&out)
                    .arg("北京是[MASK]国的首都"))
            };
            assert!(
                reload.0,
                "{name} {naming}: the pretrained model runs:\n{}\n{}",
                reload.1, reload.2
            );
            assert!(!reload.1.trim().is_empty(), "{name} {naming}: no output");
        }
    }
}

#[test]
fn two_models_fine_tuned_into_one_folder_each_keep_their_own_config() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        dir.path().join("roberta.bin"),
        dir.path().join("albert.bin"),
    );
    let acc_a = finetune("roberta_v1", &a, &[]);
    let acc_b = finetune("albert_v1", &b, &["--pooling", "mean"]);
    // The second model's config differs from the folder's: it gets its own companion.
    let own = uerzoo::model::open::companion(&b, "uer_config.json");
    assert!(own.is_file(), "{} missing", own.display());
    // The folder's config stays the first model's, with the options predict needs.
    let folder: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("uer_config.json")).unwrap())
            .unwrap();
    let source: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixture("roberta_v1").join("uer_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(folder["hidden_size"], source["hidden_size"]);
    assert_eq!(folder["seq_length"], 32);
    assert_eq!(folder["pooling"], "first");
    let own: serde_json::Value = serde_json::from_slice(&std::fs::read(&own).unwrap()).unwrap();
    assert_eq!(own["pooling"], "mean");
    // predict reads seq_length and pooling from there: no flags needed.
    assert_eq!(predict_accuracy_with(&a, &[]), acc_a);
    assert_eq!(predict_accuracy_with(&b, &[]), acc_b);
}
