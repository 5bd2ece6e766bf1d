//! `uerzoo generate`: continue a prompt with a GPT-2 of the zoo (poems, couplets, lyrics,
//! classical Chinese), as UER-py's generate_lm does, with a KV cache.

use anyhow::Context;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use uerzoo::generate::{self, Constraint, GenerateOptions, Generated, Job, Preset, Sampling};
use uerzoo::generate::{TextStream, preset::Cut};
use uerzoo::model::DeviceSpec;
use uerzoo::registry::Registry;
use uerzoo::tokenizer::Tokenizer;

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
    /// Print tokens as they are generated.
    #[arg(long, conflicts_with_all = ["output", "json"])]
    stream: bool,
    /// Recompute the whole prefix for each token, as UER-py does (slow; for checking the cache).
    #[arg(long)]
    no_cache: bool,
    /// `--input`: decode up to N prompts together, one forward per token for all of them
    /// (each gives what it gives alone); 1 runs them one after the other [default: 8 on a
    /// GPU; 1 on the CPU, where the batched step is not faster yet (docs/performance.md),
    /// and with `--stream` or `--no-cache`].
    #[arg(long, value_name = "N", conflicts_with_all = ["stream", "no_cache"])]
    batch_size: Option<usize>,
}

/// `--batch-size` on a GPU when not given: enough sequences to read each weight once for
/// several tokens, few enough that the padded KV cache and the per-step logits stay small.
const DEFAULT_BATCH: usize = 8;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let entry = (!args.model.exists())
        .then(|| {
            args.model
                .to_str()
                .and_then(|n| Registry::builtin().get(n).ok())
        })
        .flatten();
    let card = entry.and_then(|e| e.generation.as_ref());
    // Weights outside the registry get their family's preset once opened.
    let named = match (&args.preset, entry) {
        (Some(name), _) => Some(Preset::get(name)?),
        (None, Some(e)) => Some(Preset::for_entry(&e.name)),
        (None, None) => None,
    };
    if args.line_length.is_some() && named.is_some_and(|p| p.cut == Cut::MatchUpper) {
        anyhow::bail!(
            "--line-length is for poems; a couplet's lower line takes the upper line's length"
        );
    }
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
    if let Some(out) = &args.output {
        // Checked before the model loads: a bad output fails in milliseconds.
        uerzoo::output::check_file(out, args.force)?;
        if let Some(input) = args.input.as_deref().filter(|p| *p != Path::new("-")) {
            uerzoo::output::check_not_input(out, input, "--input")?;
        }
    }
    let prompts = read_prompts(&args)?;
    let opened = uerzoo::resolve::open_model(&args.model, args.config.as_deref())?;
    let preset = named.unwrap_or_else(|| Preset::for_weights(&opened.checkpoint));
    let (tok, vocab) = uerzoo::resolve::open_tokenizer_with_origin(&opened, args.vocab.as_deref())?;
    if matches!(vocab, uerzoo::resolve::VocabOrigin::BuiltIn { .. }) {
        eprintln!("note: tokenizing with {vocab}");
    }
    let positions =
        generate::positions(&opened).context("the weights have no position embedding")?;
    let seed = args.seed.unwrap_or_else(clock_seed);
    let max_length = args
        .max_length
        .unwrap_or_else(|| card.map_or(128, |c| c.max_length).min(positions));
    let mut jobs = Vec::with_capacity(prompts.len());
    for (text, origin) in &prompts {
        warn_unknown(&tok, text, origin);
        let prompt = preset.prompt_ids(&tok, text);
        let constraint = match (preset.cut, args.line_length) {
            (Cut::MatchUpper, _) => Some(Constraint::match_line(&tok, preset.user_text(text))?),
            (_, Some(n)) => Some(Constraint::lines(&tok, n, preset.user_text(text))?),
            _ => None,
        };
        let limit = if constraint.is_some() {
            None
        } else {
            preset.new_token_limit(&tok, text)
        };
        let opts = GenerateOptions {
            max_length,
            max_new_tokens: [args.max_new_tokens, limit].into_iter().flatten().min(),
            sampling,
            seed,
            num_return: args.num_return,
            stop_id: (preset.stop_at_sep || constraint.is_some()).then(|| tok.sep_id()),
            use_cache: !args.no_cache,
        };
        opts.validate(positions)?;
        check_room(&opts, prompt.len(), constraint.as_ref(), origin)?;
        jobs.push(Job {
            prompt,
            opts,
            constraint,
        });
    }
    if args.seed.is_none() && sampling.top_k != 1 {
        eprintln!("seed {seed} (pass --seed {seed} to repeat this output)");
    }
    let mut streams: Vec<TextStream> = Vec::new();
    let mut current = (usize::MAX, usize::MAX);
    let mut on_token = |j: usize, n: usize, id: u32| {
        if !args.stream {
            return;
        }
        let mut out = std::io::stdout().lock();
        if (j, n) != current {
            if current.0 != usize::MAX {
                let _ = writeln!(out);
            }
            let _ = write!(out, "{}", preset.render(&tok, &prompts[j].0, &[]));
            streams.push(TextStream::default());
            current = (j, n);
        }
        if let Some(s) = streams.last_mut() {
            let _ = write!(out, "{}", s.push(&tok, id));
        }
        let _ = out.flush();
    };
    let batch_size = match args.batch_size {
        Some(0) => {
            anyhow::bail!("--batch-size 0: expected at least 1 (1 runs the prompts one by one)")
        }
        Some(n) => n,
        None if args.stream || args.no_cache || args.device == DeviceSpec::Cpu => 1,
        None => DEFAULT_BATCH,
    };
    let mut result =
        generate::generate_many_batched(&opened, &jobs, batch_size, args.device, &mut on_token)?;
    for (job, seqs) in jobs.iter().zip(result.sequences.iter_mut()) {
        if job.constraint.is_some() {
            generate::rank(seqs);
        }
    }
    let texts: Vec<&str> = prompts.iter().map(|(t, _)| t.as_str()).collect();
    write_results(
        &args,
        preset,
        &tok,
        &texts,
        &result.sequences,
        !streams.is_empty(),
    )?;
    let tokens = result.new_tokens();
    let secs = result.decode.as_secs_f64();
    eprintln!(
        "generated {tokens} tokens for {} prompt{} in {secs:.2} s ({:.1} tokens/s; loading {:.2} s)",
        prompts.len(),
        if prompts.len() == 1 { "" } else { "s" },
        if secs > 0.0 {
            tokens as f64 / secs
        } else {
            0.0
        },
        result.load.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// The prompts with where each came from (for messages): `--prompt TEXT`, `--prompt -`
/// (standard input, one prompt), or the lines of `--input`.
fn read_prompts(args: &Args) -> anyhow::Result<Vec<(String, String)>> {
    let stdin = || -> anyhow::Result<String> {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading standard input")?;
        Ok(s)
    };
    if let Some(p) = &args.prompt {
        let text = if p == "-" {
            stdin()?.trim().to_owned()
        } else {
            p.clone()
        };
        anyhow::ensure!(
            !text.trim().is_empty(),
            "the prompt is empty; give the text to continue"
        );
        return Ok(vec![(text, "the prompt".to_owned())]);
    }
    let file = args.input.as_deref().unwrap_or(Path::new("-"));
    let content = if file == Path::new("-") {
        stdin()?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let mut prompts = Vec::new();
    let mut blank = Vec::new();
    for (n, line) in content.lines().enumerate() {
        let text = line.trim();
        if text.is_empty() {
            blank.push((n + 1).to_string());
            continue;
        }
        prompts.push((
            text.to_owned(),
            format!("{} line {}", file.display(), n + 1),
        ));
    }
    if !blank.is_empty() && !prompts.is_empty() {
        eprintln!(
            "note: {} line(s) {} are blank; skipped",
            file.display(),
            blank.join(", ")
        );
    }
    anyhow::ensure!(
        !prompts.is_empty(),
        "{} has no prompts; put one prompt per line",
        file.display()
    );
    Ok(prompts)
}

/// Warns of prompt text the vocabulary lacks (the model sees `[UNK]` there).
pub fn warn_unknown(tok: &Tokenizer, text: &str, origin: &str) {
    for u in tok.unknowns(text, &tok.tokenize_with_offsets(text)) {
        eprintln!(
            "warning: {origin}: `{}` (characters {}..{}) is not in the vocabulary; the model sees [UNK]",
            u.text, u.start, u.end
        );
    }
}

/// A prompt as long as `--max-length` generates nothing; a couplet needs room for its
/// lower line.
fn check_room(
    opts: &GenerateOptions,
    prompt_len: usize,
    constraint: Option<&Constraint>,
    origin: &str,
) -> anyhow::Result<()> {
    let room = opts.max_length.saturating_sub(prompt_len);
    if let Some(need) = constraint.and_then(Constraint::min_new_tokens)
        && room < need
    {
        anyhow::bail!(
            "{origin}: --max-length {} leaves room for {room} of the lower line's {need} characters ([CLS] and the prompt take {prompt_len}); use --max-length {} or more",
            opts.max_length,
            prompt_len + need + 1
        );
    }
    if room == 0 {
        eprintln!(
            "warning: {origin}: [CLS] and the prompt are {prompt_len} tokens, --max-length {} leaves nothing to generate; the prompt is cut to it",
            opts.max_length
        );
    }
    Ok(())
}

/// Prints (or writes to `--output`) every sequence: readable lines, UER-py's
/// prediction layout, or JSON lines.
fn write_results(
    args: &Args,
    preset: &Preset,
    tok: &Tokenizer,
    texts: &[&str],
    sequences: &[Vec<Generated>],
    streamed: bool,
) -> anyhow::Result<()> {
    let mut out = String::new();
    for (text, seqs) in texts.iter().zip(sequences) {
        if args.output.is_some() && !args.json {
            out.push_str(text);
            out.push('\n');
        }
        for g in seqs {
            if args.json {
                let obj = serde_json::json!({
                    "prompt": text,
                    "text": preset.render(tok, text, g.continuation()),
                    "continuation": generate::clean_text(tok, g.continuation()),
                    "ids": g.ids,
                    "score": g.score,
                    "stop": format!("{:?}", g.stop),
                });
                out.push_str(&serde_json::to_string(&obj)?);
            } else if args.output.is_some() {
                out.push_str(&generate::uer_text(tok, &g.ids));
            } else {
                out.push_str(&preset.render(tok, text, g.continuation()));
            }
            out.push('\n');
        }
    }
    match &args.output {
        Some(path) => {
            // Through a temporary beside it: an interrupted run leaves no half-written file.
            let write = || -> std::io::Result<()> {
                let mut tmp = uerzoo::output::Partial::new_in(uerzoo::output::parent_dir(path))?;
                std::io::Write::write_all(&mut tmp, out.as_bytes())?;
                Ok(tmp.persist(path, true)?)
            };
            write().with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None if streamed => println!(),
        None => print!("{out}"),
    }
    Ok(())
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
