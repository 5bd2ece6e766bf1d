//! Installing uerzoo as people install their tools: shell completions, the man page,
//! `--version`, and a `cargo package` fit for crates.io (no test fixtures, under 10 MB).
//! `bench/pip-install-check.sh` checks the Python wheel (a release build: too long here).

use std::path::Path;
use std::process::{Command, Output};

fn uerzoo(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_uerzoo"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "uerzoo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Whether `program --version` runs here.
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs bash's completion function for `line` (cursor at its end) as readline would: the
/// words in COMP_WORDS, the one under the cursor in COMP_CWORD; returns COMPREPLY.
fn bash_complete(script: &Path, line: &str) -> String {
    let words: Vec<&str> = line.split(' ').collect();
    let cword = words.len() - 1;
    let program = format!(
        "set -e\nsource {script}\nCOMP_WORDS=({words})\nCOMP_CWORD={cword}\n\
         COMP_LINE='{line}'\nCOMP_POINT={point}\n\
         complete -p uerzoo >/dev/null\n\
         _uerzoo uerzoo '{cur}' '{prev}'\necho \"${{COMPREPLY[*]}}\"\n",
        script = script.display(),
        words = words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" "),
        point = line.len(),
        cur = words[cword],
        prev = words[cword - 1],
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out).trim().to_string()
}

#[test]
fn bash_completions_load_and_complete_subcommands() {
    if !have("bash") {
        eprintln!("skipped: bash is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("uerzoo.bash");
    std::fs::write(&script, uerzoo(&["completions", "bash"]).stdout).unwrap();
    assert_eq!(bash_complete(&script, "uerzoo fi"), "fill-mask finetune");
    assert_eq!(
        bash_complete(&script, "uerzoo completions "),
        "-h -V --help --version bash elvish fish powershell zsh"
    );
    let list = bash_complete(&script, "uerzoo list --fa");
    assert_eq!(list, "--family");
}

#[test]
fn completions_for_every_shell_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let text = stdout(&uerzoo(&["completions", shell]));
        for sub in [
            "fill-mask",
            "finetune",
            "extract-features",
            "completions",
            "man",
        ] {
            assert!(text.contains(sub), "{shell} completions lack {sub}");
        }
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_uerzoo"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("possible values"));
}

#[test]
fn man_page_renders_and_lists_the_subcommands() {
    let page = stdout(&uerzoo(&["man"]));
    assert!(page.contains(".TH uerzoo 1"), "{page}");
    assert!(page.contains(".SH SUBCOMMANDS"));
    for sub in [
        "list",
        "info",
        "fill\\-mask",
        "finetune",
        "serve",
        "completions",
    ] {
        assert!(
            page.contains(&format!("uerzoo\\-{sub}(1)")),
            "man page lacks {sub}"
        );
    }
    if have("groff") {
        let mut child = Command::new("groff")
            .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(page.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert!(
            out.stderr.is_empty(),
            "groff warns: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("groff is not installed: the page's formatting is not checked");
    }

    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    uerzoo(&["man", "--dir", pages.to_str().unwrap()]);
    for name in [
        "uerzoo.1",
        "uerzoo-fill-mask.1",
        "uerzoo-cache-ls.1",
        "uerzoo-man.1",
    ] {
        let text = std::fs::read_to_string(pages.join(name)).unwrap();
        assert!(text.contains(".TH"), "{name}");
    }
    let fill_mask = std::fs::read_to_string(pages.join("uerzoo-fill-mask.1")).unwrap();
    assert!(fill_mask.contains("\\-\\-top\\-k"), "{fill_mask}");
}

#[test]
fn version_says_commit_features_and_cpu_paths() {
    for flag in ["--version", "-V"] {
        let text = stdout(&uerzoo(&[flag]));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!("uerzoo {}", env!("CARGO_PKG_VERSION")),
            "{text}"
        );
        let field = |name: &str| {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .unwrap_or_else(|| panic!("no {name}: line in {text}"))
                .trim()
                .to_string()
        };
        let commit = field("commit");
        if in_git_clone() {
            assert!(
                commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
                "{commit}"
            );
            let head = Command::new("git")
                .args(["rev-parse", "HEAD"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .unwrap();
            assert!(stdout(&head).starts_with(&commit), "{commit} is not HEAD");
        }
        let features = field("features");
        let names: Vec<&str> = features.split(" (").next().unwrap().split(", ").collect();
        assert_eq!(
            names.contains(&"cuda"),
            cfg!(feature = "cuda"),
            "{features}"
        );
        assert_eq!(
            names.contains(&"wgpu"),
            cfg!(feature = "wgpu"),
            "{features}"
        );
        if !cfg!(any(feature = "cuda", feature = "wgpu", feature = "ndarray")) {
            assert_eq!(names, ["none"], "{features}");
        }
        let cpu = field("cpu");
        let path = cpu.split(" kernels").next().unwrap();
        assert!(["AVX-512", "AVX2+FMA", "baseline"].contains(&path), "{cpu}");
        #[cfg(target_arch = "x86_64")]
        {
            let avx512 = is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("avx512vl");
            assert_eq!(path == "AVX-512", avx512, "{cpu}");
            let bf16 = is_x86_feature_detected!("avx512bf16");
            assert!(
                cpu.contains(if bf16 { "BF16 yes" } else { "BF16 no" }),
                "{cpu}"
            );
            assert!(cpu.contains("VNNI "), "{cpu}");
            let int8 = uerzoo::kernels::int8::Path::best().name();
            assert!(cpu.contains(&format!("int8 {int8} ")), "{cpu}");
        }
    }
}

/// Whether this crate is the top of a git work tree and git runs (the build records the
/// commit then).
fn in_git_clone() -> bool {
    Command::new("git")
        .args(["rev-parse", "--show-toplevel"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && Path::new(stdout(&o).trim()).canonicalize().ok()
                    == Path::new(env!("CARGO_MANIFEST_DIR")).canonicalize().ok()
        })
}

/// crates.io refuses a package over 10 MB (compressed; the files' own sizes bound it).
const CRATES_IO_LIMIT: u64 = 10 * 1000 * 1000;

#[test]
fn cargo_package_carries_no_fixtures_and_fits_crates_io() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = match Command::new(&cargo)
        .args(["package", "--list", "--allow-dirty", "--offline"])
        .current_dir(root)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipped: cannot run {cargo}: {e}");
            return;
        }
    };
    assert!(
        out.status.success(),
        "cargo package --list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = stdout(&out);
    let files: Vec<&str> = list.lines().collect();
    for needed in [
        "Cargo.toml",
        "build.rs",
        "registry.toml",
        "src/main.rs",
        "src/serve/web/index.html",
        "configs/bert/tiny_config.json",
        "vocab/vocabs.toml",
        "vocab/google_zh_vocab.txt",
        "README.md",
    ] {
        assert!(
            files.contains(&needed),
            "the package lacks {needed}:\n{list}"
        );
    }
    for file in &files {
        assert!(
            !file.starts_with("tests/")
                && !file.starts_with("fuzz/")
                && !file.starts_with("target/")
                && !file.contains("fixtures"),
            "the package carries {file}"
        );
    }
    // Files cargo writes itself (`.cargo_vcs_info.json`, `Cargo.toml.orig`) are not on disk.
    let total: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(root.join(f)).ok())
        .map(|m| m.len())
        .sum();
    assert!(
        total < CRATES_IO_LIMIT,
        "the packaged files hold {total} bytes, over crates.io's limit"
    );
}
