//! Shared test helpers: where the read-only reference data lives.
#![allow(dead_code)]

pub mod precision;

use std::path::PathBuf;

/// The reference data the tests read: `$UERZOO_SHARED` when set (a full `../shared` from
/// the product side), else the lean copy in the repository, `tests/fixtures/` (same layout:
/// `fixtures/uer`, `fixtures/torch_formats`, `fixtures/hf_classifiers`, `data/corpora`,
/// `data/datasets`), so a fresh clone passes its tests. Vocabularies are read from the
/// repository's `vocab/` (see [`vocab`]).
pub fn shared() -> PathBuf {
    if let Some(dir) = std::env::var_os("UERZOO_SHARED") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// A vocabulary or sentencepiece model the product ships in `vocab/`.
pub fn vocab(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("vocab")
        .join(file)
}

/// `shared()/fixtures/uer/<name>`.
pub fn uer_fixture(name: &str) -> PathBuf {
    shared().join("fixtures").join("uer").join(name)
}

/// The six UER fixtures.
pub const UER_FIXTURES: [&str; 6] = [
    "albert_v1",
    "bert_v1",
    "gpt2_v1",
    "gpt2_v2",
    "roberta_v1",
    "roberta_v2",
];

/// The path of the built `uerzoo` binary, for CLI tests.
pub fn uerzoo_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_uerzoo"))
}

/// Runs `cmd` (usually the `uerzoo` binary) and returns its output, failing the test with
/// the command line and its stderr when it does not succeed.
pub fn run_ok(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Opens a checkpoint or safetensors file, naming it when it cannot.
pub fn read(path: &std::path::Path) -> uerzoo::checkpoint::Checkpoint {
    uerzoo::checkpoint::Checkpoint::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Max |a−b| over the positions whose segment is non-zero; `a`, `b`: `[batch, seq, width]`.
pub fn max_diff_real(a: &[f32], b: &[f32], segment: &[i64], width: usize) -> f32 {
    assert_eq!(a.len(), b.len(), "shapes differ");
    let mut worst = 0f32;
    for (pos, _) in segment.iter().enumerate().filter(|(_, s)| **s != 0) {
        for k in pos * width..(pos + 1) * width {
            worst = worst.max((a[k] - b[k]).abs());
        }
    }
    worst
}
