//! The f32 slice kernels behind the Flex fast paths: plain loops written so that LLVM
//! vectorises them, compiled three times (AVX-512, AVX2+FMA, baseline) and picked at run
//! time, and split over rayon's global pool (the one Flex's GEMM uses, sized to the
//! machine; nested calls from parallel batches share it instead of oversubscribing).
//!
//! Every kernel is a pure function of its inputs; dropout masks come from a counter-based
//! hash of (key, element index), so a mask does not depend on how the work is split.

use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Elements per rayon task for element-wise kernels (64 KiB of f32).
const CHUNK: usize = 1 << 14;

/// Defines `$name` that runs `$body` compiled for the best x86 level the CPU has.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn inner($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn v4($($arg: $ty),*) { inner($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn v3($($arg: $ty),*) { inner($($arg),*) }
                if level() >= 4 {
                    // SAFETY: the CPU reports the features `v4` was compiled for.
                    return unsafe { v4($($arg),*) };
                }
                if level() >= 3 {
                    // SAFETY: the CPU reports the features `v3` was compiled for.
                    return unsafe { v3($($arg),*) };
                }
            }
            inner($($arg),*)
        }
    };
}

/// The x86 level this CPU supports (4: AVX-512, 3: AVX2+FMA, 0: baseline), detected once.
#[cfg(target_arch = "x86_64")]
fn level() -> u8 {
    use std::sync::OnceLock;
    static LEVEL: OnceLock<u8> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let v3 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        let v4 = v3
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512dq")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512bw");
        if v4 {
            4
        } else if v3 {
            3
        } else {
            0
        }
    })
}

/// Which compiled copy of the kernels this CPU runs: `"AVX-512"` (x86-64-v4: AVX-512
/// F/DQ/VL/BW with AVX2+FMA), `"AVX2+FMA"` (x86-64-v3) or `"baseline"` (SSE2 on x86-64,
/// or any other architecture). The same detection the kernels dispatch on.
pub fn simd_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        match level() {
            4 => return "AVX-512",
            3 => return "AVX2+FMA",
            _ => {}
        }
    }
    "baseline"
}

/// `e^x` for f32 (Cephes polynomial, ~1 ulp on [-87, 88]; clamped outside), branch-free.
/// `mul_add` becomes one FMA instruction in the AVX2/AVX-512 builds of the kernels.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5·2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let ni = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let r = n.mul_add(2.121_944_4e-4, n.mul_add(-0.693_359_4, x));
    let mut p = 1.987_569_1e-4f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5);
    let y = (p * r).mul_add(r, r + 1.0);
    y * f32::from_bits(((ni + 127) << 23) as u32)
}

/// Φ(x) (the normal CDF) and φ(x) (its density), through erf by Abramowitz–Stegun 7.1.26
/// (|error| ≤ 1.5e-7 on erf) sharing one `exp(−x²/2)` between both.
#[inline(always)]
fn normal_cdf_pdf(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152_1,
        1.061_405_4,
    ];
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let poly = t * t.mul_add(
        t.mul_add(t.mul_add(t.mul_add(A[4], A[3]), A[2]), A[1]),
        A[0],
    );
    let e = exp(-0.5 * x * x);
    let half_erfc = 0.5 * poly * e; // Φ(−|x|)
    let cdf = if x >= 0.0 { 1.0 - half_erfc } else { half_erfc };
    (cdf, e * 0.398_942_3) // 1/√(2π)
}

const TANH_K: f32 = 0.797_884_6; // √(2/π)
const TANH_C: f32 = 0.044_715;

/// `x·σ(2u)` = `0.5·x·(1 + tanh u)`, `u = √(2/π)(x + 0.044715x³)`; returns (gelu, σ(2u), u').
#[inline(always)]
fn gelu_tanh_parts(x: f32) -> (f32, f32, f32) {
    let x2 = x * x;
    let u = TANH_K * (x + TANH_C * x2 * x);
    let s = 1.0 / (1.0 + exp(-2.0 * u));
    (x * s, s, TANH_K * (1.0 + 3.0 * TANH_C * x2))
}

multiversion! {
    fn gelu_erf_chunk(x: &[f32], y: &mut [f32]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = x * normal_cdf_pdf(x).0;
        }
    }
}

multiversion! {
    fn gelu_erf_grad_chunk(x: &[f32], g: &[f32], out: &mut [f32]) {
        for ((o, &x), &g) in out.iter_mut().zip(x).zip(g) {
            let (cdf, pdf) = normal_cdf_pdf(x);
            *o = g * (cdf + x * pdf);
        }
    }
}

multiversion! {
    fn gelu_tanh_chunk(x: &[f32], y: &mut [f32]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = gelu_tanh_parts(x).0;
        }
    }
}

multiversion! {
    fn gelu_tanh_grad_chunk(x: &[f32], g: &[f32], out: &mut [f32]) {
        for ((o, &x), &g) in out.iter_mut().zip(x).zip(g) {
            let (_, s, du) = gelu_tanh_parts(x);
            *o = g * (s + x * s * (1.0 - s) * 2.0 * du);
        }
    }
}

/// GELU, erf form (BERT): `y = x·Φ(x)`.
pub fn gelu_erf(x: &[f32], y: Out<'_, f32>) {
    check_lens("gelu_erf", &[("x", x.len(), y.len())]);
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(y, x)| gelu_erf_chunk(x, init(y)));
}

/// `g·(Φ(x) + x·φ(x))`.
pub fn gelu_erf_grad(x: &[f32], g: &[f32], out: Out<'_, f32>) {
    check_lens(
        "gelu_erf_grad",
        &[("x", x.len(), out.len()), ("g", g.len(), out.len())],
    );
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
        .for_each(|(o, (x, g))| gelu_erf_grad_chunk(x, g, init(o)));
}

/// GELU, tanh form (GPT-2).
pub fn gelu_tanh(x: &[f32], y: Out<'_, f32>) {
    check_lens("gelu_tanh", &[("x", x.len(), y.len())]);
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(y, x)| gelu_tanh_chunk(x, init(y)));
}

/// Gradient of the tanh-form GELU.
pub fn gelu_tanh_grad(x: &[f32], g: &[f32], out: Out<'_, f32>) {
    check_lens(
        "gelu_tanh_grad",
        &[("x", x.len(), out.len()), ("g", g.len(), out.len())],
    );
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
        .for_each(|(o, (x, g))| gelu_tanh_grad_chunk(x, g, init(o)));
}

// ---------------------------------------------------------------------------------------
// Dropout
// ---------------------------------------------------------------------------------------

/// A 32-bit integer hash with good avalanche (Chris Wellons' "lowbias32" constants).
#[inline(always)]
fn mix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x7feb_352d);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846c_a68b);
    h ^= h >> 16;
    h
}

/// The random draw for element `index` under `key` (two hash rounds, keyed both times).
#[inline(always)]
fn draw(key: u64, index: u32) -> u32 {
    let (k0, k1) = (key as u32, (key >> 32) as u32);
    mix32(mix32(index.wrapping_mul(0x9e37_79b9) ^ k0).wrapping_add(k1))
}

/// A dropout mask: which elements survive, and the scale `1/(1−p)` applied to them.
#[derive(Debug, Clone, Copy)]
pub struct DropSpec {
    /// Elements whose draw is below this are dropped (`p·2^32`).
    pub threshold: u32,
    /// `1/(1−p)`.
    pub keep_scale: f32,
    /// The per-call key (from [`super::next_key`]).
    pub key: u64,
}

impl DropSpec {
    /// A mask dropping with probability `p` (0 < p < 1) under `key`.
    pub fn new(p: f64, key: u64) -> Self {
        let threshold = (p * 4_294_967_296.0).round().min(u32::MAX as f64) as u32;
        DropSpec {
            threshold,
            keep_scale: (1.0 / (1.0 - p)) as f32,
            key,
        }
    }
}

multiversion! {
    fn dropout_chunk(x: &[f32], y: &mut [f32], mask: &mut [u8], spec: DropSpec, base: u32) {
        for (i, ((y, m), &x)) in y.iter_mut().zip(mask.iter_mut()).zip(x).enumerate() {
            let keep = draw(spec.key, base.wrapping_add(i as u32)) >= spec.threshold;
            *m = keep as u8;
            *y = if keep { x * spec.keep_scale } else { 0.0 };
        }
    }
}

multiversion! {
    fn masked_scale_chunk(g: &[f32], mask: &[u8], out: &mut [f32], scale: f32) {
        for ((o, &g), &m) in out.iter_mut().zip(g).zip(mask) {
            *o = if m != 0 { g * scale } else { 0.0 };
        }
    }
}

/// Inverted dropout in one pass: `y = x·keep/(1−p)`; `mask` receives `keep` (0/1).
pub fn dropout(x: &[f32], y: Out<'_, f32>, mask: Out<'_, u8>, spec: DropSpec) {
    check_lens(
        "dropout",
        &[("x", x.len(), y.len()), ("mask", mask.len(), y.len())],
    );
    y.par_chunks_mut(CHUNK)
        .zip(mask.par_chunks_mut(CHUNK))
        .zip(x.par_chunks(CHUNK))
        .enumerate()
        .for_each(|(c, ((y, m), x))| dropout_chunk(x, init(y), init(m), spec, (c * CHUNK) as u32));
}

/// Dropout's backward with the forward mask: `out = g·mask·scale`.
pub fn masked_scale(g: &[f32], mask: &[u8], scale: f32, out: Out<'_, f32>) {
    check_lens(
        "masked_scale",
        &[("g", g.len(), out.len()), ("mask", mask.len(), out.len())],
    );
    out.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK).zip(mask.par_chunks(CHUNK)))
        .for_each(|(o, (g, m))| masked_scale_chunk(g, m, init(o), scale));
}

// ---------------------------------------------------------------------------------------
// Row reductions
// ---------------------------------------------------------------------------------------

const LANES: usize = 16;

#[inline(always)]
fn row_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    let mut m = acc.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for &v in chunks.remainder() {
        m = m.max(v);
    }
    m
}

#[inline(always)]
fn row_sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

#[inline(always)]
fn row_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// Rows per rayon task so that a task holds about [`CHUNK`] elements.
fn rows_per_task(row_len: usize) -> usize {
    (CHUNK / row_len.max(1)).max(1)
}

// ---------------------------------------------------------------------------------------
// Softmax with the additive mask (+ dropout)
// ---------------------------------------------------------------------------------------

/// Where row `r` of the `[b, h, q, k]` scores finds its bias row in a `[bb, bh, bq, k]`
/// bias (each of bb, bh, bq is 1 or the full size).
#[derive(Debug, Clone, Copy)]
pub struct BiasLayout {
    pub heads: usize,
    pub queries: usize,
    pub bb: usize,
    pub bh: usize,
    pub bq: usize,
}

impl BiasLayout {
    #[inline(always)]
    fn row(&self, r: usize) -> usize {
        let qi = r % self.queries;
        let hi = (r / self.queries) % self.heads;
        let bi = r / (self.queries * self.heads);
        ((bi % self.bb) * self.bh + hi % self.bh) * self.bq + qi % self.bq
    }
}

multiversion! {
    fn softmax_row(s: &[f32], bias: Option<&[f32]>, scale: f32, p: &mut [f32]) {
        match bias {
            Some(b) => {
                for ((p, &s), &b) in p.iter_mut().zip(s).zip(b) {
                    *p = s * scale + b;
                }
            }
            None => {
                for (p, &s) in p.iter_mut().zip(s) {
                    *p = s * scale;
                }
            }
        }
        let m = row_max(p);
        for p in p.iter_mut() {
            *p = exp(*p - m);
        }
        let inv = 1.0 / row_sum(p);
        for p in p.iter_mut() {
            *p *= inv;
        }
    }
}

/// Row-wise `softmax(s·scale + bias)` over rows of length `k`; with `drop`, also writes the
/// dropped probabilities to `out` and the mask to `mask` (`p` keeps the undropped ones).
pub fn masked_softmax(
    s: &[f32],
    k: usize,
    bias: Option<(&[f32], BiasLayout)>,
    scale: f32,
    p: Out<'_, f32>,
    drop: Option<(DropSpec, Out<'_, f32>, Out<'_, u8>)>,
) {
    assert!(
        k > 0 && p.len().is_multiple_of(k),
        "kernel masked_softmax: rows of {k} in {} values",
        p.len()
    );
    check_lens("masked_softmax", &[("s", s.len(), p.len())]);
    if let Some((b, lay)) = bias {
        // `lay.row` maps every row into 0..bb·bh·bq.
        assert!(
            lay.bb * lay.bh * lay.bq * k <= b.len(),
            "kernel masked_softmax: the bias holds {} values, too few for its layout of rows of {k}",
            b.len()
        );
    }
    if let Some((_, out, mask)) = &drop {
        check_lens(
            "masked_softmax",
            &[("out", out.len(), p.len()), ("mask", mask.len(), p.len())],
        );
    }
    let rows = rows_per_task(k);
    let step = rows * k;
    let row_fn = |task: usize, s: &[f32], p: &mut [f32]| {
        for (j, (s, p)) in s.chunks(k).zip(p.chunks_mut(k)).enumerate() {
            let r = task * rows + j;
            let b = bias.map(|(b, lay)| {
                let o = lay.row(r) * k;
                &b[o..o + k]
            });
            softmax_row(s, b, scale, p);
        }
    };
    match drop {
        None => p
            .par_chunks_mut(step)
            .zip(s.par_chunks(step))
            .enumerate()
            .for_each(|(t, (p, s))| row_fn(t, s, init(p))),
        Some((spec, out, mask)) => p
            .par_chunks_mut(step)
            .zip(s.par_chunks(step))
            .zip(out.par_chunks_mut(step).zip(mask.par_chunks_mut(step)))
            .enumerate()
            .for_each(|(t, ((p, s), (o, m)))| {
                let p = init(p);
                row_fn(t, s, p);
                dropout_chunk(p, init(o), init(m), spec, (t * step) as u32);
            }),
    }
}

multiversion! {
    fn softmax_grad_row(p: &[f32], g: &[f32], mask: Option<&[u8]>, keep_scale: f32, scale: f32, out: &mut [f32]) {
        // gp = g·mask·keep_scale (the gradient w.r.t. the undropped probabilities)
        match mask {
            Some(m) => {
                for ((o, &g), &m) in out.iter_mut().zip(g).zip(m) {
                    *o = if m != 0 { g * keep_scale } else { 0.0 };
                }
            }
            None => out.copy_from_slice(g),
        }
        let dot = row_dot(out, p);
        for (o, &p) in out.iter_mut().zip(p) {
            *o = scale * p * (*o - dot);
        }
    }
}

/// Gradient w.r.t. the scores of [`masked_softmax`]: `scale·P⊙(gp − Σ gp⊙P)` per row.
pub fn masked_softmax_grad(
    p: &[f32],
    g: &[f32],
    k: usize,
    mask: Option<(&[u8], f32)>,
    scale: f32,
    out: Out<'_, f32>,
) {
    assert!(
        k > 0 && out.len().is_multiple_of(k),
        "kernel masked_softmax_grad: rows of {k} in {} values",
        out.len()
    );
    check_lens(
        "masked_softmax_grad",
        &[("p", p.len(), out.len()), ("g", g.len(), out.len())],
    );
    if let Some((m, _)) = mask {
        check_lens("masked_softmax_grad", &[("mask", m.len(), out.len())]);
    }
    let step = rows_per_task(k) * k;
    out.par_chunks_mut(step)
        .zip(p.par_chunks(step).zip(g.par_chunks(step)))
        .enumerate()
        .for_each(|(t, (o, (p, g)))| {
            for (j, ((o, p), g)) in init(o)
                .chunks_mut(k)
                .zip(p.chunks(k))
                .zip(g.chunks(k))
                .enumerate()
            {
                let start = t * step + j * k;
                let m = mask.map(|(m, _)| &m[start..start + k]);
                let keep_scale = mask.map_or(1.0, |(_, s)| s);
                softmax_grad_row(p, g, m, keep_scale, scale, o);
            }
        });
}

// ---------------------------------------------------------------------------------------
// Matrix products (the `gemm` crate Flex itself uses) and column sums
// ---------------------------------------------------------------------------------------

/// A read-only matrix view: `rows × cols` values of `data` at `row_stride`/`col_stride`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A contiguous row-major matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// Columns `col..col + cols` of a row-major matrix with `stride` values per row
    /// (`rows` rows): one head's slice of a `[seq, hidden]` activation.
    pub fn block(data: &'a [f32], rows: usize, stride: usize, col: usize, cols: usize) -> Self {
        MatRef {
            data: &data[col.min(data.len())..],
            rows,
            cols,
            row_stride: stride,
            col_stride: 1,
        }
    }

    /// The transpose (a view; nothing is copied).
    pub fn t(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Whether every element lies inside `data`.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
                < self.data.len()
    }
}

/// `dst = a·b` (or `dst += a·b` with `accumulate`), `dst` row-major `a.rows × b.cols`;
/// split over rayon's pool when the product is large enough.
///
/// # Panics
/// When the shapes disagree or a view reaches outside its slice (a caller bug).
pub fn gemm(dst: &mut [f32], accumulate: bool, a: MatRef<'_>, b: MatRef<'_>) {
    assert!(dst.len() == a.rows * b.cols, "gemm: destination size");
    gemm_strided(dst, b.cols, accumulate, a, b, worth_splitting(a, b));
}

/// [`gemm`] into rows of `dst` that are `dst_row_stride` apart (a column block of a wider
/// row-major matrix); single-threaded unless `parallel`.
///
/// # Panics
/// When the shapes disagree or a view reaches outside its slice (a caller bug).
pub fn gemm_strided(
    dst: &mut [f32],
    dst_row_stride: usize,
    accumulate: bool,
    a: MatRef<'_>,
    b: MatRef<'_>,
    parallel: bool,
) {
    check_gemm(dst.len(), dst_row_stride, a, b);
    // SAFETY: `check_gemm` proved the destination block and both views in bounds; `dst` is
    // initialised, so reading it (accumulate) is fine, and it is a unique borrow.
    unsafe { gemm_raw(dst.as_mut_ptr(), dst_row_stride, accumulate, a, b, parallel) };
}

/// [`gemm_strided`] into a buffer that is not initialised yet: writes (never reads) every
/// value of the `a.rows × b.cols` block.
///
/// # Panics
/// When the shapes disagree or a view reaches outside its slice (a caller bug).
pub fn gemm_strided_to(
    dst: &mut [MaybeUninit<f32>],
    dst_row_stride: usize,
    a: MatRef<'_>,
    b: MatRef<'_>,
    parallel: bool,
) {
    check_gemm(dst.len(), dst_row_stride, a, b);
    if a.cols == 0 {
        for row in dst.chunks_mut(dst_row_stride).take(a.rows) {
            row[..b.cols].fill(MaybeUninit::new(0.0));
        }
        return;
    }
    // SAFETY: as in `gemm_strided`; without `accumulate` the kernel only writes `dst`
    // (k > 0 here), so its uninitialised values are never read.
    unsafe {
        gemm_raw(
            dst.as_mut_ptr().cast::<f32>(),
            dst_row_stride,
            false,
            a,
            b,
            parallel,
        )
    };
}

/// Whether `a·b` is large enough (2^18 multiply-adds) to split over the pool.
fn worth_splitting(a: MatRef<'_>, b: MatRef<'_>) -> bool {
    a.rows * a.cols * b.cols >= 1 << 18
}

/// Asserts what [`gemm_raw`] relies on.
fn check_gemm(dst_len: usize, dst_row_stride: usize, a: MatRef<'_>, b: MatRef<'_>) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        b.rows == k
            && a.in_bounds()
            && b.in_bounds()
            && dst_row_stride >= n
            && (m == 0 || n == 0 || (m - 1) * dst_row_stride + n <= dst_len),
        "gemm shapes"
    );
}

/// # Safety
/// `dst` points at `(m − 1)·dst_row_stride + n` writable values (initialised when
/// `accumulate`), not aliasing `a` or `b`; the views are in bounds ([`check_gemm`]).
unsafe fn gemm_raw(
    dst: *mut f32,
    dst_row_stride: usize,
    accumulate: bool,
    a: MatRef<'_>,
    b: MatRef<'_>,
    parallel: bool,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                // SAFETY: row r's n values are inside the destination (caller's contract).
                unsafe { std::ptr::write_bytes(dst.add(r * dst_row_stride), 0, n) };
            }
        }
        return;
    }
    let par = if parallel && rayon::current_num_threads() > 1 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the caller's contract (every index the kernel touches is in bounds, `dst` is
    // read only when `accumulate` and then initialised, no aliasing).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_row_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// Asserts that every buffer a kernel reads or writes has the length the output implies.
/// The kernels pair chunks of their inputs and outputs (`zip` stops at the shorter one) and
/// hand the output back as initialised: a length mismatch would leave values unwritten, so
/// it is a bug in the caller and stops here, before anything is written.
#[track_caller]
fn check_lens(kernel: &str, lens: &[(&str, usize, usize)]) {
    for &(name, got, want) in lens {
        assert!(
            got == want,
            "kernel {kernel}: `{name}` holds {got} values, {want} expected"
        );
    }
}

/// An output buffer a kernel fills completely (every kernel here writes each value of its
/// output once); allocate it with [`uninit`] and take it back with [`assume_init`].
pub type Out<'a, T> = &'a mut [MaybeUninit<T>];

/// A buffer of `n` values, not initialised.
pub fn uninit<T: Copy>(n: usize) -> Vec<MaybeUninit<T>> {
    let mut v = Vec::with_capacity(n);
    // SAFETY: `MaybeUninit` values need no initialisation; the capacity is `n`.
    unsafe { v.set_len(n) };
    v
}

/// The buffer as initialised values.
///
/// # Safety
/// Every element has been written.
pub unsafe fn assume_init<T: Copy>(v: Vec<MaybeUninit<T>>) -> Vec<T> {
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: `MaybeUninit<T>` has `T`'s layout; pointer, length and capacity come from a
    // live Vec that is not dropped; every element is initialised (caller).
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<T>(), v.len(), v.capacity()) }
}

/// One task's part of an output buffer, zeroed and seen as initialised. The zeroing runs
/// inside the task, on a chunk the kernel is about to write (so it is in cache), instead of
/// a separate pass over the whole buffer before the parallel work starts.
fn init<T: Copy + Default>(c: &mut [MaybeUninit<T>]) -> &mut [T] {
    c.fill(MaybeUninit::new(T::default()));
    // SAFETY: every element was just written; `MaybeUninit<T>` has `T`'s layout.
    unsafe { &mut *(c as *mut [MaybeUninit<T>] as *mut [T]) }
}

/// `a·b` into a new row-major buffer (`a.rows × b.cols`).
pub fn matmul(a: MatRef<'_>, b: MatRef<'_>) -> Vec<f32> {
    let (m, n) = (a.rows, b.cols);
    let mut out = uninit(m * n);
    gemm_strided_to(&mut out, n, a, b, worth_splitting(a, b));
    // SAFETY: `gemm_strided_to` wrote the whole m×n block, i.e. every element.
    unsafe { assume_init(out) }
}

multiversion! {
    fn add_rows(acc: &mut [f32], rows: &[f32]) {
        for row in rows.chunks_exact(acc.len()) {
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += v;
            }
        }
    }
}

/// Column sums of a row-major matrix with `cols` columns.
pub fn col_sums(x: &[f32], cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; cols];
    if cols == 0 {
        return out;
    }
    let rows = rows_per_task(cols).max(16);
    let partials: Vec<Vec<f32>> = x
        .par_chunks(rows * cols)
        .map(|block| {
            let mut acc = vec![0f32; cols];
            add_rows(&mut acc, block);
            acc
        })
        .collect();
    for p in partials {
        add_rows(&mut out, &p);
    }
    out
}

/// `rows` copies of `bias` as a row-major buffer.
pub fn repeat_rows(bias: &[f32], rows: usize) -> Vec<f32> {
    let n = bias.len();
    let mut out = uninit(rows * n);
    if n > 0 {
        out.par_chunks_mut(rows_per_task(n) * n).for_each(|block| {
            for row in block.chunks_exact_mut(n) {
                for (d, &b) in row.iter_mut().zip(bias) {
                    *d = MaybeUninit::new(b);
                }
            }
        });
    }
    // SAFETY: every row (rows·n values, the whole buffer) was written above.
    unsafe { assume_init(out) }
}

// ---------------------------------------------------------------------------------------
// Embedding sums
// ---------------------------------------------------------------------------------------

/// `out[t] = word[ids[t]] + pos[t mod seq] (+ seg[segs[t]])` for the `ids.len()` tokens of
/// `[batch, seq]` inputs; every table has `e` columns and every id is in range.
pub fn embed(
    word: &[f32],
    pos: &[f32],
    seg: Option<(&[f32], &[u32])>,
    ids: &[u32],
    seq: usize,
    e: usize,
    out: Out<'_, f32>,
) {
    check_lens("embed", &[("out", out.len(), ids.len() * e)]);
    assert!(
        seq > 0 && pos.len() >= seq.min(ids.len()) * e,
        "kernel embed: {} position values for {seq} positions of {e}",
        pos.len()
    );
    let vocab = word.len() / e.max(1);
    assert!(
        ids.iter().all(|&i| (i as usize) < vocab),
        "kernel embed: an id is outside the {vocab} rows of the word table"
    );
    if let Some((table, segs)) = seg {
        check_lens("embed", &[("segs", segs.len(), ids.len())]);
        let rows = table.len() / e.max(1);
        assert!(
            segs.iter().all(|&i| (i as usize) < rows),
            "kernel embed: a segment id is outside the {rows} rows of the segment table"
        );
    }
    let tokens = rows_per_task(e);
    out.par_chunks_mut((tokens * e).max(1))
        .enumerate()
        .for_each(|(c, o)| {
            let o = init(o);
            for (j, row) in o.chunks_mut(e).enumerate() {
                let t = c * tokens + j;
                let w = &word[ids[t] as usize * e..][..e];
                let p = &pos[(t % seq) * e..][..e];
                for ((r, &w), &p) in row.iter_mut().zip(w).zip(p) {
                    *r = w + p;
                }
                if let Some((table, segs)) = seg {
                    for (r, &s) in row.iter_mut().zip(&table[segs[t] as usize * e..][..e]) {
                        *r += s;
                    }
                }
            }
        });
}

/// Adds row `t` of `g` (`[tokens, e]`) into row `index(t)` of the `[rows, e]` table `out`
/// for every token: the backward of a table lookup. Split over column blocks, so no two
/// tasks touch the same value and the sums run in token order (deterministic).
pub fn scatter_add_rows(
    g: &[f32],
    e: usize,
    rows: usize,
    index: impl Fn(usize) -> usize + Sync,
) -> Vec<f32> {
    let mut out = vec![0f32; rows * e];
    let tokens = g.len() / e.max(1);
    assert!(
        (0..tokens).all(|t| index(t) < rows),
        "scatter_add_rows: index out of range"
    );
    let threads = rayon::current_num_threads().max(1);
    let block = e.div_ceil(threads).max(16).min(e.max(1));
    let blocks: Vec<usize> = (0..e).step_by(block).collect();
    // Each task owns columns [c0, c0+block) of every row: hand out disjoint column slices.
    let out_ptr = SendPtr(out.as_mut_ptr());
    blocks.par_iter().for_each(|&c0| {
        let c1 = (c0 + block).min(e);
        let ptr = out_ptr;
        for t in 0..tokens {
            let r = index(t);
            let src = &g[t * e + c0..t * e + c1];
            // SAFETY: row r < rows (caller), columns c0..c1 < e: inside `out`; this task is
            // the only one writing columns c0..c1, and `out` outlives the parallel loop.
            let dst = unsafe { std::slice::from_raw_parts_mut(ptr.0.add(r * e + c0), c1 - c0) };
            for (d, &v) in dst.iter_mut().zip(src) {
                *d += v;
            }
        }
    });
    out
}

/// A raw pointer that may cross threads (the caller guarantees disjoint use).
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: used only by `scatter_add_rows`, whose tasks write disjoint column ranges.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

// ---------------------------------------------------------------------------------------
// AdamW (UER-py's: no bias correction, decay applied to the updated value)
// ---------------------------------------------------------------------------------------

/// The step's constants, each already rounded to f32 the way Burn's scalar ops round them.
#[derive(Debug, Clone, Copy)]
pub struct AdamStep {
    pub lr: f32,
    pub beta_1: f32,
    pub one_minus_beta_1: f32,
    pub beta_2: f32,
    pub one_minus_beta_2: f32,
    pub epsilon: f32,
    /// `lr·weight_decay` when the parameter decays.
    pub decay: Option<f32>,
}

multiversion! {
    fn adamw_chunk(p: &[f32], g: &[f32], m: Option<&[f32]>, v: Option<&[f32]>, hp: AdamStep, po: &mut [f32], mo: &mut [f32], vo: &mut [f32]) {
        for i in 0..p.len() {
            let g = g[i];
            // b·m + (1−b)·g with m = 0 on the first step (b·0 + x = x exactly).
            let m = m.map_or(0.0, |m| m[i] * hp.beta_1) + g * hp.one_minus_beta_1;
            let v = v.map_or(0.0, |v| v[i] * hp.beta_2) + g * g * hp.one_minus_beta_2;
            let u = p[i] - m / (v.sqrt() + hp.epsilon) * hp.lr;
            po[i] = match hp.decay {
                Some(d) => u - u * d,
                None => u,
            };
            mo[i] = m;
            vo[i] = v;
        }
    }
}

/// One AdamW step over a parameter in one pass: writes the new parameter and moments
/// (`m`, `v` absent on the first step). Same operations, in the same order and precision,
/// as the Burn composition in `train::optim`.
#[allow(clippy::too_many_arguments)]
pub fn adamw(
    p: &[f32],
    g: &[f32],
    m: Option<&[f32]>,
    v: Option<&[f32]>,
    hp: AdamStep,
    po: Out<'_, f32>,
    mo: Out<'_, f32>,
    vo: Out<'_, f32>,
) {
    check_lens(
        "adamw",
        &[
            ("p", p.len(), po.len()),
            ("g", g.len(), po.len()),
            ("m out", mo.len(), po.len()),
            ("v out", vo.len(), po.len()),
        ],
    );
    for (name, t) in [("m", m), ("v", v)] {
        if let Some(t) = t {
            check_lens("adamw", &[(name, t.len(), po.len())]);
        }
    }
    po.par_chunks_mut(CHUNK)
        .zip(mo.par_chunks_mut(CHUNK).zip(vo.par_chunks_mut(CHUNK)))
        .enumerate()
        .for_each(|(c, (po, (mo, vo)))| {
            let r = c * CHUNK..(c * CHUNK + po.len());
            adamw_chunk(
                &p[r.clone()],
                &g[r.clone()],
                m.map(|m| &m[r.clone()]),
                v.map(|v| &v[r]),
                hp,
                init(po),
                init(mo),
                init(vo),
            );
        });
}

// ---------------------------------------------------------------------------------------
// Cross-entropy (log-softmax + NLL)
// ---------------------------------------------------------------------------------------

multiversion! {
    fn sum_exp_row(x: &[f32], m: f32, out: &mut f32) {
        let mut acc = [0f32; LANES];
        let mut chunks = x.chunks_exact(LANES);
        for c in &mut chunks {
            for i in 0..LANES {
                acc[i] += exp(c[i] - m);
            }
        }
        let tail: f32 = chunks.remainder().iter().map(|&v| exp(v - m)).sum();
        *out = acc.iter().sum::<f32>() + tail;
    }
}

/// Per row of `x` (rows of length `k`): `lse[r] = log Σ_j e^{x[r,j]}` and `argmax[r]` (the
/// first index holding the row's maximum, as Burn's `argmax`).
pub fn log_sum_exp_rows(x: &[f32], k: usize, lse: &mut [f32], argmax: &mut [u32]) {
    x.par_chunks(k)
        .zip(lse.par_iter_mut().zip(argmax.par_iter_mut()))
        .for_each(|(row, (l, a))| {
            let m = row_max(row);
            let mut s = 0f32;
            sum_exp_row(row, m, &mut s);
            *l = m + s.ln();
            *a = row.iter().position(|&v| v == m).unwrap_or(0) as u32;
        });
}

multiversion! {
    fn ce_grad_row(x: &[f32], lse: f32, scale: f32, out: &mut [f32]) {
        for (o, &x) in out.iter_mut().zip(x) {
            *o = scale * exp(x - lse);
        }
    }
}

/// Gradient of `scale·Σ_r (lse[r] − x[r, t_r])` w.r.t. `x`: `scale·(softmax(x) − onehot(t))`.
pub fn cross_entropy_grad(
    x: &[f32],
    k: usize,
    lse: &[f32],
    targets: &[u32],
    scale: f32,
    out: Out<'_, f32>,
) {
    assert!(
        k > 0 && out.len().is_multiple_of(k),
        "kernel cross_entropy_grad: rows of {k} in {} values",
        out.len()
    );
    let rows = out.len() / k;
    check_lens(
        "cross_entropy_grad",
        &[
            ("x", x.len(), out.len()),
            ("lse", lse.len(), rows),
            ("targets", targets.len(), rows),
        ],
    );
    assert!(
        targets.iter().all(|&t| (t as usize) < k),
        "kernel cross_entropy_grad: a target is outside the {k} classes"
    );
    out.par_chunks_mut(k)
        .zip(x.par_chunks(k))
        .zip(lse.par_iter().zip(targets.par_iter()))
        .for_each(|((o, x), (&l, &t))| {
            let o = init(o);
            ce_grad_row(x, l, scale, o);
            o[t as usize] -= scale;
        });
}

// ---------------------------------------------------------------------------------------
// LayerNorm
// ---------------------------------------------------------------------------------------

/// Which LayerNorm formula: UER-py's (`(x−μ)/(std_unbiased + eps)`) or PyTorch/HF's
/// (`(x−μ)/√(var_biased + eps)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LnFormula {
    Uer,
    Hf,
}

/// Per-row statistics kept for the backward pass: `1/d` and (UER) the std.
#[derive(Debug, Clone, Copy, Default)]
pub struct LnRow {
    pub inv: f32,
    pub std: f32,
}

multiversion! {
    fn ln_row(x: &[f32], gamma: &[f32], beta: &[f32], formula: LnFormula, eps: f32, y: &mut [f32], stat: &mut LnRow) {
        let n = x.len();
        let mean = row_sum(x) / n as f32;
        for (y, &x) in y.iter_mut().zip(x) {
            *y = x - mean;
        }
        let ss = row_dot(y, y);
        let (inv, std) = match formula {
            LnFormula::Uer => {
                let std = (ss / (n.max(2) - 1) as f32).sqrt();
                (1.0 / (std + eps), std)
            }
            LnFormula::Hf => (1.0 / (ss / n as f32 + eps).sqrt(), 0.0),
        };
        *stat = LnRow { inv, std };
        for ((y, &g), &b) in y.iter_mut().zip(gamma).zip(beta) {
            *y = *y * inv * g + b;
        }
    }
}

/// LayerNorm over rows of length `gamma.len()`; `stats` receives one [`LnRow`] per row.
pub fn layer_norm(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    formula: LnFormula,
    eps: f32,
    y: Out<'_, f32>,
    stats: &mut [LnRow],
) {
    let n = gamma.len();
    assert!(
        n > 0 && y.len().is_multiple_of(n),
        "kernel layer_norm: rows of {n} in {} values",
        y.len()
    );
    check_lens(
        "layer_norm",
        &[
            ("x", x.len(), y.len()),
            ("beta", beta.len(), n),
            ("stats", stats.len(), y.len() / n),
        ],
    );
    let rows = rows_per_task(n);
    y.par_chunks_mut(rows * n)
        .zip(x.par_chunks(rows * n))
        .zip(stats.par_chunks_mut(rows))
        .for_each(|((y, x), st)| {
            for ((y, x), st) in init(y).chunks_mut(n).zip(x.chunks(n)).zip(st.iter_mut()) {
                ln_row(x, gamma, beta, formula, eps, y, st);
            }
        });
}

multiversion! {
    fn ln_grad_row(x: &[f32], dy: &[f32], gamma: &[f32], formula: LnFormula, st: LnRow, dx: &mut [f32], dgamma: &mut [f32], dbeta: &mut [f32]) {
        let n = x.len();
        let mean = row_sum(x) / n as f32;
        // dx holds g = dy·γ first; dγ += dy·x̂, dβ += dy.
        for (((((dx, &x), &dy), &gm), dg), db) in dx.iter_mut().zip(x).zip(dy).zip(gamma).zip(dgamma.iter_mut()).zip(dbeta.iter_mut()) {
            *dx = dy * gm;
            *dg += dy * (x - mean) * st.inv;
            *db += dy;
        }
        let g_mean = row_sum(dx) / n as f32;
        let mut gc = 0f32;
        {
            let mut acc = [0f32; LANES];
            let mut cg = dx.chunks_exact(LANES);
            let mut cx = x.chunks_exact(LANES);
            for (g, x) in (&mut cg).zip(&mut cx) {
                for i in 0..LANES {
                    acc[i] += g[i] * (x[i] - mean);
                }
            }
            for (g, x) in cg.remainder().iter().zip(cx.remainder()) {
                gc += g * (x - mean);
            }
            gc += acc.iter().sum::<f32>();
        }
        // dx_j = inv·(g_j − mean g) − c_j·coef
        let coef = match formula {
            LnFormula::Uer if st.std > 0.0 => gc * st.inv * st.inv / ((n.max(2) - 1) as f32 * st.std),
            LnFormula::Uer => 0.0,
            LnFormula::Hf => gc * st.inv * st.inv * st.inv / n as f32,
        };
        for (dx, &x) in dx.iter_mut().zip(x) {
            *dx = st.inv * (*dx - g_mean) - (x - mean) * coef;
        }
    }
}

/// LayerNorm's backward: fills `dx` and returns (dγ, dβ).
pub fn layer_norm_grad(
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    formula: LnFormula,
    stats: &[LnRow],
    dx: Out<'_, f32>,
) -> (Vec<f32>, Vec<f32>) {
    let n = gamma.len();
    assert!(
        n > 0 && dx.len().is_multiple_of(n),
        "kernel layer_norm_grad: rows of {n} in {} values",
        dx.len()
    );
    check_lens(
        "layer_norm_grad",
        &[
            ("x", x.len(), dx.len()),
            ("dy", dy.len(), dx.len()),
            ("stats", stats.len(), dx.len() / n),
        ],
    );
    let rows = rows_per_task(n).max(64);
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(rows * n)
        .zip(x.par_chunks(rows * n).zip(dy.par_chunks(rows * n)))
        .zip(stats.par_chunks(rows))
        .map(|((dx, (x, dy)), st)| {
            let mut dg = vec![0f32; n];
            let mut db = vec![0f32; n];
            for (((dx, x), dy), &st) in init(dx)
                .chunks_mut(n)
                .zip(x.chunks(n))
                .zip(dy.chunks(n))
                .zip(st)
            {
                ln_grad_row(x, dy, gamma, formula, st, dx, &mut dg, &mut db);
            }
            (dg, db)
        })
        .collect();
    let mut dg = vec![0f32; n];
    let mut db = vec![0f32; n];
    for (g, b) in partials {
        for i in 0..n {
            dg[i] += g[i];
            db[i] += b[i];
        }
    }
    (dg, db)
}

#[cfg(test)]
mod tests {

    #[test]
    #[should_panic(expected = "kernel gelu_erf: `x` holds 3 values, 4 expected")]
    fn kernels_refuse_mismatched_lengths() {
        let mut y = uninit::<f32>(4);
        gelu_erf(&[0.0; 3], &mut y);
    }

    #[test]
    #[should_panic(expected = "kernel layer_norm: `x` holds 6 values, 8 expected")]
    fn layer_norm_refuses_a_short_input() {
        let mut y = uninit::<f32>(8);
        let mut st = vec![LnRow::default(); 2];
        layer_norm(
            &[0.0; 6],
            &[1.0; 4],
            &[0.0; 4],
            LnFormula::Uer,
            1e-6,
            &mut y,
            &mut st,
        );
    }
    use super::*;

    #[test]
    fn exp_matches_std() {
        let mut worst = 0f32;
        for i in -8700..8800 {
            let x = i as f32 * 0.01;
            let rel = ((exp(x) - x.exp()) / x.exp()).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
    }

    #[test]
    fn dropout_rate_is_p() {
        let x = vec![1f32; 1 << 20];
        let (mut y, mut m) = (uninit(x.len()), uninit(x.len()));
        dropout(&x, &mut y, &mut m, DropSpec::new(0.1, 42));
        // SAFETY: dropout writes every element of both outputs.
        let (y, m) = unsafe { (assume_init(y), assume_init(m)) };
        let kept = m.iter().filter(|&&k| k == 1).count() as f64 / x.len() as f64;
        assert!((kept - 0.9).abs() < 2e-3, "kept {kept}");
        assert!(y.iter().zip(&m).all(|(&y, &m)| if m == 1 {
            (y - 1.0 / 0.9).abs() < 1e-6
        } else {
            y == 0.0
        }));
    }
}
