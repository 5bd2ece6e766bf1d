//! `finetune`'s rescue path: when the output cannot be written once training is done, the
//! trained model is not lost: it is saved beside the output (`OUT.rescued-<pid>.bin`, UER
//! naming v2), else in the working folder, the command fails naming it, and the rescued
//! file loads and predicts as the trained model.
//!
//! The final write is made to fail after `finetune`'s start check (which would refuse it up
//! front): once it reports its data, a file takes the output's name (another process got
//! there first), or the output's folder is replaced by a file. Permissions would not do:
//! CI runs as root.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use uerzoo::checkpoint::Checkpoint;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn data(name: &str) -> PathBuf {
    common::shared()
        .join("data/datasets/book_review_small")
        .join(name)
}

/// The number after `key` on the line that holds it.
fn number_after(text: &str, key: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.contains(key))
        .unwrap_or_else(|| panic!("no `{key}` in:\n{text}"));
    let rest = &line[line.find(key).unwrap() + key.len()..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

const TRAINING: [&str; 10] = [
    "--epochs",
    "1",
    "--batch-size",
    "16",
    "--learning-rate",
    "1e-3",
    "--seq-length",
    "64",
    "--pooling",
    "mean",
];

/// Runs `finetune` of the roberta_v1 fixture into `output` (from `cwd`), calling `obstruct`
/// once it has checked its output and read its data (stderr's `N train / M dev rows`).
/// Returns (success, stdout, stderr).
fn finetune_obstructed(
    output: &Path,
    cwd: &Path,
    obstruct: impl FnOnce(),
) -> (bool, String, String) {
    let model = common::uer_fixture("roberta_v1").join("uer_model.bin");
    let (train, dev, test) = (data("train.tsv"), data("dev.tsv"), data("test.tsv"));
    let mut child = Command::new(common::uerzoo_bin())
        .current_dir(cwd)
        .args([
            "finetune",
            s(&model),
            "--train",
            s(&train),
            "--dev",
            s(&dev),
        ])
        .args(["--test", s(&test), "--output", s(output)])
        .args(TRAINING)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut err = String::new();
    loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "finetune ended before training:\n{err}"
        );
        err += &line;
        if line.contains(" train / ") {
            break;
        }
    }
    obstruct();
    stderr.read_to_string(&mut err).unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = child.wait().unwrap();
    (status.success(), out, err)
}

/// The rescued file named in `stderr`: `… saved in PATH (UER naming v2, …`.
fn rescued_path(stderr: &str) -> PathBuf {
    let at = stderr
        .find("the trained model is saved in ")
        .unwrap_or_else(|| panic!("no rescue named:\n{stderr}"));
    let rest = &stderr[at + "the trained model is saved in ".len()..];
    PathBuf::from(&rest[..rest.find(" (UER naming v2").unwrap()])
}

/// The rescued model opens by its path alone (its config, with the reading options, and its
/// vocabulary are beside it), predicts the test set with finetune's test accuracy, and tells
/// its rows apart.
fn check_rescued(rescued: &Path, stdout: &str, work: &Path) {
    let ckpt = Checkpoint::open(rescued).unwrap();
    let head = ckpt.get("output_layer_2.weight").unwrap();
    assert_eq!(head.shape, vec![2, 128], "the two labels' classifier");
    assert!(
        ckpt.get("encoder.transformer.0.self_attn.linear_1.weight")
            .is_none()
    );
    let test_acc = number_after(stdout, "test accuracy:");
    let pred = work.join("pred.tsv");
    let test = data("test.tsv");
    let o = common::run_ok(
        Command::new(common::uerzoo_bin())
            .args([
                "predict",
                s(rescued),
                "--input",
                s(&test),
                "--output",
                s(&pred),
            ])
            .args(["--labels", "--probabilities"]),
    );
    let said = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        number_after(&said, "accuracy:"),
        test_acc,
        "{said}\n{stdout}"
    );
    let text = std::fs::read_to_string(&pred).unwrap();
    let rows: std::collections::BTreeSet<&str> = text.lines().skip(1).collect();
    assert_eq!(text.lines().count(), 51);
    assert!(rows.len() > 1, "{text}");
}

/// Beside the rescued model `name`, its config and vocabulary and nothing else: under the
/// folder's names (`uer_config.json`, `vocab.txt`) when the folder had none, else under its
/// own (`NAME.uer_config.json`, `NAME.vocab.txt`), as every written model gets them.
fn assert_companions(rest: &[String], name: &str) {
    let own = [
        format!("{name}.uer_config.json"),
        format!("{name}.vocab.txt"),
    ];
    assert!(
        rest == ["uer_config.json", "vocab.txt"] || rest == own,
        "beside {name}: {rest:?}"
    );
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn output_taken_during_training_is_rescued_beside_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let output = out_dir.join("cls.bin");
    let (ok, stdout, stderr) = finetune_obstructed(&output, tmp.path(), || {
        std::fs::write(&output, b"another process's file").unwrap()
    });
    assert!(!ok, "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("caused by: writing {}", output.display())),
        "{stderr}"
    );
    let rescued = rescued_path(&stderr);
    assert_eq!(rescued.parent(), Some(out_dir.as_path()), "{stderr}");
    assert!(
        rescued
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("cls.bin.rescued-"),
        "{stderr}"
    );
    // The other file is untouched; nothing else is left (no temporaries): the rescued model
    // and its own config and vocabulary.
    assert_eq!(std::fs::read(&output).unwrap(), b"another process's file");
    let rescued_name = rescued.file_name().unwrap().to_string_lossy().into_owned();
    let mut rest = names(&out_dir);
    rest.retain(|n| *n != rescued_name && n != "cls.bin");
    assert_companions(&rest, &rescued_name);
    check_rescued(&rescued, &stdout, tmp.path());
}

#[test]
fn output_folder_gone_during_training_is_rescued_in_the_working_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let (out_dir, cwd) = (tmp.path().join("out"), tmp.path().join("cwd"));
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::create_dir(&cwd).unwrap();
    let output = out_dir.join("cls.bin");
    let (ok, stdout, stderr) = finetune_obstructed(&output, &cwd, || {
        std::fs::remove_dir(&out_dir).unwrap();
        std::fs::write(&out_dir, b"not a folder").unwrap();
    });
    assert!(!ok, "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("caused by: writing {}", output.display())),
        "{stderr}"
    );
    let rescued = cwd.join(rescued_path(&stderr));
    let name = rescued.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("cls.bin.rescued-"), "{stderr}");
    let mut rest = names(&cwd);
    rest.retain(|n| *n != name);
    assert_companions(&rest, &name);
    assert_eq!(std::fs::read(&out_dir).unwrap(), b"not a folder");
    check_rescued(&rescued, &stdout, tmp.path());
}
