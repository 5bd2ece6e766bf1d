//! Classifiers fine-tuned by transformers itself (`fixtures/hf_classifiers/`, README there):
//! a `BertForSequenceClassification` and an `AlbertForSequenceClassification`, with
//! transformers' inputs and logits on 8 test rows (`hf_outputs.safetensors`) and its
//! predictions on the first 200 rows of `book_review/test.tsv` (`predictions.tsv`).
//!
//! They prove that an HF classifier folder is read as transformers reads it: the text cut so
//! that `[SEP]` stays ([`Truncation::Hf`]), the same ids, the same logits, the same labels.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use uerzoo::checkpoint::Checkpoint;
use uerzoo::model::{DeviceSpec, Pooling, open::open_model};
use uerzoo::tokenizer::{Tokenizer, TokenizerOptions, Truncation, longest_first};
use uerzoo::train::{self, Dataset, Encoded};

/// Max absolute difference of a probability or a logit. The acceptance bound: both
/// sides compute in f32 with different summation orders (~1e-6 on these small models, and
/// `predictions.tsv` is rounded to 6 decimals); a lost `[SEP]` moves probabilities by up to
/// 0.12, a wrong LayerNorm formula logits by ~1e-2.
const TOL: f32 = 1e-4;

/// transformers' `max_length` for both fixtures (README).
const SEQ: usize = 64;

/// Rows of `book_review/test.tsv` that `predictions.tsv` covers.
const ROWS: usize = 200;

const MODELS: [&str; 2] = ["bert_cls_hf", "albert_cls_hf"];

fn fixture(name: &str) -> PathBuf {
    common::shared()
        .join("fixtures")
        .join("hf_classifiers")
        .join(name)
}

/// The first [`ROWS`] rows of `book_review/test.tsv` (the full file under `$UERZOO_SHARED`,
/// its first rows in the repository's copy), written to `dir`.
fn test_rows(dir: &Path) -> PathBuf {
    let path = common::shared().join("data/datasets/book_review/test.tsv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let lines: Vec<&str> = text.lines().take(ROWS + 1).collect();
    assert_eq!(
        lines.len(),
        ROWS + 1,
        "{}: fewer than {ROWS} rows",
        path.display()
    );
    let out = dir.join("test.tsv");
    std::fs::write(&out, lines.join("\n") + "\n").unwrap();
    out
}

/// `predictions.tsv`: (label, [prob_0, prob_1]) per row.
fn reference_predictions(name: &str) -> Vec<(usize, Vec<f32>)> {
    let path = fixture(name).join("predictions.tsv");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("label\tprob_0\tprob_1"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f[0].parse().unwrap(),
                f[1..].iter().map(|p| p.parse().unwrap()).collect(),
            )
        })
        .collect()
}

/// `uerzoo predict MODEL` on the test rows with `extra` arguments: (label, probs) per row.
fn predict_cli(model: &Path, dir: &Path, extra: &[&str]) -> Vec<(usize, Vec<f32>)> {
    let input = test_rows(dir);
    let output = dir.join("predictions.tsv");
    common::run_ok(
        Command::new(common::uerzoo_bin())
            .arg("predict")
            .arg(model)
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&output)
            .args(["--probabilities", "--force"])
            .args(extra),
    );
    let text = std::fs::read_to_string(&output).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("label\tprob"));
    lines
        .map(|l| {
            let (label, probs) = l.split_once('\t').unwrap();
            (
                label.parse().unwrap(),
                probs.split(' ').map(|p| p.parse().unwrap()).collect(),
            )
        })
        .collect()
}

/// (rows with the same label, max probability difference) of two prediction lists.
fn compare(ours: &[(usize, Vec<f32>)], reference: &[(usize, Vec<f32>)]) -> (usize, f32) {
    assert_eq!(ours.len(), reference.len());
    let same = ours
        .iter()
        .zip(reference)
        .filter(|(a, b)| a.0 == b.0)
        .count();
    let diff = ours
        .iter()
        .zip(reference)
        .flat_map(|(a, b)| a.1.iter().zip(&b.1).map(|(x, y)| (x - y).abs()))
        .fold(0f32, f32::max);
    (same, diff)
}

fn check_predict(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    // No --truncation: an HF folder is cut as transformers cuts.
    let ours = predict_cli(&fixture(name), dir.path(), &["--seq-length", "64"]);
    let (same, diff) = compare(&ours, &reference_predictions(name));
    eprintln!("{name}: labels equal {same}/{ROWS}, max probability diff {diff:e}");
    assert!(
        same == ROWS && diff < TOL,
        "{name}: labels equal {same}/{ROWS}, max probability diff {diff:e} (tolerance {TOL:e})"
    );
}

#[test]
fn bert_classifier_predicts_as_transformers() {
    check_predict("bert_cls_hf");
}

#[test]
fn albert_classifier_predicts_as_transformers() {
    check_predict("albert_cls_hf");
}

/// `--truncation uer` overrides the folder's default: rows longer than 62 tokens lose their
/// `[SEP]` and move away from transformers' probabilities (the behaviour the default fixes).
#[test]
fn truncation_flag_overrides_the_model() {
    let name = "bert_cls_hf";
    let dir = tempfile::tempdir().unwrap();
    let uer = predict_cli(
        &fixture(name),
        dir.path(),
        &["--seq-length", "64", "--truncation", "uer"],
    );
    let (same, diff) = compare(&uer, &reference_predictions(name));
    eprintln!("{name} --truncation uer: labels equal {same}/{ROWS}, max probability diff {diff:e}");
    assert!(
        diff > 1e-2,
        "--truncation uer was not applied (max diff {diff:e})"
    );
    let hf = predict_cli(
        &fixture(name),
        dir.path(),
        &["--seq-length", "64", "--truncation", "hf"],
    );
    assert!(compare(&hf, &reference_predictions(name)).1 < TOL);
}

/// The tokenizer (`vocab.txt`, transformers' word limit) cut with [`Truncation::Hf`] gives
/// transformers' `input_ids` on the 8 rows of `hf_outputs.safetensors`, rows of more than 62
/// tokens included; `token_type_ids` 0 is UER's segment 1, padding segment 0.
#[test]
fn inputs_equal_transformers_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let data = Dataset::read(&test_rows(dir.path()), false).unwrap();
    for name in MODELS {
        let reference = Checkpoint::open(fixture(name).join("hf_outputs.safetensors")).unwrap();
        let ids = reference.get("input_ids").unwrap();
        let rows = ids.shape[0];
        let tok = Tokenizer::from_vocab_file(
            fixture(name).join("vocab.txt"),
            TokenizerOptions::huggingface(),
        )
        .unwrap();
        let mut first = data.clone();
        first.examples.truncate(rows);
        let ours = first.encode_with(&tok, SEQ, Truncation::Hf);
        assert_eq!(ours.ids, ids.to_i64_vec().unwrap(), "{name}: input_ids");
        assert_eq!(ours.segment, uer_segments(&reference), "{name}: segments");
        let long = (0..rows)
            .filter(|&r| ours.ids[r * SEQ + SEQ - 1] != 0)
            .count();
        assert!(
            long > 0,
            "{name}: no row of the 8 is cut; the check proves nothing"
        );
        // UER-py's cut differs on exactly those rows: their last token is not [SEP].
        let uer = first.encode_with(&tok, SEQ, Truncation::Uer);
        assert_ne!(uer.ids, ours.ids, "{name}");
    }
}

/// UER's segments of an HF input: `token_type_ids + 1` where `attention_mask` is 1, else 0.
fn uer_segments(reference: &Checkpoint) -> Vec<i64> {
    let types = reference
        .get("token_type_ids")
        .unwrap()
        .to_i64_vec()
        .unwrap();
    let mask = reference
        .get("attention_mask")
        .unwrap()
        .to_i64_vec()
        .unwrap();
    types
        .iter()
        .zip(&mask)
        .map(|(t, m)| if *m == 1 { t + 1 } else { 0 })
        .collect()
}

/// The classifier (encoder, pooler, `classifier`) on transformers' own inputs gives its logits.
#[test]
fn classifier_logits_equal_transformers() {
    for name in MODELS {
        let reference = Checkpoint::open(fixture(name).join("hf_outputs.safetensors")).unwrap();
        let ids = reference.get("input_ids").unwrap();
        let opened = open_model(&fixture(name), None).unwrap();
        let data = Encoded {
            ids: ids.to_i64_vec().unwrap(),
            segment: uer_segments(&reference),
            labels: vec![-1; ids.shape[0]],
            seq: ids.shape[1],
        };
        let pred = train::predict(&opened, &data, Pooling::First, 8, DeviceSpec::Cpu).unwrap();
        let logits_ref = reference.get("logits").unwrap().to_f32_vec();
        let ours: Vec<f32> = pred.logits.concat();
        assert_eq!(ours.len(), logits_ref.len(), "{name}");
        let diff = ours
            .iter()
            .zip(&logits_ref)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!("{name}: logits max diff {diff:e}");
        assert!(
            diff < TOL,
            "{name}: logits diff {diff:e} (tolerance {TOL:e})"
        );
    }
}

/// transformers' pair cut (`longest_first` of the tokenizers library): only the longer text
/// is cut while the shorter fits; else half each, the odd token to the longer (the second on
/// a tie).
#[test]
fn pairs_are_cut_longest_first() {
    assert_eq!(longest_first(4, 4, 10), (4, 4));
    assert_eq!(longest_first(3, 20, 10), (3, 7));
    assert_eq!(longest_first(20, 3, 10), (7, 3));
    assert_eq!(longest_first(10, 6, 10), (5, 5));
    assert_eq!(longest_first(10, 6, 11), (6, 5));
    assert_eq!(longest_first(6, 10, 11), (5, 6));
    assert_eq!(longest_first(8, 8, 11), (5, 6));
    assert_eq!(longest_first(100, 100, 61), (30, 31));
    assert_eq!(longest_first(100, 0, 5), (5, 0));

    let tok = Tokenizer::from_vocab_file(
        fixture("bert_cls_hf").join("vocab.txt"),
        TokenizerOptions::huggingface(),
    )
    .unwrap();
    let (cls, sep, pad) = (tok.cls_id(), tok.sep_id(), tok.pad_id());
    let a = tok.encode("我爱北京天安门");
    let b = tok.encode("你");
    // 7 + 1 tokens in 3 + 7: the first text keeps 6, both [SEP] stay.
    let e = tok.encode_example("我爱北京天安门", Some("你"), 10, Truncation::Hf);
    let mut want = vec![cls];
    want.extend(&a[..6]);
    want.push(sep);
    want.extend(&b);
    want.push(sep);
    assert_eq!(e.ids, want);
    assert_eq!(e.segments, [1, 1, 1, 1, 1, 1, 1, 1, 2, 2]);
    // UER-py's cut: the pair is built whole, then cut at 10 (the second text is lost).
    let u = tok.encode_example("我爱北京天安门", Some("你"), 10, Truncation::Uer);
    assert_eq!(u, tok.encode_pair("我爱北京天安门", "你", 10));
    // Short inputs are padded alike.
    let s = tok.encode_example("我", None, 5, Truncation::Hf);
    assert_eq!(s.ids, [cls, tok.encode("我")[0], sep, pad, pad]);
    assert_eq!(s, tok.encode_example("我", None, 5, Truncation::Uer));
}

/// `finetune` records the truncation it trained with in the saved model's UER config, and
/// `predict` reads it: an HF classifier fine-tuned further keeps transformers' cut.
#[test]
fn finetune_records_truncation_and_predict_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::shared().join("data/datasets/book_review_small");
    let out = dir.path().join("cls.bin");
    let finetune = |truncation: Option<&str>| {
        let mut cmd = Command::new(common::uerzoo_bin());
        cmd.arg("finetune")
            .arg(fixture("bert_cls_hf"))
            .arg("--train")
            .arg(data.join("dev.tsv"))
            .arg("--dev")
            .arg(data.join("dev.tsv"))
            .arg("--output")
            .arg(&out)
            .args(["--epochs", "1", "--seq-length", "24", "--force"]);
        if let Some(t) = truncation {
            cmd.args(["--truncation", t]);
        }
        common::run_ok(&mut cmd);
        let config = ["cls.bin.uer_config.json", "uer_config.json"]
            .iter()
            .map(|n| dir.path().join(n))
            .find(|p| p.is_file())
            .expect("a config beside the classifier");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
        json["truncation"].as_str().unwrap_or_default().to_string()
    };
    // The HF folder's default is transformers' cut.
    assert_eq!(finetune(None), "hf");
    let default = predict_cli(&out, dir.path(), &[]);
    let hf = predict_cli(&out, dir.path(), &["--truncation", "hf"]);
    let uer = predict_cli(&out, dir.path(), &["--truncation", "uer"]);
    assert_eq!(
        compare(&default, &hf).1,
        0.0,
        "predict did not read `truncation`"
    );
    assert!(
        compare(&default, &uer).1 > 0.0,
        "seq 24 cuts no row; the check proves nothing"
    );
    assert_eq!(finetune(Some("uer")), "uer");
    let default = predict_cli(&out, dir.path(), &[]);
    let uer = predict_cli(&out, dir.path(), &["--truncation", "uer"]);
    assert_eq!(
        compare(&default, &uer).1,
        0.0,
        "predict did not read `truncation`"
    );
}

/// `finetune --format hf` records its reading options (`seq_length`, `pooling`,
/// `truncation`) in the folder's `config.json`: `predict` on the folder without flags gives
/// exactly what it gives with the training flags, and differs from another truncation (so
/// the cut matters at this length).
#[test]
fn finetune_format_hf_records_options_and_predict_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::shared().join("data/datasets/book_review_small");
    let out = dir.path().join("cls_hf");
    common::run_ok(
        Command::new(common::uerzoo_bin())
            .arg("finetune")
            .arg(fixture("bert_cls_hf"))
            .arg("--train")
            .arg(data.join("dev.tsv"))
            .arg("--dev")
            .arg(data.join("dev.tsv"))
            .arg("--output")
            .arg(&out)
            .args(["--format", "hf", "--epochs", "1", "--seq-length", "24"])
            .args(["--truncation", "uer"]),
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(json["truncation"], "uer", "{json}");
    assert_eq!(json["seq_length"], 24, "{json}");
    assert_eq!(json["pooling"], "first", "{json}");
    // Still transformers' config: the architecture and sizes are untouched.
    assert_eq!(json["architectures"][0], "BertForSequenceClassification");
    let default = predict_cli(&out, dir.path(), &[]);
    let flags = [
        "--seq-length",
        "24",
        "--truncation",
        "uer",
        "--pooling",
        "first",
    ];
    let trained = predict_cli(&out, dir.path(), &flags);
    assert_eq!(
        compare(&default, &trained),
        (ROWS, 0.0),
        "predict did not read the recorded options"
    );
    let other = predict_cli(
        &out,
        dir.path(),
        &["--seq-length", "24", "--truncation", "hf"],
    );
    assert!(
        compare(&default, &other).1 > 0.0,
        "seq 24 cuts no row; the check proves nothing"
    );
}

/// A bad recorded value names the file and the fix.
#[test]
fn bad_recorded_truncation_is_an_error_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for f in ["model.safetensors", "vocab.txt"] {
        std::fs::copy(fixture("bert_cls_hf").join(f), model.join(f)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("bert_cls_hf").join("config.json")).unwrap())
            .unwrap();
    config["truncation"] = "left".into();
    std::fs::write(model.join("config.json"), config.to_string()).unwrap();
    let opened = open_model(&model, None).unwrap();
    let e = opened.truncation().unwrap_err().to_string();
    assert!(
        e.contains("config.json") && e.contains("`left`") && e.contains("--truncation"),
        "{e}"
    );
}

/// HF → UER (naming v1 and v2) → HF gives back transformers' checkpoint: the same keys, and
/// every tensor bit for bit (the padding row UER adds to the segment embedding goes again).
#[test]
fn conversion_to_uer_and_back_is_exact() {
    use uerzoo::convert::{self, Naming, Source, ToHfOptions, ToUerOptions};
    for name in MODELS {
        let hf = Checkpoint::open(fixture(name).join("model.safetensors")).unwrap();
        for naming in [Naming::V1, Naming::V2] {
            let (uer, report) = convert::to_uer(
                &hf,
                &ToUerOptions {
                    naming,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(report.source, Source::Hf, "{name}");
            assert!(
                uer.names().any(|n| n.starts_with("output_layer_2")),
                "{name}: the classifier head did not become UER's output_layer_2"
            );
            let (back, _) = convert::to_hf(&uer, &ToHfOptions::default()).unwrap();
            let mut want: Vec<&str> = hf.names().collect();
            let mut got: Vec<&str> = back.names().collect();
            want.sort();
            got.sort();
            assert_eq!(got, want, "{name} via UER {naming}: key sets differ");
            for (key, t) in &hf.tensors {
                let b = back.get(key).unwrap();
                assert_eq!((b.dtype, &b.shape), (t.dtype, &t.shape), "{name}: {key}");
                assert!(
                    b.bytes() == t.bytes(),
                    "{name} via UER {naming}: `{key}` differs after the round trip"
                );
            }
        }
    }
}
