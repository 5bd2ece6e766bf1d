//! Tensor files: reading and writing PyTorch `.bin` (zip and legacy pickle) and safetensors.
//!
//! This module owns bytes on disk and the in-memory [`Checkpoint`]: ordered named tensors
//! plus which names share storage (tied weights). It never renames a key — that is
//! [`crate::convert`]'s job — and it never executes a pickle: only the globals a torch state
//! dict needs are accepted.

use std::path::PathBuf;
use std::sync::Arc;

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }
}

/// The bytes behind a tensor: shared, so tied tensors and memory-mapped files cost no copy.
#[derive(Clone)]
pub enum Storage {
    /// Bytes owned in memory.
    Owned(Arc<Vec<u8>>),
    /// A memory-mapped file.
    Mapped(Arc<memmap2::Mmap>),
}

impl Storage {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Storage::Owned(v) => v,
            Storage::Mapped(m) => m,
        }
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Storage({} bytes)", self.as_bytes().len())
    }
}

/// One tensor: dtype, shape and contiguous little-endian bytes (a range of a [`Storage`]).
#[derive(Debug, Clone)]
pub struct Tensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    storage: Storage,
    /// Byte range of this tensor inside `storage`.
    range: std::ops::Range<usize>,
}

impl Tensor {
    /// A tensor over `range` of `storage`; the range must hold exactly numel·dtype.size bytes.
    pub fn new(dtype: DType, shape: Vec<usize>, storage: Storage, range: std::ops::Range<usize>) -> Self {
        debug_assert_eq!(range.len(), shape.iter().product::<usize>() * dtype.size());
        Tensor { dtype, shape, storage, range }
    }

    /// A tensor owning `bytes`.
    pub fn from_bytes(dtype: DType, shape: Vec<usize>, bytes: Vec<u8>) -> Self {
        let len = bytes.len();
        Tensor::new(dtype, shape, Storage::Owned(Arc::new(bytes)), 0..len)
    }

    /// An f32 tensor from values.
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Self {
        Tensor::from_bytes(DType::F32, shape, bytemuck::cast_slice(values).to_vec())
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The raw little-endian bytes, row-major contiguous.
    pub fn bytes(&self) -> &[u8] {
        &self.storage.as_bytes()[self.range.clone()]
    }

    /// The storage and byte range (for detecting shared storage).
    pub fn storage(&self) -> (&Storage, std::ops::Range<usize>) {
        (&self.storage, self.range.clone())
    }

    /// Values converted to f32 (f16/bf16/f64/ints are converted; bool gives 0/1).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        let b = self.bytes();
        match self.dtype {
            DType::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
            DType::F64 => b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            DType::F16 => b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            DType::BF16 => b.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            DType::I64 => b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            DType::I32 => b.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            DType::I16 => b.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as f32).collect(),
            DType::I8 => b.iter().map(|&x| x as i8 as f32).collect(),
            DType::U8 | DType::Bool => b.iter().map(|&x| x as f32).collect(),
        }
    }

    /// Values as i64 (integer dtypes only; floats are rejected with `None`).
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        let b = self.bytes();
        Some(match self.dtype {
            DType::I64 => b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect(),
            DType::I32 => b.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect(),
            DType::I16 => b.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as i64).collect(),
            DType::I8 => b.iter().map(|&x| x as i8 as i64).collect(),
            DType::U8 | DType::Bool => b.iter().map(|&x| x as i64).collect(),
            _ => return None,
        })
    }
}

/// File formats a checkpoint can come from or go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// torch ≥ 1.6 zip archive (`torch.save` default).
    TorchZip,
    /// torch ≤ 1.5 pickle stream.
    TorchLegacy,
    /// safetensors.
    Safetensors,
}

/// Ordered named tensors and their tied groups.
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    /// Tensors in file order.
    pub tensors: Vec<(String, Tensor)>,
    /// The file's format, when it was read from one.
    pub format: Option<Format>,
    /// Where it was read from, for error messages.
    pub source: Option<PathBuf>,
}

impl Checkpoint {
    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// Tensor names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|(n, _)| n.as_str())
    }

    /// Appends (or replaces) a tensor.
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        let name = name.into();
        if let Some(slot) = self.tensors.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = tensor;
        } else {
            self.tensors.push((name, tensor));
        }
    }

    /// Groups of names (two or more) whose tensors are the same bytes of the same storage.
    pub fn tied_groups(&self) -> Vec<Vec<String>> {
        let mut groups: Vec<(usize, std::ops::Range<usize>, Vec<String>)> = Vec::new();
        for (name, t) in &self.tensors {
            let (s, r) = t.storage();
            let key = s.as_bytes().as_ptr() as usize;
            if r.is_empty() {
                continue;
            }
            match groups.iter_mut().find(|(k, rr, _)| *k == key && *rr == r) {
                Some(g) => g.2.push(name.clone()),
                None => groups.push((key, r, vec![name.clone()])),
            }
        }
        groups.into_iter().filter(|g| g.2.len() > 1).map(|g| g.2).collect()
    }
}
