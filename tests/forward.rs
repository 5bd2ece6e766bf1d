//! Forward passes against the fixtures made by the real UER-py and transformers
//! (`../shared/fixtures/uer/*`): `uer_outputs.safetensors` (UER-py, eval mode) and
//! `hf_outputs.safetensors` (transformers on `hf_by_uer_script/`).

mod common;

use uerzoo::checkpoint::Checkpoint;
use uerzoo::model::{self, DeviceSpec, tasks::Batch};

/// Max absolute difference allowed on non-padding positions. The acceptance bound:
/// both sides compute in f32 with different summation orders (gemm blocking, fused
/// attention), which stays ~1e-6 on these small models; 1e-4 is still far below the
/// 1e-2 UER-vs-HF LayerNorm gap (`info.json` `max_abs_diff_uer_vs_hf_logits`), so a wrong
/// LN formula, mask or activation cannot pass.
const TOL: f32 = 1e-4;

use common::read;

fn batch_of(reference: &Checkpoint) -> Batch {
    let ids = reference.get("input_ids").unwrap();
    let (batch, seq) = (ids.shape[0], ids.shape[1]);
    Batch {
        ids: ids.to_i64_vec().unwrap(),
        segment: reference.get("segment").unwrap().to_i64_vec().unwrap(),
        batch,
        seq,
    }
}

use common::max_diff_real;

fn check_uer(name: &str) {
    let dir = common::uer_fixture(name);
    let opened = model::open::open_model(
        &dir.join("uer_model.bin"),
        Some(&dir.join("uer_config.json")),
    )
    .unwrap();
    let reference = read(&dir.join("uer_outputs.safetensors"));
    let input = batch_of(&reference);
    let out = model::tasks::forward(&opened, &input, DeviceSpec::Cpu).unwrap();
    let hidden_ref = reference.get("hidden").unwrap();
    let logits_ref = reference.get("logits").unwrap();
    assert_eq!(out.hidden.shape, hidden_ref.shape);
    let logits = out.logits.expect("pretraining head");
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
    eprintln!("{name} (UER): hidden max diff {dh:e}, logits max diff {dl:e}");
    assert!(
        dh < TOL && dl < TOL,
        "{name}: hidden diff {dh:e}, logits diff {dl:e} (tolerance {TOL:e})"
    );
}

fn check_hf(name: &str) {
    let dir = common::uer_fixture(name);
    let opened = model::open::open_model(&dir.join("hf_by_uer_script"), None).unwrap();
    let reference = read(&dir.join("hf_outputs.safetensors"));
    let input = batch_of(&reference);
    let out = model::tasks::forward(&opened, &input, DeviceSpec::Cpu).unwrap();
    let logits_ref = reference.get("logits").unwrap();
    let logits = out.logits.expect("pretraining head");
    assert_eq!(logits.shape, logits_ref.shape);
    let dl = max_diff_real(
        &logits.values,
        &logits_ref.to_f32_vec(),
        &input.segment,
        logits_ref.shape[2],
    );
    eprintln!("{name} (HF dir): logits max diff {dl:e}");
    assert!(
        dl < TOL,
        "{name} (HF dir): logits diff {dl:e} (tolerance {TOL:e})"
    );
}

macro_rules! fixture_tests {
    ($($name:ident),*) => {
        mod uer_fixture { $( #[test] fn $name() { super::check_uer(stringify!($name)); } )* }
        mod hf_fixture { $( #[test] fn $name() { super::check_hf(stringify!($name)); } )* }
    };
}

fixture_tests!(albert_v1, bert_v1, gpt2_v1, gpt2_v2, roberta_v1, roberta_v2);

/// The UER LayerNorm and the HF one on a hand-computed row: x = [1, 2, 3, 4], gamma 1,
/// beta 0. mean 2.5; unbiased std sqrt(5/3) = 1.290994; biased var 1.25.
#[test]
fn layer_norm_formulas() {
    use burn::tensor::{Tensor, TensorData};
    use uerzoo::model::layer_norm::LayerNorm;
    let dev = Default::default();
    let x = Tensor::<model::Cpu, 2>::from_data(
        TensorData::new(vec![1f32, 2.0, 3.0, 4.0], [1, 4]),
        &dev,
    );
    let ones = || Tensor::<model::Cpu, 1>::from_data(TensorData::new(vec![1f32; 4], [4]), &dev);
    let zeros = || Tensor::<model::Cpu, 1>::from_data(TensorData::new(vec![0f32; 4], [4]), &dev);
    let uer = LayerNorm::new(ones(), zeros(), model::LnKind::Uer, 1e-6).forward(x.clone());
    let hf = LayerNorm::new(ones(), zeros(), model::LnKind::Hf, 1e-12).forward(x);
    let uer = uer.into_data().to_vec::<f32>().unwrap();
    let hf = hf.into_data().to_vec::<f32>().unwrap();
    let std_u = (5f64 / 3.0).sqrt() + 1e-6;
    let std_b = 1.25f64.sqrt();
    for (i, x) in [1.0, 2.0, 3.0, 4.0].iter().enumerate() {
        assert!(
            (uer[i] as f64 - (x - 2.5) / std_u).abs() < 1e-6,
            "uer {uer:?}"
        );
        assert!((hf[i] as f64 - (x - 2.5) / std_b).abs() < 1e-6, "hf {hf:?}");
    }
}

/// A random model survives a padded batch and an all-padding row without NaN.
#[test]
fn random_model_all_padding_row_is_finite() {
    let mut cfg = model::ModelConfig::from_uer_json(&serde_json::json!({
        "hidden_size": 32, "emb_size": 32, "feedforward_size": 64, "heads_num": 4, "layers_num": 2
    }))
    .unwrap();
    cfg.vocab_size = 50;
    cfg.max_seq_length = 16;
    let ckpt = model::random_checkpoint(&cfg, 7);
    let opened = model::open::OpenedModel {
        checkpoint: ckpt,
        config: cfg,
        source: uerzoo::convert::Source::Uer(uerzoo::convert::Naming::V2),
        dir: ".".into(),
        file: None,
        config_file: None,
    };
    let input = Batch {
        ids: vec![1, 2, 3, 0, 0, 0, 0, 0],
        segment: vec![1, 1, 2, 0, 0, 0, 0, 0],
        batch: 2,
        seq: 4,
    };
    let out = model::tasks::forward(&opened, &input, DeviceSpec::Cpu).unwrap();
    assert!(out.hidden.values.iter().all(|v| v.is_finite()));
    assert_eq!(out.logits.unwrap().shape, vec![2, 4, 50]);
}

/// Bad inputs are errors, not panics.
#[test]
fn out_of_range_ids_are_rejected() {
    let dir = common::uer_fixture("roberta_v2");
    let opened = model::open::open_model(
        &dir.join("uer_model.bin"),
        Some(&dir.join("uer_config.json")),
    )
    .unwrap();
    let input = Batch {
        ids: vec![1, 999_999],
        segment: vec![1, 1],
        batch: 1,
        seq: 2,
    };
    let err = model::tasks::forward(&opened, &input, DeviceSpec::Cpu).unwrap_err();
    assert!(err.to_string().contains("999999"), "{err}");
    let input = Batch {
        ids: vec![1, 2],
        segment: vec![1, 7],
        batch: 1,
        seq: 2,
    };
    assert!(model::tasks::forward(&opened, &input, DeviceSpec::Cpu).is_err());
}

/// `uerzoo forward` end to end on a fixture: OUT holds `hidden` and `logits` that match.
#[test]
fn cli_forward_roberta_v1() {
    let dir = common::uer_fixture("roberta_v1");
    let tmp = tempfile::tempdir().unwrap();
    let out_path = tmp.path().join("out.safetensors");
    let status = std::process::Command::new(common::uerzoo_bin())
        .arg("forward")
        .arg(dir.join("uer_model.bin"))
        .arg("--config")
        .arg(dir.join("uer_config.json"))
        .arg("--input")
        .arg(dir.join("uer_outputs.safetensors"))
        .arg("--output")
        .arg(&out_path)
        .status()
        .unwrap();
    assert!(status.success());
    let got = read(&out_path);
    let reference = read(&dir.join("uer_outputs.safetensors"));
    let seg = reference.get("segment").unwrap().to_i64_vec().unwrap();
    for key in ["hidden", "logits"] {
        let (a, b) = (got.get(key).unwrap(), reference.get(key).unwrap());
        assert_eq!(a.shape, b.shape);
        let d = max_diff_real(&a.to_f32_vec(), &b.to_f32_vec(), &seg, b.shape[2]);
        assert!(d < TOL, "{key}: {d:e}");
    }
}

/// CUDA: the same fixture on the GPU (needs `--features cuda` and an NVIDIA GPU).
#[test]
#[ignore = "needs an NVIDIA GPU and --features cuda"]
fn cuda_matches_cpu_roberta_v1() {
    let dir = common::uer_fixture("roberta_v1");
    let opened = model::open::open_model(
        &dir.join("uer_model.bin"),
        Some(&dir.join("uer_config.json")),
    )
    .unwrap();
    let reference = read(&dir.join("uer_outputs.safetensors"));
    let input = batch_of(&reference);
    let out = model::tasks::forward(&opened, &input, DeviceSpec::Cuda(0)).unwrap();
    let logits_ref = reference.get("logits").unwrap();
    let d = max_diff_real(
        &out.logits.unwrap().values,
        &logits_ref.to_f32_vec(),
        &input.segment,
        logits_ref.shape[2],
    );
    assert!(d < TOL, "cuda logits diff {d:e}");
}

fn roberta_v1_tokenizer() -> uerzoo::tokenizer::Tokenizer {
    let vocab = common::uer_fixture("roberta_v1").join("vocab.txt");
    uerzoo::tokenizer::Tokenizer::from_vocab_file(vocab, uerzoo::tokenizer::TokenizerOptions::uer())
        .unwrap()
}

/// `uerzoo fill-mask` end to end on the roberta_v1 fixture (random small weights, so the
/// ranking itself means nothing): five candidates, best first, and the best is the argmax
/// of the MLM logits `forward` gives for the same ids.
#[test]
fn cli_fill_mask_roberta_v1() {
    let dir = common::uer_fixture("roberta_v1");
    let text = "北京是[MASK]国的首都。";
    let out = common::run_ok(
        std::process::Command::new(common::uerzoo_bin())
            .arg("fill-mask")
            .arg(dir.join("uer_model.bin"))
            .arg(text)
            .args(["--top-k", "5", "--json"]),
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cands = json[0].as_array().unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(cands.len(), 5);
    let scores: Vec<f64> = cands.iter().map(|c| c["score"].as_f64().unwrap()).collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]) && scores[0] <= 1.0 && scores[4] > 0.0,
        "{scores:?}"
    );

    let tok = roberta_v1_tokenizer();
    let mut ids = vec![tok.cls_id() as i64];
    ids.extend(tok.encode_with_specials(text).into_iter().map(i64::from));
    ids.push(tok.sep_id() as i64);
    let pos = ids.iter().position(|&i| i == tok.mask_id() as i64).unwrap();
    assert_eq!(pos, 4, "[CLS] 北 京 是 [MASK]");
    let opened = model::open::open_model(&dir.join("uer_model.bin"), None).unwrap();
    let seq = ids.len();
    let fwd = model::tasks::forward(
        &opened,
        &Batch {
            ids,
            segment: vec![1; seq],
            batch: 1,
            seq,
        },
        DeviceSpec::Cpu,
    )
    .unwrap();
    let logits = fwd.logits.unwrap();
    let vocab = logits.shape[2];
    let row = &logits.values[pos * vocab..(pos + 1) * vocab];
    let best = (0..vocab)
        .max_by(|&a, &b| row[a].total_cmp(&row[b]))
        .unwrap();
    assert_eq!(cands[0]["id"].as_u64().unwrap() as usize, best);
    assert_eq!(
        cands[0]["token"].as_str().unwrap(),
        tok.id_to_token(best as u32).unwrap()
    );
}

/// `uerzoo extract-features`: one row per non-empty line; `first` pooling is the `[CLS]`
/// state of `forward`, `mean` is UER-py's sum over real tokens / seq_length.
#[test]
fn cli_extract_features_roberta_v1() {
    let dir = common::uer_fixture("roberta_v1");
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("texts.txt");
    std::fs::write(&input, "北京是中国的首都。\n\n今天天气很好\n").unwrap();
    let tok = roberta_v1_tokenizer();
    let opened = model::open::open_model(&dir.join("uer_model.bin"), None).unwrap();
    let seq = 16;
    for pooling in ["first", "mean"] {
        let output = tmp.path().join(format!("{pooling}.safetensors"));
        let status = std::process::Command::new(common::uerzoo_bin())
            .arg("extract-features")
            .arg(dir.join("uer_model.bin"))
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&output)
            .args([
                "--pooling",
                pooling,
                "--seq-length",
                "16",
                "--batch-size",
                "1",
            ])
            .status()
            .unwrap();
        assert!(status.success());
        let got = read(&output);
        let features = got.get("features").unwrap();
        assert_eq!(features.shape, vec![2, 128]);
        let values = features.to_f32_vec();
        for (row, line) in ["北京是中国的首都。", "今天天气很好"].iter().enumerate()
        {
            let enc = tok.encode_single(line, seq);
            let ids: Vec<i64> = enc.ids.iter().map(|&i| i64::from(i)).collect();
            let segment: Vec<i64> = enc.segments.iter().map(|&s| i64::from(s)).collect();
            let fwd = model::tasks::forward(
                &opened,
                &Batch {
                    ids,
                    segment: segment.clone(),
                    batch: 1,
                    seq,
                },
                DeviceSpec::Cpu,
            )
            .unwrap();
            let h = &fwd.hidden.values;
            let expected: Vec<f32> = match pooling {
                "first" => h[..128].to_vec(),
                _ => (0..128)
                    .map(|k| {
                        (0..seq)
                            .filter(|&p| segment[p] > 0)
                            .map(|p| h[p * 128 + k])
                            .sum::<f32>()
                            / seq as f32
                    })
                    .collect(),
            };
            let d = (0..128)
                .map(|k| (values[row * 128 + k] - expected[k]).abs())
                .fold(0f32, f32::max);
            assert!(d < 1e-5, "{pooling} row {row}: {d:e}");
        }
    }
}

/// MODEL as a registry name: `uerzoo forward tiny` finds `uer/chinese_roberta_L-2_H-128`
/// in the Huggingface cache (`$HF_HUB_CACHE`). The cache here is built by hand from the
/// roberta_v1 fixture's HF directory (the real weight is not downloaded in tests).
#[test]
fn cli_forward_registry_name_from_cache() {
    let dir = common::uer_fixture("roberta_v1");
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--uer--chinese_roberta_L-2_H-128");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), commit).unwrap();
    for file in ["config.json", "pytorch_model.bin"] {
        std::fs::copy(dir.join("hf_by_uer_script").join(file), snapshot.join(file)).unwrap();
    }
    let out_path = cache.path().join("out.safetensors");
    let output = std::process::Command::new(common::uerzoo_bin())
        .env("HF_HUB_CACHE", cache.path())
        .args(["forward", "tiny", "--input"])
        .arg(dir.join("hf_outputs.safetensors"))
        .arg("--output")
        .arg(&out_path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let got = read(&out_path);
    let reference = read(&dir.join("hf_outputs.safetensors"));
    let seg = reference.get("segment").unwrap().to_i64_vec().unwrap();
    let (a, b) = (got.get("logits").unwrap(), reference.get("logits").unwrap());
    let d = max_diff_real(&a.to_f32_vec(), &b.to_f32_vec(), &seg, b.shape[2]);
    assert!(d < TOL, "logits: {d:e}");

    // Not downloaded: the error says how to get it.
    let empty = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(common::uerzoo_bin())
        .env("HF_HUB_CACHE", empty.path())
        .args(["forward", "tiny", "--input"])
        .arg(dir.join("hf_outputs.safetensors"))
        .arg("--output")
        .arg(empty.path().join("o.safetensors"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("uerzoo download"), "{stderr}");
}

/// A classifier checkpoint gets its head from UER's `output_layer_{1,2}` (pooled first token →
/// linear → tanh → linear to the labels), and that head computes what transformers computes:
/// the classifiers fine-tuned by transformers (`fixtures/hf_classifiers/`, BERT and ALBERT,
/// opened as UER naming v2, where the pooler becomes `output_layer_1` and `classifier`
/// `output_layer_2`) give, through [`model::Model::classify`], transformers' logits on its own
/// 8 inputs (`hf_outputs.safetensors`) within [`TOL`].
#[test]
fn classifier_head_loads_from_output_layers() {
    for name in ["bert_cls_hf", "albert_cls_hf"] {
        let dir = common::shared().join("fixtures/hf_classifiers").join(name);
        let opened = model::open::open_model(&dir, None).unwrap();
        for key in ["output_layer_1.weight", "output_layer_2.weight"] {
            assert!(opened.checkpoint.get(key).is_some(), "{name}: no {key}");
        }
        let dev = Default::default();
        let (m, report) =
            model::load_model::<model::Cpu>(&opened.checkpoint, &opened.config, &dev).unwrap();
        assert!(
            report.heads.contains(&"classifier"),
            "{name}: {:?}",
            report.heads
        );
        assert!(report.unused.is_empty(), "{name}: {:?}", report.unused);
        let reference = read(&dir.join("hf_outputs.safetensors"));
        let ids = reference.get("input_ids").unwrap();
        let (batch, seq) = (ids.shape[0], ids.shape[1]);
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
        // UER's segment: token type + 1 on real tokens, 0 on padding (the attention mask).
        let segment: Vec<i64> = types
            .iter()
            .zip(&mask)
            .map(|(t, m)| if *m == 1 { t + 1 } else { 0 })
            .collect();
        let (ids, seg) = m
            .inputs(&ids.to_i64_vec().unwrap(), &segment, batch, seq, &dev)
            .unwrap();
        let logits = m.classify(ids, seg, None, 0.0).unwrap();
        let want = reference.get("logits").unwrap();
        assert_eq!(logits.dims().to_vec(), want.shape, "{name}");
        let got = logits.into_data().to_vec::<f32>().unwrap();
        let diff = got
            .iter()
            .zip(want.to_f32_vec())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!("{name}: classifier logits vs transformers, max diff {diff:e}");
        assert!(
            diff < TOL,
            "{name}: logits differ by {diff:e} (tolerance {TOL:e})"
        );
    }
}
