//! The layering of docs/architecture.md, checked on the sources: data flows one way, so no
//! module names one above it in code (doc comments may point anywhere).

use std::path::{Path, PathBuf};

/// Each module and the modules it must never use.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "output",
        &[
            "registry",
            "hub",
            "checkpoint",
            "convert",
            "tokenizer",
            "kernels",
            "model",
            "resolve",
            "generate",
            "train",
            "serve",
            "jobs",
        ],
    ),
    (
        "progress",
        &[
            "registry",
            "hub",
            "checkpoint",
            "convert",
            "tokenizer",
            "kernels",
            "model",
            "resolve",
            "generate",
            "train",
            "serve",
            "jobs",
        ],
    ),
    (
        "registry",
        &[
            "hub",
            "checkpoint",
            "convert",
            "tokenizer",
            "kernels",
            "model",
            "resolve",
            "generate",
            "train",
            "serve",
            "jobs",
        ],
    ),
    (
        "hub",
        &[
            "checkpoint",
            "convert",
            "tokenizer",
            "kernels",
            "model",
            "resolve",
            "generate",
            "train",
            "serve",
            "jobs",
        ],
    ),
    (
        "checkpoint",
        &[
            "hub",
            "convert",
            "tokenizer",
            "kernels",
            "model",
            "resolve",
            "generate",
            "train",
            "serve",
            "jobs",
        ],
    ),
    (
        "convert",
        &[
            "hub",
            "tokenizer",
            "kernels",
            "model",
            "resolve",
            "generate",
            "train",
            "serve",
            "jobs",
        ],
    ),
    (
        "tokenizer",
        &[
            "hub",
            "checkpoint",
            "convert",
            "kernels",
            "model",
            "resolve",
            "generate",
            "train",
            "serve",
            "jobs",
        ],
    ),
    (
        "kernels",
        &[
            "hub",
            "checkpoint",
            "convert",
            "tokenizer",
            "model",
            "resolve",
            "generate",
            "train",
            "serve",
            "jobs",
        ],
    ),
    (
        "model",
        &["hub", "resolve", "generate", "train", "serve", "jobs"],
    ),
    ("resolve", &["generate", "train", "serve", "jobs"]),
    ("generate", &["hub", "train", "serve", "jobs"]),
    ("train", &["hub", "generate", "serve", "jobs"]),
];

fn sources(module: &str) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let file = src.join(format!("{module}.rs"));
    if file.is_file() {
        return vec![file];
    }
    let mut out = Vec::new();
    let mut stack = vec![src.join(module)];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn no_module_uses_one_above_it() {
    let mut bad = Vec::new();
    for &(module, forbidden) in FORBIDDEN {
        let files = sources(module);
        assert!(!files.is_empty(), "no sources for `{module}`");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                for up in forbidden {
                    if code.contains(&format!("crate::{up}::"))
                        || code.contains(&format!("crate::{up};"))
                        || code.contains(&format!("crate::{up}}}"))
                    {
                        bad.push(format!(
                            "{}:{}: `{module}` uses `{up}`: {code}",
                            file.display(),
                            n + 1
                        ));
                    }
                }
            }
        }
    }
    assert!(bad.is_empty(), "layering broken:\n{}", bad.join("\n"));
}
