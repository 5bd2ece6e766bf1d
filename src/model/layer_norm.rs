//! LayerNorm with both semantics the zoo needs (FACTS.md §3): UER-py's (unbiased std,
//! eps added to the std) for weights from UER files, and PyTorch/HF's (biased variance, eps
//! inside the square root) for weights from HF directories. Same parameters, different
//! outputs (1e-2 in logits on the fixtures), so the kind travels with the weights.

use super::config::LnKind;
use burn::module::{Module, Param};
use burn::tensor::{Tensor, backend::Backend};

/// Normalisation over the last dimension with learned `gamma` and `beta`.
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    /// Scale, `[n]`.
    pub gamma: Param<Tensor<B, 1>>,
    /// Shift, `[n]`.
    pub beta: Param<Tensor<B, 1>>,
    #[module(skip)]
    kind: LnKind,
    #[module(skip)]
    eps: f64,
}

impl<B: Backend> LayerNorm<B> {
    /// A LayerNorm over `gamma`/`beta` with the given formula and epsilon.
    pub fn new(gamma: Tensor<B, 1>, beta: Tensor<B, 1>, kind: LnKind, eps: f64) -> Self {
        LayerNorm {
            gamma: Param::from_tensor(gamma),
            beta: Param::from_tensor(beta),
            kind,
            eps,
        }
    }

    /// Normalises `x` over its last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        crate::kernels::layer_norm(x, self.gamma.val(), self.beta.val(), self.kind, self.eps)
    }
}
