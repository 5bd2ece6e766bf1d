//! The legacy zoo's 2019 weights against the reference data written by UER-py of that year
//! (commit 4475b1a, `fixtures/uer_2019/`, see its README): the GPT (BERT's post-LN layers
//! under a causal mask, untied LM output layer) and BERT with the classification target.
//! Both files are in torch's legacy (pre-1.6) format, as the 2019 zoo files are.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use uerzoo::checkpoint::Checkpoint;
use uerzoo::model::{self, DeviceSpec, open::OpenedModel, tasks::Batch};

/// The acceptance bound of the issue, as `tests/forward.rs`: f32 on both sides with
/// different summation orders stays ~1e-6 here; a wrong LayerNorm, mask or activation is
/// off by far more.
const TOL: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    common::shared()
        .join("fixtures")
        .join("uer_2019")
        .join(name)
}

use common::read;

fn open(name: &str, config: &str) -> OpenedModel {
    let dir = fixture(name);
    model::open::open_model(&dir.join("uer_model.bin"), Some(&dir.join(config))).unwrap()
}

/// The reference batch (`input_ids`, `segment`: 2 × 16, the second row padded from 12).
fn reference_batch(reference: &Checkpoint) -> Batch {
    let ids = reference.get("input_ids").unwrap();
    Batch {
        ids: ids.to_i64_vec().unwrap(),
        segment: reference.get("segment").unwrap().to_i64_vec().unwrap(),
        batch: ids.shape[0],
        seq: ids.shape[1],
    }
}

use common::max_diff_real;

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "shapes differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Rows `rows` of `t` (`[batch, …]`, row-major), each cut to its first `keep` positions of
/// `seq` (`per_pos` values each).
fn rows_of(t: &[f32], seq: usize, per_pos: usize, rows: &[(usize, usize)]) -> Vec<f32> {
    let mut out = Vec::new();
    for &(r, keep) in rows {
        let start = r * seq * per_pos;
        out.extend_from_slice(&t[start..start + keep * per_pos]);
    }
    out
}

/// A sub-batch of `b`: rows `rows`, each its first `keep` positions, padded to `seq`.
fn sub_batch(b: &Batch, rows: &[(usize, usize)], seq: usize) -> Batch {
    let (mut ids, mut segment) = (Vec::new(), Vec::new());
    for &(r, keep) in rows {
        let row = r * b.seq..r * b.seq + keep;
        ids.extend_from_slice(&b.ids[row.clone()]);
        segment.extend_from_slice(&b.segment[row]);
        ids.extend(std::iter::repeat_n(0, seq - keep));
        segment.extend(std::iter::repeat_n(0, seq - keep));
    }
    Batch {
        ids,
        segment,
        batch: rows.len(),
        seq,
    }
}

/// The detection names both families from the keys alone.
#[test]
fn the_2019_families_are_detected() {
    for (name, family, layers) in [
        ("gpt_lm", uerzoo::convert::Layout::LegacyGpt, 2),
        ("bert_cls", uerzoo::convert::Layout::BertClsTarget, 2),
    ] {
        let ckpt = read(&fixture(name).join("uer_model.bin"));
        let det = uerzoo::convert::detect(&ckpt).unwrap();
        assert_eq!(det.family, family, "{name}");
        assert_eq!(det.layers, layers, "{name}");
        assert_eq!(
            det.source,
            uerzoo::convert::Source::Uer(uerzoo::convert::Naming::V1)
        );
    }
}

/// The 2019 GPT: hidden states (non-padding positions) and LM logits at every real
/// position equal UER-py 2019's, with the 2019 config (no mask key: the keys say causal)
/// and with the same model in later UER-py's config vocabulary (`mask: causal`).
#[test]
fn gpt_lm_forward_matches_uer_py_2019() {
    let reference = read(&fixture("gpt_lm").join("uer_outputs.safetensors"));
    let input = reference_batch(&reference);
    let hidden_ref = reference.get("hidden").unwrap();
    let logits_ref = reference.get("logits").unwrap();
    for config in ["uer_config.json", "uer_config_v1.json"] {
        let opened = open("gpt_lm", config);
        assert_eq!(opened.config.mask, model::MaskKind::Causal, "{config}");
        let out = model::tasks::forward(&opened, &input, DeviceSpec::Cpu).unwrap();
        assert_eq!(out.report.heads, ["lm"], "{config}");
        assert!(out.report.tied.is_empty() && out.report.unused.is_empty());
        assert_eq!(out.hidden.shape, hidden_ref.shape);
        let logits = out.logits.expect("LM logits");
        assert_eq!(logits.shape, logits_ref.shape);
        let dh = max_diff_real(
            &out.hidden.values,
            &hidden_ref.to_f32_vec(),
            &input.segment,
            hidden_ref.shape[2],
        );
        let dl = max_diff_real(
            &logits.values,
            &logits_ref.to_f32_vec(),
            &input.segment,
            logits_ref.shape[2],
        );
        eprintln!("gpt_lm ({config}): hidden max diff {dh:e}, logits max diff {dl:e}");
        assert!(
            dh < TOL && dl < TOL,
            "{config}: hidden {dh:e}, logits {dl:e}"
        );
    }
}

/// BERT + classification target: hidden states and the class logits (one row per text,
/// `tanh(target.linear_1(h[:, 0]))` → `target.linear_2`) equal UER-py 2019's.
#[test]
fn bert_cls_forward_matches_uer_py_2019() {
    let reference = read(&fixture("bert_cls").join("uer_outputs.safetensors"));
    let input = reference_batch(&reference);
    let hidden_ref = reference.get("hidden").unwrap();
    let logits_ref = reference.get("logits").unwrap();
    assert_eq!(logits_ref.shape, [2, 2]);
    for config in ["uer_config.json", "uer_config_v1.json"] {
        let opened = open("bert_cls", config);
        assert_eq!(opened.config.mask, model::MaskKind::FullyVisible);
        let out = model::tasks::forward(&opened, &input, DeviceSpec::Cpu).unwrap();
        assert_eq!(out.report.heads, ["classifier"], "{config}");
        assert!(out.report.unused.is_empty(), "{:?}", out.report.unused);
        let logits = out.logits.expect("class logits");
        assert_eq!(logits.shape, logits_ref.shape);
        let dh = max_diff_real(
            &out.hidden.values,
            &hidden_ref.to_f32_vec(),
            &input.segment,
            hidden_ref.shape[2],
        );
        let dl = max_diff(&logits.values, &logits_ref.to_f32_vec());
        eprintln!("bert_cls ({config}): hidden max diff {dh:e}, logits max diff {dl:e}");
        assert!(
            dh < TOL && dl < TOL,
            "{config}: hidden {dh:e}, logits {dl:e}"
        );
    }
}

/// Other shapes, checked against the reference shape: the GPT's rows alone, cut to their
/// real length (12 and 16) and to a prefix (a causal model's first positions do not see
/// the later ones), and three rows in another order; each equals the reference rows.
#[test]
fn gpt_lm_other_shapes_agree_with_the_reference_shape() {
    let reference = read(&fixture("gpt_lm").join("uer_outputs.safetensors"));
    let input = reference_batch(&reference);
    let hidden_ref = reference.get("hidden").unwrap().to_f32_vec();
    let vocab = reference.get("logits").unwrap().shape[2];
    let logits_ref = reference.get("logits").unwrap().to_f32_vec();
    let real = |r: usize| {
        input.segment[r * input.seq..(r + 1) * input.seq]
            .iter()
            .filter(|&&s| s != 0)
            .count()
    };
    assert_eq!((real(0), real(1)), (16, 12));
    let opened = open("gpt_lm", "uer_config.json");
    let (hid, seq) = (96, input.seq);
    for rows in [
        vec![(1, 12)],
        vec![(0, 16)],
        vec![(0, 5)],
        vec![(1, 12), (0, 9), (1, 3)],
    ] {
        let width = rows.iter().map(|r| r.1).max().unwrap();
        let b = sub_batch(&input, &rows, width);
        let out = model::tasks::forward(&opened, &b, DeviceSpec::Cpu).unwrap();
        let logits = out.logits.unwrap();
        // Compare the real positions only (the sub-batch pads rows shorter than `width`).
        let got_h = rows_of(
            &out.hidden.values,
            width,
            hid,
            &rows
                .iter()
                .enumerate()
                .map(|(i, r)| (i, r.1))
                .collect::<Vec<_>>(),
        );
        let got_l = rows_of(
            &logits.values,
            width,
            vocab,
            &rows
                .iter()
                .enumerate()
                .map(|(i, r)| (i, r.1))
                .collect::<Vec<_>>(),
        );
        let want_h = rows_of(&hidden_ref, seq, hid, &rows);
        let want_l = rows_of(&logits_ref, seq, vocab, &rows);
        let (dh, dl) = (max_diff(&got_h, &want_h), max_diff(&got_l, &want_l));
        eprintln!("gpt_lm rows {rows:?}: hidden {dh:e}, logits {dl:e}");
        assert!(
            dh < TOL && dl < TOL,
            "rows {rows:?}: hidden {dh:e}, logits {dl:e}"
        );
    }
}

/// The classifier on other shapes: each text alone (the padded one without its padding)
/// and three rows (the second text twice) give the reference logits and hidden states.
#[test]
fn bert_cls_other_shapes_agree_with_the_reference_shape() {
    let reference = read(&fixture("bert_cls").join("uer_outputs.safetensors"));
    let input = reference_batch(&reference);
    let hidden_ref = reference.get("hidden").unwrap().to_f32_vec();
    let logits_ref = reference.get("logits").unwrap().to_f32_vec();
    let opened = open("bert_cls", "uer_config.json");
    let (hid, seq) = (96, input.seq);
    let real = |r: usize| {
        input.segment[r * seq..(r + 1) * seq]
            .iter()
            .filter(|&&s| s != 0)
            .count()
    };
    for rows in [
        vec![(0, real(0))],
        vec![(1, real(1))],
        vec![(1, real(1)), (0, real(0)), (1, real(1))],
    ] {
        let width = rows.iter().map(|r| r.1).max().unwrap();
        let b = sub_batch(&input, &rows, width);
        let out = model::tasks::forward(&opened, &b, DeviceSpec::Cpu).unwrap();
        let logits = out.logits.unwrap();
        assert_eq!(logits.shape, [rows.len(), 2]);
        let own: Vec<(usize, usize)> = rows.iter().enumerate().map(|(i, r)| (i, r.1)).collect();
        let got_h = rows_of(&out.hidden.values, width, hid, &own);
        let want_h = rows_of(&hidden_ref, seq, hid, &rows);
        let want_l: Vec<f32> = rows
            .iter()
            .flat_map(|&(r, _)| logits_ref[r * 2..r * 2 + 2].to_vec())
            .collect();
        let (dh, dl) = (max_diff(&got_h, &want_h), max_diff(&logits.values, &want_l));
        eprintln!("bert_cls rows {rows:?}: hidden {dh:e}, logits {dl:e}");
        assert!(
            dh < TOL && dl < TOL,
            "rows {rows:?}: hidden {dh:e}, logits {dl:e}"
        );
    }
}

/// `uerzoo forward` on the legacy files writes what the library computes: the reference
/// outputs within the bound.
#[test]
fn cli_forward_writes_the_reference_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["gpt_lm", "bert_cls"] {
        let dir = fixture(name);
        let out = tmp.path().join(format!("{name}.safetensors"));
        common::run_ok(
            Command::new(common::uerzoo_bin())
                .arg("forward")
                .arg(dir.join("uer_model.bin"))
                .arg("--input")
                .arg(dir.join("uer_outputs.safetensors"))
                .arg("--output")
                .arg(&out),
        );
        let got = read(&out);
        let reference = read(&dir.join("uer_outputs.safetensors"));
        let segment = reference.get("segment").unwrap().to_i64_vec().unwrap();
        let h = got.get("hidden").unwrap();
        let dh = max_diff_real(
            &h.to_f32_vec(),
            &reference.get("hidden").unwrap().to_f32_vec(),
            &segment,
            h.shape[2],
        );
        let l = got.get("logits").unwrap();
        let l_ref = reference.get("logits").unwrap();
        assert_eq!(l.shape, l_ref.shape, "{name}");
        let dl = if l.shape.len() == 3 {
            max_diff_real(&l.to_f32_vec(), &l_ref.to_f32_vec(), &segment, l.shape[2])
        } else {
            max_diff(&l.to_f32_vec(), &l_ref.to_f32_vec())
        };
        assert!(dh < TOL && dl < TOL, "{name}: hidden {dh:e}, logits {dl:e}");
    }
}

/// `uerzoo generate --preset raw --greedy --max-length 40` prints the 2019
/// `scripts/generate.py --top_k 1 --seq_length 40` output (its second line: the prompt and
/// the continuation, tokens joined), with the KV cache and without; `raw` is also the
/// default for these weights.
#[test]
fn greedy_generation_matches_uer_py_2019() {
    let dir = fixture("gpt_lm");
    let prompt = std::fs::read_to_string(dir.join("greedy_prompt.txt")).unwrap();
    let expected = std::fs::read_to_string(dir.join("greedy_generation.txt")).unwrap();
    let mut lines = expected.lines();
    assert_eq!(lines.next(), Some(prompt.trim()));
    let want = lines.next().unwrap();
    assert!(want.contains("[UNK]"), "the reference keeps [UNK]: {want}");
    for extra in [
        &["--preset", "raw"][..],
        &["--preset", "raw", "--no-cache"][..],
        &[][..],
    ] {
        let out = common::run_ok(
            Command::new(common::uerzoo_bin())
                .arg("generate")
                .arg(dir.join("uer_model.bin"))
                .args(["--prompt", prompt.trim(), "--greedy", "--max-length", "40"])
                .args(extra),
        );
        let got = String::from_utf8(out.stdout).unwrap();
        assert_eq!(got.trim_end(), want, "{extra:?}");
    }
}

/// The reference texts as TSV rows (`text_a`): the ids after `[CLS]`, padding dropped (the
/// reference rows are `[CLS]` + characters, no `[SEP]`), with each row's token count.
fn reference_texts(reference: &Checkpoint, vocab: &Path) -> Vec<(String, usize)> {
    let vocab: Vec<String> = std::fs::read_to_string(vocab)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let b = reference_batch(reference);
    (0..b.batch)
        .map(|r| {
            let row = r * b.seq..(r + 1) * b.seq;
            let ids: Vec<i64> = b.ids[row.clone()]
                .iter()
                .zip(&b.segment[row])
                .filter(|(_, s)| **s != 0)
                .map(|(i, _)| *i)
                .collect();
            assert_eq!(vocab[ids[0] as usize], "[CLS]");
            let text: String = ids[1..]
                .iter()
                .map(|&i| vocab[i as usize].as_str())
                .collect();
            (text, ids.len())
        })
        .collect()
}

/// `uerzoo predict MODEL` on one text cut to `seq` tokens: (label, logits).
fn predict_one(model: &Path, text: &str, seq: usize, dir: &Path) -> (usize, Vec<f32>) {
    let input = dir.join("one.tsv");
    let output = dir.join("one_pred.tsv");
    std::fs::write(&input, format!("text_a\n{text}\n")).unwrap();
    common::run_ok(
        Command::new(common::uerzoo_bin())
            .arg("predict")
            .arg(model)
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&output)
            .args(["--logits", "--force", "--seq-length", &seq.to_string()]),
    );
    let text = std::fs::read_to_string(&output).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("label\tlogits"));
    let (label, logits) = lines.next().unwrap().split_once('\t').unwrap();
    let logits = logits.split(' ').map(|v| v.parse().unwrap()).collect();
    (label.parse().unwrap(), logits)
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

/// `predict` straight from the classification-target weights (their head is the
/// classifier, 2 labels from its shape) gives UER-py 2019's logits and their argmax. Each
/// text is cut to its reference length: run_classifier's `[CLS] a [SEP]` cut there is the
/// reference row, which has no `[SEP]`.
#[test]
fn predict_from_the_classification_target() {
    let dir = fixture("bert_cls");
    let reference = read(&dir.join("uer_outputs.safetensors"));
    let logits_ref = reference.get("logits").unwrap().to_f32_vec();
    let tmp = tempfile::tempdir().unwrap();
    for (r, (text, len)) in reference_texts(&reference, &dir.join("vocab.txt"))
        .iter()
        .enumerate()
    {
        let want = &logits_ref[r * 2..r * 2 + 2];
        let (label, logits) = predict_one(&dir.join("uer_model.bin"), text, *len, tmp.path());
        assert_eq!(label, argmax(want), "row {r}");
        let d = max_diff(&logits, want);
        assert!(d < TOL, "row {r}: logits {logits:?}, UER-py {want:?}");
    }
}

/// `finetune` starting from the classification-target weights runs on book_review_small,
/// saves, and `predict` reads the result. The head is kept (2 labels, as the data): with a
/// learning rate too small to move the weights, the fine-tuned file still gives UER-py's
/// logits (a fresh head would not); with a real one, predict labels the test set.
#[test]
fn finetune_from_the_classification_target() {
    let dir = fixture("bert_cls");
    let data = common::shared().join("data/datasets/book_review_small");
    let reference = read(&dir.join("uer_outputs.safetensors"));
    let logits_ref = reference.get("logits").unwrap().to_f32_vec();
    let texts = reference_texts(&reference, &dir.join("vocab.txt"));
    let tmp = tempfile::tempdir().unwrap();
    for (lr, name) in [("1e-9", "still"), ("1e-4", "tuned")] {
        let out_dir = tmp.path().join(name);
        std::fs::create_dir(&out_dir).unwrap();
        let model = out_dir.join("classifier.bin");
        common::run_ok(
            Command::new(common::uerzoo_bin())
                .arg("finetune")
                .arg(dir.join("uer_model.bin"))
                .arg("--train")
                .arg(data.join("train.tsv"))
                .arg("--dev")
                .arg(data.join("dev.tsv"))
                .args(["--epochs", "1", "--batch-size", "32", "--seq-length", "32"])
                .args(["--learning-rate", lr, "--seed", "7", "--output"])
                .arg(&model),
        );
        if name == "still" {
            let (text, len) = &texts[0];
            let (label, logits) = predict_one(&model, text, *len, &out_dir);
            assert_eq!(label, argmax(&logits_ref[..2]));
            let d = max_diff(&logits, &logits_ref[..2]);
            assert!(
                d < TOL,
                "head not kept: {logits:?} vs {:?}",
                &logits_ref[..2]
            );
        } else {
            let output = out_dir.join("test_pred.tsv");
            common::run_ok(
                Command::new(common::uerzoo_bin())
                    .arg("predict")
                    .arg(&model)
                    .arg("--input")
                    .arg(data.join("test.tsv"))
                    .arg("--output")
                    .arg(&output)
                    .arg("--labels"),
            );
            let pred = std::fs::read_to_string(&output).unwrap();
            assert_eq!(pred.lines().count(), 51, "{pred}");
            assert!(pred.lines().skip(1).all(|l| l == "0" || l == "1"), "{pred}");
        }
    }
}

/// `convert --to hf`: the classification target is `BertForSequenceClassification`'s
/// pooler and classifier, so the HF folder (LayerNorm rescaled with `--exact-layernorm`)
/// gives UER-py 2019's logits; the 2019 GPT has no exact transformers equivalent and the
/// conversion says so instead of writing an approximation.
///
/// The hidden states are not held to 1e-4 here: `--exact-layernorm` leaves UER's eps added
/// to the std where HF adds it to the variance (FACTS.md §3), and this small model's
/// embedding sum has a small std (initialised at 0.02, 300 steps), so the HF side's hidden
/// states differ by ~6e-4 at most; the logits, after the tanh pooler, by ~5e-8.
#[test]
fn convert_to_hf_is_exact_or_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixture("bert_cls");
    let hf = tmp.path().join("bert_cls-hf");
    common::run_ok(
        Command::new(common::uerzoo_bin())
            .arg("convert")
            .arg(dir.join("uer_model.bin"))
            .arg(&hf)
            .args(["--to", "hf", "--exact-layernorm", "--config"])
            .arg(dir.join("uer_config.json")),
    );
    let config = std::fs::read_to_string(hf.join("config.json")).unwrap();
    assert!(config.contains("BertForSequenceClassification"), "{config}");
    let reference = read(&dir.join("uer_outputs.safetensors"));
    let input = reference_batch(&reference);
    let opened = model::open::open_model(&hf, None).unwrap();
    let out = model::tasks::forward(&opened, &input, DeviceSpec::Cpu).unwrap();
    let dl = max_diff(
        &out.logits.unwrap().values,
        &reference.get("logits").unwrap().to_f32_vec(),
    );
    eprintln!("bert_cls as HF: logits {dl:e}");
    assert!(dl < TOL, "logits {dl:e}");

    let out = Command::new(common::uerzoo_bin())
        .arg("convert")
        .arg(fixture("gpt_lm").join("uer_model.bin"))
        .arg(tmp.path().join("gpt-hf"))
        .args(["--to", "hf"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no exact equivalent") && stderr.contains("keep it in UER format"),
        "{stderr}"
    );
    assert!(!tmp.path().join("gpt-hf").exists());
}

/// `inspect` names the 2019 families.
#[test]
fn inspect_names_the_family() {
    for (name, family) in [
        (
            "gpt_lm",
            "GPT (UER-py 2019: post-LN causal BERT layers, untied LM)",
        ),
        ("bert_cls", "BERT with classification target (UER-py 2019)"),
    ] {
        let out = common::run_ok(
            Command::new(common::uerzoo_bin())
                .arg("inspect")
                .arg(fixture(name).join("uer_model.bin")),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("model:      {family}, 2 layers, UER naming v1")),
            "{stdout}"
        );
    }
}

/// `info` of the legacy entries shows the commands that run them.
#[test]
fn info_shows_the_commands_that_work() {
    let info = |name: &str| {
        let out = common::run_ok(Command::new(common::uerzoo_bin()).args(["info", name]));
        String::from_utf8(out.stdout).unwrap()
    };
    let gpt = info("mixed_corpus_gpt");
    for want in [
        "uerzoo generate mixed_corpus_gpt --prompt",
        "preset `raw`",
        "uerzoo forward mixed_corpus_gpt",
        "uerzoo pretrain --model mixed_corpus_gpt",
    ] {
        assert!(gpt.contains(want), "{want}: {gpt}");
    }
    assert!(!gpt.contains("--to hf"), "{gpt}");
    for name in [
        "jdbinary_bert_cls",
        "amazon_review_bert_cls",
        "xnli_bert_cls",
    ] {
        let cls = info(name);
        for want in [
            format!("uerzoo predict {name} --input"),
            format!("uerzoo finetune {name} --train"),
            format!("uerzoo convert ~/Downloads/{name}_model.bin {name}-hf --to hf"),
        ] {
            assert!(cls.contains(&want), "{want}: {cls}");
        }
    }
}

/// `uerzoo serve` with the 2019 GPT opened by path: its preset is `raw` there too, so a
/// greedy completion is UER-py 2019's continuation and the prompt counts no `[CLS]`.
#[tokio::test]
async fn serve_completes_as_the_2019_script() {
    use std::io::{BufRead, BufReader};
    struct Child(std::process::Child);
    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let dir = fixture("gpt_lm");
    let prompt = std::fs::read_to_string(dir.join("greedy_prompt.txt")).unwrap();
    let prompt = prompt.trim();
    let expected = std::fs::read_to_string(dir.join("greedy_generation.txt")).unwrap();
    let continuation = expected
        .lines()
        .nth(1)
        .unwrap()
        .strip_prefix(prompt)
        .unwrap();
    let mut child = Child(
        Command::new(common::uerzoo_bin())
            .arg("serve")
            .arg(format!("gpt={}", dir.join("uer_model.bin").display()))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Its standard output stays read for its life (a closed pipe would fail its writes).
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("listening on ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("uerzoo serve printed its address");
    let body = serde_json::json!({
        "model": "gpt", "prompt": prompt, "temperature": 0, "max_tokens": 34,
    });
    let r = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap()
        .post(format!("{url}/v1/completions"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let c: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(c["choices"][0]["text"], continuation, "{c}");
    assert_eq!(c["usage"]["prompt_tokens"], 6, "{c}");
    assert_eq!(c["usage"]["completion_tokens"], 34, "{c}");
}

/// UER-py 2019's own words for the model (`--encoder gpt --target lm`, `--encoder bert
/// --target cls`) in a config give the model that later UER-py's config vocabulary
/// (`encoder: transformer`, `mask`) describes.
#[test]
fn the_2019_encoder_names_read_as_later_configs() {
    let json = |path: PathBuf| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    for (name, encoder, target) in [("gpt_lm", "gpt", "lm"), ("bert_cls", "bert", "cls")] {
        let mut flags = json(fixture(name).join("uer_config.json"));
        flags["encoder"] = encoder.into();
        flags["target"] = target.into();
        let later = json(fixture(name).join("uer_config_v1.json"));
        assert_eq!(
            model::ModelConfig::from_uer_json(&flags).unwrap(),
            model::ModelConfig::from_uer_json(&later).unwrap(),
            "{name}"
        );
    }
    let bad = serde_json::json!({"encoder": "rcnn"});
    let err = model::ModelConfig::from_uer_json(&bad)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("encoder = rcnn") && err.contains("transformer, bert, gpt, lstm"),
        "{err}"
    );
}

/// The 2019 files migrate to UER naming v2 (`target.lm.output_layer.*`,
/// `target.cls.linear_{1,2}.*`) and back bit for bit; the v2 file is the same model.
#[test]
fn naming_v2_round_trip() {
    use uerzoo::convert::{Naming, ToUerOptions, to_uer};
    for (name, head) in [
        ("gpt_lm", "target.lm.output_layer.bias"),
        ("bert_cls", "target.cls.linear_2.weight"),
    ] {
        let v1 = read(&fixture(name).join("uer_model.bin"));
        let (v2, report) = to_uer(&v1, &ToUerOptions::default()).unwrap();
        assert!(
            v2.get(head).is_some(),
            "{name}: {:?}",
            v2.names().collect::<Vec<_>>()
        );
        assert!(
            report.dropped.is_empty() && !report.tied_decoder,
            "{name}: {report}"
        );
        let back_opts = ToUerOptions {
            naming: Naming::V1,
            ..ToUerOptions::default()
        };
        let (back, _) = to_uer(&v2, &back_opts).unwrap();
        assert_eq!(back.names().count(), v1.names().count(), "{name}");
        for (key, t) in &v1.tensors {
            let b = back.get(key).unwrap_or_else(|| panic!("{name}: no {key}"));
            assert_eq!(
                (&b.shape, b.to_f32_vec()),
                (&t.shape, t.to_f32_vec()),
                "{name}: {key}"
            );
        }
        assert_eq!(
            uerzoo::convert::detect(&v2).unwrap().family,
            uerzoo::convert::detect(&v1).unwrap().family,
            "{name}"
        );
    }
}

/// Further pretraining of the 2019 GPT with the LM target (what `info` lists): it trains,
/// writes the 2019 layout (the untied output layer keeps its bias) and generates again.
#[test]
fn pretrain_lm_from_the_2019_gpt() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixture("gpt_lm");
    let corpus_all =
        std::fs::read_to_string(common::shared().join("data/corpora/CLUECorpusSmall_sampled.txt"))
            .unwrap();
    let corpus = tmp.path().join("corpus.txt");
    let lines: Vec<&str> = corpus_all.lines().take(40).collect();
    std::fs::write(&corpus, lines.join("\n")).unwrap();
    let dataset = tmp.path().join("corpus.uzds");
    common::run_ok(
        Command::new(common::uerzoo_bin())
            .arg("preprocess")
            .arg("--corpus")
            .arg(&corpus)
            .arg("--vocab")
            .arg(dir.join("vocab.txt"))
            .args(["--target", "lm", "--seq-length", "32", "--output"])
            .arg(&dataset),
    );
    let out = tmp.path().join("pretrained.bin");
    common::run_ok(
        Command::new(common::uerzoo_bin())
            .arg("pretrain")
            .arg("--model")
            .arg(dir.join("uer_model.bin"))
            .arg("--dataset")
            .arg(&dataset)
            .args(["--target", "lm", "--total-steps", "2", "--batch-size", "4"])
            .arg("--output")
            .arg(&out),
    );
    let ckpt = read(&out);
    let det = uerzoo::convert::detect(&ckpt).unwrap();
    assert_eq!(det.family, uerzoo::convert::Layout::LegacyGpt);
    assert!(ckpt.get("target.output_layer.bias").is_some());
    let generated = common::run_ok(
        Command::new(common::uerzoo_bin())
            .arg("generate")
            .arg(&out)
            .args(["--prompt", "今天天气很好", "--greedy", "--max-length", "16"]),
    );
    let text = String::from_utf8(generated.stdout).unwrap();
    assert!(
        text.starts_with("今天天气很好") && text.trim_end().chars().count() > 6,
        "{text}"
    );
}
