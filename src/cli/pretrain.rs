//! `uerzoo pretrain`: (further) pretrain a zoo model or a model from scratch on a dataset
//! made by `uerzoo preprocess` (UER-py's pretrain.py).

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use uerzoo::checkpoint::Checkpoint;
use uerzoo::convert::{self, Naming, ToUerOptions};
use uerzoo::model::{DeviceSpec, LnKind, ModelConfig};
use uerzoo::train::dataset::{DatasetFile, Target};
use uerzoo::train::pretrain::{self, OptimState, PretrainOptions, StepReport};

/// Pretrain a model on a dataset from `uerzoo preprocess`, as UER-py's pretrain.py does.
///
/// Starts from --model (a zoo weight: UER `.bin`, HF directory or registry name) or, with
/// only --config, from scratch with UER-py's initialisation. UER's AdamW (no bias correction)
/// with warmup and linear decay; every --report-steps a line with loss, accuracy over the
/// predicted tokens and tokens/s; every --save-checkpoint-steps a UER checkpoint
/// `OUTPUT-<step>` with the optimizer state beside it (`OUTPUT-<step>.optim.safetensors`);
/// `--resume OUTPUT-<step>` continues exactly as the uninterrupted run would (same options).
/// The final weights go to --output.
///
/// Example: uerzoo pretrain --model roberta/uer_model.bin --dataset corpus.uzds --target mlm --total-steps 5000 --batch-size 64 --save-checkpoint-steps 2500 --output my_roberta.bin
///
/// Example: uerzoo pretrain --model roberta/uer_model.bin --dataset corpus.uzds --target mlm --total-steps 5000 --resume my_roberta.bin-2500 --output my_roberta.bin
#[derive(clap::Args)]
pub struct Args {
    /// Starting weights: a UER `.bin`, an HF directory or a registry name (default: from
    /// scratch with --config).
    #[arg(long, required_unless_present = "config")]
    model: Option<PathBuf>,
    /// UER-py config JSON (default: beside --model).
    #[arg(long)]
    config: Option<PathBuf>,
    /// `vocab.txt` or sentencepiece `.model` the dataset was made with (checked by hash;
    /// default: beside --model).
    #[arg(long)]
    vocab: Option<PathBuf>,
    /// The dataset (`uerzoo preprocess`).
    #[arg(long)]
    dataset: PathBuf,
    /// mlm (RoBERTa), lm (GPT-2), bert (mlm + next-sentence prediction) or albert (mlm +
    /// sentence-order prediction); the dataset must have been made for it.
    #[arg(long)]
    target: Target,
    /// Forward passes.
    #[arg(long, default_value_t = 100_000)]
    total_steps: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value_t = 1e-4)]
    learning_rate: f64,
    /// Fraction of the steps with a rising learning rate.
    #[arg(long, default_value_t = 0.1)]
    warmup: f64,
    /// Passes per optimizer update.
    #[arg(long, default_value_t = 1)]
    accumulation_steps: usize,
    #[arg(long, default_value_t = 100)]
    report_steps: usize,
    #[arg(long, default_value_t = 10_000)]
    save_checkpoint_steps: usize,
    /// Clip the global gradient norm (UER-py 2022 does not clip).
    #[arg(long)]
    max_grad_norm: Option<f64>,
    /// Dropout (default: the config's).
    #[arg(long)]
    dropout: Option<f64>,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// `cpu`, `cuda[:N]` (a build with `--features cuda`), `wgpu[:N]` (`--features wgpu`;
    /// N counts the adapters wgpu lists) or `auto`: the first CUDA device, else the first
    /// wgpu GPU (never a software one), else the CPU; it notes which.
    #[arg(long, default_value = "cpu", value_parser = super::device_arg)]
    device: DeviceSpec,
    /// Data-parallel over several devices, e.g. `cuda:0,cuda:1` (or `cpu,cpu` to try it):
    /// one model replica per device, the batch split by rows, gradients averaged through
    /// Burn's collective all-reduce (see docs/pretraining.md).
    #[arg(long, value_delimiter = ',')]
    devices: Vec<DeviceSpec>,
    /// Nodes (machines) of a multi-node run, one `uerzoo pretrain` per node with the same
    /// options (default: $WORLD_SIZE, else 1). Each node trains on its --devices (or
    /// --device); the --batch-size is the global batch over all of them.
    #[arg(long)]
    nnodes: Option<usize>,
    /// This node's rank, 0 to N-1 (default: $RANK); node 0 runs the orchestrator, prints
    /// the reports and writes the checkpoints and --output, the others write nothing.
    #[arg(long)]
    node_rank: Option<usize>,
    /// Node 0's HOST:PORT as every node reaches it (default: $MASTER_ADDR:$MASTER_PORT).
    /// PORT is the rendezvous, PORT+1 the orchestrator, PORT+2+rank each node's tensor
    /// service.
    #[arg(long)]
    master_addr: Option<String>,
    /// This node's HOST or HOST:PORT as the other nodes reach it (default: the address of
    /// the interface towards the master, port PORT+2+rank).
    #[arg(long)]
    node_addr: Option<String>,
    /// How long the nodes wait for each other at the start, e.g. `60s` or `60`; past it
    /// they stop and name the nodes that did not join.
    #[arg(long, default_value = "60s", value_parser = seconds_arg)]
    join_timeout: std::time::Duration,
    /// Continue from a checkpoint `OUTPUT-<step>` written by an earlier run.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// The final UER checkpoint; step checkpoints are `OUTPUT-<step>`.
    #[arg(long)]
    output: PathBuf,
    /// Key names of the checkpoints: v1 (UER-py ≤2022, the zoo) or v2 (2023+).
    #[arg(long, default_value = "v1")]
    uer_naming: Naming,
    /// Overwrite OUTPUT if it exists (step checkpoints `OUTPUT-<step>` are always replaced).
    #[arg(long)]
    force: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let device = a.devices.first().copied().unwrap_or(a.device);
    let node = node_options(&a)?;
    let writes = node.as_ref().is_none_or(|n| n.node_rank == 0);
    // The output is checked before anything is loaded or trained.
    if writes {
        uerzoo::output::check_file(&a.output, a.force)?;
    }
    for (input, what) in [
        (Some(&a.dataset), "--dataset"),
        (a.model.as_ref(), "--model"),
    ] {
        if let Some(input) = input {
            uerzoo::output::check_not_input(&a.output, input, what)?;
        }
    }
    let ds = DatasetFile::open(&a.dataset)?;
    let (mut ckpt, config, tie, vocab, config_file) = start(&a, &ds)?;
    match &vocab {
        Some(v) => pretrain::check_vocab(&ds, v)?,
        None => eprintln!("note: no vocabulary to check the dataset against; pass --vocab"),
    }
    let resume = match &a.resume {
        Some(path) => {
            ckpt = read_v2(path)?;
            let state = OptimState::load(&pretrain::state_path(path))
                .context("reading the optimizer state beside the checkpoint")?;
            Some(state)
        }
        None => None,
    };
    pretrain::complete_heads(&mut ckpt, &config, a.target, tie, a.seed);
    let opts = PretrainOptions {
        target: a.target,
        total_steps: a.total_steps,
        batch_size: a.batch_size,
        learning_rate: a.learning_rate,
        warmup: a.warmup,
        accumulation_steps: a.accumulation_steps,
        report_steps: a.report_steps,
        save_checkpoint_steps: a.save_checkpoint_steps,
        seed: a.seed,
        max_grad_norm: a.max_grad_norm,
        dropout: a.dropout,
        naming: a.uer_naming,
        ..Default::default()
    };
    let bar = super::Bar::new("steps");
    let r = if let Some(node) = &node {
        let devices = if a.devices.is_empty() {
            vec![a.device]
        } else {
            a.devices.clone()
        };
        pretrain::pretrain_multi_node(
            &ckpt,
            &config,
            &ds,
            &opts,
            &a.output,
            resume,
            &devices,
            node,
            &bar,
            &mut print_report,
        )?
    } else if a.devices.len() > 1 {
        pretrain::pretrain_data_parallel(
            &ckpt,
            &config,
            &ds,
            &opts,
            &a.output,
            resume,
            &a.devices,
            &bar,
            &mut print_report,
        )?
    } else {
        pretrain::pretrain(
            &ckpt,
            &config,
            &ds,
            &opts,
            &a.output,
            resume,
            device,
            &bar,
            &mut print_report,
        )?
    };
    if !writes {
        println!(
            "{} steps in {:.1}s; node 0 writes the checkpoints and {}",
            r.steps_run,
            r.seconds,
            a.output.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Err(e) = pretrain::write_uer(&r.checkpoint, a.uer_naming, &a.output) {
        // The run is not lost: the weights go beside the output as they are (naming v2).
        let rescue = PathBuf::from(format!(
            "{}.rescued-{}.bin",
            a.output.display(),
            std::process::id()
        ));
        return Err(match r.checkpoint.write_torch(&rescue, false) {
            Ok(()) => anyhow::Error::new(e).context(format!(
                "the pretrained weights are saved in {} (UER naming v2); convert them with `uerzoo convert`",
                rescue.display()
            )),
            Err(_) => anyhow::Error::new(e).context("the pretrained weights could not be saved"),
        });
    }
    println!(
        "{} steps in {:.1}s ({:.0} tokens/s); wrote {} (UER naming {})",
        r.steps_run,
        r.seconds,
        r.tokens_per_s,
        a.output.display(),
        a.uer_naming
    );
    // Every command opens the output by its path alone.
    super::write_beside(&a.output, config_file.map(Into::into), vocab)?;
    Ok(ExitCode::SUCCESS)
}

/// The multi-node options: the flags, else torchrun's environment variables (`WORLD_SIZE`,
/// `RANK`, `MASTER_ADDR`, `MASTER_PORT`); `None` for a run on one node.
fn node_options(a: &Args) -> anyhow::Result<Option<pretrain::NodeOptions>> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let number = |k: &str| -> anyhow::Result<Option<usize>> {
        env(k)
            .map(|v| {
                v.parse()
                    .with_context(|| format!("${k} is `{v}`, not a whole number"))
            })
            .transpose()
    };
    let nnodes = match a.nnodes {
        Some(n) => n,
        None => number("WORLD_SIZE")?.unwrap_or(1),
    };
    if nnodes <= 1 {
        return Ok(None);
    }
    let node_rank = match a.node_rank {
        Some(r) => r,
        None => number("RANK")?
            .context("a multi-node run needs --node-rank (or $RANK) on every node")?,
    };
    let master = match (&a.master_addr, env("MASTER_ADDR"), env("MASTER_PORT")) {
        (Some(m), _, Some(p)) if !m.contains(':') => format!("{m}:{p}"),
        (Some(m), _, _) => m.clone(),
        (None, Some(h), Some(p)) => format!("{h}:{p}"),
        (None, Some(h), None) => h,
        (None, None, _) => anyhow::bail!(
            "a multi-node run needs --master-addr HOST:PORT (or $MASTER_ADDR and $MASTER_PORT): node 0's address"
        ),
    };
    Ok(Some(pretrain::NodeOptions {
        nnodes,
        node_rank,
        master,
        node_address: a.node_addr.clone(),
        join_timeout: a.join_timeout,
        on_lost: Some(lost_node),
    }))
}

/// A node was lost mid-run: the replicas are blocked in the all-reduce, so the process
/// ends here (no half-written checkpoint is left: they are written beside and renamed).
fn lost_node(message: &str) {
    eprintln!("error: {message}");
    uerzoo::output::remove_all_partials();
    std::process::exit(1);
}

/// `60s`, `2m` or `60` (seconds).
fn seconds_arg(s: &str) -> Result<std::time::Duration, String> {
    let (n, unit) = match s.strip_suffix('s') {
        Some(n) => (n, 1.0),
        None => match s.strip_suffix('m') {
            Some(n) => (n, 60.0),
            None => (s, 1.0),
        },
    };
    n.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x > 0.0)
        .map(|x| std::time::Duration::from_secs_f64(x * unit))
        .ok_or_else(|| format!("`{s}` is not a duration such as 60s, 2m or 60"))
}

/// Where a pretraining run starts.
type Start = (
    Checkpoint,
    ModelConfig,
    bool,
    Option<PathBuf>,
    Option<PathBuf>,
);

/// The starting weights (UER naming v2), config, whether the decoder is tied, the
/// vocabulary to check the dataset against, and the UER config file to copy beside the
/// output.
fn start(a: &Args, ds: &DatasetFile) -> anyhow::Result<Start> {
    if let Some(m) = &a.model {
        let opened = uerzoo::resolve::open_model(m, a.config.as_deref())?;
        let vocab = a.vocab.clone().or_else(|| opened.vocab_file());
        let tie = config_flag(a.config.as_deref(), &opened.dir, "tie_weights");
        let config_file = a
            .config
            .clone()
            .or_else(|| Some(opened.dir.join("uer_config.json")).filter(|p| p.is_file()));
        return Ok((opened.checkpoint, opened.config, tie, vocab, config_file));
    }
    let path = a.config.as_deref().context("give --model or --config")?;
    let mut config = ModelConfig::from_uer_file(path)?;
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    config.vocab_size = ds.header.vocab_size;
    config.max_seq_length = json
        .get("max_seq_length")
        .and_then(|v| v.as_u64())
        .unwrap_or(512) as usize;
    config.ln_kind = LnKind::Uer;
    let tie = json
        .get("tie_weights")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let ckpt = pretrain::scratch_checkpoint(&config, a.target, tie, a.seed);
    Ok((ckpt, config, tie, a.vocab.clone(), a.config.clone()))
}

/// A boolean of the UER config (given, or `uer_config.json` in `dir`).
fn config_flag(config: Option<&Path>, dir: &Path, key: &str) -> bool {
    let path = config
        .map(Path::to_path_buf)
        .unwrap_or(dir.join("uer_config.json"));
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get(key).and_then(|x| x.as_bool()))
        .unwrap_or(false)
}

fn read_v2(path: &Path) -> anyhow::Result<Checkpoint> {
    let raw = Checkpoint::open(path).with_context(|| format!("reading `{}`", path.display()))?;
    Ok(convert::to_uer(&raw, &ToUerOptions::default())?.0)
}

fn print_report(r: &StepReport) {
    let mut line = format!(
        "| {:8}/{:8} steps| {:8.2} tokens/s| loss {:7.2}",
        r.step, r.total_steps, r.tokens_per_s, r.loss
    );
    if let Some(l) = r.loss_mlm {
        line.push_str(&format!("| loss_mlm {l:7.2}"));
    }
    line.push_str(&format!("| acc: {:3.3}", r.acc));
    if let (Some(l), Some(acc)) = (r.loss_sp, r.acc_sp) {
        line.push_str(&format!("| loss_sp {l:7.2}| acc_sp: {acc:3.3}"));
    }
    println!("{line}");
}
