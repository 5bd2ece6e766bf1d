//! Unit tests of the table loop on small synthetic checkpoints (no files). The inputs are
//! built from [`names::table`], so these tests prove the loop (detection, renaming both
//! ways, transforms, errors), not the names in the table: those are checked against files
//! written by UER-py and transformers in `tests/convert.rs` (every UER fixture against UER-py's
//! own conversion script; the transformers classifiers against UER-py's names) and
//! `table_names_are_uer_py_and_transformers_own` below.

use super::*;
use crate::checkpoint::Tensor;
use std::collections::BTreeSet;

/// Deterministic distinct values so any misplaced element shows.
fn t(shape: &[usize], seed: usize) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| (seed * 1000 + i) as f32 * 0.001).collect();
    Tensor::from_f32(shape.to_vec(), &v)
}

/// A synthetic UER checkpoint of `family` in `naming`, H=8, F=16, V=10, P=6, 2 layers.
fn uer(family: Layout, naming: Naming) -> Checkpoint {
    let (h, f, v, p, e) = (8, 16, 10, 6, if family.is_albert() { 4 } else { 8 });
    let mut c = Checkpoint::default();
    let mut seed = 1;
    let layers = if family.is_albert() { 1 } else { 2 };
    for block in names::table(family) {
        for layer in 0..(if block.per_layer { layers } else { 1 }) {
            for row in block.rows {
                if row.op == Op::HfDuplicate {
                    continue;
                }
                let name = names::instantiate(row.uer[naming.index()], layer);
                let shape: Vec<usize> = if name.contains("word") {
                    vec![v, e]
                } else if name.contains("pos") {
                    vec![p, e]
                } else if name.contains("seg") {
                    vec![3, e]
                } else if name.starts_with("embedding.layer_norm") {
                    vec![e]
                } else if name == "encoder.linear.weight" {
                    vec![h, e]
                } else if name.contains("linear_1.weight") && name.contains("feed_forward") {
                    vec![f, h]
                } else if name.contains("linear_1.bias") && name.contains("feed_forward") {
                    vec![f]
                } else if name.contains("feed_forward.linear_2.weight") {
                    vec![h, f]
                } else if name.contains("mlm") && name.contains("linear_2.weight") {
                    vec![v, e]
                } else if name.contains("mlm") && name.contains("linear_2.bias") {
                    vec![v]
                } else if name.contains("mlm") && name.contains("linear_1.weight") {
                    vec![e, h]
                } else if (name.contains("mlm") && name.contains("linear_1.bias"))
                    || name.starts_with("target.layer_norm")
                    || name.starts_with("target.mlm.layer_norm")
                {
                    vec![e]
                } else if name.contains("output_layer.weight") {
                    vec![v, h]
                } else if name.ends_with("linear_2.weight") || name == "output_layer_2.weight" {
                    vec![2, h]
                } else if name.ends_with("linear_2.bias") || name == "output_layer_2.bias" {
                    vec![2]
                } else if name.ends_with(".weight") {
                    vec![h, h]
                } else {
                    vec![h]
                };
                c.insert(name, t(&shape, seed));
                seed += 1;
            }
        }
    }
    c
}

fn assert_same_tensors(a: &Checkpoint, b: &Checkpoint, skip_seg: bool) {
    let mut an: Vec<&str> = a.names().collect();
    let mut bn: Vec<&str> = b.names().collect();
    an.sort();
    bn.sort();
    assert_eq!(an, bn);
    for (name, ta) in &a.tensors {
        let tb = b.get(name).unwrap();
        assert_eq!(ta.shape, tb.shape, "{name}");
        if skip_seg && name.contains("seg") {
            assert_eq!(
                ta.bytes()[ta.bytes().len() / 3..],
                tb.bytes()[tb.bytes().len() / 3..],
                "{name}"
            );
        } else {
            assert_eq!(ta.bytes(), tb.bytes(), "{name}");
        }
    }
}

const FAMILIES: [Layout; 7] = [
    Layout::BertMlm,
    Layout::BertPretraining,
    Layout::BertClassifier,
    Layout::Gpt2,
    Layout::Albert,
    Layout::AlbertClassifier,
    Layout::Gpt2Classifier,
];

#[test]
fn detect_every_family_and_generation() {
    for family in FAMILIES {
        for naming in [Naming::V1, Naming::V2] {
            let d = detect(&uer(family, naming)).unwrap();
            assert_eq!(d.family, family);
            assert_eq!(d.source, Source::Uer(naming));
            assert_eq!(d.layers, if family.is_albert() { 1 } else { 2 });
        }
    }
}

#[test]
fn round_trip_uer_hf_uer_is_exact() {
    for family in FAMILIES.into_iter().filter(|f| f.has_hf_form()) {
        for naming in [Naming::V1, Naming::V2] {
            let src = uer(family, naming);
            let (hf, rep) = to_hf(&src, &ToHfOptions::default()).unwrap();
            assert_eq!(rep.source, Source::Uer(naming));
            assert_eq!(detect(&hf).unwrap().family, family, "{family:?}");
            let (back, rep2) = to_uer(
                &hf,
                &ToUerOptions {
                    naming,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(rep2.source, Source::Hf);
            assert_same_tensors(&src, &back, true);
            // Segment row 0 comes back as zeros.
            if let Some((_, seg)) = back.tensors.iter().find(|(n, _)| n.contains("seg")) {
                let h = seg.shape[1];
                assert!(seg.to_f32_vec()[..h].iter().all(|&x| x == 0.0));
            }
        }
    }
}

#[test]
fn migrate_between_generations() {
    for family in FAMILIES {
        let v1 = uer(family, Naming::V1);
        let (v2, _) = to_uer(
            &v1,
            &ToUerOptions {
                naming: Naming::V2,
                ..Default::default()
            },
        )
        .unwrap();
        assert_same_tensors(&uer(family, Naming::V2), &v2, false);
        let (back, _) = to_uer(
            &v2,
            &ToUerOptions {
                naming: Naming::V1,
                ..Default::default()
            },
        )
        .unwrap();
        assert_same_tensors(&v1, &back, false);
    }
}

#[test]
fn gpt2_qkv_is_concatenated_and_transposed() {
    let src = uer(Layout::Gpt2, Naming::V1);
    let (hf, _) = to_hf(&src, &ToHfOptions::default()).unwrap();
    let c = hf.get("transformer.h.1.attn.c_attn.weight").unwrap();
    assert_eq!(c.shape, vec![8, 24]);
    let k = src
        .get("encoder.transformer.1.self_attn.linear_layers.1.weight")
        .unwrap()
        .to_f32_vec();
    let cv = c.to_f32_vec();
    // HF c_attn[in][8 + out] = UER k[out][in]
    for out in 0..8 {
        for inp in 0..8 {
            assert_eq!(cv[inp * 24 + 8 + out], k[out * 8 + inp]);
        }
    }
    let b = hf
        .get("transformer.h.1.attn.c_attn.bias")
        .unwrap()
        .to_f32_vec();
    let vb = src
        .get("encoder.transformer.1.self_attn.linear_layers.2.bias")
        .unwrap()
        .to_f32_vec();
    assert_eq!(&b[16..], &vb[..]);
}

#[test]
fn segment_row_zero_dropped_and_both_decoder_biases_written() {
    let src = uer(Layout::BertMlm, Naming::V1);
    let (hf, rep) = to_hf(&src, &ToHfOptions::default()).unwrap();
    let seg = src
        .get("embedding.segment_embedding.weight")
        .unwrap()
        .to_f32_vec();
    assert_eq!(
        hf.get("bert.embeddings.token_type_embeddings.weight")
            .unwrap()
            .to_f32_vec(),
        seg[8..]
    );
    let b = hf.get("cls.predictions.bias").unwrap();
    assert_eq!(
        b.bytes(),
        hf.get("cls.predictions.decoder.bias").unwrap().bytes()
    );
    assert!(!rep.tied_decoder);
    assert!(
        rep.tied
            .iter()
            .any(|g| g.contains(&"cls.predictions.decoder.bias".to_string()))
    );
}

#[test]
fn tied_decoder_is_detected_and_kept_tied() {
    let mut src = uer(Layout::Gpt2, Naming::V2);
    let w = src.get("embedding.word.embedding.weight").unwrap().clone();
    src.insert("target.lm.output_layer.weight", w);
    let (hf, rep) = to_hf(&src, &ToHfOptions::default()).unwrap();
    assert!(rep.tied_decoder);
    assert!(
        rep.tied
            .iter()
            .any(|g| g.contains(&"lm_head.weight".to_string()))
    );
    // transformers' safetensors omit the tied lm_head: reading back ties it again.
    let mut no_head = hf.clone();
    no_head.tensors.retain(|(n, _)| n != "lm_head.weight");
    let (back, rep) = to_uer(&no_head, &ToUerOptions::default()).unwrap();
    assert!(rep.tied_decoder);
    assert_eq!(back.tied_groups().len(), 1);
}

#[test]
fn hf_spellings_roberta_prefix_gamma_beta_and_buffers() {
    let src = uer(Layout::BertMlm, Naming::V1);
    let (hf, _) = to_hf(&src, &ToHfOptions::default()).unwrap();
    let mut odd = Checkpoint::default();
    for (n, t) in &hf.tensors {
        let n = n
            .replace("bert.", "roberta.")
            .replace("LayerNorm.weight", "LayerNorm.gamma")
            .replace("LayerNorm.bias", "LayerNorm.beta");
        odd.insert(n, t.clone());
    }
    odd.insert(
        "roberta.embeddings.position_ids",
        Tensor::from_bytes(crate::checkpoint::DType::I64, vec![1, 6], vec![0; 48]),
    );
    let (back, rep) = to_uer(
        &odd,
        &ToUerOptions {
            naming: Naming::V1,
            ..Default::default()
        },
    )
    .unwrap();
    assert_same_tensors(&src, &back, true);
    assert_eq!(rep.notes.len(), 2, "{:?}", rep.notes);
    let dropped: Vec<&str> = rep.dropped.iter().map(|d| d.0.as_str()).collect();
    assert_eq!(
        dropped,
        [
            "cls.predictions.decoder.bias",
            "roberta.embeddings.position_ids"
        ]
    );
}

#[test]
fn exact_layernorm_rescales_and_inverts() {
    let src = uer(Layout::BertMlm, Naming::V1);
    let opts = ToHfOptions {
        exact_layernorm: true,
        ..Default::default()
    };
    let (hf, rep) = to_hf(&src, &opts).unwrap();
    assert!(rep.exact_layernorm);
    let g = src
        .get("encoder.transformer.0.layer_norm_1.gamma")
        .unwrap()
        .to_f32_vec();
    let w = hf
        .get("bert.encoder.layer.0.attention.output.LayerNorm.weight")
        .unwrap()
        .to_f32_vec();
    let k = (7.0f64 / 8.0).sqrt();
    for (a, b) in g.iter().zip(&w) {
        assert_eq!(*b, (*a as f64 * k) as f32);
    }
    // Biases untouched.
    assert_eq!(
        src.get("encoder.transformer.0.layer_norm_1.beta")
            .unwrap()
            .bytes(),
        hf.get("bert.encoder.layer.0.attention.output.LayerNorm.bias")
            .unwrap()
            .bytes()
    );
    let (back, _) = to_uer(
        &hf,
        &ToUerOptions {
            naming: Naming::V1,
            exact_layernorm: true,
            ..Default::default()
        },
    )
    .unwrap();
    let g2 = back
        .get("encoder.transformer.0.layer_norm_1.gamma")
        .unwrap()
        .to_f32_vec();
    for (a, b) in g.iter().zip(&g2) {
        assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "{a} vs {b}");
    }
}

#[test]
fn missing_key_names_key_and_generation() {
    let mut src = uer(Layout::BertMlm, Naming::V1);
    src.tensors
        .retain(|(n, _)| n != "encoder.transformer.1.feed_forward.linear_2.weight");
    let err = to_hf(&src, &ToHfOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`encoder.transformer.1.feed_forward.linear_2.weight`"),
        "{err}"
    );
    assert!(err.contains("naming v1"), "{err}");
}

#[test]
fn mixed_generation_is_reported() {
    let mut src = uer(Layout::BertMlm, Naming::V1);
    let t = src.get("target.mlm_linear_1.weight").unwrap().clone();
    src.tensors
        .retain(|(n, _)| n != "target.mlm_linear_1.weight");
    src.insert("target.mlm.linear_1.weight", t);
    let err = to_hf(&src, &ToHfOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no `target.mlm_linear_1.weight`") && err.contains("mixes generations"),
        "{err}"
    );
}

#[test]
fn unmapped_is_an_error_unless_allowed() {
    let mut src = uer(Layout::BertMlm, Naming::V2);
    src.insert("target.extra.weight", t(&[2], 99));
    let err = to_hf(&src, &ToHfOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("target.extra.weight") && err.contains("--allow-unmapped"),
        "{err}"
    );
    let (_, rep) = to_hf(
        &src,
        &ToHfOptions {
            allow_unmapped: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(rep.dropped[0].0, "target.extra.weight");
}

#[test]
fn unknown_family() {
    let mut c = Checkpoint::default();
    c.insert("foo.weight", t(&[2], 1));
    assert!(matches!(
        detect(&c),
        Err(ConvertError::UnknownFamily { .. })
    ));
    // The 2022 `sp_linear` spelling reads as v1.
    let mut src = uer(Layout::BertPretraining, Naming::V1);
    for (n, _) in src.tensors.iter_mut() {
        *n = n.replace("target.nsp_linear_", "target.sp_linear_");
    }
    let d = detect(&src).unwrap();
    assert_eq!(
        (d.family, d.source),
        (Layout::BertPretraining, Source::Uer(Naming::V1))
    );
    let (v1, _) = to_uer(
        &src,
        &ToUerOptions {
            naming: Naming::V1,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(v1.get("target.nsp_linear_1.weight").is_some());
}

#[test]
fn two_spellings_of_one_name_are_not_silently_merged() {
    let src = uer(Layout::BertMlm, Naming::V1);
    let (mut hf, _) = to_hf(&src, &ToHfOptions::default()).unwrap();
    let w = hf
        .get("bert.embeddings.word_embeddings.weight")
        .unwrap()
        .clone();
    hf.insert("roberta.embeddings.word_embeddings.weight", w);
    let err = to_uer(&hf, &ToUerOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("roberta.embeddings.word_embeddings.weight"),
        "{err}"
    );
}

/// The names of a 2-layer BERT classifier in each spelling, written out here (UER-py's
/// `run_classifier` output in its two generations, transformers' `BertForSequenceClassification`),
/// not taken from the table: the synthetic input is built from the table, and every name
/// the conversion writes must be one of these.
#[test]
fn table_names_are_uer_py_and_transformers_own() {
    let layer = |i: usize, names: &[&str]| -> Vec<String> {
        names
            .iter()
            .map(|n| n.replace("{i}", &i.to_string()))
            .collect()
    };
    let spell = |global: &[&str], per_layer: &[&str]| -> BTreeSet<String> {
        let mut all: BTreeSet<String> = global.iter().map(|n| n.to_string()).collect();
        for i in 0..2 {
            all.extend(layer(i, per_layer));
        }
        all
    };
    let uer_layer = [
        "encoder.transformer.{i}.self_attn.linear_layers.0.weight",
        "encoder.transformer.{i}.self_attn.linear_layers.0.bias",
        "encoder.transformer.{i}.self_attn.linear_layers.1.weight",
        "encoder.transformer.{i}.self_attn.linear_layers.1.bias",
        "encoder.transformer.{i}.self_attn.linear_layers.2.weight",
        "encoder.transformer.{i}.self_attn.linear_layers.2.bias",
        "encoder.transformer.{i}.self_attn.final_linear.weight",
        "encoder.transformer.{i}.self_attn.final_linear.bias",
        "encoder.transformer.{i}.layer_norm_1.gamma",
        "encoder.transformer.{i}.layer_norm_1.beta",
        "encoder.transformer.{i}.feed_forward.linear_1.weight",
        "encoder.transformer.{i}.feed_forward.linear_1.bias",
        "encoder.transformer.{i}.feed_forward.linear_2.weight",
        "encoder.transformer.{i}.feed_forward.linear_2.bias",
        "encoder.transformer.{i}.layer_norm_2.gamma",
        "encoder.transformer.{i}.layer_norm_2.beta",
    ];
    let head = [
        "output_layer_1.weight",
        "output_layer_1.bias",
        "output_layer_2.weight",
        "output_layer_2.bias",
    ];
    let v1_global = [
        "embedding.word_embedding.weight",
        "embedding.position_embedding.weight",
        "embedding.segment_embedding.weight",
        "embedding.layer_norm.gamma",
        "embedding.layer_norm.beta",
    ];
    let v2_global = [
        "embedding.word.embedding.weight",
        "embedding.pos.embedding.weight",
        "embedding.seg.embedding.weight",
        "embedding.layer_norm.gamma",
        "embedding.layer_norm.beta",
    ];
    let hf_global = [
        "bert.embeddings.word_embeddings.weight",
        "bert.embeddings.position_embeddings.weight",
        "bert.embeddings.token_type_embeddings.weight",
        "bert.embeddings.LayerNorm.weight",
        "bert.embeddings.LayerNorm.bias",
        "bert.pooler.dense.weight",
        "bert.pooler.dense.bias",
        "classifier.weight",
        "classifier.bias",
    ];
    let hf_layer = [
        "bert.encoder.layer.{i}.attention.self.query.weight",
        "bert.encoder.layer.{i}.attention.self.query.bias",
        "bert.encoder.layer.{i}.attention.self.key.weight",
        "bert.encoder.layer.{i}.attention.self.key.bias",
        "bert.encoder.layer.{i}.attention.self.value.weight",
        "bert.encoder.layer.{i}.attention.self.value.bias",
        "bert.encoder.layer.{i}.attention.output.dense.weight",
        "bert.encoder.layer.{i}.attention.output.dense.bias",
        "bert.encoder.layer.{i}.attention.output.LayerNorm.weight",
        "bert.encoder.layer.{i}.attention.output.LayerNorm.bias",
        "bert.encoder.layer.{i}.intermediate.dense.weight",
        "bert.encoder.layer.{i}.intermediate.dense.bias",
        "bert.encoder.layer.{i}.output.dense.weight",
        "bert.encoder.layer.{i}.output.dense.bias",
        "bert.encoder.layer.{i}.output.LayerNorm.weight",
        "bert.encoder.layer.{i}.output.LayerNorm.bias",
    ];
    let names = |c: &Checkpoint| -> BTreeSet<String> { c.names().map(String::from).collect() };
    let v1 = [&v1_global[..], &head[..]].concat();
    let v2 = [&v2_global[..], &head[..]].concat();
    let src = uer(Layout::BertClassifier, Naming::V1);
    assert_eq!(names(&src), spell(&v1, &uer_layer), "the table's v1 names");
    let (hf, _) = to_hf(&src, &ToHfOptions::default()).unwrap();
    assert_eq!(
        names(&hf),
        spell(&hf_global, &hf_layer),
        "transformers' names"
    );
    let (v2_ckpt, _) = to_uer(
        &hf,
        &ToUerOptions {
            naming: Naming::V2,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        names(&v2_ckpt),
        spell(&v2, &uer_layer),
        "the table's v2 names"
    );
    // The pooler and the classifier are the head, not swapped.
    assert_eq!(
        hf.get("bert.pooler.dense.weight").unwrap().bytes(),
        src.get("output_layer_1.weight").unwrap().bytes()
    );
    assert_eq!(
        hf.get("classifier.weight").unwrap().bytes(),
        src.get("output_layer_2.weight").unwrap().bytes()
    );
}
