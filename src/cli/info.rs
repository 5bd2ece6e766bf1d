//! `uerzoo info`: everything the registry knows about one weight, and how to use it.

use anyhow::Context;
use std::process::ExitCode;
use uerzoo::registry::Registry;

/// Everything known about one zoo weight, and how to use it.
///
/// Shape, tokenizer, UER options, sources with sizes and checksums, pretraining, card scores,
/// generation preset, and the uerzoo and UER-py commands to use it. NAME is a registry name,
/// an alias (tiny, mini, small, medium, base, gpt2-poem, …), a Huggingface repo id
/// (uer/gpt2-chinese-couplet) or repo name (gpt2-chinese-couplet). An unknown name exits with
/// status 1 and the closest names.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    uerzoo info medium\n  \
    uerzoo info gpt2-chinese-couplet\n  \
    uerzoo info chinese_roberta_L-8_H-512 --config > medium_config.json")]
pub struct Args {
    /// Registry name, alias, or Huggingface repo id/name.
    name: String,
    /// Print the entry as JSON.
    #[arg(long, conflicts_with = "config")]
    json: bool,
    /// Print only the weight's UER config JSON (file + the entry's training options).
    #[arg(long)]
    config: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let registry = Registry::builtin();
    let entry = registry.get(&args.name)?;
    let text = if args.config {
        let config = entry.uer_config().context("building the UER config")?;
        format!("{}\n", config.to_json_string())
    } else if args.json {
        let json = serde_json::to_string_pretty(entry).context("serialising the entry")?;
        format!("{json}\n")
    } else {
        uerzoo::jobs::zoo::info_text(registry, entry)
    };
    super::write_stdout(&text)
}
