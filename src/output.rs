//! Where results are written. One rule for every command: an existing output is replaced
//! only with `--force`; the folder is created if it is missing; all of it is checked
//! *before* any long work (loading, training, converting) starts. Files are written to a
//! temporary `.uerzoo-<pid>-….partial` beside their final name and renamed into place, so
//! a failed or interrupted write never leaves a truncated file under the final name:
//! temporaries are removed on error, on Ctrl-C/SIGTERM (see [`install_interrupt_cleanup`],
//! installed by the binary), and — for runs killed outright — by the next write into the
//! same folder, once the process that made them is gone.
//!
//! This module sits below every other one (like [`crate::progress`]): it knows paths, not
//! formats. It also owns where the companions of a written model go ([`write_beside`]: the
//! UER config and vocabulary beside a `.bin`, by name, never parsed), for every command
//! that writes one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What can be wrong with an output path.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The output exists and `--force` was not given.
    #[error("{}: exists; pass --force to overwrite it", path.display())]
    Exists { path: PathBuf },
    /// A file was expected but the path is a directory (or the other way round).
    #[error("{}: is a {found}, but the output is a {wanted}; choose another path", path.display())]
    WrongKind {
        path: PathBuf,
        found: &'static str,
        wanted: &'static str,
    },
    /// The folder cannot be created or written.
    #[error("{}: cannot write here ({source}); choose a writable folder", path.display())]
    NotWritable {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The output would overwrite one of the command's inputs.
    #[error("{}: is also the {what}; writing it would destroy the input, choose another output path", path.display())]
    IsInput { path: PathBuf, what: &'static str },
}

/// A companion file (config, vocabulary) that could not be read or written beside an
/// output: what was being done (naming both files) and why it failed.
#[derive(Debug, thiserror::Error)]
#[error("{doing}: {source}")]
pub struct CompanionError {
    pub doing: String,
    pub source: std::io::Error,
}

/// The folder a file `path` is written into (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Checks that the file `path` can be written: not a directory, absent (or `force`), its
/// folder created if missing and writable. Stale temporaries of killed runs in that folder
/// are removed on the way.
pub fn check_file(path: &Path, force: bool) -> Result<(), OutputError> {
    if path.is_dir() {
        return Err(OutputError::WrongKind {
            path: path.to_path_buf(),
            found: "directory",
            wanted: "file",
        });
    }
    if !force && path.exists() {
        return Err(OutputError::Exists {
            path: path.to_path_buf(),
        });
    }
    writable_dir(parent_dir(path))
}

/// Checks that the directory `path` can be written as an output (an HF model folder): not
/// a file, absent or empty (or `force`), created if missing and writable.
pub fn check_dir(path: &Path, force: bool) -> Result<(), OutputError> {
    if path.exists() && !path.is_dir() {
        return Err(OutputError::WrongKind {
            path: path.to_path_buf(),
            found: "file",
            wanted: "directory",
        });
    }
    let non_empty = std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_some());
    if non_empty && !force {
        return Err(OutputError::Exists {
            path: path.to_path_buf(),
        });
    }
    writable_dir(path)
}

/// Refuses an output that is the same file as `input` (`what` names the input's role, e.g.
/// "--corpus"). Either may not exist yet.
pub fn check_not_input(output: &Path, input: &Path, what: &'static str) -> Result<(), OutputError> {
    if same_file(output, input) {
        return Err(OutputError::IsInput {
            path: output.to_path_buf(),
            what,
        });
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    let full = |p: &Path| -> Option<PathBuf> {
        if let Ok(c) = p.canonicalize() {
            return Some(c);
        }
        let name = p.file_name()?;
        Some(parent_dir(p).canonicalize().ok()?.join(name))
    };
    matches!((full(a), full(b)), (Some(x), Some(y)) if x == y)
}

/// Creates `dir` if needed and proves it writable with a temporary file (removed at once).
fn writable_dir(dir: &Path) -> Result<(), OutputError> {
    let fail = |source| OutputError::NotWritable {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    sweep_stale(dir);
    tempfile::Builder::new()
        .prefix(&prefix())
        .suffix(SUFFIX)
        .tempfile_in(dir)
        .map(drop)
        .map_err(fail)
}

const SUFFIX: &str = ".partial";

fn prefix() -> String {
    format!(".uerzoo-{}-", std::process::id())
}

/// A temporary file beside a final path: removed when dropped or on Ctrl-C/SIGTERM, renamed
/// into place by [`Partial::persist`].
pub struct Partial {
    file: Option<tempfile::NamedTempFile>,
    path: PathBuf,
}

static LIVE: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

fn live() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

impl Partial {
    /// A new temporary file in `dir`.
    pub fn new_in(dir: &Path) -> std::io::Result<Partial> {
        sweep_stale(dir);
        let file = tempfile::Builder::new()
            .prefix(&prefix())
            .suffix(SUFFIX)
            .tempfile_in(dir)?;
        let path = file.path().to_path_buf();
        live().insert(path.clone());
        Ok(Partial {
            file: Some(file),
            path,
        })
    }

    /// The open file.
    pub fn as_file_mut(&mut self) -> &mut std::fs::File {
        self.file
            .as_mut()
            .expect("present until persisted")
            .as_file_mut()
    }

    /// The open file.
    pub fn as_file(&self) -> &std::fs::File {
        self.file
            .as_ref()
            .expect("present until persisted")
            .as_file()
    }

    /// Where the temporary file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Syncs, gives the file mode 0644 (like any file a user writes) and renames it to
    /// `path`; an existing `path` is replaced only with `force` (checked atomically).
    pub fn persist(mut self, path: &Path, force: bool) -> Result<(), PersistError> {
        let file = self.file.take().expect("present until persisted");
        file.as_file().sync_all().map_err(PersistError::Io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(PersistError::Io)?;
        }
        let done = if force {
            file.persist(path).map(drop)
        } else {
            file.persist_noclobber(path).map(drop)
        };
        live().remove(&self.path);
        done.map_err(|e| match e.error.kind() {
            std::io::ErrorKind::AlreadyExists if !force => PersistError::Exists,
            _ => PersistError::Io(e.error),
        })
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            // NamedTempFile's own drop removed the file.
            live().remove(&self.path);
        }
    }
}

impl std::io::Write for Partial {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.as_file_mut().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.as_file_mut().flush()
    }
}

/// Why [`Partial::persist`] failed.
#[derive(Debug)]
pub enum PersistError {
    /// The final path appeared meanwhile and `force` was not given.
    Exists,
    /// Syncing or renaming failed.
    Io(std::io::Error),
}

impl From<PersistError> for std::io::Error {
    fn from(e: PersistError) -> Self {
        match e {
            PersistError::Exists => std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "appeared while it was written; pass --force to overwrite it",
            ),
            PersistError::Io(e) => e,
        }
    }
}

/// A temporary directory beside an output (e.g. an HF folder being assembled, or an
/// intermediate file): removed when dropped, on Ctrl-C/SIGTERM, or by a later sweep.
pub struct PartialDir {
    dir: tempfile::TempDir,
}

impl PartialDir {
    /// A new temporary directory in `parent`.
    pub fn new_in(parent: &Path) -> std::io::Result<PartialDir> {
        sweep_stale(parent);
        let dir = tempfile::Builder::new()
            .prefix(&prefix())
            .suffix(SUFFIX)
            .tempdir_in(parent)?;
        live().insert(dir.path().to_path_buf());
        Ok(PartialDir { dir })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PartialDir {
    fn drop(&mut self) {
        live().remove(self.dir.path());
    }
}

/// Removes every temporary file this process still has (the interrupt handler's job).
pub fn remove_all_partials() {
    for p in std::mem::take(&mut *live()) {
        if p.is_dir() {
            let _ = std::fs::remove_dir_all(&p);
        } else {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// Removes `.uerzoo-<pid>-*.partial` files (and directories) in `dir` whose process no
/// longer runs: what a SIGKILL or a power cut left behind. Only on Linux, where `/proc`
/// says whether a pid is alive; elsewhere nothing is removed.
pub fn sweep_stale(dir: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(pid) = stale_pid(name) else { continue };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let p = e.path();
        let _ = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
    }
}

/// The pid in a temporary's name `.uerzoo-<pid>-<random>.partial`.
fn stale_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(".uerzoo-")?.strip_suffix(SUFFIX)?;
    rest.split_once('-')?.0.parse().ok()
}

/// Installs the process-wide handler: on SIGINT, SIGTERM or SIGHUP every temporary file is
/// removed and the process exits with 128 + the signal number, as a shell reports it. Also
/// makes a file-size limit (`ulimit -f`) an ordinary write error instead of a silent
/// SIGXFSZ death. Call once, from a binary's `main`; does nothing on non-Unix systems.
pub fn install_interrupt_cleanup() {
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        // SAFETY: setting a signal's disposition to "ignore" has no handler code to run.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        }
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            return;
        };
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                remove_all_partials();
                std::process::exit(128 + sig);
            }
        });
    }
}

/// What a file written beside an output is made from.
#[derive(Debug, Clone)]
pub enum Companion {
    /// The user's file, copied.
    File(PathBuf),
    /// Text made for this output: a registry entry's config, or a config with the training
    /// options added. Written straight to its place; it never exists under another name.
    Made(String),
}

impl From<PathBuf> for Companion {
    fn from(path: PathBuf) -> Self {
        Companion::File(path)
    }
}

/// A companion file [`write_beside`] wrote: where, and the file it copies (`None` for text
/// made for the output).
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub path: PathBuf,
    pub copy_of: Option<PathBuf>,
}

/// Copies the UER config and the vocabulary next to a written `.bin` (as `uer_config.json`
/// and `vocab.txt` / `spiece.model`), so that every command opens the output by its path
/// alone. A folder file that is already there with the same bytes (or an HF `config.json`)
/// is left alone; one with other bytes (another model written into the same folder) is not
/// touched either, and this output gets its own companion (`OUT.bin.uer_config.json`, the
/// name `crate::model::open::companion` gives), which opening `OUT.bin` reads first. Each
/// file is written through [`Partial`], so an interrupted copy leaves nothing. Returns the
/// files written, for the caller to show.
pub fn write_beside(
    output: &Path,
    config: Option<Companion>,
    vocab: Option<PathBuf>,
) -> Result<Vec<Written>, CompanionError> {
    let dir = parent_dir(output);
    let vocab_name = if vocab
        .as_deref()
        .is_some_and(|p| p.extension().is_some_and(|e| e == "model"))
    {
        "spiece.model"
    } else {
        "vocab.txt"
    };
    let has = |path: &Path, bytes: &[u8]| std::fs::read(path).is_ok_and(|b| b == bytes);
    let vocab = vocab.map(Companion::File);
    let mut written = Vec::new();
    for (from, name) in [(config, "uer_config.json"), (vocab, vocab_name)] {
        let Some(from) = from else { continue };
        let bytes = match &from {
            Companion::File(p) => std::fs::read(p).map_err(|source| CompanionError {
                doing: format!("reading {}", p.display()),
                source,
            })?,
            Companion::Made(text) => text.clone().into_bytes(),
        };
        let shared = dir.join(name);
        let mut own = output.as_os_str().to_os_string();
        own.push(format!(".{name}"));
        let hf_config = name == "uer_config.json" && dir.join("config.json").exists();
        let to = if !shared.exists() && !hf_config {
            shared
        } else if has(&shared, &bytes) || (name == "uer_config.json" && !shared.exists()) {
            continue;
        } else {
            PathBuf::from(own)
        };
        if matches!(&from, Companion::File(p) if *p == to) || has(&to, &bytes) {
            continue;
        }
        let copy_of = match from {
            Companion::File(p) => Some(p),
            Companion::Made(_) => None,
        };
        write_atomic(&bytes, &to).map_err(|source| CompanionError {
            doing: match &copy_of {
                Some(p) => format!("copying {} to {}", p.display(), to.display()),
                None => format!("writing {}", to.display()),
            },
            source,
        })?;
        written.push(Written { path: to, copy_of });
    }
    Ok(written)
}

/// Writes `bytes` to `to` through a temporary beside it, then renames.
fn write_atomic(bytes: &[u8], to: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = Partial::new_in(parent_dir(to))?;
    tmp.write_all(bytes)?;
    Ok(tmp.persist(to, true)?)
}

/// The name of a weights file's own companion `name` (`uer_config.json`, `vocab.txt`):
/// `model.bin` → `model.bin.uer_config.json`. Commands that write several models into one
/// folder put a config or vocabulary that differs from the folder's under this name, and
/// opening the file finds it first.
pub fn companion(weights: &Path, name: &str) -> PathBuf {
    let mut s = weights.as_os_str().to_os_string();
    s.push(".");
    s.push(name);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_names() {
        assert_eq!(stale_pid(".uerzoo-123-abcd.partial"), Some(123));
        assert_eq!(stale_pid(".uerzoo-abcd.partial"), None);
        assert_eq!(stale_pid("uerzoo-1-a.partial"), None);
    }

    #[test]
    fn rules() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a/b/out.bin");
        check_file(&f, false).unwrap();
        assert!(d.path().join("a/b").is_dir());
        std::fs::write(&f, b"x").unwrap();
        assert!(matches!(
            check_file(&f, false),
            Err(OutputError::Exists { .. })
        ));
        check_file(&f, true).unwrap();
        assert!(matches!(
            check_dir(&f, true),
            Err(OutputError::WrongKind { .. })
        ));
        assert!(matches!(
            check_not_input(&f, &d.path().join("a/./b/out.bin"), "--corpus"),
            Err(OutputError::IsInput { .. })
        ));
        // A stale temporary of a dead process goes; this process's own stays.
        let dead = d.path().join(".uerzoo-4000000000-x.partial");
        std::fs::write(&dead, b"").unwrap();
        let mine = Partial::new_in(d.path()).unwrap();
        assert!(!dead.exists());
        assert!(mine.path().exists());
        let p = mine.path().to_path_buf();
        drop(mine);
        assert!(!p.exists());
    }

    #[test]
    fn companions_go_beside_under_the_folder_names_else_their_own() {
        let d = tempfile::tempdir().unwrap();
        let (config, vocab) = (d.path().join("in.json"), d.path().join("in.txt"));
        std::fs::write(&vocab, "[PAD]\n").unwrap();
        std::fs::write(&config, "{}").unwrap();
        // Beside a written output, whose folder exists.
        std::fs::create_dir(d.path().join("out")).unwrap();
        let out = d.path().join("out/a.bin");
        let w = write_beside(&out, Some(config.clone().into()), Some(vocab.clone())).unwrap();
        let shared = [
            d.path().join("out/uer_config.json"),
            d.path().join("out/vocab.txt"),
        ];
        assert_eq!(w.iter().map(|w| w.path.clone()).collect::<Vec<_>>(), shared);
        assert_eq!(w[1].copy_of.as_deref(), Some(vocab.as_path()));
        // The same bytes again: nothing written. Other bytes: this output's own names.
        let b = d.path().join("out/b.bin");
        assert!(
            write_beside(&b, Some(config.into()), None)
                .unwrap()
                .is_empty()
        );
        let made = Companion::Made("{\"seq_length\": 64}".into());
        let w = write_beside(&b, Some(made), None).unwrap();
        assert_eq!(w[0].path, d.path().join("out/b.bin.uer_config.json"));
        assert_eq!(w[0].copy_of, None);
        assert_eq!(std::fs::read_to_string(&shared[0]).unwrap(), "{}");
        let missing = write_beside(&b, Some(d.path().join("gone.json").into()), None);
        assert!(missing.unwrap_err().to_string().contains("gone.json"));
    }
}
