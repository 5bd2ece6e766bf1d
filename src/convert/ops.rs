//! The tensor transforms behind [`super::names::Op`], on raw little-endian bytes so they are
//! exact for every dtype: slicing rows (zero-copy, sharing the source storage), inserting a
//! zero row, 2-D transpose, concatenation and split on the first dim, LayerNorm rescaling.

use crate::checkpoint::{DType, Tensor};

/// Rows `start..end` of the first dim, sharing the source's storage (no copy).
pub fn rows(t: &Tensor, start: usize, end: usize) -> Tensor {
    let row_bytes = row_bytes(t);
    let (storage, range) = t.storage();
    let mut shape = t.shape.clone();
    shape[0] = end - start;
    let from = range.start + start * row_bytes;
    Tensor::new(
        t.dtype,
        shape,
        storage.clone(),
        from..from + (end - start) * row_bytes,
    )
}

/// Bytes of one slice along the first dim.
fn row_bytes(t: &Tensor) -> usize {
    t.shape[1..].iter().product::<usize>() * t.dtype.size()
}

/// A zero row inserted before the first row.
pub fn prepend_zero_row(t: &Tensor) -> Tensor {
    let rb = row_bytes(t);
    let mut bytes = vec![0u8; rb + t.bytes().len()];
    bytes[rb..].copy_from_slice(t.bytes());
    let mut shape = t.shape.clone();
    shape[0] += 1;
    Tensor::from_bytes(t.dtype, shape, bytes)
}

/// The transpose of a 2-D tensor.
pub fn transpose(t: &Tensor) -> Tensor {
    let (r, c) = (t.shape[0], t.shape[1]);
    let e = t.dtype.size();
    let src = t.bytes();
    let mut out = vec![0u8; src.len()];
    // Blocked so both sides stay in cache for large matrices.
    const B: usize = 32;
    for i0 in (0..r).step_by(B) {
        for j0 in (0..c).step_by(B) {
            for i in i0..(i0 + B).min(r) {
                for j in j0..(j0 + B).min(c) {
                    let s = (i * c + j) * e;
                    let d = (j * r + i) * e;
                    out[d..d + e].copy_from_slice(&src[s..s + e]);
                }
            }
        }
    }
    Tensor::from_bytes(t.dtype, vec![c, r], out)
}

/// Concatenation on the first dim (same dtype and trailing dims).
pub fn concat_rows(parts: &[&Tensor]) -> Tensor {
    let mut bytes = Vec::with_capacity(parts.iter().map(|t| t.bytes().len()).sum());
    for t in parts {
        bytes.extend_from_slice(t.bytes());
    }
    let mut shape = parts[0].shape.clone();
    shape[0] = parts.iter().map(|t| t.shape[0]).sum();
    Tensor::from_bytes(parts[0].dtype, shape, bytes)
}

/// Multiplies every element by `factor` (computed in f64, stored back in the tensor's dtype).
/// Float dtypes only; `None` for integer tensors.
pub fn scale(t: &Tensor, factor: f64) -> Option<Tensor> {
    let b = t.bytes();
    let bytes: Vec<u8> = match t.dtype {
        DType::F32 => b
            .chunks_exact(4)
            .flat_map(|c| {
                ((f32::from_le_bytes(c.try_into().unwrap()) as f64 * factor) as f32).to_le_bytes()
            })
            .collect(),
        DType::F64 => b
            .chunks_exact(8)
            .flat_map(|c| (f64::from_le_bytes(c.try_into().unwrap()) * factor).to_le_bytes())
            .collect(),
        DType::F16 => b
            .chunks_exact(2)
            .flat_map(|c| {
                half::f16::from_f64(half::f16::from_le_bytes([c[0], c[1]]).to_f64() * factor)
                    .to_le_bytes()
            })
            .collect(),
        DType::BF16 => b
            .chunks_exact(2)
            .flat_map(|c| {
                half::bf16::from_f64(half::bf16::from_le_bytes([c[0], c[1]]).to_f64() * factor)
                    .to_le_bytes()
            })
            .collect(),
        _ => return None,
    };
    Some(Tensor::from_bytes(t.dtype, t.shape.clone(), bytes))
}

/// Whether two tensors are the same values: same storage bytes, or equal dtype, shape and bytes.
pub fn same(a: &Tensor, b: &Tensor) -> bool {
    let (sa, ra) = a.storage();
    let (sb, rb) = b.storage();
    if std::ptr::eq(sa.as_bytes().as_ptr(), sb.as_bytes().as_ptr()) && ra == rb {
        return true;
    }
    a.dtype == b.dtype && a.shape == b.shape && a.bytes() == b.bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_and_rows() {
        let t = Tensor::from_f32(vec![2, 3], &[1., 2., 3., 4., 5., 6.]);
        let tt = transpose(&t);
        assert_eq!(tt.shape, vec![3, 2]);
        assert_eq!(tt.to_f32_vec(), vec![1., 4., 2., 5., 3., 6.]);
        let r = rows(&t, 1, 2);
        assert_eq!(r.shape, vec![1, 3]);
        assert_eq!(r.to_f32_vec(), vec![4., 5., 6.]);
        let z = prepend_zero_row(&r);
        assert_eq!(z.to_f32_vec(), vec![0., 0., 0., 4., 5., 6.]);
        let c = concat_rows(&[&t, &r]);
        assert_eq!(c.shape, vec![3, 3]);
        assert_eq!(c.to_f32_vec()[6..], [4., 5., 6.]);
        assert!(same(&r, &rows(&t, 1, 2)));
    }
}
