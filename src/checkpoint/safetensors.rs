//! safetensors: reading (memory-mapped, zero copy; the `safetensors` crate validates the
//! header) and writing (header by hand, tensors streamed in checkpoint order).

use super::{Checkpoint, CheckpointError, DType, Format, Storage, Tensor};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// Metadata key listing tied groups, so a safetensors round trip keeps the ties
/// (safetensors itself cannot share bytes between names: each is written in full).
pub const TIED_METADATA_KEY: &str = "uerzoo_tied";

fn from_st(d: Dtype) -> Option<DType> {
    Some(match d {
        Dtype::F64 => DType::F64,
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::I64 => DType::I64,
        Dtype::I32 => DType::I32,
        Dtype::I16 => DType::I16,
        Dtype::I8 => DType::I8,
        Dtype::U8 => DType::U8,
        Dtype::BOOL => DType::Bool,
        _ => return None,
    })
}

pub(crate) fn st_name(d: DType) -> &'static str {
    match d {
        DType::F64 => "F64",
        DType::F32 => "F32",
        DType::F16 => "F16",
        DType::BF16 => "BF16",
        DType::I64 => "I64",
        DType::I32 => "I32",
        DType::I16 => "I16",
        DType::I8 => "I8",
        DType::U8 => "U8",
        DType::Bool => "BOOL",
    }
}

/// Reads a safetensors file over its memory map.
pub(crate) fn read(path: &Path, map: Arc<Mmap>) -> Result<Checkpoint, CheckpointError> {
    let bad = |what: String| CheckpointError::Safetensors {
        path: path.to_path_buf(),
        what,
    };
    let (n, meta) = SafeTensors::read_metadata(&map[..]).map_err(|e| bad(format!("{e}")))?;
    let data_start = 8 + n;
    let mut ck = Checkpoint {
        format: Some(Format::Safetensors),
        source: Some(path.to_path_buf()),
        ..Default::default()
    };
    for name in meta.offset_keys() {
        let info = meta.info(&name).expect("name came from the header");
        let dtype = from_st(info.dtype).ok_or_else(|| {
            bad(format!(
                "tensor `{name}` has unsupported dtype {:?}",
                info.dtype
            ))
        })?;
        let (s, e) = info.data_offsets;
        let range = data_start + s..data_start + e;
        ck.tensors.push((
            name,
            Tensor::new(
                dtype,
                info.shape.clone(),
                Storage::Mapped(map.clone()),
                range,
            ),
        ));
    }
    if let Some(groups) = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(TIED_METADATA_KEY))
    {
        retie(&mut ck, groups);
    }
    ck.strip_module_prefix();
    Ok(ck)
}

/// Points every name of a recorded tied group at the first one's bytes, when they match.
fn retie(ck: &mut Checkpoint, groups: &str) {
    for group in groups.split(';') {
        let names: Vec<&str> = group.split(',').filter(|s| !s.is_empty()).collect();
        let Some(first) = names.first().and_then(|n| ck.get(n)).cloned() else {
            continue;
        };
        for name in &names[1..] {
            if let Some(slot) = ck.tensors.iter_mut().find(|(n, _)| n == name)
                && slot.1.dtype == first.dtype
                && slot.1.shape == first.shape
                && slot.1.bytes() == first.bytes()
            {
                slot.1 = first.clone();
            }
        }
    }
}

/// Writes `ck` as safetensors (metadata `format: pt`) to `out`.
pub(crate) fn write(ck: &Checkpoint, out: &mut dyn Write) -> std::io::Result<()> {
    out.write_all(&header(ck)?)?;
    for (_, t) in &ck.tensors {
        out.write_all(t.bytes())?;
        crate::checkpoint::release_pages(t);
    }
    Ok(())
}

/// The bytes before the tensor data: the header's length (u64 LE) and the JSON header,
/// padded with spaces to a multiple of 8.
pub(crate) fn header(ck: &Checkpoint) -> std::io::Result<Vec<u8>> {
    let mut header = serde_json::Map::new();
    let mut metadata = serde_json::Map::new();
    metadata.insert("format".into(), "pt".into());
    let tied = ck.tied_groups();
    if !tied.is_empty() {
        let s: Vec<String> = tied.iter().map(|g| g.join(",")).collect();
        metadata.insert(TIED_METADATA_KEY.into(), s.join(";").into());
    }
    header.insert("__metadata__".into(), metadata.into());
    let mut offset = 0usize;
    for (name, t) in &ck.tensors {
        let len = t.bytes().len();
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": st_name(t.dtype), "shape": t.shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let mut json = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let mut head = (json.len() as u64).to_le_bytes().to_vec();
    head.extend_from_slice(&json);
    Ok(head)
}
