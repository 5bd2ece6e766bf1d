//! Tensor files: reading and writing PyTorch `.bin` (zip and legacy pickle) and safetensors.
//!
//! This module owns bytes on disk and the in-memory [`Checkpoint`]: ordered named tensors
//! plus which names share storage (tied weights). It never renames a key — that is
//! [`crate::convert`]'s job — and it never executes a pickle: only the globals a torch state
//! dict needs are accepted.

pub mod pickle;
mod safetensors;
mod torch;
mod write;

pub use safetensors::TIED_METADATA_KEY;
pub(crate) use write::{CopySource, write_safetensors_from};

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Everything that can go wrong reading or writing a checkpoint. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: no such file or directory", path.display())]
    NotFound { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: the file is empty (0 bytes); it was probably cut off: download or write it again", path.display())]
    Empty { path: PathBuf },
    #[error("{}: is a directory", path.display())]
    IsDirectory { path: PathBuf },
    #[error("{}: a directory with neither `model.safetensors` nor `pytorch_model.bin` in it; name the file", path.display())]
    NoCheckpointInDir { path: PathBuf },
    #[error("{}: not a torch .bin (zip or legacy) or safetensors file (it starts with {magic})", path.display())]
    UnknownFormat { path: PathBuf, magic: String },
    #[error("{}: {what}", path.display())]
    Corrupt { path: PathBuf, what: String },
    #[error("{}: the pickle names the global `{global}`, which a torch state dict never needs; refusing it (nothing was executed)", path.display())]
    ForbiddenGlobal { path: PathBuf, global: String },
    #[error("{}: tensor `{tensor}` refers to storage `{key}`, which is not in the file", path.display())]
    MissingStorage {
        path: PathBuf,
        key: String,
        tensor: String,
    },
    #[error("{}: tensor `{tensor}` extends past its storage `{key}`: {detail}", path.display())]
    OutOfBounds {
        path: PathBuf,
        tensor: String,
        key: String,
        detail: String,
    },
    #[error("{}: bad safetensors file: {what}", path.display())]
    Safetensors { path: PathBuf, what: String },
    #[error("{}: not written: the tensor name `{name}` appears twice", path.display())]
    DuplicateName { path: PathBuf, name: String },
    #[error("{}: already exists; pass --force to overwrite it", path.display())]
    Exists { path: PathBuf },
}

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
    /// The short name used in summaries: `f32`, `bf16`, `i64`, `bool`…
    pub fn name(self) -> &'static str {
        match self {
            DType::F64 => "f64",
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::I16 => "i16",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::Bool => "bool",
        }
    }

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
///
/// The bytes of a memory-mapped tensor need not be aligned to the element size (legacy torch
/// files place storages at any offset): read values with [`Tensor::to_f32_vec`] or
/// `bytemuck::pod_collect_to_vec`, not `bytemuck::cast_slice`.
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
    pub fn new(
        dtype: DType,
        shape: Vec<usize>,
        storage: Storage,
        range: std::ops::Range<usize>,
    ) -> Self {
        debug_assert_eq!(range.len(), shape.iter().product::<usize>() * dtype.size());
        Tensor {
            dtype,
            shape,
            storage,
            range,
        }
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

    /// The bytes as a reference-counted [`bytes::Bytes`] that keeps the storage (the memory
    /// map or the owned buffer) alive: nothing is copied. Its start is aligned only as the
    /// file placed it.
    pub fn shared_bytes(&self) -> bytes::Bytes {
        struct Owner(Storage, std::ops::Range<usize>);
        impl AsRef<[u8]> for Owner {
            fn as_ref(&self) -> &[u8] {
                &self.0.as_bytes()[self.1.clone()]
            }
        }
        bytes::Bytes::from_owner(Owner(self.storage.clone(), self.range.clone()))
    }

    /// The storage and byte range (for detecting shared storage).
    pub fn storage(&self) -> (&Storage, std::ops::Range<usize>) {
        (&self.storage, self.range.clone())
    }

    /// Values converted to f32 (f16/bf16/f64/ints are converted; bool gives 0/1).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        let b = self.bytes();
        match self.dtype {
            DType::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            DType::F64 => b
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
            DType::F16 => b
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::BF16 => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::I64 => b
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
            DType::I32 => b
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
            DType::I16 => b
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32)
                .collect(),
            DType::I8 => b.iter().map(|&x| x as i8 as f32).collect(),
            DType::U8 | DType::Bool => b.iter().map(|&x| x as f32).collect(),
        }
    }

    /// Values as i64 (integer dtypes only; floats are rejected with `None`).
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        let b = self.bytes();
        Some(match self.dtype {
            DType::I64 => b
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            DType::I32 => b
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
                .collect(),
            DType::I16 => b
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
                .collect(),
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

impl Format {
    /// A human name: `torch zip`, `torch legacy`, `safetensors`.
    pub fn name(self) -> &'static str {
        match self {
            Format::TorchZip => "torch zip",
            Format::TorchLegacy => "torch legacy",
            Format::Safetensors => "safetensors",
        }
    }
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
    /// The key the state dict was found under (`state_dict`, `model`, …), if nested.
    pub nested_under: Option<String>,
    /// A prefix removed from every name (`module.` from DDP), if any.
    pub stripped_prefix: Option<String>,
}

impl Checkpoint {
    /// Reads a checkpoint, detecting the format from the first bytes: zip (`PK\x03\x04`) →
    /// torch zip, the legacy magic number → torch legacy, else a safetensors header. A
    /// directory means its `model.safetensors`, else its `pytorch_model.bin`.
    ///
    /// Storages are slices of the memory-mapped file (no copy) unless a view is not
    /// contiguous or a zip entry is compressed. The file must not be truncated while the
    /// checkpoint is alive.
    pub fn open(path: impl AsRef<Path>) -> Result<Checkpoint, CheckpointError> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => CheckpointError::NotFound {
                path: path.to_path_buf(),
            },
            _ => CheckpointError::Io {
                path: path.to_path_buf(),
                source,
            },
        })?;
        if meta.is_dir() {
            let file = ["model.safetensors", "pytorch_model.bin"]
                .iter()
                .map(|n| path.join(n))
                .find(|p| p.is_file())
                .ok_or_else(|| CheckpointError::NoCheckpointInDir {
                    path: path.to_path_buf(),
                })?;
            return Checkpoint::open(file);
        }
        let io = |source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        };
        if meta.len() == 0 {
            return Err(CheckpointError::Empty {
                path: path.to_path_buf(),
            });
        }
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; the file is treated as immutable while mapped.
        let map = Arc::new(unsafe { memmap2::Mmap::map(&file) }.map_err(io)?);
        Checkpoint::from_mapped(path, map)
    }

    /// Reads a checkpoint from bytes in memory (`path` is only used in messages).
    pub fn from_bytes(path: impl AsRef<Path>, bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
        let path = path.as_ref();
        if bytes.is_empty() {
            return Err(CheckpointError::Empty {
                path: path.to_path_buf(),
            });
        }
        let mut map =
            memmap2::MmapMut::map_anon(bytes.len()).map_err(|source| CheckpointError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        map.copy_from_slice(bytes);
        let map = map.make_read_only().map_err(|source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Checkpoint::from_mapped(path, Arc::new(map))
    }

    fn from_mapped(path: &Path, map: Arc<memmap2::Mmap>) -> Result<Checkpoint, CheckpointError> {
        let head = &map[..map.len().min(16)];
        if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            torch::read_zip(path, map)
        } else if head.starts_with(&torch::LEGACY_MAGIC) {
            torch::read_legacy(path, map)
        } else if head.len() >= 9 && head[8] == b'{' {
            safetensors::read(path, map)
        } else {
            let magic = head
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ");
            Err(CheckpointError::UnknownFormat {
                path: path.to_path_buf(),
                magic,
            })
        }
    }

    /// Writes safetensors (metadata `format: pt`; tied names recorded under
    /// [`TIED_METADATA_KEY`]) atomically; an existing `path` is refused unless `force`.
    pub fn write_safetensors(
        &self,
        path: impl AsRef<Path>,
        force: bool,
    ) -> Result<(), CheckpointError> {
        self.check_unique_names(path.as_ref())?;
        write::atomic_write(path.as_ref(), force, |w| safetensors::write(self, w))
    }

    /// Writes a torch zip `.bin` that `torch.load(weights_only=True)` and UER-py accept
    /// (tied tensors share one storage) atomically; an existing `path` is refused unless
    /// `force`.
    pub fn write_torch(&self, path: impl AsRef<Path>, force: bool) -> Result<(), CheckpointError> {
        self.check_unique_names(path.as_ref())?;
        write::atomic_write(path.as_ref(), force, |w| {
            write::write_torch(self, w)
                .map(|_| ())
                .map_err(std::io::Error::other)
        })
    }

    fn check_unique_names(&self, path: &Path) -> Result<(), CheckpointError> {
        let mut seen = std::collections::HashSet::new();
        match self.tensors.iter().find(|(n, _)| !seen.insert(n.as_str())) {
            Some((n, _)) => Err(CheckpointError::DuplicateName {
                path: path.to_path_buf(),
                name: n.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Total elements over all tensors (tied tensors counted once).
    pub fn num_parameters(&self) -> u64 {
        self.unique_tensors().map(|t| t.numel() as u64).sum()
    }

    /// Total tensor bytes (tied tensors counted once).
    pub fn num_bytes(&self) -> u64 {
        self.unique_tensors().map(|t| t.bytes().len() as u64).sum()
    }

    fn unique_tensors(&self) -> impl Iterator<Item = &Tensor> {
        let mut seen = std::collections::HashSet::new();
        self.tensors.iter().map(|(_, t)| t).filter(move |t| {
            let (s, r) = t.storage();
            r.is_empty() || seen.insert((s.as_bytes().as_ptr() as usize, r.start, r.end))
        })
    }

    /// A machine-readable summary (what `uerzoo inspect --json` prints).
    pub fn summary(&self) -> serde_json::Value {
        let tensors: Vec<serde_json::Value> = self
            .tensors
            .iter()
            .map(|(n, t)| serde_json::json!({"name": n, "dtype": t.dtype.name(), "shape": t.shape}))
            .collect();
        serde_json::json!({
            "path": self.source.as_ref().map(|p| p.display().to_string()),
            "format": self.format.map(Format::name),
            "tensor_count": self.tensors.len(),
            "parameters": self.num_parameters(),
            "bytes": self.num_bytes(),
            "nested_under": self.nested_under,
            "stripped_prefix": self.stripped_prefix,
            "tied_groups": self.tied_groups(),
            "tensors": tensors,
        })
    }

    /// A human-readable summary (what `uerzoo inspect` prints).
    pub fn summary_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let path = self
            .source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let _ = writeln!(s, "file:       {path}");
        let _ = writeln!(
            s,
            "format:     {}",
            self.format.map(Format::name).unwrap_or("in memory")
        );
        let tied = self.tied_groups();
        let _ = writeln!(
            s,
            "tensors:    {} ({} tied group{})",
            self.tensors.len(),
            tied.len(),
            if tied.len() == 1 { "" } else { "s" }
        );
        let _ = writeln!(
            s,
            "parameters: {} (tied counted once)",
            self.num_parameters()
        );
        let _ = writeln!(
            s,
            "bytes:      {} ({:.1} MiB)",
            self.num_bytes(),
            self.num_bytes() as f64 / (1 << 20) as f64
        );
        if let Some(k) = &self.nested_under {
            let _ = writeln!(s, "nested:     the state dict is under `{k}`");
        }
        if let Some(p) = &self.stripped_prefix {
            let _ = writeln!(s, "prefix:     `{p}` removed from every name");
        }
        for g in &tied {
            let _ = writeln!(s, "tied:       {}", g.join(" = "));
        }
        let width = self.tensors.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        for (n, t) in &self.tensors {
            let _ = writeln!(s, "  {n:<width$}  {:<4}  {:?}", t.dtype.name(), t.shape);
        }
        s
    }

    /// Removes a prefix every name shares (`module.`, added by DistributedDataParallel)
    /// and records it in [`Checkpoint::stripped_prefix`].
    pub fn strip_module_prefix(&mut self) {
        const PREFIX: &str = "module.";
        if self.tensors.is_empty() || !self.tensors.iter().all(|(n, _)| n.starts_with(PREFIX)) {
            return;
        }
        for (n, _) in &mut self.tensors {
            n.drain(..PREFIX.len());
        }
        self.stripped_prefix = Some(PREFIX.to_string());
    }
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
        groups
            .into_iter()
            .filter(|g| g.2.len() > 1)
            .map(|g| g.2)
            .collect()
    }
}

/// After a tensor of a memory-mapped file has been written out, tell the kernel its pages are
/// not needed any more, so converting a large file does not keep all of it resident (peak RSS
/// of a base-size conversion: 458 MiB before, 73 MiB after).
pub(crate) fn release_pages(t: &Tensor) {
    if let (Storage::Mapped(m), r) = t.storage() {
        let page = 4096;
        let start = r.start.div_ceil(page) * page;
        let end = r.end / page * page;
        if end > start {
            // SAFETY: a read-only file mapping; dropped pages are re-read from the file when
            // touched again, so no data is lost.
            let _ = unsafe {
                m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
            };
        }
    }
}
