//! Writing: the torch zip `.bin` layout (FACTS.md §9) and the atomic temp-file-then-rename
//! step every writer goes through.

use super::{Checkpoint, CheckpointError, DType, Tensor};
use crate::output::{OutputError, Partial, PersistError, parent_dir};
use std::collections::HashMap;
use std::io::{BufWriter, Seek, Write};
use std::path::Path;

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

/// Writes through `fill` into a temp file beside `path`, then renames it into place.
/// An existing `path` is refused unless `force` (the rules of [`crate::output`]).
pub(crate) fn atomic_write(
    path: &Path,
    force: bool,
    fill: impl FnOnce(&mut BufWriter<&mut std::fs::File>) -> std::io::Result<()>,
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
    {
        let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        fill(&mut w).map_err(io)?;
        w.flush().map_err(io)?;
    }
    tmp.persist(path, force).map_err(|e| match e {
        PersistError::Exists => CheckpointError::Exists {
            path: path.to_path_buf(),
        },
        PersistError::Io(e) => io(e),
    })
}
