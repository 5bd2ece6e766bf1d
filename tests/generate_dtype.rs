//! Low-precision generation (`generate --dtype int8|bf16`) against f32 on the `gpt2_v1`
//! fixture (a GPT-2 trained by UER-py): the perplexity of a corpus sample through the decoding
//! path, a batch of prompts decoded together against each alone, and the command line.

mod common;

use std::process::Command;
use uerzoo::generate::perplexity;
use uerzoo::model::{Cpu, Dtype, Model, load_model};
use uerzoo::tokenizer::{Tokenizer, TokenizerOptions};

fn model(dtype: Dtype) -> Model<Cpu> {
    let opened = common::precision::opened("gpt2_v1", dtype);
    load_model::<Cpu>(&opened.checkpoint, &opened.config, &Default::default())
        .unwrap()
        .0
}

/// The first `n` lines of the CLUECorpusSmall sample as the fixture's tokenizer reads them,
/// each `[CLS]` + its tokens, cut to `len` tokens.
fn corpus(n: usize, len: usize) -> Vec<Vec<u32>> {
    let tok = Tokenizer::from_vocab_file(
        common::uer_fixture("gpt2_v1").join("vocab.txt"),
        TokenizerOptions::uer(),
    )
    .unwrap();
    let text = std::fs::read_to_string(
        common::shared()
            .join("data")
            .join("corpora")
            .join("CLUECorpusSmall_sampled.txt"),
    )
    .unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .map(|line| {
            let mut ids = vec![tok.cls_id()];
            ids.extend(tok.encode(line));
            ids.truncate(len);
            ids
        })
        .collect()
}

/// The acceptance bound of the low-precision work: int8 and bf16 perplexity within 2 % of
/// f32's, each token scored through the same decode step generation runs (weights of the
/// layers and the LM head in int8 or bf16, logits f32).
#[test]
fn int8_and_bf16_perplexity_within_two_percent_of_f32() {
    let seqs = corpus(24, 96);
    let full = perplexity(&model(Dtype::F32), &seqs).unwrap();
    assert!(full.tokens > 1500, "{} tokens scored", full.tokens);
    // The fixture is a trained model: far better than a uniform guess over its vocabulary.
    assert!(
        full.perplexity < 3006.0 / 4.0,
        "f32 perplexity {}",
        full.perplexity
    );
    for dtype in [Dtype::Int8, Dtype::Bf16] {
        let low = perplexity(&model(dtype), &seqs).unwrap();
        assert_eq!(low.tokens, full.tokens);
        let rel = (low.perplexity / full.perplexity - 1.0).abs();
        eprintln!(
            "perplexity over {} tokens: f32 {:.4}, {dtype} {:.4} ({:+.3} %)",
            full.tokens,
            full.perplexity,
            low.perplexity,
            100.0 * (low.perplexity / full.perplexity - 1.0)
        );
        assert!(rel <= 0.02, "{dtype}: perplexity {rel:.4} away from f32's");
    }
}

/// Each row of a low-precision decode is computed alone (activations quantized or rounded
/// per row, the same kernel sums whatever the row count): prompts decoded together in
/// batches give what each gives alone, token for token, as in f32.
#[test]
fn low_precision_prompts_in_batches_equal_each_alone() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts.txt");
    let lines = [
        "今天天气很好",
        "我们去公园",
        "北京是中国的首都",
        "他说",
        "这本书",
        "春天来了，花开了",
        "一",
        "学校里有很多学生",
        "明天",
        "人民",
    ];
    std::fs::write(&prompts, lines.join("\n")).unwrap();
    let f = common::uer_fixture("gpt2_v1");
    for dtype in ["int8", "bf16"] {
        let run = |batch: &str| {
            let out = common::run_ok(
                Command::new(common::uerzoo_bin())
                    .arg("generate")
                    .arg(f.join("uer_model.bin"))
                    .arg("--config")
                    .arg(f.join("uer_config.json"))
                    .arg("--vocab")
                    .arg(f.join("vocab.txt"))
                    .arg("--input")
                    .arg(&prompts)
                    .args(["--greedy", "--max-length", "40", "--dtype", dtype])
                    .args(["--batch-size", batch]),
            );
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(
                err.contains(&format!("note: {dtype} linear layers and LM head (")),
                "{err}"
            );
            String::from_utf8(out.stdout).unwrap()
        };
        let alone = run("1");
        assert_eq!(alone.lines().count(), lines.len(), "{alone}");
        assert_eq!(run("8"), alone, "{dtype}: batches of 8 against one by one");
    }
}

/// Prompts prefilled together in one forward (`Model::prefill_packed`, what `serve` does
/// with a burst of short prompts) get the bits of their prefill alone in int8 and bf16 too:
/// the LM logits of each last position and the next step on each cache.
#[test]
fn low_precision_packed_prefill_gives_each_prompt_its_bits_alone() {
    use burn::tensor::{Int, Tensor, TensorData};
    use uerzoo::model::kv_cache::{KvCache, PACKED_ROWS};
    let ids = |p: &[u32]| {
        let v: Vec<i64> = p.iter().map(|&i| i64::from(i)).collect();
        Tensor::<Cpu, 2, Int>::from_data(TensorData::new(v, [1, p.len()]), &Default::default())
    };
    let values = |t: Tensor<Cpu, 3>| t.into_data().to_vec::<f32>().unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for dtype in [Dtype::Int8, Dtype::Bf16] {
        let m = model(dtype);
        assert!(m.packs_prefill(), "{dtype}");
        let vocab = m.config.vocab_size as u32;
        let prompts: Vec<Vec<u32>> = (0..9usize)
            .map(|i| {
                (0..1 + (i * 5) % PACKED_ROWS)
                    .map(|j| ((i * 31 + j * 17) as u32) % (vocab - 1) + 1)
                    .collect()
            })
            .collect();
        let refs: Vec<&[u32]> = prompts.iter().map(|p| &p[..]).collect();
        let (mut caches, logits) = m.prefill_packed(&refs).unwrap();
        let v = logits.dims()[1];
        let logits = logits.into_data().to_vec::<f32>().unwrap();
        for (i, (p, packed)) in prompts.iter().zip(&mut caches).enumerate() {
            let mut own = KvCache::new(&m);
            let alone = values(m.decode_step(ids(p), &mut own).unwrap());
            assert_eq!(
                bits(&logits[i * v..(i + 1) * v]),
                bits(&alone[(p.len() - 1) * v..]),
                "{dtype} prompt {i}: logits"
            );
            let next = ids(&[(i as u32 * 3) % (vocab - 1) + 1]);
            let a = values(m.decode_step(next.clone(), packed).unwrap());
            let b = values(m.decode_step(next, &mut own).unwrap());
            assert_eq!(bits(&a), bits(&b), "{dtype} prompt {i}: its cache");
        }
    }
}
