//! The registry as data: counts, uniqueness, configs agreeing with entries, vocabularies,
//! lookups with aliases and suggestions, UER config parsing, generation presets.

mod common;

use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use uerzoo::registry::{
    Arch, Family, Filter, Parts, Registry, RegistryError, UerConfig, config_paths, config_text,
};

fn reg() -> &'static Registry {
    Registry::builtin()
}

fn family(f: Family) -> Vec<&'static uerzoo::registry::Entry> {
    reg().filter(&Filter {
        family: Some(f),
        ..Default::default()
    })
}

#[test]
fn registry_has_all_61_weights() {
    assert_eq!(reg().entries().len(), 61);
}

#[test]
fn family_counts_match_the_zoo() {
    assert_eq!(family(Family::Roberta).len(), 24);
    assert_eq!(family(Family::WordRoberta).len(), 5);
    assert_eq!(family(Family::Gpt2).len(), 6);
    assert_eq!(family(Family::Legacy).len(), 26);
    for f in Family::ALL {
        assert!(reg().family(f).is_some(), "no [[family]] text for {f}");
    }
}

#[test]
fn roberta_covers_every_layers_hidden_pair() {
    let pairs: BTreeSet<(usize, usize)> = family(Family::Roberta)
        .iter()
        .map(|e| (e.layers, e.hidden))
        .collect();
    let want: BTreeSet<(usize, usize)> = [2, 4, 6, 8, 10, 12]
        .into_iter()
        .flat_map(|l| [128, 256, 512, 768].map(|h| (l, h)))
        .collect();
    assert_eq!(pairs, want);
    for e in family(Family::Roberta) {
        assert_eq!(
            e.name,
            format!("chinese_roberta_L-{}_H-{}", e.layers, e.hidden)
        );
        assert_eq!(e.heads, e.hidden / 64, "{}", e.name);
        assert_eq!(e.feedforward, 4 * e.hidden, "{}", e.name);
        assert_eq!(e.emb_size, e.hidden, "{}", e.name);
        assert_eq!(
            e.sources.hf.as_ref().unwrap().repo,
            format!("uer/{}", e.name)
        );
        assert_eq!(e.vocab.as_deref(), Some("google_zh_vocab.txt"));
    }
}

#[test]
fn word_roberta_sizes_and_tokenizer() {
    let shapes: Vec<(String, usize, usize)> = family(Family::WordRoberta)
        .iter()
        .map(|e| (e.name.clone(), e.layers, e.hidden))
        .collect();
    let want = [
        ("tiny", 2, 128),
        ("mini", 4, 256),
        ("small", 4, 512),
        ("medium", 8, 512),
        ("base", 12, 768),
    ];
    for (got, (size, l, h)) in shapes.iter().zip(want) {
        assert_eq!(
            got,
            &(format!("roberta-{size}-word-chinese-cluecorpussmall"), l, h)
        );
    }
    for e in family(Family::WordRoberta) {
        assert_eq!(e.spm.as_deref(), Some("cluecorpussmall_spm.model"));
        assert!(e.vocab.is_none());
        assert!(
            e.sources
                .hf
                .as_ref()
                .unwrap()
                .files
                .contains(&"spiece.model".to_string())
        );
    }
}

#[test]
fn gpt2_entries_and_extended_vocabularies() {
    let names: Vec<&str> = family(Family::Gpt2)
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "gpt2-chinese-cluecorpussmall",
            "gpt2-distil-chinese-cluecorpussmall",
            "gpt2-chinese-poem",
            "gpt2-chinese-couplet",
            "gpt2-chinese-lyric",
            "gpt2-chinese-ancient"
        ]
    );
    let get = |n| reg().get(n).unwrap();
    assert_eq!(get("gpt2-distil").layers, 6);
    assert_eq!(
        get("gpt2-poem").vocab.as_deref(),
        Some("google_zh_poem_vocab.txt")
    );
    assert_eq!(
        get("gpt2-ancient").vocab.as_deref(),
        Some("google_zh_ancient_vocab.txt")
    );
    for e in family(Family::Gpt2) {
        assert_eq!(e.arch, Arch::Gpt2);
        let cfg = e.uer_config().unwrap();
        assert!(
            cfg.is_pre_ln() && cfg.is_causal() && cfg.remove_embedding_layernorm && cfg.tie_weights
        );
        assert_eq!(cfg.hidden_act, "gelu_fast");
        assert!(!cfg.has_segment_embedding());
        let g = e
            .generation
            .as_ref()
            .expect("GPT-2 entries carry a generation preset");
        assert_eq!(g.top_k, 70, "UER-py's generate_lm default");
        assert!(g.max_length > 0);
    }
}

#[test]
fn legacy_has_google_and_uer_weights() {
    let legacy = family(Family::Legacy);
    let albert: Vec<_> = legacy.iter().filter(|e| e.arch == Arch::Albert).collect();
    assert_eq!(albert.len(), 4);
    for e in &albert {
        let cfg = e.uer_config().unwrap();
        assert!(cfg.factorized_embedding_parameterization && cfg.parameter_sharing);
        assert_eq!(cfg.emb_size, 128);
        assert_eq!(cfg.hidden_act, "relu");
    }
    let google = reg().get("google_zh_bert_base").unwrap();
    assert_eq!(google.uer_file, "google_zh_model.bin");
    assert_eq!(
        google.sources.weiyun.as_ref().unwrap().url,
        "https://share.weiyun.com/FR4rPxc4"
    );
    // Weiyun only: no checksum, no Hub repo.
    for e in &legacy {
        assert!(e.sources.hf.is_none(), "{}", e.name);
        assert!(
            e.sources
                .weiyun
                .as_ref()
                .unwrap()
                .url
                .starts_with("https://share.weiyun.com/")
        );
    }
    assert_eq!(
        reg().get("mixed_corpus_bert_xlarge_mlm").unwrap().layers,
        36
    );
    assert_eq!(reg().get("mixed_corpus_bert_tiny").unwrap().hidden, 384);
    assert_eq!(reg().get("reviews_lstm_lm").unwrap().arch, Arch::Lstm);
}

#[test]
fn every_entry_has_name_config_sources_and_known_vocab() {
    for e in reg().entries() {
        assert!(!e.name.is_empty() && !e.description.is_empty());
        assert!(
            config_text(&e.config).is_some(),
            "{}: config {}",
            e.name,
            e.config
        );
        assert!(
            e.sources.hf.is_some() || e.sources.weiyun.is_some(),
            "{}",
            e.name
        );
        let file = e.tokenizer_file().expect("vocab or spm");
        assert!(reg().vocab(file).is_some(), "{}: vocab {file}", e.name);
        assert!(e.uer_file.ends_with(".bin"), "{}", e.name);
        if let Some(hf) = &e.sources.hf {
            assert!(hf.repo.starts_with("uer/"));
            assert!(hf.files.contains(&hf.weights), "{}", e.name);
            assert!(hf.files.contains(&"config.json".to_string()));
        }
    }
}

#[test]
fn names_and_aliases_are_unique() {
    let mut seen: HashMap<String, &str> = HashMap::new();
    for e in reg().entries() {
        for key in e.keys() {
            if let Some(other) = seen.insert(key.to_lowercase(), &e.name) {
                panic!("`{key}` names both {other} and {}", e.name);
            }
        }
    }
    // Loading a registry with a clash fails with the clashing key.
    let one = |name: &str, alias: &str| {
        format!(
            "[[model]]\nname = \"{name}\"\nfamily = \"roberta\"\narch = \"bert\"\naliases = [\"{alias}\"]\n\
             description = \"d\"\nlayers = 2\nhidden = 128\nheads = 2\nfeedforward = 512\nemb_size = 128\n\
             max_seq_length = 512\nvocab = \"google_zh_vocab.txt\"\nconfig = \"bert/tiny_config.json\"\n\
             uer_file = \"a.bin\"\nuer = {{ embedding = \"word_pos_seg\", encoder = \"transformer\", \
             mask = \"fully_visible\", target = \"mlm\", layernorm_positioning = \"post\", hidden_act = \"gelu\" }}\n\
             [model.sources]\nweiyun = {{ url = \"https://share.weiyun.com/x\" }}\n"
        )
    };
    let text = one("a", "same") + &one("b", "SAME");
    match Registry::from_toml_str(&text, uerzoo::registry::VOCABS_TOML) {
        Err(RegistryError::Duplicate { key, first, second }) => {
            assert_eq!(
                (key.as_str(), first.as_str(), second.as_str()),
                ("SAME", "a", "b")
            );
        }
        other => panic!("expected a duplicate error, got {other:?}"),
    }
}

#[test]
fn every_config_file_is_embedded_and_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut on_disk = BTreeSet::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for item in std::fs::read_dir(&d).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "json") {
                let rel = path
                    .strip_prefix(&dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                on_disk.insert(rel);
            }
        }
    }
    let embedded: BTreeSet<String> = config_paths().map(String::from).collect();
    assert_eq!(
        on_disk, embedded,
        "configs/ and src/registry/configs.rs differ"
    );
    for path in &on_disk {
        let cfg = UerConfig::from_file(dir.join(path)).unwrap();
        assert_eq!(
            UerConfig::from_json_str(config_text(path).unwrap(), path).unwrap(),
            cfg
        );
        assert!(cfg.layers_num > 0 && cfg.hidden_size > 0, "{path}");
        if cfg.encoder == "transformer" {
            assert_eq!(
                cfg.head_dim().map(|d| d * cfg.heads_num),
                Some(cfg.hidden_size),
                "{path}"
            );
        }
    }
}

#[test]
fn every_config_agrees_with_its_entry() {
    for e in reg().entries() {
        let text = config_text(&e.config).unwrap();
        let file = UerConfig::from_json_str(text, &e.config).unwrap();
        let cfg = e.uer_config().unwrap();
        let ctx = format!("{} ({})", e.name, e.config);
        assert_eq!(file.layers_num, e.layers, "{ctx}");
        assert_eq!(file.hidden_size, e.hidden, "{ctx}");
        assert_eq!(file.emb_size, e.emb_size, "{ctx}");
        assert_eq!(file.max_seq_length, e.max_seq_length, "{ctx}");
        if e.arch != Arch::Lstm {
            assert_eq!(file.heads_num, e.heads, "{ctx}");
            assert_eq!(file.feedforward_size, e.feedforward, "{ctx}");
        }
        // The entry's options win over the file, as UER-py's command line does.
        assert_eq!(cfg.target, e.uer.target, "{ctx}");
        assert_eq!(cfg.layers_num, file.layers_num);
    }
}

#[test]
fn vocab_checksums_match_the_reference_files() {
    let dir = common::vocab("");
    let mut checked = 0;
    for v in reg().vocabs() {
        let path = dir.join(&v.file);
        if !path.exists() {
            assert!(
                v.sha256.is_none(),
                "{} has a checksum but no reference file",
                v.file
            );
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(Some(bytes.len() as u64), v.size_bytes, "{}", v.file);
        assert_eq!(
            v.sha256.as_deref(),
            Some(hex::encode(Sha256::digest(&bytes)).as_str()),
            "{}",
            v.file
        );
        if v.kind == "wordpiece" {
            let lines = bytes
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count();
            assert_eq!(Some(lines), v.tokens, "{}", v.file);
        }
        checked += 1;
    }
    assert_eq!(checked, 4);
}

#[test]
fn only_confirmed_hashes_are_recorded() {
    // HUB_FACTS [C]: the pytorch_model.bin hashes confirmed on a stored page.
    let confirmed = [
        (
            "chinese_roberta_L-2_H-512",
            "f7a9e1e877c85cbdce67f2d8bf6acf17010b3f427816fef599d3b2090dee8a79",
            "f395faf",
        ),
        (
            "chinese_roberta_L-6_H-512",
            "1a0ec098c2f14f8737bb249813aef37ba4a334a16bc0da0f8fd4b2aefd9d65e6",
            "f2e5f43",
        ),
        (
            "chinese_roberta_L-8_H-128",
            "0c6f90114a5d8e0e0c2575eba56c8c954569e37a09b1aea9be5cd6c661db7842",
            "ba8e039",
        ),
        (
            "chinese_roberta_L-8_H-768",
            "1f5d80fe5a70749e2ef43ced033a6fa44c8a0285fdb20f43dcc0c796bbb8e463",
            "5b814c2",
        ),
        (
            "chinese_roberta_L-12_H-768",
            "89e86351e519e30806c310aeb2fab688851779f248bc3f5746388dd5cf2483e6",
            "f8c3cd5",
        ),
        (
            "gpt2-chinese-ancient",
            "ec9e148d4b3e4bfcc5e35383448896ed685fa00968fe3515b7b1aef5812f9c5a",
            "f8e559b",
        ),
    ];
    let mut recorded = Vec::new();
    for e in reg().entries() {
        if let Some(hf) = &e.sources.hf
            && let Some(h) = &hf.sha256
        {
            assert!(
                h.len() == 64
                    && h.chars()
                        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
            recorded.push((
                e.name.as_str(),
                h.as_str(),
                hf.sha256_commit.as_deref().unwrap(),
            ));
        }
    }
    assert_eq!(recorded, confirmed);
}

#[test]
fn lookup_by_name_alias_and_hf_repo() {
    let cases = [
        ("tiny", "chinese_roberta_L-2_H-128"),
        ("mini", "chinese_roberta_L-4_H-256"),
        ("small", "chinese_roberta_L-4_H-512"),
        ("medium", "chinese_roberta_L-8_H-512"),
        ("base", "chinese_roberta_L-12_H-768"),
        ("MEDIUM", "chinese_roberta_L-8_H-512"),
        ("chinese_roberta_L-8_H-512", "chinese_roberta_L-8_H-512"),
        ("uer/chinese_roberta_L-8_H-512", "chinese_roberta_L-8_H-512"),
        ("gpt2-poem", "gpt2-chinese-poem"),
        ("gpt2-couplet", "gpt2-chinese-couplet"),
        ("gpt2-chinese-couplet", "gpt2-chinese-couplet"),
        ("uer/gpt2-chinese-couplet", "gpt2-chinese-couplet"),
        ("word-medium", "roberta-medium-word-chinese-cluecorpussmall"),
        ("google_zh_model", "google_zh_bert_base"),
    ];
    for (query, name) in cases {
        assert_eq!(reg().get(query).unwrap().name, name, "{query}");
    }
}

#[test]
fn unknown_names_get_suggestions() {
    let suggestions = |q: &str| match reg().get(q) {
        Err(RegistryError::Unknown { suggestions, .. }) => suggestions,
        other => panic!("{q}: expected Unknown, got {other:?}"),
    };
    assert_eq!(
        suggestions("gpt2-chinese-couplett")[0],
        "gpt2-chinese-couplet"
    );
    assert_eq!(suggestions("mediun")[0], "chinese_roberta_L-8_H-512");
    assert_eq!(
        suggestions("chinese_roberta_L-8_H-521")[0],
        "chinese_roberta_L-8_H-512"
    );
    assert!(suggestions("roberta_L-8").contains(&"chinese_roberta_L-8_H-512".to_string()));
    assert!(suggestions("zzzzzzzz").is_empty());
    let err = reg().get("gpt2-chinese-couplett").unwrap_err().to_string();
    assert!(err.contains("did you mean `gpt2-chinese-couplet`"), "{err}");
}

#[test]
fn uer_config_reads_every_fixture() {
    for name in common::UER_FIXTURES {
        let cfg = UerConfig::from_file(common::uer_fixture(name).join("uer_config.json")).unwrap();
        assert_eq!(
            (cfg.layers_num, cfg.hidden_size, cfg.heads_num),
            (2, 128, 2),
            "{name}"
        );
        assert_eq!(cfg.feedforward_size, 512);
    }
    let gpt2_v2 =
        UerConfig::from_file(common::uer_fixture("gpt2_v2").join("uer_config.json")).unwrap();
    assert_eq!(
        gpt2_v2.embedding,
        Parts::List(vec!["word".into(), "pos".into()])
    );
    assert_eq!(gpt2_v2.target.parts(), ["lm"]);
    assert_eq!(gpt2_v2.max_seq_length, 128);
    assert!(gpt2_v2.is_pre_ln() && gpt2_v2.is_causal() && !gpt2_v2.has_segment_embedding());
    assert_eq!(gpt2_v2.extra["data_processor"], "lm");
    let albert =
        UerConfig::from_file(common::uer_fixture("albert_v1").join("uer_config.json")).unwrap();
    assert_eq!(albert.emb_size, 32);
    assert!(albert.factorized_embedding_parameterization && albert.parameter_sharing);
    assert_eq!(albert.dropout, 0.0);
    assert_eq!(albert.target, Parts::One("albert".into()));
    let bert =
        UerConfig::from_file(common::uer_fixture("bert_v1").join("uer_config.json")).unwrap();
    assert!(bert.tie_weights && bert.has_segment_embedding() && !bert.is_causal());
    assert!(bert.has_target("mlm") && bert.has_target("sp") && !bert.has_target("lm"));
    assert_eq!(albert.target_parts(), ["mlm", "sp"]);
    assert_eq!(albert.embedding_parts(), ["word", "pos", "seg"]);
    assert_eq!(gpt2_v2.embedding_parts(), ["word", "pos"]);
    let roberta =
        UerConfig::from_file(common::uer_fixture("roberta_v1").join("uer_config.json")).unwrap();
    assert_eq!(roberta.target_parts(), ["mlm"]);
    // v2 list spelling survives a round trip.
    let text =
        std::fs::read_to_string(common::uer_fixture("roberta_v2").join("uer_config.json")).unwrap();
    let cfg = UerConfig::from_json_str(&text, "roberta_v2").unwrap();
    let back = UerConfig::from_json_str(&cfg.to_json_string(), "again").unwrap();
    assert_eq!(back, cfg);
    assert_eq!(back.embedding.parts(), ["word", "pos", "seg"]);
}

#[test]
fn uer_config_defaults_are_uer_pys() {
    let cfg = UerConfig::from_json_str("{}", "empty").unwrap();
    assert_eq!(
        (
            cfg.layers_num,
            cfg.hidden_size,
            cfg.heads_num,
            cfg.feedforward_size
        ),
        (12, 768, 12, 3072)
    );
    assert_eq!(cfg.embedding.display(), "word_pos_seg");
    assert_eq!(
        (cfg.encoder.as_str(), cfg.mask.as_str()),
        ("transformer", "fully_visible")
    );
    assert_eq!(cfg.layernorm_positioning, "post");
    assert_eq!(cfg.max_seq_length, 512);
    assert!(!cfg.tie_weights && !cfg.remove_embedding_layernorm);
    let err = UerConfig::from_json_str("{\"layers_num\": \"two\"}", "bad.json").unwrap_err();
    assert!(err.to_string().contains("bad.json"), "{err}");
}

#[test]
fn entry_uer_config_overlays_training_options() {
    let medium = reg().get("medium").unwrap().uer_config().unwrap();
    assert_eq!(
        (medium.layers_num, medium.hidden_size, medium.heads_num),
        (8, 512, 8)
    );
    assert_eq!(medium.target, Parts::One("mlm".into()));
    assert!(medium.tie_weights);
    let bert = reg()
        .get("google_zh_bert_base")
        .unwrap()
        .uer_config()
        .unwrap();
    assert_eq!(bert.target, Parts::One("bert".into()));
}

#[test]
fn generation_presets_reproduce_the_card_prompts() {
    let couplet = reg()
        .get("gpt2-couplet")
        .unwrap()
        .generation
        .clone()
        .unwrap();
    assert_eq!(
        couplet.format_prompt("丹枫江冷人初去"),
        "丹 枫 江 冷 人 初 去 -"
    );
    assert_eq!(
        couplet.uer_prompt("丹枫江冷人初去"),
        "[CLS]丹 枫 江 冷 人 初 去 -"
    );
    assert_eq!(couplet.max_length, 25);
    for e in family(Family::Gpt2) {
        let g = e.generation.as_ref().unwrap();
        let card = g
            .card_prompt
            .strip_prefix("[CLS]")
            .unwrap_or(&g.card_prompt);
        assert_eq!(g.example_prompt(), card, "{}", e.name);
    }
}

#[test]
fn family_commands_fill_every_placeholder() {
    for e in reg().entries() {
        let f = reg().family(e.family).unwrap();
        for c in f.usage.iter().chain(&f.uer_py) {
            let line = c.render(e);
            assert!(
                !line.contains('{') && !line.contains('}'),
                "{}: {line}",
                e.name
            );
        }
    }
    let tiny = reg().get("word-tiny").unwrap();
    let f = reg().family(Family::WordRoberta).unwrap();
    let classify = f
        .uer_py
        .iter()
        .find(|c| c.what.contains("classifier"))
        .unwrap()
        .render(tiny);
    assert!(
        classify.contains("--spm_model_path models/cluecorpussmall_spm.model"),
        "{classify}"
    );
    assert!(
        classify.contains("--embedding word_pos_seg --encoder transformer --mask fully_visible")
    );
    assert!(!classify.contains("--target"));
}
