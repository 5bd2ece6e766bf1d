//! int8 linear layers for CPU inference: `y[m, n] = x[m, k] · W[n, k]ᵀ + b` with `W`
//! quantized once (symmetric, per output channel: i8 in −127..=127 and one f32 scale per row
//! of `W`, packed for the kernel) and `x` quantized per row on the fly (dynamic
//! quantization: symmetric i8 in −127..=127, one scale per row). Products accumulate in i32
//! exactly and are dequantized to f32 with `x_scale[r] · w_scale[c]`, plus the bias.
//!
//! **Why symmetric i8 activations.** x86's byte dot products multiply an *unsigned* byte by a
//! signed one. AVX2's `vpmaddubsw` adds two such products into an i16 *with saturation*:
//! u8 activations (0..=255, what a zero point gives) times i8 weights reach 2·255·127 =
//! 64 770 and saturate, which is why PyTorch's fbgemm reduces activations to 7 bits. Here
//! the activations are i8 with |x| ≤ 127 and the AVX2 path feeds `|x|` as the unsigned
//! operand and `sign(x)·w` as the signed one (`vpabsb`/`vpsignb`): each pair sums to at most
//! 2·127·127 = 32 258 < 32 767, so nothing saturates, with 255 levels instead of torch's 128.
//! The VNNI paths (`vpdpbusd`, which accumulates straight into i32 without saturation) feed
//! `x + 128` as the unsigned operand and subtract `128·Σ_k w[c, k]` (precomputed per column)
//! afterwards. Every path thus computes the same i32 sums as the scalar reference, bit for
//! bit, so the model's results do not depend on which CPU runs them.
//!
//! Paths, picked at run time: AVX-512 VNNI (`vpdpbusd` on zmm), AVX-VNNI (the VEX-encoded
//! `vpdpbusd` on ymm), AVX2 (`vpmaddubsw` + `vpmaddwd`) and a portable scalar loop. Rows are
//! split over rayon's global pool (the one the f32 kernels use).
//!
//! Crates checked before writing this: `gemm` (the f32/f64/c32/c64 GEMM Flex runs) has no
//! integer path; `rten-gemm` has u8×i8 kernels but comes with its own tensor, packing and
//! thread-pool types (the rten runtime's), heavier to adopt than the few hundred lines here.

use rayon::prelude::*;

/// Columns per packed block: one zmm (or two ymm) of i32 accumulators.
pub const NB: usize = 16;
/// Rows per micro-tile.
const MR: usize = 4;
/// Packed blocks per micro-tile (MR × TILE_N accumulators: 16 zmm on AVX-512).
const TB: usize = 4;
/// Columns per micro-tile.
const TILE_N: usize = NB * TB;

/// Which kernel computes the integer products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// AVX-512 VNNI: `vpdpbusd` on 512-bit registers.
    Avx512Vnni,
    /// AVX-VNNI: the VEX-encoded `vpdpbusd` on 256-bit registers (no AVX-512 needed).
    AvxVnni,
    /// AVX2: `vpmaddubsw` + `vpmaddwd`.
    Avx2,
    /// Portable loops.
    Scalar,
}

impl Path {
    /// All paths, fastest first.
    pub const ALL: [Path; 4] = [Path::Avx512Vnni, Path::AvxVnni, Path::Avx2, Path::Scalar];

    /// The name `--verbose`, the benchmarks and the tests print.
    pub fn name(self) -> &'static str {
        match self {
            Path::Avx512Vnni => "avx512-vnni",
            Path::AvxVnni => "avx-vnni",
            Path::Avx2 => "avx2",
            Path::Scalar => "scalar",
        }
    }

    /// Whether this CPU can run the path.
    pub fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Path::Avx512Vnni => {
                    is_x86_feature_detected!("avx512f")
                        && is_x86_feature_detected!("avx512bw")
                        && is_x86_feature_detected!("avx512vnni")
                }
                Path::AvxVnni => {
                    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("avxvnni")
                }
                Path::Avx2 => is_x86_feature_detected!("avx2"),
                Path::Scalar => true,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Path::Scalar
        }
    }

    /// The path [`linear`] runs: the one [`force`] set, else the fastest this CPU has
    /// (detected once).
    pub fn best() -> Path {
        use std::sync::OnceLock;
        static BEST: OnceLock<Path> = OnceLock::new();
        let forced = FORCED.load(std::sync::atomic::Ordering::Relaxed);
        if let Some(&p) = Path::ALL.get(forced as usize) {
            return p;
        }
        *BEST.get_or_init(|| {
            Path::ALL
                .into_iter()
                .find(|p| p.available())
                .unwrap_or(Path::Scalar)
        })
    }
}

/// Index into [`Path::ALL`] of the forced path; out of range: none forced.
static FORCED: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(u8::MAX);

/// Makes [`linear`] (and so the model's int8 layers) run `path` instead of the fastest one,
/// process-wide; `None` goes back to the fastest. For benchmarks comparing the paths on one
/// CPU. Fails, changing nothing, when the CPU lacks the path.
pub fn force(path: Option<Path>) -> Result<(), String> {
    let index = match path {
        Some(p) if !p.available() => {
            return Err(format!("this CPU lacks the {} int8 path", p.name()));
        }
        Some(p) => Path::ALL.iter().position(|&q| q == p).unwrap_or(usize::MAX) as u8,
        None => u8::MAX,
    };
    FORCED.store(index, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

impl std::str::FromStr for Path {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Path::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Path::ALL.iter().map(|p| p.name()).collect();
                format!("int8 path `{s}`: expected one of {}", names.join(", "))
            })
    }
}

/// `k` rounded up to the 4-byte groups the kernels read.
fn padded_k(k: usize) -> usize {
    k.div_ceil(4) * 4
}

/// A weight `[n, k]` quantized per output channel and packed for the kernels: blocks of
/// [`NB`] columns, each `[k/4][NB][4]` bytes (4 consecutive `k` of one column side by side,
/// what one `vpdpbusd` lane reads), `n` padded to whole micro-tiles and `k` to a multiple
/// of 4 with zeros.
#[derive(Debug, Clone)]
pub struct PackedWeight {
    n: usize,
    k: usize,
    kp: usize,
    data: Vec<i8>,
    /// `Σ_k w[c, k]` per (padded) column, for the VNNI paths' `+128` offset.
    colsum: Vec<i32>,
    /// Per output channel: `w ≈ q · scale`.
    scale: Vec<f32>,
}

impl PackedWeight {
    /// Quantizes `w` (row-major `[n, k]`, torch's `[out, in]`): per row, `scale =
    /// max|w|/127` and `q = round(w/scale)` (ties to even). Each block of [`NB`] rows is
    /// quantized and packed in place, in parallel: no unpacked copy of the weight is made, so
    /// loading holds only the packed bytes (what [`Self::pack`] of the quantized rows gives).
    pub fn quantize(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(
            w.len(),
            n * k,
            "weight of {} values is not {n}×{k}",
            w.len()
        );
        let kp = padded_k(k);
        let np = n.div_ceil(TILE_N) * TILE_N;
        let mut data = vec![0i8; np * kp];
        let mut colsum = vec![0i32; np];
        let mut scale = vec![0f32; np];
        data.par_chunks_mut((kp * NB).max(1))
            .zip(colsum.par_chunks_mut(NB))
            .zip(scale.par_chunks_mut(NB))
            .enumerate()
            .for_each(|(blk, ((block, sums), scales))| {
                let mut row = vec![0i8; k];
                for lane in 0..NB.min(n.saturating_sub(blk * NB)) {
                    let c = blk * NB + lane;
                    scales[lane] = quantize_row(&w[c * k..(c + 1) * k], &mut row);
                    for (kk, &v) in row.iter().enumerate() {
                        block[(kk / 4) * NB * 4 + lane * 4 + kk % 4] = v;
                    }
                    sums[lane] = row.iter().map(|&v| v as i32).sum();
                }
            });
        scale.truncate(n);
        PackedWeight {
            n,
            k,
            kp,
            data,
            colsum,
            scale,
        }
    }

    /// Packs already quantized `q` (row-major `[n, k]`, values in −127..=127) with its
    /// per-row `scale`.
    pub fn pack(q: &[i8], scale: Vec<f32>, n: usize, k: usize) -> Self {
        assert_eq!(
            q.len(),
            n * k,
            "weight of {} values is not {n}×{k}",
            q.len()
        );
        assert_eq!(scale.len(), n, "{} scales for {n} rows", scale.len());
        assert!(
            q.iter().all(|&v| v != i8::MIN),
            "quantized weights must lie in -127..=127"
        );
        let kp = padded_k(k);
        let np = n.div_ceil(TILE_N) * TILE_N;
        let mut data = vec![0i8; np * kp];
        let mut colsum = vec![0i32; np];
        for c in 0..n {
            let (blk, lane) = (c / NB, c % NB);
            let base = blk * kp * NB;
            for kk in 0..k {
                let v = q[c * k + kk];
                data[base + (kk / 4) * NB * 4 + lane * 4 + kk % 4] = v;
                colsum[c] += v as i32;
            }
        }
        PackedWeight {
            n,
            k,
            kp,
            data,
            colsum,
            scale,
        }
    }

    /// Output channels.
    pub fn out_features(&self) -> usize {
        self.n
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.k
    }

    /// Bytes held (packed weights, column sums, scales).
    pub fn bytes(&self) -> usize {
        self.data.len() + 4 * (self.colsum.len() + self.scale.len())
    }
}

/// Quantizes one row symmetrically into `out` (its first `x.len()` values; the rest are
/// zeroed): returns `scale = max|x|/127` (0 for an all-zero row), `out ≈ x/scale` rounded to
/// nearest, ties to even.
pub fn quantize_row(x: &[f32], out: &mut [i8]) -> f32 {
    assert!(out.len() >= x.len(), "quantized row shorter than the row");
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    if amax == 0.0 || !amax.is_finite() {
        out.fill(0);
        return if amax == 0.0 { 0.0 } else { f32::NAN };
    }
    let inv = 127.0 / amax;
    // 1.5·2^23: adding it rounds a value below 2^22 to an integer (ties to even), in a form
    // the compiler vectorises on any x86 level.
    const MAGIC: f32 = 12_582_912.0;
    for (o, &v) in out.iter_mut().zip(x) {
        let r = (v * inv + MAGIC) - MAGIC;
        *o = r.clamp(-127.0, 127.0) as i8;
    }
    out[x.len()..].fill(0);
    amax / 127.0
}

/// Activations quantized per row: `[rows padded to MR][kp]` i8 and a scale per row.
struct QuantRows {
    q: Vec<i8>,
    scale: Vec<f32>,
}

fn quantize_rows(x: &[f32], m: usize, k: usize, kp: usize) -> QuantRows {
    let mp = m.div_ceil(MR) * MR;
    let mut q = vec![0i8; mp * kp];
    let mut scale = vec![0f32; mp];
    q.par_chunks_mut(kp)
        .zip(scale.par_iter_mut())
        .take(m)
        .enumerate()
        .for_each(|(r, (qr, s))| *s = quantize_row(&x[r * k..(r + 1) * k], qr));
    QuantRows { q, scale }
}

/// One micro-tile: rows `xs` (`MR × kp` i8, row-major) times the `TB` packed blocks `ws`
/// (`TB × kp × NB` bytes) into `acc` (`MR × TILE_N` i32, row-major).
type TileFn = fn(xs: &[i8], ws: &[i8], colsum: &[i32], kp: usize, acc: &mut [i32; MR * TILE_N]);

fn tile_scalar(xs: &[i8], ws: &[i8], _colsum: &[i32], kp: usize, acc: &mut [i32; MR * TILE_N]) {
    assert!(xs.len() >= MR * kp && ws.len() >= TB * kp * NB);
    acc.fill(0);
    for r in 0..MR {
        let x = &xs[r * kp..(r + 1) * kp];
        for b in 0..TB {
            let w = &ws[b * kp * NB..(b + 1) * kp * NB];
            for g in 0..kp / 4 {
                let xg = &x[g * 4..g * 4 + 4];
                for lane in 0..NB {
                    let wg = &w[(g * NB + lane) * 4..(g * NB + lane) * 4 + 4];
                    let mut s = 0i32;
                    for t in 0..4 {
                        s += xg[t] as i32 * wg[t] as i32;
                    }
                    acc[r * TILE_N + b * NB + lane] += s;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{MR, NB, TB, TILE_N};
    use std::arch::x86_64::*;

    /// The 4 bytes of `x` at `at` as one i32 (unaligned read).
    ///
    /// # Safety
    /// `at + 4 <= x.len()`.
    #[inline(always)]
    unsafe fn group(x: &[i8], at: usize) -> i32 {
        debug_assert!(at + 4 <= x.len());
        // SAFETY: the caller keeps `at + 4` within `x`.
        unsafe { (x.as_ptr().add(at) as *const i32).read_unaligned() }
    }

    pub fn tile_avx2(
        xs: &[i8],
        ws: &[i8],
        colsum: &[i32],
        kp: usize,
        acc: &mut [i32; MR * TILE_N],
    ) {
        assert!(xs.len() >= MR * kp && ws.len() >= TB * kp * NB && kp.is_multiple_of(4));
        assert!(super::Path::Avx2.available());
        // SAFETY: the CPU has AVX2 (asserted); lengths asserted above.
        unsafe { avx2(xs, ws, colsum, kp, acc) }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn avx2(xs: &[i8], ws: &[i8], _colsum: &[i32], kp: usize, acc: &mut [i32; MR * TILE_N]) {
        let ones = _mm256_set1_epi16(1);
        for b in 0..TB {
            let wb = ws.as_ptr().wrapping_add(b * kp * NB);
            let mut a = [[_mm256_setzero_si256(); 2]; MR];
            for g in 0..kp / 4 {
                // SAFETY: block `b` holds `kp/4` groups of `NB·4` = 64 bytes (length asserted
                // by the caller: `TB·kp·NB` bytes).
                let (wlo, whi) = unsafe {
                    (
                        _mm256_loadu_si256(wb.add(g * 64) as *const __m256i),
                        _mm256_loadu_si256(wb.add(g * 64 + 32) as *const __m256i),
                    )
                };
                for (r, ar) in a.iter_mut().enumerate() {
                    // SAFETY: `r·kp + 4g + 4 <= MR·kp <= xs.len()`.
                    let xb = _mm256_set1_epi32(unsafe { group(xs, r * kp + g * 4) });
                    let ax = _mm256_abs_epi8(xb);
                    // |x|·(sign(x)·w): each pair ≤ 2·127·127, no i16 saturation.
                    let plo = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(wlo, xb));
                    let phi = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(whi, xb));
                    ar[0] = _mm256_add_epi32(ar[0], _mm256_madd_epi16(plo, ones));
                    ar[1] = _mm256_add_epi32(ar[1], _mm256_madd_epi16(phi, ones));
                }
            }
            store_ymm(acc, b, &a);
        }
    }

    /// Writes block `b`'s accumulators (two ymm per row: lanes 0..8, 8..16).
    #[inline(always)]
    fn store_ymm(acc: &mut [i32; MR * TILE_N], b: usize, a: &[[__m256i; 2]; MR]) {
        for (r, ar) in a.iter().enumerate() {
            let at = r * TILE_N + b * NB;
            let out = &mut acc[at..at + NB];
            // SAFETY: `out` has NB = 16 i32, two unaligned 8-lane stores.
            unsafe {
                _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, ar[0]);
                _mm256_storeu_si256(out.as_mut_ptr().add(8) as *mut __m256i, ar[1]);
            }
        }
    }

    pub fn tile_avx_vnni(
        xs: &[i8],
        ws: &[i8],
        colsum: &[i32],
        kp: usize,
        acc: &mut [i32; MR * TILE_N],
    ) {
        assert!(xs.len() >= MR * kp && ws.len() >= TB * kp * NB && kp.is_multiple_of(4));
        assert!(colsum.len() >= TILE_N);
        assert!(super::Path::AvxVnni.available());
        // SAFETY: the CPU has AVX2 and AVX-VNNI (asserted); lengths asserted above.
        unsafe { avx_vnni(xs, ws, colsum, kp, acc) }
    }

    #[target_feature(enable = "avx2,avxvnni")]
    unsafe fn avx_vnni(
        xs: &[i8],
        ws: &[i8],
        colsum: &[i32],
        kp: usize,
        acc: &mut [i32; MR * TILE_N],
    ) {
        let flip = _mm256_set1_epi8(-128);
        for b in 0..TB {
            let wb = ws.as_ptr().wrapping_add(b * kp * NB);
            let mut a = [[_mm256_setzero_si256(); 2]; MR];
            for g in 0..kp / 4 {
                // SAFETY: as in `avx2`: 64 bytes per group within block `b`.
                let (wlo, whi) = unsafe {
                    (
                        _mm256_loadu_si256(wb.add(g * 64) as *const __m256i),
                        _mm256_loadu_si256(wb.add(g * 64 + 32) as *const __m256i),
                    )
                };
                for (r, ar) in a.iter_mut().enumerate() {
                    // SAFETY: `r·kp + 4g + 4 <= MR·kp <= xs.len()`.
                    let xb = _mm256_set1_epi32(unsafe { group(xs, r * kp + g * 4) });
                    let xu = _mm256_xor_si256(xb, flip); // x + 128 as u8
                    ar[0] = _mm256_dpbusd_avx_epi32(ar[0], xu, wlo);
                    ar[1] = _mm256_dpbusd_avx_epi32(ar[1], xu, whi);
                }
            }
            // SAFETY: `colsum` has TILE_N values (asserted); two 8-lane loads per block.
            let (clo, chi) = unsafe {
                let c = colsum.as_ptr().add(b * NB);
                (
                    _mm256_slli_epi32(_mm256_loadu_si256(c as *const __m256i), 7),
                    _mm256_slli_epi32(_mm256_loadu_si256(c.add(8) as *const __m256i), 7),
                )
            };
            for ar in a.iter_mut() {
                ar[0] = _mm256_sub_epi32(ar[0], clo);
                ar[1] = _mm256_sub_epi32(ar[1], chi);
            }
            store_ymm(acc, b, &a);
        }
    }

    pub fn tile_avx512_vnni(
        xs: &[i8],
        ws: &[i8],
        colsum: &[i32],
        kp: usize,
        acc: &mut [i32; MR * TILE_N],
    ) {
        assert!(xs.len() >= MR * kp && ws.len() >= TB * kp * NB && kp.is_multiple_of(4));
        assert!(colsum.len() >= TILE_N);
        assert!(super::Path::Avx512Vnni.available());
        // SAFETY: the CPU has AVX-512F/BW and VNNI (asserted); lengths asserted above.
        unsafe { avx512_vnni(xs, ws, colsum, kp, acc) }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn avx512_vnni(
        xs: &[i8],
        ws: &[i8],
        colsum: &[i32],
        kp: usize,
        acc: &mut [i32; MR * TILE_N],
    ) {
        let flip = _mm512_set1_epi8(-128);
        let mut a = [[_mm512_setzero_si512(); TB]; MR];
        let wp = ws.as_ptr();
        let block = kp * NB;
        for g in 0..kp / 4 {
            // SAFETY: block `b` starts at `b·kp·NB` and holds `kp/4` groups of 64 bytes;
            // `TB·kp·NB <= ws.len()` (asserted by the caller).
            let w = unsafe {
                [
                    _mm512_loadu_si512(wp.add(g * 64) as *const __m512i),
                    _mm512_loadu_si512(wp.add(block + g * 64) as *const __m512i),
                    _mm512_loadu_si512(wp.add(2 * block + g * 64) as *const __m512i),
                    _mm512_loadu_si512(wp.add(3 * block + g * 64) as *const __m512i),
                ]
            };
            for (r, ar) in a.iter_mut().enumerate() {
                // SAFETY: `r·kp + 4g + 4 <= MR·kp <= xs.len()`.
                let xb = _mm512_set1_epi32(unsafe { group(xs, r * kp + g * 4) });
                let xu = _mm512_xor_si512(xb, flip); // x + 128 as u8
                for b in 0..TB {
                    ar[b] = _mm512_dpbusd_epi32(ar[b], xu, w[b]);
                }
            }
        }
        for b in 0..TB {
            // SAFETY: `colsum` has TILE_N = TB·16 values (asserted by the caller).
            let c = unsafe { _mm512_loadu_si512(colsum.as_ptr().add(b * NB) as *const __m512i) };
            let c = _mm512_slli_epi32(c, 7);
            for (r, ar) in a.iter().enumerate() {
                let at = r * TILE_N + b * NB;
                let out = &mut acc[at..at + NB];
                // SAFETY: `out` has NB = 16 i32.
                unsafe {
                    _mm512_storeu_si512(
                        out.as_mut_ptr() as *mut __m512i,
                        _mm512_sub_epi32(ar[b], c),
                    )
                };
            }
        }
    }
}

fn tile_fn(path: Path) -> TileFn {
    #[cfg(target_arch = "x86_64")]
    {
        match path {
            Path::Avx512Vnni => x86::tile_avx512_vnni,
            Path::AvxVnni => x86::tile_avx_vnni,
            Path::Avx2 => x86::tile_avx2,
            Path::Scalar => tile_scalar,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = path;
        tile_scalar
    }
}

/// Up to this many rows (decoding a batch of sequences) the work is split over column tiles,
/// above it over rows. Either way each output is the same tile's sum: a row's values do not
/// depend on how many rows come with it.
const FEW_ROWS: usize = 64;

/// Rows per rayon task: enough tasks for every thread, whole micro-tiles, at most 64.
fn rows_per_task(m: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    (m.div_ceil(4 * threads).div_ceil(MR) * MR).clamp(MR, 64)
}

/// Runs the micro-tiles over all of `xq` (`mp × kp`, `mp` a multiple of MR), in parallel
/// over chunks of rows, and hands each finished tile to `emit(out, r0, rt, c0, acc)`: `out`
/// the chunk's output rows (`rows × n`), `r0` the chunk's first row in the whole output,
/// `rt` the tile's first row within the chunk, `c0` its first column.
fn drive<T: Send>(
    path: Path,
    xq: &[i8],
    m: usize,
    w: &PackedWeight,
    out: &mut [T],
    emit: impl Fn(&mut [T], usize, usize, usize, &[i32; MR * TILE_N]) + Sync,
) {
    assert!(path.available(), "the CPU lacks the {} path", path.name());
    let (n, kp) = (w.n, w.kp);
    assert_eq!(out.len(), m * n);
    assert!(xq.len() >= m.div_ceil(MR) * MR * kp);
    if n == 0 || m == 0 {
        return;
    }
    let tile = tile_fn(path);
    if m <= FEW_ROWS {
        // Decoding: split the columns instead of the rows, so the weight is read once in all
        // (each column tile stays in cache while every row tile passes over it).
        let row_tiles = m.div_ceil(MR);
        let tiles: Vec<Vec<[i32; MR * TILE_N]>> = (0..n.div_ceil(TILE_N))
            .into_par_iter()
            .map(|ct| {
                let c0 = ct * TILE_N;
                let ws = &w.data[c0 * kp..(c0 + TILE_N) * kp];
                let cs = &w.colsum[c0..c0 + TILE_N];
                (0..row_tiles)
                    .map(|rt| {
                        let mut acc = [0i32; MR * TILE_N];
                        tile(&xq[rt * MR * kp..(rt + 1) * MR * kp], ws, cs, kp, &mut acc);
                        acc
                    })
                    .collect()
            })
            .collect();
        for (ct, accs) in tiles.iter().enumerate() {
            for (rt, acc) in accs.iter().enumerate() {
                emit(out, 0, rt * MR, ct * TILE_N, acc);
            }
        }
        return;
    }
    let rc = rows_per_task(m);
    out.par_chunks_mut(rc * n)
        .enumerate()
        .for_each(|(chunk, out)| {
            let r0 = chunk * rc;
            let rows = out.len() / n;
            let mut acc = [0i32; MR * TILE_N];
            for c0 in (0..n).step_by(TILE_N) {
                let ws = &w.data[c0 * kp..(c0 + TILE_N) * kp];
                let cs = &w.colsum[c0..c0 + TILE_N];
                for rt in (0..rows).step_by(MR) {
                    let xs = &xq[(r0 + rt) * kp..(r0 + rt + MR) * kp];
                    tile(xs, ws, cs, kp, &mut acc);
                    emit(out, r0, rt, c0, &acc);
                }
            }
        });
}

/// The integer products `Σ_k xq[r, k]·w[c, k]` (`xq`: `[m, k]` row-major, values in
/// −127..=127) on `path`, `[m, n]` row-major. What the tests compare between paths.
pub fn matmul_i32(path: Path, xq: &[i8], m: usize, w: &PackedWeight) -> Vec<i32> {
    let (k, kp, n) = (w.k, w.kp, w.n);
    assert_eq!(
        xq.len(),
        m * k,
        "activations of {} values are not {m}×{k}",
        xq.len()
    );
    assert!(
        xq.iter().all(|&v| v != i8::MIN),
        "quantized activations must lie in -127..=127"
    );
    let mut xp = vec![0i8; m.div_ceil(MR) * MR * kp];
    for r in 0..m {
        xp[r * kp..r * kp + k].copy_from_slice(&xq[r * k..(r + 1) * k]);
    }
    let mut out = vec![0i32; m * n];
    drive(path, &xp, m, w, &mut out, |out, _r0, rt, c0, acc| {
        let rows = out.len() / n;
        let cols = TILE_N.min(n - c0);
        for r in 0..MR.min(rows - rt) {
            out[(rt + r) * n + c0..(rt + r) * n + c0 + cols]
                .copy_from_slice(&acc[r * TILE_N..r * TILE_N + cols]);
        }
    });
    out
}

/// `y = x·Wᵀ + b` for `x` row-major `[m, k]` on the fastest path: the rows of `x` quantized
/// on the fly, the products in i32, dequantized to f32. `[m, n]` row-major.
pub fn linear(x: &[f32], m: usize, w: &PackedWeight, bias: Option<&[f32]>) -> Vec<f32> {
    linear_on(Path::best(), x, m, w, bias)
}

/// [`linear`] on a given path (which the CPU must have).
pub fn linear_on(
    path: Path,
    x: &[f32],
    m: usize,
    w: &PackedWeight,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (k, n) = (w.k, w.n);
    assert_eq!(x.len(), m * k, "input of {} values is not {m}×{k}", x.len());
    if let Some(b) = bias {
        assert_eq!(b.len(), n, "bias of {} values for {n} outputs", b.len());
    }
    let xq = quantize_rows(x, m, k, w.kp);
    let mut out = vec![0f32; m * n];
    drive(path, &xq.q, m, w, &mut out, |out, r0, rt, c0, acc| {
        let rows = out.len() / n;
        let cols = TILE_N.min(n - c0);
        let ws = &w.scale[c0..c0 + cols];
        for r in 0..MR.min(rows - rt) {
            let xs = xq.scale[r0 + rt + r];
            let a = &acc[r * TILE_N..r * TILE_N + cols];
            let row = &mut out[(rt + r) * n + c0..(rt + r) * n + c0 + cols];
            match bias {
                Some(b) => {
                    let b = &b[c0..c0 + cols];
                    for (((o, &a), &s), &b) in row.iter_mut().zip(a).zip(ws).zip(b) {
                        *o = (a as f32) * (xs * s) + b;
                    }
                }
                None => {
                    for ((o, &a), &s) in row.iter_mut().zip(a).zip(ws) {
                        *o = (a as f32) * (xs * s);
                    }
                }
            }
        }
    });
    out
}

/// A linear layer for int8 inference: the packed weight and the f32 bias.
#[derive(Debug, Clone)]
pub struct QLinear {
    pub weight: PackedWeight,
    pub bias: Option<Vec<f32>>,
}

impl QLinear {
    /// From torch's layout: `w` row-major `[out, in]`, `bias` `[out]`.
    pub fn quantize(w: &[f32], out: usize, d_in: usize, bias: Option<Vec<f32>>) -> Self {
        QLinear {
            weight: PackedWeight::quantize(w, out, d_in),
            bias,
        }
    }

    /// `x` row-major `[m, in]` → `[m, out]`.
    pub fn forward(&self, x: &[f32], m: usize) -> Vec<f32> {
        linear(x, m, &self.weight, self.bias.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in −127..=127.
    fn bytes(n: usize, seed: u64) -> Vec<i8> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (((s >> 33) % 255) as i32 - 127) as i8
            })
            .collect()
    }

    fn reference(xq: &[i8], wq: &[i8], m: usize, n: usize, k: usize) -> Vec<i32> {
        let mut out = vec![0i32; m * n];
        for r in 0..m {
            for c in 0..n {
                out[r * n + c] = (0..k)
                    .map(|t| xq[r * k + t] as i32 * wq[c * k + t] as i32)
                    .sum();
            }
        }
        out
    }

    /// Every path the CPU has gives the scalar reference's sums exactly, on shapes with
    /// ragged edges (m, n, k not multiples of the tile) and extreme values (±127 everywhere:
    /// the sums vpmaddubsw would saturate without the sign trick).
    #[test]
    fn every_path_matches_the_reference_exactly() {
        let shapes = [
            (1, 1, 1),
            (5, 17, 7),
            (9, 65, 33),
            (33, 130, 768),
            (70, 64, 100),
        ];
        let mut skipped = Vec::new();
        for path in Path::ALL {
            if !path.available() {
                skipped.push(path.name());
                continue;
            }
            for (i, &(m, n, k)) in shapes.iter().enumerate() {
                let xq = bytes(m * k, 1 + i as u64);
                let wq = bytes(n * k, 100 + i as u64);
                let w = PackedWeight::pack(&wq, vec![1.0; n], n, k);
                assert_eq!(
                    matmul_i32(path, &xq, m, &w),
                    reference(&xq, &wq, m, n, k),
                    "{} on {m}×{n}×{k}",
                    path.name()
                );
                for (xv, wv) in [(127i8, 127i8), (127, -127), (-127, -127)] {
                    let (xq, wq) = (vec![xv; m * k], vec![wv; n * k]);
                    let w = PackedWeight::pack(&wq, vec![1.0; n], n, k);
                    assert_eq!(
                        matmul_i32(path, &xq, m, &w),
                        reference(&xq, &wq, m, n, k),
                        "{} on {m}×{n}×{k} at {xv}·{wv}",
                        path.name()
                    );
                }
            }
        }
        if !skipped.is_empty() {
            eprintln!(
                "int8 paths skipped (not on this CPU): {}",
                skipped.join(", ")
            );
        }
    }

    /// Decoding runs 1–64 rows split over columns, the encoders more rows split over rows:
    /// a row's outputs are the same bits alone, among few rows and among many, on every path.
    #[test]
    fn a_row_gives_the_same_bits_alone_and_in_any_batch() {
        let (n, k) = (200, 96);
        let f = |i: usize, s: f32| (i as f32 * s).sin();
        let w: Vec<f32> = (0..n * k).map(|i| f(i, 0.13) * 0.2).collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32 * 0.01).collect();
        let q = QLinear::quantize(&w, n, k, Some(b));
        let x: Vec<f32> = (0..130 * k).map(|i| f(i, 0.29) * 3.0).collect();
        for path in Path::ALL.into_iter().filter(|p| p.available()) {
            let alone: Vec<Vec<f32>> = (0..130)
                .map(|r| {
                    linear_on(
                        path,
                        &x[r * k..(r + 1) * k],
                        1,
                        &q.weight,
                        q.bias.as_deref(),
                    )
                })
                .collect();
            for m in [2, 5, 16, 63, 64, 65, 130] {
                let y = linear_on(path, &x[..m * k], m, &q.weight, q.bias.as_deref());
                for (r, want) in alone.iter().take(m).enumerate() {
                    assert_eq!(
                        &y[r * n..(r + 1) * n],
                        &want[..],
                        "{}: row {r} of {m}",
                        path.name()
                    );
                }
            }
        }
    }

    /// Quantizing in place packs exactly what packing the quantized rows gives.
    #[test]
    fn quantize_packs_in_place_what_pack_gives() {
        for (n, k) in [(1, 1), (17, 7), (64, 768), (130, 33)] {
            let w: Vec<f32> = (0..n * k).map(|i| ((i as f32) * 0.71).sin()).collect();
            let mut q = vec![0i8; n * k];
            let scale: Vec<f32> = (0..n)
                .map(|r| quantize_row(&w[r * k..(r + 1) * k], &mut q[r * k..(r + 1) * k]))
                .collect();
            let (a, b) = (
                PackedWeight::quantize(&w, n, k),
                PackedWeight::pack(&q, scale, n, k),
            );
            assert_eq!((a.n, a.k, a.kp), (b.n, b.k, b.kp));
            assert!(
                a.data == b.data && a.colsum == b.colsum && a.scale == b.scale,
                "{n}×{k}"
            );
        }
    }

    #[test]
    fn force_picks_a_path_the_cpu_has_and_names_parse() {
        let fastest = Path::best();
        force(Some(Path::Scalar)).unwrap();
        assert_eq!(Path::best(), Path::Scalar);
        force(None).unwrap();
        assert_eq!(Path::best(), fastest);
        for p in Path::ALL {
            assert_eq!(p.name().parse::<Path>(), Ok(p));
            if !p.available() {
                assert!(force(Some(p)).unwrap_err().contains(p.name()));
                assert_eq!(Path::best(), fastest);
            }
        }
        assert!("int4".parse::<Path>().unwrap_err().contains("avx2"));
    }

    #[test]
    fn quantize_row_is_symmetric_and_rounds_to_nearest() {
        let x = [0.5f32, -1.0, 0.25, 0.0, 1.0 / 127.0];
        let mut q = [9i8; 8];
        let s = quantize_row(&x, &mut q);
        assert_eq!(s, 1.0 / 127.0);
        assert_eq!(q, [64, -127, 32, 0, 1, 0, 0, 0]); // 63.5 → 64 (ties to even)
        let mut z = [5i8; 3];
        assert_eq!(quantize_row(&[0.0; 3], &mut z), 0.0);
        assert_eq!(z, [0; 3]);
    }

    /// The f32 result is the dequantized integer product plus the bias, and within the
    /// quantization error of the f32 product: |err| ≤ Σ_k (|x|·Δw + |w|·Δx + Δx·Δw) with
    /// Δ = scale/2.
    #[test]
    fn linear_is_close_to_f32() {
        let (m, n, k) = (13, 70, 96);
        let f = |i: usize, s: f32| (i as f32 * s).sin() * 2.0;
        let x: Vec<f32> = (0..m * k).map(|i| f(i, 0.37)).collect();
        let w: Vec<f32> = (0..n * k).map(|i| f(i, 0.11) * 0.1).collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32 * 0.01).collect();
        let q = QLinear::quantize(&w, n, k, Some(b.clone()));
        for path in Path::ALL.into_iter().filter(|p| p.available()) {
            let y = linear_on(path, &x, m, &q.weight, q.bias.as_deref());
            for r in 0..m {
                let xr = &x[r * k..(r + 1) * k];
                let dx = xr.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0 / 2.0;
                for c in 0..n {
                    let wr = &w[c * k..(c + 1) * k];
                    let dw = wr.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0 / 2.0;
                    let exact: f32 = xr.iter().zip(wr).map(|(a, b)| a * b).sum::<f32>() + b[c];
                    let bound: f32 = xr
                        .iter()
                        .zip(wr)
                        .map(|(a, b)| a.abs() * dw + b.abs() * dx + dx * dw)
                        .sum::<f32>()
                        + 1e-4;
                    let got = y[r * n + c];
                    assert!(
                        (got - exact).abs() <= bound,
                        "{}: [{r},{c}] {got} vs {exact} (bound {bound})",
                        path.name()
                    );
                }
            }
        }
    }
}
