//! What the model benchmarks share: their environment knobs, the median they report and the
//! two model shapes they build (a BERT/RoBERTa encoder and a GPT-2), random weights on top.
//! Each bench is its own crate and uses part of this.
#![allow(dead_code)]

use uerzoo::model::ModelConfig;

/// The allocator the `uerzoo` binary runs on (each bench's `main` also calls
/// `uerzoo::alloc::configure`), so the benches time what users run.
#[global_allocator]
static ALLOCATOR: uerzoo::alloc::Allocator = uerzoo::alloc::Allocator;

/// The Chinese vocabulary size of the zoo's char models (google_zh_vocab).
pub const VOCAB: usize = 21128;

/// The environment variable `name` as a number, when it is set and one.
pub fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The device `UERZOO_BENCH_DEVICE` names (`cpu`, `cuda`, `cuda:N`; default `cpu`).
///
/// # Panics
/// On a value that is not a device (the message says which).
pub fn bench_device() -> uerzoo::model::backend::DeviceSpec {
    let name = std::env::var("UERZOO_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
    name.parse()
        .unwrap_or_else(|e| panic!("UERZOO_BENCH_DEVICE={name}: {e}"))
}

/// The median of `v` (the mean of the middle two for an even count).
///
/// # Panics
/// On an empty `v` (a bench that timed nothing).
pub fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty(), "median of no runs");
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A RoBERTa/BERT encoder as the zoo publishes it (word+position+segment embedding with
/// LayerNorm, post-LN layers, GELU erf, bidirectional), 512 positions, dropout 0.1.
pub fn bert(layers: usize, hidden: usize, heads: usize, ff: usize) -> ModelConfig {
    zoo_config(
        serde_json::json!({
            "emb_size": hidden, "hidden_size": hidden, "feedforward_size": ff,
            "heads_num": heads, "layers_num": layers, "hidden_act": "gelu",
            "embedding": "word_pos_seg", "mask": "fully_visible", "dropout": 0.1
        }),
        512,
    )
}

/// A GPT-2 as the zoo publishes it (word+position embedding without LayerNorm, pre-LN
/// layers, GELU tanh, causal), `positions` positions, dropout 0.1.
pub fn gpt2(
    layers: usize,
    hidden: usize,
    heads: usize,
    ff: usize,
    positions: usize,
) -> ModelConfig {
    zoo_config(
        serde_json::json!({
            "emb_size": hidden, "hidden_size": hidden, "feedforward_size": ff,
            "heads_num": heads, "layers_num": layers, "hidden_act": "gelu_fast",
            "embedding": "word_pos", "remove_embedding_layernorm": true, "mask": "causal",
            "layernorm_positioning": "pre", "dropout": 0.1
        }),
        positions,
    )
}

fn zoo_config(json: serde_json::Value, positions: usize) -> ModelConfig {
    let mut cfg = ModelConfig::from_uer_json(&json).expect("a valid UER config");
    cfg.vocab_size = VOCAB;
    cfg.max_seq_length = positions;
    cfg
}
