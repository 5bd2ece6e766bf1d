//! `uerzoo list`: the zoo's weights as a table or JSON, from the embedded registry (offline).

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use uerzoo::jobs::zoo::{cache_at, is_cached};
use uerzoo::registry::{Entry, Family, Filter, Registry};

/// List the zoo's weights (offline: the registry is built into the binary).
///
/// Prints name, family, layers/hidden size, Hub size of the weights and where to get them
/// (`hf` = Huggingface Hub, `weiyun` = UER-format file on a Weiyun share page). Filters combine.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    uerzoo list\n  \
    uerzoo list --family roberta --layers 8\n  \
    uerzoo list --hidden 768 --json\n  \
    uerzoo list --cached")]
pub struct Args {
    /// Only this family: roberta, word-roberta, gpt2, legacy.
    #[arg(long, value_name = "FAMILY")]
    family: Option<Family>,
    /// Only weights with this many layers (L).
    #[arg(long, value_name = "N")]
    layers: Option<usize>,
    /// Only weights with this hidden size (H).
    #[arg(long, value_name = "N")]
    hidden: Option<usize>,
    /// Print a JSON array of full entries instead of the table.
    #[arg(long)]
    json: bool,
    /// Mark the weights whose files are in the cache (a CACHED column; `"cached"` in JSON).
    #[arg(long)]
    cached: bool,
    /// Cache root for --cached (overrides HF_HUB_CACHE / HF_HOME).
    #[arg(long, requires = "cached")]
    cache_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let registry = Registry::builtin();
    let filter = Filter {
        family: args.family,
        layers: args.layers,
        hidden: args.hidden,
    };
    let entries = registry.filter(&filter);
    let cache = args.cached.then(|| cache_at(args.cache_dir.clone()));
    let cached = |e: &Entry| cache.as_ref().is_some_and(|c| is_cached(c, e));
    if args.json {
        let json = if args.cached {
            let rows: Vec<serde_json::Value> = entries
                .iter()
                .map(|e| {
                    let mut v = serde_json::to_value(e).unwrap_or_default();
                    v["cached"] = cached(e).into();
                    v
                })
                .collect();
            serde_json::to_string_pretty(&rows)
        } else {
            serde_json::to_string_pretty(&entries)
        }
        .context("serialising the registry")?;
        return super::write_stdout(&format!("{json}\n"));
    }
    if entries.is_empty() {
        eprintln!("no weights match; `uerzoo list` without filters shows all");
        return Ok(ExitCode::SUCCESS);
    }
    let marks: Option<Vec<bool>> = args
        .cached
        .then(|| entries.iter().map(|e| cached(e)).collect());
    let mut text = format!(
        "{}\n{} of {} weights. Aliases work too (tiny, medium, gpt2-poem, …): `uerzoo info NAME`.\n",
        table(&entries, marks.as_deref()),
        entries.len(),
        registry.entries().len()
    );
    if let (Some(marks), Some(cache)) = (&marks, &cache) {
        text.push_str(&format!(
            "{} cached in {} (`uerzoo cache ls` for sizes).\n",
            marks.iter().filter(|m| **m).count(),
            cache.root().display()
        ));
    }
    super::write_stdout(&text)
}

/// The table, columns sized to their contents; with `cached`, a CACHED column.
fn table(entries: &[&Entry], cached: Option<&[bool]>) -> String {
    // The first alias goes beside the name when that keeps the column as wide as the
    // longest name: `chinese_roberta_L-8_H-512 (medium)`.
    let name_width = entries
        .iter()
        .map(|e| e.name.chars().count())
        .max()
        .unwrap_or(0);
    let name_cell = |e: &Entry| match e.aliases.first() {
        Some(a) if e.name.chars().count() + a.chars().count() + 3 <= name_width => {
            format!("{} ({a})", e.name)
        }
        _ => e.name.clone(),
    };
    let rows: Vec<[String; 5]> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut sources = Vec::new();
            if e.sources.hf.is_some() {
                sources.push("hf");
            }
            if e.sources.weiyun.is_some() {
                sources.push("weiyun");
            }
            [
                name_cell(e),
                e.family.to_string(),
                format!("L{}/H{}", e.layers, e.hidden),
                e.size_display(),
                match cached.map(|c| c[i]) {
                    Some(true) => format!("{:<9} yes", sources.join(" ")),
                    _ => sources.join(" "),
                },
            ]
        })
        .collect();
    let mut header = ["NAME", "FAMILY", "L/H", "SIZE", "SOURCES"].map(String::from);
    if cached.is_some() {
        header[4] = format!("{:<9} CACHED", "SOURCES");
    }
    super::table(&header, &rows, &[3])
}
