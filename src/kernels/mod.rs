//! Fast CPU kernels for the ops that dominate the zoo's small models: GELU (erf and tanh
//! forms), dropout, softmax with the additive attention mask (+ dropout), LayerNorm (UER and
//! HF formulas) and attention built from them — each with an exact backward pass.
//!
//! Every function here is generic over `B: Backend` and computes the same formula as the
//! plain Burn composition in [`plain`]. On Burn's Flex backend (f32) and on
//! `Autodiff<Flex>` it takes a fused path instead: one pass over the data, vectorised for
//! the CPU's SIMD level and split over rayon's global pool (see [`cpu`]); the autodiff
//! versions register custom backward steps that reuse what the forward computed (input,
//! probabilities, dropout mask, row statistics). Every other backend (CUDA, whose fusion
//! already merges element-wise ops) runs [`plain`].
//!
//! Dispatch is by the backend's concrete type (`TypeId`), so the models stay generic over
//! `B: Backend` with no extra trait bound and the choice costs one comparison per call.
//!
//! Dropout draws from a counter-based hash of (key, element index); each call takes a fresh
//! key from a global stream that [`seed`] resets, so runs are reproducible.

pub mod cpu;
pub mod flex;
pub mod int8;

/// The bf16 linear layer ([`uerzoo_kernels::bf16`]): weight rounded to bf16 once, rows per
/// call, f32 sums; AVX-512 BF16, AVX2+FMA or scalar.
pub use uerzoo_kernels::bf16;

use burn::backend::{Autodiff, Flex};
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{AttentionModuleOptions, FloatTensor};
use burn::tensor::{Int, Tensor, TensorData, TensorPrimitive, module};
use cpu::{DropSpec, LnFormula};
use flex::{AdTensor, GeluForm};
use std::any::{Any, TypeId};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Which LayerNorm formula to use; it depends on where the weights came from (the model's
/// config carries it, as `crate::model::LnKind`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LnKind {
    /// UER-py: `gamma·(x−mean)/(std_unbiased + eps) + beta`, eps 1e-6 outside the root.
    Uer,
    /// PyTorch / transformers: `gamma·(x−mean)/sqrt(var_biased + eps) + beta`.
    Hf,
}

/// The plain Burn compositions: the reference the fast paths are tested against and the
/// path every non-Flex backend takes.
pub mod plain {
    use super::LnKind;
    use burn::tensor::backend::Backend;
    use burn::tensor::{Distribution, Int, Tensor, TensorData, activation};

    /// `x·Φ(x)` through Burn's erf.
    pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
        activation::gelu(x)
    }

    /// `0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³)))`.
    pub fn gelu_tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
        activation::gelu_approximate(x)
    }

    /// Inverted dropout with the backend's Bernoulli sampler.
    pub fn dropout<B: Backend, const D: usize>(x: Tensor<B, D>, p: f64) -> Tensor<B, D> {
        if p <= 0.0 {
            return x;
        }
        let keep = x.random_like(Distribution::Bernoulli(1.0 - p));
        x * keep / (1.0 - p)
    }

    /// `dropout(softmax(scores·scale + bias))` over the last dimension.
    pub fn masked_softmax<B: Backend>(
        scores: Tensor<B, 4>,
        bias: Option<Tensor<B, 4>>,
        scale: f64,
        p: f64,
    ) -> Tensor<B, 4> {
        let mut s = scores * scale;
        if let Some(bias) = bias {
            s = s + bias;
        }
        dropout(activation::softmax(s, 3), p)
    }

    /// LayerNorm over the last dimension, UER's or HF's formula.
    pub fn layer_norm<B: Backend, const D: usize>(
        x: Tensor<B, D>,
        gamma: Tensor<B, 1>,
        beta: Tensor<B, 1>,
        kind: LnKind,
        eps: f64,
    ) -> Tensor<B, D> {
        let n = x.dims()[D - 1];
        let centered = x.clone() - x.mean_dim(D - 1);
        let sq_sum = centered.clone().powi_scalar(2).sum_dim(D - 1);
        let normed = match kind {
            LnKind::Uer => centered / ((sq_sum / ((n.max(2) - 1) as f64)).sqrt() + eps),
            LnKind::Hf => centered / (sq_sum / n as f64 + eps).sqrt(),
        };
        normed * gamma.unsqueeze::<D>() + beta.unsqueeze::<D>()
    }

    /// `word[ids] + pos[0..seq] (+ seg[segs])`, `[batch, seq, e]`.
    pub fn embed<B: Backend>(
        word: Tensor<B, 2>,
        pos: Tensor<B, 2>,
        seg: Option<Tensor<B, 2>>,
        ids: Tensor<B, 2, Int>,
        segs: Tensor<B, 2, Int>,
    ) -> Tensor<B, 3> {
        let [b, s] = ids.dims();
        let e = word.dims()[1];
        let mut emb = word.select(0, ids.reshape([b * s])).reshape([b, s, e]);
        emb = emb + pos.narrow(0, 0, s).unsqueeze::<3>();
        if let Some(seg) = seg {
            emb = emb + seg.select(0, segs.reshape([b * s])).reshape([b, s, e]);
        }
        emb
    }

    /// UER-py's AdamW step as Burn ops (see [`super::adamw`]).
    pub fn adamw<B: Backend, const D: usize>(
        p: Tensor<B, D>,
        g: Tensor<B, D>,
        moments: Option<(Tensor<B, D>, Tensor<B, D>)>,
        hp: super::AdamW,
    ) -> (Tensor<B, D>, Tensor<B, D>, Tensor<B, D>) {
        let (b1, b2) = (hp.beta_1, hp.beta_2);
        let (m, v) = match moments {
            Some((m, v)) => (
                m.mul_scalar(b1).add(g.clone().mul_scalar(1.0 - b1)),
                v.mul_scalar(b2).add(g.square().mul_scalar(1.0 - b2)),
            ),
            None => (
                g.clone().mul_scalar(1.0 - b1),
                g.square().mul_scalar(1.0 - b2),
            ),
        };
        let denom = v.clone().sqrt().add_scalar(hp.epsilon);
        let mut u = p - m.clone().div(denom).mul_scalar(hp.lr);
        if hp.weight_decay != 0.0 {
            u = u.clone() - u.mul_scalar(hp.lr * hp.weight_decay);
        }
        (u, m, v)
    }

    /// Multi-head attention on `[b, s, h]` activations: split into heads, scaled scores,
    /// `+ bias`, softmax, dropout, `·v`, heads merged back.
    pub fn self_attention<B: Backend>(
        q: Tensor<B, 3>,
        k: Tensor<B, 3>,
        v: Tensor<B, 3>,
        heads: usize,
        bias: Option<Tensor<B, 4>>,
        p: f64,
    ) -> Tensor<B, 3> {
        let scale = 1.0 / ((q.dims()[2] / heads) as f64).sqrt();
        let (q, k, v) = (
            super::split_heads(q, heads),
            super::split_heads(k, heads),
            super::split_heads(v, heads),
        );
        let scores = q.matmul(k.swap_dims(2, 3));
        super::merge_heads(masked_softmax(scores, bias, scale, p).matmul(v))
    }

    /// `−mean_r log_softmax(logits)[r, t_r]` and the argmax hit count (detached).
    pub fn cross_entropy<B: Backend>(
        logits: Tensor<B, 2>,
        targets: &[i64],
    ) -> (Tensor<B, 1>, Tensor<B, 1>) {
        let n = targets.len();
        let t = Tensor::<B, 2, Int>::from_data(
            TensorData::new(targets.to_vec(), [n, 1]),
            &logits.device(),
        );
        let hits = logits
            .clone()
            .argmax(1)
            .equal(t.clone())
            .float()
            .sum()
            .detach();
        let logp = activation::log_softmax(logits, 1);
        (logp.gather(1, t).mean().neg(), hits)
    }
}

static SEED: AtomicU64 = AtomicU64::new(0x5eed_0f0e_1220_0000);
static CALLS: AtomicU64 = AtomicU64::new(0);

/// Resets the dropout stream: after `seed(s)`, the same sequence of calls draws the same masks.
pub fn seed(s: u64) {
    SEED.store(s, Ordering::SeqCst);
    CALLS.store(0, Ordering::SeqCst);
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The key for the next dropout call.
fn next_key() -> u64 {
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    splitmix64(SEED.load(Ordering::Relaxed) ^ splitmix64(call))
}

/// Moves `t` into a `U` when `T` and `U` are the same type.
fn cast<T: Any, U: Any>(t: T) -> Result<U, T> {
    if TypeId::of::<T>() != TypeId::of::<U>() {
        return Err(t);
    }
    let boxed: Box<dyn Any> = Box::new(t);
    match boxed.downcast::<U>() {
        Ok(u) => Ok(*u),
        Err(_) => unreachable!("TypeId equality means the downcast succeeds"),
    }
}

/// A tensor's primitive, seen as the backend it really is.
enum Prim<B: Backend> {
    Flex(burn::backend::flex::FlexTensor),
    Ad(AdTensor),
    Other(FloatTensor<B>),
}

fn split<B: Backend, const D: usize>(x: Tensor<B, D>) -> Prim<B> {
    let p = x.into_primitive().tensor();
    let p = match cast::<_, burn::backend::flex::FlexTensor>(p) {
        Ok(t) if flex::supported(&t) => return Prim::Flex(t),
        Ok(t) => return Prim::Other(back(t)),
        Err(p) => p,
    };
    match cast::<_, AdTensor>(p) {
        Ok(t) if flex::supported(&t.primitive) => Prim::Ad(t),
        Ok(t) => Prim::Other(back(t)),
        Err(p) => Prim::Other(p),
    }
}

/// The inverse of the cast in [`split`] (only called with `T` = `FloatTensor<B>`).
fn back<T: Any, U: Any>(t: T) -> U {
    match cast::<T, U>(t) {
        Ok(u) => u,
        Err(_) => unreachable!("called only with the backend's own primitive"),
    }
}

fn join<B: Backend, const D: usize>(p: Prim<B>) -> Tensor<B, D> {
    let p: FloatTensor<B> = match p {
        Prim::Flex(t) => back(t),
        Prim::Ad(t) => back(t),
        Prim::Other(t) => t,
    };
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the fast paths on or off process-wide (off: every call runs [`plain`]); for
/// benchmarks and for bisecting a numerical question.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::SeqCst);
}

/// Whether the fast paths are on (see [`set_enabled`]).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether the linear on backend `B` reads a weight kept in torch's `[out, in]` layout as
/// its transposed view in place (the fused linear on Flex). Elsewhere the loader hands it a
/// contiguous `[in, out]` weight.
pub fn reads_transposed_weights<B: Backend>() -> bool {
    is_fast::<B>()
}

fn is_fast<B: Backend>() -> bool {
    enabled()
        && (TypeId::of::<B>() == TypeId::of::<Flex>()
            || TypeId::of::<B>() == TypeId::of::<Autodiff<Flex>>())
}

fn unary<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    on_flex: impl FnOnce(burn::backend::flex::FlexTensor) -> burn::backend::flex::FlexTensor,
    on_ad: impl FnOnce(AdTensor) -> AdTensor,
    plain: impl FnOnce(Tensor<B, D>) -> Tensor<B, D>,
) -> Tensor<B, D> {
    if !is_fast::<B>() {
        return plain(x);
    }
    match split(x) {
        Prim::Flex(t) => join(Prim::<B>::Flex(on_flex(t))),
        Prim::Ad(t) => join(Prim::<B>::Ad(on_ad(t))),
        other => plain(join(other)),
    }
}

/// GELU, erf form (BERT, RoBERTa, ALBERT): `x·Φ(x)`; within 1e-6 of the exact value.
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    unary(
        x,
        |t| flex::gelu(&t, GeluForm::Erf),
        |t| flex::gelu_ad(t, GeluForm::Erf),
        plain::gelu,
    )
}

/// GELU, tanh form (GPT-2's `gelu_fast`).
pub fn gelu_tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    unary(
        x,
        |t| flex::gelu(&t, GeluForm::Tanh),
        |t| flex::gelu_ad(t, GeluForm::Tanh),
        plain::gelu_tanh,
    )
}

/// Inverted dropout with probability `p` (identity when `p` ≤ 0; all zeros when `p` ≥ 1).
pub fn dropout<B: Backend, const D: usize>(x: Tensor<B, D>, p: f64) -> Tensor<B, D> {
    if p <= 0.0 {
        return x;
    }
    if p >= 1.0 {
        return x.zeros_like();
    }
    let spec = DropSpec::new(p, next_key());
    unary(
        x,
        |t| flex::dropout(&t, spec).0,
        |t| flex::dropout_ad(t, spec),
        |x| plain::dropout(x, p),
    )
}

/// `dropout(softmax(scores·scale + bias), p)` over the last dimension of `[batch, heads,
/// seq_q, seq_k]` scores. `bias` is the additive mask, shaped `[batch|1, heads|1, seq_q|1,
/// seq_k]`; it is a constant (no gradient flows to it).
pub fn masked_softmax<B: Backend>(
    scores: Tensor<B, 4>,
    bias: Option<Tensor<B, 4>>,
    scale: f64,
    p: f64,
) -> Tensor<B, 4> {
    if !is_fast::<B>() || p >= 1.0 {
        return plain::masked_softmax(scores, bias, scale, p);
    }
    let drop = (p > 0.0).then(|| DropSpec::new(p, next_key()));
    let bias_prim = bias.clone().map(|b| match split(b) {
        Prim::Flex(t) => Some(t),
        Prim::Ad(t) => Some(t.primitive),
        Prim::Other(_) => None,
    });
    let bias_flex = match bias_prim {
        Some(None) => return plain::masked_softmax(scores, bias, scale, p),
        Some(Some(t)) => Some(t),
        None => None,
    };
    let fallback = scores.clone();
    let done = match split(scores) {
        Prim::Flex(t) => flex::masked_softmax(&t, bias_flex.as_ref(), scale as f32, drop)
            .map(|(out, _, _)| Prim::<B>::Flex(out)),
        Prim::Ad(t) => {
            flex::masked_softmax_ad(t, bias_flex.as_ref(), scale as f32, drop).map(Prim::<B>::Ad)
        }
        Prim::Other(_) => None,
    };
    match done {
        Some(p) => join(p),
        None => plain::masked_softmax(fallback, bias, scale, p),
    }
}

/// Scaled dot-product attention over `[batch, heads, seq, head_dim]`: scores (`q·kᵀ`) →
/// ·1/√head_dim → + `bias` → softmax → dropout `p` → ·`v`. The matrix products are Burn's
/// (Flex's GEMM is fast); the middle is one fused [`masked_softmax`]. Without dropout on a
/// backend that is not Flex, Burn's fused attention module runs instead.
pub fn attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    bias: Option<Tensor<B, 4>>,
    p: f64,
) -> Tensor<B, 4> {
    let scale = 1.0 / (q.dims()[3] as f64).sqrt();
    if !is_fast::<B>() && p <= 0.0 {
        let options = AttentionModuleOptions {
            scale: Some(scale),
            softcap: None,
            is_causal: false,
        };
        return module::attention(q, k, v, None, bias, options);
    }
    let scores = q.matmul(k.swap_dims(2, 3));
    masked_softmax(scores, bias, scale, p).matmul(v)
}

/// LayerNorm over the last dimension with UER's (`(x−μ)/(std_unbiased+eps)`) or HF's
/// (`(x−μ)/√(var+eps)`) formula, then `·gamma + beta`.
pub fn layer_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    kind: LnKind,
    eps: f64,
) -> Tensor<B, D> {
    if !is_fast::<B>() || x.dims()[D - 1] != gamma.dims()[0] || beta.dims() != gamma.dims() {
        return plain::layer_norm(x, gamma, beta, kind, eps);
    }
    let formula = match kind {
        LnKind::Uer => LnFormula::Uer,
        LnKind::Hf => LnFormula::Hf,
    };
    let (x0, g0, b0) = (x.clone(), gamma.clone(), beta.clone());
    let out = match (split(x), split(gamma), split(beta)) {
        (Prim::Flex(x), Prim::Flex(g), Prim::Flex(b)) => Some(Prim::<B>::Flex(
            flex::layer_norm(&x, &g, &b, formula, eps as f32).0,
        )),
        (Prim::Ad(x), Prim::Ad(g), Prim::Ad(b)) => Some(Prim::<B>::Ad(flex::layer_norm_ad(
            x, g, b, formula, eps as f32,
        ))),
        _ => None,
    };
    match out {
        Some(p) => join(p),
        None => plain::layer_norm(x0, g0, b0, kind, eps),
    }
}

/// Mean cross-entropy of `[n, k]` logits against class ids `targets` (length `n`, each in
/// `0..k`): `−mean_r log_softmax(logits)[r, t_r]` — UER-py's `NLLLoss(LogSoftmax(·))` — and,
/// as a constant `[1]` tensor, how many rows have the target as their argmax (first maximum).
///
/// On Flex the fused path computes each row's log-sum-exp in one vectorised pass and its
/// backward writes `(softmax − onehot)·g/n` directly, instead of Burn's five passes over the
/// logits and a scatter into a zeroed buffer.
pub fn cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    targets: &[i64],
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let [n, k] = logits.dims();
    let valid = targets.len() == n && targets.iter().all(|&t| t >= 0 && (t as usize) < k);
    if !is_fast::<B>() || !valid {
        return plain::cross_entropy(logits, targets);
    }
    let device = logits.device();
    let t: Vec<u32> = targets.iter().map(|&t| t as u32).collect();
    let fallback = logits.clone();
    let (loss, hits) = match split(logits) {
        Prim::Flex(x) => {
            let (loss, hits, _, _) = flex::cross_entropy(&x, &t);
            (Prim::<B>::Flex(loss), hits)
        }
        Prim::Ad(x) => {
            let (loss, hits) = flex::cross_entropy_ad(x, &t);
            (Prim::<B>::Ad(loss), hits)
        }
        Prim::Other(_) => return plain::cross_entropy(fallback, targets),
    };
    let hits = Tensor::<B, 1>::from_data(TensorData::new(vec![hits as f32], [1]), &device);
    (join(loss), hits)
}

/// A [`Linear`] layer applied to the last dimension of `x` (`x·W + b`). On Flex: one GEMM
/// over all leading dimensions into a buffer pre-filled with the bias; its backward computes
/// `dx = dy·Wᵀ` and `dW = xᵀ·dy` as two GEMMs on strided views and `db` as one column sum
/// (Burn's composition runs a batched product per leading index, sums the per-batch weight
/// gradients afterwards and copies the transposes).
pub fn linear<B: Backend, const D: usize>(layer: &Linear<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    if !is_fast::<B>() {
        return layer.forward(x);
    }
    let w = layer.weight.val();
    let b = layer.bias.as_ref().map(|b| b.val());
    let done = match (split(x.clone()), split(w), b.map(split)) {
        (Prim::Flex(x), Prim::Flex(w), None) if flex::linear_fits(&x, &w, None) => {
            Some(Prim::<B>::Flex(flex::linear(&x, &w, None)))
        }
        (Prim::Flex(x), Prim::Flex(w), Some(Prim::Flex(b)))
            if flex::linear_fits(&x, &w, Some(&b)) =>
        {
            Some(Prim::<B>::Flex(flex::linear(&x, &w, Some(&b))))
        }
        (Prim::Ad(x), Prim::Ad(w), None) if flex::linear_fits(&x.primitive, &w.primitive, None) => {
            Some(Prim::<B>::Ad(flex::linear_ad(x, w, None)))
        }
        (Prim::Ad(x), Prim::Ad(w), Some(Prim::Ad(b)))
            if flex::linear_fits(&x.primitive, &w.primitive, Some(&b.primitive)) =>
        {
            Some(Prim::<B>::Ad(flex::linear_ad(x, w, Some(b))))
        }
        _ => None,
    };
    match done {
        Some(p) => join(p),
        None => layer.forward(x),
    }
}

/// [`linear`] with every row computed as the few-rows kernel computes it alone, whatever the
/// number of rows (up to [`uerzoo_kernels::ROW_LIMIT`]), reading the weight once for all of
/// them: several prompts prefilled in one forward keep each prompt's bits. `None` where that
/// kernel does not apply (another backend, a weight not in `[out, in]` layout, too many
/// rows); the caller then runs [`linear`] on chunks of at most
/// [`uerzoo_kernels::MAX_ROWS`] rows.
pub fn linear_rowwise<B: Backend, const D: usize>(
    layer: &Linear<B>,
    x: &Tensor<B, D>,
) -> Option<Tensor<B, D>> {
    if TypeId::of::<B>() != TypeId::of::<Flex>() || !enabled() {
        return None;
    }
    let w = layer.weight.val();
    let b = layer.bias.as_ref().map(|b| b.val());
    match (split(x.clone()), split(w), b.map(split)) {
        (Prim::Flex(x), Prim::Flex(w), None) => flex::linear_rowwise(&x, &w, None),
        (Prim::Flex(x), Prim::Flex(w), Some(Prim::Flex(b))) => {
            flex::linear_rowwise(&x, &w, Some(&b))
        }
        _ => None,
    }
    .map(|y| join(Prim::<B>::Flex(y)))
}

/// Whether backend `B` runs int8 linear layers ([`int8_linear`]): Burn's Flex (CPU) for
/// inference; not `Autodiff<Flex>` (training) nor the GPU backends.
pub fn runs_int8<B: Backend>() -> bool {
    TypeId::of::<B>() == TypeId::of::<Flex>()
}

/// Whether backend `B` runs bf16 linear layers ([`bf16_linear`]): Burn's Flex (CPU) for
/// inference; not `Autodiff<Flex>` (training) nor the GPU backends.
pub fn runs_bf16<B: Backend>() -> bool {
    TypeId::of::<B>() == TypeId::of::<Flex>()
}

/// `layer` quantized for [`int8_linear`] (its weight read back as torch's `[out, in]`).
pub fn quantize_linear<B: Backend>(layer: &Linear<B>) -> int8::QLinear {
    let [d_in, d_out] = layer.weight.dims();
    let to_vec = |d: TensorData| d.convert::<f32>().to_vec::<f32>();
    let w =
        to_vec(layer.weight.val().transpose().into_data()).expect("an f32 weight converts to f32");
    let bias = layer
        .bias
        .as_ref()
        .map(|b| to_vec(b.val().into_data()).expect("an f32 bias converts to f32"));
    int8::QLinear::quantize(&w, d_out, d_in, bias)
}

/// `x·Wᵀ + b` over the last dimension of `x` with an int8 layer ([`int8::QLinear`]: the
/// rows of `x` quantized on the fly, the products in i32, f32 out). Only on Flex
/// ([`runs_int8`]; the loader refuses int8 elsewhere).
pub fn int8_linear<B: Backend, const D: usize>(
    layer: &int8::QLinear,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    let mut dims = x.dims();
    let k = dims[D - 1];
    assert_eq!(
        k,
        layer.weight.in_features(),
        "int8 linear of {} inputs handed {k}",
        layer.weight.in_features()
    );
    match split(x) {
        Prim::Flex(t) => {
            let t = t.to_contiguous();
            let values = t
                .as_slice::<f32>()
                .expect("a contiguous f32 Flex tensor has an f32 slice");
            let out = layer.forward(values, values.len() / k.max(1));
            dims[D - 1] = layer.weight.out_features();
            let t = burn::backend::flex::FlexTensor::from_data(TensorData::new(out, dims));
            join(Prim::<B>::Flex(t))
        }
        _ => panic!(
            "int8 linear layers run on the Flex backend only (the loader refuses int8 elsewhere)"
        ),
    }
}

/// A [`Linear`] layer for bf16 inference ([`bf16_linear`]): its weight rounded to bf16 and
/// packed once, its bias kept in f32.
#[derive(Debug, Clone)]
pub struct Bf16Linear {
    /// The packed `[out, in]` weight.
    pub weight: bf16::Bf16Weight,
    /// The f32 bias, if the layer has one.
    pub bias: Option<Vec<f32>>,
}

/// `layer` rounded to bf16 for [`bf16_linear`] (its weight read back as torch's `[out, in]`).
pub fn bf16_weights<B: Backend>(layer: &Linear<B>) -> Bf16Linear {
    let [d_in, d_out] = layer.weight.dims();
    let to_vec = |d: TensorData| d.convert::<f32>().to_vec::<f32>();
    let w =
        to_vec(layer.weight.val().transpose().into_data()).expect("an f32 weight converts to f32");
    let bias = layer
        .bias
        .as_ref()
        .map(|b| to_vec(b.val().into_data()).expect("an f32 bias converts to f32"));
    let weight = bf16::Bf16Weight::pack(&w, d_out, d_in)
        .expect("a weight read back from its tensor has the tensor's shape");
    Bf16Linear { weight, bias }
}

/// `x·Wᵀ + b` over the last dimension of `x` with a bf16 layer ([`Bf16Linear`]: the rows of
/// `x` rounded to bf16 on the fly, the products summed in f32, f32 out). Only on Flex
/// ([`runs_bf16`]; the loader refuses bf16 elsewhere).
pub fn bf16_linear<B: Backend, const D: usize>(
    layer: &Bf16Linear,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    let mut dims = x.dims();
    let k = dims[D - 1];
    let (d_in, d_out) = (layer.weight.in_features(), layer.weight.out_features());
    assert_eq!(k, d_in, "bf16 linear of {d_in} inputs handed {k}");
    match split(x) {
        Prim::Flex(t) => {
            let t = t.to_contiguous();
            let values = t
                .as_slice::<f32>()
                .expect("a contiguous f32 Flex tensor has an f32 slice");
            let rows = values.len() / k.max(1);
            let mut out = vec![0f32; rows * d_out];
            bf16::linear_bf16(values, rows, &layer.weight, layer.bias.as_deref(), &mut out)
                .expect("the shapes were checked above");
            dims[D - 1] = d_out;
            let t = burn::backend::flex::FlexTensor::from_data(TensorData::new(out, dims));
            join(Prim::<B>::Flex(t))
        }
        _ => panic!(
            "bf16 linear layers run on the Flex backend only (the loader refuses bf16 elsewhere)"
        ),
    }
}

/// `[b, s, h]` → `[b, heads, s, h/heads]` (a view).
fn split_heads<B: Backend>(t: Tensor<B, 3>, heads: usize) -> Tensor<B, 4> {
    let [b, s, h] = t.dims();
    t.reshape([b, s, heads, h / heads]).swap_dims(1, 2)
}

/// `[b, heads, s, dh]` → `[b, s, heads·dh]`.
fn merge_heads<B: Backend>(t: Tensor<B, 4>) -> Tensor<B, 3> {
    let [b, heads, s, dh] = t.dims();
    t.swap_dims(1, 2).reshape([b, s, heads * dh])
}

/// Multi-head attention on `[batch, seq, hidden]` activations (`q`: `[b, sq, h]`, `k`, `v`:
/// `[b, sk, h]`, `heads` dividing `h`): per head `softmax(q_h·k_hᵀ/√dh + bias)`, dropout
/// `p`, `·v_h`, heads merged back into `[b, sq, h]`. `bias` is the additive mask as in
/// [`masked_softmax`].
///
/// On Flex the heads are strided views of the `[b, s, h]` buffers: one GEMM per (batch,
/// head) for the scores and one for the context, written straight into the head's columns,
/// with the fused softmax/dropout between; the backward runs the four GEMMs per head the
/// same way. Burn's composition instead copies every head split and merge (and their
/// gradients) through a generic strided iterator.
pub fn self_attention<B: Backend>(
    q: Tensor<B, 3>,
    k: Tensor<B, 3>,
    v: Tensor<B, 3>,
    heads: usize,
    bias: Option<Tensor<B, 4>>,
    p: f64,
) -> Tensor<B, 3> {
    let composed = |q, k, v, bias| {
        let split = |t| split_heads(t, heads);
        merge_heads(attention(split(q), split(k), split(v), bias, p))
    };
    if !is_fast::<B>() || p >= 1.0 {
        return composed(q, k, v, bias);
    }
    let bias_flex = match bias.clone().map(split) {
        Some(Prim::Flex(t)) => Some(t),
        Some(Prim::Ad(t)) => Some(t.primitive),
        Some(Prim::Other(_)) => return composed(q, k, v, bias),
        None => None,
    };
    let drop = (p > 0.0).then(|| DropSpec::new(p, next_key()));
    let (q0, k0, v0) = (q.clone(), k.clone(), v.clone());
    let done = match (split(q), split(k), split(v)) {
        (Prim::Flex(q), Prim::Flex(k), Prim::Flex(v)) => {
            flex::self_attention(&q, &k, &v, heads, bias_flex.as_ref(), drop).map(Prim::<B>::Flex)
        }
        (Prim::Ad(q), Prim::Ad(k), Prim::Ad(v)) => {
            flex::self_attention_ad(q, k, v, heads, bias_flex.as_ref(), drop).map(Prim::<B>::Ad)
        }
        _ => None,
    };
    match done {
        Some(p) => join(p),
        None => composed(q0, k0, v0, bias),
    }
}

/// UER-py's AdamW hyper-parameters for one step.
#[derive(Debug, Clone, Copy)]
pub struct AdamW {
    pub lr: f64,
    pub beta_1: f64,
    pub beta_2: f64,
    pub epsilon: f64,
    /// Weight decay, applied to the updated value (`u − u·lr·wd`); 0 for none.
    pub weight_decay: f64,
}

/// One step of UER-py's AdamW (no bias correction) on a parameter `p` with gradient `g`
/// and moments `(m, v)` (`None` on the first step): `m ← β₁m + (1−β₁)g`,
/// `v ← β₂v + (1−β₂)g²`, `u = p − lr·m/(√v + ε)`, then `u − u·lr·wd`. Returns
/// `(u, m, v)`. On Flex it is one pass over the four buffers instead of a dozen Burn ops,
/// with the same operations in the same f32 order (bit-identical results).
pub fn adamw<B: Backend, const D: usize>(
    p: Tensor<B, D>,
    g: Tensor<B, D>,
    moments: Option<(Tensor<B, D>, Tensor<B, D>)>,
    hp: AdamW,
) -> (Tensor<B, D>, Tensor<B, D>, Tensor<B, D>) {
    if enabled() && TypeId::of::<B>() == TypeId::of::<Flex>() {
        let step = cpu::AdamStep {
            lr: hp.lr as f32,
            beta_1: hp.beta_1 as f32,
            one_minus_beta_1: (1.0 - hp.beta_1) as f32,
            beta_2: hp.beta_2 as f32,
            one_minus_beta_2: (1.0 - hp.beta_2) as f32,
            epsilon: hp.epsilon as f32,
            decay: (hp.weight_decay != 0.0).then_some((hp.lr * hp.weight_decay) as f32),
        };
        let flex = |t: &Tensor<B, D>| match split(t.clone()) {
            Prim::Flex(t) => Some(t),
            _ => None,
        };
        // `Some(None)` on the first step; `None` when a moment is not on Flex.
        let fm = match &moments {
            None => Some(None),
            Some((m, v)) => flex(m).zip(flex(v)).map(Some),
        };
        if let (Some(fp), Some(fg), Some(fm)) = (flex(&p), flex(&g), fm)
            && let Some((u, m, v)) = flex::adamw(&fp, &fg, fm.as_ref().map(|(m, v)| (m, v)), step)
        {
            return (
                join(Prim::<B>::Flex(u)),
                join(Prim::<B>::Flex(m)),
                join(Prim::<B>::Flex(v)),
            );
        }
    }
    plain::adamw(p, g, moments, hp)
}

/// The embedding sum `word[ids] + pos[0..seq] (+ seg[segs])` of `[batch, seq]` ids and
/// segments, `[batch, seq, e]`. On Flex: one pass writing each token's row, and a backward
/// that scatter-adds the gradient rows into the tables (Burn's composition broadcasts the
/// position add through a generic strided iterator and zero-fills then scatters each table
/// separately).
pub fn embed<B: Backend>(
    word: Tensor<B, 2>,
    pos: Tensor<B, 2>,
    seg: Option<Tensor<B, 2>>,
    ids: Tensor<B, 2, Int>,
    segs: Tensor<B, 2, Int>,
) -> Tensor<B, 3> {
    if !is_fast::<B>() {
        return plain::embed(word, pos, seg, ids, segs);
    }
    let [batch, seq] = ids.dims();
    let host = |t: &Tensor<B, 2, Int>| -> Option<Vec<u32>> {
        let data = t.to_data().convert::<i64>();
        let v = data.as_slice::<i64>().ok()?;
        v.iter().map(|&i| u32::try_from(i).ok()).collect()
    };
    let ids_host = host(&ids);
    let segs_host = match seg {
        Some(_) => host(&segs).map(Some),
        None => Some(None),
    };
    let (Some(id_v), Some(seg_v)) = (ids_host, segs_host) else {
        return plain::embed(word, pos, seg, ids, segs);
    };
    let spec = flex::EmbedIds {
        ids: std::sync::Arc::new(id_v),
        segs: seg_v.map(std::sync::Arc::new),
        batch,
        seq,
    };
    let tables = (word.clone(), pos.clone(), seg.clone());
    let done = match (split(word), split(pos), seg.map(split)) {
        (Prim::Flex(w), Prim::Flex(p), None) => {
            flex::embed(&w, &p, None, &spec).map(Prim::<B>::Flex)
        }
        (Prim::Flex(w), Prim::Flex(p), Some(Prim::Flex(s))) => {
            flex::embed(&w, &p, Some(&s), &spec).map(Prim::<B>::Flex)
        }
        (Prim::Ad(w), Prim::Ad(p), None) => flex::embed_ad(w, p, None, &spec).map(Prim::<B>::Ad),
        (Prim::Ad(w), Prim::Ad(p), Some(Prim::Ad(s))) => {
            flex::embed_ad(w, p, Some(s), &spec).map(Prim::<B>::Ad)
        }
        _ => None,
    };
    match done {
        Some(p) => join(p),
        None => plain::embed(tables.0, tables.1, tables.2, ids, segs),
    }
}
