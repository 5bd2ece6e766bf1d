//! Pretraining: `preprocess` datasets (mlm, lm, bert, albert; bad inputs) and `pretrain` on the UER
//! fixtures — loss falls, the checkpoints carry exactly the chosen naming's keys, convert
//! and load back, and a resumed run equals the uninterrupted one.
//!
//! Training tests hold one lock: Flex's random generator (dropout) is process-wide.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use uerzoo::checkpoint::Checkpoint;
use uerzoo::convert::{self, Naming, ToUerOptions};
use uerzoo::model::{self, Cpu, DeviceSpec, load_model};
use uerzoo::progress::NoProgress;
use uerzoo::tokenizer::{Tokenizer, TokenizerOptions};
use uerzoo::train::TrainError;
use uerzoo::train::dataset::{self, DatasetFile, PreprocessOptions, PretrainTarget};
use uerzoo::train::pretrain::{self, OptimState, PretrainOptions, PretrainResult, StepReport};

static TRAINING: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    TRAINING.lock().unwrap_or_else(|e| e.into_inner())
}

fn corpus(name: &str) -> PathBuf {
    common::shared().join("data").join("corpora").join(name)
}

/// The first `n` lines of a shared corpus in `dir`.
fn head(dir: &Path, name: &str, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(corpus(name)).unwrap();
    let lines: Vec<&str> = text.lines().take(n).collect();
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn tokenizer(fixture: &str) -> (Tokenizer, PathBuf) {
    let vocab = common::uer_fixture(fixture).join("vocab.txt");
    (
        Tokenizer::from_vocab_file(&vocab, TokenizerOptions::uer()).unwrap(),
        vocab,
    )
}

fn build(
    fixture: &str,
    corpus: &Path,
    out: &Path,
    opts: &PreprocessOptions,
) -> Result<dataset::PreprocessReport, TrainError> {
    let (tok, vocab) = tokenizer(fixture);
    dataset::preprocess(corpus, &tok, &vocab, out, opts, &NoProgress)
}

fn keys(ckpt: &Checkpoint) -> BTreeSet<String> {
    ckpt.names().map(String::from).collect()
}

fn fixture_keys(fixture: &str) -> BTreeSet<String> {
    keys(&Checkpoint::open(common::uer_fixture(fixture).join("uer_model.bin")).unwrap())
}

fn tie(fixture: &str) -> bool {
    let text =
        std::fs::read_to_string(common::uer_fixture(fixture).join("uer_config.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.get("tie_weights")
        .and_then(|x| x.as_bool())
        .unwrap_or(false)
}

/// The weights a run starts from (`fixture`'s, or `start`, a v2 checkpoint) with the
/// target's heads completed, and the fixture's config.
fn starting_point(
    fixture: &str,
    start: Option<Checkpoint>,
    opts: &PretrainOptions,
) -> (Checkpoint, model::ModelConfig) {
    let opened =
        model::open::open_model(&common::uer_fixture(fixture).join("uer_model.bin"), None).unwrap();
    let mut ckpt = start.unwrap_or(opened.checkpoint);
    pretrain::complete_heads(
        &mut ckpt,
        &opened.config,
        opts.target,
        tie(fixture),
        opts.seed,
    );
    (ckpt, opened.config)
}

/// Trains `fixture` (or `start`, a v2 checkpoint) on `ds`.
fn train(
    fixture: &str,
    start: Option<Checkpoint>,
    ds: &Path,
    opts: &PretrainOptions,
    out: &Path,
    resume: Option<OptimState>,
) -> (PretrainResult, Vec<StepReport>) {
    let (ckpt, config) = starting_point(fixture, start, opts);
    let ds = DatasetFile::open(ds).unwrap();
    let mut reports = Vec::new();
    let r = pretrain::pretrain(
        &ckpt,
        &config,
        &ds,
        opts,
        out,
        resume,
        DeviceSpec::Cpu,
        &NoProgress,
        &mut |r| reports.push(r.clone()),
    )
    .unwrap();
    (r, reports)
}

fn to_v2(path: &Path) -> Checkpoint {
    convert::to_uer(&Checkpoint::open(path).unwrap(), &ToUerOptions::default())
        .unwrap()
        .0
}

/// UER-py's instances of `corpus.txt` (`fixtures/uer_dataset/<name>_instances.jsonl`, one
/// JSON array a line: the pickled tuple).
fn uer_instances(name: &str) -> Vec<Vec<serde_json::Value>> {
    let path = common::shared()
        .join("fixtures/uer_dataset")
        .join(format!("{name}_instances.jsonl"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ints(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// UER-py's `corpus.txt`: the first 100 lines of `CLUECorpusSmall_sampled.txt` (README of
/// `fixtures/uer_dataset`), in `dir`.
fn uer_corpus(dir: &Path) -> PathBuf {
    head(dir, "CLUECorpusSmall_sampled.txt", 100)
}

/// `preprocess` with UER-py's options (`--seq_length 64`, `google_zh_vocab.txt`, or the
/// sentencepiece model) on UER-py's corpus, into `dir/<name>.uzds`.
fn preprocess_like_uer(dir: &Path, name: &str, spm: bool, opts: &PreprocessOptions) -> DatasetFile {
    let corpus = uer_corpus(dir);
    let (tok, vocab) = if spm {
        let m = common::vocab("cluecorpussmall_spm.model");
        (Tokenizer::from_spm_file(&m).unwrap(), m)
    } else {
        let v = common::vocab("google_zh_vocab.txt");
        (
            Tokenizer::from_vocab_file(&v, TokenizerOptions::uer()).unwrap(),
            v,
        )
    };
    let out = dir.join(format!("{name}.uzds"));
    dataset::preprocess(&corpus, &tok, &vocab, &out, opts, &NoProgress).unwrap();
    DatasetFile::open(&out).unwrap()
}

/// `preprocess` builds UER-py's own instances (`preprocess.py` of 2022 on the same corpus,
/// vocabulary and `--seq_length 64`), where no random draw is involved: the MLM windows
/// with dynamic masking (each document `[CLS] tokens [SEP]` cut into windows of 64, the
/// last one short), with one job and with two (UER-py's `--processes_num 2`), with the
/// sentencepiece model, and the LM windows of 65 (64 inputs + the next token). Each
/// instance: the same ids and the same length, in the same order.
///
/// Static masks are random draws (Python's `random` in UER-py, ChaCha in uerzoo): there
/// the instances' texts (masks undone through the targets) must equal UER-py's, and so
/// must the number of masked positions (`max(1, round(0.15 · length))`), none on
/// `[CLS]`/`[SEP]`; which positions and what replaces them cannot match. One difference is
/// kept on purpose: UER-py writes an empty all-padding instance after a document whose
/// tokens fill whole windows (one, in `mlm_spm`), which trains on nothing; uerzoo does not,
/// and the test skips it (and checks there is exactly that one). The `bert` target
/// draws its random next sentences and cut points the same way, so it is not compared here.
#[test]
fn mlm_and_lm_instances_equal_uer_py() {
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, ds: &DatasetFile, lm: bool| {
        let all = uer_instances(name);
        let length = |w: &[serde_json::Value]| {
            if lm {
                w[1].as_u64().unwrap() as usize
            } else {
                ints(&w[1])[0] as usize
            }
        };
        // UER-py (2022) writes an empty, all-padding instance (length 0) after a document
        // that fills its windows exactly (a remainder of no tokens); uerzoo writes none.
        // Only `mlm_spm` has such a document (instance 301: a 192-token line).
        let want: Vec<_> = all.iter().filter(|w| length(w) > 0).collect();
        let empty = all.len() - want.len();
        assert_eq!(
            empty,
            usize::from(name == "mlm_spm"),
            "{name}: empty instances"
        );
        assert_eq!(ds.len(), want.len(), "{name}: instance count");
        for (i, w) in want.iter().enumerate() {
            let r = ds.get(i).unwrap();
            let src = ints(&w[0]);
            let len = length(w);
            // UER-py keeps an LM window's 65 ids and records 64 inputs (or a short
            // window's own length); an MLM window's length is its length.
            let ids = &r.ids[..src.len()];
            assert_eq!(ids, &src[..], "{name}: instance {i} ids");
            assert_eq!(r.seg_a as usize, len, "{name}: instance {i} length");
        }
    };
    let dynamic = PreprocessOptions {
        seq_length: 64,
        dup_factor: 1,
        dynamic_masking: true,
        ..Default::default()
    };
    check(
        "mlm_dynamic",
        &preprocess_like_uer(dir.path(), "dynamic", false, &dynamic),
        false,
    );
    let two = PreprocessOptions {
        jobs: 2,
        ..dynamic.clone()
    };
    // UER-py's `--processes_num 2` file is byte for byte its one-process file
    // (`mlm_2proc_instances.jsonl` = `mlm_dynamic_instances.jsonl`; only the latter is in
    // the repository's copy).
    check(
        "mlm_dynamic",
        &preprocess_like_uer(dir.path(), "two-jobs", false, &two),
        false,
    );
    check(
        "mlm_spm",
        &preprocess_like_uer(dir.path(), "spm", true, &dynamic),
        false,
    );
    let lm = PreprocessOptions {
        target: PretrainTarget::Lm,
        seq_length: 64,
        dup_factor: 1,
        ..Default::default()
    };
    check(
        "lm",
        &preprocess_like_uer(dir.path(), "lm", false, &lm),
        true,
    );

    // Static masks (dup_factor 5): the texts and the mask counts.
    let stat = PreprocessOptions {
        seq_length: 64,
        dup_factor: 5,
        ..Default::default()
    };
    let ds = preprocess_like_uer(dir.path(), "static", false, &stat);
    let want = uer_instances("mlm");
    assert_eq!(ds.len(), want.len(), "mlm: instance count");
    let specials = [ds.header.specials.cls, ds.header.specials.sep];
    for (i, w) in want.iter().enumerate() {
        let len = ints(&w[2])[0] as usize;
        let mut text = ints(&w[0]);
        let tgt = w[1].as_array().unwrap();
        for pair in tgt {
            let p = ints(pair);
            text[p[0] as usize] = p[1];
        }
        let r = ds.get(i).unwrap();
        let t = r.targets.unwrap();
        let mut ours = r.ids.clone();
        for (j, &o) in t.iter().enumerate() {
            if o > 0 {
                ours[j] = o;
                assert!(!specials.contains(&o), "mlm {i}: a special token masked");
            }
        }
        assert_eq!(r.seg_a as usize, len, "mlm {i}: length");
        assert_eq!(ours[..len], text[..len], "mlm {i}: text");
        let masked = t.iter().filter(|&&x| x > 0).count();
        assert_eq!(masked, tgt.len(), "mlm {i}: masked positions");
    }
}

/// Hand counts on a tiny corpus: a blank line is skipped, a long document is cut into
/// windows, the first instance's layout and mask count, and the same seed gives the same
/// bytes.
#[test]
fn mlm_dataset_packs_documents_by_hand_counts() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c.txt");
    // 3 documents, a blank line (skipped) and a 300-character one.
    let long = "好".repeat(300);
    std::fs::write(&c, format!("我们去看书。\n\n天气很好\n{long}\n")).unwrap();
    let out = dir.path().join("d.uzds");
    let opts = PreprocessOptions {
        seq_length: 64,
        dup_factor: 2,
        ..Default::default()
    };
    let r = build("roberta_v1", &c, &out, &opts).unwrap();
    // Per copy: 1 + 1 + ceil(302 / 64) = 7 instances.
    assert_eq!(r.instances, 14);
    let ds = DatasetFile::open(&out).unwrap();
    let h = &ds.header;
    assert_eq!(
        (h.target, h.seq_length, h.row, h.vocab_size, h.id_bytes),
        (PretrainTarget::Mlm, 64, 64, 3006, 2)
    );
    let first = ds.get(0).unwrap();
    let (cls, sep, pad) = (h.specials.cls, h.specials.sep, h.specials.pad);
    assert_eq!(first.ids[0], cls);
    assert_eq!(first.seg_a, 8, "[CLS] + 6 characters + [SEP]");
    assert_eq!(first.ids[7], sep);
    assert!(first.ids[8..].iter().all(|&i| i == pad));
    let t = first.targets.unwrap();
    // round(0.15 · 8) = 1 masked position, not a special token.
    assert_eq!(t.iter().filter(|&&x| x > 0).count(), 1);
    let p = t.iter().position(|&x| x > 0).unwrap();
    assert!((1..7).contains(&p));
    // The long document: windows of 64, the last 302 − 256 = 46 tokens padded.
    assert_eq!(ds.get(2).unwrap().seg_a, 64);
    assert_eq!(ds.get(6).unwrap().seg_a, 46);
    // Same seed, same bytes.
    let out2 = dir.path().join("d2.uzds");
    build("roberta_v1", &c, &out2, &opts).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&out2).unwrap());
}

#[test]
fn lm_and_bert_datasets() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c.txt");
    std::fs::write(&c, "一二三四五六七八九十\n").unwrap();
    let out = dir.path().join("lm.uzds");
    let lm = PreprocessOptions {
        target: PretrainTarget::Lm,
        seq_length: 8,
        ..Default::default()
    };
    // 12 tokens in windows of 9: one full (8 inputs) and 3 left (seg 3).
    assert_eq!(build("gpt2_v1", &c, &out, &lm).unwrap().instances, 2);
    let ds = DatasetFile::open(&out).unwrap();
    assert_eq!(
        (
            ds.header.row,
            ds.get(0).unwrap().seg_a,
            ds.get(1).unwrap().seg_a
        ),
        (9, 8, 3)
    );
    assert!(ds.get(0).unwrap().targets.is_none());

    let bert_corpus = head(dir.path(), "CLUECorpusSmall_bert_sampled.txt", 400);
    let out = dir.path().join("bert.uzds");
    let bert = PreprocessOptions {
        target: PretrainTarget::Bert,
        seq_length: 64,
        dup_factor: 1,
        ..Default::default()
    };
    let r = build("bert_v1", &bert_corpus, &out, &bert).unwrap();
    let ds = DatasetFile::open(&out).unwrap();
    assert!(r.instances > 10);
    let sep = ds.header.specials.sep;
    let mut random_next = 0;
    for i in 0..ds.len() {
        let x = ds.get(i).unwrap();
        assert!(x.seg_a >= 2 && x.seg_b > x.seg_a && x.seg_b as usize <= 64);
        assert_eq!(x.ids[x.seg_a as usize - 1], sep);
        assert_eq!(x.ids[x.seg_b as usize - 1], sep);
        random_next += x.is_random_next;
    }
    // About half of the pairs take a random next sentence.
    let frac = random_next as f64 / ds.len() as f64;
    assert!((0.3..0.8).contains(&frac), "{frac}");
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "\n\n").unwrap();
    let out = dir.path().join("x.uzds");
    let err = build("roberta_v1", &empty, &out, &Default::default()).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    assert!(!out.exists(), "no half-written dataset");

    let bad_utf8 = dir.path().join("bin.txt");
    std::fs::write(&bad_utf8, b"ok\n\xff\xfe\n").unwrap();
    let err = build("roberta_v1", &bad_utf8, &out, &Default::default()).unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");

    // A dataset made with another vocabulary.
    let c = dir.path().join("c.txt");
    std::fs::write(&c, "我们去看书。\n").unwrap();
    build("roberta_v1", &c, &out, &Default::default()).unwrap();
    let ds = DatasetFile::open(&out).unwrap();
    pretrain::check_vocab(&ds, &common::uer_fixture("roberta_v1").join("vocab.txt")).unwrap();
    let other = dir.path().join("vocab.txt");
    let mut v =
        std::fs::read_to_string(common::uer_fixture("roberta_v1").join("vocab.txt")).unwrap();
    v.push_str("新词\n");
    std::fs::write(&other, v).unwrap();
    let err = pretrain::check_vocab(&ds, &other).unwrap_err();
    assert!(err.to_string().contains("another vocabulary"), "{err}");

    // A truncated file.
    let bytes = std::fs::read(&out).unwrap();
    let cut = dir.path().join("cut.uzds");
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
    let err = DatasetFile::open(&cut).err().unwrap();
    assert!(err.to_string().contains("truncated"), "{err}");

    // --seq-length beyond GPT-2's 128 positions; the wrong target.
    let lm_out = dir.path().join("lm.uzds");
    let lm = PreprocessOptions {
        target: PretrainTarget::Lm,
        seq_length: 200,
        ..Default::default()
    };
    build("gpt2_v1", &c, &lm_out, &lm).unwrap();
    let ds = DatasetFile::open(&lm_out).unwrap();
    let opened =
        model::open::open_model(&common::uer_fixture("gpt2_v1").join("uer_model.bin"), None)
            .unwrap();
    let opts = PretrainOptions {
        target: PretrainTarget::Lm,
        ..Default::default()
    };
    let err = pretrain::check(&ds, &opened.config, &opened.checkpoint, &opts).unwrap_err();
    assert!(
        matches!(err, TrainError::SeqLength { seq: 200, max: 128 }),
        "{err}"
    );
    let mlm = PretrainOptions::default();
    let err = pretrain::check(&ds, &opened.config, &opened.checkpoint, &mlm).unwrap_err();
    assert!(err.to_string().contains("target lm, not mlm"), "{err}");
}

fn small_opts(target: PretrainTarget, steps: usize) -> PretrainOptions {
    PretrainOptions {
        target,
        total_steps: steps,
        batch_size: 4,
        learning_rate: 1e-4,
        warmup: 0.01,
        report_steps: 4,
        save_checkpoint_steps: 8,
        ..Default::default()
    }
}

/// A small corpus seen several times (static masks), so 24 steps clearly lower the loss.
fn learnable_mlm_dataset(dir: &Path) -> PathBuf {
    let c = head(dir, "CLUECorpusSmall_sampled.txt", 4);
    let ds = dir.join("mlm.uzds");
    let pre = PreprocessOptions {
        seq_length: 64,
        dup_factor: 1,
        ..Default::default()
    };
    build("roberta_v1", &c, &ds, &pre).unwrap();
    ds
}

/// 24 steps of batch 8 at lr 1e-3, reports every 8 steps, checkpoints at 8, 16, 24.
fn learnable_mlm_opts() -> PretrainOptions {
    let mut opts = small_opts(PretrainTarget::Mlm, 24);
    opts.batch_size = 8;
    opts.learning_rate = 1e-3;
    opts.report_steps = 8;
    opts
}

#[test]
fn mlm_from_roberta_v1_learns_and_writes_v1_keys() {
    let dir = tempfile::tempdir().unwrap();
    let ds = learnable_mlm_dataset(dir.path());
    let out = dir.path().join("out.bin");
    let _g = lock();
    let opts = learnable_mlm_opts();
    let (r, reports) = train("roberta_v1", None, &ds, &opts, &out, None);
    assert_eq!(reports.len(), 3);
    let (first, last) = (&reports[0], &reports[2]);
    assert!(
        last.loss < first.loss,
        "loss {} → {}",
        first.loss,
        last.loss
    );
    assert!(
        reports
            .iter()
            .all(|r| r.loss.is_finite() && (0.0..=1.0).contains(&r.acc))
    );
    assert_eq!(
        r.saved,
        vec![
            pretrain::step_path(&out, 8),
            pretrain::step_path(&out, 16),
            pretrain::step_path(&out, 24)
        ]
    );
    // Exactly the zoo's v1 keys.
    let written = Checkpoint::open(pretrain::step_path(&out, 24)).unwrap();
    assert_eq!(keys(&written), fixture_keys("roberta_v1"));
    // Loads into uerzoo's forward (through the conversion to v2).
    let opened = model::open::open_model(
        &pretrain::step_path(&out, 24),
        Some(&common::uer_fixture("roberta_v1").join("uer_config.json")),
    )
    .unwrap();
    let dev = Default::default();
    let (m, rep) = load_model::<Cpu>(&opened.checkpoint, &opened.config, &dev).unwrap();
    assert!(rep.unused.is_empty(), "{:?}", rep.unused);
    let (ids, seg) = m
        .inputs(&[101, 2769, 103, 102], &[1, 1, 1, 1], 1, 4, &dev)
        .unwrap();
    let logits = m.forward(ids, seg).logits.unwrap();
    let v = logits.into_data().to_vec::<f32>().unwrap();
    assert_eq!(v.len(), 4 * 3006);
    assert!(v.iter().all(|x| x.is_finite()));
    // The in-memory result is what was written.
    let a = to_v2(&pretrain::step_path(&out, 24));
    for name in a.names() {
        assert_eq!(
            a.get(name).unwrap().to_f32_vec(),
            r.checkpoint.get(name).unwrap().to_f32_vec(),
            "{name}"
        );
    }
}

#[test]
fn lm_from_gpt2_v1_writes_tied_v1_keys_and_v2_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let c = head(dir.path(), "CLUECorpusSmall_sampled.txt", 30);
    let ds = dir.path().join("lm.uzds");
    let pre = PreprocessOptions {
        target: PretrainTarget::Lm,
        seq_length: 32,
        ..Default::default()
    };
    build("gpt2_v1", &c, &ds, &pre).unwrap();
    let out = dir.path().join("gpt.bin");
    let _g = lock();
    let (_, reports) = train(
        "gpt2_v1",
        None,
        &ds,
        &small_opts(PretrainTarget::Lm, 8),
        &out,
        None,
    );
    assert!(reports.iter().all(|r| r.loss.is_finite() && r.acc > 0.0));
    let written = Checkpoint::open(pretrain::step_path(&out, 8)).unwrap();
    assert_eq!(keys(&written), fixture_keys("gpt2_v1"));
    let groups = written.tied_groups();
    assert_eq!(
        groups.len(),
        1,
        "the output layer is the word embedding: {groups:?}"
    );
    assert!(groups[0].contains(&"target.output_layer.weight".to_string()));
    // v2 naming: the keys of the v2 fixture.
    let mut opts = small_opts(PretrainTarget::Lm, 8);
    opts.naming = Naming::V2;
    let out2 = dir.path().join("gpt_v2.bin");
    train("gpt2_v1", None, &ds, &opts, &out2, None);
    let written = Checkpoint::open(pretrain::step_path(&out2, 8)).unwrap();
    assert_eq!(keys(&written), fixture_keys("gpt2_v2"));
}

#[test]
fn bert_target_from_bert_v1_keeps_nsp_and_tied_decoder() {
    let dir = tempfile::tempdir().unwrap();
    let c = head(dir.path(), "CLUECorpusSmall_bert_sampled.txt", 300);
    let ds = dir.path().join("bert.uzds");
    let pre = PreprocessOptions {
        target: PretrainTarget::Bert,
        seq_length: 32,
        dup_factor: 1,
        ..Default::default()
    };
    build("bert_v1", &c, &ds, &pre).unwrap();
    let out = dir.path().join("bert.bin");
    let _g = lock();
    let (_, reports) = train(
        "bert_v1",
        None,
        &ds,
        &small_opts(PretrainTarget::Bert, 8),
        &out,
        None,
    );
    assert!(
        reports
            .iter()
            .all(|r| r.loss_sp.is_some_and(f64::is_finite))
    );
    let written = Checkpoint::open(pretrain::step_path(&out, 8)).unwrap();
    assert_eq!(keys(&written), fixture_keys("bert_v1"));
    assert_eq!(written.tied_groups().len(), 1);
}

/// Whether `needle` occurs in `hay` as a contiguous run.
fn contains_run(hay: &[u32], needle: &[u32]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn albert_dataset_pairs_consecutive_segments_swapped_half_the_time() {
    let dir = tempfile::tempdir().unwrap();
    let c = head(dir.path(), "CLUECorpusSmall_bert_sampled.txt", 400);
    let out = dir.path().join("albert.uzds");
    let pre = PreprocessOptions {
        target: PretrainTarget::Albert,
        seq_length: 64,
        dup_factor: 1,
        dynamic_masking: true,
        ..Default::default()
    };
    let r = build("albert_v1", &c, &out, &pre).unwrap();
    let ds = DatasetFile::open(&out).unwrap();
    assert_eq!(ds.header.target, PretrainTarget::Albert);
    assert!(r.instances > 20, "{}", r.instances);
    // The documents as token streams (one sentence a line, blank lines between documents).
    let (tok, _) = tokenizer("albert_v1");
    let text = std::fs::read_to_string(&c).unwrap();
    let docs: Vec<Vec<u32>> = text
        .split("\n\n")
        .map(|d| d.lines().flat_map(|l| tok.encode(l)).collect())
        .filter(|d: &Vec<u32>| !d.is_empty())
        .collect();
    let sp = ds.header.specials;
    let (mut swapped, mut checked) = (0, 0);
    for i in 0..ds.len() {
        let x = ds.get(i).unwrap();
        let (a_end, b_end) = (x.seg_a as usize, x.seg_b as usize);
        assert!(a_end >= 2 && b_end > a_end && b_end <= 64, "instance {i}");
        assert_eq!(x.ids[0], sp.cls);
        assert_eq!((x.ids[a_end - 1], x.ids[b_end - 1]), (sp.sep, sp.sep));
        assert!(x.ids[b_end..].iter().all(|&id| id == sp.pad));
        assert!(x.is_random_next <= 1);
        swapped += x.is_random_next;
        let (a, b) = (&x.ids[1..a_end - 1], &x.ids[a_end..b_end - 1]);
        // Untruncated pairs: in document order (B then A when swapped), the two segments
        // are one run of consecutive sentences of one document.
        if b_end < 64 {
            let run = if x.is_random_next == 1 {
                [b, a].concat()
            } else {
                [a, b].concat()
            };
            assert!(
                docs.iter().any(|d| contains_run(d, &run)),
                "instance {i}: not consecutive text of one document"
            );
            checked += 1;
        }
    }
    assert!(checked > 10, "{checked}");
    // About half of the pairs are swapped.
    let frac = swapped as f64 / ds.len() as f64;
    assert!((0.3..0.7).contains(&frac), "{frac}");
}

/// `(loss_mlm, loss_sp)` of a `pretrain` report line.
fn report_losses(line: &str) -> (f64, f64) {
    let after = |key: &str| -> f64 {
        let rest = line
            .split(key)
            .nth(1)
            .unwrap_or_else(|| panic!("no `{key}` in `{line}`"));
        rest.trim_start_matches([' ', ':'])
            .split(|c: char| c == '|' || c.is_whitespace())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (after("loss_mlm"), after("loss_sp"))
}

#[test]
fn albert_target_20_steps_learns_mlm_and_sop_and_writes_the_zoo_and_hf_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = common::uer_fixture("albert_v1");
    let ds = dir.path().join("albert.uzds");
    common::run_ok(
        Command::new(common::uerzoo_bin())
            .args(["preprocess", "--target", "albert", "--seq-length", "32"])
            .args(["--dup-factor", "1", "--corpus"])
            .arg(corpus("CLUECorpusSmall_bert_sampled.txt"))
            .arg("--vocab")
            .arg(fixture.join("vocab.txt"))
            .arg("--output")
            .arg(&ds),
    );
    let out = dir.path().join("albert.bin");
    let run = common::run_ok(
        Command::new(common::uerzoo_bin())
            .arg("pretrain")
            .arg("--model")
            .arg(fixture.join("uer_model.bin"))
            .arg("--dataset")
            .arg(&ds)
            .args(["--target", "albert", "--total-steps", "20"])
            .args(["--batch-size", "16", "--report-steps", "10"])
            .args(["--learning-rate", "1e-3", "--seed", "7", "--output"])
            .arg(&out),
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    let reports: Vec<(f64, f64)> = stdout
        .lines()
        .filter(|l| l.contains(" steps|"))
        .map(report_losses)
        .collect();
    assert_eq!(reports.len(), 2, "{stdout}");
    let ((mlm_0, sop_0), (mlm_1, sop_1)) = (reports[0], reports[1]);
    assert!(mlm_1 < mlm_0, "the MLM loss falls: {stdout}");
    assert!(sop_1 < sop_0, "the SOP loss falls: {stdout}");
    assert!(sop_0 < 1.0 && mlm_0 < 9.0, "{stdout}");
    // UER-py's ALBERT layout: exactly the zoo file's keys, the SOP head included.
    let written = keys(&Checkpoint::open(&out).unwrap());
    assert_eq!(written, fixture_keys("albert_v1"));
    assert!(written.contains("target.sop_linear_2.weight"));
    // transformers' AlbertForPreTraining: the keys UER-py's conversion script writes.
    let hf = dir.path().join("hf");
    common::run_ok(
        Command::new(common::uerzoo_bin())
            .args(["convert", "--to", "hf"])
            .arg(&out)
            .arg(&hf)
            .arg("--config")
            .arg(dir.path().join("uer_config.json")),
    );
    let hf_keys = keys(&Checkpoint::open(hf.join("model.safetensors")).unwrap());
    let script_keys = keys(
        &Checkpoint::open(fixture.join("hf_by_uer_script").join("pytorch_model.bin")).unwrap(),
    );
    assert_eq!(hf_keys, script_keys);
    for k in [
        "sop_classifier.classifier.weight",
        "sop_classifier.classifier.bias",
        "albert.pooler.weight",
        "predictions.decoder.weight",
    ] {
        assert!(hf_keys.contains(k), "{k} missing: {hf_keys:?}");
    }
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(hf.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "AlbertForPreTraining");
    // The trained SOP head is what the HF file holds.
    let uer = Checkpoint::open(&out).unwrap();
    let hf_ckpt = Checkpoint::open(hf.join("model.safetensors")).unwrap();
    assert_eq!(
        uer.get("target.sop_linear_2.weight").unwrap().to_f32_vec(),
        hf_ckpt
            .get("sop_classifier.classifier.weight")
            .unwrap()
            .to_f32_vec()
    );
}

#[test]
fn resume_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let c = head(dir.path(), "CLUECorpusSmall_sampled.txt", 40);
    let ds = dir.path().join("mlm.uzds");
    let pre = PreprocessOptions {
        seq_length: 32,
        dynamic_masking: true,
        ..Default::default()
    };
    build("roberta_v1", &c, &ds, &pre).unwrap();
    let _g = lock();
    let opts = small_opts(PretrainTarget::Mlm, 16);
    let straight = dir.path().join("straight.bin");
    let (a, ra) = train("roberta_v1", None, &ds, &opts, &straight, None);
    // Interrupted at 8 (the checkpoint pair), resumed to 16.
    let resumed = dir.path().join("resumed.bin");
    let at8 = pretrain::step_path(&straight, 8);
    let state = OptimState::load(&pretrain::state_path(&at8)).unwrap();
    assert_eq!((state.step, state.updates), (8, 8));
    let (b, rb) = train(
        "roberta_v1",
        Some(to_v2(&at8)),
        &ds,
        &opts,
        &resumed,
        Some(state),
    );
    assert_eq!(b.steps_run, 8);
    let mut worst = 0f32;
    for name in a.checkpoint.names() {
        let (x, y) = (
            a.checkpoint.get(name).unwrap().to_f32_vec(),
            b.checkpoint.get(name).unwrap().to_f32_vec(),
        );
        for (p, q) in x.iter().zip(&y) {
            worst = worst.max((p - q).abs());
        }
    }
    assert!(worst <= 1e-6, "max |straight − resumed| = {worst}");
    assert_eq!(ra.last().unwrap().loss, rb.last().unwrap().loss);
}

#[test]
fn cli_preprocess_pretrain_convert() {
    let dir = tempfile::tempdir().unwrap();
    let c = head(dir.path(), "CLUECorpusSmall_sampled.txt", 20);
    let fx = common::uer_fixture("roberta_v1");
    let ds = dir.path().join("d.uzds");
    let run = |args: &[&std::ffi::OsStr]| {
        let o = Command::new(common::uerzoo_bin())
            .args(args)
            .output()
            .unwrap();
        let text =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        (o.status.success(), text)
    };
    let s = |x: &str| std::ffi::OsString::from(x);
    let (ok, text) = run(&[
        s("preprocess").as_os_str(),
        s("--corpus").as_os_str(),
        c.as_os_str(),
        s("--vocab").as_os_str(),
        fx.join("vocab.txt").as_os_str(),
        s("--target").as_os_str(),
        s("mlm").as_os_str(),
        s("--seq-length").as_os_str(),
        s("32").as_os_str(),
        s("--output").as_os_str(),
        ds.as_os_str(),
    ]);
    assert!(ok && text.contains("instances"), "{text}");
    let _g = lock();
    let out = dir.path().join("o.bin");
    let args: Vec<std::ffi::OsString> = vec![
        s("pretrain"),
        s("--model"),
        fx.join("uer_model.bin").into(),
        s("--dataset"),
        ds.clone().into(),
        s("--target"),
        s("mlm"),
        s("--total-steps"),
        s("4"),
        s("--batch-size"),
        s("2"),
        s("--report-steps"),
        s("2"),
        s("--output"),
        out.clone().into(),
    ];
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let (ok, text) = run(&refs);
    assert!(ok, "{text}");
    assert!(
        text.contains("|        4/       4 steps|") && text.contains("tokens/s"),
        "{text}"
    );
    // Another vocabulary → a clear error.
    let mut bad = args.clone();
    bad.push(s("--force"));
    bad.push(s("--vocab"));
    bad.push(
        common::uer_fixture("roberta_v1")
            .join("uer_config.json")
            .into(),
    );
    let refs: Vec<&std::ffi::OsStr> = bad.iter().map(|a| a.as_os_str()).collect();
    let (ok, text) = run(&refs);
    assert!(!ok && text.contains("another vocabulary"), "{text}");
    // The checkpoint converts to Huggingface and loads from there.
    let hf = dir.path().join("hf");
    let (ok, text) = run(&[
        s("convert").as_os_str(),
        out.as_os_str(),
        hf.as_os_str(),
        s("--to").as_os_str(),
        s("hf").as_os_str(),
        s("--config").as_os_str(),
        fx.join("uer_config.json").as_os_str(),
        s("--vocab").as_os_str(),
        fx.join("vocab.txt").as_os_str(),
    ]);
    assert!(ok, "{text}");
    let opened = model::open::open_model(&hf, None).unwrap();
    load_model::<Cpu>(&opened.checkpoint, &opened.config, &Default::default()).unwrap();
}

/// Two CPU peers, each with half of every batch, train exactly as one device with the whole
/// batch: after 4 steps every weight within 1e-5 of the one-device run's.
///
/// Dropout is off (each peer draws its own masks, so with dropout the two runs are equal
/// only in distribution). The masked positions of a batch fall unevenly on the two halves
/// (here 4 steps of 8 rows of 4 short documents): each peer weighs its mean loss by its share
/// of the batch's predicted tokens, so the averaged gradient is the whole batch's (a plain
/// mean of the two halves' means, as UER-py's DistributedDataParallel takes, is not: it
/// differed here by 6.7e-4, nearly the whole of the 7.1e-4 the weights move). The
/// remaining difference is the f32 summation order of the two halves (~1e-7 on the
/// gradients; Adam's update moves by at most lr·Δg/eps = 1e-4·1e-9/1e-6 per step).
#[test]
fn data_parallel_on_two_cpu_peers_equals_one_device() {
    let dir = tempfile::tempdir().unwrap();
    let ds_path = learnable_mlm_dataset(dir.path());
    let _g = lock();
    let mut opts = small_opts(PretrainTarget::Mlm, 4);
    opts.batch_size = 8;
    opts.dropout = Some(0.0);
    let (ckpt, config) = starting_point("roberta_v1", None, &opts);
    let ds = DatasetFile::open(&ds_path).unwrap();
    let one = pretrain::pretrain(
        &ckpt,
        &config,
        &ds,
        &opts,
        &dir.path().join("one.bin"),
        None,
        DeviceSpec::Cpu,
        &NoProgress,
        &mut |_| {},
    )
    .unwrap();
    let two = pretrain::pretrain_data_parallel(
        &ckpt,
        &config,
        &ds,
        &opts,
        &dir.path().join("two.bin"),
        None,
        &[DeviceSpec::Cpu, DeviceSpec::Cpu],
        &NoProgress,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(keys(&one.checkpoint), keys(&two.checkpoint));
    let (mut worst, mut moved) = (0f32, 0f32);
    for name in one.checkpoint.names() {
        let a = one.checkpoint.get(name).unwrap().to_f32_vec();
        let b = two.checkpoint.get(name).unwrap().to_f32_vec();
        let start = ckpt.get(name).map(|t| t.to_f32_vec());
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            worst = worst.max((x - y).abs());
            if let Some(s) = &start {
                moved = moved.max((x - s[i]).abs());
            }
        }
    }
    eprintln!("two peers vs one device: max weight diff {worst:e} (weights moved up to {moved:e})");
    assert!(
        moved > 1e-4,
        "training did not move the weights ({moved:e})"
    );
    assert!(
        worst <= 1e-5,
        "two peers differ from one device by {worst:e} (tolerance 1e-5)"
    );
}

#[test]
fn data_parallel_on_two_cpu_peers_learns_and_writes_once() {
    let dir = tempfile::tempdir().unwrap();
    let ds_path = learnable_mlm_dataset(dir.path());
    let out = dir.path().join("dp.bin");
    let _g = lock();
    let opts = learnable_mlm_opts();
    let (ckpt, config) = starting_point("roberta_v1", None, &opts);
    let ds = DatasetFile::open(&ds_path).unwrap();
    let run = |devices: &[DeviceSpec], opts: &PretrainOptions, reports: &mut Vec<StepReport>| {
        pretrain::pretrain_data_parallel(
            &ckpt,
            &config,
            &ds,
            opts,
            &out,
            None,
            devices,
            &NoProgress,
            &mut |r| reports.push(r.clone()),
        )
    };
    let mut reports = Vec::new();
    let r = run(&[DeviceSpec::Cpu, DeviceSpec::Cpu], &opts, &mut reports).unwrap();
    // Rank 0 reports (its half of each batch) and saves, once per step checkpoint.
    assert_eq!(reports.len(), 3);
    assert!(
        reports[2].loss < reports[0].loss,
        "loss {} → {}",
        reports[0].loss,
        reports[2].loss
    );
    assert_eq!(
        r.saved,
        vec![
            pretrain::step_path(&out, 8),
            pretrain::step_path(&out, 16),
            pretrain::step_path(&out, 24)
        ]
    );
    let written = Checkpoint::open(pretrain::step_path(&out, 24)).unwrap();
    assert_eq!(keys(&written), fixture_keys("roberta_v1"));
    assert!(r.checkpoint.names().all(|n| {
        r.checkpoint
            .get(n)
            .unwrap()
            .to_f32_vec()
            .iter()
            .all(|x| x.is_finite())
    }));
    // Bad requests are refused before any work.
    let mut small = opts.clone();
    small.batch_size = 1;
    let err = run(&[DeviceSpec::Cpu, DeviceSpec::Cpu], &small, &mut Vec::new()).unwrap_err();
    assert!(
        err.to_string().contains("smaller than the 2 devices"),
        "{err}"
    );
    let err = run(
        &[DeviceSpec::Cpu, DeviceSpec::Cuda(0)],
        &opts,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("mixes cpu and cuda"), "{err}");
}
