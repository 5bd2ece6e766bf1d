//! UER-py 2019's LSTM language model (`--embedding bert --encoder lstm --target lm`) against
//! the reference data written by UER-py of that year (commit 4475b1a,
//! `fixtures/uer_2019/lstm_lm`, legacy torch format), and a second shape of our own (odd
//! hidden size) against a scalar f64 recurrence written here. The same LSTM with UER-py
//! 2019's classification target (`fixtures/uer_2019/lstm_cls`, made by `make_fixture.py`
//! beside it): predict straight from it, and fine-tuning from both files.

mod common;

use burn::tensor::{Int, Tensor, TensorData};
use std::path::{Path, PathBuf};
use std::process::Command;
use uerzoo::checkpoint::{Checkpoint, Tensor as CkptTensor};
use uerzoo::generate::{self, GenerateOptions, Sampling};
use uerzoo::model::kv_cache::KvCache;
use uerzoo::model::{
    self, Cpu, DeviceSpec, EncoderKind, Model, load_model, open::OpenedModel, tasks::Batch,
};
use uerzoo::tokenizer::{Tokenizer, TokenizerOptions};

/// The acceptance bound of the issue, as `tests/legacy.rs`.
const TOL: f32 = 1e-4;

fn fixture() -> PathBuf {
    common::shared()
        .join("fixtures")
        .join("uer_2019")
        .join("lstm_lm")
}

use common::read;

fn open(config: &str) -> OpenedModel {
    let dir = fixture();
    model::open::open_model(&dir.join("uer_model.bin"), Some(&dir.join(config))).unwrap()
}

fn reference_batch(reference: &Checkpoint) -> Batch {
    let ids = reference.get("input_ids").unwrap();
    Batch {
        ids: ids.to_i64_vec().unwrap(),
        segment: reference.get("segment").unwrap().to_i64_vec().unwrap(),
        batch: ids.shape[0],
        seq: ids.shape[1],
    }
}

/// Max |a−b| over the positions whose segment is non-zero (all when `segment` is `None`);
/// `[batch, seq, width]`.
fn max_diff_at(a: &[f32], b: &[f32], segment: Option<&[i64]>, width: usize) -> f32 {
    assert_eq!(a.len(), b.len(), "shapes differ");
    let mut worst = 0f32;
    for pos in 0..a.len() / width {
        if segment.is_some_and(|s| s[pos] == 0) {
            continue;
        }
        for k in pos * width..(pos + 1) * width {
            worst = worst.max((a[k] - b[k]).abs());
        }
    }
    worst
}

/// The keys alone name the LSTM LM and its layer count.
#[test]
fn the_lstm_lm_is_detected() {
    let ckpt = read(&fixture().join("uer_model.bin"));
    let det = uerzoo::convert::detect(&ckpt).unwrap();
    assert_eq!(det.family, uerzoo::convert::Layout::LegacyLstm);
    assert_eq!(det.layers, 2);
    assert_eq!(
        det.source,
        uerzoo::convert::Source::Uer(uerzoo::convert::Naming::V1)
    );
}

/// Hidden states and LM logits equal UER-py 2019's, with the 2019 config (no encoder key:
/// the keys say LSTM) and with later UER-py's config vocabulary (`encoder: lstm`). Padding
/// positions run through the LSTM as in UER-py, so they match too.
#[test]
fn lstm_lm_forward_matches_uer_py_2019() {
    let reference = read(&fixture().join("uer_outputs.safetensors"));
    let input = reference_batch(&reference);
    let hidden_ref = reference.get("hidden").unwrap();
    let logits_ref = reference.get("logits").unwrap();
    for config in ["uer_config.json", "uer_config_v1.json"] {
        let opened = open(config);
        assert_eq!(opened.config.encoder, EncoderKind::Lstm, "{config}");
        let out = model::tasks::forward(&opened, &input, DeviceSpec::Cpu).unwrap();
        assert_eq!(out.report.heads, ["lm"], "{config}");
        assert!(out.report.tied.is_empty(), "{config}");
        assert!(out.report.unused.is_empty(), "{:?}", out.report.unused);
        assert_eq!(out.hidden.shape, hidden_ref.shape);
        let logits = out.logits.expect("LM logits");
        assert_eq!(logits.shape, logits_ref.shape);
        let (h, l) = (hidden_ref.to_f32_vec(), logits_ref.to_f32_vec());
        let (wh, wl) = (hidden_ref.shape[2], logits_ref.shape[2]);
        let dh = max_diff_at(&out.hidden.values, &h, Some(&input.segment), wh);
        let dl = max_diff_at(&logits.values, &l, Some(&input.segment), wl);
        let dh_all = max_diff_at(&out.hidden.values, &h, None, wh);
        let dl_all = max_diff_at(&logits.values, &l, None, wl);
        eprintln!(
            "{config}: hidden {dh:e}, logits {dl:e}; with padding: hidden {dh_all:e}, logits {dl_all:e}"
        );
        assert!(
            dh < TOL && dl < TOL,
            "{config}: hidden {dh:e}, logits {dl:e}"
        );
        assert!(
            dh_all < TOL && dl_all < TOL,
            "{config}, padding positions: hidden {dh_all:e}, logits {dl_all:e}"
        );
    }
}

/// `uerzoo forward` on the legacy-format file writes UER-py 2019's outputs.
#[test]
fn cli_forward_writes_the_reference_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixture();
    let out = tmp.path().join("lstm.safetensors");
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
    for (key, width) in [("hidden", 96), ("logits", 3000)] {
        let d = max_diff_at(
            &got.get(key).unwrap().to_f32_vec(),
            &reference.get(key).unwrap().to_f32_vec(),
            Some(&segment),
            width,
        );
        assert!(d < TOL, "{key}: {d:e}");
    }
}

// ---- a second shape: random weights, odd hidden size, scalar f64 reference ----

const VOCAB: usize = 37;
const EMB: usize = 10;
const HID: usize = 13;
const LAYERS: usize = 2;
const POSITIONS: usize = 20;

/// Deterministic values in ±`scale` (a small LCG; the test needs no statistics).
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// The random model in UER-py 2019's own key names (naming v1).
fn random_lstm() -> Checkpoint {
    let mut ckpt = Checkpoint::default();
    let mut seed = 1;
    let mut put = |ckpt: &mut Checkpoint, name: String, shape: Vec<usize>, scale: f32| {
        let n = shape.iter().product();
        seed += 1;
        ckpt.insert(name, CkptTensor::from_f32(shape, &values(n, seed, scale)));
    };
    put(
        &mut ckpt,
        "embedding.word_embedding.weight".into(),
        vec![VOCAB, EMB],
        1.0,
    );
    put(
        &mut ckpt,
        "embedding.position_embedding.weight".into(),
        vec![POSITIONS, EMB],
        1.0,
    );
    put(
        &mut ckpt,
        "embedding.segment_embedding.weight".into(),
        vec![3, EMB],
        1.0,
    );
    let gamma: Vec<f32> = values(EMB, 99, 0.5).iter().map(|v| 1.0 + v).collect();
    ckpt.insert(
        "embedding.layer_norm.gamma",
        CkptTensor::from_f32(vec![EMB], &gamma),
    );
    put(
        &mut ckpt,
        "embedding.layer_norm.beta".into(),
        vec![EMB],
        0.3,
    );
    for k in 0..LAYERS {
        let d_in = if k == 0 { EMB } else { HID };
        put(
            &mut ckpt,
            format!("encoder.rnn.weight_ih_l{k}"),
            vec![4 * HID, d_in],
            0.5,
        );
        put(
            &mut ckpt,
            format!("encoder.rnn.weight_hh_l{k}"),
            vec![4 * HID, HID],
            0.5,
        );
        put(
            &mut ckpt,
            format!("encoder.rnn.bias_ih_l{k}"),
            vec![4 * HID],
            0.5,
        );
        put(
            &mut ckpt,
            format!("encoder.rnn.bias_hh_l{k}"),
            vec![4 * HID],
            0.5,
        );
    }
    put(
        &mut ckpt,
        "target.output_layer.weight".into(),
        vec![VOCAB, HID],
        0.5,
    );
    put(
        &mut ckpt,
        "target.output_layer.bias".into(),
        vec![VOCAB],
        0.5,
    );
    ckpt
}

fn f64s(ckpt: &Checkpoint, key: &str) -> Vec<f64> {
    ckpt.get(key)
        .unwrap()
        .to_f32_vec()
        .into_iter()
        .map(f64::from)
        .collect()
}

/// `y = W x + b` with torch's `[out, in]` weight.
fn affine(w: &[f64], b: &[f64], x: &[f64]) -> Vec<f64> {
    let n = x.len();
    b.iter()
        .enumerate()
        .map(|(o, bo)| bo + (0..n).map(|i| w[o * n + i] * x[i]).sum::<f64>())
        .collect()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// UER-py 2019's model on one row, scalar and in f64: BERT's embedding (word + position +
/// segment, UER's LayerNorm: unbiased std, eps 1e-6 added to it), torch's LSTM recurrence
/// (gates i, f, g, o, zero initial state) layer by layer, the LM output layer. Returns
/// `(hidden [seq·H], logits [seq·V])`.
fn reference_row(ckpt: &Checkpoint, ids: &[i64], segment: &[i64]) -> (Vec<f64>, Vec<f64>) {
    let word = f64s(ckpt, "embedding.word_embedding.weight");
    let pos = f64s(ckpt, "embedding.position_embedding.weight");
    let seg = f64s(ckpt, "embedding.segment_embedding.weight");
    let gamma = f64s(ckpt, "embedding.layer_norm.gamma");
    let beta = f64s(ckpt, "embedding.layer_norm.beta");
    let mut xs: Vec<Vec<f64>> = ids
        .iter()
        .zip(segment)
        .enumerate()
        .map(|(t, (&id, &s))| {
            let e: Vec<f64> = (0..EMB)
                .map(|j| word[id as usize * EMB + j] + pos[t * EMB + j] + seg[s as usize * EMB + j])
                .collect();
            let mean = e.iter().sum::<f64>() / EMB as f64;
            let var = e.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (EMB - 1) as f64;
            let std = var.sqrt();
            (0..EMB)
                .map(|j| gamma[j] * (e[j] - mean) / (std + 1e-6) + beta[j])
                .collect()
        })
        .collect();
    for k in 0..LAYERS {
        let w_ih = f64s(ckpt, &format!("encoder.rnn.weight_ih_l{k}"));
        let w_hh = f64s(ckpt, &format!("encoder.rnn.weight_hh_l{k}"));
        let b_ih = f64s(ckpt, &format!("encoder.rnn.bias_ih_l{k}"));
        let b_hh = f64s(ckpt, &format!("encoder.rnn.bias_hh_l{k}"));
        let (mut h, mut c) = (vec![0f64; HID], vec![0f64; HID]);
        let mut out = Vec::new();
        for x in &xs {
            let a = affine(&w_ih, &b_ih, x);
            let r = affine(&w_hh, &b_hh, &h);
            let gate = |q: usize, j: usize| a[q * HID + j] + r[q * HID + j];
            for j in 0..HID {
                let (i, f) = (sigmoid(gate(0, j)), sigmoid(gate(1, j)));
                let (g, o) = (gate(2, j).tanh(), sigmoid(gate(3, j)));
                c[j] = f * c[j] + i * g;
                h[j] = o * c[j].tanh();
            }
            out.push(h.clone());
        }
        xs = out;
    }
    let w = f64s(ckpt, "target.output_layer.weight");
    let b = f64s(ckpt, "target.output_layer.bias");
    let logits = xs.iter().flat_map(|h| affine(&w, &b, h)).collect();
    (xs.concat(), logits)
}

fn write_random_model(dir: &Path, config: &str) -> OpenedModel {
    let weights = dir.join("uer_model.bin");
    random_lstm().write_torch(&weights, true).unwrap();
    std::fs::write(dir.join("uer_config.json"), config).unwrap();
    model::open::open_model(&weights, None).unwrap()
}

/// A random 2-layer LSTM with an odd hidden size (13, input 10) equals the scalar f64
/// recurrence on two rows (the second padded), and each row alone equals its batched row.
#[test]
fn random_odd_lstm_matches_the_scalar_recurrence() {
    let tmp = tempfile::tempdir().unwrap();
    // The 2019 config names no encoder: the keys say LSTM.
    let opened = write_random_model(
        tmp.path(),
        &format!(r#"{{"emb_size": {EMB}, "hidden_size": {HID}, "layers_num": {LAYERS}}}"#),
    );
    assert_eq!(opened.config.encoder, EncoderKind::Lstm);
    let seq = 9;
    let ids: Vec<i64> = (0..2 * seq as i64)
        .map(|i| (i * 7 + 3) % VOCAB as i64)
        .collect();
    let mut segment = vec![1i64; 2 * seq];
    for s in &mut segment[seq + 6..] {
        *s = 0;
    }
    segment[3] = 2;
    let batch = Batch {
        ids: ids.clone(),
        segment: segment.clone(),
        batch: 2,
        seq,
    };
    let out = model::tasks::forward(&opened, &batch, DeviceSpec::Cpu).unwrap();
    assert_eq!(out.hidden.shape, [2, seq, HID]);
    let logits = out.logits.unwrap();
    assert_eq!(logits.shape, [2, seq, VOCAB]);
    let ckpt = random_lstm();
    for r in 0..2 {
        let row = r * seq..(r + 1) * seq;
        let (h, l) = reference_row(&ckpt, &ids[row.clone()], &segment[row.clone()]);
        let dh = out.hidden.values[r * seq * HID..(r + 1) * seq * HID]
            .iter()
            .zip(&h)
            .map(|(a, b)| (f64::from(*a) - b).abs())
            .fold(0.0, f64::max);
        let dl = logits.values[r * seq * VOCAB..(r + 1) * seq * VOCAB]
            .iter()
            .zip(&l)
            .map(|(a, b)| (f64::from(*a) - b).abs())
            .fold(0.0, f64::max);
        eprintln!("row {r}: hidden {dh:e}, logits {dl:e} (every position, padding included)");
        assert!(
            dh < TOL as f64 && dl < TOL as f64,
            "row {r}: hidden {dh:e}, logits {dl:e}"
        );

        // The row alone, without its padding.
        let keep = segment[row.clone()].iter().filter(|&&s| s != 0).count();
        let alone = Batch {
            ids: ids[r * seq..r * seq + keep].to_vec(),
            segment: segment[r * seq..r * seq + keep].to_vec(),
            batch: 1,
            seq: keep,
        };
        let one = model::tasks::forward(&opened, &alone, DeviceSpec::Cpu).unwrap();
        let d = max_diff_at(
            &one.hidden.values,
            &out.hidden.values[r * seq * HID..(r * seq + keep) * HID],
            None,
            HID,
        );
        eprintln!("row {r} alone vs batched: hidden {d:e}");
        assert!(d <= 1e-6, "row {r} alone vs batched: {d:e}");
    }
}

/// `uerzoo extract-features --pooling mean` on the LSTM (what the zoo page advises for it):
/// UER-py's sum of the last layer's states over the real tokens / seq_length, the states
/// being the forward's on `[CLS] tokens` padded to `--seq-length`.
#[test]
fn cli_extract_features_mean_on_the_lstm() {
    let dir = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("texts.txt");
    let lines = ["我们在这本书上", "好大的人"];
    std::fs::write(&input, format!("{}\n\n{}\n", lines[0], lines[1])).unwrap();
    let output = tmp.path().join("mean.safetensors");
    common::run_ok(
        Command::new(common::uerzoo_bin())
            .arg("extract-features")
            .arg(dir.join("uer_model.bin"))
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&output)
            .args(["--pooling", "mean", "--seq-length", "12"]),
    );
    let features = read(&output).get("features").unwrap().clone();
    assert_eq!(features.shape, vec![2, 96]);
    let values = features.to_f32_vec();
    let tok = uerzoo::tokenizer::Tokenizer::from_vocab_file(
        dir.join("vocab.txt"),
        uerzoo::tokenizer::TokenizerOptions::uer(),
    )
    .unwrap();
    let opened = open("uer_config.json");
    let seq = 12;
    for (row, line) in lines.iter().enumerate() {
        let enc = tok.encode_single(line, seq);
        let ids: Vec<i64> = enc.ids.iter().map(|&i| i64::from(i)).collect();
        assert!(
            !ids.contains(&100),
            "{line}: every character is in the vocabulary"
        );
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
        let d = (0..96)
            .map(|k| {
                let mean = (0..seq)
                    .filter(|&p| segment[p] > 0)
                    .map(|p| h[p * 96 + k])
                    .sum::<f32>()
                    / seq as f32;
                (values[row * 96 + k] - mean).abs()
            })
            .fold(0f32, f32::max);
        assert!(d < 1e-5, "row {row}: {d:e}");
    }
}

// ---- generation: the recurrent state as the cache ----

fn fixture_model() -> Model<Cpu> {
    let opened = open("uer_config.json");
    load_model::<Cpu>(&opened.checkpoint, &opened.config, &Default::default())
        .unwrap()
        .0
}

fn tokenizer() -> Tokenizer {
    Tokenizer::from_vocab_file(fixture().join("vocab.txt"), TokenizerOptions::uer()).unwrap()
}

fn ids_tensor(ids: &[u32]) -> Tensor<Cpu, 2, Int> {
    let v: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
    Tensor::from_data(TensorData::new(v, [1, ids.len()]), &Default::default())
}

fn to_vec(t: Tensor<Cpu, 3>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// LM logits of every position of `ids` by the full forward (segment 1, as decoding).
fn full_logits(model: &Model<Cpu>, ids: &[u32]) -> Vec<f32> {
    let ids_i64: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
    let seg = vec![1i64; ids.len()];
    let (t_ids, t_seg) = model
        .inputs(&ids_i64, &seg, 1, ids.len(), &Default::default())
        .unwrap();
    to_vec(model.forward(t_ids, t_seg).logits.unwrap())
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "shapes differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// Prefill + one token at a time through the recurrent state gives the full forward's
/// logits at every position.
#[test]
fn recurrent_state_logits_match_full_forward() {
    let model = fixture_model();
    let ids: Vec<u32> = (0..40).map(|i| (i * 37 % 2999 + 1) as u32).collect();
    let full = full_logits(&model, &ids);
    for prefill in [1, 7] {
        let mut cache = KvCache::new(&model);
        let mut cached = to_vec(
            model
                .decode_step(ids_tensor(&ids[..prefill]), &mut cache)
                .unwrap(),
        );
        for i in prefill..ids.len() {
            cached.extend(to_vec(
                model
                    .decode_step(ids_tensor(&ids[i..=i]), &mut cache)
                    .unwrap(),
            ));
        }
        assert_eq!(cache.len(), ids.len());
        let d = max_abs(&full, &cached);
        eprintln!("prefill {prefill}: recurrent state vs full forward {d:e}");
        assert!(d <= TOL, "prefill {prefill}: {d:e}");
    }
}

/// Rows of different lengths in one cache each step as they would alone, before and after
/// a row leaves and another joins.
#[test]
fn batched_decode_step_matches_each_sequence_alone() {
    let model = fixture_model();
    let tok = tokenizer();
    let prompts: Vec<Vec<u32>> = ["我们", "这本书很好，我", "一个人在看书，也来"]
        .iter()
        .map(|t| tok.encode(t))
        .collect();
    let mut alone: Vec<KvCache<Cpu>> = Vec::new();
    let mut batch = KvCache::new(&model);
    for p in &prompts {
        let mut c = KvCache::new(&model);
        model.decode_step(ids_tensor(p), &mut c).unwrap();
        batch.join(c.clone());
        alone.push(c);
    }
    assert_eq!(batch.rows(), 3);
    assert_eq!(
        batch.positions(),
        prompts.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let step = |batch: &mut KvCache<Cpu>, alone: &mut [KvCache<Cpu>], tokens: &[u32]| {
        let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        let got = to_vec(
            model
                .decode_step(
                    Tensor::from_data(TensorData::new(ids, [tokens.len(), 1]), &Default::default()),
                    batch,
                )
                .unwrap(),
        );
        let v = got.len() / tokens.len();
        for (r, (c, &t)) in alone.iter_mut().zip(tokens).enumerate() {
            let want = to_vec(model.decode_step(ids_tensor(&[t]), c).unwrap());
            let d = max_abs(&got[r * v..(r + 1) * v], &want);
            assert!(d < TOL, "row {r}: logits differ by {d:e}");
        }
    };
    step(&mut batch, &mut alone, &[11, 200, 1500]);
    step(&mut batch, &mut alone, &[7, 8, 9]);
    batch.retain(&[true, true, false]);
    alone.truncate(2);
    assert_eq!(
        batch.positions(),
        vec![prompts[0].len() + 2, prompts[1].len() + 2]
    );
    let p = tok.encode("好");
    let mut c = KvCache::new(&model);
    model.decode_step(ids_tensor(&p), &mut c).unwrap();
    batch.join(c.clone());
    alone.push(c);
    step(&mut batch, &mut alone, &[30, 40, 50]);
}

/// Greedy generation (preset raw: no `[CLS]` before the prompt), with the recurrent state
/// and without: every new token is the argmax of the full forward's last logits.
#[test]
fn greedy_generation_is_the_forward_argmax_step_by_step() {
    let model = fixture_model();
    let prompt = tokenizer().encode("我们在这本书上");
    let max_length = 30;
    let mut outs = Vec::new();
    for use_cache in [true, false] {
        let opts = GenerateOptions {
            max_length,
            sampling: Sampling::greedy(),
            use_cache,
            ..GenerateOptions::default()
        };
        let out = generate::generate(&model, &prompt, &opts, &mut |_, _| {}).unwrap();
        assert_eq!(out[0].ids.len(), max_length);
        assert_eq!(out[0].ids[..prompt.len()], prompt[..]);
        outs.push(out[0].ids.clone());
    }
    assert_eq!(
        outs[0], outs[1],
        "the recurrent state does not change the tokens"
    );
    let ids = &outs[0];
    let vocab = model.config.vocab_size;
    for n in prompt.len()..ids.len() {
        let logits = full_logits(&model, &ids[..n]);
        let last = &logits[(n - 1) * vocab..n * vocab];
        let best = (0..vocab)
            .max_by(|&a, &b| last[a].total_cmp(&last[b]).then(b.cmp(&a)))
            .unwrap();
        assert_eq!(ids[n] as usize, best, "token {n}");
    }
}

/// `uerzoo generate` on the 2019 file: preset raw by default (the prompt is not preceded by
/// `[CLS]`), the same text with the recurrent state, without it and batched.
#[test]
fn cli_greedy_generation_with_and_without_the_state() {
    let dir = fixture();
    let run = |extra: &[&str]| {
        let out = common::run_ok(
            Command::new(common::uerzoo_bin())
                .arg("generate")
                .arg(dir.join("uer_model.bin"))
                .args([
                    "--prompt",
                    "我们在这本书上",
                    "--greedy",
                    "--max-length",
                    "30",
                ])
                .args(extra),
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let plain = run(&[]);
    assert!(plain.starts_with("我们在这本书上"), "{plain}");
    assert_eq!(run(&["--no-cache"]), plain);
    assert_eq!(run(&["--preset", "raw"]), plain);
}

/// `uerzoo generate --preset raw --greedy --max-length 40` prints UER-py 2019's own greedy
/// generation (`scripts/generate.py --encoder lstm --top_k 1 --seq_length 40`, second line of
/// `greedy_generation.txt`: prompt and continuation, no `[CLS]` before the prompt), with the
/// recurrent state and without.
#[test]
fn greedy_generation_matches_uer_py_2019() {
    let dir = fixture();
    let prompt = std::fs::read_to_string(dir.join("greedy_prompt.txt")).unwrap();
    let expected = std::fs::read_to_string(dir.join("greedy_generation.txt")).unwrap();
    let mut lines = expected.lines();
    assert_eq!(lines.next(), Some(prompt.trim()));
    let want = lines.next().unwrap();
    assert_eq!(want.chars().count(), 40, "{want}");
    for extra in [
        &["--preset", "raw"][..],
        &["--preset", "raw", "--no-cache"][..],
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

/// The registry's LSTM LM entry: its UER config (which says `mask = "fully_visible"`, as
/// UER-py's configs do) reads as the LSTM, causal by its keys; `info` lists the commands
/// that run it, with the `raw` preset.
#[test]
fn the_registry_entry_reads_as_the_lstm() {
    let entry = uerzoo::registry::Registry::builtin()
        .get("reviews_lstm_lm")
        .unwrap();
    let uer = entry.uer_config().unwrap();
    let opened =
        model::open::open_with_uer_config(&fixture().join("uer_model.bin"), &uer, None).unwrap();
    assert_eq!(opened.config.encoder, EncoderKind::Lstm);
    assert_eq!(opened.config.mask, model::MaskKind::Causal);
    assert_eq!(opened.config.hidden_size, 512);
    let out = common::run_ok(Command::new(common::uerzoo_bin()).args(["info", "reviews_lstm_lm"]));
    let info = String::from_utf8(out.stdout).unwrap();
    for want in [
        "uerzoo generate reviews_lstm_lm --prompt",
        "preset `raw`",
        "uerzoo forward reviews_lstm_lm",
        "uerzoo extract-features reviews_lstm_lm --input texts.txt --output features.safetensors --pooling mean",
    ] {
        assert!(info.contains(want), "{want}: {info}");
    }
}

/// The 2019 file migrates to UER naming v2 and back bit for bit (the LSTM keeps torch's
/// names in both); `convert --to hf` refuses and says why.
#[test]
fn naming_v2_round_trip_and_no_hf_form() {
    use uerzoo::convert::{Naming, ToUerOptions, to_uer};
    let v1 = read(&fixture().join("uer_model.bin"));
    let (v2, report) = to_uer(&v1, &ToUerOptions::default()).unwrap();
    assert!(v2.get("target.lm.output_layer.bias").is_some());
    assert!(v2.get("encoder.rnn.weight_hh_l1").is_some());
    assert!(
        report.dropped.is_empty() && !report.tied_decoder,
        "{report}"
    );
    let back_opts = ToUerOptions {
        naming: Naming::V1,
        ..ToUerOptions::default()
    };
    let (back, _) = to_uer(&v2, &back_opts).unwrap();
    assert_eq!(back.names().count(), v1.names().count());
    for (key, t) in &v1.tensors {
        let b = back.get(key).unwrap_or_else(|| panic!("no {key}"));
        assert_eq!(
            (&b.shape, b.to_f32_vec()),
            (&t.shape, t.to_f32_vec()),
            "{key}"
        );
    }
    let det = uerzoo::convert::detect(&v2).unwrap();
    assert_eq!(det.family, uerzoo::convert::Layout::LegacyLstm);
    assert_eq!(det.layers, 2);

    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(common::uerzoo_bin())
        .arg("convert")
        .arg(fixture().join("uer_model.bin"))
        .arg(tmp.path().join("hf"))
        .args(["--to", "hf"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("transformers has no LSTM language model") && err.contains("--to uer"),
        "{err}"
    );
}

// ---- the LSTM with a classification target (uer_2019/lstm_cls) ----

fn cls_fixture() -> PathBuf {
    common::shared()
        .join("fixtures")
        .join("uer_2019")
        .join("lstm_cls")
}

fn book_review(name: &str) -> PathBuf {
    common::shared()
        .join("data/datasets/book_review_small")
        .join(name)
}

/// The keys name the LSTM with UER-py 2019's classification target.
#[test]
fn the_lstm_cls_is_detected() {
    let ckpt = read(&cls_fixture().join("uer_model.bin"));
    let det = uerzoo::convert::detect(&ckpt).unwrap();
    assert_eq!(det.family, uerzoo::convert::Layout::LegacyLstmCls);
    assert_eq!(det.layers, 2);
    assert!(det.family.is_classifier() && det.family.is_lstm());
}

/// Hidden states and class logits equal UER-py 2019's. Its ClsTarget reads position 0
/// (`tanh(target.linear_1(h[:, 0]))` → `target.linear_2`); on a left-to-right LSTM that
/// state has seen `[CLS]` only, so both texts get the same logits, in UER-py as here.
#[test]
fn lstm_cls_forward_matches_uer_py_2019() {
    let dir = cls_fixture();
    let reference = read(&dir.join("uer_outputs.safetensors"));
    let input = reference_batch(&reference);
    let hidden_ref = reference.get("hidden").unwrap();
    let logits_ref = reference.get("logits").unwrap().to_f32_vec();
    let opened = model::open::open_model(
        &dir.join("uer_model.bin"),
        Some(&dir.join("uer_config.json")),
    )
    .unwrap();
    assert_eq!(opened.config.encoder, EncoderKind::Lstm);
    let out = model::tasks::forward(&opened, &input, DeviceSpec::Cpu).unwrap();
    assert!(out.report.unused.is_empty(), "{:?}", out.report.unused);
    let dh = max_diff_at(
        &out.hidden.values,
        &hidden_ref.to_f32_vec(),
        Some(&input.segment),
        96,
    );
    let logits = out.logits.expect("class logits");
    assert_eq!(logits.shape, [2, 2]);
    let dl = max_abs(&logits.values, &logits_ref);
    eprintln!("lstm_cls: hidden {dh:e}, logits {dl:e}");
    assert!(dh < TOL && dl < TOL, "hidden {dh:e}, logits {dl:e}");
    assert_eq!(logits_ref[..2], logits_ref[2..], "UER-py's rows are equal");
}

/// The reference rows as texts (ids after `[CLS]`, padding dropped) with their token counts.
fn cls_texts() -> Vec<(String, usize)> {
    let dir = cls_fixture();
    let reference = read(&dir.join("uer_outputs.safetensors"));
    let b = reference_batch(&reference);
    let vocab: Vec<String> = std::fs::read_to_string(dir.join("vocab.txt"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
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
            let text = ids[1..]
                .iter()
                .map(|&i| vocab[i as usize].as_str())
                .collect();
            (text, ids.len())
        })
        .collect()
}

/// `uerzoo predict --logits` on one TSV of `texts`: each row's logits.
fn predict_logits(model: &Path, texts: &[String], extra: &[&str], dir: &Path) -> Vec<Vec<f32>> {
    let input = dir.join("texts.tsv");
    let output = dir.join("pred.tsv");
    std::fs::write(&input, format!("text_a\n{}\n", texts.join("\n"))).unwrap();
    common::run_ok(
        Command::new(common::uerzoo_bin())
            .arg("predict")
            .arg(model)
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&output)
            .args(["--logits", "--force"])
            .args(extra),
    );
    let text = std::fs::read_to_string(&output).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("label\tlogits"));
    lines
        .map(|l| {
            let (_, logits) = l.split_once('\t').unwrap();
            logits.split(' ').map(|v| v.parse().unwrap()).collect()
        })
        .collect()
}

/// `uerzoo predict` straight from the classification-target weights gives UER-py 2019's
/// logits: the head pools the first position, as that ClsTarget did.
#[test]
fn predict_from_the_lstm_cls_target() {
    let dir = cls_fixture();
    let reference = read(&dir.join("uer_outputs.safetensors"));
    let logits_ref = reference.get("logits").unwrap().to_f32_vec();
    let tmp = tempfile::tempdir().unwrap();
    let texts = cls_texts();
    let seq = texts.iter().map(|t| t.1).max().unwrap().to_string();
    let rows: Vec<String> = texts.into_iter().map(|t| t.0).collect();
    let got = predict_logits(
        &dir.join("uer_model.bin"),
        &rows,
        &["--seq-length", &seq],
        tmp.path(),
    );
    assert_eq!(got.len(), 2);
    for (r, logits) in got.iter().enumerate() {
        let want = &logits_ref[r * 2..r * 2 + 2];
        let d = max_abs(logits, want);
        assert!(d < TOL, "row {r}: {logits:?} vs UER-py {want:?}");
    }
}

/// `finetune` (pooling mean, as the zoo page advises for the LSTM) from the LM and from the
/// classification-target weights: the loss falls, the saved file (run_classifier's keys on
/// the LSTM) reloads, and its predictions equal the trainer's own dev logits.
#[test]
fn finetune_the_lstm_with_mean_pooling_and_reload() {
    use uerzoo::model::Pooling;
    use uerzoo::progress::NoProgress;
    use uerzoo::train::{Dataset, FinetuneOptions, TaskData, finetune, predict};
    for dir in [fixture(), cls_fixture()] {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let opened = model::open::open_model(&dir.join("uer_model.bin"), None).unwrap();
        let tok =
            Tokenizer::from_vocab_file(dir.join("vocab.txt"), TokenizerOptions::uer()).unwrap();
        let train = Dataset::read(&book_review("train.tsv"), true).unwrap();
        let dev = Dataset::read(&book_review("dev.tsv"), true).unwrap();
        let data = TaskData {
            labels_num: train.labels_num().unwrap(),
            train: train.encode(&tok, 32),
            dev: dev.encode(&tok, 32),
            test: None,
        };
        let opts = FinetuneOptions {
            epochs: 3,
            batch_size: 32,
            learning_rate: 1e-3,
            pooling: Pooling::Mean,
            ..Default::default()
        };
        let r = finetune(
            &opened,
            &data,
            &opts,
            DeviceSpec::Cpu,
            &NoProgress,
            &mut |_| {},
        )
        .unwrap();
        let losses: Vec<f64> = r.epochs.iter().map(|e| e.loss).collect();
        eprintln!("{name}: epoch losses {losses:?}");
        assert!(
            losses[2] < losses[0],
            "{name}: loss does not fall: {losses:?}"
        );

        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("ft.bin");
        uerzoo::train::save::save_uer(&r.checkpoint, uerzoo::convert::Naming::V1, &bin, false)
            .unwrap();
        let det = uerzoo::convert::detect(&read(&bin)).unwrap();
        assert_eq!(
            det.family,
            uerzoo::convert::Layout::LstmClassifier,
            "{name}"
        );
        let reopened = model::open::open_model(&bin, Some(&dir.join("uer_config.json"))).unwrap();
        assert_eq!(reopened.config.encoder, EncoderKind::Lstm);
        let got = predict(&reopened, &data.dev, Pooling::Mean, 5, DeviceSpec::Cpu).unwrap();
        assert_eq!(got.logits.len(), r.dev_logits.len());
        let worst = got
            .logits
            .iter()
            .zip(&r.dev_logits)
            .map(|(a, b)| max_abs(a, b))
            .fold(0f32, f32::max);
        assert!(worst <= 1e-6, "{name}: max |Δlogit| {worst:e}");
    }
}

/// `uerzoo finetune --pooling mean` from the classification-target file writes a classifier
/// whose recorded options `predict` reads back: its logits with no flags equal those with
/// `--pooling mean --seq-length 32`, and differ from `--pooling first`.
#[test]
fn cli_finetune_records_mean_pooling_for_predict() {
    let dir = cls_fixture();
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("classifier.bin");
    let out = common::run_ok(
        Command::new(common::uerzoo_bin())
            .arg("finetune")
            .arg(dir.join("uer_model.bin"))
            .arg("--train")
            .arg(book_review("train.tsv"))
            .arg("--dev")
            .arg(book_review("dev.tsv"))
            .args(["--epochs", "1", "--batch-size", "32", "--seq-length", "32"])
            .args([
                "--learning-rate",
                "1e-3",
                "--pooling",
                "mean",
                "--seed",
                "7",
            ])
            .arg("--output")
            .arg(&model),
    );
    let log =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("naming v1"), "{log}");
    let texts: Vec<String> = cls_texts().into_iter().map(|t| t.0).collect();
    let recorded = predict_logits(&model, &texts, &[], tmp.path());
    let mean = predict_logits(
        &model,
        &texts,
        &["--pooling", "mean", "--seq-length", "32"],
        tmp.path(),
    );
    let first = predict_logits(&model, &texts, &["--pooling", "first"], tmp.path());
    assert_eq!(recorded, mean);
    assert_ne!(recorded, first);
    assert_ne!(recorded[0], recorded[1], "mean pooling sees the text");
}

/// `--dtype int8` on the LSTM is refused (the int8 kernels quantize transformer GEMMs only)
/// rather than running f32 under an int8 label; the library says which dtype works.
#[test]
fn int8_is_refused_on_the_lstm() {
    let mut opened = open("uer_config.json");
    opened.config.dtype = model::Dtype::Int8;
    let Err(err) = load_model::<Cpu>(&opened.checkpoint, &opened.config, &Default::default())
    else {
        panic!("int8 must be refused");
    };
    let msg = err.to_string();
    assert!(msg.contains("int8 with the LSTM encoder"), "{msg}");
    assert!(msg.contains("f32"), "{msg}");
    let dir = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(common::uerzoo_bin())
        .arg("forward")
        .arg(dir.join("uer_model.bin"))
        .arg("--input")
        .arg(dir.join("uer_outputs.safetensors"))
        .arg("--output")
        .arg(tmp.path().join("out.safetensors"))
        .args(["--dtype", "int8"])
        .output()
        .unwrap();
    assert!(!tmp.path().join("out.safetensors").exists());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("int8 with the LSTM encoder"), "{stderr}");
}

/// A file trained with both targets (the LM's `target.output_layer` beside
/// `target.linear_{1,2}`, as the zoo's LSTM LM + Cls name suggests; UER-py 2019 writes one
/// target per run, so the test joins lstm_lm's output layer to lstm_cls): both heads load,
/// `predict` still gives UER-py's class logits and `generate` runs on the LM head.
#[test]
fn lm_and_cls_targets_in_one_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut both = read(&cls_fixture().join("uer_model.bin"));
    let lm = read(&fixture().join("uer_model.bin"));
    for key in ["target.output_layer.weight", "target.output_layer.bias"] {
        both.insert(key, lm.get(key).unwrap().clone());
    }
    let bin = tmp.path().join("uer_model.bin");
    both.write_torch(&bin, false).unwrap();
    for f in ["uer_config.json", "vocab.txt"] {
        std::fs::copy(cls_fixture().join(f), tmp.path().join(f)).unwrap();
    }
    let det = uerzoo::convert::detect(&read(&bin)).unwrap();
    assert_eq!(det.family, uerzoo::convert::Layout::LegacyLstmLmCls);
    let opened = model::open::open_model(&bin, None).unwrap();
    let (m, report) =
        load_model::<Cpu>(&opened.checkpoint, &opened.config, &Default::default()).unwrap();
    assert_eq!(report.heads, ["lm", "classifier"]);
    assert!(report.unused.is_empty(), "{:?}", report.unused);
    assert!(m.classifier.is_some());

    let reference = read(&cls_fixture().join("uer_outputs.safetensors"));
    let logits_ref = reference.get("logits").unwrap().to_f32_vec();
    let texts = cls_texts();
    let seq = texts.iter().map(|t| t.1).max().unwrap().to_string();
    let rows: Vec<String> = texts.into_iter().map(|t| t.0).collect();
    let got = predict_logits(&bin, &rows, &["--seq-length", &seq], tmp.path());
    for (r, logits) in got.iter().enumerate() {
        let d = max_abs(logits, &logits_ref[r * 2..r * 2 + 2]);
        assert!(d < TOL, "row {r}: {logits:?}");
    }
    let out = common::run_ok(
        Command::new(common::uerzoo_bin())
            .arg("generate")
            .arg(&bin)
            .args(["--prompt", "今天", "--greedy", "--max-length", "10"]),
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("今天"), "{text}");
}
