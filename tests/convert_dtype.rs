//! `uerzoo convert` writing: unchanged tensors copied file to file (`copy_file_range`) give
//! the bytes of the buffered path and of the writer before it (sha256 pinned); `--dtype
//! f16|bf16` writes half-size HF and UER files that `forward` loads, close to f32.

mod common;

use std::path::Path;
use std::process::Command;

use common::{max_diff_real, read, run_ok, uer_fixture, uerzoo_bin};
use sha2::{Digest, Sha256};
use uerzoo::checkpoint::DType;

fn convert(args: &[&str]) {
    run_ok(Command::new(uerzoo_bin()).arg("convert").args(args));
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn sha256(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// sha256 of the files the writer made before file-to-file copying (UER → HF safetensors;
/// that back to a UER safetensors file; UER → UER naming v2 `.bin`).
const BEFORE: [(&str, [&str; 3]); 6] = [
    (
        "albert_v1",
        [
            "b0441eb28a273987b5886cecc259c94faf1d6acb5633ee83c52db5e5e97e270d",
            "b4f484d90b157b10647e55b31297cbf48bd10e755480ac785a17d11ac57c0a49",
            "0a84d6c2cdf2099e601d3ca3e66e7291fe8951bbd20d5ef7c140b65b25d2c881",
        ],
    ),
    (
        "bert_v1",
        [
            "ad533cda93ece52799a5c704d367b3ab076e5bc1f6bcbc9ec386a93ed630537c",
            "f7c3f504ffaa2cdcb969fb6acb0ba0b40a08fc1091812d8cdc801ead8a105d33",
            "b51036d3411dee540d30f3583edcdf6145f1c40aa97b908f95a827a7922bdcb7",
        ],
    ),
    (
        "gpt2_v1",
        [
            "29520766b5a477a17bf7b26ef4a205ca6cdb148d732f2e7d69c459cac97c6fcf",
            "4a42fa98c00004bd6b1ba62450d011709a80655923f98c13261a6c16fdf204c6",
            "f3781b6c14507d340e2aa85c112723d597f05bfb9b8bf8f82b1ed499dbcbfe1e",
        ],
    ),
    (
        "gpt2_v2",
        [
            "281d39579408aab7b904973e5c853e8879aab9715725993240d07bde3abbceb8",
            "0ad5a3bcbb5d13e0432f65783bcc177d0b69b6a0a8c6d04fc0989f68d7bfb9f8",
            "67cce2c8049873bbeb670c57105555b5f4931ccfcd58c9505153e296b1471d92",
        ],
    ),
    (
        "roberta_v1",
        [
            "439bafad2c40ffcd8a8b692760eb7b6e0d2aa060c6e9b355ef1c66703fdd7a4a",
            "c12db36faaf58861ce596734a810899b3ca918469203f19784af062589d4e7e3",
            "045b3a8ee93ea4db48a233178b8c3cf559767e3cb0c2070382e28a63e6965af2",
        ],
    ),
    (
        "roberta_v2",
        [
            "fe085388ef7c19262d6a858e2e68a563b7575dfb1d8c66dd06e45bda00592b44",
            "713d6458c3eacbaf45dbfe2130ffe824c5d11f5f43a30ab1aa7421f7a3f658fb",
            "1cb91d3142cb54c1c37ea5a87d59e6924929c75e80d2a7697b1e255b74230e11",
        ],
    ),
];

#[test]
fn copied_and_buffered_outputs_are_the_bytes_of_before() {
    let tmp = tempfile::tempdir().unwrap();
    for (fixture, want) in BEFORE {
        let input = uer_fixture(fixture).join("uer_model.bin");
        let mut got: Vec<[String; 3]> = Vec::new();
        for (mode, extra) in [("copied", None), ("buffered", Some("--no-copy-ranges"))] {
            let dir = tmp.path().join(format!("{fixture}_{mode}"));
            let hf = dir.join("hf");
            let back = dir.join("back.safetensors");
            let v2 = dir.join("v2.bin");
            let with = |mut a: Vec<&str>| {
                a.extend(extra);
                convert(&a);
            };
            with(vec![s(&input), s(&hf), "--to", "hf"]);
            with(vec![
                s(&hf),
                s(&back),
                "--to",
                "uer",
                "--format",
                "safetensors",
            ]);
            with(vec![s(&input), s(&v2), "--to", "uer", "--uer-naming", "v2"]);
            got.push([
                sha256(&hf.join("model.safetensors")),
                sha256(&back),
                sha256(&v2),
            ]);
        }
        assert_eq!(
            got[0], got[1],
            "{fixture}: copied and buffered outputs differ"
        );
        assert_eq!(got[0], want.map(String::from), "{fixture}: bytes changed");
    }
}

/// Largest |hidden − f32 hidden| `forward` gives on the roberta_v1 fixture, per dtype: the
/// measured values (f16 3.6e-3, bf16 2.2e-2; HF and UER outputs alike) with margin.
const BOUND_F16: f32 = 1e-2;
const BOUND_BF16: f32 = 6e-2;

fn forward(model: &Path, out: &Path) -> Vec<f32> {
    let input = uer_fixture("roberta_v1").join("uer_outputs.safetensors");
    run_ok(Command::new(uerzoo_bin()).arg("forward").arg(model).args([
        "--input",
        s(&input),
        "--output",
        s(out),
    ]));
    read(out).get("hidden").unwrap().to_f32_vec()
}

#[test]
fn half_outputs_are_half_size_load_and_stay_close() {
    let dir = uer_fixture("roberta_v1");
    let input = dir.join("uer_model.bin");
    let reference = read(&dir.join("uer_outputs.safetensors"));
    let seg = reference.get("segment").unwrap().to_i64_vec().unwrap();
    let width = reference.get("hidden").unwrap().shape[2];
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // f32 of an f32 source: the tensor bytes of no --dtype; the config names the dtype.
    convert(&[s(&input), s(&t.join("plain")), "--to", "hf"]);
    convert(&[s(&input), s(&t.join("f32")), "--to", "hf", "--dtype", "f32"]);
    convert(&[s(&input), s(&t.join("f32.bin")), "--to", "uer"]);
    let st = |d: &str| t.join(d).join("model.safetensors");
    assert_eq!(sha256(&st("plain")), sha256(&st("f32")));
    let f32_hf = forward(&t.join("f32"), &t.join("f32.out"));
    let f32_uer = forward(&t.join("f32.bin"), &t.join("f32.bin.out"));
    for (dt, dtype, torch, bound) in [
        ("f16", DType::F16, "float16", BOUND_F16),
        ("bf16", DType::BF16, "bfloat16", BOUND_BF16),
    ] {
        let hf = t.join(dt);
        let bin = t.join(format!("{dt}.bin"));
        convert(&[s(&input), s(&hf), "--to", "hf", "--dtype", dt]);
        convert(&[s(&input), s(&bin), "--to", "uer", "--dtype", dt]);
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(config["torch_dtype"], torch, "{dt}");
        for (path, full) in [(st(dt), st("f32")), (bin.clone(), t.join("f32.bin"))] {
            let ck = read(&path);
            assert!(ck.tensors.iter().all(|(_, x)| x.dtype == dtype), "{dt}");
            let (half, whole) = (
                std::fs::metadata(&path).unwrap().len(),
                std::fs::metadata(&full).unwrap().len(),
            );
            assert!(half * 100 < whole * 51, "{dt}: {half} bytes vs {whole}");
        }
        // Values: f32 rounded to nearest even, tensor by tensor.
        let (a, b) = (read(&st("f32")), read(&st(dt)));
        for (name, x) in &a.tensors {
            let y = b.get(name).unwrap();
            let want: Vec<f32> = x
                .to_f32_vec()
                .iter()
                .map(|&v| match dtype {
                    DType::F16 => half::f16::from_f32(v).to_f32(),
                    _ => half::bf16::from_f32(v).to_f32(),
                })
                .collect();
            assert!(y.to_f32_vec() == want, "{dt}: `{name}`");
        }
        for (model, f32_hidden) in [(&hf, &f32_hf), (&bin, &f32_uer)] {
            let name = model.file_name().unwrap().to_str().unwrap();
            let got = forward(model, &t.join(format!("{name}.out")));
            let d = max_diff_real(&got, f32_hidden, &seg, width);
            assert!(
                d < bound,
                "{dt} {}: hidden differs by {d:e}",
                model.display()
            );
            assert!(d > 0.0, "{dt}: no rounding happened");
        }
    }
}

/// Integer tensors are left as they are by `--dtype`; tied names stay tied.
#[test]
fn integer_tensors_are_untouched_and_ties_kept() {
    use uerzoo::convert::{FloatDType, dtype::cast_checkpoint};
    let mut ck = read(&uer_fixture("bert_v1").join("uer_model.bin"));
    let ids: Vec<i64> = (0..512).collect();
    let pos = uerzoo::checkpoint::Tensor::from_bytes(
        DType::I64,
        vec![1, 512],
        bytemuck::cast_slice(&ids).to_vec(),
    );
    ck.insert("position_ids", pos);
    let word = ck.get("embedding.word_embedding.weight").unwrap().clone();
    ck.insert("tied.word", word);
    let got = cast_checkpoint(&ck, FloatDType::BF16);
    let t = got.get("position_ids").unwrap();
    assert_eq!(t.dtype, DType::I64);
    assert_eq!(t.to_i64_vec().unwrap(), ids);
    assert_eq!(got.get("tied.word").unwrap().dtype, DType::BF16);
    let word = "embedding.word_embedding.weight".to_string();
    assert!(
        got.tied_groups()
            .iter()
            .any(|g| g.contains(&word) && g.contains(&"tied.word".to_string()))
    );
}
