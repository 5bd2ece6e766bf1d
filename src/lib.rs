//! # uerzoo — the UER-py Chinese model zoo without Python
//!
//! The crate is a pipeline of capabilities; data flows one way, top to bottom:
//!
//! | module | owns |
//! |---|---|
//! | [`registry`] | the zoo as data (`registry.toml`): names, aliases, sizes, sources, presets |
//! | [`hub`] | the Huggingface cache layout and the download protocol |
//! | [`checkpoint`] | reading and writing tensor files (torch `.bin`, safetensors); never renames |
//! | [`convert`] | naming tables (UER v1/v2 ⇄ HF), rescaling; never touches disk by itself |
//! | [`tokenizer`] | BERT WordPiece and the word models' sentencepiece |
//! | [`kernels`] | fast CPU kernels (GELU, dropout, masked softmax, LayerNorm, attention) with exact backward passes |
//! | [`model`] | Burn models (BERT/RoBERTa, ALBERT, GPT-2) and their heads |
//! | [`generate`] | GPT-2 text generation (UER-py's generate_lm with a KV cache), presets |
//! | [`train`] | fine-tuning (UER-py's run_classifier, grid, predict), AdamW and schedule |
//! | [`output`] | the one `--force` rule, output checks before work, temporaries that never outlive a run |
//! | [`serve`] | the HTTP server (`uerzoo serve`): OpenAI-compatible API, fill-mask, classify, web page |
//!
//! The library never prints: long work reports through [`progress::Progress`], and the
//! command line (`src/cli/`, one file per subcommand) owns stdout, stderr and exit codes.

pub mod alloc;
pub mod checkpoint;
pub mod convert;
pub mod generate;
pub mod hub;
pub mod jobs;
pub mod kernels;
pub mod model;
pub mod output;
pub mod progress;
pub mod registry;
pub mod resolve;
pub mod serve;
pub mod tokenizer;
pub mod train;
