//! Copy-free loading changes no number. Linear weights are transposed views of the file's
//! `[out, in]` bytes; before, the loader copied them into contiguous `[in, out]` buffers
//! (`model::load::set_contiguous_weights(true)` still does). Each job below runs with both
//! layouts in one process and must write the same bytes: a 2-epoch fine-tuned classifier,
//! a pretraining run (dropout on), and the optimizer state a run of the old layout wrote,
//! resumed by the new one, which must continue the old run as the new one continues its own.
//!
//! The comparison is in-process rather than against pinned sha256 values: the GEMM
//! dispatches on the CPU (vector width and cache sizes set its blocking), so trained bytes
//! are comparable within one machine only.
//!
//! One test function: the layout switch is process-wide.

mod common;

use sha2::{Digest, Sha256};
use std::path::Path;
use uerzoo::checkpoint::Checkpoint;
use uerzoo::convert::{self, Naming, ToUerOptions};
use uerzoo::model::{self, DeviceSpec, load::set_contiguous_weights};
use uerzoo::progress::NoProgress;
use uerzoo::tokenizer::{Tokenizer, TokenizerOptions};
use uerzoo::train::dataset::{self, DatasetFile, PreprocessOptions, PretrainTarget};
use uerzoo::train::pretrain::{self, OptimState, PretrainOptions};
use uerzoo::train::{Dataset, FinetuneOptions, TaskData, finetune};

fn sha(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// Two epochs on 96 book_review rows (batch 8, dropout 0.1), saved as a UER `.bin`.
fn finetuned(out: &Path) -> String {
    let f = common::uer_fixture("roberta_v1");
    let opened = model::open::open_model(&f.join("uer_model.bin"), None).unwrap();
    let tok = Tokenizer::from_vocab_file(f.join("vocab.txt"), TokenizerOptions::uer()).unwrap();
    let small = common::shared().join("data/datasets/book_review_small");
    let mut train = Dataset::read(&small.join("train.tsv"), true).unwrap();
    train.examples.truncate(96);
    let dev = Dataset::read(&small.join("dev.tsv"), true).unwrap();
    let data = TaskData {
        train: train.encode(&tok, 64),
        dev: dev.encode(&tok, 64),
        test: None,
        labels_num: 2,
    };
    let opts = FinetuneOptions {
        epochs: 2,
        batch_size: 8,
        learning_rate: 3e-4,
        seed: 7,
        ..Default::default()
    };
    let r = finetune(
        &opened,
        &data,
        &opts,
        DeviceSpec::Cpu,
        &NoProgress,
        &mut |_| {},
    )
    .unwrap();
    uerzoo::train::save::save_uer(&r.checkpoint, Naming::V1, out, true).unwrap();
    sha(out)
}

fn mlm_dataset(dir: &Path) -> DatasetFile {
    let text =
        std::fs::read_to_string(common::shared().join("data/corpora/CLUECorpusSmall_sampled.txt"))
            .unwrap();
    let corpus = dir.join("corpus.txt");
    let lines: Vec<&str> = text.lines().take(40).collect();
    std::fs::write(&corpus, lines.join("\n") + "\n").unwrap();
    let vocab = common::uer_fixture("roberta_v1").join("vocab.txt");
    let tok = Tokenizer::from_vocab_file(&vocab, TokenizerOptions::uer()).unwrap();
    let path = dir.join("mlm.uzds");
    let pre = PreprocessOptions {
        seq_length: 32,
        dynamic_masking: true,
        ..Default::default()
    };
    dataset::preprocess(&corpus, &tok, &vocab, &path, &pre, &NoProgress).unwrap();
    DatasetFile::open(&path).unwrap()
}

/// `steps` MLM steps from `start` (the fixture when `None`, with its heads completed),
/// checkpoints every 8 steps (`OUT-8`, …); the final checkpoint's sha256.
fn pretrained(
    ds: &DatasetFile,
    steps: usize,
    out: &Path,
    start: Option<(Checkpoint, OptimState)>,
) -> String {
    let opened = model::open::open_model(
        &common::uer_fixture("roberta_v1").join("uer_model.bin"),
        None,
    )
    .unwrap();
    let opts = PretrainOptions {
        target: PretrainTarget::Mlm,
        total_steps: steps,
        batch_size: 4,
        learning_rate: 1e-4,
        warmup: 0.01,
        report_steps: 4,
        save_checkpoint_steps: 8,
        ..Default::default()
    };
    let (mut ckpt, resume) = match start {
        Some((c, s)) => (c, Some(s)),
        None => (opened.checkpoint.clone(), None),
    };
    pretrain::complete_heads(&mut ckpt, &opened.config, opts.target, false, opts.seed);
    pretrain::pretrain(
        &ckpt,
        &opened.config,
        ds,
        &opts,
        out,
        resume,
        DeviceSpec::Cpu,
        &NoProgress,
        &mut |_| {},
    )
    .unwrap();
    sha(&pretrain::step_path(out, steps))
}

/// A parameter's Adam moments as (time, bit patterns).
fn bits(m: &Option<(usize, Vec<f32>, Vec<f32>)>) -> Option<(usize, Vec<u32>)> {
    m.as_ref()
        .map(|(t, m1, m2)| (*t, m1.iter().chain(m2).map(|v| v.to_bits()).collect()))
}

/// The checkpoint and optimizer state a run wrote at step 8, ready to resume.
fn at_step_8(out: &Path) -> (Checkpoint, OptimState) {
    let at8 = pretrain::step_path(out, 8);
    let state = OptimState::load(&pretrain::state_path(&at8)).unwrap();
    let ckpt = convert::to_uer(&Checkpoint::open(&at8).unwrap(), &ToUerOptions::default())
        .unwrap()
        .0;
    (ckpt, state)
}

#[test]
fn both_weight_layouts_write_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    set_contiguous_weights(true);
    let ft_old = finetuned(&d.join("ft_old.bin"));
    set_contiguous_weights(false);
    let ft_new = finetuned(&d.join("ft_new.bin"));
    assert_eq!(
        ft_old, ft_new,
        "2-epoch classifier: contiguous vs copy-free weights"
    );

    let ds = mlm_dataset(d);
    set_contiguous_weights(true);
    let pt_old = pretrained(&ds, 24, &d.join("pt_old.bin"), None);
    set_contiguous_weights(false);
    let pt_new = pretrained(&ds, 24, &d.join("pt_new.bin"), None);
    assert_eq!(
        pt_old, pt_new,
        "24-step MLM: contiguous vs copy-free weights"
    );
    // The state files, byte for byte, and what they hold.
    for step in [8, 16] {
        let path = |name: &str| pretrain::state_path(&pretrain::step_path(&d.join(name), step));
        assert_eq!(
            sha(&path("pt_old.bin")),
            sha(&path("pt_new.bin")),
            "optimizer state file at step {step}"
        );
        let load = |name: &str| OptimState::load(&path(name)).unwrap();
        let (a, b) = (load("pt_old.bin"), load("pt_new.bin"));
        assert_eq!((a.step, a.updates, a.seed), (b.step, b.updates, b.seed));
        assert_eq!(a.run, b.run);
        assert_eq!(a.moments.len(), b.moments.len());
        for (i, (x, y)) in a.moments.iter().zip(&b.moments).enumerate() {
            assert!(
                bits(x) == bits(y),
                "optimizer state at step {step}: parameter {i}"
            );
        }
    }

    // The old layout's state, resumed copy-free, equals the new layout's own resume.
    let from_old = pretrained(
        &ds,
        24,
        &d.join("resumed_old.bin"),
        Some(at_step_8(&d.join("pt_old.bin"))),
    );
    let from_new = pretrained(
        &ds,
        24,
        &d.join("resumed_new.bin"),
        Some(at_step_8(&d.join("pt_new.bin"))),
    );
    assert_eq!(
        from_old, from_new,
        "resumed from the old layout's step-8 state"
    );
}
