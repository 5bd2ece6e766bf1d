//! Build script: records the git commit the binary was built from, for `uerzoo --version`.
//!
//! Sets `UERZOO_GIT_COMMIT` (short hash) only when the package root is itself the top of a
//! git work tree (a clone or a worktree) and `git` runs; in a packaged crate it falls back to
//! the `.cargo_vcs_info.json` that `cargo package` writes. A `UERZOO_GIT_COMMIT` in the build's
//! environment (a packager building from a tarball) is passed through as it is. Anything else
//! (no git, no record) leaves it unset and never fails the build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=UERZOO_GIT_COMMIT");
    if std::env::var_os("UERZOO_GIT_COMMIT").is_some() {
        return; // already in the environment rustc sees
    }
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    if let Some(commit) = from_git(&root).or_else(|| from_vcs_info(&root)) {
        println!("cargo:rustc-env=UERZOO_GIT_COMMIT={commit}");
    }
}

/// `git` with `args` run in `dir`; its trimmed stdout when it succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn from_git(root: &Path) -> Option<String> {
    // A packaged copy under some other clone's tree (`target/package/…`) is not a clone.
    let top = git(root, &["rev-parse", "--show-toplevel"])?;
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same(Path::new(&top), root) {
        return None;
    }
    let commit = git(root, &["rev-parse", "--short=12", "HEAD"])?;
    // Rebuild when HEAD moves: HEAD itself (checkouts), the branch it names (commits) and
    // packed-refs (gc). `--git-path` resolves them in worktrees too.
    let mut watch = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(root, &["symbolic-ref", "-q", "HEAD"]) {
        watch.push(branch);
    }
    for name in watch {
        if let Some(path) = git(root, &["rev-parse", "--git-path", &name]) {
            let path = root.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    Some(commit)
}

/// The commit `cargo package` recorded (`{"git": {"sha1": "…"}}`), shortened.
fn from_vcs_info(root: &Path) -> Option<String> {
    let path = root.join(".cargo_vcs_info.json");
    let text = std::fs::read_to_string(&path).ok()?;
    println!("cargo:rerun-if-changed={}", path.display());
    let rest = &text[text.find("\"sha1\"")? + 6..];
    let start = rest.find('"')? + 1;
    let hash = &rest[start..];
    let hash = &hash[..hash.find('"')?];
    (hash.len() >= 12 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hash[..12].to_string())
}
