//! `uerzoo fill-mask`: predict the tokens behind `[MASK]` in a text.

use std::path::PathBuf;
use std::process::ExitCode;
use uerzoo::model::{self, DeviceSpec};
use uerzoo::tokenizer::MASK_TOKEN;

/// Predict the tokens behind `[MASK]` in a text (the MLM head, as the model cards show it).
///
/// The text is tokenized with `[MASK]` and the other special tokens kept whole, wrapped in
/// `[CLS] … [SEP]` (segment 1) and each mask's top-k tokens are printed with their
/// probabilities. Text outside the vocabulary (it becomes `[UNK]`) is warned of on stderr.
///
/// Example: uerzoo fill-mask ./chinese_roberta_L-2_H-128 "北京是[MASK]国的首都。" --top-k 5
#[derive(clap::Args)]
pub struct Args {
    /// A UER `.bin` file or a Huggingface model directory.
    model: PathBuf,
    /// Text with one or more `[MASK]`.
    text: String,
    /// Candidates per mask (at least 1).
    #[arg(long, default_value_t = 5, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    top_k: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// UER-py config JSON of the weights (default: beside them).
    #[arg(long)]
    config: Option<PathBuf>,
    /// `vocab.txt` or sentencepiece `.model` (default: `vocab.txt`/`spiece.model` beside the weights).
    #[arg(long)]
    vocab: Option<PathBuf>,
    /// Precision of the encoder's linear layers: f32|int8|bf16. int8: weights quantized once
    /// at load, per output channel, activations per row on the fly; bf16: weights rounded to
    /// bf16 once at load, activations per call, f32 sums (AVX-512 BF16 where the CPU has it).
    /// Both `--device cpu` only. Embeddings, LayerNorm, softmax and the heads stay f32.
    #[arg(long, default_value = "f32")]
    dtype: uerzoo::model::Dtype,
    /// `cpu`, `cuda[:N]` (a build with `--features cuda`), `wgpu[:N]` (`--features wgpu`;
    /// N counts the adapters wgpu lists) or `auto`: the first CUDA device, else the first
    /// wgpu GPU (never a software one), else the CPU; it notes which.
    #[arg(long, default_value = "cpu", value_parser = super::device_arg)]
    device: DeviceSpec,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut opened = uerzoo::resolve::open_model(&args.model, args.config.as_deref())?;
    opened.config.dtype = args.dtype;
    let (tok, vocab) = uerzoo::resolve::open_tokenizer_with_origin(&opened, args.vocab.as_deref())?;
    if matches!(vocab, uerzoo::resolve::VocabOrigin::BuiltIn { .. }) {
        eprintln!("note: tokenizing with {vocab}");
    }
    for u in tok.unknowns(&args.text, &tok.tokenize_with_specials_offsets(&args.text)) {
        eprintln!(
            "warning: `{}` (characters {}..{}) is not in the vocabulary; the model sees [UNK]",
            u.text, u.start, u.end
        );
    }
    let mut ids = vec![i64::from(tok.cls_id())];
    ids.extend(
        tok.encode_with_specials(&args.text)
            .into_iter()
            .map(i64::from),
    );
    ids.push(i64::from(tok.sep_id()));
    let positions: Vec<usize> = (0..ids.len())
        .filter(|&i| ids[i] == i64::from(tok.mask_id()))
        .collect();
    anyhow::ensure!(!positions.is_empty(), "the text has no {MASK_TOKEN}");
    let results = model::tasks::fill_mask(&opened, &ids, &positions, args.top_k, args.device)?;
    let token = |id: u32| tok.id_to_token(id).unwrap_or("[UNK]").to_string();
    if args.json {
        let json: Vec<Vec<serde_json::Value>> = results
            .iter()
            .map(|c| {
                c.iter()
                    .map(
                        |c| serde_json::json!({"token": token(c.id), "id": c.id, "score": c.score}),
                    )
                    .collect()
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        for (n, cands) in results.iter().enumerate() {
            println!("[MASK] #{} (position {}):", n + 1, positions[n]);
            for (rank, c) in cands.iter().enumerate() {
                let filled =
                    args.text
                        .replacen(MASK_TOKEN, token(c.id).trim_start_matches("##"), 1);
                println!(
                    "  {:>2}. {:<8} {:.4}  {filled}",
                    rank + 1,
                    token(c.id),
                    c.score
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
