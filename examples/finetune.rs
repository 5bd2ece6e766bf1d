//! Fine-tuning and prediction through the library, no command line: what `uerzoo finetune`
//! and `uerzoo predict` do, as two calls (`train::finetune::run`, `train::predict::run`).
//!
//! Fine-tunes a sentiment classifier on book reviews (TSVs with `label` and `text_a`),
//! saves it as a UER `.bin` with its config and vocabulary beside it, then labels the test
//! set with the saved model and prints the accuracy.
//!
//! Run: `cargo run --example finetune -- [MODEL] [DATA_DIR] [OUT_DIR]`; by default MODEL is
//! the repository's tiny `roberta_v1` test model, DATA_DIR its `book_review_small` rows
//! (`train.tsv`, `dev.tsv`, `test.tsv`) and OUT_DIR `target/example-finetune`. A zoo model
//! (e.g. `chinese_roberta_L-2_H-128`, once downloaded) and the full book_review set give a
//! real classifier.

use std::path::{Path, PathBuf};
use uerzoo::model::Pooling;
use uerzoo::progress::NoProgress;
use uerzoo::train::TrainError;
use uerzoo::train::finetune::{self, FinetuneEvent, FinetuneTask};
use uerzoo::train::predict::{self, PredictTask};

/// The training settings of this example (the test compares the command line given the
/// same ones).
pub const EPOCHS: usize = 1;
pub const BATCH_SIZE: usize = 16;
pub const LEARNING_RATE: f64 = 1e-3;
pub const SEQ_LENGTH: usize = 64;
pub const POOLING: Pooling = Pooling::Mean;

/// What the example made.
pub struct Outcome {
    /// The saved classifier (`OUT_DIR/classifier.bin`).
    pub model: PathBuf,
    /// The predicted label of each test row, in order.
    pub labels: Vec<usize>,
    /// Rows predicted right, and test rows.
    pub correct: usize,
    pub total: usize,
}

/// Fine-tunes `model` on `data/train.tsv` (best epoch on `data/dev.tsv`), saves it in
/// `out`, and predicts `data/test.tsv` with the saved classifier.
pub fn run(model: &Path, data: &Path, out: &Path) -> Result<Outcome, TrainError> {
    let saved = out.join("classifier.bin");
    let mut task = FinetuneTask::new(model, data.join("train.tsv"), data.join("dev.tsv"));
    task.epochs = vec![EPOCHS];
    task.batch_size = vec![BATCH_SIZE];
    task.learning_rate = vec![LEARNING_RATE];
    task.seq_length = SEQ_LENGTH;
    task.pooling = Some(POOLING);
    task.output = Some(saved.clone());
    task.force = true;
    finetune::run(&task, &NoProgress, &mut |event| {
        if let FinetuneEvent::Epoch(r) = event {
            println!(
                "epoch {}/{}: dev accuracy {:.4}",
                r.epoch,
                r.epochs,
                r.dev.accuracy()
            );
        }
    })?;

    // The saved model opens by its path alone: its config (with the seq_length and
    // pooling it was trained with) and vocabulary are beside it.
    let mut task = PredictTask::new(&saved, data.join("test.tsv"));
    task.labels = true;
    let report = predict::run(&task)?;
    let (correct, total) = report.accuracy.unwrap_or_default();
    Ok(Outcome {
        model: saved,
        labels: report.predictions.labels,
        correct,
        total,
    })
}

#[allow(dead_code)]
fn main() -> std::process::ExitCode {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixtures = repo.join("tests/fixtures");
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let model = args
        .next()
        .unwrap_or(fixtures.join("fixtures/uer/roberta_v1/uer_model.bin"));
    let data = args
        .next()
        .unwrap_or(fixtures.join("data/datasets/book_review_small"));
    let out = args.next().unwrap_or(repo.join("target/example-finetune"));
    match run(&model, &data, &out) {
        Ok(o) => {
            let acc = o.correct as f64 / o.total.max(1) as f64;
            println!("saved {}", o.model.display());
            println!("test accuracy: {acc:.4} ({}/{})", o.correct, o.total);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                eprintln!("  caused by: {c}");
                cause = c.source();
            }
            std::process::ExitCode::FAILURE
        }
    }
}
