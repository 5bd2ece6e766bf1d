//! What fine-tuning adds to the zoo [`Model`] for UER-py's run_classifier: the head's
//! PyTorch-default init, reading a saved head back, the weights as a UER-naming-v2
//! [`Checkpoint`], and the loss. The forward — the encoder with dropout where UER-py puts it,
//! run_classifier's pooling over real tokens and `output_layer_1` → tanh → `output_layer_2` —
//! is the model's own, [`Model::classify`] (inference runs it with `p` = 0).

use super::TrainError;
use crate::checkpoint::{Checkpoint, Tensor as CkptTensor};
use crate::model::heads::ClassifierHead;
use crate::model::layer_norm::LayerNorm;
use crate::model::load::keys;
use crate::model::{Model, Pooling};
use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Tensor, TensorData, backend::Backend};
use rand::{Rng, SeedableRng};

/// Keys of the classifier head in a UER checkpoint (all naming generations).
pub const HEAD_1: &str = crate::model::load::keys::CLS_1;
pub const HEAD_2: &str = crate::model::load::keys::CLS_2;

/// A head initialised as PyTorch's `nn.Linear` does (weight and bias uniform in
/// ±1/sqrt(fan_in)), from `seed`.
pub fn init_head<B: Backend>(
    hidden: usize,
    labels: usize,
    pooling: Pooling,
    seed: u64,
    device: &B::Device,
) -> ClassifierHead<B> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut linear = |d_in: usize, d_out: usize| {
        let bound = 1.0 / (d_in as f32).sqrt();
        let w: Vec<f32> = (0..d_in * d_out)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        let b: Vec<f32> = (0..d_out)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        Linear {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(w, [d_in, d_out]),
                device,
            )),
            bias: Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(b, [d_out]),
                device,
            ))),
        }
    };
    ClassifierHead {
        output_layer_1: linear(hidden, hidden),
        output_layer_2: linear(hidden, labels),
        pooling,
    }
}

/// Reads `output_layer_{1,2}` from a checkpoint (torch layout `[out, in]`).
pub fn load_head<B: Backend>(
    ckpt: &Checkpoint,
    hidden: usize,
    pooling: Pooling,
    device: &B::Device,
) -> Result<ClassifierHead<B>, TrainError> {
    let missing = |key: String| TrainError::NoHead {
        key,
        hint: "the weights are not a fine-tuned classifier; run `uerzoo finetune` first".into(),
    };
    let get = |key: String| ckpt.get(&key).cloned().ok_or_else(|| missing(key));
    let w2 = get(format!("{HEAD_2}.weight"))?;
    let labels = w2.shape[0];
    let linear = |prefix: &str, d_in: usize, d_out: usize| -> Result<Linear<B>, TrainError> {
        let w = get(format!("{prefix}.weight"))?;
        let b = get(format!("{prefix}.bias"))?;
        if w.shape != [d_out, d_in] || b.shape != [d_out] {
            return Err(TrainError::NoHead {
                key: format!("{prefix}.weight"),
                hint: format!(
                    "shape {:?}, expected [{d_out}, {d_in}] for hidden size {hidden}",
                    w.shape
                ),
            });
        }
        let wt = transpose(&w.to_f32_vec(), d_out, d_in);
        Ok(Linear {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(wt, [d_in, d_out]),
                device,
            )),
            bias: Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(b.to_f32_vec(), [d_out]),
                device,
            ))),
        })
    };
    Ok(ClassifierHead {
        output_layer_1: linear(HEAD_1, hidden, hidden)?,
        output_layer_2: linear(HEAD_2, hidden, labels)?,
        pooling,
    })
}

/// `[rows, cols]` row-major → `[cols, rows]`.
fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = v[r * cols + c];
        }
    }
    out
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> (Vec<usize>, Vec<f32>) {
    let shape = t.dims().to_vec();
    (
        shape,
        t.into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap_or_default(),
    )
}

/// The embedding, encoder and classifier head as a checkpoint in UER naming v2 (what
/// run_classifier saves: no pretraining heads). Linear weights in torch layout `[out, in]`.
pub fn to_checkpoint<B: Backend>(model: &Model<B>) -> Checkpoint {
    let mut ckpt = Checkpoint::default();
    let mut put = |name: String, t: (Vec<usize>, Vec<f32>)| {
        ckpt.insert(name, CkptTensor::from_f32(t.0, &t.1))
    };
    let linear =
        |put: &mut dyn FnMut(String, (Vec<usize>, Vec<f32>)), prefix: &str, l: &Linear<B>| {
            let (shape, w) = host(l.weight.val());
            put(
                format!("{prefix}.weight"),
                (vec![shape[1], shape[0]], transpose(&w, shape[0], shape[1])),
            );
            if let Some(b) = &l.bias {
                put(format!("{prefix}.bias"), host(b.val()));
            }
        };
    let ln =
        |put: &mut dyn FnMut(String, (Vec<usize>, Vec<f32>)), prefix: &str, n: &LayerNorm<B>| {
            put(format!("{prefix}.gamma"), host(n.gamma.val()));
            put(format!("{prefix}.beta"), host(n.beta.val()));
        };
    let e = &model.embedding;
    put(keys::WORD.into(), host(e.word.val()));
    put(keys::POS.into(), host(e.position.val()));
    if let Some(seg) = &e.segment {
        put(keys::SEG.into(), host(seg.val()));
    }
    if let Some(n) = &e.layer_norm {
        ln(&mut put, keys::EMB_LN, n);
    }
    let enc = &model.encoder;
    if let Some(l) = &enc.linear {
        linear(&mut put, keys::ENC_LINEAR, l);
    }
    if let Some(rnn) = &enc.rnn {
        // torch `nn.LSTM` names: `weight_ih_l{k}` `[4H, in]`, `bias_ih_l{k}`, and `_hh_`.
        for (k, layer) in rnn.layers.iter().enumerate() {
            for (what, l) in [("ih", &layer.input), ("hh", &layer.hidden)] {
                let (shape, w) = host(l.weight.val());
                put(
                    format!("{}weight_{what}_l{k}", keys::LSTM),
                    (vec![shape[1], shape[0]], transpose(&w, shape[0], shape[1])),
                );
                if let Some(b) = &l.bias {
                    put(format!("{}bias_{what}_l{k}", keys::LSTM), host(b.val()));
                }
            }
        }
    }
    let shared = model.config.parameter_sharing;
    for (i, layer) in enc.layers.iter().enumerate() {
        let p = if shared {
            keys::SHARED_LAYER.to_string()
        } else {
            crate::convert::names::instantiate(keys::LAYER, i)
        };
        let a = &layer.self_attn;
        for (k, l) in [
            (keys::QUERY, &a.query),
            (keys::KEY, &a.key),
            (keys::VALUE, &a.value),
            (keys::ATTN_OUT, &a.output),
        ] {
            linear(&mut put, &format!("{p}.{k}"), l);
        }
        linear(
            &mut put,
            &format!("{p}.{}", keys::FF_1),
            &layer.feed_forward.linear_1,
        );
        linear(
            &mut put,
            &format!("{p}.{}", keys::FF_2),
            &layer.feed_forward.linear_2,
        );
        ln(
            &mut put,
            &format!("{p}.{}", keys::LN_1),
            &layer.layer_norm_1,
        );
        ln(
            &mut put,
            &format!("{p}.{}", keys::LN_2),
            &layer.layer_norm_2,
        );
    }
    if let Some(n) = &enc.layer_norm {
        ln(&mut put, keys::FINAL_LN, n);
    }
    if let Some(head) = &model.classifier {
        linear(&mut put, HEAD_1, &head.output_layer_1);
        linear(&mut put, HEAD_2, &head.output_layer_2);
    }
    ckpt
}

/// Mean negative log-likelihood of log-softmax (UER-py's `NLLLoss(LogSoftmax(logits))`).
pub fn nll_loss<B: Backend>(logits: Tensor<B, 2>, labels: &[i64]) -> Tensor<B, 1> {
    crate::kernels::cross_entropy(logits, labels).0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_model<B: Backend>(pre_ln: bool, pooling: Pooling, dev: &B::Device) -> Model<B> {
        let json = serde_json::json!({"hidden_size": 16, "heads_num": 2, "layers_num": 2, "feedforward_size": 32,
            "layernorm_positioning": if pre_ln { "pre" } else { "post" }});
        let mut cfg = crate::model::ModelConfig::from_uer_json(&json).unwrap();
        (cfg.vocab_size, cfg.max_seq_length) = (30, 8);
        let ckpt = crate::model::random_checkpoint(&cfg, 3);
        let (mut model, _) = crate::model::load_model::<B>(&ckpt, &cfg, dev).unwrap();
        model.classifier = Some(init_head(16, 3, pooling, 1, dev));
        model
    }

    #[test]
    fn classify_on_autodiff_with_live_dropout_equals_the_plain_backend() {
        // `Model::classify` on the autodiff backend (the fused kernels' autodiff paths) with
        // every dropout site live equals `Model::classify` on the plain backend with p = 0
        // (the sites skipped) when p is so small that nothing drops, for every pooling and
        // both LayerNorm placements. (That fine-tuning's own loop computes this forward, and
        // predict the other, is tests/finetune.rs
        // `training_forward_equals_inference_when_nothing_drops`.)
        type Ad = burn::backend::Autodiff<crate::model::Cpu>;
        let (b, s) = (2, 8);
        let ids = [1i64, 5, 7, 9, 2, 0, 0, 0, 1, 3, 4, 6, 8, 10, 12, 2];
        let seg = [1i64, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2];
        let dev = Default::default();
        for pre_ln in [false, true] {
            for pooling in [Pooling::First, Pooling::Mean, Pooling::Max, Pooling::Last] {
                let w = crate::model::heads::pool_weights(&seg, b, s, pooling);
                let inference = tiny_model::<crate::model::Cpu>(pre_ln, pooling, &dev);
                let (i, g) = inference.inputs(&ids, &seg, b, s, &dev).unwrap();
                let pool = w
                    .clone()
                    .map(|w| Tensor::from_data(TensorData::new(w, [b, s]), &dev));
                let want = host(inference.classify(i, g, pool, 0.0).unwrap()).1;
                let training = tiny_model::<Ad>(pre_ln, pooling, &dev);
                let (i, g) = training.inputs(&ids, &seg, b, s, &dev).unwrap();
                let pool = w.map(|w| Tensor::from_data(TensorData::new(w, [b, s]), &dev));
                let got = host(training.classify(i, g, pool, 1e-12).unwrap()).1;
                assert_eq!(want.len(), b * 3);
                for (x, y) in want.iter().zip(&got) {
                    assert!(
                        (x - y).abs() < 1e-4,
                        "pre_ln {pre_ln} {pooling}: {x} vs {y}"
                    );
                }
            }
        }
    }

    #[test]
    fn checkpoint_round_trips_the_head() {
        let model = tiny_model::<crate::model::Cpu>(false, Pooling::First, &Default::default());
        let ckpt = to_checkpoint(&model);
        assert!(
            ckpt.get(keys::WORD).is_some()
                && ckpt.get("output_layer_2.weight").unwrap().shape == [3, 16]
        );
        let head =
            load_head::<crate::model::Cpu>(&ckpt, 16, Pooling::First, &Default::default()).unwrap();
        let a = host(
            model
                .classifier
                .as_ref()
                .unwrap()
                .output_layer_2
                .weight
                .val(),
        )
        .1;
        assert_eq!(a, host(head.output_layer_2.weight.val()).1);
        assert!(
            load_head::<crate::model::Cpu>(
                &Checkpoint::default(),
                16,
                Pooling::First,
                &Default::default()
            )
            .is_err()
        );
    }

    #[test]
    fn transpose_is_exact() {
        assert_eq!(
            transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }
}
