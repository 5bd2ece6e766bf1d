//! Reading torch `.bin` files: the zip archive of torch ≥ 1.6 and the legacy pickle stream
//! of torch ≤ 1.5. Both go through the allow-listed [`super::pickle`] reader; storages are
//! slices of the memory-mapped file whenever the bytes are stored uncompressed.

use super::pickle::{self, Obj, Pickle, PickleError, TensorSpec, Value};
use super::{Checkpoint, CheckpointError, DType, Format, Storage, Tensor};
use memmap2::Mmap;
use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

/// The magic number that opens a legacy torch file (a pickled LONG1).
pub(crate) const LEGACY_MAGIC: [u8; 14] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19,
];

/// Copies of strided views up to this size are always allowed (see `materialise`).
const MIN_COPY_LIMIT: u64 = 64 << 20;

/// Where one storage's bytes are.
type StorageBytes = (Storage, Range<usize>);

fn pickle_err(path: &Path, e: PickleError) -> CheckpointError {
    match e {
        PickleError::ForbiddenGlobal { module, name } => CheckpointError::ForbiddenGlobal {
            path: path.to_path_buf(),
            global: format!("{module}.{name}"),
        },
        PickleError::Malformed { .. } | PickleError::Truncated { .. } => CheckpointError::Corrupt {
            path: path.to_path_buf(),
            what: e.to_string(),
        },
    }
}

fn corrupt(path: &Path, what: impl Into<String>) -> CheckpointError {
    CheckpointError::Corrupt {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// Reads a torch zip archive (`archive/data.pkl` + `archive/data/<key>`).
pub(crate) fn read_zip(path: &Path, map: Arc<Mmap>) -> Result<Checkpoint, CheckpointError> {
    let zerr =
        |e: zip::result::ZipError| corrupt(path, format!("not a readable zip archive ({e})"));
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&map[..])).map_err(zerr)?;
    let pkl_name = archive
        .file_names()
        .filter(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .min_by_key(|n| n.len())
        .map(str::to_string)
        .ok_or_else(|| {
            corrupt(
                path,
                "zip archive has no `data.pkl`: not a torch checkpoint",
            )
        })?;
    let prefix = pkl_name[..pkl_name.len() - "data.pkl".len()].to_string();

    let mut entry_bytes = |name: &str| -> Result<Option<StorageBytes>, CheckpointError> {
        let Some(idx) = archive.index_for_name(name) else {
            return Ok(None);
        };
        let mut f = archive.by_index(idx).map_err(zerr)?;
        let size = usize::try_from(f.size())
            .map_err(|_| corrupt(path, format!("entry `{name}` too large")))?;
        if f.compression() == zip::CompressionMethod::Stored {
            let start = usize::try_from(f.data_start()).unwrap_or(usize::MAX);
            match start.checked_add(size).filter(|&e| e <= map.len()) {
                Some(end) => Ok(Some((Storage::Mapped(map.clone()), start..end))),
                None => Err(corrupt(
                    path,
                    format!("entry `{name}` extends past the end of the file (truncated?)"),
                )),
            }
        } else {
            if size > map.len().saturating_mul(1032) {
                return Err(corrupt(
                    path,
                    format!("entry `{name}` claims an impossible size"),
                ));
            }
            let mut buf = Vec::with_capacity(size.min(1 << 30));
            std::io::Read::read_to_end(&mut f, &mut buf).map_err(|e| {
                corrupt(path, format!("entry `{name}` cannot be decompressed ({e})"))
            })?;
            if buf.len() != size {
                return Err(corrupt(
                    path,
                    format!("entry `{name}` has {} bytes, expected {size}", buf.len()),
                ));
            }
            let len = buf.len();
            Ok(Some((Storage::Owned(Arc::new(buf)), 0..len)))
        }
    };

    let (pkl_storage, pkl_range) = entry_bytes(&pkl_name)?.expect("name came from the archive");
    let pkl = pickle::parse(&pkl_storage.as_bytes()[pkl_range]).map_err(|e| pickle_err(path, e))?;
    let mut resolved: HashMap<String, Option<StorageBytes>> = HashMap::new();
    let mut resolve = |key: &str| -> Result<Option<StorageBytes>, CheckpointError> {
        if let Some(r) = resolved.get(key) {
            return Ok(r.clone());
        }
        let r = entry_bytes(&format!("{prefix}data/{key}"))?;
        resolved.insert(key.to_string(), r.clone());
        Ok(r)
    };
    build(path, Format::TorchZip, &pkl, &mut resolve)
}

/// Reads a legacy (torch ≤ 1.5) stream: magic, protocol, sys info, the object pickle, the
/// storage key list, then each storage as an i64 element count and its raw bytes.
pub(crate) fn read_legacy(path: &Path, map: Arc<Mmap>) -> Result<Checkpoint, CheckpointError> {
    let data = &map[..];
    let mut pos = 0;
    let mut next = |what: &str| -> Result<Pickle, CheckpointError> {
        let p = pickle::parse(&data[pos..]).map_err(|e| match e {
            PickleError::Malformed { pos: p, msg } => corrupt(
                path,
                format!(
                    "legacy torch file: bad {what} pickle at byte {}: {msg}",
                    pos + p
                ),
            ),
            other => pickle_err(path, other),
        })?;
        pos += p.end;
        Ok(p)
    };
    next("magic number")?;
    let proto = next("protocol version")?;
    if !matches!(proto.root, Value::Int(1001)) {
        return Err(corrupt(
            path,
            "legacy torch file with an unknown protocol version (expected 1001)",
        ));
    }
    next("system info")?;
    let objects = next("state dict")?;
    let keys_pickle = next("storage key list")?;
    let keys: Vec<String> = match keys_pickle.obj(&keys_pickle.root) {
        Some(Obj::List(items)) | Some(Obj::Tuple(items)) => items
            .iter()
            .map(|v| match v {
                Value::Str(s) => Ok(s.to_string()),
                _ => Err(corrupt(
                    path,
                    "legacy torch file: storage key is not a string",
                )),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(corrupt(
                path,
                "legacy torch file: storage key list is not a list",
            ));
        }
    };
    // Element sizes come from the storages' types in the object pickle.
    let mut elem: HashMap<&str, usize> = HashMap::new();
    for o in &objects.objs {
        if let Obj::Storage(s) = o {
            elem.insert(&s.key, s.dtype.size());
        }
    }
    let mut table: HashMap<String, Option<StorageBytes>> = HashMap::new();
    for key in &keys {
        let Some(&es) = elem.get(key.as_str()) else {
            return Err(corrupt(
                path,
                format!("legacy torch file: storage `{key}` is listed but never used"),
            ));
        };
        let Some(head) = data.get(pos..pos + 8) else {
            return Err(corrupt(
                path,
                format!("legacy torch file truncated before storage `{key}`"),
            ));
        };
        let n = u64::from_le_bytes(head.try_into().unwrap());
        let bytes = usize::try_from(n).ok().and_then(|n| n.checked_mul(es));
        let end = bytes
            .and_then(|b| (pos + 8).checked_add(b))
            .filter(|&e| e <= data.len());
        let Some(end) = end else {
            return Err(corrupt(
                path,
                format!("legacy torch file truncated inside storage `{key}`"),
            ));
        };
        table.insert(
            key.clone(),
            Some((Storage::Mapped(map.clone()), pos + 8..end)),
        );
        pos = end;
    }
    let mut resolve = |key: &str| -> Result<Option<StorageBytes>, CheckpointError> {
        Ok(table.get(key).cloned().flatten())
    };
    build(path, Format::TorchLegacy, &objects, &mut resolve)
}

/// Finds the state dict in the pickle's root and turns each tensor spec into a [`Tensor`].
fn build(
    path: &Path,
    format: Format,
    pkl: &Pickle,
    resolve: &mut dyn FnMut(&str) -> Result<Option<StorageBytes>, CheckpointError>,
) -> Result<Checkpoint, CheckpointError> {
    let (entries, nested_under) = find_state_dict(path, pkl)?;
    let mut ck = Checkpoint {
        format: Some(format),
        source: Some(path.to_path_buf()),
        nested_under,
        ..Default::default()
    };
    // Same storage view → the same Tensor (so tied weights share one Storage).
    let mut made: HashMap<(String, u64, Vec<u64>, Vec<u64>), Tensor> = HashMap::new();
    for (name, spec) in entries {
        let id = (
            spec.storage.key.clone(),
            spec.offset,
            spec.shape.clone(),
            spec.stride.clone(),
        );
        let tensor = match made.get(&id) {
            Some(t) => t.clone(),
            None => {
                let t = materialise(path, &name, spec, resolve)?;
                made.insert(id, t.clone());
                t
            }
        };
        ck.tensors.push((name, tensor));
    }
    ck.strip_module_prefix();
    Ok(ck)
}

const STATE_DICT_KEYS: [&str; 5] = ["state_dict", "model", "model_state_dict", "module", "net"];

/// The (name, tensor spec) pairs of the state dict, and the key it was nested under.
#[allow(clippy::type_complexity)]
fn find_state_dict<'p>(
    path: &Path,
    pkl: &'p Pickle,
) -> Result<(Vec<(String, &'p TensorSpec)>, Option<String>), CheckpointError> {
    let dict_of = |v: &Value| match pkl.obj(v) {
        Some(Obj::Dict(d)) => Some(d),
        _ => None,
    };
    // A repeated key keeps its first position and its last value, as a Python dict does.
    let tensors_of = |d: &'p Vec<(Value, Value)>| -> Vec<(String, &'p TensorSpec)> {
        let mut out: Vec<(String, &'p TensorSpec)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (k, v) in d {
            if let (Value::Str(k), Some(Obj::Tensor(t))) = (k, pkl.obj(v)) {
                match index.get(&**k) {
                    Some(&i) => out[i].1 = t,
                    None => {
                        index.insert(k.to_string(), out.len());
                        out.push((k.to_string(), t));
                    }
                }
            }
        }
        out
    };
    let Some(root) = dict_of(&pkl.root) else {
        return Err(corrupt(path, "the pickle holds no dict: not a state dict"));
    };
    let top = tensors_of(root);
    if !top.is_empty() || root.is_empty() {
        return Ok((top, None));
    }
    // `{'state_dict': {...}, 'epoch': 3}` and friends: a known key first, then any dict child.
    let children: Vec<(&str, &Vec<(Value, Value)>)> = root
        .iter()
        .filter_map(|(k, v)| match (k, dict_of(v)) {
            (Value::Str(k), Some(d)) => Some((&**k, d)),
            _ => None,
        })
        .collect();
    let pick = STATE_DICT_KEYS
        .iter()
        .find_map(|want| children.iter().find(|(k, _)| k == want))
        .or_else(|| children.iter().find(|(_, d)| !tensors_of(d).is_empty()));
    match pick {
        Some((k, d)) if !tensors_of(d).is_empty() => Ok((tensors_of(d), Some(k.to_string()))),
        _ => Err(corrupt(
            path,
            "no tensors found at the top level or under `state_dict`/`model`: not a state dict",
        )),
    }
}

/// Turns a spec into a tensor: a zero-copy slice when contiguous, else a gathered copy.
fn materialise(
    path: &Path,
    name: &str,
    spec: &TensorSpec,
    resolve: &mut dyn FnMut(&str) -> Result<Option<StorageBytes>, CheckpointError>,
) -> Result<Tensor, CheckpointError> {
    let dtype: DType = spec.storage.dtype;
    let es = dtype.size() as u64;
    let shape: Vec<usize> = spec.shape.iter().map(|&d| d as usize).collect();
    let oob = |detail: String| CheckpointError::OutOfBounds {
        path: path.to_path_buf(),
        tensor: name.to_string(),
        key: spec.storage.key.clone(),
        detail,
    };
    let Some((storage, range)) = resolve(&spec.storage.key)? else {
        return Err(CheckpointError::MissingStorage {
            path: path.to_path_buf(),
            key: spec.storage.key.clone(),
            tensor: name.to_string(),
        });
    };
    // Elements available: the declared storage size, which the bytes must hold.
    let declared = spec.storage.numel;
    if (range.len() as u64) < declared.saturating_mul(es) {
        return Err(oob(format!(
            "storage declares {declared} elements but holds only {} bytes",
            range.len()
        )));
    }
    let (base, avail) = match &spec.storage.view {
        None => (0u64, declared),
        Some((_, off, size)) => {
            if off.checked_add(*size).is_none_or(|e| e > declared) {
                return Err(oob(format!(
                    "storage view {off}+{size} exceeds {declared} elements"
                )));
            }
            (*off, *size)
        }
    };
    let numel = spec
        .shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or_else(|| oob("size overflows".into()))?;
    if numel == 0 {
        return Ok(Tensor::from_bytes(dtype, shape, Vec::new()));
    }
    let mut last = spec.offset;
    for (&d, &s) in spec.shape.iter().zip(&spec.stride) {
        last = (d - 1)
            .checked_mul(s)
            .and_then(|x| x.checked_add(last))
            .ok_or_else(|| oob("stride overflows".into()))?;
    }
    if last >= avail {
        return Err(oob(format!(
            "offset {} size {:?} stride {:?} reaches element {last}, storage has {avail}",
            spec.offset, spec.shape, spec.stride
        )));
    }
    let start = range.start + ((base + spec.offset) * es) as usize;
    if is_contiguous(&spec.shape, &spec.stride) {
        let end = start + (numel * es) as usize;
        return Ok(Tensor::new(dtype, shape, storage, start..end));
    }
    // Non-contiguous view: gather into row-major order. A stride-0 view of a tiny storage
    // can claim a huge size: refuse copies far larger than the file itself.
    let copy_limit = (storage.as_bytes().len() as u64)
        .saturating_mul(16)
        .max(MIN_COPY_LIMIT);
    if numel.saturating_mul(es) > copy_limit {
        return Err(oob(format!(
            "a strided view of {numel} elements would expand far beyond the file's size"
        )));
    }
    let src = &storage.as_bytes()[start..];
    let mut out = Vec::with_capacity((numel * es) as usize);
    gather(src, &spec.shape, &spec.stride, es as usize, &mut out);
    Ok(Tensor::from_bytes(dtype, shape, out))
}

/// Row-major contiguous (dimensions of size 1 may have any stride).
pub(crate) fn is_contiguous(shape: &[u64], stride: &[u64]) -> bool {
    let mut expect = 1u64;
    for (&d, &s) in shape.iter().zip(stride).rev() {
        if d != 1 && s != expect {
            return false;
        }
        expect = expect.saturating_mul(d);
    }
    true
}

fn gather(src: &[u8], shape: &[u64], stride: &[u64], es: usize, out: &mut Vec<u8>) {
    match shape.len() {
        0 => out.extend_from_slice(&src[..es]),
        1 => {
            let s = stride[0] as usize * es;
            for i in 0..shape[0] as usize {
                out.extend_from_slice(&src[i * s..i * s + es]);
            }
        }
        _ => {
            let s = stride[0] as usize * es;
            for i in 0..shape[0] as usize {
                gather(&src[i * s..], &shape[1..], &stride[1..], es, out);
            }
        }
    }
}
