//! The heads a target needs and the weights lack, with UER-py's initialisation, a model
//! from scratch, and the tied decoder left out for loading (so training keeps it tied).

use crate::checkpoint::{Checkpoint, Tensor as CkptTensor};
use crate::model::ModelConfig;
use crate::model::load::keys;
use crate::train::dataset::PretrainTarget;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Fills in what `target` needs and the weights lack, with UER-py's initialisation
/// (normal(0, 0.02) except LayerNorm gamma 1 / beta 0): the MLM head, the sentence-
/// prediction head for `bert` and `albert` (NSP / SOP: one head, `target.sp.*`), the LM head for `lm` (tied to the word embedding when
/// `tie` is set). `ckpt` is in UER naming v2 and must hold the word embedding.
pub fn complete_heads(
    ckpt: &mut Checkpoint,
    config: &ModelConfig,
    target: PretrainTarget,
    tie: bool,
    seed: u64,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_4ead);
    let h = config.hidden_size;
    let m = if config.factorized_embedding {
        config.emb_size
    } else {
        h
    };
    let v = ckpt
        .get(keys::WORD)
        .map_or(config.vocab_size, |t| t.shape[0]);
    let mut want: Vec<(String, Vec<usize>)> = Vec::new();
    let lin = |want: &mut Vec<(String, Vec<usize>)>, p: &str, i: usize, o: usize| {
        want.push((format!("{p}.weight"), vec![o, i]));
        want.push((format!("{p}.bias"), vec![o]));
    };
    let has = |k: &str| ckpt.get(&format!("{k}.weight")).is_some();
    match target {
        PretrainTarget::Mlm | PretrainTarget::Bert | PretrainTarget::Albert
            if !has(keys::MLM_1) =>
        {
            lin(&mut want, keys::MLM_1, h, m);
            want.push((format!("{}.gamma", keys::MLM_LN), vec![m]));
            want.push((format!("{}.beta", keys::MLM_LN), vec![m]));
            if tie {
                want.push((format!("{}.bias", keys::MLM_2), vec![v]));
            } else {
                lin(&mut want, keys::MLM_2, m, v);
            }
        }
        _ => {}
    }
    if target.pairs() && !has(keys::SP_1) {
        lin(&mut want, keys::SP_1, h, h);
        lin(&mut want, keys::SP_2, h, 2);
    }
    if target == PretrainTarget::Lm && !tie && !has(keys::LM_OUT) {
        want.push((format!("{}.weight", keys::LM_OUT), vec![v, h]));
    }
    for (name, shape) in want {
        ckpt.insert(name.clone(), uer_init(&name, shape, &mut rng));
    }
}

/// One tensor with UER-py's initialisation.
fn uer_init(name: &str, shape: Vec<usize>, rng: &mut ChaCha8Rng) -> CkptTensor {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = if name.ends_with(".gamma") {
        vec![1.0; n]
    } else if name.ends_with(".beta") {
        vec![0.0; n]
    } else {
        (0..n)
            .map(|_| {
                // Box–Muller.
                let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
                let u2: f64 = rng.random();
                (0.02 * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
            })
            .collect()
    };
    CkptTensor::from_f32(shape, &values)
}

/// A model from scratch: every tensor of `config` (vocab_size, max_seq_length set) with
/// UER-py's initialisation; the decoder left out when `tie` (so loading ties it).
pub fn scratch_checkpoint(
    config: &ModelConfig,
    target: PretrainTarget,
    tie: bool,
    seed: u64,
) -> Checkpoint {
    let shapes = crate::model::random_checkpoint(config, 0);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut ckpt = Checkpoint::default();
    for name in shapes.names() {
        let tied_out = tie
            && (name == format!("{}.weight", keys::MLM_2)
                || name == format!("{}.weight", keys::LM_OUT));
        if tied_out || name.starts_with(crate::convert::names::UER_TARGET_ROOT) {
            continue;
        }
        let shape = shapes
            .get(name)
            .map(|t| t.shape.clone())
            .unwrap_or_default();
        ckpt.insert(name.to_string(), uer_init(name, shape, &mut rng));
    }
    complete_heads(&mut ckpt, config, target, tie, seed);
    ckpt
}

/// A decoder that is the word embedding (same storage or same values, as torch saves tied
/// weights) is left out, so [`load_model`](crate::model::load_model) ties it and training keeps it tied.
pub(super) fn untie_for_loading(ckpt: &Checkpoint, target: PretrainTarget) -> Checkpoint {
    let key = if target == PretrainTarget::Lm {
        format!("{}.weight", keys::LM_OUT)
    } else {
        format!("{}.weight", keys::MLM_2)
    };
    let same = match (ckpt.get(keys::WORD), ckpt.get(&key)) {
        (Some(w), Some(d)) => {
            let ((sw, rw), (sd, rd)) = (w.storage(), d.storage());
            (std::ptr::eq(sw.as_bytes().as_ptr(), sd.as_bytes().as_ptr()) && rw == rd)
                || (w.shape == d.shape && w.bytes() == d.bytes())
        }
        _ => false,
    };
    let mut out = ckpt.clone();
    if same {
        out.tensors.retain(|(n, _)| *n != key);
    }
    out
}
