//! Generation against UER-py's own output (`../shared/fixtures/uer/gpt2_v1`:
//! `greedy_prompt.txt` = prompt line + max length, `greedy_generation.txt` line 2 = UER-py's
//! generate_lm output with top-k 1), the KV cache against the full forward pass, seeded
//! sampling, presets and the CLI's errors.

mod common;

use burn::tensor::{Int, Tensor, TensorData};
use std::path::{Path, PathBuf};
use std::process::Command;
use uerzoo::generate::{self, GenerateError, GenerateOptions, Preset, Sampling, StopReason};
use uerzoo::model::kv_cache::KvCache;
use uerzoo::model::{Cpu, Model, ModelConfig, load_model, random_checkpoint};
use uerzoo::registry::Registry;
use uerzoo::tokenizer::{Tokenizer, TokenizerOptions};

/// KV-cache logits vs the full forward pass: same f32 math in a different order (one
/// position at a time, attention over cached keys). Measured ~1e-6; the issue's bound.
const TOL: f32 = 1e-4;

fn fixture() -> PathBuf {
    common::uer_fixture("gpt2_v1")
}

fn fixture_model() -> Model<Cpu> {
    let f = fixture();
    let opened =
        uerzoo::model::open::open_model(&f.join("uer_model.bin"), Some(&f.join("uer_config.json")))
            .unwrap();
    load_model::<Cpu>(&opened.checkpoint, &opened.config, &Default::default())
        .unwrap()
        .0
}

fn fixture_tokenizer() -> Tokenizer {
    Tokenizer::from_vocab_file(fixture().join("vocab.txt"), TokenizerOptions::uer()).unwrap()
}

/// (prompt line, max length, UER-py's output line 2).
fn greedy_reference() -> (String, usize, String) {
    let prompt = std::fs::read_to_string(fixture().join("greedy_prompt.txt")).unwrap();
    let mut lines = prompt.lines();
    let text = lines.next().unwrap().trim().to_string();
    let max_length = lines.next().unwrap().trim().parse().unwrap();
    let out = std::fs::read_to_string(fixture().join("greedy_generation.txt")).unwrap();
    (text, max_length, out.lines().nth(1).unwrap().to_string())
}

fn ids_tensor(ids: &[u32]) -> Tensor<Cpu, 2, Int> {
    let v: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
    Tensor::from_data(TensorData::new(v, [1, ids.len()]), &Default::default())
}

fn to_vec(t: Tensor<Cpu, 3>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

fn greedy(max_length: usize) -> GenerateOptions {
    GenerateOptions {
        max_length,
        sampling: Sampling::greedy(),
        ..GenerateOptions::default()
    }
}

#[test]
fn greedy_reproduces_uer_py_tokens() {
    let (text, max_length, expected) = greedy_reference();
    let tok = fixture_tokenizer();
    let model = fixture_model();
    let prompt = generate::prompt_ids(&tok, &text);
    for use_cache in [true, false] {
        let opts = GenerateOptions {
            use_cache,
            ..greedy(max_length)
        };
        let out = generate::generate(&model, &prompt, &opts, &mut |_, _| {}).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].ids.len(),
            max_length,
            "UER-py generates to seq_length"
        );
        assert_eq!(out[0].stop, StopReason::MaxLength);
        assert_eq!(
            generate::uer_text(&tok, &out[0].ids),
            expected,
            "use_cache {use_cache}"
        );
    }
}

/// `uerzoo generate` on the fixture `f` with `--prompt text --max-length max_length`.
fn generate_cmd(f: &Path, text: &str, max_length: usize) -> Command {
    let mut cmd = Command::new(common::uerzoo_bin());
    cmd.arg("generate")
        .arg(f.join("uer_model.bin"))
        .arg("--config")
        .arg(f.join("uer_config.json"))
        .arg("--vocab")
        .arg(f.join("vocab.txt"))
        .args(["--prompt", text, "--max-length", &max_length.to_string()]);
    cmd
}

#[test]
fn cli_greedy_prints_uer_py_text() {
    let (text, max_length, expected) = greedy_reference();
    let f = fixture();
    let out = common::run_ok(generate_cmd(&f, &text, max_length).arg("--greedy"));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.trim_end(), expected.strip_prefix("[CLS]").unwrap());
}

#[test]
fn cli_top_k_1_equals_greedy_and_stream_prints_the_same() {
    let (text, max_length, _) = greedy_reference();
    let f = fixture();
    let run = |extra: &[&str]| {
        let out = common::run_ok(generate_cmd(&f, &text, max_length).args(extra));
        String::from_utf8(out.stdout).unwrap()
    };
    let greedy = run(&["--greedy"]);
    assert_eq!(run(&["--top-k", "1", "--seed", "5"]), greedy);
    assert_eq!(run(&["--top-k", "1", "--seed", "6", "--stream"]), greedy);
    assert_eq!(run(&["--greedy", "--no-cache"]), greedy);
}

/// Logits of every position: the full forward pass vs prefill + one token at a time.
fn assert_cache_matches_forward(model: &Model<Cpu>, ids: &[u32], prefill: usize) {
    let seg = vec![1i64; ids.len()];
    let ids_i64: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
    let (t_ids, t_seg) = model
        .inputs(&ids_i64, &seg, 1, ids.len(), &Default::default())
        .unwrap();
    let full = to_vec(model.forward(t_ids, t_seg).logits.unwrap());
    let vocab = model.config.vocab_size;
    let mut cache = KvCache::new(model);
    let mut cached = to_vec(
        model
            .decode_step(ids_tensor(&ids[..prefill]), &mut cache)
            .unwrap(),
    );
    for i in prefill..ids.len() {
        cached.extend(to_vec(
            model
                .decode_step(ids_tensor(&ids[i..=i]), &mut cache)
                .unwrap(),
        ));
    }
    assert_eq!(cache.len(), ids.len());
    assert_eq!(cached.len(), full.len());
    let worst = full
        .iter()
        .zip(&cached)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("kv cache vs full forward: max |diff| = {worst:e}");
    assert!(
        worst <= TOL,
        "max |full − cached| = {worst} over {} positions × {vocab}",
        ids.len()
    );
}

#[test]
fn kv_cache_logits_match_full_forward_on_fixture() {
    let model = fixture_model();
    let ids: Vec<u32> = (0..40).map(|i| (i * 37 % 3000 + 1) as u32).collect();
    assert_cache_matches_forward(&model, &ids, 1);
    assert_cache_matches_forward(&model, &ids, 7);
}

#[test]
fn kv_cache_logits_match_full_forward_on_v2_and_hf_fixtures() {
    let v2 = common::uer_fixture("gpt2_v2");
    let hf = fixture().join("hf_by_uer_script");
    for (weights, config) in [
        (v2.join("uer_model.bin"), Some(v2.join("uer_config.json"))),
        (hf, None),
    ] {
        let opened = uerzoo::model::open::open_model(&weights, config.as_deref()).unwrap();
        let model = load_model::<Cpu>(&opened.checkpoint, &opened.config, &Default::default())
            .unwrap()
            .0;
        let ids: Vec<u32> = (0..30).map(|i| (i * 53 % 3000 + 1) as u32).collect();
        assert_cache_matches_forward(&model, &ids, 3);
    }
}

#[test]
fn kv_cache_logits_match_full_forward_random_gpt2() {
    // A GPT-2 shaped like the zoo's (pre-LN, final LN, causal, gelu_fast), 4 heads, untied head.
    let mut cfg = ModelConfig::from_uer_json(&serde_json::json!({
        "emb_size": 64, "hidden_size": 64, "feedforward_size": 256, "heads_num": 4, "layers_num": 3,
        "hidden_act": "gelu_fast", "embedding": "word_pos", "remove_embedding_layernorm": true,
        "mask": "causal", "layernorm_positioning": "pre"
    }))
    .unwrap();
    cfg.vocab_size = 500;
    cfg.max_seq_length = 64;
    let ckpt = random_checkpoint(&cfg, 11);
    let model = load_model::<Cpu>(&ckpt, &cfg, &Default::default())
        .unwrap()
        .0;
    let ids: Vec<u32> = (0..64).map(|i| (i * 13 % 499 + 1) as u32).collect();
    assert_cache_matches_forward(&model, &ids, 5);
    // Past the last position embedding is an error, not a panic.
    let mut cache = KvCache::new(&model);
    model.decode_step(ids_tensor(&ids), &mut cache).unwrap();
    assert!(
        model
            .decode_step(ids_tensor(&ids[..1]), &mut cache)
            .is_err()
    );
}

#[test]
fn sampling_is_seeded_and_cache_independent() {
    let tok = fixture_tokenizer();
    let model = fixture_model();
    let prompt = generate::prompt_ids(&tok, "今天天气很好");
    let opts = |seed, use_cache| GenerateOptions {
        max_length: 40,
        sampling: Sampling {
            top_k: 20,
            top_p: 0.9,
            temperature: 1.3,
            repetition_penalty: 1.0,
        },
        seed,
        num_return: 3,
        use_cache,
        ..GenerateOptions::default()
    };
    let run = |o: GenerateOptions| generate::generate(&model, &prompt, &o, &mut |_, _| {}).unwrap();
    let a = run(opts(42, true));
    assert_eq!(a, run(opts(42, true)), "same seed, same text");
    assert_eq!(
        a,
        run(opts(42, false)),
        "the cache does not change the tokens"
    );
    assert_ne!(a, run(opts(43, true)), "another seed, other text");
    assert_ne!(a[0].ids, a[1].ids, "the returns differ");
    // top-k 1 ignores the seed and equals greedy.
    let g = run(GenerateOptions {
        sampling: Sampling::greedy(),
        ..opts(1, true)
    });
    let k1 = run(GenerateOptions {
        sampling: Sampling {
            top_k: 1,
            temperature: 0.5,
            ..Sampling::default()
        },
        ..opts(99, true)
    });
    assert_eq!(g, k1);
}

#[test]
fn stops_at_stop_id_and_max_new_tokens() {
    let (text, max_length, _) = greedy_reference();
    let tok = fixture_tokenizer();
    let model = fixture_model();
    let prompt = generate::prompt_ids(&tok, &text);
    let full = generate::generate(&model, &prompt, &greedy(max_length), &mut |_, _| {})
        .unwrap()
        .remove(0);
    let third = full.continuation()[2];
    let first_hit = full
        .continuation()
        .iter()
        .position(|&i| i == third)
        .unwrap();
    let stopped = generate::generate(
        &model,
        &prompt,
        &GenerateOptions {
            stop_id: Some(third),
            ..greedy(max_length)
        },
        &mut |_, _| {},
    )
    .unwrap()
    .remove(0);
    assert_eq!(stopped.stop, StopReason::StopToken);
    assert_eq!(stopped.continuation(), &full.continuation()[..=first_hit]);
    let mut seen = Vec::new();
    let short = generate::generate(
        &model,
        &prompt,
        &GenerateOptions {
            max_new_tokens: Some(4),
            ..greedy(max_length)
        },
        &mut |_, id| seen.push(id),
    )
    .unwrap()
    .remove(0);
    assert_eq!(short.stop, StopReason::MaxNewTokens);
    assert_eq!(short.continuation(), &full.continuation()[..4]);
    assert_eq!(seen, short.continuation(), "every new token is reported");
}

#[test]
fn invalid_options_are_errors() {
    let model = fixture_model();
    let prompt = [2u32, 100, 200];
    let err =
        |o: GenerateOptions| generate::generate(&model, &prompt, &o, &mut |_, _| {}).unwrap_err();
    let s = |top_p, temperature| GenerateOptions {
        sampling: Sampling {
            top_p,
            temperature,
            ..Sampling::default()
        },
        ..greedy(20)
    };
    assert!(matches!(
        err(s(1.5, 1.0)),
        GenerateError::Option {
            option: "top-p",
            ..
        }
    ));
    assert!(matches!(
        err(s(-0.2, 1.0)),
        GenerateError::Option {
            option: "top-p",
            ..
        }
    ));
    assert!(matches!(
        err(s(0.5, 0.0)),
        GenerateError::Option {
            option: "temperature",
            ..
        }
    ));
    assert!(matches!(
        err(s(0.5, -1.0)),
        GenerateError::Option {
            option: "temperature",
            ..
        }
    ));
    assert!(matches!(
        err(greedy(129)),
        GenerateError::MaxLength {
            max_length: 129,
            positions: 128
        }
    ));
    assert!(matches!(
        err(GenerateOptions {
            num_return: 0,
            ..greedy(20)
        }),
        GenerateError::Option { .. }
    ));
}

#[test]
fn cli_invalid_options_explain_themselves() {
    let f = fixture();
    let cases: [(&[&str], &str); 5] = [
        (
            &["--top-p", "1.5"],
            "--top-p 1.5: expected a probability in (0, 1]",
        ),
        (
            &["--top-p", "0"],
            "--top-p 0: expected a probability in (0, 1]",
        ),
        (
            &["--temperature", "0"],
            "--temperature 0: expected a number > 0",
        ),
        (
            &["--max-length", "500"],
            "--max-length 500 is beyond the model's 128 position embeddings",
        ),
        (
            &["--preset", "sonnet"],
            "unknown preset `sonnet`; use one of: plain, poem, couplet, lyric, ancient",
        ),
    ];
    for (extra, message) in cases {
        let out = Command::new(common::uerzoo_bin())
            .arg("generate")
            .arg(f.join("uer_model.bin"))
            .arg("--config")
            .arg(f.join("uer_config.json"))
            .args(["--prompt", "今天"])
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{extra:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{extra:?}: stderr was {stderr}");
    }
}

#[test]
fn presets_format_prompts_like_the_cards() {
    let tok = fixture_tokenizer();
    let couplet = Preset::get("couplet").unwrap();
    assert_eq!(
        couplet.format_prompt("丹枫江冷人初去"),
        "丹 枫 江 冷 人 初 去 -"
    );
    // A card prompt pasted with its [CLS] gives the same ids: the generator adds [CLS] itself.
    assert_eq!(
        couplet.format_prompt("[CLS]丹枫江冷人初去"),
        couplet.format_prompt("丹枫江冷人初去")
    );
    let poem = Preset::get("poem").unwrap();
    assert_eq!(poem.format_prompt("梅山如积翠，"), "梅 山 如 积 翠 ，");
    // Spaces between characters do not change the ids (FACTS §7).
    assert_eq!(
        generate::prompt_ids(&tok, "梅 山 如 积 翠 ，"),
        generate::prompt_ids(&tok, "梅山如积翠，")
    );
    // Couplet: the lower line has the upper line's length; output cleaned of specials.
    assert_eq!(couplet.new_token_limit(&tok, "今天天气"), Some(4));
    let lower = tok.encode("明日阳光");
    let mut continuation = lower.clone();
    continuation.push(tok.sep_id());
    assert_eq!(
        couplet.render(&tok, "今天天气", &continuation),
        "今天天气 - 明日阳光"
    );
    assert!(couplet.stop_at_sep && poem.stop_at_sep);
    assert_eq!(
        Preset::get("plain")
            .unwrap()
            .render(&tok, "今天", &[tok.pad_id(), lower[0]]),
        "今天明"
    );
}

#[test]
fn preset_table_agrees_with_the_registry() {
    for entry in Registry::builtin().entries() {
        let Some(card) = &entry.generation else {
            continue;
        };
        let preset = Preset::for_entry(&entry.name);
        assert_eq!(
            preset.template, card.template,
            "{}: preset {} vs registry template",
            entry.name, preset.name
        );
        assert_eq!(
            preset.format_prompt(&card.example),
            card.format_prompt(&card.example),
            "{}",
            entry.name
        );
    }
    assert_eq!(Preset::for_entry("gpt2-chinese-couplet").name, "couplet");
    assert_eq!(Preset::for_entry("gpt2-chinese-poem").name, "poem");
}

/// A Huggingface cache holding the gpt2_v1 fixture's HF export as `uer/gpt2-chinese-couplet`.
fn fake_couplet_cache() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("models--uer--gpt2-chinese-couplet");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), commit).unwrap();
    let snap = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    let f = fixture();
    for (from, to) in [
        (
            f.join("hf_by_uer_script").join("config.json"),
            "config.json",
        ),
        (
            f.join("hf_by_uer_script").join("pytorch_model.bin"),
            "pytorch_model.bin",
        ),
        (f.join("vocab.txt"), "vocab.txt"),
    ] {
        std::fs::copy(from, snap.join(to)).unwrap();
    }
    root
}

fn run_in_cache(cache: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(common::uerzoo_bin())
        .arg("generate")
        .args(args)
        .env("HF_HUB_CACHE", cache)
        .output()
        .unwrap()
}

#[test]
fn cli_registry_name_brings_the_couplet_preset() {
    let cache = fake_couplet_cache();
    let args = [
        "gpt2-chinese-couplet",
        "--prompt",
        "今天天气很好",
        "--seed",
        "7",
        "--num-return",
        "3",
    ];
    let out = run_in_cache(cache.path(), &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for line in &lines {
        let (upper, lower) = line
            .split_once(" - ")
            .unwrap_or_else(|| panic!("no ` - ` in {line:?}"));
        assert_eq!(upper, "今天天气很好");
        assert!(
            lower.chars().count() <= 6,
            "lower line longer than the upper: {line:?}"
        );
        assert!(
            !lower.contains("[SEP]") && !lower.contains("[CLS]") && !lower.contains(' '),
            "{line:?}"
        );
    }
    let again = run_in_cache(cache.path(), &args);
    assert_eq!(
        String::from_utf8(again.stdout).unwrap(),
        stdout,
        "same seed, same couplets"
    );
}

#[test]
fn cli_registry_name_not_cached_says_download() {
    let empty = tempfile::tempdir().unwrap();
    let out = run_in_cache(
        empty.path(),
        &["gpt2-chinese-poem", "--prompt", "梅山如积翠，"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("uerzoo download gpt2-chinese-poem"),
        "{stderr}"
    );
}

/// 50 upper lines, some with punctuation inside.
const UPPER_LINES: &[&str] = &[
    "白日依山尽",
    "春风得意，马蹄疾",
    "丹枫江冷人初去",
    "天增岁月人增寿",
    "海阔凭鱼跃",
    "一帆风顺年年好",
    "家和万事兴",
    "书山有路勤为径",
    "松竹梅岁寒三友",
    "日月同辉，山河共寿",
    "风调雨顺",
    "福如东海长流水",
    "春回大地，万象更新",
    "花开富贵",
    "国泰民安，人寿年丰",
    "明月松间照",
    "清泉石上流，竹喧归浣女",
    "百年好合",
    "千里莺啼绿映红",
    "爆竹声中一岁除",
    "事事如意，年年有余",
    "江山如画",
    "五湖四海皆春色",
    "青山不老，绿水长存",
    "大地回春",
    "四海翻腾云水怒",
    "一年四季春常在",
    "门迎百福",
    "喜气洋洋，人寿年丰",
    "春满人间",
    "莫等闲、白了少年头",
    "天上众星皆拱北",
    "岁岁平安",
    "红梅含苞傲冬雪",
    "鸟语花香，山清水秀",
    "金玉满堂",
    "水光潋滟晴方好",
    "人勤春早",
    "万里长城永不倒",
    "好读书，不求甚解",
    "风声雨声读书声",
    "一元复始，万象更新",
    "春江潮水连海平",
    "竹报平安",
    "和风细雨，春光明媚",
    "东风化雨山山翠",
    "瑞雪兆丰年",
    "山高月小，水落石出",
    "绿水青山，枕上诗书闲处好",
    "欢度春节",
];

/// `uerzoo generate` on the gpt2_v1 fixture without a prompt option.
fn generate_bare(f: &Path) -> Command {
    let mut cmd = Command::new(common::uerzoo_bin());
    cmd.arg("generate")
        .arg(f.join("uer_model.bin"))
        .arg("--config")
        .arg(f.join("uer_config.json"))
        .arg("--vocab")
        .arg(f.join("vocab.txt"));
    cmd
}

fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The issue's acceptance: every lower line of the couplet preset has the upper line's
/// length, its punctuation at the same places and Chinese characters elsewhere; candidates
/// come best score first.
#[test]
fn cli_couplet_lower_lines_fit_their_upper_lines() {
    assert_eq!(UPPER_LINES.len(), 50);
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("uppers.txt");
    std::fs::write(&input, UPPER_LINES.join("\n")).unwrap();
    let out = common::run_ok(
        generate_bare(&f)
            .arg("--input")
            .arg(&input)
            .args(["--preset", "couplet", "--max-length", "40", "--seed", "8"])
            .args(["--num-return", "2", "--json"]),
    );
    let records = json_lines(&out);
    assert_eq!(records.len(), 100);
    for (pair, upper) in records.chunks(2).zip(UPPER_LINES) {
        for rec in pair {
            assert_eq!(rec["prompt"], *upper);
            let lower: Vec<char> = rec["continuation"].as_str().unwrap().chars().collect();
            let upper: Vec<char> = upper.chars().collect();
            assert_eq!(lower.len(), upper.len(), "{rec}");
            for (u, l) in upper.iter().zip(&lower) {
                if uerzoo::tokenizer::is_bert_punctuation(*u) {
                    assert_eq!(u, l, "punctuation in place: {rec}");
                } else {
                    assert!(uerzoo::tokenizer::is_cjk(*l), "a Chinese character: {rec}");
                }
            }
            assert_eq!(
                rec["stop"], "StopToken",
                "ends exactly at the length: {rec}"
            );
        }
        let scores: Vec<f64> = pair.iter().map(|r| r["score"].as_f64().unwrap()).collect();
        assert!(scores[0] >= scores[1], "ranked best first: {scores:?}");
        assert!(
            scores.iter().all(|s| s.is_finite() && *s < 0.0),
            "{scores:?}"
        );
    }
}

/// The issue's example printed an empty lower line; now it is five characters.
#[test]
fn cli_couplet_example_of_the_issue_has_a_five_character_lower_line() {
    let f = fixture();
    let out = common::run_ok(
        generate_cmd(&f, "白日依山尽", 30).args(["--preset", "couplet", "--seed", "8"]),
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let (upper, lower) = stdout.trim_end().split_once(" - ").unwrap();
    assert_eq!(upper, "白日依山尽");
    assert_eq!(lower.chars().count(), 5, "{stdout}");
    assert!(lower.chars().all(uerzoo::tokenizer::is_cjk), "{stdout}");
}

/// `--line-length 5`: every generated line is 5 Chinese characters and a line end.
#[test]
fn cli_poem_line_length_keeps_lines_of_five() {
    let f = fixture();
    let out = common::run_ok(generate_cmd(&f, "梅山如积翠，", 45).args([
        "--preset",
        "poem",
        "--line-length",
        "5",
        "--seed",
        "3",
        "--json",
    ]));
    let rec = &json_lines(&out)[0];
    let text = rec["continuation"].as_str().unwrap();
    let ends = uerzoo::generate::constraint::LINE_ENDS;
    let mut lines = 0;
    let mut rest = text;
    while let Some((i, c)) = rest
        .char_indices()
        .find(|(_, c)| ends.contains(&c.to_string().as_str()))
    {
        let line = &rest[..i];
        assert_eq!(line.chars().count(), 5, "{text}");
        assert!(line.chars().all(uerzoo::tokenizer::is_cjk), "{text}");
        rest = &rest[i + c.len_utf8()..];
        lines += 1;
    }
    // The last line may be cut by --max-length.
    assert!(rest.chars().count() < 5, "{text}");
    assert!(lines >= 3, "{text}");
}

/// 50 prompts through `--input` equal 50 runs of `--prompt`, seed for seed: printed,
/// in UER-py's prediction layout (`--output`) and as JSON lines.
#[test]
fn cli_input_of_50_prompts_equals_50_single_runs() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let prompts: Vec<String> = UPPER_LINES.iter().map(|l| format!("{l}。")).collect();
    let input = dir.path().join("prompts.txt");
    std::fs::write(&input, prompts.join("\n") + "\n").unwrap();
    let sampling = [
        "--top-k",
        "20",
        "--seed",
        "11",
        "--max-length",
        "24",
        "--num-return",
        "2",
    ];
    let batch = common::run_ok(generate_bare(&f).arg("--input").arg(&input).args(sampling));
    let batch_file = dir.path().join("batch.txt");
    common::run_ok(
        generate_bare(&f)
            .arg("--input")
            .arg(&input)
            .args(sampling)
            .arg("--output")
            .arg(&batch_file),
    );
    let json = common::run_ok(
        generate_bare(&f)
            .arg("--input")
            .arg(&input)
            .args(sampling)
            .arg("--json"),
    );
    let mut singles = String::new();
    let mut single_files = String::new();
    let single_file = dir.path().join("single.txt");
    for p in &prompts {
        let out = common::run_ok(generate_bare(&f).args(["--prompt", p]).args(sampling));
        singles.push_str(&String::from_utf8(out.stdout).unwrap());
        common::run_ok(
            generate_bare(&f)
                .args(["--prompt", p])
                .args(sampling)
                .arg("--output")
                .arg(&single_file)
                .arg("--force"),
        );
        single_files.push_str(&std::fs::read_to_string(&single_file).unwrap());
    }
    let batch = String::from_utf8(batch.stdout).unwrap();
    assert_eq!(batch.lines().count(), 100);
    assert_eq!(batch, singles);
    let layout = std::fs::read_to_string(&batch_file).unwrap();
    assert_eq!(layout, single_files);
    // UER-py's layout: the prompt line, then each sequence's tokens, [CLS] first.
    let lines: Vec<&str> = layout.lines().collect();
    assert_eq!(lines.len(), 150);
    assert_eq!(lines[0], prompts[0]);
    assert!(
        lines[1].starts_with(&format!("[CLS]{}", prompts[0])),
        "{}",
        lines[1]
    );
    let records = json_lines(&json);
    assert_eq!(records.len(), 100);
    for (rec, line) in records.iter().zip(batch.lines()) {
        assert_eq!(rec["text"], line);
    }
    assert_eq!(records[2]["prompt"], prompts[1]);
}

#[test]
fn cli_prompt_dash_reads_stdin_and_reports_tokens_per_second() {
    use std::io::Write as _;
    let f = fixture();
    let args = ["--seed", "4", "--max-length", "20"];
    let direct = common::run_ok(
        generate_bare(&f)
            .args(["--prompt", "今天天气很好"])
            .args(args),
    );
    let mut child = generate_bare(&f)
        .args(["--prompt", "-"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all("今天天气很好\n".as_bytes())
        .unwrap();
    let piped = child.wait_with_output().unwrap();
    assert!(piped.status.success());
    assert_eq!(piped.stdout, direct.stdout);
    let stderr = String::from_utf8(piped.stderr).unwrap();
    assert!(
        stderr.contains("generated 13 tokens for 1 prompt in"),
        "{stderr}"
    );
    assert!(stderr.contains("tokens/s"), "{stderr}");
}

#[test]
fn cli_warns_of_unknown_prompt_text_and_explains_bad_inputs() {
    let f = fixture();
    let out = common::run_ok(generate_cmd(&f, "今天😀天气", 20).args(["--seed", "1"]));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("warning: the prompt: `😀` (characters 2..3) is not in the vocabulary"),
        "{stderr}"
    );
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let gap = dir.path().join("gap.txt");
    std::fs::write(&gap, "今天\n\n天气\n").unwrap();
    let fails = |cmd: &mut Command, message: &str| {
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{cmd:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{cmd:?}: stderr was {stderr}");
    };
    fails(
        generate_bare(&f).arg("--input").arg(&empty),
        "empty.txt has no prompts; put one prompt per line",
    );
    // A blank line is skipped with a note; the prompts around it are generated.
    let out = common::run_ok(generate_bare(&f).arg("--input").arg(&gap).args([
        "--max-length",
        "8",
        "--json",
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gap.txt line(s) 2 are blank; skipped"),
        "{stderr}"
    );
    let prompts: Vec<_> = json_lines(&out)
        .iter()
        .map(|v| v["prompt"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(prompts, ["今天", "天气"], "{stderr}");
    fails(
        generate_cmd(&f, "丹枫江冷人初去", 12).args(["--preset", "couplet"]),
        "the prompt: --max-length 12 leaves room for 3 of the lower line's 7 characters ([CLS] and the prompt take 9); use --max-length 17 or more",
    );
    fails(
        generate_cmd(&f, "丹枫江冷人初去", 30).args(["--preset", "couplet", "--line-length", "5"]),
        "--line-length is for poems",
    );
    fails(
        generate_cmd(&f, "梅山如积翠", 30).args(["--line-length", "4"]),
        "the prompt's last line has 5 characters, more than --line-length 4",
    );
}

/// The constraint as data: a couplet's rules follow the upper line; masks leave only what
/// the rule allows.
#[test]
fn couplet_constraint_rules_follow_the_upper_line() {
    use uerzoo::generate::constraint::{Class, Constraint, Rule};
    let tok = fixture_tokenizer();
    let c = Constraint::match_line(&tok, "春风，马蹄").unwrap();
    let comma = tok.token_to_id("，").unwrap();
    let rules: Vec<Rule> = (0..6).map(|n| c.rule(&vec![0; n])).collect();
    assert_eq!(
        rules,
        [
            Rule::Class(Class::Hanzi),
            Rule::Class(Class::Hanzi),
            Rule::Token(comma),
            Rule::Class(Class::Hanzi),
            Rule::Class(Class::Hanzi),
            Rule::Stop
        ]
    );
    assert_eq!(c.min_new_tokens(), Some(5));
    let mut logits = vec![0.0f32; tok.vocab_size()];
    c.apply(&mut logits, &[1, 2]);
    let alive: Vec<usize> = (0..logits.len())
        .filter(|&i| logits[i].is_finite())
        .collect();
    assert_eq!(alive, [comma as usize]);
    let mut logits = vec![0.0f32; tok.vocab_size()];
    c.apply(&mut logits, &[]);
    for (id, l) in logits.iter().enumerate() {
        let token = tok.id_to_token(id as u32).unwrap();
        let one_hanzi = token.chars().count() == 1 && token.chars().all(uerzoo::tokenizer::is_cjk);
        assert_eq!(l.is_finite(), one_hanzi, "{token}");
    }
    let mut logits = vec![0.0f32; tok.vocab_size()];
    c.apply(&mut logits, &[1, 2, 3, 4, 5]);
    let alive: Vec<usize> = (0..logits.len())
        .filter(|&i| logits[i].is_finite())
        .collect();
    assert_eq!(alive, [tok.sep_id() as usize]);
    assert!(Constraint::match_line(&tok, "  ").is_err());
    // Poems: the prompt's open line counts; a stop may follow 。 only.
    let p = Constraint::lines(&tok, 5, "梅山如").unwrap();
    let hanzi = tok.token_to_id("山").unwrap();
    let full_stop = tok.token_to_id("。").unwrap();
    assert_eq!(p.rule(&[hanzi]), Rule::Class(Class::Hanzi));
    assert_eq!(p.rule(&[hanzi, hanzi]), Rule::Class(Class::LineEnd));
    assert_eq!(p.rule(&[hanzi, hanzi, comma]), Rule::Class(Class::Hanzi));
    assert_eq!(
        p.rule(&[hanzi, hanzi, full_stop]),
        Rule::ClassOrStop(Class::Hanzi)
    );
}

/// The library's batch runner equals one run per job.
#[test]
fn generate_many_equals_single_runs() {
    let tok = fixture_tokenizer();
    let f = fixture();
    let opened =
        uerzoo::model::open::open_model(&f.join("uer_model.bin"), Some(&f.join("uer_config.json")))
            .unwrap();
    let model = fixture_model();
    let couplet = Preset::get("couplet").unwrap();
    let jobs: Vec<generate::Job> = ["白日依山尽", "春风得意，马蹄疾", "今天天气很好"]
        .iter()
        .enumerate()
        .map(|(i, text)| generate::Job {
            prompt: generate::prompt_ids(&tok, &couplet.format_prompt(text)),
            opts: GenerateOptions {
                max_length: 30,
                seed: 5,
                num_return: 2,
                stop_id: Some(tok.sep_id()),
                ..GenerateOptions::default()
            },
            constraint: (i < 2).then(|| generate::Constraint::match_line(&tok, text).unwrap()),
        })
        .collect();
    let mut seen = 0;
    let many = generate::generate_many(
        &opened,
        &jobs,
        uerzoo::model::DeviceSpec::Cpu,
        &mut |_, _, _| seen += 1,
    )
    .unwrap();
    assert_eq!(seen, many.new_tokens());
    for (job, got) in jobs.iter().zip(&many.sequences) {
        let alone = generate::generate_constrained(
            &model,
            &job.prompt,
            &job.opts,
            job.constraint.as_ref(),
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(*got, alone);
        let scores = |g: &[generate::Generated]| g.iter().map(|g| g.score).collect::<Vec<_>>();
        assert_eq!(scores(got), scores(&alone), "same path, same score");
    }
}

/// `--output` is checked before the model loads: an existing file is kept without
/// `--force` (and replaced with it), the prompts file is never overwritten, and a missing
/// model is not what the person hears about first.
#[test]
fn cli_output_is_checked_before_loading() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.txt");
    std::fs::write(&out, "keep me").unwrap();
    let run = |cmd: &mut Command| cmd.output().unwrap();
    let o = run(generate_bare(&f)
        .args(["--prompt", "白日依山尽", "--max-length", "12", "--greedy"])
        .arg("--output")
        .arg(&out));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("out.txt") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep me");
    // Checked before the weights are opened: a model path that does not exist is not reached.
    let o = run(Command::new(common::uerzoo_bin())
        .arg("generate")
        .arg(dir.path().join("no_such_model.bin"))
        .args(["--prompt", "白日依山尽"])
        .arg("--output")
        .arg(&out));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--force"), "{err}");
    let input = dir.path().join("prompts.txt");
    std::fs::write(&input, "白日依山尽\n").unwrap();
    let o = run(generate_bare(&f)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&input)
        .arg("--force"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("destroy the input"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&input).unwrap(), "白日依山尽\n");
    common::run_ok(
        generate_bare(&f)
            .args(["--prompt", "白日依山尽", "--max-length", "12", "--greedy"])
            .arg("--output")
            .arg(&out)
            .arg("--force"),
    );
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(
        written.starts_with("白日依山尽\n[CLS]白日依山尽"),
        "{written}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "temporaries left: {leftovers:?}");
}

/// `n` prompts of 1 to 20 characters cut from the fixture vocabulary's Chinese characters
/// (different texts and lengths, deterministic).
fn batch_prompts(tok: &Tokenizer, n: usize) -> Vec<String> {
    let hanzi: Vec<char> = (0..tok.vocab_size() as u32)
        .filter_map(|id| tok.id_to_token(id))
        .filter_map(|t| {
            let mut c = t.chars();
            let first = c.next()?;
            (c.next().is_none() && ('\u{4e00}'..='\u{9fff}').contains(&first)).then_some(first)
        })
        .collect();
    assert!(hanzi.len() > 500, "{} Chinese characters", hanzi.len());
    (0..n)
        .map(|i| {
            let len = 1 + (i * 13) % 20;
            let start = (i * 97) % (hanzi.len() - len);
            hanzi[start..start + len].iter().collect()
        })
        .collect()
}

/// Runs `jobs` batched (`batch_size`) and each alone; every sequence must be the same
/// tokens with the same stop, and its score the same to float rounding.
fn assert_batched_equals_alone(model: &Model<Cpu>, jobs: &[generate::Job], batch_size: usize) {
    let mut seen = vec![0usize; jobs.len()];
    let batched =
        generate::generate_batched(model, jobs, batch_size, &mut |j, _, _| seen[j] += 1).unwrap();
    assert_eq!(batched.len(), jobs.len());
    for (j, (job, got)) in jobs.iter().zip(&batched).enumerate() {
        let alone = generate::generate_constrained(
            model,
            &job.prompt,
            &job.opts,
            job.constraint.as_ref(),
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(*got, alone, "job {j}: batched ≠ alone");
        assert_eq!(
            seen[j],
            got.iter().map(|g| g.continuation().len()).sum::<usize>(),
            "job {j}: on_token saw every new id"
        );
        for (g, a) in got.iter().zip(&alone) {
            assert!(
                (g.score - a.score).abs() <= 1e-3 * a.score.abs().max(1.0),
                "job {j}: score {} vs {}",
                g.score,
                a.score
            );
        }
    }
}

/// Decoding rows of different lengths in one cache gives each row the logits of its own
/// cache, before and after a row leaves and another joins.
#[test]
fn batched_decode_step_matches_each_sequence_alone() {
    let model = fixture_model();
    let tok = fixture_tokenizer();
    let texts = ["今天", "白日依山尽，黄河", "春风得意马蹄疾，一日看尽长安花"];
    let prompts: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| generate::prompt_ids(&tok, t))
        .collect();
    let next = [11u32, 200, 1500];
    let mut alone: Vec<KvCache<Cpu>> = Vec::new();
    let mut batch = KvCache::new(&model);
    for p in &prompts {
        let mut c = KvCache::new(&model);
        model.decode_step(ids_tensor(p), &mut c).unwrap();
        batch.join(c.clone());
        alone.push(c);
    }
    assert_eq!(batch.rows(), 3);
    assert_eq!(
        batch.positions(),
        prompts.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let step = |batch: &mut KvCache<Cpu>, alone: &mut [KvCache<Cpu>], tokens: &[u32]| {
        let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        let got = to_vec(
            model
                .decode_step(
                    Tensor::from_data(TensorData::new(ids, [tokens.len(), 1]), &Default::default()),
                    batch,
                )
                .unwrap(),
        );
        let v = got.len() / tokens.len();
        for (r, (c, &t)) in alone.iter_mut().zip(tokens).enumerate() {
            let want = to_vec(model.decode_step(ids_tensor(&[t]), c).unwrap());
            let diff = got[r * v..(r + 1) * v]
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(diff < TOL, "row {r}: logits differ by {diff}");
        }
    };
    step(&mut batch, &mut alone, &next);
    step(&mut batch, &mut alone, &[7, 8, 9]);
    // The longest row leaves; the columns only it used go.
    batch.retain(&[true, true, false]);
    alone.truncate(2);
    assert_eq!(
        batch.positions(),
        vec![prompts[0].len() + 2, prompts[1].len() + 2]
    );
    assert_eq!(batch.len(), prompts[1].len() + 2);
    // A new prompt joins.
    let p = generate::prompt_ids(&tok, "一");
    let mut c = KvCache::new(&model);
    model.decode_step(ids_tensor(&p), &mut c).unwrap();
    batch.join(c.clone());
    alone.push(c);
    step(&mut batch, &mut alone, &[30, 40, 50]);
}

/// 50 prompts of different lengths through the batched path equal 50 single runs token
/// for token: greedy, and sampled with a seed per prompt (two sequences for some, which
/// share their job's RNG as they do alone), with stop ids and new-token limits.
#[test]
fn batched_generation_equals_single_runs() {
    let model = fixture_model();
    let tok = fixture_tokenizer();
    let prompts = batch_prompts(&tok, 50);
    for greedy_run in [true, false] {
        let jobs: Vec<generate::Job> = prompts
            .iter()
            .enumerate()
            .map(|(i, text)| generate::Job {
                prompt: generate::prompt_ids(&tok, text),
                opts: GenerateOptions {
                    max_length: 24 + (i * 7) % 17,
                    max_new_tokens: (i % 5 == 0).then_some(3 + i % 4),
                    sampling: if greedy_run {
                        Sampling::greedy()
                    } else {
                        Sampling {
                            top_p: if i % 2 == 0 { 0.9 } else { 0.0 },
                            temperature: 0.8 + (i % 3) as f64 * 0.2,
                            ..Sampling::default()
                        }
                    },
                    seed: 1000 + i as u64,
                    num_return: if i % 7 == 0 { 2 } else { 1 },
                    stop_id: (i % 3 == 0).then(|| tok.sep_id()),
                    ..GenerateOptions::default()
                },
                constraint: None,
            })
            .collect();
        assert_batched_equals_alone(&model, &jobs, 8);
        if greedy_run {
            // Batch sizes that do not divide the jobs; a batch as large as all of them.
            assert_batched_equals_alone(&model, &jobs[..13], 3);
            assert_batched_equals_alone(&model, &jobs[..13], 64);
        }
    }
}

/// On the CPU the linear layers of a step of up to 16 rows run uerzoo-kernels' few-rows
/// kernel (each row's values as alone), more rows the general GEMM: 16 and 21 sequences
/// per step, greedy, equal their single runs, and the default batch size stays within the
/// kernel's rows.
#[test]
fn batched_generation_at_and_past_the_kernels_row_limit_equals_single_runs() {
    let model = fixture_model();
    let tok = fixture_tokenizer();
    let jobs: Vec<generate::Job> = batch_prompts(&tok, 21)
        .iter()
        .enumerate()
        .map(|(i, text)| generate::Job {
            prompt: generate::prompt_ids(&tok, text),
            opts: GenerateOptions {
                max_length: 20 + (i * 5) % 11,
                sampling: Sampling::greedy(),
                ..GenerateOptions::default()
            },
            constraint: None,
        })
        .collect();
    assert_batched_equals_alone(&model, &jobs, 16);
    assert_batched_equals_alone(&model, &jobs, 21);
    let cpu = generate::batch::default_batch_size(uerzoo::model::backend::DeviceSpec::Cpu);
    assert!((2..=16).contains(&cpu), "CPU default batch size {cpu}");
}

/// Couplets (the couplet preset with its constraint, several candidates) batched equal
/// their single runs.
#[test]
fn batched_couplets_equal_single_runs() {
    let model = fixture_model();
    let tok = fixture_tokenizer();
    let couplet = Preset::get("couplet").unwrap();
    let uppers = [
        "白日依山尽",
        "春风得意，马蹄疾",
        "海阔天空",
        "一",
        "山高月小，水落石出",
    ];
    let jobs: Vec<generate::Job> = uppers
        .iter()
        .enumerate()
        .map(|(i, text)| generate::Job {
            prompt: generate::prompt_ids(&tok, &couplet.format_prompt(text)),
            opts: GenerateOptions {
                max_length: 32,
                seed: 7 + i as u64,
                num_return: 3,
                stop_id: Some(tok.sep_id()),
                ..GenerateOptions::default()
            },
            constraint: Some(generate::Constraint::match_line(&tok, text).unwrap()),
        })
        .collect();
    assert_batched_equals_alone(&model, &jobs, 4);
}

/// UER-py 2019's GPT (BERT's post-LN layers and embedding LayerNorm, the raw preset)
/// batched equals its single runs.
#[test]
fn batched_generation_of_the_2019_gpt_equals_single_runs() {
    let dir = common::shared()
        .join("fixtures")
        .join("uer_2019")
        .join("gpt_lm");
    let opened = uerzoo::model::open::open_model(
        &dir.join("uer_model.bin"),
        Some(&dir.join("uer_config.json")),
    )
    .unwrap();
    let model = load_model::<Cpu>(&opened.checkpoint, &opened.config, &Default::default())
        .unwrap()
        .0;
    let tok = Tokenizer::from_vocab_file(dir.join("vocab.txt"), TokenizerOptions::uer()).unwrap();
    let raw = Preset::get("raw").unwrap();
    let jobs: Vec<generate::Job> = batch_prompts(&tok, 20)
        .iter()
        .enumerate()
        .map(|(i, text)| generate::Job {
            prompt: raw.prompt_ids(&tok, text),
            opts: GenerateOptions {
                max_length: 40,
                sampling: if i % 2 == 0 {
                    Sampling::greedy()
                } else {
                    Sampling::default()
                },
                seed: i as u64,
                ..GenerateOptions::default()
            },
            constraint: None,
        })
        .collect();
    assert_batched_equals_alone(&model, &jobs, 6);
}

/// `generate --input` with `--batch-size 8` writes what `--batch-size 1` (one prompt after
/// the other) writes, sampled with a fixed seed; `--batch-size 0` is refused.
#[test]
fn cli_input_batched_equals_one_by_one() {
    let f = fixture();
    let tok = fixture_tokenizer();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("prompts.txt");
    std::fs::write(&input, batch_prompts(&tok, 50).join("\n") + "\n").unwrap();
    let run = |batch: &str| {
        let out = dir.path().join(format!("out_{batch}.jsonl"));
        common::run_ok(
            generate_bare(&f)
                .arg("--input")
                .arg(&input)
                .args(["--max-length", "32", "--seed", "3", "--json"])
                .args(["--batch-size", batch])
                .arg("--output")
                .arg(&out),
        );
        std::fs::read_to_string(&out).unwrap()
    };
    let one = run("1");
    let batched = run("8");
    assert_eq!(one.lines().count(), 50);
    let strip = |s: &str| -> Vec<(serde_json::Value, serde_json::Value, serde_json::Value)> {
        s.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["prompt"].clone(), v["ids"].clone(), v["stop"].clone())
            })
            .collect()
    };
    assert_eq!(strip(&batched), strip(&one));
    let o = generate_bare(&f)
        .arg("--input")
        .arg(&input)
        .args(["--batch-size", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--batch-size 0"),
        "{err}"
    );
}

/// Prompts of up to `PACKED_ROWS` tokens prefilled together in one forward
/// (`Model::prefill_packed`, more rows than the few-rows kernel takes, linear layers in
/// chunks of its rows) get each prompt's bits alone: its last position's logits, and the
/// cache it leaves (the next step's logits on it). On the fixture and on a random GPT-2
/// whose widths are not multiples of a SIMD vector; more prompts than one LM-head chunk.
#[test]
fn packed_prefill_gives_each_prompt_its_bits_alone() {
    use uerzoo::model::kv_cache::PACKED_ROWS;
    let mut cfg = ModelConfig::from_uer_json(&serde_json::json!({
        "emb_size": 36, "hidden_size": 36, "feedforward_size": 100, "heads_num": 3, "layers_num": 2,
        "hidden_act": "gelu_fast", "embedding": "word_pos", "remove_embedding_layernorm": true,
        "mask": "causal", "layernorm_positioning": "pre"
    }))
    .unwrap();
    cfg.vocab_size = 301;
    cfg.max_seq_length = 40;
    let random = load_model::<Cpu>(&random_checkpoint(&cfg, 5), &cfg, &Default::default())
        .unwrap()
        .0;
    for (name, model) in [("fixture", fixture_model()), ("random", random)] {
        assert!(model.packs_prefill(), "{name}");
        let vocab = model.config.vocab_size as u32;
        let prompts: Vec<Vec<u32>> = (0..19usize)
            .map(|i| {
                let len = 1 + (i * 7) % PACKED_ROWS;
                (0..len)
                    .map(|j| ((i * 31 + j * 17) as u32) % (vocab - 1) + 1)
                    .collect()
            })
            .collect();
        assert!(prompts.iter().map(Vec::len).sum::<usize>() > 8 * PACKED_ROWS);
        let refs: Vec<&[u32]> = prompts.iter().map(|p| &p[..]).collect();
        let (mut caches, logits) = model.prefill_packed(&refs).unwrap();
        let v = logits.dims()[1];
        assert_eq!(logits.dims()[0], prompts.len());
        let logits = logits.into_data().to_vec::<f32>().unwrap();
        for (i, (p, packed)) in prompts.iter().zip(&mut caches).enumerate() {
            let mut own = KvCache::new(&model);
            let alone = to_vec(model.decode_step(ids_tensor(p), &mut own).unwrap());
            let last = &alone[(p.len() - 1) * v..];
            // Values whose bits differ (0 for the same bits).
            let differ = |a: &[f32], b: &[f32]| {
                assert_eq!(a.len(), b.len());
                a.iter()
                    .zip(b)
                    .filter(|(x, y)| x.to_bits() != y.to_bits())
                    .count()
            };
            assert_eq!(
                differ(&logits[i * v..(i + 1) * v], last),
                0,
                "{name} prompt {i}: logits"
            );
            assert_eq!(packed.positions(), own.positions(), "{name} prompt {i}");
            let next = ids_tensor(&[(i as u32 * 3) % (vocab - 1) + 1]);
            let a = to_vec(model.decode_step(next.clone(), packed).unwrap());
            let b = to_vec(model.decode_step(next, &mut own).unwrap());
            assert_eq!(differ(&a, &b), 0, "{name} prompt {i}: its cache");
        }
    }
    // Bad input is an error.
    let model = fixture_model();
    assert!(model.prefill_packed(&[]).is_err());
    assert!(model.prefill_packed(&[&[1, 2], &[]]).is_err());
    assert!(model.prefill_packed(&[&[u32::MAX]]).is_err());
}

/// The continuous batch's first step prefills its waiting prompts of up to `PACKED_ROWS`
/// tokens in one forward and a longer one alone (`StepReport` counts them); every sequence
/// equals its run alone, token for token.
#[test]
fn decoder_packs_waiting_prompts_into_one_prefill() {
    use std::ops::ControlFlow;
    use uerzoo::model::kv_cache::PACKED_ROWS;
    let model = fixture_model();
    let tok = fixture_tokenizer();
    let mut texts: Vec<String> = batch_prompts(&tok, 8)
        .into_iter()
        .map(|t| t.chars().take(PACKED_ROWS - 1).collect())
        .collect();
    texts.push("春风得意马蹄疾，一日看尽长安花。白日依山尽".into());
    let jobs: Vec<generate::Job> = texts
        .iter()
        .map(|t| generate::Job {
            prompt: generate::prompt_ids(&tok, t),
            opts: greedy(40),
            constraint: None,
        })
        .collect();
    assert!(jobs[8].prompt.len() > PACKED_ROWS);
    let mut decoder = generate::batch::Decoder::new(&model, 16);
    for job in &jobs {
        decoder.add(job.clone()).unwrap();
    }
    let mut ids: Vec<Vec<u32>> = vec![Vec::new(); jobs.len()];
    let mut out = vec![Vec::new(); jobs.len()];
    let mut first = true;
    while !decoder.is_idle() {
        let report = decoder
            .step(&mut |k, _, id| {
                ids[k].push(id);
                ControlFlow::Continue(())
            })
            .unwrap();
        if first {
            // The 8 short prompts together, the long one alone.
            assert_eq!((report.prefills, report.prefilled), (2, 9));
            first = false;
        } else {
            assert_eq!((report.prefills, report.prefilled), (0, 0));
        }
        for (k, done) in report.done {
            out[k] = done.unwrap();
        }
    }
    for (k, job) in jobs.iter().enumerate() {
        let alone =
            generate::generate_constrained(&model, &job.prompt, &job.opts, None, &mut |_, _| {})
                .unwrap();
        assert_eq!(out[k], alone, "job {k}");
        assert_eq!(ids[k], alone[0].continuation(), "job {k}: streamed ids");
    }
}
