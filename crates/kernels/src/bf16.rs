//! A bf16 linear layer: `y[r, o] = bias[o] + Σ_i x[r, i] · w[o, i]` with the weight held as
//! bf16 (converted once, [`Bf16Weight::pack`]), the rows of `x` converted to bf16 on each
//! call and every sum accumulated in f32.
//!
//! bf16 is the top half of an f32 (sign, 8 exponent bits, 7 mantissa bits): converting
//! rounds to nearest, ties to even; widening back is a 16-bit shift. The product of two
//! bf16 values has at most 16 significant bits, so it is exact in f32: the paths differ only
//! in the order of the f32 additions.
//!
//! Paths, picked at run time ([`Bf16Path::best`]):
//! - **avx512-bf16**: `vdpbf16ps` (`_mm512_dpbf16_ps`) adds, per f32 lane, the products of
//!   two adjacent bf16 pairs. The weight is packed so that one 64-byte load holds 16 output
//!   columns × 2 consecutive inputs, and the matching pair of `x` is broadcast to all lanes.
//!   The instruction treats subnormal inputs as zero and flushes subnormal results (Intel's
//!   definition of `VDPBF16PS`); model activations and weights are far above 2⁻¹²⁶.
//! - **avx2-fma**: the same packed weight widened to f32 (shift left 16 for the even input,
//!   mask the high half for the odd one) and `vfmadd` in f32.
//! - **scalar**: plain Rust over the same layout.
//!
//! Work is split over blocks of 64 output columns on rayon's global pool; rows are any
//! number (tiles of 4, the last one padded with zero rows that are never written back). A
//! row's outputs do not depend on the other rows of the call.

use rayon::prelude::*;
use std::fmt;

/// Output columns per packed block: one zmm of f32 accumulators.
const NB: usize = 16;
/// Rows per micro-tile.
const MR: usize = 4;
/// Packed blocks per micro-tile (MR × TB accumulators: 16 zmm on AVX-512).
const TB: usize = 4;
/// Output columns per micro-tile (and per parallel task).
const TILE_N: usize = NB * TB;

/// The instruction set the bf16 linear runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bf16Path {
    /// AVX-512 BF16: `vdpbf16ps` on 512-bit registers.
    Avx512Bf16,
    /// AVX2 and FMA: bf16 widened to f32, fused multiply-add.
    Avx2,
    /// Plain Rust, any CPU.
    Scalar,
}

impl Bf16Path {
    /// All paths, fastest first.
    pub const ALL: [Bf16Path; 3] = [Bf16Path::Avx512Bf16, Bf16Path::Avx2, Bf16Path::Scalar];

    /// A short name (`avx512-bf16`, `avx2-fma`, `scalar`).
    pub fn name(self) -> &'static str {
        match self {
            Bf16Path::Avx512Bf16 => "avx512-bf16",
            Bf16Path::Avx2 => "avx2-fma",
            Bf16Path::Scalar => "scalar",
        }
    }

    /// Whether this CPU runs `self`.
    pub fn available(self) -> bool {
        match self {
            Bf16Path::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Bf16Path::Avx512Bf16 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bf16")
            }
            #[cfg(target_arch = "x86_64")]
            Bf16Path::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The fastest path this CPU runs (detected once).
    pub fn best() -> Bf16Path {
        static BEST: std::sync::OnceLock<Bf16Path> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            Bf16Path::ALL
                .into_iter()
                .find(|p| p.available())
                .unwrap_or(Bf16Path::Scalar)
        })
    }
}

/// Why a bf16 function refused its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bf16Error {
    /// A buffer's length does not match the shape: (which, expected, got).
    Len(&'static str, usize, usize),
    /// The requested [`Bf16Path`] does not run on this CPU.
    Unavailable(Bf16Path),
}

impl fmt::Display for Bf16Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bf16Error::Len(what, want, got) => write!(
                f,
                "bf16 linear: `{what}` holds {got} values, the shape needs {want}"
            ),
            Bf16Error::Unavailable(p) => {
                write!(
                    f,
                    "bf16 linear: this CPU does not run the {} path",
                    p.name()
                )
            }
        }
    }
}

impl std::error::Error for Bf16Error {}

/// `v` rounded to bf16, to nearest with ties to even; NaN stays NaN (quiet, sign kept),
/// values past the largest bf16 round to ±infinity.
pub fn f32_to_bf16(v: f32) -> u16 {
    let bits = v.to_bits();
    if v.is_nan() {
        return ((bits >> 16) | 0x0040) as u16;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// The f32 value of bf16 `b` (exact).
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// A weight `[n, k]` (torch's `[out, in]`) rounded to bf16 and packed for the kernels:
/// blocks of 16 output columns, each `[k/2][16][2]` (two consecutive inputs of one column
/// side by side, what one `vdpbf16ps` lane reads); `n` padded to whole 64-column tiles and
/// `k` to an even count, with zeros.
#[derive(Debug, Clone)]
pub struct Bf16Weight {
    n: usize,
    k: usize,
    /// Input pairs per column (`k` rounded up to even, halved).
    kp2: usize,
    data: Vec<u16>,
}

impl Bf16Weight {
    /// Rounds `w` (row-major `[n, k]`) to bf16 and packs it.
    pub fn pack(w: &[f32], n: usize, k: usize) -> Result<Self, Bf16Error> {
        if w.len() != n * k {
            return Err(Bf16Error::Len("w", n * k, w.len()));
        }
        let kp2 = k.div_ceil(2);
        let np = n.div_ceil(TILE_N) * TILE_N;
        let mut data = vec![0u16; np * kp2 * 2];
        let block = kp2 * NB * 2;
        data.par_chunks_mut(block.max(1))
            .enumerate()
            .for_each(|(blk, dst)| {
                for lane in 0..NB {
                    let c = blk * NB + lane;
                    if c >= n {
                        break;
                    }
                    for (i, &v) in w[c * k..(c + 1) * k].iter().enumerate() {
                        dst[(i / 2) * NB * 2 + lane * 2 + i % 2] = f32_to_bf16(v);
                    }
                }
            });
        Ok(Bf16Weight { n, k, kp2, data })
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.n
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.k
    }

    /// Bytes held by the packed weight.
    pub fn bytes(&self) -> usize {
        2 * self.data.len()
    }

    /// The bf16 value stored for `w[o, i]`.
    pub fn get(&self, o: usize, i: usize) -> u16 {
        assert!(
            o < self.n && i < self.k,
            "({o}, {i}) outside {}×{}",
            self.n,
            self.k
        );
        let (blk, lane) = (o / NB, o % NB);
        self.data[blk * self.kp2 * NB * 2 + (i / 2) * NB * 2 + lane * 2 + i % 2]
    }
}

/// `y[r, o] = bias[o] + Σ_i x[r, i] · w[o, i]` for `r < rows`: `x` is `[rows, k]`, `y`
/// `[rows, n]`, row-major f32; `w` packed by [`Bf16Weight::pack`]. `x` is rounded to bf16,
/// the sums are f32. Runs on [`Bf16Path::best`].
pub fn linear_bf16(
    x: &[f32],
    rows: usize,
    w: &Bf16Weight,
    bias: Option<&[f32]>,
    y: &mut [f32],
) -> Result<(), Bf16Error> {
    linear_bf16_on(Bf16Path::best(), x, rows, w, bias, y)
}

/// [`linear_bf16`] on a given [`Bf16Path`] (the tests and benchmarks compare them); refuses
/// a path this CPU does not run.
pub fn linear_bf16_on(
    path: Bf16Path,
    x: &[f32],
    rows: usize,
    w: &Bf16Weight,
    bias: Option<&[f32]>,
    y: &mut [f32],
) -> Result<(), Bf16Error> {
    let (n, k, kp2) = (w.n, w.k, w.kp2);
    let want = |what, n: usize, got: usize| {
        if n == got {
            Ok(())
        } else {
            Err(Bf16Error::Len(what, n, got))
        }
    };
    want("x", rows * k, x.len())?;
    want("y", rows * n, y.len())?;
    if let Some(b) = bias {
        want("bias", n, b.len())?;
    }
    if !path.available() {
        return Err(Bf16Error::Unavailable(path));
    }
    if rows == 0 || n == 0 {
        return Ok(());
    }
    // The rows as bf16 pairs (one u32 per two inputs, the even one in the low half), padded
    // to whole row tiles and to an even `k` with zeros.
    let mp = rows.div_ceil(MR) * MR;
    let mut xs = vec![0u32; mp * kp2];
    let convert = |(r, dst): (usize, &mut [u32])| {
        if r >= rows {
            return;
        }
        let src = &x[r * k..(r + 1) * k];
        for (p, d) in dst.iter_mut().enumerate() {
            let lo = f32_to_bf16(src[2 * p]) as u32;
            let hi = src.get(2 * p + 1).map_or(0, |&v| f32_to_bf16(v)) as u32;
            *d = lo | (hi << 16);
        }
    };
    if rows * k >= 1 << 16 {
        xs.par_chunks_mut(kp2.max(1)).enumerate().for_each(convert);
    } else {
        xs.chunks_mut(kp2.max(1)).enumerate().for_each(convert);
    }
    let p = Problem {
        xs: xs.as_ptr(),
        rows,
        w: w.data.as_ptr(),
        kp2,
        n,
        bias: bias.map(|b| b.as_ptr()),
        y: y.as_mut_ptr(),
    };
    let tiles = n.div_ceil(TILE_N);
    let work = rows * k * n;
    if work < 1 << 17 || rayon::current_num_threads() <= 1 || tiles == 1 {
        for t in 0..tiles {
            // SAFETY: lengths checked above; `t` is a tile of the padded weight.
            unsafe { run_tile(path, &p, t) };
        }
    } else {
        let shared = Shared(p);
        (0..tiles).into_par_iter().for_each(|t| {
            let p = &shared;
            // SAFETY: lengths checked above; tiles write disjoint output columns of `y`,
            // the other buffers are only read and outlive the parallel loop.
            unsafe { run_tile(path, &p.0, t) };
        });
    }
    Ok(())
}

/// The checked arguments of one call, as raw pointers so that threads can write disjoint
/// columns of `y`.
#[derive(Clone, Copy)]
struct Problem {
    /// `[rows padded to MR][kp2]` bf16 pairs.
    xs: *const u32,
    rows: usize,
    /// The packed weight (whole tiles).
    w: *const u16,
    kp2: usize,
    n: usize,
    bias: Option<*const f32>,
    y: *mut f32,
}

struct Shared(Problem);
// SAFETY: tasks read `xs`, `w`, `bias` and write disjoint columns of `y`; the parallel loop
// ends before the borrowed buffers do.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

/// Accumulators of one micro-tile: `[MR][TILE_N]` f32.
type Acc = [[f32; TILE_N]; MR];

/// Computes output tile `t` (columns `64t..64t+64`) for every row.
///
/// # Safety
/// `p` describes valid buffers of the checked lengths, `t` is below the tile count, `path`
/// runs on this CPU.
unsafe fn run_tile(path: Bf16Path, p: &Problem, t: usize) {
    let mut acc: Acc = [[0.0; TILE_N]; MR];
    let block = p.kp2 * NB * 2;
    let mut r0 = 0;
    while r0 < p.rows {
        // SAFETY: tile `t` holds TB blocks of `block` values; rows r0..r0+MR are inside the
        // padded `xs`.
        unsafe {
            let ws = p.w.add(t * TB * block);
            let xs = p.xs.add(r0 * p.kp2);
            match path {
                #[cfg(target_arch = "x86_64")]
                Bf16Path::Avx512Bf16 => x86::tile_avx512(xs, ws, p.kp2, &mut acc),
                #[cfg(target_arch = "x86_64")]
                Bf16Path::Avx2 => x86::tile_avx2(xs, ws, p.kp2, &mut acc),
                _ => tile_scalar(xs, ws, p.kp2, &mut acc),
            }
            store(p, r0, t * TILE_N, &acc);
        }
        r0 += MR;
    }
}

/// Writes the real rows and columns of `acc` (rows `r0..`, columns `c0..`) plus the bias.
///
/// # Safety
/// `p` valid, `r0 < p.rows`, `c0 < p.n`.
unsafe fn store(p: &Problem, r0: usize, c0: usize, acc: &Acc) {
    let cols = (p.n - c0).min(TILE_N);
    for (r, acc) in acc.iter().enumerate().take((p.rows - r0).min(MR)) {
        for (c, &v) in acc.iter().enumerate().take(cols) {
            // SAFETY: row `r0 + r < rows`, column `c0 + c < n`.
            unsafe {
                let b = p.bias.map_or(0.0, |b| *b.add(c0 + c));
                *p.y.add((r0 + r) * p.n + c0 + c) = v + b;
            }
        }
    }
}

/// # Safety
/// `xs` holds `MR × kp2` pairs, `ws` `TB` blocks of `kp2 × NB × 2` values.
unsafe fn tile_scalar(xs: *const u32, ws: *const u16, kp2: usize, acc: &mut Acc) {
    // SAFETY: the lengths the caller guarantees.
    let (xs, ws) = unsafe {
        (
            std::slice::from_raw_parts(xs, MR * kp2),
            std::slice::from_raw_parts(ws, TB * kp2 * NB * 2),
        )
    };
    *acc = [[0.0; TILE_N]; MR];
    for (r, acc) in acc.iter_mut().enumerate() {
        let x = &xs[r * kp2..(r + 1) * kp2];
        for b in 0..TB {
            let w = &ws[b * kp2 * NB * 2..(b + 1) * kp2 * NB * 2];
            let acc = &mut acc[b * NB..(b + 1) * NB];
            for (pair, &xp) in x.iter().enumerate() {
                let (xe, xo) = (f32::from_bits(xp << 16), f32::from_bits(xp & 0xffff_0000));
                let wp = &w[pair * NB * 2..(pair + 1) * NB * 2];
                for (lane, a) in acc.iter_mut().enumerate() {
                    *a += xe * bf16_to_f32(wp[2 * lane]);
                    *a += xo * bf16_to_f32(wp[2 * lane + 1]);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Acc, MR, NB, TB};
    use std::arch::x86_64::*;

    /// # Safety
    /// As `super::tile_scalar`, on a CPU with AVX-512F and AVX-512 BF16.
    #[target_feature(enable = "avx512bf16,avx512f")]
    pub(super) unsafe fn tile_avx512(xs: *const u32, ws: *const u16, kp2: usize, out: &mut Acc) {
        let mut acc = [[_mm512_setzero_ps(); TB]; MR];
        let block = kp2 * NB * 2;
        for p in 0..kp2 {
            let mut w = [_mm512_setzero_si512(); TB];
            for (b, w) in w.iter_mut().enumerate() {
                // SAFETY: pair `p` of block `b` is 32 values inside the tile.
                *w = unsafe { _mm512_loadu_si512(ws.add(b * block + p * NB * 2) as *const _) };
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                // SAFETY: row `r < MR`, pair `p < kp2`.
                let x = _mm512_set1_epi32(unsafe { *xs.add(r * kp2 + p) } as i32);
                // SAFETY: __m512i and __m512bh are both 64 bytes of plain data.
                let x: __m512bh = unsafe { std::mem::transmute(x) };
                for b in 0..TB {
                    // SAFETY: as above.
                    let wb: __m512bh = unsafe { std::mem::transmute(w[b]) };
                    acc[b] = _mm512_dpbf16_ps(acc[b], x, wb);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (b, &v) in acc.iter().enumerate() {
                // SAFETY: 16 floats inside row `r` of `out`.
                unsafe { _mm512_storeu_ps(out[r].as_mut_ptr().add(b * NB), v) };
            }
        }
    }

    /// # Safety
    /// As `super::tile_scalar`, on a CPU with AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile_avx2(xs: *const u32, ws: *const u16, kp2: usize, out: &mut Acc) {
        let high = _mm256_set1_epi32(0xffff_0000u32 as i32);
        let block = kp2 * NB * 2;
        for b in 0..TB {
            // 4 rows × 16 columns: 8 accumulators, 4 widened weights, 2 broadcasts.
            let mut acc = [[_mm256_setzero_ps(); 2]; MR];
            let wb = ws.wrapping_add(b * block);
            for p in 0..kp2 {
                let mut we = [_mm256_setzero_ps(); 2];
                let mut wo = [_mm256_setzero_ps(); 2];
                for h in 0..2 {
                    // SAFETY: pair `p` of block `b` is 32 values (64 bytes) inside the tile.
                    let v = unsafe {
                        _mm256_loadu_si256(wb.add(p * NB * 2 + h * NB) as *const __m256i)
                    };
                    we[h] = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(v));
                    wo[h] = _mm256_castsi256_ps(_mm256_and_si256(v, high));
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: row `r < MR`, pair `p < kp2`.
                    let xp = unsafe { *xs.add(r * kp2 + p) };
                    let xe = _mm256_set1_ps(f32::from_bits(xp << 16));
                    let xo = _mm256_set1_ps(f32::from_bits(xp & 0xffff_0000));
                    for h in 0..2 {
                        acc[h] = _mm256_fmadd_ps(xe, we[h], acc[h]);
                        acc[h] = _mm256_fmadd_ps(xo, wo[h], acc[h]);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                for (h, &v) in acc.iter().enumerate() {
                    // SAFETY: 8 floats inside row `r` of `out`.
                    unsafe { _mm256_storeu_ps(out[r].as_mut_ptr().add(b * NB + h * 8), v) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_data::fill;

    #[test]
    fn rounds_to_nearest_even() {
        // 1 + 2⁻⁸ is halfway between 1 and the next bf16 (1 + 2⁻⁷): ties to 1 (even).
        assert_eq!(f32_to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        // 1 + 3·2⁻⁸ is halfway between 1 + 2⁻⁷ (odd) and 1 + 2⁻⁶: ties up to even.
        assert_eq!(f32_to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        // Just above the halfway point rounds up.
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(f32_to_bf16(-2.0), 0xc000);
        assert_eq!(f32_to_bf16(f32::INFINITY), 0x7f80);
        assert_eq!(f32_to_bf16(f32::MAX), 0x7f80);
        assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
        assert_eq!(bf16_to_f32(0x4049), 3.140625);
    }

    /// `y` in f64 from the bf16-rounded `x` and the packed weight's bf16 values, and the
    /// sum of |products| (+ |bias|) per output, for the error bound.
    fn reference(
        x: &[f32],
        rows: usize,
        w: &Bf16Weight,
        bias: Option<&[f32]>,
    ) -> (Vec<f64>, Vec<f64>) {
        let (n, k) = (w.out_features(), w.in_features());
        let mut y = vec![0f64; rows * n];
        let mut mag = vec![0f64; rows * n];
        for r in 0..rows {
            for o in 0..n {
                let b = bias.map_or(0.0, |b| b[o] as f64);
                let (mut s, mut m) = (b, b.abs());
                for i in 0..k {
                    let xv = bf16_to_f32(f32_to_bf16(x[r * k + i])) as f64;
                    let p = xv * bf16_to_f32(w.get(o, i)) as f64;
                    s += p;
                    m += p.abs();
                }
                y[r * n + o] = s;
                mag[r * n + o] = m;
            }
        }
        (y, mag)
    }

    /// Every available path against the f64 reference on the same bf16-rounded inputs, for
    /// sizes that are not multiples of the vector widths or tiles, 1 to 9 rows and 70 rows,
    /// with and without bias. Each product of two bf16 values is exact in f32, so the only
    /// error is f32 rounding of the `k + 1` additions: at most `(k + 1)·2⁻²⁴·Σ|terms|`
    /// (the classic bound for recursive summation, whatever the order); asserted with
    /// `(k + 2)·2⁻²³·Σ|terms|`, twice that.
    #[test]
    fn every_path_matches_the_f64_reference() {
        let mut skipped = Vec::new();
        for path in Bf16Path::ALL {
            if !path.available() {
                skipped.push(path.name());
                continue;
            }
            for &(k, n) in &[
                (1, 1),
                (2, 3),
                (7, 5),
                (17, 9),
                (33, 31),
                (100, 67),
                (768, 203),
                (1029, 130),
            ] {
                let w = fill(1000 + k as u64, n * k);
                let packed = Bf16Weight::pack(&w, n, k).unwrap();
                let b = fill(7, n);
                for rows in (1..=9).chain([70]) {
                    let x = fill(1 + rows as u64, rows * k);
                    for bias in [None, Some(&b[..])] {
                        let mut y = vec![f32::NAN; rows * n];
                        linear_bf16_on(path, &x, rows, &packed, bias, &mut y).unwrap();
                        let (want, mag) = reference(&x, rows, &packed, bias);
                        for (i, &got) in y.iter().enumerate() {
                            let tol = (k as f64 + 2.0) * f32::EPSILON as f64 * mag[i];
                            assert!(
                                (got as f64 - want[i]).abs() <= tol,
                                "{} rows {rows} {k}->{n} bias {} at {i}: {got} vs {}",
                                path.name(),
                                bias.is_some(),
                                want[i]
                            );
                        }
                    }
                }
            }
        }
        eprintln!("bf16 paths skipped on this CPU: {skipped:?}");
    }

    /// A row's outputs are bit-for-bit the same alone and among others, on the serial and
    /// the threaded split (the large shape crosses the threading threshold).
    #[test]
    fn a_row_alone_equals_it_in_a_batch() {
        for path in Bf16Path::ALL.into_iter().filter(|p| p.available()) {
            for &(k, n) in &[(37, 19), (768, 3072)] {
                let w = Bf16Weight::pack(&fill(3, n * k), n, k).unwrap();
                let b = fill(4, n);
                let rows = 13;
                let x = fill(5, rows * k);
                let mut all = vec![0f32; rows * n];
                linear_bf16_on(path, &x, rows, &w, Some(&b), &mut all).unwrap();
                for r in [0, 5, 12] {
                    let mut one = vec![0f32; n];
                    linear_bf16_on(path, &x[r * k..(r + 1) * k], 1, &w, Some(&b), &mut one)
                        .unwrap();
                    assert!(
                        one == all[r * n..(r + 1) * n],
                        "{} {k}->{n}: row {r} alone differs from it among {rows}",
                        path.name()
                    );
                }
            }
        }
    }

    #[test]
    fn refuses_bad_shapes() {
        assert_eq!(
            Bf16Weight::pack(&[0.0; 5], 2, 3).unwrap_err(),
            Bf16Error::Len("w", 6, 5)
        );
        let w = Bf16Weight::pack(&[1.0, 0.0, 1.0, 0.0, 1.0, 0.0], 2, 3).unwrap();
        let mut y = vec![0f32; 4];
        assert_eq!(
            linear_bf16(&[0.0; 5], 2, &w, None, &mut y),
            Err(Bf16Error::Len("x", 6, 5))
        );
        assert_eq!(
            linear_bf16(&[0.0; 6], 2, &w, Some(&[0.0]), &mut y),
            Err(Bf16Error::Len("bias", 2, 1))
        );
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        linear_bf16(&x, 2, &w, Some(&[0.5, -1.0]), &mut y).unwrap();
        assert_eq!(y, [4.5, 1.0, 10.5, 4.0]);
        linear_bf16(&[], 0, &w, None, &mut []).unwrap();
    }
}
