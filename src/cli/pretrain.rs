//! `uerzoo pretrain`: (further) pretrain a zoo model or a model from scratch on a dataset
//! made by `uerzoo preprocess` (UER-py's pretrain.py).

use std::path::PathBuf;
use std::process::ExitCode;
use uerzoo::convert::Naming;
use uerzoo::model::DeviceSpec;
use uerzoo::train::dataset::PretrainTarget;
use uerzoo::train::pretrain::{self, NodeRequest, PretrainOptions, PretrainTask, StepReport};

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
    target: PretrainTarget,
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
    #[arg(long, default_value = "60s", value_parser = pretrain::parse_duration)]
    join_timeout: std::time::Duration,
    /// Continue from a checkpoint `OUTPUT-<step>` written by an earlier run.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// The final UER checkpoint; step checkpoints are `OUTPUT-<step>`.
    #[arg(long)]
    output: PathBuf,
    /// Key names of the checkpoints. Every command writes UER files in naming v1 (the zoo's,
    /// UER-py ≤2022), whatever the input's, unless given `--uer-naming v2` (2023+).
    #[arg(long, default_value = "v1")]
    uer_naming: Naming,
    /// Overwrite OUTPUT if it exists (step checkpoints `OUTPUT-<step>` are always replaced).
    #[arg(long)]
    force: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let task = PretrainTask {
        model: a.model,
        config: a.config,
        vocab: a.vocab,
        dataset: a.dataset,
        options: PretrainOptions {
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
        },
        devices: if a.devices.is_empty() {
            vec![a.device]
        } else {
            a.devices
        },
        nodes: NodeRequest {
            nnodes: a.nnodes,
            node_rank: a.node_rank,
            master_addr: a.master_addr,
            node_addr: a.node_addr,
            join_timeout: a.join_timeout,
            on_lost: Some(lost_node),
        },
        resume: a.resume,
        output: a.output,
        force: a.force,
    };
    let progress = super::Noted(super::Bar::new("steps"));
    let r = pretrain::run(&task, &progress, &mut print_report)?;
    let (steps, s, out) = (r.steps_run, r.seconds, task.output.display());
    if !r.wrote {
        println!("{steps} steps in {s:.1}s; node 0 writes the checkpoints and {out}");
        return Ok(ExitCode::SUCCESS);
    }
    let (tps, naming) = (r.tokens_per_s, task.options.naming);
    println!("{steps} steps in {s:.1}s ({tps:.0} tokens/s); wrote {out} (UER naming {naming})");
    super::show_written(&r.companions);
    Ok(ExitCode::SUCCESS)
}

/// A node was lost mid-run: the replicas are blocked in the all-reduce, so the process
/// ends here (no half-written checkpoint is left: they are written beside and renamed).
fn lost_node(message: &str) {
    eprintln!("error: {message}");
    uerzoo::output::remove_all_partials();
    std::process::exit(1);
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
