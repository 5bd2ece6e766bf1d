//! The optimizer update over the model's parameters in visiting order (UER's AdamW, state
//! kept by that order) and the global gradient norm.

use super::state::DeviceMoments;
use crate::train::optim::UerAdamW;
use burn::module::{ModuleMapper, ModuleVisitor, Param};
use burn::optim::{AdaptiveMomentumState, GradientsParams, SimpleOptimizer};
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;

/// UER's AdamW over the model's parameters in visiting order, with the state kept by that
/// order (so it survives reloading the weights, which makes new parameter ids).
pub(super) struct StepMapper<'a, B: AutodiffBackend> {
    pub(super) opt: &'a UerAdamW,
    pub(super) states: &'a mut Vec<DeviceMoments<B::InnerBackend>>,
    pub(super) grads: &'a mut GradientsParams,
    pub(super) lr: f64,
    pub(super) scale: Option<f64>,
    pub(super) index: usize,
}

impl<B: AutodiffBackend> ModuleMapper<B> for StepMapper<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let i = self.index;
        self.index += 1;
        if self.states.len() <= i {
            self.states.resize(i + 1, None);
        }
        let tensor = match self.grads.remove::<B::InnerBackend, D>(id) {
            Some(grad) => {
                let grad = match self.scale {
                    Some(s) => grad.mul_scalar(s),
                    None => grad,
                };
                let dims = tensor.dims();
                let n = dims.iter().product::<usize>();
                let state = self.states[i].take().map(|(t, m, v)| {
                    AdaptiveMomentumState::new(t, m.reshape(dims), v.reshape(dims))
                });
                let (p, st) = SimpleOptimizer::<B::InnerBackend>::step(
                    self.opt,
                    self.lr,
                    tensor.inner(),
                    grad,
                    state,
                );
                self.states[i] =
                    st.map(|s| (s.time, s.moment_1.reshape([n]), s.moment_2.reshape([n])));
                Tensor::from_inner(p).require_grad()
            }
            None => tensor,
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}

/// Sum of squared gradients over all parameters.
pub(super) struct NormVisitor<'a, B: AutodiffBackend> {
    pub(super) grads: &'a GradientsParams,
    pub(super) sum: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for NormVisitor<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let s = g.square().sum();
            self.sum = Some(match self.sum.take() {
                Some(acc) => acc + s,
                None => s,
            });
        }
    }
}
