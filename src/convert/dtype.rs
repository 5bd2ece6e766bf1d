//! `convert --dtype`: the floating-point tensors of a converted checkpoint in one dtype
//! (f32, f16 or bf16; narrowing rounds to nearest, ties to even); integer and bool tensors
//! are left as they are. Tied tensors stay tied (one cast per shared storage range).

use std::collections::HashMap;

use crate::checkpoint::{Checkpoint, DType, Tensor};

/// The dtypes `--dtype` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatDType {
    F32,
    F16,
    BF16,
}

impl FloatDType {
    pub fn dtype(self) -> DType {
        match self {
            FloatDType::F32 => DType::F32,
            FloatDType::F16 => DType::F16,
            FloatDType::BF16 => DType::BF16,
        }
    }

    /// The name of the HF config's `torch_dtype`.
    pub fn torch_name(self) -> &'static str {
        match self {
            FloatDType::F32 => "float32",
            FloatDType::F16 => "float16",
            FloatDType::BF16 => "bfloat16",
        }
    }
}

impl std::str::FromStr for FloatDType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(FloatDType::F32),
            "f16" => Ok(FloatDType::F16),
            "bf16" => Ok(FloatDType::BF16),
            _ => Err(format!("unknown dtype `{s}`: f32, f16 or bf16")),
        }
    }
}

fn is_float(d: DType) -> bool {
    matches!(d, DType::F64 | DType::F32 | DType::F16 | DType::BF16)
}

/// One float tensor in `to`; from f64 rounded once (not through f32).
pub fn cast(t: &Tensor, to: FloatDType) -> Tensor {
    if !is_float(t.dtype) || t.dtype == to.dtype() {
        return t.clone();
    }
    let b = t.bytes();
    let bytes: Vec<u8> = if t.dtype == DType::F64 {
        let v: Vec<f64> = bytemuck::pod_collect_to_vec(b);
        match to {
            FloatDType::F32 => {
                bytemuck::cast_slice(&v.iter().map(|&x| x as f32).collect::<Vec<_>>()).to_vec()
            }
            FloatDType::F16 => bytemuck::cast_slice(
                &v.iter()
                    .map(|&x| half::f16::from_f64(x))
                    .collect::<Vec<_>>(),
            )
            .to_vec(),
            FloatDType::BF16 => bytemuck::cast_slice(
                &v.iter()
                    .map(|&x| half::bf16::from_f64(x))
                    .collect::<Vec<_>>(),
            )
            .to_vec(),
        }
    } else {
        // f16 and bf16 widen to f32 exactly.
        let v = t.to_f32_vec();
        match to {
            FloatDType::F32 => bytemuck::cast_slice(&v).to_vec(),
            FloatDType::F16 => bytemuck::cast_slice(
                &v.iter()
                    .map(|&x| half::f16::from_f32(x))
                    .collect::<Vec<_>>(),
            )
            .to_vec(),
            FloatDType::BF16 => bytemuck::cast_slice(
                &v.iter()
                    .map(|&x| half::bf16::from_f32(x))
                    .collect::<Vec<_>>(),
            )
            .to_vec(),
        }
    };
    Tensor::from_bytes(to.dtype(), t.shape.clone(), bytes)
}

/// Every float tensor of `ck` in `to`; names sharing bytes before share them after.
pub fn cast_checkpoint(ck: &Checkpoint, to: FloatDType) -> Checkpoint {
    let mut done: HashMap<(usize, usize, usize), Tensor> = HashMap::new();
    let tensors = ck
        .tensors
        .iter()
        .map(|(name, t)| {
            let (s, r) = t.storage();
            let key = (s.as_bytes().as_ptr() as usize, r.start, r.end);
            let c = match done.get(&key) {
                Some(c) if !r.is_empty() && c.shape == t.shape && c.dtype == to_dtype(t, to) => {
                    c.clone()
                }
                _ => {
                    let c = cast(t, to);
                    done.insert(key, c.clone());
                    c
                }
            };
            (name.clone(), c)
        })
        .collect();
    Checkpoint {
        tensors,
        ..ck.clone()
    }
}

fn to_dtype(t: &Tensor, to: FloatDType) -> DType {
    if is_float(t.dtype) {
        to.dtype()
    } else {
        t.dtype
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_nearest_even_and_keeps_ties_and_ints() {
        // 1 + 2^-11 is halfway between two f16 values: ties to even (1.0); 1 + 3·2^-11 → up.
        let t = Tensor::from_f32(
            vec![3],
            &[1.0 + 2f32.powi(-11), 1.0 + 3.0 * 2f32.powi(-11), -2.5],
        );
        let h = cast(&t, FloatDType::F16);
        assert_eq!(h.dtype, DType::F16);
        assert_eq!(h.to_f32_vec(), vec![1.0, 1.0 + 2f32.powi(-9), -2.5]);
        // bf16 has 8 significant bits: 1 + 2^-8 ties to 1.0, 1 + 3·2^-8 to 1 + 2^-6.
        let t = Tensor::from_f32(vec![2], &[1.0 + 2f32.powi(-8), 1.0 + 3.0 * 2f32.powi(-8)]);
        assert_eq!(
            cast(&t, FloatDType::BF16).to_f32_vec(),
            vec![1.0, 1.0 + 2f32.powi(-6)]
        );
        let ids = Tensor::from_bytes(
            DType::I64,
            vec![2],
            bytemuck::cast_slice(&[7i64, -1]).to_vec(),
        );
        let mut ck = Checkpoint::default();
        ck.tensors.push(("a".into(), t.clone()));
        ck.tensors.push(("b".into(), t));
        ck.tensors.push(("ids".into(), ids));
        let c = cast_checkpoint(&ck, FloatDType::F16);
        assert_eq!(c.get("ids").unwrap().dtype, DType::I64);
        assert_eq!(c.get("ids").unwrap().to_i64_vec().unwrap(), vec![7, -1]);
        assert_eq!(
            c.tied_groups(),
            vec![vec!["a".to_string(), "b".to_string()]]
        );
    }
}
