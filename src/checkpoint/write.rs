//! Writing: the torch zip `.bin` layout (FACTS.md §9), the atomic temp-file-then-rename
//! step every writer goes through, and the safetensors writer that copies unchanged tensors
//! file to file ([`CopySource`], `copy_file_range` on Linux) instead of through memory.

use super::{Checkpoint, CheckpointError, DType, Storage, Tensor};
use crate::output::{OutputError, Partial, PersistError, parent_dir};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, Write};
use std::path::Path;
use std::sync::Arc;

/// The `torch.<X>Storage` class for a dtype.
fn storage_class(d: DType) -> &'static str {
    match d {
        DType::F64 => "DoubleStorage",
        DType::F32 => "FloatStorage",
        DType::F16 => "HalfStorage",
        DType::BF16 => "BFloat16Storage",
        DType::I64 => "LongStorage",
        DType::I32 => "IntStorage",
        DType::I16 => "ShortStorage",
        DType::I8 => "CharStorage",
        DType::U8 => "ByteStorage",
        DType::Bool => "BoolStorage",
    }
}

/// A protocol-2 pickle writer with a memo for repeated globals.
struct Pickler {
    out: Vec<u8>,
    memo: HashMap<String, u32>,
}

impl Pickler {
    fn put(&mut self, key: String) {
        let i = self.memo.len() as u32;
        if i < 256 {
            self.out.extend_from_slice(&[b'q', i as u8]);
        } else {
            self.out.push(b'r');
            self.out.extend_from_slice(&i.to_le_bytes());
        }
        self.memo.insert(key, i);
    }
    fn global(&mut self, module: &str, name: &str) {
        let key = format!("{module}\n{name}");
        match self.memo.get(&key) {
            Some(&i) if i < 256 => self.out.extend_from_slice(&[b'h', i as u8]),
            Some(&i) => {
                self.out.push(b'j');
                self.out.extend_from_slice(&i.to_le_bytes());
            }
            None => {
                self.out.push(b'c');
                self.out
                    .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
                self.put(key);
            }
        }
    }
    fn str(&mut self, s: &str) {
        self.out.push(b'X');
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }
    fn int(&mut self, n: u64) {
        if n < 256 {
            self.out.extend_from_slice(&[b'K', n as u8]);
        } else if n < 65536 {
            self.out.push(b'M');
            self.out.extend_from_slice(&(n as u16).to_le_bytes());
        } else if n < (1 << 31) {
            self.out.push(b'J');
            self.out.extend_from_slice(&(n as u32).to_le_bytes());
        } else {
            // LONG1 with 8 bytes (two's complement; n < 2^63 so the top bit is clear).
            self.out.extend_from_slice(&[0x8a, 8]);
            self.out.extend_from_slice(&n.to_le_bytes());
        }
    }
    fn int_tuple(&mut self, xs: &[u64]) {
        match xs.len() {
            0 => self.out.push(b')'),
            1..=3 => {
                for &x in xs {
                    self.int(x);
                }
                self.out.push(0x84 + xs.len() as u8);
            }
            _ => {
                self.out.push(b'(');
                for &x in xs {
                    self.int(x);
                }
                self.out.push(b't');
            }
        }
    }
}

/// The pickle of an `OrderedDict` of `_rebuild_tensor_v2` calls; `keys[i]` is tensor i's
/// storage key.
fn state_dict_pickle(ck: &Checkpoint, keys: &[usize]) -> Vec<u8> {
    let mut p = Pickler {
        out: vec![0x80, 2],
        memo: HashMap::new(),
    };
    p.global("collections", "OrderedDict");
    p.out.extend_from_slice(b")R");
    p.put("<root>".into());
    for chunk in ck.tensors.chunks(1000).zip(keys.chunks(1000)) {
        p.out.push(b'(');
        for ((name, t), &key) in chunk.0.iter().zip(chunk.1) {
            p.str(name);
            p.global("torch._utils", "_rebuild_tensor_v2");
            p.out.push(b'(');
            // Persistent id: ('storage', torch.<X>Storage, key, 'cpu', numel).
            p.out.push(b'(');
            p.str("storage");
            p.global("torch", storage_class(t.dtype));
            p.str(&key.to_string());
            p.str("cpu");
            p.int(t.numel() as u64);
            p.out.extend_from_slice(b"tQ");
            p.int(0);
            let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
            let mut stride = vec![0u64; shape.len()];
            let mut acc = 1u64;
            for i in (0..shape.len()).rev() {
                stride[i] = acc;
                acc *= shape[i].max(1);
            }
            p.int_tuple(&shape);
            p.int_tuple(&stride);
            p.out.push(0x89); // requires_grad = False
            p.global("collections", "OrderedDict");
            p.out.extend_from_slice(b")R"); // backward hooks
            p.out.extend_from_slice(b"tR");
        }
        p.out.push(b'u');
    }
    p.out.push(b'.');
    p.out
}

/// Storage key per tensor: tensors with the same bytes of the same storage share one.
fn storage_keys(ck: &Checkpoint) -> (Vec<usize>, Vec<&Tensor>) {
    let mut seen: HashMap<(usize, usize, usize, DType), usize> = HashMap::new();
    let mut unique: Vec<&Tensor> = Vec::new();
    let keys = ck
        .tensors
        .iter()
        .map(|(_, t)| {
            let (s, r) = t.storage();
            if r.is_empty() {
                unique.push(t);
                return unique.len() - 1;
            }
            let id = (s.as_bytes().as_ptr() as usize, r.start, r.end, t.dtype);
            *seen.entry(id).or_insert_with(|| {
                unique.push(t);
                unique.len() - 1
            })
        })
        .collect();
    (keys, unique)
}

/// Writes `ck` as a torch zip archive: every entry STORED, storages 64-byte aligned.
pub(crate) fn write_torch<W: Write + Seek>(ck: &Checkpoint, out: W) -> zip::result::ZipResult<W> {
    use zip::write::SimpleFileOptions;
    let (keys, unique) = storage_keys(ck);
    let pkl = state_dict_pickle(ck, &keys);
    let mut z = zip::ZipWriter::new(out);
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default());
    let entries = |z: &mut zip::ZipWriter<W>| -> zip::result::ZipResult<()> {
        z.start_file("archive/data.pkl", opts)?;
        z.write_all(&pkl)?;
        z.start_file("archive/.format_version", opts)?;
        z.write_all(b"1")?;
        z.start_file("archive/.storage_alignment", opts)?;
        z.write_all(b"64")?;
        z.start_file("archive/byteorder", opts)?;
        z.write_all(b"little")?;
        for (i, t) in unique.iter().enumerate() {
            let bytes = t.bytes();
            let o = opts
                .with_alignment(64)
                .large_file(bytes.len() as u64 >= u32::MAX as u64);
            z.start_file(format!("archive/data/{i}"), o)?;
            z.write_all(bytes)?;
            crate::checkpoint::release_pages(t);
        }
        z.start_file("archive/version", opts)?;
        z.write_all(b"3\n")?;
        Ok(())
    };
    match entries(&mut z) {
        Ok(()) => z.finish(),
        Err(e) => {
            // A ZipWriter dropped unfinished tries to finish and prints its own failure to
            // stderr ("ZipWriter drop failed"); the error is returned instead, and the
            // temporary file it wrote into is removed by the caller.
            std::mem::forget(z);
            Err(e)
        }
    }
}

/// Writes through `fill` (buffered) into a temp file beside `path`, then renames it into
/// place. An existing `path` is refused unless `force` (the rules of [`crate::output`]).
pub(crate) fn atomic_write(
    path: &Path,
    force: bool,
    fill: impl FnOnce(&mut BufWriter<&mut File>) -> std::io::Result<()>,
) -> Result<(), CheckpointError> {
    atomic_write_file(path, force, |f| {
        let mut w = BufWriter::with_capacity(1 << 20, f);
        fill(&mut w)?;
        w.flush()
    })
}

/// [`atomic_write`] with the temp file itself handed to `fill`.
fn atomic_write_file(
    path: &Path,
    force: bool,
    fill: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<(), CheckpointError> {
    let io = |source: std::io::Error| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    crate::output::check_file(path, force).map_err(|e| match e {
        OutputError::Exists { .. } => CheckpointError::Exists {
            path: path.to_path_buf(),
        },
        OutputError::WrongKind { .. } => CheckpointError::IsDirectory {
            path: path.to_path_buf(),
        },
        OutputError::NotWritable { source, .. } => io(source),
        OutputError::IsInput { .. } => io(std::io::Error::other(e.to_string())),
    })?;
    let mut tmp = Partial::new_in(parent_dir(path)).map_err(io)?;
    fill(tmp.as_file_mut()).map_err(io)?;
    tmp.persist(path, force).map_err(|e| match e {
        PersistError::Exists => CheckpointError::Exists {
            path: path.to_path_buf(),
        },
        PersistError::Io(e) => io(e),
    })
}

/// The file a checkpoint was read from, kept open so that the bytes of its tensors that a
/// conversion leaves unchanged go from this file to the output by file range
/// (`copy_file_range`: in the kernel, never through this process's memory).
pub(crate) struct CopySource {
    file: File,
    map: Arc<memmap2::Mmap>,
    /// Off: every tensor is written from the memory map (the buffered path; same bytes).
    ranges: std::cell::Cell<bool>,
}

impl CopySource {
    /// The source of `ck` as [`Checkpoint::open`] read it: one memory map of the whole file
    /// (checked: same length, same first bytes). None when the tensors are not all on one
    /// file's map (bytes in memory, several files).
    pub(crate) fn of(ck: &Checkpoint) -> Option<CopySource> {
        let mut maps = ck.tensors.iter().filter_map(|(_, t)| match t.storage().0 {
            Storage::Mapped(m) => Some(m),
            Storage::Owned(_) => None,
        });
        let map = maps.next()?.clone();
        if maps.any(|m| !Arc::ptr_eq(m, &map)) {
            return None;
        }
        let mut file = File::open(ck.source.as_ref()?).ok()?;
        if file.metadata().ok()?.len() != map.len() as u64 {
            return None;
        }
        let mut head = vec![0u8; map.len().min(4096)];
        file.read_exact(&mut head).ok()?;
        (head[..] == map[..head.len()]).then(|| CopySource {
            file,
            map,
            ranges: std::cell::Cell::new(true),
        })
    }

    /// Writes every tensor from the memory map instead (the fallback path, for comparing).
    pub(crate) fn buffered(self) -> CopySource {
        self.ranges.set(false);
        self
    }

    /// The byte range of the file that holds `t`, if `t` is this file's bytes unchanged.
    fn range_of(&self, t: &Tensor) -> Option<std::ops::Range<usize>> {
        match t.storage() {
            (Storage::Mapped(m), r) if Arc::ptr_eq(m, &self.map) => Some(r),
            _ => None,
        }
    }

    /// Appends bytes `r` of the source file at `out`'s position: `copy_file_range` where
    /// the kernel has it for these two files, else (EXDEV, ENOSYS, …, other systems; from
    /// then on for this source) through the memory map.
    fn copy(&self, r: std::ops::Range<usize>, out: &mut File) -> std::io::Result<()> {
        #[allow(unused_mut)]
        let mut start = r.start;
        #[cfg(target_os = "linux")]
        while start < r.end && self.ranges.get() {
            use std::os::fd::AsRawFd;
            let mut off_in = start as libc::loff_t;
            let len = (r.end - start).min(1 << 30);
            // SAFETY: two open descriptors; the kernel reads and advances `off_in` and the
            // output file's own position.
            let n = unsafe {
                libc::copy_file_range(
                    self.file.as_raw_fd(),
                    &mut off_in,
                    out.as_raw_fd(),
                    std::ptr::null_mut(),
                    len,
                    0,
                )
            };
            if n > 0 {
                start += n as usize;
                continue;
            }
            let e = std::io::Error::last_os_error();
            match (n, e.raw_os_error()) {
                (_, Some(libc::EINTR)) if n < 0 => continue,
                (0, _)
                | (
                    _,
                    Some(
                        libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL | libc::EPERM,
                    ),
                ) => self.ranges.set(false),
                _ => return Err(e),
            }
        }
        out.write_all(&self.map[start..r.end])
    }
}

/// Writes `ck` as safetensors (the bytes of [`Checkpoint::write_safetensors`]) atomically:
/// the tensors that are `source`'s bytes unchanged are copied by file range, the others
/// written from memory.
pub(crate) fn write_safetensors_from(
    ck: &Checkpoint,
    source: &CopySource,
    path: &Path,
    force: bool,
) -> Result<(), CheckpointError> {
    ck.check_unique_names(path)?;
    atomic_write_file(path, force, |f| {
        let mut w = BufWriter::with_capacity(1 << 20, f);
        w.write_all(&super::safetensors::header(ck)?)?;
        for (_, t) in &ck.tensors {
            match source.range_of(t) {
                Some(r) => {
                    w.flush()?;
                    source.copy(r, w.get_mut())?;
                }
                None => w.write_all(t.bytes())?,
            }
            crate::checkpoint::release_pages(t);
        }
        w.flush()
    })
}
