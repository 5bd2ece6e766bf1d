//! `examples/finetune.rs` (fine-tuning and prediction through the library API) runs, saves
//! a classifier that opens by its path, and predicts exactly what the command line
//! (`uerzoo finetune` then `uerzoo predict`, same options) predicts.

mod common;

#[path = "../examples/finetune.rs"]
mod example;

use std::path::Path;
use std::process::Command;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_library_example_trains_saves_and_predicts_as_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let model = common::uer_fixture("roberta_v1").join("uer_model.bin");
    let data = common::shared().join("data/datasets/book_review_small");
    let lib_dir = tmp.path().join("lib");
    let o = example::run(&model, &data, &lib_dir).unwrap();
    assert_eq!(o.model, lib_dir.join("classifier.bin"));
    assert!(o.model.is_file());
    // Its companions, so that it opens by its path alone.
    assert!(lib_dir.join("uer_config.json").is_file());
    assert!(lib_dir.join("vocab.txt").is_file());
    // One label per test row (50), both labels used, and the accuracy over them all.
    assert_eq!(o.labels.len(), 50);
    assert_eq!(o.total, 50);
    assert!(o.labels.iter().all(|&l| l < 2), "{:?}", o.labels);

    // The command line with the same options gives the same predictions, row for row.
    let cli_model = tmp.path().join("cli").join("classifier.bin");
    let pooling = example::POOLING.to_string();
    common::run_ok(
        Command::new(common::uerzoo_bin())
            .args(["finetune", s(&model)])
            .args(["--train", s(&data.join("train.tsv"))])
            .args(["--dev", s(&data.join("dev.tsv"))])
            .args(["--epochs", &example::EPOCHS.to_string()])
            .args(["--batch-size", &example::BATCH_SIZE.to_string()])
            .args(["--learning-rate", &example::LEARNING_RATE.to_string()])
            .args(["--seq-length", &example::SEQ_LENGTH.to_string()])
            .args(["--pooling", &pooling, "--output", s(&cli_model)]),
    );
    let pred = tmp.path().join("pred.tsv");
    let out = common::run_ok(
        Command::new(common::uerzoo_bin())
            .args(["predict", s(&cli_model)])
            .args(["--input", s(&data.join("test.tsv")), "--labels"])
            .args(["--output", s(&pred)]),
    );
    let text = std::fs::read_to_string(&pred).unwrap();
    let cli_labels: Vec<usize> = text.lines().skip(1).map(|l| l.parse().unwrap()).collect();
    assert_eq!(cli_labels, o.labels);
    let said = String::from_utf8_lossy(&out.stdout);
    let expected = format!("({}/{})", o.correct, o.total);
    assert!(said.contains(&expected), "{said} vs {expected}");
    // The saved weights are the same bytes too.
    assert_eq!(
        std::fs::read(&cli_model).unwrap(),
        std::fs::read(&o.model).unwrap()
    );
}
