//! Fine-tuning from a Huggingface folder (RoBERTa's and ALBERT's, as UER-py's conversion
//! script writes them), to both output formats: `uerzoo predict` with no flags reads the
//! examples as training did, so it gives exactly what `predict` with the training flags
//! gives, and the accuracy `finetune` reported.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

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

/// Fine-tunes `fixture`'s HF folder with `flags` (the reading options) into `out`; returns
/// the test accuracy it reported.
fn finetune(fixture: &str, format: &str, out: &Path, flags: &[&str]) -> f64 {
    let f = common::uer_fixture(fixture);
    let (hf, vocab) = (f.join("hf_by_uer_script"), f.join("vocab.txt"));
    let (train, dev, test) = (data("train.tsv"), data("dev.tsv"), data("test.tsv"));
    let mut args = vec![
        "finetune",
        s(&hf),
        "--vocab",
        s(&vocab),
        "--train",
        s(&train),
        "--dev",
        s(&dev),
        "--test",
        s(&test),
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--learning-rate",
        "1e-3",
        "--format",
        format,
        "--output",
        s(out),
    ];
    args.extend(flags);
    number_after(&uerzoo(&args), "test accuracy:")
}

/// `predict MODEL` on the test set with `flags`, probabilities included: (the file, the
/// accuracy printed).
fn predict(model: &Path, out: &Path, flags: &[&str]) -> (String, f64) {
    let test = data("test.tsv");
    let mut args = vec![
        "predict",
        s(model),
        "--input",
        s(&test),
        "--output",
        s(out),
        "--labels",
        "--probabilities",
    ];
    args.extend(flags);
    let said = uerzoo(&args);
    (
        std::fs::read_to_string(out).unwrap(),
        number_after(&said, "accuracy:"),
    )
}

/// The reading options of a fine-tune whose defaults would read book_review_small
/// differently (its longest test rows are ~480 characters).
const SEQ: [&str; 2] = ["--seq-length", "64"];

fn check(fixture: &str, format: &str, out_name: &str, flags: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join(out_name);
    let test_acc = finetune(fixture, format, &out, flags);
    let (plain, plain_acc) = predict(&out, &tmp.path().join("plain.tsv"), &[]);
    let (flagged, flagged_acc) = predict(&out, &tmp.path().join("flagged.tsv"), flags);
    assert_eq!(plain_acc, test_acc, "{fixture} → {format}");
    assert_eq!(flagged_acc, test_acc, "{fixture} → {format}");
    assert_eq!(
        plain, flagged,
        "{fixture} → {format}: predict with no flags reads the examples otherwise than training did ({flags:?})"
    );
    // The probabilities are not all one value: the flags had something to change.
    let rows: std::collections::BTreeSet<&str> = plain.lines().skip(1).collect();
    assert!(rows.len() > 1, "{fixture} → {format}: {plain}");
}

#[test]
fn roberta_hf_folder_to_uer_predicts_as_trained() {
    check(
        "roberta_v1",
        "uer",
        "cls.bin",
        &[SEQ[0], SEQ[1], "--pooling", "mean"],
    );
}

#[test]
fn albert_hf_folder_to_uer_predicts_as_trained() {
    check(
        "albert_v1",
        "uer",
        "cls.bin",
        &[SEQ[0], SEQ[1], "--pooling", "max"],
    );
}

#[test]
fn roberta_hf_folder_to_hf_predicts_as_trained() {
    check("roberta_v1", "hf", "cls_hf", &SEQ);
}

#[test]
fn albert_hf_folder_to_hf_predicts_as_trained() {
    check("albert_v1", "hf", "cls_hf", &SEQ);
}
