//! `uerzoo generate`: continue a prompt with a GPT-2 of the zoo (poems, couplets, lyrics,
//! classical Chinese), as UER-py's generate_lm does, with a KV cache.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use uerzoo::generate::{Event, GenerateJob};
use uerzoo::model::DeviceSpec;

/// Generate text with a GPT-2 (UER-py's generate_lm: `[CLS]` + prompt, top-k/top-p sampling).
///
/// MODEL is a UER `.bin` (config from `--config` or beside it), a Huggingface directory, or
/// a registry name (downloaded with `uerzoo download NAME`); a registry name also brings the
/// card's prompt format (`--preset`), length and sampling defaults. `--max-length` counts
/// every token, `[CLS]` and the prompt included (UER-py's `--seq_length`).
///
/// Presets: plain (text as is), raw (text as is without `[CLS]` first: UER-py 2019's GPT,
/// the default for its weights), poem (a first line, stops at [SEP]), couplet (the upper
/// line; prints `upper - lower`), lyric, ancient.
///
/// Couplets fit: the lower line is decoded with as many characters as the upper line, its
/// punctuation at the same places and Chinese characters elsewhere (tokens that would break
/// that are masked before sampling), and `--num-return` candidates come best first (the sum
/// of the model's log-probabilities). `--line-length N` does the same for poems: lines of N
/// characters, each ended by ，。！？；.
///
/// `--input prompts.txt` generates for every line (`-`: standard input), each with the same
/// `--seed`, so a line gives what `--prompt LINE` gives; the model is loaded once and up to
/// `--batch-size` prompts share each forward.
/// `--output FILE` writes UER-py generate_lm's `--prediction_path` layout (per prompt: the
/// prompt line, then each generated sequence as its tokens joined, `[CLS]` first), or JSON
/// lines with `--json`. `--prompt -` reads the prompt from standard input. Tokens per second
/// are reported on stderr at the end; a prompt character outside the vocabulary is warned
/// of (the model sees `[UNK]`).
///
/// Example: uerzoo generate gpt2-chinese-couplet --prompt 丹枫江冷人初去 --num-return 3
///
/// Example: uerzoo generate gpt2-chinese-poem --input firsts.txt --line-length 7 --output poems.txt
///
/// Example: uerzoo generate uer_model.bin --config uer_config.json --vocab vocab.txt --prompt 今天天气很好 --greedy --max-length 40
#[derive(clap::Args)]
pub struct Args {
    /// A UER `.bin`/`.safetensors`, a Huggingface directory, or a registry name.
    model: PathBuf,
    /// The text to continue (for couplets the upper line, for poems the first line); `-`
    /// reads it from standard input.
    #[arg(long, required_unless_present = "input", conflicts_with = "input")]
    prompt: Option<String>,
    /// A file of prompts, one a line (`-`: standard input).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Write the generations here (UER-py's `--prediction_path` layout; JSON lines with
    /// `--json`) instead of printing them.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Overwrite `--output` if it exists.
    #[arg(long, requires = "output")]
    force: bool,
    /// One JSON object per generated sequence: prompt, text, continuation, ids, score, stop.
    #[arg(long)]
    json: bool,
    /// Poems: lines of N Chinese characters, each ended by ，。！？； (e.g. 5 or 7).
    #[arg(long, value_name = "N")]
    line_length: Option<usize>,
    /// UER-py config JSON of the weights (default: beside them, or the registry's).
    #[arg(long)]
    config: Option<PathBuf>,
    /// `vocab.txt` (default: beside the weights).
    #[arg(long)]
    vocab: Option<PathBuf>,
    /// Prompt format: plain, poem, couplet, lyric, ancient, raw (default: the registry entry's,
    /// else raw for UER-py 2019's GPT, else plain).
    #[arg(long)]
    preset: Option<String>,
    /// Total tokens including `[CLS]` and the prompt (default: the card's, else 128).
    #[arg(long)]
    max_length: Option<usize>,
    /// At most this many new tokens.
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// Always take the most likely token (= `--top-k 1`).
    #[arg(long, conflicts_with_all = ["top_k", "top_p", "temperature"])]
    greedy: bool,
    /// Sample among the K most likely tokens; 0 is off [UER-py: 70].
    #[arg(long)]
    top_k: Option<usize>,
    /// Nucleus sampling threshold in (0, 1] [UER-py: off].
    #[arg(long)]
    top_p: Option<f64>,
    /// Softmax temperature, > 0 [UER-py: 1.0].
    #[arg(long)]
    temperature: Option<f64>,
    /// Penalise tokens already in the text (1.0 = off; 1.2 is typical).
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f64,
    /// Seed of the sampler; the same seed gives the same text (default: from the clock, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// How many texts to generate.
    #[arg(long, default_value_t = 1)]
    num_return: usize,
    /// `cpu`, `cuda[:N]` (a build with `--features cuda`), `wgpu[:N]` (`--features wgpu`;
    /// N counts the adapters wgpu lists) or `auto`: the first CUDA device, else the first
    /// wgpu GPU (never a software one), else the CPU; it notes which.
    #[arg(long, default_value = "cpu", value_parser = super::device_arg)]
    device: DeviceSpec,
    /// Precision of the linear layers and the LM head: f32|int8|bf16 (`--device cpu` only).
    /// Decoding reads every weight once per token, so fewer bytes per weight decode faster
    /// (int8: weights quantized once at load per output channel, activations per row; bf16:
    /// weights rounded once, f32 sums). Logits, LayerNorm, softmax and the KV cache stay f32;
    /// greedy text may differ from f32's where two tokens are nearly tied (perplexity within
    /// 2 % of f32, docs/performance.md).
    #[arg(long, default_value = "f32")]
    dtype: uerzoo::model::Dtype,
    /// Print tokens as they are generated.
    #[arg(long, conflicts_with_all = ["output", "json"])]
    stream: bool,
    /// Recompute the whole prefix for each token, as UER-py does (slow; for checking the cache).
    #[arg(long)]
    no_cache: bool,
    /// `--input`: decode up to N prompts together, one forward per token for all of them
    /// (each gives what it gives alone); 1 runs them one after the other [default: 16 on the
    /// CPU (3.9× the prompts/s of one by one, docs/performance.md), 8 on a GPU; 1 with
    /// `--stream` or `--no-cache`].
    #[arg(long, value_name = "N", conflicts_with_all = ["stream", "no_cache"])]
    batch_size: Option<usize>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let job = GenerateJob {
        model: args.model,
        prompt: args.prompt,
        input: args.input,
        output: args.output,
        force: args.force,
        json: args.json,
        line_length: args.line_length,
        config: args.config,
        vocab: args.vocab,
        preset: args.preset,
        max_length: args.max_length,
        max_new_tokens: args.max_new_tokens,
        greedy: args.greedy,
        top_k: args.top_k,
        top_p: args.top_p,
        temperature: args.temperature,
        repetition_penalty: args.repetition_penalty,
        seed: args.seed,
        num_return: args.num_return,
        device: args.device,
        dtype: args.dtype,
        stream: args.stream,
        no_cache: args.no_cache,
        batch_size: args.batch_size,
    };
    let report = uerzoo::generate::run_many(job, &mut |event| match event {
        Event::Note(line) => eprintln!("{line}"),
        Event::Text(text) => {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "{text}");
            let _ = out.flush();
        }
    })?;
    match (&report.written, &report.text) {
        (Some(path), _) => eprintln!("wrote {}", path.display()),
        (None, Some(text)) => print!("{text}"),
        (None, None) => println!(),
    }
    eprintln!("{}", report.summary());
    Ok(ExitCode::SUCCESS)
}
