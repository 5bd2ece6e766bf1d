//! The library entries of the commands (`fill-mask`, `forward`, `extract-features`, …),
//! called directly (no clap), give what the commands print and write.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use uerzoo::checkpoint::{Checkpoint, Tensor};
use uerzoo::model::{DeviceSpec, Dtype, Pooling};
use uerzoo::resolve::tasks::{self, ExtractJob, FillMaskJob, ForwardJob};

fn model() -> PathBuf {
    common::uer_fixture("roberta_v1").join("uer_model.bin")
}

fn cli(args: &[&std::ffi::OsStr]) -> std::process::Output {
    common::run_ok(Command::new(common::uerzoo_bin()).args(args))
}

fn os(s: &(impl AsRef<std::ffi::OsStr> + ?Sized)) -> &std::ffi::OsStr {
    s.as_ref()
}

#[test]
fn fill_mask_text_gives_what_the_command_prints() {
    let text = "北京是[MASK]国的首都。";
    let mut notes = Vec::new();
    let report = tasks::fill_mask_text(
        FillMaskJob {
            model: model(),
            text: text.into(),
            top_k: 3,
            config: None,
            vocab: None,
            dtype: Dtype::F32,
            device: DeviceSpec::Cpu,
        },
        &mut |n| notes.push(n.to_string()),
    )
    .unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(report.masks.len(), 1);
    let mask = &report.masks[0];
    assert_eq!(mask.position, 4, "[CLS] 北 京 是 [MASK]");
    assert_eq!(mask.candidates.len(), 3);
    let mut expected = format!("[MASK] #1 (position {}):\n", mask.position);
    for (rank, c) in mask.candidates.iter().enumerate() {
        assert_eq!(
            c.filled,
            text.replacen("[MASK]", c.token.trim_start_matches("##"), 1)
        );
        expected += &format!(
            "  {:>2}. {:<8} {:.4}  {}\n",
            rank + 1,
            c.token,
            c.score,
            c.filled
        );
    }
    let out = cli(&[
        os("fill-mask"),
        model().as_os_str(),
        os(text),
        os("--top-k"),
        os("3"),
    ]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
    // No mask: refused before the model runs.
    let err = tasks::fill_mask_text(
        FillMaskJob {
            model: model(),
            text: "北京".into(),
            top_k: 3,
            config: None,
            vocab: None,
            dtype: Dtype::F32,
            device: DeviceSpec::Cpu,
        },
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "the text has no [MASK]");
}

#[test]
fn forward_file_writes_what_the_command_writes() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in.safetensors");
    let mut ck = Checkpoint::default();
    let ids: Vec<i64> = vec![101, 1266, 776, 2000, 102, 0];
    let bytes = ids.iter().flat_map(|i| i.to_le_bytes()).collect();
    ck.insert(
        "input_ids",
        Tensor::from_bytes(uerzoo::checkpoint::DType::I64, vec![1, 6], bytes),
    );
    ck.write_safetensors(&input, false).unwrap();
    let (lib, bin) = (
        d.path().join("lib.safetensors"),
        d.path().join("cli.safetensors"),
    );
    let report = tasks::forward_file(ForwardJob {
        model: model(),
        config: None,
        input: input.clone(),
        output: lib.clone(),
        dtype: Dtype::F32,
        device: DeviceSpec::Cpu,
        force: false,
    })
    .unwrap();
    assert_eq!(report.output, lib);
    assert_eq!(report.int8_path, None);
    let out = cli(&[
        os("forward"),
        model().as_os_str(),
        os("--input"),
        input.as_os_str(),
        os("--output"),
        bin.as_os_str(),
    ]);
    let line = format!(
        "wrote {} (heads: {})\n",
        bin.display(),
        report.heads.join(", ")
    );
    assert_eq!(String::from_utf8(out.stderr).unwrap(), line);
    let got = common::read(&lib);
    assert_eq!(got.get("hidden").unwrap().shape, vec![1, 6, 128]);
    assert_eq!(std::fs::read(&lib).unwrap(), std::fs::read(&bin).unwrap());
    // An existing output is refused (before loading) unless forced.
    let again = ForwardJob {
        model: PathBuf::from("/nonexistent/model.bin"),
        config: None,
        input,
        output: lib,
        dtype: Dtype::F32,
        device: DeviceSpec::Cpu,
        force: false,
    };
    assert!(
        tasks::forward_file(again)
            .unwrap_err()
            .to_string()
            .contains("--force")
    );
}

#[test]
fn extract_file_writes_what_the_command_writes() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("texts.txt");
    std::fs::write(&input, "北京是中国的首都。\n\n今天天气很好\n").unwrap();
    let (lib, bin) = (
        d.path().join("lib.safetensors"),
        d.path().join("cli.safetensors"),
    );
    let report = tasks::extract_file(ExtractJob {
        model: model(),
        input: input.clone(),
        output: lib.clone(),
        pooling: Pooling::Mean,
        seq_length: 16,
        batch_size: 1,
        config: None,
        vocab: None,
        dtype: Dtype::F32,
        device: DeviceSpec::Cpu,
        force: false,
    })
    .unwrap();
    assert_eq!((report.rows, report.hidden), (2, 128));
    let out = cli(&[
        os("extract-features"),
        model().as_os_str(),
        os("--input"),
        input.as_os_str(),
        os("--output"),
        bin.as_os_str(),
        os("--pooling"),
        os("mean"),
        os("--seq-length"),
        os("16"),
        os("--batch-size"),
        os("1"),
    ]);
    let line = format!("wrote {} (2 × 128)\n", bin.display());
    assert_eq!(String::from_utf8(out.stderr).unwrap(), line);
    assert_eq!(
        common::read(&lib).get("features").unwrap().shape,
        vec![2, 128]
    );
    assert_eq!(std::fs::read(&lib).unwrap(), std::fs::read(&bin).unwrap());
}

#[test]
fn preprocess_job_writes_what_the_command_writes() {
    use uerzoo::train::dataset::PretrainTarget;
    use uerzoo::train::dataset::job::{self, PreprocessJob, Source};
    let d = tempfile::tempdir().unwrap();
    let corpus = d.path().join("c.txt");
    std::fs::write(
        &corpus,
        "北京是中国的首都。\n今天天气很好，我们去公园散步吧。\n",
    )
    .unwrap();
    let vocab = common::uer_fixture("roberta_v1").join("vocab.txt");
    let (lib, bin) = (d.path().join("lib.uzds"), d.path().join("cli.uzds"));
    let done = job::run(
        PreprocessJob {
            source: Source::Corpus(corpus.clone()),
            vocab: vocab.clone(),
            target: PretrainTarget::Mlm,
            seq_length: Some(16),
            dup_factor: 2,
            dynamic_masking: false,
            whole_word_masking: false,
            full_sentences: false,
            seed: 7,
            jobs: 1,
            output: lib.clone(),
            force: false,
        },
        &uerzoo::progress::NoProgress,
    )
    .unwrap();
    assert_eq!(done.report.lines, 2);
    assert!(done.report.instances >= 4, "{:?}", done.report);
    let out = cli(&[
        os("preprocess"),
        os("--corpus"),
        corpus.as_os_str(),
        os("--vocab"),
        vocab.as_os_str(),
        os("--target"),
        os("mlm"),
        os("--seq-length"),
        os("16"),
        os("--dup-factor"),
        os("2"),
        os("--output"),
        bin.as_os_str(),
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let r = &done.report;
    let head = format!(
        "{} instances ({} lines, {} tokens) → {} in ",
        r.instances,
        r.lines,
        r.tokens,
        bin.display()
    );
    assert!(stdout.starts_with(&head), "{stdout}");
    assert_eq!(std::fs::read(&lib).unwrap(), std::fs::read(&bin).unwrap());
}

#[test]
fn import_gives_what_the_command_prints() {
    use uerzoo::resolve::import::{ImportJob, import};
    let d = tempfile::tempdir().unwrap();
    let (lib_cache, cli_cache) = (d.path().join("lib"), d.path().join("cli"));
    let file = model();
    let mut notes = Vec::new();
    let report = import(
        ImportJob {
            name: "google_zh_bert_base".into(),
            file: file.clone(),
            as_name: None,
            sha256: None,
            vocab: None,
            skip_check: true,
            cache_dir: Some(lib_cache),
        },
        &mut |n| notes.push(n.to_string()),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(&report.pointer).unwrap(),
        std::fs::read(&file).unwrap()
    );
    let out = cli(&[
        os("import"),
        os("google_zh_bert_base"),
        file.as_os_str(),
        os("--skip-check"),
        os("--cache-dir"),
        cli_cache.as_os_str(),
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines: Vec<&str> = stdout.lines().collect();
    let pointer = lines.pop().unwrap();
    let expected: Vec<String> = report
        .vocab
        .iter()
        .chain([&report.file])
        .map(|f| format!("sha256 {}  {} B  {}", f.sha256, f.size, f.name))
        .collect();
    assert_eq!(lines, expected);
    assert_eq!(
        Path::new(pointer).strip_prefix(&cli_cache).unwrap(),
        report.pointer.strip_prefix(d.path().join("lib")).unwrap()
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    let expected: String = notes.iter().map(|n| format!("{n}\n")).collect();
    assert_eq!(stderr, expected);
}

#[test]
fn inspect_gives_what_the_command_prints() {
    use uerzoo::resolve::inspect::{InspectJob, inspect};
    let found = inspect(&InspectJob {
        path: model(),
        time: false,
    })
    .unwrap();
    assert!(found.model.is_ok(), "{:?}", found.model);
    let text = String::from_utf8(cli(&[os("inspect"), model().as_os_str()]).stdout).unwrap();
    assert_eq!(text, found.text());
    let json = cli(&[os("inspect"), model().as_os_str(), os("--json")]).stdout;
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(json, found.json());
    let err = inspect(&InspectJob {
        path: PathBuf::from("/nonexistent/x.bin"),
        time: false,
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "cannot inspect /nonexistent/x.bin");
}
