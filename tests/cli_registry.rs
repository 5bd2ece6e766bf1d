//! `uerzoo list` and `uerzoo info` run as a user would: the built binary, stdout and exit codes.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::process::{Command, Output};

fn uerzoo(args: &[&str]) -> Output {
    // Run from a temporary directory: the registry must not depend on the working directory.
    let dir = tempfile::tempdir().unwrap();
    Command::new(common::uerzoo_bin())
        .args(args)
        .current_dir(dir.path())
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = uerzoo(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn list_json_has_every_family_and_required_fields() {
    let all = json(&["list", "--json"]);
    let entries = all.as_array().unwrap();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut pairs = BTreeSet::new();
    for e in entries {
        for key in ["name", "family", "layers", "hidden", "config", "sources"] {
            assert!(!e[key].is_null(), "{} lacks {key}", e["name"]);
        }
        let family = e["family"].as_str().unwrap().to_string();
        if family == "roberta" {
            pairs.insert((e["layers"].as_u64().unwrap(), e["hidden"].as_u64().unwrap()));
        }
        *counts.entry(family).or_default() += 1;
    }
    assert_eq!(counts["roberta"], 24);
    assert_eq!(counts["word-roberta"], 5);
    assert_eq!(counts["gpt2"], 6);
    assert!(counts["legacy"] >= 26);
    assert_eq!(pairs.len(), 24, "every (layers, hidden) pair");
    let couplet = entries
        .iter()
        .find(|e| e["name"] == "gpt2-chinese-couplet")
        .unwrap();
    assert_eq!(couplet["sources"]["hf"]["repo"], "uer/gpt2-chinese-couplet");
    assert_eq!(
        couplet["generation"]["card_prompt"],
        "[CLS]丹 枫 江 冷 人 初 去 -"
    );
}

#[test]
fn list_filters_combine() {
    let eight = json(&["list", "--family", "roberta", "--layers", "8", "--json"]);
    let names: Vec<&str> = eight
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "chinese_roberta_L-8_H-128",
            "chinese_roberta_L-8_H-256",
            "chinese_roberta_L-8_H-512",
            "chinese_roberta_L-8_H-768"
        ]
    );
    let h768 = json(&["list", "--hidden", "768", "--family", "gpt2", "--json"]);
    assert_eq!(h768.as_array().unwrap().len(), 6);
    let none = json(&["list", "--layers", "99", "--json"]);
    assert_eq!(none, serde_json::json!([]));
    let bad = uerzoo(&["list", "--family", "bart"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("roberta, word-roberta, gpt2, legacy"));
}

#[test]
fn list_table_fits_a_terminal() {
    let out = uerzoo(&["list"]);
    assert!(out.status.success());
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("NAME") && lines[0].contains("SOURCES"));
    assert_eq!(lines.iter().filter(|l| l.contains(" roberta ")).count(), 24);
    let medium = lines
        .iter()
        .find(|l| l.starts_with("chinese_roberta_L-8_H-512 (medium) "))
        .unwrap();
    for part in ["roberta", "L8/H512", "146 MB", "hf weiyun"] {
        assert!(medium.contains(part), "{medium}");
    }
    let widest = lines.iter().map(|l| l.chars().count()).max().unwrap();
    assert!(widest <= 100, "widest line {widest} columns");
    assert!(text.contains("61 of 61 weights"));
}

#[test]
fn info_shows_facts_and_usage_for_a_full_name() {
    let out = uerzoo(&["info", "chinese_roberta_L-8_H-512"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for part in [
        "chinese_roberta_L-8_H-512 — Chinese RoBERTa-Medium",
        "aliases       medium",
        "8 layers, hidden 512, 8 heads, feed-forward 2048",
        "configs/bert/medium_config.json",
        "--target mlm --tie_weights",
        "cluecorpussmall_roberta_medium_seq512_model.bin",
        "https://huggingface.co/uer/chinese_roberta_L-8_H-512",
        "146 MB (146,403,143 bytes)",
        "https://share.weiyun.com/vpnaZ5jp",
        "1,000,000 steps, seq 128",
        "250,000 steps, seq 512",
        "average 78.0",
        "uerzoo download chinese_roberta_L-8_H-512",
        "uerzoo fill-mask chinese_roberta_L-8_H-512",
        "python3 run_classifier.py --pretrained_model_path models/cluecorpussmall_roberta_medium_seq512_model.bin",
    ] {
        assert!(text.contains(part), "missing `{part}` in:\n{text}");
    }
}

#[test]
fn info_by_alias_equals_info_by_name() {
    let by_alias = uerzoo(&["info", "medium"]);
    let by_name = uerzoo(&["info", "chinese_roberta_L-8_H-512"]);
    assert!(by_alias.status.success());
    assert_eq!(by_alias.stdout, by_name.stdout);
}

#[test]
fn info_gpt2_couplet_shows_the_preset() {
    let out = uerzoo(&["info", "gpt2-chinese-couplet"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for part in [
        "gpt2-chinese-couplet — Chinese GPT-2 for couplets",
        "aliases       gpt2-couplet, uer/gpt2-chinese-couplet",
        "12 layers, hidden 768, 12 heads",
        "--layernorm_positioning pre",
        "example       [CLS]丹 枫 江 冷 人 初 去 -",
        "max length 25, top-k 70",
        "25,000 steps, seq 64",
        "uerzoo download gpt2-chinese-couplet",
        "python3 scripts/generate_lm.py --load_model_path models/couplet_gpt2_model.bin",
    ] {
        assert!(text.contains(part), "missing `{part}` in:\n{text}");
    }
    assert_eq!(uerzoo(&["info", "gpt2-poem"]).status.code(), Some(0));
    assert_eq!(
        uerzoo(&["info", "uer/gpt2-chinese-couplet"]).stdout,
        out.stdout
    );
}

#[test]
fn info_config_prints_the_uer_config() {
    let cfg = json(&["info", "small", "--config"]);
    assert_eq!(cfg["layers_num"], 4);
    assert_eq!(cfg["hidden_size"], 512);
    assert_eq!(cfg["heads_num"], 8);
    assert_eq!(cfg["target"], "mlm");
    let entry = json(&["info", "small", "--json"]);
    assert_eq!(entry["name"], "chinese_roberta_L-4_H-512");
    assert_eq!(entry["config"], "bert/small_config.json");
}

#[test]
fn unknown_name_fails_with_suggestions() {
    let out = uerzoo(&["info", "gpt2-chinese-couplett"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no weight named `gpt2-chinese-couplett`"),
        "{err}"
    );
    assert!(err.contains("did you mean `gpt2-chinese-couplet`"), "{err}");
    let out = uerzoo(&["info", "mediun"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`chinese_roberta_L-8_H-512`"));
}

#[test]
fn help_explains_with_examples() {
    for cmd in ["list", "info"] {
        let out = uerzoo(&[cmd, "--help"]);
        assert!(out.status.success());
        let text = stdout(&out);
        assert!(text.contains("Examples:\n"), "{cmd} --help:\n{text}");
        let examples = text
            .lines()
            .filter(|l| l.starts_with(&format!("  uerzoo {cmd}")));
        assert!(examples.count() >= 3, "{cmd} --help:\n{text}");
    }
}

#[test]
fn info_shows_a_file_put_in_the_cache_by_import() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let file = dir.path().join("google_zh_model.bin");
    std::fs::write(&file, b"not really a model, but bytes with a known hash").unwrap();
    let run = |args: &[&str]| {
        Command::new(common::uerzoo_bin())
            .args(args)
            .env("HF_HUB_CACHE", &cache)
            .env("HF_HUB_OFFLINE", "1")
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let before = run(&["info", "google_zh_bert_base"]);
    assert!(before.status.success());
    assert!(stdout(&before).contains("nothing cached"));
    let import = run(&[
        "import",
        "google_zh_bert_base",
        file.to_str().unwrap(),
        "--skip-check",
    ]);
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    let after = stdout(&run(&["info", "google_zh_bert_base"]));
    // sha256 of the bytes above, computed independently with `sha256sum`.
    let sha = "71a2cbeeea168514e85a5a1eb045aafe77a2e60a477b6f4542fee4879bfa2a81";
    assert!(after.contains("Local cache"), "{after}");
    assert!(after.contains(&format!("sha256 {sha}")), "{after}");
    assert!(!after.contains("nothing cached"), "{after}");
}

#[test]
fn info_suggests_converting_to_hf_only_what_convert_maps() {
    for name in ["reviews_lstm_lm", "mixed_amazon_lstm_lm_cls"] {
        let out = uerzoo(&["info", name]);
        assert!(out.status.success());
        let text = stdout(&out);
        assert!(!text.contains("--to hf"), "{name}:\n{text}");
        assert!(
            text.contains("no Huggingface counterpart"),
            "{name}:\n{text}"
        );
    }
    // Both LSTM weights fine-tune with mean pooling; the one with a classification target
    // also predicts as it is.
    let lm = uerzoo_commands("reviews_lstm_lm");
    let cls = uerzoo_commands("mixed_amazon_lstm_lm_cls");
    for commands in [&lm, &cls] {
        assert!(
            commands
                .iter()
                .any(|c| c.starts_with("uerzoo finetune") && c.contains("--pooling mean")),
            "{commands:#?}"
        );
    }
    let predicts_itself = |c: &Vec<String>| {
        c.iter()
            .any(|l| l.starts_with("uerzoo predict mixed_amazon_lstm_lm_cls"))
    };
    assert!(predicts_itself(&cls), "{cls:#?}");
    assert!(
        !lm.iter()
            .any(|l| l.starts_with("uerzoo predict reviews_lstm_lm")),
        "{lm:#?}"
    );
    // A legacy BERT in the same family keeps the suggestion.
    let text = stdout(&uerzoo(&["info", "ifeng_news_bert"]));
    assert!(text.contains("--to hf"), "{text}");
}

/// The `uerzoo …` lines of `info`'s "Use with uerzoo" section.
fn uerzoo_commands(name: &str) -> Vec<String> {
    let out = uerzoo(&["info", name]);
    assert!(out.status.success(), "info {name}");
    let text = stdout(&out);
    let section = text
        .split("\nUse with uerzoo\n")
        .nth(1)
        .unwrap_or_else(|| panic!("info {name}: no uerzoo commands"));
    let section = section.split("\n\n").next().unwrap();
    section
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("uerzoo "))
        .map(String::from)
        .collect()
}

#[test]
fn info_shows_a_command_for_each_task_the_weight_supports() {
    let couplet = uerzoo_commands("gpt2-chinese-couplet");
    let tiny = uerzoo_commands("tiny");
    let has = |cmds: &[String], prefix: &str| cmds.iter().filter(|c| c.starts_with(prefix)).count();
    // GPT-2: generation with the card's prompt (the name brings the couplet preset), pretraining
    // with the LM target, serving; no classifier or fill-mask.
    assert_eq!(
        has(
            &couplet,
            "uerzoo generate gpt2-chinese-couplet --prompt 丹枫江冷人初去"
        ),
        1,
        "{couplet:#?}"
    );
    let text = stdout(&uerzoo(&["info", "gpt2-chinese-couplet"]));
    assert!(text.contains("preset `couplet`"), "{text}");
    assert_eq!(
        has(&couplet, "uerzoo pretrain --model gpt2-chinese-couplet"),
        1
    );
    assert_eq!(
        has(&couplet, "uerzoo preprocess --corpus corpus.txt --vocab"),
        1
    );
    assert_eq!(has(&couplet, "uerzoo serve gpt2-chinese-couplet"), 1);
    assert_eq!(has(&couplet, "uerzoo finetune"), 0);
    assert_eq!(has(&couplet, "uerzoo fill-mask"), 0);
    // An encoder: each task once (the family's own fill-mask and features are not repeated).
    for prefix in [
        "uerzoo fill-mask chinese_roberta_L-2_H-128",
        "uerzoo extract-features chinese_roberta_L-2_H-128",
        "uerzoo finetune chinese_roberta_L-2_H-128",
        "uerzoo predict classifier.bin",
        "uerzoo preprocess --corpus corpus.txt --vocab vocab/google_zh_vocab.txt --target mlm",
        "uerzoo pretrain --model chinese_roberta_L-2_H-128",
        "uerzoo serve chinese_roberta_L-2_H-128",
    ] {
        assert_eq!(has(&tiny, prefix), 1, "`{prefix}` in {tiny:#?}");
    }
    assert_eq!(has(&tiny, "uerzoo generate"), 0);
    // Word-based: the sentencepiece model for preprocessing.
    let word = uerzoo_commands("word-tiny");
    assert_eq!(
        has(
            &word,
            "uerzoo preprocess --corpus corpus.txt --vocab vocab/cluecorpussmall_spm.model"
        ),
        1,
        "{word:#?}"
    );
}

#[test]
fn every_command_info_shows_takes_the_flags_it_is_shown_with() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut helps: HashMap<String, String> = HashMap::new();
    for name in [
        "tiny",
        "word-tiny",
        "gpt2-chinese-couplet",
        "google_zh_albert_base",
    ] {
        for line in uerzoo_commands(name) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let sub = words[1].to_string();
            let help = helps
                .entry(sub.clone())
                .or_insert_with(|| stdout(&uerzoo(&[&sub, "--help"])));
            assert!(!help.is_empty(), "`uerzoo {sub}` is not a command ({line})");
            for flag in words.iter().filter(|w| w.starts_with("--")) {
                assert!(
                    help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                    "`uerzoo {sub}` has no {flag} ({line})"
                );
            }
            // The vocabularies named are the repository's.
            for w in words.iter().filter(|w| w.starts_with("vocab/")) {
                assert!(root.join(w).is_file(), "{w} ({line})");
            }
        }
    }
}
