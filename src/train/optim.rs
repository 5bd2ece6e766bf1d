//! UER-py's optimizer and learning-rate schedule, reusable by fine-tuning and pretraining.
//!
//! [`UerAdamW`] is UER-py's `AdamW(correct_bias=False)` (FACTS.md §5): Adam moments with
//! betas (0.9, 0.999), eps 1e-6 added to `sqrt(v)`, **no bias correction**, then decoupled
//! weight decay `p -= lr·wd·p` on the updated parameter. UER-py exempts parameters whose names
//! contain `bias`, `gamma` or `beta`; in every model of the zoo those are exactly the 1-D
//! parameters (linear biases and LayerNorm scales/shifts, while embeddings and weights are
//! 2-D), so the rule is applied by rank — Burn's optimizer sees tensors, not names.
//! Burn's own AdamW always bias-corrects (BURN_FACTS.md §4), hence this [`SimpleOptimizer`].
//!
//! [`WarmupLinear`] is `get_linear_schedule_with_warmup` as UER-py uses it: the multiplier
//! rises linearly over `warmup · total` steps, then falls linearly to 0 at `total`; the
//! scheduler steps *after* the optimizer, so update k (from 0) uses the multiplier of step k
//! and the very first update has learning rate 0.

use crate::kernels;
use burn::optim::{AdaptiveMomentumState, SimpleOptimizer};
use burn::tensor::{Tensor, backend::Backend};

/// UER-py's AdamW without bias correction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UerAdamW {
    /// Kept in f64 like PyTorch's Python floats: `1 − 0.999` in f32 is off by 1e-5.
    pub beta_1: f64,
    pub beta_2: f64,
    /// Added to `sqrt(v)` (UER-py: 1e-6).
    pub epsilon: f64,
    /// Decoupled weight decay for parameters of rank ≥ 2 (UER-py: 0.01).
    pub weight_decay: f64,
}

impl Default for UerAdamW {
    fn default() -> Self {
        UerAdamW {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-6,
            weight_decay: 0.01,
        }
    }
}

impl UerAdamW {
    /// Whether a parameter of rank `rank` is decayed (UER-py: not bias/gamma/beta = not 1-D).
    pub fn decays(rank: usize) -> bool {
        rank >= 2
    }
}

impl<B: Backend> SimpleOptimizer<B> for UerAdamW {
    type State<const D: usize> = AdaptiveMomentumState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let (moments, time) = match state {
            Some(s) => (Some((s.moment_1, s.moment_2)), s.time + 1),
            None => (None, 1),
        };
        let hp = kernels::AdamW {
            lr,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: if Self::decays(D) {
                self.weight_decay
            } else {
                0.0
            },
        };
        let (updated, m, v) = kernels::adamw(tensor.clone(), grad, moments, hp);
        let state = AdaptiveMomentumState::new(time, m, v);
        if lr == 0.0 {
            return (tensor, Some(state));
        }
        (updated, Some(state))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        state.moment_1 = state.moment_1.to_device(device);
        state.moment_2 = state.moment_2.to_device(device);
        state
    }
}

/// Linear warmup then linear decay to 0 (UER-py's default `linear` scheduler).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmupLinear {
    /// Peak learning rate.
    pub lr: f64,
    /// Steps of warmup, `warmup · total` (UER-py keeps the fraction, e.g. 37.6).
    pub warmup_steps: f64,
    /// Total optimizer steps.
    pub total_steps: usize,
}

impl WarmupLinear {
    /// A schedule over `total_steps` with a `warmup` fraction (0.1 in UER-py).
    pub fn new(lr: f64, warmup: f64, total_steps: usize) -> Self {
        WarmupLinear {
            lr,
            warmup_steps: total_steps as f64 * warmup,
            total_steps,
        }
    }

    /// UER-py's step count for fine-tuning: `int(n_train · epochs / batch) + 1`.
    pub fn finetune_steps(n_train: usize, epochs: usize, batch: usize) -> usize {
        (n_train * epochs) / batch.max(1) + 1
    }

    /// The multiplier of step `step` (`lr_lambda` of the PyTorch LambdaLR).
    pub fn factor(&self, step: usize) -> f64 {
        let s = step as f64;
        if s < self.warmup_steps {
            return s / self.warmup_steps.max(1.0);
        }
        let left = self.total_steps as f64 - s;
        (left / (self.total_steps as f64 - self.warmup_steps).max(1.0)).max(0.0)
    }

    /// The learning rate of the update that follows `step` earlier updates.
    pub fn lr_at(&self, step: usize) -> f64 {
        self.lr * self.factor(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Cpu;
    use burn::tensor::TensorData;

    #[test]
    fn schedule_matches_uer() {
        // book_review acceptance: 4000 rows, 3 epochs, batch 32 → 376 steps, warmup 37.6.
        let steps = WarmupLinear::finetune_steps(4000, 3, 32);
        assert_eq!(steps, 376);
        let s = WarmupLinear::new(3e-4, 0.1, steps);
        assert_eq!(s.lr_at(0), 0.0);
        assert!((s.factor(1) - 1.0 / 37.6).abs() < 1e-12);
        assert!((s.factor(37) - 37.0 / 37.6).abs() < 1e-12);
        assert!((s.factor(38) - (376.0 - 38.0) / (376.0 - 37.6)).abs() < 1e-12);
        assert_eq!(s.factor(376), 0.0);
        assert_eq!(s.factor(400), 0.0);
    }

    fn vals<const D: usize>(t: Tensor<Cpu, D>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn adamw_without_bias_correction() {
        // Two steps by hand: m = 0.1 g, v = 0.001 g² after the first step.
        let dev = Default::default();
        let opt = UerAdamW::default();
        let p = Tensor::<Cpu, 2>::from_data(TensorData::new(vec![1.0f32, -2.0], [1, 2]), &dev);
        let g = Tensor::<Cpu, 2>::from_data(TensorData::new(vec![0.5f32, 1.0], [1, 2]), &dev);
        let (p1, st) = SimpleOptimizer::<Cpu>::step(&opt, 0.0, p.clone(), g.clone(), None);
        assert_eq!(
            vals(p1.clone()),
            vec![1.0, -2.0],
            "lr 0 leaves the parameter"
        );
        let (p2, _) = SimpleOptimizer::<Cpu>::step(&opt, 0.1, p1, g, st);
        let mut want = Vec::new();
        for (p, g) in [(1.0f64, 0.5f64), (-2.0, 1.0)] {
            let m = 0.9 * 0.1 * g + 0.1 * g;
            let v = 0.999 * 0.001 * g * g + 0.001 * g * g;
            let q = p - 0.1 * m / (v.sqrt() + 1e-6);
            want.push((q - 0.1 * 0.01 * q) as f32);
        }
        for (a, b) in vals(p2).iter().zip(&want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        // 1-D parameters (bias, gamma, beta) are not decayed.
        let b = Tensor::<Cpu, 1>::from_data(TensorData::new(vec![1.0f32], [1]), &dev);
        let gb = Tensor::<Cpu, 1>::from_data(TensorData::new(vec![0.5f32], [1]), &dev);
        let (b1, st) = SimpleOptimizer::<Cpu>::step(&opt, 0.0, b, gb.clone(), None);
        let (b2, _) = SimpleOptimizer::<Cpu>::step(&opt, 0.1, b1, gb, st);
        let m = 0.19 * 0.5;
        let v = (0.999 * 0.001 + 0.001) * 0.25;
        let want = 1.0 - 0.1 * m / (f64::sqrt(v) + 1e-6);
        assert!((vals(b2)[0] as f64 - want).abs() < 1e-6);
    }
}
