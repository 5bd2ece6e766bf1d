//! A word-based (sentencepiece) RoBERTa end to end, as a user runs it: a small model made
//! here with the zoo's `cluecorpussmall_spm.model` (`vocab/`), `uerzoo convert --to hf
//! --arch word-roberta` (the tokenizer files written beside it), `uerzoo finetune` of the HF
//! folder on book_review_small to both formats, and `uerzoo predict`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use uerzoo::checkpoint::Checkpoint;
use uerzoo::convert::{self, Naming, ToUerOptions};
use uerzoo::model::{ModelConfig, random_checkpoint};
use uerzoo::tokenizer::Tokenizer;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn uerzoo(args: &[&str]) -> String {
    let out = common::run_ok(Command::new(common::uerzoo_bin()).args(args));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn data(name: &str) -> PathBuf {
    common::shared()
        .join("data/datasets/book_review_small")
        .join(name)
}

/// The number after `key` on the line that holds it.
fn number_after(text: &str, key: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.contains(key))
        .unwrap_or_else(|| panic!("no `{key}` in:\n{text}"));
    let rest = &line[line.find(key).unwrap() + key.len()..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

/// A UER-py config of a tiny word-based RoBERTa (the zoo's word models' layout).
const CONFIG: &str = r#"{
  "emb_size": 32,
  "feedforward_size": 64,
  "hidden_size": 32,
  "hidden_act": "gelu",
  "heads_num": 2,
  "layers_num": 2,
  "max_seq_length": 64,
  "dropout": 0.1,
  "embedding": "word_pos_seg",
  "encoder": "transformer",
  "mask": "fully_visible",
  "target": "mlm",
  "tokenizer": "space"
}
"#;

/// Writes `dir/word.bin` (UER naming v1, random weights sized for the sentencepiece
/// vocabulary) with `uer_config.json` and `spiece.model` beside it, as `pretrain` leaves a
/// model.
fn make_word_model(dir: &Path) -> (PathBuf, usize) {
    let spm = common::vocab("cluecorpussmall_spm.model");
    let vocab_size = Tokenizer::from_spm_file(&spm).unwrap().vocab_size();
    let mut cfg = ModelConfig::from_uer_json(&serde_json::from_str(CONFIG).unwrap()).unwrap();
    cfg.vocab_size = vocab_size;
    cfg.max_seq_length = 64;
    let v2 = random_checkpoint(&cfg, 5);
    let (v1, _) = convert::to_uer(
        &v2,
        &ToUerOptions {
            naming: Naming::V1,
            ..Default::default()
        },
    )
    .unwrap();
    let bin = dir.join("word.bin");
    v1.write_torch(&bin, false).unwrap();
    std::fs::write(dir.join("uer_config.json"), CONFIG).unwrap();
    std::fs::copy(&spm, dir.join("spiece.model")).unwrap();
    (bin, vocab_size)
}

#[test]
fn word_model_converts_finetunes_and_predicts() {
    let tmp = tempfile::tempdir().unwrap();
    let (bin, vocab_size) = make_word_model(tmp.path());
    let spm = common::vocab("cluecorpussmall_spm.model");
    // convert → an HF folder with the sentencepiece tokenizer files (the config and the
    // sentencepiece model beside the UER file are read without --config and --vocab).
    let hf = tmp.path().join("word_hf");
    let o = common::run_ok(Command::new(common::uerzoo_bin()).args([
        "convert",
        s(&bin),
        s(&hf),
        "--to",
        "hf",
        "--arch",
        "word-roberta",
    ]));
    let said = String::from_utf8_lossy(&o.stdout);
    for (what, file) in [
        ("UER config", "uer_config.json"),
        ("vocabulary", "spiece.model"),
    ] {
        let note = format!("note: using the {what} {}", tmp.path().join(file).display());
        assert!(said.contains(&note), "{said}");
    }
    assert_eq!(
        std::fs::read(hf.join("spiece.model")).unwrap(),
        std::fs::read(&spm).unwrap()
    );
    assert!(!hf.join("vocab.txt").exists());
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["vocab_size"], vocab_size);
    assert_eq!(cfg["num_attention_heads"], 2);
    let tok: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("tokenizer_config.json")).unwrap())
            .unwrap();
    assert_eq!(tok["tokenizer_class"], "AlbertTokenizer");

    // finetune the HF folder, to a UER file and to an HF folder; predict each.
    let (train_tsv, dev_tsv, test_tsv) = (data("train.tsv"), data("dev.tsv"), data("test.tsv"));
    let train = [
        "--train",
        s(&train_tsv),
        "--dev",
        s(&dev_tsv),
        "--test",
        s(&test_tsv),
    ];
    let opts = [
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--learning-rate",
        "1e-3",
        "--seq-length",
        "48",
        "--dropout",
        "0",
    ];
    // An HF output records no `seq_length` for predict yet (see tests/hf_finetune.rs), so
    // its predict is given the training length.
    for (format, out, flags) in [
        ("uer", tmp.path().join("cls.bin"), &[][..]),
        ("hf", tmp.path().join("cls_hf"), &["--seq-length", "48"][..]),
    ] {
        let mut args: Vec<&str> = vec!["finetune", s(&hf)];
        args.extend(train);
        args.extend(opts);
        args.extend(["--format", format, "--output", s(&out)]);
        let log = uerzoo(&args);
        let test_acc = number_after(&log, "test accuracy:");
        // The tokenizer went along: predict needs nothing but the model.
        let pred = tmp.path().join(format!("pred_{format}.tsv"));
        let mut args = vec![
            "predict",
            s(&out),
            "--input",
            s(&test_tsv),
            "--output",
            s(&pred),
            "--labels",
        ];
        args.extend(flags);
        let said = uerzoo(&args);
        assert_eq!(
            number_after(&said, "accuracy:"),
            test_acc,
            "{format}: predict's accuracy is finetune's test accuracy\n{log}\n{said}"
        );
        let labels = std::fs::read_to_string(&pred).unwrap();
        assert_eq!(labels.lines().count(), 51, "{labels}");
        // With the spm model passed by hand: the same labels.
        let again = tmp.path().join(format!("pred_{format}_spm.tsv"));
        let mut args = vec![
            "predict",
            s(&out),
            "--input",
            s(&test_tsv),
            "--output",
            s(&again),
            "--vocab",
            s(&spm),
        ];
        args.extend(flags);
        uerzoo(&args);
        assert_eq!(std::fs::read_to_string(&again).unwrap(), labels, "{format}");
        // The output is a complete, loadable checkpoint of the word model.
        let ckpt = Checkpoint::open(&out).unwrap();
        assert!(
            ckpt.tensors
                .iter()
                .any(|(_, t)| t.shape.first() == Some(&vocab_size))
        );
    }
}
