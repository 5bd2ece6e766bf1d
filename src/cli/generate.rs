//! `uerzoo generate`: continue a prompt with a GPT-2 of the zoo (poems, couplets, lyrics,
//! classical Chinese), as UER-py's generate_lm does, with a KV cache.

use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use uerzoo::generate::{self, GenerateOptions, Preset, Sampling, TextStream};
use uerzoo::model::{self, DeviceSpec};
use uerzoo::registry::Registry;

/// Generate text with a GPT-2 (UER-py's generate_lm: `[CLS]` + prompt, top-k/top-p sampling).
///
/// MODEL is a UER `.bin` (config from `--config` or beside it), a Huggingface directory, or
/// a registry name (downloaded with `uerzoo download NAME`); a registry name also brings the
/// card's prompt format (`--preset`), length and sampling defaults. `--max-length` counts
/// every token, `[CLS]` and the prompt included (UER-py's `--seq_length`).
///
/// Presets: plain (text as is), poem (a first line, stops at [SEP]), couplet (the upper
/// line; prints `upper - lower` with a lower line of the same length), lyric, ancient.
///
/// Example: uerzoo generate gpt2-chinese-couplet --prompt 丹枫江冷人初去 --num-return 3
///
/// Example: uerzoo generate uer_model.bin --config uer_config.json --vocab vocab.txt --prompt 今天天气很好 --greedy --max-length 40
#[derive(clap::Args)]
pub struct Args {
    /// A UER `.bin`/`.safetensors`, a Huggingface directory, or a registry name.
    model: PathBuf,
    /// The text to continue (for couplets the upper line, for poems the first line).
    #[arg(long)]
    prompt: String,
    /// UER-py config JSON of the weights (default: beside them, or the registry's).
    #[arg(long)]
    config: Option<PathBuf>,
    /// `vocab.txt` (default: beside the weights).
    #[arg(long)]
    vocab: Option<PathBuf>,
    /// Prompt format: plain, poem, couplet, lyric, ancient (default: the registry entry's, else plain).
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
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Print tokens as they are generated.
    #[arg(long)]
    stream: bool,
    /// Recompute the whole prefix for each token, as UER-py does (slow; for checking the cache).
    #[arg(long)]
    no_cache: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let entry = (!args.model.exists())
        .then(|| {
            args.model
                .to_str()
                .and_then(|n| Registry::builtin().get(n).ok())
        })
        .flatten();
    let card = entry.and_then(|e| e.generation.as_ref());
    let preset = match (&args.preset, entry) {
        (Some(name), _) => Preset::get(name)?,
        (None, Some(e)) => Preset::for_entry(&e.name),
        (None, None) => Preset::get("plain")?,
    };
    let card_sampling = card.map_or(Sampling::default(), |c| Sampling {
        top_k: c.top_k,
        top_p: c.top_p,
        temperature: c.temperature,
        ..Sampling::default()
    });
    let sampling = if args.greedy {
        Sampling {
            repetition_penalty: args.repetition_penalty,
            ..Sampling::greedy()
        }
    } else {
        Sampling {
            top_k: args.top_k.unwrap_or(card_sampling.top_k),
            top_p: args.top_p.unwrap_or(card_sampling.top_p),
            temperature: args.temperature.unwrap_or(card_sampling.temperature),
            repetition_penalty: args.repetition_penalty,
        }
    };
    sampling.validate()?;
    if args.top_p == Some(0.0) {
        anyhow::bail!(
            "--top-p 0: expected a probability in (0, 1], e.g. 0.9 (leave it out to turn nucleus sampling off)"
        );
    }
    let opened = model::open::open_model(&args.model, args.config.as_deref())?;
    let tok = super::fill_mask::load_tokenizer(args.vocab.clone(), &opened)?;
    let positions =
        generate::positions(&opened).context("the weights have no position embedding")?;
    let prompt = generate::prompt_ids(&tok, &preset.format_prompt(&args.prompt));
    let max_new_tokens = [
        args.max_new_tokens,
        preset.new_token_limit(&tok, &args.prompt),
    ]
    .into_iter()
    .flatten()
    .min();
    let seed = args.seed.unwrap_or_else(clock_seed);
    let opts = GenerateOptions {
        max_length: args
            .max_length
            .unwrap_or_else(|| card.map_or(128, |c| c.max_length).min(positions)),
        max_new_tokens,
        sampling,
        seed,
        num_return: args.num_return,
        stop_id: preset.stop_at_sep.then(|| tok.sep_id()),
        use_cache: !args.no_cache,
    };
    opts.validate(positions)?;
    if args.seed.is_none() && sampling.top_k != 1 {
        eprintln!("seed {seed} (pass --seed {seed} to repeat this output)");
    }
    let mut streams: Vec<TextStream> = Vec::new();
    let mut on_token = |n: usize, id: u32| {
        if !args.stream {
            return;
        }
        let mut out = std::io::stdout().lock();
        if n == streams.len() {
            if n > 0 {
                let _ = writeln!(out);
            }
            let _ = write!(out, "{}", preset.render(&tok, &args.prompt, &[]));
            streams.push(TextStream::default());
        }
        let _ = write!(out, "{}", streams[n].push(&tok, id));
        let _ = out.flush();
    };
    let results = generate::generate_opened(&opened, &prompt, &opts, args.device, &mut on_token)?;
    if streams.is_empty() {
        for g in &results {
            println!("{}", preset.render(&tok, &args.prompt, g.continuation()));
        }
    } else {
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
