//! The fast paths on Burn's Flex tensors (`FlexTensor`, f32) and their `Autodiff<Flex>`
//! wrappers: each autodiff op is a custom backward step (`burn_autodiff::ops::Backward`)
//! whose state is what the backward kernel reads (the input, the probabilities, the dropout
//! mask, the LayerNorm row statistics) — nothing is recomputed and no mask is re-drawn.

use super::cpu::{self, BiasLayout, DropSpec, LnFormula, LnRow};
use burn::backend::Flex;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Shape, TensorData, TensorMetadata};
use std::sync::Arc;

/// `Autodiff<Flex>`'s float primitive.
pub type AdTensor = FloatTensor<burn::backend::Autodiff<Flex>>;

/// A contiguous copy (or the same buffer when already contiguous) and its shape.
fn contiguous(t: &FlexTensor) -> FlexTensor {
    t.to_contiguous()
}

/// A tensor the fused kernels cannot read: another dtype than f32, or an f32 tensor whose
/// values are not one contiguous run.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelInputError {
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl std::fmt::Display for KernelInputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.dtype == DType::F32 {
            "not contiguous"
        } else {
            "not f32"
        };
        write!(
            f,
            "the fused CPU kernels (src/kernels/flex.rs) were handed a {:?} tensor of shape {:?}, \
             {what}; they read contiguous f32 only, and the dispatch in src/kernels/mod.rs \
             (`flex::supported`) sends every other dtype to Burn's plain ops, so this is a bug in \
             uerzoo: please report it with the command that ran",
            self.dtype, self.shape
        )
    }
}

impl std::error::Error for KernelInputError {}

/// The f32 values of a contiguous tensor, or why there are none (another dtype, or a
/// strided layout).
fn values(t: &FlexTensor) -> Result<&[f32], KernelInputError> {
    t.as_slice::<f32>().ok_or_else(|| KernelInputError {
        dtype: t.dtype(),
        shape: t.shape().to_vec(),
    })
}

/// Why [`infallible`] holds.
const F32_BY_DISPATCH: &str = "the fused kernels are reached only through the dispatch in \
     src/kernels/mod.rs, which admits f32 tensors only (`flex::supported`), and every tensor is \
     made contiguous before its values are read";

/// The value of a [`values`] read (or of a helper that propagates one) where no error can be
/// returned: inside Burn's `Backward::backward` (the trait returns nothing), and in the op
/// entry points that `kernels/mod.rs` calls from Burn tensor ops (which return tensors, not
/// results). Every tensor reaching those is f32 by dispatch ([`F32_BY_DISPATCH`]), so the
/// error cannot occur there; were it to, this stops with what the tensor was rather than
/// running a kernel on no values.
#[track_caller]
fn infallible<T>(r: Result<T, KernelInputError>) -> T {
    r.expect(F32_BY_DISPATCH)
}

/// A fresh buffer of `n` values filled by `fill`.
///
/// # Safety
/// `fill` writes every value (the `cpu` kernels do: each parallel task initialises its own
/// chunk of the output).
unsafe fn filled<T: Copy>(n: usize, fill: impl FnOnce(cpu::Out<'_, T>)) -> Vec<T> {
    let mut v = cpu::uninit(n);
    fill(&mut v);
    // SAFETY: `fill` wrote every value (the caller's contract).
    unsafe { cpu::assume_init(v) }
}

fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// `out`, computed from `inputs` by a forward kernel, as an autodiff tensor whose backward
/// is `op` with `state` (recorded only when an input is tracked).
fn record<const N: usize, T: Backward<Flex, N>>(
    op: T,
    inputs: [&AdTensor; N],
    state: T::State,
    out: FlexTensor,
) -> AdTensor {
    match op
        .prepare::<NoCheckpointing>(inputs.map(|t| t.node.clone()))
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(state, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

/// Hands each computed gradient to its parent (the parents that are tracked).
fn register<const N: usize>(
    grads: &mut Gradients,
    parents: [Option<NodeId>; N],
    values: [Option<FlexTensor>; N],
) {
    for (node, g) in parents.into_iter().zip(values) {
        if let (Some(node), Some(g)) = (node, g) {
            grads.register::<Flex>(node, g);
        }
    }
}

/// Whether the fast path handles this tensor (f32 only; other dtypes take the plain path).
pub fn supported(t: &FlexTensor) -> bool {
    t.dtype() == DType::F32
}

// ---------------------------------------------------------------------------------------
// GELU
// ---------------------------------------------------------------------------------------

/// Which GELU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeluForm {
    Erf,
    Tanh,
}

pub fn gelu(x: &FlexTensor, form: GeluForm) -> FlexTensor {
    let x = contiguous(x);
    let xv = infallible(values(&x));
    // SAFETY: a `cpu` kernel, which writes every value of its output.
    let y = unsafe {
        filled(x.shape().num_elements(), |y| match form {
            GeluForm::Erf => cpu::gelu_erf(xv, y),
            GeluForm::Tanh => cpu::gelu_tanh(xv, y),
        })
    };
    tensor(y, x.shape())
}

fn gelu_grad(
    x: &FlexTensor,
    g: &FlexTensor,
    form: GeluForm,
) -> Result<FlexTensor, KernelInputError> {
    let (x, g) = (contiguous(x), contiguous(g));
    let (xv, gv) = (values(&x)?, values(&g)?);
    // SAFETY: a `cpu` kernel, which writes every value of its output.
    let out = unsafe {
        filled(x.shape().num_elements(), |out| match form {
            GeluForm::Erf => cpu::gelu_erf_grad(xv, gv, out),
            GeluForm::Tanh => cpu::gelu_tanh_grad(xv, gv, out),
        })
    };
    Ok(tensor(out, x.shape()))
}

#[derive(Debug)]
struct GeluBackward(GeluForm);

impl Backward<Flex, 1> for GeluBackward {
    type State = FlexTensor;
    fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let x = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
            infallible(gelu_grad(&x, &g, self.0))
        });
    }
}

pub fn gelu_ad(x: AdTensor, form: GeluForm) -> AdTensor {
    match GeluBackward(form)
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let input = contiguous(&x.primitive);
            let y = gelu(&input, form);
            prep.finish(input, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(gelu(&x.primitive, form)),
    }
}

// ---------------------------------------------------------------------------------------
// Dropout
// ---------------------------------------------------------------------------------------

/// Dropout in one pass; returns the output and the mask (1 = kept).
pub fn dropout(x: &FlexTensor, spec: DropSpec) -> (FlexTensor, Vec<u8>) {
    let x = contiguous(x);
    let n = x.shape().num_elements();
    let (mut y, mut mask) = (cpu::uninit(n), cpu::uninit(n));
    cpu::dropout(infallible(values(&x)), &mut y, &mut mask, spec);
    // SAFETY: `cpu::dropout` writes every value of both outputs.
    let (y, mask) = unsafe { (cpu::assume_init(y), cpu::assume_init(mask)) };
    (tensor(y, x.shape()), mask)
}

#[derive(Debug)]
struct DropoutBackward;

impl Backward<Flex, 1> for DropoutBackward {
    type State = (Arc<Vec<u8>>, f32);
    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (mask, scale) = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
            let g = contiguous(&g);
            let gv = infallible(values(&g));
            // SAFETY: a `cpu` kernel, which writes every value of its output.
            let out = unsafe { filled(mask.len(), |out| cpu::masked_scale(gv, &mask, scale, out)) };
            tensor(out, g.shape())
        });
    }
}

pub fn dropout_ad(x: AdTensor, spec: DropSpec) -> AdTensor {
    let (y, mask) = dropout(&x.primitive, spec);
    record(DropoutBackward, [&x], (Arc::new(mask), spec.keep_scale), y)
}

// ---------------------------------------------------------------------------------------
// Softmax with the additive mask (+ dropout)
// ---------------------------------------------------------------------------------------

/// The bias as a compact contiguous tensor (broadcast dims of stride 0 narrowed to 1) and
/// how rows of the `[b, h, q, k]` scores map onto it; `None` if it does not broadcast.
fn bias_rows(bias: &FlexTensor, scores: &[usize; 4]) -> Option<(FlexTensor, BiasLayout)> {
    let dims = bias.shape().dims::<4>();
    let mut b = bias.clone();
    for (d, &stride) in bias.layout().strides().iter().enumerate().take(3) {
        if stride == 0 && dims[d] > 1 {
            b = b.narrow(d, 0, 1);
        }
    }
    let bd = b.shape().dims::<4>();
    let fits = |i: usize| bd[i] == 1 || bd[i] == scores[i];
    if !(fits(0) && fits(1) && fits(2)) || bd[3] != scores[3] {
        return None;
    }
    let lay = BiasLayout {
        heads: scores[1],
        queries: scores[2],
        bb: bd[0],
        bh: bd[1],
        bq: bd[2],
    };
    Some((contiguous(&b), lay))
}

/// What the backward of [`masked_softmax_ad`] needs.
#[derive(Debug, Clone)]
struct SoftmaxState {
    probs: FlexTensor,
    mask: Option<(Arc<Vec<u8>>, f32)>,
    scale: f32,
}

/// `softmax(scores·scale + bias)` over the last dim, then dropout; returns
/// (output, undropped probabilities, mask). `None` when the bias does not broadcast.
#[allow(clippy::type_complexity)]
pub fn masked_softmax(
    scores: &FlexTensor,
    bias: Option<&FlexTensor>,
    scale: f32,
    drop: Option<DropSpec>,
) -> Option<(FlexTensor, FlexTensor, Option<Vec<u8>>)> {
    let dims = scores.shape().dims::<4>();
    let bias = match bias {
        Some(b) => Some(bias_rows(b, &dims)?),
        None => None,
    };
    let s = contiguous(scores);
    let n = s.shape().num_elements();
    let mut p = cpu::uninit(n);
    let bias_ref = bias.as_ref().map(|(b, lay)| (infallible(values(b)), *lay));
    let sv = infallible(values(&s));
    match drop {
        None => {
            cpu::masked_softmax(sv, dims[3], bias_ref, scale, &mut p, None);
            // SAFETY: `cpu::masked_softmax` writes every value of its outputs.
            let p = tensor(unsafe { cpu::assume_init(p) }, s.shape());
            Some((p.clone(), p, None))
        }
        Some(spec) => {
            let (mut out, mut mask) = (cpu::uninit(n), cpu::uninit(n));
            cpu::masked_softmax(
                sv,
                dims[3],
                bias_ref,
                scale,
                &mut p,
                Some((spec, &mut out, &mut mask)),
            );
            // SAFETY: `cpu::masked_softmax` writes every value of its outputs.
            let (p, out, mask) = unsafe {
                (
                    cpu::assume_init(p),
                    cpu::assume_init(out),
                    cpu::assume_init(mask),
                )
            };
            Some((tensor(out, s.shape()), tensor(p, s.shape()), Some(mask)))
        }
    }
}

#[derive(Debug)]
struct SoftmaxBackward;

impl Backward<Flex, 1> for SoftmaxBackward {
    type State = SoftmaxState;
    fn backward(self, ops: Ops<SoftmaxState, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let st = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
            let g = contiguous(&g);
            let k = g.shape().dims::<4>()[3];
            let mask = st.mask.as_ref().map(|(m, s)| (m.as_slice(), *s));
            let (pv, gv) = (infallible(values(&st.probs)), infallible(values(&g)));
            // SAFETY: a `cpu` kernel, which writes every value of its output.
            let out = unsafe {
                filled(g.shape().num_elements(), |out| {
                    cpu::masked_softmax_grad(pv, gv, k, mask, st.scale, out)
                })
            };
            tensor(out, g.shape())
        });
    }
}

/// [`masked_softmax`] on `Autodiff<Flex>`: the gradient flows to `scores` only (the mask is a
/// constant). `None` when the bias does not broadcast.
pub fn masked_softmax_ad(
    scores: AdTensor,
    bias: Option<&FlexTensor>,
    scale: f32,
    drop: Option<DropSpec>,
) -> Option<AdTensor> {
    let (out, probs, mask) = masked_softmax(&scores.primitive, bias, scale, drop)?;
    Some(
        match SoftmaxBackward
            .prepare::<NoCheckpointing>([scores.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let mask = mask.map(|m| (Arc::new(m), drop.map_or(1.0, |d| d.keep_scale)));
                prep.finish(SoftmaxState { probs, mask, scale }, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        },
    )
}

// ---------------------------------------------------------------------------------------
// LayerNorm
// ---------------------------------------------------------------------------------------

/// LayerNorm over the last dim; returns the output and the row statistics.
pub fn layer_norm(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    formula: LnFormula,
    eps: f32,
) -> (FlexTensor, Vec<LnRow>) {
    let (x, gamma, beta) = (contiguous(x), contiguous(gamma), contiguous(beta));
    let n = gamma.shape().num_elements();
    let total = x.shape().num_elements();
    let mut stats = vec![LnRow::default(); total / n.max(1)];
    let (xv, gv, bv) = (
        infallible(values(&x)),
        infallible(values(&gamma)),
        infallible(values(&beta)),
    );
    // SAFETY: a `cpu` kernel, which writes every value of its output.
    let y = unsafe {
        filled(total, |y| {
            cpu::layer_norm(xv, gv, bv, formula, eps, y, &mut stats)
        })
    };
    (tensor(y, x.shape()), stats)
}

#[derive(Debug, Clone)]
struct LnState {
    x: FlexTensor,
    gamma: FlexTensor,
    stats: Arc<Vec<LnRow>>,
    formula: LnFormula,
}

#[derive(Debug)]
struct LnBackward;

impl Backward<Flex, 3> for LnBackward {
    type State = LnState;
    fn backward(self, ops: Ops<LnState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let st = ops.state;
        let dy = contiguous(&grads.consume::<Flex>(&ops.node));
        let mut dx = cpu::uninit(dy.shape().num_elements());
        let (dg, db) = cpu::layer_norm_grad(
            infallible(values(&st.x)),
            infallible(values(&dy)),
            infallible(values(&st.gamma)),
            st.formula,
            &st.stats,
            &mut dx,
        );
        // SAFETY: `cpu::layer_norm_grad` writes every value of `dx`.
        let dx = unsafe { cpu::assume_init(dx) };
        let [px, pg, pb] = ops.parents;
        if let Some(node) = px {
            grads.register::<Flex>(node.id, tensor(dx, dy.shape()));
        }
        if let Some(node) = pg {
            grads.register::<Flex>(node.id, tensor(dg, st.gamma.shape()));
        }
        if let Some(node) = pb {
            grads.register::<Flex>(node.id, tensor(db, st.gamma.shape()));
        }
    }
}

pub fn layer_norm_ad(
    x: AdTensor,
    gamma: AdTensor,
    beta: AdTensor,
    formula: LnFormula,
    eps: f32,
) -> AdTensor {
    let (y, stats) = layer_norm(
        &x.primitive,
        &gamma.primitive,
        &beta.primitive,
        formula,
        eps,
    );
    let nodes = [x.node.clone(), gamma.node.clone(), beta.node.clone()];
    match LnBackward
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let state = LnState {
                x: contiguous(&x.primitive),
                gamma: contiguous(&gamma.primitive),
                stats: Arc::new(stats),
                formula,
            };
            prep.finish(state, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

// ---------------------------------------------------------------------------------------
// Cross-entropy
// ---------------------------------------------------------------------------------------

/// Mean cross-entropy of `[n, k]` logits against `targets` (each `< k`): returns the loss
/// (`[1]`), the number of rows whose argmax is the target, the contiguous logits and the
/// per-row log-sum-exp (what the backward reads).
pub fn cross_entropy(
    logits: &FlexTensor,
    targets: &[u32],
) -> (FlexTensor, usize, FlexTensor, Vec<f32>) {
    let x = contiguous(logits);
    let [n, k] = x.shape().dims::<2>();
    let (mut lse, mut arg) = (vec![0f32; n], vec![0u32; n]);
    let v = infallible(values(&x));
    cpu::log_sum_exp_rows(v, k, &mut lse, &mut arg);
    let mut total = 0f64;
    let mut hits = 0usize;
    for (r, &t) in targets.iter().enumerate() {
        total += f64::from(lse[r] - v[r * k + t as usize]);
        hits += usize::from(arg[r] == t);
    }
    let loss = (total / n.max(1) as f64) as f32;
    (tensor(vec![loss], Shape::new([1])), hits, x, lse)
}

#[derive(Debug, Clone)]
struct CeState {
    logits: FlexTensor,
    lse: Arc<Vec<f32>>,
    targets: Arc<Vec<u32>>,
}

#[derive(Debug)]
struct CeBackward;

impl Backward<Flex, 1> for CeBackward {
    type State = CeState;
    fn backward(self, ops: Ops<CeState, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let st = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| {
            let g = infallible(values(&contiguous(&g)))
                .first()
                .copied()
                .unwrap_or(0.0);
            let [n, k] = st.logits.shape().dims::<2>();
            let scale = g / n.max(1) as f32;
            let lv = infallible(values(&st.logits));
            // SAFETY: a `cpu` kernel, which writes every value of its output.
            let out = unsafe {
                filled(n * k, |out| {
                    cpu::cross_entropy_grad(lv, k, &st.lse, &st.targets, scale, out)
                })
            };
            tensor(out, st.logits.shape())
        });
    }
}

/// [`cross_entropy`] on `Autodiff<Flex>`: the gradient flows to the logits; the hit count
/// is a constant.
pub fn cross_entropy_ad(logits: AdTensor, targets: &[u32]) -> (AdTensor, usize) {
    let (loss, hits, x, lse) = cross_entropy(&logits.primitive, targets);
    let loss = match CeBackward
        .prepare::<NoCheckpointing>([logits.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let state = CeState {
                logits: x,
                lse: Arc::new(lse),
                targets: Arc::new(targets.to_vec()),
            };
            prep.finish(state, loss)
        }
        OpsKind::UnTracked(prep) => prep.finish(loss),
    };
    (loss, hits)
}

// ---------------------------------------------------------------------------------------
// Linear
// ---------------------------------------------------------------------------------------

/// `x·W + b` over the last dimension of `x` (`W`: `[in, out]`, Burn's layout), as one GEMM
/// over all leading dimensions with the bias written first and accumulated into.
///
/// A few rows (1..=[`uerzoo_kernels::MAX_ROWS`], a decode step) against a weight kept in
/// torch's `[out, in]` layout go to [`uerzoo_kernels::linear_rows`] instead: the GEMM
/// reads that weight strided for more than one row, and the kernel computes each row the
/// same way alone or in a batch (batched generation gives each sequence the values of a
/// run alone).
pub fn linear(x: &FlexTensor, w: &FlexTensor, b: Option<&FlexTensor>) -> FlexTensor {
    if let Some(y) = infallible(linear_few_rows(x, w, b)) {
        return y;
    }
    infallible(linear_keep(x, w, b)).0
}

/// The row-major `[out, in]` buffer behind a weight seen as its `[in, out]` transpose.
fn transposed_weight(w: &FlexTensor) -> Option<(&[f32], usize, usize)> {
    let (d_in, d_out, rs, cs) = w.layout().as_2d_strides()?;
    if w.dtype() != DType::F32 || rs != 1 || cs != d_in as isize || d_in < 2 {
        return None;
    }
    let data = w.storage::<f32>().get(w.layout().start_offset()..)?;
    Some((data.get(..d_in * d_out)?, d_in, d_out))
}

/// [`linear`] by [`uerzoo_kernels::linear_rows`] for any number of rows up to
/// [`uerzoo_kernels::ROW_LIMIT`], each row with the bits it gets alone (several prompts
/// prefilled in one forward); `None` when `w` is not the transposed view of an `[out, in]`
/// buffer or the rows are too many.
pub fn linear_rowwise(
    x: &FlexTensor,
    w: &FlexTensor,
    b: Option<&FlexTensor>,
) -> Option<FlexTensor> {
    infallible(linear_rows_upto(x, w, b, uerzoo_kernels::ROW_LIMIT))
}

/// [`linear`] by [`uerzoo_kernels::linear_rows`], when `x` has at most
/// [`uerzoo_kernels::MAX_ROWS`] rows and `w` is the transposed view of an `[out, in]`
/// buffer; `None` otherwise.
fn linear_few_rows(
    x: &FlexTensor,
    w: &FlexTensor,
    b: Option<&FlexTensor>,
) -> Result<Option<FlexTensor>, KernelInputError> {
    linear_rows_upto(x, w, b, uerzoo_kernels::MAX_ROWS)
}

/// [`uerzoo_kernels::linear_rows`] on up to `most` rows; `None` where it does not apply.
fn linear_rows_upto(
    x: &FlexTensor,
    w: &FlexTensor,
    b: Option<&FlexTensor>,
    most: usize,
) -> Result<Option<FlexTensor>, KernelInputError> {
    let Some((wt, d_in, d_out)) = transposed_weight(w) else {
        return Ok(None);
    };
    let rows = x.shape().num_elements() / d_in;
    if !(1..=most).contains(&rows) {
        return Ok(None);
    }
    let x = contiguous(x);
    let b = b.map(contiguous);
    let mut y = vec![0f32; rows * d_out];
    let bv = b.as_ref().map(values).transpose()?;
    if uerzoo_kernels::linear_rows(values(&x)?, rows, wt, d_in, d_out, bv, &mut y).is_err() {
        return Ok(None);
    }
    let mut dims = x.shape().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = d_out;
    }
    Ok(Some(tensor(y, Shape::from(dims))))
}

/// A 2-D f32 tensor as a GEMM operand without copying: row-major, or the transpose of a
/// row-major buffer (a linear weight kept in torch's `[out, in]` layout and seen as
/// `[in, out]`), at any start offset. `None` for other layouts (the caller copies them).
fn matrix_view(t: &FlexTensor) -> Option<cpu::MatRef<'_>> {
    let (rows, cols, rs, cs) = t.layout().as_2d_strides()?;
    if t.dtype() != DType::F32 || rs < 0 || cs < 0 {
        return None;
    }
    let (rs, cs) = (rs as usize, cs as usize);
    let row_major = cs == 1 && (rs == cols || rows <= 1);
    let col_major = rs == 1 && (cs == rows || cols <= 1);
    if !(row_major || col_major) {
        return None;
    }
    let data = t.storage::<f32>().get(t.layout().start_offset()..)?;
    let view = if row_major {
        cpu::MatRef::row_major(data, rows, cols)
    } else {
        cpu::MatRef::row_major(data, cols, rows).t()
    };
    (rows * cols <= data.len()).then_some(view)
}

/// A linear weight the GEMM can read in place: the same tensor when [`matrix_view`] takes
/// it, else a contiguous copy.
fn weight_operand(w: &FlexTensor) -> FlexTensor {
    if matrix_view(w).is_some() {
        w.clone()
    } else {
        contiguous(w)
    }
}

/// The view of a weight [`weight_operand`] returned.
#[track_caller]
fn weight_view(w: &FlexTensor) -> cpu::MatRef<'_> {
    match matrix_view(w) {
        Some(v) => v,
        None => panic!(
            "fused linear handed a weight of layout {:?} (a bug in uerzoo's kernels::flex)",
            w.layout()
        ),
    }
}

/// [`linear`], also returning the contiguous input and the weight it multiplied (what the
/// backward keeps), so neither is copied twice. The weight is read in place when it is
/// row-major `[in, out]` or the transposed view of a `[out, in]` buffer.
fn linear_keep(
    x: &FlexTensor,
    w: &FlexTensor,
    b: Option<&FlexTensor>,
) -> Result<(FlexTensor, LinearState), KernelInputError> {
    let (x, w) = (contiguous(x), weight_operand(w));
    let [d_in, d_out] = w.shape().dims::<2>();
    let rows = x.shape().num_elements() / d_in.max(1);
    let (xm, wm) = (
        cpu::MatRef::row_major(values(&x)?, rows, d_in),
        weight_view(&w),
    );
    let out = match b {
        Some(b) => {
            let mut out = cpu::repeat_rows(values(&contiguous(b))?, rows);
            cpu::gemm(&mut out, true, xm, wm);
            out
        }
        None => cpu::matmul(xm, wm),
    };
    let mut dims = x.shape().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = d_out;
    }
    Ok((tensor(out, Shape::from(dims)), LinearState { x, w }))
}

/// Whether a [`linear`] call is well-formed (the fast path's precondition).
pub fn linear_fits(x: &FlexTensor, w: &FlexTensor, b: Option<&FlexTensor>) -> bool {
    let ws = w.shape();
    let xs = x.shape();
    ws.num_dims() == 2
        && xs.num_dims() >= 1
        && xs[xs.num_dims() - 1] == ws[0]
        && b.is_none_or(|b| b.shape().num_dims() == 1 && b.shape()[0] == ws[1] && supported(b))
        && supported(x)
        && supported(w)
}

#[derive(Debug, Clone)]
struct LinearState {
    x: FlexTensor,
    w: FlexTensor,
}

/// The gradients of `y = x·W + b` from `dy`: (dx, dW, db), each only when asked for.
fn linear_grads(
    st: &LinearState,
    dy: &FlexTensor,
    want: [bool; 3],
) -> Result<[Option<FlexTensor>; 3], KernelInputError> {
    let dy = contiguous(dy);
    let [d_in, d_out] = st.w.shape().dims::<2>();
    let rows = dy.shape().num_elements() / d_out.max(1);
    let dyv = values(&dy)?;
    let g = cpu::MatRef::row_major(dyv, rows, d_out);
    let dx = want[0].then(|| tensor(cpu::matmul(g, weight_view(&st.w).t()), st.x.shape()));
    let dw = if want[1] {
        let x = cpu::MatRef::row_major(values(&st.x)?, rows, d_in);
        Some(tensor(cpu::matmul(x.t(), g), st.w.shape()))
    } else {
        None
    };
    let db = want[2].then(|| tensor(cpu::col_sums(dyv, d_out), Shape::new([d_out])));
    Ok([dx, dw, db])
}

/// The backward of [`linear_ad`]: parents `x`, `W` (and `b` when N = 3).
#[derive(Debug)]
struct LinearBackward;

impl<const N: usize> Backward<Flex, N> for LinearBackward {
    type State = LinearState;
    fn backward(self, ops: Ops<LinearState, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        let parents = ops.parents.map(|p| p.map(|n| n.id));
        let want = std::array::from_fn(|i| parents.get(i).is_some_and(Option::is_some));
        let mut got = infallible(linear_grads(&ops.state, &dy, want)).into_iter();
        register(
            grads,
            parents,
            std::array::from_fn(|_| got.next().flatten()),
        );
    }
}

/// [`linear`] on `Autodiff<Flex>`: gradients to `x`, `W` and `b` by two GEMMs on strided
/// views (no transposed copies, no per-batch weight gradients summed afterwards) and one
/// column sum.
pub fn linear_ad(x: AdTensor, w: AdTensor, b: Option<AdTensor>) -> AdTensor {
    let (y, state) = infallible(linear_keep(
        &x.primitive,
        &w.primitive,
        b.as_ref().map(|b| &b.primitive),
    ));
    match &b {
        Some(b) => record(LinearBackward, [&x, &w, b], state, y),
        None => record(LinearBackward, [&x, &w], state, y),
    }
}

// ---------------------------------------------------------------------------------------
// Self-attention on [batch, seq, hidden] activations
// ---------------------------------------------------------------------------------------

/// Sizes of one fused attention call: `q` is `[b, sq, h]`, `k` and `v` are `[b, sk, h]`,
/// split into `heads` heads of `dh = h / heads` columns.
#[derive(Debug, Clone, Copy)]
struct AttnDims {
    b: usize,
    sq: usize,
    sk: usize,
    h: usize,
    heads: usize,
    dh: usize,
}

impl AttnDims {
    fn new(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor, heads: usize) -> Option<Self> {
        let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
        if qs.num_dims() != 3 || ks.num_dims() != 3 || vs.num_dims() != 3 {
            return None;
        }
        let [b, sq, h] = qs.dims::<3>();
        let [kb, sk, kh] = ks.dims::<3>();
        let ok = heads > 0
            && h % heads == 0
            && kb == b
            && kh == h
            && vs.dims::<3>() == [b, sk, h]
            && supported(q)
            && supported(k)
            && supported(v);
        ok.then_some(AttnDims {
            b,
            sq,
            sk,
            h,
            heads,
            dh: h / heads,
        })
    }

    /// Values in one `[sq, sk]` score matrix.
    fn pair(&self) -> usize {
        self.sq * self.sk
    }
}

/// Head `hi`'s columns of batch row `bi` of a `[b, s, h]` activation: an `s × dh` view.
fn head<'a>(x: &'a [f32], d: &AttnDims, s: usize, bi: usize, hi: usize) -> cpu::MatRef<'a> {
    cpu::MatRef::block(
        &x[bi * s * d.h..(bi + 1) * s * d.h],
        s,
        d.h,
        hi * d.dh,
        d.dh,
    )
}

/// One `[sq, sk]` matrix of a `[b, heads, sq, sk]` buffer.
fn pair_of<'a>(x: &'a [f32], d: &AttnDims, pair: usize) -> cpu::MatRef<'a> {
    cpu::MatRef::row_major(&x[pair * d.pair()..(pair + 1) * d.pair()], d.sq, d.sk)
}

/// Dropped probabilities, the mask (1 = kept) and `1/(1−p)`.
#[derive(Debug, Clone)]
struct Dropped(Arc<Vec<f32>>, Arc<Vec<u8>>, f32);

/// What the fused attention's backward reads.
#[derive(Debug, Clone)]
struct AttnState {
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    /// Softmax probabilities before dropout, `[b, heads, sq, sk]`.
    probs: Arc<Vec<f32>>,
    /// After dropout (what multiplied `v`), when dropout was on.
    dropped: Option<Dropped>,
    dims: AttnDims,
    scale: f32,
}

/// The forward: (context `[b, sq, h]`, probabilities, dropped probabilities + mask).
#[allow(clippy::type_complexity)]
fn attn_forward(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    d: AttnDims,
    bias: Option<&FlexTensor>,
    drop: Option<DropSpec>,
) -> Result<Option<(FlexTensor, Vec<f32>, Option<(Vec<f32>, Vec<u8>)>)>, KernelInputError> {
    use rayon::prelude::*;
    let bias = match bias {
        Some(b) => match bias_rows(b, &[d.b, d.heads, d.sq, d.sk]) {
            Some(rows) => Some(rows),
            None => return Ok(None),
        },
        None => None,
    };
    let (q, k, v) = (contiguous(q), contiguous(k), contiguous(v));
    let (qv, kv, vv) = (values(&q)?, values(&k)?, values(&v)?);
    let scale = 1.0 / (d.dh as f32).sqrt();
    let n = d.b * d.heads * d.pair();
    // Scores, one GEMM per (batch, head) on strided views of q and k.
    let mut scores = cpu::uninit(n);
    scores
        .par_chunks_mut(d.pair().max(1))
        .enumerate()
        .for_each(|(pair, s)| {
            let (bi, hi) = (pair / d.heads, pair % d.heads);
            let qh = head(qv, &d, d.sq, bi, hi);
            let kh = head(kv, &d, d.sk, bi, hi);
            cpu::gemm_strided_to(s, d.sk, qh, kh.t(), false);
        });
    // SAFETY: each chunk is one (batch, head) pair's sq×sk block, written whole above.
    let scores = unsafe { cpu::assume_init(scores) };
    let bias_ref = match &bias {
        Some((b, lay)) => Some((values(b)?, *lay)),
        None => None,
    };
    let mut probs = cpu::uninit(n);
    let dropped = match drop {
        None => {
            cpu::masked_softmax(&scores, d.sk, bias_ref, scale, &mut probs, None);
            None
        }
        Some(spec) => {
            let (mut out, mut mask) = (cpu::uninit(n), cpu::uninit(n));
            cpu::masked_softmax(
                &scores,
                d.sk,
                bias_ref,
                scale,
                &mut probs,
                Some((spec, &mut out, &mut mask)),
            );
            // SAFETY: `cpu::masked_softmax` writes every value of its outputs.
            Some(unsafe { (cpu::assume_init(out), cpu::assume_init(mask)) })
        }
    };
    // SAFETY: as above.
    let probs = unsafe { cpu::assume_init(probs) };
    let p = dropped.as_ref().map_or(&probs, |(pd, _)| pd);
    // Context: P·v per (batch, head), written straight into the head's columns.
    let mut ctx = cpu::uninit(d.b * d.sq * d.h);
    if d.b >= rayon::current_num_threads() {
        ctx.par_chunks_mut((d.sq * d.h).max(1))
            .enumerate()
            .for_each(|(bi, out)| {
                for hi in 0..d.heads {
                    let vh = head(vv, &d, d.sk, bi, hi);
                    let ph = pair_of(p, &d, bi * d.heads + hi);
                    cpu::gemm_strided_to(&mut out[hi * d.dh..], d.h, ph, vh, false);
                }
            });
    } else {
        // Few batch rows: one task per (batch, head) into a head-major buffer, then rows
        // copied into place.
        let mut tmp = cpu::uninit(d.b * d.heads * d.sq * d.dh);
        tmp.par_chunks_mut((d.sq * d.dh).max(1))
            .enumerate()
            .for_each(|(pair, out)| {
                let (bi, hi) = (pair / d.heads, pair % d.heads);
                let vh = head(vv, &d, d.sk, bi, hi);
                cpu::gemm_strided_to(out, d.dh, pair_of(p, &d, pair), vh, false);
            });
        // SAFETY: each chunk is one pair's sq×dh block, written whole above.
        let tmp = unsafe { cpu::assume_init(tmp) };
        for (pair, block) in tmp.chunks(d.sq * d.dh).enumerate() {
            let (bi, hi) = (pair / d.heads, pair % d.heads);
            for (r, row) in block.chunks(d.dh).enumerate() {
                let at = (bi * d.sq + r) * d.h + hi * d.dh;
                for (o, &v) in ctx[at..at + d.dh].iter_mut().zip(row) {
                    *o = std::mem::MaybeUninit::new(v);
                }
            }
        }
    }
    // SAFETY: every (batch, row) has each head's dh columns written (heads·dh = h).
    let ctx = tensor(
        unsafe { cpu::assume_init(ctx) },
        Shape::new([d.b, d.sq, d.h]),
    );
    Ok(Some((ctx, probs, dropped)))
}

/// The backward: (dq, dk, dv) from the context's gradient.
fn attn_backward(st: &AttnState, dctx: &FlexTensor) -> Result<[FlexTensor; 3], KernelInputError> {
    use rayon::prelude::*;
    let d = st.dims;
    let g = contiguous(dctx);
    let gv = values(&g)?;
    let (qv, kv, vv) = (values(&st.q)?, values(&st.k)?, values(&st.v)?);
    let n = d.b * d.heads * d.pair();
    // dP = dctx·vᵀ per (batch, head).
    let mut dp = cpu::uninit(n);
    dp.par_chunks_mut(d.pair().max(1))
        .enumerate()
        .for_each(|(pair, out)| {
            let (bi, hi) = (pair / d.heads, pair % d.heads);
            let gh = head(gv, &d, d.sq, bi, hi);
            let vh = head(vv, &d, d.sk, bi, hi);
            cpu::gemm_strided_to(out, d.sk, gh, vh.t(), false);
        });
    // SAFETY: each chunk is one pair's sq×sk block, written whole above.
    let dp = unsafe { cpu::assume_init(dp) };
    // dS = scale·P⊙(dP·mask·keep − Σ …), through the dropout mask.
    let mask = st
        .dropped
        .as_ref()
        .map(|Dropped(_, m, s)| (m.as_slice(), *s));
    // SAFETY: a `cpu` kernel, which writes every value of its output.
    let ds = unsafe {
        filled(n, |ds| {
            cpu::masked_softmax_grad(&st.probs, &dp, d.sk, mask, st.scale, ds)
        })
    };
    drop(dp);
    let p: &[f32] = st
        .dropped
        .as_ref()
        .map_or(&st.probs, |Dropped(pd, _, _)| pd);
    let (mut dq, mut dk, mut dv) = (
        cpu::uninit(d.b * d.sq * d.h),
        cpu::uninit(d.b * d.sk * d.h),
        cpu::uninit(d.b * d.sk * d.h),
    );
    let (qs, ks) = ((d.sq * d.h).max(1), (d.sk * d.h).max(1));
    dq.par_chunks_mut(qs)
        .zip(dk.par_chunks_mut(ks).zip(dv.par_chunks_mut(ks)))
        .enumerate()
        .for_each(|(bi, (dq, (dk, dv)))| {
            for hi in 0..d.heads {
                let pair = bi * d.heads + hi;
                let (ph, sh) = (pair_of(p, &d, pair), pair_of(&ds, &d, pair));
                let gh = head(gv, &d, d.sq, bi, hi);
                let off = hi * d.dh;
                // dv = Pᵀ·dctx, dq = dS·k, dk = dSᵀ·q
                cpu::gemm_strided_to(&mut dv[off..], d.h, ph.t(), gh, false);
                let kh = head(kv, &d, d.sk, bi, hi);
                cpu::gemm_strided_to(&mut dq[off..], d.h, sh, kh, false);
                let qh = head(qv, &d, d.sq, bi, hi);
                cpu::gemm_strided_to(&mut dk[off..], d.h, sh.t(), qh, false);
            }
        });
    // SAFETY: every (batch, row) of dq, dk and dv has each head's dh columns written.
    let (dq, dk, dv) = unsafe {
        (
            cpu::assume_init(dq),
            cpu::assume_init(dk),
            cpu::assume_init(dv),
        )
    };
    Ok([
        tensor(dq, st.q.shape()),
        tensor(dk, st.k.shape()),
        tensor(dv, st.v.shape()),
    ])
}

/// Multi-head attention over `[b, s, h]` activations (no head split/merge copies):
/// `softmax(q_h·k_hᵀ/√dh + bias)` → dropout → `·v_h` per head, written into the head's
/// columns of `[b, sq, h]`. `None` when the shapes or the bias do not fit.
pub fn self_attention(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    heads: usize,
    bias: Option<&FlexTensor>,
    drop: Option<DropSpec>,
) -> Option<FlexTensor> {
    let d = AttnDims::new(q, k, v, heads)?;
    infallible(attn_forward(q, k, v, d, bias, drop)).map(|(ctx, _, _)| ctx)
}

#[derive(Debug)]
struct AttnBackward;

impl Backward<Flex, 3> for AttnBackward {
    type State = AttnState;
    fn backward(self, ops: Ops<AttnState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dctx = grads.consume::<Flex>(&ops.node);
        let parents = ops.parents.map(|p| p.map(|n| n.id));
        let got = infallible(attn_backward(&ops.state, &dctx));
        register(grads, parents, got.map(Some));
    }
}

/// [`self_attention`] on `Autodiff<Flex>`: gradients to `q`, `k` and `v` (the bias is a
/// constant), from the saved probabilities and dropout mask.
pub fn self_attention_ad(
    q: AdTensor,
    k: AdTensor,
    v: AdTensor,
    heads: usize,
    bias: Option<&FlexTensor>,
    drop: Option<DropSpec>,
) -> Option<AdTensor> {
    let d = AttnDims::new(&q.primitive, &k.primitive, &v.primitive, heads)?;
    let (ctx, probs, dropped) = infallible(attn_forward(
        &q.primitive,
        &k.primitive,
        &v.primitive,
        d,
        bias,
        drop,
    ))?;
    let nodes = [q.node.clone(), k.node.clone(), v.node.clone()];
    Some(
        match AttnBackward
            .prepare::<NoCheckpointing>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = AttnState {
                    q: contiguous(&q.primitive),
                    k: contiguous(&k.primitive),
                    v: contiguous(&v.primitive),
                    probs: Arc::new(probs),
                    dropped: dropped.map(|(pd, m)| {
                        let keep = drop.map_or(1.0, |s| s.keep_scale);
                        Dropped(Arc::new(pd), Arc::new(m), keep)
                    }),
                    dims: d,
                    scale: 1.0 / (d.dh as f32).sqrt(),
                };
                prep.finish(state, ctx)
            }
            OpsKind::UnTracked(prep) => prep.finish(ctx),
        },
    )
}

// ---------------------------------------------------------------------------------------
// AdamW
// ---------------------------------------------------------------------------------------

/// One AdamW step on a parameter (see [`cpu::adamw`]); returns (parameter, m, v). `None`
/// when the shapes disagree.
pub fn adamw(
    p: &FlexTensor,
    g: &FlexTensor,
    moments: Option<(&FlexTensor, &FlexTensor)>,
    hp: cpu::AdamStep,
) -> Option<(FlexTensor, FlexTensor, FlexTensor)> {
    let shape = p.shape();
    let same = |t: &FlexTensor| t.shape() == shape && supported(t);
    if !same(p) || !same(g) || moments.is_some_and(|(m, v)| !same(m) || !same(v)) {
        return None;
    }
    let (p, g) = (contiguous(p), contiguous(g));
    let moments = moments.map(|(m, v)| (contiguous(m), contiguous(v)));
    let n = shape.num_elements();
    let (mut po, mut mo, mut vo) = (cpu::uninit(n), cpu::uninit(n), cpu::uninit(n));
    cpu::adamw(
        infallible(values(&p)),
        infallible(values(&g)),
        moments.as_ref().map(|(m, _)| infallible(values(m))),
        moments.as_ref().map(|(_, v)| infallible(values(v))),
        hp,
        &mut po,
        &mut mo,
        &mut vo,
    );
    // SAFETY: `cpu::adamw` writes every value of its three outputs.
    let (po, mo, vo) = unsafe {
        (
            cpu::assume_init(po),
            cpu::assume_init(mo),
            cpu::assume_init(vo),
        )
    };
    Some((
        tensor(po, shape.clone()),
        tensor(mo, shape.clone()),
        tensor(vo, shape),
    ))
}

// ---------------------------------------------------------------------------------------
// Embeddings
// ---------------------------------------------------------------------------------------

/// The token ids of one embedding call, checked against the tables.
#[derive(Debug, Clone)]
pub struct EmbedIds {
    pub ids: Arc<Vec<u32>>,
    pub segs: Option<Arc<Vec<u32>>>,
    pub batch: usize,
    pub seq: usize,
}

/// `word[ids] + pos[0..seq] (+ seg[segs])` as `[batch, seq, e]`; `None` when a table's
/// shape or an id does not fit.
pub fn embed(
    word: &FlexTensor,
    pos: &FlexTensor,
    seg: Option<&FlexTensor>,
    ids: &EmbedIds,
) -> Option<FlexTensor> {
    let [v, e] = dims2(word)?;
    let [p, pe] = dims2(pos)?;
    let seg_rows = match seg {
        Some(s) => {
            let [n, se] = dims2(s)?;
            (se == e).then_some(n)?
        }
        None => 0,
    };
    let fits = pe == e
        && ids.seq <= p
        && ids.ids.len() == ids.batch * ids.seq
        && ids.ids.iter().all(|&i| (i as usize) < v)
        && seg.is_some() == ids.segs.is_some()
        && ids
            .segs
            .as_ref()
            .is_none_or(|s| s.len() == ids.ids.len() && s.iter().all(|&i| (i as usize) < seg_rows));
    if !fits {
        return None;
    }
    let (word, pos) = (contiguous(word), contiguous(pos));
    let seg = seg.map(contiguous);
    let n = ids.ids.len() * e;
    let (wv, pv) = (infallible(values(&word)), infallible(values(&pos)));
    let sv = seg.as_ref().map(|t| infallible(values(t)));
    // SAFETY: a `cpu` kernel, which writes every value of its output.
    let out = unsafe {
        filled(n, |out| {
            cpu::embed(
                wv,
                pv,
                sv.zip(ids.segs.as_ref()).map(|(t, s)| (t, s.as_slice())),
                &ids.ids,
                ids.seq.max(1),
                e,
                out,
            )
        })
    };
    Some(tensor(out, Shape::new([ids.batch, ids.seq, e])))
}

fn dims2(t: &FlexTensor) -> Option<[usize; 2]> {
    (t.shape().num_dims() == 2 && supported(t)).then(|| t.shape().dims::<2>())
}

#[derive(Debug, Clone)]
struct EmbedState {
    ids: EmbedIds,
    /// Rows of the word, position and segment tables.
    rows: [usize; 3],
}

/// (dword, dpos, dseg) for the asked-for tables.
fn embed_grads(
    st: &EmbedState,
    g: &FlexTensor,
    want: [bool; 3],
) -> Result<[Option<FlexTensor>; 3], KernelInputError> {
    let g = contiguous(g);
    let gv = values(&g)?;
    let e = g.shape().dims::<3>()[2];
    let ids = &st.ids;
    let table = |rows: usize, index: &(dyn Fn(usize) -> usize + Sync)| {
        tensor(
            cpu::scatter_add_rows(gv, e, rows, index),
            Shape::new([rows, e]),
        )
    };
    Ok([
        want[0].then(|| table(st.rows[0], &|t| ids.ids[t] as usize)),
        want[1].then(|| table(st.rows[1], &|t| t % ids.seq.max(1))),
        match (&ids.segs, want[2]) {
            (Some(s), true) => Some(table(st.rows[2], &|t| s[t] as usize)),
            _ => None,
        },
    ])
}

/// The backward of [`embed_ad`]: parents the word and position tables (and the segment
/// table when N = 3).
#[derive(Debug)]
struct EmbedBackward;

impl<const N: usize> Backward<Flex, N> for EmbedBackward {
    type State = EmbedState;
    fn backward(self, ops: Ops<EmbedState, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let g = grads.consume::<Flex>(&ops.node);
        let parents = ops.parents.map(|p| p.map(|n| n.id));
        let want = std::array::from_fn(|i| parents.get(i).is_some_and(Option::is_some));
        let mut got = infallible(embed_grads(&ops.state, &g, want)).into_iter();
        register(
            grads,
            parents,
            std::array::from_fn(|_| got.next().flatten()),
        );
    }
}

/// [`embed`] on `Autodiff<Flex>`: gradients to the tables by scatter-adding the output's
/// gradient rows (word and segment by id, position by place).
pub fn embed_ad(
    word: AdTensor,
    pos: AdTensor,
    seg: Option<AdTensor>,
    ids: &EmbedIds,
) -> Option<AdTensor> {
    let out = embed(
        &word.primitive,
        &pos.primitive,
        seg.as_ref().map(|s| &s.primitive),
        ids,
    )?;
    let rows = [
        word.primitive.shape()[0],
        pos.primitive.shape()[0],
        seg.as_ref().map_or(0, |s| s.primitive.shape()[0]),
    ];
    let state = EmbedState {
        ids: ids.clone(),
        rows,
    };
    Some(match &seg {
        Some(seg) => record(EmbedBackward, [&word, &pos, seg], state, out),
        None => record(EmbedBackward, [&word, &pos], state, out),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f64_tensor() -> FlexTensor {
        FlexTensor::from_data(TensorData::new(vec![0.5f64, -1.0, 2.0, 0.25], [2, 2]))
    }

    #[test]
    fn a_tensor_that_is_not_f32_is_an_error_naming_its_dtype_and_shape() {
        let err = values(&f64_tensor()).unwrap_err();
        assert_eq!(
            err,
            KernelInputError {
                dtype: DType::F64,
                shape: vec![2, 2]
            }
        );
        let text = err.to_string();
        for part in [
            "F64",
            "[2, 2]",
            "not f32",
            "src/kernels/flex.rs",
            "flex::supported",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        // An f32 tensor reads as its values.
        let ok = tensor(vec![1.0, 2.0, 3.0], Shape::new([3]));
        assert_eq!(values(&ok).unwrap(), &[1.0, 2.0, 3.0]);
    }

    #[test]
    fn the_helpers_that_can_return_the_error_do() {
        // A backward helper handed a non-f32 gradient returns the error (its Burn trait,
        // which cannot, is the one place that expects); the same call on f32 computes.
        let x = tensor(vec![0.5, -1.0, 2.0, 0.25], Shape::new([2, 2]));
        let err = gelu_grad(&x, &f64_tensor(), GeluForm::Erf).unwrap_err();
        assert_eq!(err.dtype, DType::F64);
        let ones = tensor(vec![1.0; 4], Shape::new([2, 2]));
        let grad = gelu_grad(&x, &ones, GeluForm::Erf).unwrap();
        let want: Vec<f32> = [0.5f32, -1.0, 2.0, 0.25]
            .iter()
            .map(|&v| {
                let (v, pi) = (f64::from(v), std::f64::consts::PI);
                let cdf = 0.5 * (1.0 + libm_erf(v / std::f64::consts::SQRT_2));
                (cdf + v * (-v * v / 2.0).exp() / (2.0 * pi).sqrt()) as f32
            })
            .collect();
        for (g, w) in values(&grad).unwrap().iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
        // The linear layer's backward: a non-f32 output gradient is an error too.
        let state = LinearState {
            x: x.clone(),
            w: ones.clone(),
        };
        let err = linear_grads(&state, &f64_tensor(), [true, true, true]).unwrap_err();
        assert_eq!(err.shape, vec![2, 2]);
        assert!(linear_grads(&state, &ones, [true, true, true]).is_ok());
    }

    /// erf by Abramowitz–Stegun 7.1.26 (|error| < 1.5e-7), enough for a 1e-5 comparison.
    fn libm_erf(x: f64) -> f64 {
        let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
        let poly = t
            * (0.254_829_592
                + t * (-0.284_496_736
                    + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
        let y = 1.0 - poly * (-x * x).exp();
        if x < 0.0 { -y } else { y }
    }
}
