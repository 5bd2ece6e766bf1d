//! `uerzoo convert` against the fixtures made by the real UER-py and transformers
//! (`shared/fixtures/uer/*`): bit-for-bit equality with UER-py's own conversion script's
//! output, exact round trips back to UER, and clear errors that write nothing.

mod common;

use std::path::Path;
use std::process::Command;

use uerzoo::checkpoint::Checkpoint;
use uerzoo::convert::{self, Layout, Naming, Source, ToHfOptions, ToUerOptions};

/// HF names UER-py's script writes that we need not: GPT-2's causal-mask buffers.
fn is_buffer(name: &str) -> bool {
    name.ends_with(".attn.bias")
}

/// The second MLM bias name we add (transformers 5 reads it when the decoder is untied).
const EXTRA_DECODER_BIAS: &str = "cls.predictions.decoder.bias";

fn era(fixture: &str) -> Naming {
    let info: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::uer_fixture(fixture).join("info.json")).unwrap(),
    )
    .unwrap();
    info["era"].as_str().unwrap().parse().unwrap()
}

/// Every tensor of UER-py's script output is in `ours`, bit for bit (buffers aside), and
/// `ours` has nothing else but the extra decoder bias (equal to `cls.predictions.bias`).
fn assert_matches_script(fixture: &str, ours: &Checkpoint) {
    let reference =
        Checkpoint::open(common::uer_fixture(fixture).join("hf_by_uer_script/pytorch_model.bin"))
            .unwrap();
    for (name, r) in &reference.tensors {
        if is_buffer(name) {
            continue;
        }
        let o = ours
            .get(name)
            .unwrap_or_else(|| panic!("{fixture}: no `{name}` in our output"));
        assert_eq!(
            (o.dtype, &o.shape),
            (r.dtype, &r.shape),
            "{fixture}: {name}"
        );
        assert!(
            o.bytes() == r.bytes(),
            "{fixture}: `{name}` differs from UER-py's script"
        );
    }
    for name in ours.names() {
        if reference.get(name).is_none() {
            assert_eq!(name, EXTRA_DECODER_BIAS, "{fixture}: unexpected `{name}`");
            assert_eq!(
                ours.get(name).unwrap().bytes(),
                ours.get("cls.predictions.bias").unwrap().bytes()
            );
        }
    }
}

/// `back` has `uer_model.bin`'s key set and tensors, bit for bit; the segment embedding's
/// row 0 (padding, which HF does not keep) comes back as zeros.
fn assert_matches_uer(fixture: &str, back: &Checkpoint) {
    assert_matches_uer_seg(fixture, back, true)
}

fn assert_matches_uer_seg(fixture: &str, back: &Checkpoint, via_hf: bool) {
    let original = Checkpoint::open(common::uer_fixture(fixture).join("uer_model.bin")).unwrap();
    let mut a: Vec<&str> = original.names().collect();
    let mut b: Vec<&str> = back.names().collect();
    a.sort();
    b.sort();
    assert_eq!(a, b, "{fixture}: key sets differ");
    for (name, o) in &original.tensors {
        let t = back.get(name).unwrap();
        assert_eq!(
            (t.dtype, &t.shape),
            (o.dtype, &o.shape),
            "{fixture}: {name}"
        );
        if via_hf && name.contains("seg") {
            let row = o.bytes().len() / o.shape[0];
            assert_eq!(
                t.bytes()[row..],
                o.bytes()[row..],
                "{fixture}: {name} rows 1.."
            );
            assert!(
                t.bytes()[..row].iter().all(|&b| b == 0),
                "{fixture}: {name} row 0 not zero"
            );
        } else {
            assert!(
                t.bytes() == o.bytes(),
                "{fixture}: `{name}` differs after the round trip"
            );
        }
    }
}

#[test]
fn every_fixture_converts_bit_for_bit_like_uer_script_and_back() {
    for fixture in common::UER_FIXTURES {
        let uer = Checkpoint::open(common::uer_fixture(fixture).join("uer_model.bin")).unwrap();
        let naming = era(fixture);
        let det = convert::detect(&uer).unwrap();
        assert_eq!(det.source, Source::Uer(naming), "{fixture}");
        let expected_family = match fixture {
            "albert_v1" => Layout::Albert,
            "bert_v1" => Layout::BertPretraining,
            "gpt2_v1" | "gpt2_v2" => Layout::Gpt2,
            _ => Layout::BertMlm,
        };
        assert_eq!(det.family, expected_family, "{fixture}");
        let (hf, report) = convert::to_hf(&uer, &ToHfOptions::default()).unwrap();
        assert!(report.dropped.is_empty(), "{fixture}: {:?}", report.dropped);
        assert_matches_script(fixture, &hf);
        let (back, _) = convert::to_uer(
            &hf,
            &ToUerOptions {
                naming,
                ..Default::default()
            },
        )
        .unwrap();
        assert_matches_uer(fixture, &back);
    }
}

#[test]
fn script_output_reads_back_to_uer_exactly() {
    // UER-py's script output (with GPT-2's attn.bias buffers) → UER: the buffers are dropped
    // with a reason, everything else comes back exactly.
    for fixture in common::UER_FIXTURES {
        let script = Checkpoint::open(
            common::uer_fixture(fixture).join("hf_by_uer_script/pytorch_model.bin"),
        )
        .unwrap();
        let (back, report) = convert::to_uer(
            &script,
            &ToUerOptions {
                naming: era(fixture),
                ..Default::default()
            },
        )
        .unwrap();
        assert_matches_uer(fixture, &back);
        for (name, why) in &report.dropped {
            assert!(
                is_buffer(name) || name == "predictions.decoder.bias",
                "{fixture}: dropped {name}: {why}"
            );
        }
        let buffers = script.names().filter(|n| is_buffer(n)).count();
        assert_eq!(
            report.dropped.iter().filter(|d| is_buffer(&d.0)).count(),
            buffers,
            "{fixture}"
        );
    }
}

#[test]
fn generations_migrate_both_ways() {
    for (v1, v2) in [("roberta_v1", "roberta_v2"), ("gpt2_v1", "gpt2_v2")] {
        for (from, naming) in [(v1, Naming::V2), (v2, Naming::V1)] {
            let uer = Checkpoint::open(common::uer_fixture(from).join("uer_model.bin")).unwrap();
            let (out, report) = convert::to_uer(
                &uer,
                &ToUerOptions {
                    naming,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(report.target, convert::Destination::Uer(naming));
            // Same tensors under the other generation's names: its HF form equals the script's.
            let (hf, _) = convert::to_hf(&out, &ToHfOptions::default()).unwrap();
            assert_matches_script(from, &hf);
            let wanted = if naming == Naming::V2 {
                "embedding.word.embedding.weight"
            } else {
                "embedding.word_embedding.weight"
            };
            assert!(out.get(wanted).is_some(), "{from} → {naming}");
        }
    }
}

fn uerzoo(args: &[&str]) -> std::process::Output {
    Command::new(common::uerzoo_bin())
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn cli_converts_every_fixture_and_back() {
    let tmp = tempfile::tempdir().unwrap();
    for fixture in common::UER_FIXTURES {
        let f = common::uer_fixture(fixture);
        let out = tmp.path().join(fixture);
        let o = uerzoo(&[
            "convert",
            s(&f.join("uer_model.bin")),
            s(&out),
            "--to",
            "hf",
            "--config",
            s(&f.join("uer_config.json")),
            "--vocab",
            s(&f.join("vocab.txt")),
        ]);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{fixture}: {}{}",
            stdout,
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            stdout.contains("layernorm:") && stdout.contains("mapped:"),
            "{stdout}"
        );
        for file in [
            "model.safetensors",
            "config.json",
            "vocab.txt",
            "tokenizer_config.json",
            "special_tokens_map.json",
        ] {
            assert!(out.join(file).is_file(), "{fixture}: no {file}");
        }
        assert_matches_script(fixture, &Checkpoint::open(&out).unwrap());
        // config.json agrees with the fixture maker's on what transformers reads.
        let ours: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap())
                .unwrap();
        let theirs: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(f.join("hf_by_uer_script/config.json")).unwrap(),
        )
        .unwrap();
        for key in [
            "model_type",
            "vocab_size",
            "hidden_size",
            "n_embd",
            "num_attention_heads",
            "n_head",
            "num_hidden_layers",
            "n_layer",
            "intermediate_size",
            "n_inner",
            "embedding_size",
            "hidden_act",
            "activation_function",
            "tie_word_embeddings",
            "layer_norm_eps",
            "layer_norm_epsilon",
            "max_position_embeddings",
            "n_positions",
            "type_vocab_size",
        ] {
            assert_eq!(
                ours.get(key),
                theirs.get(key),
                "{fixture}: config.json `{key}`"
            );
        }
        let arch = ours["architectures"][0].as_str().unwrap();
        assert!(
            [
                "BertForMaskedLM",
                "BertForPreTraining",
                "GPT2LMHeadModel",
                "AlbertForPreTraining"
            ]
            .contains(&arch)
        );
        if fixture.starts_with("gpt2") {
            assert_eq!(ours["tokenizer_class"], "BertTokenizer");
        }

        let back = tmp.path().join(format!("{fixture}.bin"));
        let naming = era(fixture).to_string();
        let o = uerzoo(&[
            "convert",
            s(&out),
            s(&back),
            "--to",
            "uer",
            "--uer-naming",
            &naming,
        ]);
        assert!(
            o.status.success(),
            "{fixture}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_matches_uer(fixture, &Checkpoint::open(&back).unwrap());
    }
}

#[test]
fn cli_exact_layernorm_and_dry_run() {
    let tmp = tempfile::tempdir().unwrap();
    let f = common::uer_fixture("roberta_v1");
    let out = tmp.path().join("exact");
    let o = uerzoo(&[
        "convert",
        s(&f.join("uer_model.bin")),
        s(&out),
        "--to",
        "hf",
        "--exact-layernorm",
        "--dry-run",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("embedding.layer_norm.gamma -> bert.embeddings.LayerNorm.weight  [LayerNorm × sqrt((n-1)/n)]"), "{stdout}");
    assert!(stdout.contains("embedding.segment_embedding.weight -> bert.embeddings.token_type_embeddings.weight  [drop segment row 0]"));
    assert!(stdout.contains("layernorm:  exact"));
    assert!(!out.exists(), "dry run wrote something");

    let o = uerzoo(&[
        "convert",
        s(&f.join("uer_model.bin")),
        s(&out),
        "--to",
        "hf",
        "--exact-layernorm",
        "--config",
        s(&f.join("uer_config.json")),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let hf = Checkpoint::open(&out).unwrap();
    let uer = Checkpoint::open(f.join("uer_model.bin")).unwrap();
    let g = uer
        .get("encoder.transformer.1.layer_norm_2.gamma")
        .unwrap()
        .to_f32_vec();
    let w = hf
        .get("bert.encoder.layer.1.output.LayerNorm.weight")
        .unwrap()
        .to_f32_vec();
    let k = (127.0f64 / 128.0).sqrt();
    assert!(g.iter().zip(&w).all(|(a, b)| *b == (*a as f64 * k) as f32));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["layer_norm_eps"], 1e-12);
}

/// Runs a failing conversion and checks that stderr says `needle` and nothing was written.
fn assert_fails(args: &[&str], needle: &str, out: &Path) {
    let existed = out.exists();
    let o = uerzoo(args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected failure for {args:?}");
    assert!(stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
    if !existed {
        assert!(!out.exists(), "{} was written", out.display());
    }
}

#[test]
fn cli_bad_input_fails_clearly_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let f = common::uer_fixture("bert_v1");
    let model = f.join("uer_model.bin");
    let out = tmp.path().join("out");

    // Unknown family.
    let mut odd = Checkpoint::default();
    odd.insert(
        "decoder.weight",
        uerzoo::checkpoint::Tensor::from_f32(vec![2], &[1.0, 2.0]),
    );
    let odd_path = tmp.path().join("odd.bin");
    odd.write_torch(&odd_path, false).unwrap();
    assert_fails(
        &["convert", s(&odd_path), s(&out), "--to", "hf"],
        "cannot tell the model family",
        &out,
    );

    // Missing key: named, with the generation detected.
    let mut cut = Checkpoint::open(&model).unwrap();
    cut.tensors
        .retain(|(n, _)| n != "encoder.transformer.1.self_attn.final_linear.bias");
    let cut_path = tmp.path().join("cut.bin");
    cut.write_torch(&cut_path, false).unwrap();
    assert_fails(
        &["convert", s(&cut_path), s(&out), "--to", "hf"],
        "no `encoder.transformer.1.self_attn.final_linear.bias` (detected BERT with MLM + NSP heads, UER naming v1)",
        &out,
    );

    // Heads that do not divide hidden.
    let cfg = tmp.path().join("bad_config.json");
    std::fs::write(
        &cfg,
        r#"{"hidden_size": 128, "heads_num": 3, "layers_num": 2}"#,
    )
    .unwrap();
    assert_fails(
        &[
            "convert",
            s(&model),
            s(&out),
            "--to",
            "hf",
            "--config",
            s(&cfg),
        ],
        "3 attention heads do not divide the hidden size 128",
        &out,
    );

    // Output exists without --force: refused, file untouched.
    let existing = tmp.path().join("existing.bin");
    std::fs::write(&existing, b"keep me").unwrap();
    assert_fails(
        &["convert", s(&model), s(&existing), "--to", "uer"],
        "--force",
        &existing,
    );
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("config.json"), b"{}").unwrap();
    assert_fails(
        &["convert", s(&model), s(&out), "--to", "hf"],
        "--force",
        &out,
    );
    assert_eq!(std::fs::read(out.join("config.json")).unwrap(), b"{}");
    assert!(!out.join("model.safetensors").exists());
    // With --force it goes through.
    let o = uerzoo(&[
        "convert",
        s(&model),
        s(&existing),
        "--to",
        "uer",
        "--uer-naming",
        "v1",
        "--force",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // UER → UER keeps every byte, segment row 0 included.
    assert_matches_uer_seg("bert_v1", &Checkpoint::open(&existing).unwrap(), false);
}

#[test]
fn cli_word_roberta_ships_sentencepiece_files() {
    let tmp = tempfile::tempdir().unwrap();
    let f = common::uer_fixture("roberta_v1");
    let spm = tmp.path().join("cluecorpussmall_spm.model");
    std::fs::write(&spm, b"stand-in for a sentencepiece model").unwrap();
    let out = tmp.path().join("word");
    let o = uerzoo(&[
        "convert",
        s(&f.join("uer_model.bin")),
        s(&out),
        "--to",
        "hf",
        "--arch",
        "word-roberta",
        "--model",
        "roberta-tiny-word-chinese-cluecorpussmall",
        "--vocab",
        s(&spm),
        "--format",
        "bin",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Heads and activation came from the registry entry (tiny: L2/H128, 2 heads).
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["num_attention_heads"], 2);
    assert_eq!(
        std::fs::read(out.join("spiece.model")).unwrap(),
        b"stand-in for a sentencepiece model"
    );
    assert!(!out.join("vocab.txt").exists());
    assert!(out.join("pytorch_model.bin").is_file());
    let tok: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("tokenizer_config.json")).unwrap())
            .unwrap();
    assert_eq!(tok["tokenizer_class"], "AlbertTokenizer");
    assert_eq!(tok["do_lower_case"], false);
    assert_eq!(tok["mask_token"], "[MASK]");
    assert_matches_script("roberta_v1", &Checkpoint::open(&out).unwrap());
}

#[test]
fn to_uer_is_self_contained_and_defaults_to_naming_v1() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = common::shared().join("fixtures/uer/roberta_v2");
    let out = tmp.path().join("out").join("roberta.bin");
    std::fs::create_dir(out.parent().unwrap()).unwrap();
    let o = uerzoo(&[
        "convert",
        s(&fixture.join("uer_model.bin")),
        s(&out),
        "--to",
        "uer",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // v2 in, v1 (the zoo's naming, every command's default) out: the v1 fixture's keys.
    let keys = |p: &Path| -> std::collections::BTreeSet<String> {
        Checkpoint::open(p)
            .unwrap()
            .tensors
            .iter()
            .map(|(k, _)| k.clone())
            .collect()
    };
    let v1 = common::shared().join("fixtures/uer/roberta_v1/uer_model.bin");
    assert_eq!(keys(&out), keys(&v1));
    // The config and vocabulary came along, so the output opens by its path alone.
    for name in ["uer_config.json", "vocab.txt"] {
        assert_eq!(
            std::fs::read(out.with_file_name(name)).unwrap(),
            std::fs::read(fixture.join(name)).unwrap(),
            "{name}"
        );
    }
    let o = uerzoo(&["fill-mask", s(&out), "北京是[MASK]国的首都"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A UER file written by `finetune`/`pretrain`/`download --format uer` carries its config
/// beside it (`OUT.bin.uer_config.json`, or the folder's `uer_config.json`): `convert` reads
/// it when no `--config` is given and says so. ALBERT needs it (its shared layer's count is
/// not in the weights).
#[test]
fn cli_reads_the_uer_config_beside_the_input() {
    let tmp = tempfile::tempdir().unwrap();
    let f = common::uer_fixture("albert_v1");
    let config = f.join("uer_config.json");
    // Without any config: refused, naming the fix.
    let lone = tmp.path().join("lone");
    std::fs::create_dir(&lone).unwrap();
    let lone_bin = lone.join("albert.bin");
    std::fs::copy(f.join("uer_model.bin"), &lone_bin).unwrap();
    let lone_hf = tmp.path().join("lone_hf");
    assert_fails(
        &["convert", s(&lone_bin), s(&lone_hf), "--to", "hf"],
        "pass --config UER_CONFIG.json",
        &lone_hf,
    );
    // The file's own companion, then the folder's `uer_config.json`.
    let own = lone.join("albert.bin.uer_config.json");
    std::fs::copy(&config, &own).unwrap();
    let folder = tmp.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    std::fs::copy(f.join("uer_model.bin"), folder.join("albert.bin")).unwrap();
    std::fs::copy(&config, folder.join("uer_config.json")).unwrap();
    for (bin, used) in [
        (lone_bin.clone(), own.clone()),
        (folder.join("albert.bin"), folder.join("uer_config.json")),
    ] {
        let hf = bin.with_extension("hf");
        let o = uerzoo(&["convert", s(&bin), s(&hf), "--to", "hf"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // Said in the summary, on stdout.
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            stdout.contains(&format!("note: using the UER config {}", used.display())),
            "{stdout}"
        );
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(cfg["num_hidden_layers"], 2, "{}", bin.display());
        assert_eq!(cfg["hidden_act"], "relu", "{}", bin.display());
        assert_matches_script("albert_v1", &Checkpoint::open(&hf).unwrap());
    }
    // The vocabulary beside the input goes into the HF folder the same way.
    std::fs::copy(f.join("vocab.txt"), folder.join("vocab.txt")).unwrap();
    let hf = tmp.path().join("with_vocab");
    let o = uerzoo(&[
        "convert",
        s(&folder.join("albert.bin")),
        s(&hf),
        "--to",
        "hf",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let note = format!(
        "note: using the vocabulary {}",
        folder.join("vocab.txt").display()
    );
    assert!(stdout.contains(&note), "{stdout}");
    assert_eq!(
        std::fs::read(hf.join("vocab.txt")).unwrap(),
        std::fs::read(f.join("vocab.txt")).unwrap()
    );
    assert!(hf.join("tokenizer_config.json").is_file());
    // `--to uer` carries the companion found along, so the output opens by its path alone.
    let back = tmp.path().join("out").join("albert_v2.bin");
    let o = uerzoo(&[
        "convert",
        s(&lone_bin),
        s(&back),
        "--to",
        "uer",
        "--uer-naming",
        "v2",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(back.with_file_name("uer_config.json")).unwrap(),
        std::fs::read(&config).unwrap()
    );
    // `--config` wins over the companion (and nothing is said about it).
    let bad = tmp.path().join("bad_config.json");
    std::fs::write(
        &bad,
        r#"{"hidden_size": 128, "heads_num": 3, "layers_num": 2}"#,
    )
    .unwrap();
    let out = tmp.path().join("overridden");
    assert_fails(
        &[
            "convert",
            s(&lone_bin),
            s(&out),
            "--to",
            "hf",
            "--config",
            s(&bad),
        ],
        "3 attention heads do not divide the hidden size 128",
        &out,
    );
    // A broken companion is named, with the fix.
    std::fs::write(&own, b"{ not json").unwrap();
    assert_fails(
        &["convert", s(&lone_bin), s(&out), "--to", "hf"],
        &format!("reading the UER config {} found beside", own.display()),
        &out,
    );
}

/// The summary counts every row it drops: UER's padding segment (row 0 of the segment
/// embedding) has no place in HF, so UER → HF says so, HF → UER says it put zeros there,
/// and the round trip's bytes agree with what was printed.
#[test]
fn cli_summary_counts_dropped_and_added_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let f = common::uer_fixture("bert_v1");
    let uer = Checkpoint::open(f.join("uer_model.bin")).unwrap();
    let seg = uer.get("embedding.segment_embedding.weight").unwrap();
    let row = seg.bytes().len() / seg.shape[0];
    assert!(
        seg.bytes()[..row].iter().any(|&b| b != 0),
        "the fixture's padding segment holds values, so dropping it loses something"
    );
    let hf = tmp.path().join("hf");
    let o = uerzoo(&["convert", s(&f.join("uer_model.bin")), s(&hf), "--to", "hf"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("dropped:    0 tensors, 1 row\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  - embedding.segment_embedding.weight: row 0, UER's padding segment (not zeros, though read only at padding positions;"),
        "{stdout}"
    );
    let back = tmp.path().join("back.bin");
    let o = uerzoo(&["convert", s(&hf), s(&back), "--to", "uer"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The one HF duplicate is a tensor dropped; the padding row is added back as zeros.
    assert!(stdout.contains("dropped:    1 tensor, 0 rows\n  - cls.predictions.decoder.bias: duplicate of `cls.predictions.bias`\n"), "{stdout}");
    assert!(
        stdout.contains("added:      1 row\n  - embedding.segment_embedding.weight: row 0, UER's padding segment: zeros"),
        "{stdout}"
    );
    let t = Checkpoint::open(&back).unwrap();
    let t = t.get("embedding.segment_embedding.weight").unwrap();
    assert!(t.bytes()[..row].iter().all(|&b| b == 0));
    assert_eq!(t.bytes()[row..], seg.bytes()[row..]);
    // HF → HF and UER → UER lose no row; a family without segments has none to lose.
    for (input, to, out) in [
        (hf.clone(), "hf", tmp.path().join("hf2")),
        (f.join("uer_model.bin"), "uer", tmp.path().join("v2.bin")),
        (
            common::uer_fixture("gpt2_v1").join("uer_model.bin"),
            "hf",
            tmp.path().join("gpt2"),
        ),
    ] {
        let o = uerzoo(&[
            "convert",
            s(&input),
            s(&out),
            "--to",
            to,
            "--uer-naming",
            "v2",
        ]);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(stdout.contains(", 0 rows\n"), "{stdout}");
        assert!(!stdout.contains("added:"), "{stdout}");
    }
}

/// UER-py's run_classifier head (its `Classifier` module): `output_layer_1` (the pooled
/// dense, before tanh) and `output_layer_2` (to the labels).
const RUN_CLASSIFIER_HEAD: [&str; 4] = [
    "output_layer_1.weight",
    "output_layer_1.bias",
    "output_layer_2.weight",
    "output_layer_2.bias",
];

/// The names and shapes of a real UER-py checkpoint's embedding and encoder (the fixture
/// without its pretraining head, `target.*`).
fn uer_encoder(fixture: &str) -> std::collections::BTreeMap<String, Vec<usize>> {
    let ckpt = Checkpoint::open(common::uer_fixture(fixture).join("uer_model.bin")).unwrap();
    ckpt.tensors
        .iter()
        .filter(|(n, _)| !n.starts_with("target."))
        .map(|(n, t)| (n.clone(), t.shape.clone()))
        .collect()
}

fn shapes(ckpt: &Checkpoint) -> std::collections::BTreeMap<String, Vec<usize>> {
    ckpt.tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.shape.clone()))
        .collect()
}

/// The classifiers fine-tuned by transformers (`fixtures/hf_classifiers/`, its own key names)
/// convert to the names UER-py itself writes: the embedding and encoder keys of the real
/// UER-py fixture they started from (same sizes), in each naming generation that UER-py
/// fixture exists in, plus run_classifier's head. The expected names come from files, not
/// from the conversion table. Values: the head is the pooler (`output_layer_1`) and
/// `classifier` (`output_layer_2`) as UER-py's classification conversion scripts map them,
/// the word embeddings are copied, and the segment table is transformers' token types
/// under a zero row 0 (UER's padding segment).
#[test]
fn hf_classifiers_convert_to_uer_py_names() {
    // (classifier, its HF prefix, the UER-py fixture of the same model per generation)
    type Case<'a> = (&'a str, &'a str, &'a [(Naming, &'a str)]);
    let cases: [Case; 2] = [
        (
            "bert_cls_hf",
            "bert",
            &[(Naming::V1, "roberta_v1"), (Naming::V2, "roberta_v2")],
        ),
        ("albert_cls_hf", "albert", &[(Naming::V1, "albert_v1")]),
    ];
    for (name, prefix, generations) in cases {
        let dir = common::shared().join("fixtures/hf_classifiers").join(name);
        let hf = Checkpoint::open(dir.join("model.safetensors")).unwrap();
        for &(naming, fixture) in generations {
            let (uer, report) = convert::to_uer(
                &hf,
                &ToUerOptions {
                    naming,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(report.source, Source::Hf, "{name}");
            let mut want = uer_encoder(fixture);
            // UER-py's names of the word and segment tables in this generation.
            let (word, segment) = match naming {
                Naming::V1 => (
                    "embedding.word_embedding.weight",
                    "embedding.segment_embedding.weight",
                ),
                Naming::V2 => (
                    "embedding.word.embedding.weight",
                    "embedding.seg.embedding.weight",
                ),
            };
            let h = want[word][1];
            let hidden = hf.get("classifier.weight").unwrap().shape[1];
            want.insert("output_layer_1.weight".into(), vec![hidden, hidden]);
            want.insert("output_layer_1.bias".into(), vec![hidden]);
            want.insert("output_layer_2.weight".into(), vec![2, hidden]);
            want.insert("output_layer_2.bias".into(), vec![2]);
            assert_eq!(shapes(&uer), want, "{name} → UER {naming} vs {fixture}");
            let same = |ours: &str, theirs: &str| {
                assert_eq!(
                    uer.get(ours).unwrap().to_f32_vec(),
                    hf.get(theirs).unwrap().to_f32_vec(),
                    "{name}: {ours} ≠ {theirs}"
                );
            };
            let pooler = if prefix == "bert" {
                "bert.pooler.dense"
            } else {
                "albert.pooler"
            };
            same("output_layer_1.weight", &format!("{pooler}.weight"));
            same("output_layer_1.bias", &format!("{pooler}.bias"));
            same("output_layer_2.weight", "classifier.weight");
            same("output_layer_2.bias", "classifier.bias");
            same(word, &format!("{prefix}.embeddings.word_embeddings.weight"));
            let seg = uer.get(segment).unwrap();
            let seg = seg.to_f32_vec();
            let types = hf
                .get(&format!("{prefix}.embeddings.token_type_embeddings.weight"))
                .unwrap()
                .to_f32_vec();
            assert!(seg[..h].iter().all(|&x| x == 0.0), "{name}: segment row 0");
            assert_eq!(seg[h..], types[..], "{name}: segment rows 1..");
        }
    }
}

/// A GPT-2 fine-tuned by run_classifier (`--mask causal`): the real UER-py GPT-2 keys of
/// `gpt2_v1` (its `target.*` head dropped) plus run_classifier's head. It is recognised as
/// [`Layout::Gpt2Classifier`], migrates to exactly `gpt2_v2`'s names (UER-py's v2 spelling of
/// the same model, read from the fixture) and back bit for bit, and is refused by `to_hf`
/// with a message naming it: transformers has no class with this pooled head.
#[test]
fn gpt2_classifier_migrates_and_has_no_hf_form() {
    let base = Checkpoint::open(common::uer_fixture("gpt2_v1").join("uer_model.bin")).unwrap();
    let mut v1 = Checkpoint::default();
    for (n, t) in base
        .tensors
        .iter()
        .filter(|(n, _)| !n.starts_with("target."))
    {
        v1.insert(n.clone(), t.clone());
    }
    let h = 128;
    for (i, (key, shape)) in RUN_CLASSIFIER_HEAD
        .iter()
        .zip([vec![h, h], vec![h], vec![2, h], vec![2]])
        .enumerate()
    {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|j| (i * 10_000 + j) as f32 * 1e-4).collect();
        v1.insert(*key, uerzoo::checkpoint::Tensor::from_f32(shape, &v));
    }
    let d = convert::detect(&v1).unwrap();
    assert_eq!(
        (d.family, d.source),
        (Layout::Gpt2Classifier, Source::Uer(Naming::V1))
    );
    let (v2, _) = convert::to_uer(
        &v1,
        &ToUerOptions {
            naming: Naming::V2,
            ..Default::default()
        },
    )
    .unwrap();
    let mut want = uer_encoder("gpt2_v2");
    for (key, t) in RUN_CLASSIFIER_HEAD.iter().map(|k| (*k, v1.get(k).unwrap())) {
        want.insert(key.into(), t.shape.clone());
    }
    assert_eq!(shapes(&v2), want);
    assert_eq!(
        convert::detect(&v2).unwrap().source,
        Source::Uer(Naming::V2)
    );
    let (back, _) = convert::to_uer(
        &v2,
        &ToUerOptions {
            naming: Naming::V1,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(shapes(&back), shapes(&v1));
    for (n, t) in &v1.tensors {
        assert_eq!(back.get(n).unwrap().bytes(), t.bytes(), "{n}");
    }
    let e = convert::to_hf(&v1, &ToHfOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("GPT-2") && e.contains("UER"), "{e}");
}

/// An ALBERT classifier (from transformers' `AlbertForSequenceClassification`) migrates
/// between UER naming generations and back bit for bit, and is recognised as
/// [`Layout::AlbertClassifier`] in both.
#[test]
fn albert_classifier_migrates_between_generations() {
    let dir = common::shared().join("fixtures/hf_classifiers/albert_cls_hf");
    let hf = Checkpoint::open(dir.join("model.safetensors")).unwrap();
    let to = |c: &Checkpoint, naming| {
        convert::to_uer(
            c,
            &ToUerOptions {
                naming,
                ..Default::default()
            },
        )
        .unwrap()
        .0
    };
    let v1 = to(&hf, Naming::V1);
    let v2 = to(&v1, Naming::V2);
    for (c, naming) in [(&v1, Naming::V1), (&v2, Naming::V2)] {
        let d = convert::detect(c).unwrap();
        assert_eq!(
            (d.family, d.source),
            (Layout::AlbertClassifier, Source::Uer(naming))
        );
    }
    assert_ne!(
        shapes(&v1).keys().collect::<Vec<_>>(),
        shapes(&v2).keys().collect::<Vec<_>>()
    );
    let back = to(&v2, Naming::V1);
    assert_eq!(shapes(&back), shapes(&v1));
    for (n, t) in &v1.tensors {
        assert_eq!(back.get(n).unwrap().bytes(), t.bytes(), "{n}");
    }
}
