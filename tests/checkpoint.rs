//! Checkpoint I/O against the shared fixtures: exact reads of every format, round trips,
//! and a clear error (naming the file) for each kind of bad input.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use uerzoo::checkpoint::{Checkpoint, CheckpointError, DType, Format, Tensor};

fn formats(name: &str) -> PathBuf {
    common::shared()
        .join("fixtures")
        .join("torch_formats")
        .join(name)
}

fn open(p: &Path) -> Checkpoint {
    Checkpoint::open(p).unwrap_or_else(|e| panic!("{e}"))
}

fn info(fixture: &str) -> serde_json::Value {
    let s = std::fs::read_to_string(common::uer_fixture(fixture).join("info.json")).unwrap();
    serde_json::from_str(&s).unwrap()
}

/// Same names, dtypes, shapes and bytes, in the same order.
fn assert_same(a: &Checkpoint, b: &Checkpoint) {
    let an: Vec<&str> = a.names().collect();
    let bn: Vec<&str> = b.names().collect();
    assert_eq!(an, bn);
    for ((n, x), (_, y)) in a.tensors.iter().zip(&b.tensors) {
        assert_eq!(x.dtype, y.dtype, "{n}");
        assert_eq!(x.shape, y.shape, "{n}");
        assert!(x.bytes() == y.bytes(), "{n}: bytes differ");
    }
}

fn rows(t: &Tensor, from: usize, to: usize) -> &[u8] {
    let row = t.bytes().len() / t.shape[0];
    &t.bytes()[from * row..to * row]
}

/// Each UER fixture and UER-py's own HF conversion of it (`hf_by_uer_script/`) hold the same
/// weights: every UER tensor equals its transformers counterpart value for value (through
/// the layouts written out in [`hf_counterpart`]: GPT-2's transposed `Conv1D` and fused
/// `c_attn`, the segment table's rows 1..), and every HF tensor (GPT-2's mask buffers aside)
/// comes from one.
#[test]
fn uer_and_hf_fixtures_hold_the_same_weights() {
    for fx in common::UER_FIXTURES {
        let dir = common::uer_fixture(fx);
        let uer = open(&dir.join("uer_model.bin"));
        let hf = open(&dir.join("hf_by_uer_script"));
        assert_eq!(uer.format, Some(Format::TorchZip));
        assert_eq!(hf.format, Some(Format::TorchZip));
        assert_eq!(
            uer.tensors.len() as u64,
            info(fx)["keys"].as_u64().unwrap(),
            "{fx}: UER key count"
        );
        assert!(
            uer.tensors.iter().all(|(_, t)| t.dtype == DType::F32),
            "{fx}"
        );
        let v2 = fx.ends_with("_v2");
        let word = if v2 {
            "embedding.word.embedding.weight"
        } else {
            "embedding.word_embedding.weight"
        };
        let (hf_word, hf_pos) = match fx {
            f if f.starts_with("gpt2") => ("transformer.wte.weight", "transformer.wpe.weight"),
            f if f.starts_with("albert") => (
                "albert.embeddings.word_embeddings.weight",
                "albert.embeddings.position_embeddings.weight",
            ),
            _ => (
                "bert.embeddings.word_embeddings.weight",
                "bert.embeddings.position_embeddings.weight",
            ),
        };
        let pos = if v2 {
            "embedding.pos.embedding.weight"
        } else {
            "embedding.position_embedding.weight"
        };
        let uw = uer.get(word).unwrap();
        let hw = hf.get(hf_word).unwrap();
        assert_eq!(uw.shape, hw.shape, "{fx}");
        assert_eq!(uw.shape[0] as u64, info(fx)["vocab_size"].as_u64().unwrap());
        assert!(uw.bytes() == hw.bytes(), "{fx}: word embeddings differ");
        assert!(
            uer.get(pos).unwrap().bytes() == hf.get(hf_pos).unwrap().bytes(),
            "{fx}: positions differ"
        );
        // BERT-style: HF token types are UER segment rows 1..2.
        if !fx.starts_with("gpt2") {
            let seg = uer
                .get(if v2 {
                    "embedding.seg.embedding.weight"
                } else {
                    "embedding.segment_embedding.weight"
                })
                .unwrap();
            let prefix = if fx.starts_with("albert") {
                "albert"
            } else {
                "bert"
            };
            let tt = hf
                .get(&format!("{prefix}.embeddings.token_type_embeddings.weight"))
                .unwrap();
            assert_eq!(seg.shape[0], 3);
            assert!(
                rows(seg, 1, 3) == tt.bytes(),
                "{fx}: token types are not segment rows 1..2"
            );
        }
        // Every tensor, value by value, against its transformers counterpart.
        let covered = assert_every_weight_in_hf(fx, &uer, &hf);
        let left: Vec<&str> = hf
            .names()
            .filter(|n| !covered.contains(*n) && !n.ends_with(".attn.bias"))
            .collect();
        assert!(
            left.is_empty(),
            "{fx}: HF tensors with no UER source: {left:?}"
        );
    }
}

/// How a UER tensor appears in UER-py's HF conversion.
enum Hf {
    /// The same values.
    Same(String),
    /// Transposed (GPT-2's `Conv1D` stores `[in, out]`).
    Transposed(String),
    /// Part `k` of 3 of GPT-2's fused `c_attn` (q, k, v side by side on the output axis),
    /// transposed for a weight.
    Qkv(String, usize),
    /// Rows 1.. of UER's segment table (row 0, UER's padding segment, a trained row that
    /// transformers has no place for, is dropped).
    SegmentRows(String),
}

/// The HF counterpart of a UER-py name, written out from the two libraries' module names
/// (FACTS.md), independently of `uerzoo::convert`'s table. UER-py's scripts copy values
/// (LayerNorm weights too: the fixtures' HF side keeps UER's weights, which is why
/// `info.json` reports a 1e-2 logit gap; the sqrt((n−1)/n) rescale is uerzoo's
/// `--exact-layernorm`, not UER-py's).
fn hf_counterpart(fx: &str, name: &str) -> Hf {
    // UER-py's v2 spellings → v1's.
    let mut n = name.to_string();
    for (v2, v1) in [
        ("embedding.word.embedding", "embedding.word_embedding"),
        ("embedding.pos.embedding", "embedding.position_embedding"),
        ("embedding.seg.embedding", "embedding.segment_embedding"),
        ("target.mlm.linear_", "target.mlm_linear_"),
        ("target.mlm.layer_norm", "target.layer_norm"),
        ("target.lm.output_layer", "target.output_layer"),
    ] {
        n = n.replace(v2, v1);
    }
    let (stem, leaf) = n.rsplit_once('.').unwrap();
    let leaf = match leaf {
        "gamma" => "weight",
        "beta" => "bias",
        other => other,
    };
    let same = |s: &str| Hf::Same(format!("{s}.{leaf}"));
    let layer_of = |rest: &str| -> (String, String) {
        let (i, part) = rest.split_once('.').unwrap();
        (i.to_string(), part.to_string())
    };
    if fx.starts_with("gpt2") {
        let t = |s: String| {
            if leaf == "weight" {
                Hf::Transposed(format!("{s}.{leaf}"))
            } else {
                Hf::Same(format!("{s}.{leaf}"))
            }
        };
        return match stem {
            "embedding.word_embedding" => same("transformer.wte"),
            "embedding.position_embedding" => same("transformer.wpe"),
            "encoder.layer_norm" => same("transformer.ln_f"),
            "target.output_layer" => same("lm_head"),
            _ => {
                let (i, part) = layer_of(stem.strip_prefix("encoder.transformer.").unwrap());
                let h = format!("transformer.h.{i}");
                match part.as_str() {
                    "self_attn.linear_layers.0" => Hf::Qkv(format!("{h}.attn.c_attn.{leaf}"), 0),
                    "self_attn.linear_layers.1" => Hf::Qkv(format!("{h}.attn.c_attn.{leaf}"), 1),
                    "self_attn.linear_layers.2" => Hf::Qkv(format!("{h}.attn.c_attn.{leaf}"), 2),
                    "self_attn.final_linear" => t(format!("{h}.attn.c_proj")),
                    "feed_forward.linear_1" => t(format!("{h}.mlp.c_fc")),
                    "feed_forward.linear_2" => t(format!("{h}.mlp.c_proj")),
                    "layer_norm_1" => same(&format!("{h}.ln_1")),
                    "layer_norm_2" => same(&format!("{h}.ln_2")),
                    other => panic!("{fx}: unexpected GPT-2 tensor {other}"),
                }
            }
        };
    }
    let albert = fx.starts_with("albert");
    let p = if albert { "albert" } else { "bert" };
    match stem {
        "embedding.word_embedding" => return same(&format!("{p}.embeddings.word_embeddings")),
        "embedding.position_embedding" => {
            return same(&format!("{p}.embeddings.position_embeddings"));
        }
        "embedding.segment_embedding" => {
            return Hf::SegmentRows(format!("{p}.embeddings.token_type_embeddings.{leaf}"));
        }
        "embedding.layer_norm" => return same(&format!("{p}.embeddings.LayerNorm")),
        "encoder.linear" => return same("albert.encoder.embedding_hidden_mapping_in"),
        _ => {}
    }
    if let Some(head) = stem.strip_prefix("target.") {
        let to = match (albert, head) {
            (false, "mlm_linear_1") => "cls.predictions.transform.dense",
            (false, "layer_norm") => "cls.predictions.transform.LayerNorm",
            (false, "mlm_linear_2") if leaf == "bias" => "cls.predictions",
            (false, "mlm_linear_2") => "cls.predictions.decoder",
            (false, "nsp_linear_1") => "bert.pooler.dense",
            (false, "nsp_linear_2") => "cls.seq_relationship",
            (true, "mlm_linear_1") => "predictions.dense",
            (true, "layer_norm") => "predictions.LayerNorm",
            (true, "mlm_linear_2") if leaf == "bias" => "predictions",
            (true, "mlm_linear_2") => "predictions.decoder",
            (true, "sop_linear_1") => "albert.pooler",
            (true, "sop_linear_2") => "sop_classifier.classifier",
            _ => panic!("{fx}: unexpected head tensor {name}"),
        };
        return same(to);
    }
    let (layer, part) = if albert {
        (
            "albert.encoder.albert_layer_groups.0.albert_layers.0".to_string(),
            stem.strip_prefix("encoder.transformer.")
                .unwrap()
                .to_string(),
        )
    } else {
        let (i, part) = layer_of(stem.strip_prefix("encoder.transformer.").unwrap());
        (format!("bert.encoder.layer.{i}"), part)
    };
    let to = match (albert, part.as_str()) {
        (false, "self_attn.linear_layers.0") => "attention.self.query",
        (false, "self_attn.linear_layers.1") => "attention.self.key",
        (false, "self_attn.linear_layers.2") => "attention.self.value",
        (false, "self_attn.final_linear") => "attention.output.dense",
        (false, "layer_norm_1") => "attention.output.LayerNorm",
        (false, "feed_forward.linear_1") => "intermediate.dense",
        (false, "feed_forward.linear_2") => "output.dense",
        (false, "layer_norm_2") => "output.LayerNorm",
        (true, "self_attn.linear_layers.0") => "attention.query",
        (true, "self_attn.linear_layers.1") => "attention.key",
        (true, "self_attn.linear_layers.2") => "attention.value",
        (true, "self_attn.final_linear") => "attention.dense",
        (true, "layer_norm_1") => "attention.LayerNorm",
        (true, "feed_forward.linear_1") => "ffn",
        (true, "feed_forward.linear_2") => "ffn_output",
        (true, "layer_norm_2") => "full_layer_layer_norm",
        _ => panic!("{fx}: unexpected encoder tensor {name}"),
    };
    same(&format!("{layer}.{to}"))
}

/// `[rows, cols]` → `[cols, rows]`.
fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| v[r * cols + c]))
        .collect()
}

/// Every UER tensor equals its HF counterpart value for value (exactly: UER-py's script
/// copies); returns the HF names used.
fn assert_every_weight_in_hf(
    fx: &str,
    uer: &Checkpoint,
    hf: &Checkpoint,
) -> std::collections::BTreeSet<String> {
    let mut used = std::collections::BTreeSet::new();
    for (name, t) in &uer.tensors {
        let ours = t.to_f32_vec();
        let get = |n: &str| {
            hf.get(n)
                .unwrap_or_else(|| panic!("{fx}: {name} → {n}: not in the HF checkpoint"))
        };
        let (hf_name, theirs) = match hf_counterpart(fx, name) {
            Hf::Same(n) => (n.clone(), get(&n).to_f32_vec()),
            Hf::Transposed(n) => {
                let h = get(&n);
                (
                    n.clone(),
                    transpose(&h.to_f32_vec(), h.shape[0], h.shape[1]),
                )
            }
            Hf::SegmentRows(n) => {
                let width = t.shape[1];
                let theirs = get(&n).to_f32_vec();
                assert_eq!(ours[width..], theirs[..], "{fx}: {name} rows 1.. ≠ {n}");
                used.insert(n);
                continue;
            }
            Hf::Qkv(n, k) => {
                let h = get(&n);
                let all = h.to_f32_vec();
                let part = if h.shape.len() == 2 {
                    // [in, 3·out] → this part's [out, in].
                    let (rows, cols) = (h.shape[0], h.shape[1]);
                    let third = cols / 3;
                    let slice: Vec<f32> = (0..rows)
                        .flat_map(|r| {
                            all[r * cols + k * third..r * cols + (k + 1) * third].to_vec()
                        })
                        .collect();
                    transpose(&slice, rows, third)
                } else {
                    let third = all.len() / 3;
                    all[k * third..(k + 1) * third].to_vec()
                };
                (n.clone(), part)
            }
        };
        assert_eq!(ours.len(), theirs.len(), "{fx}: {name} vs {hf_name}: sizes");
        assert!(ours == theirs, "{fx}: {name} ≠ {hf_name}");
        used.insert(hf_name);
    }
    // ALBERT's script writes the MLM bias twice (`predictions.bias` and the decoder's).
    if fx.starts_with("albert") {
        assert_eq!(
            hf.get("predictions.decoder.bias").unwrap().bytes(),
            hf.get("predictions.bias").unwrap().bytes()
        );
        used.insert("predictions.decoder.bias".into());
    }
    used
}

#[test]
fn tied_weights_are_detected() {
    let expect: HashMap<&str, Vec<&str>> = HashMap::from([
        (
            "bert_v1",
            vec![
                "embedding.word_embedding.weight",
                "target.mlm_linear_2.weight",
            ],
        ),
        (
            "gpt2_v1",
            vec![
                "embedding.word_embedding.weight",
                "target.output_layer.weight",
            ],
        ),
        (
            "gpt2_v2",
            vec![
                "embedding.word.embedding.weight",
                "target.lm.output_layer.weight",
            ],
        ),
    ]);
    for fx in common::UER_FIXTURES {
        let ck = open(&common::uer_fixture(fx).join("uer_model.bin"));
        let groups = ck.tied_groups();
        match expect.get(fx) {
            Some(names) => {
                assert_eq!(groups.len(), 1, "{fx}: {groups:?}");
                assert_eq!(groups[0], *names, "{fx}");
                // Counted once.
                let all: u64 = ck.tensors.iter().map(|(_, t)| t.numel() as u64).sum();
                assert_eq!(
                    ck.num_parameters(),
                    all - ck.get(names[0]).unwrap().numel() as u64
                );
            }
            None => assert!(groups.is_empty(), "{fx}: unexpected ties {groups:?}"),
        }
    }
}

#[test]
fn legacy_fp16_and_nested_formats_match_the_zip_file() {
    let zip = open(&common::uer_fixture("roberta_v1").join("uer_model.bin"));
    let legacy = open(&formats("roberta_v1_legacy.bin"));
    assert_eq!(legacy.format, Some(Format::TorchLegacy));
    assert_same(&zip, &legacy);

    let nested = open(&formats("roberta_v1_nested.bin"));
    assert_eq!(nested.nested_under.as_deref(), Some("state_dict"));
    assert_eq!(nested.stripped_prefix.as_deref(), Some("module."));
    assert_same(&zip, &nested);
    assert_eq!(zip.nested_under, None);
    assert_eq!(zip.stripped_prefix, None);

    let half = open(&formats("roberta_v1_fp16.bin"));
    assert_eq!(half.tensors.len(), zip.tensors.len());
    for ((n, h), (_, f)) in half.tensors.iter().zip(&zip.tensors) {
        assert_eq!(h.dtype, DType::F16, "{n}");
        assert_eq!(h.shape, f.shape, "{n}");
        let want: Vec<u8> = f
            .to_f32_vec()
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect();
        assert!(
            h.bytes() == want.as_slice(),
            "{n}: not the f32 values rounded to f16"
        );
    }
}

#[test]
fn views_scalars_and_empty_tensors_read_exactly() {
    let s = std::fs::read_to_string(formats("info.json")).unwrap();
    let info: serde_json::Value = serde_json::from_str(&s).unwrap();
    let want = info["views.bin / views_legacy.bin"].as_object().unwrap();
    for file in ["views.bin", "views_legacy.bin"] {
        let ck = open(&formats(file));
        assert_eq!(ck.tensors.len(), want.len(), "{file}");
        for (name, w) in want {
            let t = ck.get(name).unwrap_or_else(|| panic!("{file}: no {name}"));
            let shape: Vec<usize> = w["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(t.shape, shape, "{file} {name}");
            let dtype = match w["dtype"].as_str().unwrap() {
                "float32" => DType::F32,
                "int64" => DType::I64,
                "bool" => DType::Bool,
                d => panic!("{d}"),
            };
            assert_eq!(t.dtype, dtype, "{file} {name}");
            let values: Vec<f64> = w["values"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| {
                            v.as_f64()
                                .unwrap_or_else(|| v.as_bool().unwrap() as u8 as f64)
                        })
                        .collect()
                })
                .unwrap_or_else(|| vec![w["values"].as_f64().unwrap()]);
            let got: Vec<f64> = t.to_f32_vec().iter().map(|&x| x as f64).collect();
            assert_eq!(got, values, "{file} {name}");
        }
        // Contiguous views of one storage stay slices of it; `base` and `row_slice` share it.
        let (a, _) = ck.get("base").unwrap().storage();
        let (b, r) = ck.get("row_slice").unwrap().storage();
        assert_eq!(a.as_bytes().as_ptr(), b.as_bytes().as_ptr(), "{file}");
        assert_eq!(r.len(), 48);
        assert!(ck.tied_groups().is_empty(), "{file}");
    }
}

#[test]
fn round_trip_bin_safetensors_bin_is_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let mut sources: Vec<PathBuf> = common::UER_FIXTURES
        .iter()
        .map(|f| common::uer_fixture(f).join("uer_model.bin"))
        .collect();
    sources.push(formats("views.bin"));
    sources.push(formats("roberta_v1_fp16.bin"));
    for (i, src) in sources.iter().enumerate() {
        let a = open(src);
        let st = dir.path().join(format!("{i}.safetensors"));
        let bin = dir.path().join(format!("{i}.bin"));
        a.write_safetensors(&st, false).unwrap();
        let b = open(&st);
        assert_eq!(b.format, Some(Format::Safetensors));
        assert_same(&a, &b);
        assert_eq!(a.tied_groups(), b.tied_groups(), "{}", src.display());
        b.write_torch(&bin, false).unwrap();
        let c = open(&bin);
        assert_eq!(c.format, Some(Format::TorchZip));
        assert_same(&a, &c);
        assert_eq!(a.tied_groups(), c.tied_groups(), "{}", src.display());
        // Tied tensors are one storage entry; entries are stored, data 64-byte aligned.
        let mut z = zip::ZipArchive::new(std::fs::File::open(&bin).unwrap()).unwrap();
        let storages = (0..z.len())
            .filter(|&j| z.by_index(j).unwrap().name().starts_with("archive/data/"))
            .count();
        let tied_extra: usize = a.tied_groups().iter().map(|g| g.len() - 1).sum();
        assert_eq!(storages, a.tensors.len() - tied_extra, "{}", src.display());
        for j in 0..z.len() {
            let f = z.by_index(j).unwrap();
            assert_eq!(f.compression(), zip::CompressionMethod::Stored);
            if f.name().starts_with("archive/data/") {
                assert_eq!(f.data_start() % 64, 0, "{}", f.name());
            }
        }
        // The safetensors header says `format: pt`.
        let bytes = std::fs::read(&st).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        assert_eq!(header["__metadata__"]["format"], "pt");
    }
    // The legacy file written back as zip equals the zip fixture.
    let legacy = open(&formats("roberta_v1_legacy.bin"));
    legacy
        .write_torch(dir.path().join("legacy.bin"), false)
        .unwrap();
    assert_same(
        &open(&common::uer_fixture("roberta_v1").join("uer_model.bin")),
        &open(&dir.path().join("legacy.bin")),
    );
}

#[test]
fn writers_refuse_existing_output_unless_forced_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let ck = open(&formats("views.bin"));
    let out = dir.path().join("model.safetensors");
    std::fs::write(&out, b"keep me").unwrap();
    let err = ck.write_safetensors(&out, false).unwrap_err();
    assert!(matches!(err, CheckpointError::Exists { .. }), "{err}");
    assert!(
        err.to_string().contains("model.safetensors") && err.to_string().contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    let err = ck.write_torch(&out, false).unwrap_err();
    assert!(matches!(err, CheckpointError::Exists { .. }), "{err}");
    ck.write_safetensors(&out, true).unwrap();
    assert_same(&ck, &open(&out));
    // Only the output is in the directory: no temp files left.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("model.safetensors")]);
    // A directory is an error too.
    assert!(matches!(
        ck.write_torch(dir.path(), true).unwrap_err(),
        CheckpointError::IsDirectory { .. }
    ));
    // A missing folder is created (the one output rule of every command).
    ck.write_torch(dir.path().join("no/such/dir.bin"), false)
        .unwrap();
    assert!(dir.path().join("no/such/dir.bin").is_file());
    // A directory opens its model.safetensors.
    assert_eq!(open(dir.path()).format, Some(Format::Safetensors));
}

#[test]
fn empty_checkpoint_and_scalar_only_checkpoint_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut ck = Checkpoint::default();
    ck.write_torch(dir.path().join("empty.bin"), false).unwrap();
    assert!(open(&dir.path().join("empty.bin")).tensors.is_empty());
    ck.write_safetensors(dir.path().join("empty.safetensors"), false)
        .unwrap();
    assert!(
        open(&dir.path().join("empty.safetensors"))
            .tensors
            .is_empty()
    );
    ck.insert("s", Tensor::from_f32(vec![], &[2.5]));
    ck.insert("e", Tensor::from_f32(vec![0, 3], &[]));
    ck.insert(
        "i",
        Tensor::from_bytes(
            DType::I64,
            vec![2],
            [-1i64, 1 << 40]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        ),
    );
    ck.insert("big", Tensor::from_f32(vec![70000, 1], &vec![1.0; 70000]));
    ck.write_torch(dir.path().join("s.bin"), false).unwrap();
    let back = open(&dir.path().join("s.bin"));
    assert_same(&ck, &back);
    assert_eq!(
        back.get("i").unwrap().to_i64_vec().unwrap(),
        vec![-1, 1 << 40]
    );
}

// ---------------------------------------------------------------------------------------
// Bad input: a clear error naming the file and the problem, never a panic.

fn open_err(p: &Path) -> CheckpointError {
    match Checkpoint::open(p) {
        Ok(ck) => panic!("{} opened with {} tensors", p.display(), ck.tensors.len()),
        Err(e) => {
            let file = p.file_name().unwrap().to_string_lossy().to_string();
            assert!(
                e.to_string().contains(&file),
                "error does not name the file: {e}"
            );
            e
        }
    }
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
    p
}

/// A zip with the given (name, bytes) entries, stored.
fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (n, b) in entries {
        z.start_file(*n, o).unwrap();
        z.write_all(b).unwrap();
    }
    z.finish().unwrap().into_inner()
}

/// The entries of the torch zip written for a one-tensor checkpoint `w` = [1, 2, 3] (f32).
fn small_torch_entries() -> Vec<(String, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let mut ck = Checkpoint::default();
    ck.insert("w", Tensor::from_f32(vec![3], &[1.0, 2.0, 3.0]));
    let p = dir.path().join("w.bin");
    ck.write_torch(&p, false).unwrap();
    let mut z = zip::ZipArchive::new(std::fs::File::open(&p).unwrap()).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut b).unwrap();
            (f.name().to_string(), b)
        })
        .collect()
}

fn rezip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let e: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    zip_of(&e)
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fixture = std::fs::read(common::uer_fixture("bert_v1").join("uer_model.bin")).unwrap();

    // Truncated zip: the central directory is gone.
    let p = write_file(d, "truncated.bin", &fixture[..fixture.len() / 2]);
    let e = open_err(&p);
    assert!(matches!(e, CheckpointError::Corrupt { .. }), "{e}");
    // Truncated legacy stream.
    let legacy = std::fs::read(formats("roberta_v1_legacy.bin")).unwrap();
    for cut in [20, 500, legacy.len() / 2, legacy.len() - 1] {
        let p = write_file(d, "truncated_legacy.bin", &legacy[..cut]);
        assert!(
            open_err(&p).to_string().contains("truncated"),
            "cut at {cut}"
        );
    }

    // Zip without data.pkl, and with a data.pkl that is not a pickle.
    let p = write_file(d, "no_pkl.bin", &zip_of(&[("archive/version", b"3\n")]));
    assert!(open_err(&p).to_string().contains("data.pkl"));
    let p = write_file(
        d,
        "garbage_pkl.bin",
        &zip_of(&[("archive/data.pkl", b"\x80\x02hello")]),
    );
    assert!(matches!(open_err(&p), CheckpointError::Corrupt { .. }));
    let p = write_file(
        d,
        "list_pkl.bin",
        &zip_of(&[("archive/data.pkl", b"\x80\x02]q\x00.")]),
    );
    assert!(open_err(&p).to_string().contains("not a state dict"));

    // Unknown GLOBAL: refused by name, nothing runs.
    let e = open_err(&formats("hostile_os_system.bin"));
    assert!(
        matches!(&e, CheckpointError::ForbiddenGlobal { global, .. } if global == "os.system"),
        "{e}"
    );
    assert!(e.to_string().contains("os.system"));
    let hostile = [(
        "archive/data.pkl",
        &b"\x80\x02c__builtin__\neval\nX\x01\x00\x00\x001\x85R."[..],
    )];
    let p = write_file(d, "eval.bin", &zip_of(&hostile));
    assert!(open_err(&p).to_string().contains("__builtin__.eval"));
    let p = write_file(
        d,
        "torch_other.bin",
        &zip_of(&[("archive/data.pkl", &b"\x80\x02ctorch\nload\n."[..])]),
    );
    assert!(open_err(&p).to_string().contains("torch.load"));

    // A storage key that does not exist.
    let entries = small_torch_entries();
    let without: Vec<_> = entries
        .iter()
        .filter(|(n, _)| n != "archive/data/0")
        .cloned()
        .collect();
    let p = write_file(d, "missing_storage.bin", &rezip(&without));
    let e = open_err(&p);
    assert!(
        matches!(&e, CheckpointError::MissingStorage { key, tensor, .. } if key == "0" && tensor == "w"),
        "{e}"
    );

    // A tensor extending past its storage: the storage holds 2 floats, the tensor needs 3.
    let short: Vec<_> = entries
        .iter()
        .map(|(n, b)| {
            if n == "archive/data/0" {
                (n.clone(), b[..8].to_vec())
            } else {
                (n.clone(), b.clone())
            }
        })
        .collect();
    let p = write_file(d, "short_storage.bin", &rezip(&short));
    assert!(matches!(open_err(&p), CheckpointError::OutOfBounds { .. }));
    // …and a pickle whose offset points past the end (offset 5 of a 3-element storage).
    let pkl = &entries
        .iter()
        .find(|(n, _)| n == "archive/data.pkl")
        .unwrap()
        .1;
    let mut bad_pkl = pkl.clone();
    let at = bad_pkl.windows(3).position(|w| w == b"QK\x00").unwrap();
    bad_pkl[at + 2] = 5;
    let moved: Vec<_> = entries
        .iter()
        .map(|(n, b)| {
            if n == "archive/data.pkl" {
                (n.clone(), bad_pkl.clone())
            } else {
                (n.clone(), b.clone())
            }
        })
        .collect();
    let p = write_file(d, "offset_past_end.bin", &rezip(&moved));
    let e = open_err(&p);
    assert!(
        matches!(&e, CheckpointError::OutOfBounds { tensor, .. } if tensor == "w"),
        "{e}"
    );

    // safetensors whose header lies: offsets past the data, and a header longer than the file.
    let header = br#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    let mut st = (header.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(header);
    st.extend_from_slice(&[0; 8]);
    let p = write_file(d, "lying.safetensors", &st);
    assert!(matches!(open_err(&p), CheckpointError::Safetensors { .. }));
    let mut st = 1_000_000u64.to_le_bytes().to_vec();
    st.extend_from_slice(header);
    let p = write_file(d, "long_header.safetensors", &st);
    assert!(matches!(open_err(&p), CheckpointError::Safetensors { .. }));
    let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}}"#;
    let mut st = (header.len() as u64).to_le_bytes().to_vec();
    st.extend_from_slice(header);
    st.extend_from_slice(&[0; 16]);
    let p = write_file(d, "wrong_shape.safetensors", &st);
    assert!(matches!(open_err(&p), CheckpointError::Safetensors { .. }));

    // Empty file, unknown bytes, a directory without a checkpoint, a missing path.
    assert!(matches!(
        open_err(&write_file(d, "empty.bin", b"")),
        CheckpointError::Empty { .. }
    ));
    assert!(matches!(
        open_err(&write_file(d, "text.bin", b"hello world, no tensors")),
        CheckpointError::UnknownFormat { .. }
    ));
    let sub = d.join("just_a_dir");
    std::fs::create_dir(&sub).unwrap();
    assert!(matches!(
        open_err(&sub),
        CheckpointError::NoCheckpointInDir { .. }
    ));
    assert!(matches!(
        open_err(&d.join("nope.bin")),
        CheckpointError::NotFound { .. }
    ));
}

#[test]
fn hostile_pickles_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // Deep MARK nesting, a huge memo index, and endless list self-appends stay errors.
    let mut deep = b"\x80\x02".to_vec();
    deep.extend(std::iter::repeat_n(b'(', 100_000));
    let huge_memo = b"\x80\x02}r\xff\xff\xff\x7f.".to_vec();
    let mut billion = b"\x80\x02]q\x00".to_vec();
    for _ in 0..10_000 {
        billion.extend_from_slice(b"h\x00a");
    }
    billion.push(b'.');
    for (name, pkl) in [
        ("deep.bin", deep),
        ("memo.bin", huge_memo),
        ("laughs.bin", billion),
    ] {
        let p = write_file(dir.path(), name, &zip_of(&[("archive/data.pkl", &pkl)]));
        let e = open_err(&p);
        assert!(matches!(e, CheckpointError::Corrupt { .. }), "{name}: {e}");
    }
}

// ---------------------------------------------------------------------------------------
// `uerzoo inspect`.

#[test]
fn inspect_prints_a_summary_and_json() {
    let bin = common::uerzoo_bin();
    let path = common::uer_fixture("bert_v1").join("uer_model.bin");
    let out = common::run_ok(std::process::Command::new(&bin).arg("inspect").arg(&path));
    let text = String::from_utf8(out.stdout).unwrap();
    let ck = open(&path);
    assert!(text.contains("format:     torch zip"), "{text}");
    assert!(
        text.contains(&format!("tensors:    {} (1 tied group)", ck.tensors.len())),
        "{text}"
    );
    assert!(
        text.contains("tied:       embedding.word_embedding.weight = target.mlm_linear_2.weight"),
        "{text}"
    );
    assert!(
        text.contains("embedding.word_embedding.weight") && text.contains("[3006, 128]"),
        "{text}"
    );

    let out = std::process::Command::new(&bin)
        .args(["inspect", "--json"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["format"], "torch zip");
    assert_eq!(j["tensor_count"], ck.tensors.len());
    assert_eq!(j["parameters"], ck.num_parameters());
    assert_eq!(j["bytes"], ck.num_parameters() * 4);
    assert_eq!(j["tied_groups"][0][1], "target.mlm_linear_2.weight");
    assert_eq!(j["tensors"][0]["name"], "embedding.word_embedding.weight");
    assert_eq!(j["tensors"][0]["dtype"], "f32");
    assert_eq!(j["tensors"][0]["shape"], serde_json::json!([3006, 128]));

    // Nested + legacy + directory inputs.
    let out = std::process::Command::new(&bin)
        .args(["inspect", "--json"])
        .arg(formats("roberta_v1_nested.bin"))
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["nested_under"], "state_dict");
    assert_eq!(j["stripped_prefix"], "module.");
    let out = std::process::Command::new(&bin)
        .args(["inspect", "--json"])
        .arg(formats("views_legacy.bin"))
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["format"], "torch legacy");
    let hf = common::uer_fixture("gpt2_v1").join("hf_by_uer_script");
    let out = std::process::Command::new(&bin)
        .args(["inspect", "--json", "--time"])
        .arg(&hf)
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(j["path"].as_str().unwrap().ends_with("pytorch_model.bin"));
    assert_eq!(
        j["tied_groups"],
        serde_json::json!([["transformer.wte.weight", "lm_head.weight"]])
    );
    assert!(j["read_mib_per_second"].as_f64().unwrap() > 0.0);

    // A hostile file: exit code 1, the global named on stderr, nothing on stdout.
    let out = std::process::Command::new(&bin)
        .arg("inspect")
        .arg(formats("hostile_os_system.bin"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("os.system") && err.contains("hostile_os_system.bin"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// Stable-toolchain fuzzing: random mutations of real files through every reader. The
// cargo-fuzz targets in `fuzz/` do the same with coverage guidance on nightly.
// `UERZOO_FUZZ_SECS=600 cargo test --release --test checkpoint fuzz -- --ignored`

fn mutate(rng: &mut rand_chacha::ChaCha8Rng, seed: &[u8]) -> Vec<u8> {
    use rand::Rng;
    let mut b = seed.to_vec();
    for _ in 0..rng.random_range(1..=8) {
        if b.is_empty() {
            b.push(rng.random());
            continue;
        }
        let at = rng.random_range(0..b.len());
        match rng.random_range(0..7) {
            0 => b[at] = rng.random(),
            1 => b[at] ^= 1 << rng.random_range(0..8),
            2 => b.truncate(at),
            3 => {
                b.remove(at);
            }
            4 => b.insert(at, rng.random()),
            5 => {
                // An interesting integer over 1/2/4/8 bytes.
                let v: u64 = [0, 1, 0x7f, 0xff, 0xffff, 0x7fff_ffff, u64::MAX, 1 << 40]
                    [rng.random_range(0..8)];
                let n = [1, 2, 4, 8][rng.random_range(0..4)].min(b.len() - at);
                b[at..at + n].copy_from_slice(&v.to_le_bytes()[..n]);
            }
            _ => {
                // Duplicate a chunk somewhere else.
                let len = rng.random_range(1..=64).min(b.len() - at);
                let chunk = b[at..at + len].to_vec();
                let to = rng.random_range(0..=b.len());
                b.splice(to..to, chunk);
            }
        }
    }
    b
}

fn check_reader(bytes: &[u8]) {
    if let Ok(ck) = Checkpoint::from_bytes("fuzz.bin", bytes) {
        for (_, t) in &ck.tensors {
            assert_eq!(t.bytes().len(), t.numel() * t.dtype.size());
            let _ = t.to_f32_vec();
        }
        let _ = ck.summary();
    }
}

/// The pickle of a zip seed, and its other entries.
fn pickle_seed(zip_bytes: &[u8]) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).unwrap();
    let mut pkl = Vec::new();
    let mut rest = Vec::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut b).unwrap();
        if f.name().ends_with("data.pkl") {
            pkl = b;
        } else {
            rest.push((f.name().to_string(), b));
        }
    }
    (pkl, rest)
}

#[test]
#[ignore = "long: stable-toolchain fuzzing; set UERZOO_FUZZ_SECS"]
fn fuzz_readers_with_random_mutations() {
    use rand::SeedableRng;
    let secs: u64 = std::env::var("UERZOO_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let views = open(&formats("views.bin"));
    views
        .write_safetensors(dir.path().join("v.safetensors"), false)
        .unwrap();
    let seeds: Vec<Vec<u8>> = [
        formats("views.bin"),
        formats("views_legacy.bin"),
        formats("hostile_os_system.bin"),
        dir.path().join("v.safetensors"),
    ]
    .iter()
    .map(|p| std::fs::read(p).unwrap())
    .collect();
    let (views_pkl, views_rest) = pickle_seed(&seeds[0]);
    let bert_pkl =
        pickle_seed(&std::fs::read(common::uer_fixture("bert_v1").join("uer_model.bin")).unwrap())
            .0;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed);
    let start = std::time::Instant::now();
    let mut runs = 0u64;
    while start.elapsed().as_secs() < secs {
        use rand::Rng;
        let which = rng.random_range(0..7);
        let input = match which {
            0..=3 => mutate(&mut rng, &seeds[which]),
            // A mutated pickle inside a well-formed zip with the real storages.
            4 => {
                let pkl = mutate(&mut rng, &views_pkl);
                let mut e = vec![("views/data.pkl".to_string(), pkl)];
                e.extend(views_rest.iter().cloned());
                rezip(&e)
            }
            5 => {
                let _ = uerzoo::checkpoint::pickle::parse(&mutate(&mut rng, &bert_pkl));
                runs += 1;
                continue;
            }
            _ => (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
        };
        let result = std::panic::catch_unwind(|| check_reader(&input));
        if result.is_err() {
            let p = std::env::temp_dir().join(format!("uerzoo-fuzz-crash-{runs}.bin"));
            std::fs::write(&p, &input).unwrap();
            panic!("reader panicked on input saved to {}", p.display());
        }
        runs += 1;
    }
    eprintln!("fuzz: {runs} inputs in {secs} s, no panic");
}

/// Writes every fixture back through our writers (safetensors, then torch zip from the
/// safetensors) and checks that both read back as the original, tensor for tensor, tied
/// names still tied. The files go to `$UERZOO_TORCH_CHECK_DIR` when set, for a further
/// check by hand with real PyTorch (the suite itself never needs Python):
/// `UERZOO_TORCH_CHECK_DIR=/tmp/tc cargo test --test checkpoint torch_check`, then for each
/// `NAME.bin` there: `torch.load(NAME.bin, weights_only=True)` must equal
/// `torch.load(ORIGINAL)` tensor for tensor, tied names sharing one storage. `sources.txt`
/// lists `NAME ORIGINAL`. Files in `$UERZOO_TORCH_CHECK_INPUTS` (e.g. made by torch with
/// other dtypes, parameters, protocol 4) are added. Without the variable, a temporary
/// folder.
#[test]
fn torch_check_files() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::env::var_os("UERZOO_TORCH_CHECK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&out).unwrap();
    let mut sources: Vec<(String, PathBuf)> = common::UER_FIXTURES
        .iter()
        .map(|f| (f.to_string(), common::uer_fixture(f).join("uer_model.bin")))
        .collect();
    for f in [
        "views.bin",
        "views_legacy.bin",
        "roberta_v1_legacy.bin",
        "roberta_v1_fp16.bin",
        "roberta_v1_nested.bin",
    ] {
        sources.push((f.trim_end_matches(".bin").to_string(), formats(f)));
    }
    if let Some(extra) = std::env::var_os("UERZOO_TORCH_CHECK_INPUTS") {
        for e in std::fs::read_dir(extra).unwrap() {
            let p = e.unwrap().path();
            sources.push((p.file_stem().unwrap().to_string_lossy().to_string(), p));
        }
    }
    let mut list = String::new();
    for (name, src) in &sources {
        let ck = open(src);
        assert!(!ck.tensors.is_empty(), "{}: no tensors read", src.display());
        let st = out.join(format!("{name}.safetensors"));
        let bin = out.join(format!("{name}.bin"));
        ck.write_safetensors(&st, true).unwrap();
        let from_st = open(&st);
        assert_same(&ck, &from_st);
        assert_eq!(ck.tied_groups(), from_st.tied_groups(), "{}", st.display());
        from_st.write_torch(&bin, true).unwrap();
        let from_bin = open(&bin);
        assert_eq!(from_bin.format, Some(Format::TorchZip), "{}", bin.display());
        assert_same(&ck, &from_bin);
        assert_eq!(
            ck.tied_groups(),
            from_bin.tied_groups(),
            "{}",
            bin.display()
        );
        list.push_str(&format!("{name} {}\n", src.display()));
    }
    std::fs::write(out.join("sources.txt"), &list).unwrap();
    assert_eq!(list.lines().count(), sources.len());
    assert!(sources.len() >= common::UER_FIXTURES.len() + 5);
}

/// Pickle bytes for `_rebuild_tensor_v2` of FloatStorage `key` (numel elements).
fn tensor_pickle(key: &str, numel: u8, offset: u8, shape: &[u8], stride: &[u8]) -> Vec<u8> {
    let s = |s: &str| {
        [
            b"X".to_vec(),
            (s.len() as u32).to_le_bytes().to_vec(),
            s.as_bytes().to_vec(),
        ]
        .concat()
    };
    let mut p = b"ctorch._utils\n_rebuild_tensor_v2\n((".to_vec();
    p.extend(s("storage"));
    p.extend_from_slice(b"ctorch\nFloatStorage\n");
    p.extend(s(key));
    p.extend(s("cpu"));
    p.extend_from_slice(&[b'K', numel, b't', b'Q', b'K', offset, b'(']);
    for &d in shape {
        p.extend_from_slice(&[b'K', d]);
    }
    p.extend_from_slice(b"t(");
    for &d in stride {
        p.extend_from_slice(&[b'K', d]);
    }
    p.extend_from_slice(b"t\x89}tR");
    p
}

fn state_dict_zip(items: &[(&str, Vec<u8>)], storage: &[f32]) -> Vec<u8> {
    let mut pkl = b"\x80\x02}(".to_vec();
    for (name, t) in items {
        pkl.push(b'X');
        pkl.extend_from_slice(&(name.len() as u32).to_le_bytes());
        pkl.extend_from_slice(name.as_bytes());
        pkl.extend_from_slice(t);
    }
    pkl.extend_from_slice(b"u.");
    let data: Vec<u8> = storage.iter().flat_map(|x| x.to_le_bytes()).collect();
    zip_of(&[("a/data.pkl", &pkl), ("a/data/0", &data)])
}

#[test]
fn hand_made_pickles_follow_python_semantics_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    // A repeated key keeps its first position and takes the last value.
    let zip = state_dict_zip(
        &[
            ("a", tensor_pickle("0", 4, 0, &[2], &[1])),
            ("b", tensor_pickle("0", 4, 1, &[3], &[1])),
            ("a", tensor_pickle("0", 4, 2, &[2], &[1])),
        ],
        &[1.0, 2.0, 3.0, 4.0],
    );
    let ck = open(&write_file(dir.path(), "dup.bin", &zip));
    assert_eq!(ck.names().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(ck.get("a").unwrap().to_f32_vec(), [3.0, 4.0]);
    assert_eq!(ck.get("b").unwrap().to_f32_vec(), [2.0, 3.0, 4.0]);
    // A stride-0 (expanded) view is materialised…
    let zip = state_dict_zip(
        &[("e", tensor_pickle("0", 2, 1, &[2, 3], &[0, 0]))],
        &[1.0, 7.0],
    );
    let ck = open(&write_file(dir.path(), "expand.bin", &zip));
    assert_eq!(ck.get("e").unwrap().to_f32_vec(), [7.0; 6]);
    // …but one claiming a huge size is refused, not allocated.
    let zip = state_dict_zip(
        &[(
            "e",
            tensor_pickle("0", 2, 0, &[255, 255, 255, 255], &[0, 0, 0, 0]),
        )],
        &[1.0, 7.0],
    );
    let e = open_err(&write_file(dir.path(), "expand_bomb.bin", &zip));
    assert!(matches!(e, CheckpointError::OutOfBounds { .. }), "{e}");
    // Writers refuse two tensors of one name.
    let mut ck = Checkpoint::default();
    ck.tensors
        .push(("x".into(), Tensor::from_f32(vec![1], &[1.0])));
    ck.tensors
        .push(("x".into(), Tensor::from_f32(vec![1], &[2.0])));
    let e = ck
        .write_torch(dir.path().join("dup_out.bin"), false)
        .unwrap_err();
    assert!(matches!(e, CheckpointError::DuplicateName { .. }), "{e}");
    assert!(
        ck.write_safetensors(dir.path().join("dup_out.safetensors"), false)
            .is_err()
    );
    assert!(!dir.path().join("dup_out.bin").exists());
}

#[test]
fn inspect_names_the_family_and_naming_generation() {
    let cases = [
        (
            "roberta_v1/uer_model.bin",
            "BERT/RoBERTa with MLM head",
            "UER naming v1",
        ),
        (
            "bert_v1/hf_by_uer_script",
            "BERT with MLM + NSP heads",
            "Huggingface",
        ),
        ("gpt2_v2/uer_model.bin", "GPT-2 LM", "UER naming v2"),
        (
            "albert_v1/uer_model.bin",
            "ALBERT with MLM + SOP heads",
            "UER naming v1",
        ),
    ];
    for (path, family, naming) in cases {
        let out = std::process::Command::new(common::uerzoo_bin())
            .args(["inspect", "--json"])
            .arg(common::shared().join("fixtures/uer").join(path))
            .output()
            .unwrap();
        assert!(out.status.success(), "{path}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["family"], family, "{path}");
        assert_eq!(json["naming"], naming, "{path}");
    }
}
