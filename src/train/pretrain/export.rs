//! Export: the trained model as a UER checkpoint with its pretraining heads.

use super::PretrainOptions;
use crate::checkpoint::{Checkpoint, Tensor as CkptTensor};
use crate::convert::Naming;
use crate::model::Model;
use crate::model::layer_norm::LayerNorm;
use crate::model::load::keys;
use crate::train::TrainError;
use crate::train::classifier;
use burn::module::AutodiffModule;
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use std::path::Path;

/// Writes the model as a UER checkpoint in `opts.naming` at `path` (atomically).
pub(super) fn save<A: AutodiffBackend>(
    model: &Model<A>,
    tied: bool,
    opts: &PretrainOptions,
    path: &Path,
) -> Result<(), TrainError> {
    let ckpt = export(&model.valid(), tied);
    write_uer(&ckpt, opts.naming, path)
}

/// Renames a UER naming v2 checkpoint to `naming` and writes it as a torch `.bin`.
pub fn write_uer(ckpt: &Checkpoint, naming: Naming, path: &Path) -> Result<(), TrainError> {
    crate::train::save::save_uer(ckpt, naming, path, true)
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

/// The model's weights in UER naming v2 with the pretraining heads; a tied decoder is
/// written as the word embedding's storage under both names (as torch saves tied weights).
pub fn export<B: Backend>(model: &Model<B>, tied: bool) -> Checkpoint {
    let mut ckpt = classifier::to_checkpoint(model);
    let word = ckpt.get(keys::WORD).cloned();
    let mut put = |name: String, t: (Vec<usize>, Vec<f32>)| {
        ckpt.insert(name, CkptTensor::from_f32(t.0, &t.1))
    };
    let linear = |put: &mut dyn FnMut(String, (Vec<usize>, Vec<f32>)),
                  p: &str,
                  l: &Linear<B>,
                  weight: bool| {
        if weight {
            let (s, w) = host(l.weight.val().transpose());
            put(format!("{p}.weight"), (s, w));
        }
        if let Some(b) = &l.bias {
            put(format!("{p}.bias"), host(b.val()));
        }
    };
    let ln = |put: &mut dyn FnMut(String, (Vec<usize>, Vec<f32>)), p: &str, n: &LayerNorm<B>| {
        put(format!("{p}.gamma"), host(n.gamma.val()));
        put(format!("{p}.beta"), host(n.beta.val()));
    };
    let mut tied_name = None;
    if let Some(m) = &model.mlm {
        linear(&mut put, keys::MLM_1, &m.linear_1, true);
        ln(&mut put, keys::MLM_LN, &m.layer_norm);
        linear(&mut put, keys::MLM_2, &m.linear_2, !tied);
        if tied {
            tied_name = Some(format!("{}.weight", keys::MLM_2));
        }
    }
    if let Some(s) = &model.sp {
        linear(&mut put, keys::SP_1, &s.linear_1, true);
        linear(&mut put, keys::SP_2, &s.linear_2, true);
    }
    if let Some(lm) = &model.lm {
        linear(&mut put, keys::LM_OUT, &lm.output_layer, !tied);
        if tied {
            tied_name = Some(format!("{}.weight", keys::LM_OUT));
        }
    }
    if let (Some(name), Some(word)) = (tied_name, word) {
        ckpt.insert(name, word);
    }
    ckpt
}
