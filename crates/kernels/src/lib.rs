//! CPU kernels for uerzoo that must run optimised even when uerzoo itself is built in its
//! dev profile (the workspace sets `opt-level = 3` for this package): every exported
//! function is non-generic, so it is compiled in this crate and not instantiated in the
//! caller.
//!
//! [`linear_rows`] is a linear layer for a few rows (1–[`MAX_ROWS`]) against a weight kept
//! row-major in torch's `[out, in]` layout: the per-token decode step of generation, where
//! a general GEMM reading that weight as a transposed view handles a few rows badly. Each
//! weight row is loaded once per block of rows and used for all of them; the work is split
//! over output blocks on rayon's global pool; the inner loop is AVX-512F, AVX2+FMA or
//! scalar, chosen at run time ([`Path::detect`]).
//!
//! Every output `y[r, o]` is summed the same way whatever the number of rows, their
//! grouping or the thread split (same lanes, same order), so a row's result is bit-for-bit
//! the same alone or in a batch.
//!
//! [`bf16`] is a linear layer with its weight held as bf16 and f32 sums (AVX-512 BF16's
//! `vdpbf16ps`, an AVX2+FMA fallback, scalar), for any number of rows.

use std::fmt;

pub mod bf16;
pub use bf16::{Bf16Error, Bf16Path, Bf16Weight, linear_bf16, linear_bf16_on};

/// The most rows for which callers pick [`linear_rows`] over a GEMM on their own (a decode
/// step): up to here its row-at-a-time dot products beat a GEMM reading the weight strided.
pub const MAX_ROWS: usize = 16;

/// The most rows [`linear_rows`] takes. Beyond [`MAX_ROWS`] a GEMM is faster, but a caller
/// that needs each row's bits as they are alone (several prompts prefilled in one forward)
/// can still hand it this many: the weight tile of each output block stays in cache while
/// every row passes over it, so the weight is read from memory once for all rows.
pub const ROW_LIMIT: usize = 1024;

/// The instruction set a kernel runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// 16-lane f32 vectors with fused multiply-add (x86-64 AVX-512F).
    Avx512,
    /// 8-lane f32 vectors with fused multiply-add (x86-64 AVX2 and FMA).
    Avx2,
    /// Plain Rust, any CPU.
    Scalar,
}

impl Path {
    /// The fastest path this CPU runs.
    pub fn detect() -> Path {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Path::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Path::Avx2;
            }
        }
        Path::Scalar
    }

    /// Whether this CPU runs `self`.
    pub fn available(self) -> bool {
        match self {
            Path::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// A short name (`avx512`, `avx2`, `scalar`).
    pub fn name(self) -> &'static str {
        match self {
            Path::Avx512 => "avx512",
            Path::Avx2 => "avx2",
            Path::Scalar => "scalar",
        }
    }
}

/// Why [`linear_rows`] refused its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinearError {
    /// `rows` is 0 or over [`ROW_LIMIT`].
    Rows(usize),
    /// A buffer's length does not match the shape: (which, expected, got).
    Len(&'static str, usize, usize),
    /// The requested [`Path`] does not run on this CPU.
    Unavailable(Path),
}

impl fmt::Display for LinearError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinearError::Rows(r) => write!(f, "linear_rows takes 1..={ROW_LIMIT} rows, got {r}"),
            LinearError::Len(what, want, got) => {
                write!(
                    f,
                    "linear_rows: `{what}` holds {got} values, the shape needs {want}"
                )
            }
            LinearError::Unavailable(p) => {
                write!(
                    f,
                    "linear_rows: this CPU does not run the {} path",
                    p.name()
                )
            }
        }
    }
}

impl std::error::Error for LinearError {}

/// `y[r, o] = bias[o] + Σ_i x[r, i] · w[o, i]` for `r < rows`, `o < d_out`: `x` is
/// `[rows, d_in]`, `w` `[d_out, d_in]` and `y` `[rows, d_out]`, all row-major; `rows` is
/// 1..=[`ROW_LIMIT`]. Runs on the CPU's fastest [`Path`].
pub fn linear_rows(
    x: &[f32],
    rows: usize,
    w: &[f32],
    d_in: usize,
    d_out: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
) -> Result<(), LinearError> {
    linear_rows_on(Path::detect(), x, rows, w, d_in, d_out, bias, y)
}

/// [`linear_rows`] on a given [`Path`] (the tests compare them); refuses a path this CPU
/// does not run.
#[allow(clippy::too_many_arguments)]
pub fn linear_rows_on(
    path: Path,
    x: &[f32],
    rows: usize,
    w: &[f32],
    d_in: usize,
    d_out: usize,
    bias: Option<&[f32]>,
    y: &mut [f32],
) -> Result<(), LinearError> {
    if rows == 0 || rows > ROW_LIMIT {
        return Err(LinearError::Rows(rows));
    }
    let want = |what, n: usize, got: usize| {
        if n == got {
            Ok(())
        } else {
            Err(LinearError::Len(what, n, got))
        }
    };
    want("x", rows * d_in, x.len())?;
    want("w", d_out * d_in, w.len())?;
    want("y", rows * d_out, y.len())?;
    if let Some(b) = bias {
        want("bias", d_out, b.len())?;
    }
    if !path.available() {
        return Err(LinearError::Unavailable(path));
    }
    let p = Problem {
        x: x.as_ptr(),
        rows,
        w: w.as_ptr(),
        d_in,
        d_out,
        bias: bias.map(|b| b.as_ptr()),
        y: y.as_mut_ptr(),
    };
    // Output blocks of a multiple of the widest tile; small problems run on this thread.
    let work = rows * d_in * d_out;
    let threads = rayon::current_num_threads();
    if work < 1 << 17 || threads <= 1 || d_out < 2 * BLOCK_ALIGN {
        // SAFETY: the lengths were checked above; the range is the whole output.
        unsafe { run_block(path, &p, 0, d_out) };
        return Ok(());
    }
    let tasks = (threads * 4).min(d_out / BLOCK_ALIGN);
    let block = d_out.div_ceil(tasks).div_ceil(BLOCK_ALIGN) * BLOCK_ALIGN;
    let n_blocks = d_out.div_ceil(block);
    let shared = Shared(p);
    rayon::scope(|s| {
        for b in 0..n_blocks {
            let shared = &shared;
            s.spawn(move |_| {
                let (o0, o1) = (b * block, ((b + 1) * block).min(d_out));
                // SAFETY: lengths checked above; blocks are disjoint output columns, so no
                // two tasks write the same element of `y`, and `x`, `w`, `bias` are only read.
                unsafe { run_block(path, &shared.0, o0, o1) };
            });
        }
    });
    Ok(())
}

/// Output blocks handed to threads are multiples of this many outputs.
const BLOCK_ALIGN: usize = 16;

/// The checked arguments of one call, as raw pointers so that threads can write disjoint
/// columns of `y`.
#[derive(Clone, Copy)]
struct Problem {
    x: *const f32,
    rows: usize,
    w: *const f32,
    d_in: usize,
    d_out: usize,
    bias: Option<*const f32>,
    y: *mut f32,
}

struct Shared(Problem);
// SAFETY: the tasks holding it read `x`, `w`, `bias` and write disjoint columns of `y`;
// `rayon::scope` ends before the borrowed buffers do.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

/// Computes outputs `o0..o1` for every row.
///
/// # Safety
/// `p` describes valid buffers of the checked lengths, `o1 <= p.d_out`, `path` runs here.
unsafe fn run_block(path: Path, p: &Problem, o0: usize, o1: usize) {
    match path {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: forwarded; `path.available()` was checked by the caller.
        Path::Avx512 => unsafe { x86::block_avx512(p, o0, o1) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Path::Avx2 => unsafe { x86::block_avx2(p, o0, o1) },
        // SAFETY: forwarded.
        _ => unsafe { block_scalar(p, o0, o1) },
    }
}

/// Rows per tile: each loaded weight vector serves this many rows.
const ROW_TILE: usize = 4;

/// Walks outputs `o0..o1` in tiles of `O` outputs (then single outputs) and the rows in
/// tiles of [`ROW_TILE`] (then the remainder), calling `tile::<R, O>` through `$tile`.
macro_rules! walk_tiles {
    ($p:expr, $o0:expr, $o1:expr, $O:literal, $tile:ident) => {{
        let (p, o1) = ($p, $o1);
        let mut o = $o0;
        while o + $O <= o1 {
            walk_tiles!(@rows p, o, $O, $tile);
            o += $O;
        }
        while o < o1 {
            walk_tiles!(@rows p, o, 1, $tile);
            o += 1;
        }
    }};
    (@rows $p:expr, $o:expr, $O:literal, $tile:ident) => {{
        let mut r = 0;
        while r + ROW_TILE <= $p.rows {
            $tile::<ROW_TILE, $O>($p, r, $o);
            r += ROW_TILE;
        }
        match $p.rows - r {
            3 => $tile::<3, $O>($p, r, $o),
            2 => $tile::<2, $O>($p, r, $o),
            1 => $tile::<1, $O>($p, r, $o),
            _ => {}
        }
    }};
}

/// Writes `y[r, o] = sum + bias[o]`.
///
/// # Safety
/// `r < p.rows`, `o < p.d_out`, `p` valid.
#[inline(always)]
unsafe fn store(p: &Problem, r: usize, o: usize, sum: f32) {
    // SAFETY: in bounds by the caller's contract.
    unsafe {
        let b = match p.bias {
            Some(b) => *b.add(o),
            None => 0.0,
        };
        *p.y.add(r * p.d_out + o) = sum + b;
    }
}

/// The scalar tail of a dot product: `sum + Σ_{i ≥ from} x[r, i]·w[o, i]`, in order.
///
/// # Safety
/// `r < p.rows`, `o < p.d_out`, `p` valid.
#[inline(always)]
unsafe fn tail(p: &Problem, r: usize, o: usize, from: usize, mut sum: f32) -> f32 {
    for i in from..p.d_in {
        // SAFETY: in bounds by the caller's contract.
        unsafe { sum += *p.x.add(r * p.d_in + i) * *p.w.add(o * p.d_in + i) };
    }
    sum
}

/// Lanes of the scalar path's accumulators (a row's sum is split like a vector's).
const SCALAR_LANES: usize = 8;

/// # Safety
/// As [`run_block`].
unsafe fn block_scalar(p: &Problem, o0: usize, o1: usize) {
    /// # Safety
    /// `r0 + R <= p.rows`, `o0 + O <= p.d_out`, `p` valid.
    unsafe fn tile<const R: usize, const O: usize>(p: &Problem, r0: usize, o0: usize) {
        let n = p.d_in / SCALAR_LANES * SCALAR_LANES;
        let mut acc = [[[0f32; SCALAR_LANES]; O]; R];
        let mut i = 0;
        while i < n {
            for o in 0..O {
                // SAFETY: `i + SCALAR_LANES <= d_in`, rows and outputs in bounds.
                let w = unsafe {
                    std::slice::from_raw_parts(p.w.add((o0 + o) * p.d_in + i), SCALAR_LANES)
                };
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    // SAFETY: as above.
                    let x = unsafe {
                        std::slice::from_raw_parts(p.x.add((r0 + r) * p.d_in + i), SCALAR_LANES)
                    };
                    for l in 0..SCALAR_LANES {
                        acc_r[o][l] += x[l] * w[l];
                    }
                }
            }
            i += SCALAR_LANES;
        }
        for (r, acc_r) in acc.iter().enumerate() {
            for (o, lanes) in acc_r.iter().enumerate() {
                let mut s = 0.0;
                for v in lanes {
                    s += v;
                }
                // SAFETY: in bounds by the contract.
                unsafe {
                    let s = tail(p, r0 + r, o0 + o, n, s);
                    store(p, r0 + r, o0 + o, s);
                }
            }
        }
    }
    // SAFETY: every tile stays inside `rows` and `o0..o1`.
    unsafe { walk_tiles!(p, o0, o1, 4, tile) }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Problem, ROW_TILE, store, tail};
    use std::arch::x86_64::*;

    /// Sum of the 8 lanes: halves, then pairs, then the last two.
    #[inline(always)]
    unsafe fn hsum128(s: __m128) -> f32 {
        // SAFETY: SSE is part of x86-64.
        unsafe {
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
            _mm_cvtss_f32(s)
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn hsum256(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        // SAFETY: SSE is part of x86-64.
        unsafe { hsum128(s) }
    }

    /// # Safety
    /// As `super::run_block`, on a CPU with AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn block_avx2(p: &Problem, o0: usize, o1: usize) {
        /// # Safety
        /// `r0 + R <= p.rows`, `o0 + O <= p.d_out`, `p` valid, AVX2 and FMA present.
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn tile<const R: usize, const O: usize>(p: &Problem, r0: usize, o0: usize) {
            let n = p.d_in / 8 * 8;
            let mut acc = [[_mm256_setzero_ps(); O]; R];
            let mut i = 0;
            while i < n {
                let mut w = [_mm256_setzero_ps(); O];
                for (o, w) in w.iter_mut().enumerate() {
                    // SAFETY: `i + 8 <= d_in`, output `o0 + o` in bounds.
                    *w = unsafe { _mm256_loadu_ps(p.w.add((o0 + o) * p.d_in + i)) };
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: row `r0 + r` in bounds.
                    let x = unsafe { _mm256_loadu_ps(p.x.add((r0 + r) * p.d_in + i)) };
                    for o in 0..O {
                        acc[o] = _mm256_fmadd_ps(x, w[o], acc[o]);
                    }
                }
                i += 8;
            }
            for (r, acc) in acc.iter().enumerate() {
                for (o, &v) in acc.iter().enumerate() {
                    // SAFETY: in bounds by the contract; AVX2 present.
                    unsafe {
                        let s = tail(p, r0 + r, o0 + o, n, hsum256(v));
                        store(p, r0 + r, o0 + o, s);
                    }
                }
            }
        }
        // 4 rows × 3 outputs: 12 accumulators + 3 weights + 1 input of the 16 registers.
        // SAFETY: every tile stays inside `rows` and `o0..o1`.
        unsafe { walk_tiles!(p, o0, o1, 3, tile) }
    }

    /// # Safety
    /// As `super::run_block`, on a CPU with AVX-512F.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn block_avx512(p: &Problem, o0: usize, o1: usize) {
        /// # Safety
        /// `r0 + R <= p.rows`, `o0 + O <= p.d_out`, `p` valid, AVX-512F present.
        #[target_feature(enable = "avx512f,avx2,fma")]
        #[inline]
        unsafe fn tile<const R: usize, const O: usize>(p: &Problem, r0: usize, o0: usize) {
            let n = p.d_in / 16 * 16;
            let mut acc = [[_mm512_setzero_ps(); O]; R];
            let mut i = 0;
            while i < n {
                let mut w = [_mm512_setzero_ps(); O];
                for (o, w) in w.iter_mut().enumerate() {
                    // SAFETY: `i + 16 <= d_in`, output `o0 + o` in bounds.
                    *w = unsafe { _mm512_loadu_ps(p.w.add((o0 + o) * p.d_in + i)) };
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: row `r0 + r` in bounds.
                    let x = unsafe { _mm512_loadu_ps(p.x.add((r0 + r) * p.d_in + i)) };
                    for o in 0..O {
                        acc[o] = _mm512_fmadd_ps(x, w[o], acc[o]);
                    }
                }
                i += 16;
            }
            for (r, acc) in acc.iter().enumerate() {
                for (o, &v) in acc.iter().enumerate() {
                    let half = _mm256_add_ps(
                        _mm512_castps512_ps256(v),
                        _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))),
                    );
                    // SAFETY: in bounds by the contract; AVX2 present.
                    unsafe {
                        let s = tail(p, r0 + r, o0 + o, n, hsum256(half));
                        store(p, r0 + r, o0 + o, s);
                    }
                }
            }
        }
        // 4 rows × 4 outputs: 16 accumulators + 4 weights + 1 input of the 32 registers.
        // SAFETY: every tile stays inside `rows` and `o0..o1`.
        unsafe { walk_tiles!(p, o0, o1, 4, tile) }
    }
}

/// Inputs for the kernels' unit tests: the same deterministic values in every module.
#[cfg(test)]
mod test_data {
    /// A deterministic pseudo-random value in [-1, 1).
    fn value(seed: u64, i: usize) -> f32 {
        let mut z = seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// `n` such values.
    pub(crate) fn fill(seed: u64, n: usize) -> Vec<f32> {
        (0..n).map(|i| value(seed, i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_data::fill;

    fn reference(
        x: &[f32],
        rows: usize,
        w: &[f32],
        d_in: usize,
        d_out: usize,
        bias: Option<&[f32]>,
    ) -> Vec<f64> {
        let mut y = vec![0f64; rows * d_out];
        for r in 0..rows {
            for o in 0..d_out {
                let mut s = bias.map_or(0.0, |b| b[o] as f64);
                for i in 0..d_in {
                    s += x[r * d_in + i] as f64 * w[o * d_in + i] as f64;
                }
                y[r * d_out + o] = s;
            }
        }
        y
    }

    const PATHS: [Path; 3] = [Path::Avx512, Path::Avx2, Path::Scalar];

    /// Every available path against the f64 reference for 1..=16 rows and sizes that are not
    /// multiples of the vector widths or the tiles; the error bound is f32 rounding of a sum
    /// of `d_in` products of values in [-1, 1).
    #[test]
    fn matches_f64_reference() {
        let mut skipped = Vec::new();
        for path in PATHS {
            if !path.available() {
                skipped.push(path.name());
                continue;
            }
            for &(d_in, d_out) in &[
                (1, 1),
                (7, 5),
                (17, 9),
                (33, 31),
                (100, 67),
                (768, 203),
                (1029, 130),
            ] {
                for rows in 1..=MAX_ROWS {
                    let x = fill(1 + rows as u64, rows * d_in);
                    let w = fill(1000 + d_in as u64, d_out * d_in);
                    let b = fill(7, d_out);
                    for bias in [None, Some(&b[..])] {
                        let mut y = vec![f32::NAN; rows * d_out];
                        linear_rows_on(path, &x, rows, &w, d_in, d_out, bias, &mut y).unwrap();
                        let want = reference(&x, rows, &w, d_in, d_out, bias);
                        let tol = 4.0 * f32::EPSILON as f64 * d_in as f64;
                        for (k, (&got, &want)) in y.iter().zip(&want).enumerate() {
                            assert!(
                                (got as f64 - want).abs() <= tol,
                                "{} rows {rows} {d_in}->{d_out} bias {} at {k}: {got} vs {want}",
                                path.name(),
                                bias.is_some()
                            );
                        }
                    }
                }
            }
        }
        eprintln!("linear_rows paths skipped on this CPU: {skipped:?}");
    }

    /// A row's outputs are bit-for-bit the same alone and among up to 72 rows (8 prompts
    /// prefilled together), on the serial and the threaded split (the large shape crosses
    /// the threading threshold).
    #[test]
    fn a_row_alone_equals_it_in_a_batch() {
        const MOST: usize = 72;
        for path in PATHS.into_iter().filter(|p| p.available()) {
            for &(d_in, d_out) in &[(37, 19), (768, 3072)] {
                let w = fill(3, d_out * d_in);
                let b = fill(4, d_out);
                let x = fill(5, MOST * d_in);
                let mut all = vec![0f32; MOST * d_out];
                linear_rows_on(path, &x, MOST, &w, d_in, d_out, Some(&b), &mut all).unwrap();
                for rows in (1..=MAX_ROWS).chain([17, 33, 71, MOST]) {
                    let mut some = vec![0f32; rows * d_out];
                    linear_rows_on(
                        path,
                        &x[..rows * d_in],
                        rows,
                        &w,
                        d_in,
                        d_out,
                        Some(&b),
                        &mut some,
                    )
                    .unwrap();
                    assert!(
                        some == all[..rows * d_out],
                        "{} {d_in}->{d_out}: {rows} rows differ from the same rows among {MOST}",
                        path.name()
                    );
                }
            }
        }
    }

    #[test]
    fn refuses_bad_shapes() {
        let (x, w, mut y) = (vec![0f32; 6], vec![0f32; 6], vec![0f32; 4]);
        assert_eq!(
            linear_rows(&x, 0, &w, 3, 2, None, &mut y),
            Err(LinearError::Rows(0))
        );
        assert_eq!(
            linear_rows(&x, ROW_LIMIT + 1, &w, 3, 2, None, &mut y),
            Err(LinearError::Rows(ROW_LIMIT + 1))
        );
        assert_eq!(
            linear_rows(&x, 2, &w, 3, 2, Some(&[0.0]), &mut y),
            Err(LinearError::Len("bias", 2, 1))
        );
        assert_eq!(
            linear_rows(&x, 2, &w[..5], 3, 2, None, &mut y),
            Err(LinearError::Len("w", 6, 5))
        );
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let w = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        linear_rows(&x, 2, &w, 3, 2, Some(&[0.5, -1.0]), &mut y).unwrap();
        assert_eq!(y, [4.5, 1.0, 10.5, 4.0]);
    }
}
