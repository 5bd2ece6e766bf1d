//! The LSTM encoder of UER-py 2019 (`--encoder lstm`): torch's `nn.LSTM`, batch-first,
//! unidirectional, `layers_num` layers, zero initial state, gates in torch's order i, f, g, o
//! (`weight_ih_l{k}` `[4H, in]`, `weight_hh_l{k}` `[4H, H]`, both biases). Padding
//! positions run through it like any other, as in UER-py.
//!
//! Per layer: one GEMM for the input projection of every time step (`[b·s, in] × [in, 4H]`),
//! then per step one `[b, H] × [H, 4H]` product and the gates. The state after the last step
//! is returned, so that decoding carries it as its cache ([`LstmState`]).

use crate::kernels;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Tensor, activation, backend::Backend};

/// One layer (`encoder.rnn.*_l{k}`): the input and the recurrent projection, each with its
/// bias, as torch stores them.
#[derive(Module, Debug)]
pub struct LstmLayer<B: Backend> {
    /// `weight_ih_l{k}` / `bias_ih_l{k}`: `in → 4H`.
    pub input: Linear<B>,
    /// `weight_hh_l{k}` / `bias_hh_l{k}`: `H → 4H`.
    pub hidden: Linear<B>,
}

/// The stack of layers.
#[derive(Module, Debug)]
pub struct Lstm<B: Backend> {
    pub layers: Vec<LstmLayer<B>>,
    #[module(skip)]
    pub hidden_size: usize,
}

/// The recurrent state after the positions seen so far: per layer `(h, c)`, each `[batch, H]`.
#[derive(Debug, Clone)]
pub struct LstmState<B: Backend> {
    pub layers: Vec<(Tensor<B, 2>, Tensor<B, 2>)>,
    /// Positions consumed.
    pub len: usize,
}

impl<B: Backend> LstmLayer<B> {
    /// `[batch, seq, in]` from state `(h, c)` → `[batch, seq, H]` and the last state.
    fn forward(
        &self,
        x: Tensor<B, 3>,
        state: (Tensor<B, 2>, Tensor<B, 2>),
        hsize: usize,
    ) -> (Tensor<B, 3>, (Tensor<B, 2>, Tensor<B, 2>)) {
        let [b, s, _] = x.dims();
        let projected = kernels::linear(&self.input, x);
        let (mut h, mut c) = state;
        let mut outs = Vec::with_capacity(s);
        for t in 0..s {
            let gates = projected.clone().narrow(1, t, 1).reshape([b, 4 * hsize])
                + kernels::linear(&self.hidden, h);
            let i = activation::sigmoid(gates.clone().narrow(1, 0, hsize));
            let f = activation::sigmoid(gates.clone().narrow(1, hsize, hsize));
            let g = gates.clone().narrow(1, 2 * hsize, hsize).tanh();
            let o = activation::sigmoid(gates.narrow(1, 3 * hsize, hsize));
            c = f * c + i * g;
            h = o * c.clone().tanh();
            outs.push(h.clone());
        }
        (Tensor::stack(outs, 1), (h, c))
    }
}

impl<B: Backend> Lstm<B> {
    /// Zero state for `batch` rows (torch's default `h0`, `c0`).
    pub fn zero_state(&self, batch: usize, device: &B::Device) -> LstmState<B> {
        let zero = || Tensor::zeros([batch, self.hidden_size], device);
        LstmState {
            layers: self.layers.iter().map(|_| (zero(), zero())).collect(),
            len: 0,
        }
    }

    /// `[batch, seq, in]` → `[batch, seq, H]`, from `state` (zero when `None`) and updating
    /// it to the state after the last position.
    pub fn forward(&self, x: Tensor<B, 3>, state: Option<&mut LstmState<B>>) -> Tensor<B, 3> {
        let [b, s, _] = x.dims();
        let mut zero;
        let state = match state {
            Some(st) => st,
            None => {
                zero = self.zero_state(b, &x.device());
                &mut zero
            }
        };
        let mut h = x;
        for (layer, slot) in self.layers.iter().zip(state.layers.iter_mut()) {
            let (out, last) = layer.forward(h, slot.clone(), self.hidden_size);
            *slot = last;
            h = out;
        }
        state.len += s;
        h
    }
}
