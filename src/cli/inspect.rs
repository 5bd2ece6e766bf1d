//! `uerzoo inspect`: Summarise a checkpoint file or directory.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use uerzoo::checkpoint::Checkpoint;

/// Summarise a checkpoint: format, tensor count, parameters, bytes, tied groups and each
/// tensor's name, dtype and shape. Reads torch `.bin` (zip or legacy) and safetensors;
/// nothing in the file is executed.
///
/// Example: `uerzoo inspect pytorch_model.bin --json`
#[derive(clap::Args)]
pub struct Args {
    /// A `.bin`/`.safetensors` file, or a directory holding `model.safetensors` or
    /// `pytorch_model.bin`.
    path: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Also time the read, touching every tensor byte, and print the throughput.
    #[arg(long)]
    time: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let start = std::time::Instant::now();
    let ck = Checkpoint::open(&args.path)
        .with_context(|| format!("cannot inspect {}", args.path.display()))?;
    let timing = args.time.then(|| {
        let checksum = ck.tensors.iter().fold(0u64, |acc, (_, t)| {
            t.bytes().chunks(8).fold(acc, |a, c| {
                a.wrapping_add(c.iter().map(|&b| b as u64).sum::<u64>())
            })
        });
        let secs = start.elapsed().as_secs_f64();
        (
            secs,
            ck.num_bytes() as f64 / secs / (1 << 20) as f64,
            checksum,
        )
    });
    let mut summary = ck.summary();
    // What the conversion layer makes of the names (a model file or not).
    let detected = uerzoo::convert::detect(&ck)
        .map(|d| (d.family.to_string(), d.source.to_string(), d.layers))
        .map_err(not_detected);
    match &detected {
        Ok((family, naming, layers)) => {
            summary["family"] = family.as_str().into();
            summary["naming"] = naming.as_str().into();
            summary["layers"] = (*layers).into();
        }
        Err(why) => summary["family"] = format!("not detected: {why}").into(),
    }
    if let Some((secs, mib_s, checksum)) = timing {
        summary["read_seconds"] = secs.into();
        summary["read_mib_per_second"] = mib_s.into();
        summary["byte_sum"] = checksum.into();
        for (k, v) in memory() {
            summary[k] = v.into();
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", ck.summary_text());
    match &detected {
        Ok((family, naming, layers)) => {
            println!("model:      {family}, {layers} layers, {naming}")
        }
        Err(why) => println!("model:      not detected ({why})"),
    }
    if let Some((secs, mib_s, _)) = timing {
        println!("read:       {secs:.3} s, {mib_s:.0} MiB/s (every byte touched)");
        let mem: Vec<String> = memory()
            .iter()
            .map(|(k, v)| format!("{k} {:.1} MiB", *v as f64 / 1024.0))
            .collect();
        println!("memory:     {}", mem.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// Why the family was not detected, with what to do (`inspect` itself has no `--arch`).
fn not_detected(e: uerzoo::convert::ConvertError) -> String {
    match e {
        uerzoo::convert::ConvertError::UnknownFamily { sample, .. } => format!(
            "the keys match no family uerzoo converts (first keys: {sample}); if it is a \
             bert, roberta, word-roberta, gpt2 or albert model, name it to convert: \
             `uerzoo convert FILE OUT --to hf --arch bert`"
        ),
        e => e.to_string(),
    }
}

/// Peak and current memory of this process in KiB, from `/proc/self/status` (Linux only):
/// `RssAnon` is what the reader allocated; `RssFile` is the mapped file's pages.
fn memory() -> Vec<(&'static str, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    ["VmHWM", "RssAnon", "RssFile"]
        .into_iter()
        .filter_map(|key| {
            let line = status
                .lines()
                .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))?;
            let kib = line[key.len() + 1..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()?;
            Some((key, kib))
        })
        .collect()
}
